//! `Stripe-Signature` verification: `t=…,v1=…[,v1=…]`, HMAC-SHA256 of `"{t}." + raw body` under
//! the endpoint's signing secret, compared in constant time; any `v1` under any configured
//! secret passes (rotation on either side). Timestamps are refused beyond the tolerance either
//! way, so a captured request cannot be replayed later, nor one signed "in the future" kept.

use crate::config::Secret;
use crate::payments::WebhookError;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, t: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; this cannot fail.
    let mut m = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key");
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The header Stripe would send for `body` signed at `t` (for tests and local tooling).
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    format!(
        "t={t},v1={}",
        hex::encode(mac(secret, t, body).finalize().into_bytes())
    )
}

pub fn verify(
    secrets: &[Secret],
    header: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
    tolerance_secs: i64,
) -> Result<(), WebhookError> {
    if secrets.is_empty() {
        return Err(WebhookError::NotConfigured);
    }
    let header = header.ok_or(WebhookError::MissingSignature)?;
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .split_once('=')
            .ok_or(WebhookError::Malformed("expected key=value pairs"))?;
        match key.trim() {
            "t" => {
                t = Some(
                    value
                        .trim()
                        .parse::<i64>()
                        .map_err(|_| WebhookError::Malformed("t is not a timestamp"))?,
                );
            }
            // A v1 that is not hex cannot match; skip it rather than reject the others.
            "v1" => signatures.extend(hex::decode(value.trim()).ok()),
            _ => {}
        }
    }
    let t = t.ok_or(WebhookError::Malformed("no t= timestamp"))?;
    if signatures.is_empty() {
        return Err(WebhookError::Malformed("no v1 signature"));
    }
    if now.timestamp().abs_diff(t) > tolerance_secs.unsigned_abs() {
        return Err(WebhookError::Stale(tolerance_secs));
    }
    let matches = secrets.iter().any(|secret| {
        let m = mac(secret.expose(), t, body);
        signatures
            .iter()
            .any(|sig| m.clone().verify_slice(sig).is_ok())
    });
    if matches {
        Ok(())
    } else {
        Err(WebhookError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Fuzz: any header and any body are answered (never a panic), and only the exact
        /// body under a fresh signature passes.
        #[test]
        fn any_header_and_body_are_answered_and_only_a_true_signature_passes(
            header in ".{0,300}",
            bytes in prop::collection::vec(any::<u8>(), 0..300),
            flip in any::<prop::sample::Index>(),
        ) {
            let secrets = [secret("whsec_fuzz")];
            let now = Utc::now();
            let forged = verify(&secrets, Some(&header), &bytes, now, 300);
            prop_assert!(forged.is_err() || header.contains("v1="));
            let signed = sign("whsec_fuzz", now.timestamp(), &bytes);
            prop_assert!(verify(&secrets, Some(&signed), &bytes, now, 300).is_ok());
            if !bytes.is_empty() {
                let mut changed = bytes.clone();
                let i = flip.index(changed.len());
                changed[i] ^= 0x01;
                prop_assert!(verify(&secrets, Some(&signed), &changed, now, 300).is_err());
            }
        }
    }

    fn secret(s: &str) -> Secret {
        serde_json::from_value(serde_json::json!(s)).unwrap()
    }

    #[test]
    fn signatures_are_checked_on_the_raw_body_time_and_secret() {
        let now: DateTime<Utc> = "2027-01-01T00:00:00Z".parse().unwrap();
        let t = now.timestamp();
        let body = br#"{"id":"evt_1"}"#;
        let s = [secret("whsec_a")];
        let ok = sign("whsec_a", t, body);
        assert_eq!(verify(&s, Some(&ok), body, now, 300), Ok(()));
        assert_eq!(
            verify(&s, Some(&ok), br#"{"id":"evt_2"}"#, now, 300),
            Err(WebhookError::Mismatch)
        );
        let old = sign("whsec_a", t - 301, body);
        assert_eq!(
            verify(&s, Some(&old), body, now, 300),
            Err(WebhookError::Stale(300))
        );
        let ahead = sign("whsec_a", t + 301, body);
        assert_eq!(
            verify(&s, Some(&ahead), body, now, 300),
            Err(WebhookError::Stale(300))
        );
        assert_eq!(
            verify(&s, Some(&sign("whsec_a", t - 299, body)), body, now, 300),
            Ok(())
        );
        // Rotation: a second v1 under the new secret, or a second secret configured here.
        let rolled = format!(
            "{},v1={}",
            sign("whsec_old", t, body),
            sign("whsec_a", t, body).split("v1=").nth(1).unwrap()
        );
        assert_eq!(verify(&s, Some(&rolled), body, now, 300), Ok(()));
        let both = [secret("whsec_new"), secret("whsec_a")];
        assert_eq!(verify(&both, Some(&ok), body, now, 300), Ok(()));
        // v0 is a decoy and never counts.
        let v0 = ok.replace("v1=", "v0=");
        assert!(verify(&s, Some(&v0), body, now, 300).is_err());
        assert_eq!(
            verify(&s, None, body, now, 300),
            Err(WebhookError::MissingSignature)
        );
        assert!(verify(&s, Some("garbage"), body, now, 300).is_err());
        assert_eq!(
            verify(&[], Some(&ok), body, now, 300),
            Err(WebhookError::NotConfigured)
        );
    }
}
