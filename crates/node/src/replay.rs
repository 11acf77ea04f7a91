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
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::spool::{SpoolError, write_atomic_private};

/// File name of the cache in the spool directory.
pub const FILE: &str = "replay.jsonl";
/// The file is rewritten (expired entries dropped) once it holds this many more lines than
/// twice the entries live at the previous rewrite.
const COMPACT_SLACK: usize = 1024;

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
    /// Lines in the file.
    lines: usize,
    /// At this many lines the file is rewritten.
    compact_at: usize,
    file: File,
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

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn open_append(path: &Path) -> Result<File, SpoolError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))
}

impl ReplayCache {
    /// Opens (creating) `dir/replay.jsonl`, dropping entries older than `max_age_secs` at
    /// `now`. A torn last line (a crash while appending, before the run went on) is dropped; any
    /// other malformed line is refused, naming the file and line.
    pub fn open(dir: &Path, max_age_secs: u64, now: i64) -> Result<ReplayCache, SpoolError> {
        let path = dir.join(FILE);
        let max_age = i64::try_from(max_age_secs).unwrap_or(i64::MAX);
        let mut entries = HashMap::new();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let complete = bytes.ends_with(b"\n");
                let text = String::from_utf8_lossy(&bytes);
                let lines: Vec<&str> = text.split_terminator('\n').collect();
                for (i, line) in lines.iter().enumerate() {
                    match serde_json::from_str::<Line>(line) {
                        Ok(l) => {
                            entries.insert(
                                l.nonce,
                                Entry {
                                    run_id: l.run_id,
                                    issued_at: l.issued_at,
                                },
                            );
                        }
                        Err(_) if i + 1 == lines.len() && !complete => {
                            tracing::warn!(path = %path.display(), "dropping a torn last line of the replay cache");
                        }
                        Err(e) => {
                            return Err(SpoolError::Corrupt {
                                path: path.clone(),
                                message: format!(
                                    "line {}: {e}; the node will not forget the nonces it accepted: repair or move the file",
                                    i + 1
                                ),
                            });
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        entries.retain(|_, e| live(e, max_age, now));
        write_atomic_private(&path, &serialize(&entries)?)?;
        let file = open_append(&path)?;
        Ok(ReplayCache {
            state: Mutex::new(State {
                lines: entries.len(),
                compact_at: 2 * entries.len() + COMPACT_SLACK,
                entries,
                file,
            }),
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
        let mut line = serde_json::to_vec(&Line {
            nonce: nonce.to_owned(),
            run_id,
            issued_at,
        })
        .map_err(|e| SpoolError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        line.push(b'\n');
        s.file.write_all(&line).map_err(io(&self.path))?;
        s.file.sync_data().map_err(io(&self.path))?;
        s.entries
            .insert(nonce.to_owned(), Entry { run_id, issued_at });
        s.lines += 1;
        if s.lines >= s.compact_at {
            let max_age = self.max_age;
            s.entries.retain(|_, e| live(e, max_age, now));
            write_atomic_private(&self.path, &serialize(&s.entries)?)?;
            s.file = open_append(&self.path)?;
            s.lines = s.entries.len();
            s.compact_at = 2 * s.entries.len() + COMPACT_SLACK;
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

/// Whether an entry's input could still be accepted at `now` (with the clock margin).
fn live(e: &Entry, max_age: i64, now: i64) -> bool {
    let margin = i64::try_from(crate::config::MAX_FUTURE_SECS).unwrap_or(0);
    e.issued_at.saturating_add(max_age).saturating_add(margin) >= now
}

fn serialize(entries: &HashMap<String, Entry>) -> Result<Vec<u8>, SpoolError> {
    let mut sorted: Vec<(&String, &Entry)> = entries.iter().collect();
    sorted.sort_by_key(|(n, e)| (e.run_id, n.as_str()));
    let mut out = Vec::new();
    for (nonce, e) in sorted {
        let line = serde_json::to_vec(&Line {
            nonce: nonce.clone(),
            run_id: e.run_id,
            issued_at: e.issued_at,
        })
        .map_err(|err| SpoolError::Corrupt {
            path: PathBuf::from(FILE),
            message: err.to_string(),
        })?;
        out.extend_from_slice(&line);
        out.push(b'\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

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
