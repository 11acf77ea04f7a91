//! Interoperability with an independent peer: tests/peers/cosign_peer.py, written with Python's
//! `cryptography`, `pynacl` and `hashlib.scrypt` against the cosign formats.
//!
//! Needs `python3` with `pip install cryptography pynacl`; without them these tests fail and
//! say what to install.

// Helpers outside `#[test]` functions are test code too.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use warden_reference::{Digest, Repository};
use warden_trust::cosign::{self, SignatureCandidate};
use warden_trust::keyfile::{COSIGN_LABEL, SIGSTORE_LABEL, WARDEN_LABEL};
use warden_trust::{KeyAlgorithm, PublicKey, SigningKey};

const DIGEST: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn script() -> PathBuf {
    // The running test's package directory (set by cargo and nextest) rather than the one
    // compiled in, which may name another checkout sharing the target directory.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("../../tests/peers/cosign_peer.py")
}

/// Runs the peer; returns (success, stdout, stderr). Fails the test if the peer cannot run.
fn peer(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("python3")
        .arg(script())
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python3 ({e}); install python3 and `pip install cryptography pynacl`"
            )
        });
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_ne!(
        out.status.code(),
        Some(3),
        "the peer's Python packages are missing: {stderr}"
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

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn warden_verifies_signatures_the_peer_made() {
    let dir = tempfile::tempdir().unwrap();
    let digest = Digest::parse(DIGEST).unwrap();
    for (algorithm, docker_reference, repository) in [
        (
            "ecdsa-p256",
            "localhost:5000/team/algo",
            "localhost:5000/team/algo",
        ),
        ("ecdsa-p256", "index.docker.io/library/ubuntu", "ubuntu"),
        (
            "ed25519",
            "registry.example.org/x/y",
            "registry.example.org/x/y",
        ),
    ] {
        let d = dir
            .path()
            .join(algorithm)
            .join(repository.replace(['/', ':'], "_"));
        let count = "16";
        let report = peer_ok(&[
            "sign-payload",
            "--dir",
            s(&d),
            "--docker-reference",
            docker_reference,
            "--digest",
            DIGEST,
            "--algorithm",
            algorithm,
            "--count",
            count,
        ]);
        let key = PublicKey::from_pem(&read(&d.join("key.pub"))).unwrap();
        assert_eq!(key.algorithm(), algorithm);
        let payload = std::fs::read(d.join("payload")).unwrap();
        let repository = Repository::parse(repository).unwrap();
        // The peer's payload is byte for byte what Warden creates.
        assert_eq!(payload, cosign::payload_for(&repository, &digest, None));
        let candidates: Vec<SignatureCandidate> = (0..16)
            .map(|i| SignatureCandidate {
                payload: payload.clone(),
                signature_b64: read(&d.join(format!("sig.{i}"))),
                origin: format!("peer sig.{i}"),
            })
            .collect();
        let v = cosign::verify(
            &candidates,
            std::slice::from_ref(&key),
            &repository,
            &digest,
        );
        assert!(v.rejected.is_empty(), "{report}: {:?}", v.rejected);
        assert_eq!(v.verified.len(), 1, "16 signatures by one key count once");
        // And not for another repository or digest.
        let elsewhere = Repository::parse("localhost:5000/other").unwrap();
        assert!(
            cosign::verify(&candidates, std::slice::from_ref(&key), &elsewhere, &digest)
                .verified
                .is_empty()
        );
        let other = Digest::sha256_of(b"other");
        assert!(
            cosign::verify(&candidates, &[key], &repository, &other)
                .verified
                .is_empty()
        );
        if algorithm == "ecdsa-p256" {
            // Python's ECDSA does not normalise S: about half of 16 signatures are high-S.
            assert!(
                !report.contains("\"high_s\": 0,"),
                "no high-S signature among 16: {report}"
            );
        }
    }
}

#[test]
fn peer_verifies_signatures_warden_made() {
    let dir = tempfile::tempdir().unwrap();
    let repository = Repository::parse("localhost:5000/team/algo").unwrap();
    let digest = Digest::parse(DIGEST).unwrap();
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let key = SigningKey::generate(alg).unwrap();
        let signed = cosign::sign(&key, &repository, &digest, None);
        let (pubf, payf, sigf) = (
            dir.path().join(format!("{alg}.pub")),
            dir.path().join(format!("{alg}.payload")),
            dir.path().join(format!("{alg}.sig")),
        );
        std::fs::write(&pubf, key.public_key().to_pem()).unwrap();
        std::fs::write(&payf, &signed.payload).unwrap();
        std::fs::write(&sigf, &signed.signature_b64).unwrap();
        peer_ok(&[
            "verify",
            "--pub",
            s(&pubf),
            "--payload",
            s(&payf),
            "--sig",
            s(&sigf),
            "--expect-docker-reference",
            "localhost:5000/team/algo",
            "--expect-digest",
            DIGEST,
        ]);
        // The peer can fail: a changed payload does not verify.
        std::fs::write(&payf, [signed.payload.as_slice(), b" "].concat()).unwrap();
        let (ok, _, _) = peer(&[
            "verify",
            "--pub",
            s(&pubf),
            "--payload",
            s(&payf),
            "--sig",
            s(&sigf),
        ]);
        assert!(!ok, "the peer accepted a changed payload");
    }
}

