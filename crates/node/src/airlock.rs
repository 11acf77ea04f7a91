//! The airlock's store: results held at the node until enough different local users release
//! them (`release = "manual"`, `checkers`), kept in plaintext for the data owner only.
//!
//! ```text
//! <spool>/pending/                       0700
//! <spool>/pending/run-<run>/result       the plaintext result (0600)
//! <spool>/pending/run-<run>/state.json   who released it so far, since when, until when (0600)
//! ```
//!
//! Both files are written atomically (temporary file, fsync, rename, fsync of the directory),
//! the result before the state, so a held result survives a restart: the run's spool record
//! says `awaiting_release` and the state names what it waits for. Who may release it and what
//! happens then is the node's (`node::airlock`); this module keeps the files and the pure rule
//! that a release needs `checkers` different users.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use warden_audit::LocalUser;

use crate::spool::{SpoolError, write_atomic_private};

/// One local user's release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub by: LocalUser,
    pub at: i64,
}

/// A held result's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Held {
    pub run_id: i64,
    /// `sha256:<hex>` and size of the plaintext result.
    pub sha256: String,
    pub bytes: u64,
    /// Unix seconds.
    pub held_at: i64,
    /// Refused automatically from then on (unix seconds).
    pub deadline: i64,
    /// Different local users that must release it.
    pub checkers: u32,
    pub releases: Vec<Release>,
}

/// Where a release leaves the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Every checker released it: it leaves the node.
    Released,
    /// Released by `have` of the `need` different users.
    Waiting { have: u32, need: u32 },
}

impl Held {
    /// Counts `by`'s release at `now`. A user who already released it does not count twice:
    /// `checkers = 2` means two different users, as output checkers in trusted research
    /// environments are.
    pub fn release(&mut self, by: &LocalUser, now: i64) -> Result<Progress, String> {
        if let Some(r) = self.releases.iter().find(|r| r.by.uid == by.uid) {
            return Err(format!(
                "{by} already released the result of run {} (at {}); it needs {} different \
                 users (checkers = {}): another local user must release it",
                self.run_id,
                when(r.at),
                self.checkers,
                self.checkers
            ));
        }
        self.releases.push(Release {
            by: by.clone(),
            at: now,
        });
        Ok(self.progress())
    }

    pub fn progress(&self) -> Progress {
        let have = u32::try_from(self.releases.len()).unwrap_or(u32::MAX);
        if have >= self.checkers.max(1) {
            Progress::Released
        } else {
            Progress::Waiting {
                have,
                need: self.checkers,
            }
        }
    }

    /// The names of who released it so far (`alice (uid 1000)`).
    pub fn released_by(&self) -> Vec<String> {
        self.releases.iter().map(|r| r.by.to_string()).collect()
    }
}

/// A unix time as RFC 3339, for messages.
pub fn when(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| at.to_string())
}

/// The held results under `<spool>/pending`.
#[derive(Debug, Clone)]
pub struct Airlock {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Airlock {
    /// Opens (creating, 0700) `<spool>/pending`.
    pub fn open(spool: &Path) -> Result<Airlock, SpoolError> {
        let root = spool.join("pending");
        fs::create_dir_all(&root).map_err(io(&root))?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).map_err(io(&root))?;
        Ok(Airlock { root })
    }

    fn dir(&self, run_id: i64) -> PathBuf {
        self.root.join(format!("run-{run_id}"))
    }

    /// Holds `result`: the plaintext first, then its state.
    pub fn hold(
        &self,
        run_id: i64,
        result: &[u8],
        checkers: u32,
        now: i64,
        timeout_secs: u64,
    ) -> Result<Held, SpoolError> {
        use sha2::Digest as _;
        let dir = self.dir(run_id);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io(&dir))?;
        write_atomic_private(&dir.join("result"), result)?;
        let held = Held {
            run_id,
            sha256: format!("sha256:{}", hex::encode(sha2::Sha256::digest(result))),
            bytes: result.len() as u64,
            held_at: now,
            deadline: now.saturating_add(i64::try_from(timeout_secs).unwrap_or(i64::MAX)),
            checkers: checkers.max(1),
            releases: Vec::new(),
        };
        self.save(&held)?;
        Ok(held)
    }

    /// Writes a held result's state (after a release counted).
    pub fn save(&self, held: &Held) -> Result<(), SpoolError> {
        let path = self.dir(held.run_id).join("state.json");
        let bytes = serde_json::to_vec_pretty(held).map_err(|e| SpoolError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        write_atomic_private(&path, &bytes)
    }

    /// The state of a held result, if the run has one.
    pub fn held(&self, run_id: i64) -> Result<Option<Held>, SpoolError> {
        let path = self.dir(run_id).join("state.json");
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

    /// The plaintext of a held result.
    pub fn result(&self, run_id: i64) -> Result<Vec<u8>, SpoolError> {
        let path = self.dir(run_id).join("result");
        fs::read(&path).map_err(io(&path))
    }

    /// Forgets a held result (released and spooled sealed, or refused and withheld).
    pub fn remove(&self, run_id: i64) -> Result<(), SpoolError> {
        let dir = self.dir(run_id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&dir)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn user(uid: u32, name: &str) -> LocalUser {
        LocalUser {
            uid,
            gid: uid,
            name: Some(name.into()),
        }
    }

    #[test]
    fn two_checkers_means_two_different_users() {
        let dir = tempfile::tempdir().unwrap();
        let a = Airlock::open(dir.path()).unwrap();
        let mut h = a.hold(7, b"{\"n\":3}", 2, 100, 60).unwrap();
        assert_eq!((h.deadline, h.checkers, h.bytes), (160, 2, 7));
        assert_eq!(h.progress(), Progress::Waiting { have: 0, need: 2 });
        assert_eq!(
            h.release(&user(1000, "alice"), 101).unwrap(),
            Progress::Waiting { have: 1, need: 2 }
        );
        // The same uid again, under whatever name, does not count.
        let e = h.release(&user(1000, "alias"), 102).unwrap_err();
        assert!(
            e.contains("already released") && e.contains("another local user"),
            "{e}"
        );
        assert_eq!(h.releases.len(), 1);
        assert_eq!(
            h.release(&user(1001, "bob"), 103).unwrap(),
            Progress::Released
        );
        assert_eq!(
            h.released_by(),
            vec!["alice (uid 1000)".to_owned(), "bob (uid 1001)".to_owned()]
        );
        // One checker: the first release does it.
        let mut one = a.hold(8, b"x", 1, 100, 60).unwrap();
        assert_eq!(
            one.release(&user(0, "root"), 100).unwrap(),
            Progress::Released
        );
    }

    #[test]
    fn a_held_result_survives_reopening_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = Airlock::open(dir.path()).unwrap();
        let mut h = a.hold(3, b"secret", 2, 10, 5).unwrap();
        h.release(&user(1000, "alice"), 11).unwrap();
        a.save(&h).unwrap();
        let a = Airlock::open(dir.path()).unwrap();
        assert_eq!(a.held(3).unwrap().unwrap(), h);
        assert_eq!(a.result(3).unwrap(), b"secret");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("pending")), 0o700);
        assert_eq!(mode(&dir.path().join("pending/run-3")), 0o700);
        assert_eq!(mode(&dir.path().join("pending/run-3/result")), 0o600);
        assert_eq!(mode(&dir.path().join("pending/run-3/state.json")), 0o600);
        a.remove(3).unwrap();
        assert_eq!(a.held(3).unwrap(), None);
        a.remove(3).unwrap();
    }
}
