//! Review attestations: signing and verifying, strict parsing, and attacks (tampering with
//! every part of the envelope, foreign and malformed statements).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use serde_json::{Value, json};
use time::macros::datetime;
use warden_reference::{Digest, Repository};
use warden_trust::dsse::{DsseError, Envelope, IN_TOTO_PAYLOAD_TYPE};
use warden_trust::review::{
    self, Decision, MAX_COMMENT_LEN, MAX_REVIEW_ENVELOPE_LEN, REVIEW_PREDICATE_V1, Review,
    ReviewError, ReviewPredicate,
};
use warden_trust::{PublicKey, SigningKey};

const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn p256(seed: u8) -> SigningKey {
    SigningKey::EcdsaP256(p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap())
}

fn ed(seed: u8) -> SigningKey {
    SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
}

fn review() -> Review {
    Review {
        repository: Repository::parse("registry.example:5000/team/mean").unwrap(),
        digest: Digest::parse(&format!("sha256:{HEX}")).unwrap(),
        predicate: ReviewPredicate {
            store: "community".into(),
            algorithm: "mean".into(),
            version: "1.2.0".into(),
            decision: Decision::Approve,
            reviewer: "alice".into(),
            organization: "org-a".into(),
            source_repository: "https://git.example/team/mean".into(),
            source_commit: "0123456789abcdef0123456789abcdef01234567".into(),
            functions: vec!["central_mean".into(), "partial_mean".into()],
            time: datetime!(2026-12-02 05:00:00 UTC),
            comment: Some("read every line\nlooks fine".into()),
            rebuilt: None,
        },
    }
}

fn pinned() -> Vec<PublicKey> {
    vec![ed(2).public_key(), p256(1).public_key(), ed(3).public_key()]
}

/// An envelope over `statement` (any JSON), signed properly by `key`.
fn signed_json(statement: &Value, key: &SigningKey) -> Vec<u8> {
    Envelope::sign(
        IN_TOTO_PAYLOAD_TYPE,
        &serde_json::to_vec(statement).unwrap(),
        &[key],
    )
    .to_json()
}

fn statement() -> Value {
    serde_json::from_slice(&review().to_payload().unwrap()).unwrap()
}

#[track_caller]
fn refused(envelope: &[u8]) -> ReviewError {
    match review::verify_review(envelope, &pinned()) {
        Ok(v) => panic!("verified: {v:?}"),
        Err(e) => {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.ends_with('.'), "{text}");
            e
        }
    }
}

