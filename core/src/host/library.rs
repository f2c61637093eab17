//! Loading one plugin library and validating its declaration.

use std::path::{Path, PathBuf};

use crate::task::Description;
use crate::task::abi::{self, EntryFn, OwnedBuf, PluginDecl};

use super::LoadError;

/// A loaded, validated plugin. Cheap to clone; its library stays loaded for the process.
#[derive(Clone, Debug)]
pub struct Plugin {
    pub path: PathBuf,
    pub description: Description,
    pub abi_version: u32,
    pub(super) decl: &'static PluginDecl,
}

impl Plugin {
    pub fn name(&self) -> &str {
        &self.description.info.name
    }

    pub fn version(&self) -> &str {
        &self.description.info.version
    }

    pub fn cuda(&self) -> bool {
        self.decl.capabilities & abi::CAP_CUDA != 0
    }
}

/// Takes a plugin-allocated buffer as a `Vec`, freeing it with the plugin's allocator.
pub(super) fn take_buf(decl: &PluginDecl, buf: OwnedBuf) -> Vec<u8> {
    if buf.ptr.is_null() {
        return Vec::new();
    }
    // SAFETY: the plugin filled `buf` with `len` initialised bytes that stay valid until
    // we hand the buffer back to its `free_buf`, which we do right after copying.
    let bytes = unsafe { std::slice::from_raw_parts(buf.ptr, buf.len) }.to_vec();
    // SAFETY: the buffer came from this plugin and is freed exactly once.
    unsafe { (decl.vtable.free_buf)(buf) };
    bytes
}

/// Loads the plugin at `path`, checking magic, ABI version, core version and that it
/// describes itself.
pub fn load(path: &Path) -> Result<Plugin, LoadError> {
    let path = path.to_path_buf();
    // SAFETY: loading a library runs its initialisers. We only load files the user named or
    // that sit in plugin directories, which is the trust model of every plugin system.
    let library = unsafe { libloading::Library::new(&path) }
        .map_err(|e| LoadError::NotALibrary { path: path.clone(), reason: loader_reason(&path, &e.to_string()) })?;
    // The library is never unloaded: sessions, buffers and log callbacks may outlive us.
    let library: &'static libloading::Library = Box::leak(Box::new(library));
    // SAFETY: the symbol's type is the one every plugin exports; if a foreign library
    // exports the name with another type, the magic check below catches it before use.
    let entry = unsafe { library.get::<EntryFn>(abi::SYMBOL.as_bytes()) }
        .map_err(|_| LoadError::NoEntryPoint { path: path.clone(), symbol: abi::SYMBOL })?;
    // SAFETY: calling the entry point returns a pointer to static data and has no effects.
    let decl_ptr = unsafe { entry() };
    if decl_ptr.is_null() || !decl_ptr.cast::<u64>().is_aligned() {
        return Err(LoadError::BadMagic { path });
    }
    // SAFETY: the pointer is non-null and aligned; the magic is the first 8 bytes of every
    // declaration of every ABI version, so reading it is valid for any Pretext plugin.
    let magic = unsafe { decl_ptr.cast::<u64>().read() };
    if magic != abi::MAGIC {
        return Err(LoadError::BadMagic { path });
    }
    // SAFETY: the ABI version follows the magic in every ABI version.
    let abi_version = unsafe { std::ptr::addr_of!((*decl_ptr).abi_version).read() };
    if abi_version != abi::ABI_VERSION {
        return Err(LoadError::AbiMismatch { path, found: abi_version, expected: abi::ABI_VERSION });
    }
    // SAFETY: magic and version match, so the pointee is a `PluginDecl` of our layout, in
    // static memory of a library we never unload.
    let decl: &'static PluginDecl = unsafe { &*decl_ptr };
    // SAFETY: `core_version` points to a static UTF-8 string of the plugin.
    let core = unsafe { std::slice::from_raw_parts(decl.core_version.ptr, decl.core_version.len) };
    let core = String::from_utf8_lossy(core).into_owned();
    if core != crate::CORE_VERSION {
        return Err(LoadError::CoreMismatch { path, found: core, expected: crate::CORE_VERSION.to_string() });
    }
    let plugin_cuda = decl.capabilities & abi::CAP_CUDA != 0;
    if plugin_cuda != cfg!(feature = "cuda") {
        let with = |yes: bool| if yes { "with" } else { "without" };
        return Err(LoadError::Capability { path, plugin: with(plugin_cuda), host: with(!plugin_cuda) });
    }
    let mut out = OwnedBuf::EMPTY;
    let mut err = OwnedBuf::EMPTY;
    // SAFETY: `describe` takes two writable buffers, which these are.
    let code = unsafe { (decl.vtable.describe)(&raw mut out, &raw mut err) };
    let out = take_buf(decl, out);
    let err = take_buf(decl, err);
    if code != abi::OK {
        return Err(LoadError::Describe { path, reason: String::from_utf8_lossy(&err).into_owned() });
    }
    let description: Description =
        serde_json::from_slice(&out).map_err(|e| LoadError::Describe { path: path.clone(), reason: e.to_string() })?;
    Ok(Plugin { path, description, abi_version, decl })
}

/// The dynamic loader's reason, without the path it repeats (our message names it already).
fn loader_reason(path: &Path, message: &str) -> String {
    let line = message.lines().next().unwrap_or(message);
    let shown = path.display().to_string();
    line.rsplit_once(&format!("{shown}: ")).map_or(line, |(_, rest)| rest).to_string()
}
