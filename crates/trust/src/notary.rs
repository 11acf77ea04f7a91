//! Notary Project signatures (the `notary.x509` signing scheme, JWS envelope), verification
//! without I/O: the registry crate finds the signature manifests (OCI referrers of the image,
//! or the referrers tag schema) and hands over each envelope's bytes; [`verify_envelope`]
//! judges one against the descriptor of the manifest the node resolved; a [`TrustStore`] and
//! [`Identity`] list (from the node's policy) then decide whether the verified signer counts.
//!
//! Written from the Notary Project specifications (signature-specification.md,
//! signature-envelope-jws.md, trust-store-trust-policy.md). An envelope verifies only if all
//! of these hold:
//! 1. it is flattened JWS JSON (`payload`, `protected`, `header`, `signature`, nothing else)
//!    of at most [`MAX_ENVELOPE_LEN`] bytes;
//! 2. the protected header has `alg` among PS256/PS384/PS512/ES256/ES384/ES512, `cty`
//!    `application/vnd.cncf.notary.payload.v1+json`, `io.cncf.notary.signingScheme`
//!    `notary.x509`, an RFC 3339 `io.cncf.notary.signingTime`, and `crit` listing the signing
//!    scheme and only headers this verifier understands (`io.cncf.notary.expiry`); any other
//!    header in `crit` is refused, as JWS requires;
//! 3. the unprotected header's `x5c` holds the chain leaf first, root last (at most
//!    [`MAX_CHAIN_LEN`] certificates, each DER in standard base64);
//! 4. `alg` is the one the leaf's key determines (RSA 2048/3072/4096: PS256/384/512; EC
//!    P-256/384/521: ES256/384/512), and the signature verifies over
//!    `protected || '.' || payload` under the leaf key;
//! 5. the payload's `targetArtifact` names exactly the resolved manifest: media type, digest
//!    and size;
//! 6. the chain: each certificate is signed by the next (ECDSA P-256/P-384/P-521 with SHA-2,
//!    RSA PKCS#1 v1.5 with SHA-2; SHA-1 is refused), issuer names chain, the last is
//!    self-signed; CA certificates have critical basic constraints with `cA` true (path
//!    length honoured) and a critical key usage with `keyCertSign`; the leaf has `cA` false
//!    or no basic constraints, a critical key usage with `digitalSignature` and none of the
//!    forbidden bits, and an extended key usage (if any) without `anyExtendedKeyUsage`,
//!    `serverAuth`, `clientAuth`, `emailProtection` or `timeStamping`; RSA keys of 2048 bits
//!    or more, EC keys of 256 bits or more;
//! 7. every certificate is valid now and at the signing time (the `notary.x509` scheme
//!    without a timestamp countersignature: the spec's "at the time of verification"; Warden
//!    also requires the untrusted signing time to be inside the validity periods), and an
//!    `io.cncf.notary.expiry`, if present, is in the future.
//!
//! Trust: a verified signature counts for a policy's Notary condition when a certificate of
//! its chain is in the condition's trust store (byte equality, as Notation does) and the
//! leaf's subject matches one of the condition's identities ([`Identity::matches`]). Each
//! distinct leaf certificate counts once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use const_oid::ObjectIdentifier;
use const_oid::db::rfc5280 as oids;
use der::{Decode, Encode};
use serde::Deserialize;
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_cert::Certificate;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage};

use crate::P256Key;

/// `artifactType` of a Notary Project signature manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.cncf.notary.signature";
/// Media type of a JWS envelope blob.
pub const JWS_MEDIA_TYPE: &str = "application/jose+json";
/// Media type of a COSE envelope blob (recognised, not verified).
pub const COSE_MEDIA_TYPE: &str = "application/cose";
/// The `cty` of a Notary Project payload.
pub const PAYLOAD_CONTENT_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";
/// The signing scheme verified here.
pub const SCHEME_X509: &str = "notary.x509";
/// Largest envelope accepted, in bytes (Notation's envelopes are a few kilobytes).
pub const MAX_ENVELOPE_LEN: usize = 256 * 1024;
/// Most certificates in `x5c`.
pub const MAX_CHAIN_LEN: usize = 10;

const H_SCHEME: &str = "io.cncf.notary.signingScheme";
const H_SIGNING_TIME: &str = "io.cncf.notary.signingTime";
const H_EXPIRY: &str = "io.cncf.notary.expiry";
/// Critical headers this verifier understands and processes.
const UNDERSTOOD_CRIT: [&str; 2] = [H_SCHEME, H_EXPIRY];

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const OID_RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const OID_RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");

/// Why an envelope, a trust store or an identity was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotaryError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, NotaryError> {
    Err(NotaryError(msg.into()))
}

/// The manifest a signature must name: the descriptor of what the node resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetDescriptor {
    pub media_type: String,
    /// `sha256:<hex>` as the registry spells it.
    pub digest: String,
    pub size: u64,
}

/// A JWS `alg` of the Notary Project subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Alg {
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    Es512,
}

