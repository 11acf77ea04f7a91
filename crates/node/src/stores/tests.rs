//! Attacks on the node's check of store evidence, over a real in-memory log with signed
//! checkpoints and signed review envelopes: forged (unpinned key), another digest, another
//! store, not included, revoked (by a reviewer, by the store, unverifiable), rewritten or forked
//! history, rollback, and the organization mapping (the node's, never the envelope's).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use time::macros::datetime;
use warden_api::store::{EntryKind, Evidence, EvidenceEntry};
use warden_reference::{Digest, Repository};
use warden_tlog::{Checkpoint, MemoryTree, NoteSigner};
use warden_trust::SigningKey;
use warden_trust::review::{Decision, Review, ReviewPredicate};

use super::*;

fn reviewer(i: u8) -> SigningKey {
    SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[i; 32]))
}

fn store_signer() -> (NoteSigner, SigningKey) {
    let k = ed25519_dalek::SigningKey::from_bytes(&[200; 32]);
    (
        NoteSigner::new("warden-store/community", k.clone()).unwrap(),
        SigningKey::Ed25519(k),
    )
}

fn repo() -> Repository {
    Repository::parse("registry.example/team/mean").unwrap()
}

fn digest() -> Digest {
    Digest::sha256_of(b"manifest")
}

fn review(
    decision: Decision,
    name: &str,
    claimed_org: &str,
    digest: Digest,
    store: &str,
) -> Review {
    Review {
        repository: repo(),
        digest,
        predicate: ReviewPredicate {
            store: store.into(),
            algorithm: "mean".into(),
            version: "1".into(),
            decision,
            reviewer: name.into(),
            organization: claimed_org.into(),
            source_repository: "https://git.example/team/mean".into(),
            source_commit: "0123456789abcdef0123456789abcdef01234567".into(),
            functions: vec!["partial_mean".into()],
            time: datetime!(2026-12-02 05:00:00 UTC),
            comment: None,
            rebuilt: None,
        },
    }
}

/// Reviewers 1 and 2 of org-a, 3 of org-b, pinned; 9 is not pinned.
fn pinned() -> PinnedStore {
    let (signer, store_key) = store_signer();
    let mut organizations = BTreeMap::new();
    let mut reviewers = Vec::new();
    for (i, org) in [(1u8, "org-a"), (2, "org-a"), (3, "org-b")] {
        let k = reviewer(i).public_key();
        organizations.insert(k.id(), (org.to_owned(), format!("r{i}.pub").into()));
        reviewers.push(k);
    }
    PinnedStore {
        name: "community".into(),
        url: "http://127.0.0.1:1".into(),
        verifier: signer.verifier(),
        store_key: store_key.public_key(),
        reviewers,
        organizations,
        max_evidence_age: Duration::from_secs(60),
    }
}

struct Log {
    tree: MemoryTree,
    leaves: Vec<(EntryKind, Vec<u8>)>,
}

impl Log {
    fn new() -> Log {
        let mut log = Log {
            tree: MemoryTree::new(),
            leaves: Vec::new(),
        };
        log.push(EntryKind::Submission, b"{\"submission\":1}".to_vec());
        log
    }
    fn push(&mut self, kind: EntryKind, leaf: Vec<u8>) -> u64 {
        self.leaves.push((kind, leaf.clone()));
        self.tree.append(&leaf)
    }
    fn review(&mut self, kind: EntryKind, key: u8, r: Review) -> u64 {
        let env = r.sign(&reviewer(key)).unwrap().to_json();
        self.push(kind, env)
    }
    fn checkpoint(&self) -> (Checkpoint, String) {
        let (signer, _) = store_signer();
        let cp = Checkpoint::new("warden-store/community", self.tree.size(), self.tree.root());
        let note = String::from_utf8(cp.sign(&signer).unwrap()).unwrap();
        (cp, note)
    }
    /// Evidence of every non-submission leaf (as the store serves it for one digest).
    fn evidence(&self) -> Evidence {
        let (_, note) = self.checkpoint();
        let size = self.tree.size();
        let entries = self
            .leaves
            .iter()
            .enumerate()
            .filter(|(_, (k, _))| *k != EntryKind::Submission)
            .map(|(i, (kind, leaf))| EvidenceEntry {
                index: i as u64,
                kind: *kind,
                version_id: 1,
                algorithm: "mean".into(),
                version: "1".into(),
                leaf: STANDARD.encode(leaf),
                hashes: self
                    .tree
                    .inclusion_proof(i as u64, size)
                    .unwrap()
                    .iter()
                    .map(hex::encode)
                    .collect(),
            })
            .collect();
        Evidence {
            store: "community".into(),
            checkpoint: note,
            size,
            entries,
        }
    }
}

