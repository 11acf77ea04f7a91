//! Sealed format version 2: every input, result and released log that crosses the server is an
//! authenticated HPKE message that names what it is for.
//!
//! # Wire format
//!
//! ```text
//! header:  0x02 | kind (1 input, 2 result, 3 logs) | sender kind (1 researcher, 2 organization)
//!          | sender length (u16, big-endian) | sender
//! then:    enc (32 bytes) | ciphertext (plaintext length + 16)
//! plaintext: body | binding (compact JSON) | binding length (u32, big-endian)
//! ```
//!
//! - HPKE (RFC 9180) in **auth mode**: the sender's static X25519 key takes part in the key
//!   schedule, so only the holder of that key can produce a message that opens. The sender is a
//!   researcher's certified key (the sender field holds the [`Certificate`]) or an
//!   organization's key (the sender field holds its 32 raw bytes).
//! - `info` is `warden/sealed/v2` followed by the whole header, so the kind and the sender take
//!   part in the key schedule and cannot be changed without the message failing to open; the
//!   AEAD's associated data is empty.
//! - The binding names what the message is for (task nonce, image and digest, function, target,
//!   requester, reply key; or for a result, the run, the producing organization and the digest).
//!   It is inside the ciphertext: the server can neither read nor edit it. Receivers check it
//!   against what they asked for or what they are about to do.

use std::collections::{BTreeMap, BTreeSet};

use hpke::{Deserializable as _, OpModeR, OpModeS, Serializable as _};
use rand_core::{OsRng, RngCore as _};
use serde::{Deserialize, Serialize};
use warden_trust::KeyId;
use zeroize::Zeroizing;

use crate::cert::{CertError, Certificate};
use crate::{
    Aead, ENC_LEN, Fingerprint, Kdf, Kem, MAX_PLAINTEXT, OneShotRng, PublicKey, SealError,
    SecretKey, TAG_LEN,
};

/// The version byte of this format.
pub const VERSION: u8 = 2;
/// HPKE `info` of every version 2 message.
pub const INFO: &[u8] = b"warden/sealed/v2";
/// Longest binding accepted.
pub const MAX_BINDING: usize = 16 * 1024;
/// Largest sealed message [`open_input`] and [`open_result`] accept.
pub const MAX_SEALED: usize = MAX_PLAINTEXT + MAX_BINDING + 16 * 1024;
/// Nonces are 32 to 128 characters of `0-9 a-z A-Z _ -`.
pub const MIN_NONCE: usize = 32;
pub const MAX_NONCE: usize = 128;

const SENDER_RESEARCHER: u8 = 1;
const SENDER_ORGANIZATION: u8 = 2;

/// What a sealed message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Input = 1,
    Result = 2,
    Logs = 3,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Input),
            2 => Some(Kind::Result),
            3 => Some(Kind::Logs),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Input => "an input",
            Kind::Result => "a result",
            Kind::Logs => "logs",
        }
    }
}

/// Who sealed a message, as its header says (authenticated by opening, proven by
/// [`OpenedInput::prove`] or by the receiver's own pin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// A researcher's key with the certificate that vouches for it.
    Researcher(Box<Certificate>),
    /// An organization's X25519 key (a node sealing a result, logs or a subtask's input).
    Organization(PublicKey),
}

impl Sender {
    /// The X25519 key the message is authenticated with.
    pub fn key(&self) -> &PublicKey {
        match self {
            Sender::Researcher(c) => c.key(),
            Sender::Organization(k) => k,
        }
    }
}

/// The requester an input is sealed on behalf of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requester {
    pub organization: String,
    pub user: String,
}

/// For a subtask's input: the organization whose node created it, and the run that asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Via {
    pub organization: String,
    pub run_id: i64,
    pub task_id: i64,
}

