//! Safe host-side handles to a plugin's session and to batches it prepared.

use std::sync::Arc;

use crate::data::ByteImages;
use crate::dist::Ranks;
use crate::task::abi::{self, Bytes, Collectives, ImagesRef, OwnedBuf, PreparedPtr, SessionPtr, StepInfo};
use crate::task::wire::{Matrix, SampleImage, decode_matrices, decode_samples};
use crate::task::{SessionConfig, StepMetrics};

use super::library::take_buf;
use super::{CallError, Plugin};

extern "C" fn log_to_host(level: u32, message: Bytes) {
    let text = if message.ptr.is_null() {
        String::new()
    } else {
        // SAFETY: the plugin passes a readable UTF-8 slice valid for the call.
        String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(message.ptr, message.len) }).into_owned()
    };
    let level = match level {
        1 => log::Level::Error,
        2 => log::Level::Warn,
        3 => log::Level::Info,
        4 => log::Level::Debug,
        _ => log::Level::Trace,
    };
    log::log!(target: "plugin", level, "{text}");
}

/// `Collectives::all_reduce_sum` for the plugins: `ctx` is the session's `Ranks`.
unsafe extern "C" fn all_reduce_sum(ctx: *const std::ffi::c_void, data: *mut f32, len: usize) -> i32 {
    // SAFETY: `ctx` is the `Arc<Ranks>` the session's handle keeps alive, and the plugin
    // passes `len` writable floats at `data` for the call.
    let (ranks, data) = unsafe { (&*ctx.cast::<Ranks>(), std::slice::from_raw_parts_mut(data, len)) };
    ranks.all_reduce_sum(data);
    abi::OK
}

/// `Collectives::all_gather` for the plugins.
unsafe extern "C" fn all_gather(ctx: *const std::ffi::c_void, data: *const f32, len: usize, out: *mut f32) -> i32 {
    // SAFETY: as above; `out` has room for `world · len` floats.
    let ranks = unsafe { &*ctx.cast::<Ranks>() };
    // SAFETY: the plugin passes `len` readable floats at `data`.
    let gathered = ranks.all_gather(unsafe { std::slice::from_raw_parts(data, len) });
    // SAFETY: `out` is writable for `world · len` floats, the length of `gathered`.
    unsafe { std::ptr::copy_nonoverlapping(gathered.as_ptr(), out, gathered.len()) };
    abi::OK
}

struct Handle {
    plugin: Plugin,
    ptr: SessionPtr,
    /// Kept alive for the plugin's collectives, which point at it.
    _ranks: Option<Arc<Ranks>>,
}

// SAFETY: a session is created for use from several threads: `prepare` is documented
// thread-safe and everything else in the plugin's `Session` sits behind its own mutex.
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from this plugin's `create` and is destroyed once, here.
        unsafe { (self.plugin.decl.vtable.destroy)(self.ptr) };
    }
}

/// A live session inside a plugin. Clones share it; it is destroyed with the last clone.
#[derive(Clone)]
pub struct PluginSession {
    handle: Arc<Handle>,
}

/// A batch a plugin prepared, waiting for `train_step`. Freed by the plugin when dropped.
pub struct PreparedBatch {
    handle: Arc<Handle>,
    ptr: PreparedPtr,
    pub images: usize,
}

// SAFETY: prepared views are plain owned data inside the plugin, not tied to a thread.
unsafe impl Send for PreparedBatch {}

impl Drop for PreparedBatch {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from this plugin's `prepare` and is freed once, here.
        unsafe { (self.handle.plugin.decl.vtable.free_prepared)(self.ptr) };
    }
}

fn images_ref(images: &ByteImages) -> ImagesRef {
    ImagesRef { data: images.data.as_ptr(), n: images.n, c: images.c, h: images.h, w: images.w }
}

impl PluginSession {
    /// Creates a session; the plugin opens its own device from `config.device`.
    pub fn create(plugin: &Plugin, config: &SessionConfig) -> Result<Self, CallError> {
        Self::create_ranked(plugin, config, None)
    }

    /// Creates a session that is one rank of a data-parallel run (when `ranks` has more
    /// than one process, or is MPI at all): its steps average with the other ranks'.
    pub fn create_ranked(
        plugin: &Plugin,
        config: &SessionConfig,
        ranks: Option<Arc<Ranks>>,
    ) -> Result<Self, CallError> {
        let json = serde_json::to_vec(config).map_err(|e| CallError::Failed {
            plugin: plugin.name().to_string(),
            action: "create a session",
            message: e.to_string(),
        })?;
        let mut ptr: SessionPtr = std::ptr::null_mut();
        let mut err = OwnedBuf::EMPTY;
        let config = Bytes { ptr: json.as_ptr(), len: json.len() };
        let ranks = ranks.filter(|r| r.is_distributed());
        #[allow(clippy::cast_possible_truncation)]
        let table = ranks.as_ref().map(|r| Collectives {
            ctx: Arc::as_ptr(r).cast(),
            rank: r.rank() as u32,
            world: r.world() as u32,
            all_reduce_sum,
            all_gather,
        });
        let table_ptr = table.as_ref().map_or(std::ptr::null(), std::ptr::from_ref);
        // SAFETY: the config bytes and the table outlive the call, both outputs are writable,
        // and the table's context lives in the handle as long as the session.
        let code =
            unsafe { (plugin.decl.vtable.create)(config, Some(log_to_host), table_ptr, &raw mut ptr, &raw mut err) };
        let message = String::from_utf8_lossy(&take_buf(plugin.decl, err)).into_owned();
        check(plugin, "create a session", code, message)?;
        if ptr.is_null() {
            return Err(CallError::BadOutput {
                plugin: plugin.name().to_string(),
                action: "create a session",
                message: "null session".into(),
            });
        }
        Ok(Self { handle: Arc::new(Handle { plugin: plugin.clone(), ptr, _ranks: ranks }) })
    }

