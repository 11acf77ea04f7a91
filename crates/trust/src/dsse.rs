//! DSSE envelopes (Dead Simple Signing Envelope, v1) carrying in-toto v1 statements: the form
//! of review attestations.
//!
//! An envelope is `{"payloadType": ..., "payload": base64, "signatures": [{"keyid", "sig"}]}`.
//! Each signature covers the pre-authentication encoding [`pae`] of the type and the payload
//! bytes, with the encodings of [`crate::keys`] (P-256: DER over SHA-256 of the PAE; Ed25519:
//! over the PAE itself). `keyid` is an untrusted hint and is ignored: every signature is tried
//! against every pinned key. Base64 fields may use the standard or the URL-safe alphabet,
//! padded or not, as the DSSE specification allows; Warden writes standard padded base64.
//!
//! Parsing is strict at the envelope (unknown fields and duplicate keys refused) and follows
//! the in-toto specification for statements (unknown fields ignored, duplicate keys refused).

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use serde::{Deserialize, Serialize};
use warden_reference::Digest;

use crate::keys::{KeyId, PublicKey, SigningKey};

/// The payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The `_type` of an in-toto v1 statement.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// Largest envelope accepted, in bytes.
pub const MAX_ENVELOPE_LEN: usize = 1024 * 1024;
/// Most signatures accepted on one envelope.
pub const MAX_SIGNATURES: usize = 16;

/// Why an envelope or attestation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsseError {
    #[error("envelope is {len} bytes, more than the {max} accepted")]
    TooLarge { len: usize, max: usize },
    #[error("not a DSSE envelope: {0}")]
    NotJson(String),
    #[error("envelope field `{field}` is not base64: {why}")]
    BadBase64 { field: &'static str, why: String },
    #[error("envelope has no signature")]
    NoSignatures,
    #[error("envelope has {0} signatures, more than the {MAX_SIGNATURES} accepted")]
    TooManySignatures(usize),
    #[error("no key is pinned; pin the reviewers' or the store's public keys")]
    NoKeysPinned,
    #[error("no pinned key verifies any signature of the envelope")]
    NoPinnedKeyVerifies,
    #[error("payload type is `{found}`, not `{expected}`")]
    WrongPayloadType {
        found: String,
        expected: &'static str,
    },
    #[error("payload is not an in-toto statement: {0}")]
    NotStatement(String),
    #[error("statement _type is `{0}`, not `{STATEMENT_V1}`")]
    WrongStatementType(String),
    #[error("no subject of the statement has digest {0}")]
    SubjectMismatch(String),
}

/// A DSSE envelope as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Base64 of the payload bytes.
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    /// Untrusted hint; Warden writes the signer's [`KeyId`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
    /// Base64 of the signature.
    pub sig: String,
}

/// An envelope whose signatures were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEnvelope {
    pub payload_type: String,
    pub payload: Vec<u8>,
    /// The distinct pinned keys that signed it (never empty).
    pub signers: BTreeSet<KeyId>,
}

/// The DSSE v1 pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII decimal bytes.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const URL_SAFE_ANY_PAD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

fn decode_b64(field: &'static str, s: &str) -> Result<Vec<u8>, DsseError> {
    STANDARD_ANY_PAD
        .decode(s)
        .or_else(|_| URL_SAFE_ANY_PAD.decode(s))
        .map_err(|e| DsseError::BadBase64 {
            field,
            why: e.to_string(),
        })
}