/// What an input is for. The node refuses the run when any of it does not match the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputBinding {
    /// Chosen by the sender for this task; the server echoes it on the task.
    pub nonce: String,
    /// Unix seconds when it was sealed.
    pub issued_at: i64,
    /// The collaboration's name.
    pub collaboration: String,
    /// The normalised image reference the sender asked for.
    pub image: String,
    /// The manifest digest (`sha256:<hex>`) the sender resolved for it.
    pub digest: String,
    /// The function the input calls (the input's own `function`).
    pub function: String,
    /// The name of the organization it is sealed for.
    pub target: String,
    /// On whose behalf it runs.
    pub requester: Requester,
    /// The key results are sealed to (standard base64): always the sender's key.
    pub reply_key: String,
    /// Set for a subtask's input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
}

/// What a result (or released logs) is. The receiver checks it against the run it asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultBinding {
    /// The nonce of the input's binding.
    pub nonce: String,
    /// The server's id of the run.
    pub run_id: i64,
    /// The name of the organization whose node produced it.
    pub organization: String,
    /// The digest of the image that ran.
    pub digest: String,
}

/// The keys a receiver pins: organizations' encryption keys and certification keys by
/// organization name, and revoked certificate serials or researcher key fingerprints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys {
    pub encryption: BTreeMap<String, Fingerprint>,
    pub certifiers: BTreeMap<String, KeyId>,
    pub revoked: BTreeSet<String>,
}

impl TrustedKeys {
    /// The organization whose pinned encryption key is `key`.
    pub fn organization_of(&self, key: &PublicKey) -> Option<&str> {
        let fp = key.fingerprint();
        self.encryption
            .iter()
            .find(|(_, p)| **p == fp)
            .map(|(n, _)| n.as_str())
    }
}

/// Who an input proves it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proven {
    /// A researcher certified by a pinned certification key of their organization.
    Researcher { organization: String, user: String },
    /// The node of an organization whose pinned key sealed it, on behalf of the requester its
    /// binding names (a subtask).
    Node {
        organization: String,
        requester: Requester,
    },
}

impl Proven {
    /// The requester a policy rule tests.
    pub fn requester(&self) -> Requester {
        match self {
            Proven::Researcher { organization, user } => Requester {
                organization: organization.clone(),
                user: user.clone(),
            },
            Proven::Node { requester, .. } => requester.clone(),
        }
    }
}

/// An opened input: authenticated by the sender's key, not yet proven (see
/// [`OpenedInput::prove`]).
#[derive(Debug)]
pub struct OpenedInput {
    pub sender: Sender,
    pub binding: InputBinding,
    pub body: Vec<u8>,
}

