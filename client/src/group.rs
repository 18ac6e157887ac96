//! [`GroupClient`]: the leader-sticky policy driven over HTTP.

use bytes::Bytes;
use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::time::Instant;
use weir_core::leader_client::{Answer, Exhausted, LeaderMemory, Retry, RetryPolicy, Step};
use weir_core::seams::{Entropy, OsEntropy};
use weir_core::wire::LEADER_HEADER;

/// The header carrying a write's idempotency key.
const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// How long one attempt may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The whole attempt: connecting, sending, and reading the answer.
    pub attempt_ms: u64,
    /// Connecting alone; a member that takes longer counts as unreachable.
    pub connect_ms: u64,
}

/// One request, sent as it is on every attempt.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: Method,
    /// Path and query, e.g. `/v1/jobs?tenant=acme`.
    pub path: &'a str,
    /// Sent as `Authorization: Bearer`.
    pub token: Option<&'a str>,
    /// The same on every attempt, so that a retried write is applied once.
    pub idempotency_key: Option<&'a str>,
    /// The body and its content type.
    pub body: Option<(Bytes, &'static str)>,
}

/// A final answer: the status and body as the member sent them.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
    /// The member that answered.
    pub member: String,
}

/// No member gave a final answer within the policy's bounds.
#[derive(Debug, Clone, Error)]
#[error("no coordinator could serve the request after {attempts} attempts ({}); last error: {last}", match exhausted {
    Exhausted::Attempts => "attempts exhausted",
    Exhausted::Deadline => "deadline passed",
})]
pub struct Unavailable {
    pub attempts: u32,
    pub exhausted: Exhausted,
    /// What the last attempt met, naming the member.
    pub last: String,
}

/// A client of one coordinator group, sticky to its leader. Clones share their
/// connections and what they know of the leader.
#[derive(Debug, Clone)]
pub struct GroupClient {
    http: reqwest::Client,
    members: Arc<[String]>,
    memory: Arc<Mutex<LeaderMemory>>,
    policy: RetryPolicy,
    entropy: Arc<dyn Entropy>,
}

/// What one attempt came to: the policy's answer and, when final, the reply.
struct Attempt {
    answer: Answer,
    reply: Option<Reply>,
    /// What went wrong, for the error after the last attempt.
    note: String,
}

impl GroupClient {
    /// A client of the coordinators at `members` (host:port) with the OS entropy source.
    pub fn new(members: Vec<String>, policy: RetryPolicy, timeouts: Timeouts) -> Self {
        Self::with_entropy(members, policy, timeouts, Arc::new(OsEntropy))
    }

