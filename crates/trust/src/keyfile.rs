//! Encrypted private key files, in cosign's format.
//!
//! A key file is one PEM block whose body is this JSON (byte strings are standard base64 with
//! padding, as Go's `encoding/json` writes `[]byte`):
//!
//! ```json
//! {"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"<32 bytes>"},
//!  "cipher":{"name":"nacl/secretbox","nonce":"<24 bytes>"},
//!  "ciphertext":"<secretbox(tag || encrypted PKCS#8 DER)>"}
//! ```
//!
//! The secretbox key is `scrypt(password, salt, N, r, p, 32)`; the plaintext is the DER PKCS#8
//! of the private key. This is go-securesystemslib's `encrypted` package, which cosign uses.
//!
//! Labels:
//! - `ENCRYPTED COSIGN PRIVATE KEY` and `ENCRYPTED SIGSTORE PRIVATE KEY`: cosign's; Warden reads
//!   both and writes the first for P-256 keys, which every cosign version reads.
//! - `ENCRYPTED WARDEN PRIVATE KEY`: Warden's own, the same envelope around PKCS#8 of either
//!   algorithm. Warden writes Ed25519 keys with it, because cosign would sign with an Ed25519
//!   key using Ed25519ph, which Warden does not verify.
//!
//! Reading is bounded: the file, the ciphertext and the scrypt cost are capped (see
//! [`MAX_SCRYPT_COST`]) so that a hostile key file cannot cost minutes or gigabytes.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use crypto_secretbox::aead::{Aead as _, KeyInit as _};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keys::{KeyError, fill_random, pem_rfc7468_decode, pem_rfc7468_encode};

/// cosign's original label.
pub const COSIGN_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// The label cosign 2.x writes by default.
pub const SIGSTORE_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// Warden's label, for keys of either algorithm.
pub const WARDEN_LABEL: &str = "ENCRYPTED WARDEN PRIVATE KEY";

/// Largest key file read, in bytes.
pub const MAX_KEY_FILE_LEN: usize = 16 * 1024;
/// Largest scrypt cost accepted when reading, as `N * r * p`. It bounds memory to
/// `128 * N * r` bytes (128 MiB) and time to about 4 times cosign's default.
pub const MAX_SCRYPT_COST: u64 = 1 << 20;
/// Salt lengths accepted when reading (cosign writes 32 bytes).
const SALT_LEN_RANGE: std::ops::RangeInclusive<usize> = 16..=64;
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;
const KDF_NAME: &str = "scrypt";
const CIPHER_NAME: &str = "nacl/secretbox";

/// Why a key file could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    #[error("not a PEM key file: {0}")]
    Pem(String),
    #[error(
        "unsupported key file label `{0}`; expected `{COSIGN_LABEL}`, `{SIGSTORE_LABEL}` or `{WARDEN_LABEL}`"
    )]
    Label(String),
    #[error("key file is {len} bytes, more than the {max} accepted; is this a key file?")]
    TooLarge { len: usize, max: usize },
    #[error("malformed encrypted key envelope: {0}")]
    Envelope(String),
    #[error("unsupported {what} `{name}` in key file; expected `{expected}`")]
    Unsupported {
        what: &'static str,
        name: String,
        expected: &'static str,
    },
    #[error("invalid scrypt parameters in key file: {0}")]
    Params(String),
    #[error(
        "scrypt cost N*r*p = {cost} in key file is above the {max} accepted; re-encrypt the key with cosign's defaults (N=32768, r=8, p=1)"
    )]
    TooExpensive { cost: u64, max: u64 },
    #[error("wrong password for this key file, or the file is corrupted")]
    WrongPassword,
    #[error("refusing an empty password; choose a non-empty one")]
    EmptyPassword,
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// scrypt parameters: `N = 2^log_n`, `r`, `p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScryptParams {
    pub log_n: u8,
    pub r: u32,
    pub p: u32,
}

impl ScryptParams {
    /// cosign's (go-securesystemslib's "legacy") default: N=32768, r=8, p=1.
    pub const COSIGN_DEFAULT: ScryptParams = ScryptParams {
        log_n: 15,
        r: 8,
        p: 1,
    };

    /// `N * r * p`, the work factor.
    pub fn cost(&self) -> u64 {
        (1u64 << self.log_n.min(63))
            .saturating_mul(u64::from(self.r))
            .saturating_mul(u64::from(self.p))
    }

