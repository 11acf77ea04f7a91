//! Sealing and opening through the public API: round trips, every way a message must fail to
//! open, and RFC 9180 appendix A.2.1.

// Helpers outside `#[test]` functions are test code too.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use warden_seal::{
    ENC_LEN, OVERHEAD, PublicKey, SealError, SecretKey, VERSION, open, seal,
    seal_with_ephemeral_ikm,
};

const CTX: &[u8] = b"warden/input/v1|collab=3|org=7";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip(
        plaintext in prop::collection::vec(any::<u8>(), 0..4096),
        context in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let sk = SecretKey::generate();
        let sealed = seal(&sk.public_key(), &context, &plaintext).unwrap();
        prop_assert_eq!(sealed.len(), plaintext.len() + OVERHEAD);
        prop_assert_eq!(open(&sk, &context, &sealed).unwrap(), plaintext);
    }

    /// Flipping any bit of a sealed message makes it fail to open.
    #[test]
    fn any_bit_flip_fails(
        plaintext in prop::collection::vec(any::<u8>(), 0..256),
        pos in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let sk = SecretKey::generate();
        let mut sealed = seal(&sk.public_key(), CTX, &plaintext).unwrap();
        let i = pos.index(sealed.len());
        sealed[i] ^= 1 << bit;
        let e = open(&sk, CTX, &sealed).unwrap_err();
        if i == 0 {
            prop_assert_eq!(e, SealError::UnknownVersion(VERSION ^ (1 << bit)));
        } else {
            prop_assert_eq!(e, SealError::OpenFailed);
        }
    }

    /// Arbitrary bytes never open and never panic.
    #[test]
    fn arbitrary_bytes_do_not_open(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let sk = SecretKey::from_bytes([3; 32]);
        prop_assert!(open(&sk, CTX, &bytes).is_err());
    }

    /// Cutting a sealed message anywhere makes it fail to open.
    #[test]
    fn any_truncation_fails(len in 0usize..200, cut in any::<prop::sample::Index>()) {
        let sk = SecretKey::generate();
        let sealed = seal(&sk.public_key(), CTX, &vec![7u8; len]).unwrap();
        let keep = cut.index(sealed.len());
        let e = open(&sk, CTX, &sealed[..keep]).unwrap_err();
        if keep < OVERHEAD {
            let is_truncated = matches!(e, SealError::Truncated { .. });
            prop_assert!(is_truncated, "{e:?}");
        } else {
            prop_assert_eq!(e, SealError::OpenFailed);
        }
    }
}

#[test]
fn wrong_key_fails() {
    let sk = SecretKey::generate();
    let other = SecretKey::generate();
    let sealed = seal(&sk.public_key(), CTX, b"secret").unwrap();
    assert_eq!(open(&other, CTX, &sealed), Err(SealError::OpenFailed));
}

#[test]
fn wrong_context_fails() {
    let sk = SecretKey::generate();
    let sealed = seal(&sk.public_key(), CTX, b"secret").unwrap();
    for other in [
        &b"warden/input/v1|collab=3|org=8"[..],
        b"warden/result/v1|collab=3|org=7",
        b"",
    ] {
        assert_eq!(open(&sk, other, &sealed), Err(SealError::OpenFailed));
    }
    assert_eq!(open(&sk, CTX, &sealed).unwrap(), b"secret");
}

#[test]
fn unknown_versions_are_refused_with_their_number() {
    let sk = SecretKey::generate();
    let mut sealed = seal(&sk.public_key(), CTX, b"secret").unwrap();
    for v in [0u8, 2, 0xff] {
        sealed[0] = v;
        let e = open(&sk, CTX, &sealed).unwrap_err();
        assert_eq!(e, SealError::UnknownVersion(v));
        assert!(e.to_string().contains(&format!("version {v}")), "{e}");
    }
}

#[test]
fn empty_and_short_messages_are_truncated() {
    let sk = SecretKey::generate();
    assert!(matches!(
        open(&sk, CTX, b""),
        Err(SealError::Truncated { len: 0, .. })
    ));
    assert!(matches!(
        open(&sk, CTX, &[VERSION; OVERHEAD - 1]),
        Err(SealError::Truncated { .. })
    ));
}

