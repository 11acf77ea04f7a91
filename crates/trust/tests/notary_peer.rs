//! Notary Project signatures made by an independent implementation (tests/notary_peer.py, a
//! Python signer written from the specification with `cryptography`): the good ones verify and
//! count for the policy's trust store and identity; each hostile one is refused for its reason.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::BTreeMap;
use std::process::Command;

use time::OffsetDateTime;
use warden_trust::notary::{self, Identity, TargetDescriptor, TrustStore};

struct Case {
    envelope: String,
    trust_store: TrustStore,
    target: TargetDescriptor,
}

fn cases() -> BTreeMap<String, Case> {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/notary_peer.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(dir.path())
        .output()
        .expect("python3 runs (scripts/prereqs.sh installs its `cryptography` package)");
    assert!(
        out.status.success(),
        "the Python peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("cases.json")).unwrap();
    let list: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    list.into_iter()
        .map(|c| {
            let t = &c["target"];
            (
                c["name"].as_str().unwrap().to_owned(),
                Case {
                    envelope: c["envelope"].as_str().unwrap().to_owned(),
                    trust_store: TrustStore::from_pem(c["trust_store"].as_str().unwrap()).unwrap(),
                    target: TargetDescriptor {
                        media_type: t["mediaType"].as_str().unwrap().to_owned(),
                        digest: t["digest"].as_str().unwrap().to_owned(),
                        size: t["size"].as_u64().unwrap(),
                    },
                },
            )
        })
        .collect()
}

/// The manifest every case is checked against (the peer's target unless a case says otherwise).
fn manifest() -> TargetDescriptor {
    TargetDescriptor {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest: format!("sha256:{}", "ab".repeat(32)),
        size: 1234,
    }
}

#[test]
fn independent_signatures_verify_and_hostile_ones_are_refused() {
    let cases = cases();
    let now = OffsetDateTime::now_utc();
    let hospital_a = Identity::parse("x509.subject: CN=Reviewers, O=Hospital A").unwrap();
    let hospital_b = Identity::parse("x509.subject: CN=Reviewers,O=Hospital B").unwrap();

    // Good: three certificates (P-384 root, P-256 intermediate and leaf), two (RSA PS256, EC).
    for (name, identity) in [
        ("es256-three", &hospital_a),
        ("ps256-two", &hospital_b),
        ("es256-two", &hospital_a),
    ] {
        let c = &cases[name];
        let v = notary::verify_envelope(c.envelope.as_bytes(), &manifest(), now)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(c.trust_store.anchors(&v), "{name}: chains to its store");
        assert!(identity.matches(&v.subject), "{name}: {:?}", v.subject);
        assert!(
            !(if identity == &hospital_a {
                &hospital_b
            } else {
                &hospital_a
            })
            .matches(&v.subject)
        );
    }
    let v = notary::verify_envelope(cases["es256-three"].envelope.as_bytes(), &manifest(), now)
        .unwrap();
    assert_eq!(v.alg.name(), "ES256");
    assert_eq!(v.chain_sha256.len(), 3);
    assert!(
        v.subject_text.contains("CN=Reviewers"),
        "{}",
        v.subject_text
    );
    let rsa =
        notary::verify_envelope(cases["ps256-two"].envelope.as_bytes(), &manifest(), now).unwrap();
    assert_eq!(rsa.alg.name(), "PS256");

    // A chain to a root that is not in the store verifies as a chain but is not anchored.
    let untrusted = &cases["untrusted-root"];
    let v = notary::verify_envelope(untrusted.envelope.as_bytes(), &manifest(), now).unwrap();
    assert!(!untrusted.trust_store.anchors(&v));

    // Hostile: each refused, for its reason.
    for (name, reason) in [
        ("tampered-chain", "not validly signed by x5c[1]"),
        ("expired-leaf", "x5c[0] (leaf): not valid now"),
        ("wrong-key-usage", "key usage lacks digitalSignature"),
        ("server-auth-eku", "not allowed for code signing"),
        ("intermediate-not-ca", "x5c[1] (intermediate): cA is false"),
        ("leaf-is-ca", "must not be a CA"),
        ("other-digest", "the signature is for sha256:cdcd"),
        (
            "other-size",
            "the signed size 1235 is not the manifest's 1234",
        ),
        (
            "other-media-type",
            "the signed media type application/vnd.oci.image.index.v1+json",
        ),
        ("tampered-payload", "the signature does not verify"),
        ("alg-none", "alg `none` is not one of"),
        ("alg-unknown", "alg `ES256K` is not one of"),
        (
            "alg-mismatch",
            "alg ES384 does not match the signing key (EC P-256",
        ),
        (
            "crit-unknown",
            "critical header `io.example.mustUnderstand` is not understood",
        ),
        ("expired-signature", "the signature expired"),
    ] {
        let c = &cases[name];
        let e = notary::verify_envelope(c.envelope.as_bytes(), &manifest(), now)
            .err()
            .unwrap_or_else(|| panic!("{name} verified"));
        assert!(e.0.contains(reason), "{name}: {e}");
        // The peer's own target for the case does not rescue it either (except payload cases).
        let _ = &c.target;
    }

    // Validity at the signing time: a good signature checked 60 days on is refused.
    let later = now + time::Duration::days(60);
    let e = notary::verify_envelope(cases["es256-two"].envelope.as_bytes(), &manifest(), later)
        .unwrap_err();
    assert!(e.0.contains("not valid now"), "{e}");

    // A bit flipped anywhere in the leaf certificate breaks the chain or the envelope.
    let good: serde_json::Value = serde_json::from_str(&cases["es256-three"].envelope).unwrap();
    let mut bad = good.clone();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut der = b64
        .decode(good["header"]["x5c"][0].as_str().unwrap())
        .unwrap();
    let at = der.len() - 40;
    der[at] ^= 1;
    bad["header"]["x5c"][0] = b64.encode(&der).into();
    assert!(notary::verify_envelope(bad.to_string().as_bytes(), &manifest(), now).is_err());
    // An unknown top-level member is refused (the spec allows no others).
    let mut extra = good.clone();
    extra["signatures"] = serde_json::json!([]);
    let e = notary::verify_envelope(extra.to_string().as_bytes(), &manifest(), now).unwrap_err();
    assert!(e.0.contains("not a flattened JWS"), "{e}");
}

/// The node's path (`TrustStore::verify_envelope`: a pinned root's self-signature skipped,
/// pinned P-256 keys with tables) judges every case as the full verification does.
#[test]
fn the_trust_store_path_agrees_with_the_full_verification() {
    let cases = cases();
    let now = OffsetDateTime::now_utc();
    for (name, c) in &cases {
        let full = notary::verify_envelope(c.envelope.as_bytes(), &manifest(), now);
        let pinned = c
            .trust_store
            .verify_envelope(c.envelope.as_bytes(), &manifest(), now);
        assert_eq!(full, pinned, "{name}");
    }
    let p256 = &cases["es256-two-p256"];
    let v = p256
        .trust_store
        .verify_envelope(p256.envelope.as_bytes(), &manifest(), now)
        .unwrap();
    assert!(p256.trust_store.anchors(&v));
    assert_ne!(v.leaf_key_id, v.leaf_sha256);

    // A root whose self-signature is broken: refused by the full check and by a store that does
    // not pin it; a store that pins those very bytes does not ask for the self-signature.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut env: serde_json::Value = serde_json::from_str(&p256.envelope).unwrap();
    let mut root = b64
        .decode(env["header"]["x5c"][1].as_str().unwrap())
        .unwrap();
    let last = root.len() - 3;
    root[last] ^= 0x01;
    env["header"]["x5c"][1] = b64.encode(&root).into();
    let bent = env.to_string();
    let e = notary::verify_envelope(bent.as_bytes(), &manifest(), now).unwrap_err();
    assert!(e.0.contains("not validly self-signed"), "{e}");
    let e = p256
        .trust_store
        .verify_envelope(bent.as_bytes(), &manifest(), now)
        .unwrap_err();
    assert!(e.0.contains("not validly self-signed"), "{e}");
    let body = b64.encode(&root);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    );
    let pins_bent = TrustStore::from_pem(&pem).unwrap();
    let v = pins_bent
        .verify_envelope(bent.as_bytes(), &manifest(), now)
        .unwrap();
    assert!(pins_bent.anchors(&v));
    // The union of stores pins what each pins.
    let both = TrustStore::union([&pins_bent, &cases["es256-two"].trust_store]);
    assert!(both.anchors(&v));
    assert!(
        both.verify_envelope(cases["es256-two"].envelope.as_bytes(), &manifest(), now)
            .is_ok()
    );
}
