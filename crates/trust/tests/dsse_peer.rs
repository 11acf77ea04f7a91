//! DSSE against its specification's published test vector (tests/data/dsse-protocol-vector.json)
//! and against an independent implementation: tests/peers/dsse_peer.py, written with Python's
//! `securesystemslib` (DSSE) and `cryptography`. Python signs review envelopes that Warden
//! verifies and the other way round, and both compute the same PAE for random inputs.
//!
//! Needs `python3` with `pip install 'securesystemslib[crypto]'` (scripts/prereqs.sh installs
//! it); without it these tests fail and say what to install.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Signer as _;
use serde_json::{Value, json};
use time::macros::datetime;
use warden_reference::{Digest, Repository};
use warden_trust::dsse::{Envelope, pae};
use warden_trust::review::{self, Decision, Review, ReviewPredicate};
use warden_trust::{KeyAlgorithm, PublicKey, SigningKey};

fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn peer(args: &[&str], stdin: Option<&[u8]>) -> (bool, String, String) {
    let mut child = Command::new("python3")
        .arg(manifest_dir().join("../../tests/peers/dsse_peer.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}); install python3 and `pip install 'securesystemslib[crypto]'`")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or_default())
        .unwrap();
    let out = child.wait_with_output().unwrap();
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

/// A decimal number as 32 big-endian bytes.
fn decimal_to_32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for d in s.bytes() {
        let mut carry = u32::from(d - b'0');
        for b in out.iter_mut().rev() {
            let v = u32::from(*b) * 10 + carry;
            *b = (v & 0xff) as u8;
            carry = v >> 8;
        }
        assert_eq!(carry, 0, "number too large");
    }
    out
}

#[test]
fn the_dsse_specification_vector() {
    let v: Value = serde_json::from_slice(
        &std::fs::read(manifest_dir().join("tests/data/dsse-protocol-vector.json")).unwrap(),
    )
    .unwrap();
    let (t, payload) = (
        v["payloadType"].as_str().unwrap(),
        v["payload"].as_str().unwrap(),
    );
    let message = pae(t, payload.as_bytes());
    assert_eq!(message, v["pae"].as_str().unwrap().as_bytes());

    // The published key, and its deterministic (RFC 6979) signature reproduced exactly.
    let d = decimal_to_32(v["key"]["d"].as_str().unwrap());
    let sk = p256::ecdsa::SigningKey::from_slice(&d).unwrap();
    let point = sk.verifying_key().to_encoded_point(false);
    assert_eq!(
        &point.x().unwrap()[..],
        decimal_to_32(v["key"]["x"].as_str().unwrap())
    );
    assert_eq!(
        &point.y().unwrap()[..],
        decimal_to_32(v["key"]["y"].as_str().unwrap())
    );
    let env = Envelope::parse(&serde_json::to_vec(&v["envelope"]).unwrap()).unwrap();
    let published = STANDARD.decode(&env.signatures[0].sig).unwrap();
    let ours: p256::ecdsa::Signature = sk.sign(&message);
    assert_eq!(&ours.to_bytes()[..], &published[..]);

    // Warden's verifier (DER signatures) accepts the published one, re-encoded, over this PAE
    // only; and Warden's own envelope of the same payload carries the same payload encoding.
    let key = SigningKey::EcdsaP256(sk);
    let public = key.public_key();
    let der = p256::ecdsa::Signature::from_slice(&published)
        .unwrap()
        .to_der();
    public.verify(&message, der.as_bytes()).unwrap();
    assert!(
        public
            .verify(&pae(t, b"hello worle"), der.as_bytes())
            .is_err()
    );
    let mut reencoded = env.clone();
    reencoded.signatures[0].sig = STANDARD.encode(der.as_bytes());
    let verified = reencoded.verify(&[public]).unwrap();
    assert_eq!(verified.payload, b"hello world");
    let mine = Envelope::sign(t, payload.as_bytes(), &[&key]);
    assert_eq!(mine.payload, env.payload);
}

