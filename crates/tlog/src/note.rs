//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 signatures (type `0x01`).
//!
//! ```text
//! <text, ending in a newline>
//!
//! — <key name> base64(key ID (4 bytes, big endian) || Ed25519 signature over the text)
//! ```
//!
//! Key ID = the first four bytes of `SHA-256(name || 0x0A || 0x01 || 32-byte public key)`;
//! a verifier key is written `name+hex(key ID)+base64(0x01 || public key)`.
//!
//! Parsing is strict: at most [`MAX_NOTE_LEN`] bytes and [`MAX_NOTE_SIGNATURES`] signature lines,
//! valid UTF-8 with no control character but newline, the text separated from the signatures by
//! the last blank line, each signature line exactly `— name base64` with canonical padded
//! standard base64 of at least five bytes and a valid key name. Verification ignores
//! signatures by other keys (other name or other key ID), but a signature that names the pinned
//! key and does not verify refuses the whole note, and so does a note the pinned key did not
//! sign.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

/// Largest signed note accepted, in bytes.
pub const MAX_NOTE_LEN: usize = 64 * 1024;
/// Most signature lines accepted on one note (the specification asks for at least 16).
pub const MAX_NOTE_SIGNATURES: usize = 64;
/// Longest key name accepted, in bytes.
pub const MAX_KEY_NAME_LEN: usize = 256;
/// The signature type byte of Ed25519 note signatures.
pub const ED25519_SIGNATURE_TYPE: u8 = 0x01;

const EM_DASH_SPACE: &str = "\u{2014} ";

/// Why a note, a key or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("note is {len} bytes, more than the {max} accepted")]
    TooLarge { len: usize, max: usize },
    #[error("note is not valid UTF-8")]
    NotUtf8,
    #[error("note contains control character {0:#04x}; only newlines are allowed")]
    ControlCharacter(u8),
    #[error("note text must end with a newline")]
    NoFinalNewline,
    #[error(
        "note has no signature block: the text must be followed by a blank line and signature lines"
    )]
    NoSignatures,
    #[error("note has more than {MAX_NOTE_SIGNATURES} signatures")]
    TooManySignatures,
    #[error("signature line {line} is malformed: {why}")]
    BadSignatureLine { line: usize, why: &'static str },
    #[error("key name `{0}` is invalid: it must be 1 to 256 bytes with no spaces or `+`")]
    BadKeyName(String),
    #[error(
        "verifier key is malformed: {0}; expected name+hex8+base64(0x01 || 32-byte Ed25519 key)"
    )]
    BadVerifierKey(&'static str),
    #[error(
        "verifier key's ID {found:08x} does not match its name and key (expected {expected:08x})"
    )]
    VerifierKeyIdMismatch { found: u32, expected: u32 },
    #[error(
        "the signature of pinned key {name}+{key_id:08x} does not verify: the note was altered or forged"
    )]
    InvalidSignature { name: String, key_id: u32 },
    #[error("note is not signed by the pinned key {name}+{key_id:08x}")]
    NotSignedByPinnedKey { name: String, key_id: u32 },
}

/// Whether `name` is a valid key name: non-empty, at most [`MAX_KEY_NAME_LEN`] bytes, no Unicode
/// space, no `+`, no control character.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_KEY_NAME_LEN
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// A note key ID: the first four bytes (big endian) of
/// `SHA-256(name || 0x0A || signature type || public key)`.
pub fn key_id(name: &str, signature_type: u8, public_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', signature_type]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// A pinned Ed25519 note verifier: a key name, its key ID and public key.
#[derive(Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl fmt::Debug for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoteVerifier({self})")
    }
}

impl fmt::Display for NoteVerifier {
    /// The verifier key string `name+hex8+base64(0x01 || key)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = Vec::with_capacity(33);
        raw.push(ED25519_SIGNATURE_TYPE);
        raw.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(raw)
        )
    }
}

impl NoteVerifier {
    /// A verifier for `key` under `name`.
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::BadKeyName(name.escape_debug().to_string()));
        }
        Ok(NoteVerifier {
            name: name.to_owned(),
            key_id: key_id(name, ED25519_SIGNATURE_TYPE, key.as_bytes()),
            key,
        })
    }

    /// Parses a verifier key string `name+hex8+base64(0x01 || 32-byte key)`; the key ID must be
    /// the one the name and key give.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        if vkey.len() > MAX_KEY_NAME_LEN + 64 {
            return Err(NoteError::BadVerifierKey("too long"));
        }
        // The name has no `+`; the base64 key material may.
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id), Some(b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::BadVerifierKey(
                "not three parts separated by `+`",
            ));
        };
        if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(NoteError::BadVerifierKey("the key ID is not 8 hex digits"));
        }
        let found = u32::from_str_radix(id, 16)
            .map_err(|_| NoteError::BadVerifierKey("the key ID is not 8 hex digits"))?;
        let raw = STANDARD
            .decode(b64)
            .map_err(|_| NoteError::BadVerifierKey("the key is not base64"))?;
        let Some((&ED25519_SIGNATURE_TYPE, key)) = raw.split_first() else {
            return Err(NoteError::BadVerifierKey(
                "the key is not of type 0x01 (Ed25519)",
            ));
        };
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| NoteError::BadVerifierKey("the Ed25519 key is not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| NoteError::BadVerifierKey("the Ed25519 key is not a valid point"))?;
        let v = NoteVerifier::new(name, key)?;
        if v.key_id != found {
            return Err(NoteError::VerifierKeyIdMismatch {
                found,
                expected: v.key_id,
            });
        }
        Ok(v)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Whether `signature` is this key's over `text` (strict RFC 8032 verification).
    pub fn verify(&self, text: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        self.key.verify_strict(text, &sig).is_ok()
    }
}

