//! The history of one scenario run, and the checker of its invariants.
//!
//! A history is a list of [`Entry`]s, written as JSON lines to `history.jsonl` while the
//! scenario runs (so a history survives a harness that dies) and kept in memory for the
//! checker. It holds what a client asked and was answered, what was done to the system (the
//! faults), what the nodes said, and, after the load, what the servers hold (every task with its
//! runs, read through the API), each completed run's result as the researcher opened it, and each
//! node's audit log. [`check`] reads only the history: a history file can be checked again later.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a task creation was answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Answer {
    /// 201: the task and its runs, one per target organization (id, organization).
    Acknowledged { task_id: i64, runs: Vec<(i64, i64)> },
    /// An answer that says the task was not created (a 4xx other than a nonce conflict, a 5xx
    /// the server sent before committing is not known, so 5xx is [`Answer::Unknown`]).
    Refused { status: u16, message: String },
    /// 409 for the nonce of an earlier attempt whose answer was lost: that attempt committed.
    NonceTaken { status: u16 },
    /// No answer, or one that does not say (a reset connection, a 502/503/504, a timeout).
    Unknown { error: String },
}

/// One event of a scenario run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// The scenario and its parameters.
    Scenario { name: String, detail: String },
    /// A fault done to the system, or its healing.
    Fault { at_ms: u64, what: String },
    /// One attempt of a task creation: the nonce its inputs are bound to (an attempt repeated
    /// after an unknown answer sends the same body, so the same nonce), its targets and answer.
    Create {
        at_ms: u64,
        client: usize,
        attempt: u32,
        nonce: String,
        /// The target organizations' ids.
        targets: Vec<i64>,
        /// The input sent (its canonical form), to compare with the result.
        input: String,
        answer: Answer,
    },
    /// A line a node process wrote that says something about its link or its runs.
    Node {
        at_ms: u64,
        node: String,
        line: String,
    },
    /// A task as the servers hold it after the load (`GET /api/tasks/{id}`).
    FinalTask { task: Value },
    /// A completed run's result downloaded and opened by the researcher (or why it did not).
    Result {
        run_id: i64,
        opened: Result<String, String>,
    },
    /// A node's audit log (its records, checkpoints left out), with the organization it is of.
    Audit {
        node: String,
        organization_id: i64,
        records: Vec<Value>,
    },
    /// What the scenario expects of the runs: `complete` (every run of an acknowledged task
    /// completes) or `refused_while_full` (runs created while the spool disk was full end
    /// failed or rejected with a reason that names the space; the others complete).
    Expect { runs: String },
    /// An extra check of the scenario that held or not (e.g. the servers' process ids are the
    /// same after PostgreSQL came back).
    Claim {
        name: String,
        held: bool,
        detail: String,
    },
}

/// The history being recorded: entries in memory and, line by line, in a file.
#[derive(Debug)]
pub struct History {
    path: PathBuf,
    start: Instant,
    inner: Mutex<(std::fs::File, Vec<Entry>)>,
}

impl History {
    /// A new history written to `path` (created, truncated).
    pub fn create(path: &Path) -> anyhow::Result<History> {
        let file = std::fs::File::create(path)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", path.display()))?;
        Ok(History {
            path: path.to_owned(),
            start: Instant::now(),
            inner: Mutex::new((file, Vec::new())),
        })
    }

    /// Milliseconds since the history began.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Where the history is written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends an entry (to memory and to the file; a write error is reported by [`History::entries`]).
    pub fn record(&self, entry: Entry) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(line) = serde_json::to_string(&entry) {
            let _ = writeln!(g.0, "{line}");
        }
        g.1.push(entry);
    }

    /// A fault now.
    pub fn fault(&self, what: impl Into<String>) {
        self.record(Entry::Fault {
            at_ms: self.now_ms(),
            what: what.into(),
        });
    }

    /// Every entry so far.
    pub fn entries(&self) -> Vec<Entry> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let _ = g.0.flush();
        g.1.clone()
    }
}

/// Reads a history file back.
pub fn load(path: &Path) -> anyhow::Result<Vec<Entry>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// An invariant that did not hold, with what shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's short name (e.g. `acknowledged-task-once`).
    pub invariant: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

/// What was attempted under one nonce: the targets, the input, the acknowledged task and runs.
type Attempted = (Vec<i64>, String, Option<(i64, Vec<(i64, i64)>)>);

const FINAL: [&str; 4] = ["completed", "failed", "rejected", "cancelled"];

/// What the checker counted, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub attempts: usize,
    pub acknowledged: usize,
    pub unknown: usize,
    pub tasks: usize,
    pub runs: usize,
    pub completed: usize,
    pub refused_for_space: usize,
}

