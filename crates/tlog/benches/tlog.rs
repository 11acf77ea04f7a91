//! Proofs from a 1,000,000-entry log, and the node-side check of an admission's evidence:
//! five approvals (each a DSSE review envelope verified against pinned reviewer keys, its leaf
//! hash and its inclusion proof), one consistency proof from the checkpoint the node saved, and
//! the new checkpoint's note signature.
//!
//! `cargo bench -p warden-tlog --bench tlog`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use time::macros::datetime;
use warden_reference::{Digest, Repository};
use warden_tlog::{
    Checkpoint, Hash, MemoryTree, NoteSigner, leaf_hash, open_checkpoint,
    verify_checkpoint_consistency, verify_inclusion,
};
use warden_trust::review::{self, Decision, Review, ReviewPredicate};
use warden_trust::{PublicKey, SigningKey};

const ENTRIES: u64 = 1_000_000;

fn big_tree() -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..ENTRIES {
        t.append(&i.to_le_bytes());
    }
    t
}

fn proofs(c: &mut Criterion, tree: &MemoryTree) {
    let size = tree.size();
    let mut g = c.benchmark_group("proofs_1m");
    let mut i = 0u64;
    g.bench_function("inclusion", |b| {
        b.iter(|| {
            i = (i + 7_919) % size;
            black_box(tree.inclusion_proof(black_box(i), size).unwrap())
        })
    });
    let mut old = 1u64;
    g.bench_function("consistency", |b| {
        b.iter(|| {
            old = 1 + (old + 104_729) % (size - 1);
            black_box(tree.consistency_proof(black_box(old), size).unwrap())
        })
    });
    g.finish();
}

fn reviewer(i: u8, p256_key: bool) -> SigningKey {
    if p256_key {
        SigningKey::EcdsaP256(p256::ecdsa::SigningKey::from_slice(&[i + 1; 32]).unwrap())
    } else {
        SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[i + 1; 32]))
    }
}

fn approval(i: u8) -> Review {
    Review {
        repository: Repository::parse("registry.example/team/mean").unwrap(),
        digest: Digest::sha256_of(b"manifest"),
        predicate: ReviewPredicate {
            store: "community".into(),
            algorithm: "mean".into(),
            version: "1".into(),
            decision: Decision::Approve,
            reviewer: format!("reviewer-{i}"),
            organization: format!("org-{i}"),
            source_repository: "https://git.example/team/mean".into(),
            source_commit: "0123456789abcdef0123456789abcdef01234567".into(),
            functions: vec!["central_mean".into(), "partial_mean".into()],
            time: datetime!(2026-12-02 05:00:00 UTC),
            comment: None,
            rebuilt: None,
        },
    }
}

struct Evidence {
    pinned: Vec<PublicKey>,
    entries: Vec<(Vec<u8>, u64, Vec<Hash>)>,
    old: Checkpoint,
    consistency: Vec<Hash>,
    note: Vec<u8>,
    verifier: warden_tlog::NoteVerifier,
}

/// Five approvals at spread-out indexes of a log of 1,000,000 + 5 entries, a checkpoint saved
/// at 900,000 entries and the new signed checkpoint.
fn evidence(p256_keys: bool) -> Evidence {
    let mut tree = big_tree();
    let old = Checkpoint::new(
        "warden-store/community",
        900_000,
        tree.root_at(900_000).unwrap(),
    );
    let keys: Vec<SigningKey> = (0..5).map(|i| reviewer(i, p256_keys)).collect();
    let mut placed = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let env = approval(i as u8).sign(k).unwrap().to_json();
        let index = tree.append_leaf_hash(leaf_hash(&env));
        placed.push((env, index));
    }
    let size = tree.size();
    let entries: Vec<(Vec<u8>, u64, Vec<Hash>)> = placed
        .into_iter()
        .map(|(env, index)| {
            let proof = tree.inclusion_proof(index, size).unwrap();
            (env, index, proof)
        })
        .collect();
    let signer = NoteSigner::new(
        "warden-store/community",
        ed25519_dalek::SigningKey::from_bytes(&[42; 32]),
    )
    .unwrap();
    let new = Checkpoint::new("warden-store/community", size, tree.root());
    let pinned: Vec<PublicKey> = keys.iter().map(SigningKey::public_key).collect();
    // Warm the P-256 tables of the pinned keys: the node keeps its keys loaded.
    for (env, _, _) in &entries {
        review::verify_review(env, &pinned).unwrap();
    }
    Evidence {
        pinned,
        entries,
        consistency: tree.consistency_proof(old.size, size).unwrap(),
        old,
        note: new.sign(&signer).unwrap(),
        verifier: signer.verifier(),
    }
}

/// What a node does with the evidence, in order; every step must pass.
fn check(e: &Evidence) -> usize {
    let cp = open_checkpoint(&e.note, &e.verifier).unwrap();
    verify_checkpoint_consistency(&e.old, &cp, &e.consistency).unwrap();
    let mut approvals = 0;
    for (env, index, proof) in &e.entries {
        verify_inclusion(&leaf_hash(env), *index, cp.size, proof, &cp.root).unwrap();
        let v = review::verify_review(env, &e.pinned).unwrap();
        approvals += usize::from(v.review.predicate.decision == Decision::Approve);
    }
    approvals
}

fn node_check(c: &mut Criterion) {
    let mut g = c.benchmark_group("node_check");
    for (name, p256_keys) in [("5_approvals_ed25519", false), ("5_approvals_p256", true)] {
        let e = evidence(p256_keys);
        assert_eq!(check(&e), 5);
        g.bench_function(name, |b| b.iter(|| black_box(check(black_box(&e)))));
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let tree = big_tree();
    proofs(c, &tree);
    drop(tree);
    node_check(c);
}

criterion_group!(tlog, benches);
criterion_main!(tlog);
