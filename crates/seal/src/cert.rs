//! Researcher certificates: an organization vouches that a user of it holds an X25519 key.
//!
//! A researcher seals every input with a personal X25519 key (HPKE auth mode), and results come
//! back sealed to that key, so no researcher needs the organization's own decryption key. The
//! organization certifies the researcher's public key with its **certification key** (a
//! `warden-trust` signing key, Ed25519 or ECDSA P-256), which nodes and other organizations pin
//! by key ID (sha256 of its DER SubjectPublicKeyInfo). A node takes the requester's organization
//! and user name from a certificate that verifies against a pinned certification key, never from
//! the server.
//!
//! # File format
//!
//! ```json
//! {"statement": "<base64 of the statement JSON>",
//!  "certifier": "<base64 of the certification key's DER SubjectPublicKeyInfo>",
//!  "signature": "<base64 signature>"}
//! ```
//!
//! The statement is compact JSON (`type`, `organization`, `user`, `key`, `not_before`,
//! `not_after`, `serial`); the signature is over the DSSE pre-authentication encoding of
//! [`PAYLOAD_TYPE`] and the exact statement bytes, so a signature for anything else (a cosign
//! payload, an attestation) never verifies as a certificate.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use warden_trust::{KeyId, SigningKey};

use crate::PublicKey;

/// The DSSE payload type a certificate's signature covers.
pub const PAYLOAD_TYPE: &str = "application/vnd.warden.researcher-certificate.v1+json";
/// The statement's `type`.
pub const STATEMENT_TYPE: &str = "warden/researcher-certificate/v1";
/// Longest validity a certificate may claim: 400 days.
pub const MAX_VALIDITY_SECS: i64 = 400 * 86_400;
/// Clock difference tolerated when a certificate's validity is checked.
pub const CLOCK_SKEW_SECS: i64 = 300;
/// Largest certificate file accepted.
pub const MAX_CERTIFICATE_BYTES: usize = 8 * 1024;
/// Longest organization or user name in a statement.
const MAX_NAME: usize = 200;

/// Why a certificate is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("not a Warden researcher certificate: {0}")]
    Malformed(String),
    #[error(
        "the certificate of `{user}` is signed by certification key {got}, but the pinned \
         certification key of organization `{organization}` is {pinned}"
    )]
    WrongCertifier {
        organization: String,
        user: String,
        pinned: String,
        got: String,
    },
    #[error(
        "organization `{0}` has no pinned certification key here, so none of its researchers \
         can be proven; add it under [certifiers] after checking it with the organization"
    )]
    NotPinned(String),
    #[error("the certificate's signature does not verify against its certification key")]
    BadSignature,
    #[error("the certificate of `{user}` of `{organization}` is not valid now: {why}")]
    NotValid {
        organization: String,
        user: String,
        why: String,
    },
    #[error("the certificate of `{user}` of `{organization}` (serial {serial}) is revoked here")]
    Revoked {
        organization: String,
        user: String,
        serial: String,
    },
}

/// What an organization certifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateStatement {
    #[serde(rename = "type")]
    pub kind: String,
    /// The certifying organization's name.
    pub organization: String,
    /// The researcher's user name at the server.
    pub user: String,
    /// The researcher's X25519 public key, standard base64 of 32 bytes.
    pub key: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// 32 lower-case hex characters, random; what a revocation names.
    pub serial: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificateFile {
    statement: String,
    certifier: String,
    signature: String,
}

/// A parsed (not yet verified) certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    statement_bytes: Vec<u8>,
    statement: CertificateStatement,
    key: PublicKey,
    certifier: warden_trust::PublicKey,
    signature: Vec<u8>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("organization", &self.statement.organization)
            .field("user", &self.statement.user)
            .field("serial", &self.statement.serial)
            .finish_non_exhaustive()
    }
}

