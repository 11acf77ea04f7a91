//! End-to-end sealing of inputs and results to an organization's X25519 key. This crate does no
//! I/O: callers read key files and move ciphertext, and pass bytes in.
//!
//! # Construction
//!
//! HPKE (RFC 9180) in base mode with one fixed suite:
//! KEM DHKEM(X25519, HKDF-SHA256) (`0x0020`), KDF HKDF-SHA256 (`0x0001`), AEAD ChaCha20-Poly1305
//! (`0x0003`). The caller's `context` is the HPKE `info`, so a ciphertext only opens under the
//! context it was sealed for (e.g. `b"warden/input/v1|collab=3|org=7"`); the AEAD's associated
//! data is empty. Each [`seal`] draws a fresh ephemeral key and encrypts one message with
//! sequence number 0 (single-shot).
//!
//! # Sealed format (version 1)
//!
//! ```text
//! +---------+------------------------+------------------------------------+
//! | 0x01    | enc: 32 bytes          | ciphertext: plaintext length + 16  |
//! | version | ephemeral X25519 pkE   | ChaCha20-Poly1305 output with tag  |
//! +---------+------------------------+------------------------------------+
//! ```
//!
//! The version byte names the whole suite; any other value is refused before any cryptography.
//! A plaintext larger than [`MAX_PLAINTEXT`] is refused by [`seal`], and a sealed message larger
//! than [`MAX_SEALED`] by [`open`], so that neither allocates without bound.
//!
//! # Key files
//!
//! A private key is PEM with the label [`PRIVATE_KEY_LABEL`] (`WARDEN X25519 PRIVATE KEY`)
//! around the RFC 8410 PKCS#8 encoding of the 32-byte X25519 private key (48 bytes of DER:
//! `302e020100300506032b656e04220420 || key`). Relabelled as `PRIVATE KEY` it is what OpenSSL
//! and Python's `cryptography` read; the distinct label keeps it from being mistaken for a
//! signing key. A public key travels as standard base64 (with padding) of its 32 raw bytes;
//! its [`Fingerprint`] is `sha256:<hex>` of those 32 bytes and is what collaborations pin.

#![forbid(unsafe_code)]

pub mod cert;
pub mod envelope;

pub use cert::{CertError, Certificate, CertificateStatement};
pub use envelope::{
    InputBinding, Kind, OpenedInput, Proven, Requester, ResultBinding, Sender, TrustedKeys, Via,
    new_nonce, open_input, open_result, parse_header, seal_input, seal_result, valid_nonce,
};

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable as _, Kem as _, OpModeR, OpModeS, Serializable as _};
use rand_core::{OsRng, RngCore as _};
use sha2::Digest as _;
use zeroize::Zeroizing;

pub(crate) type Kem = X25519HkdfSha256;
pub(crate) type Kdf = HkdfSha256;
pub(crate) type Aead = ChaCha20Poly1305;

/// The version byte of the sealed format this crate writes and reads.
pub const VERSION: u8 = 1;
/// Length of the encapsulated (ephemeral public) key.
pub const ENC_LEN: usize = 32;
/// Length of the AEAD tag appended to the ciphertext.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed message adds to its plaintext: version, encapsulated key, tag.
pub const OVERHEAD: usize = 1 + ENC_LEN + TAG_LEN;
/// The largest plaintext [`seal`] accepts: 256 MiB.
pub const MAX_PLAINTEXT: usize = 256 * 1024 * 1024;
/// The largest sealed message [`open`] accepts: [`MAX_PLAINTEXT`] plus [`OVERHEAD`].
pub const MAX_SEALED: usize = MAX_PLAINTEXT + OVERHEAD;
/// The longest `context` accepted, in bytes.
pub const MAX_CONTEXT: usize = 1024;
/// PEM label of a private key file.
pub const PRIVATE_KEY_LABEL: &str = "WARDEN X25519 PRIVATE KEY";
/// How a refused organization key file says to make a right one.
const MAKE_ONE: &str = "make one with `warden keys generate --kind x25519 --out FILE` (FILE the \
                        secret key, FILE.pub its public key; `warden keys fingerprint FILE.pub` \
                        prints its fingerprint)";

/// RFC 8410 PKCS#8 prefix of an X25519 private key (version 0, OID 1.3.101.110, no
/// attributes, no public key).
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
];

