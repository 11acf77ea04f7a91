//! The researcher's local record of the tasks they created: the nonce the client chose, the
//! image it asked for and the digest it resolved. `warden task create` writes one file per task
//! under `$XDG_STATE_HOME/warden/tasks` (else `~/.local/state/warden/tasks`; folders 0700,
//! files 0600), so that `warden task wait|show` in a later process checks the server's task and
//! the results against what was really sent, not against what the server echoes.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// Environment variable that overrides `~/.local/state` as the folder of `warden/`.
pub const XDG_STATE_HOME: &str = "XDG_STATE_HOME";
/// Largest record file read.
const MAX_RECORD_BYTES: u64 = 64 * 1024;

/// What the client sent for one task, and checks everything the server says about it against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRecord {
    /// The server's URL, as in the profile.
    pub server: String,
    pub task_id: i64,
    /// The nonce bound into every sealed input and sent as `CreateTask.nonce`.
    pub nonce: String,
    /// The normalised image reference (what the server stores as the task's image).
    pub image: String,
    /// The manifest digest the client resolved (`sha256:<hex>`).
    pub digest: String,
}

impl TaskRecord {
    /// What the server shows of `task` when there is no local record (another machine created
    /// it): its nonce and image, and the digest the image resolves to now at the registry. Every
    /// later check is then only as good as the server's echo; callers say so.
    pub async fn from_echo(
        server: &str,
        task: &warden_api::TaskDetail,
        registry: &crate::RegistrySection,
    ) -> Result<TaskRecord, crate::ClientError> {
        let t = &task.task;
        let Some(nonce) = t.nonce.clone() else {
            return Err(crate::ClientError::NoNonce { task: t.id });
        };
        let image = crate::image_reference(&t.image)?;
        let digest = crate::resolve_digest(&image, registry).await?;
        Ok(TaskRecord {
            server: server.to_owned(),
            task_id: t.id,
            nonce,
            image,
            digest,
        })
    }
}

/// Why a record could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("the task record {path}: {message}")]
pub struct RecordError {
    pub path: PathBuf,
    pub message: String,
}

/// A folder of task records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordStore {
    dir: PathBuf,
}

impl RecordStore {
    /// Records kept in `dir` (created 0700 when first written).
    pub fn new(dir: impl Into<PathBuf>) -> RecordStore {
        RecordStore { dir: dir.into() }
    }

    /// `$XDG_STATE_HOME/warden/tasks`, else `$HOME/.local/state/warden/tasks`.
    pub fn default_location() -> Result<RecordStore, RecordError> {
        let base = match std::env::var_os(XDG_STATE_HOME).filter(|v| !v.is_empty()) {
            Some(x) if Path::new(&x).is_absolute() => PathBuf::from(x),
            _ => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
                Some(h) => PathBuf::from(h).join(".local").join("state"),
                None => {
                    return Err(RecordError {
                        path: PathBuf::from("$XDG_STATE_HOME/warden"),
                        message: "neither XDG_STATE_HOME (an absolute path) nor HOME is set; \
                                  set one of them"
                            .to_owned(),
                    });
                }
            },
        };
        Ok(RecordStore::new(base.join("warden").join("tasks")))
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of task `task_id` at `server`: one folder for every server, told apart by a
    /// hash of its URL.
    pub fn path(&self, server: &str, task_id: i64) -> PathBuf {
        let h = sha2::Sha256::digest(server.as_bytes());
        self.dir
            .join(format!("{}-task-{task_id}.json", &hex::encode(h)[..16]))
    }

    /// Writes `record` (atomically: a 0600 temporary file renamed over the record).
    pub fn save(&self, record: &TaskRecord) -> Result<PathBuf, RecordError> {
        let path = self.path(&record.server, record.task_id);
        let fail = |message: String| RecordError {
            path: path.clone(),
            message,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| fail(format!("cannot create the folder: {e}")))?;
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| fail(format!("cannot encode it: {e}")))?;
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(&bytes)?;
                f.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(fail(format!("cannot write it: {e}")));
        }
        Ok(path)
    }

    /// The record of task `task_id` at `server`, `None` when there is none.
    pub fn load(&self, server: &str, task_id: i64) -> Result<Option<TaskRecord>, RecordError> {
        let path = self.path(server, task_id);
        let fail = |message: String| RecordError {
            path: path.clone(),
            message,
        };
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(fail(format!("cannot read it: {e}"))),
        };
        if meta.len() > MAX_RECORD_BYTES {
            return Err(fail(format!(
                "larger than {MAX_RECORD_BYTES} bytes; it is not a task record, remove it"
            )));
        }
        let bytes = std::fs::read(&path).map_err(|e| fail(format!("cannot read it: {e}")))?;
        let record: TaskRecord = serde_json::from_slice(&bytes).map_err(|e| {
            fail(format!(
                "not a task record ({e}); remove it to fall back to the server's echo"
            ))
        })?;
        if record.server != server || record.task_id != task_id {
            return Err(fail(format!(
                "it records task {} at {}, not task {task_id} at {server}; remove it",
                record.task_id, record.server
            )));
        }
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn record(task_id: i64) -> TaskRecord {
        TaskRecord {
            server: "http://127.0.0.1:7600".into(),
            task_id,
            nonce: "n".repeat(32),
            image: "registry.example.org/warden/mean:1.0".into(),
            digest: format!("sha256:{}", "a".repeat(64)),
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_record_is_written_private_and_read_back_per_server_and_task() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::new(dir.path().join("state/warden/tasks"));
        assert_eq!(store.load("http://127.0.0.1:7600", 7).unwrap(), None);
        let path = store.save(&record(7)).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(store.dir()), 0o700);
        assert_eq!(mode(&dir.path().join("state/warden")), 0o700);
        assert_eq!(
            store.load("http://127.0.0.1:7600", 7).unwrap(),
            Some(record(7))
        );
        // Another task, another server: no record.
        assert_eq!(store.load("http://127.0.0.1:7600", 8).unwrap(), None);
        assert_eq!(store.load("http://other:7600", 7).unwrap(), None);
        // Written again: replaced.
        let mut r = record(7);
        r.nonce = "m".repeat(32);
        store.save(&r).unwrap();
        assert_eq!(store.load("http://127.0.0.1:7600", 7).unwrap(), Some(r));
        assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), 1);
    }

    #[test]
    fn a_damaged_or_misplaced_record_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::new(dir.path());
        let path = store.path("http://127.0.0.1:7600", 7);
        std::fs::write(&path, "{").unwrap();
        let e = store
            .load("http://127.0.0.1:7600", 7)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&path.display().to_string()) && e.contains("remove it"),
            "{e}"
        );
        // A record of task 8 under task 7's name.
        std::fs::write(&path, serde_json::to_vec(&record(8)).unwrap()).unwrap();
        let e = store
            .load("http://127.0.0.1:7600", 7)
            .unwrap_err()
            .to_string();
        assert!(e.contains("records task 8"), "{e}");
    }
}
