//! Property tests: proofs from random trees verify, and fail for a wrong index, size, root, leaf
//! or proof hash; proofs read from a store-like map of complete subtrees (what the store keeps
//! in its database, written with `completed_subtrees`) are the in-memory tree's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::Cell;
use std::collections::BTreeMap;

use proptest::prelude::*;
use warden_tlog::merkle::{self, consistency_proof_len, inclusion_proof_len};
use warden_tlog::{
    Hash, HashReader, MemoryTree, ProofError, ProveError, Subtree, consistency_proof,
    inclusion_proof, leaf_hash, verify_consistency, verify_inclusion,
};

fn tree(n: u64) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..n {
        t.append(&i.to_be_bytes());
    }
    t
}

/// A store-like reader: a map from subtree to hash, counting reads; a missing one is an error.
#[derive(Default)]
struct Stored {
    map: BTreeMap<Subtree, Hash>,
    reads: Cell<usize>,
}

impl HashReader for Stored {
    type Error = String;
    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, String> {
        self.reads.set(self.reads.get() + 1);
        self.map
            .get(&Subtree { level, index })
            .copied()
            .ok_or_else(|| format!("no subtree {level}/{index}"))
    }
}

fn stored(n: u64) -> Stored {
    let mut s = Stored::default();
    for i in 0..n {
        let done = merkle::completed_subtrees(&s, i, leaf_hash(&i.to_be_bytes())).unwrap();
        s.map.extend(done);
    }
    s
}

fn flip(h: &mut Hash, bit: usize) {
    h[bit / 8 % 32] ^= 1 << (bit % 8);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn inclusion_proofs_verify_and_tampering_fails(
        n in 1u64..600,
        index_seed in any::<u64>(),
        size_seed in any::<u64>(),
        bit in 0usize..256,
        pick in any::<usize>(),
    ) {
        let t = tree(n);
        let size = 1 + size_seed % n;
        let index = index_seed % size;
        let root = t.root_at(size).unwrap();
        let leaf = t.leaf_hash(index).unwrap();
        let proof = t.inclusion_proof(index, size).unwrap();
        prop_assert_eq!(proof.len(), inclusion_proof_len(index, size));
        verify_inclusion(&leaf, index, size, &proof, &root).unwrap();

        // Wrong leaf, wrong root.
        let mut bad_leaf = leaf;
        flip(&mut bad_leaf, bit);
        prop_assert!(verify_inclusion(&bad_leaf, index, size, &proof, &root).is_err());
        let mut bad_root = root;
        flip(&mut bad_root, bit);
        prop_assert_eq!(
            verify_inclusion(&leaf, index, size, &proof, &bad_root),
            Err(ProofError::RootMismatch)
        );
        // Another index in the same tree, or the same index at another size.
        let other = (index + 1 + pick as u64 % size.max(2)) % size;
        if other != index {
            prop_assert!(verify_inclusion(&leaf, other, size, &proof, &root).is_err());
        }
        // Nor another size: against that size's real root it fails unless it is that size's
        // proof too (a proof does not carry the size; the signed checkpoint does).
        for s in [size - 1, size + 1, size * 2] {
            if s > index && s != size && s <= n {
                let theirs = t.inclusion_proof(index, s).unwrap();
                let real = t.root_at(s).unwrap();
                prop_assert!(
                    theirs == proof || verify_inclusion(&leaf, index, s, &proof, &real).is_err()
                );
            }
            if s > index && s != size && inclusion_proof_len(index, s) != proof.len() {
                prop_assert!(verify_inclusion(&leaf, index, s, &proof, &root).is_err());
            }
        }
        let out_of_range = matches!(
            verify_inclusion(&leaf, size, size, &proof, &root),
            Err(ProofError::IndexOutOfRange { .. })
        );
        prop_assert!(out_of_range);
        // A changed, dropped or added proof hash.
        if !proof.is_empty() {
            let mut p = proof.clone();
            flip(&mut p[pick % proof.len()], bit);
            prop_assert!(verify_inclusion(&leaf, index, size, &p, &root).is_err());
            let mut p = proof.clone();
            p.remove(pick % proof.len());
            let wrong_length = matches!(
                verify_inclusion(&leaf, index, size, &p, &root),
                Err(ProofError::WrongLength { .. })
            );
            prop_assert!(wrong_length);
        }
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert!(verify_inclusion(&leaf, index, size, &longer, &root).is_err());
    }

    #[test]
    fn consistency_proofs_verify_and_tampering_fails(
        n in 1u64..600,
        a_seed in any::<u64>(),
        b_seed in any::<u64>(),
        bit in 0usize..256,
        pick in any::<usize>(),
    ) {
        let t = tree(n);
        let new_size = 1 + b_seed % n;
        let old_size = 1 + a_seed % new_size;
        let (r1, r2) = (t.root_at(old_size).unwrap(), t.root_at(new_size).unwrap());
        let proof = t.consistency_proof(old_size, new_size).unwrap();
        prop_assert_eq!(proof.len(), consistency_proof_len(old_size, new_size));
        verify_consistency(old_size, new_size, &r1, &r2, &proof).unwrap();

        let (mut b1, mut b2) = (r1, r2);
        flip(&mut b1, bit);
        flip(&mut b2, bit);
        prop_assert!(verify_consistency(old_size, new_size, &b1, &r2, &proof).is_err());
        prop_assert!(verify_consistency(old_size, new_size, &r1, &b2, &proof).is_err());
        if old_size != new_size {
            prop_assert!(verify_consistency(old_size, new_size, &r2, &r1, &proof).is_err());
            prop_assert_eq!(
                verify_consistency(new_size, old_size, &r2, &r1, &proof),
                Err(ProofError::SizeDecreased { old_size: new_size, new_size: old_size })
            );
        }
        // The proof does not prove other sizes: against their real roots it fails (unless it is
        // their proof too). With the roots given here it may verify when the two proofs have the
        // same shape (4 -> 5 and 4 -> 6 both have one hash): the proof does not carry the sizes,
        // the signed checkpoints do.
        for (s1, s2) in [(old_size + 1, new_size), (old_size, new_size + 1), (old_size - 1, new_size)] {
            if (s1, s2) == (old_size, new_size) || s1 == 0 || s1 > s2 || s2 > n {
                continue;
            }
            let (q1, q2) = (t.root_at(s1).unwrap(), t.root_at(s2).unwrap());
            let theirs = t.consistency_proof(s1, s2).unwrap();
            prop_assert!(
                theirs == proof || verify_consistency(s1, s2, &q1, &q2, &proof).is_err(),
                "{} {}", s1, s2
            );
            if consistency_proof_len(s1, s2) != proof.len() {
                prop_assert!(verify_consistency(s1, s2, &r1, &r2, &proof).is_err());
            }
        }
        if !proof.is_empty() {
            let mut p = proof.clone();
            flip(&mut p[pick % proof.len()], bit);
            prop_assert!(verify_consistency(old_size, new_size, &r1, &r2, &p).is_err());
            prop_assert!(verify_consistency(old_size, new_size, &r1, &r2, &proof[1..]).is_err());
        }
        let mut longer = proof.clone();
        longer.push(r2);
        prop_assert!(verify_consistency(old_size, new_size, &r1, &r2, &longer).is_err());
    }

    #[test]
    fn a_store_backed_reader_gives_the_same_roots_and_proofs(
        n in 1u64..300,
        a_seed in any::<u64>(),
        b_seed in any::<u64>(),
    ) {
        let (t, s) = (tree(n), stored(n));
        let size = 1 + b_seed % n;
        let other = 1 + a_seed % size;
        prop_assert_eq!(merkle::root(&s, size).unwrap(), t.root_at(size).unwrap());
        prop_assert_eq!(
            inclusion_proof(&s, other - 1, size).unwrap(),
            t.inclusion_proof(other - 1, size).unwrap()
        );
        prop_assert_eq!(
            consistency_proof(&s, other, size).unwrap(),
            t.consistency_proof(other, size).unwrap()
        );
    }
}

