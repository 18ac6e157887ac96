//! The simulated disk under a coordinator's redb database.
//!
//! redb reaches storage only through its `StorageBackend` trait, so the simulation gives it
//! an in-memory disk that distinguishes what a real disk distinguishes: bytes that are
//! durable (written and then `sync_data`ed) and writes that are still pending in the page
//! cache. A crash then decides what survives:
//!
//! - a process crash keeps every pending write (the kernel still holds them),
//! - a power loss drops every pending write, or keeps a seeded prefix of them (a disk that
//!   wrote back part of its cache, in order, before the lights went out).
//!
//! The disk is shared (`SimDisk` is a cheap handle on one `Arc`), so it outlives the node
//! that crashed and the restarted node reopens the same bytes. Every `open` starts a new
//! incarnation and fences the previous one: a crashed node's leftover redb handle gets I/O
//! errors instead of writing into its successor's disk.
//!
//! A power cut can also be scheduled at an exact operation count, so unit tests can stop a
//! redb commit half-way and check that reopening finds the old or the new state.

use rand::Rng;
use redb::StorageBackend;
use std::sync::{Arc, Mutex, MutexGuard};

/// Pending (unsynced) writes a disk holds before it refuses more; a real page cache is
/// bounded too, and redb syncs far more often than this.
pub const DISK_PENDING_WRITES_MAX: usize = 65_536;

/// What a crash does to writes that were not yet synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// The process died but the machine did not: the page cache reaches the disk.
    KeepUnsynced,
    /// Power loss: nothing after the last `sync_data` survives.
    DropUnsynced,
    /// Power loss during write-back: a seeded prefix of the pending writes survives.
    KeepUnsyncedPrefix,
}

/// What a crash kept and lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashReport {
    /// Pending writes (including length changes) at the moment of the crash.
    pub pending: usize,
    /// How many of them became durable.
    pub kept: usize,
}

/// Counters of one disk, for traces and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// Writes accepted (not counting length changes).
    pub writes: u64,
    /// Successful `sync_data` calls.
    pub syncs: u64,
    /// Crashes of whatever process used the disk.
    pub crashes: u64,
    /// Unsynced writes crashes threw away.
    pub pending_lost: u64,
}

#[derive(Debug)]
enum PendingWrite {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

impl PendingWrite {
    fn apply(&self, bytes: &mut Vec<u8>) {
        match self {
            PendingWrite::Write { offset, data } => write_at(bytes, *offset, data),
            PendingWrite::SetLen(len) => bytes.resize(*len as usize, 0),
        }
    }
}

fn write_at(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = offset as usize;
    let end = start + data.len();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[start..end].copy_from_slice(data);
}

#[derive(Debug, Default)]
struct DiskState {
    /// What survives any crash.
    durable: Vec<u8>,
    /// What readers see: `durable` with every pending write applied.
    current: Vec<u8>,
    /// Writes since the last sync, oldest first.
    pending: Vec<PendingWrite>,
    /// Bumped by every open and crash; handles of older incarnations are fenced.
    incarnation: u64,
    /// Mutating operations (write, set_len, sync) since the power cut was scheduled.
    ops: u64,
    /// When set, the operation with this count and every later one fails until a crash.
    power_cut_at_op: Option<u64>,
    stats: DiskStats,
}

/// A simulated disk holding one redb database. Cloning shares the disk.
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<DiskState>>,
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> Self {
        SimDisk::default()
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        // The simulation runs on one thread; a poisoned lock means a panic already failed it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A backend for a new process using this disk; earlier handles are fenced from now on.
    pub fn open(&self) -> SimDiskHandle {
        let mut state = self.lock();
        state.incarnation += 1;
        SimDiskHandle {
            disk: self.clone(),
            incarnation: state.incarnation,
        }
    }

    /// Crashes whatever process uses the disk: its handle is fenced and pending writes are
    /// kept or lost as `mode` says, choosing a prefix with `rng` when asked to.
    pub fn crash(&self, mode: CrashMode, rng: &mut impl Rng) -> CrashReport {
        let mut state = self.lock();
        state.incarnation += 1;
        state.power_cut_at_op = None;
        state.ops = 0;
        let pending = std::mem::take(&mut state.pending);
        let kept = match mode {
            CrashMode::KeepUnsynced => pending.len(),
            CrashMode::DropUnsynced => 0,
            CrashMode::KeepUnsyncedPrefix => rng.gen_range(0..=pending.len()),
        };
        let DiskState { durable, .. } = &mut *state;
        for write in &pending[..kept] {
            write.apply(durable);
        }
        state.current = state.durable.clone();
        state.stats.crashes += 1;
        state.stats.pending_lost += (pending.len() - kept) as u64;
        CrashReport {
            pending: pending.len(),
            kept,
        }
    }

    /// Makes the `after_ops`-th mutating operation from now (0 = the next one) and every
    /// later one fail, as if power went out right there; `crash` then decides what survives.
    pub fn schedule_power_cut(&self, after_ops: u64) {
        let mut state = self.lock();
        state.ops = 0;
        state.power_cut_at_op = Some(after_ops);
    }

    /// Whether a scheduled power cut has happened.
    pub fn power_is_cut(&self) -> bool {
        let state = self.lock();
        state.power_cut_at_op.is_some_and(|at| state.ops >= at)
    }

    /// Writes not yet synced.
    pub fn pending_writes(&self) -> usize {
        self.lock().pending.len()
    }

    /// The disk's counters.
    pub fn stats(&self) -> DiskStats {
        self.lock().stats
    }
}

/// One process's view of a `SimDisk`: redb's `StorageBackend`. Fenced (every call fails)
/// once the disk crashed or was opened again.
#[derive(Debug)]
pub struct SimDiskHandle {
    disk: SimDisk,
    incarnation: u64,
}

fn io_error(message: &str) -> std::io::Error {
    std::io::Error::other(message.to_string())
}

impl SimDiskHandle {
    /// Locks the disk for a read, failing if this handle was fenced.
    fn live(&self) -> std::io::Result<MutexGuard<'_, DiskState>> {
        let state = self.disk.lock();
        if state.incarnation != self.incarnation {
            return Err(io_error("disk handle fenced: its process crashed"));
        }
        Ok(state)
    }

