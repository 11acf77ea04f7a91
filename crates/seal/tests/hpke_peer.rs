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

fn result_binding() -> warden_seal::ResultBinding {
    warden_seal::ResultBinding {
        nonce: warden_seal::new_nonce(),
        run_id: 41,
        organization: "hospital-b".into(),
        digest: format!("sha256:{}", "c".repeat(64)),
    }
}

/// A version 2 result sealed by the peer as organization B's node opens in Warden, with B's
/// key as the pinned producer, and its binding reads back; with another producer it is refused.
#[test]
fn the_peer_seals_a_v2_result_and_warden_opens_it() {
    let dir = tempfile::tempdir().unwrap();
    let node_key = dir.path().join("node.pem");
    let node_pub = peer_ok(&["genkey", "--out", s(&node_key)]);
    let node_pub = PublicKey::from_base64(node_pub.trim()).unwrap();
    let researcher = SecretKey::generate();
    let binding = result_binding();
    let body: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let (b, i, o) = (
        dir.path().join("binding"),
        dir.path().join("in"),
        dir.path().join("out"),
    );
    std::fs::write(&b, serde_json::to_vec(&binding).unwrap()).unwrap();
    std::fs::write(&i, &body).unwrap();
    peer_ok(&[
        "seal-result",
        "--key",
        s(&node_key),
        "--to",
        &researcher.public_key().to_base64(),
        "--kind",
        "result",
        "--binding",
        s(&b),
        "--in",
        s(&i),
        "--out",
        s(&o),
    ]);
    let sealed = std::fs::read(&o).unwrap();
    let (got, opened) =
        warden_seal::open_result(&researcher, &node_pub, warden_seal::Kind::Result, &sealed)
            .unwrap();
    assert_eq!(got, binding);
    assert_eq!(&opened[..], body.as_slice());
    let other = SecretKey::generate().public_key();
    assert!(matches!(
        warden_seal::open_result(&researcher, &other, warden_seal::Kind::Result, &sealed),
        Err(SealError::WrongSender { .. })
    ));
}

/// Warden's version 2 messages open in the peer: a node's result (checked against the node's
/// key) and a researcher's input (sender key taken from the certificate in the header).
#[test]
fn warden_seals_v2_messages_and_the_peer_opens_them() {
    use warden_trust::{KeyAlgorithm, SigningKey};

    let dir = tempfile::tempdir().unwrap();
    let peer_key = dir.path().join("peer.pem");
    let peer_pub = peer_ok(&["genkey", "--out", s(&peer_key)]);
    let peer_pub = PublicKey::from_base64(peer_pub.trim()).unwrap();
    let (o, out, bo) = (
        dir.path().join("sealed"),
        dir.path().join("out"),
        dir.path().join("binding"),
    );

    // A result from a node to the peer.
    let node = SecretKey::generate();
    let binding = result_binding();
    let sealed = warden_seal::seal_result(
        &node,
        warden_seal::Kind::Result,
        &peer_pub,
        &binding,
        b"{\"mean\": 41.5}",
    )
    .unwrap();
    std::fs::write(&o, &sealed).unwrap();
    let said = peer_ok(&[
        "open-v2",
        "--key",
        s(&peer_key),
        "--from",
        &node.public_key().to_base64(),
        "--in",
        s(&o),
        "--out",
        s(&out),
        "--binding-out",
        s(&bo),
    ]);
    assert_eq!(
        said.trim(),
        format!("result {}", node.public_key().to_base64())
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"{\"mean\": 41.5}");
    let back: warden_seal::ResultBinding =
        serde_json::from_slice(&std::fs::read(&bo).unwrap()).unwrap();
    assert_eq!(back, binding);
    // The peer refuses it as coming from any other organization.
    let (ok, _, err) = peer(&[
        "open-v2",
        "--key",
        s(&peer_key),
        "--from",
        &SecretKey::generate().public_key().to_base64(),
        "--in",
        s(&o),
        "--out",
        s(&out),
        "--binding-out",
        s(&bo),
    ]);
    assert!(!ok && err.contains("refused"), "{err}");

    // An input from a certified researcher to the peer (as the target organization).
    let ca = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let researcher = SecretKey::generate();
    let cert = warden_seal::Certificate::issue(
        &ca,
        "hospital-a",
        "rita",
        &researcher.public_key(),
        0,
        86_400,
    )
    .unwrap();
    let input = warden_seal::InputBinding {
        nonce: warden_seal::new_nonce(),
        issued_at: 10,
        collaboration: "cardio".into(),
        image: "registry.example.org/warden/mean:1.0".into(),
        digest: format!("sha256:{}", "d".repeat(64)),
        function: "partial_mean".into(),
        target: "hospital-b".into(),
        requester: warden_seal::Requester {
            organization: "hospital-a".into(),
            user: "rita".into(),
        },
        reply_key: researcher.public_key().to_base64(),
        via: None,
    };
    let sealed = warden_seal::seal_input(
        &researcher,
        &warden_seal::Sender::Researcher(Box::new(cert)),
        &peer_pub,
        &input,
        b"{\"function\":\"partial_mean\"}",
    )
    .unwrap();
    std::fs::write(&o, &sealed).unwrap();
    let said = peer_ok(&[
        "open-v2",
        "--key",
        s(&peer_key),
        "--in",
        s(&o),
        "--out",
        s(&out),
        "--binding-out",
        s(&bo),
    ]);
    assert_eq!(
        said.trim(),
        format!("input {}", researcher.public_key().to_base64())
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"{\"function\":\"partial_mean\"}"
    );
    let back: warden_seal::InputBinding =
        serde_json::from_slice(&std::fs::read(&bo).unwrap()).unwrap();
    assert_eq!(back, input);
}