fn approve(log: &mut Log, key: u8) {
    log.review(
        EntryKind::Approval,
        key,
        review(
            Decision::Approve,
            &format!("r{key}"),
            "org-x",
            digest(),
            "community",
        ),
    );
}

fn verify(log: &Log) -> Result<Verified, Refusal> {
    verify_evidence(&pinned(), None, &log.evidence(), &[], &repo(), &digest())
}

#[test]
fn approvals_count_by_pinned_key_with_the_nodes_organization() {
    let mut log = Log::new();
    approve(&mut log, 1);
    approve(&mut log, 3);
    let v = verify(&log).unwrap();
    let orgs: Vec<&str> = v.facts.approvals.values().map(String::as_str).collect();
    // the envelopes claim org-x; the node's mapping says org-a and org-b
    assert_eq!(orgs.len(), 2);
    assert!(
        orgs.contains(&"org-a") && orgs.contains(&"org-b"),
        "{orgs:?}"
    );
    assert!(v.facts.revoked.is_none());
    assert!(
        v.entries.iter().all(|e| e.counted && e.included),
        "{:?}",
        v.entries
    );
}

#[test]
fn forged_envelopes_count_for_nothing_with_a_reason() {
    let mut log = Log::new();
    approve(&mut log, 1);
    // signed by an unpinned key
    log.review(
        EntryKind::Approval,
        9,
        review(Decision::Approve, "mallory", "org-b", digest(), "community"),
    );
    // a pinned reviewer's approval of another digest
    log.review(
        EntryKind::Approval,
        3,
        review(
            Decision::Approve,
            "r3",
            "org-b",
            Digest::sha256_of(b"other"),
            "community",
        ),
    );
    // ... of another store
    log.review(
        EntryKind::Approval,
        2,
        review(Decision::Approve, "r2", "org-a", digest(), "other-store"),
    );
    // a rejection is not an approval
    log.review(
        EntryKind::Rejection,
        3,
        review(Decision::Reject, "r3", "org-b", digest(), "community"),
    );
    let v = verify(&log).unwrap();
    assert_eq!(v.facts.approvals.len(), 1, "{:?}", v.entries);
    let why: Vec<&str> = v.entries.iter().map(|e| e.why.as_str()).collect();
    assert!(
        why[1].contains("which this node does not pin"),
        "{}",
        why[1]
    );
    assert!(why[2].contains("names digest"), "{}", why[2]);
    assert!(why[3].contains("names store `other-store`"), "{}", why[3]);
    assert!(why[4].contains("not an approval"), "{}", why[4]);
}

#[test]
fn an_envelope_not_in_the_log_does_not_count() {
    let mut log = Log::new();
    approve(&mut log, 1);
    approve(&mut log, 3);
    let mut ev = log.evidence();
    // swap in a validly signed envelope the log does not hold
    let other = review(Decision::Approve, "r2", "org-a", digest(), "community")
        .sign(&reviewer(2))
        .unwrap()
        .to_json();
    ev.entries[1].leaf = STANDARD.encode(other);
    let v = verify_evidence(&pinned(), None, &ev, &[], &repo(), &digest()).unwrap();
    assert_eq!(v.facts.approvals.len(), 1);
    assert!(!v.entries[1].included);
    assert!(
        v.entries[1].why.contains("not included in the log"),
        "{}",
        v.entries[1].why
    );
}

#[test]
fn revocations_revoke() {
    for (key, by) in [(1u8, "reviewer `r1`"), (0, "the store")] {
        let mut log = Log::new();
        approve(&mut log, 1);
        approve(&mut log, 3);
        let r = review(Decision::Revoke, "r1", "org-a", digest(), "community");
        let env = if key == 0 {
            r.sign(&store_signer().1).unwrap().to_json()
        } else {
            r.sign(&reviewer(key)).unwrap().to_json()
        };
        log.push(EntryKind::Revocation, env);
        let v = verify(&log).unwrap();
        let revoked = v.facts.revoked.expect("revoked");
        assert!(revoked.contains(by), "{revoked}");
    }
    // an included revocation that does not verify still revokes (fail closed)
    let mut log = Log::new();
    approve(&mut log, 1);
    log.review(
        EntryKind::Revocation,
        9,
        review(Decision::Revoke, "mallory", "org-m", digest(), "community"),
    );
    let v = verify(&log).unwrap();
    assert!(v.facts.revoked.unwrap().contains("unverified revocation"));
}