#[test]
fn proof_generation_reads_o_log_n_hashes() {
    let n = 1 << 12;
    let s = stored(n + 1234);
    let size = n + 1234;
    for index in [0, 1, 777, n - 1, n, size - 1] {
        s.reads.set(0);
        inclusion_proof(&s, index, size).unwrap();
        assert!(
            s.reads.get() <= 2 * 13 + 13,
            "index {index}: {} reads",
            s.reads.get()
        );
    }
    for old in [1, 3, 1000, n, n + 1] {
        s.reads.set(0);
        consistency_proof(&s, old, size).unwrap();
        assert!(
            s.reads.get() <= 3 * 13 + 13,
            "old {old}: {} reads",
            s.reads.get()
        );
    }
}

#[test]
fn bad_requests_and_read_errors_are_errors() {
    let s = stored(10);
    assert_eq!(
        inclusion_proof(&s, 10, 10),
        Err(ProveError::IndexOutOfRange {
            index: 10,
            size: 10
        })
    );
    assert_eq!(
        consistency_proof(&s, 0, 5),
        Err(ProveError::BadSizes {
            old_size: 0,
            new_size: 5
        })
    );
    assert_eq!(
        consistency_proof(&s, 6, 5),
        Err(ProveError::BadSizes {
            old_size: 6,
            new_size: 5
        })
    );
    // Asking the store for more than it has is its error, not a wrong proof.
    assert!(matches!(
        inclusion_proof(&s, 3, 11),
        Err(ProveError::Read(_))
    ));
    assert!(matches!(merkle::root(&s, 12), Err(ProveError::Read(_))));
    let t = tree(10);
    assert!(t.inclusion_proof(3, 11).is_err());
    assert!(t.consistency_proof(3, 11).is_err());
    assert!(t.root_at(11).is_err());
    // Empty-tree consistency is refused by the proof verifier (see verify_checkpoint_consistency).
    assert_eq!(
        verify_consistency(0, 3, &merkle::EMPTY_ROOT, &t.root_at(3).unwrap(), &[]),
        Err(ProofError::EmptyOldTree)
    );
}

#[test]
fn large_tree_proofs_verify() {
    let t = tree(100_003);
    let size = t.size();
    let root = t.root();
    for index in [0, 1, 65_535, 65_536, 99_999, size - 1] {
        let p = t.inclusion_proof(index, size).unwrap();
        verify_inclusion(&t.leaf_hash(index).unwrap(), index, size, &p, &root).unwrap();
    }
    for old in [1, 2, 65_536, 65_537, 99_999, size] {
        let p = t.consistency_proof(old, size).unwrap();
        verify_consistency(old, size, &t.root_at(old).unwrap(), &root, &p).unwrap();
    }
}
