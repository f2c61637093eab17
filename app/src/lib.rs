//! Pretext's app library: the egui UI that the desktop app (`pretext gui`) opens natively and
//! the browser viewer compiles to wasm32 (everything but the Train view), the HTTP interface
//! between the two ends of the browser viewer, and (natively) `pretext serve`'s server. The
//! `pretext` binary's command line lives beside it in `src/cli/`.

pub mod api;
#[cfg(not(target_arch = "wasm32"))]
pub mod serve;
pub mod ui;
