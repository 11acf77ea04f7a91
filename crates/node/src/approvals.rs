//! The image digests this node's owner approved (`first_run = "approve"`): a run of any other
//! digest waits at the airlock until a local user approves it.
//!
//! ```text
//! <spool>/approved.jsonl   one line per approval, append-only:
//!                          {"digest":"sha256:...","uid":1000,"user":"alice","at":1700000000}
//! ```
//!
//! A line is appended and fsync'd before the approval is answered, so a restart never forgets
//! one. Nothing is ever dropped (an approval does not expire); a torn last line (a crash while
//! appending, before the approval was answered) is dropped, any other malformed line refused.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::jsonl::JsonLines;
use crate::spool::SpoolError;

/// File name of the approvals in the spool directory.
pub const FILE: &str = "approved.jsonl";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    digest: String,
    uid: u32,
    #[serde(default)]
    user: Option<String>,
    at: i64,
}

struct State {
    digests: BTreeSet<String>,
    file: JsonLines<Line>,
}

/// The persisted set of approved digests.
pub struct ApprovedDigests {
    path: PathBuf,
    state: Mutex<State>,
}

impl std::fmt::Debug for ApprovedDigests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovedDigests")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ApprovedDigests {
    /// Opens (creating) `dir/approved.jsonl`.
    pub fn open(dir: &Path) -> Result<ApprovedDigests, SpoolError> {
        let path = dir.join(FILE);
        let (file, lines) = JsonLines::open(
            path.clone(),
            "the image digests its owner approved",
            |_: &Line| true,
        )?;
        let digests = lines.into_iter().map(|l| l.digest).collect();
        Ok(ApprovedDigests {
            state: Mutex::new(State { digests, file }),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_approved(&self, digest: &str) -> bool {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.digests.contains(digest)
    }

    /// Approves `digest`, durably before returning; `false` when it already was.
    pub fn approve(
        &self,
        digest: &str,
        uid: u32,
        user: Option<&str>,
        at: i64,
    ) -> Result<bool, SpoolError> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.digests.contains(digest) {
            return Ok(false);
        }
        let line = Line {
            digest: digest.to_owned(),
            uid,
            user: user.map(str::to_owned),
            at,
        };
        s.file.append(&line)?;
        s.digests.insert(line.digest);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn approvals_persist_append_only_and_survive_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let a = ApprovedDigests::open(dir.path()).unwrap();
        assert!(!a.is_approved(D1));
        assert!(a.approve(D1, 1000, Some("alice"), 5).unwrap());
        assert!(
            !a.approve(D1, 1001, Some("bob"), 6).unwrap(),
            "once is enough"
        );
        assert!(a.is_approved(D1) && !a.is_approved(D2));
        let mode = std::fs::metadata(a.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(a);
        // A crash in the middle of the next append leaves a torn line: dropped, the rest kept.
        let path = dir.path().join(FILE);
        let mut text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        text.push_str("{\"digest\":\"sha256:22");
        std::fs::write(&path, &text).unwrap();
        let a = ApprovedDigests::open(dir.path()).unwrap();
        assert!(a.is_approved(D1) && !a.is_approved(D2));
        drop(a);
        // Anything else malformed is refused, naming the file and line.
        std::fs::write(&path, "not json\n").unwrap();
        let e = ApprovedDigests::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains(FILE) && e.contains("line 1"), "{e}");
    }
}
