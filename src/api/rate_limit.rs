//! Requests per API key: a token bucket per key (GCRA, the `governor` crate) refilling at
//! `server.rate_limit_per_second` and holding `server.rate_limit_burst`; a request over it is
//! answered 429 `rate_limited` with `Retry-After`. Limits live in the process: several `recur
//! serve` processes each allow the rate.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::num::NonZeroU32;

pub struct RateLimits {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl RateLimits {
    /// `None` when `per_second` is 0 (no limit).
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        Some(RateLimits {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            clock: DefaultClock::default(),
        })
    }

    /// Takes one request from the key's bucket, or says in how many whole seconds to retry.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let outcome = self.limiter.check_key(&key.to_owned());
        // Keys that are no longer used leave the map now and then, so it holds live keys only.
        if rand::random_ratio(1, 10_000) {
            self.limiter.retain_recent();
        }
        outcome.map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_waits_and_other_keys_are_not_affected() {
        let limits = RateLimits::new(1, 3).unwrap();
        for _ in 0..3 {
            assert_eq!(limits.check("key_a"), Ok(()));
        }
        assert_eq!(limits.check("key_a"), Err(1));
        assert_eq!(limits.check("key_b"), Ok(()));
        assert!(RateLimits::new(0, 10).is_none());
    }
}
