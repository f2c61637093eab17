//! The C ABI between the host and a plugin: `#[repr(C)]` plain data and function pointers.
//!
//! Only bytes, f32/u8 buffers with their shapes, UTF-8 JSON and safetensors bytes cross it;
//! never a `String`, a `Vec`, a trait object or a candle type (see DESIGN.md for why). The
//! header fields (`magic`, `abi_version`) come first and never move, so the host can check
//! them before it trusts anything else. Change anything after them and bump `ABI_VERSION`.

use std::ffi::c_void;

/// "PRETEXT1" in ASCII: the first field of every plugin declaration.
pub const MAGIC: u64 = u64::from_be_bytes(*b"PRETEXT1");
/// Bumped whenever any type or function in this file changes. 2: `train_step` takes a
/// [`StepInfo`] (the schedule position that teachers and warm-ups need) instead of the rate.
/// 3: `create` takes the host's [`Collectives`] (data-parallel runs) and `prepare` one seed
/// per image instead of one per batch.
pub const ABI_VERSION: u32 = 3;
/// The one symbol a plugin exports (its name stays; the version is in the declaration).
pub const SYMBOL: &str = "pretext_plugin_v1";
/// Capability bit: the plugin was built with CUDA support.
pub const CAP_CUDA: u32 = 1;

/// Status codes of every fallible call.
pub const OK: i32 = 0;
/// The call failed; the error buffer holds the message.
pub const ERROR: i32 = 1;
/// The plugin panicked; the error buffer holds the panic message.
pub const PANIC: i32 = 2;
/// `train_step` only: the loss was not finite and no weight changed.
pub const NON_FINITE: i32 = 3;

/// A borrowed UTF-8 string or byte slice.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Bytes {
    pub ptr: *const u8,
    pub len: usize,
}

/// Bytes allocated by the plugin, given to the host, and freed by the plugin's `free_buf`.
#[repr(C)]
pub struct OwnedBuf {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
}

impl OwnedBuf {
    pub const EMPTY: OwnedBuf = OwnedBuf { ptr: std::ptr::null_mut(), len: 0, cap: 0 };
}

/// A borrowed batch of u8 images in NCHW order.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ImagesRef {
    pub data: *const u8,
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

/// Where a training step sits in the run: `step` counts from 0 over the run, `epoch` from 1.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepInfo {
    pub step: u64,
    pub total_steps: u64,
    pub epoch: u64,
    pub epochs: u64,
    pub lr: f64,
}

/// The host's log sink: level (1 error … 5 trace) and a UTF-8 message.
pub type LogFn = extern "C" fn(level: u32, message: Bytes);

/// The ranks of a data-parallel run, as the host offers them to a session: this rank, the
/// number of ranks, and collectives over `f32` buffers that return [`OK`] or an error code.
/// `ctx` is the host's and is passed back unchanged; it outlives the session.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Collectives {
    pub ctx: *const c_void,
    pub rank: u32,
    pub world: u32,
    /// Sums `len` floats at `data` over all ranks, in place.
    pub all_reduce_sum: unsafe extern "C" fn(ctx: *const c_void, data: *mut f32, len: usize) -> i32,
    /// Writes every rank's `len` floats, in rank order, to `out` (`world · len` floats).
    pub all_gather: unsafe extern "C" fn(ctx: *const c_void, data: *const f32, len: usize, out: *mut f32) -> i32,
}

/// Opaque handles owned by the plugin.
pub type SessionPtr = *mut c_void;
pub type PreparedPtr = *mut c_void;

/// The functions of a plugin. All fallible ones return a status code and, on failure, fill
/// `err` with a UTF-8 message; every buffer they fill is freed with `free_buf`.
#[repr(C)]
pub struct VTable {
    /// JSON `Description`: name, version, description, default config, core version, CUDA.
    pub describe: unsafe extern "C" fn(out: *mut OwnedBuf, err: *mut OwnedBuf) -> i32,
    /// Creates a session from a JSON `SessionConfig`; `ranks` is null for a run of one
    /// process, otherwise read during the call (its `ctx` must outlive the session).
    pub create: unsafe extern "C" fn(
        config: Bytes,
        log: Option<LogFn>,
        ranks: *const Collectives,
        out: *mut SessionPtr,
        err: *mut OwnedBuf,
    ) -> i32,
    /// Makes the pretext inputs of a batch, image `i` from `seeds[i]` (`images.n` seeds);
    /// thread-safe, may run during `train_step`.
    pub prepare: unsafe extern "C" fn(
        session: SessionPtr,
        images: ImagesRef,
        seeds: *const u64,
        out: *mut PreparedPtr,
        err: *mut OwnedBuf,
    ) -> i32,
    pub free_prepared: unsafe extern "C" fn(prepared: PreparedPtr),
    /// One optimisation step on prepared inputs; fills `out` with JSON metrics.
    pub train_step: unsafe extern "C" fn(
        session: SessionPtr,
        prepared: PreparedPtr,
        info: StepInfo,
        out: *mut OwnedBuf,
        err: *mut OwnedBuf,
    ) -> i32,
    /// Backbone features of a batch as safetensors bytes of f32 matrices.
    pub embed:
        unsafe extern "C" fn(session: SessionPtr, images: ImagesRef, out: *mut OwnedBuf, err: *mut OwnedBuf) -> i32,
    /// The task's pretext inputs of a batch as safetensors bytes of u8 images.
    pub sample: unsafe extern "C" fn(
        session: SessionPtr,
        images: ImagesRef,
        seed: u64,
        out: *mut OwnedBuf,
        err: *mut OwnedBuf,
    ) -> i32,
    pub save_state: unsafe extern "C" fn(session: SessionPtr, out: *mut OwnedBuf, err: *mut OwnedBuf) -> i32,
    pub load_state: unsafe extern "C" fn(session: SessionPtr, state: Bytes, err: *mut OwnedBuf) -> i32,
    pub destroy: unsafe extern "C" fn(session: SessionPtr),
    pub free_buf: unsafe extern "C" fn(buf: OwnedBuf),
}

/// What `pretext_plugin_v1` returns a pointer to.
#[repr(C)]
pub struct PluginDecl {
    pub magic: u64,
    pub abi_version: u32,
    /// `CAP_*` bits.
    pub capabilities: u32,
    /// The pretext-sdk version the plugin was built against (UTF-8, static).
    pub core_version: Bytes,
    pub vtable: VTable,
}

impl std::fmt::Debug for PluginDecl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginDecl").field("abi_version", &self.abi_version).finish_non_exhaustive()
    }
}

// SAFETY: a declaration is immutable static data (integers, pointers to static strings and
// function pointers), so sharing it between threads cannot race.
unsafe impl Sync for PluginDecl {}

/// The type of the exported symbol.
pub type EntryFn = unsafe extern "C" fn() -> *const PluginDecl;
