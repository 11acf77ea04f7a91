//! The hash chain, pure: building lines ([`Chain`]) and checking them ([`Verifier`]). No I/O.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_trust::keys::{PublicKey, SigningKey};

use crate::record::Record;

/// The longest line written or accepted, in bytes (without its newline).
pub const MAX_LINE: usize = 1024 * 1024;

/// The domain separation line that starts every signed checkpoint message.
pub const CHECKPOINT_DOMAIN: &str = "warden-audit checkpoint v1";

/// sha256 of a line's exact bytes (without the trailing newline). Displays as `sha256:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryHash([u8; 32]);

impl EntryHash {
    /// The `prev` of the first line: 32 zero bytes.
    pub const GENESIS: EntryHash = EntryHash([0; 32]);

    /// The hash of one line's bytes (without its newline).
    pub fn of_line(line: &[u8]) -> Self {
        EntryHash(sha2::Sha256::digest(line).into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for EntryHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for EntryHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntryHash({})", &hex::encode(self.0)[..16])
    }
}

impl FromStr for EntryHash {
    type Err = String;
    /// Reads `sha256:<64 lower-case hex>`, nothing else.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{}` is not sha256:<64 lower-case hex>", s.escape_debug());
        let h = s.strip_prefix("sha256:").ok_or_else(bad)?;
        if h.len() != 64 || h.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(h, &mut out).map_err(|_| bad())?;
        Ok(EntryHash(out))
    }
}

impl Serialize for EntryHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EntryHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The `checkpoint` member of a checkpoint line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Hash of the line just before the checkpoint (equal to the line's `prev`).
    pub head: EntryHash,
    /// Number of record entries before the checkpoint.
    pub count: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
}

/// An entry line as written.
#[derive(Serialize)]
struct EntryLine<'a> {
    seq: u64,
    prev: EntryHash,
    record: &'a Record,
}

/// A checkpoint line as written.
#[derive(Serialize)]
struct CheckpointLine<'a> {
    seq: u64,
    prev: EntryHash,
    checkpoint: &'a Checkpoint,
    signature: &'a str,
    key: &'a str,
}

/// Any line as read: exactly one of `record` and `checkpoint` (checked after parsing).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    seq: u64,
    prev: EntryHash,
    record: Option<Record>,
    checkpoint: Option<Checkpoint>,
    signature: Option<String>,
    key: Option<String>,
}

/// One parsed line of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLine {
    Entry {
        seq: u64,
        prev: EntryHash,
        record: Box<Record>,
    },
    Checkpoint {
        seq: u64,
        prev: EntryHash,
        checkpoint: Checkpoint,
        signature: String,
        key: String,
    },
}

impl LogLine {
    pub fn seq(&self) -> u64 {
        match self {
            LogLine::Entry { seq, .. } | LogLine::Checkpoint { seq, .. } => *seq,
        }
    }

    pub fn prev(&self) -> EntryHash {
        match self {
            LogLine::Entry { prev, .. } | LogLine::Checkpoint { prev, .. } => *prev,
        }
    }

    /// The canonical bytes of this line (without newline): what the writer produces.
    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        match self {
            LogLine::Entry { seq, prev, record } => serde_json::to_vec(&EntryLine {
                seq: *seq,
                prev: *prev,
                record,
            }),
            LogLine::Checkpoint {
                seq,
                prev,
                checkpoint,
                signature,
                key,
            } => serde_json::to_vec(&CheckpointLine {
                seq: *seq,
                prev: *prev,
                checkpoint,
                signature,
                key,
            }),
        }
    }

    /// Parses one line (without newline). Checks shape and canonical form, not the chain.
    pub fn parse(line: &[u8]) -> Result<LogLine, Problem> {
        if line.len() > MAX_LINE {
            return Err(Problem::LineTooLong {
                len: line.len(),
                max: MAX_LINE,
            });
        }
        if line.is_empty() {
            return Err(Problem::Empty);
        }
        let raw: RawLine =
            serde_json::from_slice(line).map_err(|e| Problem::NotJson(e.to_string()))?;
        let parsed = match raw {
            RawLine {
                seq,
                prev,
                record: Some(record),
                checkpoint: None,
                signature: None,
                key: None,
            } => LogLine::Entry {
                seq,
                prev,
                record: Box::new(record),
            },
            RawLine {
                seq,
                prev,
                record: None,
                checkpoint: Some(checkpoint),
                signature: Some(signature),
                key: Some(key),
            } => LogLine::Checkpoint {
                seq,
                prev,
                checkpoint,
                signature,
                key,
            },
            _ => return Err(Problem::Shape),
        };
        let canonical = parsed
            .to_bytes()
            .map_err(|e| Problem::NotJson(e.to_string()))?;
        if canonical != line {
            return Err(Problem::NotCanonical);
        }
        Ok(parsed)
    }
}

