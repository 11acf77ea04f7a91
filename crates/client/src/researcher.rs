//! The researcher's own key and the certificate their organization issued for it.

use std::path::Path;

use warden_seal::{Certificate, PublicKey, SecretKey};

use crate::ClientError;
use crate::keyfile;

/// A researcher: a personal X25519 key pair and the certificate that says which user of which
/// organization holds it. Inputs are sealed with the key (HPKE auth mode) and results come back
/// sealed to it.
pub struct Researcher {
    secret: SecretKey,
    certificate: Certificate,
}

impl std::fmt::Debug for Researcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Researcher")
            .field("organization", &self.organization())
            .field("user", &self.user())
            .field("key", &self.public_key().fingerprint())
            .finish_non_exhaustive()
    }
}

impl Researcher {
    /// A researcher from a key and its certificate; the certificate must be for this key.
    pub fn new(secret: SecretKey, certificate: Certificate) -> Result<Researcher, ClientError> {
        Researcher::checked(secret, certificate, "the certificate", "the key")
    }

    fn checked(
        secret: SecretKey,
        certificate: Certificate,
        cert_name: &str,
        key_name: &str,
    ) -> Result<Researcher, ClientError> {
        let ours = secret.public_key();
        if *certificate.key() != ours {
            return Err(ClientError::CertificateKey {
                certificate: cert_name.to_owned(),
                key: key_name.to_owned(),
                certified: certificate.key().fingerprint().to_string(),
                ours: ours.fingerprint().to_string(),
            });
        }
        Ok(Researcher {
            secret,
            certificate,
        })
    }

    /// Reads the key file and the certificate file (a profile's `[researcher]`).
    pub fn load(key: &Path, certificate: &Path) -> Result<Researcher, ClientError> {
        let secret = keyfile::read_secret_key(key).map_err(|source| ClientError::KeyFile {
            what: "[researcher] key".to_owned(),
            source,
        })?;
        let cert =
            keyfile::read_certificate(certificate).map_err(|source| ClientError::KeyFile {
                what: "[researcher] certificate".to_owned(),
                source,
            })?;
        Researcher::checked(
            secret,
            cert,
            &certificate.display().to_string(),
            &key.display().to_string(),
        )
    }

    /// The organization the certificate names.
    pub fn organization(&self) -> &str {
        &self.certificate.statement().organization
    }

    /// The user the certificate names.
    pub fn user(&self) -> &str {
        &self.certificate.statement().user
    }

    pub fn public_key(&self) -> PublicKey {
        self.secret.public_key()
    }

    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    pub(crate) fn secret(&self) -> &SecretKey {
        &self.secret
    }

    /// The certificate must name this account: its organization (the server's name for it) and
    /// its user name. Nodes take the requester from the certificate and refuse an input whose
    /// requester is not the task's creator.
    pub fn check_account(&self, organization: &str, username: &str) -> Result<(), ClientError> {
        if self.organization() != organization {
            return Err(ClientError::CertificateAccount {
                field: "organization",
                certified: self.organization().to_owned(),
                account: organization.to_owned(),
            });
        }
        if self.user() != username {
            return Err(ClientError::CertificateAccount {
                field: "user",
                certified: self.user().to_owned(),
                account: username.to_owned(),
            });
        }
        Ok(())
    }

    /// The certificate's validity must include `now` (Unix seconds, with the clock skew nodes
    /// allow), so that nodes do not refuse the inputs.
    pub fn check_valid_at(&self, now: i64) -> Result<(), ClientError> {
        let s = self.certificate.statement();
        let skew = warden_seal::cert::CLOCK_SKEW_SECS;
        let why = if now + skew < s.not_before {
            Some(format!(
                "it is valid only from {} (now {})",
                crate::submit::show_time(s.not_before),
                crate::submit::show_time(now)
            ))
        } else if now - skew >= s.not_after {
            Some(format!(
                "it expired at {} (now {})",
                crate::submit::show_time(s.not_after),
                crate::submit::show_time(now)
            ))
        } else {
            None
        };
        match why {
            Some(why) => Err(ClientError::CertificateTime {
                organization: s.organization.clone(),
                user: s.user.clone(),
                why,
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use warden_trust::{KeyAlgorithm, SigningKey};

    use super::*;

    fn cert(key: &PublicKey, not_before: i64, secs: i64) -> Certificate {
        let ca = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        Certificate::issue(&ca, "hospital-a", "rita", key, not_before, secs).unwrap()
    }

    #[test]
    fn the_certificate_must_be_for_the_key_the_account_and_now() {
        let sk = SecretKey::generate();
        let c = cert(&sk.public_key(), 1_000, 86_400);
        let other = SecretKey::generate();
        let e = Researcher::new(other, c.clone()).unwrap_err();
        assert!(matches!(e, ClientError::CertificateKey { .. }), "{e}");
        let r = Researcher::new(sk, c).unwrap();
        assert_eq!((r.organization(), r.user()), ("hospital-a", "rita"));
        r.check_account("hospital-a", "rita").unwrap();
        let e = r
            .check_account("hospital-b", "rita")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("organization `hospital-a`") && e.contains("`hospital-b`"),
            "{e}"
        );
        let e = r
            .check_account("hospital-a", "bob")
            .unwrap_err()
            .to_string();
        assert!(e.contains("user `rita`") && e.contains("`bob`"), "{e}");
        r.check_valid_at(1_000).unwrap();
        // Within the clock skew nodes allow, on either side.
        r.check_valid_at(800).unwrap();
        r.check_valid_at(87_000).unwrap();
        let e = r.check_valid_at(100).unwrap_err().to_string();
        assert!(e.contains("valid only from"), "{e}");
        let e = r
            .check_valid_at(1_000 + 86_400 + 301)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("expired") && e.contains("warden keys certify"),
            "{e}"
        );
    }

    #[test]
    fn load_reads_the_profile_files_and_names_them_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let sk = SecretKey::generate();
        std::fs::write(d.join("rita.key"), sk.to_pem()).unwrap();
        std::fs::write(d.join("rita.cert"), cert(&sk.public_key(), 0, 60).to_json()).unwrap();
        let other = SecretKey::generate();
        std::fs::write(
            d.join("bob.cert"),
            cert(&other.public_key(), 0, 60).to_json(),
        )
        .unwrap();
        let r = Researcher::load(&d.join("rita.key"), &d.join("rita.cert")).unwrap();
        assert_eq!(r.public_key(), sk.public_key());
        let e = Researcher::load(&d.join("rita.key"), &d.join("bob.cert"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bob.cert") && e.contains("rita.key"), "{e}");
        let e = Researcher::load(&d.join("absent.key"), &d.join("rita.cert"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[researcher] key") && e.contains("absent.key"),
            "{e}"
        );
        let e = Researcher::load(&d.join("rita.key"), &d.join("rita.key"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[researcher] certificate"), "{e}");
    }
}