    pub fn plugin(&self) -> &Plugin {
        &self.handle.plugin
    }

    /// Runs one fallible call that fills an output buffer.
    fn call(
        &self,
        action: &'static str,
        f: impl FnOnce(*mut OwnedBuf, *mut OwnedBuf) -> i32,
    ) -> Result<Vec<u8>, CallError> {
        let mut out = OwnedBuf::EMPTY;
        let mut err = OwnedBuf::EMPTY;
        let code = f(&raw mut out, &raw mut err);
        let decl = self.handle.plugin.decl;
        let out = take_buf(decl, out);
        let message = String::from_utf8_lossy(&take_buf(decl, err)).into_owned();
        check(&self.handle.plugin, action, code, message)?;
        Ok(out)
    }

    /// Makes a batch's pretext inputs, image `i` from `seeds[i]`; may run on any thread,
    /// also during `train_step`.
    pub fn prepare(&self, images: &ByteImages, seeds: &[u64]) -> Result<PreparedBatch, CallError> {
        if seeds.len() != images.n {
            return Err(self.bad("prepare a batch", &format!("{} images came with {} seeds", images.n, seeds.len())));
        }
        let mut ptr: PreparedPtr = std::ptr::null_mut();
        let h = &self.handle;
        self.call("prepare a batch", |_, err| {
            // SAFETY: the session is live, the images and their seeds outlive the call, the
            // outputs are writable.
            unsafe { (h.plugin.decl.vtable.prepare)(h.ptr, images_ref(images), seeds.as_ptr(), &raw mut ptr, err) }
        })?;
        Ok(PreparedBatch { handle: Arc::clone(&self.handle), ptr, images: images.n })
    }

    /// One training step; a non-finite loss is [`CallError::NonFinite`] and changes nothing.
    pub fn train_step(&self, batch: &PreparedBatch, info: StepInfo) -> Result<StepMetrics, CallError> {
        let h = &self.handle;
        let out = self.call("run a training step", |out, err| {
            // SAFETY: the session is live and `batch` is a live prepared batch of it.
            unsafe { (h.plugin.decl.vtable.train_step)(h.ptr, batch.ptr, info, out, err) }
        })?;
        serde_json::from_slice(&out).map_err(|e| self.bad("run a training step", &e))
    }

    /// Backbone features per stage (`features` is the last stage).
    pub fn embed(&self, images: &ByteImages) -> Result<Vec<Matrix>, CallError> {
        let h = &self.handle;
        let out = self.call("embed images", |out, err| {
            // SAFETY: the session is live and the images outlive the call.
            unsafe { (h.plugin.decl.vtable.embed)(h.ptr, images_ref(images), out, err) }
        })?;
        decode_matrices(&out).map_err(|e| self.bad("embed images", &e))
    }

    /// The task's pretext inputs for these images.
    pub fn sample(&self, images: &ByteImages, seed: u64) -> Result<Vec<SampleImage>, CallError> {
        let h = &self.handle;
        let out = self.call("make samples", |out, err| {
            // SAFETY: the session is live and the images outlive the call.
            unsafe { (h.plugin.decl.vtable.sample)(h.ptr, images_ref(images), seed, out, err) }
        })?;
        decode_samples(&out).map_err(|e| self.bad("make samples", &e))
    }

    pub fn save_state(&self) -> Result<Vec<u8>, CallError> {
        let h = &self.handle;
        self.call("save its state", |out, err| {
            // SAFETY: the session is live and the outputs are writable.
            unsafe { (h.plugin.decl.vtable.save_state)(h.ptr, out, err) }
        })
    }

    pub fn load_state(&self, state: &[u8]) -> Result<(), CallError> {
        let h = &self.handle;
        let bytes = Bytes { ptr: state.as_ptr(), len: state.len() };
        self.call("load a checkpoint", |_, err| {
            // SAFETY: the session is live and `state` outlives the call.
            unsafe { (h.plugin.decl.vtable.load_state)(h.ptr, bytes, err) }
        })
        .map(drop)
    }

    fn bad(&self, action: &'static str, e: &dyn std::fmt::Display) -> CallError {
        CallError::BadOutput { plugin: self.handle.plugin.name().to_string(), action, message: e.to_string() }
    }
}

fn check(plugin: &Plugin, action: &'static str, code: i32, message: String) -> Result<(), CallError> {
    let name = plugin.name().to_string();
    match code {
        abi::OK => Ok(()),
        abi::PANIC => Err(CallError::Panicked { plugin: name, action, message }),
        abi::NON_FINITE => Err(CallError::NonFinite { plugin: name, message }),
        _ => Err(CallError::Failed { plugin: name, action, message }),
    }
}