/// The message a checkpoint's signature covers:
///
/// ```text
/// warden-audit checkpoint v1\nseq=<seq>\nhead=sha256:<hex>\ncount=<count>\ntime=<rfc3339>\n
/// ```
pub fn checkpoint_message(
    seq: u64,
    checkpoint: &Checkpoint,
) -> Result<Vec<u8>, time::error::Format> {
    let time = checkpoint.time.format(&Rfc3339)?;
    Ok(format!(
        "{CHECKPOINT_DOMAIN}\nseq={seq}\nhead={}\ncount={}\ntime={time}\n",
        checkpoint.head, checkpoint.count
    )
    .into_bytes())
}

/// What is wrong with one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("the line is {len} bytes, more than the {max} accepted")]
    LineTooLong { len: usize, max: usize },
    #[error("the line is empty")]
    Empty,
    #[error("the line is not a valid audit line ({0}): it was edited or corrupted")]
    NotJson(String),
    #[error("the line is neither an entry nor a checkpoint: it was edited")]
    Shape,
    #[error("the line is not in the exact form Warden writes: it was edited")]
    NotCanonical,
    #[error(
        "the line has seq {found} where {expected} was expected: lines were deleted, inserted or reordered here"
    )]
    Seq { expected: u64, found: u64 },
    #[error(
        "the first line does not start the chain (its prev is not the genesis value): the beginning of the log was removed"
    )]
    Genesis,
    #[error(
        "the line was altered: it no longer hashes to the prev recorded by line {next} (or line {next}'s prev was altered)"
    )]
    Altered { next: u64 },
    #[error(
        "the line's prev does not link to the signed checkpoint before it: the line was altered or forged"
    )]
    Unlinked,
    #[error(
        "the checkpoint's head is not the hash of the line before it: the checkpoint was altered or forged"
    )]
    CheckpointHead,
    #[error(
        "the checkpoint counts {found} entries where {expected} precede it: the checkpoint was altered or forged"
    )]
    CheckpointCount { expected: u64, found: u64 },
    #[error(
        "the checkpoint names key {found}, not the node key {expected}: forged checkpoint, or the wrong node key was given"
    )]
    CheckpointKey { expected: String, found: String },
    #[error("the checkpoint signature is not valid base64: forged or altered checkpoint")]
    CheckpointEncoding,
    #[error(
        "the checkpoint signature does not verify under the node key: forged or altered checkpoint"
    )]
    CheckpointSignature,
}

/// Why a log does not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The log was altered: `line` (1-based) is where the damage shows.
    #[error("line {line}: {problem}")]
    Tampered { line: u64, problem: Problem },
    #[error("cannot read audit log {path}: {source}; check the path and permissions")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl VerifyError {
    /// The 1-based line number where tampering shows, if this is tampering.
    pub fn line(&self) -> Option<u64> {
        match self {
            VerifyError::Tampered { line, .. } => Some(*line),
            VerifyError::Io { .. } => None,
        }
    }
}

/// A last line without its newline: a write the node did not finish (crash mid-write), or a cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TornTail {
    /// Its 1-based line number.
    pub line: u64,
    /// Its length in bytes.
    pub bytes: u64,
    /// Byte offset where it starts (the length the file has without it).
    pub offset: u64,
}

/// What a verification found in a log whose chain is intact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Complete lines (entries and checkpoints).
    pub lines: u64,
    /// Record entries.
    pub entries: u64,
    /// Signed checkpoints, all verified.
    pub checkpoints: u64,
    /// Entries covered by the last signed checkpoint.
    pub covered: u64,
    /// Entries after the last signed checkpoint: their chain links, but no signature vouches
    /// for them, so a truncated or rewritten tail cannot be told from one not yet checkpointed.
    pub uncovered: u64,
    /// Hash of the last complete line ([`EntryHash::GENESIS`] for an empty log).
    pub head: EntryHash,
    /// Line number of the last signed checkpoint.
    pub last_checkpoint_line: Option<u64>,
    /// A torn last line, if any (not counted in `lines`).
    pub torn_tail: Option<TornTail>,
}

