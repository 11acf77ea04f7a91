//! Live progress of a task's runs while `warden task create --wait` and `warden task wait`
//! wait: one line per run and organization with its state (and a rejected or failed run's
//! reason, escaped), drawn with indicatif when standard error is a terminal, else one plain
//! line on standard error per change (`hospital-a: run 7 running`), which is what scripts and
//! the tests read. Standard output is left to the final answer (text or the one `--json`
//! document).

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use warden_api::display::safe;
use warden_api::{Run, RunState, TaskDetail};

/// How often a terminal display redraws its spinners.
const TICK: Duration = Duration::from_millis(120);

/// Shows each run's state as it changes.
pub struct Watch {
    /// Organization names by id, as the server shows them.
    names: BTreeMap<i64, String>,
    /// The last (state, reason) shown of each run.
    shown: BTreeMap<i64, (RunState, Option<String>)>,
    bars: Option<Bars>,
}

struct Bars {
    multi: MultiProgress,
    runs: BTreeMap<i64, ProgressBar>,
}

impl Watch {
    /// A display for `names`; drawn live when `live` (see [`Watch::live_here`]).
    pub fn new(names: BTreeMap<i64, String>, live: bool) -> Watch {
        let bars = live.then(|| Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            runs: BTreeMap::new(),
        });
        Watch {
            names,
            shown: BTreeMap::new(),
            bars,
        }
    }

    /// Whether this process can draw live: standard error is a terminal and `TERM` is not
    /// `dumb`.
    pub fn live_here() -> bool {
        std::io::stderr().is_terminal()
            && std::env::var_os("TERM").is_none_or(|t| t.as_encoded_bytes() != b"dumb")
    }

    /// Takes the task as the latest poll shows it.
    pub fn seen(&mut self, task: &TaskDetail) {
        for run in &task.runs {
            let now = (run.state, run.reason.clone());
            if self.shown.get(&run.id) == Some(&now) {
                continue;
            }
            self.shown.insert(run.id, now);
            let text = line(&self.organization(run.organization_id), run);
            match &mut self.bars {
                None => {
                    // Dropped when nobody reads standard error.
                    let _ = writeln!(std::io::stderr(), "{text}");
                }
                Some(bars) => {
                    let bar = bars.runs.entry(run.id).or_insert_with(|| {
                        let bar = bars.multi.add(ProgressBar::new_spinner());
                        bar.set_style(spinner());
                        bar.enable_steady_tick(TICK);
                        bar
                    });
                    if run.state.is_final() {
                        bar.set_style(done());
                        bar.finish_with_message(text);
                    } else {
                        bar.set_message(text);
                    }
                }
            }
        }
    }

    /// Stops drawing, leaving each run's last line on the terminal (after the wait, a timeout
    /// or Ctrl-C).
    pub fn stop(&mut self) {
        if let Some(bars) = &self.bars {
            for bar in bars.runs.values() {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
        }
    }

    fn organization(&self, id: i64) -> String {
        self.names
            .get(&id)
            .map(|n| safe(n).into_owned())
            .unwrap_or_else(|| format!("organization {id}"))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spinner() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn done() -> ProgressStyle {
    ProgressStyle::with_template("  {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// One run's line: `ORG: run ID STATE`, with the node's reason of a rejected or failed run and
/// what a run waiting at its node waits for; every string from the server escaped.
pub fn line(org: &str, run: &Run) -> String {
    let mut text = format!("{org}: run {} {}", run.id, run.state);
    match (run.state, &run.reason) {
        (RunState::Rejected | RunState::Failed, Some(reason)) => {
            text.push_str(": ");
            text.push_str(&safe(reason));
        }
        (state, _) => {
            if let Some(hint) = waiting_hint(state) {
                text.push_str(&format!(" ({hint})"));
            }
        }
    }
    text
}

/// What a run waiting at its node waits for, in the researcher's words.
pub fn waiting_hint(state: RunState) -> Option<&'static str> {
    match state {
        RunState::AwaitingApproval => Some(
            "the data owner's node waits for its owner to approve this image digest before it runs",
        ),
        RunState::AwaitingRelease => {
            Some("the data owner's node holds the result until its owner releases it")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn run(state: &str, reason: Option<&str>) -> Run {
        serde_json::from_value(serde_json::json!({
            "id": 7, "task_id": 1, "collaboration_id": 1, "organization_id": 2,
            "state": state, "reason": reason, "digest": null, "has_result": false,
            "created_at": "2026-01-01T00:00:00Z", "admitted_at": null, "started_at": null,
            "finished_at": null, "acked_at": null,
        }))
        .unwrap()
    }

    #[test]
    fn each_state_has_its_line_and_a_reason_from_the_server_is_escaped() {
        assert_eq!(line("h-a", &run("pending", None)), "h-a: run 7 pending");
        assert_eq!(line("h-a", &run("running", None)), "h-a: run 7 running");
        assert_eq!(
            line("h-a", &run("rejected", Some("denied\u{1b}[2J by rule\nx"))),
            format!(
                "h-a: run 7 rejected: {}",
                safe("denied\u{1b}[2J by rule\nx")
            )
        );
        assert!(!line("h-a", &run("rejected", Some("a\u{1b}[2Jb"))).contains('\u{1b}'));
        assert_eq!(
            line("h-a", &run("failed", Some("exit 3"))),
            "h-a: run 7 failed: exit 3"
        );
        assert!(
            line("h-a", &run("awaiting_release", None))
                .starts_with("h-a: run 7 awaiting_release (the data owner's node holds")
        );
        assert!(
            line("h-a", &run("awaiting_approval", None))
                .starts_with("h-a: run 7 awaiting_approval (the data owner's node waits")
        );
    }
}
