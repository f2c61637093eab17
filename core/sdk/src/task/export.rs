//! The plugin side of the ABI: generic `extern "C"` functions over a [`Session`], and the
//! `export_plugin!` macro that puts them in a static declaration.
//!
//! Each entry point catches panics (a panic unwinding into the host's copy of std would
//! abort it) and turns errors into a status code plus a message. Buffers handed to the host
//! are `Vec<u8>`s taken apart here and put back together by `free_buf`, with this copy of
//! the allocator. Nothing here may be called with pointers other than the host's.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use super::abi::{
    self, Bytes, Collectives, ImagesRef, LogFn, OwnedBuf, PluginDecl, PreparedPtr, SessionPtr, StepInfo, VTable,
};
use super::{PretextTask, Schedule, Session, SessionConfig, TaskError, Views};
use crate::dist::{Collective, Comm};
use crate::images::ByteImages;

fn into_buf(bytes: Vec<u8>) -> OwnedBuf {
    let mut bytes = std::mem::ManuallyDrop::new(bytes);
    OwnedBuf { ptr: bytes.as_mut_ptr(), len: bytes.len(), cap: bytes.capacity() }
}

/// Frees a buffer made by `into_buf`.
///
/// # Safety
/// `buf` must come from this plugin's `into_buf` and not have been freed.
pub unsafe extern "C" fn free_buf(buf: OwnedBuf) {
    if !buf.ptr.is_null() {
        // SAFETY: the pointer, length and capacity are those of a Vec<u8> this module leaked.
        drop(unsafe { Vec::from_raw_parts(buf.ptr, buf.len, buf.cap) });
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".into())
}

/// Silences this plugin's copy of the default panic hook (the host reports the message) and
/// keeps the panic's location for that message.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            LOCATION.with(|cell| *cell.borrow_mut() = location);
        }));
    });
}

thread_local! {
    static LOCATION: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// An error's message without what follows its first line: candle appends a backtrace
/// when `RUST_BACKTRACE` is set, and the host shows the message as one sentence.
fn first_line(e: &TaskError) -> String {
    let text = e.to_string();
    text.lines().next().unwrap_or_default().trim_end().to_string()
}

/// Runs `f`, writing its error or panic message to `err`.
///
/// # Safety
/// `err` must be null or point to a writable `OwnedBuf`.
unsafe fn guard(err: *mut OwnedBuf, f: impl FnOnce() -> Result<(), TaskError>) -> i32 {
    let (code, message) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return abi::OK,
        Ok(Err(e @ TaskError::NonFinite { .. })) => (abi::NON_FINITE, first_line(&e)),
        Ok(Err(e)) => (abi::ERROR, first_line(&e)),
        Err(payload) => {
            let location = LOCATION.with(|cell| std::mem::take(&mut *cell.borrow_mut()));
            (abi::PANIC, format!("{}{location}", panic_message(payload.as_ref())))
        }
    };
    if !err.is_null() {
        // SAFETY: the caller guarantees `err` is writable.
        unsafe { err.write(into_buf(message.into_bytes())) };
    }
    code
}

/// # Safety
/// `out` must be null or writable.
unsafe fn put(out: *mut OwnedBuf, bytes: Vec<u8>) {
    if !out.is_null() {
        // SAFETY: the caller guarantees `out` is writable.
        unsafe { out.write(into_buf(bytes)) };
    }
}

/// # Safety
/// `b` must describe `len` readable bytes that outlive the returned slice.
unsafe fn slice<'a>(b: Bytes) -> &'a [u8] {
    if b.ptr.is_null() || b.len == 0 {
        return &[];
    }
    // SAFETY: the caller guarantees the pointer and length describe readable bytes.
    unsafe { std::slice::from_raw_parts(b.ptr, b.len) }
}

/// # Safety
/// `images.data` must point to `n*c*h*w` readable bytes.
unsafe fn images(images: ImagesRef) -> Result<ByteImages, TaskError> {
    let len = images
        .n
        .checked_mul(images.c)
        .and_then(|v| v.checked_mul(images.h))
        .and_then(|v| v.checked_mul(images.w))
        .ok_or_else(|| TaskError::Input("the image batch size overflows".into()))?;
    // SAFETY: the caller guarantees `len` readable bytes at `data`.
    let data = unsafe { slice(Bytes { ptr: images.data, len }) }.to_vec();
    ByteImages::new(images.n, images.c, images.h, images.w, data).map_err(|e| TaskError::Input(e.to_string()))
}

