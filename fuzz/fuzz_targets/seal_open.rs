//! Sealed messages (`warden_seal::open`): arbitrary bytes never open, a sealed message opens to
//! its plaintext under its context only, and any one-byte change to it is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_seal::{SecretKey, open, seal_with_ephemeral_ikm};

static KEY: std::sync::OnceLock<SecretKey> = std::sync::OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let key = KEY.get_or_init(|| SecretKey::from_bytes([0x42; 32]));
    assert!(open(key, b"ctx", data).is_err(), "arbitrary bytes opened");
    assert!(open(key, b"", data).is_err(), "arbitrary bytes opened");

    // Structured: [flip position (2 bytes), flip mask, context length, context.., plaintext..]
    let [p0, p1, mask, clen, rest @ ..] = data else {
        return;
    };
    let clen = usize::from(*clen).min(rest.len());
    let (context, plaintext) = rest.split_at(clen);
    let sealed = seal_with_ephemeral_ikm(&key.public_key(), context, plaintext, &[7; 32])
        .expect("sealing a small message");
    assert_eq!(sealed.len(), plaintext.len() + warden_seal::OVERHEAD);
    assert_eq!(open(key, context, &sealed).expect("opens"), plaintext);
    let mut other_context = context.to_vec();
    other_context.push(0);
    assert!(
        open(key, &other_context, &sealed).is_err(),
        "opened under another context"
    );
    let other = SecretKey::from_bytes([0x43; 32]);
    assert!(
        open(&other, context, &sealed).is_err(),
        "opened with another key"
    );
    if *mask != 0 {
        let mut altered = sealed.clone();
        let at = usize::from(u16::from_le_bytes([*p0, *p1])) % altered.len();
        altered[at] ^= mask;
        assert!(
            open(key, context, &altered).is_err(),
            "an altered message opened"
        );
    }
    assert!(
        open(key, context, &sealed[..sealed.len() - 1]).is_err(),
        "a cut message opened"
    );
});