/// Why sealing, opening or reading a key failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("plaintext of {len} bytes is larger than the {max}-byte limit; split it or send less")]
    PlaintextTooLarge { len: usize, max: usize },
    #[error(
        "sealed message of {len} bytes is larger than the {max}-byte limit; refusing to open it"
    )]
    SealedTooLarge { len: usize, max: usize },
    #[error("context of {len} bytes is longer than the {max}-byte limit; use a shorter context")]
    ContextTooLong { len: usize, max: usize },
    #[error(
        "sealed message of {len} bytes is shorter than the {min}-byte minimum; it was truncated"
    )]
    Truncated { len: usize, min: usize },
    #[error(
        "unknown sealed format version {0}; this build reads version 1, upgrade Warden or ask the sender"
    )]
    UnknownVersion(u8),
    #[error(
        "the sealed message does not open with this key and context: wrong key, wrong context, or altered ciphertext"
    )]
    OpenFailed,
    #[error("sealing failed: {0}")]
    SealFailed(String),
    #[error("the operating system's random number generator failed: {0}; check /dev/urandom")]
    Random(String),
    #[error("not a Warden X25519 private key: {0}")]
    PrivateKey(String),
    #[error("not an X25519 public key: {0}; expected base64 of 32 bytes")]
    PublicKey(String),
    #[error(
        "sealed format version {0} where version 2 is expected; a version 1 message proves no \
         sender and binds no task: seal it again with this Warden"
    )]
    NotVersion2(u8),
    #[error("not a Warden sealed message: {0}")]
    Envelope(String),
    #[error("expected {expected}, but the sealed message is {got}")]
    WrongKind {
        expected: &'static str,
        got: &'static str,
    },
    #[error(
        "the sealed message is sealed by {got}, not by the pinned key {expected} of the \
         organization that should have produced it; refusing it"
    )]
    WrongSender { expected: String, got: String },
    #[error("the sealed message opened, but what it is bound to is malformed: {0}")]
    Binding(String),
    #[error("the sender of the sealed message is not proven: {0}")]
    Unproven(String),
}

/// An organization's X25519 private key. Its bytes are wiped from memory when it is dropped;
/// `Debug` shows only the public key's fingerprint.
pub struct SecretKey {
    bytes: Zeroizing<[u8; 32]>,
    /// Derived once: every seal and open needs it.
    public: PublicKey,
}

/// An organization's X25519 public key: 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

/// sha256 of a public key's 32 raw bytes; displays as `sha256:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public_key().fingerprint())
    }
}

impl SecretKey {
    /// A fresh key from the operating system's random number generator.
    ///
    /// Aborts only if the operating system cannot provide randomness; use
    /// [`SecretKey::try_generate`] to handle that as an error.
    pub fn generate() -> Self {
        match Self::try_generate() {
            Ok(k) => k,
            // The OS generator failing is not a condition a key generator can continue from;
            // fall back to the kernel's blocking source through std as a last resort.
            Err(_) => Self::from_fallback_random(),
        }
    }

