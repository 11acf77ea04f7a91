//! The `runs_per_day` budget of allow rules: every run admitted under a rule with a budget,
//! per requesting organization (the proven one) and rule, counted at the node over a rolling
//! 24 hours.
//!
//! ```text
//! <spool>/runs_per_day.jsonl   one line per run counted:
//!                              {"organization":"A","rule":"allow[1]","run_id":12,"at":1700000000}
//! ```
//!
//! A line is appended and fsync'd before the run goes on (as the replay cache does), so a
//! restart never forgets a run it admitted. Lines older than 24 hours are dropped when the file
//! is opened and whenever it has grown (rewritten atomically). The same run handled again (after
//! a passing failure or a restart) is not counted twice.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::jsonl::JsonLines;
use crate::spool::SpoolError;

/// File name of the counts in the spool directory.
pub const FILE: &str = "runs_per_day.jsonl";
/// The window the budget counts over, in seconds.
pub const WINDOW_SECS: i64 = 24 * 60 * 60;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    organization: String,
    rule: String,
    run_id: i64,
    at: i64,
}

/// What the budget says about a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    /// Within the budget: now counted (or counted earlier for this same run).
    Within,
    /// The organization already ran this many runs under the rule within 24 hours.
    Over { used: usize },
}

struct State {
    lines: Vec<Line>,
    file: JsonLines<Line>,
}

/// The persisted counts of runs per organization and rule.
pub struct RunBudget {
    path: PathBuf,
    state: Mutex<State>,
}

impl std::fmt::Debug for RunBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunBudget")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn live(line: &Line, now: i64) -> bool {
    now.saturating_sub(line.at) < WINDOW_SECS
}

impl RunBudget {
    /// Opens (creating) `dir/runs_per_day.jsonl`, dropping lines older than 24 hours at `now`.
    /// A torn last line (a crash while appending, before the run went on) is dropped; any other
    /// malformed line is refused, naming the file and line.
    pub fn open(dir: &Path, now: i64) -> Result<RunBudget, SpoolError> {
        let path = dir.join(FILE);
        let (file, lines) =
            JsonLines::open(path.clone(), "the runs it counted", |l: &Line| live(l, now))?;
        Ok(RunBudget {
            state: Mutex::new(State { lines, file }),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counts `run_id` for (`organization`, `rule`) when fewer than `budget` runs were counted
    /// for them within 24 hours of `now`, durably before returning; otherwise counts nothing.
    pub fn spend(
        &self,
        organization: &str,
        rule: &str,
        budget: u32,
        run_id: i64,
        now: i64,
    ) -> Result<Spent, SpoolError> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mine = |l: &&Line| l.organization == organization && l.rule == rule && live(l, now);
        if s.lines.iter().filter(mine).any(|l| l.run_id == run_id) {
            return Ok(Spent::Within);
        }
        let used = s.lines.iter().filter(mine).count();
        if used >= budget as usize {
            return Ok(Spent::Over { used });
        }
        let line = Line {
            organization: organization.to_owned(),
            rule: rule.to_owned(),
            run_id,
            at: now,
        };
        s.file.append(&line)?;
        s.lines.push(line);
        if s.file.wants_rewrite() {
            let State { lines, file } = &mut *s;
            lines.retain(|l| live(l, now));
            let refs: Vec<&Line> = lines.iter().collect();
            file.rewrite(&refs)?;
        }
        Ok(Spent::Within)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_budget_counts_per_organization_and_rule_over_a_rolling_day_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let t = 1_700_000_000;
        let b = RunBudget::open(dir.path(), t).unwrap();
        assert_eq!(b.spend("A", "allow[1]", 2, 1, t).unwrap(), Spent::Within);
        // The same run again is not counted twice.
        assert_eq!(b.spend("A", "allow[1]", 2, 1, t).unwrap(), Spent::Within);
        assert_eq!(
            b.spend("A", "allow[1]", 2, 2, t + 1).unwrap(),
            Spent::Within
        );
        assert_eq!(
            b.spend("A", "allow[1]", 2, 3, t + 2).unwrap(),
            Spent::Over { used: 2 }
        );
        // Another organization, another rule: their own budgets.
        assert_eq!(
            b.spend("B", "allow[1]", 2, 4, t + 2).unwrap(),
            Spent::Within
        );
        assert_eq!(
            b.spend("A", "allow[2]", 2, 5, t + 2).unwrap(),
            Spent::Within
        );
        drop(b);
        let b = RunBudget::open(dir.path(), t + 3).unwrap();
        assert_eq!(
            b.spend("A", "allow[1]", 2, 6, t + 3).unwrap(),
            Spent::Over { used: 2 }
        );
        let mode = std::fs::metadata(b.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A day after the first run, its room is back.
        assert_eq!(
            b.spend("A", "allow[1]", 2, 7, t + WINDOW_SECS).unwrap(),
            Spent::Within
        );
        drop(b);
        // Reopened a day later: the expired lines are gone from the file.
        let b = RunBudget::open(dir.path(), t + 2 * WINDOW_SECS + 1).unwrap();
        let text = std::fs::read_to_string(b.path()).unwrap();
        assert!(text.is_empty(), "{text}");
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_other_garbage_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let t = 1_700_000_000;
        std::fs::write(
            &path,
            format!("{{\"organization\":\"A\",\"rule\":\"allow[1]\",\"run_id\":1,\"at\":{t}}}\n{{\"organ"),
        )
        .unwrap();
        let b = RunBudget::open(dir.path(), t).unwrap();
        assert_eq!(
            b.spend("A", "allow[1]", 1, 2, t).unwrap(),
            Spent::Over { used: 1 }
        );
        drop(b);
        std::fs::write(&path, "garbage\n").unwrap();
        let e = RunBudget::open(dir.path(), t).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains(FILE), "{e}");
    }
}
