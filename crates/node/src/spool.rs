//! The node's durable state on disk: one record per run it took, the sealed result of a
//! finished run until the server acknowledges it, the event cursor, and the per-run working
//! directories (input, output, proxy socket) that are mounted into containers.
//!
//! Every write is a temporary file, fsync, rename, fsync of the directory: a crash leaves the
//! old or the new version, never a torn one.
//!
//! ```text
//! <spool>/cursor                    last event id handled
//! <spool>/runs/<run>/record.json    what the node knows and decided about the run
//! <spool>/runs/<run>/result.sealed  the sealed result awaiting delivery
//! <spool>/runs/<run>/logs.sealed    released logs, sealed for the requester, awaiting delivery
//! <spool>/work/<run>/{input,output,proxy}
//! <spool>/logs/run-<run>.log        what the algorithm printed (0600; kept for the data owner)
//! <spool>/withheld/run-<run>       a result the admitting rule's output rules withheld (0600)
//! <spool>/pending/run-<run>/        a result held for release (crate::airlock)
//! <spool>/approved.jsonl            image digests the node's owner approved (crate::approvals)
//! <spool>/local.sock                the local socket, unless `[local] socket` names another
//! <spool>/replay.jsonl              accepted input nonces (crate::replay)
//! <spool>/runs_per_day.jsonl        runs counted against `runs_per_day` (crate::budget)
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why the spool could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}; check that the node may write its spool directory")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("spool record {path} is not valid: {message}")]
    Corrupt { path: PathBuf, message: String },
}

type Result<T, E = SpoolError> = std::result::Result<T, E>;

impl SpoolError {
    /// Whether the spool's filesystem is full (ENOSPC) or its quota spent (EDQUOT).
    pub fn is_no_space(&self) -> bool {
        match self {
            SpoolError::Io { source, .. } => {
                source.kind() == std::io::ErrorKind::StorageFull
                    || matches!(source.raw_os_error(), Some(28 | 122))
            }
            SpoolError::Corrupt { .. } => false,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a run is in its life at this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Taken from the event stream; admission not finished.
    Received,
    /// Admitted and reported; not started.
    Admitted,
    /// The container was (being) started.
    Running,
    /// Admitted, waiting for the node's owner to approve its digest (`first_run = "approve"`);
    /// nothing holds a slot or a container meanwhile. Approved, the run is taken again.
    AwaitingApproval,
    /// The result passed its checks and is held in `<spool>/pending/run-<run>` until enough
    /// local users release it (`release = "manual"`).
    AwaitingRelease,
    /// Final outcome known; delivery pending until the record is removed.
    Finished,
}

/// The final outcome to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Final {
    /// The sealed result is in `result.sealed`.
    Completed,
    Failed {
        reason: String,
    },
    Rejected {
        reason: String,
    },
}

/// What the node knows about one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    pub run_id: i64,
    pub task_id: i64,
    pub collaboration_id: i64,
    /// The organization that created the task (results are sealed for it).
    pub task_organization_id: i64,
    pub image: String,
    #[serde(default)]
    pub digest: Option<String>,
    pub phase: Phase,
    #[serde(default)]
    pub outcome: Option<Final>,
    /// Written by nodes before sealing format 2 (the requesting organization's key); read so
    /// that such a record still loads, never written. A run with only this is not sealed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_key: Option<String>,
    /// The key (base64) the result is sealed to: the proven sender's, from the input's binding.
    #[serde(default)]
    pub reply_key: Option<String>,
    /// The input's nonce, bound into the result.
    #[serde(default)]
    pub nonce: Option<String>,
    /// This node's organization name, bound into the result.
    #[serde(default)]
    pub organization: Option<String>,
    /// The node decided this run is plaintext (`[encryption]`): the result is not sealed.
    #[serde(default)]
    pub plaintext: bool,
    /// The 1-based number of the allow rule that admitted the run: its output rules are applied
    /// to the result, also when the run is settled after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_rule: Option<usize>,
    /// Unix seconds: since when the run waits for its digest's approval (kept when the run is
    /// taken again after a restart, so the wait's limit counts from the first time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<i64>,
}

impl RunRecord {
    /// A record of a run just taken, before anything is decided.
    pub fn received(
        run_id: i64,
        task_id: i64,
        collaboration_id: i64,
        task_organization_id: i64,
        image: &str,
    ) -> RunRecord {
        RunRecord {
            run_id,
            task_id,
            collaboration_id,
            task_organization_id,
            image: image.to_owned(),
            digest: None,
            phase: Phase::Received,
            outcome: None,
            result_key: None,
            reply_key: None,
            nonce: None,
            organization: None,
            plaintext: false,
            allow_rule: None,
            waiting_since: None,
        }
    }
}