impl Alg {
    pub fn parse(s: &str) -> Option<Alg> {
        Some(match s {
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "ES512" => Alg::Es512,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::Es512 => "ES512",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One subject attribute: its short name (`CN`, `O`, `C`, ... or the dotted OID) and value.
pub type Attribute = (String, String);

/// A signature that verified (envelope, payload, chain); not yet judged against a trust store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// SHA-256 of the leaf certificate's DER: the signer's identity for counting.
    pub leaf_sha256: [u8; 32],
    /// The leaf subject's attributes, in certificate order.
    pub subject: Vec<Attribute>,
    /// The leaf subject as RFC 4514 text (for people).
    pub subject_text: String,
    /// SHA-256 of the leaf's DER SubjectPublicKeyInfo: Warden's key id of the signing key
    /// (the same as a cosign key's [`crate::KeyId`]), so one key counts once however it signs.
    pub leaf_key_id: [u8; 32],
    /// SHA-256 of every certificate in the chain, leaf first.
    pub chain_sha256: Vec<[u8; 32]>,
    pub alg: Alg,
    /// The (unauthenticated) signing time the signer claimed.
    pub signing_time: OffsetDateTime,
}

impl VerifiedSignature {
    /// The leaf fingerprint as lowercase hex.
    pub fn leaf_hex(&self) -> String {
        hex::encode(self.leaf_sha256)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    payload: String,
    protected: String,
    header: Unprotected,
    signature: String,
}

#[derive(Deserialize)]
struct Unprotected {
    x5c: Vec<String>,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "targetArtifact")]
    target: PayloadTarget,
}

#[derive(Deserialize)]
struct PayloadTarget {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
}

/// A certificate of `x5c`, decoded once: its DER, the DER of its `tbsCertificate` (a slice
/// of the received bytes, which the signature covers: never re-encoded), its key and digest.
struct ChainCert {
    der: Vec<u8>,
    cert: Certificate,
    key: KeyInfo,
    sha256: [u8; 32],
}

impl ChainCert {
    fn tbs(&self) -> Result<&[u8], NotaryError> {
        tbs_slice(&self.der).map_err(|e| NotaryError(format!("tbsCertificate: {e}")))
    }
}

/// The encoded `tbsCertificate`, the first element of the certificate's outer SEQUENCE.
fn tbs_slice(der: &[u8]) -> der::Result<&[u8]> {
    use der::Reader as _;
    let mut r = der::SliceReader::new(der)?;
    let _outer = der::Header::decode(&mut r)?;
    let start = usize::try_from(r.position())?;
    let inner = r.peek_header()?;
    let len = usize::try_from((inner.encoded_len()? + inner.length)?)?;
    der.get(start..start.saturating_add(len))
        .ok_or_else(|| der::Tag::Sequence.value_error())
}

/// Verifies one JWS envelope against `target` at time `now` (see the module documentation),
/// every certificate's signature included. A node holding a [`TrustStore`] uses
/// [`TrustStore::verify_envelope`], which does the same checks but skips what a pinned root
/// makes redundant.
pub fn verify_envelope(
    envelope: &[u8],
    target: &TargetDescriptor,
    now: OffsetDateTime,
) -> Result<VerifiedSignature, NotaryError> {
    verify_inner(envelope, target, now, None)
}

fn verify_inner(
    envelope: &[u8],
    target: &TargetDescriptor,
    now: OffsetDateTime,
    pinned: Option<&TrustStore>,
) -> Result<VerifiedSignature, NotaryError> {
    if envelope.len() > MAX_ENVELOPE_LEN {
        return err(format!(
            "envelope of {} bytes is over the cap of {MAX_ENVELOPE_LEN}",
            envelope.len()
        ));
    }
    let env: Envelope = serde_json::from_slice(envelope)
        .map_err(|e| NotaryError(format!("not a flattened JWS JSON envelope: {e}")))?;
    let protected_bytes = URL_SAFE_NO_PAD
        .decode(&env.protected)
        .map_err(|e| NotaryError(format!("protected header is not base64url: {e}")))?;
    let protected: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&protected_bytes)
            .map_err(|e| NotaryError(format!("protected header is not a JSON object: {e}")))?;
    let text = |name: &str| -> Result<&str, NotaryError> {
        match protected.get(name) {
            Some(serde_json::Value::String(s)) => Ok(s),
            Some(_) => err(format!("protected header `{name}` is not a string")),
            None => err(format!("protected header `{name}` is missing")),
        }
    };
    let alg_name = text("alg")?;
    let Some(alg) = Alg::parse(alg_name) else {
        return err(format!(
            "alg `{alg_name}` is not one of PS256, PS384, PS512, ES256, ES384, ES512"
        ));
    };
    let cty = text("cty")?;
    if cty != PAYLOAD_CONTENT_TYPE {
        return err(format!("cty `{cty}` is not {PAYLOAD_CONTENT_TYPE}"));
    }
    let scheme = text(H_SCHEME)?;
    if scheme != SCHEME_X509 {
        return err(format!(
            "signing scheme `{scheme}` is not verified here (only {SCHEME_X509})"
        ));
    }
    let crit: Vec<&str> = match protected.get("crit") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| NotaryError("crit holds a non-string".into()))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return err("crit is not an array"),
        None => return err("protected header `crit` is missing"),
    };
    if !crit.contains(&H_SCHEME) {
        return err(format!("crit does not list {H_SCHEME}"));
    }
    for c in &crit {
        if !UNDERSTOOD_CRIT.contains(c) {
            return err(format!("critical header `{c}` is not understood"));
        }
        if !protected.contains_key(*c) {
            return err(format!("critical header `{c}` is listed but absent"));
        }
    }
    if protected.contains_key(H_EXPIRY) && !crit.contains(&H_EXPIRY) {
        return err(format!("{H_EXPIRY} is present but not listed in crit"));
    }
    let signing_time = OffsetDateTime::parse(text(H_SIGNING_TIME)?, &Rfc3339)
        .map_err(|e| NotaryError(format!("{H_SIGNING_TIME} is not RFC 3339: {e}")))?;
    if protected.contains_key(H_EXPIRY) {
        let expiry = OffsetDateTime::parse(text(H_EXPIRY)?, &Rfc3339)
            .map_err(|e| NotaryError(format!("{H_EXPIRY} is not RFC 3339: {e}")))?;
        if now > expiry {
            return err(format!("the signature expired at {expiry}"));
        }
    }

    // The chain.
    if env.header.x5c.is_empty() {
        return err("x5c is empty");
    }
    if env.header.x5c.len() > MAX_CHAIN_LEN {
        return err(format!(
            "x5c holds {} certificates, over the cap of {MAX_CHAIN_LEN}",
            env.header.x5c.len()
        ));
    }
    let n = env.header.x5c.len();
    let mut certs = Vec::with_capacity(n);
    for (i, b64) in env.header.x5c.iter().enumerate() {
        let der = STANDARD
            .decode(b64)
            .map_err(|e| NotaryError(format!("x5c[{i}] is not base64: {e}")))?;
        let cert = Certificate::from_der(&der)
            .map_err(|e| NotaryError(format!("x5c[{i}] is not a DER certificate: {e}")))?;
        let key = KeyInfo::of(&cert)
            .map_err(|e| NotaryError(format!("x5c[{i}] ({}): {}", role(i, n), e.0)))?;
        let sha256 = Sha256::digest(&der).into();
        certs.push(ChainCert {
            der,
            cert,
            key,
            sha256,
        });
    }
    let leaf_key = &certs[0].key;
    let expected = leaf_key.jws_alg()?;
    if expected != alg {
        return err(format!(
            "alg {alg} does not match the signing key ({}; it needs {expected})",
            leaf_key.describe()
        ));
    }

    // The signature over the signing input.
    let signature = URL_SAFE_NO_PAD
        .decode(&env.signature)
        .map_err(|e| NotaryError(format!("signature is not base64url: {e}")))?;
    let mut input = Vec::with_capacity(env.protected.len() + 1 + env.payload.len());
    input.extend_from_slice(env.protected.as_bytes());
    input.push(b'.');
    input.extend_from_slice(env.payload.as_bytes());
    leaf_key
        .verify_jws(alg, &input, &signature, pinned_p256(pinned, &certs[0]))
        .map_err(|e| NotaryError(format!("the signature does not verify: {}", e.0)))?;

    // The payload names exactly the resolved manifest.
    let payload_bytes = URL_SAFE_NO_PAD
        .decode(&env.payload)
        .map_err(|e| NotaryError(format!("payload is not base64url: {e}")))?;
    let payload: Payload = serde_json::from_slice(&payload_bytes)
        .map_err(|e| NotaryError(format!("payload is not a Notary payload: {e}")))?;
    let t = &payload.target;
    if t.digest != target.digest {
        return err(format!(
            "the signature is for {}, not {}",
            t.digest, target.digest
        ));
    }
    if t.media_type != target.media_type {
        return err(format!(
            "the signed media type {} is not the manifest's {}",
            t.media_type, target.media_type
        ));
    }
    if t.size != target.size {
        return err(format!(
            "the signed size {} is not the manifest's {}",
            t.size, target.size
        ));
    }

    validate_chain(&certs, now, signing_time, pinned)?;

    let leaf = &certs[0];
    let spki = leaf
        .cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| NotaryError(format!("x5c[0]: public key re-encoding: {e}")))?;
    Ok(VerifiedSignature {
        leaf_sha256: leaf.sha256,
        leaf_key_id: Sha256::digest(&spki).into(),
        subject: subject_attributes(&leaf.cert),
        subject_text: leaf.cert.tbs_certificate.subject.to_string(),
        chain_sha256: certs.iter().map(|c| c.sha256).collect(),
        alg,
        signing_time,
    })
}

