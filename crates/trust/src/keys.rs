//! Keys: ECDSA P-256 and Ed25519.
//!
//! Public keys are read from PEM SPKI (`-----BEGIN PUBLIC KEY-----`). A key is identified by its
//! public key material: [`KeyId`] is the sha256 of the DER SubjectPublicKeyInfo, so the same key
//! read from two files is one key.
//!
//! Signatures, as cosign makes them:
//! - ECDSA P-256: ASN.1 DER `ECDSA-Sig-Value` over SHA-256 of the message. Verification accepts
//!   high-S signatures (Go's `crypto/ecdsa` produces them); signing produces low-S. The
//!   fixed-size `r || s` form is refused. Verification runs over tables of multiples of the
//!   generator and of the key (see [`P256Key`]).
//! - Ed25519: the raw 64-byte signature, verified strictly (canonical S, no small-order keys),
//!   in either RFC 8032 form: PureEdDSA over the message itself, which Warden signs, or
//!   Ed25519ph over its SHA-512 with an empty context, which cosign signs with Ed25519 keys since
//!   sigstore made it the default. The two forms are domain-separated (Ed25519ph signs under the
//!   `dom2` prefix), so a signature valid in one cannot be read in the other.
//!
//! Private keys live in [`SigningKey`]; their encrypted files are read and written by
//! [`crate::keyfile`].

use std::fmt;
use std::str::FromStr;

use p256::pkcs8::DecodePublicKey as _;
use pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use rand_core::{OsRng, RngCore as _};
use sha2::Digest as _;
use spki::EncodePublicKey as _;
use zeroize::Zeroizing;

use crate::P256Key;

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM public key: {0}")]
    Pem(String),
    #[error("unsupported public key algorithm: {0}; use ECDSA P-256 or Ed25519")]
    Unsupported(String),
    #[error("malformed public key: {0}")]
    Malformed(String),
    #[error("malformed private key: {0}")]
    MalformedPrivate(String),
    #[error("unknown key algorithm `{0}`; use ecdsa-p256 or ed25519")]
    UnknownAlgorithm(String),
    #[error("the operating system's random number generator failed: {0}; check /dev/urandom")]
    Random(String),
}

/// Why a signature did not verify under one key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("malformed {algorithm} signature: {why}")]
    Malformed {
        algorithm: &'static str,
        why: String,
    },
    #[error("the signature does not verify under key {0}")]
    Invalid(KeyId),
}

/// A signature algorithm Warden accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyAlgorithm {
    /// ECDSA over NIST P-256 with SHA-256, cosign's default.
    EcdsaP256,
    /// Ed25519 (PureEdDSA).
    Ed25519,
}

impl KeyAlgorithm {
    /// `ecdsa-p256` or `ed25519`.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ecdsa-p256" => Ok(KeyAlgorithm::EcdsaP256),
            "ed25519" => Ok(KeyAlgorithm::Ed25519),
            other => Err(KeyError::UnknownAlgorithm(other.escape_debug().to_string())),
        }
    }
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

impl FromStr for KeyId {
    type Err = KeyError;
    /// Reads `sha256:<64 lower-case hex>`, the form [`KeyId`] displays.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            KeyError::Malformed(format!(
                "`{}` is not a key ID; expected sha256:<64 lower-case hex>",
                s.escape_debug()
            ))
        };
        let hex_part = s.strip_prefix("sha256:").ok_or_else(bad)?;
        if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| bad())?;
        Ok(KeyId(out))
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
    EcdsaP256(P256Key),
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
                    .map(|k| PublicKey::EcdsaP256(k.into()))
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
            PublicKey::EcdsaP256(k) => k.verifying_key().to_public_key_der(),
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
        self.key_algorithm().name()
    }

    /// The key's algorithm.
    pub fn key_algorithm(&self) -> KeyAlgorithm {
        match self {
            PublicKey::EcdsaP256(_) => KeyAlgorithm::EcdsaP256,
            PublicKey::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    /// Verifies `signature` over exactly `message`. See the module documentation for the
    /// signature encodings.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        match self {
            PublicKey::EcdsaP256(key) => {
                let sig = parse_p256_der(signature)?;
                if key.verify(message, &sig) {
                    Ok(())
                } else {
                    Err(SignatureError::Invalid(self.id()))
                }
            }
            PublicKey::Ed25519(key) => {
                let sig = parse_ed25519(signature)?;
                let prehashed = || {
                    let digest = sha2::Sha512::new().chain_update(message);
                    key.verify_prehashed_strict(digest, None, &sig)
                };
                key.verify_strict(message, &sig)
                    .or_else(|_| prehashed())
                    .map_err(|_| SignatureError::Invalid(self.id()))
            }
        }
    }
}

