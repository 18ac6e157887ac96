//! glibc malloc settings for the long-running `weir coordinator` and `weir worker`
//! processes, set once at start (before any thread), and a thread that returns the free
//! pages inside malloc's heaps to the kernel now and then ([`start_trimming`]).
//!
//! With glibc's defaults a process keeps the memory of its peaks: the threshold above which
//! an allocation gets pages of its own from the kernel rises with every large block freed
//! (up to 32 MiB), so that after one burst of large request bodies the next bursts are
//! served from the heap and stay resident after they are freed; and each of up to 8 arenas
//! a core (taken by threads as they come: actix, tokio and librdkafka's threads of every
//! Kafka client a partition starts) holds freed pages of its own. Soak runs measured
//! coordinators (18–20 MiB before) at 35–49 MiB after two API floods with the defaults,
//! and at 26–29 MiB with the settings below (docs/BENCHMARKS.md, "Soak and chaos run").
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

/// How often [`start_trimming`]'s thread returns free heap pages to the kernel.
pub const MALLOC_TRIM_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Starts a thread that calls glibc's `malloc_trim(0)` every [`MALLOC_TRIM_INTERVAL`]: it
/// returns every whole free page inside each arena to the kernel, where glibc by itself
/// only ever shrinks the top of a heap. A worker that took over another's partitions and
/// handed them back kept the freed memory of their Kafka clients and buffers between
/// live blocks (its RSS stayed 1.6 MiB up in the soak run); a coordinator after a flood
/// the same. A no-op where the C library is not glibc.
pub fn start_trimming() -> std::io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    std::thread::Builder::new()
        .name("weir-malloc-trim".into())
        .spawn(|| loop {
            std::thread::sleep(MALLOC_TRIM_INTERVAL);
            // SAFETY: malloc_trim takes each arena's lock and only releases free pages.
            unsafe {
                libc::malloc_trim(0);
            }
        })?;
    Ok(())
}

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
