//! How fast the disk under the members' data directories acknowledges an fsync right now.
//! Every Raft write waits for at least one, so on a machine shared with other work the
//! figure explains much of the difference between two runs.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// fsyncs in one probe; the median of these is reported.
pub const FSYNC_PROBE_WRITES: usize = 20;
/// Bytes written before each fsync: one page, as a small log append is.
pub const FSYNC_PROBE_BYTES: usize = 4096;

/// The median time of a 4 KiB write followed by `fdatasync` in `dir`, or None when the
/// probe file cannot be written. Blocks for about `FSYNC_PROBE_WRITES` fsyncs.
pub fn fsync_probe(dir: &Path) -> Option<Duration> {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).ok()?;
    let page = [0x5au8; FSYNC_PROBE_BYTES];
    let mut samples = Vec::with_capacity(FSYNC_PROBE_WRITES);
    for _ in 0..FSYNC_PROBE_WRITES {
        // Rewrite the same page, as a preallocated log does, so the file's size (metadata)
        // does not change and only the data is synced.
        #[allow(clippy::disallowed_methods)] // a wall-clock measurement, not simulated logic
        let started = Instant::now();
        file.seek(SeekFrom::Start(0)).ok()?;
        file.write_all(&page).ok()?;
        file.sync_data().ok()?;
        samples.push(started.elapsed());
    }
    let _ = std::fs::remove_file(&path);
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied()
}
