//! The store's view of its transparency log: the tree over the leaf hashes kept in memory (every
//! level, from `warden_tlog::MemoryTree`), rebuilt from the database at start, and checkpoints
//! signed with the store's key. The database is the record; the tree is derived from it.
//!
//! One store process serves one database: the tree is appended to only after the transaction
//! that wrote the leaf committed, under the service's append lock.

use std::sync::{Mutex, RwLock};

use warden_tlog::{Checkpoint, Hash, MemoryTree, NoteSigner, leaf_hash};

/// Why the log in the database cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(
        "the log in the database is not contiguous: entry {found} where {expected} was expected; the database was edited, restore it from a backup"
    )]
    Gap { expected: i64, found: i64 },
    #[error(
        "log entry {0} does not hash to its stored leaf hash; the database was edited, restore it from a backup"
    )]
    BadHash(i64),
    #[error("a proof was asked outside the tree: {0}")]
    Range(String),
    #[error("cannot sign the checkpoint: {0}")]
    Sign(String),
}

#[derive(Debug)]
pub struct Log {
    origin: String,
    signer: NoteSigner,
    tree: RwLock<MemoryTree>,
    /// The signed note of the latest size it was asked for.
    signed: Mutex<Option<(u64, String)>>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    match l.read() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Log {
    /// The tree over `rows` (index, leaf bytes, stored leaf hash) in order; each leaf is
    /// rehashed and must match, and indexes must run from 0 without a gap.
    pub fn rebuild(
        origin: &str,
        signer: NoteSigner,
        rows: &[(i64, Vec<u8>, Vec<u8>)],
    ) -> Result<Log, LogError> {
        let mut tree = MemoryTree::new();
        for (expected, (idx, leaf, stored)) in rows.iter().enumerate() {
            let expected = expected as i64;
            if *idx != expected {
                return Err(LogError::Gap {
                    expected,
                    found: *idx,
                });
            }
            let h = leaf_hash(leaf);
            if stored.as_slice() != h.as_slice() {
                return Err(LogError::BadHash(*idx));
            }
            tree.append_leaf_hash(h);
        }
        Ok(Log {
            origin: origin.to_owned(),
            signer,
            tree: RwLock::new(tree),
            signed: Mutex::new(None),
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn size(&self) -> u64 {
        read(&self.tree).size()
    }

    /// Append committed leaf hashes (their indexes are the current size onwards).
    pub fn push(&self, hashes: &[Hash]) {
        let mut t = match self.tree.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        for h in hashes {
            t.append_leaf_hash(*h);
        }
    }

    /// The signed checkpoint of the current tree and its size.
    pub fn checkpoint(&self) -> Result<(u64, String), LogError> {
        let (size, root) = {
            let t = read(&self.tree);
            (t.size(), t.root())
        };
        let mut cache = match self.signed.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some((s, note)) = cache.as_ref() {
            if *s == size {
                return Ok((size, note.clone()));
            }
        }
        let bytes = Checkpoint::new(&self.origin, size, root)
            .sign(&self.signer)
            .map_err(|e| LogError::Sign(e.to_string()))?;
        let note = String::from_utf8(bytes).map_err(|e| LogError::Sign(e.to_string()))?;
        *cache = Some((size, note.clone()));
        Ok((size, note))
    }

    /// The signed checkpoint at the current size with inclusion proofs of `indexes` at it.
    pub fn checkpoint_with_proofs(
        &self,
        indexes: &[u64],
    ) -> Result<(u64, String, Vec<Vec<Hash>>), LogError> {
        // Hold the read lock so the proofs and the checkpoint are of the same tree.
        let t = read(&self.tree);
        let size = t.size();
        let proofs = indexes
            .iter()
            .map(|i| {
                t.inclusion_proof(*i, size)
                    .map_err(|e| LogError::Range(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        drop(t);
        let (s, note) = self.checkpoint()?;
        if s != size {
            // The tree grew in between: sign the size the proofs are for.
            let root = read(&self.tree)
                .root_at(size)
                .map_err(|e| LogError::Range(e.to_string()))?;
            let bytes = Checkpoint::new(&self.origin, size, root)
                .sign(&self.signer)
                .map_err(|e| LogError::Sign(e.to_string()))?;
            let note = String::from_utf8(bytes).map_err(|e| LogError::Sign(e.to_string()))?;
            return Ok((size, note, proofs));
        }
        Ok((size, note, proofs))
    }

    pub fn inclusion(&self, index: u64, size: u64) -> Result<(Hash, Vec<Hash>), LogError> {
        let t = read(&self.tree);
        let leaf = t
            .leaf_hash(index)
            .ok_or_else(|| LogError::Range(format!("no entry {index}")))?;
        let proof = t
            .inclusion_proof(index, size)
            .map_err(|e| LogError::Range(e.to_string()))?;
        Ok((leaf, proof))
    }

    pub fn consistency(&self, from: u64, to: u64) -> Result<Vec<Hash>, LogError> {
        read(&self.tree)
            .consistency_proof(from, to)
            .map_err(|e| LogError::Range(e.to_string()))
    }
}