impl Report {
    /// Every entry is covered by a signed checkpoint and nothing trails the last line.
    pub fn is_intact(&self) -> bool {
        self.uncovered == 0 && self.torn_tail.is_none()
    }

    /// One sentence per reason the log is not fully proven; empty when [`Report::is_intact`].
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.uncovered > 0 {
            out.push(format!(
                "{} entries after the last signed checkpoint are not covered",
                self.uncovered
            ));
        }
        if let Some(t) = self.torn_tail {
            out.push(format!(
                "line {}: torn last line of {} bytes without a newline (a write interrupted by a crash, or a cut)",
                t.line, t.bytes
            ));
        }
        out
    }
}

/// Checks lines one by one against the chain and the node key.
#[derive(Debug)]
pub struct Verifier<'k> {
    key: &'k PublicKey,
    key_id: String,
    lines: u64,
    head: EntryHash,
    entries: u64,
    checkpoints: u64,
    covered: u64,
    last_checkpoint_line: Option<u64>,
    last_was_checkpoint: bool,
}

impl<'k> Verifier<'k> {
    pub fn new(key: &'k PublicKey) -> Self {
        Verifier {
            key,
            key_id: key.id().to_string(),
            lines: 0,
            head: EntryHash::GENESIS,
            entries: 0,
            checkpoints: 0,
            covered: 0,
            last_checkpoint_line: None,
            last_was_checkpoint: false,
        }
    }

    /// Checks the next complete line (without its newline) and returns it parsed.
    pub fn push(&mut self, line: &[u8]) -> Result<LogLine, VerifyError> {
        let n = self.lines + 1;
        let tampered = |line: u64, problem: Problem| VerifyError::Tampered { line, problem };
        let parsed = LogLine::parse(line).map_err(|p| tampered(n, p))?;
        if parsed.seq() != n {
            return Err(tampered(
                n,
                Problem::Seq {
                    expected: n,
                    found: parsed.seq(),
                },
            ));
        }
        if parsed.prev() != self.head {
            return Err(if n == 1 {
                tampered(1, Problem::Genesis)
            } else if self.last_was_checkpoint {
                // The checkpoint before verified, so it is this line that does not link.
                tampered(n, Problem::Unlinked)
            } else {
                tampered(n - 1, Problem::Altered { next: n })
            });
        }
        match &parsed {
            LogLine::Entry { .. } => {
                self.entries += 1;
                self.last_was_checkpoint = false;
            }
            LogLine::Checkpoint {
                seq,
                checkpoint,
                signature,
                key,
                ..
            } => {
                if checkpoint.head != self.head {
                    return Err(tampered(n, Problem::CheckpointHead));
                }
                if checkpoint.count != self.entries {
                    return Err(tampered(
                        n,
                        Problem::CheckpointCount {
                            expected: self.entries,
                            found: checkpoint.count,
                        },
                    ));
                }
                if *key != self.key_id {
                    return Err(tampered(
                        n,
                        Problem::CheckpointKey {
                            expected: self.key_id.clone(),
                            found: key.clone(),
                        },
                    ));
                }
                let sig = STANDARD
                    .decode(signature)
                    .map_err(|_| tampered(n, Problem::CheckpointEncoding))?;
                if STANDARD.encode(&sig) != *signature {
                    return Err(tampered(n, Problem::CheckpointEncoding));
                }
                let message = checkpoint_message(*seq, checkpoint)
                    .map_err(|_| tampered(n, Problem::CheckpointSignature))?;
                self.key
                    .verify(&message, &sig)
                    .map_err(|_| tampered(n, Problem::CheckpointSignature))?;
                self.checkpoints += 1;
                self.covered = self.entries;
                self.last_checkpoint_line = Some(n);
                self.last_was_checkpoint = true;
            }
        }
        self.lines = n;
        self.head = EntryHash::of_line(line);
        Ok(parsed)
    }