/// # Safety
/// `session` must be a live pointer returned by `create::<T>`.
unsafe fn session<'a, T: PretextTask>(session: SessionPtr) -> Result<&'a Session<T>, TaskError> {
    // SAFETY: the caller guarantees the pointer came from `create::<T>` and is live.
    unsafe { session.cast::<Session<T>>().as_ref() }.ok_or_else(|| TaskError::Input("null session".into()))
}

/// The host's collectives behind the SDK's [`Collective`] trait.
struct HostRanks(Collectives);

// SAFETY: the host's collectives are plain function pointers and a context the host keeps
// alive and serialises calls on (one training step at a time).
unsafe impl Send for HostRanks {}
// SAFETY: as above.
unsafe impl Sync for HostRanks {}

impl Collective for HostRanks {
    fn rank(&self) -> usize {
        self.0.rank as usize
    }

    fn world(&self) -> usize {
        self.0.world as usize
    }

    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<(), String> {
        // SAFETY: `data` is a live, writable slice of `len` floats for the call.
        let code = unsafe { (self.0.all_reduce_sum)(self.0.ctx, data.as_mut_ptr(), data.len()) };
        if code == abi::OK { Ok(()) } else { Err(format!("the host's all-reduce failed (code {code})")) }
    }

    fn all_gather(&self, data: &[f32]) -> Result<Vec<f32>, String> {
        let mut out = vec![0.0f32; data.len() * self.world()];
        // SAFETY: `data` is readable and `out` writable for `world · len` floats.
        let code = unsafe { (self.0.all_gather)(self.0.ctx, data.as_ptr(), data.len(), out.as_mut_ptr()) };
        if code == abi::OK { Ok(out) } else { Err(format!("the host's all-gather failed (code {code})")) }
    }
}

/// Forwards this plugin's `log` records to the host's callback.
struct HostLogger(LogFn);

impl log::Log for HostLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let text = format!("{}", record.args());
        (self.0)(record.level() as u32, Bytes { ptr: text.as_ptr(), len: text.len() });
    }
    fn flush(&self) {}
}

unsafe extern "C" fn describe<T: PretextTask>(out: *mut OwnedBuf, err: *mut OwnedBuf) -> i32 {
    install_panic_hook();
    // SAFETY: the host passes writable buffers.
    unsafe {
        guard(err, || {
            let json = serde_json::to_vec(&Session::<T>::describe()).map_err(|e| TaskError::State(e.to_string()))?;
            put(out, json);
            Ok(())
        })
    }
}

unsafe extern "C" fn create<T: PretextTask>(
    config: Bytes,
    log: Option<LogFn>,
    ranks: *const Collectives,
    out: *mut SessionPtr,
    err: *mut OwnedBuf,
) -> i32 {
    install_panic_hook();
    if let Some(log_fn) = log
        && log::set_boxed_logger(Box::new(HostLogger(log_fn))).is_ok()
    {
        log::set_max_level(log::LevelFilter::Info);
    }
    // SAFETY: the host passes a readable config and writable outputs.
    unsafe {
        guard(err, || {
            let config: SessionConfig = serde_json::from_slice(slice(config))
                .map_err(|e| TaskError::Config(format!("the session configuration is not valid: {e}")))?;
            // SAFETY: the host passes null or a readable table, copied here.
            let comm = ranks.as_ref().map(|r| std::sync::Arc::new(HostRanks(*r)) as Comm);
            let session = Box::new(Session::<T>::with_comm(config, comm)?);
            if out.is_null() {
                return Err(TaskError::Input("null output pointer".into()));
            }
            out.write(Box::into_raw(session).cast());
            Ok(())
        })
    }
}

unsafe extern "C" fn prepare<T: PretextTask>(
    s: SessionPtr,
    batch: ImagesRef,
    seeds: *const u64,
    out: *mut PreparedPtr,
    err: *mut OwnedBuf,
) -> i32 {
    // SAFETY: the host passes a live session, a readable batch, `batch.n` readable seeds and
    // writable outputs.
    unsafe {
        guard(err, || {
            if seeds.is_null() && batch.n > 0 {
                return Err(TaskError::Input("null seeds".into()));
            }
            let seeds = if batch.n == 0 { &[][..] } else { std::slice::from_raw_parts(seeds, batch.n) };
            let views = session::<T>(s)?.prepare(&images(batch)?, seeds)?;
            if out.is_null() {
                return Err(TaskError::Input("null output pointer".into()));
            }
            out.write(Box::into_raw(Box::new(views)).cast());
            Ok(())
        })
    }
}

