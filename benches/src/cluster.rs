//! A 3-member group of real server processes on loopback, whatever the system: the bench
//! drives weir and etcd through the same `Cluster`, and only the `System` (how a write and a
//! status request look on the wire) differs between them.

use crate::process::{cpu_ms, wait_until, ManagedProcess};
use anyhow::{bail, Context};
use reqwest::{Client, RequestBuilder, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

/// Members in every group the bench starts.
pub const MEMBERS: usize = 3;
/// Time one status or metrics request may take.
pub const STATUS_TIMEOUT_MS: u64 = 1_000;
/// Time a connection attempt may take (loopback: a refusal is immediate).
pub const CONNECT_TIMEOUT_MS: u64 = 500;
/// Pause between two looks at the group while waiting for it.
pub const STATUS_POLL_MS: u64 = 20;
/// Time a fresh group has to elect a leader and acknowledge a write.
pub const READY_TIMEOUT_MS: u64 = 30_000;
/// Time a restarted member has to catch up with the leader.
pub const CATCH_UP_TIMEOUT_MS: u64 = 30_000;

/// One member's view of the group, in the system's own member ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberStatus {
    /// The member's own id, when its status names it (etcd does; weir's ids are known).
    pub self_id: Option<u64>,
    pub leader_id: Option<u64>,
    /// The Raft term this member is in.
    pub term: u64,
    /// The last log index this member has applied.
    pub applied_index: u64,
}

/// What distinguishes one system under test: its write, its status and its metrics.
pub trait System: Send + Sync + 'static {
    /// Short name for the tables.
    fn name(&self) -> &'static str;
    /// An acknowledged, replicated write of a new `key` sent to the member at `addr`.
    fn write_request(&self, http: &Client, addr: &str, key: &str) -> RequestBuilder;
    /// Whether an answer with this status means the write was acknowledged.
    fn write_acked(&self, status: StatusCode) -> bool;
    /// A request for the member's own view of the group.
    fn status_request(&self, http: &Client, addr: &str) -> RequestBuilder;
    /// Parses the answer to `status_request`.
    fn parse_status(&self, body: &[u8]) -> anyhow::Result<MemberStatus>;
    /// The Prometheus series counting the member's Raft log fsyncs.
    fn log_fsyncs_metric(&self) -> &'static str;
}

/// A running group; dropping it kills every member, then removes the data directories.
pub struct Cluster {
    // Declared before `data` so the processes are gone before their directories are removed.
    members: Vec<ManagedProcess>,
    system: Arc<dyn System>,
    /// The client address (host:port) of each member.
    addrs: Vec<String>,
    /// The system's member id of each member, learned from status when not known at start.
    ids: Vec<Option<u64>>,
    http: Client,
    data: Option<TempDir>,
}

impl Cluster {
    /// Wraps started members; `ids` may be unknown until the members report them.
    pub fn new(
        system: Arc<dyn System>,
        members: Vec<ManagedProcess>,
        addrs: Vec<String>,
        ids: Vec<Option<u64>>,
        data: TempDir,
    ) -> anyhow::Result<Self> {
        assert_eq!(members.len(), addrs.len());
        assert_eq!(members.len(), ids.len());
        let http = Client::builder()
            .timeout(Duration::from_millis(STATUS_TIMEOUT_MS))
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .tcp_nodelay(true)
            .build()
            .context("cannot build the status HTTP client")?;
        Ok(Cluster {
            members,
            system,
            addrs,
            ids,
            http,
            data: Some(data),
        })
    }

    pub fn system(&self) -> Arc<dyn System> {
        self.system.clone()
    }