/// A run's working directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkDirs {
    pub root: PathBuf,
    pub input: PathBuf,
    pub output: PathBuf,
    pub proxy: PathBuf,
}

/// The spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let tmp = path.with_extension("tmp");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// [`write_atomic`] for a file only the node may read (mode 0600, also when it existed).
pub fn write_atomic_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

impl Spool {
    /// Opens (creating) the spool; the directory is private to the node (0700).
    pub fn open(root: &Path) -> Result<Spool> {
        for d in [
            root.to_path_buf(),
            root.join("runs"),
            root.join("work"),
            root.join("logs"),
        ] {
            fs::create_dir_all(&d).map_err(io(&d))?;
        }
        fs::set_permissions(root, fs::Permissions::from_mode(0o700)).map_err(io(root))?;
        let logs = root.join("logs");
        fs::set_permissions(&logs, fs::Permissions::from_mode(0o700)).map_err(io(&logs))?;
        let root = root.canonicalize().map_err(io(root))?;
        Ok(Spool { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn run_dir(&self, run_id: i64) -> PathBuf {
        self.root.join("runs").join(run_id.to_string())
    }

    /// The last event id handled (0 when none).
    pub fn cursor(&self) -> Result<i64> {
        let path = self.root.join("cursor");
        match fs::read_to_string(&path) {
            Ok(s) => s.trim().parse().map_err(|_| SpoolError::Corrupt {
                path,
                message: "not an event id".into(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io(&path)(e)),
        }
    }

    pub fn set_cursor(&self, id: i64) -> Result<()> {
        write_atomic(&self.root.join("cursor"), id.to_string().as_bytes())
    }

    /// Whether the node has a record of this run.
    pub fn has(&self, run_id: i64) -> bool {
        self.run_dir(run_id).join("record.json").exists()
    }

    pub fn save(&self, record: &RunRecord) -> Result<()> {
        let dir = self.run_dir(record.run_id);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| SpoolError::Corrupt {
            path: dir.clone(),
            message: e.to_string(),
        })?;
        write_atomic(&dir.join("record.json"), &bytes)
    }

    pub fn load(&self, run_id: i64) -> Result<Option<RunRecord>> {
        let path = self.run_dir(run_id).join("record.json");
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| SpoolError::Corrupt {
                    path,
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// The run directories (named by their run id; other names are skipped), with their ids.
    fn run_dirs(&self) -> Result<Vec<(i64, PathBuf)>> {
        let dir = self.root.join("runs");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            if let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i64>().ok())
            {
                out.push((id, entry.path()));
            }
        }
        Ok(out)
    }

    /// Every run record, by run id.
    pub fn records(&self) -> Result<Vec<RunRecord>> {
        let mut out = Vec::new();
        for (id, _) in self.run_dirs()? {
            match self.load(id) {
                Ok(Some(r)) => out.push(r),
                // A directory without a record: a save under way (it makes the directory, then
                // writes the record), or a crash before the first save, which
                // [`Spool::prune_unrecorded`] removes at start. Removing it here raced with the
                // save, which then failed and dropped the run (seen under the fault harness).
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "skipping a corrupt spool record"),
            }
        }
        out.sort_by_key(|r| r.run_id);
        Ok(out)
    }

    /// Removes the run directories that hold no record (left by a crash before a run's first
    /// save); returns how many. Only while nothing saves: at start, before the intake.
    pub fn prune_unrecorded(&self) -> Result<usize> {
        let mut pruned = 0;
        for (id, path) in self.run_dirs()? {
            if self.load(id).is_ok_and(|r| r.is_none()) {
                fs::remove_dir_all(&path).map_err(io(&path))?;
                pruned += 1;
            }
        }
        Ok(pruned)
    }

    /// Stores the sealed result of a run (before its record says `Completed`).
    pub fn put_result(&self, run_id: i64, sealed: &[u8]) -> Result<()> {
        let dir = self.run_dir(run_id);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        write_atomic(&dir.join("result.sealed"), sealed)
    }

    /// Drops a run's sealed result that must not be delivered (its record says `Failed`).
    pub fn remove_result(&self, run_id: i64) -> Result<()> {
        let path = self.run_dir(run_id).join("result.sealed");
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    pub fn result(&self, run_id: i64) -> Result<Vec<u8>> {
        let path = self.run_dir(run_id).join("result.sealed");
        fs::read(&path).map_err(io(&path))
    }

    /// Stores a run's logs sealed for the requester (`logs = "release"`), until delivered.
    pub fn put_sealed_logs(&self, run_id: i64, sealed: &[u8]) -> Result<()> {
        let dir = self.run_dir(run_id);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        write_atomic(&dir.join("logs.sealed"), sealed)
    }

    /// Drops a run's sealed logs that must not be delivered.
    pub fn remove_sealed_logs(&self, run_id: i64) -> Result<()> {
        let path = self.run_dir(run_id).join("logs.sealed");
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// A run's sealed logs awaiting delivery, if its logs were released.
    pub fn sealed_logs(&self, run_id: i64) -> Result<Option<Vec<u8>>> {
        let path = self.run_dir(run_id).join("logs.sealed");
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// What a run's algorithm printed, as kept at the node; `None` when no container ran.
    pub fn log(&self, run_id: i64) -> Result<Option<Vec<u8>>> {
        let path = self.log_path(run_id);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Where the log of a run is kept: `<spool>/logs/run-<id>.log`.
    pub fn log_path(&self, run_id: i64) -> PathBuf {
        self.root.join("logs").join(format!("run-{run_id}.log"))
    }

    /// Keeps what a run's algorithm printed, readable by the node's user only (0600). It stays
    /// at the node: failure reasons sent to the server never carry it.
    pub fn put_log(&self, run_id: i64, logs: &[u8]) -> Result<PathBuf> {
        let path = self.log_path(run_id);
        write_atomic_private(&path, logs)?;
        Ok(path)
    }

    /// Where a withheld result is kept.
    pub fn withheld_path(&self, run_id: i64) -> PathBuf {
        self.root.join("withheld").join(format!("run-{run_id}"))
    }

    /// Keeps a result that broke its rule's output rules at the node, for the data owner:
    /// readable by the node's user only (0600, in a 0700 directory). It is never uploaded.
    pub fn put_withheld(&self, run_id: i64, result: &[u8]) -> Result<PathBuf> {
        let dir = self.root.join("withheld");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io(&dir))?;
        let path = self.withheld_path(run_id);
        write_atomic_private(&path, result)?;
        Ok(path)
    }

    /// Forgets a delivered run.
    pub fn remove(&self, run_id: i64) -> Result<()> {
        let dir = self.run_dir(run_id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&dir)(e)),
        }
    }

    /// Creates a run's fresh working directories.
    pub fn work(&self, run_id: i64) -> Result<WorkDirs> {
        let root = self.root.join("work").join(run_id.to_string());
        let _ = fs::remove_dir_all(&root);
        let dirs = WorkDirs {
            input: root.join("input"),
            output: root.join("output"),
            proxy: root.join("proxy"),
            root,
        };
        for d in [&dirs.root, &dirs.input, &dirs.output, &dirs.proxy] {
            fs::create_dir_all(d).map_err(io(d))?;
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).map_err(io(d))?;
        }
        Ok(dirs)
    }

    /// Removes a run's working directories.
    pub fn remove_work(&self, run_id: i64) {
        let root = self.root.join("work").join(run_id.to_string());
        if let Err(e) = fs::remove_dir_all(&root) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %root.display(), error = %e, "cannot remove a run's work directory");
            }
        }
    }

