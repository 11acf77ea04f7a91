//! What a verification found, in the four words `warden audit verify` prints and exits with, so
//! that every front end (the CLI, the node's local socket, the web console) says the same.

use crate::chain::{Report, VerifyError};

/// The outcome of verifying a log ([`crate::verify`] or [`crate::verify_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The chain links and every entry is covered by a signed checkpoint.
    Intact,
    /// The chain links and every checkpoint verifies; entries after the last checkpoint are
    /// not signed yet (a running node between two checkpoints, or a tail cut after one).
    Uncovered,
    /// The last line is torn (a crash mid-write, or a cut in the middle of a line).
    Incomplete,
    /// The log was altered: a line edited, removed, inserted or reordered, or a checkpoint
    /// that does not verify under the node key.
    Tampered,
}

impl Verdict {
    /// The verdict of a verification; `None` when the file could not be read (bad input).
    pub fn of(result: &Result<Report, VerifyError>) -> Option<Verdict> {
        match result {
            Ok(r) if r.is_intact() => Some(Verdict::Intact),
            Ok(r) if r.torn_tail.is_none() => Some(Verdict::Uncovered),
            Ok(_) => Some(Verdict::Incomplete),
            Err(VerifyError::Tampered { .. }) => Some(Verdict::Tampered),
            Err(VerifyError::Io { .. }) => None,
        }
    }

    /// `intact`, `uncovered`, `incomplete` or `tampered`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Intact => "intact",
            Verdict::Uncovered => "uncovered",
            Verdict::Incomplete => "incomplete",
            Verdict::Tampered => "tampered",
        }
    }

    /// `warden audit verify`'s exit status: 0 intact or uncovered (1 when `require_covered`),
    /// 1 incomplete or tampered.
    pub fn exit(self, require_covered: bool) -> u8 {
        match self {
            Verdict::Intact => 0,
            Verdict::Uncovered => u8::from(require_covered),
            Verdict::Incomplete | Verdict::Tampered => 1,
        }
    }
}