#[test]
fn pae_matches_securesystemslib() {
    // Edge cases and pseudo-random types and payloads (multi-byte characters count in bytes).
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        (String::new(), vec![]),
        ("application/vnd.in-toto+json".into(), b"{}".to_vec()),
        ("é ✓ 𝄞".into(), "ünïcode".as_bytes().to_vec()),
        ("a b".into(), b" 1 2 ".to_vec()),
        ("x".repeat(1000), vec![0u8; 10_000]),
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..200 {
        let tlen = (next() % 40) as usize;
        let t: String = (0..tlen)
            .map(|_| char::from_u32(0x20 + (next() % 0x3000) as u32).unwrap_or('?'))
            .collect();
        let plen = (next() % 300) as usize;
        let p: Vec<u8> = (0..plen).map(|_| next() as u8).collect();
        cases.push((t, p));
    }
    let input: String = cases
        .iter()
        .map(|(t, p)| json!({"type": t, "payload": STANDARD.encode(p)}).to_string() + "\n")
        .collect();
    let (ok, out, err) = peer(&["pae"], Some(input.as_bytes()));
    assert!(ok, "peer failed: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), cases.len());
    for ((t, p), line) in cases.iter().zip(lines) {
        assert_eq!(STANDARD.decode(line).unwrap(), pae(t, p), "type {t:?}");
    }
}

fn review() -> Review {
    Review {
        repository: Repository::parse("localhost:5000/team/mean").unwrap(),
        digest: Digest::sha256_of(b"manifest"),
        predicate: ReviewPredicate {
            store: "community".into(),
            algorithm: "mean".into(),
            version: "2".into(),
            decision: Decision::Approve,
            reviewer: "bob".into(),
            organization: "org-b".into(),
            source_repository: "https://git.example/team/mean".into(),
            source_commit: "89abcdef0123456789abcdef0123456789abcdef".into(),
            functions: vec!["central_mean".into()],
            time: datetime!(2026-12-02 06:30:15 UTC),
            comment: Some("checked the partial sums — fine".into()),
            rebuilt: None,
        },
    }
}

fn fields(r: &Review) -> Value {
    let p = &r.predicate;
    json!({
        "repository": r.repository.to_string(),
        "digest": r.digest.hex(),
        "store": p.store, "algorithm": p.algorithm, "version": p.version,
        "decision": p.decision.as_str(), "reviewer": p.reviewer, "organization": p.organization,
        "sourceRepository": p.source_repository, "sourceCommit": p.source_commit,
        "functions": p.functions, "time": "2026-12-02T06:30:15Z", "comment": p.comment,
    })
}

#[test]
fn warden_verifies_reviews_securesystemslib_signed() {
    for algorithm in ["ed25519", "ecdsa-p256"] {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("fields.json");
        std::fs::write(&f, fields(&review()).to_string()).unwrap();
        let d = dir.path().to_str().unwrap();
        let (ok, kid, err) = peer(
            &[
                "sign",
                "--dir",
                d,
                "--fields",
                f.to_str().unwrap(),
                "--algorithm",
                algorithm,
            ],
            None,
        );
        assert!(ok, "peer sign failed: {err}");
        let key =
            PublicKey::from_pem(&std::fs::read_to_string(dir.path().join("key.pub")).unwrap())
                .unwrap();
        // The key ID is the same on both sides: sha256 of the DER SubjectPublicKeyInfo.
        assert_eq!(key.id().to_string(), kid.trim());
        let env = std::fs::read(dir.path().join("envelope.json")).unwrap();
        let other = SigningKey::generate(KeyAlgorithm::Ed25519)
            .unwrap()
            .public_key();
        let v = review::verify_review(&env, &[other.clone(), key.clone()]).unwrap();
        assert_eq!(v.review, review(), "{algorithm}");
        assert_eq!(v.key_id, key.id());
        // Python's pretty-printed JSON is what was signed, and what Warden keeps.
        assert!(v.payload.contains(&b'\n'));
        // Not by another key; not with one payload byte changed.
        assert!(review::verify_review(&env, &[other]).is_err());
        let mut e: Value = serde_json::from_slice(&env).unwrap();
        let mut payload = STANDARD.decode(e["payload"].as_str().unwrap()).unwrap();
        let i = payload.iter().position(|&b| b == b'b').unwrap();
        payload[i] = b'c';
        e["payload"] = json!(STANDARD.encode(payload));
        assert!(review::verify_review(&serde_json::to_vec(&e).unwrap(), &[key]).is_err());
    }
}

#[test]
fn securesystemslib_verifies_reviews_warden_signed() {
    for algorithm in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate(algorithm).unwrap();
        let pub_path = dir.path().join("key.pub");
        std::fs::write(&pub_path, key.public_key().to_pem()).unwrap();
        let env = review().sign(&key).unwrap();
        let env_path = dir.path().join("envelope.json");
        std::fs::write(&env_path, env.to_json()).unwrap();
        let args = [
            "verify",
            "--pub",
            pub_path.to_str().unwrap(),
            "--envelope",
            env_path.to_str().unwrap(),
        ];
        let (ok, out, err) = peer(&args, None);
        assert!(ok, "peer refused Warden's {algorithm} envelope: {err}");
        let statement: Value = serde_json::from_str(&out).unwrap();
        let ours: Value = serde_json::from_slice(&review().to_payload().unwrap()).unwrap();
        assert_eq!(statement, ours);
        // The peer is not a yes-man: a changed signature, or another key, is refused by it.
        let mut bad = env.clone();
        let mut sig = STANDARD.decode(&bad.signatures[0].sig).unwrap();
        let last = sig.len() - 1;
        sig[last] ^= 1;
        bad.signatures[0].sig = STANDARD.encode(sig);
        std::fs::write(&env_path, bad.to_json()).unwrap();
        assert!(!peer(&args, None).0, "peer accepted a changed signature");
        let other = SigningKey::generate(algorithm).unwrap();
        let mut relabelled = review().sign(&other).unwrap();
        relabelled.signatures[0].keyid = env.signatures[0].keyid.clone();
        std::fs::write(&env_path, relabelled.to_json()).unwrap();
        assert!(
            !peer(&args, None).0,
            "peer accepted another key's signature"
        );
    }
}
