//! `warden keys`: make keys, certify researchers' keys, and say what a key file is.
//!
//! - `generate --kind x25519 --out FILE` writes an X25519 key pair, the encryption key of an
//!   organization or a researcher's personal key: FILE (`WARDEN X25519 PRIVATE KEY` PEM, mode
//!   0600, not encrypted) and FILE.pub (the base64 public key, what others pin by fingerprint).
//! - `generate [--kind ecdsa-p256|ed25519] --out PREFIX` writes a signing key pair (image
//!   reviewers, audit logs, an organization's certification key): `PREFIX.key`, the private key
//!   encrypted under a password (mode 0600), and `PREFIX.pub`, the PEM public key
//!   (`--out NAME.key` writes NAME.key and NAME.pub). ECDSA P-256
//!   keys are written in cosign's format (`ENCRYPTED COSIGN PRIVATE KEY`, scrypt N=32768 r=8
//!   p=1), so `cosign sign --key PREFIX.key` reads them; Ed25519 keys use Warden's label.
//! - `certify` signs a researcher certificate with an organization's certification key.
//! - `fingerprint FILE` (and `show FILE`) says what a key or certificate file is and prints its
//!   fingerprint or key ID.
//!
//! Passwords come from `--password-file` (one trailing newline is dropped) or else from
//! `WARDEN_PASSWORD`; an empty password is refused, and existing files are never overwritten.

use crate::common;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use warden_client::keyfile;
use warden_seal::{Certificate, SecretKey};
use warden_trust::{KeyAlgorithm, PublicKey, SigningKey};
use zeroize::Zeroizing;

/// Default validity of a certificate, in days.
const DEFAULT_CERT_DAYS: i64 = 90;
/// Longest validity of a certificate, in days.
const MAX_CERT_DAYS: i64 = warden_seal::cert::MAX_VALIDITY_SECS / 86_400;

/// What `generate` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An X25519 encryption key pair.
    X25519,
    /// A signing key pair.
    Signing(KeyAlgorithm),
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    match s {
        "x25519" => Ok(Kind::X25519),
        "p256" => Ok(Kind::Signing(KeyAlgorithm::EcdsaP256)),
        other => other
            .parse()
            .map(Kind::Signing)
            .map_err(|e: warden_trust::KeyError| format!("{e}, or x25519 for an encryption key")),
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a key pair: with --kind x25519, FILE (mode 0600) and FILE.pub; a signing key
    /// (ecdsa-p256, the default, or ed25519): PREFIX.key (encrypted, mode 0600) and PREFIX.pub.
    ///
    /// Example: warden keys generate --kind ed25519 --out rita --password-file rita.keypw
    Generate {
        /// The private key file (x25519), or the path prefix of the two files (signing keys;
        /// PREFIX.key and PREFIX.pub, and `--out NAME.key` writes NAME.key and NAME.pub).
        #[arg(long, value_name = "FILE|PREFIX")]
        out: PathBuf,
        /// `x25519` (an organization's encryption key or a researcher's key), `ecdsa-p256`
        /// (cosign's default, readable by cosign; also `p256`) or `ed25519`.
        #[arg(long, alias = "algorithm", default_value = "ecdsa-p256", value_parser = parse_kind)]
        kind: Kind,
        /// File holding the password of a signing key; without it, WARDEN_PASSWORD.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        #[command(flatten)]
        json: common::AlwaysJson,
    },
    /// Sign a researcher certificate: user NAME of organization NAME holds the X25519 key in
    /// RESEARCHER.pub. Nodes pin the certifier's key ID under [certifiers].
    ///
    /// Example: warden keys certify --certifier certify.key --password-file certify.pw --org hospital-a --user rita --key rita.pub --out rita.cert
    Certify {
        /// The organization's certification key (an encrypted signing key file).
        #[arg(long, value_name = "KEYFILE")]
        certifier: PathBuf,
        /// File holding the certification key's password; without it, WARDEN_PASSWORD.
        #[arg(long, value_name = "PW")]
        password_file: Option<PathBuf>,
        /// The organization's name, as the server knows it.
        #[arg(long, value_name = "NAME")]
        org: String,
        /// The researcher's user name at the server.
        #[arg(long, value_name = "NAME")]
        user: String,
        /// The researcher's X25519 public key (`warden keys generate --kind x25519` writes it
        /// as FILE.pub).
        #[arg(long, value_name = "RESEARCHER.pub")]
        key: PathBuf,
        /// Days the certificate is valid, from now (1 to 400).
        #[arg(long, value_name = "N", default_value_t = DEFAULT_CERT_DAYS,
              value_parser = clap::value_parser!(i64).range(1..=MAX_CERT_DAYS))]
        days: i64,
        /// The certificate file to write.
        #[arg(long, value_name = "CERT")]
        out: PathBuf,
        #[command(flatten)]
        json: common::AlwaysJson,
    },
    /// Say what a key or certificate file is and print its fingerprint (X25519 keys) or key
    /// ID (signing keys, pinned under [certifiers] or in policies).
    ///
    /// Example: warden keys fingerprint hospital-a/org.key.pub
    Fingerprint {
        /// An X25519 private key or .pub, a signing public or (encrypted) private key, or a
        /// researcher certificate.
        file: PathBuf,
        /// For an encrypted signing key: the file holding its password (else WARDEN_PASSWORD).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        #[command(flatten)]
        json: common::AlwaysJson,
    },
    /// The same as `fingerprint`.
    ///
    /// Example: warden keys show rita.cert
    Show {
        /// An X25519 private key or .pub, a signing public or (encrypted) private key, or a
        /// researcher certificate.
        file: PathBuf,
        /// For an encrypted signing key: the file holding its password (else WARDEN_PASSWORD).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        #[command(flatten)]
        json: common::AlwaysJson,
    },
}

