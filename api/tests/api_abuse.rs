//! Hostile use of the HTTP API against a 3-coordinator group in this process: idempotency
//! keys reused for other requests, pathological bodies, load beyond the in-flight bounds,
//! malformed requests (every error is JSON), and Raft RPCs served while the API's runtime
//! is busy.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

mod common;

use common::{wait_for, Group, ADMIN};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

const SPEC: &str = include_str!("../../docs/examples/card-velocity.yaml");

/// A raw HTTP call: status, headers and the body as JSON (panics if it is not JSON).
async fn call(
    http: &reqwest::Client,
    method: Method,
    url: String,
    token: Option<&str>,
    key: Option<&str>,
    body: Option<Vec<u8>>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.expect("an answer");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("a body");
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{status}: the body is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    (status, headers, json)
}

/// Announces a 9 MiB body, sends its first KiB and reads the answer (a client writing
/// the whole body would meet the closed connection before reading the answer): the status
/// and the body.
async fn oversized_post(addr: &str, path: &str, token: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/yaml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        9 * 1024 * 1024
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&[b' '; 1024]).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn spec_named(name: &str) -> Vec<u8> {
    SPEC.replacen("name: card-velocity", &format!("name: {name}"), 1)
        .into_bytes()
}

/// The leader's address once it commits writes (a write through the retrying client).
async fn leader_addr(group: &Group) -> String {
    group.wait_for_leader().await;
    let client = weir_api::client::Client::new(group.addrs(), Some(ADMIN.into()));
    client.list_tenants().await.expect("the group serves");
    let id = group.wait_for_leader().await;
    group.peers[&id].clone()
}