#[test]
fn a_key_read_back_from_pem_opens() {
    let sk = SecretKey::generate();
    let sealed = seal(&sk.public_key(), CTX, b"secret").unwrap();
    let back = SecretKey::from_pem(&sk.to_pem()).unwrap();
    assert_eq!(open(&back, CTX, &sealed).unwrap(), b"secret");
    let pk = PublicKey::from_base64(&sk.public_key().to_base64()).unwrap();
    assert_eq!(pk, sk.public_key());
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn h32(s: &str) -> [u8; 32] {
    h(s).try_into().unwrap()
}

/// RFC 9180 appendix A.2.1: base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
/// ChaCha20Poly1305. The ephemeral key is set through its `ikmE`. The vector's first encryption
/// uses associated data `Count-0` where Warden uses none, so the expected ciphertext is computed
/// from the vector's own key and base nonce with an independent ChaCha20-Poly1305.
#[test]
fn rfc9180_a2_test_vector() {
    use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};

    let info = h("4f6465206f6e2061204772656369616e2055726e");
    let ikm_e = h32("909a9b35d3dc4713a5e72a4da274b55d3d3821a37e5d099e74a647db583a904b");
    let sk_rm = h32("8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb");
    let pk_rm = h32("4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a");
    let enc = h("1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a");
    let key = h("ad2744de8e17f4ebba575b3f5f5a8fa1f69c2a07f6e7500bc60ca6e3e3ec1c91");
    let base_nonce = h("5c4d98150661b848853b547f");
    let pt = h("4265617574792069732074727574682c20747275746820626561757479");
    let ct_count0 = h(
        "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28",
    );

    let sk = SecretKey::from_bytes(sk_rm);
    assert_eq!(sk.public_key(), PublicKey::from_bytes(pk_rm));

    let aead = chacha20poly1305::ChaCha20Poly1305::new_from_slice(&key).unwrap();
    // the independent AEAD reproduces the vector's own ciphertext
    let check = aead
        .encrypt(
            base_nonce.as_slice().into(),
            Payload {
                msg: &pt,
                aad: b"Count-0",
            },
        )
        .unwrap();
    assert_eq!(check, ct_count0);
    let expected_ct = aead
        .encrypt(base_nonce.as_slice().into(), Payload { msg: &pt, aad: b"" })
        .unwrap();

    let sealed =
        seal_with_ephemeral_ikm(&PublicKey::from_bytes(pk_rm), &info, &pt, &ikm_e).unwrap();
    assert_eq!(sealed[0], VERSION);
    assert_eq!(&sealed[1..1 + ENC_LEN], enc.as_slice());
    assert_eq!(&sealed[1 + ENC_LEN..], expected_ct.as_slice());
    assert_eq!(open(&sk, &info, &sealed).unwrap(), pt);
}

/// RFC 9180 appendix A.2.3: auth mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
/// ChaCha20Poly1305 (the values as published in the CFRG's `draft-irtf-cfrg-hpke.md`, whose
/// A.2.1 values are the ones above). Version 2 messages use this mode; the vector checks the
/// sender's static key takes part exactly as the RFC says, in both directions.
#[test]
fn rfc9180_a23_auth_mode_test_vector() {
    use warden_seal::envelope::{auth_open, auth_seal_in_place};

    let info = h("4f6465206f6e2061204772656369616e2055726e");
    let ikm_e = h32("938d3daa5a8904540bc24f48ae90eed3f4f7f11839560597b55e7c9598c996c0");
    let sk_rm = h32("3ca22a6d1cda1bb9480949ec5329d3bf0b080ca4c45879c95eddb55c70b80b82");
    let pk_rm = h32("1a478716d63cb2e16786ee93004486dc151e988b34b475043d3e0175bdb01c44");
    let sk_sm = h32("2def0cb58ffcf83d1062dd085c8aceca7f4c0c3fd05912d847b61f3e54121f05");
    let pk_sm = h32("f0f4f9e96c54aeed3f323de8534fffd7e0577e4ce269896716bcb95643c8712b");
    let enc = h("f7674cc8cd7baa5872d1f33dbaffe3314239f6197ddf5ded1746760bfc847e0e");
    let pt = h("4265617574792069732074727574682c20747275746820626561757479");
    let aad = h("436f756e742d30");
    let ct = h(concat!(
        "ab1a13c9d4f01a87ec3440dbd756e2677bd2ecf9df0ce7ed73869b98e00c09be",
        "111cb9fdf077347aeb88e61bdf"
    ));

    let recipient = SecretKey::from_bytes(sk_rm);
    let sender = SecretKey::from_bytes(sk_sm);
    assert_eq!(recipient.public_key(), PublicKey::from_bytes(pk_rm));
    assert_eq!(sender.public_key(), PublicKey::from_bytes(pk_sm));

    let mut buf = pt.clone();
    let (got_enc, tag) = auth_seal_in_place(
        &sender,
        &PublicKey::from_bytes(pk_rm),
        &info,
        &aad,
        &mut buf,
        &ikm_e,
    )
    .unwrap();
    buf.extend_from_slice(&tag);
    assert_eq!(got_enc.as_slice(), enc.as_slice());
    assert_eq!(buf, ct);

    let opened = auth_open(
        &recipient,
        &PublicKey::from_bytes(pk_sm),
        &info,
        &aad,
        &enc,
        &ct,
    )
    .unwrap();
    assert_eq!(&opened[..], pt.as_slice());
    // Another sender key does not open it: the sender is authenticated.
    let other = SecretKey::generate().public_key();
    assert_eq!(
        auth_open(&recipient, &other, &info, &aad, &enc, &ct).unwrap_err(),
        SealError::OpenFailed
    );
}
