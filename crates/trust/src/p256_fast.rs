//! ECDSA P-256 verification with precomputed multiples of the generator and of the pinned key.
//!
//! A node verifies every signature against keys it pinned long before, so the two scalar
//! multiplications of ECDSA verification, `u1·G + u2·Q`, both have a fixed base. For a fixed base
//! `P`, [`Table`] holds `j·16^i·P` for the 64 four-bit windows `i` of a scalar and `j` in 1..=15;
//! a multiplication is then at most 64 point additions and no doublings, where `p256`'s
//! generic `lincomb` does two 256-bit double-and-add ladders. One verification costs about a
//! fifth of `p256`'s (BENCHMARKS.md), for 92 KB of table per key, built on first use in about
//! half a millisecond.
//!
//! The arithmetic is `p256`'s own (its complete projective formulas, scalar inversion and
//! reductions); this module only orders the additions. Everything here is public — the pinned
//! key, the signature, the message — so the variable-time table lookups leak nothing.
//! `p256`'s verifier remains the reference: the tests compare the two on random keys, messages
//! and forged signatures, and both must agree on every input.

use std::sync::{Arc, OnceLock};

use p256::elliptic_curve::group::Group as _;
use p256::elliptic_curve::ops::{Invert as _, Reduce};
use p256::elliptic_curve::point::AffineCoordinates as _;
use p256::{FieldBytes, ProjectivePoint, Scalar, U256};
use sha2::Digest as _;

/// Four-bit windows in a 256-bit scalar.
const WINDOWS: usize = 64;
/// Non-zero multiples per window.
const MULTIPLES: usize = 15;

/// `j·16^i·P` for every window `i` and digit `j` in 1..=15.
struct Table {
    windows: Vec<[ProjectivePoint; MULTIPLES]>,
}

impl Table {
    fn new(base: ProjectivePoint) -> Self {
        let mut windows = Vec::with_capacity(WINDOWS);
        let mut step = base;
        for _ in 0..WINDOWS {
            let mut row = [ProjectivePoint::IDENTITY; MULTIPLES];
            let mut acc = step;
            for entry in row.iter_mut() {
                *entry = acc;
                acc += step;
            }
            // acc is now 16·step: the next window's base.
            step = acc;
            windows.push(row);
        }
        Table { windows }
    }

    /// `k·P`, in variable time (inputs are public).
    fn mul(&self, k: &Scalar) -> ProjectivePoint {
        let bytes: FieldBytes = k.to_bytes(); // big-endian
        let mut acc = ProjectivePoint::IDENTITY;
        for (i, row) in self.windows.iter().enumerate() {
            let byte = bytes[bytes.len() - 1 - i / 2];
            let digit = usize::from(if i % 2 == 0 { byte & 0x0f } else { byte >> 4 });
            if let Some(point) = digit.checked_sub(1).and_then(|j| row.get(j)) {
                acc += point;
            }
        }
        acc
    }
}

/// Multiples of the curve's generator, built once per process.
fn generator_table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| Table::new(ProjectivePoint::GENERATOR))
}

/// A P-256 verifying key with its table of multiples, built on the first verification and shared
/// by clones.
#[derive(Clone)]
pub struct P256Key {
    key: p256::ecdsa::VerifyingKey,
    table: Arc<OnceLock<Table>>,
}

impl P256Key {
    pub fn new(key: p256::ecdsa::VerifyingKey) -> Self {
        P256Key {
            key,
            table: Arc::new(OnceLock::new()),
        }
    }

    /// The key as `p256` holds it.
    pub fn verifying_key(&self) -> &p256::ecdsa::VerifyingKey {
        &self.key
    }

    /// ECDSA verification of `signature` over SHA-256 of `message` (FIPS 186-4 §6.4.2). Both
    /// low-S and high-S signatures verify, as they do in Go; `Signature` already guarantees
    /// `r` and `s` are in `[1, n-1]`.
    pub fn verify(&self, message: &[u8], signature: &p256::ecdsa::Signature) -> bool {
        self.verify_digest(&sha2::Sha256::digest(message).into(), signature)
    }

    /// As [`P256Key::verify`], over a SHA-256 digest already computed.
    pub fn verify_digest(&self, digest: &[u8; 32], signature: &p256::ecdsa::Signature) -> bool {
        let table = self
            .table
            .get_or_init(|| Table::new(ProjectivePoint::from(*self.key.as_affine())));
        check(digest, signature, |u2| table.mul(u2))
    }
}

/// ECDSA P-256 verification over a SHA-256 digest under a key met once (a certificate's, not a
/// pinned one): `u1·G` from the generator's table, `u2·Q` by `p256`'s own multiplication (a
/// table for `Q` would cost more than it saves on one use). Accepts high S as
/// [`P256Key::verify`] does.
pub(crate) fn verify_unpinned(
    key: &p256::ecdsa::VerifyingKey,
    digest: &[u8; 32],
    signature: &p256::ecdsa::Signature,
) -> bool {
    let q = ProjectivePoint::from(*key.as_affine());
    check(digest, signature, |u2| q * u2)
}

/// FIPS 186-4 §6.4.2 with `u2·Q` supplied by the caller.
fn check(
    digest: &[u8; 32],
    signature: &p256::ecdsa::Signature,
    mul_q: impl FnOnce(&Scalar) -> ProjectivePoint,
) -> bool {
    let z = <Scalar as Reduce<U256>>::reduce_bytes(&FieldBytes::from(*digest));
    let (r, s) = signature.split_scalars();
    let s_inv = *s.invert_vartime();
    let u1 = z * s_inv;
    let u2 = *r * s_inv;
    let point = generator_table().mul(&u1) + mul_q(&u2);
    if bool::from(point.is_identity()) {
        return false;
    }
    let x = point.to_affine().x();
    <Scalar as Reduce<U256>>::reduce_bytes(&x) == *r
}