fn random_serial() -> String {
    use rand_core::RngCore as _;
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn check_name(what: &str, s: &str) -> Result<(), CertError> {
    if s.is_empty() || s.len() > MAX_NAME || s.chars().any(char::is_control) {
        return Err(CertError::Malformed(format!(
            "the {what} must be 1 to {MAX_NAME} bytes without control characters"
        )));
    }
    Ok(())
}

impl Certificate {
    /// Certifies that `user` of `organization` holds `key`, valid from `not_before` for
    /// `validity_secs` (at most [`MAX_VALIDITY_SECS`]), signed by the organization's
    /// certification key.
    pub fn issue(
        certifier: &SigningKey,
        organization: &str,
        user: &str,
        key: &PublicKey,
        not_before: i64,
        validity_secs: i64,
    ) -> Result<Certificate, CertError> {
        check_name("organization name", organization)?;
        check_name("user name", user)?;
        if validity_secs <= 0 || validity_secs > MAX_VALIDITY_SECS {
            return Err(CertError::Malformed(format!(
                "a certificate is valid for 1 second to {} days",
                MAX_VALIDITY_SECS / 86_400
            )));
        }
        let statement = CertificateStatement {
            kind: STATEMENT_TYPE.to_owned(),
            organization: organization.to_owned(),
            user: user.to_owned(),
            key: key.to_base64(),
            not_before,
            not_after: not_before.saturating_add(validity_secs),
            serial: random_serial(),
        };
        let statement_bytes = serde_json::to_vec(&statement)
            .map_err(|e| CertError::Malformed(format!("cannot encode the statement: {e}")))?;
        let signature = certifier.sign(&warden_trust::dsse::pae(PAYLOAD_TYPE, &statement_bytes));
        Ok(Certificate {
            statement_bytes,
            statement,
            key: *key,
            certifier: certifier.public_key(),
            signature,
        })
    }

    /// Reads the JSON file form (size-capped, strict). Checks the form, not the signature.
    pub fn parse(bytes: &[u8]) -> Result<Certificate, CertError> {
        let bad = |why: String| CertError::Malformed(why);
        if bytes.len() > MAX_CERTIFICATE_BYTES {
            return Err(bad(format!(
                "{} bytes, more than the {MAX_CERTIFICATE_BYTES}-byte limit",
                bytes.len()
            )));
        }
        let file: CertificateFile =
            serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let b64 = |field: &str, s: &str| {
            STANDARD
                .decode(s.trim())
                .map_err(|e| bad(format!("{field} is not base64: {e}")))
        };
        let statement_bytes = b64("statement", &file.statement)?;
        let statement: CertificateStatement =
            serde_json::from_slice(&statement_bytes).map_err(|e| bad(format!("statement: {e}")))?;
        if statement.kind != STATEMENT_TYPE {
            return Err(bad(format!(
                "statement type `{}`, expected `{STATEMENT_TYPE}`",
                statement.kind.escape_debug()
            )));
        }
        check_name("organization name", &statement.organization)?;
        check_name("user name", &statement.user)?;
        if statement.serial.len() != 32
            || !statement
                .serial
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad("serial must be 32 lower-case hex characters".into()));
        }
        let key = PublicKey::from_base64(&statement.key).map_err(|e| bad(e.to_string()))?;
        let certifier = warden_trust::PublicKey::from_spki_der(&b64("certifier", &file.certifier)?)
            .map_err(|e| bad(format!("certifier: {e}")))?;
        let signature = b64("signature", &file.signature)?;
        Ok(Certificate {
            statement_bytes,
            statement,
            key,
            certifier,
            signature,
        })
    }

    /// The JSON file form.
    pub fn to_json(&self) -> Vec<u8> {
        let file = CertificateFile {
            statement: STANDARD.encode(&self.statement_bytes),
            certifier: STANDARD.encode(self.certifier.to_spki_der()),
            signature: STANDARD.encode(&self.signature),
        };
        // Three strings always serialise.
        serde_json::to_vec_pretty(&file).unwrap_or_default()
    }

    /// What the certificate claims (unverified until [`Certificate::verify`] says so).
    pub fn statement(&self) -> &CertificateStatement {
        &self.statement
    }

    /// The certified X25519 key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// The key ID of the certification key that signed it.
    pub fn certifier_id(&self) -> KeyId {
        self.certifier.id()
    }

    /// Verifies the certificate: signed by the certification key `certifiers` pins for the
    /// statement's organization, valid at `now` (Unix seconds, with [`CLOCK_SKEW_SECS`]), and
    /// its serial and key not in `revoked` (serials or `sha256:` key fingerprints).
    pub fn verify(
        &self,
        certifiers: &BTreeMap<String, KeyId>,
        revoked: &BTreeSet<String>,
        now: i64,
    ) -> Result<&CertificateStatement, CertError> {
        let s = &self.statement;
        let Some(pinned) = certifiers.get(&s.organization) else {
            return Err(CertError::NotPinned(s.organization.clone()));
        };
        let got = self.certifier.id();
        if got != *pinned {
            return Err(CertError::WrongCertifier {
                organization: s.organization.clone(),
                user: s.user.clone(),
                pinned: pinned.to_string(),
                got: got.to_string(),
            });
        }
        self.certifier
            .verify(
                &warden_trust::dsse::pae(PAYLOAD_TYPE, &self.statement_bytes),
                &self.signature,
            )
            .map_err(|_| CertError::BadSignature)?;
        let not_valid = |why: String| CertError::NotValid {
            organization: s.organization.clone(),
            user: s.user.clone(),
            why,
        };
        if s.not_after <= s.not_before || s.not_after - s.not_before > MAX_VALIDITY_SECS {
            return Err(not_valid(format!(
                "its validity is not between 1 second and {} days",
                MAX_VALIDITY_SECS / 86_400
            )));
        }
        if now + CLOCK_SKEW_SECS < s.not_before {
            return Err(not_valid(format!(
                "it is valid only from {} (Unix time; now {now})",
                s.not_before
            )));
        }
        if now - CLOCK_SKEW_SECS >= s.not_after {
            return Err(not_valid(format!(
                "it expired at {} (Unix time; now {now}); certify a new key",
                s.not_after
            )));
        }
        if revoked.contains(&s.serial) || revoked.contains(&self.key.fingerprint().to_string()) {
            return Err(CertError::Revoked {
                organization: s.organization.clone(),
                user: s.user.clone(),
                serial: s.serial.clone(),
            });
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_trust::KeyAlgorithm;

    fn pins(org: &str, k: &SigningKey) -> BTreeMap<String, KeyId> {
        BTreeMap::from([(org.to_owned(), k.public_key().id())])
    }

    #[test]
    fn a_certificate_round_trips_and_verifies_against_its_pin() {
        for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
            let ca = SigningKey::generate(alg).unwrap();
            let key = crate::SecretKey::generate().public_key();
            let c = Certificate::issue(&ca, "hospital-a", "rita", &key, 1000, 86_400).unwrap();
            let back = Certificate::parse(&c.to_json()).unwrap();
            assert_eq!(back, c);
            let s = back
                .verify(&pins("hospital-a", &ca), &BTreeSet::new(), 2000)
                .unwrap();
            assert_eq!(
                (s.organization.as_str(), s.user.as_str()),
                ("hospital-a", "rita")
            );
            assert_eq!(back.key(), &key);
        }
    }

    #[test]
    fn forged_expired_revoked_and_unpinned_certificates_are_refused() {
        let ca = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let other = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let key = crate::SecretKey::generate().public_key();
        let c = Certificate::issue(&ca, "hospital-a", "rita", &key, 1000, 86_400).unwrap();
        let none = BTreeSet::new();
        // Signed by a key that is not the pinned one.
        let forged = Certificate::issue(&other, "hospital-a", "rita", &key, 1000, 86_400).unwrap();
        assert!(matches!(
            forged.verify(&pins("hospital-a", &ca), &none, 2000),
            Err(CertError::WrongCertifier { .. })
        ));
        // Another organization's pin does not vouch for hospital-a.
        assert!(matches!(
            c.verify(&pins("hospital-b", &ca), &none, 2000),
            Err(CertError::NotPinned(_))
        ));
        // The statement rewritten (user renamed) under the original signature.
        let mut file: serde_json::Value = serde_json::from_slice(&c.to_json()).unwrap();
        let mut st = c.statement().clone();
        st.user = "mallory".into();
        file["statement"] = STANDARD.encode(serde_json::to_vec(&st).unwrap()).into();
        let tampered = Certificate::parse(&serde_json::to_vec(&file).unwrap()).unwrap();
        assert_eq!(
            tampered.verify(&pins("hospital-a", &ca), &none, 2000),
            Err(CertError::BadSignature)
        );
        // Too early, expired.
        assert!(matches!(
            c.verify(&pins("hospital-a", &ca), &none, 0),
            Err(CertError::NotValid { .. })
        ));
        let e = c
            .verify(
                &pins("hospital-a", &ca),
                &none,
                1000 + 86_400 + CLOCK_SKEW_SECS,
            )
            .unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
        // Revoked by serial and by key fingerprint.
        for r in [c.statement().serial.clone(), key.fingerprint().to_string()] {
            assert!(matches!(
                c.verify(&pins("hospital-a", &ca), &BTreeSet::from([r]), 2000),
                Err(CertError::Revoked { .. })
            ));
        }
        // Over-long validity cannot be issued.
        assert!(Certificate::issue(&ca, "a", "u", &key, 0, MAX_VALIDITY_SECS + 1).is_err());
        // Names with control characters cannot be certified.
        assert!(Certificate::issue(&ca, "a", "u\nv", &key, 0, 10).is_err());
    }

    #[test]
    fn key_ids_parse_back_from_their_display() {
        let ca = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let id = ca.public_key().id();
        assert_eq!(id.to_string().parse::<KeyId>().unwrap(), id);
        for bad in ["", "sha256:", "sha256:ZZ", "md5:00"] {
            assert!(bad.parse::<KeyId>().is_err(), "{bad}");
        }
        let upper = id.to_string().to_uppercase().replace("SHA256", "sha256");
        assert!(upper.parse::<KeyId>().is_err());
    }

    #[test]
    fn malformed_files_are_refused_with_a_reason() {
        for bad in [
            &b"not json"[..],
            br#"{"statement":"!!","certifier":"","signature":""}"#,
            br#"{"statement":"e30=","certifier":"","signature":"","extra":1}"#,
        ] {
            assert!(matches!(
                Certificate::parse(bad),
                Err(CertError::Malformed(_))
            ));
        }
        assert!(Certificate::parse(&vec![b' '; MAX_CERTIFICATE_BYTES + 1]).is_err());
    }
}