    /// A fresh key, or an error if the operating system's generator fails.
    pub fn try_generate() -> Result<Self, SealError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        OsRng
            .try_fill_bytes(bytes.as_mut())
            .map_err(|e| SealError::Random(e.to_string()))?;
        Ok(SecretKey::from_zeroizing(bytes))
    }

    fn from_fallback_random() -> Self {
        use std::io::Read as _;
        let mut bytes = Zeroizing::new([0u8; 32]);
        let filled = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(bytes.as_mut()))
            .is_ok();
        if !filled {
            // No source of randomness at all: a predictable key must never be returned.
            std::process::abort();
        }
        SecretKey::from_zeroizing(bytes)
    }

    /// A key from its 32 raw bytes (RFC 7748 scalar; clamped when used).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretKey::from_zeroizing(Zeroizing::new(bytes))
    }

    fn from_zeroizing(bytes: Zeroizing<[u8; 32]>) -> Self {
        let mut key = SecretKey {
            bytes,
            public: PublicKey([0; 32]),
        };
        let pk = Kem::sk_to_pk(&key.hpke_key());
        key.public.0.copy_from_slice(&pk.to_bytes());
        key
    }

    /// The 32 raw bytes. Handle with care.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        self.bytes.clone()
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// PEM `WARDEN X25519 PRIVATE KEY` around the RFC 8410 PKCS#8 DER.
    pub fn to_pem(&self) -> String {
        let mut der = Zeroizing::new(Vec::with_capacity(48));
        der.extend_from_slice(&PKCS8_PREFIX);
        der.extend_from_slice(self.bytes.as_ref());
        // Encoding 48 bytes under a valid label cannot fail.
        pkcs8::der::pem::encode_string(PRIVATE_KEY_LABEL, pkcs8::der::pem::LineEnding::LF, &der)
            .unwrap_or_default()
    }

    /// Reads [`SecretKey::to_pem`]'s output. Only the exact RFC 8410 form is accepted.
    pub fn from_pem(pem: &str) -> Result<Self, SealError> {
        let bad = |why: String| SealError::PrivateKey(why);
        let (label, der) = pkcs8::der::pem::decode_vec(pem.trim().as_bytes()).map_err(|e| {
            bad(format!(
                "{e}; expected a PEM `{PRIVATE_KEY_LABEL}` block; {MAKE_ONE}"
            ))
        })?;
        let der = Zeroizing::new(der);
        let x25519 =
            der.len() == PKCS8_PREFIX.len() + 32 && der[..PKCS8_PREFIX.len()] == PKCS8_PREFIX;
        if label == "PRIVATE KEY" && x25519 {
            return Err(bad(format!(
                "this is an X25519 key in OpenSSL's form (`BEGIN PRIVATE KEY`, e.g. from \
                 `openssl genpkey -algorithm x25519`); Warden reads `{PRIVATE_KEY_LABEL}` blocks: \
                 {MAKE_ONE}"
            )));
        }
        if label != PRIVATE_KEY_LABEL {
            return Err(bad(format!(
                "found a `{label}` block; expected `{PRIVATE_KEY_LABEL}`; {MAKE_ONE}"
            )));
        }
        if !x25519 {
            return Err(bad(format!(
                "the block is not an RFC 8410 PKCS#8 X25519 private key; {MAKE_ONE}"
            )));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&der[PKCS8_PREFIX.len()..]);
        Ok(SecretKey::from_zeroizing(bytes))
    }

    pub(crate) fn hpke_key(&self) -> <Kem as hpke::Kem>::PrivateKey {
        // 32 bytes always deserialize (the scalar is clamped, never rejected); the hpke key wipes
        // itself on drop.
        match <Kem as hpke::Kem>::PrivateKey::from_bytes(self.bytes.as_ref()) {
            Ok(k) => k,
            Err(_) => Kem::derive_keypair(self.bytes.as_ref()).0,
        }
    }
}

impl PublicKey {
    /// A key from its 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        PublicKey(bytes)
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Standard base64 (with padding) of the 32 raw bytes.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// Reads [`PublicKey::to_base64`]'s output (surrounding whitespace ignored).
    pub fn from_base64(s: &str) -> Result<Self, SealError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|e| SealError::PublicKey(e.to_string()))?;
        let bytes: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| SealError::PublicKey(format!("decoded {} bytes", raw.len())))?;
        Ok(PublicKey(bytes))
    }

    /// sha256 of the 32 raw bytes.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint(sha2::Sha256::digest(self.0).into())
    }

    pub(crate) fn hpke_key(&self) -> Result<<Kem as hpke::Kem>::PublicKey, SealError> {
        <Kem as hpke::Kem>::PublicKey::from_bytes(&self.0)
            .map_err(|e| SealError::PublicKey(e.to_string()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl FromStr for PublicKey {
    type Err = SealError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PublicKey::from_base64(s)
    }
}

impl Fingerprint {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", &hex::encode(self.0)[..16])
    }
}

impl FromStr for Fingerprint {
    type Err = SealError;
    /// Reads `sha256:<64 lower-case hex>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            SealError::PublicKey(format!(
                "`{}` is not a sha256:<hex> fingerprint",
                s.escape_debug()
            ))
        };
        let hex_part = s.strip_prefix("sha256:").ok_or_else(bad)?;
        if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| bad())?;
        Ok(Fingerprint(out))
    }
}

/// Context (HPKE `info`) of an input sealed for organization `organization_id` in collaboration
/// `collaboration_id`. Researchers' clients seal with it; the receiving node opens with it.
pub fn input_context(collaboration_id: i64, organization_id: i64) -> Vec<u8> {
    format!("warden/input/v1|collab={collaboration_id}|org={organization_id}").into_bytes()
}

/// Context (HPKE `info`) of the result of run `run_id` in collaboration `collaboration_id`,
/// sealed by the node for the organization that created the task.
pub fn result_context(collaboration_id: i64, run_id: i64) -> Vec<u8> {
    format!("warden/result/v1|collab={collaboration_id}|run={run_id}").into_bytes()
}

/// Seals `plaintext` to `recipient`, bound to `context`. See the crate documentation for the
/// format. Refuses plaintexts over [`MAX_PLAINTEXT`] and contexts over [`MAX_CONTEXT`].
pub fn seal(recipient: &PublicKey, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut ikm = Zeroizing::new([0u8; 32]);
    OsRng
        .try_fill_bytes(ikm.as_mut())
        .map_err(|e| SealError::Random(e.to_string()))?;
    seal_with_ephemeral_ikm(recipient, context, plaintext, &ikm)
}

