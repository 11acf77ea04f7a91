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
