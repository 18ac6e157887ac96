//! The driver against small HTTP servers on loopback, each standing for a coordinator.

use super::*;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::atomic::{AtomicU32, Ordering};

/// Always the same bytes: the rotation starts at the first member.
#[derive(Debug)]
struct Zeros;

impl Entropy for Zeros {
    fn fill(&self, buf: &mut [u8]) {
        buf.fill(0);
    }
}

const POLICY: RetryPolicy = RetryPolicy {
    attempts_max: 8,
    deadline_ms: 10_000,
    backoff_min_ms: 10,
    backoff_max_ms: 50,
    too_many_requests_max: 2,
    retry_after_default_ms: 10,
    retry_after_max_ms: 100,
};

const TIMEOUTS: Timeouts = Timeouts {
    attempt_ms: 2_000,
    connect_ms: 500,
};

/// What a stand-in coordinator answers: a status, and the leader it names, if any.
type Answering = Arc<dyn Fn(u32) -> (StatusCode, Option<String>) + Send + Sync>;

/// Serves `answer(n)` to its n-th request (from 0); returns its address and hit count.
async fn member(answer: Answering) -> (String, Arc<AtomicU32>) {
    let hits = Arc::new(AtomicU32::new(0));
    let counted = hits.clone();
    let app = Router::new().route(
        "/v1/ping",
        get(move || {
            let (hits, answer) = (counted.clone(), answer.clone());
            async move {
                let (status, leader) = answer(hits.fetch_add(1, Ordering::SeqCst));
                let mut response: Response = (status, "{}").into_response();
                if let Some(l) = leader.and_then(|l| HeaderValue::from_str(&l).ok()) {
                    response.headers_mut().insert(LEADER_HEADER, l);
                }
                if status == StatusCode::TOO_MANY_REQUESTS {
                    let zero = HeaderValue::from_static("0");
                    response.headers_mut().insert(RETRY_AFTER, zero);
                }
                response
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, hits)
}

/// An address nothing listens on.
async fn dead_member() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

fn client(members: Vec<String>, policy: RetryPolicy) -> GroupClient {
    GroupClient::with_entropy(members, policy, TIMEOUTS, Arc::new(Zeros))
}

fn ping() -> Request<'static> {
    Request {
        method: Method::GET,
        path: "/v1/ping",
        token: Some("t"),
        idempotency_key: None,
        body: None,
    }
}

fn always(status: StatusCode, leader: Option<String>) -> Answering {
    Arc::new(move |_| (status, leader.clone()))
}

#[tokio::test]
async fn a_client_pointed_at_a_follower_sends_its_next_requests_to_the_leader() {
    let (leader, leader_hits) = member(always(StatusCode::OK, None)).await;
    let (follower, follower_hits) = member(always(StatusCode::OK, Some(leader.clone()))).await;
    let c = client(vec![follower.clone(), leader.clone()], POLICY);
    assert_eq!(c.first(), follower);
    for _ in 0..3 {
        let reply = c.send(&ping()).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
    }
    assert_eq!(follower_hits.load(Ordering::SeqCst), 1, "forwarded once");
    assert_eq!(leader_hits.load(Ordering::SeqCst), 2);
    assert_eq!(c.leader(), Some(leader.clone()));
    // Clones share what was learned.
    assert_eq!(c.clone().first(), leader);
}

#[tokio::test]
async fn a_503_naming_the_leader_is_followed_at_once() {
    let (leader, leader_hits) = member(always(StatusCode::CREATED, None)).await;
    let (follower, _) = member(always(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(leader.clone()),
    ))
    .await;
    let slow = RetryPolicy {
        backoff_min_ms: 5_000,
        backoff_max_ms: 5_000,
        ..POLICY
    };
    let c = client(vec![follower, leader.clone()], slow);
    let started = Instant::now();
    let reply = c.send(&ping()).await.unwrap();
    assert_eq!((reply.status, reply.member), (StatusCode::CREATED, leader));
    assert_eq!(leader_hits.load(Ordering::SeqCst), 1);
    assert!(started.elapsed() < Duration::from_secs(2), "no backoff");
}

#[tokio::test]
async fn an_unreachable_member_is_passed_over_and_later_requests_start_past_it() {
    let dead = dead_member().await;
    let (alive, hits) = member(always(StatusCode::OK, None)).await;
    let c = client(vec![dead, alive.clone()], POLICY);
    assert_eq!(c.send(&ping()).await.unwrap().member, alive);
    assert_eq!(c.first(), alive);
    assert_eq!(c.send(&ping()).await.unwrap().member, alive);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn too_many_requests_are_waited_out_then_final() {
    let shed_twice: Answering = Arc::new(|n| match n {
        0 | 1 => (StatusCode::TOO_MANY_REQUESTS, None),
        _ => (StatusCode::OK, None),
    });
    let (busy, hits) = member(shed_twice).await;
    let c = client(vec![busy.clone()], POLICY);
    assert_eq!(c.send(&ping()).await.unwrap().status, StatusCode::OK);
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // A policy that waits out none hands the first 429 to the caller.
    let (busy, _) = member(always(StatusCode::TOO_MANY_REQUESTS, None)).await;
    let none = RetryPolicy {
        too_many_requests_max: 0,
        ..POLICY
    };
    let reply = client(vec![busy], none).send(&ping()).await.unwrap();
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn refusals_are_final_and_503s_without_a_leader_are_retried_within_bounds() {
    let (refusing, hits) = member(always(StatusCode::NOT_FOUND, None)).await;
    let reply = client(vec![refusing], POLICY).send(&ping()).await.unwrap();
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    let (no_leader, hits) = member(always(StatusCode::SERVICE_UNAVAILABLE, None)).await;
    let dead = dead_member().await;
    let err = client(vec![no_leader, dead], POLICY)
        .send(&ping())
        .await
        .unwrap_err();
    assert_eq!((err.attempts, err.exhausted), (8, Exhausted::Attempts));
    assert_eq!(hits.load(Ordering::SeqCst), 4, "every other attempt");
}

#[test]
fn retry_after_is_read_in_seconds() {
    let mut h = HeaderMap::new();
    assert_eq!(retry_after_ms(&h), None);
    h.insert(RETRY_AFTER, "2".parse().unwrap());
    assert_eq!(retry_after_ms(&h), Some(2_000));
    h.insert(RETRY_AFTER, "soon".parse().unwrap());
    assert_eq!(retry_after_ms(&h), None);
}

#[test]
fn a_503_names_a_leader_only_when_it_is_another_member() {
    let unavailable = StatusCode::SERVICE_UNAVAILABLE;
    assert_eq!(
        classify(unavailable, 0, Some(1), None),
        Answer::NotLeader { leader: Some(1) }
    );
    assert_eq!(classify(unavailable, 1, Some(1), None), Answer::Unavailable);
    assert_eq!(classify(unavailable, 1, None, None), Answer::Unavailable);
    assert_eq!(
        classify(StatusCode::CONFLICT, 0, Some(1), None),
        Answer::Served { leader: Some(1) }
    );
}
