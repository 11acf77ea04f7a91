//! Per-client-address token buckets for login routes.
//!
//! A login with a password costs an argon2id hash (19 MiB, tens of milliseconds of CPU), so
//! password spraying across many accounts from one address is limited by address, not only by
//! the per-account lockout. The decision is a pure function of the bucket and the time
//! ([`Bucket::take`]), tested without a clock; [`Throttle`] keeps one bucket per address in
//! memory (per replica: behind several replicas the limit applies per replica).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most addresses tracked at once. Above it, buckets that have refilled (they hold no state
/// worth keeping) are dropped; if every one is still draining, a new address is let through
/// untracked rather than refused, so a flood of addresses cannot lock everyone out.
const MAX_TRACKED: usize = 100_000;

/// One address's bucket: `tokens` left at `at`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Rate and burst of a bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_sec: f64,
    /// Capacity (and the start value).
    pub burst: f64,
}

impl Rate {
    /// `per_minute` requests per minute on average, `burst` at once.
    pub fn per_minute(per_minute: u32, burst: u32) -> Rate {
        Rate {
            per_sec: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
        }
    }
}

impl Bucket {
    pub fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: rate.burst,
            at: now,
        }
    }

    fn refilled(&self, rate: Rate, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * rate.per_sec).min(rate.burst)
    }

    /// Take one token at `now`: `Ok` or, when empty, how long until one is back.
    pub fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        let tokens = self.refilled(rate, now);
        self.at = now;
        if tokens >= 1.0 {
            self.tokens = tokens - 1.0;
            Ok(())
        } else {
            self.tokens = tokens;
            let wait = if rate.per_sec > 0.0 {
                (1.0 - tokens) / rate.per_sec
            } else {
                f64::from(u32::MAX)
            };
            Err(Duration::from_secs_f64(wait))
        }
    }
}

/// The key of an address: IPv4 as is, IPv6 by its /64 (one host usually holds a whole /64, so
/// keying by the full address would give it 2^64 buckets).
fn key_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
    }
}

/// One token bucket per client address.
#[derive(Debug)]
pub struct Throttle {
    rate: Rate,
    exempt: Vec<IpAddr>,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl Throttle {
    pub fn new(rate: Rate, exempt: &[IpAddr]) -> Throttle {
        Throttle {
            rate,
            exempt: exempt.iter().copied().map(key_of).collect(),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take a token for `ip` at `now`; `Err(retry_after)` when its bucket is empty.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = key_of(ip);
        if self.exempt.contains(&key) {
            return Ok(());
        }
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            // A panic while holding the lock cannot leave a bucket half-written.
            Err(poisoned) => poisoned.into_inner(),
        };
        if !buckets.contains_key(&key) && buckets.len() >= MAX_TRACKED {
            let rate = self.rate;
            buckets.retain(|_, b| b.refilled(rate, now) < rate.burst);
            if buckets.len() >= MAX_TRACKED {
                return Ok(());
            }
        }
        buckets
            .entry(key)
            .or_insert_with(|| Bucket::full(self.rate, now))
            .take(self.rate, now)
    }

    /// Addresses with a bucket (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let rate = Rate::per_minute(60, 3);
        let t0 = Instant::now();
        let mut b = Bucket::full(rate, t0);
        for _ in 0..3 {
            assert_eq!(b.take(rate, t0), Ok(()));
        }
        let wait = b.take(rate, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-6, "{wait:?}");
        // Half a second later half a token is back: still refused, half a second to wait.
        let wait = b.take(rate, t0 + Duration::from_millis(500)).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        assert_eq!(b.take(rate, t0 + Duration::from_millis(1000)), Ok(()));
        assert!(b.take(rate, t0 + Duration::from_millis(1000)).is_err());
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(b.take(rate, later), Ok(()));
        }
        assert!(b.take(rate, later).is_err());
    }

    #[test]
    fn addresses_have_their_own_buckets_and_exempt_ones_none() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let exempt: IpAddr = "10.0.0.1".parse().unwrap();
        let t = Throttle::new(Rate::per_minute(1, 2), &[exempt]);
        let now = Instant::now();
        assert!(t.check(a, now).is_ok());
        assert!(t.check(a, now).is_ok());
        assert!(t.check(a, now).is_err());
        assert!(t.check(b, now).is_ok());
        for _ in 0..100 {
            assert!(t.check(exempt, now).is_ok());
        }
        assert_eq!(t.tracked(), 2);
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_and_mapped_ipv4_as_ipv4() {
        let t = Throttle::new(Rate::per_minute(1, 1), &[]);
        let now = Instant::now();
        assert!(t.check("2001:db8:1:2::1".parse().unwrap(), now).is_ok());
        assert!(
            t.check("2001:db8:1:2:ffff::9".parse().unwrap(), now)
                .is_err()
        );
        assert!(t.check("2001:db8:1:3::1".parse().unwrap(), now).is_ok());
        assert!(t.check("192.0.2.7".parse().unwrap(), now).is_ok());
        assert!(t.check("::ffff:192.0.2.7".parse().unwrap(), now).is_err());
    }
}
