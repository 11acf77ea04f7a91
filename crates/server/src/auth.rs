//! Credentials: node API keys that carry their node id so that login checks exactly one hash,
//! and run tokens. Password hashing and bearer tokens are `warden_accounts`' (shared with the
//! algorithm store), re-exported here.

pub use warden_accounts::password::{
    ARGON2_ITERATIONS, ARGON2_MEMORY_KIB, ARGON2_PARALLELISM, AuthError, MAX_PASSWORD_BYTES,
    MIN_PASSWORD_CHARS, dummy_hash, hash_password, verify_password,
};
pub use warden_accounts::token::{
    ACCESS_PREFIX, REFRESH_PREFIX, hashes_equal, new_token, random_secret, token_hash,
};

/// Prefixes make leaked credentials recognisable (secret scanners) and tell the kinds apart.
pub const RUN_PREFIX: &str = "wrn_";
pub const NODE_KEY_PREFIX: &str = "wdn_";

/// A node API key: `wdn_<node id>_<secret>`. Returns the key and the hash to store.
pub fn new_node_key(node_id: i64) -> (String, String) {
    let secret = random_secret();
    let hash = token_hash(&secret);
    (format!("{NODE_KEY_PREFIX}{node_id}_{secret}"), hash)
}

/// Split a node API key into the node id and the secret.
pub fn parse_node_key(key: &str) -> Option<(i64, &str)> {
    let rest = key.strip_prefix(NODE_KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id: i64 = id.parse().ok()?;
    if id <= 0 || secret.is_empty() || id.to_string().len() != rest.len() - secret.len() - 1 {
        return None;
    }
    Some((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_keys_carry_their_id() {
        let (key, hash) = new_node_key(42);
        let (id, secret) = parse_node_key(&key).unwrap();
        assert_eq!(id, 42);
        assert!(hashes_equal(&token_hash(secret), &hash));
        for bad in [
            "",
            "wdn_",
            "wdn_42",
            "wdn_42_",
            "wdn_x_abc",
            "wdn_-1_abc",
            "wdn_0_abc",
            "wdn_+4_abc",
            "wat_42_abc",
        ] {
            assert_eq!(parse_node_key(bad), None, "{bad}");
        }
    }
}