/// Checks every invariant of a history; returns what it counted and every violation.
///
/// 1. `acknowledged-task-once`: every acknowledged task exists once at the servers, with its
///    nonce, and exactly one run per target organization (the runs the creation answered).
/// 2. `run-final-once`: every run of a task is in one final state (and, when the scenario
///    expects them to complete, `completed`).
/// 3. `result-delivered-once`: every completed run has a result that opens at the researcher to
///    the output of its own input, and its node's audit log closes it once, `completed`.
/// 4. `container-started-once`: no run was admitted (its container started) twice at a node,
///    nor closed twice: at most one `decision`/`admitted` and one `run` record per run.
/// 5. `no-acknowledged-write-lost`: no task exists that no client attempted (by nonce), a
///    nonce whose attempt's answer was lost exists at most once, and every acknowledged run id
///    is a run of the task.
pub fn check(entries: &[Entry]) -> (Counts, Vec<Violation>) {
    let mut v = Vec::new();
    let mut bad = |invariant: &'static str, detail: String| {
        v.push(Violation { invariant, detail });
    };
    let mut counts = Counts::default();
    let mut expect = "complete".to_owned();
    // nonce -> (targets, input, acknowledged task id)
    let mut attempts: BTreeMap<String, Attempted> = BTreeMap::new();
    let mut full_windows: Vec<(u64, u64)> = Vec::new();
    let mut full_since: Option<u64> = None;
    let mut tasks: BTreeMap<i64, Value> = BTreeMap::new();
    let mut results: BTreeMap<i64, Vec<Result<String, String>>> = BTreeMap::new();
    let mut audits: Vec<(String, i64, Vec<Value>)> = Vec::new();
    let mut nonce_at: BTreeMap<String, u64> = BTreeMap::new();
    for e in entries {
        match e {
            Entry::Expect { runs } => expect = runs.clone(),
            Entry::Fault { at_ms, what } => {
                if what.starts_with("spool full") {
                    full_since = Some(*at_ms);
                } else if what.starts_with("spool freed") {
                    if let Some(s) = full_since.take() {
                        full_windows.push((s, *at_ms));
                    }
                }
            }
            Entry::Create {
                at_ms,
                nonce,
                targets,
                input,
                answer,
                ..
            } => {
                counts.attempts += 1;
                nonce_at.entry(nonce.clone()).or_insert(*at_ms);
                let slot = attempts
                    .entry(nonce.clone())
                    .or_insert_with(|| (targets.clone(), input.clone(), None));
                match answer {
                    Answer::Acknowledged { task_id, runs } => {
                        counts.acknowledged += 1;
                        if let Some((other, _)) = &slot.2 {
                            bad(
                                "acknowledged-task-once",
                                format!(
                                    "nonce {nonce} acknowledged twice: tasks {other} and {task_id}"
                                ),
                            );
                        }
                        slot.2 = Some((*task_id, runs.clone()));
                    }
                    Answer::Unknown { .. } => counts.unknown += 1,
                    Answer::Refused { .. } | Answer::NonceTaken { .. } => {}
                }
            }
            Entry::FinalTask { task } => {
                let id = task["task"]["id"].as_i64().unwrap_or(-1);
                if tasks.insert(id, task.clone()).is_some() {
                    bad(
                        "acknowledged-task-once",
                        format!("task {id} is listed twice by the servers"),
                    );
                }
            }
            Entry::Result { run_id, opened } => {
                results.entry(*run_id).or_default().push(opened.clone())
            }
            Entry::Audit {
                node,
                organization_id,
                records,
            } => audits.push((node.clone(), *organization_id, records.clone())),
            Entry::Claim { name, held, detail } => {
                if !held {
                    bad("scenario-claim", format!("{name}: {detail}"));
                }
            }
            Entry::Scenario { .. } | Entry::Node { .. } => {}
        }
    }
    if let Some(s) = full_since {
        full_windows.push((s, u64::MAX));
    }
    counts.tasks = tasks.len();

    // Tasks by nonce as the servers hold them.
    let mut by_nonce: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (id, t) in &tasks {
        match t["task"]["nonce"].as_str() {
            Some(n) => by_nonce.entry(n.to_owned()).or_default().push(*id),
            None => bad(
                "no-acknowledged-write-lost",
                format!("task {id} has no nonce"),
            ),
        }
    }
    for (nonce, ids) in &by_nonce {
        if !attempts.contains_key(nonce) {
            bad(
                "no-acknowledged-write-lost",
                format!("tasks {ids:?} carry nonce {nonce}, which no client sent"),
            );
        }
        if ids.len() > 1 {
            bad(
                "acknowledged-task-once",
                format!("nonce {nonce} is on {} tasks: {ids:?}", ids.len()),
            );
        }
    }

    // Audit records by run: (admitted decisions, closing run records, their outcomes).
    let mut admitted: BTreeMap<i64, usize> = BTreeMap::new();
    let mut closed: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (_, _, records) in &audits {
        for r in records {
            let Some(run) = r["run_id"].as_i64() else {
                continue;
            };
            match (r["event"].as_str(), r["outcome"].as_str()) {
                (Some("decision"), Some("admitted")) => *admitted.entry(run).or_default() += 1,
                (Some("run"), Some(o)) => closed.entry(run).or_default().push(o.to_owned()),
                _ => {}
            }
        }
    }
    for (run, n) in &admitted {
        if *n > 1 {
            bad(
                "container-started-once",
                format!("run {run} was admitted (its container started) {n} times"),
            );
        }
    }
    for (run, outcomes) in &closed {
        if outcomes.len() > 1 {
            bad(
                "container-started-once",
                format!(
                    "run {run} was closed {} times: {outcomes:?}",
                    outcomes.len()
                ),
            );
        }
    }

    for (nonce, (targets, input, ack)) in &attempts {
        let held = by_nonce.get(nonce).and_then(|ids| ids.first()).copied();
        let Some((task_id, acked_runs)) = ack else {
            continue;
        };
        let Some(task) = tasks.get(task_id) else {
            bad(
                "no-acknowledged-write-lost",
                format!("acknowledged task {task_id} (nonce {nonce}) is not at the servers"),
            );
            continue;
        };
        if held != Some(*task_id) {
            bad(
                "acknowledged-task-once",
                format!("nonce {nonce} was acknowledged as task {task_id} but is on {held:?}"),
            );
        }
        let runs = task["runs"].as_array().cloned().unwrap_or_default();
        let mut orgs: Vec<i64> = runs
            .iter()
            .filter_map(|r| r["organization_id"].as_i64())
            .collect();
        orgs.sort_unstable();
        let mut want = targets.clone();
        want.sort_unstable();
        if orgs != want {
            bad(
                "acknowledged-task-once",
                format!(
                    "task {task_id} has runs at organizations {orgs:?}, not one at each of {want:?}"
                ),
            );
        }
        let ids: BTreeSet<i64> = runs.iter().filter_map(|r| r["id"].as_i64()).collect();
        for (run, _) in acked_runs {
            if !ids.contains(run) {
                bad(
                    "no-acknowledged-write-lost",
                    format!("run {run} of acknowledged task {task_id} is gone"),
                );
            }
        }
        let created_at = nonce_at.get(nonce).copied().unwrap_or(0);
        let while_full = full_windows
            .iter()
            .any(|(s, e)| created_at >= *s && created_at < *e);
        for r in &runs {
            let id = r["id"].as_i64().unwrap_or(-1);
            let state = r["state"].as_str().unwrap_or("?");
            counts.runs += 1;
            if !FINAL.contains(&state) {
                bad(
                    "run-final-once",
                    format!("run {id} of task {task_id} ended the scenario `{state}`"),
                );
                continue;
            }
            let reason = r["reason"].as_str().unwrap_or_default();
            match expect.as_str() {
                "refused_while_full" if while_full => {
                    if state == "completed" {
                        continue_completed(&mut counts);
                    } else if reason.contains("space") {
                        counts.refused_for_space += 1;
                    } else {
                        bad(
                            "run-final-once",
                            format!(
                                "run {id}, created while the spool was full, ended `{state}` without naming the space: {reason:?}"
                            ),
                        );
                    }
                }
                _ if state != "completed" => bad(
                    "run-final-once",
                    format!(
                        "run {id} of task {task_id} ended `{state}` (reason {reason:?}); the scenario expects every run to complete"
                    ),
                ),
                _ => continue_completed(&mut counts),
            }
            if state != "completed" {
                continue;
            }
            let want_text = format!("env-ok echo:{input}");
            match results.get(&id).map(Vec::as_slice) {
                Some([Ok(text)]) if *text == want_text => {}
                Some([Ok(text)]) => bad(
                    "result-delivered-once",
                    format!("run {id}'s result opened to {text:?}, not {want_text:?}"),
                ),
                Some([Err(e)]) => bad(
                    "result-delivered-once",
                    format!("run {id}'s result does not open at the researcher: {e}"),
                ),
                Some(more) => bad(
                    "result-delivered-once",
                    format!("run {id}'s result was read {} times", more.len()),
                ),
                None => bad(
                    "result-delivered-once",
                    format!("completed run {id} has no result in the history"),
                ),
            }
            match closed.get(&id).map(Vec::as_slice) {
                Some([o]) if o == "completed" => {}
                other => bad(
                    "result-delivered-once",
                    format!(
                        "completed run {id} is closed in its node's audit log as {other:?}, not once `completed`"
                    ),
                ),
            }
        }
    }
    (counts, v)
}

