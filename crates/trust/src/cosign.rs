//! Cosign keyed signatures, legacy layout: a "simple signing" payload signed by a pinned key.
//!
//! The registry crate finds signatures (the `sha256-<hex>.sig` tag scheme or OCI 1.1
//! referrers) and hands each one over as a [`SignatureCandidate`]; [`verify`] judges them
//! against the keys the node pins. Fetching is separate from judging: nothing here does I/O.
//!
//! A candidate counts for a key only if all of these hold:
//! 1. it is among the first [`MAX_CANDIDATES`] candidates;
//! 2. the payload is at most [`MAX_PAYLOAD_LEN`] bytes and the base64 signature at most
//!    [`MAX_SIGNATURE_B64_LEN`] characters;
//! 3. the signature (standard base64) verifies over the EXACT payload bytes under one of the
//!    pinned keys (see [`crate::keys`] for the encodings);
//! 4. the payload parses as a simple signing document ([`SimpleSigning::parse`]):
//!    `critical.type` is `cosign container image signature`,
//!    `critical.image.docker-manifest-digest` equals the digest being admitted, and
//!    `critical.identity.docker-reference` names the same repository after normalisation (a
//!    tag or digest in it is allowed). Cosign does not check the repository; Warden does, so
//!    that a signature copied to another repository does not verify there.
//!
//! A candidate that fails any step is recorded as a [`Rejection`] with its reason and never
//! counts; it is never fatal to the others. Each distinct key counts once however many
//! candidates it signed.

use std::collections::BTreeSet;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use warden_reference::{Digest, Reference, Repository};

use crate::keys::{KeyId, PublicKey, SignatureError, SigningKey};

/// The value of `critical.type` in a cosign signature payload.
pub const COSIGN_SIGNATURE_TYPE: &str = "cosign container image signature";
/// The OCI annotation that carries the base64 signature on a signature layer.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Largest payload accepted, in bytes. Cosign payloads are a few hundred bytes.
pub const MAX_PAYLOAD_LEN: usize = 64 * 1024;
/// Largest base64 signature accepted, in characters (a P-256 DER signature is at most 72 bytes).
pub const MAX_SIGNATURE_B64_LEN: usize = 1024;
/// Most candidates judged for one image; the rest are rejected unexamined, so that a hostile
/// registry cannot make a node spend minutes verifying signatures.
pub const MAX_CANDIDATES: usize = 64;

/// One signature found in a registry, as the registry crate hands it over. This type is a
/// stable interface between the crates: plain data, no checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureCandidate {
    /// The exact bytes of the signature layer blob (the simple signing payload). Never
    /// re-serialised: the signature covers these bytes.
    pub payload: Vec<u8>,
    /// The layer's `dev.cosignproject.cosign/signature` annotation, as found.
    pub signature_b64: String,
    /// Where the candidate came from, for humans and audit records, e.g.
    /// `tag sha256-abc….sig layer 2`.
    pub origin: String,
}

/// The outcome of judging a set of candidates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    /// The distinct pinned keys that signed a valid payload for this repository and digest.
    pub verified: BTreeSet<KeyId>,
    /// Every candidate that did not count, with the reason.
    pub rejected: Vec<Rejection>,
}

impl Verification {
    /// Whether at least `threshold` distinct pinned keys verified. A threshold of 0 is never
    /// met: asking for no signature is a policy decision, not a verification outcome.
    pub fn meets(&self, threshold: usize) -> bool {
        threshold > 0 && self.verified.len() >= threshold
    }
}

/// A candidate that did not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The candidate's [`SignatureCandidate::origin`].
    pub origin: String,
    /// The key whose signature verified, when the payload was refused after that.
    pub signed_by: Option<KeyId>,
    pub reason: RejectReason,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.reason)?;
        if let Some(k) = &self.signed_by {
            write!(f, " (signed by {k})")?;
        }
        Ok(())
    }
}