/// The precomputed P-256 key of a certificate byte-equal to one in the trust store.
fn pinned_p256<'a>(pinned: Option<&'a TrustStore>, cert: &ChainCert) -> Option<&'a P256Key> {
    pinned.and_then(|s| s.p256.get(&cert.sha256))
}

/// The certificate requirements and chain validation of the module documentation (step 6–7).
///
/// With `pinned`, the last certificate's self-signature is not checked when that certificate
/// is byte-equal to one in the store: the store pins it by its bytes, so its signature over
/// itself proves nothing more (its name chaining, validity and CA requirements are checked all
/// the same).
fn validate_chain(
    certs: &[ChainCert],
    now: OffsetDateTime,
    signing_time: OffsetDateTime,
    pinned: Option<&TrustStore>,
) -> Result<(), NotaryError> {
    let n = certs.len();
    for (i, chain_cert) in certs.iter().enumerate() {
        let at = |msg: String| NotaryError(format!("x5c[{i}] ({}): {msg}", role(i, n)));
        let cert = &chain_cert.cert;
        let tbs = &cert.tbs_certificate;
        let not_before = unix(tbs.validity.not_before.to_unix_duration());
        let not_after = unix(tbs.validity.not_after.to_unix_duration());
        for (what, t) in [("now", now), ("at the signing time", signing_time)] {
            if t < not_before || t > not_after {
                return Err(at(format!(
                    "not valid {what} ({t}): valid from {not_before} to {not_after}"
                )));
            }
        }
        chain_cert.key.check_strength().map_err(at)?;
        let ext = Extensions::of(cert).map_err(at)?;
        // A chain of one certificate: the root meets the leaf requirements only.
        let is_leaf = i == 0;
        if is_leaf {
            if let Some((_, bc)) = &ext.basic_constraints
                && bc.ca
            {
                return Err(at(
                    "a signing certificate must not be a CA (cA is true)".into()
                ));
            }
            let Some((critical, ku)) = &ext.key_usage else {
                return Err(at("key usage is missing".into()));
            };
            if !critical {
                return Err(at("key usage is not marked critical".into()));
            }
            if !ku.digital_signature() {
                return Err(at("key usage lacks digitalSignature".into()));
            }
            if ku.key_encipherment()
                || ku.data_encipherment()
                || ku.key_agreement()
                || ku.key_cert_sign()
                || ku.crl_sign()
                || ku.encipher_only()
                || ku.decipher_only()
            {
                return Err(at(
                    "key usage has a bit a code signing certificate must not have".into(),
                ));
            }
            if let Some(eku) = &ext.extended_key_usage {
                for oid in &eku.0 {
                    if [
                        oids::ANY_EXTENDED_KEY_USAGE,
                        oids::ID_KP_SERVER_AUTH,
                        oids::ID_KP_CLIENT_AUTH,
                        oids::ID_KP_EMAIL_PROTECTION,
                        oids::ID_KP_TIME_STAMPING,
                    ]
                    .contains(oid)
                    {
                        return Err(at(format!(
                            "extended key usage {oid} is not allowed for code signing"
                        )));
                    }
                }
            }
        } else {
            let Some((critical, bc)) = &ext.basic_constraints else {
                return Err(at(
                    "basic constraints are missing on a CA certificate".into()
                ));
            };
            if !critical {
                return Err(at("basic constraints are not marked critical".into()));
            }
            if !bc.ca {
                return Err(at("cA is false: it may not issue certificates".into()));
            }
            if let Some(len) = bc.path_len_constraint {
                // CA certificates below this one (i - 1 of them are CAs besides the leaf).
                let below = i - 1;
                if below > usize::from(len) {
                    return Err(at(format!(
                        "path length constraint {len} is exceeded ({below} CA certificates below)"
                    )));
                }
            }
            let Some((critical, ku)) = &ext.key_usage else {
                return Err(at("key usage is missing".into()));
            };
            if !critical {
                return Err(at("key usage is not marked critical".into()));
            }
            if !ku.key_cert_sign() {
                return Err(at("key usage lacks keyCertSign".into()));
            }
        }
        // Signed by the next one, or self-signed for the last.
        let issuer = certs.get(i + 1).unwrap_or(chain_cert);
        if tbs.issuer != issuer.cert.tbs_certificate.subject {
            return Err(at(format!(
                "its issuer {} is not the subject of the next certificate ({})",
                tbs.issuer, issuer.cert.tbs_certificate.subject
            )));
        }
        let is_root = i + 1 == n;
        if is_root && pinned.is_some_and(|s| s.certificates.contains(&chain_cert.sha256)) {
            continue;
        }
        let tbs_der = chain_cert.tbs().map_err(|e| at(e.0))?;
        let sig = cert
            .signature
            .as_bytes()
            .ok_or_else(|| at("the signature bit string is not whole bytes".into()))?;
        issuer
            .key
            .verify_cert(
                &cert.signature_algorithm.oid,
                tbs_der,
                sig,
                pinned_p256(pinned, issuer),
            )
            .map_err(|e| {
                at(if i + 1 == n {
                    format!("not validly self-signed: {}", e.0)
                } else {
                    format!("not validly signed by x5c[{}]: {}", i + 1, e.0)
                })
            })?;
    }
    Ok(())
}

