//! The node's audit log: every decision and run is one append-only, hash-chained JSON line, and
//! checkpoint lines signed with the node's key vouch for everything before them. A data owner
//! verifies the file with the node's public key alone ([`verify`], `warden audit verify`).
//!
//! # Format (one JSON object per line, `\n`-terminated, UTF-8)
//!
//! ```text
//! {"seq":1,"prev":"sha256:000…0","record":{"time":"…","event":"decision",…}}
//! {"seq":2,"prev":"sha256:<hash of line 1>","record":{…}}
//! {"seq":3,"prev":"sha256:<hash of line 2>","checkpoint":{"head":"sha256:<hash of line 2>","count":2,"time":"…"},"signature":"<b64>","key":"sha256:<key id>"}
//! ```
//!
//! - `seq` is the 1-based line number; `prev` is the hash of the line before
//!   ([`EntryHash::GENESIS`], 32 zero bytes, for line 1).
//! - The hash of a line is sha256 over the exact bytes written for it, without the trailing
//!   newline. Lines are compact JSON with members in the order shown and every [`Record`]
//!   field present (`null` when absent); the verifier re-encodes each parsed line and refuses one
//!   whose bytes differ, so one line has exactly one accepted form.
//! - A checkpoint's `head` is the hash of the line before it, `count` the number of record
//!   entries before it, `key` the node key's ID (sha256 of its DER SubjectPublicKeyInfo, as in
//!   `warden-trust`), and `signature` standard base64 of the node key's signature
//!   ([`warden_trust::SigningKey::sign`]) over [`checkpoint_message`]:
//!   `warden-audit checkpoint v1\nseq=<seq>\nhead=<head>\ncount=<count>\ntime=<time>\n`.
//!
//! # What verification proves
//!
//! Every line parses in canonical form, `seq` increments by one, every `prev` links, and every
//! checkpoint's signature verifies under the node key and covers the head at that point. Any
//! edit, deletion, insertion or reordering before the last checkpoint is detected and reported
//! with a line number. Entries after the last checkpoint link, but nothing signed vouches for
//! them: a cut or rewritten tail looks like a tail not yet checkpointed, and is reported as "N
//! entries after the last signed checkpoint are not covered". A cut exactly after a checkpoint
//! cannot be told from a shorter log; compare `count` with what the node reported elsewhere.
//!
//! # Writing
//!
//! [`AuditLog`] owns one file, opened with `O_APPEND` and an exclusive `flock(2)` so one process
//! writes. Each append is one `write` of the whole line followed by `fdatasync` (unless the
//! options turn it off), so an acknowledged entry survives a crash. A crash mid-write leaves a
//! torn last line without its newline; [`AuditLog::open`] removes only that partial line (and
//! logs it) and refuses a file whose chain is otherwise broken.

#![forbid(unsafe_code)]

mod chain;
mod log;
mod record;
mod verdict;

pub use chain::{
    CHECKPOINT_DOMAIN, Chain, Checkpoint, EntryHash, LogLine, MAX_LINE, Problem, Report, TornTail,
    Verifier, VerifyError, checkpoint_message, verify_bytes,
};
pub use log::{AuditError, AuditLog, Options, read, verify};
pub use record::{Approval, Event, LocalUser, Outcome, Record};
pub use verdict::Verdict;

#[cfg(test)]
mod tests;