#[test]
fn signed_reviews_verify_with_both_key_types() {
    for key in [p256(1), ed(2)] {
        let env = review().sign(&key).unwrap();
        assert_eq!(env.signatures.len(), 1);
        assert_eq!(env.signatures[0].keyid, key.public_key().id().to_string());
        let v = review::verify_review(&env.to_json(), &pinned()).unwrap();
        assert_eq!(v.review, review());
        assert_eq!(v.key_id, key.public_key().id());
        assert_eq!(v.payload, review().to_payload().unwrap());
    }
    // Each decision, without comment or functions for a rejection.
    for d in [Decision::Reject, Decision::Revoke] {
        let mut r = review();
        r.predicate.decision = d;
        r.predicate.functions.clear();
        r.predicate.comment = None;
        let v = review::verify_review(&r.sign(&ed(3)).unwrap().to_json(), &pinned()).unwrap();
        assert_eq!(v.review.predicate.decision, d);
        let payload = String::from_utf8(v.payload).unwrap();
        assert!(
            payload.contains(&format!(r#""decision":"{d}""#)),
            "{payload}"
        );
        assert!(!payload.contains("comment"));
    }
    // The wire form documented in docs/store.md.
    let s = statement();
    assert_eq!(s["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(s["predicateType"], REVIEW_PREDICATE_V1);
    assert_eq!(
        s["subject"],
        json!([{"name": "registry.example:5000/team/mean", "digest": {"sha256": HEX}}])
    );
    assert_eq!(s["predicate"]["time"], "2026-12-02T05:00:00Z");
    assert_eq!(
        s["predicate"]["sourceCommit"],
        "0123456789abcdef0123456789abcdef01234567"
    );
    let keys: Vec<&String> = s["predicate"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "algorithm",
            "comment",
            "decision",
            "functions",
            "organization",
            "reviewer",
            "sourceCommit",
            "sourceRepository",
            "store",
            "time",
            "version"
        ]
    );
    assert_eq!("revoke".parse::<Decision>().unwrap(), Decision::Revoke);
    assert!("Approve".parse::<Decision>().is_err());
}

#[test]
fn only_the_pinned_key_the_envelope_names_counts() {
    let env = review().sign(&p256(9)).unwrap().to_json();
    assert_eq!(
        refused(&env),
        ReviewError::KeyNotPinned(p256(9).public_key().id())
    );
    assert_eq!(
        review::verify_review(&env, &[]).unwrap_err(),
        ReviewError::Envelope(DsseError::NoKeysPinned)
    );
    // An unpinned signer claiming a pinned key's ID.
    let mut forged = review().sign(&p256(9)).unwrap();
    forged.signatures[0].keyid = p256(1).public_key().id().to_string();
    assert_eq!(
        refused(&forged.to_json()),
        ReviewError::BadSignature(p256(1).public_key().id())
    );
    // A pinned signer's envelope relabelled as another pinned key's.
    let mut relabelled = review().sign(&ed(2)).unwrap();
    relabelled.signatures[0].keyid = ed(3).public_key().id().to_string();
    assert_eq!(
        refused(&relabelled.to_json()),
        ReviewError::BadSignature(ed(3).public_key().id())
    );
    for keyid in [
        "",
        "alice",
        "SHA256:00",
        &format!("sha256:{}", HEX.to_uppercase()),
    ] {
        let mut e = review().sign(&ed(2)).unwrap();
        e.signatures[0].keyid = keyid.into();
        assert!(
            matches!(refused(&e.to_json()), ReviewError::BadKeyId(_)),
            "{keyid}"
        );
    }
    // Two signatures (even both pinned), or none.
    let payload = review().to_payload().unwrap();
    let two = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &payload, &[&ed(2), &p256(1)]);
    assert_eq!(refused(&two.to_json()), ReviewError::SignatureCount(2));
    let none = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &payload, &[]);
    assert_eq!(refused(&none.to_json()), ReviewError::SignatureCount(0));
}

#[test]
fn the_payload_type_must_be_exact() {
    let payload = review().to_payload().unwrap();
    for t in [
        "application/json",
        "application/vnd.in-toto+json ",
        "APPLICATION/VND.IN-TOTO+JSON",
        "",
    ] {
        let env = Envelope::sign(t, &payload, &[&ed(2)]);
        assert!(
            matches!(refused(&env.to_json()), ReviewError::WrongPayloadType(_)),
            "{t}"
        );
    }
}

#[test]
fn foreign_and_malformed_statements_are_refused() {
    let k = ed(2);
    type Edit = fn(&mut Value);
    let not_review: &[(&str, Edit)] = &[
        ("unknown predicate field", |s| {
            s["predicate"]["extra"] = json!(1)
        }),
        ("unknown statement field", |s| s["extra"] = json!(1)),
        ("unknown subject field", |s| {
            s["subject"][0]["uri"] = json!("x")
        }),
        ("sha512 digest", |s| {
            s["subject"][0]["digest"] = json!({"sha512": HEX})
        }),
        ("two digests", |s| {
            s["subject"][0]["digest"]["sha512"] = json!(HEX)
        }),
        ("unknown decision", |s| {
            s["predicate"]["decision"] = json!("maybe")
        }),
        ("capitalised decision", |s| {
            s["predicate"]["decision"] = json!("Approve")
        }),
        ("missing reviewer", |s| {
            s["predicate"].as_object_mut().unwrap().remove("reviewer");
        }),
        ("missing predicate", |s| {
            s.as_object_mut().unwrap().remove("predicate");
        }),
        ("numeric version", |s| s["predicate"]["version"] = json!(1)),
        ("null comment", |s| s["predicate"]["comment"] = Value::Null),
    ];
    for (what, edit) in not_review {
        let mut s = statement();
        edit(&mut s);
        let e = refused(&signed_json(&s, &k));
        assert!(matches!(e, ReviewError::NotReview(_)), "{what}: {e:?}");
    }
    let invalid: &[(&str, Edit)] = &[
        ("upper-case digest", |s| {
            s["subject"][0]["digest"]["sha256"] = json!(HEX.to_uppercase())
        }),
        ("short digest", |s| {
            s["subject"][0]["digest"]["sha256"] = json!(&HEX[1..])
        }),
        ("not normalised", |s| {
            s["subject"][0]["name"] = json!("ubuntu")
        }),
        ("tagged name", |s| {
            s["subject"][0]["name"] = json!("registry.example/team/mean:1")
        }),
        ("local time", |s| {
            s["predicate"]["time"] = json!("2026-12-02T06:00:00+01:00")
        }),
        ("not a time", |s| {
            s["predicate"]["time"] = json!("yesterday")
        }),
        ("short commit", |s| {
            s["predicate"]["sourceCommit"] = json!("0123abc")
        }),
        ("upper-case commit", |s| {
            s["predicate"]["sourceCommit"] = json!("0123456789ABCDEF0123456789ABCDEF01234567")
        }),
        ("empty store", |s| s["predicate"]["store"] = json!("")),
        ("space in reviewer", |s| {
            s["predicate"]["reviewer"] = json!("alice b")
        }),
        ("control in organization", |s| {
            s["predicate"]["organization"] = json!("org\u{7}")
        }),
        ("long algorithm", |s| {
            s["predicate"]["algorithm"] = json!("a".repeat(129))
        }),
        ("approval without functions", |s| {
            s["predicate"]["functions"] = json!([])
        }),
        ("function twice", |s| {
            s["predicate"]["functions"] = json!(["f", "f"])
        }),
        ("long comment", |s| {
            s["predicate"]["comment"] = json!("c".repeat(MAX_COMMENT_LEN + 1))
        }),
        ("escape in comment", |s| {
            s["predicate"]["comment"] = json!("\u{1b}[2J")
        }),
        ("space in url", |s| {
            s["predicate"]["sourceRepository"] = json!("https://x/ y")
        }),
    ];
    for (what, edit) in invalid {
        let mut s = statement();
        edit(&mut s);
        let e = refused(&signed_json(&s, &k));
        assert!(matches!(e, ReviewError::Invalid { .. }), "{what}: {e:?}");
    }
    let mut s = statement();
    s["predicateType"] = json!("https://slsa.dev/provenance/v1");
    assert!(matches!(
        refused(&signed_json(&s, &k)),
        ReviewError::WrongPredicateType(_)
    ));
    let mut s = statement();
    s["_type"] = json!("https://in-toto.io/Statement/v0.1");
    assert!(matches!(
        refused(&signed_json(&s, &k)),
        ReviewError::WrongStatementType(_)
    ));
    for subjects in [
        json!([]),
        json!([statement()["subject"][0], statement()["subject"][0]]),
    ] {
        let mut s = statement();
        s["subject"] = subjects.clone();
        assert!(matches!(
            refused(&signed_json(&s, &k)),
            ReviewError::SubjectCount(_)
        ));
    }
    // Duplicate keys, at the predicate and the statement level.
    let text = String::from_utf8(review().to_payload().unwrap()).unwrap();
    for dup in [
        text.replacen(
            r#""decision":"approve""#,
            r#""decision":"reject","decision":"approve""#,
            1,
        ),
        text.replacen(
            r#""predicateType""#,
            r#""predicateType":"x","predicateType""#,
            1,
        ),
    ] {
        let env = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, dup.as_bytes(), &[&k]);
        assert!(
            matches!(refused(&env.to_json()), ReviewError::NotReview(_)),
            "{dup}"
        );
    }
    for garbage in [&b"not json"[..], b"[]", b"{}", b"null", b"\xff"] {
        let env = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, garbage, &[&k]);
        assert!(matches!(refused(&env.to_json()), ReviewError::NotReview(_)));
    }
    // Fractional seconds in UTC are RFC 3339 and accepted.
    let mut s = statement();
    s["predicate"]["time"] = json!("2026-12-02T05:00:00.25Z");
    review::verify_review(&signed_json(&s, &k), &pinned()).unwrap();
}