/// Why a candidate did not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error("more than {MAX_CANDIDATES} signature candidates; this one was not examined")]
    TooManyCandidates,
    #[error("payload is {len} bytes, more than the {max} accepted")]
    PayloadTooLarge { len: usize, max: usize },
    #[error("signature annotation is {len} characters, more than the {max} accepted")]
    SignatureTooLarge { len: usize, max: usize },
    #[error("signature annotation is not standard base64: {0}")]
    BadBase64(String),
    #[error("signature is neither ASN.1 DER ECDSA nor a 64-byte Ed25519 signature ({len} bytes)")]
    MalformedSignature { len: usize },
    #[error("no key is pinned; pin the signers' public keys in the node policy")]
    NoKeysPinned,
    #[error("no pinned key verifies the signature over the payload")]
    NoPinnedKeyVerifies,
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error("payload signs digest {found}, not {expected}")]
    DigestMismatch { found: String, expected: String },
    #[error("payload names repository {found}, not {expected}")]
    OtherRepository { found: String, expected: String },
}

/// Why a payload is not a valid cosign simple signing document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload is not a simple signing JSON document: {0}")]
    NotJson(String),
    #[error("payload critical.type is `{0}`, not `{COSIGN_SIGNATURE_TYPE}`")]
    WrongType(String),
    #[error("payload docker-manifest-digest is invalid: {0}")]
    BadDigest(String),
    #[error("payload docker-reference is invalid: {0}")]
    BadReference(String),
}

/// A cosign simple signing document, parsed.
///
/// Parsing is strict, to leave no room for two parsers to read one payload differently:
/// unknown fields are refused at every level of `critical` and at the top; a duplicate key in
/// any of these objects is refused; `optional` must be `null` or an object (its content is not
/// interpreted, and a duplicate key inside it keeps the last value); trailing data is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimpleSigning {
    pub critical: Critical,
    #[serde(default)]
    pub optional: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The `critical` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Critical {
    pub identity: Identity,
    pub image: Image,
    #[serde(rename = "type")]
    pub kind: String,
}

/// `critical.identity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

/// `critical.image`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

/// A payload whose fields have been checked for form: the type is cosign's, the digest and
/// the reference parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPayload {
    pub repository: Repository,
    pub digest: Digest,
    pub optional: Option<serde_json::Map<String, serde_json::Value>>,
}

impl SimpleSigning {
    /// Parses payload bytes (see the type's documentation for what is refused).
    pub fn parse(payload: &[u8]) -> Result<Self, PayloadError> {
        serde_json::from_slice(payload).map_err(|e| PayloadError::NotJson(e.to_string()))
    }

    /// Checks the type and parses the digest and the reference.
    pub fn check(&self) -> Result<ParsedPayload, PayloadError> {
        if self.critical.kind != COSIGN_SIGNATURE_TYPE {
            return Err(PayloadError::WrongType(
                self.critical.kind.escape_debug().to_string(),
            ));
        }
        let digest = Digest::parse(&self.critical.image.docker_manifest_digest)
            .map_err(|e| PayloadError::BadDigest(e.to_string()))?;
        let reference = Reference::parse(&self.critical.identity.docker_reference)
            .map_err(|e| PayloadError::BadReference(e.to_string()))?;
        Ok(ParsedPayload {
            repository: reference.repository().clone(),
            digest,
            optional: self.optional.clone(),
        })
    }
}

/// Parses and checks payload bytes in one step.
pub fn parse_payload(payload: &[u8]) -> Result<ParsedPayload, PayloadError> {
    SimpleSigning::parse(payload)?.check()
}

/// Judges `candidates` for the image `repository@digest` against `pinned_keys`.
/// See the module documentation for the rules.
pub fn verify(
    candidates: &[SignatureCandidate],
    pinned_keys: &[PublicKey],
    repository: &Repository,
    digest: &Digest,
) -> Verification {
    let mut out = Verification::default();
    for (i, c) in candidates.iter().enumerate() {
        if i >= MAX_CANDIDATES {
            out.rejected.push(Rejection {
                origin: c.origin.clone(),
                signed_by: None,
                reason: RejectReason::TooManyCandidates,
            });
            continue;
        }
        match verify_one(c, pinned_keys, repository, digest) {
            Ok(key) => {
                out.verified.insert(key);
            }
            Err((signed_by, reason)) => out.rejected.push(Rejection {
                origin: c.origin.clone(),
                signed_by,
                reason,
            }),
        }
    }
    out
}