/// Whether `nonce` has the form of a task nonce.
pub fn valid_nonce(nonce: &str) -> bool {
    (MIN_NONCE..=MAX_NONCE).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A fresh random task nonce: 32 lower-case hex characters.
pub fn new_nonce() -> String {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn envelope_err(why: impl Into<String>) -> SealError {
    SealError::Envelope(why.into())
}

/// HPKE `info` of a message: [`INFO`] followed by its header. The header enters the key
/// schedule rather than the AEAD's associated data: the binding is the same (another header,
/// another key), and RustCrypto's ChaCha20-Poly1305 is about 18% slower on a large message when
/// associated data comes first.
fn info(header: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(INFO.len() + header.len());
    out.extend_from_slice(INFO);
    out.extend_from_slice(header);
    out
}

fn header(kind: Kind, sender: &Sender) -> Result<Vec<u8>, SealError> {
    let (sender_kind, bytes) = match sender {
        Sender::Researcher(c) => (SENDER_RESEARCHER, c.to_json()),
        Sender::Organization(k) => (SENDER_ORGANIZATION, k.as_bytes().to_vec()),
    };
    let len = u16::try_from(bytes.len()).map_err(|_| envelope_err("the sender is too large"))?;
    let mut out = Vec::with_capacity(5 + bytes.len());
    out.extend_from_slice(&[VERSION, kind as u8, sender_kind]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&bytes);
    Ok(out)
}

/// The parts of a version 2 message, before any cryptography.
struct Parsed<'a> {
    kind: Kind,
    sender: Sender,
    header: &'a [u8],
    enc: &'a [u8],
    ciphertext: &'a [u8],
}

/// Reads a message's kind and sender without opening it.
pub fn parse_header(sealed: &[u8]) -> Result<(Kind, Sender), SealError> {
    parse(sealed).map(|p| (p.kind, p.sender))
}

fn parse(sealed: &[u8]) -> Result<Parsed<'_>, SealError> {
    if sealed.len() > MAX_SEALED {
        return Err(SealError::SealedTooLarge {
            len: sealed.len(),
            max: MAX_SEALED,
        });
    }
    match sealed.first() {
        None => {
            return Err(SealError::Truncated { len: 0, min: 5 });
        }
        Some(&VERSION) => {}
        Some(&v) => return Err(SealError::NotVersion2(v)),
    }
    if sealed.len() < 5 {
        return Err(SealError::Truncated {
            len: sealed.len(),
            min: 5,
        });
    }
    let kind = Kind::from_byte(sealed[1])
        .ok_or_else(|| envelope_err(format!("unknown message kind {}", sealed[1])))?;
    let len = usize::from(u16::from_be_bytes([sealed[3], sealed[4]]));
    let header_len = 5 + len;
    let min = header_len + ENC_LEN + TAG_LEN + 4;
    if sealed.len() < min {
        return Err(SealError::Truncated {
            len: sealed.len(),
            min,
        });
    }
    let sender_bytes = &sealed[5..header_len];
    let sender = match sealed[2] {
        SENDER_RESEARCHER => Sender::Researcher(Box::new(
            Certificate::parse(sender_bytes).map_err(|e| envelope_err(e.to_string()))?,
        )),
        SENDER_ORGANIZATION => {
            let raw: [u8; 32] = sender_bytes
                .try_into()
                .map_err(|_| envelope_err("an organization sender is 32 bytes"))?;
            Sender::Organization(PublicKey::from_bytes(raw))
        }
        other => return Err(envelope_err(format!("unknown sender kind {other}"))),
    };
    let (header, rest) = sealed.split_at(header_len);
    let (enc, ciphertext) = rest.split_at(ENC_LEN);
    Ok(Parsed {
        kind,
        sender,
        header,
        enc,
        ciphertext,
    })
}

fn seal_message<B: Serialize>(
    sender_secret: &SecretKey,
    sender: &Sender,
    kind: Kind,
    recipient: &PublicKey,
    binding: &B,
    body: &[u8],
) -> Result<Vec<u8>, SealError> {
    if body.len() > MAX_PLAINTEXT {
        return Err(SealError::PlaintextTooLarge {
            len: body.len(),
            max: MAX_PLAINTEXT,
        });
    }
    if sender_secret.public_key() != *sender.key() {
        return Err(SealError::SealFailed(
            "the sender's secret key does not match the sender's public key".into(),
        ));
    }
    let binding = serde_json::to_vec(binding)
        .map_err(|e| SealError::SealFailed(format!("cannot encode the binding: {e}")))?;
    if binding.len() > MAX_BINDING {
        return Err(envelope_err("the binding is too large"));
    }
    let header = header(kind, sender)?;
    let mut ikm = Zeroizing::new([0u8; 32]);
    OsRng
        .try_fill_bytes(ikm.as_mut())
        .map_err(|e| SealError::Random(e.to_string()))?;
    let mut out =
        Vec::with_capacity(header.len() + ENC_LEN + 4 + binding.len() + body.len() + TAG_LEN);
    out.extend_from_slice(&header);
    out.extend_from_slice(&[0u8; ENC_LEN]);
    let start = out.len();
    // The binding is at most MAX_BINDING bytes: its length fits in a u32.
    out.extend_from_slice(body);
    out.extend_from_slice(&binding);
    out.extend_from_slice(&(binding.len() as u32).to_be_bytes());
    let (enc, tag) = auth_seal_in_place(
        sender_secret,
        recipient,
        &info(&header),
        &[],
        &mut out[start..],
        &ikm,
    )?;
    out[header.len()..start].copy_from_slice(&enc);
    out.extend_from_slice(&tag);
    Ok(out)
}