fn continue_completed(c: &mut Counts) {
    c.completed += 1;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn create(nonce: &str, answer: Answer) -> Entry {
        Entry::Create {
            at_ms: 1,
            client: 0,
            attempt: 1,
            nonce: nonce.into(),
            targets: vec![1, 2],
            input: "{}".into(),
            answer,
        }
    }

    fn task(id: i64, nonce: &str, runs: &[(i64, i64, &str)]) -> Entry {
        let runs: Vec<Value> = runs
            .iter()
            .map(|(r, o, s)| json!({"id": r, "organization_id": o, "state": s, "reason": null}))
            .collect();
        Entry::FinalTask {
            task: json!({"task": {"id": id, "nonce": nonce}, "runs": runs}),
        }
    }

    fn audit(records: &[(i64, &str, &str)]) -> Entry {
        Entry::Audit {
            node: "n".into(),
            organization_id: 1,
            records: records
                .iter()
                .map(|(r, e, o)| json!({"run_id": r, "event": e, "outcome": o}))
                .collect(),
        }
    }

    fn good() -> Vec<Entry> {
        vec![
            create(
                "n1",
                Answer::Unknown {
                    error: "reset".into(),
                },
            ),
            create(
                "n1",
                Answer::Acknowledged {
                    task_id: 7,
                    runs: vec![(10, 1), (11, 2)],
                },
            ),
            task(7, "n1", &[(10, 1, "completed"), (11, 2, "completed")]),
            Entry::Result {
                run_id: 10,
                opened: Ok("env-ok echo:{}".into()),
            },
            Entry::Result {
                run_id: 11,
                opened: Ok("env-ok echo:{}".into()),
            },
            audit(&[
                (10, "decision", "admitted"),
                (10, "run", "completed"),
                (11, "decision", "admitted"),
                (11, "run", "completed"),
            ]),
        ]
    }

    fn names(entries: &[Entry]) -> Vec<&'static str> {
        check(entries).1.iter().map(|v| v.invariant).collect()
    }

    #[test]
    fn a_clean_history_holds_every_invariant() {
        let (counts, v) = check(&good());
        assert!(v.is_empty(), "{v:?}");
        assert_eq!((counts.acknowledged, counts.completed), (1, 2));
    }

    #[test]
    fn each_invariant_catches_its_violation() {
        // a lost task
        let mut h = good();
        h.remove(2);
        assert!(names(&h).contains(&"no-acknowledged-write-lost"));
        // a missing run
        let mut h = good();
        h[2] = task(7, "n1", &[(10, 1, "completed")]);
        assert!(names(&h).contains(&"acknowledged-task-once"));
        // a run left running
        let mut h = good();
        h[2] = task(7, "n1", &[(10, 1, "completed"), (11, 2, "running")]);
        assert!(names(&h).contains(&"run-final-once"));
        // a result that does not open, or is another run's
        let mut h = good();
        h[3] = Entry::Result {
            run_id: 10,
            opened: Err("bad tag".into()),
        };
        assert!(names(&h).contains(&"result-delivered-once"));
        // a container started twice
        let mut h = good();
        h.push(audit(&[(11, "decision", "admitted")]));
        assert!(names(&h).contains(&"container-started-once"));
        // a task nobody asked for, and a nonce on two tasks
        let mut h = good();
        h.push(task(8, "n9", &[]));
        assert!(names(&h).contains(&"no-acknowledged-write-lost"));
        let mut h = good();
        h.push(task(9, "n1", &[(12, 1, "completed"), (13, 2, "completed")]));
        assert!(names(&h).contains(&"acknowledged-task-once"));
    }

    #[test]
    fn runs_created_while_the_spool_was_full_must_name_the_space() {
        let mut h = vec![
            Entry::Expect {
                runs: "refused_while_full".into(),
            },
            Entry::Fault {
                at_ms: 0,
                what: "spool full".into(),
            },
        ];
        h.extend(good());
        h[4] = task(7, "n1", &[(10, 1, "failed"), (11, 2, "completed")]);
        assert!(names(&h).contains(&"run-final-once"));
        let Entry::FinalTask { task } = &mut h[4] else {
            unreachable!()
        };
        task["runs"][0]["reason"] = json!("no space left on the spool disk");
        assert!(check(&h).1.is_empty(), "{:?}", check(&h).1);
        assert_eq!(check(&h).0.refused_for_space, 1);
    }
}
