//! Interoperability with an independent peer: tests/peers/hpke_peer.py, RFC 9180 written from
//! the RFC with Python's `cryptography` primitives.
//!
//! Needs `python3` with `pip install cryptography`; without them these tests fail and say so.

// Helpers outside `#[test]` functions are test code too.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use warden_seal::{PublicKey, SealError, SecretKey, open, seal};

const CTX: &[u8] = b"warden/result/v1|collab=3|org=7";

fn script() -> PathBuf {
    // The running test's package directory (set by cargo and nextest) rather than the one
    // compiled in, which may name another checkout sharing the target directory.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("../../tests/peers/hpke_peer.py")
}

/// Runs the peer; returns (success, stdout, stderr). Fails the test if the peer cannot run.
fn peer(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("python3")
        .arg(script())
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}); install python3 and `pip install cryptography`")
        });
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_ne!(
        out.status.code(),
        Some(3),
        "the peer's Python packages are missing; run `pip install cryptography`: {stderr}"
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

#[track_caller]
fn peer_ok(args: &[&str]) -> String {
    let (ok, stdout, stderr) = peer(args);
    assert!(ok, "peer {args:?} failed: {stderr}");
    stdout
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_peer_passes_the_rfc_vector() {
    assert_eq!(peer_ok(&["selftest"]).trim(), "ok");
}

#[test]
fn the_peer_seals_and_warden_opens() {
    let dir = tempfile::tempdir().unwrap();
    let sk = SecretKey::generate();
    let plaintext: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let (input, sealed) = (dir.path().join("in"), dir.path().join("sealed"));
    std::fs::write(&input, &plaintext).unwrap();
    peer_ok(&[
        "seal",
        "--pub",
        &sk.public_key().to_base64(),
        "--context",
        &hex::encode(CTX),
        "--in",
        s(&input),
        "--out",
        s(&sealed),
    ]);
    let bytes = std::fs::read(&sealed).unwrap();
    assert_eq!(open(&sk, CTX, &bytes).unwrap(), plaintext);
    assert_eq!(
        open(&sk, b"warden/result/v1|collab=3|org=8", &bytes),
        Err(SealError::OpenFailed)
    );
}

#[test]
fn warden_seals_and_the_peer_opens_with_a_warden_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let sk = SecretKey::generate();
    let key = dir.path().join("org.pem");
    std::fs::write(&key, sk.to_pem()).unwrap();
    let plaintext = b"the mean is 42".repeat(100);
    let (sealed, out) = (dir.path().join("sealed"), dir.path().join("out"));
    std::fs::write(&sealed, seal(&sk.public_key(), CTX, &plaintext).unwrap()).unwrap();
    peer_ok(&[
        "open",
        "--key",
        s(&key),
        "--context",
        &hex::encode(CTX),
        "--in",
        s(&sealed),
        "--out",
        s(&out),
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), plaintext);

    // the peer refuses another context, and a flipped bit
    let (ok, _, stderr) = peer(&[
        "open",
        "--key",
        s(&key),
        "--context",
        &hex::encode(b"warden/input/v1|collab=3|org=7"),
        "--in",
        s(&sealed),
        "--out",
        s(&out),
    ]);
    assert!(!ok && stderr.contains("InvalidTag"), "{stderr}");
    let mut bytes = std::fs::read(&sealed).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&sealed, &bytes).unwrap();
    let (ok, _, stderr) = peer(&[
        "open",
        "--key",
        s(&key),
        "--context",
        &hex::encode(CTX),
        "--in",
        s(&sealed),
        "--out",
        s(&out),
    ]);
    assert!(!ok && stderr.contains("InvalidTag"), "{stderr}");
}

#[test]
fn warden_reads_a_key_generated_by_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("peer.pem");
    let public = peer_ok(&["genkey", "--out", s(&key)]);
    let sk = SecretKey::from_pem(&std::fs::read_to_string(&key).unwrap()).unwrap();
    assert_eq!(
        sk.public_key(),
        PublicKey::from_base64(public.trim()).unwrap()
    );
    let sealed = seal(&sk.public_key(), CTX, b"x").unwrap();
    assert_eq!(open(&sk, CTX, &sealed).unwrap(), b"x");
}
