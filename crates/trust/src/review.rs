//! Review attestations of the algorithm store: a reviewer's signed decision about one image
//! digest (docs/store.md, "Review attestation").
//!
//! A review is a DSSE envelope (payload type [`IN_TOTO_PAYLOAD_TYPE`], exactly one signature)
//! holding an in-toto Statement v1 with exactly one subject, the image repository (normalised by
//! `warden-reference`) and `{"sha256": <64 lowercase hex>}`, and the predicate type
//! [`REVIEW_PREDICATE_V1`]:
//!
//! ```json
//! {"_type": "https://in-toto.io/Statement/v1",
//!  "subject": [{"name": "registry.example/team/mean", "digest": {"sha256": "9f86…"}}],
//!  "predicateType": "https://warden.dev/review/v1",
//!  "predicate": {"store": "community", "algorithm": "mean", "version": "1.2.0",
//!                "decision": "approve", "reviewer": "alice", "organization": "org-a",
//!                "sourceRepository": "https://git.example/team/mean",
//!                "sourceCommit": "<40 or 64 lowercase hex>",
//!                "functions": ["central_mean", "partial_mean"],
//!                "time": "2026-12-02T05:00:00Z", "comment": "optional"}}
//! ```
//!
//! Parsing is strict, unlike [`crate::dsse::Statement`]: unknown or duplicate fields are refused
//! at every level, sizes are capped, every string is bounded and free of control characters.
//! Verification ([`verify_review`]) checks the one signature under the pinned key its `keyid`
//! names (`sha256:<hex>` of the key's DER SubjectPublicKeyInfo, which [`Review::sign`] writes;
//! unlike plain DSSE the keyid is required and must be right) and returns the review with that
//! key's ID. A malformed or foreign envelope is an error value, never a panic.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_reference::{Algorithm, Digest, Repository};

use crate::dsse::{DsseError, Envelope, IN_TOTO_PAYLOAD_TYPE, STATEMENT_V1};
use crate::keys::{KeyId, PublicKey, SigningKey};

/// The predicate type of Warden review attestations.
pub const REVIEW_PREDICATE_V1: &str = "https://warden.dev/review/v1";
/// Largest review envelope accepted, in bytes.
pub const MAX_REVIEW_ENVELOPE_LEN: usize = 64 * 1024;
/// Longest name accepted (store, algorithm, version, reviewer, organization, function), in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Longest source repository URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// Longest comment accepted, in bytes.
pub const MAX_COMMENT_LEN: usize = 4096;
/// Most functions a review may name.
pub const MAX_FUNCTIONS: usize = 64;

/// What a reviewer decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Reject,
    Revoke,
}

impl Decision {
    /// The wire name: `approve`, `reject` or `revoke`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
            Decision::Revoke => "revoke",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Decision {
    type Err = ReviewError;
    fn from_str(s: &str) -> Result<Self, ReviewError> {
        match s {
            "approve" => Ok(Decision::Approve),
            "reject" => Ok(Decision::Reject),
            "revoke" => Ok(Decision::Revoke),
            _ => Err(ReviewError::Invalid {
                field: "decision",
                why: "must be approve, reject or revoke".into(),
            }),
        }
    }
}

/// Why a review was refused (to build, sign, parse or verify).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("review envelope is {len} bytes, more than the {max} accepted")]
    TooLarge { len: usize, max: usize },
    #[error("review envelope refused: {0}")]
    Envelope(#[from] DsseError),
    #[error("review envelope has {0} signatures; a review carries exactly one, the reviewer's")]
    SignatureCount(usize),
    #[error("review payload type is `{0}`, not `{IN_TOTO_PAYLOAD_TYPE}`")]
    WrongPayloadType(String),
    #[error("review payload is not a Warden review statement: {0}")]
    NotReview(String),
    #[error("statement _type is `{0}`, not `{STATEMENT_V1}`")]
    WrongStatementType(String),
    #[error("predicate type is `{0}`, not `{REVIEW_PREDICATE_V1}`")]
    WrongPredicateType(String),
    #[error("a review has exactly one subject, this one has {0}")]
    SubjectCount(usize),
    #[error(
        "review signature keyid `{0}` is not a key ID; a review names its signer as sha256:<64 hex> of the key's DER SubjectPublicKeyInfo"
    )]
    BadKeyId(String),
    #[error("review is signed by key {0}, which is not pinned; pin the reviewer's public key")]
    KeyNotPinned(KeyId),
    #[error(
        "review signature does not verify under the pinned key {0} it names: the envelope was altered or forged"
    )]
    BadSignature(KeyId),
    #[error("review field `{field}` is invalid: {why}")]
    Invalid { field: &'static str, why: String },
}

fn invalid(field: &'static str, why: impl Into<String>) -> ReviewError {
    ReviewError::Invalid {
        field,
        why: why.into(),
    }
}

