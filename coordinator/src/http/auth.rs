//! Bearer tokens. The administrator token is compared by hash; tenant tokens are looked up
//! by the SHA-256 of the presented token, since only hashes are stored.

use super::error::ApiError;
use crate::node::Coordinator;
use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use weir_core::ids::TenantName;
use weir_core::seams::Entropy;

/// Who a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The cluster administrator: sees and changes everything.
    Admin,
    /// A tenant: sees and changes only its own jobs.
    Tenant(TenantName),
}

impl Principal {
    /// The tenant a request is limited to, or `None` for the administrator.
    pub fn tenant(&self) -> Option<&TenantName> {
        match self {
            Principal::Admin => None,
            Principal::Tenant(t) => Some(t),
        }
    }

    /// Refuses anyone but the administrator.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Principal::Admin => Ok(()),
            Principal::Tenant(_) => Err(ApiError::admin_only()),
        }
    }
}

/// SHA-256 hex digest of a token, the only form in which tokens are kept.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token: `weir_` and 32 random bytes in hex.
pub fn new_token(entropy: &dyn Entropy) -> String {
    let mut bytes = [0u8; 32];
    entropy.fill(&mut bytes);
    format!("weir_{}", hex::encode(bytes))
}

/// The bearer token of a request, if it carries one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    // The scheme is case-insensitive (RFC 9110 section 11.1).
    let (scheme, token) = value.trim_start().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(token.trim()).filter(|t| !t.is_empty())
}

/// Compares two hex digests in time independent of where they differ.
fn digests_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Resolves the principal of a request against the admin token hash and the tenants.
pub fn authenticate(
    headers: &HeaderMap,
    admin_token_hash: &str,
    coordinator: &Coordinator,
) -> Result<Principal, ApiError> {
    let token = bearer(headers).ok_or_else(ApiError::unauthorized)?;
    let hash = hash_token(token);
    if digests_equal(&hash, admin_token_hash) {
        return Ok(Principal::Admin);
    }
    let state = coordinator.state().read();
    state
        .control
        .tenant_by_token_hash(&hash)
        .map(|t| Principal::Tenant(t.clone()))
        .ok_or_else(ApiError::unauthorized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_and_differ_per_token() {
        assert_eq!(hash_token("a"), hash_token("a"));
        assert_ne!(hash_token("a"), hash_token("b"));
        assert_eq!(hash_token("a").len(), 64);
    }

    #[test]
    fn bearer_needs_the_scheme_and_a_token() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer tok".parse().unwrap());
        assert_eq!(bearer(&h), Some("tok"));
        h.insert("authorization", "bearer tok".parse().unwrap());
        assert_eq!(bearer(&h), Some("tok"), "the scheme is case-insensitive");
        h.insert("authorization", "BEARER tok".parse().unwrap());
        assert_eq!(bearer(&h), Some("tok"));
        h.insert("authorization", "Bearertok".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn digest_comparison() {
        assert!(digests_equal("abcd", "abcd"));
        assert!(!digests_equal("abcd", "abce"));
        assert!(!digests_equal("abcd", "abc"));
    }
}
