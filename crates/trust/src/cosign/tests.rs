use proptest::prelude::*;

use super::*;
use crate::keys::KeyAlgorithm;

const DIGEST: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const OTHER_DIGEST: &str =
    "sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

fn repo(s: &str) -> Repository {
    Repository::parse(s).unwrap()
}

fn digest(s: &str) -> Digest {
    Digest::parse(s).unwrap()
}

fn p256(seed: u8) -> SigningKey {
    SigningKey::EcdsaP256(p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap())
}

fn ed(seed: u8) -> SigningKey {
    SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
}

fn payload_json(reference: &str, digest: &str, kind: &str) -> Vec<u8> {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{reference}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"{kind}"}},"optional":null}}"#
    )
    .into_bytes()
}

fn candidate(key: &SigningKey, payload: &[u8], origin: &str) -> SignatureCandidate {
    SignatureCandidate {
        payload: payload.to_vec(),
        signature_b64: STANDARD.encode(key.sign(payload)),
        origin: origin.to_owned(),
    }
}

/// Judges one candidate for `example.org/team/algo@DIGEST` with keys p256(1) and ed(2) pinned.
#[track_caller]
fn check(c: SignatureCandidate, want: Result<KeyId, RejectReason>) {
    let pinned = [p256(1).public_key(), ed(2).public_key()];
    let v = verify(
        &[c],
        &pinned,
        &repo("example.org/team/algo"),
        &digest(DIGEST),
    );
    match want {
        Ok(id) => {
            assert_eq!(v.verified, BTreeSet::from([id]), "{:?}", v.rejected);
            assert!(v.rejected.is_empty());
        }
        Err(reason) => {
            assert!(v.verified.is_empty(), "verified unexpectedly");
            assert_eq!(v.rejected.len(), 1);
            assert_eq!(v.rejected[0].reason, reason, "{}", v.rejected[0]);
            assert_eq!(v.rejected[0].origin, "test");
        }
    }
}

#[track_caller]
fn check_payload(payload: &[u8], want: Result<(), RejectReason>) {
    let key = p256(1);
    check(
        candidate(&key, payload, "test"),
        want.map(|()| key.public_key().id()),
    );
}

fn good() -> Vec<u8> {
    payload_json("example.org/team/algo", DIGEST, COSIGN_SIGNATURE_TYPE)
}

#[test]
fn accepts_pinned_keys_of_both_algorithms() {
    for key in [p256(1), ed(2)] {
        check(candidate(&key, &good(), "test"), Ok(key.public_key().id()));
    }
}

#[test]
fn docker_reference_is_compared_after_normalisation() {
    let d = DIGEST;
    for reference in [
        "example.org/team/algo",
        "EXAMPLE.ORG/team/algo",
        "example.org/team/algo:v1",
        &format!("example.org/team/algo@{d}"),
        &format!("example.org/team/algo:v1@{OTHER_DIGEST}"),
    ] {
        check_payload(&payload_json(reference, d, COSIGN_SIGNATURE_TYPE), Ok(()));
    }
    // Docker Hub, as cosign writes it (index.docker.io) and as people write it.
    let hub = repo("ubuntu");
    let key = p256(1);
    for reference in [
        "index.docker.io/library/ubuntu",
        "docker.io/library/ubuntu",
        "ubuntu",
    ] {
        let c = candidate(
            &key,
            &payload_json(reference, d, COSIGN_SIGNATURE_TYPE),
            "t",
        );
        let v = verify(&[c], &[key.public_key()], &hub, &digest(d));
        assert_eq!(v.verified.len(), 1, "{reference}: {:?}", v.rejected);
    }
}

#[test]
fn refuses_signature_by_unpinned_key() {
    check(
        candidate(&p256(9), &good(), "test"),
        Err(RejectReason::NoPinnedKeyVerifies),
    );
    check(
        candidate(&ed(9), &good(), "test"),
        Err(RejectReason::NoPinnedKeyVerifies),
    );
}