/// [`seal`] with the ephemeral key derived from `ikm` (RFC 9180 `DeriveKeyPair`), as the RFC's
/// test vectors do. Never reuse an `ikm`: use [`seal`].
#[doc(hidden)]
pub fn seal_with_ephemeral_ikm(
    recipient: &PublicKey,
    context: &[u8],
    plaintext: &[u8],
    ikm: &[u8; 32],
) -> Result<Vec<u8>, SealError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(SealError::PlaintextTooLarge {
            len: plaintext.len(),
            max: MAX_PLAINTEXT,
        });
    }
    check_context(context)?;
    let pk = recipient.hpke_key()?;
    let mut rng = OneShotRng::new(ikm);
    let (enc, mut ctx) =
        hpke::setup_sender::<Aead, Kdf, Kem, _>(&OpModeS::Base, &pk, context, &mut rng)
            .map_err(|e| SealError::SealFailed(e.to_string()))?;
    if rng.overdrawn {
        return Err(SealError::SealFailed(
            "the HPKE library asked for more randomness than one ephemeral key".into(),
        ));
    }
    let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
    out.push(VERSION);
    out.extend_from_slice(&enc.to_bytes());
    let start = out.len();
    out.extend_from_slice(plaintext);
    let tag = ctx
        .seal_in_place_detached(&mut out[start..], &[])
        .map_err(|e| SealError::SealFailed(e.to_string()))?;
    out.extend_from_slice(&tag.to_bytes());
    Ok(out)
}

/// Opens a message [`seal`]ed to `recipient`'s public key under the same `context`. Any
/// alteration, another key or another context gives [`SealError::OpenFailed`].
pub fn open(recipient: &SecretKey, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    if sealed.len() > MAX_SEALED {
        return Err(SealError::SealedTooLarge {
            len: sealed.len(),
            max: MAX_SEALED,
        });
    }
    check_context(context)?;
    let Some((&version, rest)) = sealed.split_first() else {
        return Err(SealError::Truncated {
            len: 0,
            min: OVERHEAD,
        });
    };
    if version != VERSION {
        return Err(SealError::UnknownVersion(version));
    }
    if sealed.len() < OVERHEAD {
        return Err(SealError::Truncated {
            len: sealed.len(),
            min: OVERHEAD,
        });
    }
    let (enc, rest) = rest.split_at(ENC_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let enc =
        <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| SealError::OpenFailed)?;
    let tag = hpke::aead::AeadTag::<Aead>::from_bytes(tag).map_err(|_| SealError::OpenFailed)?;
    let sk = recipient.hpke_key();
    let mut ctx = hpke::setup_receiver::<Aead, Kdf, Kem>(&OpModeR::Base, &sk, &enc, context)
        .map_err(|_| SealError::OpenFailed)?;
    let mut plaintext = ciphertext.to_vec();
    ctx.open_in_place_detached(&mut plaintext, &[], &tag)
        .map_err(|_| SealError::OpenFailed)?;
    Ok(plaintext)
}

pub(crate) fn check_context(context: &[u8]) -> Result<(), SealError> {
    if context.len() > MAX_CONTEXT {
        return Err(SealError::ContextTooLong {
            len: context.len(),
            max: MAX_CONTEXT,
        });
    }
    Ok(())
}

/// Hands the HPKE library exactly one ephemeral key's worth of bytes drawn beforehand, so that a
/// failing OS generator is an error here rather than a panic in the library. Asking for more sets
/// `overdrawn` (and yields zeros), which [`seal_with_ephemeral_ikm`] turns into an error.
pub(crate) struct OneShotRng {
    bytes: Zeroizing<[u8; 32]>,
    used: usize,
    pub(crate) overdrawn: bool,
}

impl OneShotRng {
    pub(crate) fn new(ikm: &[u8; 32]) -> Self {
        OneShotRng {
            bytes: Zeroizing::new(*ikm),
            used: 0,
            overdrawn: false,
        }
    }
}

impl hpke::rand_core::RngCore for OneShotRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for d in dst.iter_mut() {
            match self.bytes.get(self.used) {
                Some(b) => {
                    *d = *b;
                    self.used += 1;
                }
                None => {
                    *d = 0;
                    self.overdrawn = true;
                }
            }
        }
    }
}