/// Parses an ASN.1 DER ECDSA P-256 signature (strict DER, nothing trailing).
pub(crate) fn parse_p256_der(signature: &[u8]) -> Result<p256::ecdsa::Signature, SignatureError> {
    p256::ecdsa::Signature::from_der(signature).map_err(|_| SignatureError::Malformed {
        algorithm: "ecdsa-p256",
        why: format!(
            "expected ASN.1 DER of two integers, got {} bytes that are not",
            signature.len()
        ),
    })
}

/// Parses a raw 64-byte Ed25519 signature.
pub(crate) fn parse_ed25519(signature: &[u8]) -> Result<ed25519_dalek::Signature, SignatureError> {
    ed25519_dalek::Signature::from_slice(signature).map_err(|_| SignatureError::Malformed {
        algorithm: "ed25519",
        why: format!("expected 64 bytes, got {}", signature.len()),
    })
}

/// A private signing key. Its secret is wiped from memory when it is dropped.
pub enum SigningKey {
    EcdsaP256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let public = self.public_key();
        write!(f, "SigningKey({} {})", public.algorithm(), public.id())
    }
}

/// Attempts at drawing a valid P-256 scalar before giving up (each fails with probability
/// about 2^-32).
const P256_DRAWS: usize = 8;

impl SigningKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        match algorithm {
            KeyAlgorithm::EcdsaP256 => {
                for _ in 0..P256_DRAWS {
                    fill_random(seed.as_mut())?;
                    if let Ok(k) = p256::ecdsa::SigningKey::from_slice(seed.as_ref()) {
                        return Ok(SigningKey::EcdsaP256(k));
                    }
                }
                Err(KeyError::Random(
                    "no valid P-256 scalar drawn; the generator is not random".into(),
                ))
            }
            KeyAlgorithm::Ed25519 => {
                fill_random(seed.as_mut())?;
                Ok(SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(
                    &seed,
                )))
            }
        }
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self {
            SigningKey::EcdsaP256(_) => KeyAlgorithm::EcdsaP256,
            SigningKey::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    /// Signs `message`: ECDSA P-256 returns DER (deterministic, RFC 6979, low S), Ed25519 the
    /// raw 64 bytes.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer as _;
        match self {
            SigningKey::EcdsaP256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(message);
                sig.to_der().as_bytes().to_vec()
            }
            SigningKey::Ed25519(k) => k.sign(message).to_bytes().to_vec(),
        }
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        match self {
            SigningKey::EcdsaP256(k) => PublicKey::EcdsaP256((*k.verifying_key()).into()),
            SigningKey::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
        }
    }

    /// Reads a DER PKCS#8 `PrivateKeyInfo` (or `OneAsymmetricKey`) of either algorithm.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let bad = |e: String| KeyError::MalformedPrivate(e);
        let info = pkcs8::PrivateKeyInfo::try_from(der).map_err(|e| bad(e.to_string()))?;
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
                p256::ecdsa::SigningKey::from_pkcs8_der(der)
                    .map(SigningKey::EcdsaP256)
                    .map_err(|e| bad(e.to_string()))
            }
            OID_ED25519 => ed25519_dalek::SigningKey::from_pkcs8_der(der)
                .map(SigningKey::Ed25519)
                .map_err(|e| bad(e.to_string())),
            other => Err(KeyError::Unsupported(format!("algorithm OID {other}"))),
        }
    }

    /// DER PKCS#8, as Go's `x509.MarshalPKCS8PrivateKey` writes it: for P-256 an `ECPrivateKey`
    /// with the public key, for Ed25519 version 1 without the public key.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let doc = match self {
            SigningKey::EcdsaP256(k) => k.to_pkcs8_der(),
            SigningKey::Ed25519(k) => ed25519_dalek::pkcs8::KeypairBytes {
                secret_key: k.to_bytes(),
                public_key: None,
            }
            .to_pkcs8_der(),
        }
        .map_err(|e| KeyError::MalformedPrivate(e.to_string()))?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// Reads an encrypted private key file (cosign's `ENCRYPTED COSIGN PRIVATE KEY` or
    /// `ENCRYPTED SIGSTORE PRIVATE KEY`, or Warden's `ENCRYPTED WARDEN PRIVATE KEY`).
    pub fn from_encrypted_pem(
        pem: &str,
        password: &[u8],
    ) -> Result<Self, crate::keyfile::KeyFileError> {
        let file = crate::keyfile::EncryptedKeyFile::from_pem(pem)?;
        let der = file.decrypt(password)?;
        Ok(SigningKey::from_pkcs8_der(&der)?)
    }

    /// Writes this key encrypted under `password` with cosign's default scrypt parameters:
    /// P-256 keys as `ENCRYPTED COSIGN PRIVATE KEY` (so cosign reads them), Ed25519 keys as
    /// `ENCRYPTED WARDEN PRIVATE KEY` (cosign would sign with Ed25519ph). Refuses an empty
    /// password.
    pub fn to_encrypted_pem(
        &self,
        password: &[u8],
    ) -> Result<String, crate::keyfile::KeyFileError> {
        self.to_encrypted_pem_with(password, crate::keyfile::ScryptParams::COSIGN_DEFAULT)
    }

    /// [`SigningKey::to_encrypted_pem`] with chosen scrypt parameters.
    pub fn to_encrypted_pem_with(
        &self,
        password: &[u8],
        params: crate::keyfile::ScryptParams,
    ) -> Result<String, crate::keyfile::KeyFileError> {
        let label = match self {
            SigningKey::EcdsaP256(_) => crate::keyfile::COSIGN_LABEL,
            SigningKey::Ed25519(_) => crate::keyfile::WARDEN_LABEL,
        };
        let der = self.to_pkcs8_der()?;
        let file = crate::keyfile::EncryptedKeyFile::encrypt(label, &der, password, params)?;
        Ok(file.to_pem())
    }
}

pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), KeyError> {
    OsRng
        .try_fill_bytes(buf)
        .map_err(|e| KeyError::Random(e.to_string()))
}

pub(crate) fn pem_rfc7468_decode(pem: &str) -> Result<(String, Vec<u8>), der::pem::Error> {
    let (label, der) = der::pem::decode_vec(pem.trim().as_bytes())?;
    Ok((label.to_owned(), der))
}

pub(crate) fn pem_rfc7468_encode(label: &str, der: &[u8]) -> String {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p256_key(seed: u8) -> PublicKey {
        let sk = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
        PublicKey::EcdsaP256((*sk.verifying_key()).into())
    }

    fn ed_key(seed: u8) -> PublicKey {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        PublicKey::Ed25519(sk.verifying_key())
    }

    /// RFC 8032 section 7.3, the Ed25519ph test vector ("abc"), and pure signatures with the
    /// same key.
    #[test]
    fn ed25519_verifies_both_rfc8032_forms_and_nothing_else() {
        let secret: [u8; 32] =
            hex::decode("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42")
                .unwrap()
                .try_into()
                .unwrap();
        let public: [u8; 32] =
            hex::decode("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf")
                .unwrap()
                .try_into()
                .unwrap();
        let ph_signature = hex::decode(
            "98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae41\
             31f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406",
        )
        .unwrap();
        let key = PublicKey::Ed25519(ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap());
        key.verify(b"abc", &ph_signature).unwrap();
        assert!(key.verify(b"abd", &ph_signature).is_err());

        let signer = SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&secret));
        assert_eq!(signer.public_key(), key);
        let pure = signer.sign(b"abc");
        assert_ne!(pure, ph_signature);
        key.verify(b"abc", &pure).unwrap();
        assert!(key.verify(b"abd", &pure).is_err());

        // Ed25519ph under a context is another message: refused.
        let SigningKey::Ed25519(dalek) = &signer else {
            unreachable!()
        };
        let with_context = dalek
            .sign_prehashed(sha2::Sha512::new().chain_update(b"abc"), Some(b"warden"))
            .unwrap();
        assert!(key.verify(b"abc", &with_context.to_bytes()).is_err());
        // Another key refuses both forms.
        assert!(ed_key(9).verify(b"abc", &ph_signature).is_err());
        assert!(ed_key(9).verify(b"abc", &pure).is_err());
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