impl std::fmt::Debug for P256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P256Key")
            .field("table_built", &self.table.get().is_some())
            .finish_non_exhaustive()
    }
}

impl PartialEq for P256Key {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for P256Key {}

impl From<p256::ecdsa::VerifyingKey> for P256Key {
    fn from(key: p256::ecdsa::VerifyingKey) -> Self {
        P256Key::new(key)
    }
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::signature::{Signer as _, Verifier as _};
    use p256::ecdsa::{Signature, SigningKey};
    use proptest::prelude::*;

    use super::*;

    fn signing_key(seed: [u8; 32]) -> Option<SigningKey> {
        SigningKey::from_slice(&seed).ok()
    }

    /// The reference answer: `p256`'s verifier, accepting high S as Warden does.
    fn reference(key: &p256::ecdsa::VerifyingKey, message: &[u8], sig: &Signature) -> bool {
        let sig = sig.normalize_s().unwrap_or(*sig);
        key.verify(message, &sig).is_ok()
    }

    fn high_s(sig: &Signature) -> Signature {
        let s = -*sig.s().as_ref();
        Signature::from_scalars(sig.r().to_bytes(), s.to_bytes()).unwrap_or(*sig)
    }

    #[test]
    fn table_multiplication_matches_p256() {
        let table = generator_table();
        for k in [
            Scalar::ZERO,
            Scalar::ONE,
            Scalar::from(15u64),
            Scalar::from(16u64),
            Scalar::from(u64::MAX),
            -Scalar::ONE,
        ] {
            assert_eq!(
                table.mul(&k).to_affine(),
                (ProjectivePoint::GENERATOR * k).to_affine()
            );
        }
    }

    #[test]
    fn a_valid_signature_verifies_and_a_changed_message_does_not() {
        let sk = signing_key([7; 32]).unwrap();
        let key = P256Key::new(*sk.verifying_key());
        let sig: Signature = sk.sign(b"payload");
        assert!(key.verify(b"payload", &sig));
        assert!(key.verify(b"payload", &high_s(&sig)));
        assert!(!key.verify(b"payloae", &sig));
        let other = P256Key::new(*signing_key([8; 32]).unwrap().verifying_key());
        assert!(!other.verify(b"payload", &sig));
    }

    #[test]
    fn unpinned_verification_agrees_with_pinned_and_p256() {
        for seed in 1u8..=8 {
            let sk = signing_key([seed; 32]).unwrap();
            let vk = *sk.verifying_key();
            let sig: Signature = sk.sign(b"certificate");
            let digest: [u8; 32] = sha2::Sha256::digest(b"certificate").into();
            let wrong: [u8; 32] = sha2::Sha256::digest(b"certificatf").into();
            assert!(verify_unpinned(&vk, &digest, &sig));
            assert!(verify_unpinned(&vk, &digest, &high_s(&sig)));
            assert!(reference(&vk, b"certificate", &sig));
            assert!(!verify_unpinned(&vk, &wrong, &sig));
            let other = *signing_key([seed + 100; 32]).unwrap().verifying_key();
            assert!(!verify_unpinned(&other, &digest, &sig));
            assert!(P256Key::new(vk).verify_digest(&digest, &sig));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Genuine, high-S, wrong-key and wrong-message cases agree with `p256`.
        #[test]
        fn agrees_with_p256_on_genuine_signatures(
            seed in any::<[u8; 32]>(),
            other in any::<[u8; 32]>(),
            message in proptest::collection::vec(any::<u8>(), 0..200),
            flip in any::<usize>(),
        ) {
            let (Some(sk), Some(sk2)) = (signing_key(seed), signing_key(other)) else {
                return Ok(());
            };
            let vk = *sk.verifying_key();
            let key = P256Key::new(vk);
            let sig: Signature = sk.sign(&message);
            for s in [sig, high_s(&sig)] {
                prop_assert!(key.verify(&message, &s));
                prop_assert_eq!(key.verify(&message, &s), reference(&vk, &message, &s));
                let vk2 = *sk2.verifying_key();
                prop_assert_eq!(P256Key::new(vk2).verify(&message, &s), reference(&vk2, &message, &s));
                let mut changed = message.clone();
                if changed.is_empty() {
                    changed.push(0);
                } else {
                    let at = flip % changed.len();
                    changed[at] ^= 1;
                }
                prop_assert!(!key.verify(&changed, &s));
                prop_assert_eq!(key.verify(&changed, &s), reference(&vk, &changed, &s));
            }
        }

        /// Arbitrary (r, s) pairs — forgeries — agree with `p256`: both refuse.
        #[test]
        fn agrees_with_p256_on_arbitrary_scalars(
            seed in any::<[u8; 32]>(),
            r in any::<[u8; 32]>(),
            s in any::<[u8; 32]>(),
            message in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let Some(sk) = signing_key(seed) else { return Ok(()) };
            let Ok(sig) = Signature::from_scalars(r, s) else { return Ok(()) };
            let vk = *sk.verifying_key();
            prop_assert_eq!(P256Key::new(vk).verify(&message, &sig), reference(&vk, &message, &sig));
        }
    }
}