#[test]
fn building_refuses_what_parsing_would_refuse() {
    let mut r = review();
    r.digest = Digest::of(warden_reference::Algorithm::Sha512, b"x");
    assert!(matches!(
        r.sign(&ed(2)),
        Err(ReviewError::Invalid {
            field: "subject",
            ..
        })
    ));
    let mut r = review();
    r.predicate.time = datetime!(2026-12-02 06:00:00 +1);
    assert!(matches!(
        r.sign(&ed(2)),
        Err(ReviewError::Invalid { field: "time", .. })
    ));
    let mut r = review();
    r.predicate.functions = (0..65).map(|i| format!("f{i}")).collect();
    assert!(matches!(
        r.sign(&ed(2)),
        Err(ReviewError::Invalid {
            field: "functions",
            ..
        })
    ));
}

#[test]
fn envelope_level_limits() {
    let big = vec![b' '; MAX_REVIEW_ENVELOPE_LEN + 1];
    assert!(matches!(refused(&big), ReviewError::TooLarge { .. }));
    assert!(matches!(
        refused(b"{"),
        ReviewError::Envelope(DsseError::NotJson(_))
    ));
    let mut e = review().sign(&ed(2)).unwrap();
    e.payload = "@@@".into();
    assert!(matches!(
        refused(&e.to_json()),
        ReviewError::Envelope(DsseError::BadBase64 {
            field: "payload",
            ..
        })
    ));
    let mut e = review().sign(&ed(2)).unwrap();
    e.signatures[0].sig = "@@@".into();
    assert!(matches!(
        refused(&e.to_json()),
        ReviewError::Envelope(DsseError::BadBase64 { field: "sig", .. })
    ));
    // Looking at an envelope without verifying it is possible, and says nothing about trust.
    let (env, r) =
        review::parse_review_envelope(&review().sign(&p256(9)).unwrap().to_json()).unwrap();
    assert_eq!(r, review());
    assert_eq!(env.signatures.len(), 1);
}

