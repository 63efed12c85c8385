//! API keys: a tenant holds several, each with full access or read-only, revocable, and rolled
//! with an overlap during which the old key still works.

use super::tenant::Mode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every route.
    Full,
    /// `GET` routes only; every other method is refused with 403 `permission_denied`.
    ReadOnly,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Full => "full",
            Scope::ReadOnly => "read_only",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(Scope::Full),
            "read_only" => Some(Scope::ReadOnly),
            _ => None,
        }
    }

    /// The start of the secret: `sk_` for full keys and `rk_` for restricted ones (Stripe's
    /// convention), then the tenant's mode: `sk_live_`, `rk_test_`.
    pub fn prefix(self, mode: Mode) -> String {
        let kind = match self {
            Scope::Full => "sk",
            Scope::ReadOnly => "rk",
        };
        format!("{kind}_{}_", mode.as_str())
    }
}

/// The SHA-256 of a key in hex: all that is stored of it. Keys carry 192 random bits, so a
/// fast hash is enough (no password stretching needed).
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A key's id: `key_` and the first 16 hex digits of its hash, the id every event written with
/// it carries as its audit key.
pub fn key_id(hash: &str) -> String {
    format!("key_{}", &hash[..16.min(hash.len())])
}

/// Whether `s` has the shape of a key id.
pub fn is_key_id(s: &str) -> bool {
    s.strip_prefix("key_").is_some_and(|rest| {
        rest.len() == 16 && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// A key as listed: never its secret, which is shown once when the key is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: String,
    pub object: &'static str,
    pub name: String,
    pub scope: Scope,
    /// The secret's start (`sk_live_`) and its last four characters, to tell keys apart.
    pub prefix: String,
    pub last4: String,
    pub created: DateTime<Utc>,
    /// A rolled key keeps working until then.
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Updated at most once a minute.
    pub last_used: Option<DateTime<Utc>>,
    /// Only in the answer that made the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl ApiKey {
    /// Whether the key authenticates at `now` (system time: key lifetimes are real time, even
    /// for a test-mode tenant whose clock is frozen).
    pub fn usable_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| now < t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(expires_at: Option<&str>, revoked_at: Option<&str>) -> ApiKey {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        ApiKey {
            id: key_id(&hash_key("sk_test_x")),
            object: "api_key",
            name: "default".into(),
            scope: Scope::Full,
            prefix: Scope::Full.prefix(Mode::Test),
            last4: "abcd".into(),
            created: t("2027-01-01T00:00:00Z"),
            expires_at: expires_at.map(t),
            revoked_at: revoked_at.map(t),
            last_used: None,
            secret: None,
        }
    }

    #[test]
    fn a_key_works_until_it_expires_or_is_revoked() {
        let now = "2027-02-01T00:00:00Z".parse().unwrap();
        assert!(key(None, None).usable_at(now));
        assert!(key(Some("2027-02-01T00:00:01Z"), None).usable_at(now));
        assert!(!key(Some("2027-02-01T00:00:00Z"), None).usable_at(now));
        assert!(!key(None, Some("2027-01-15T00:00:00Z")).usable_at(now));
    }

    #[test]
    fn ids_and_prefixes_have_their_shapes() {
        let id = key_id(&hash_key("sk_live_secret"));
        assert!(is_key_id(&id), "{id}");
        assert!(!is_key_id("key_0123"));
        assert!(!is_key_id("key_0123456789ABCDEF"));
        assert_eq!(Scope::ReadOnly.prefix(Mode::Live), "rk_live_");
        assert_eq!(Scope::Full.prefix(Mode::Test), "sk_test_");
        for s in [Scope::Full, Scope::ReadOnly] {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
    }
}
