//! The node's actual check of a store's evidence (`warden_node::stores::verify_evidence`):
//! checkpoint note signature, consistency from a saved checkpoint (900,000 -> 1,000,005), five
//! approvals' leaf hashes, inclusion proofs and review envelopes verified against the pinned
//! reviewer keys (built once, as a running node keeps them), with the node's organization
//! mapping. `cargo bench -p warden-node --bench stores`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use criterion::{Criterion, criterion_group, criterion_main};
use time::macros::datetime;
use warden_api::store::{EntryKind, Evidence, EvidenceEntry};
use warden_node::stores::{PinnedStore, verify_evidence};
use warden_reference::{Digest, Repository};
use warden_tlog::{Checkpoint, MemoryTree, NoteSigner, leaf_hash};
use warden_trust::SigningKey;
use warden_trust::review::{Decision, Review, ReviewPredicate};

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
            functions: vec!["partial_mean".into()],
            time: datetime!(2026-12-02 05:00:00 UTC),
            comment: None,
            rebuilt: None,
        },
    }
}

struct Case {
    store: PinnedStore,
    saved: Checkpoint,
    evidence: Evidence,
    consistency: Vec<warden_tlog::Hash>,
}

fn case(p256_keys: bool) -> Case {
    let mut tree = MemoryTree::new();
    for i in 0..1_000_000u64 {
        tree.append(&i.to_le_bytes());
    }
    let saved = Checkpoint::new(
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
    let entries = placed
        .into_iter()
        .map(|(env, index)| EvidenceEntry {
            index,
            kind: EntryKind::Approval,
            version_id: 1,
            algorithm: "mean".into(),
            version: "1".into(),
            leaf: STANDARD.encode(&env),
            hashes: tree
                .inclusion_proof(index, size)
                .unwrap()
                .iter()
                .map(hex::encode)
                .collect(),
        })
        .collect();
    let signer = NoteSigner::new(
        "warden-store/community",
        ed25519_dalek::SigningKey::from_bytes(&[42; 32]),
    )
    .unwrap();
    let note = Checkpoint::new("warden-store/community", size, tree.root())
        .sign(&signer)
        .unwrap();
    let mut organizations = BTreeMap::new();
    let reviewers: Vec<_> = keys.iter().map(SigningKey::public_key).collect();
    for (i, k) in reviewers.iter().enumerate() {
        organizations.insert(k.id(), (format!("org-{i}"), format!("r{i}.pub").into()));
    }
    let store = PinnedStore {
        name: "community".into(),
        url: "http://127.0.0.1:1".into(),
        verifier: signer.verifier(),
        store_key: warden_trust::PublicKey::Ed25519(*signer.verifier().public_key()),
        reviewers,
        organizations,
        max_evidence_age: Duration::from_secs(60),
    };
    Case {
        store,
        consistency: tree.consistency_proof(saved.size, size).unwrap(),
        saved,
        evidence: Evidence {
            store: "community".into(),
            checkpoint: String::from_utf8(note).unwrap(),
            size,
            entries,
        },
    }
}

fn bench(c: &mut Criterion) {
    let repo = Repository::parse("registry.example/team/mean").unwrap();
    let digest = Digest::sha256_of(b"manifest");
    for (name, p256) in [("ed25519", false), ("p256", true)] {
        let k = case(p256);
        // warm the keys' tables: a running node keeps its pinned keys loaded
        let v = verify_evidence(
            &k.store,
            Some(&k.saved),
            &k.evidence,
            &k.consistency,
            &repo,
            &digest,
        )
        .unwrap();
        assert_eq!(v.facts.approvals.len(), 5);
        c.bench_function(&format!("node_verify_evidence_5_approvals_{name}"), |b| {
            b.iter(|| {
                let v = verify_evidence(
                    &k.store,
                    Some(&k.saved),
                    black_box(&k.evidence),
                    &k.consistency,
                    &repo,
                    &digest,
                )
                .unwrap();
                black_box(v.facts.approvals.len())
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
