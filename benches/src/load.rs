//! The closed-loop load generator: N clients, each a loop of acknowledged writes to the
//! leader (the next write is sent when the previous one is acknowledged), as an etcd client
//! talking to the leader does. Only writes sent after the warm-up and acknowledged before the
//! end of the measured window count, for throughput and latency alike.

use crate::cluster::{System, CONNECT_TIMEOUT_MS};
use reqwest::Client;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Time one write may take before the client counts it failed.
pub const WRITE_TIMEOUT_MS: u64 = 5_000;
/// Pause after a failed write, so a failing server is not hammered in a hot loop.
pub const WRITE_ERROR_BACKOFF_MS: u64 = 10;

/// The outcome of one load level.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub clients: usize,
    pub measured: Duration,
    /// Latencies of the counted writes, sorted, in microseconds.
    pub latencies_us: Vec<u64>,
    /// Writes that failed or were refused in the measured window.
    pub errors: u64,
    pub first_error: Option<String>,
}

impl LoadResult {
    pub fn writes_acked(&self) -> u64 {
        self.latencies_us.len() as u64
    }

    pub fn writes_per_s(&self) -> f64 {
        self.writes_acked() as f64 / self.measured.as_secs_f64().max(f64::EPSILON)
    }

    /// The latency at quantile `q` (nearest rank), in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        percentile_us(&self.latencies_us, q) as f64 / 1000.0
    }
}

/// Nearest-rank percentile of sorted samples; 0 when there are none.
pub fn percentile_us(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What one client saw.
#[derive(Debug, Default)]
struct ClientTally {
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

/// Runs `clients` closed loops of writes against `addr` for `warmup + measure`.
pub async fn run(
    system: Arc<dyn System>,
    addr: &str,
    clients: usize,
    warmup: Duration,
    measure: Duration,
    key_prefix: &str,
) -> anyhow::Result<LoadResult> {
    let start = Instant::now();
    let window = (start + warmup, start + warmup + measure);
    let mut tasks = JoinSet::new();
    for client in 0..clients {
        // One HTTP client (one keep-alive connection) per load client, the same for both
        // systems.
        let http = Client::builder()
            .timeout(Duration::from_millis(WRITE_TIMEOUT_MS))
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1)
            .build()?;
        let system = system.clone();
        let addr = addr.to_string();
        let prefix = format!("{key_prefix}-{client}");
        tasks.spawn(async move { client_loop(system, http, addr, prefix, window).await });
    }
    let mut result = LoadResult {
        clients,
        measured: measure,
        latencies_us: Vec::new(),
        errors: 0,
        first_error: None,
    };
    while let Some(joined) = tasks.join_next().await {
        let tally = joined?;
        result.latencies_us.extend(tally.latencies_us);
        result.errors += tally.errors;
        if result.first_error.is_none() {
            result.first_error = tally.first_error;
        }
    }
    result.latencies_us.sort_unstable();
    Ok(result)
}

async fn client_loop(
    system: Arc<dyn System>,
    http: Client,
    addr: String,
    prefix: String,
    (window_start, window_end): (Instant, Instant),
) -> ClientTally {
    let mut tally = ClientTally::default();
    let mut seq: u64 = 0;
    while Instant::now() < window_end {
        seq += 1;
        let key = format!("{prefix}-{seq}");
        let sent = Instant::now();
        let outcome = match system.write_request(&http, &addr, &key).send().await {
            Ok(resp) => {
                let status = resp.status();
                match resp.bytes().await {
                    Ok(_) if system.write_acked(status) => Ok(()),
                    Ok(body) => Err(format!(
                        "status {status}: {}",
                        String::from_utf8_lossy(&body)
                    )),
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        let done = Instant::now();
        let counted = sent >= window_start && done <= window_end;
        match outcome {
            Ok(()) if counted => tally
                .latencies_us
                .push(done.duration_since(sent).as_micros() as u64),
            Ok(()) => {}
            Err(e) => {
                if counted {
                    tally.errors += 1;
                    tally.first_error.get_or_insert(e);
                }
                tokio::time::sleep(Duration::from_millis(WRITE_ERROR_BACKOFF_MS)).await;
            }
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::percentile_us;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile_us(&v, 0.5), 50);
        assert_eq!(percentile_us(&v, 0.99), 99);
        assert_eq!(percentile_us(&v, 1.0), 100);
        assert_eq!(percentile_us(&[7], 0.99), 7);
        assert_eq!(percentile_us(&[], 0.5), 0);
    }
}