    /// The report for the lines pushed so far, with a torn tail if the caller found one.
    pub fn finish(&self, torn_tail: Option<TornTail>) -> Report {
        Report {
            lines: self.lines,
            entries: self.entries,
            checkpoints: self.checkpoints,
            covered: self.covered,
            uncovered: self.entries - self.covered,
            head: self.head,
            last_checkpoint_line: self.last_checkpoint_line,
            torn_tail,
        }
    }
}

/// Verifies a whole log held in memory. See [`crate::verify`] for the file version.
pub fn verify_bytes(log: &[u8], node_key: &PublicKey) -> Result<Report, VerifyError> {
    let mut v = Verifier::new(node_key);
    let mut offset = 0usize;
    let mut rest = log;
    while !rest.is_empty() {
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                v.push(&rest[..i])?;
                offset += i + 1;
                rest = &rest[i + 1..];
            }
            None => {
                let torn = TornTail {
                    line: v.lines + 1,
                    bytes: rest.len() as u64,
                    offset: offset as u64,
                };
                return Ok(v.finish(Some(torn)));
            }
        }
    }
    Ok(v.finish(None))
}

/// Builds the lines of a log: the writer's side of the chain.
#[derive(Debug, Clone)]
pub struct Chain {
    /// Lines so far.
    lines: u64,
    head: EntryHash,
    entries: u64,
    /// Entries since the last checkpoint.
    since_checkpoint: u64,
}

impl Default for Chain {
    fn default() -> Self {
        Self::new()
    }
}

impl Chain {
    /// An empty log.
    pub fn new() -> Self {
        Chain {
            lines: 0,
            head: EntryHash::GENESIS,
            entries: 0,
            since_checkpoint: 0,
        }
    }

    /// The state after the lines a [`Report`] describes.
    pub fn resume(report: &Report) -> Self {
        Chain {
            lines: report.lines,
            head: report.head,
            entries: report.entries,
            since_checkpoint: report.uncovered,
        }
    }

    pub fn head(&self) -> EntryHash {
        self.head
    }

    pub fn entries(&self) -> u64 {
        self.entries
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    pub fn since_checkpoint(&self) -> u64 {
        self.since_checkpoint
    }

    /// The next entry line (with its newline) and its hash. The chain does not advance until
    /// [`Chain::commit`] is called with them, so a failed write leaves it unchanged.
    pub fn entry_line(&self, record: &Record) -> Result<(Vec<u8>, EntryHash), Problem> {
        let bytes = serde_json::to_vec(&EntryLine {
            seq: self.lines + 1,
            prev: self.head,
            record,
        })
        .map_err(|e| Problem::NotJson(e.to_string()))?;
        finish_line(bytes)
    }

    /// The next checkpoint line (with its newline), signed with `signer`, and its hash.
    pub fn checkpoint_line(
        &self,
        signer: &SigningKey,
        time: OffsetDateTime,
    ) -> Result<(Vec<u8>, EntryHash), Problem> {
        let seq = self.lines + 1;
        let checkpoint = Checkpoint {
            head: self.head,
            count: self.entries,
            time,
        };
        let message = checkpoint_message(seq, &checkpoint)
            .map_err(|e| Problem::NotJson(format!("cannot format the checkpoint time: {e}")))?;
        let signature = STANDARD.encode(signer.sign(&message));
        let line = LogLine::Checkpoint {
            seq,
            prev: self.head,
            checkpoint,
            signature,
            key: signer.public_key().id().to_string(),
        };
        let bytes = line
            .to_bytes()
            .map_err(|e| Problem::NotJson(e.to_string()))?;
        finish_line(bytes)
    }

    /// Advances the chain over a line built by [`Chain::entry_line`] or
    /// [`Chain::checkpoint_line`] that was written.
    pub fn commit(&mut self, hash: EntryHash, is_checkpoint: bool) {
        self.lines += 1;
        self.head = hash;
        if is_checkpoint {
            self.since_checkpoint = 0;
        } else {
            self.entries += 1;
            self.since_checkpoint += 1;
        }
    }
}

fn finish_line(mut bytes: Vec<u8>) -> Result<(Vec<u8>, EntryHash), Problem> {
    if bytes.len() > MAX_LINE {
        return Err(Problem::LineTooLong {
            len: bytes.len(),
            max: MAX_LINE,
        });
    }
    let hash = EntryHash::of_line(&bytes);
    bytes.push(b'\n');
    Ok((bytes, hash))
}
