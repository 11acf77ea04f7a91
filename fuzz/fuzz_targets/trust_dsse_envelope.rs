//! DSSE envelopes and in-toto statements: parsing and verification never panic, and nothing
//! verifies without a signature by the pinned key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_reference::Digest;
use warden_trust::dsse::{self, Envelope, Statement};
use warden_trust::{KeyAlgorithm, PublicKey, SigningKey};

static KEY: std::sync::OnceLock<PublicKey> = std::sync::OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let _ = Statement::parse(data);
    if let Ok(env) = Envelope::parse(data) {
        let _ = Envelope::parse(&env.to_json()).expect("re-serialised envelope parses");
    }
    let key = KEY.get_or_init(|| {
        SigningKey::generate(KeyAlgorithm::Ed25519)
            .expect("key generation")
            .public_key()
    });
    let got = dsse::verify_attestation(data, &[key.clone()], &Digest::sha256_of(b"fuzz"));
    assert!(got.is_err(), "a forged envelope verified");
});
