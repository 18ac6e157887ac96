//! Admission of `/v1` requests, before their bodies are read: the caller is authenticated
//! (401), its idempotency key checked (400 naming the header), and the request counted
//! against this member's in-flight bounds. Over a bound the answer is 429 with
//! `Retry-After`, at once: load is shed at the edge instead of queueing into timeouts,
//! forwarding and elections.

use super::auth::Principal;
use super::error::ApiError;
use super::ApiState;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use weir_core::ids::TenantName;

/// Requests one tenant may have in flight on one member.
pub const TENANT_IN_FLIGHT_MAX: usize = 32;
/// Tenant requests (all tenants together) in flight on one member.
pub const TENANTS_IN_FLIGHT_PER_MEMBER_MAX: usize = 256;
/// Administrator requests in flight on one member. Workers call with the administrator
/// token (registrations, heartbeats, checkpoint reports), so tenants' load never sheds
/// them: the two pools are apart.
pub const ADMIN_IN_FLIGHT_PER_MEMBER_MAX: usize = 512;
/// Requests with a token this follower does not know, in flight on one member. The
/// leader authenticates them (the token may belong to a tenant created a moment ago), so
/// the follower reads and forwards their bodies unauthenticated: this bound keeps a flood
/// of made-up tokens from holding more than a few bodies.
pub const UNKNOWN_TOKEN_IN_FLIGHT_PER_MEMBER_MAX: usize = 8;
/// What a 429 asks the client to wait, in seconds.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// Who a request is counted for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Caller {
    Admin,
    Tenant(TenantName),
    /// A token this follower does not know yet (replication lag); the leader decides.
    Unknown,
}

#[derive(Debug, Default)]
struct Counts {
    admin: usize,
    tenants: usize,
    unknown: usize,
    per_tenant: HashMap<TenantName, usize>,
}

/// The requests in flight on one member.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    counts: Mutex<Counts>,
}

/// One admitted request; gives its place back when dropped.
struct Admitted {
    in_flight: Arc<InFlight>,
    caller: Caller,
}

impl InFlight {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for `caller`, or `None` when a bound is reached.
    fn admit(self: &Arc<Self>, caller: Caller) -> Option<Admitted> {
        let mut c = self.counts();
        match &caller {
            Caller::Admin => {
                if c.admin >= ADMIN_IN_FLIGHT_PER_MEMBER_MAX {
                    return None;
                }
                c.admin += 1;
            }
            Caller::Unknown => {
                if c.unknown >= UNKNOWN_TOKEN_IN_FLIGHT_PER_MEMBER_MAX {
                    return None;
                }
                c.unknown += 1;
            }
            Caller::Tenant(t) => {
                let mine = c.per_tenant.get(t).copied().unwrap_or(0);
                if c.tenants >= TENANTS_IN_FLIGHT_PER_MEMBER_MAX || mine >= TENANT_IN_FLIGHT_MAX {
                    return None;
                }
                c.tenants += 1;
                c.per_tenant.insert(t.clone(), mine + 1);
            }
        }
        Some(Admitted {
            in_flight: self.clone(),
            caller,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut c = self.in_flight.counts();
        match &self.caller {
            Caller::Admin => c.admin = c.admin.saturating_sub(1),
            Caller::Unknown => c.unknown = c.unknown.saturating_sub(1),
            Caller::Tenant(t) => {
                c.tenants = c.tenants.saturating_sub(1);
                let left = c.per_tenant.get(t).copied().unwrap_or(0).saturating_sub(1);
                if left == 0 {
                    c.per_tenant.remove(t);
                } else {
                    c.per_tenant.insert(t.clone(), left);
                }
            }
        }
    }
}

/// The 429 of a shed request.
fn too_many() -> Response {
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many requests in flight; retry after {RETRY_AFTER_SECONDS} s"),
    )
    .into_response();
    resp.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        HeaderValue::from(RETRY_AFTER_SECONDS),
    );
    resp
}

/// Whether `req` is a worker's heartbeat (`POST /v1/workers/{id}/heartbeat`).
fn is_heartbeat(req: &Request) -> bool {
    req.method() == axum::http::Method::POST
        && req.uri().path().starts_with("/v1/workers/")
        && req.uri().path().ends_with("/heartbeat")
}

/// Middleware over `/v1`: authenticate, check the idempotency key and take an in-flight
/// place, all before the body is read.
pub(super) async fn admit(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let caller = match state.principal(req.headers()) {
        Ok(Principal::Admin) => Caller::Admin,
        Ok(Principal::Tenant(t)) => Caller::Tenant(t),
        // A follower may not have applied a new tenant's token yet: a request it forwards
        // is authenticated by the leader.
        Err(_)
            if super::auth::bearer(req.headers()).is_some()
                && super::forward::will_forward(&state, &req) =>
        {
            Caller::Unknown
        }
        Err(e) => return e.into_response(),
    };
    if let Err(e) = super::check_idempotency_key(req.headers()) {
        return e.into_response();
    }
    // A heartbeat has no body and costs a lookup; shedding one would cost a worker its
    // lease and move all its partitions, which adds load rather than taking it away.
    if caller == Caller::Admin && is_heartbeat(&req) {
        return next.run(req).await;
    }
    let Some(_admitted) = state.in_flight.admit(caller) else {
        metrics::counter!("weir_api_shed_total").increment(1);
        return too_many();
    };
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_per_tenant_and_per_member_and_places_come_back() {
        let f = Arc::new(InFlight::default());
        let a = Caller::Tenant(TenantName("a".into()));
        let held: Vec<_> = (0..TENANT_IN_FLIGHT_MAX)
            .map(|_| f.admit(a.clone()).expect("within the bound"))
            .collect();
        assert!(f.admit(a.clone()).is_none(), "one tenant over its bound");
        assert!(f.admit(Caller::Tenant(TenantName("b".into()))).is_some());
        assert!(
            f.admit(Caller::Admin).is_some(),
            "the administrator is apart"
        );
        drop(held);
        assert!(f.admit(a.clone()).is_some());
        assert_eq!(f.counts().tenants, 0);
        assert!(f.counts().per_tenant.is_empty());
        let many: Vec<_> = (0..TENANTS_IN_FLIGHT_PER_MEMBER_MAX)
            .map(|i| f.admit(Caller::Tenant(TenantName(format!("t{}", i % 64)))))
            .collect();
        assert!(many.iter().all(Option::is_some));
        assert!(
            f.admit(Caller::Tenant(TenantName("new".into()))).is_none(),
            "the member's bound"
        );
        let unknown: Vec<_> = (0..UNKNOWN_TOKEN_IN_FLIGHT_PER_MEMBER_MAX)
            .map(|_| f.admit(Caller::Unknown))
            .collect();
        assert!(unknown.iter().all(Option::is_some));
        assert!(f.admit(Caller::Unknown).is_none(), "unknown tokens' bound");
    }
}