fn role(i: usize, n: usize) -> &'static str {
    if i == 0 {
        "leaf"
    } else if i + 1 == n {
        "root"
    } else {
        "intermediate"
    }
}

fn unix(d: std::time::Duration) -> OffsetDateTime {
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

struct Extensions {
    basic_constraints: Option<(bool, BasicConstraints)>,
    key_usage: Option<(bool, KeyUsage)>,
    extended_key_usage: Option<ExtendedKeyUsage>,
}

impl Extensions {
    /// Only basic constraints, key usage and extended key usage are honoured (the spec's "fail
    /// open" for the rest).
    fn of(cert: &Certificate) -> Result<Extensions, String> {
        let mut out = Extensions {
            basic_constraints: None,
            key_usage: None,
            extended_key_usage: None,
        };
        for ext in cert.tbs_certificate.extensions.iter().flatten() {
            let bytes = ext.extn_value.as_bytes();
            if ext.extn_id == oids::ID_CE_BASIC_CONSTRAINTS {
                let bc = BasicConstraints::from_der(bytes)
                    .map_err(|e| format!("bad basic constraints: {e}"))?;
                out.basic_constraints = Some((ext.critical, bc));
            } else if ext.extn_id == oids::ID_CE_KEY_USAGE {
                let ku = KeyUsage::from_der(bytes).map_err(|e| format!("bad key usage: {e}"))?;
                out.key_usage = Some((ext.critical, ku));
            } else if ext.extn_id == oids::ID_CE_EXT_KEY_USAGE {
                let eku = ExtendedKeyUsage::from_der(bytes)
                    .map_err(|e| format!("bad extended key usage: {e}"))?;
                out.extended_key_usage = Some(eku);
            }
        }
        Ok(out)
    }
}

/// A certificate's public key, in the algorithms the Notary Project allows.
enum KeyInfo {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
}

impl KeyInfo {
    fn of(cert: &Certificate) -> Result<KeyInfo, NotaryError> {
        let spki = &cert.tbs_certificate.subject_public_key_info;
        let raw = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| NotaryError("public key bit string is not whole bytes".into()))?;
        if spki.algorithm.oid == OID_EC_PUBLIC_KEY {
            let curve: ObjectIdentifier = spki
                .algorithm
                .parameters
                .as_ref()
                .ok_or_else(|| NotaryError("EC key without a named curve".into()))?
                .decode_as()
                .map_err(|e| NotaryError(format!("EC key curve: {e}")))?;
            let bad = |e: p256::ecdsa::Error| NotaryError(format!("bad EC public key: {e}"));
            if curve == OID_P256 {
                Ok(KeyInfo::P256(
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(raw).map_err(bad)?,
                ))
            } else if curve == OID_P384 {
                Ok(KeyInfo::P384(
                    p384::ecdsa::VerifyingKey::from_sec1_bytes(raw).map_err(bad)?,
                ))
            } else if curve == OID_P521 {
                Ok(KeyInfo::P521(
                    p521::ecdsa::VerifyingKey::from_sec1_bytes(raw).map_err(bad)?,
                ))
            } else {
                err(format!("EC curve {curve} is not P-256, P-384 or P-521"))
            }
        } else if spki.algorithm.oid == OID_RSA_ENCRYPTION {
            use rsa::pkcs1::DecodeRsaPublicKey as _;
            let key = rsa::RsaPublicKey::from_pkcs1_der(raw)
                .map_err(|e| NotaryError(format!("bad RSA public key: {e}")))?;
            Ok(KeyInfo::Rsa(key))
        } else {
            err(format!(
                "public key algorithm {} is not EC or RSA",
                spki.algorithm.oid
            ))
        }
    }

    fn rsa_bits(key: &rsa::RsaPublicKey) -> usize {
        use rsa::traits::PublicKeyParts as _;
        key.n().bits()
    }

    fn describe(&self) -> String {
        match self {
            KeyInfo::P256(_) => "EC P-256".into(),
            KeyInfo::P384(_) => "EC P-384".into(),
            KeyInfo::P521(_) => "EC P-521".into(),
            KeyInfo::Rsa(k) => format!("RSA {}", Self::rsa_bits(k)),
        }
    }

    fn check_strength(&self) -> Result<(), String> {
        match self {
            KeyInfo::Rsa(k) if Self::rsa_bits(k) < 2048 => Err(format!(
                "RSA key of {} bits is under 2048",
                Self::rsa_bits(k)
            )),
            _ => Ok(()),
        }
    }

    /// The `alg` the signing key determines (signature-specification.md, algorithm selection).
    fn jws_alg(&self) -> Result<Alg, NotaryError> {
        Ok(match self {
            KeyInfo::P256(_) => Alg::Es256,
            KeyInfo::P384(_) => Alg::Es384,
            KeyInfo::P521(_) => Alg::Es512,
            KeyInfo::Rsa(k) => match Self::rsa_bits(k) {
                2048 => Alg::Ps256,
                3072 => Alg::Ps384,
                4096 => Alg::Ps512,
                bits => {
                    return err(format!(
                        "RSA key of {bits} bits: the Notary Project signs with 2048, 3072 or 4096"
                    ));
                }
            },
        })
    }

    /// A JWS signature: ECDSA as fixed-size r || s, RSASSA-PSS with the salt as long as the hash.
    /// `table` is the key's precomputed form when its certificate is pinned (P-256 only).
    fn verify_jws(
        &self,
        alg: Alg,
        msg: &[u8],
        sig: &[u8],
        table: Option<&P256Key>,
    ) -> Result<(), NotaryError> {
        use p256::ecdsa::signature::Verifier as _;
        let bad = |e: p256::ecdsa::signature::Error| NotaryError(e.to_string());
        match (self, alg) {
            (KeyInfo::P256(k), Alg::Es256) => {
                let s = p256::ecdsa::Signature::from_slice(sig).map_err(bad)?;
                verify_p256(k, table, &Sha256::digest(msg).into(), &s)
            }
            (KeyInfo::P384(k), Alg::Es384) => {
                let s = p384::ecdsa::Signature::from_slice(sig).map_err(bad)?;
                k.verify(msg, &s).map_err(bad)
            }
            (KeyInfo::P521(k), Alg::Es512) => {
                let s = p521::ecdsa::Signature::from_slice(sig).map_err(bad)?;
                k.verify(msg, &s).map_err(bad)
            }
            (KeyInfo::Rsa(k), Alg::Ps256 | Alg::Ps384 | Alg::Ps512) => {
                let s = rsa::pss::Signature::try_from(sig).map_err(bad)?;
                match alg {
                    Alg::Ps256 => rsa::pss::VerifyingKey::<Sha256>::new(k.clone()).verify(msg, &s),
                    Alg::Ps384 => rsa::pss::VerifyingKey::<Sha384>::new(k.clone()).verify(msg, &s),
                    _ => rsa::pss::VerifyingKey::<Sha512>::new(k.clone()).verify(msg, &s),
                }
                .map_err(bad)
            }
            _ => err(format!("alg {alg} does not fit a {} key", self.describe())),
        }
    }

    /// A certificate signature (DER ECDSA or RSA PKCS#1 v1.5, SHA-2 only).
    fn verify_cert(
        &self,
        alg: &ObjectIdentifier,
        msg: &[u8],
        sig: &[u8],
        table: Option<&P256Key>,
    ) -> Result<(), NotaryError> {
        use p256::ecdsa::signature::Verifier as _;
        let bad = |e: p256::ecdsa::signature::Error| NotaryError(e.to_string());
        let ecdsa_hash = match *alg {
            OID_ECDSA_SHA256 => Some(256),
            OID_ECDSA_SHA384 => Some(384),
            OID_ECDSA_SHA512 => Some(512),
            _ => None,
        };
        let rsa_hash = match *alg {
            OID_RSA_SHA256 => Some(256),
            OID_RSA_SHA384 => Some(384),
            OID_RSA_SHA512 => Some(512),
            _ => None,
        };
        match self {
            KeyInfo::P256(_) | KeyInfo::P384(_) | KeyInfo::P521(_) => {
                let Some(h) = ecdsa_hash else {
                    return err(format!(
                        "signature algorithm {alg} is not ECDSA with SHA-256/384/512"
                    ));
                };
                use ecdsa_prehash::verify_prehashed;
                if let (KeyInfo::P256(k), 256) = (self, h) {
                    let s = p256::ecdsa::Signature::from_der(sig).map_err(bad)?;
                    return verify_p256(k, table, &Sha256::digest(msg).into(), &s);
                }
                let digest = match h {
                    256 => Sha256::digest(msg).to_vec(),
                    384 => Sha384::digest(msg).to_vec(),
                    _ => Sha512::digest(msg).to_vec(),
                };
                verify_prehashed(self, &digest, sig)
            }
            KeyInfo::Rsa(k) => {
                let Some(h) = rsa_hash else {
                    return err(format!(
                        "signature algorithm {alg} is not RSA PKCS#1 v1.5 with SHA-256/384/512"
                    ));
                };
                let s = rsa::pkcs1v15::Signature::try_from(sig).map_err(bad)?;
                match h {
                    256 => rsa::pkcs1v15::VerifyingKey::<Sha256>::new(k.clone()).verify(msg, &s),
                    384 => rsa::pkcs1v15::VerifyingKey::<Sha384>::new(k.clone()).verify(msg, &s),
                    _ => rsa::pkcs1v15::VerifyingKey::<Sha512>::new(k.clone()).verify(msg, &s),
                }
                .map_err(bad)
            }
        }
    }
}