/// HPKE auth mode, single shot, with the ephemeral key derived from `ikm` (RFC 9180
/// `DeriveKeyPair`, as the RFC's test vectors do): encrypts `buf` in place and returns `enc` and
/// the tag. Never reuse an `ikm`; Warden's messages go through [`seal_input`] and
/// [`seal_result`].
#[doc(hidden)]
pub fn auth_seal_in_place(
    sender_secret: &SecretKey,
    recipient: &PublicKey,
    info: &[u8],
    aad: &[u8],
    buf: &mut [u8],
    ikm: &[u8; 32],
) -> Result<([u8; ENC_LEN], [u8; TAG_LEN]), SealError> {
    let mut rng = OneShotRng::new(ikm);
    let pk = recipient.hpke_key()?;
    let sender_pk = sender_secret.public_key().hpke_key()?;
    let mode = OpModeS::<Kem>::Auth((sender_secret.hpke_key(), sender_pk));
    let (enc, mut ctx) = hpke::setup_sender::<Aead, Kdf, Kem, _>(&mode, &pk, info, &mut rng)
        .map_err(|e| SealError::SealFailed(e.to_string()))?;
    if rng.overdrawn {
        return Err(SealError::SealFailed(
            "the HPKE library asked for more randomness than one ephemeral key".into(),
        ));
    }
    let tag = ctx
        .seal_in_place_detached(buf, aad)
        .map_err(|e| SealError::SealFailed(e.to_string()))?;
    let mut enc_out = [0u8; ENC_LEN];
    enc_out.copy_from_slice(&enc.to_bytes());
    let mut tag_out = [0u8; TAG_LEN];
    tag_out.copy_from_slice(&tag.to_bytes());
    Ok((enc_out, tag_out))
}

/// HPKE auth mode, single shot: opens `ciphertext` (tag at the end) from `sender`.
#[doc(hidden)]
pub fn auth_open(
    recipient: &SecretKey,
    sender: &PublicKey,
    info: &[u8],
    aad: &[u8],
    enc: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, SealError> {
    if ciphertext.len() < TAG_LEN {
        return Err(SealError::OpenFailed);
    }
    let enc =
        <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| SealError::OpenFailed)?;
    let (ciphertext, tag) = ciphertext.split_at(ciphertext.len() - TAG_LEN);
    let tag = hpke::aead::AeadTag::<Aead>::from_bytes(tag).map_err(|_| SealError::OpenFailed)?;
    let sender_pk = sender.hpke_key().map_err(|_| SealError::OpenFailed)?;
    let mode = OpModeR::<Kem>::Auth(sender_pk);
    let mut ctx = hpke::setup_receiver::<Aead, Kdf, Kem>(&mode, &recipient.hpke_key(), &enc, info)
        .map_err(|_| SealError::OpenFailed)?;
    let mut plain = ciphertext.to_vec();
    ctx.open_in_place_detached(&mut plain, aad, &tag)
        .map_err(|_| SealError::OpenFailed)?;
    Ok(plain)
}

fn open_message<B: serde::de::DeserializeOwned>(
    recipient: &SecretKey,
    parsed: &Parsed<'_>,
) -> Result<(B, Vec<u8>), SealError> {
    let mut plain = auth_open(
        recipient,
        parsed.sender.key(),
        &info(parsed.header),
        &[],
        parsed.enc,
        parsed.ciphertext,
    )?;
    // Authenticated from here on: a malformed binding is the sender's own doing.
    let bad = |why: String| SealError::Binding(why);
    let (rest, len) = plain
        .split_last_chunk::<4>()
        .ok_or_else(|| bad("no binding".into()))?;
    let len = u32::from_be_bytes(*len) as usize;
    if len > MAX_BINDING || len > rest.len() {
        return Err(bad(format!("a binding of {len} bytes")));
    }
    let body_len = rest.len() - len;
    let binding: B = serde_json::from_slice(&rest[body_len..]).map_err(|e| bad(e.to_string()))?;
    // The body comes first: it is returned in place, without a copy.
    plain.truncate(body_len);
    Ok((binding, plain))
}

