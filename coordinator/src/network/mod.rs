//! The network between coordinators, behind one seam. openraft talks to peers through
//! `RaftNetworkFactory`; here that is a thin adapter over `RaftTransport`, a single
//! "send this RPC to that node and wait for its answer" call. Production's transport is
//! HTTP over real sockets (`http.rs`); the simulation's delivers in memory with faults.

pub mod http;

use crate::raft_types::{Raft, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use std::future::Future;
use thiserror::Error;

/// One Raft RPC, as sent between coordinators.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RaftRpc {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
}

/// The answer to a `RaftRpc`, including the remote node's refusal.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRpcReply {
    AppendEntries(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    InstallSnapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
}

/// Why an RPC got no answer.
#[derive(Debug, Error)]
pub enum TransportError {
    /// The peer could not be reached (refused, reset, partitioned); back off.
    #[error("peer {0} unreachable: {1}")]
    Unreachable(u64, String),
    /// The request may or may not have arrived.
    #[error("rpc to peer {0} failed: {1}")]
    Failed(u64, String),
    /// The answer did not match the request (a bug or a corrupt message).
    #[error("peer {0} answered with the wrong kind of reply")]
    WrongReply(u64),
}

/// The network seam between coordinators.
pub trait RaftTransport: Clone + Send + Sync + 'static {
    /// Sends `rpc` to node `target` at `addr` and waits at most `timeout` for its reply.
    fn call(
        &self,
        target: u64,
        addr: &str,
        rpc: RaftRpc,
        timeout: std::time::Duration,
    ) -> impl Future<Output = Result<RaftRpcReply, TransportError>> + Send;
}

/// Serves one incoming RPC on the local Raft node: the receiving end of any transport.
pub async fn serve_rpc(raft: &Raft, rpc: RaftRpc) -> RaftRpcReply {
    match rpc {
        RaftRpc::AppendEntries(req) => RaftRpcReply::AppendEntries(raft.append_entries(req).await),
        RaftRpc::Vote(req) => RaftRpcReply::Vote(raft.vote(req).await),
        RaftRpc::InstallSnapshot(req) => {
            RaftRpcReply::InstallSnapshot(raft.install_snapshot(req).await)
        }
    }
}

/// openraft's network factory over a transport.
#[derive(Debug, Clone)]
pub struct Network<T> {
    transport: T,
    retry_unreachable_ms: u64,
}

impl<T: RaftTransport> Network<T> {
    /// Wraps a transport; an unreachable peer is retried every `retry_unreachable_ms`.
    pub fn new(transport: T, retry_unreachable_ms: u64) -> Self {
        Network {
            transport,
            retry_unreachable_ms,
        }
    }
}

/// The connection to one peer.
#[derive(Debug, Clone)]
pub struct PeerConnection<T> {
    transport: T,
    target: u64,
    addr: String,
    retry_unreachable_ms: u64,
}

impl<T: RaftTransport> RaftNetworkFactory<TypeConfig> for Network<T> {
    type Network = PeerConnection<T>;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        PeerConnection {
            transport: self.transport.clone(),
            target,
            addr: node.addr.clone(),
            retry_unreachable_ms: self.retry_unreachable_ms,
        }
    }
}

fn to_rpc_error<E: std::error::Error>(e: TransportError) -> RPCError<u64, BasicNode, E> {
    match e {
        TransportError::Unreachable(..) => RPCError::Unreachable(Unreachable::new(&e)),
        TransportError::Failed(..) | TransportError::WrongReply(_) => {
            RPCError::Network(NetworkError::new(&e))
        }
    }
}

impl<T: RaftTransport> PeerConnection<T> {
    async fn call(&self, rpc: RaftRpc, option: &RPCOption) -> Result<RaftRpcReply, TransportError> {
        self.transport
            .call(self.target, &self.addr, rpc, option.hard_ttl())
            .await
    }
}

impl<T: RaftTransport> RaftNetwork<TypeConfig> for PeerConnection<T> {
    /// Retries an unreachable peer at the heartbeat interval, not openraft's 500 ms: a
    /// restarted member must hear from the leader before its election timer fires, or
    /// (with no pre-vote in openraft 0.9) it deposes a healthy leader.
    fn backoff(&self) -> openraft::network::Backoff {
        let every = std::time::Duration::from_millis(self.retry_unreachable_ms.max(1));
        openraft::network::Backoff::new(std::iter::repeat(every))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self
            .call(RaftRpc::AppendEntries(rpc), &option)
            .await
            .map_err(to_rpc_error)?
        {
            RaftRpcReply::AppendEntries(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(to_rpc_error(TransportError::WrongReply(self.target))),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        match self
            .call(RaftRpc::InstallSnapshot(rpc), &option)
            .await
            .map_err(to_rpc_error)?
        {
            RaftRpcReply::InstallSnapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(to_rpc_error(TransportError::WrongReply(self.target))),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self
            .call(RaftRpc::Vote(rpc), &option)
            .await
            .map_err(to_rpc_error)?
        {
            RaftRpcReply::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(to_rpc_error(TransportError::WrongReply(self.target))),
        }
    }
}
