//! The researcher's side of Warden: log in, find the collaboration and the target organizations,
//! check each organization's key from the server against the fingerprint the researcher pins,
//! seal the input for each target, create the task, wait for its runs, and open the results with
//! the researcher's organization's secret key.
//!
//! The server is trusted to deliver ciphertext, not keys: an organization whose key from the
//! server differs from its pin, or that has no pin, is refused before anything is sent.

#![forbid(unsafe_code)]

pub mod profile;

pub use profile::{CollaborationRef, Profile};