impl Envelope {
    /// Parses envelope JSON (size-capped, strict).
    pub fn parse(bytes: &[u8]) -> Result<Self, DsseError> {
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Err(DsseError::TooLarge {
                len: bytes.len(),
                max: MAX_ENVELOPE_LEN,
            });
        }
        serde_json::from_slice(bytes).map_err(|e| DsseError::NotJson(e.to_string()))
    }

    /// The envelope as compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising strings cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Signs `payload` of `payload_type` with every key given.
    pub fn sign(payload_type: &str, payload: &[u8], keys: &[&SigningKey]) -> Self {
        let message = pae(payload_type, payload);
        Envelope {
            payload_type: payload_type.to_owned(),
            payload: STANDARD.encode(payload),
            signatures: keys
                .iter()
                .map(|k| EnvelopeSignature {
                    keyid: k.public_key().id().to_string(),
                    sig: STANDARD.encode(k.sign(&message)),
                })
                .collect(),
        }
    }

    /// Checks the signatures against `pinned` keys. Succeeds if at least one pinned key signed;
    /// signatures that are malformed or by other keys are skipped.
    pub fn verify(&self, pinned: &[PublicKey]) -> Result<VerifiedEnvelope, DsseError> {
        if self.signatures.is_empty() {
            return Err(DsseError::NoSignatures);
        }
        if self.signatures.len() > MAX_SIGNATURES {
            return Err(DsseError::TooManySignatures(self.signatures.len()));
        }
        if pinned.is_empty() {
            return Err(DsseError::NoKeysPinned);
        }
        let payload = decode_b64("payload", &self.payload)?;
        let message = pae(&self.payload_type, &payload);
        let mut signers = BTreeSet::new();
        for s in &self.signatures {
            let Ok(sig) = decode_b64("sig", &s.sig) else {
                continue;
            };
            if let Some(key) = pinned.iter().find(|k| k.verify(&message, &sig).is_ok()) {
                signers.insert(key.id());
            }
        }
        if signers.is_empty() {
            return Err(DsseError::NoPinnedKeyVerifies);
        }
        Ok(VerifiedEnvelope {
            payload_type: self.payload_type.clone(),
            payload,
            signers,
        })
    }
}

/// An in-toto v1 statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub kind: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub predicate: serde_json::Value,
}

/// One subject (resource descriptor) of a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Algorithm name to lower-case hex, e.g. `{"sha256": "9f86…"}`.
    pub digest: std::collections::BTreeMap<String, String>,
}

impl Statement {
    /// A v1 statement about one image digest.
    pub fn about(
        name: &str,
        digest: &Digest,
        predicate_type: &str,
        predicate: serde_json::Value,
    ) -> Self {
        Statement {
            kind: STATEMENT_V1.to_owned(),
            subject: vec![Subject {
                name: name.to_owned(),
                digest: [(
                    digest.algorithm().name().to_owned(),
                    digest.hex().to_owned(),
                )]
                .into(),
            }],
            predicate_type: predicate_type.to_owned(),
            predicate,
        }
    }

    /// Parses statement JSON and checks its `_type`.
    pub fn parse(bytes: &[u8]) -> Result<Self, DsseError> {
        let s: Statement =
            serde_json::from_slice(bytes).map_err(|e| DsseError::NotStatement(e.to_string()))?;
        if s.kind != STATEMENT_V1 {
            return Err(DsseError::WrongStatementType(
                s.kind.escape_debug().to_string(),
            ));
        }
        Ok(s)
    }

    /// Whether a subject has exactly this digest.
    pub fn has_subject(&self, digest: &Digest) -> bool {
        self.subject.iter().any(|s| {
            s.digest
                .get(digest.algorithm().name())
                .is_some_and(|hex| hex == digest.hex())
        })
    }

    /// Signs the statement into an in-toto envelope.
    pub fn sign(&self, keys: &[&SigningKey]) -> Envelope {
        // Serialising strings and JSON values cannot fail.
        let payload = serde_json::to_vec(self).unwrap_or_default();
        Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &payload, keys)
    }
}

/// A verified attestation about one digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    /// The distinct pinned keys that signed it (never empty).
    pub signers: BTreeSet<KeyId>,
    pub predicate_type: String,
    pub predicate: serde_json::Value,
}