    /// Locks the disk for a mutating operation, counting it toward a scheduled power cut.
    fn live_mut(&self) -> std::io::Result<MutexGuard<'_, DiskState>> {
        let mut state = self.live()?;
        if state.power_cut_at_op.is_some_and(|at| state.ops >= at) {
            return Err(io_error("power cut"));
        }
        state.ops += 1;
        Ok(state)
    }

    /// Locks the disk for a write that will stay pending until the next sync.
    fn live_pending(&self) -> std::io::Result<MutexGuard<'_, DiskState>> {
        let state = self.live_mut()?;
        if state.pending.len() >= DISK_PENDING_WRITES_MAX {
            return Err(io_error("too many unsynced writes"));
        }
        Ok(state)
    }
}

impl StorageBackend for SimDiskHandle {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.live()?.current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        let state = self.live()?;
        let start = offset as usize;
        let end = start + out.len();
        if end > state.current.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("read {start}..{end} past the end {}", state.current.len()),
            ));
        }
        out.copy_from_slice(&state.current[start..end]);
        Ok(())
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        let mut state = self.live_pending()?;
        state.current.resize(len as usize, 0);
        state.pending.push(PendingWrite::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> std::io::Result<()> {
        let mut state = self.live_mut()?;
        let pending = std::mem::take(&mut state.pending);
        for write in &pending {
            write.apply(&mut state.durable);
        }
        debug_assert!(
            state.durable == state.current,
            "a sync makes what is read durable"
        );
        state.stats.syncs += 1;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut state = self.live_pending()?;
        write_at(&mut state.current, offset, data);
        state.pending.push(PendingWrite::Write {
            offset,
            data: data.to_vec(),
        });
        state.stats.writes += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use redb::{Database, Durability, ReadableDatabase, ReadableTableMetadata, TableDefinition};

    const TABLE: TableDefinition<u64, u64> = TableDefinition::new("t");
    /// Commits per crash case; enough for redb to reuse pages and grow the file.
    const COMMITS_PER_CASE: u64 = 12;
    /// Seeded crash cases the redb test runs.
    const CRASH_CASES: u64 = 300;
    /// Disk operations (writes, length changes, syncs) a small redb commit takes, about;
    /// power cuts are drawn over this many per commit so nearly all land inside the case.
    const OPS_PER_COMMIT_ABOUT: u64 = 6;

    #[test]
    fn unsynced_writes_follow_the_crash_mode() {
        let mut rng = StdRng::seed_from_u64(1);
        let disk = SimDisk::new();
        let h = disk.open();
        h.write(0, b"durable").unwrap();
        h.sync_data().unwrap();
        h.write(0, b"pending").unwrap();
        let mut out = [0u8; 7];
        h.read(0, &mut out).unwrap();
        assert_eq!(&out, b"pending", "readers see pending writes");

        let report = disk.crash(CrashMode::DropUnsynced, &mut rng);
        assert_eq!(
            report,
            CrashReport {
                pending: 1,
                kept: 0
            }
        );
        assert!(h.read(0, &mut out).is_err(), "the crashed handle is fenced");
        let h = disk.open();
        h.read(0, &mut out).unwrap();
        assert_eq!(&out, b"durable");

        h.write(0, b"process").unwrap();
        disk.crash(CrashMode::KeepUnsynced, &mut rng);
        let h = disk.open();
        h.read(0, &mut out).unwrap();
        assert_eq!(&out, b"process", "a process crash keeps the page cache");
        assert_eq!(disk.stats().crashes, 2);
    }

    #[test]
    fn a_prefix_crash_keeps_writes_in_order() {
        for seed in 0..50 {
            let mut rng = StdRng::seed_from_u64(seed);
            let disk = SimDisk::new();
            let h = disk.open();
            for i in 0..10u8 {
                h.write(u64::from(i), &[i + 1]).unwrap();
            }
            let report = disk.crash(CrashMode::KeepUnsyncedPrefix, &mut rng);
            let h = disk.open();
            let mut out = vec![0u8; h.len().unwrap() as usize];
            h.read(0, &mut out).unwrap();
            for (i, b) in out.iter().enumerate() {
                assert_eq!(*b != 0, i < report.kept, "seed {seed}: byte {i}");
            }
        }
    }

    #[test]
    fn a_scheduled_power_cut_fails_every_later_operation() {
        let disk = SimDisk::new();
        let h = disk.open();
        disk.schedule_power_cut(2);
        h.write(0, b"a").unwrap();
        h.write(1, b"b").unwrap();
        assert!(h.write(2, b"c").is_err());
        assert!(h.sync_data().is_err());
        assert!(disk.power_is_cut());
        assert_eq!(disk.pending_writes(), 2);
    }

    fn open(disk: &SimDisk) -> Result<Database, redb::DatabaseError> {
        redb::Builder::new().create_with_backend(disk.open())
    }

    /// Commits `value` under keys `0..=i`; each commit adds one key.
    fn commit(db: &Database, i: u64, durability: Durability) -> Result<(), String> {
        let mut txn = db.begin_write().map_err(|e| e.to_string())?;
        txn.set_durability(durability).map_err(|e| e.to_string())?;
        {
            let mut t = txn.open_table(TABLE).map_err(|e| e.to_string())?;
            t.insert(i, i * 7).map_err(|e| e.to_string())?;
        }
        txn.commit().map_err(|e| e.to_string())
    }

    /// The keys committed so far, checked to be exactly `0..n` with the right values.
    fn committed_prefix(db: &Database) -> Result<u64, String> {
        let txn = db.begin_read().map_err(|e| e.to_string())?;
        let t = match txn.open_table(TABLE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(e.to_string()),
        };
        let n = t.len().map_err(|e| e.to_string())?;
        for i in 0..n {
            let v = t.get(i).map_err(|e| e.to_string())?;
            if v.map(|v| v.value()) != Some(i * 7) {
                return Err(format!("key {i} of {n} is missing or wrong"));
            }
        }
        Ok(n)
    }

    /// One case: commits (some durable, some not) until a power cut at a random operation,
    /// then a crash, a reopen, and a check that the state is a prefix no shorter than the
    /// last durable commit and no longer than the commits attempted.
    fn crash_case(seed: u64) -> Result<(), String> {
        let mut rng = StdRng::seed_from_u64(seed);
        let disk = SimDisk::new();
        let db = open(&disk).map_err(|e| e.to_string())?;
        disk.schedule_power_cut(rng.gen_range(0..COMMITS_PER_CASE * OPS_PER_COMMIT_ABOUT));
        let mut durable = 0;
        let mut attempted = 0;
        for i in 0..COMMITS_PER_CASE {
            let immediate = rng.gen_bool(0.7);
            let durability = if immediate {
                Durability::Immediate
            } else {
                Durability::None
            };
            attempted = i + 1;
            match commit(&db, i, durability) {
                Ok(()) if immediate => durable = i + 1,
                Ok(()) => {}
                Err(_) => break,
            }
        }
        drop(db);
        let mode = match rng.gen_range(0..3) {
            0 => CrashMode::DropUnsynced,
            1 => CrashMode::KeepUnsyncedPrefix,
            _ => CrashMode::KeepUnsynced,
        };
        disk.crash(mode, &mut rng);
        let db = open(&disk).map_err(|e| format!("reopen after {mode:?}: {e}"))?;
        let n = committed_prefix(&db)?;
        if n < durable || n > attempted {
            return Err(format!(
                "{mode:?}: found {n} commits, durable {durable}, attempted {attempted}"
            ));
        }
        // The reopened database must take new commits.
        commit(&db, n, Durability::Immediate)?;
        Ok(())
    }

    #[test]
    fn redb_over_sim_disk_survives_crashes_at_random_points() {
        let failures: Vec<String> = (0..CRASH_CASES)
            .filter_map(|seed| crash_case(seed).err().map(|e| format!("seed {seed}: {e}")))
            .collect();
        assert!(failures.is_empty(), "{failures:#?}");
    }
}
