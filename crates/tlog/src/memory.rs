//! An append-only Merkle tree in memory that keeps every complete subtree hash, so that roots
//! and proofs cost O(log n) reads and hashes.

use std::convert::Infallible;

use crate::merkle::{self, Hash, HashReader, ProveError};

/// An append-only tree in memory. `levels[l][i]` is the hash of the complete subtree of
/// `2^l` leaves starting at leaf `i * 2^l`.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

/// Why a proof could not be generated from a [`MemoryTree`].
pub type MemoryProveError = ProveError<Infallible>;

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends an entry (hashed as a leaf); returns its index.
    pub fn append(&mut self, data: &[u8]) -> u64 {
        self.append_leaf_hash(merkle::leaf_hash(data))
    }

    /// Appends a leaf by its leaf hash; returns its index.
    pub fn append_leaf_hash(&mut self, leaf: Hash) -> u64 {
        let index = self.size();
        let mut hash = leaf;
        let mut level = 0usize;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            let i = row.len() - 1;
            if i % 2 == 0 {
                break;
            }
            hash = merkle::node_hash(&row[i - 1], &row[i]);
            level += 1;
        }
        index
    }

    /// Leaf `index`'s hash, if the tree has it.
    pub fn leaf_hash(&self, index: u64) -> Option<Hash> {
        let i = usize::try_from(index).ok()?;
        self.levels.first()?.get(i).copied()
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Hash {
        self.root_at(self.size()).unwrap_or(merkle::EMPTY_ROOT)
    }

    /// The root of the first `size` leaves (`size <= self.size()`).
    pub fn root_at(&self, size: u64) -> Result<Hash, MemoryProveError> {
        if size > self.size() {
            return Err(ProveError::IndexOutOfRange {
                index: size,
                size: self.size(),
            });
        }
        merkle::root(self, size)
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, MemoryProveError> {
        if size > self.size() {
            return Err(ProveError::IndexOutOfRange {
                index,
                size: self.size(),
            });
        }
        merkle::inclusion_proof(self, index, size)
    }

    /// The consistency proof from `old_size` to `new_size` (`new_size <= self.size()`).
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Hash>, MemoryProveError> {
        if new_size > self.size() {
            return Err(ProveError::BadSizes { old_size, new_size });
        }
        merkle::consistency_proof(self, old_size, new_size)
    }
}

impl HashReader for MemoryTree {
    type Error = Infallible;

    /// Callers ask only for subtrees within the tree (the proof functions do); a subtree outside
    /// it reads as the empty root, which no proof accepts.
    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, Infallible> {
        Ok(self
            .levels
            .get(usize::from(level))
            .and_then(|row| row.get(usize::try_from(index).ok()?))
            .copied()
            .unwrap_or(merkle::EMPTY_ROOT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The root by RFC 9162's recursive definition, from the leaves.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => merkle::EMPTY_ROOT,
            1 => leaves[0],
            n => {
                let k = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
                merkle::node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn roots_match_the_recursive_definition_at_every_size() {
        let mut tree = MemoryTree::new();
        let mut leaves = Vec::new();
        assert_eq!(tree.root(), merkle::EMPTY_ROOT);
        for i in 0..70u32 {
            tree.append(&i.to_be_bytes());
            leaves.push(merkle::leaf_hash(&i.to_be_bytes()));
            assert_eq!(tree.root(), mth(&leaves), "size {}", i + 1);
            for size in 0..=leaves.len() {
                assert_eq!(tree.root_at(size as u64).unwrap(), mth(&leaves[..size]));
            }
        }
        assert!(tree.root_at(71).is_err());
    }

    #[test]
    fn completed_subtrees_rebuild_the_same_levels() {
        let mut tree = MemoryTree::new();
        let mut rebuilt = MemoryTree::new();
        for i in 0..40u64 {
            let leaf = merkle::leaf_hash(&i.to_le_bytes());
            let done = merkle::completed_subtrees(&rebuilt, i, leaf).unwrap();
            tree.append_leaf_hash(leaf);
            for (s, h) in done {
                assert_eq!(tree.subtree_hash(s.level, s.index).unwrap(), h, "{s:?}");
                let row = usize::from(s.level);
                if rebuilt.levels.len() == row {
                    rebuilt.levels.push(Vec::new());
                }
                assert_eq!(rebuilt.levels[row].len() as u64, s.index);
                rebuilt.levels[row].push(h);
            }
        }
        assert_eq!(tree.levels, rebuilt.levels);
    }
}