    /// A client drawing its first member and its jitter from `entropy`.
    pub fn with_entropy(
        members: Vec<String>,
        policy: RetryPolicy,
        timeouts: Timeouts,
        entropy: Arc<dyn Entropy>,
    ) -> Self {
        assert!(!members.is_empty(), "at least one coordinator address");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(timeouts.attempt_ms))
            .connect_timeout(Duration::from_millis(
                timeouts.connect_ms.min(timeouts.attempt_ms),
            ))
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        let start = usize::try_from(draw_u64(entropy.as_ref())).unwrap_or(0);
        GroupClient {
            http,
            memory: Arc::new(Mutex::new(LeaderMemory::new(members.len(), start))),
            members: members.into(),
            policy,
            entropy,
        }
    }

    /// A client of `member` alone, sharing this one's connections and policy (for what only
    /// that member can answer, such as its own view of the group).
    pub fn only(&self, member: &str) -> Self {
        GroupClient {
            members: vec![member.to_string()].into(),
            memory: Arc::new(Mutex::new(LeaderMemory::new(1, 0))),
            ..self.clone()
        }
    }

    /// The coordinators' addresses, as given.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// The address of the member last known to lead.
    pub fn leader(&self) -> Option<String> {
        let leader = self.lock().leader()?;
        self.members.get(leader).cloned()
    }

    /// The address a new request tries first.
    pub fn first(&self) -> String {
        self.members[self.lock().first()].clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LeaderMemory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `request` until a member gives a final answer (any status but 503, and 429
    /// once the policy stops waiting them out), following the leader and retrying within
    /// the policy's bounds.
    pub async fn send(&self, request: &Request<'_>) -> Result<Reply, Unavailable> {
        let started = Instant::now();
        let now_ms = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let seed = draw_u64(self.entropy.as_ref());
        let (mut retry, mut member) = Retry::start(self.policy, &self.lock(), 0, seed);
        loop {
            let attempt = self.attempt(member, request).await;
            let step = retry.on_answer(now_ms(), member, &attempt.answer, &mut self.lock());
            match step {
                Step::Finish => {
                    if let Some(reply) = attempt.reply {
                        return Ok(reply);
                    }
                    return Err(self.unavailable(&retry, Exhausted::Attempts, attempt.note));
                }
                Step::GiveUp(exhausted) => {
                    return Err(self.unavailable(&retry, exhausted, attempt.note));
                }
                Step::Send {
                    member: next,
                    delay_ms,
                } => {
                    tracing::debug!(
                        from = %self.members[member], to = %self.members[next], delay_ms,
                        answer = ?attempt.answer, note = %attempt.note, "coordinator retry"
                    );
                    if delay_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    }
                    member = next;
                }
            }
        }
    }

    fn unavailable(&self, retry: &Retry, exhausted: Exhausted, last: String) -> Unavailable {
        Unavailable {
            attempts: retry.attempts(),
            exhausted,
            last,
        }
    }

    /// One send to `member`, classified.
    async fn attempt(&self, member: usize, request: &Request<'_>) -> Attempt {
        let addr = &self.members[member];
        let mut req = self.http.request(
            request.method.clone(),
            format!("http://{addr}{}", request.path),
        );
        if let Some(token) = request.token {
            req = req.bearer_auth(token);
        }
        if let Some(key) = request.idempotency_key {
            req = req.header(IDEMPOTENCY_HEADER, key);
        }
        if let Some((bytes, content_type)) = &request.body {
            req = req.header(CONTENT_TYPE, *content_type).body(bytes.clone());
        }
        let response = match req.send().await {
            Ok(response) => response,
            Err(e) => {
                let answer = if e.is_connect() {
                    Answer::Unreachable
                } else {
                    Answer::NoAnswer
                };
                return Attempt {
                    answer,
                    reply: None,
                    note: format!("{addr}: {e}"),
                };
            }
        };
        let status = response.status();
        let leader = self.named_leader(response.headers());
        let retry_after_ms = retry_after_ms(response.headers());
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => {
                return Attempt {
                    answer: Answer::NoAnswer,
                    reply: None,
                    note: format!("{addr}: the answer broke off: {e}"),
                }
            }
        };
        let answer = classify(status, member, leader, retry_after_ms);
        Attempt {
            answer,
            note: format!("{addr}: {status} {}", String::from_utf8_lossy(&body)),
            reply: Some(Reply {
                status,
                body,
                member: addr.clone(),
            }),
        }
    }

    /// The member the answer names as leader, if it is one of ours.
    fn named_leader(&self, headers: &HeaderMap) -> Option<usize> {
        let named = headers.get(LEADER_HEADER)?.to_str().ok()?.trim();
        self.members.iter().position(|m| m == named)
    }
}

/// The policy's view of an HTTP answer from `member`.
fn classify(
    status: StatusCode,
    member: usize,
    leader: Option<usize>,
    retry_after_ms: Option<u64>,
) -> Answer {
    match status {
        StatusCode::TOO_MANY_REQUESTS => Answer::TooManyRequests { retry_after_ms },
        StatusCode::SERVICE_UNAVAILABLE => match leader.filter(|l| *l != member) {
            Some(leader) => Answer::NotLeader {
                leader: Some(leader),
            },
            None => Answer::Unavailable,
        },
        _ => Answer::Served { leader },
    }
}

/// A 429's `Retry-After`, in seconds as coordinators send it, as milliseconds.
fn retry_after_ms(headers: &HeaderMap) -> Option<u64> {
    let seconds = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>();
    seconds.ok().map(|s| s.saturating_mul(1_000))
}

fn draw_u64(entropy: &dyn Entropy) -> u64 {
    let mut bytes = [0u8; 8];
    entropy.fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests;