/// ECDSA P-256 over a SHA-256 digest: with the pinned key's tables when there are, else with
/// the generator's table only (`p256_fast`, checked against `p256`'s verifier by its tests).
fn verify_p256(
    key: &p256::ecdsa::VerifyingKey,
    table: Option<&P256Key>,
    digest: &[u8; 32],
    sig: &p256::ecdsa::Signature,
) -> Result<(), NotaryError> {
    let ok = match table {
        Some(t) if t.verifying_key() == key => t.verify_digest(digest, sig),
        _ => crate::p256_fast::verify_unpinned(key, digest, sig),
    };
    if ok {
        Ok(())
    } else {
        err("signature verification failed")
    }
}

/// ECDSA over a prehashed message: a CA may sign with a hash other than its curve's (a P-384
/// root signing with SHA-256 is common).
mod ecdsa_prehash {
    use super::{KeyInfo, NotaryError};
    use p256::ecdsa::signature::hazmat::PrehashVerifier as _;

    pub(super) fn verify_prehashed(
        key: &KeyInfo,
        digest: &[u8],
        der_sig: &[u8],
    ) -> Result<(), NotaryError> {
        let bad = |e: p256::ecdsa::signature::Error| NotaryError(e.to_string());
        match key {
            KeyInfo::P256(k) => {
                let s = p256::ecdsa::Signature::from_der(der_sig).map_err(bad)?;
                k.verify_prehash(digest, &s).map_err(bad)
            }
            KeyInfo::P384(k) => {
                let s = p384::ecdsa::Signature::from_der(der_sig).map_err(bad)?;
                k.verify_prehash(digest, &s).map_err(bad)
            }
            KeyInfo::P521(k) => {
                let s = p521::ecdsa::Signature::from_der(der_sig).map_err(bad)?;
                k.verify_prehash(digest, &s).map_err(bad)
            }
            KeyInfo::Rsa(_) => Err(NotaryError("not an EC key".into())),
        }
    }
}