/// The review predicate: what was reviewed, by whom, and the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewPredicate {
    /// The store's name (its `[store] name`).
    pub store: String,
    /// The algorithm's name in the store.
    pub algorithm: String,
    /// The version's name.
    pub version: String,
    pub decision: Decision,
    /// The reviewer's account name in the store.
    pub reviewer: String,
    /// The reviewer's organization (a claim; a node maps keys to organizations itself).
    pub organization: String,
    /// The source repository URL the version was built from.
    pub source_repository: String,
    /// The source commit: 40 or 64 lowercase hex digits.
    pub source_commit: String,
    /// The functions reviewed (distinct names); at least one for an approval.
    pub functions: Vec<String>,
    /// When the decision was made (UTC, whole seconds are kept as given).
    pub time: OffsetDateTime,
    /// An optional comment (at most [`MAX_COMMENT_LEN`] bytes).
    pub comment: Option<String>,
    /// Set by `warden review approve --rebuild`: the reviewer rebuilt `source_commit` at this
    /// path and got exactly the subject digest. Absent from reviews made without it, whose
    /// payload is unchanged (`rebuilt` is optional on the wire).
    pub rebuilt: Option<Rebuilt>,
}

/// What a reviewer's own rebuild showed (the `rebuilt` predicate field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rebuilt {
    /// The algorithm's directory in the source repository, as built.
    pub path: String,
}

/// A review: the image it is about and the predicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// The normalised image repository (the statement's subject name).
    pub repository: Repository,
    /// The manifest digest (sha256 only).
    pub digest: Digest,
    pub predicate: ReviewPredicate,
}

/// A review whose signature verified against a pinned key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReview {
    pub review: Review,
    /// The pinned key that signed it (sha256 of its DER SubjectPublicKeyInfo).
    pub key_id: KeyId,
    /// The exact statement bytes that were signed.
    pub payload: Vec<u8>,
}

// Wire forms: strict, every level.

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireStatement {
    #[serde(rename = "_type")]
    kind: String,
    subject: Vec<WireSubject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
    predicate: WirePredicate,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireSubject {
    name: String,
    digest: WireDigest,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireDigest {
    sha256: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WirePredicate {
    store: String,
    algorithm: String,
    version: String,
    decision: Decision,
    reviewer: String,
    organization: String,
    source_repository: String,
    source_commit: String,
    functions: Vec<String>,
    time: String,
    /// Absent or a string; `null` is refused.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_string"
    )]
    comment: Option<String>,
    /// Absent or an object; `null` is refused.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_rebuilt"
    )]
    rebuilt: Option<Rebuilt>,
}

fn present_rebuilt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Rebuilt>, D::Error> {
    Rebuilt::deserialize(d).map(Some)
}

fn present_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

fn check_name(field: &'static str, s: &str) -> Result<(), ReviewError> {
    if s.is_empty() || s.len() > MAX_NAME_LEN {
        return Err(invalid(field, format!("must be 1 to {MAX_NAME_LEN} bytes")));
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(
            field,
            "must not contain spaces or control characters",
        ));
    }
    Ok(())
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Formats a time as RFC 3339 in UTC (`…Z`).
fn format_time(t: OffsetDateTime) -> Result<String, ReviewError> {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|e| invalid("time", e.to_string()))
}

fn parse_time(s: &str) -> Result<OffsetDateTime, ReviewError> {
    if s.len() > 64 || !s.ends_with('Z') {
        return Err(invalid(
            "time",
            "must be RFC 3339 in UTC, e.g. 2026-12-02T05:00:00Z",
        ));
    }
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| invalid("time", format!("not RFC 3339: {e}")))
}