fn verify_one(
    c: &SignatureCandidate,
    pinned_keys: &[PublicKey],
    repository: &Repository,
    digest: &Digest,
) -> Result<KeyId, (Option<KeyId>, RejectReason)> {
    let key = check_signature(c, pinned_keys).map_err(|r| (None, r))?;
    let id = key.id();
    let reject = |r: RejectReason| (Some(id), r);
    let parsed = parse_payload(&c.payload).map_err(|e| reject(e.into()))?;
    if parsed.digest != *digest {
        return Err(reject(RejectReason::DigestMismatch {
            found: parsed.digest.to_string(),
            expected: digest.to_string(),
        }));
    }
    if parsed.repository != *repository {
        return Err(reject(RejectReason::OtherRepository {
            found: parsed.repository.to_string(),
            expected: repository.to_string(),
        }));
    }
    Ok(id)
}

/// Finds the pinned key whose signature this is, over the exact payload bytes.
fn check_signature<'k>(
    c: &SignatureCandidate,
    pinned_keys: &'k [PublicKey],
) -> Result<&'k PublicKey, RejectReason> {
    if c.payload.len() > MAX_PAYLOAD_LEN {
        return Err(RejectReason::PayloadTooLarge {
            len: c.payload.len(),
            max: MAX_PAYLOAD_LEN,
        });
    }
    if c.signature_b64.len() > MAX_SIGNATURE_B64_LEN {
        return Err(RejectReason::SignatureTooLarge {
            len: c.signature_b64.len(),
            max: MAX_SIGNATURE_B64_LEN,
        });
    }
    let signature = STANDARD
        .decode(&c.signature_b64)
        .map_err(|e| RejectReason::BadBase64(e.to_string()))?;
    if pinned_keys.is_empty() {
        return Err(RejectReason::NoKeysPinned);
    }
    let mut well_formed = false;
    for key in pinned_keys {
        match key.verify(&c.payload, &signature) {
            Ok(()) => return Ok(key),
            Err(SignatureError::Invalid(_)) => well_formed = true,
            Err(SignatureError::Malformed { .. }) => {}
        }
    }
    if well_formed {
        Err(RejectReason::NoPinnedKeyVerifies)
    } else if crate::keys::parse_p256_der(&signature).is_ok()
        || crate::keys::parse_ed25519(&signature).is_ok()
    {
        // Well formed for an algorithm that no pinned key uses.
        Err(RejectReason::NoPinnedKeyVerifies)
    } else {
        Err(RejectReason::MalformedSignature {
            len: signature.len(),
        })
    }
}

/// The simple signing payload cosign writes for `repository@digest`, byte for byte: compact
/// JSON in Go's field order, Docker Hub named `index.docker.io` as go-containerregistry does,
/// `optional` null when there are no annotations, and `<`, `>`, `&`, U+2028 and U+2029 escaped
/// as Go's `encoding/json` does.
pub fn payload_for(
    repository: &Repository,
    digest: &Digest,
    annotations: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Vec<u8> {
    let registry = match repository.registry() {
        warden_reference::DOCKER_HUB => "index.docker.io",
        other => other,
    };
    let doc = SimpleSigning {
        critical: Critical {
            identity: Identity {
                docker_reference: format!("{registry}/{}", repository.path()),
            },
            image: Image {
                docker_manifest_digest: digest.to_string(),
            },
            kind: COSIGN_SIGNATURE_TYPE.to_owned(),
        },
        optional: annotations.filter(|a| !a.is_empty()).cloned(),
    };
    // Serialising strings and JSON values cannot fail.
    let json = serde_json::to_string(&doc).unwrap_or_default();
    go_html_escape(&json).into_bytes()
}

/// Go's `encoding/json` escapes these characters in strings; outside strings they cannot
/// occur in JSON, so replacing them everywhere is exact.
fn go_html_escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for ch in json.chars() {
        match ch {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// A payload and its signature, ready to be pushed as a cosign signature layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPayload {
    /// The layer blob.
    pub payload: Vec<u8>,
    /// The `dev.cosignproject.cosign/signature` annotation.
    pub signature_b64: String,
}

/// Signs `repository@digest` as cosign does with a key (`cosign sign --key`).
pub fn sign(
    key: &SigningKey,
    repository: &Repository,
    digest: &Digest,
    annotations: Option<&serde_json::Map<String, serde_json::Value>>,
) -> SignedPayload {
    let payload = payload_for(repository, digest, annotations);
    let signature_b64 = STANDARD.encode(key.sign(&payload));
    SignedPayload {
        payload,
        signature_b64,
    }
}

#[cfg(test)]
mod tests;