#[test]
fn warden_reads_key_files_the_peer_wrote() {
    let dir = tempfile::tempdir().unwrap();
    for (label, algorithm) in [
        (COSIGN_LABEL, "ecdsa-p256"),
        (SIGSTORE_LABEL, "ecdsa-p256"),
        (WARDEN_LABEL, "ed25519"),
    ] {
        let (keyf, pubf) = (dir.path().join("peer.key"), dir.path().join("peer.pub"));
        peer_ok(&[
            "write-key",
            "--out",
            s(&keyf),
            "--pub-out",
            s(&pubf),
            "--password",
            "correct horse",
            "--label",
            label,
            "--algorithm",
            algorithm,
        ]);
        let pem = read(&keyf);
        assert!(pem.starts_with(&format!("-----BEGIN {label}-----")));
        let key = SigningKey::from_encrypted_pem(&pem, b"correct horse").unwrap();
        let public = PublicKey::from_pem(&read(&pubf)).unwrap();
        assert_eq!(key.public_key(), public);
        assert!(public.verify(b"m", &key.sign(b"m")).is_ok());
        let e = SigningKey::from_encrypted_pem(&pem, b"wrong horse").unwrap_err();
        assert!(e.to_string().contains("wrong password"), "{e}");
    }
}

#[test]
fn peer_reads_key_files_warden_wrote() {
    let dir = tempfile::tempdir().unwrap();
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let key = SigningKey::generate(alg).unwrap();
        let keyf = dir.path().join(format!("{alg}.key"));
        let pubf = dir.path().join(format!("{alg}.pub"));
        std::fs::write(&keyf, key.to_encrypted_pem(b"s3cret").unwrap()).unwrap();
        let label = peer_ok(&[
            "read-key",
            "--key",
            s(&keyf),
            "--password",
            "s3cret",
            "--pub-out",
            s(&pubf),
        ]);
        let want = if alg == KeyAlgorithm::EcdsaP256 {
            COSIGN_LABEL
        } else {
            WARDEN_LABEL
        };
        assert_eq!(label.trim(), want);
        assert_eq!(PublicKey::from_pem(&read(&pubf)).unwrap(), key.public_key());
        let (ok, _, _) = peer(&[
            "read-key",
            "--key",
            s(&keyf),
            "--password",
            "nope",
            "--pub-out",
            s(&pubf),
        ]);
        assert!(!ok, "the peer decrypted with a wrong password");
    }
}
