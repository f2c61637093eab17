//! Process-wide malloc settings for training, applied once by the host at start-up.
//!
//! Every candle op allocates an activation-sized buffer. glibc serves large requests with
//! fresh `mmap`s and returns them with `munmap`, so each step paid page faults, page
//! zeroing and cross-core TLB shootdowns: more system time than compute (measured in
//! issue 7). Raising the mmap threshold and the trim threshold keeps freed buffers in the
//! heap for reuse. The plugins allocate through the same glibc, so this one call covers the
//! whole process. It only tunes; it never changes what is computed.

/// Keeps freed buffers up to 32 MiB for reuse instead of returning them to the kernel.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD: libc::c_int = 32 << 20;
        // SAFETY: mallopt only sets glibc malloc parameters, is thread-safe, and takes plain
        // integers; both values are within the ranges glibc documents.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
        }
    }
}
