//! Signing keys and signature verification. This crate does no I/O: callers read files and
//! fetch evidence, and pass bytes in.
//!
//! - [`keys`]: public and private keys (ECDSA P-256, Ed25519), signing and verifying, with
//!   P-256 verification over precomputed multiples of each key ([`P256Key`]);
//! - [`keyfile`]: encrypted private key files in cosign's format (and Warden's label);
//! - [`cosign`]: cosign keyed signatures (simple signing payloads), verification and creation;
//! - [`dsse`]: DSSE envelopes carrying in-toto statements (review attestations);
//! - [`review`]: the algorithm store's review attestations (strict, one signature).
//! - [`notary`]: Notary Project signatures (JWS envelope, X.509 chain, trust-policy identities).

#![forbid(unsafe_code)]

pub mod cosign;
pub mod dsse;
pub mod keyfile;
pub mod keys;
pub mod notary;
mod p256_fast;
pub mod review;

pub use cosign::{SignatureCandidate, Verification};
pub use keys::{KeyAlgorithm, KeyError, KeyId, PublicKey, SignatureError, SigningKey};
pub use p256_fast::P256Key;