    /// Run ids that still have working directories.
    pub fn work_runs(&self) -> Vec<i64> {
        let dir = self.root.join("work");
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn record(id: i64) -> RunRecord {
        RunRecord::received(id, 1, 2, 3, "x")
    }

    /// A spool on a full filesystem (a 64 KiB tmpfs, filled; needs root like tests/audit.rs)
    /// fails to save a record with an error that says so, which admission refuses the run for.
    #[test]
    fn a_full_spool_filesystem_is_told_apart() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("spool");
        fs::create_dir(&mount).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&mount)
            .status()
            .unwrap();
        assert!(ok.success(), "mounting a tmpfs needs root");
        let spool = Spool::open(&mount).unwrap();
        let mut f = File::create(mount.join("filler")).unwrap();
        while f.write(&[0u8; 4096]).map(|n| n > 0).unwrap_or(false) {}
        while f.write(&[0u8; 1]).map(|n| n > 0).unwrap_or(false) {}
        let e = spool.save(&record(9)).unwrap_err();
        drop((f, spool));
        let unmounted = std::process::Command::new("umount").arg(&mount).status();
        assert!(e.is_no_space(), "{e}");
        assert!(unmounted.unwrap().success());
        let other = SpoolError::Io {
            path: mount,
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert!(!other.is_no_space());
    }

