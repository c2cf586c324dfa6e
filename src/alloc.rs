//! Allocator tuning at process start: the one documented `unsafe` exception besides the
//! NVML boundary and `malloc_trim` (in `collect::comfyui`). glibc's `mallopt` has no safe
//! wrapper. [`tune`] runs first thing in `main`'s `run()`, before the async runtime and
//! its threads exist, so every arena and every thread sees the same settings.

/// Allocations of at least this size get their own mapping, returned to the OS on free.
const MMAP_THRESHOLD_BYTES: i32 = 1 << 20;

/// At most this many malloc arenas. glibc creates up to 8 per core, one per thread that
/// meets contention, and each keeps its own free memory. The runtime has two workers
/// (plus short-lived blocking threads), so two arenas avoid lock contention between
/// them while the rest share. Measured on the release build: `MALLOC_ARENA_MAX=1` or `2`
/// cut idle anonymous RSS from about 4.5 MB to 3.5-4.0 MB.
const ARENA_MAX: i32 = 2;

/// Sets the allocator tunables (once per process; later calls do nothing).
///
/// - The mmap threshold is pinned. By default glibc raises it to the size of the
///   largest mapping freed so far (up to 32 MiB): after the first big ComfyUI
///   `/history` body, the next ones land in a thread's heap, whose top `malloc_trim`
///   does not return, so every tokio worker that ever read a big page kept one body's
///   worth of memory. A fixed threshold also keeps the trim threshold at its default,
///   so freed heap tops are returned on free. Large allocations are rare (bodies, big
///   scrapes), so the extra mmap calls cost nothing measurable.
/// - The number of arenas is capped at [`ARENA_MAX`] (see there).
///
/// An environment setting (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`) is overridden.
#[allow(unsafe_code)] // FFI, see the crate root
pub fn tune() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes allocator tunables, takes no pointers and is
        // thread-safe; an unsupported parameter is refused with a 0 return, not UB.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
            libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn tune_is_idempotent_and_allocation_still_works() {
        super::tune();
        super::tune();
        // A block above the pinned threshold is mapped and unmapped without trouble.
        let big = vec![7u8; 4 << 20];
        assert_eq!(
            big.iter().map(|&b| b as usize).sum::<usize>(),
            7 * (4 << 20)
        );
    }
}