#[test]
fn refuses_payload_for_another_image_or_repository() {
    let key = p256(1);
    let id = Some(key.public_key().id());
    let pinned = [key.public_key()];
    let other = payload_json("example.org/team/algo", OTHER_DIGEST, COSIGN_SIGNATURE_TYPE);
    let v = verify(
        &[candidate(&key, &other, "o")],
        &pinned,
        &repo("example.org/team/algo"),
        &digest(DIGEST),
    );
    assert!(v.verified.is_empty());
    assert_eq!(v.rejected[0].signed_by, id);
    assert_eq!(
        v.rejected[0].reason,
        RejectReason::DigestMismatch {
            found: OTHER_DIGEST.into(),
            expected: DIGEST.into()
        }
    );
    // A signature copied from another repository, same digest: cosign would accept it.
    for elsewhere in [
        "example.org/team/evil",
        "other.org/team/algo",
        "example.org:5000/team/algo",
    ] {
        let p = payload_json(elsewhere, DIGEST, COSIGN_SIGNATURE_TYPE);
        let v = verify(
            &[candidate(&key, &p, "o")],
            &pinned,
            &repo("example.org/team/algo"),
            &digest(DIGEST),
        );
        assert!(v.verified.is_empty(), "{elsewhere}");
        assert!(
            matches!(&v.rejected[0].reason, RejectReason::OtherRepository { found, .. } if found == &repo(elsewhere).to_string()),
            "{elsewhere}: {}",
            v.rejected[0]
        );
    }
}