    fn check(&self) -> Result<(), KeyFileError> {
        let cost = self.cost();
        if cost > MAX_SCRYPT_COST {
            return Err(KeyFileError::TooExpensive {
                cost,
                max: MAX_SCRYPT_COST,
            });
        }
        if self.log_n == 0 || self.r == 0 || self.p == 0 {
            return Err(KeyFileError::Params(format!(
                "N=2^{}, r={}, p={}: N must be a power of two above 1, r and p positive",
                self.log_n, self.r, self.p
            )));
        }
        Ok(())
    }

    fn derive(
        &self,
        password: &[u8],
        salt: &[u8],
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyFileError> {
        self.check()?;
        let params = scrypt::Params::new(self.log_n, self.r, self.p, KEY_LEN)
            .map_err(|e| KeyFileError::Params(e.to_string()))?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        scrypt::scrypt(password, salt, &params, key.as_mut())
            .map_err(|e| KeyFileError::Params(e.to_string()))?;
        Ok(key)
    }
}

/// A parsed, still encrypted key file.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedKeyFile {
    label: String,
    params: ScryptParams,
    salt: Vec<u8>,
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
}

impl fmt::Debug for EncryptedKeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedKeyFile")
            .field("label", &self.label)
            .field("params", &self.params)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kdf {
    name: String,
    params: KdfParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cipher {
    name: String,
    nonce: String,
}

impl EncryptedKeyFile {
    /// Parses a PEM key file without decrypting it. Checks the label, the envelope, the
    /// algorithm names and that the scrypt cost is within [`MAX_SCRYPT_COST`].
    pub fn from_pem(pem: &str) -> Result<Self, KeyFileError> {
        if pem.len() > MAX_KEY_FILE_LEN {
            return Err(KeyFileError::TooLarge {
                len: pem.len(),
                max: MAX_KEY_FILE_LEN,
            });
        }
        let (label, body) =
            pem_rfc7468_decode(pem).map_err(|e| KeyFileError::Pem(e.to_string()))?;
        if ![COSIGN_LABEL, SIGSTORE_LABEL, WARDEN_LABEL].contains(&label.as_str()) {
            return Err(KeyFileError::Label(label.escape_debug().to_string()));
        }
        let env: Envelope =
            serde_json::from_slice(&body).map_err(|e| KeyFileError::Envelope(e.to_string()))?;
        if env.kdf.name != KDF_NAME {
            return Err(KeyFileError::Unsupported {
                what: "key derivation",
                name: env.kdf.name.escape_debug().to_string(),
                expected: KDF_NAME,
            });
        }
        if env.cipher.name != CIPHER_NAME {
            return Err(KeyFileError::Unsupported {
                what: "cipher",
                name: env.cipher.name.escape_debug().to_string(),
                expected: CIPHER_NAME,
            });
        }
        let n = env.kdf.params.n;
        if n < 2 || !n.is_power_of_two() {
            return Err(KeyFileError::Params(format!(
                "N={n} is not a power of two above 1"
            )));
        }
        let params = ScryptParams {
            log_n: u8::try_from(n.trailing_zeros()).unwrap_or(u8::MAX),
            r: env.kdf.params.r,
            p: env.kdf.params.p,
        };
        params.check()?;
        let b64 = |field: &str, s: &str| {
            STANDARD
                .decode(s)
                .map_err(|e| KeyFileError::Envelope(format!("{field}: {e}")))
        };
        let salt = b64("kdf.salt", &env.kdf.salt)?;
        if !SALT_LEN_RANGE.contains(&salt.len()) {
            return Err(KeyFileError::Envelope(format!(
                "kdf.salt is {} bytes; expected {} to {}",
                salt.len(),
                SALT_LEN_RANGE.start(),
                SALT_LEN_RANGE.end()
            )));
        }
        let nonce: [u8; NONCE_LEN] =
            b64("cipher.nonce", &env.cipher.nonce)?
                .try_into()
                .map_err(|v: Vec<u8>| {
                    KeyFileError::Envelope(format!(
                        "cipher.nonce is {} bytes; expected {NONCE_LEN}",
                        v.len()
                    ))
                })?;
        let ciphertext = b64("ciphertext", &env.ciphertext)?;
        if ciphertext.len() < 16 {
            return Err(KeyFileError::Envelope(
                "ciphertext is shorter than the secretbox tag".into(),
            ));
        }
        Ok(EncryptedKeyFile {
            label,
            params,
            salt,
            nonce,
            ciphertext,
        })
    }

    /// The PEM label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The scrypt parameters.
    pub fn params(&self) -> ScryptParams {
        self.params
    }

    /// Decrypts the PKCS#8 DER inside. A wrong password gives [`KeyFileError::WrongPassword`].
    pub fn decrypt(&self, password: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
        let key = self.params.derive(password, &self.salt)?;
        let cipher = crypto_secretbox::XSalsa20Poly1305::new(key.as_ref().into());
        cipher
            .decrypt(self.nonce.as_ref().into(), self.ciphertext.as_slice())
            .map(Zeroizing::new)
            .map_err(|_| KeyFileError::WrongPassword)
    }

    /// Encrypts `plaintext` under `password` with a fresh random salt and nonce.
    pub fn encrypt(
        label: &str,
        plaintext: &[u8],
        password: &[u8],
        params: ScryptParams,
    ) -> Result<Self, KeyFileError> {
        if password.is_empty() {
            return Err(KeyFileError::EmptyPassword);
        }
        if ![COSIGN_LABEL, SIGSTORE_LABEL, WARDEN_LABEL].contains(&label) {
            return Err(KeyFileError::Label(label.escape_debug().to_string()));
        }
        let mut salt = vec![0u8; SALT_LEN];
        fill_random(&mut salt)?;
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let key = params.derive(password, &salt)?;
        let cipher = crypto_secretbox::XSalsa20Poly1305::new(key.as_ref().into());
        let ciphertext = cipher
            .encrypt(nonce.as_ref().into(), plaintext)
            .map_err(|_| KeyFileError::Envelope("secretbox encryption failed".into()))?;
        Ok(EncryptedKeyFile {
            label: label.to_owned(),
            params,
            salt,
            nonce,
            ciphertext,
        })
    }

    /// The PEM file, as cosign writes it (64-character lines, LF).
    pub fn to_pem(&self) -> String {
        let env = Envelope {
            kdf: Kdf {
                name: KDF_NAME.into(),
                params: KdfParams {
                    n: 1u64 << self.params.log_n.min(63),
                    r: self.params.r,
                    p: self.params.p,
                },
                salt: STANDARD.encode(&self.salt),
            },
            cipher: Cipher {
                name: CIPHER_NAME.into(),
                nonce: STANDARD.encode(self.nonce),
            },
            ciphertext: STANDARD.encode(&self.ciphertext),
        };
        // Serialising a struct of strings and integers cannot fail.
        let body = serde_json::to_vec(&env).unwrap_or_default();
        pem_rfc7468_encode(&self.label, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyAlgorithm, SigningKey};

    /// Cheap parameters so that debug-build tests stay fast.
    const FAST: ScryptParams = ScryptParams {
        log_n: 4,
        r: 8,
        p: 1,
    };

    fn envelope(label: &str, json: &str) -> String {
        pem_rfc7468_encode(label, json.as_bytes())
    }

    fn good_json(n: u64, r: u32, p: u32) -> String {
        format!(
            r#"{{"kdf":{{"name":"scrypt","params":{{"N":{n},"r":{r},"p":{p}}},"salt":"{}"}},"cipher":{{"name":"nacl/secretbox","nonce":"{}"}},"ciphertext":"{}"}}"#,
            STANDARD.encode([1u8; 32]),
            STANDARD.encode([2u8; 24]),
            STANDARD.encode([3u8; 48])
        )
    }

    #[track_caller]
    fn check_refused(pem: &str, want: &str) {
        let e = EncryptedKeyFile::from_pem(pem).unwrap_err().to_string();
        assert!(e.contains(want), "error `{e}` does not contain `{want}`");
    }

    #[test]
    fn round_trip_both_algorithms_and_all_labels() {
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
            let key = SigningKey::generate(alg).unwrap();
            let pem = key.to_encrypted_pem_with(b"hunter2", FAST).unwrap();
            let label = if alg == KeyAlgorithm::EcdsaP256 {
                COSIGN_LABEL
            } else {
                WARDEN_LABEL
            };
            assert!(
                pem.starts_with(&format!("-----BEGIN {label}-----\n")),
                "{pem}"
            );
            let back = SigningKey::from_encrypted_pem(&pem, b"hunter2").unwrap();
            assert_eq!(back.public_key(), key.public_key());
            let der = key.to_pkcs8_der().unwrap();
            for label in [COSIGN_LABEL, SIGSTORE_LABEL, WARDEN_LABEL] {
                let f = EncryptedKeyFile::encrypt(label, &der, b"pw", FAST).unwrap();
                let back = SigningKey::from_encrypted_pem(&f.to_pem(), b"pw").unwrap();
                assert_eq!(back.public_key(), key.public_key());
            }
        }
    }

    #[test]
    fn default_parameters_are_cosigns() {
        let key = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let pem = key.to_encrypted_pem(b"pw").unwrap();
        let file = EncryptedKeyFile::from_pem(&pem).unwrap();
        assert_eq!(file.params(), ScryptParams::COSIGN_DEFAULT);
        let (_, body) = pem_rfc7468_decode(&pem).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["kdf"]["params"],
            serde_json::json!({"N": 32768, "r": 8, "p": 1})
        );
        assert_eq!(
            STANDARD
                .decode(v["kdf"]["salt"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        // Every line of the body is 64 characters but the last, as Go's encoding/pem writes.
        let lines: Vec<&str> = pem.lines().collect();
        assert!(lines[1..lines.len() - 2].iter().all(|l| l.len() == 64));
    }

    #[test]
    fn wrong_password_is_a_clear_error() {
        let key = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let pem = key.to_encrypted_pem_with(b"right", FAST).unwrap();
        let e = SigningKey::from_encrypted_pem(&pem, b"wrong").unwrap_err();
        assert_eq!(e, KeyFileError::WrongPassword);
        assert!(e.to_string().contains("wrong password"), "{e}");
    }

    #[test]
    fn refuses_empty_password_on_write() {
        let key = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        assert_eq!(
            key.to_encrypted_pem_with(b"", FAST).unwrap_err(),
            KeyFileError::EmptyPassword
        );
    }

    #[test]
    fn refuses_malformed_or_hostile_files() {
        check_refused("nothing", "not a PEM key file");
        check_refused(
            &envelope("PRIVATE KEY", &good_json(16, 8, 1)),
            "unsupported key file label",
        );
        check_refused(
            &envelope(COSIGN_LABEL, "{}"),
            "malformed encrypted key envelope",
        );
        check_refused(
            &envelope(
                COSIGN_LABEL,
                &good_json(16, 8, 1).replace("\"scrypt\"", "\"pbkdf2\""),
            ),
            "unsupported key derivation `pbkdf2`",
        );
        check_refused(
            &envelope(
                COSIGN_LABEL,
                &good_json(16, 8, 1).replace("nacl/secretbox", "aes-gcm"),
            ),
            "unsupported cipher",
        );
        check_refused(
            &envelope(COSIGN_LABEL, &good_json(1000, 8, 1)),
            "power of two",
        );
        check_refused(&envelope(COSIGN_LABEL, &good_json(1, 8, 1)), "power of two");
        check_refused(
            &envelope(COSIGN_LABEL, &good_json(16, 0, 1)),
            "r and p positive",
        );
        check_refused(
            &envelope(COSIGN_LABEL, &good_json(1 << 30, 8, 1)),
            "scrypt cost",
        );
        check_refused(
            &envelope(COSIGN_LABEL, &good_json(1 << 15, 8, 64)),
            "scrypt cost",
        );
        check_refused(
            &envelope(COSIGN_LABEL, &good_json(1 << 62, 1, 1)),
            "scrypt cost",
        );
        check_refused(
            &envelope(
                COSIGN_LABEL,
                &good_json(16, 8, 1).replace("\"ciphertext\"", "\"x\":1,\"ciphertext\""),
            ),
            "unknown field",
        );
        check_refused(&"A".repeat(MAX_KEY_FILE_LEN + 1), "more than");
        let short_nonce =
            good_json(16, 8, 1).replace(&STANDARD.encode([2u8; 24]), &STANDARD.encode([2u8; 12]));
        check_refused(
            &envelope(COSIGN_LABEL, &short_nonce),
            "cipher.nonce is 12 bytes",
        );
        let bad_b64 = good_json(16, 8, 1).replace(&STANDARD.encode([3u8; 48]), "!!!");
        check_refused(&envelope(COSIGN_LABEL, &bad_b64), "ciphertext");
    }

    #[test]
    fn decrypting_garbage_is_wrong_password_and_not_a_key() {
        let file =
            EncryptedKeyFile::from_pem(&envelope(SIGSTORE_LABEL, &good_json(16, 8, 1))).unwrap();
        assert_eq!(file.decrypt(b"x").unwrap_err(), KeyFileError::WrongPassword);
        // A well-encrypted plaintext that is no PKCS#8 key is refused as a key.
        let f = EncryptedKeyFile::encrypt(WARDEN_LABEL, b"not der", b"pw", FAST).unwrap();
        let e = SigningKey::from_encrypted_pem(&f.to_pem(), b"pw").unwrap_err();
        assert!(
            matches!(e, KeyFileError::Key(KeyError::MalformedPrivate(_))),
            "{e}"
        );
    }
}