/// Seals `input` for `recipient` as `sender` (whose secret key is `sender_secret`), bound to
/// `binding`. The binding's reply key must be the sender's key and its nonce well-formed.
pub fn seal_input(
    sender_secret: &SecretKey,
    sender: &Sender,
    recipient: &PublicKey,
    binding: &InputBinding,
    input: &[u8],
) -> Result<Vec<u8>, SealError> {
    if binding.reply_key != sender.key().to_base64() {
        return Err(SealError::SealFailed(
            "the binding's reply key must be the sender's key".into(),
        ));
    }
    if !valid_nonce(&binding.nonce) {
        return Err(SealError::SealFailed(format!(
            "the nonce must be {MIN_NONCE} to {MAX_NONCE} characters of 0-9 a-z A-Z _ -"
        )));
    }
    seal_message(
        sender_secret,
        sender,
        Kind::Input,
        recipient,
        binding,
        input,
    )
}

/// Opens an input sealed for `recipient`'s key. Who sent it is authenticated (only the holder
/// of the sender key could seal it) but not yet proven: call [`OpenedInput::prove`].
pub fn open_input(recipient: &SecretKey, sealed: &[u8]) -> Result<OpenedInput, SealError> {
    let parsed = parse(sealed)?;
    if parsed.kind != Kind::Input {
        return Err(SealError::WrongKind {
            expected: Kind::Input.name(),
            got: parsed.kind.name(),
        });
    }
    let (binding, body) = open_message::<InputBinding>(recipient, &parsed)?;
    Ok(OpenedInput {
        sender: parsed.sender,
        binding,
        body,
    })
}

impl OpenedInput {
    /// Proves who sent the input with the receiver's own pins, at `now` (Unix seconds): a
    /// researcher's certificate must verify against the pinned certification key of the
    /// organization it names and match the binding's requester; an organization's key must be
    /// pinned and be the one the binding's `via` names. The reply key must be the sender's.
    pub fn prove(&self, trusted: &TrustedKeys, now: i64) -> Result<Proven, SealError> {
        let b = &self.binding;
        if b.reply_key != self.sender.key().to_base64() {
            return Err(SealError::Unproven(
                "the input asks for results sealed to a key other than its sender's".into(),
            ));
        }
        match &self.sender {
            Sender::Researcher(cert) => {
                let s = cert
                    .verify(&trusted.certifiers, &trusted.revoked, now)
                    .map_err(|e: CertError| SealError::Unproven(e.to_string()))?;
                if b.via.is_some() {
                    return Err(SealError::Unproven(
                        "a researcher's input claims to come from a node".into(),
                    ));
                }
                if b.requester.organization != s.organization || b.requester.user != s.user {
                    return Err(SealError::Unproven(format!(
                        "the input names requester `{}` of `{}`, but its certificate is for `{}` of `{}`",
                        b.requester.user.escape_debug(),
                        b.requester.organization.escape_debug(),
                        s.user,
                        s.organization
                    )));
                }
                Ok(Proven::Researcher {
                    organization: s.organization.clone(),
                    user: s.user.clone(),
                })
            }
            Sender::Organization(key) => {
                let Some(name) = trusted.organization_of(key) else {
                    return Err(SealError::Unproven(format!(
                        "the input is sealed by organization key {}, which is not pinned here",
                        key.fingerprint()
                    )));
                };
                match &b.via {
                    Some(v) if v.organization == name => Ok(Proven::Node {
                        organization: name.to_owned(),
                        requester: b.requester.clone(),
                    }),
                    _ => Err(SealError::Unproven(format!(
                        "the input is sealed by the key of `{name}` but does not say it was \
                         created by that organization's node"
                    ))),
                }
            }
        }
    }
}

