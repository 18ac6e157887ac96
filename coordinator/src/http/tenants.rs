//! `/v1/tenants`: tenants and their tokens (administrator only).

use super::auth::{hash_token, new_token};
use super::error::ApiError;
use super::extract::ApiPath as Path;
use super::json_body::JsonBody;
use super::ApiState;
use crate::state::Command;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Serialize;
use weir_core::ids::TenantName;
use weir_core::wire::{CreateTenantRequest, TenantToken};

/// Tenant names follow the job-name rule: `[a-z0-9-]{1,63}`.
pub fn valid_tenant_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A new tenant token. With an idempotency key it is derived from the key and the
/// administrator secret, so a retried request answers with the token the first attempt
/// stored; without one it is random.
fn token_for(state: &ApiState, headers: &HeaderMap, principal: &super::auth::Principal) -> String {
    match state.idempotency_key(headers, principal) {
        Some(key) => {
            let digest = hash_token(&format!("{}:tenant-token:{key}", state.admin_token_hash));
            format!("weir_{digest}")
        }
        None => new_token(state.coordinator.seams().entropy.as_ref()),
    }
}

/// `POST /v1/tenants` → 201 with the tenant's first token.
pub async fn create(
    State(state): State<ApiState>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<CreateTenantRequest>,
) -> Result<(StatusCode, Json<TenantToken>), ApiError> {
    let principal = state.principal(&headers)?;
    principal.require_admin()?;
    if !valid_tenant_name(&req.name) {
        return Err(ApiError::bad_field(
            "name",
            "a tenant name is 1 to 63 of a-z, 0-9 and -",
        ));
    }
    let token = token_for(&state, &headers, &principal);
    let at_ms = state.coordinator.seams().clock.now_ms();
    let command = Command::CreateTenant {
        name: TenantName(req.name.clone()),
        token_hash: hash_token(&token),
        at_ms,
    };
    state
        .coordinator
        .write(state.once(&headers, &principal, command))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TenantToken {
            name: req.name,
            token,
        }),
    ))
}

/// `POST /v1/tenants/{name}/token`: issue a new token; the old ones stop working.
pub async fn rotate_token(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<TenantToken>, ApiError> {
    let principal = state.principal(&headers)?;
    principal.require_admin()?;
    let token = token_for(&state, &headers, &principal);
    let command = state.once(
        &headers,
        &principal,
        Command::RotateTenantToken {
            name: TenantName(name.clone()),
            token_hash: hash_token(&token),
        },
    );
    state.coordinator.write(command).await?;
    Ok(Json(TenantToken { name, token }))
}

/// One row of `GET /v1/tenants`.
#[derive(Debug, Serialize)]
pub struct TenantRow {
    pub name: TenantName,
    pub created_at_ms: u64,
    pub jobs: usize,
}

/// `GET /v1/tenants`.
pub async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Vec<TenantRow>>, ApiError> {
    state.principal(&headers)?.require_admin()?;
    state.coordinator.linearizable().await?;
    let s = state.coordinator.state().read();
    let rows = s
        .control
        .tenants
        .values()
        .map(|t| TenantRow {
            name: t.name.clone(),
            created_at_ms: t.created_at_ms,
            jobs: s
                .control
                .jobs
                .values()
                .filter(|j| j.tenant == t.name)
                .count(),
        })
        .collect();
    Ok(Json(rows))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tenant_names() {
        assert!(super::valid_tenant_name("payments-eu"));
        assert!(!super::valid_tenant_name(""));
        assert!(!super::valid_tenant_name("Payments"));
        assert!(!super::valid_tenant_name(&"a".repeat(64)));
    }
}