impl ReviewPredicate {
    /// Checks every field's rules (the same ones parsing applies).
    pub fn validate(&self) -> Result<(), ReviewError> {
        check_name("store", &self.store)?;
        check_name("algorithm", &self.algorithm)?;
        check_name("version", &self.version)?;
        check_name("reviewer", &self.reviewer)?;
        check_name("organization", &self.organization)?;
        let url = &self.source_repository;
        if url.is_empty() || url.len() > MAX_URL_LEN {
            return Err(invalid(
                "sourceRepository",
                format!("must be 1 to {MAX_URL_LEN} bytes"),
            ));
        }
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(invalid(
                "sourceRepository",
                "must not contain spaces or control characters",
            ));
        }
        let commit = &self.source_commit;
        if !matches!(commit.len(), 40 | 64) || !is_lower_hex(commit) {
            return Err(invalid(
                "sourceCommit",
                "must be a full commit id: 40 or 64 lowercase hex digits",
            ));
        }
        if self.functions.len() > MAX_FUNCTIONS {
            return Err(invalid(
                "functions",
                format!("at most {MAX_FUNCTIONS} functions"),
            ));
        }
        if self.decision == Decision::Approve && self.functions.is_empty() {
            return Err(invalid(
                "functions",
                "an approval names the functions reviewed",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for f in &self.functions {
            check_name("functions", f)?;
            if !seen.insert(f.as_str()) {
                return Err(invalid(
                    "functions",
                    format!("`{}` is named twice", f.escape_debug()),
                ));
            }
        }
        if self.time.offset() != time::UtcOffset::UTC {
            return Err(invalid("time", "must be in UTC"));
        }
        format_time(self.time)?;
        if let Some(r) = &self.rebuilt {
            let p = &r.path;
            let ok = !p.is_empty()
                && p.len() <= MAX_URL_LEN
                && !p.starts_with('/')
                && p.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
                && !p.chars().any(|c| c.is_control() || c.is_whitespace());
            if !ok {
                return Err(invalid(
                    "rebuilt",
                    "path must be a relative directory without `..`, spaces or control characters",
                ));
            }
            if self.decision != Decision::Approve {
                return Err(invalid("rebuilt", "only an approval records a rebuild"));
            }
        }
        if let Some(c) = &self.comment {
            if c.len() > MAX_COMMENT_LEN {
                return Err(invalid(
                    "comment",
                    format!("at most {MAX_COMMENT_LEN} bytes"),
                ));
            }
            if c.chars()
                .any(|ch| ch.is_control() && ch != '\n' && ch != '\t')
            {
                return Err(invalid(
                    "comment",
                    "must not contain control characters other than newline and tab",
                ));
            }
        }
        Ok(())
    }
}

impl Review {
    /// Checks the subject (sha256 digest) and the predicate.
    pub fn validate(&self) -> Result<(), ReviewError> {
        if self.digest.algorithm() != Algorithm::Sha256 {
            return Err(invalid("subject", "the digest must be sha256"));
        }
        self.predicate.validate()
    }

    /// The statement as compact JSON: the payload a reviewer signs.
    pub fn to_payload(&self) -> Result<Vec<u8>, ReviewError> {
        self.validate()?;
        let p = &self.predicate;
        let wire = WireStatement {
            kind: STATEMENT_V1.to_owned(),
            subject: vec![WireSubject {
                name: self.repository.to_string(),
                digest: WireDigest {
                    sha256: self.digest.hex().to_owned(),
                },
            }],
            predicate_type: REVIEW_PREDICATE_V1.to_owned(),
            predicate: WirePredicate {
                store: p.store.clone(),
                algorithm: p.algorithm.clone(),
                version: p.version.clone(),
                decision: p.decision,
                reviewer: p.reviewer.clone(),
                organization: p.organization.clone(),
                source_repository: p.source_repository.clone(),
                source_commit: p.source_commit.clone(),
                functions: p.functions.clone(),
                time: format_time(p.time)?,
                comment: p.comment.clone(),
                rebuilt: p.rebuilt.clone(),
            },
        };
        serde_json::to_vec(&wire).map_err(|e| ReviewError::NotReview(e.to_string()))
    }

    /// Parses statement bytes strictly into a review (no signature check).
    pub fn from_payload(payload: &[u8]) -> Result<Self, ReviewError> {
        if payload.len() > MAX_REVIEW_ENVELOPE_LEN {
            return Err(ReviewError::TooLarge {
                len: payload.len(),
                max: MAX_REVIEW_ENVELOPE_LEN,
            });
        }
        // Look at `_type` and `predicateType` first so that a foreign statement gets the error
        // that says so rather than one about a field it does not have.
        #[derive(Deserialize)]
        struct Head {
            #[serde(rename = "_type")]
            kind: Option<serde_json::Value>,
            #[serde(rename = "predicateType")]
            predicate_type: Option<serde_json::Value>,
        }
        let head: Head =
            serde_json::from_slice(payload).map_err(|e| ReviewError::NotReview(e.to_string()))?;
        match head.kind {
            Some(serde_json::Value::String(k)) if k == STATEMENT_V1 => {}
            Some(serde_json::Value::String(k)) => {
                return Err(ReviewError::WrongStatementType(
                    k.escape_debug().to_string(),
                ));
            }
            _ => return Err(ReviewError::NotReview("no string `_type`".into())),
        }
        match head.predicate_type {
            Some(serde_json::Value::String(t)) if t == REVIEW_PREDICATE_V1 => {}
            Some(serde_json::Value::String(t)) => {
                return Err(ReviewError::WrongPredicateType(
                    t.escape_debug().to_string(),
                ));
            }
            _ => return Err(ReviewError::NotReview("no string `predicateType`".into())),
        }
        let wire: WireStatement =
            serde_json::from_slice(payload).map_err(|e| ReviewError::NotReview(e.to_string()))?;
        let [subject] = <[WireSubject; 1]>::try_from(wire.subject)
            .map_err(|s| ReviewError::SubjectCount(s.len()))?;
        let repository = Repository::parse(&subject.name)
            .map_err(|e| invalid("subject", format!("name: {e}")))?;
        if repository.to_string() != subject.name {
            return Err(invalid(
                "subject",
                format!(
                    "name `{}` is not normalised; write `{repository}`",
                    subject.name.escape_debug()
                ),
            ));
        }
        let hex = &subject.digest.sha256;
        if hex.len() != 64 || !is_lower_hex(hex) {
            return Err(invalid(
                "subject",
                "digest sha256 must be 64 lowercase hex digits",
            ));
        }
        let digest = Digest::parse(&format!("sha256:{hex}"))
            .map_err(|e| invalid("subject", e.to_string()))?;
        let p = wire.predicate;
        let review = Review {
            repository,
            digest,
            predicate: ReviewPredicate {
                store: p.store,
                algorithm: p.algorithm,
                version: p.version,
                decision: p.decision,
                reviewer: p.reviewer,
                organization: p.organization,
                source_repository: p.source_repository,
                source_commit: p.source_commit,
                functions: p.functions,
                time: parse_time(&p.time)?,
                comment: p.comment,
                rebuilt: p.rebuilt,
            },
        };
        review.validate()?;
        Ok(review)
    }

    /// Signs the review with a reviewer's (or the store's) key into a DSSE envelope.
    pub fn sign(&self, key: &SigningKey) -> Result<Envelope, ReviewError> {
        let payload = self.to_payload()?;
        Ok(Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &payload, &[key]))
    }
}

/// Parses a review envelope strictly without checking its signature: for looking at what an
/// envelope claims (e.g. which reviewer) before verifying it. Never trust the result.
pub fn parse_review_envelope(envelope: &[u8]) -> Result<(Envelope, Review), ReviewError> {
    if envelope.len() > MAX_REVIEW_ENVELOPE_LEN {
        return Err(ReviewError::TooLarge {
            len: envelope.len(),
            max: MAX_REVIEW_ENVELOPE_LEN,
        });
    }
    let env = Envelope::parse(envelope)?;
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(ReviewError::WrongPayloadType(
            env.payload_type.escape_debug().to_string(),
        ));
    }
    if env.signatures.len() != 1 {
        return Err(ReviewError::SignatureCount(env.signatures.len()));
    }
    let payload = decode_b64("payload", &env.payload)?;
    let review = Review::from_payload(&payload)?;
    Ok((env, review))
}

