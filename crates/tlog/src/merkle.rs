//! RFC 9162 (RFC 6962) Merkle tree hashing, inclusion and consistency proofs (section 2.1).
//!
//! Hashes: a leaf is `SHA-256(0x00 || data)`, an interior node `SHA-256(0x01 || left || right)`,
//! the tree of no leaves `SHA-256("")`. A tree of `n` leaves splits at `k`, the largest power of
//! two below `n`.
//!
//! Proofs are generated from a [`HashReader`]: a source of the hashes of *complete* subtrees
//! (`2^level` leaves starting at leaf `index * 2^level`), which is what an append-only log can
//! store once and never change; [`MemoryTree`](crate::MemoryTree) keeps them in memory and the
//! store keeps them in its database. Hashes of incomplete subtrees at the right edge are
//! recomputed from complete ones, O(log n) reads each.
//!
//! Verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2 and refuses a proof of the wrong
//! length, as transparency-dev's verifier does; its test vectors are in `tests/data`.

use sha2::{Digest as _, Sha256};

/// A SHA-256 hash: a leaf hash, a node hash or a tree's root.
pub type Hash = [u8; 32];

/// The root of the tree of no leaves: `SHA-256("")`.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Most hashes in any proof of a tree of at most 2^64 - 1 leaves (with one to spare).
pub const MAX_PROOF_LEN: usize = 65;

/// The leaf hash of an entry: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// An interior node's hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// A complete subtree: `2^level` leaves starting at leaf `index << level`; level 0 is a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subtree {
    pub level: u8,
    pub index: u64,
}

/// A source of complete subtree hashes, e.g. the store's database or a [`MemoryTree`].
///
/// `subtree_hash(0, i)` is leaf `i`'s hash; `subtree_hash(l, i)` the hash of leaves
/// `i * 2^l .. (i + 1) * 2^l`. The proof functions only ask for subtrees that lie wholly within
/// the tree size they are given; a reader that lacks one returns its own error.
///
/// [`MemoryTree`]: crate::MemoryTree
pub trait HashReader {
    type Error;

    /// The hash of the complete subtree at `level` and `index`.
    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

impl<R: HashReader + ?Sized> HashReader for &R {
    type Error = R::Error;
    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        (**self).subtree_hash(level, index)
    }
}

/// Why a proof could not be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProveError<E> {
    #[error("leaf index {index} is not in a tree of {size} entries")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error(
        "no consistency proof from size {old_size} to size {new_size}: the old size must be between 1 and the new size"
    )]
    BadSizes { old_size: u64, new_size: u64 },
    #[error("cannot read the log's hashes: {0}")]
    Read(E),
}

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not in a tree of {size} entries")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("proof has {got} hashes, a proof for these sizes has {expected}")]
    WrongLength { got: usize, expected: usize },
    #[error("the proof does not lead to the expected root hash")]
    RootMismatch,
    #[error(
        "the new tree size {new_size} is smaller than the old size {old_size}: the log went backwards"
    )]
    SizeDecreased { old_size: u64, new_size: u64 },
    #[error(
        "a consistency proof from the empty tree is meaningless; every tree extends the empty tree"
    )]
    EmptyOldTree,
}

fn read<R: HashReader>(r: &R, level: u8, index: u64) -> Result<Hash, ProveError<R::Error>> {
    r.subtree_hash(level, index).map_err(ProveError::Read)
}

/// Largest power of two strictly below `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The Merkle tree hash of leaves `start..end`, where `start` is a multiple of the smallest power
/// of two at least `end - start` (always so for the ranges RFC 9162's recursion visits).
fn range_hash<R: HashReader>(r: &R, start: u64, end: u64) -> Result<Hash, ProveError<R::Error>> {
    let n = end - start;
    if n == 0 {
        return Ok(EMPTY_ROOT);
    }
    if n.is_power_of_two() {
        let level = n.trailing_zeros() as u8;
        return read(r, level, start >> level);
    }
    // Fold the right edge: complete subtrees of decreasing size from `start`, hashed from the
    // right (the smallest) leftwards.
    let mut parts = Vec::with_capacity(64);
    let mut s = start;
    while s < end {
        let k = if (end - s).is_power_of_two() {
            end - s
        } else {
            split(end - s)
        };
        let level = k.trailing_zeros() as u8;
        parts.push(read(r, level, s >> level)?);
        s += k;
    }
    let mut acc = parts.pop().unwrap_or(EMPTY_ROOT);
    while let Some(left) = parts.pop() {
        acc = node_hash(&left, &acc);
    }
    Ok(acc)
}

/// The root hash of the first `size` leaves.
pub fn root<R: HashReader>(reader: &R, size: u64) -> Result<Hash, ProveError<R::Error>> {
    range_hash(reader, 0, size)
}

