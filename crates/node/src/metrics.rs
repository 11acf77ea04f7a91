//! Prometheus metrics of the node (`[metrics] listen`), in the text exposition format and kept
//! as plain atomics, as the server keeps its own (crates/server/src/metrics.rs): runs by final
//! outcome, the admission's latency as a histogram, audit appends; the queue, the runs in flight
//! and the spool are read when scraped. Served on one TCP address, loopback unless
//! `allow_remote`; `GET /metrics` only, no body read.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the admission histogram's buckets, in seconds.
pub const ADMISSION_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// How many entries a scrape walks under the spool at most (its size is then a lower bound).
const MAX_SPOOL_ENTRIES: usize = 100_000;

/// The node's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    pub runs_completed: AtomicU64,
    pub runs_failed: AtomicU64,
    pub runs_rejected: AtomicU64,
    pub audit_appends: AtomicU64,
    pub audit_append_failures: AtomicU64,
    /// Per bucket of [`ADMISSION_BUCKETS`] (not cumulative), then the `+Inf` one.
    admission_buckets: [AtomicU64; ADMISSION_BUCKETS.len() + 1],
    admission_count: AtomicU64,
    /// Microseconds.
    admission_sum_us: AtomicU64,
}

/// What a scrape reads from the node at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gauges {
    pub queued: u64,
    pub in_flight: u64,
    pub spool_bytes: u64,
    pub spool_runs: u64,
}

impl Metrics {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// One admission (admitted or refused) that took `took`.
    pub fn observe_admission(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = ADMISSION_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(ADMISSION_BUCKETS.len());
        Metrics::inc(&self.admission_buckets[i]);
        Metrics::inc(&self.admission_count);
        self.admission_sum_us.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn render(&self, g: Gauges) -> String {
        let v = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP warden_node_runs_total Runs this node finished, by final outcome.\n\
             # TYPE warden_node_runs_total counter"
        );
        for (outcome, c) in [
            ("completed", &self.runs_completed),
            ("failed", &self.runs_failed),
            ("rejected", &self.runs_rejected),
        ] {
            let _ = writeln!(
                s,
                "warden_node_runs_total{{outcome=\"{outcome}\"}} {}",
                v(c)
            );
        }
        let _ = writeln!(
            s,
            "# HELP warden_node_admission_seconds Time from a run's intake to the node's decision \
             (the trust chain).\n# TYPE warden_node_admission_seconds histogram"
        );
        let mut cumulative = 0;
        for (i, le) in ADMISSION_BUCKETS.iter().enumerate() {
            cumulative += v(&self.admission_buckets[i]);
            let _ = writeln!(
                s,
                "warden_node_admission_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        cumulative += v(&self.admission_buckets[ADMISSION_BUCKETS.len()]);
        let _ = writeln!(
            s,
            "warden_node_admission_seconds_bucket{{le=\"+Inf\"}} {cumulative}\n\
             warden_node_admission_seconds_sum {}\n\
             warden_node_admission_seconds_count {cumulative}",
            v(&self.admission_sum_us) as f64 / 1e6
        );
        let _ = writeln!(
            s,
            "# HELP warden_node_audit_appends_total Records appended to the audit log, by result.\n\
             # TYPE warden_node_audit_appends_total counter\n\
             warden_node_audit_appends_total{{result=\"ok\"}} {}\n\
             warden_node_audit_appends_total{{result=\"failed\"}} {}",
            v(&self.audit_appends),
            v(&self.audit_append_failures)
        );
        for (name, help, value) in [
            (
                "warden_node_queue_depth",
                "Runs taken from the server and waiting for a run slot.",
                g.queued,
            ),
            (
                "warden_node_runs_in_flight",
                "Runs being admitted or run (holding a run slot).",
                g.in_flight,
            ),
            (
                "warden_node_spool_bytes",
                "Bytes of the files under the spool directory.",
                g.spool_bytes,
            ),
            (
                "warden_node_spool_runs",
                "Runs recorded in the spool (in progress or awaiting delivery).",
                g.spool_runs,
            ),
        ] {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        s
    }
}

/// Bytes of the regular files under `dir`, walked without following links (at most
/// [`MAX_SPOOL_ENTRIES`] entries).
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut seen = 0usize;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > MAX_SPOOL_ENTRIES {
                return total;
            }
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    total
}

/// Why the metrics listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for metrics on {addr} ([metrics] listen): {message}")]
pub struct MetricsStartError {
    pub addr: SocketAddr,
    pub message: String,
}

/// Serves `GET /metrics` on `addr` with what `render` returns; the task ends when aborted.
pub(crate) async fn serve<F>(
    addr: SocketAddr,
    render: F,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), MetricsStartError>
where
    F: Fn() -> String + Clone + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| MetricsStartError {
            addr,
            message: e.to_string(),
        })?;
    let bound = listener.local_addr().map_err(|e| MetricsStartError {
        addr,
        message: e.to_string(),
    })?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let render = render.clone();
            async move {
                use axum::response::IntoResponse as _;
                // The spool is walked and its records read: off the async workers.
                match tokio::task::spawn_blocking(render).await {
                    Ok(text) => (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                        .into_response(),
                    Err(_) => (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "the node could not read its metrics; its log says why\n",
                    )
                        .into_response(),
                }
            }
        }),
    );
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    tracing::info!(listen = %bound, "metrics served at /metrics");
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges() -> Gauges {
        Gauges {
            queued: 2,
            in_flight: 1,
            spool_bytes: 10,
            spool_runs: 3,
        }
    }

    #[test]
    fn the_histogram_is_cumulative_and_counts_every_admission() {
        let m = Metrics::default();
        m.observe_admission(Duration::from_millis(3));
        m.observe_admission(Duration::from_millis(200));
        m.observe_admission(Duration::from_secs(100));
        let text = m.render(gauges());
        assert!(
            text.contains("warden_node_admission_seconds_bucket{le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("warden_node_admission_seconds_bucket{le=\"0.25\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("warden_node_admission_seconds_bucket{le=\"30\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("warden_node_admission_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("warden_node_admission_seconds_count 3\n"),
            "{text}"
        );
        assert!(
            text.contains("warden_node_admission_seconds_sum 100.203\n"),
            "{text}"
        );
        assert!(text.contains("warden_node_queue_depth 2\n"), "{text}");
        assert!(text.contains("warden_node_spool_bytes 10\n"), "{text}");
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn dir_bytes_counts_files_below() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"12345").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b"), b"123").unwrap();
        assert_eq!(dir_bytes(dir.path()), 8);
    }
}
