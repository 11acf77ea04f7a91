//! Credentials: argon2id password hashes, random bearer tokens stored as sha256 hashes, and
//! node API keys that carry their node id so that login checks exactly one hash.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_core::RngCore;
use sha2::{Digest, Sha256};

/// argon2id memory cost in KiB (19 MiB, the OWASP minimum for argon2id).
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
/// argon2id passes.
pub const ARGON2_ITERATIONS: u32 = 2;
/// argon2id lanes.
pub const ARGON2_PARALLELISM: u32 = 1;
/// Longest password accepted, in bytes; longer input is refused before hashing.
pub const MAX_PASSWORD_BYTES: usize = 256;
/// Shortest password accepted when one is set.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Bytes of randomness in every token and API key secret.
const SECRET_BYTES: usize = 32;

/// Prefixes make leaked credentials recognisable (secret scanners) and tell the kinds apart.
pub const ACCESS_PREFIX: &str = "wat_";
pub const REFRESH_PREFIX: &str = "wrt_";
pub const RUN_PREFIX: &str = "wrn_";
pub const NODE_KEY_PREFIX: &str = "wdn_";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password hashing task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

fn argon2() -> Result<Argon2<'static>, AuthError> {
    let params = Params::new(
        ARGON2_MEMORY_KIB,
        ARGON2_ITERATIONS,
        ARGON2_PARALLELISM,
        None,
    )
    .map_err(|e| AuthError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// A password job for the hashing threads.
type Job = Box<dyn FnOnce() + Send>;

/// Dedicated threads for argon2id, one per CPU. Using the same few threads (rather than the
/// runtime's elastic blocking pool) bounds both the CPU that logins take and the memory: each
/// thread's allocator keeps at most one 19 MiB block for reuse, instead of one per blocking
/// thread ever used.
fn hashing_pool() -> &'static std::sync::mpsc::SyncSender<Job> {
    static POOL: std::sync::OnceLock<std::sync::mpsc::SyncSender<Job>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(1024);
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("warden-argon2-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        tx
    })
}

/// Run `f` on a hashing thread and await its answer.
async fn on_hashing_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AuthError> + Send + 'static,
) -> Result<T, AuthError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    let pool = hashing_pool().clone();
    // The queue is bounded; waiting for room must not block the async runtime.
    tokio::task::spawn_blocking(move || pool.send(job))
        .await?
        .map_err(|_| AuthError::Hash("the hashing threads stopped".into()))?;
    rx.await
        .map_err(|_| AuthError::Hash("the hashing thread dropped the job".into()))?
}

/// Hash a password with argon2id on a hashing thread.
pub async fn hash_password(password: String) -> Result<String, AuthError> {
    on_hashing_thread(move || {
        let salt = SaltString::generate(&mut OsRng);
        argon2()?
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AuthError::Hash(e.to_string()))
    })
    .await
}

/// Verify a password against a stored PHC string on a hashing thread. A malformed stored
/// hash verifies as false.
pub async fn verify_password(password: String, phc: String) -> Result<bool, AuthError> {
    on_hashing_thread(move || {
        let Ok(parsed) = PasswordHash::new(&phc) else {
            return Ok(false);
        };
        Ok(argon2()?
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
}

/// A PHC string with the server's parameters over a random password nobody knows; verifying
/// against it costs the same as a real verification, so unknown user names take as long as
/// wrong passwords.
pub async fn dummy_hash() -> Result<String, AuthError> {
    hash_password(random_secret()).await
}

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

    #[tokio::test]
    async fn passwords_verify_and_use_argon2id_with_19_mib() {
        let h = hash_password("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(
            verify_password("correct horse battery".into(), h.clone())
                .await
                .unwrap()
        );
        assert!(!verify_password("wrong".into(), h).await.unwrap());
        assert!(
            !verify_password("x".into(), "not a hash".into())
                .await
                .unwrap()
        );
    }

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