/// Verifies an envelope's signatures against `pinned` keys, then that it carries an in-toto v1
/// statement with a subject whose digest is `digest`. Returns the predicate for the caller to
/// judge.
pub fn verify_attestation(
    envelope: &[u8],
    pinned: &[PublicKey],
    digest: &Digest,
) -> Result<Attestation, DsseError> {
    let verified = Envelope::parse(envelope)?.verify(pinned)?;
    if verified.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(DsseError::WrongPayloadType {
            found: verified.payload_type.escape_debug().to_string(),
            expected: IN_TOTO_PAYLOAD_TYPE,
        });
    }
    let statement = Statement::parse(&verified.payload)?;
    if !statement.has_subject(digest) {
        return Err(DsseError::SubjectMismatch(digest.to_string()));
    }
    Ok(Attestation {
        signers: verified.signers,
        predicate_type: statement.predicate_type,
        predicate: statement.predicate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const REVIEW: &str = "https://warden.example/review/v1";

    fn p256(seed: u8) -> SigningKey {
        SigningKey::EcdsaP256(p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap())
    }

    fn ed(seed: u8) -> SigningKey {
        SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
    }

    fn digest() -> Digest {
        Digest::parse(DIGEST).unwrap()
    }

    fn statement() -> Statement {
        Statement::about(
            "example.org/team/algo",
            &digest(),
            REVIEW,
            serde_json::json!({"approved": true}),
        )
    }

    #[track_caller]
    fn check(envelope: &[u8], want: Result<&[&SigningKey], DsseError>) {
        let pinned = [p256(1).public_key(), ed(2).public_key()];
        let got = verify_attestation(envelope, &pinned, &digest());
        match (got, want) {
            (Ok(a), Ok(keys)) => {
                let ids: BTreeSet<KeyId> = keys.iter().map(|k| k.public_key().id()).collect();
                assert_eq!(a.signers, ids);
                assert_eq!(a.predicate_type, REVIEW);
                assert_eq!(a.predicate, serde_json::json!({"approved": true}));
            }
            (Err(e), Err(w)) => assert_eq!(e, w),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn pae_matches_the_specification_example() {
        // From the DSSE protocol documentation.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn verifies_signed_statements() {
        let (a, b) = (p256(1), ed(2));
        check(&statement().sign(&[&a]).to_json(), Ok(&[&a]));
        check(&statement().sign(&[&b]).to_json(), Ok(&[&b]));
        check(&statement().sign(&[&a, &b, &a]).to_json(), Ok(&[&a, &b]));
        // An unpinned co-signer does not hurt and does not count.
        check(&statement().sign(&[&p256(9), &a]).to_json(), Ok(&[&a]));
    }

    #[test]
    fn refuses_what_pinned_keys_did_not_sign() {
        check(
            &statement().sign(&[&p256(9), &ed(9)]).to_json(),
            Err(DsseError::NoPinnedKeyVerifies),
        );
        check(
            &statement().sign(&[]).to_json(),
            Err(DsseError::NoSignatures),
        );
        let mut env = statement().sign(&[&p256(1)]);
        // keyid is a hint only: lying about it changes nothing.
        env.signatures[0].keyid = "someone else".into();
        check(&env.to_json(), Ok(&[&p256(1)]));
        // A changed payload, or a changed payload type, breaks the signature.
        let mut changed = env.clone();
        let other = Statement::about("x", &Digest::sha256_of(b"x"), REVIEW, serde_json::json!({}));
        changed.payload = STANDARD.encode(serde_json::to_vec(&other).unwrap());
        check(&changed.to_json(), Err(DsseError::NoPinnedKeyVerifies));
        let mut retyped = env.clone();
        retyped.payload_type = "application/json".into();
        check(&retyped.to_json(), Err(DsseError::NoPinnedKeyVerifies));
        // A garbage signature next to a good one is skipped.
        env.signatures.insert(
            0,
            EnvelopeSignature {
                keyid: String::new(),
                sig: "@@".into(),
            },
        );
        check(&env.to_json(), Ok(&[&p256(1)]));
        let many = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, b"{}", &[&p256(1); MAX_SIGNATURES + 1]);
        check(
            &many.to_json(),
            Err(DsseError::TooManySignatures(MAX_SIGNATURES + 1)),
        );
        let no_keys = verify_attestation(&statement().sign(&[&p256(1)]).to_json(), &[], &digest());
        assert_eq!(no_keys.unwrap_err(), DsseError::NoKeysPinned);
    }

    #[test]
    fn checks_payload_type_statement_and_subject() {
        let k = p256(1);
        let payload = serde_json::to_vec(&statement()).unwrap();
        check(
            &Envelope::sign("application/json", &payload, &[&k]).to_json(),
            Err(DsseError::WrongPayloadType {
                found: "application/json".into(),
                expected: IN_TOTO_PAYLOAD_TYPE,
            }),
        );
        let garbage = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, b"not json", &[&k]).to_json();
        assert!(matches!(
            verify_attestation(&garbage, &[k.public_key()], &digest()),
            Err(DsseError::NotStatement(_))
        ));
        let mut v01 = statement();
        v01.kind = "https://in-toto.io/Statement/v0.1".into();
        check(
            &v01.sign(&[&k]).to_json(),
            Err(DsseError::WrongStatementType(v01.kind.clone())),
        );
        let other = Statement::about(
            "x",
            &Digest::sha256_of(b"other"),
            REVIEW,
            serde_json::json!({}),
        );
        check(
            &other.sign(&[&k]).to_json(),
            Err(DsseError::SubjectMismatch(DIGEST.into())),
        );
        let mut upper = statement();
        upper.subject[0]
            .digest
            .insert("sha256".into(), DIGEST[7..].to_uppercase());
        check(
            &upper.sign(&[&k]).to_json(),
            Err(DsseError::SubjectMismatch(DIGEST.into())),
        );
        // One matching subject among several is enough; unknown statement fields are ignored.
        let mut several = serde_json::to_value(statement()).unwrap();
        several["subject"] = serde_json::json!([
            {"name": "a", "digest": {"sha512": "00"}},
            {"name": "b", "digest": {"sha256": &DIGEST[7..]}, "uri": "x"},
        ]);
        several["future"] = serde_json::json!(1);
        let env = Envelope::sign(
            IN_TOTO_PAYLOAD_TYPE,
            &serde_json::to_vec(&several).unwrap(),
            &[&k],
        );
        check(&env.to_json(), Ok(&[&k]));
        // Duplicate keys in the statement are refused.
        let dup = String::from_utf8(payload.clone()).unwrap().replacen(
            r#""predicateType""#,
            r#""predicateType":"other","predicateType""#,
            1,
        );
        let env = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, dup.as_bytes(), &[&k]);
        assert!(matches!(
            verify_attestation(&env.to_json(), &[k.public_key()], &digest()),
            Err(DsseError::NotStatement(_))
        ));
    }

    #[test]
    fn envelope_parsing_is_strict_but_accepts_any_base64_flavour() {
        let k = ed(2);
        let env = statement().sign(&[&k]);
        let json = String::from_utf8(env.to_json()).unwrap();
        let unknown = json.replacen("{", r#"{"extra":1,"#, 1);
        assert!(matches!(
            Envelope::parse(unknown.as_bytes()),
            Err(DsseError::NotJson(_))
        ));
        assert!(matches!(Envelope::parse(b"[]"), Err(DsseError::NotJson(_))));
        let big = vec![b' '; MAX_ENVELOPE_LEN + 1];
        assert!(matches!(
            Envelope::parse(&big),
            Err(DsseError::TooLarge { .. })
        ));
        let mut url = env.clone();
        let raw = STANDARD.decode(&env.payload).unwrap();
        url.payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw);
        url.signatures[0].sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(STANDARD.decode(&env.signatures[0].sig).unwrap());
        check(&url.to_json(), Ok(&[&k]));
        let mut bad = env;
        bad.payload = "***".into();
        assert!(matches!(
            verify_attestation(&bad.to_json(), &[k.public_key()], &digest()),
            Err(DsseError::BadBase64 {
                field: "payload",
                ..
            })
        ));
    }
}
