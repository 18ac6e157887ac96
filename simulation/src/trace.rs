//! The trace of a run: one line per significant event (a fault injected, a leader
//! observed, a write settled), each stamped with simulated time, and a SHA-256 digest over
//! all of them. Two runs of one seed must produce the same digest; the lines say where two
//! runs parted ways when they do not.

use sha2::{Digest, Sha256};

/// Lines a trace keeps in memory; later lines still count toward the digest.
pub const TRACE_LINES_KEPT_MAX: usize = 100_000;

/// An append-only, hashed event log.
#[derive(Debug, Default)]
pub struct Trace {
    hasher: Sha256,
    lines: Vec<String>,
    lines_not_kept: u64,
}

impl Trace {
    /// An empty trace.
    pub fn new() -> Self {
        Trace::default()
    }

    /// Appends `event` at simulated time `at_ms`.
    pub fn push(&mut self, at_ms: u64, event: &str) {
        let line = format!("{at_ms:>8}ms {event}");
        self.hasher.update(line.as_bytes());
        self.hasher.update(b"\n");
        if self.lines.len() < TRACE_LINES_KEPT_MAX {
            self.lines.push(line);
        } else {
            self.lines_not_kept += 1;
        }
    }

    /// Lines appended so far, kept or not.
    pub fn len(&self) -> u64 {
        self.lines.len() as u64 + self.lines_not_kept
    }

    /// Whether nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The hex digest and the kept lines.
    pub fn finish(self) -> (String, Vec<String>) {
        (hex::encode(self.hasher.finalize()), self.lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_covers_every_line_in_order() {
        let digest = |events: &[&str]| {
            let mut t = Trace::new();
            for (i, e) in events.iter().enumerate() {
                t.push(i as u64, e);
            }
            t.finish().0
        };
        assert_eq!(digest(&["a", "b"]), digest(&["a", "b"]));
        assert_ne!(digest(&["a", "b"]), digest(&["b", "a"]));
        assert_ne!(digest(&["a"]), digest(&["a", "b"]));
    }
}