#[test]
fn refuses_malformed_payloads_even_when_signed() {
    let reason = |p: &[u8]| match SimpleSigning::parse(p) {
        Err(e) => RejectReason::Payload(e),
        Ok(_) => panic!("parsed"),
    };
    let wrong_type = payload_json(
        "example.org/team/algo",
        DIGEST,
        "atomic container signature",
    );
    check_payload(
        &wrong_type,
        Err(RejectReason::Payload(PayloadError::WrongType(
            "atomic container signature".into(),
        ))),
    );
    for bad in [
        b"not json".as_slice(),
        b"",
        b"[]",
        br#"{"critical":null,"optional":null}"#,
        br#"{"optional":null}"#,
    ] {
        let r = reason(bad);
        assert!(matches!(r, RejectReason::Payload(PayloadError::NotJson(_))));
        check_payload(bad, Err(r));
    }
    let g = String::from_utf8(good()).unwrap();
    let variants = [
        // duplicate key: Go would take the last one, a differential we refuse
        g.replacen(r#""type""#, r#""type":"x","type""#, 1),
        g.replacen(
            r#"{"critical""#,
            &format!(r#"{{"critical":{},"critical""#, "{}"),
            1,
        ),
        // unknown fields in critical and at the top
        g.replacen(r#""type""#, r#""extra":1,"type""#, 1),
        g.replacen(r#""optional""#, r#""extra":1,"optional""#, 1),
        // trailing data
        format!("{g}{{}}"),
        // optional of the wrong type
        g.replacen(r#""optional":null"#, r#""optional":[1]"#, 1),
    ];
    for v in variants {
        let r = reason(v.as_bytes());
        assert!(
            matches!(&r, RejectReason::Payload(PayloadError::NotJson(_))),
            "{v}"
        );
        check_payload(v.as_bytes(), Err(r));
    }
    let bad_digest = payload_json("example.org/team/algo", "sha256:abc", COSIGN_SIGNATURE_TYPE);
    assert!(matches!(
        reason_of(&bad_digest),
        RejectReason::Payload(PayloadError::BadDigest(_))
    ));
    let bad_ref = payload_json("Example Org/algo", DIGEST, COSIGN_SIGNATURE_TYPE);
    assert!(matches!(
        reason_of(&bad_ref),
        RejectReason::Payload(PayloadError::BadReference(_))
    ));
}

fn reason_of(payload: &[u8]) -> RejectReason {
    let key = p256(1);
    let v = verify(
        &[candidate(&key, payload, "t")],
        &[key.public_key()],
        &repo("example.org/team/algo"),
        &digest(DIGEST),
    );
    assert!(v.verified.is_empty());
    v.rejected[0].reason.clone()
}

#[test]
fn optional_annotations_are_allowed() {
    let g = String::from_utf8(good()).unwrap();
    let with = g.replace(
        r#""optional":null"#,
        r#""optional":{"a":"b","n":{"x":[1,2]}}"#,
    );
    check_payload(with.as_bytes(), Ok(()));
    let without = g.replace(r#","optional":null"#, "");
    check_payload(without.as_bytes(), Ok(()));
}

#[test]
fn refuses_malformed_signatures() {
    let key = p256(1);
    let good_sig = key.sign(&good());
    let mk = |sig: String| SignatureCandidate {
        payload: good(),
        signature_b64: sig,
        origin: "test".into(),
    };
    check(
        mk("%%%".into()),
        Err(RejectReason::BadBase64(
            "Invalid symbol 37, offset 0.".into(),
        )),
    );
    let truncated_b64 = STANDARD.encode(&good_sig);
    let truncated_b64 = truncated_b64[..truncated_b64.len() - 3].to_owned();
    assert!(matches!(
        check_reason(mk(truncated_b64)),
        RejectReason::BadBase64(_)
    ));
    // Unpadded and URL-safe base64 are not what cosign writes.
    let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&good_sig);
    if unpadded.len() % 4 != 0 {
        assert!(matches!(
            check_reason(mk(unpadded)),
            RejectReason::BadBase64(_)
        ));
    }
    let truncated_der = STANDARD.encode(&good_sig[..good_sig.len() - 1]);
    check(
        mk(truncated_der),
        Err(RejectReason::MalformedSignature {
            len: good_sig.len() - 1,
        }),
    );
    check(
        mk(STANDARD.encode([0u8; 10])),
        Err(RejectReason::MalformedSignature { len: 10 }),
    );
    check(
        mk(String::new()),
        Err(RejectReason::MalformedSignature { len: 0 }),
    );
    let mut trailing = good_sig.clone();
    trailing.push(0);
    check(
        mk(STANDARD.encode(&trailing)),
        Err(RejectReason::MalformedSignature {
            len: trailing.len(),
        }),
    );
    // The fixed-size r||s form of a valid signature is refused for P-256 (64 bytes, so it is
    // taken for an Ed25519 signature that no pinned Ed25519 key verifies).
    let fixed = p256::ecdsa::Signature::from_der(&good_sig)
        .unwrap()
        .to_bytes();
    check(
        mk(STANDARD.encode(fixed)),
        Err(RejectReason::NoPinnedKeyVerifies),
    );
    check(
        mk("A".repeat(MAX_SIGNATURE_B64_LEN + 4)),
        Err(RejectReason::SignatureTooLarge {
            len: MAX_SIGNATURE_B64_LEN + 4,
            max: MAX_SIGNATURE_B64_LEN,
        }),
    );
}

fn check_reason(c: SignatureCandidate) -> RejectReason {
    let v = verify(
        &[c],
        &[p256(1).public_key()],
        &repo("example.org/team/algo"),
        &digest(DIGEST),
    );
    assert!(v.verified.is_empty());
    v.rejected[0].reason.clone()
}

#[test]
fn refuses_oversized_payload() {
    let mut big = good();
    big.extend(std::iter::repeat_n(b' ', MAX_PAYLOAD_LEN));
    check_payload(
        &big,
        Err(RejectReason::PayloadTooLarge {
            len: big.len(),
            max: MAX_PAYLOAD_LEN,
        }),
    );
}

#[test]
fn refuses_re_serialised_payload() {
    let key = p256(1);
    let mut c = candidate(&key, &good(), "test");
    let v: serde_json::Value = serde_json::from_slice(&c.payload).unwrap();
    c.payload = serde_json::to_vec_pretty(&v).unwrap();
    check(c.clone(), Err(RejectReason::NoPinnedKeyVerifies));
    c.payload = [good().as_slice(), b"\n"].concat();
    check(c, Err(RejectReason::NoPinnedKeyVerifies));
}

#[test]
fn accepts_high_s_p256_signature() {
    let key = p256(1);
    let sig = p256::ecdsa::Signature::from_der(&key.sign(&good())).unwrap();
    assert!(sig.normalize_s().is_none(), "signing produces low S");
    let high =
        p256::ecdsa::Signature::from_scalars(sig.r().to_bytes(), (-*sig.s()).to_bytes()).unwrap();
    assert!(
        high.normalize_s().is_some(),
        "the test signature must be high S"
    );
    let c = SignatureCandidate {
        payload: good(),
        signature_b64: STANDARD.encode(high.to_der().as_bytes()),
        origin: "test".into(),
    };
    check(c, Ok(key.public_key().id()));
}

#[test]
fn each_key_counts_once() {
    let (a, b, c) = (p256(1), ed(2), p256(3));
    let pinned = [a.public_key(), b.public_key(), c.public_key()];
    let judge = |cands: &[SignatureCandidate]| {
        verify(
            cands,
            &pinned,
            &repo("example.org/team/algo"),
            &digest(DIGEST),
        )
    };
    // one key, twice (two distinct payloads: with and without annotations)
    let with_opt = String::from_utf8(good())
        .unwrap()
        .replace(r#""optional":null"#, r#""optional":{"n":"2"}"#);
    let twice = judge(&[
        candidate(&a, &good(), "1"),
        candidate(&a, with_opt.as_bytes(), "2"),
        candidate(&a, &good(), "3"),
    ]);
    assert_eq!(twice.verified.len(), 1);
    assert!(twice.meets(1));
    assert!(
        !twice.meets(2),
        "2 of 3 must not be met by one key signing twice"
    );
    let two = judge(&[candidate(&a, &good(), "1"), candidate(&b, &good(), "2")]);
    assert!(two.meets(2));
    assert!(!two.meets(3));
    assert!(!two.meets(0), "a zero threshold is never met");
}

#[test]
fn malformed_candidates_do_not_hide_good_ones() {
    let a = p256(1);
    let junk = SignatureCandidate {
        payload: b"junk".to_vec(),
        signature_b64: "!!".into(),
        origin: "junk".into(),
    };
    let stranger = candidate(&p256(7), &good(), "stranger");
    let v = verify(
        &[junk, stranger, candidate(&a, &good(), "good")],
        &[a.public_key()],
        &repo("example.org/team/algo"),
        &digest(DIGEST),
    );
    assert_eq!(v.verified, BTreeSet::from([a.public_key().id()]));
    let origins: Vec<&str> = v.rejected.iter().map(|r| r.origin.as_str()).collect();
    assert_eq!(origins, ["junk", "stranger"]);
}

#[test]
fn no_pinned_keys_verifies_nothing() {
    let v = verify(
        &[candidate(&p256(1), &good(), "t")],
        &[],
        &repo("example.org/team/algo"),
        &digest(DIGEST),
    );
    assert!(v.verified.is_empty());
    assert_eq!(v.rejected[0].reason, RejectReason::NoKeysPinned);
}

#[test]
fn creates_the_payload_cosign_creates() {
    let want = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"index.docker.io/library/ubuntu"}},"image":{{"docker-manifest-digest":"{DIGEST}"}},"type":"cosign container image signature"}},"optional":null}}"#
    );
    assert_eq!(
        String::from_utf8(payload_for(&repo("ubuntu"), &digest(DIGEST), None)).unwrap(),
        want
    );
    let got = payload_for(&repo("localhost:5000/team/algo"), &digest(DIGEST), None);
    assert!(
        String::from_utf8(got)
            .unwrap()
            .contains(r#""docker-reference":"localhost:5000/team/algo""#)
    );
    let mut ann = serde_json::Map::new();
    ann.insert("z".into(), "<a&b>".into());
    ann.insert("a".into(), "1".into());
    let got = String::from_utf8(payload_for(&repo("ubuntu"), &digest(DIGEST), Some(&ann))).unwrap();
    assert!(
        got.ends_with(r#""optional":{"a":"1","z":"\u003ca\u0026b\u003e"}}"#),
        "{got}"
    );
    assert_eq!(
        String::from_utf8(payload_for(
            &repo("ubuntu"),
            &digest(DIGEST),
            Some(&serde_json::Map::new())
        ))
        .unwrap(),
        want
    );
}

#[test]
fn sign_then_verify() {
    for key in [p256(1), ed(2)] {
        let r = repo("ubuntu");
        let s = sign(&key, &r, &digest(DIGEST), None);
        let c = SignatureCandidate {
            payload: s.payload,
            signature_b64: s.signature_b64,
            origin: "t".into(),
        };
        let v = verify(&[c], &[key.public_key()], &r, &digest(DIGEST));
        assert_eq!(v.verified, BTreeSet::from([key.public_key().id()]));
    }
}

fn any_key() -> impl Strategy<Value = SigningKey> {
    // [0xff; 32] is above the order of P-256, so not a P-256 scalar.
    (any::<bool>(), 1u8..=254).prop_map(|(ecdsa, seed)| if ecdsa { p256(seed) } else { ed(seed) })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip_and_any_byte_change_fails(
        key in any_key(),
        payload in proptest::collection::vec(any::<u8>(), 0..512),
        where_ in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        in_signature in any::<bool>(),
    ) {
        let public = key.public_key();
        let sig = key.sign(&payload);
        prop_assert!(public.verify(&payload, &sig).is_ok());
        let (mut p, mut s) = (payload.clone(), sig.clone());
        if in_signature || p.is_empty() {
            let i = where_.index(s.len());
            s[i] ^= flip;
        } else {
            let i = where_.index(p.len());
            p[i] ^= flip;
        }
        prop_assert!(public.verify(&p, &s).is_err());
    }

    #[test]
    fn payload_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_payload(&bytes);
    }

    #[test]
    fn created_payloads_parse_back(path in "[a-z0-9]{1,10}(/[a-z0-9]{1,10}){0,2}", hex in "[0-9a-f]{64}") {
        let r = repo(&format!("example.org/{path}"));
        let d = digest(&format!("sha256:{hex}"));
        let parsed = parse_payload(&payload_for(&r, &d, None)).unwrap();
        prop_assert_eq!(parsed.repository, r);
        prop_assert_eq!(parsed.digest, d);
    }
}

#[test]
fn generated_keys_sign() {
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let k = SigningKey::generate(alg).unwrap();
        assert_eq!(k.algorithm(), alg);
        assert!(k.public_key().verify(b"m", &k.sign(b"m")).is_ok());
    }
}

#[test]
fn candidates_beyond_the_cap_are_not_examined() {
    let a = p256(1);
    let mut cands: Vec<SignatureCandidate> = (0..MAX_CANDIDATES)
        .map(|i| candidate(&p256(9), &good(), &format!("junk {i}")))
        .collect();
    cands.push(candidate(&a, &good(), "late"));
    let v = verify(
        &cands,
        &[a.public_key()],
        &repo("example.org/team/algo"),
        &digest(DIGEST),
    );
    assert!(v.verified.is_empty());
    assert_eq!(v.rejected.len(), MAX_CANDIDATES + 1);
    let last = v.rejected.last().unwrap();
    assert_eq!(
        (last.origin.as_str(), &last.reason),
        ("late", &RejectReason::TooManyCandidates)
    );
}
