//! The algorithm store's transparency log, without I/O: callers keep the hashes and pass them
//! in.
//!
//! - [`merkle`]: RFC 9162 (RFC 6962) hashing, roots, inclusion and consistency proofs
//!   (generated from a [`HashReader`] of complete subtree hashes, verified from the proof alone);
//! - [`MemoryTree`]: an append-only tree in memory keeping every level (O(log n) proofs);
//! - [`note`]: C2SP signed notes with Ed25519 signatures, pinned verifiers;
//! - [`checkpoint`]: C2SP `tlog-checkpoint` texts in signed notes, and the consistency of two
//!   checkpoints.
//!
//! ## Why not `ct-merkle` or `signed_note`
//!
//! Both were weighed (2026-12). `ct-merkle` 0.3 (MIT/Apache-2.0) computes RFC 6962 proofs, but
//! only over its own in-memory tree (`MemoryBackedTree`): there is no way to generate a proof
//! from hashes kept in the store's database, which is the point here; and it is built on
//! `digest` 0.11, which would bring a second SHA-256 stack beside the workspace's `sha2` 0.10.
//! `signed_note` 0.2 (BSD-3-Clause, Cloudflare's azul) parses and signs notes, but reports every
//! malformation as one `MalformedNote` (Warden's errors say what is wrong), has no checkpoint
//! layer and brings `base64` 0.21 and `thiserror` 1 as second versions. The RFC 9162 algorithms
//! and the note format are each a page of specification, so they are written here and checked
//! against transparency-dev's test vectors and the C2SP examples (`tests/`).

#![forbid(unsafe_code)]

pub mod checkpoint;
mod memory;
pub mod merkle;
pub mod note;

pub use checkpoint::{Checkpoint, CheckpointError, open_checkpoint, verify_checkpoint_consistency};
pub use memory::{MemoryProveError, MemoryTree};
pub use merkle::{
    EMPTY_ROOT, Hash, HashReader, ProofError, ProveError, Subtree, consistency_proof,
    inclusion_proof, leaf_hash, node_hash, root, verify_consistency, verify_inclusion,
};
pub use note::{Note, NoteError, NoteSignature, NoteSigner, NoteVerifier};