fn attribute_name(oid: &ObjectIdentifier) -> String {
    const NAMES: [(&str, &str); 12] = [
        ("2.5.4.3", "CN"),
        ("2.5.4.6", "C"),
        ("2.5.4.7", "L"),
        ("2.5.4.8", "ST"),
        ("2.5.4.10", "O"),
        ("2.5.4.11", "OU"),
        ("2.5.4.5", "SERIALNUMBER"),
        ("2.5.4.9", "STREET"),
        ("2.5.4.17", "POSTALCODE"),
        ("0.9.2342.19200300.100.1.25", "DC"),
        ("0.9.2342.19200300.100.1.1", "UID"),
        ("1.2.840.113549.1.9.1", "EMAILADDRESS"),
    ];
    let dotted = oid.to_string();
    NAMES
        .iter()
        .find(|(o, _)| *o == dotted)
        .map(|(_, n)| (*n).to_owned())
        .unwrap_or(dotted)
}

fn subject_attributes(cert: &Certificate) -> Vec<Attribute> {
    let mut out = Vec::new();
    for rdn in &cert.tbs_certificate.subject.0 {
        for atv in rdn.0.iter() {
            let value = String::from_utf8_lossy(atv.value.value()).into_owned();
            out.push((attribute_name(&atv.oid), value));
        }
    }
    out
}