unsafe extern "C" fn free_prepared(prepared: PreparedPtr) {
    if !prepared.is_null() {
        // SAFETY: the pointer came from `Box::into_raw` in `prepare` and is freed once.
        drop(unsafe { Box::from_raw(prepared.cast::<Views>()) });
    }
}

unsafe extern "C" fn train_step<T: PretextTask>(
    s: SessionPtr,
    prepared: PreparedPtr,
    info: StepInfo,
    out: *mut OwnedBuf,
    err: *mut OwnedBuf,
) -> i32 {
    let StepInfo { step, total_steps, epoch, epochs, lr } = info;
    let schedule = Schedule { step, total_steps, epoch, epochs, lr };
    // SAFETY: the host passes a live session, prepared views from `prepare` it still owns,
    // and writable outputs.
    unsafe {
        guard(err, || {
            let views =
                prepared.cast::<Views>().as_ref().ok_or_else(|| TaskError::Input("null prepared batch".into()))?;
            let metrics = session::<T>(s)?.train_step(views, schedule)?;
            put(out, serde_json::to_vec(&metrics).map_err(|e| TaskError::State(e.to_string()))?);
            Ok(())
        })
    }
}

unsafe extern "C" fn embed<T: PretextTask>(
    s: SessionPtr,
    batch: ImagesRef,
    out: *mut OwnedBuf,
    err: *mut OwnedBuf,
) -> i32 {
    // SAFETY: as for `prepare`.
    unsafe {
        guard(err, || {
            put(out, session::<T>(s)?.embed(&images(batch)?)?);
            Ok(())
        })
    }
}

unsafe extern "C" fn sample<T: PretextTask>(
    s: SessionPtr,
    batch: ImagesRef,
    seed: u64,
    out: *mut OwnedBuf,
    err: *mut OwnedBuf,
) -> i32 {
    // SAFETY: as for `prepare`.
    unsafe {
        guard(err, || {
            put(out, session::<T>(s)?.sample(&images(batch)?, seed)?);
            Ok(())
        })
    }
}

unsafe extern "C" fn save_state<T: PretextTask>(s: SessionPtr, out: *mut OwnedBuf, err: *mut OwnedBuf) -> i32 {
    // SAFETY: as for `prepare`.
    unsafe {
        guard(err, || {
            put(out, session::<T>(s)?.save_state()?);
            Ok(())
        })
    }
}

unsafe extern "C" fn load_state<T: PretextTask>(s: SessionPtr, state: Bytes, err: *mut OwnedBuf) -> i32 {
    // SAFETY: as for `prepare`; `state` is readable for the call.
    unsafe { guard(err, || session::<T>(s)?.load_state(slice(state))) }
}

unsafe extern "C" fn destroy<T: PretextTask>(s: SessionPtr) {
    if !s.is_null() {
        // A panic in a task's Drop must not unwind into the host.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: the pointer came from `Box::into_raw` in `create` and is destroyed once.
            drop(unsafe { Box::from_raw(s.cast::<Session<T>>()) });
        }));
    }
}

/// The declaration `export_plugin!` exports for task `T`.
pub const fn declaration<T: PretextTask>() -> PluginDecl {
    PluginDecl {
        magic: abi::MAGIC,
        abi_version: abi::ABI_VERSION,
        capabilities: if cfg!(feature = "cuda") { abi::CAP_CUDA } else { 0 },
        core_version: Bytes { ptr: crate::CORE_VERSION.as_ptr(), len: crate::CORE_VERSION.len() },
        vtable: VTable {
            describe: describe::<T>,
            create: create::<T>,
            prepare: prepare::<T>,
            free_prepared,
            train_step: train_step::<T>,
            embed: embed::<T>,
            sample: sample::<T>,
            save_state: save_state::<T>,
            load_state: load_state::<T>,
            destroy: destroy::<T>,
            free_buf,
        },
    }
}

/// Turns a [`PretextTask`] into a plugin: `pretext_sdk::export_plugin!(MyTask);` in a crate
/// built as a `cdylib`.
#[macro_export]
macro_rules! export_plugin {
    ($task:ty) => {
        /// The plugin's entry point, found by the Pretext host.
        #[unsafe(no_mangle)]
        pub extern "C" fn pretext_plugin_v1() -> *const $crate::task::abi::PluginDecl {
            static DECL: $crate::task::abi::PluginDecl = $crate::task::export::declaration::<$task>();
            &DECL
        }
    };
}
