//! Review envelopes (`warden_trust::review`): parsing and verification never panic; nothing
//! verifies without the pinned key's signature; a statement that parses as a review prints back
//! to a payload that parses to the same review, and signed by the pinned key it verifies to that
//! review and that key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_trust::review::{self, Review};
use warden_trust::{KeyAlgorithm, SigningKey};

static KEY: std::sync::OnceLock<SigningKey> = std::sync::OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let key = KEY.get_or_init(|| SigningKey::generate(KeyAlgorithm::Ed25519).expect("key"));
    let pinned = [key.public_key()];
    assert!(review::verify_review(data, &pinned).is_err(), "a forged review verified");
    let _ = review::parse_review_envelope(data);
    if let Ok(r) = Review::from_payload(data) {
        let payload = r.to_payload().expect("a parsed review prints");
        assert_eq!(Review::from_payload(&payload).expect("printed review parses"), r);
        let env = r.sign(key).expect("a parsed review signs").to_json();
        let v = review::verify_review(&env, &pinned).expect("a signed review verifies");
        assert_eq!(v.review, r);
        assert_eq!(v.key_id, key.public_key().id());
    }
});