/// A tenant created through the retrying client; its token.
async fn tenant(group: &Group, name: &str) -> String {
    let client = weir_api::client::Client::new(group.addrs(), Some(ADMIN.into()));
    client.create_tenant(name).await.expect("tenant").token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_answers_only_the_request_it_came_with() {
    let dir = tempfile::tempdir().unwrap();
    let group = Group::start(3, dir.path(), 3_000).await;
    let http = reqwest::Client::new();
    for addr in [leader_addr(&group).await, group.follower_addr()] {
        let url = |p: &str| format!("http://{addr}{p}");
        let suffix = addr.replace([':', '.'], "-");
        let (tenant_a, tenant_c) = (format!("a{suffix}"), format!("c{suffix}"));
        let a_token = tenant(&group, &tenant_a).await;

        // A tenant's second job under the first job's key: refused, not answered with the
        // first job's id, and the second job does not exist.
        let key = format!("job-key-{suffix}");
        let (s, _, first) = call(
            &http,
            Method::POST,
            url("/v1/jobs"),
            Some(&a_token),
            Some(&key),
            Some(spec_named("one")),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{first}");
        let (s, _, again) = call(
            &http,
            Method::POST,
            url("/v1/jobs"),
            Some(&a_token),
            Some(&key),
            Some(spec_named("one")),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "a true retry is answered again");
        assert_eq!(again["id"], first["id"]);
        let (s, _, reused) = call(
            &http,
            Method::POST,
            url("/v1/jobs"),
            Some(&a_token),
            Some(&key),
            Some(spec_named("two")),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{reused}");
        assert_eq!(reused["field"], "Idempotency-Key");
        let (_, _, jobs) = call(
            &http,
            Method::GET,
            url("/v1/jobs"),
            Some(&a_token),
            None,
            None,
        )
        .await;
        assert_eq!(jobs.as_array().unwrap().len(), 1, "{jobs}");

        // A key that created tenant c, reused to rotate a's token: refused; a's token
        // keeps working and c's token is not handed out again.
        let key = format!("tenant-key-{suffix}");
        let (s, _, c) = call(
            &http,
            Method::POST,
            url("/v1/tenants"),
            Some(ADMIN),
            Some(&key),
            Some(format!(r#"{{"name":"{tenant_c}"}}"#).into_bytes()),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{c}");
        let (s, _, rotated) = call(
            &http,
            Method::POST,
            url(&format!("/v1/tenants/{tenant_a}/token")),
            Some(ADMIN),
            Some(&key),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{rotated}");
        assert_eq!(rotated["field"], "Idempotency-Key");
        assert!(rotated.get("token").is_none());
        let (s, _, _) = call(
            &http,
            Method::GET,
            url("/v1/jobs"),
            Some(&a_token),
            None,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "a's token still works");

        // The key bound is on the key as sent: 120 bytes pass, 129 are refused naming
        // the header.
        let (s, _, body) = call(
            &http,
            Method::POST,
            url("/v1/jobs"),
            Some(&a_token),
            Some(&"k".repeat(120)),
            Some(spec_named("three")),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        let (s, _, body) = call(
            &http,
            Method::POST,
            url("/v1/jobs"),
            Some(&a_token),
            Some(&"k".repeat(129)),
            Some(spec_named("four")),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["field"], "Idempotency-Key");
    }
    group.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json_and_the_same_on_every_member() {
    let dir = tempfile::tempdir().unwrap();
    let group = Group::start(3, dir.path(), 3_000).await;
    let http = reqwest::Client::new();
    let leader = leader_addr(&group).await;
    let token = tenant(&group, "t").await;
    for addr in [leader.clone(), group.follower_addr()] {
        let url = |p: &str| format!("http://{addr}{p}");
        // The same oversized body: 413 in JSON from the leader and from a follower.
        let (s, body) = oversized_post(&addr, "/v1/jobs", &token).await;
        assert_eq!(s, 413, "{addr}: {body}");
        let body: Value = serde_json::from_str(&body).expect("JSON");
        assert!(body["error"].is_string());
        // Bad path parameters, repeated query parameters, unknown routes.
        let (s, _, body) = call(
            &http,
            Method::DELETE,
            url("/v1/cluster/members/abc"),
            Some(ADMIN),
            None,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        let (s, _, body) = call(
            &http,
            Method::POST,
            url("/v1/jobs?tenant=t&tenant=u"),
            Some(ADMIN),
            None,
            Some(spec_named("q")),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["field"], "tenant");
        let (s, _, _) = call(
            &http,
            Method::GET,
            url("/v1/nothing"),
            Some(ADMIN),
            None,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _, _) = call(&http, Method::PUT, url("/v1/jobs"), Some(ADMIN), None, None).await;
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
        // The bearer scheme is case-insensitive.
        let resp = http
            .get(url("/v1/jobs"))
            .header("authorization", format!("bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        // Unknown fields in a tenant are refused, naming the field.
        let (s, _, body) = call(
            &http,
            Method::POST,
            url("/v1/tenants"),
            Some(ADMIN),
            None,
            Some(br#"{"name":"x","quota":5}"#.to_vec()),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["field"], "quota");
        // Authentication comes before the body is parsed.
        for path in ["/v1/checkpoints", "/raft/rpc"] {
            let (s, _, body) = call(
                &http,
                Method::POST,
                url(path),
                None,
                None,
                Some(b"{not json".to_vec()),
            )
            .await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: {body}");
        }
    }
    group.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_bodies_are_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let group = Group::start(3, dir.path(), 3_000).await;
    let http = reqwest::Client::new();
    let leader = leader_addr(&group).await;
    tenant(&group, "t").await;
    let term_before = group.nodes[&group.wait_for_leader().await]
        .coordinator
        .raft()
        .metrics()
        .borrow()
        .current_term;
    let nested = {
        let mut b = vec![b'['; 100_000];
        b.extend(vec![b']'; 100_000]);
        b
    };
    let started = Instant::now();
    let mut calls = Vec::new();
    for path in ["/v1/jobs?tenant=t", "/v1/tenants", "/v1/checkpoints"] {
        for _ in 0..4 {
            let (http, body, url) = (
                http.clone(),
                nested.clone(),
                format!("http://{leader}{path}"),
            );
            calls.push(tokio::spawn(async move {
                call(&http, Method::POST, url, Some(ADMIN), None, Some(body)).await
            }));
        }
    }
    for c in calls {
        let (s, _, body) = c.await.unwrap();
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert!(body["error"].as_str().unwrap().contains("nests"), "{body}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refusing 12 nested bodies took {:?}",
        started.elapsed()
    );
    let term_after = group.nodes[&group.wait_for_leader().await]
        .coordinator
        .raft()
        .metrics()
        .borrow()
        .current_term;
    assert_eq!(term_before, term_after, "no election");
    group.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_burst_is_shed_with_429_and_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let group = Group::start(3, dir.path(), 3_000).await;
    let http = reqwest::Client::new();
    let leader = leader_addr(&group).await;
    let token = tenant(&group, "busy").await;
    let term = |group: &Group| {
        group
            .nodes
            .values()
            .map(|n| n.coordinator.raft().metrics().borrow().current_term)
            .max()
            .unwrap_or(0)
    };
    let term_before = term(&group);
    let mut calls = Vec::new();
    for i in 0..200 {
        let (http, token, url) = (
            http.clone(),
            token.clone(),
            format!("http://{leader}/v1/jobs"),
        );
        calls.push(tokio::spawn(async move {
            call(
                &http,
                Method::POST,
                url,
                Some(&token),
                None,
                Some(spec_named(&format!("burst-{i}"))),
            )
            .await
        }));
    }
    let (mut created, mut shed) = (0, 0);
    for c in calls {
        let (s, headers, body) = c.await.unwrap();
        match s {
            StatusCode::CREATED => created += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                shed += 1;
                assert!(headers.contains_key("retry-after"), "{body}");
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert!(shed > 0, "nothing was shed ({created} created)");
    assert!(created > 0);
    assert_eq!(term(&group), term_before, "the burst caused an election");

    // The Rust client waits as asked and gets through.
    let client = weir_api::client::Client::new(vec![leader.clone()], Some(token));
    let mut calls = Vec::new();
    for i in 0..80 {
        let client = client.clone();
        calls.push(tokio::spawn(async move {
            client
                .submit_job(spec_named(&format!("client-{i}")), None)
                .await
        }));
    }
    for c in calls {
        c.await.unwrap().expect("the client rides through 429s");
    }
    group.stop_all().await;
}

/// Blocks both worker threads of the test's runtime (where the API runs) for `ms`, and
/// returns once both are blocked.
fn block_the_api_runtime(ms: u64) -> Vec<tokio::task::JoinHandle<()>> {
    let both = std::sync::Arc::new(std::sync::Barrier::new(3));
    let tasks = (0..2)
        .map(|_| {
            let both = both.clone();
            tokio::spawn(async move {
                both.wait();
                std::thread::sleep(Duration::from_millis(ms))
            })
        })
        .collect();
    // The test body runs on a thread of its own, not on a worker.
    both.wait();
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_rpcs_are_served_while_the_api_runtime_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let group = Group::start(3, dir.path(), 3_000).await;
    leader_addr(&group).await;
    // Every member follows one leader in one term: the group's first election is over,
    // so a later change of term can only come from heartbeats held up.
    let term_before = wait_for("every member following one leader", 15_000, || async {
        let seen: Vec<(u64, Option<u64>)> = group
            .nodes
            .values()
            .map(|n| {
                let m = n.coordinator.raft().metrics().borrow().clone();
                (m.current_term, m.current_leader)
            })
            .collect();
        let first = seen[0];
        (first.1.is_some() && seen.iter().all(|s| *s == first)).then_some(first.0)
    })
    .await;
    let target = group.follower_addr();
    // A vote request from a stale term: harmless, and answered by Raft itself.
    let rpc = weir_coordinator::network::RaftRpc::Vote(openraft::raft::VoteRequest::new(
        openraft::Vote::new(0, 99),
        None,
    ));
    let body = serde_json::to_vec(&rpc).unwrap();
    let blocked = block_the_api_runtime(1_500);
    // Ask from a thread of its own, since this runtime is blocked.
    let answer = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let started = tokio::time::Instant::now();
            let resp = reqwest::Client::new()
                .post(format!("http://{target}/raft/rpc"))
                .bearer_auth(ADMIN)
                .header("content-type", "application/json")
                .body(body)
                .timeout(Duration::from_millis(700))
                .send()
                .await;
            (resp.map(|r| r.status()), started.elapsed())
        })
    })
    .join()
    .unwrap();
    for b in blocked {
        b.await.unwrap();
    }
    let (status, took) = answer;
    assert_eq!(
        status.expect("Raft answered while the API runtime was blocked"),
        StatusCode::OK
    );
    assert!(took < Duration::from_millis(700), "{took:?}");
    // And no election: heartbeats did not wait behind the blocked API.
    let term_after = group.nodes[&group.wait_for_leader().await]
        .coordinator
        .raft()
        .metrics()
        .borrow()
        .current_term;
    assert_eq!(term_before, term_after);
    group.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_described_and_latencies_are_histograms() {
    let dir = tempfile::tempdir().unwrap();
    let group = Group::start(3, dir.path(), 3_000).await;
    let leader = leader_addr(&group).await;
    let client = weir_api::client::Client::new(vec![leader.clone()], Some(ADMIN.into()));
    client.create_tenant("m").await.unwrap();
    let text = reqwest::get(format!("http://{leader}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "weir_raft_term",
        "weir_raft_commit_latency_seconds",
        "weir_api_request_seconds",
    ] {
        assert!(text.contains(&format!("# HELP {name}")), "{name}:\n{text}");
    }
    assert!(
        text.contains("weir_api_request_seconds_bucket"),
        "latencies are histograms:\n{text}"
    );
    assert!(text.contains("weir_raft_commit_latency_seconds_bucket"));
    group.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_forwarded_without_a_key_is_given_one_by_the_follower() {
    let dir = tempfile::tempdir().unwrap();
    let group = Group::start(3, dir.path(), 3_000).await;
    leader_addr(&group).await;
    let http = reqwest::Client::new();
    let (s, _, body) = call(
        &http,
        Method::POST,
        format!("http://{}/v1/tenants", group.follower_addr()),
        Some(ADMIN),
        None,
        Some(br#"{"name":"keyless"}"#.to_vec()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    // The leader applied it as an idempotent command, under the follower's key: a retry
    // of the forward after a failover answers instead of applying again.
    let leader = group.wait_for_leader().await;
    let keys: Vec<String> = {
        let state = group.nodes[&leader].coordinator.state().read();
        state.control.answered.keys().cloned().collect()
    };
    assert!(
        keys.iter().any(|k| k.starts_with("admin/fwd-")),
        "no key was made for the forwarded write: {keys:?}"
    );
    group.stop_all().await;
}