fn flip_b64(b64: &str, index: usize, bit: u8) -> String {
    let mut raw = STANDARD.decode(b64).unwrap();
    let i = index % raw.len();
    raw[i] ^= 1 << (bit % 8);
    STANDARD.encode(raw)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any change of a payload byte, the payload type, a signature byte or the keyid makes
    /// verification fail, for both key types.
    #[test]
    fn any_tampering_fails(use_p256 in any::<bool>(), index in any::<usize>(), bit in 0u8..8, what in 0u8..4, ch in any::<char>()) {
        let key = if use_p256 { p256(1) } else { ed(2) };
        let good = review().sign(&key).unwrap();
        prop_assert!(review::verify_review(&good.to_json(), &pinned()).is_ok());
        let mut bad = good.clone();
        match what {
            0 => bad.payload = flip_b64(&good.payload, index, bit),
            1 => {
                let mut t: Vec<char> = good.payload_type.chars().collect();
                let i = index % (t.len() + 1);
                if i < t.len() && t[i] != ch { t[i] = ch } else { t.insert(i, ch) }
                bad.payload_type = t.into_iter().collect();
            }
            2 => bad.signatures[0].sig = flip_b64(&good.signatures[0].sig, index, bit),
            _ => {
                let mut k: Vec<char> = good.signatures[0].keyid.chars().collect();
                let i = 7 + index % (k.len() - 7);
                k[i] = if k[i] == '0' { '1' } else { '0' };
                bad.signatures[0].keyid = k.into_iter().collect();
            }
        }
        prop_assert_ne!(&bad, &good);
        prop_assert!(review::verify_review(&bad.to_json(), &pinned()).is_err());
    }

    /// Arbitrary bytes are an error value, never a panic, and never verify.
    #[test]
    fn arbitrary_bytes_never_verify(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        prop_assert!(review::verify_review(&bytes, &pinned()).is_err());
    }
}

/// `rebuilt` (`warden review approve --rebuild`): optional, so a review without it has the
/// payload it always had; present, it round-trips under the signature; `null`, unknown fields,
/// an escaping path and a rebuild on a rejection are refused.
#[test]
fn the_rebuilt_field_is_optional_strict_and_signed() {
    let plain = review().to_payload().unwrap();
    assert!(!String::from_utf8_lossy(&plain).contains("rebuilt"));
    let mut r = review();
    r.predicate.rebuilt = Some(review::Rebuilt {
        path: "algorithms/mean".into(),
    });
    let env = r.sign(&ed(2)).unwrap().to_json();
    let v = review::verify_review(&env, &pinned()).unwrap();
    assert_eq!(v.review, r);
    let s: Value = serde_json::from_slice(&v.payload).unwrap();
    assert_eq!(
        s["predicate"]["rebuilt"],
        json!({"path": "algorithms/mean"})
    );

    for (rebuilt, why) in [
        (Value::Null, "null"),
        (json!({"path": "a", "digest": "x"}), "unknown field"),
        (json!({"path": "../etc"}), "relative directory"),
        (json!({"path": "/abs"}), "relative directory"),
        (json!({}), "missing field"),
    ] {
        let mut st = statement();
        st["predicate"]["rebuilt"] = rebuilt.clone();
        let e = refused(&signed_json(&st, &ed(2))).to_string();
        assert!(
            e.contains(why) || e.contains("invalid type"),
            "{rebuilt}: {e}"
        );
    }
    let mut rejection = r.clone();
    rejection.predicate.decision = Decision::Reject;
    rejection.predicate.functions.clear();
    let e = rejection.to_payload().unwrap_err().to_string();
    assert!(e.contains("only an approval records a rebuild"), "{e}");
}