#[test]
fn a_checkpoint_signed_by_another_key_is_refused() {
    let mut log = Log::new();
    approve(&mut log, 1);
    let mut ev = log.evidence();
    let other = NoteSigner::new(
        "warden-store/community",
        ed25519_dalek::SigningKey::from_bytes(&[201; 32]),
    )
    .unwrap();
    let (cp, _) = log.checkpoint();
    ev.checkpoint = String::from_utf8(cp.sign(&other).unwrap()).unwrap();
    let e = verify_evidence(&pinned(), None, &ev, &[], &repo(), &digest()).unwrap_err();
    assert!(!e.is_inconsistent());
    assert!(e.to_string().contains("checkpoint is refused"), "{e}");
}

#[test]
fn a_rewritten_history_is_inconsistent() {
    // the node saw a log with a revocation; the store then drops it and appends more
    let mut log = Log::new();
    approve(&mut log, 1);
    approve(&mut log, 3);
    log.review(
        EntryKind::Revocation,
        1,
        review(Decision::Revoke, "r1", "org-a", digest(), "community"),
    );
    let (saved, _) = log.checkpoint();
    let mut rewritten = Log::new();
    approve(&mut rewritten, 1);
    approve(&mut rewritten, 3);
    approve(&mut rewritten, 2);
    approve(&mut rewritten, 2);
    // the best the store can offer: a consistency proof of the rewritten tree
    let proof = rewritten
        .tree
        .consistency_proof(saved.size, rewritten.tree.size())
        .unwrap();
    let e = verify_evidence(
        &pinned(),
        Some(&saved),
        &rewritten.evidence(),
        &proof,
        &repo(),
        &digest(),
    )
    .unwrap_err();
    assert!(e.is_inconsistent(), "{e}");
    assert!(
        e.to_string().contains("history was rewritten or forked"),
        "{e}"
    );
    // same size, other root: a fork
    let mut fork = Log::new();
    approve(&mut fork, 1);
    approve(&mut fork, 3);
    approve(&mut fork, 2);
    let e = verify_evidence(
        &pinned(),
        Some(&saved),
        &fork.evidence(),
        &[],
        &repo(),
        &digest(),
    )
    .unwrap_err();
    assert!(e.is_inconsistent(), "{e}");
}

#[test]
fn an_honest_extension_is_consistent_and_a_rollback_refused() {
    let mut log = Log::new();
    approve(&mut log, 1);
    let (saved, _) = log.checkpoint();
    approve(&mut log, 3);
    let proof = log
        .tree
        .consistency_proof(saved.size, log.tree.size())
        .unwrap();
    let v = verify_evidence(
        &pinned(),
        Some(&saved),
        &log.evidence(),
        &proof,
        &repo(),
        &digest(),
    )
    .unwrap();
    assert_eq!(v.facts.approvals.len(), 2);
    // the store serves the older checkpoint again
    let (newer, _) = log.checkpoint();
    let mut old = Log::new();
    approve(&mut old, 1);
    let proof = log
        .tree
        .consistency_proof(old.tree.size(), newer.size)
        .unwrap();
    let e = verify_evidence(
        &pinned(),
        Some(&newer),
        &old.evidence(),
        &proof,
        &repo(),
        &digest(),
    )
    .unwrap_err();
    assert!(!e.is_inconsistent(), "{e}");
    assert!(e.to_string().contains("older than the one"), "{e}");
}

#[test]
fn config_validation() {
    let (signer, _) = store_signer();
    let key = signer.verifier().to_string();
    let base = StoreConfig {
        name: "community".into(),
        url: "http://127.0.0.1:7700".into(),
        note_key: Some(key.clone()),
        note_key_file: None,
        reviewers: vec![],
        max_evidence_age_secs: 60,
    };
    assert!(validate(std::slice::from_ref(&base)).is_ok());
    let e = validate(&[base.clone(), base.clone()]).unwrap_err();
    assert_eq!(e.0, "stores[2].name");
    let mut other = base.clone();
    other.name = "other".into();
    let e = validate(&[other]).unwrap_err();
    assert!(e.1.contains("signs as `warden-store/other`"), "{}", e.1);
    let mut none = base.clone();
    none.note_key = None;
    assert!(
        validate(&[none])
            .unwrap_err()
            .1
            .contains("pin the store's checkpoint key")
    );
}