/// Base64 as DSSE allows it: standard or URL-safe alphabet, padded or not.
fn decode_b64(field: &'static str, s: &str) -> Result<Vec<u8>, ReviewError> {
    use base64::Engine as _;
    use base64::engine::DecodePaddingMode;
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD_ANY: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
    const URL_SAFE_ANY: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);
    STANDARD_ANY
        .decode(s)
        .or_else(|_| URL_SAFE_ANY.decode(s))
        .map_err(|e| {
            ReviewError::Envelope(DsseError::BadBase64 {
                field,
                why: e.to_string().trim_end_matches('.').to_lowercase(),
            })
        })
}

/// Verifies a review envelope: strict parsing, exactly one signature, whose `keyid` names one
/// of the `pinned` keys (`sha256:<hex>` of its DER SubjectPublicKeyInfo, as Warden writes it) and
/// which verifies under that key over the exact payload. Returns the review and the key.
///
/// A review must name its signer: an envelope whose `keyid` is missing, malformed or names a key
/// that is not pinned is refused, and so is one whose `keyid` was changed to another pinned key
/// (the signature does not verify under it). Only one signature check is made.
pub fn verify_review(envelope: &[u8], pinned: &[PublicKey]) -> Result<VerifiedReview, ReviewError> {
    if pinned.is_empty() {
        return Err(ReviewError::Envelope(DsseError::NoKeysPinned));
    }
    let (env, review) = parse_review_envelope(envelope)?;
    let signature = &env.signatures[0];
    let claimed: KeyId = signature.keyid.parse().map_err(|_| {
        ReviewError::BadKeyId(
            signature
                .keyid
                .chars()
                .take(80)
                .collect::<String>()
                .escape_debug()
                .to_string(),
        )
    })?;
    let key = pinned
        .iter()
        .find(|k| k.id() == claimed)
        .ok_or(ReviewError::KeyNotPinned(claimed))?;
    let payload = decode_b64("payload", &env.payload)?;
    let sig = decode_b64("sig", &signature.sig)?;
    let message = crate::dsse::pae(&env.payload_type, &payload);
    key.verify(&message, &sig)
        .map_err(|_| ReviewError::BadSignature(claimed))?;
    Ok(VerifiedReview {
        review,
        key_id: claimed,
        payload,
    })
}
