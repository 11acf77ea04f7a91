//! `warden keys`: create signing keys and inspect public keys.
//!
//! `warden keys generate --out PREFIX` writes `PREFIX.key`, the private key encrypted under a
//! password (mode 0600), and `PREFIX.pub`, the PEM public key. ECDSA P-256 keys are written in
//! cosign's format (`ENCRYPTED COSIGN PRIVATE KEY`, scrypt N=32768 r=8 p=1), so
//! `cosign sign --key PREFIX.key` reads them; Ed25519 keys use Warden's label. The password comes
//! from `--password-file` (one trailing newline is dropped) or else from `WARDEN_PASSWORD`; an
//! empty password is refused, and existing files are never overwritten.

use crate::common;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use warden_trust::{KeyAlgorithm, PublicKey, SigningKey};
use zeroize::Zeroizing;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a signing key pair: PREFIX.key (encrypted, mode 0600) and PREFIX.pub.
    Generate {
        /// Path prefix of the two files to write.
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
        /// `ecdsa-p256` (cosign's default, readable by cosign) or `ed25519`.
        #[arg(long, default_value = "ecdsa-p256", value_parser = parse_algorithm)]
        algorithm: KeyAlgorithm,
        /// File holding the password; without it, the password is read from WARDEN_PASSWORD.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Print a public key's algorithm and key id (sha256 of its DER SubjectPublicKeyInfo).
    Show {
        /// A PEM public key file (`-----BEGIN PUBLIC KEY-----`).
        pubfile: PathBuf,
    },
}

fn parse_algorithm(s: &str) -> Result<KeyAlgorithm, String> {
    s.parse().map_err(|e: warden_trust::KeyError| e.to_string())
}

/// Runs a `warden keys` subcommand, returning what to print on stdout.
pub fn run(command: KeysCommand) -> anyhow::Result<serde_json::Value> {
    match command {
        KeysCommand::Generate {
            out,
            algorithm,
            password_file,
        } => generate(&out, algorithm, password_file.as_deref()),
        KeysCommand::Show { pubfile } => {
            let pem = common::read_small(&pubfile)?;
            let pem = String::from_utf8(pem.to_vec())
                .with_context(|| format!("{} is not a text PEM file", pubfile.display()))?;
            let key = PublicKey::from_pem(&pem)
                .with_context(|| format!("cannot read public key {}", pubfile.display()))?;
            Ok(describe(&key))
        }
    }
}

fn describe(key: &PublicKey) -> serde_json::Value {
    serde_json::json!({
        "algorithm": key.algorithm(),
        "key_id": key.id().to_string(),
    })
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn generate(
    prefix: &Path,
    algorithm: KeyAlgorithm,
    password_file: Option<&Path>,
) -> anyhow::Result<serde_json::Value> {
    let key_path = with_suffix(prefix, ".key");
    let pub_path = with_suffix(prefix, ".pub");
    for p in [&key_path, &pub_path] {
        if p.symlink_metadata().is_ok() {
            bail!(
                "refusing to overwrite {}; choose another --out prefix or remove the file",
                p.display()
            );
        }
    }
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

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
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
