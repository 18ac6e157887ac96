//! etcd under test: three `etcd` processes (Debian's etcd-server) on loopback, reached through
//! etcd's v3 JSON gateway with the same HTTP client as weir. The write is `POST /v3/kv/put`
//! of a new key, acknowledged once committed and applied — the same guarantee as weir's.

use crate::cluster::{Cluster, MemberStatus, System, MEMBERS};
use crate::process::{free_port, LaunchSpec, ManagedProcess};
use anyhow::Context;
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// The value every put stores: 64 characters, the size of the token hash a weir tenant
/// write carries, so both systems replicate entries of about the same size.
pub const PUT_VALUE: &str = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";

/// etcd's Raft timers; None keeps etcd's defaults (heartbeat 100 ms, election 1000 ms).
#[derive(Debug, Clone, Copy, Default)]
pub struct EtcdTimers {
    pub heartbeat_ms: Option<u64>,
    pub election_ms: Option<u64>,
}

/// etcd's JSON gateway.
#[derive(Debug, Default)]
pub struct Etcd;

impl System for Etcd {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn write_request(&self, http: &Client, addr: &str, key: &str) -> RequestBuilder {
        http.post(format!("http://{addr}/v3/kv/put"))
            .json(&serde_json::json!({
                "key": base64(key.as_bytes()),
                "value": base64(PUT_VALUE.as_bytes()),
            }))
    }

    fn write_acked(&self, status: StatusCode) -> bool {
        status == StatusCode::OK
    }

    fn status_request(&self, http: &Client, addr: &str) -> RequestBuilder {
        http.post(format!("http://{addr}/v3/maintenance/status"))
            .json(&serde_json::json!({}))
    }

    fn parse_status(&self, body: &[u8]) -> anyhow::Result<MemberStatus> {
        let v: Value = serde_json::from_slice(body).context("status answer is not JSON")?;
        // The gateway writes 64-bit integers as strings and leaves out zero values.
        let number = |v: Option<&Value>| -> u64 {
            match v {
                Some(Value::String(s)) => s.parse().unwrap_or(0),
                Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
                _ => 0,
            }
        };
        let self_id = number(v.pointer("/header/member_id"));
        let leader = number(v.get("leader"));
        Ok(MemberStatus {
            self_id: (self_id != 0).then_some(self_id),
            leader_id: (leader != 0).then_some(leader),
            term: number(v.pointer("/header/raft_term")),
            applied_index: number(v.get("raftAppliedIndex")),
        })
    }

    fn log_fsyncs_metric(&self) -> &'static str {
        "etcd_disk_wal_fsync_duration_seconds_count"
    }
}

/// Starts three etcd members of `etcd_bin` with fresh data directories under `root`.
pub fn start(
    etcd_bin: &Path,
    root: tempfile::TempDir,
    timers: EtcdTimers,
) -> anyhow::Result<Cluster> {
    let client_ports = (0..MEMBERS)
        .map(|_| free_port())
        .collect::<anyhow::Result<Vec<u16>>>()?;
    let peer_ports = (0..MEMBERS)
        .map(|_| free_port())
        .collect::<anyhow::Result<Vec<u16>>>()?;
    let initial_cluster = peer_ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("e{}=http://127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut members = Vec::with_capacity(MEMBERS);
    for i in 0..MEMBERS {
        let name = format!("e{}", i + 1);
        let client_url = format!("http://127.0.0.1:{}", client_ports[i]);
        let peer_url = format!("http://127.0.0.1:{}", peer_ports[i]);
        let mut args = vec![
            "--name".to_string(),
            name.clone(),
            "--data-dir".into(),
            root.path().join(&name).display().to_string(),
            "--listen-client-urls".into(),
            client_url.clone(),
            "--advertise-client-urls".into(),
            client_url,
            "--listen-peer-urls".into(),
            peer_url.clone(),
            "--initial-advertise-peer-urls".into(),
            peer_url,
            "--initial-cluster".into(),
            initial_cluster.clone(),
            "--initial-cluster-state".into(),
            "new".into(),
            "--initial-cluster-token".into(),
            "weir-bench".into(),
        ];
        if let Some(ms) = timers.heartbeat_ms {
            args.extend(["--heartbeat-interval".into(), ms.to_string()]);
        }
        if let Some(ms) = timers.election_ms {
            args.extend(["--election-timeout".into(), ms.to_string()]);
        }
        let spec = LaunchSpec {
            program: etcd_bin.to_path_buf(),
            args,
            env: Vec::new(),
            log: root.path().join(format!("{name}.log")),
        };
        members.push(ManagedProcess::start(spec)?);
    }
    let addrs = client_ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    Cluster::new(Arc::new(Etcd), members, addrs, vec![None; MEMBERS], root)
}

/// Standard base64 with padding (RFC 4648), as the gateway expects for bytes fields.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn status_parses_gateway_strings_and_missing_zeroes() {
        let body =
            br#"{"header":{"member_id":"42","raft_term":"2"},"leader":"7","raftAppliedIndex":"9"}"#;
        let s = Etcd.parse_status(body).unwrap();
        assert_eq!(s.self_id, Some(42));
        assert_eq!(s.leader_id, Some(7));
        assert_eq!(s.applied_index, 9);
        assert_eq!(s.term, 2);
        let s = Etcd
            .parse_status(br#"{"header":{"member_id":"42"}}"#)
            .unwrap();
        assert_eq!(s.leader_id, None);
        assert_eq!(s.applied_index, 0);
    }
}