    #[test]
    fn a_record_written_before_sealing_format_2_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let old = r#"{"run_id": 4, "task_id": 1, "collaboration_id": 2,
            "task_organization_id": 3, "image": "x", "digest": "sha256:ab",
            "phase": "running", "outcome": null, "result_key": "AAAA"}"#;
        let d = dir.path().join("runs/4");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("record.json"), old).unwrap();
        let r = spool.load(4).unwrap().unwrap();
        assert_eq!(r.result_key.as_deref(), Some("AAAA"));
        assert_eq!(
            (r.reply_key, r.nonce, r.organization, r.plaintext),
            (None, None, None, false)
        );
        assert_eq!(r.phase, Phase::Running);
        // The new fields are written, the old one is not.
        let mut r = record(5);
        r.reply_key = Some("k".into());
        spool.save(&r).unwrap();
        let text = fs::read_to_string(dir.path().join("runs/5/record.json")).unwrap();
        assert!(
            text.contains("reply_key") && !text.contains("result_key"),
            "{text}"
        );
        assert_eq!(spool.load(5).unwrap().unwrap(), r);
    }

    #[test]
    fn logs_are_private_to_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let path = spool.put_log(3, b"secret\n").unwrap();
        assert_eq!(path, spool.root().join("logs/run-3.log"));
        assert_eq!(fs::read(&path).unwrap(), b"secret\n");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&spool.root().join("logs")), 0o700);
        // Written again (a run settled after a restart): still 0600.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        spool.put_log(3, b"again").unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn records_results_and_cursor_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("s")).unwrap();
        assert_eq!(spool.cursor().unwrap(), 0);
        spool.set_cursor(42).unwrap();
        let mut r = record(7);
        spool.save(&r).unwrap();
        spool.put_result(7, b"sealed").unwrap();
        r.phase = Phase::Finished;
        r.outcome = Some(Final::Completed);
        spool.save(&r).unwrap();
        spool.save(&record(3)).unwrap();
        let spool = Spool::open(&dir.path().join("s")).unwrap();
        assert_eq!(spool.cursor().unwrap(), 42);
        let all = spool.records().unwrap();
        assert_eq!(all.iter().map(|r| r.run_id).collect::<Vec<_>>(), vec![3, 7]);
        assert_eq!(all[1], r);
        assert_eq!(spool.result(7).unwrap(), b"sealed");
        spool.remove(7).unwrap();
        assert!(!spool.has(7));
        assert!(spool.has(3));
    }

    #[test]
    fn a_run_directory_without_a_record_is_pruned_at_start_only() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path()).unwrap());
        // What a save leaves for a moment, and a crash before the first save for good.
        fs::create_dir_all(dir.path().join("runs/8")).unwrap();
        spool.save(&record(9)).unwrap();
        let ids = |s: &Spool| {
            s.records()
                .unwrap()
                .iter()
                .map(|r| r.run_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&spool), vec![9]);
        assert!(
            dir.path().join("runs/8").exists(),
            "a listing removes nothing"
        );
        assert_eq!(spool.prune_unrecorded().unwrap(), 1);
        assert!(!dir.path().join("runs/8").exists());
        assert_eq!(ids(&spool), vec![9]);

        // Listings (delivery, metrics) while runs are being saved never make a save fail.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let lister = {
            let (spool, stop) = (Arc::clone(&spool), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = spool.records();
                }
            })
        };
        let failed: Vec<String> = (100..1100)
            .filter_map(|id| spool.save(&record(id)).err().map(|e| e.to_string()))
            .collect();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        lister.join().unwrap();
        assert!(
            failed.is_empty(),
            "{} save(s) failed: {:?}",
            failed.len(),
            failed.first()
        );
        assert_eq!(spool.records().unwrap().len(), 1001);
    }

    #[test]
    fn work_directories_are_fresh_and_removable() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let w = spool.work(5).unwrap();
        fs::write(w.output.join("stale"), b"x").unwrap();
        let w = spool.work(5).unwrap();
        assert_eq!(fs::read_dir(&w.output).unwrap().count(), 0);
        assert_eq!(spool.work_runs(), vec![5]);
        spool.remove_work(5);
        assert!(spool.work_runs().is_empty());
    }
}
