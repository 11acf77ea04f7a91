//! Random bearer tokens, stored only as their sha256 hash.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

/// Bytes of randomness in every token and API key secret.
const SECRET_BYTES: usize = 32;

/// Prefixes make leaked credentials recognisable (secret scanners) and tell the kinds apart.
pub const ACCESS_PREFIX: &str = "wat_";
pub const REFRESH_PREFIX: &str = "wrt_";

/// 32 random bytes, base64url without padding.
pub fn random_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Hex sha256 of a token; the only form in which tokens are stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh token with the given prefix.
pub fn new_token(prefix: &str) -> String {
    format!("{prefix}{}", random_secret())
}

/// Constant-time comparison of two hex hashes.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_token(ACCESS_PREFIX);
        let b = new_token(ACCESS_PREFIX);
        assert_ne!(a, b);
        assert!(a.starts_with("wat_") && a.len() == 4 + 43);
        assert_eq!(token_hash(&a).len(), 64);
        assert!(!hashes_equal(&token_hash(&a), &token_hash(&b)));
    }
}