/// An Ed25519 note signer: a key name and a private key.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoteSigner({}+{:08x})", self.name, self.key_id)
    }
}

impl NoteSigner {
    /// A signer with `key` under `name`.
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        let v = NoteVerifier::new(name, key.verifying_key())?;
        Ok(NoteSigner {
            name: v.name,
            key_id: v.key_id,
            key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The matching verifier (its [`Display`](fmt::Display) form is the verifier key string).
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// This key's signature over `text`.
    pub fn sign(&self, text: &[u8]) -> NoteSignature {
        NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            signature: self.key.sign(text).to_bytes().to_vec(),
        }
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: u32,
    /// The signature bytes after the key ID.
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The signature line, `— name base64(key ID || signature)` and a newline.
    pub fn to_line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.signature);
        format!("{EM_DASH_SPACE}{} {}\n", self.name, STANDARD.encode(raw))
    }

    fn parse_line(line_no: usize, line: &str) -> Result<Self, NoteError> {
        let bad = |why| NoteError::BadSignatureLine { line: line_no, why };
        let rest = line.strip_prefix(EM_DASH_SPACE).ok_or(bad(
            "it does not start with an em dash (U+2014) and a space",
        ))?;
        let (name, b64) = rest.split_once(' ').ok_or(bad(
            "it has no space between the key name and the signature",
        ))?;
        if !is_valid_key_name(name) {
            return Err(bad("the key name is empty, too long, or has spaces or `+`"));
        }
        let raw = STANDARD
            .decode(b64)
            .map_err(|_| bad("the signature is not padded standard base64"))?;
        if raw.len() < 5 {
            return Err(bad("the signature is shorter than a key ID and one byte"));
        }
        Ok(NoteSignature {
            name: name.to_owned(),
            key_id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
            signature: raw[4..].to_vec(),
        })
    }
}

/// A note: its text and signatures, not yet verified unless it came from [`open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The text, ending in a newline.
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

fn check_chars(s: &str) -> Result<(), NoteError> {
    match s.bytes().find(|&b| b < 0x20 && b != b'\n') {
        Some(b) => Err(NoteError::ControlCharacter(b)),
        None => Ok(()),
    }
}

impl Note {
    /// An unsigned note with `text` (UTF-8 without control characters but newlines, ending in a
    /// newline).
    pub fn new(text: &str) -> Result<Self, NoteError> {
        if text.len() > MAX_NOTE_LEN {
            return Err(NoteError::TooLarge {
                len: text.len(),
                max: MAX_NOTE_LEN,
            });
        }
        check_chars(text)?;
        if !text.ends_with('\n') {
            return Err(NoteError::NoFinalNewline);
        }
        Ok(Note {
            text: text.to_owned(),
            signatures: Vec::new(),
        })
    }

    /// Parses a signed note strictly (see the module documentation). Signatures are not checked.
    pub fn parse(bytes: &[u8]) -> Result<Self, NoteError> {
        if bytes.len() > MAX_NOTE_LEN {
            return Err(NoteError::TooLarge {
                len: bytes.len(),
                max: MAX_NOTE_LEN,
            });
        }
        let s = std::str::from_utf8(bytes).map_err(|_| NoteError::NotUtf8)?;
        check_chars(s)?;
        if !s.ends_with('\n') {
            return Err(NoteError::NoFinalNewline);
        }
        let split = s.rfind("\n\n").ok_or(NoteError::NoSignatures)?;
        let text = &s[..=split];
        let block = &s[split + 2..];
        if block.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        let mut signatures = Vec::new();
        // `block` ends in a newline, so the last piece of the split is empty.
        for (i, line) in block[..block.len() - 1].split('\n').enumerate() {
            if signatures.len() == MAX_NOTE_SIGNATURES {
                return Err(NoteError::TooManySignatures);
            }
            signatures.push(NoteSignature::parse_line(i + 1, line)?);
        }
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The signed note's bytes: the text, a blank line, the signature lines.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.text.clone().into_bytes();
        out.push(b'\n');
        for s in &self.signatures {
            out.extend_from_slice(s.to_line().as_bytes());
        }
        out
    }

    /// Adds `signer`'s signature over the text, replacing an earlier one by the same key.
    pub fn sign(&mut self, signer: &NoteSigner) {
        self.signatures
            .retain(|s| !(s.name == signer.name && s.key_id == signer.key_id));
        self.signatures.push(signer.sign(self.text.as_bytes()));
    }

    /// Checks that `verifier` signed the text. Signatures by other keys are ignored; a signature
    /// that names the pinned key (name and key ID) but does not verify refuses the note.
    pub fn verify(&self, verifier: &NoteVerifier) -> Result<(), NoteError> {
        let mut verified = false;
        for s in &self.signatures {
            if s.name != verifier.name || s.key_id != verifier.key_id {
                continue;
            }
            if !verifier.verify(self.text.as_bytes(), &s.signature) {
                return Err(NoteError::InvalidSignature {
                    name: verifier.name.clone(),
                    key_id: verifier.key_id,
                });
            }
            verified = true;
        }
        if !verified {
            return Err(NoteError::NotSignedByPinnedKey {
                name: verifier.name.clone(),
                key_id: verifier.key_id,
            });
        }
        Ok(())
    }
}

/// Parses a signed note and checks that `verifier` signed it; the text is to be trusted only
/// when this succeeds.
pub fn open(bytes: &[u8], verifier: &NoteVerifier) -> Result<Note, NoteError> {
    let note = Note::parse(bytes)?;
    note.verify(verifier)?;
    Ok(note)
}
