//! Public keys: ECDSA P-256 and Ed25519, read from PEM SPKI (`-----BEGIN PUBLIC KEY-----`).
//!
//! A key is identified by its public key material: [`KeyId`] is the sha256 of the DER
//! SubjectPublicKeyInfo, so the same key read from two files is one key.

use std::fmt;

use p256::pkcs8::DecodePublicKey as _;
use sha2::Digest as _;
use spki::EncodePublicKey as _;

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM public key: {0}")]
    Pem(String),
    #[error("unsupported public key algorithm: {0}; use ECDSA P-256 or Ed25519")]
    Unsupported(String),
    #[error("malformed public key: {0}")]
    Malformed(String),
}

/// The identity of a public key: sha256 over its DER SubjectPublicKeyInfo.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 32]);

impl KeyId {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", &hex::encode(self.0)[..16])
    }
}

/// A verifying key.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    EcdsaP256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.algorithm(), self.id())
    }
}

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_ED25519: &str = "1.3.101.112";

impl PublicKey {
    /// Reads one PEM `PUBLIC KEY` block (SPKI).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) = pem_rfc7468_decode(pem).map_err(|e| KeyError::Pem(e.to_string()))?;
        if label != "PUBLIC KEY" {
            return Err(KeyError::Pem(format!(
                "found a `{label}` block; expected `PUBLIC KEY`"
            )));
        }
        Self::from_spki_der(&der)
    }

    /// Reads a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let info = spki::SubjectPublicKeyInfoRef::try_from(der)
            .map_err(|e| KeyError::Malformed(e.to_string()))?;
        let oid = info.algorithm.oid.to_string();
        match oid.as_str() {
            OID_EC_PUBLIC_KEY => {
                let curve = info
                    .algorithm
                    .parameters_oid()
                    .map(|o| o.to_string())
                    .unwrap_or_default();
                if curve != OID_P256 {
                    return Err(KeyError::Unsupported(format!("EC curve {curve}")));
                }
                p256::ecdsa::VerifyingKey::from_public_key_der(der)
                    .map(PublicKey::EcdsaP256)
                    .map_err(|e| KeyError::Malformed(e.to_string()))
            }
            OID_ED25519 => {
                let bytes: [u8; 32] = info
                    .subject_public_key
                    .as_bytes()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| KeyError::Malformed("Ed25519 key is not 32 bytes".into()))?;
                ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                    .map(PublicKey::Ed25519)
                    .map_err(|e| KeyError::Malformed(e.to_string()))
            }
            other => Err(KeyError::Unsupported(format!("algorithm OID {other}"))),
        }
    }

    /// DER SubjectPublicKeyInfo.
    pub fn to_spki_der(&self) -> Vec<u8> {
        let doc = match self {
            PublicKey::EcdsaP256(k) => k.to_public_key_der(),
            PublicKey::Ed25519(k) => k.to_public_key_der(),
        };
        // Encoding a valid in-memory key cannot fail; an empty vector would never match a pin.
        doc.map(|d| d.as_bytes().to_vec()).unwrap_or_default()
    }

    /// PEM SPKI (`-----BEGIN PUBLIC KEY-----`).
    pub fn to_pem(&self) -> String {
        pem_rfc7468_encode("PUBLIC KEY", &self.to_spki_der())
    }

    /// The key's identity: sha256 of its DER SPKI.
    pub fn id(&self) -> KeyId {
        KeyId(sha2::Sha256::digest(self.to_spki_der()).into())
    }

    /// `ecdsa-p256` or `ed25519`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            PublicKey::EcdsaP256(_) => "ecdsa-p256",
            PublicKey::Ed25519(_) => "ed25519",
        }
    }
}

fn pem_rfc7468_decode(pem: &str) -> Result<(String, Vec<u8>), pkcs8::der::pem::Error> {
    let (label, der) = pkcs8::der::pem::decode_vec(pem.trim().as_bytes())?;
    Ok((label.to_owned(), der))
}

fn pem_rfc7468_encode(label: &str, der: &[u8]) -> String {
    pkcs8::der::pem::encode_string(label, pkcs8::der::pem::LineEnding::LF, der).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p256_key(seed: u8) -> PublicKey {
        let sk = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
        PublicKey::EcdsaP256(*sk.verifying_key())
    }

    fn ed_key(seed: u8) -> PublicKey {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        PublicKey::Ed25519(sk.verifying_key())
    }

    #[test]
    fn pem_round_trip_keeps_identity() {
        for key in [p256_key(7), ed_key(7)] {
            let pem = key.to_pem();
            assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
            let back = PublicKey::from_pem(&pem).unwrap();
            assert_eq!(back, key);
            assert_eq!(back.id(), key.id());
        }
        assert_ne!(p256_key(7).id(), p256_key(8).id());
        assert_ne!(ed_key(7).id(), ed_key(8).id());
    }

    #[test]
    fn identity_ignores_pem_formatting() {
        let key = p256_key(3);
        let pem = format!("\n\n{}\n", key.to_pem().replace('\n', "\r\n"));
        assert_eq!(PublicKey::from_pem(&pem).unwrap().id(), key.id());
    }

    #[test]
    fn refuses_what_is_not_a_supported_public_key() {
        assert!(matches!(
            PublicKey::from_pem("hello"),
            Err(KeyError::Pem(_))
        ));
        let private = pem_rfc7468_encode("PRIVATE KEY", &[1, 2, 3]);
        let e = PublicKey::from_pem(&private).unwrap_err();
        assert!(e.to_string().contains("expected `PUBLIC KEY`"), "{e}");
        let garbage = pem_rfc7468_encode("PUBLIC KEY", &[0x30, 0x03, 1, 2, 3]);
        assert!(matches!(
            PublicKey::from_pem(&garbage),
            Err(KeyError::Malformed(_))
        ));
    }
}
