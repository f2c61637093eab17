//! Pretext's app library: the egui UI that the desktop app (`pretext gui`) opens natively and
//! the browser viewer compiles to wasm32 (everything but the Train view). The `pretext`
//! binary's command line lives beside it in `src/cli/`.

pub mod ui;