/// Seals a result (or released logs, with `kind` [`Kind::Logs`]) of a run as the producing
/// organization (`sender_secret`), to the input's reply key.
pub fn seal_result(
    sender_secret: &SecretKey,
    kind: Kind,
    reply_key: &PublicKey,
    binding: &ResultBinding,
    body: &[u8],
) -> Result<Vec<u8>, SealError> {
    if kind == Kind::Input {
        return Err(SealError::SealFailed(
            "seal_result seals results and logs".into(),
        ));
    }
    let sender = Sender::Organization(sender_secret.public_key());
    seal_message(sender_secret, &sender, kind, reply_key, binding, body)
}

/// Opens a result (or logs) sealed for `recipient` by the organization whose key is
/// `producer` (the receiver's own pin for the organization that ran it). A message of another
/// kind, or sealed by any other key, is refused.
pub fn open_result(
    recipient: &SecretKey,
    producer: &PublicKey,
    kind: Kind,
    sealed: &[u8],
) -> Result<(ResultBinding, Vec<u8>), SealError> {
    let parsed = parse(sealed)?;
    if parsed.kind != kind {
        return Err(SealError::WrongKind {
            expected: kind.name(),
            got: parsed.kind.name(),
        });
    }
    match &parsed.sender {
        Sender::Organization(k) if k == producer => {}
        Sender::Organization(k) => {
            return Err(SealError::WrongSender {
                expected: producer.fingerprint().to_string(),
                got: k.fingerprint().to_string(),
            });
        }
        Sender::Researcher(c) => {
            return Err(SealError::WrongSender {
                expected: producer.fingerprint().to_string(),
                got: format!("a researcher's key ({})", c.key().fingerprint()),
            });
        }
    }
    open_message::<ResultBinding>(recipient, &parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_trust::{KeyAlgorithm, SigningKey};

    struct Fixture {
        ca: SigningKey,
        researcher: SecretKey,
        cert: Certificate,
        node_a: SecretKey,
        node_b: SecretKey,
        trusted: TrustedKeys,
    }

    fn fixture() -> Fixture {
        let ca = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let researcher = SecretKey::generate();
        let cert = Certificate::issue(
            &ca,
            "hospital-a",
            "rita",
            &researcher.public_key(),
            1_000,
            86_400,
        )
        .unwrap();
        let node_a = SecretKey::generate();
        let node_b = SecretKey::generate();
        let trusted = TrustedKeys {
            encryption: BTreeMap::from([
                ("hospital-a".to_owned(), node_a.public_key().fingerprint()),
                ("hospital-b".to_owned(), node_b.public_key().fingerprint()),
            ]),
            certifiers: BTreeMap::from([("hospital-a".to_owned(), ca.public_key().id())]),
            revoked: BTreeSet::new(),
        };
        Fixture {
            ca,
            researcher,
            cert,
            node_a,
            node_b,
            trusted,
        }
    }

    fn binding(f: &Fixture) -> InputBinding {
        InputBinding {
            nonce: new_nonce(),
            issued_at: 2_000,
            collaboration: "cardio".into(),
            image: "registry.example.org/warden/mean:1.0".into(),
            digest: format!("sha256:{}", "a".repeat(64)),
            function: "partial_mean".into(),
            target: "hospital-b".into(),
            requester: Requester {
                organization: "hospital-a".into(),
                user: "rita".into(),
            },
            reply_key: f.researcher.public_key().to_base64(),
            via: None,
        }
    }

    #[test]
    fn an_input_opens_at_its_target_and_proves_its_researcher() {
        let f = fixture();
        let b = binding(&f);
        let sender = Sender::Researcher(Box::new(f.cert.clone()));
        let sealed = seal_input(&f.researcher, &sender, &f.node_b.public_key(), &b, b"{}").unwrap();
        assert_eq!(sealed[0], VERSION);
        let opened = open_input(&f.node_b, &sealed).unwrap();
        assert_eq!(opened.binding, b);
        assert_eq!(&opened.body[..], b"{}");
        assert_eq!(
            opened.prove(&f.trusted, 2_000).unwrap(),
            Proven::Researcher {
                organization: "hospital-a".into(),
                user: "rita".into()
            }
        );
        // Another organization's key does not open it.
        assert_eq!(
            open_input(&f.node_a, &sealed).unwrap_err(),
            SealError::OpenFailed
        );
    }

    #[test]
    fn every_altered_byte_and_every_truncation_fails() {
        let f = fixture();
        let b = binding(&f);
        let sender = Sender::Researcher(Box::new(f.cert.clone()));
        let sealed = seal_input(&f.researcher, &sender, &f.node_b.public_key(), &b, b"x").unwrap();
        // Every byte position: the header is AAD, the rest is HPKE.
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert!(open_input(&f.node_b, &t).is_err(), "byte {i}");
        }
        for n in 0..sealed.len() {
            assert!(open_input(&f.node_b, &sealed[..n]).is_err(), "length {n}");
        }
    }

    #[test]
    fn a_forged_sender_does_not_open_or_prove() {
        let f = fixture();
        let b = binding(&f);
        // Mallory holds the server's copy of every public key and seals with her own key but
        // Rita's certificate in the header: the auth-mode key schedule fails.
        let mallory = SecretKey::generate();
        let forged_header = Sender::Researcher(Box::new(f.cert.clone()));
        assert!(
            seal_input(&mallory, &forged_header, &f.node_b.public_key(), &b, b"{}").is_err(),
            "the library refuses a mismatched key pair"
        );
        // With a certificate of her own, signed by a key nobody pins, it opens but is unproven.
        let rogue_ca = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let rogue = Certificate::issue(
            &rogue_ca,
            "hospital-a",
            "rita",
            &mallory.public_key(),
            1_000,
            86_400,
        )
        .unwrap();
        let mut mb = b.clone();
        mb.reply_key = mallory.public_key().to_base64();
        let sealed = seal_input(
            &mallory,
            &Sender::Researcher(Box::new(rogue)),
            &f.node_b.public_key(),
            &mb,
            b"{}",
        )
        .unwrap();
        let opened = open_input(&f.node_b, &sealed).unwrap();
        let e = opened.prove(&f.trusted, 2_000).unwrap_err();
        assert!(e.to_string().contains("certification key"), "{e}");
        // A genuine certificate whose binding names another requester is refused.
        let mut other = b.clone();
        other.requester.user = "root".into();
        let sealed = seal_input(
            &f.researcher,
            &Sender::Researcher(Box::new(f.cert.clone())),
            &f.node_b.public_key(),
            &other,
            b"{}",
        )
        .unwrap();
        let e = open_input(&f.node_b, &sealed)
            .unwrap()
            .prove(&f.trusted, 2_000)
            .unwrap_err();
        assert!(e.to_string().contains("certificate is for `rita`"), "{e}");
    }

    #[test]
    fn a_node_seals_a_subtask_input_that_proves_its_organization() {
        let f = fixture();
        let mut b = binding(&f);
        b.reply_key = f.node_a.public_key().to_base64();
        b.via = Some(Via {
            organization: "hospital-a".into(),
            run_id: 5,
            task_id: 4,
        });
        let sender = Sender::Organization(f.node_a.public_key());
        let sealed = seal_input(&f.node_a, &sender, &f.node_b.public_key(), &b, b"{}").unwrap();
        let opened = open_input(&f.node_b, &sealed).unwrap();
        assert_eq!(
            opened.prove(&f.trusted, 0).unwrap(),
            Proven::Node {
                organization: "hospital-a".into(),
                requester: b.requester.clone()
            }
        );
        // Claiming to come from hospital-b's node with hospital-a's key is refused.
        let mut lie = b.clone();
        lie.via.as_mut().unwrap().organization = "hospital-b".into();
        let sealed = seal_input(&f.node_a, &sender, &f.node_b.public_key(), &lie, b"{}").unwrap();
        assert!(
            open_input(&f.node_b, &sealed)
                .unwrap()
                .prove(&f.trusted, 0)
                .is_err()
        );
        // An unpinned organization key is refused.
        let stranger = SecretKey::generate();
        let mut sb = b.clone();
        sb.reply_key = stranger.public_key().to_base64();
        let sealed = seal_input(
            &stranger,
            &Sender::Organization(stranger.public_key()),
            &f.node_b.public_key(),
            &sb,
            b"{}",
        )
        .unwrap();
        let e = open_input(&f.node_b, &sealed)
            .unwrap()
            .prove(&f.trusted, 0)
            .unwrap_err();
        assert!(e.to_string().contains("not pinned"), "{e}");
    }

    #[test]
    fn a_result_opens_only_from_its_producer() {
        let f = fixture();
        let rb = ResultBinding {
            nonce: new_nonce(),
            run_id: 9,
            organization: "hospital-b".into(),
            digest: format!("sha256:{}", "b".repeat(64)),
        };
        let reply = f.researcher.public_key();
        let sealed = seal_result(&f.node_b, Kind::Result, &reply, &rb, b"42").unwrap();
        let (got, body) =
            open_result(&f.researcher, &f.node_b.public_key(), Kind::Result, &sealed).unwrap();
        assert_eq!((got, &body[..]), (rb.clone(), &b"42"[..]));
        // Anyone with the researcher's public key (the server has it) can seal to it, but not
        // as hospital-b: another producer key is refused before opening, and a header that
        // claims hospital-b's key does not open.
        let mallory = SecretKey::generate();
        let forged = seal_result(&mallory, Kind::Result, &reply, &rb, b"666").unwrap();
        assert!(matches!(
            open_result(&f.researcher, &f.node_b.public_key(), Kind::Result, &forged),
            Err(SealError::WrongSender { .. })
        ));
        let mut relabelled = forged.clone();
        relabelled[5..37].copy_from_slice(f.node_b.public_key().as_bytes());
        assert_eq!(
            open_result(
                &f.researcher,
                &f.node_b.public_key(),
                Kind::Result,
                &relabelled
            ),
            Err(SealError::OpenFailed)
        );
        // Logs are not a result.
        let logs = seal_result(&f.node_b, Kind::Logs, &reply, &rb, b"log").unwrap();
        assert!(matches!(
            open_result(&f.researcher, &f.node_b.public_key(), Kind::Result, &logs),
            Err(SealError::WrongKind { .. })
        ));
        assert!(open_result(&f.researcher, &f.node_b.public_key(), Kind::Logs, &logs).is_ok());
        // An input is not a result either.
        assert!(seal_result(&f.node_b, Kind::Input, &reply, &rb, b"").is_err());
    }

    #[test]
    fn bindings_refuse_unknown_and_duplicate_fields() {
        assert!(
            serde_json::from_str::<ResultBinding>(
                r#"{"nonce":"n","run_id":1,"organization":"a","digest":"d","x":1}"#
            )
            .is_err()
        );
        assert!(
            serde_json::from_str::<ResultBinding>(
                r#"{"nonce":"n","run_id":1,"run_id":2,"organization":"a","digest":"d"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn nonces_have_one_form() {
        assert!(valid_nonce(&new_nonce()));
        assert!(!valid_nonce("short"));
        assert!(!valid_nonce(&"a".repeat(129)));
        assert!(!valid_nonce(&format!("{}\n", "a".repeat(40))));
        let _ = fixture().ca;
    }
}
