//! Prometheus metrics in the text exposition format, kept as plain atomics.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub http_2xx: AtomicU64,
    pub http_4xx: AtomicU64,
    pub http_5xx: AtomicU64,
    pub http_other: AtomicU64,
    pub tasks_created: AtomicU64,
    pub runs_created: AtomicU64,
    pub run_transitions: AtomicU64,
    pub logins_ok: AtomicU64,
    pub logins_failed: AtomicU64,
    pub node_logins: AtomicU64,
    pub events_delivered: AtomicU64,
    pub events_pushed: AtomicU64,
    pub event_reads: AtomicU64,
    pub ws_sessions: AtomicI64,
}

impl Metrics {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn count_status(&self, status: u16) {
        let c = match status {
            200..=299 => &self.http_2xx,
            400..=499 => &self.http_4xx,
            500..=599 => &self.http_5xx,
            _ => &self.http_other,
        };
        Metrics::inc(c);
    }

    pub fn render(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP warden_http_responses_total HTTP responses by status class.\n\
             # TYPE warden_http_responses_total counter"
        );
        for (class, c) in [
            ("2xx", &self.http_2xx),
            ("4xx", &self.http_4xx),
            ("5xx", &self.http_5xx),
            ("other", &self.http_other),
        ] {
            let _ = writeln!(
                s,
                "warden_http_responses_total{{class=\"{class}\"}} {}",
                g(c)
            );
        }
        let counters = [
            (
                "warden_tasks_created_total",
                "Tasks created.",
                &self.tasks_created,
            ),
            (
                "warden_runs_created_total",
                "Runs created.",
                &self.runs_created,
            ),
            (
                "warden_run_transitions_total",
                "Run state transitions.",
                &self.run_transitions,
            ),
            (
                "warden_node_logins_total",
                "Successful node logins.",
                &self.node_logins,
            ),
            (
                "warden_events_delivered_total",
                "Events sent to nodes.",
                &self.events_delivered,
            ),
            (
                "warden_events_pushed_total",
                "Events sent to nodes as their commit handed them over, without a database read (counted in warden_events_delivered_total too).",
                &self.events_pushed,
            ),
            (
                "warden_event_reads_total",
                "Database reads of the nodes' event sessions: the first of each session, each wake-up that did not hand the events over, a mailbox that filled up, the periodic safety net.",
                &self.event_reads,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                g(c)
            );
        }
        let _ = writeln!(
            s,
            "# HELP warden_user_logins_total User login attempts by outcome.\n\
             # TYPE warden_user_logins_total counter\n\
             warden_user_logins_total{{outcome=\"success\"}} {}\n\
             warden_user_logins_total{{outcome=\"failure\"}} {}",
            g(&self.logins_ok),
            g(&self.logins_failed)
        );
        let _ = writeln!(
            s,
            "# HELP warden_event_sessions Connected node WebSocket sessions.\n\
             # TYPE warden_event_sessions gauge\n\
             warden_event_sessions {}",
            self.ws_sessions.load(Ordering::Relaxed)
        );
        s
    }
}

/// Shortest bearer token `[metrics] token_file` may hold.
pub const MIN_TOKEN_LEN: usize = 32;
/// Longest: the bearer parser takes no longer credential.
pub const MAX_TOKEN_LEN: usize = 256;

/// Who may read `GET /metrics`: anyone, or the holder of one bearer token (kept as its sha256,
/// compared hash against hash so that the comparison's time says nothing about the token).
#[derive(Clone, PartialEq, Eq)]
pub enum MetricsAccess {
    Open,
    Token([u8; 32]),
}

impl std::fmt::Debug for MetricsAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsAccess::Open => f.write_str("Open"),
            MetricsAccess::Token(_) => f.write_str("Token(..)"),
        }
    }
}

/// Why a metrics token file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read the metrics token file {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the metrics token file {path} holds {len} characters after trimming; it needs {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} (e.g. `openssl rand -hex 32 > {path}`)"
    )]
    Length {
        path: std::path::PathBuf,
        len: usize,
    },
    #[error(
        "the metrics token file {path} holds whitespace or control characters inside the token; write one token on one line"
    )]
    Characters { path: std::path::PathBuf },
}

impl MetricsAccess {
    /// Only a client presenting `token` may read the metrics.
    pub fn token(token: &str) -> Self {
        MetricsAccess::Token(sha256(token.as_bytes()))
    }

    /// Read `[metrics] token_file`: the token, trimmed, of [`MIN_TOKEN_LEN`] to
    /// [`MAX_TOKEN_LEN`] visible characters.
    pub fn from_file(path: &std::path::Path) -> Result<Self, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let token = text.trim();
        let len = token.chars().count();
        if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&len) {
            return Err(TokenFileError::Length {
                path: path.to_path_buf(),
                len,
            });
        }
        if !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(TokenFileError::Characters {
                path: path.to_path_buf(),
            });
        }
        Ok(MetricsAccess::token(token))
    }

    /// Whether a request with this bearer credential (if any) may read the metrics.
    pub fn allows(&self, presented: Option<&str>) -> bool {
        match self {
            MetricsAccess::Open => true,
            MetricsAccess::Token(want) => presented.is_some_and(|p| {
                let got = sha256(p.as_bytes());
                want.iter()
                    .zip(got.iter())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
            }),
        }
    }
}

fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

#[cfg(test)]
mod token_tests {
    use super::*;

    #[test]
    fn only_the_token_opens_a_guarded_endpoint() {
        let t = "0123456789abcdef0123456789abcdef";
        let a = MetricsAccess::token(t);
        assert!(a.allows(Some(t)));
        assert!(!a.allows(None));
        assert!(!a.allows(Some("0123456789abcdef0123456789abcdeX")));
        assert!(!a.allows(Some("")));
        assert!(MetricsAccess::Open.allows(None));
        assert_eq!(format!("{a:?}"), "Token(..)");
    }

    #[test]
    fn token_files_are_trimmed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let check = |text: &str| {
            let p = dir.path().join("t");
            std::fs::write(&p, text).unwrap();
            MetricsAccess::from_file(&p).map_err(|e| e.to_string())
        };
        let t = "0123456789abcdef0123456789abcdef";
        assert_eq!(check(&format!("  {t}\n")).unwrap(), MetricsAccess::token(t));
        let e = check("short\n").unwrap_err();
        assert!(
            e.contains("holds 5 characters") && e.contains("needs 32"),
            "{e}"
        );
        assert!(check("").unwrap_err().contains("holds 0 characters"));
        assert!(check(&"x".repeat(257)).unwrap_err().contains("257"));
        assert!(
            check(&format!("{t} {t}"))
                .unwrap_err()
                .contains("whitespace")
        );
        let e = MetricsAccess::from_file(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cannot read the metrics token file"), "{e}");
    }
}
