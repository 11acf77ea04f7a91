//! Signing keys and signature verification. This crate does no I/O: callers read files and
//! fetch evidence, and pass bytes in.

#![forbid(unsafe_code)]

pub mod keys;

pub use keys::{KeyError, KeyId, PublicKey};
