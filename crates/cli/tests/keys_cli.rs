//! `warden keys`, run as the real binary.

// Helpers outside `#[test]` functions are test code too.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use warden_trust::keyfile::{COSIGN_LABEL, WARDEN_LABEL};
use warden_trust::{PublicKey, SigningKey};

fn warden(dir: &Path, args: &[&str], password: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.current_dir(dir)
        .args(args)
        .env_remove("WARDEN_PASSWORD");
    if let Some(p) = password {
        cmd.env("WARDEN_PASSWORD", p);
    }
    cmd.output().unwrap()
}

#[track_caller]
fn ok(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "warden failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[track_caller]
fn refused(out: &Output, want: &str) {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(want),
        "stderr `{stderr}` does not contain `{want}`"
    );
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn generate_writes_a_cosign_key_pair_and_show_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = ok(&warden(
        d,
        &["keys", "generate", "--out", "signer"],
        Some("pw 1"),
    ));
    let private = read(&d.join("signer.key"));
    assert!(
        private.starts_with(&format!("-----BEGIN {COSIGN_LABEL}-----\n")),
        "{private}"
    );
    let mode = std::fs::metadata(d.join("signer.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let key = SigningKey::from_encrypted_pem(&private, b"pw 1").unwrap();
    let public = PublicKey::from_pem(&read(&d.join("signer.pub"))).unwrap();
    assert_eq!(key.public_key(), public);
    assert_eq!(out["algorithm"], "ecdsa-p256");
    assert_eq!(out["key_id"], public.id().to_string());
    let shown = ok(&warden(d, &["keys", "show", "signer.pub"], None));
    assert_eq!(
        shown,
        serde_json::json!({"algorithm": "ecdsa-p256", "key_id": public.id().to_string()})
    );
}

#[test]
fn generate_ed25519_with_a_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("pw"), "from file\n").unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    let out = ok(&warden(
        d,
        &[
            "keys",
            "generate",
            "--out",
            "sub/ed",
            "--algorithm",
            "ed25519",
            "--password-file",
            "pw",
        ],
        Some("ignored: the file rules"),
    ));
    assert_eq!(out["algorithm"], "ed25519");
    let private = read(&d.join("sub/ed.key"));
    assert!(private.starts_with(&format!("-----BEGIN {WARDEN_LABEL}-----\n")));
    // The trailing newline is not part of the password.
    let key = SigningKey::from_encrypted_pem(&private, b"from file").unwrap();
    assert_eq!(
        key.public_key(),
        PublicKey::from_pem(&read(&d.join("sub/ed.pub"))).unwrap()
    );
    let shown = ok(&warden(d, &["keys", "show", "sub/ed.pub"], None));
    assert_eq!(shown["algorithm"], "ed25519");
}

#[test]
fn generate_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&warden(d, &["keys", "generate", "--out", "k"], Some("pw")));
    let before = read(&d.join("k.key"));
    refused(
        &warden(d, &["keys", "generate", "--out", "k"], Some("pw")),
        "refusing to overwrite",
    );
    assert_eq!(read(&d.join("k.key")), before);
    // Only the .pub exists: still refused, and no .key is left behind.
    std::fs::write(d.join("p.pub"), "x").unwrap();
    refused(
        &warden(d, &["keys", "generate", "--out", "p"], Some("pw")),
        "refusing to overwrite",
    );
    assert!(!d.join("p.key").exists());
}

#[test]
fn generate_refuses_missing_or_empty_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    refused(
        &warden(d, &["keys", "generate", "--out", "k"], None),
        "set WARDEN_PASSWORD",
    );
    refused(
        &warden(d, &["keys", "generate", "--out", "k"], Some("")),
        "empty password",
    );
    std::fs::write(d.join("empty"), "\n").unwrap();
    refused(
        &warden(
            d,
            &["keys", "generate", "--out", "k", "--password-file", "empty"],
            Some("pw"),
        ),
        "empty password",
    );
    refused(
        &warden(
            d,
            &[
                "keys",
                "generate",
                "--out",
                "k",
                "--password-file",
                "missing",
            ],
            Some("pw"),
        ),
        "cannot read missing",
    );
    assert!(!d.join("k.key").exists() && !d.join("k.pub").exists());
}

#[test]
fn bad_algorithm_and_bad_public_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    refused(
        &warden(
            d,
            &["keys", "generate", "--out", "k", "--algorithm", "rsa"],
            Some("pw"),
        ),
        "unknown key algorithm `rsa`",
    );
    std::fs::write(d.join("junk.pub"), "junk").unwrap();
    refused(
        &warden(d, &["keys", "show", "junk.pub"], None),
        "cannot read public key junk.pub",
    );
    refused(
        &warden(d, &["keys", "show", "nothing.pub"], None),
        "cannot read nothing.pub",
    );
}
