//! argon2id password hashes with fixed parameters, computed on a few dedicated threads.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::token::random_secret;

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

/// Why a password is not acceptable as a new password: longer than [`MAX_PASSWORD_BYTES`] or
/// shorter than [`MIN_PASSWORD_CHARS`]; `field` names it in the message.
pub fn check_new_password(field: &str, p: &str) -> Result<(), String> {
    if p.len() > MAX_PASSWORD_BYTES {
        return Err(format!("{field} is longer than {MAX_PASSWORD_BYTES} bytes"));
    }
    if p.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "{field} must have at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    Ok(())
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
    fn new_passwords_have_a_length_range() {
        assert!(check_new_password("password", "short").is_err());
        assert!(check_new_password("password", &"x".repeat(257)).is_err());
        assert!(check_new_password("password", "twelve chars").is_ok());
    }
}