impl hpke::rand_core::CryptoRng for OneShotRng {}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: &[u8] = b"warden/input/v1|collab=3|org=7";

    #[test]
    fn round_trip_and_format() {
        let sk = SecretKey::generate();
        let pk = sk.public_key();
        let sealed = seal(&pk, CTX, b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + OVERHEAD);
        assert_eq!(sealed[0], VERSION);
        assert_eq!(open(&sk, CTX, &sealed).unwrap(), b"hello");
    }

    #[test]
    fn empty_plaintext_round_trips() {
        let sk = SecretKey::generate();
        let sealed = seal(&sk.public_key(), b"", b"").unwrap();
        assert_eq!(sealed.len(), OVERHEAD);
        assert_eq!(open(&sk, b"", &sealed).unwrap(), b"");
    }

    #[test]
    fn two_seals_differ() {
        let sk = SecretKey::generate();
        let a = seal(&sk.public_key(), CTX, b"same").unwrap();
        let b = seal(&sk.public_key(), CTX, b"same").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn debug_shows_no_secret() {
        let sk = SecretKey::from_bytes([0x42; 32]);
        let dbg = format!("{sk:?}");
        assert!(!dbg.contains(&hex::encode([0x42u8; 32])), "{dbg}");
        assert!(!dbg.contains("4242"), "{dbg}");
        assert!(dbg.contains("sha256:"), "{dbg}");
    }

    #[test]
    fn pem_round_trip() {
        let sk = SecretKey::generate();
        let pem = sk.to_pem();
        assert!(
            pem.starts_with("-----BEGIN WARDEN X25519 PRIVATE KEY-----\n"),
            "{pem}"
        );
        let back = SecretKey::from_pem(&pem).unwrap();
        assert_eq!(*back.to_bytes(), *sk.to_bytes());
    }

    #[test]
    fn pem_with_another_label_or_content_is_refused() {
        let sk = SecretKey::generate();
        let relabelled = sk.to_pem().replace(PRIVATE_KEY_LABEL, "PRIVATE KEY");
        let e = SecretKey::from_pem(&relabelled).unwrap_err().to_string();
        assert!(e.contains("an X25519 key in OpenSSL's form"), "{e}");
        assert!(e.contains("warden keys generate --kind x25519"), "{e}");
        let other = sk.to_pem().replace(PRIVATE_KEY_LABEL, "EC PRIVATE KEY");
        let e = SecretKey::from_pem(&other).unwrap_err().to_string();
        assert!(e.contains("found a `EC PRIVATE KEY` block"), "{e}");
        assert!(e.contains("warden keys generate --kind x25519"), "{e}");
        let short = pkcs8::der::pem::encode_string(
            PRIVATE_KEY_LABEL,
            pkcs8::der::pem::LineEnding::LF,
            &[0u8; 48],
        )
        .unwrap();
        let e = SecretKey::from_pem(&short).unwrap_err();
        assert!(e.to_string().contains("RFC 8410"), "{e}");
        assert!(SecretKey::from_pem("garbage").is_err());
    }

    #[test]
    fn public_key_base64_and_fingerprint() {
        let pk = PublicKey::from_bytes([7; 32]);
        let b64 = pk.to_base64();
        assert_eq!(PublicKey::from_base64(&b64).unwrap(), pk);
        assert_eq!(b64.parse::<PublicKey>().unwrap(), pk);
        let fp = pk.fingerprint().to_string();
        assert_eq!(
            fp,
            format!("sha256:{}", hex::encode(sha2::Sha256::digest([7u8; 32])))
        );
        assert_eq!(fp.parse::<Fingerprint>().unwrap(), pk.fingerprint());
        assert!(PublicKey::from_base64("AAAA").is_err());
        assert!(PublicKey::from_base64("not base64!").is_err());
        assert!("sha256:ZZ".parse::<Fingerprint>().is_err());
    }

    #[test]
    fn oversized_inputs_are_refused_before_work() {
        let sk = SecretKey::generate();
        let long_ctx = vec![b'c'; MAX_CONTEXT + 1];
        assert!(matches!(
            seal(&sk.public_key(), &long_ctx, b"x"),
            Err(SealError::ContextTooLong { .. })
        ));
        let huge = vec![0u8; MAX_SEALED + 1];
        assert_eq!(
            open(&sk, CTX, &huge),
            Err(SealError::SealedTooLarge {
                len: MAX_SEALED + 1,
                max: MAX_SEALED
            })
        );
        let too_big = vec![0u8; MAX_PLAINTEXT + 1];
        assert_eq!(
            seal(&sk.public_key(), CTX, &too_big),
            Err(SealError::PlaintextTooLarge {
                len: MAX_PLAINTEXT + 1,
                max: MAX_PLAINTEXT
            })
        );
    }
}