/// A trust store: the certificates (roots or intermediates) a node trusts for Notary
/// signatures, read from a PEM file of one or more certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustStore {
    /// SHA-256 of each certificate's DER.
    pub certificates: BTreeSet<[u8; 32]>,
    /// Each certificate's subject, for people.
    pub subjects: Vec<String>,
    /// The P-256 keys of the store's certificates, by certificate digest, with their
    /// precomputed multiples (built on first use, shared by clones).
    p256: BTreeMap<[u8; 32], P256Key>,
}

impl TrustStore {
    /// Reads every `CERTIFICATE` block of a PEM text; at least one.
    pub fn from_pem(text: &str) -> Result<TrustStore, NotaryError> {
        use der::DecodePem as _;
        let mut store = TrustStore {
            certificates: BTreeSet::new(),
            subjects: Vec::new(),
            p256: BTreeMap::new(),
        };
        const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
        const END: &str = "-----END CERTIFICATE-----";
        let mut rest = text;
        while let Some(start) = rest.find(BEGIN) {
            let Some(len) = rest[start..].find(END) else {
                return err("a certificate block has no END line");
            };
            let block = &rest[start..start + len + END.len()];
            let cert = Certificate::from_pem(block.as_bytes()).map_err(|e| {
                NotaryError(format!("certificate {}: {e}", store.subjects.len() + 1))
            })?;
            let der = cert
                .to_der()
                .map_err(|e| NotaryError(format!("certificate re-encoding: {e}")))?;
            let sha256: [u8; 32] = Sha256::digest(&der).into();
            if let Ok(KeyInfo::P256(k)) = KeyInfo::of(&cert) {
                store.p256.insert(sha256, P256Key::new(k));
            }
            store.certificates.insert(sha256);
            store
                .subjects
                .push(cert.tbs_certificate.subject.to_string());
            rest = &rest[start + len + END.len()..];
        }
        if store.certificates.is_empty() {
            return err("no PEM CERTIFICATE block");
        }
        Ok(store)
    }

    /// [`verify_envelope`] for a node that trusts this store: the same checks, except that a
    /// root byte-equal to a certificate of this store is not asked for its self-signature (the
    /// store pins its bytes), and the keys of the store's P-256 certificates verify with
    /// precomputed tables. Whether the result is anchored is still [`TrustStore::anchors`]'s
    /// answer.
    pub fn verify_envelope(
        &self,
        envelope: &[u8],
        target: &TargetDescriptor,
        now: OffsetDateTime,
    ) -> Result<VerifiedSignature, NotaryError> {
        verify_inner(envelope, target, now, Some(self))
    }

    /// One store holding the certificates of all `stores` (a node verifies each envelope once
    /// against the union of its policy's stores; each rule then asks its own store
    /// [`TrustStore::anchors`]).
    pub fn union<'a>(stores: impl IntoIterator<Item = &'a TrustStore>) -> TrustStore {
        let mut out = TrustStore {
            certificates: BTreeSet::new(),
            subjects: Vec::new(),
            p256: BTreeMap::new(),
        };
        for s in stores {
            out.certificates.extend(s.certificates.iter().copied());
            out.subjects.extend(s.subjects.iter().cloned());
            out.p256.extend(s.p256.iter().map(|(k, v)| (*k, v.clone())));
        }
        out
    }

    /// Whether a certificate of the signature's chain is in this store.
    pub fn anchors(&self, sig: &VerifiedSignature) -> bool {
        sig.chain_sha256
            .iter()
            .any(|c| self.certificates.contains(c))
    }
}

/// A trusted identity, trust-policy style: `*` or `x509.subject: CN=...,O=...`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Identity {
    /// Any signing certificate that chains to the trust store.
    Any,
    /// These subject attributes, each present with this value in the leaf's subject.
    Subject(Vec<Attribute>),
}

