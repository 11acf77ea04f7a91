//! Cosign simple signing payloads and signature candidates: parsing and judging never panic,
//! and nothing verifies without a signature by the pinned key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_reference::{Digest, Repository};
use warden_trust::cosign::{self, SignatureCandidate};
use warden_trust::{KeyAlgorithm, PublicKey, SigningKey};

static KEY: std::sync::OnceLock<PublicKey> = std::sync::OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let _ = cosign::parse_payload(data);
    // First byte: where the payload ends and the base64 signature begins.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(rest.len());
    let (sig, payload) = rest.split_at(at);
    let key = KEY.get_or_init(|| {
        SigningKey::generate(KeyAlgorithm::EcdsaP256)
            .expect("key generation")
            .public_key()
    });
    let pinned = [key.clone()];
    let candidate = SignatureCandidate {
        payload: payload.to_vec(),
        signature_b64: String::from_utf8_lossy(sig).into_owned(),
        origin: "fuzz".into(),
    };
    let repository = Repository::parse("example.org/fuzz").expect("constant repository");
    let digest = Digest::sha256_of(b"fuzz");
    let v = cosign::verify(&[candidate], &pinned, &repository, &digest);
    assert!(v.verified.is_empty(), "a forged signature verified");
    assert_eq!(v.rejected.len(), 1);
});