/// Runs a `warden keys` subcommand, returning what to print on stdout.
pub fn run(command: KeysCommand) -> anyhow::Result<Value> {
    match command {
        KeysCommand::Generate {
            out,
            kind: Kind::X25519,
            password_file,
            ..
        } => {
            if password_file.is_some() {
                bail!(
                    "an X25519 key file is not encrypted (it is written with mode 0600); drop \
                     --password-file"
                );
            }
            generate_x25519(&out)
        }
        KeysCommand::Generate {
            out,
            kind: Kind::Signing(algorithm),
            password_file,
            ..
        } => generate(&out, algorithm, password_file.as_deref()),
        KeysCommand::Certify {
            certifier,
            password_file,
            org,
            user,
            key,
            days,
            out,
            ..
        } => certify(
            &certifier,
            password_file.as_deref(),
            &org,
            &user,
            &key,
            days,
            &out,
        ),
        KeysCommand::Fingerprint {
            file,
            password_file,
            ..
        }
        | KeysCommand::Show {
            file,
            password_file,
            ..
        } => inspect(&file, password_file.as_deref()),
    }
}

fn describe(key: &PublicKey) -> Value {
    json!({
        "algorithm": key.algorithm(),
        "key_id": key.id().to_string(),
    })
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub(crate) fn refuse_existing(paths: &[&Path], what: &str) -> anyhow::Result<()> {
    for p in paths {
        if p.symlink_metadata().is_ok() {
            bail!(
                "refusing to overwrite {}; choose another {what} or remove the file",
                p.display()
            );
        }
    }
    Ok(())
}

pub(crate) fn generate_x25519(out: &Path) -> anyhow::Result<Value> {
    let pub_path = with_suffix(out, ".pub");
    refuse_existing(&[out, &pub_path], "--out file")?;
    let key = SecretKey::try_generate()?;
    let private_pem = Zeroizing::new(key.to_pem());
    let public = key.public_key();
    write_new(out, private_pem.as_bytes(), 0o600)?;
    if let Err(e) = write_new(&pub_path, format!("{public}\n").as_bytes(), 0o644) {
        let _ = std::fs::remove_file(out);
        return Err(e);
    }
    Ok(json!({
        "kind": "x25519-key-pair",
        "algorithm": "x25519",
        "fingerprint": public.fingerprint().to_string(),
        "private_key": out.display().to_string(),
        "public_key": pub_path.display().to_string(),
    }))
}

pub(crate) fn generate(
    prefix: &Path,
    algorithm: KeyAlgorithm,
    password_file: Option<&Path>,
) -> anyhow::Result<Value> {
    // `--out NAME.key` names the private key file itself: NAME.key and NAME.pub.
    let prefix = match prefix.to_str().and_then(|p| p.strip_suffix(".key")) {
        Some(p) if !p.is_empty() && !p.ends_with('/') => Path::new(p),
        _ => prefix,
    };
    let key_path = with_suffix(prefix, ".key");
    let pub_path = with_suffix(prefix, ".pub");
    refuse_existing(&[&key_path, &pub_path], "--out prefix")?;
    let password = common::password(password_file, "choose a non-empty one")?;
    let key = SigningKey::generate(algorithm)?;
    let private_pem = Zeroizing::new(key.to_encrypted_pem(&password)?);
    let public = key.public_key();
    write_new(&key_path, private_pem.as_bytes(), 0o600)?;
    if let Err(e) = write_new(&pub_path, public.to_pem().as_bytes(), 0o644) {
        // Leave no half-written pair behind.
        let _ = std::fs::remove_file(&key_path);
        return Err(e);
    }
    let mut out = describe(&public);
    out["private_key"] = key_path.display().to_string().into();
    out["public_key"] = pub_path.display().to_string().into();
    Ok(out)
}

/// Reads an encrypted signing key with the password from `password_file` or WARDEN_PASSWORD.
fn signing_key(path: &Path, pem: &str, password_file: Option<&Path>) -> anyhow::Result<SigningKey> {
    let password =
        common::password(password_file, "give the key's password").with_context(|| {
            format!(
                "{} is an encrypted signing key: give its password with --password-file FILE or {}",
                path.display(),
                common::PASSWORD_ENV
            )
        })?;
    SigningKey::from_encrypted_pem(pem, &password)
        .with_context(|| format!("cannot read the signing key {}", path.display()))
}

fn text_of(path: &Path) -> anyhow::Result<String> {
    let bytes = common::read_small(path)?;
    String::from_utf8(bytes.to_vec()).with_context(|| {
        format!(
            "{} is not a text file: not a key or certificate file Warden knows",
            path.display()
        )
    })
}

fn unix_time(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

fn describe_certificate(cert: &Certificate) -> Value {
    let s = cert.statement();
    json!({
        "kind": "researcher-certificate",
        "organization": s.organization,
        "user": s.user,
        "serial": s.serial,
        "not_before": unix_time(s.not_before),
        "not_after": unix_time(s.not_after),
        "researcher_key": cert.key().fingerprint().to_string(),
        "certifier_key_id": cert.certifier_id().to_string(),
    })
}

#[allow(clippy::too_many_arguments)]
fn certify(
    certifier: &Path,
    password_file: Option<&Path>,
    org: &str,
    user: &str,
    key: &Path,
    days: i64,
    out: &Path,
) -> anyhow::Result<Value> {
    refuse_existing(&[out], "--out file")?;
    let researcher = keyfile::read_public_key(key).context("--key")?;
    let pem = text_of(certifier)?;
    if !pem.trim_start().starts_with("-----BEGIN ENCRYPTED ") {
        bail!(
            "{} is not an encrypted signing key: a certification key is made with `warden keys \
             generate --kind ed25519 --out PREFIX` (give PREFIX.key)",
            certifier.display()
        );
    }
    let signer = signing_key(certifier, &pem, password_file)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let cert = Certificate::issue(&signer, org, user, &researcher, now, days * 86_400)
        .context("cannot certify the key")?;
    write_new(out, &cert.to_json(), 0o644)?;
    let mut v = describe_certificate(&cert);
    v["certificate"] = out.display().to_string().into();
    v["certifier_algorithm"] = signer.public_key().algorithm().into();
    v["pin"] = format!(
        "nodes that accept researchers of `{org}` pin its certification key: [certifiers] \
         {org:?} = \"{}\"",
        signer.public_key().id()
    )
    .into();
    Ok(v)
}

/// What a key or certificate file is, and its fingerprint or key ID.
fn inspect(path: &Path, password_file: Option<&Path>) -> anyhow::Result<Value> {
    let text = text_of(path)?;
    let trimmed = text.trim();
    let named = |mut v: Value| {
        v["file"] = path.display().to_string().into();
        Ok(v)
    };
    if trimmed.starts_with('{') {
        let cert = keyfile::read_certificate(path)?;
        return named(describe_certificate(&cert));
    }
    if let Some(hint) = keyfile::foreign_key_hint(trimmed) {
        bail!("{}: {hint}", path.display());
    }
    let label = trimmed
        .strip_prefix("-----BEGIN ")
        .and_then(|rest| rest.split_once("-----"))
        .map(|(label, _)| label);
    match label {
        Some(warden_seal::PRIVATE_KEY_LABEL) => {
            let key = keyfile::read_secret_key(path)?;
            named(json!({
                "kind": "x25519-private-key",
                "algorithm": "x25519",
                "fingerprint": key.public_key().fingerprint().to_string(),
            }))
        }
        Some("PUBLIC KEY") => {
            let key = PublicKey::from_pem(trimmed)
                .with_context(|| format!("cannot read public key {}", path.display()))?;
            let mut v = describe(&key);
            v["kind"] = "signing-public-key".into();
            named(v)
        }
        Some(l) if l.starts_with("ENCRYPTED ") => {
            let key = signing_key(path, trimmed, password_file)?;
            let mut v = describe(&key.public_key());
            v["kind"] = "signing-private-key".into();
            named(v)
        }
        Some(l) => bail!(
            "{}: a `{l}` block is not a key Warden knows (X25519 keys from `warden keys \
             generate --kind x25519`, signing keys from `warden keys generate`, certificates \
             from `warden keys certify`)",
            path.display()
        ),
        None => {
            let key = keyfile::read_public_key(path).map_err(|e| {
                anyhow::anyhow!(
                    "{e}; a key file Warden knows is an X25519 key or .pub, a signing key \
                     (PEM) or a researcher certificate (JSON)"
                )
            })?;
            named(json!({
                "kind": "x25519-public-key",
                "algorithm": "x25519",
                "fingerprint": key.fingerprint().to_string(),
            }))
        }
    }
}

pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named_as_the_help_says() {
        assert_eq!(parse_kind("x25519"), Ok(Kind::X25519));
        assert_eq!(
            parse_kind("p256"),
            Ok(Kind::Signing(KeyAlgorithm::EcdsaP256))
        );
        assert_eq!(
            parse_kind("ecdsa-p256"),
            Ok(Kind::Signing(KeyAlgorithm::EcdsaP256))
        );
        assert_eq!(
            parse_kind("ed25519"),
            Ok(Kind::Signing(KeyAlgorithm::Ed25519))
        );
        let e = parse_kind("rsa").unwrap_err();
        assert!(
            e.contains("unknown key algorithm `rsa`") && e.contains("x25519"),
            "{e}"
        );
    }
}