impl Identity {
    /// Parses `*` or `x509.subject: A=v, B=w` (RDNs separated by `,`; `\,`, `\;`, `\\` and
    /// `\ ` escape). An attribute named twice is refused.
    pub fn parse(text: &str) -> Result<Identity, NotaryError> {
        let text = text.trim();
        if text == "*" {
            return Ok(Identity::Any);
        }
        let Some(dn) = text.strip_prefix("x509.subject:") else {
            return err(format!(
                "identity `{text}` is neither `*` nor `x509.subject: ...`"
            ));
        };
        // An escaped space is kept through the trimming as a placeholder.
        const SPACE: char = '\u{0}';
        let mut parts = Vec::new();
        let mut cur = String::new();
        let mut chars = dn.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(' ') => cur.push(SPACE),
                    Some(e) => cur.push(e),
                    None => return err("identity ends in a lone backslash"),
                },
                ',' => parts.push(std::mem::take(&mut cur)),
                SPACE => return err("identity holds a NUL character"),
                c => cur.push(c),
            }
        }
        parts.push(cur);
        let mut attrs: Vec<Attribute> = Vec::new();
        for part in parts {
            let Some((k, v)) = part.split_once('=') else {
                return err(format!("`{}` is not ATTRIBUTE=value", part.trim()));
            };
            let k = k.trim().to_ascii_uppercase();
            let k = if k == "S" { "ST".to_owned() } else { k };
            let v = v.trim().replace(SPACE, " ");
            if k.is_empty() || v.is_empty() {
                return err(format!("`{}` has an empty name or value", part.trim()));
            }
            if attrs.iter().any(|(n, _)| *n == k) {
                return err(format!("attribute {k} is named twice"));
            }
            attrs.push((k, v));
        }
        Ok(Identity::Subject(attrs))
    }

    /// Whether a leaf subject satisfies this identity: every attribute of the identity is in
    /// the subject with the same value (a set comparison, as the trust policy specifies; the
    /// subject may hold more attributes).
    pub fn matches(&self, subject: &[Attribute]) -> bool {
        match self {
            Identity::Any => true,
            Identity::Subject(want) => want.iter().all(|(k, v)| {
                let mut found = subject.iter().filter(|(sk, _)| sk == k);
                // An attribute the subject holds twice is ambiguous: no match.
                matches!((found.next(), found.next()), (Some((_, sv)), None) if sv == v)
            }),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Any => f.write_str("*"),
            Identity::Subject(attrs) => {
                f.write_str("x509.subject: ")?;
                for (i, (k, v)) in attrs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}=")?;
                    for c in v.chars() {
                        if matches!(c, ',' | ';' | '\\') {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_parse_and_match_as_attribute_sets() {
        let id = Identity::parse("x509.subject: CN=Reviewers, O=Hospital A").unwrap();
        let subject = |pairs: &[(&str, &str)]| -> Vec<Attribute> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert!(id.matches(&subject(&[("O", "Hospital A"), ("CN", "Reviewers")])));
        assert!(id.matches(&subject(&[
            ("C", "NL"),
            ("O", "Hospital A"),
            ("CN", "Reviewers")
        ])));
        assert!(!id.matches(&subject(&[("CN", "Reviewers")])));
        assert!(!id.matches(&subject(&[("O", "Hospital B"), ("CN", "Reviewers")])));
        assert!(!id.matches(&subject(&[
            ("O", "Hospital A"),
            ("O", "Evil"),
            ("CN", "Reviewers")
        ])));
        let esc = Identity::parse(r"x509.subject: O=A\, B, CN=x").unwrap();
        assert_eq!(
            esc,
            Identity::Subject(vec![("O".into(), "A, B".into()), ("CN".into(), "x".into())])
        );
        assert_eq!(Identity::parse("*").unwrap(), Identity::Any);
        assert!(Identity::parse("CN=x").is_err());
        assert!(Identity::parse("x509.subject: CN=x, CN=y").is_err());
        assert!(Identity::parse("x509.subject: CN").is_err());
        assert_eq!(id.to_string(), "x509.subject: CN=Reviewers, O=Hospital A");
    }

    #[test]
    fn malformed_envelopes_are_refused_with_reasons() {
        let target = TargetDescriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: format!("sha256:{}", "0".repeat(64)),
            size: 1,
        };
        let now = OffsetDateTime::now_utc();
        let e = verify_envelope(b"{}", &target, now).unwrap_err();
        assert!(e.0.contains("not a flattened JWS"), "{e}");
        let hdr = |h: serde_json::Value| {
            serde_json::json!({
                "payload": "e30", "protected": URL_SAFE_NO_PAD.encode(h.to_string()),
                "header": {"x5c": []}, "signature": ""
            })
            .to_string()
        };
        let e = verify_envelope(
            hdr(serde_json::json!({"alg": "none"})).as_bytes(),
            &target,
            now,
        )
        .unwrap_err();
        assert!(e.0.contains("alg `none`"), "{e}");
        let e = verify_envelope(
            hdr(serde_json::json!({"alg": "HS256"})).as_bytes(),
            &target,
            now,
        )
        .unwrap_err();
        assert!(e.0.contains("alg `HS256`"), "{e}");
    }
}
