//! argon2id password hashes with fixed parameters, computed on a few dedicated threads.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

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

/// A password job for the hashing threads; it gets the thread's argon2 memory.
type Job = Box<dyn FnOnce(&mut [Block]) + Send>;

/// Dedicated threads for argon2id, one per CPU. Using the same few threads (rather than the
/// runtime's elastic blocking pool) bounds the CPU that logins take, and each thread allocates
/// its 19 MiB of argon2 memory once and hashes in it from then on: the memory of password
/// hashing is threads x 19 MiB whatever the login load (an allocation per hash left the
/// allocator holding several such blocks per thread: 246 MB RSS after a burst of logins).
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
                    let mut memory = Vec::new();
                    loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => {
                                if memory.is_empty() {
                                    memory = vec![Block::default(); ARGON2_MEMORY_KIB as usize];
                                }
                                job(&mut memory)
                            }
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
    f: impl FnOnce(&mut [Block]) -> Result<T, AuthError> + Send + 'static,
) -> Result<T, AuthError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move |memory| {
        let _ = tx.send(f(memory));
    });
    let pool = hashing_pool().clone();
    // The queue is bounded; waiting for room must not block the async runtime.
    tokio::task::spawn_blocking(move || pool.send(job))
        .await?
        .map_err(|_| AuthError::Hash("the hashing threads stopped".into()))?;
    rx.await
        .map_err(|_| AuthError::Hash("the hashing thread dropped the job".into()))?
}

/// Output length of the server's hashes (argon2's default).
const OUTPUT_BYTES: usize = 32;

/// argon2id with the server's parameters over `password` and the raw `salt`, in `memory`.
fn hash_in(memory: &mut [Block], password: &[u8], salt: &[u8]) -> Result<Output, AuthError> {
    let mut out = [0u8; OUTPUT_BYTES];
    argon2()?
        .hash_password_into_with_memory(password, salt, &mut out, memory)
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    Output::new(&out).map_err(|e| AuthError::Hash(e.to_string()))
}

/// Hash a password with argon2id on a hashing thread; the PHC string.
pub async fn hash_password(password: String) -> Result<String, AuthError> {
    on_hashing_thread(move |memory| {
        let salt = SaltString::generate(&mut OsRng);
        let mut raw = [0u8; 64];
        let raw = salt
            .decode_b64(&mut raw)
            .map_err(|e| AuthError::Hash(e.to_string()))?;
        let output = hash_in(memory, password.as_bytes(), raw)?;
        let params = ParamsString::try_from(argon2()?.params())
            .map_err(|e| AuthError::Hash(e.to_string()))?;
        Ok(PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        }
        .to_string())
    })
    .await
}

/// Whether a stored hash has the server's algorithm, version, parameters and output length
/// (then it is verified in a hashing thread's own memory).
fn has_our_parameters(parsed: &PasswordHash<'_>) -> bool {
    parsed.algorithm == Algorithm::Argon2id.ident()
        && parsed.version == Some(Version::V0x13.into())
        && Params::try_from(parsed).is_ok_and(|p| {
            (p.m_cost(), p.t_cost(), p.p_cost())
                == (ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_PARALLELISM)
        })
        && parsed.hash.is_some_and(|h| h.len() == OUTPUT_BYTES)
}

/// Verify a password against a stored PHC string on a hashing thread. A malformed stored
/// hash verifies as false. A hash with the server's parameters is checked in the thread's
/// memory; one with other parameters (none is written today) through argon2's own verifier,
/// which allocates what those parameters need.
pub async fn verify_password(password: String, phc: String) -> Result<bool, AuthError> {
    on_hashing_thread(move |memory| {
        let Ok(parsed) = PasswordHash::new(&phc) else {
            return Ok(false);
        };
        let ours = has_our_parameters(&parsed);
        if !ours {
            return Ok(argon2()?
                .verify_password(password.as_bytes(), &parsed)
                .is_ok());
        }
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Ok(false);
        };
        let mut raw = [0u8; 64];
        let Ok(raw) = salt.decode_b64(&mut raw) else {
            return Ok(false);
        };
        // Output's equality is constant-time.
        Ok(hash_in(memory, password.as_bytes(), raw)? == expected)
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
    use argon2::password_hash::PasswordHasher;

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

    #[tokio::test]
    async fn hashes_in_the_thread_memory_are_argon2s_own() {
        let h = hash_password("correct horse battery".into()).await.unwrap();
        let parsed = PasswordHash::new(&h).unwrap();
        // the server's own hashes are verified in the thread's memory, not allocated again.
        assert!(has_our_parameters(&parsed), "{h}");
        // argon2's own verifier (its own memory) accepts the hash made in the thread's memory.
        assert!(
            argon2()
                .unwrap()
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );
        // and a hash made by argon2's own hasher verifies in the thread's memory.
        let salt = SaltString::generate(&mut OsRng);
        let theirs = argon2()
            .unwrap()
            .hash_password(b"another password here", &salt)
            .unwrap()
            .to_string();
        assert!(
            verify_password("another password here".into(), theirs.clone())
                .await
                .unwrap()
        );
        assert!(
            !verify_password("another password herE".into(), theirs)
                .await
                .unwrap()
        );
        // other parameters still verify (through argon2's own verifier).
        let other = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"a third password", &salt)
        .unwrap()
        .to_string();
        assert!(!has_our_parameters(&PasswordHash::new(&other).unwrap()));
        assert!(
            verify_password("a third password".into(), other)
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
