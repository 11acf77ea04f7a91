//! Errors of the registry client. Every message says what went wrong and what to do.

use std::time::Duration;

/// Why a registry operation failed. A failure is never a pass: callers treat it as
/// "no evidence" (fail closed).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "cannot reach registry {registry}: {why}; check the host name and that the registry is up"
    )]
    Connect { registry: String, why: String },

    #[error(
        "registry {registry} did not finish {what} within {timeout:?}; the registry is too slow or stalls, try again later"
    )]
    Timeout {
        registry: String,
        what: String,
        timeout: Duration,
    },

    #[error(
        "{what} from registry {registry} is larger than the cap of {cap} bytes; refusing to read more"
    )]
    TooLarge {
        registry: String,
        what: String,
        cap: u64,
    },

    #[error(
        "{what} from registry {registry} hashes to {actual}, not to the expected {expected}; the registry serves content that does not match its digest"
    )]
    DigestMismatch {
        registry: String,
        what: String,
        expected: String,
        actual: String,
    },

    #[error("registry {registry} refused access to {repository} (status {status}): {hint}")]
    Unauthorized {
        registry: String,
        repository: String,
        status: u16,
        hint: String,
    },

    #[error("{what} not found in {repository}; check the repository name and the tag or digest")]
    NotFound { repository: String, what: String },

    #[error("registry {registry} answered {status} to {what}: {message}")]
    Status {
        registry: String,
        what: String,
        status: u16,
        message: String,
    },

    #[error("malformed {what} from registry {registry}: {why}")]
    Malformed {
        registry: String,
        what: String,
        why: String,
    },

    #[error(
        "no manifest for platform {platform} in the image index of {reference}; the index offers: {available}"
    )]
    NoPlatform {
        reference: String,
        platform: String,
        available: String,
    },

    #[error(
        "refusing plain http to {target}: only loopback registries or ones named in the insecure registries list may use http"
    )]
    Insecure { target: String },

    #[error("docker config {path}: {why}")]
    Config { path: String, why: String },

    #[error("the image layout {dir}: {why}")]
    Layout { dir: String, why: String },

    #[error("building the http client failed: {0}")]
    Client(String),
}