    pub fn addr(&self, member: usize) -> &str {
        &self.addrs[member]
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The directory holding the members' data directories, while it exists.
    pub fn data_dir(&self) -> Option<&std::path::Path> {
        self.data.as_ref().map(|d| d.path())
    }

    /// Leaves the data directories on disk when the group is dropped, and says where.
    pub fn keep_data(&mut self) -> Option<std::path::PathBuf> {
        self.data.take().map(|d| d.keep())
    }

    /// One member's view, or None when it does not answer well.
    pub async fn status(&self, member: usize) -> Option<MemberStatus> {
        let resp = self
            .system
            .status_request(&self.http, &self.addrs[member])
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let body = resp.bytes().await.ok()?;
        self.system.parse_status(&body).ok()
    }

    /// The member index of a system member id.
    fn index_of(&self, id: u64) -> Option<usize> {
        self.ids.iter().position(|known| *known == Some(id))
    }

    /// The leader every running member agrees on, with its own status, if they agree.
    pub async fn agreed_leader(&mut self) -> Option<(usize, MemberStatus)> {
        let mut leader = None;
        let mut leader_status = None;
        for member in 0..self.members.len() {
            if self.members[member].pid().is_none() {
                continue;
            }
            let status = self.status(member).await?;
            if let Some(id) = status.self_id {
                self.ids[member] = Some(id);
            }
            let seen = status.leader_id?;
            if leader.is_some_and(|l| l != seen) {
                return None;
            }
            leader = Some(seen);
            if self.ids[member] == Some(seen) {
                leader_status = Some(status);
            }
        }
        let index = self.index_of(leader?)?;
        Some((index, leader_status?))
    }

    /// Waits until the running members agree on a leader that acknowledges a write, and
    /// returns its member index.
    pub async fn wait_ready(&mut self, probe_key: &str) -> anyhow::Result<usize> {
        let deadline = Duration::from_millis(READY_TIMEOUT_MS);
        let poll = Duration::from_millis(STATUS_POLL_MS);
        let started = tokio::time::Instant::now();
        let mut attempt = 0u32;
        loop {
            self.check_alive()?;
            if started.elapsed() >= deadline {
                bail!(
                    "{} elected no leader that acknowledges writes within {READY_TIMEOUT_MS} ms",
                    self.system.name()
                );
            }
            if let Some((leader, _)) = self.agreed_leader().await {
                attempt += 1;
                let key = format!("{probe_key}-{attempt}");
                let acked = self
                    .system
                    .write_request(&self.http, &self.addrs[leader], &key)
                    .send()
                    .await
                    .is_ok_and(|r| self.system.write_acked(r.status()));
                if acked {
                    return Ok(leader);
                }
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Fails when a member that should run has exited by itself.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        for member in &mut self.members {
            if member.pid().is_some() && member.exited() {
                bail!(
                    "a member exited by itself; see its log {}",
                    member.log().display()
                );
            }
        }
        Ok(())
    }

    /// kill -9 of one member; the sockets are closed when this returns.
    pub fn kill(&mut self, member: usize) -> anyhow::Result<()> {
        self.members[member].kill()
    }

    /// Reaps a killed member.
    pub fn reap(&mut self, member: usize) {
        self.members[member].reap();
    }

    /// Starts a killed member again with its data directory and waits until it has applied
    /// `applied_index` and knows the leader.
    pub async fn restart_and_catch_up(
        &mut self,
        member: usize,
        applied_index: u64,
    ) -> anyhow::Result<()> {
        self.members[member].restart()?;
        let this = &*self;
        wait_until(
            "a restarted member to catch up",
            Duration::from_millis(CATCH_UP_TIMEOUT_MS),
            Duration::from_millis(STATUS_POLL_MS),
            || async move {
                let s = this.status(member).await?;
                (s.leader_id.is_some() && s.applied_index >= applied_index).then_some(())
            },
        )
        .await
    }

    /// CPU milliseconds used so far by all running members.
    pub fn cpu_ms(&self, clock_ticks_per_s: u64) -> u64 {
        self.members
            .iter()
            .filter_map(|m| m.pid())
            .filter_map(|pid| cpu_ms(pid, clock_ticks_per_s))
            .sum()
    }

    /// The value of a Prometheus series on one member (summed over its labels).
    pub async fn metric(&self, member: usize, name: &str) -> Option<f64> {
        let url = format!("http://{}/metrics", self.addrs[member]);
        let resp = self.http.get(url).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let text = resp.text().await.ok()?;
        Some(sum_series(&text, name))
    }
}

/// Sums the samples of `name` over all its label sets in Prometheus text exposition.
pub fn sum_series(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                return None;
            }
            line.rsplit(' ').next()?.parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::sum_series;

    #[test]
    fn series_sum_over_labels_and_ignore_prefixes() {
        let text =
            "# TYPE a counter\na_count{x=\"1\"} 2\na_count{x=\"2\"} 3\na_count_total 9\na 1\n";
        assert_eq!(sum_series(text, "a_count"), 5.0);
        assert_eq!(sum_series(text, "a"), 1.0);
        assert_eq!(sum_series(text, "missing"), 0.0);
    }
}
