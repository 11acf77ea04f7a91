//! C2SP checkpoints (<https://c2sp.org/tlog-checkpoint>) inside signed notes.
//!
//! ```text
//! <origin>
//! <tree size, decimal, no leading zero>
//! <root hash, base64>
//! [extension lines, non-empty]
//! ```
//!
//! Warden's store names its checkpoint key after the log's origin, so [`open_checkpoint`]
//! requires the origin to equal the pinned verifier's key name (the specification recommends
//! it); a checkpoint signed by the right key for another log is refused.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::merkle::{self, EMPTY_ROOT, Hash, ProofError};
use crate::note::{self, Note, NoteError, NoteSigner, NoteVerifier};

/// Most extension lines accepted.
pub const MAX_EXTENSION_LINES: usize = 16;
/// Longest origin or extension line accepted, in bytes.
pub const MAX_LINE_LEN: usize = 1024;

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint note refused: {0}")]
    Note(#[from] NoteError),
    #[error("checkpoint text is malformed: {0}")]
    Malformed(&'static str),
    #[error("checkpoint origin `{found}` is not the pinned log `{expected}`")]
    WrongOrigin { found: String, expected: String },
    #[error(
        "checkpoint not signed: origin `{origin}` differs from the signer's key name `{key_name}`"
    )]
    SignerNameMismatch { origin: String, key_name: String },
    #[error(
        "checkpoint of size {new_size} is not consistent with the checkpoint of size {old_size} seen before: {why}"
    )]
    Inconsistent {
        old_size: u64,
        new_size: u64,
        why: ProofError,
    },
    #[error("checkpoints of logs `{old}` and `{new}` cannot be compared")]
    OtherLog { old: String, new: String },
}

/// A log's signed tree head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, e.g. `store.example/community`.
    pub origin: String,
    /// Number of entries.
    pub size: u64,
    /// The RFC 9162 root hash of the first `size` entries.
    pub root: Hash,
    /// Opaque extension lines (non-empty each); Warden writes none.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: &str, size: u64, root: Hash) -> Self {
        Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note text: origin, size, base64 root, extension lines, each ending in a newline.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses checkpoint note text strictly: at least three lines, each non-empty; the size in
    /// decimal with no sign or leading zero; the root canonical padded base64 of 32 bytes; at
    /// most [`MAX_EXTENSION_LINES`] extension lines.
    pub fn parse_text(text: &str) -> Result<Self, CheckpointError> {
        let body = text.strip_suffix('\n').ok_or(CheckpointError::Malformed(
            "the text does not end in a newline",
        ))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() || origin.len() > MAX_LINE_LEN {
            return Err(CheckpointError::Malformed(
                "the origin line is empty or too long",
            ));
        }
        if origin.bytes().any(|b| b < 0x20) {
            return Err(CheckpointError::Malformed(
                "the origin has a control character",
            ));
        }
        let size = lines
            .next()
            .ok_or(CheckpointError::Malformed("the tree size line is missing"))?;
        let size_ok = !size.is_empty()
            && size.len() <= 20
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size == "0" || !size.starts_with('0'));
        let size: u64 = size
            .parse()
            .ok()
            .filter(|_| size_ok)
            .ok_or(CheckpointError::Malformed(
                "the tree size is not a decimal number without leading zeros",
            ))?;
        let root = lines
            .next()
            .ok_or(CheckpointError::Malformed("the root hash line is missing"))?;
        let root: Hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or(CheckpointError::Malformed(
                "the root hash is not base64 of 32 bytes",
            ))?;
        let mut extensions = Vec::new();
        for line in lines {
            if line.is_empty() {
                return Err(CheckpointError::Malformed("an extension line is empty"));
            }
            if line.len() > MAX_LINE_LEN {
                return Err(CheckpointError::Malformed("an extension line is too long"));
            }
            if line.bytes().any(|b| b < 0x20) {
                return Err(CheckpointError::Malformed(
                    "an extension line has a control character",
                ));
            }
            if extensions.len() == MAX_EXTENSION_LINES {
                return Err(CheckpointError::Malformed("too many extension lines"));
            }
            extensions.push(line.to_owned());
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// The signed note of this checkpoint, signed by `signer`, whose key name must be the
    /// origin.
    pub fn sign(&self, signer: &NoteSigner) -> Result<Vec<u8>, CheckpointError> {
        if signer.name() != self.origin {
            return Err(CheckpointError::SignerNameMismatch {
                origin: self.origin.clone(),
                key_name: signer.name().to_owned(),
            });
        }
        let mut note = Note::new(&self.to_text())?;
        // The text must parse back: refuse to sign what a verifier would refuse.
        Checkpoint::parse_text(&note.text)?;
        note.sign(signer);
        Ok(note.to_bytes())
    }
}

/// Parses a signed checkpoint, checks the pinned `verifier`'s signature (others are ignored)
/// and that the origin is the verifier's key name.
pub fn open_checkpoint(
    signed: &[u8],
    verifier: &NoteVerifier,
) -> Result<Checkpoint, CheckpointError> {
    let note = note::open(signed, verifier)?;
    let cp = Checkpoint::parse_text(&note.text)?;
    if cp.origin != verifier.name() {
        return Err(CheckpointError::WrongOrigin {
            found: cp.origin.escape_debug().to_string(),
            expected: verifier.name().to_owned(),
        });
    }
    Ok(cp)
}

/// Checks that `new` extends `old` (both already verified checkpoints of the same log) with
/// `proof`, a consistency proof from `old.size` to `new.size`. From an empty `old` (whose root
/// must be the empty root) any tree follows and the proof must be empty; equal sizes need equal
/// roots and an empty proof.
pub fn verify_checkpoint_consistency(
    old: &Checkpoint,
    new: &Checkpoint,
    proof: &[Hash],
) -> Result<(), CheckpointError> {
    if old.origin != new.origin {
        return Err(CheckpointError::OtherLog {
            old: old.origin.escape_debug().to_string(),
            new: new.origin.escape_debug().to_string(),
        });
    }
    let inconsistent = |why| CheckpointError::Inconsistent {
        old_size: old.size,
        new_size: new.size,
        why,
    };
    if old.size == 0 && new.size >= old.size {
        if old.root != EMPTY_ROOT {
            return Err(inconsistent(ProofError::RootMismatch));
        }
        if !proof.is_empty() {
            return Err(inconsistent(ProofError::WrongLength {
                got: proof.len(),
                expected: 0,
            }));
        }
        if new.size == 0 && new.root != EMPTY_ROOT {
            return Err(inconsistent(ProofError::RootMismatch));
        }
        return Ok(());
    }
    merkle::verify_consistency(old.size, new.size, &old.root, &new.root, proof)
        .map_err(inconsistent)
}
