//! Outbound webhooks as rules: which addresses an endpoint may point at, what it may subscribe
//! to, and when a failed delivery is tried again. Pure; sending is `services::webhooks`'.

use super::event::EventType;
use chrono::{DateTime, Duration, Utc};
use std::net::IpAddr;

/// Tries of one delivery before it is given up: the first, then one after each delay.
pub const RETRY_DELAYS_SECS: [i64; 7] = [5, 300, 1_800, 7_200, 18_000, 36_000, 86_400];

/// An endpoint failing without a success for this long is disabled.
pub const DISABLE_AFTER: Duration = Duration::hours(24);

/// When attempt `attempt` (1-based) that failed is tried next: the schedule's delay, or a
/// longer `Retry-After` the receiver asked for (at most a day); `None` once the schedule is
/// spent.
pub fn next_attempt(
    now: DateTime<Utc>,
    attempt: u32,
    retry_after: Option<Duration>,
) -> Option<DateTime<Utc>> {
    let i = usize::try_from(attempt).ok()?.checked_sub(1)?;
    let delay = Duration::seconds(*RETRY_DELAYS_SECS.get(i)?);
    let asked = retry_after.map_or(Duration::zero(), |d| d.min(Duration::days(1)));
    Some(now + delay.max(asked))
}

/// Why an endpoint address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("url must be an absolute http(s) URL of at most 2048 characters")]
    Shape,
    #[error("url must not carry a user name or password")]
    Credentials,
    #[error(
        "url points at {0}, a loopback, private, link-local or otherwise internal address; webhooks go to public addresses (webhooks.allow_private_urls allows others)"
    )]
    Internal(IpAddr),
}

/// The URL parsed and checked for shape (the WHATWG parser reads `http://2130706433/` and
/// `http://0177.0.0.1/` as 127.0.0.1, so every spelling of an address is one address).
pub fn parse_url(s: &str) -> Result<url::Url, UrlError> {
    let u = url::Url::parse(s).map_err(|_| UrlError::Shape)?;
    if s.len() > 2048 || !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return Err(UrlError::Shape);
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(UrlError::Credentials);
    }
    Ok(u)
}

/// The address a URL names literally (`http://10.0.0.1/`, `http://[::1]/`), if it does.
pub fn literal_ip(u: &url::Url) -> Option<IpAddr> {
    match u.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

/// Whether a webhook may be sent to `ip`: only to globally routable unicast addresses.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || a >= 240
                // Carrier-grade NAT 100.64.0.0/10, benchmarking 198.18.0.0/15, IETF 192.0.0.0/24.
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || (a == 192 && b == 0 && c == 0))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                // Unique local fc00::/7 (AWS's metadata fd00:ec2::254 among them), link-local
                // fe80::/10, documentation 2001:db8::/32, NAT64 64:ff9b::/96.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && v6.segments()[1] == 0x0db8)
                || (first == 0x0064 && v6.segments()[1] == 0xff9b))
        }
    }
}

/// The event types an endpoint subscribes to: known types, or `*` for all.
pub fn check_events(events: &[String]) -> Result<(), String> {
    if events.is_empty() || events.len() > 100 {
        return Err("enabled_events lists 1 to 100 event types, or [\"*\"]".into());
    }
    match events
        .iter()
        .find(|e| e.as_str() != "*" && EventType::parse(e).is_none())
    {
        Some(bad) => Err(format!(
            "`{bad}` is not an event type (see GET /v1/events for the types recur writes)"
        )),
        None => Ok(()),
    }
}

/// Whether an endpoint subscribed to `events` wants an event of type `kind`.
pub fn wants(events: &[String], kind: &str) -> bool {
    events.iter().any(|e| e == "*" || e == kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn host_ip(s: &str) -> IpAddr {
        literal_ip(&parse_url(s).unwrap()).unwrap_or_else(|| panic!("{s} parsed as a name"))
    }

    #[test]
    fn every_spelling_of_an_internal_address_is_refused() {
        for s in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f.1/",
            "http://127.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://172.16.5.4/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[fd00:ec2::254]/",
            "http://[fe80::1]/",
        ] {
            assert!(!is_public(host_ip(s)), "{s} passed as public");
        }
        assert!(is_public(host_ip("https://93.184.215.14/hook")));
        assert!(is_public(host_ip("https://[2606:4700::1111]/")));
    }

    #[test]
    fn shapes() {
        assert_eq!(
            parse_url("ftp://example.com/").unwrap_err(),
            UrlError::Shape
        );
        assert_eq!(parse_url("/hooks").unwrap_err(), UrlError::Shape);
        assert_eq!(
            parse_url("https://user:pw@example.com/").unwrap_err(),
            UrlError::Credentials
        );
        assert!(parse_url("https://hooks.example.com/recur?x=1").is_ok());
        assert!(check_events(&["invoice.paid".into(), "*".into()]).is_ok());
        assert!(check_events(&["invoice.exploded".into()]).is_err());
        assert!(check_events(&[]).is_err());
        assert!(
            wants(&["*".into()], "invoice.paid")
                && !wants(&["invoice.paid".into()], "customer.created")
        );
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(*t));
        }
    }

    #[test]
    fn the_schedule_and_retry_after() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(next_attempt(now, 1, None), Some(now + Duration::seconds(5)));
        assert_eq!(
            next_attempt(now, 1, Some(Duration::seconds(120))),
            Some(now + Duration::seconds(120))
        );
        assert_eq!(
            next_attempt(now, 7, Some(Duration::days(9))),
            Some(now + Duration::days(1))
        );
        assert_eq!(next_attempt(now, 8, None), None);
        assert_eq!(next_attempt(now, 0, None), None);
    }

    proptest! {
        /// Later attempts never come sooner, and a retry never comes before the receiver asked.
        #[test]
        fn retries_move_forward(attempt in 1u32..8, asked in 0i64..200_000) {
            let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
            let asked = Duration::seconds(asked);
            let at = next_attempt(now, attempt, Some(asked)).unwrap();
            prop_assert!(at >= now + asked.min(Duration::days(1)));
            if let Some(later) = next_attempt(now, attempt + 1, Some(asked)) {
                prop_assert!(later >= at);
            }
        }
    }
}
