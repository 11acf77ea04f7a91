//! The replay cache: every input nonce this node accepted, with the run that used it, so that a
//! sealed input copied into another run (by a lying server, or anyone who can create tasks) is
//! refused even when its nonce matches the task's.
//!
//! ```text
//! <spool>/replay.jsonl   one line per accepted nonce:
//!                        {"nonce":"…","run_id":12,"issued_at":1700000000}
//! ```
//!
//! A line is appended and fsync'd before the run goes on, so a restart never forgets a nonce it
//! acted on. An entry is kept while its input could still be accepted: an input whose
//! `issued_at` is older than `max_input_age_secs` is refused anyway, so older entries are
//! dropped when the file is opened and whenever it has grown to twice what is live (rewritten
//! atomically). The same run handled again (after a transient failure or a restart) finds its
//! own entry and is not a replay.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::jsonl::JsonLines;
use crate::spool::SpoolError;

/// File name of the cache in the spool directory.
pub const FILE: &str = "replay.jsonl";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    nonce: String,
    run_id: i64,
    issued_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    run_id: i64,
    issued_at: i64,
}

/// What the cache says about a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Never seen: now recorded for this run.
    New,
    /// Recorded earlier for this same run.
    SameRun,
    /// Used by another run: a replay.
    OtherRun(i64),
}

struct State {
    entries: HashMap<String, Entry>,
    file: JsonLines<Line>,
}

/// The persisted set of accepted nonces.
pub struct ReplayCache {
    path: PathBuf,
    max_age: i64,
    state: Mutex<State>,
}

impl std::fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayCache")
            .field("path", &self.path)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl ReplayCache {
    /// Opens (creating) `dir/replay.jsonl`, dropping entries older than `max_age_secs` at
    /// `now`. A torn last line (a crash while appending, before the run went on) is dropped; any
    /// other malformed line is refused, naming the file and line.
    pub fn open(dir: &Path, max_age_secs: u64, now: i64) -> Result<ReplayCache, SpoolError> {
        let path = dir.join(FILE);
        let max_age = i64::try_from(max_age_secs).unwrap_or(i64::MAX);
        let (file, lines) = JsonLines::open(path.clone(), "the nonces it accepted", |l: &Line| {
            live(l.issued_at, max_age, now)
        })?;
        let entries = lines
            .into_iter()
            .map(|l| {
                (
                    l.nonce,
                    Entry {
                        run_id: l.run_id,
                        issued_at: l.issued_at,
                    },
                )
            })
            .collect();
        Ok(ReplayCache {
            state: Mutex::new(State { entries, file }),
            path,
            max_age,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Looks `nonce` up and, when it is new, records it for `run_id` durably before returning.
    pub fn admit(
        &self,
        nonce: &str,
        run_id: i64,
        issued_at: i64,
        now: i64,
    ) -> Result<Seen, SpoolError> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.entries.get(nonce) {
            Some(e) if e.run_id == run_id => return Ok(Seen::SameRun),
            Some(e) => return Ok(Seen::OtherRun(e.run_id)),
            None => {}
        }
        s.file.append(&Line {
            nonce: nonce.to_owned(),
            run_id,
            issued_at,
        })?;
        s.entries
            .insert(nonce.to_owned(), Entry { run_id, issued_at });
        if s.file.wants_rewrite() {
            let max_age = self.max_age;
            s.entries.retain(|_, e| live(e.issued_at, max_age, now));
            let lines = lines_of(&s.entries);
            let refs: Vec<&Line> = lines.iter().collect();
            s.file.rewrite(&refs)?;
        }
        Ok(Seen::New)
    }

    /// How many nonces are remembered.
    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether an input issued at `issued_at` could still be accepted at `now` (with the clock
/// margin).
fn live(issued_at: i64, max_age: i64, now: i64) -> bool {
    let margin = i64::try_from(crate::config::MAX_FUTURE_SECS).unwrap_or(0);
    issued_at.saturating_add(max_age).saturating_add(margin) >= now
}

/// The entries as lines, in a stable order.
fn lines_of(entries: &HashMap<String, Entry>) -> Vec<Line> {
    let mut lines: Vec<Line> = entries
        .iter()
        .map(|(nonce, e)| Line {
            nonce: nonce.clone(),
            run_id: e.run_id,
            issued_at: e.issued_at,
        })
        .collect();
    lines.sort_by(|a, b| (a.run_id, &a.nonce).cmp(&(b.run_id, &b.nonce)));
    lines
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::jsonl::COMPACT_SLACK;

    const DAY: u64 = 86_400;

    #[test]
    fn a_nonce_is_one_runs_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ReplayCache::open(dir.path(), DAY, 1_000_000).unwrap();
        assert_eq!(cache.admit("n1", 7, 999_000, 1_000_000).unwrap(), Seen::New);
        assert_eq!(
            cache.admit("n1", 7, 999_000, 1_000_001).unwrap(),
            Seen::SameRun
        );
        assert_eq!(
            cache.admit("n1", 8, 999_000, 1_000_001).unwrap(),
            Seen::OtherRun(7)
        );
        drop(cache);
        let cache = ReplayCache::open(dir.path(), DAY, 1_000_002).unwrap();
        assert_eq!(
            cache.admit("n1", 9, 999_000, 1_000_002).unwrap(),
            Seen::OtherRun(7)
        );
        assert_eq!(
            cache.admit("n1", 7, 999_000, 1_000_002).unwrap(),
            Seen::SameRun
        );
        let mode = std::fs::metadata(cache.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn entries_older_than_the_largest_input_age_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let now = 10 * DAY as i64;
        let cache = ReplayCache::open(dir.path(), DAY, now).unwrap();
        cache.admit("old", 1, now - DAY as i64 + 10, now).unwrap();
        cache.admit("young", 2, now, now).unwrap();
        drop(cache);
        // A day later the first input would be refused for its age anyway.
        let later = now + 400;
        let cache = ReplayCache::open(dir.path(), DAY, later).unwrap();
        assert_eq!(cache.len(), 1);
        assert_eq!(
            cache.admit("young", 3, now, later).unwrap(),
            Seen::OtherRun(2)
        );
        let text = std::fs::read_to_string(cache.path()).unwrap();
        assert!(!text.contains("\"old\""), "{text}");
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_a_corrupt_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        std::fs::write(
            &path,
            "{\"nonce\":\"a\",\"run_id\":1,\"issued_at\":100}\n{\"nonce\":\"b\",\"ru",
        )
        .unwrap();
        let cache = ReplayCache::open(dir.path(), DAY, 100).unwrap();
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.admit("b", 2, 100, 100).unwrap(), Seen::New);
        drop(cache);
        std::fs::write(
            &path,
            "garbage\n{\"nonce\":\"a\",\"run_id\":1,\"issued_at\":100}\n",
        )
        .unwrap();
        let e = ReplayCache::open(dir.path(), DAY, 100).unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn the_file_is_compacted_as_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ReplayCache::open(dir.path(), 60, 0).unwrap();
        // Every input is already past its age at the time of the next insert.
        for i in 0..(COMPACT_SLACK as i64 + 10) {
            let now = i * 1000;
            cache.admit(&format!("n{i}"), i, now, now).unwrap();
        }
        assert!(cache.len() <= 20, "{}", cache.len());
        let lines = std::fs::read_to_string(cache.path())
            .unwrap()
            .lines()
            .count();
        assert!(lines < COMPACT_SLACK, "{lines}");
    }
}