/// The inclusion proof (RFC 9162 `PATH`) of leaf `index` in the tree of the first `size` leaves,
/// the hash next to the leaf first.
pub fn inclusion_proof<R: HashReader>(
    reader: &R,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProveError<R::Error>> {
    if index >= size {
        return Err(ProveError::IndexOutOfRange { index, size });
    }
    // Walk down from the root, collecting siblings; the proof lists them leaf first.
    let mut proof = Vec::with_capacity(64);
    let (mut start, mut end, mut m) = (0u64, size, index);
    while end - start > 1 {
        let k = split(end - start);
        if m < k {
            proof.push(range_hash(reader, start + k, end)?);
            end = start + k;
        } else {
            proof.push(range_hash(reader, start, start + k)?);
            start += k;
            m -= k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// The consistency proof (RFC 9162 `PROOF`) from the tree of the first `old_size` leaves to the
/// tree of the first `new_size`; empty when the sizes are equal.
pub fn consistency_proof<R: HashReader>(
    reader: &R,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, ProveError<R::Error>> {
    if old_size == 0 || old_size > new_size {
        return Err(ProveError::BadSizes { old_size, new_size });
    }
    let mut proof = Vec::with_capacity(64);
    // SUBPROOF(m, D[start:end], b), unrolled.
    let (mut start, mut end, mut m, mut whole) = (0u64, new_size, old_size, true);
    loop {
        let n = end - start;
        if m == n {
            if !whole {
                proof.push(range_hash(reader, start, end)?);
            }
            break;
        }
        let k = split(n);
        if m <= k {
            proof.push(range_hash(reader, start + k, end)?);
            end = start + k;
        } else {
            proof.push(range_hash(reader, start, start + k)?);
            start += k;
            m -= k;
            whole = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// The subtrees an append completes: after leaf `index` (its hash `leaf`) is added, the leaf
/// itself (level 0) and every complete subtree that now ends with it, with their hashes, lowest
/// first. A store writes these beside the leaf, so that the log's hashes never change after.
/// `reader` must already hold every subtree of leaves before `index`.
pub fn completed_subtrees<R: HashReader>(
    reader: &R,
    index: u64,
    leaf: Hash,
) -> Result<Vec<(Subtree, Hash)>, R::Error> {
    let mut out = vec![(Subtree { level: 0, index }, leaf)];
    let (mut level, mut i, mut hash) = (0u8, index, leaf);
    while i & 1 == 1 {
        let left = reader.subtree_hash(level, i - 1)?;
        hash = node_hash(&left, &hash);
        level += 1;
        i >>= 1;
        out.push((Subtree { level, index: i }, hash));
    }
    Ok(out)
}

/// The root a leaf and its inclusion proof lead to (RFC 9162 section 2.1.3.2).
pub fn root_from_inclusion_proof(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index, size);
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            expected,
        });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                expected,
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            expected,
        });
    }
    Ok(r)
}

/// Checks that leaf `index` of the tree of `size` leaves with root `root` has hash `leaf`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let got = root_from_inclusion_proof(leaf, index, size, proof)?;
    if &got != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root` (RFC 9162 section 2.1.4.2). Equal sizes need an empty
/// proof and equal roots. An old size of zero is refused ([`ProofError::EmptyOldTree`]): check
/// `old_root == EMPTY_ROOT` instead, as [`crate::verify_checkpoint_consistency`] does.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if new_size < old_size {
        return Err(ProofError::SizeDecreased { old_size, new_size });
    }
    if old_size == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    let expected = consistency_proof_len(old_size, new_size);
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            expected,
        });
    }
    if old_size == new_size {
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    // When the old tree is a complete subtree its root is the first node of the path.
    let (seed, rest) = if old_size.is_power_of_two() {
        (*old_root, proof)
    } else {
        (proof[0], &proof[1..])
    };
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (seed, seed);
    for c in rest {
        if sn == 0 {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                expected,
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            expected,
        });
    }
    if &fr != old_root || &sr != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Number of hashes in the inclusion proof of leaf `index` in a tree of `size` (`index < size`).
pub fn inclusion_proof_len(index: u64, size: u64) -> usize {
    // Inner part: levels below where the paths to `index` and to the last leaf meet; border:
    // the set bits of `index` above it.
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = (index >> inner).count_ones();
    (inner + border) as usize
}

/// Number of hashes in the consistency proof from `old_size` to `new_size`
/// (`0 < old_size <= new_size`).
pub fn consistency_proof_len(old_size: u64, new_size: u64) -> usize {
    if old_size == new_size {
        return 0;
    }
    let level = old_size.trailing_zeros();
    let index = (old_size - 1) >> level;
    let n = (new_size - 1) >> level;
    let inner = 64 - (index ^ n).leading_zeros();
    let border = (index >> inner).count_ones();
    let seed = if index == 0 { 0 } else { 1 };
    (seed + inner + border) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest(b"")));
    }

    #[test]
    fn split_is_the_largest_power_of_two_below() {
        for (n, k) in [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
            (u64::MAX, 1 << 63),
        ] {
            assert_eq!(split(n), k, "n = {n}");
        }
    }
}
