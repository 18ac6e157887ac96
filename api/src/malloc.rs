//! glibc malloc settings for the long-running `weir coordinator` and `weir worker`
//! processes, set once at start (before any thread).
//!
//! With glibc's defaults a process keeps the memory of its peaks: the threshold above which
//! an allocation gets pages of its own from the kernel rises with every large block freed
//! (up to 32 MiB), so that after one burst of large request bodies the next bursts are
//! served from the heap and stay resident after they are freed; and each of up to 8 arenas
//! a core (taken by threads as they come: actix, tokio and librdkafka's threads of every
//! Kafka client a partition starts) holds freed pages of its own. Soak runs measured
//! coordinators (18–20 MiB before) at 35–49 MiB after two API floods with the defaults,
//! and at 27–29 MiB with the settings below (docs/BENCHMARKS.md, "Soak and chaos run").
//! mimalloc as the global allocator measured worse (workers at about 100 MiB within a
//! minute, against 27 MiB). An operator's `GLIBC_TUNABLES` or
//! `MALLOC_ARENA_MAX` takes precedence: nothing is set when either is present.

/// Arenas at most: threads share them rather than each keeping freed pages of its own.
pub const MALLOC_ARENAS_MAX: i32 = 2;
/// Allocations of this many bytes or more get pages of their own, returned to the kernel
/// when freed; fixed, so glibc does not raise it after large blocks are freed.
pub const MALLOC_MMAP_THRESHOLD_BYTES: i32 = 128 * 1024;
/// Free memory at the top of the heap beyond this is returned to the kernel; fixed, as
/// glibc would otherwise raise it with the mmap threshold.
pub const MALLOC_TRIM_THRESHOLD_BYTES: i32 = 256 * 1024;

/// Applies the settings above, unless the environment sets glibc's own; a no-op where the
/// C library is not glibc. Call before starting any thread.
pub fn limit_retained_memory() {
    let operator_chose = ["GLIBC_TUNABLES", "MALLOC_ARENA_MAX"]
        .iter()
        .any(|name| std::env::var_os(name).is_some());
    if operator_chose {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes parameters of glibc's allocator; it is called before
    // the process starts any thread, and a parameter it refuses leaves the default.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS_MAX);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD_BYTES);
    }
}
