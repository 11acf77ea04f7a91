//! The per-account lockout: after `threshold` wrong passwords in a row the account is locked
//! for `secs`. The decision is pure; the caller stores `failed` and `locked_until` (seconds or
//! microseconds, as long as `now` uses the same unit) and updates them atomically.

/// Lockout parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    /// Failures in a row that lock the account (at least 1).
    pub threshold: u32,
    /// How long a lock lasts, in the caller's time unit.
    pub duration: i64,
}

/// An account's counter and lock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginState {
    pub failed: i64,
    pub locked_until: Option<i64>,
}

impl Lockout {
    /// How long until the lock ends, or `None` when the account is not locked at `now`.
    pub fn remaining(&self, state: LoginState, now: i64) -> Option<i64> {
        state.locked_until.filter(|t| *t > now).map(|t| t - now)
    }

    /// The state after one more wrong password at `now`: at the threshold the account is
    /// locked and the counter restarts.
    pub fn after_failure(&self, state: LoginState, now: i64) -> LoginState {
        let failed = state.failed.saturating_add(1);
        if failed >= i64::from(self.threshold.max(1)) {
            LoginState {
                failed: 0,
                locked_until: Some(now.saturating_add(self.duration)),
            }
        } else {
            LoginState {
                failed,
                locked_until: state.locked_until,
            }
        }
    }

    /// The message of a refused login while locked, `remaining` in seconds.
    pub fn message(remaining_secs: i64) -> String {
        let minutes = (remaining_secs.max(1) + 59) / 60;
        format!("too many wrong passwords: the account is locked; try again in {minutes} minute(s)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_locks_for_the_duration_and_restarts_the_count() {
        let l = Lockout {
            threshold: 3,
            duration: 100,
        };
        let mut s = LoginState::default();
        for _ in 0..2 {
            s = l.after_failure(s, 10);
            assert_eq!(l.remaining(s, 10), None);
        }
        s = l.after_failure(s, 10);
        assert_eq!(s.failed, 0);
        assert_eq!(l.remaining(s, 10), Some(100));
        assert_eq!(l.remaining(s, 109), Some(1));
        assert_eq!(l.remaining(s, 110), None);
        assert!(Lockout::message(61).contains("2 minute(s)"));
    }
}
