//! Table tests of `approved_by`: loading (file/line/key errors, globs) and the decision over
//! verified store facts (distinct keys, distinct organizations by the node's mapping, revoked,
//! unavailable, unpinned reviewers, combined with `signed_by`).

use std::collections::BTreeSet;
use std::path::Path;

use warden_reference::{Digest, Reference};
use warden_trust::{KeyId, PublicKey};

use super::*;

const GOOD: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn ed_key(seed: u8) -> PublicKey {
    PublicKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key())
}

fn keys(file: &str) -> Result<PublicKey, KeyLoadError> {
    match file {
        "reviewers/alice.pub" | "reviewers/alice-copy.pub" => Ok(ed_key(11)),
        "reviewers/bob.pub" => Ok(ed_key(12)),
        "reviewers/carol.pub" => Ok(ed_key(13)),
        "keys/signer.pub" => Ok(ed_key(20)),
        other => Err(KeyLoadError(format!("cannot read key file {other}"))),
    }
}

fn globs(pattern: &str) -> Result<Vec<String>, KeyLoadError> {
    match pattern {
        "reviewers/*.pub" => Ok(vec![
            "reviewers/alice.pub".into(),
            "reviewers/bob.pub".into(),
            "reviewers/carol.pub".into(),
        ]),
        other => Err(KeyLoadError(format!("`{other}` matches no file"))),
    }
}

fn id(name: &str) -> KeyId {
    keys(&format!("reviewers/{name}.pub")).unwrap().id()
}

fn load(text: &str) -> Result<Policy, PolicyError> {
    Policy::from_toml_str_with_loaders(text, "policy.toml", globs, keys, |_| {
        Err(FileLoadError("no files".into()))
    })
}

fn policy(text: &str) -> Policy {
    load(text).unwrap_or_else(|e| panic!("policy refused: {e}\n{text}"))
}

const TWO_OF_TWO: &str = r#"version = 1
[[allow]]
repository = "registry.example/team/mean"
approved_by = { store = "community", reviewers = ["reviewers/*.pub"], min_approvals = 2, min_organizations = 2 }
"#;

/// `approvals` is space-separated `name@org`; `store` is `ok`, `revoked`, `down`, `absent`.
fn decide_facts(p: &Policy, approvals: &str, store: &str, signers: &[KeyId]) -> Decision {
    let reference = Reference::parse("registry.example/team/mean:1").unwrap();
    let digest = Digest::parse(GOOD).unwrap();
    let mut facts = StoreFacts::default();
    for a in approvals.split_whitespace() {
        let (name, org) = a.split_once('@').unwrap();
        let key = if name == "mallory" {
            ed_key(99).id()
        } else {
            id(name)
        };
        facts.approvals.insert(key, org.to_owned());
    }
    match store {
        "ok" => {}
        "revoked" => facts.revoked = Some("revocation at index 7 by alice".into()),
        "down" => facts.unavailable = Some("the store cannot be reached".into()),
        "absent" => {}
        other => panic!("{other}"),
    }
    let mut all = Approvals::none();
    if store != "absent" {
        all.stores.insert("community".into(), facts);
    }
    let signers: BTreeSet<KeyId> = signers.iter().copied().collect();
    decide_with(
        p,
        &Request {
            reference: &reference,
            digest: Some(&digest),
            signers: &signers,
            requester: &Requester::default(),
        },
        &all,
    )
}

#[test]
fn decision_table() {
    let p = policy(TWO_OF_TWO);
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("alice@org-a bob@org-b", "ok", None),
        ("alice@org-a bob@org-b carol@org-b", "ok", None),
        (
            "alice@org-a",
            "ok",
            Some(
                "1 distinct pinned reviewer(s) from 1 organization(s) approved this digest; the rule needs 2 from 2",
            ),
        ),
        (
            "alice@org-a bob@org-a",
            "ok",
            Some("2 distinct pinned reviewer(s) from 1 organization(s)"),
        ),
        // an approval by a key the rule does not list counts for nothing
        (
            "alice@org-a mallory@org-m",
            "ok",
            Some("1 distinct pinned reviewer(s) from 1 organization(s)"),
        ),
        ("", "ok", Some("0 distinct pinned reviewer(s)")),
        (
            "alice@org-a bob@org-b",
            "revoked",
            Some("store `community` revoked it (revocation at index 7 by alice)"),
        ),
        (
            "alice@org-a bob@org-b",
            "down",
            Some("could not be checked (the store cannot be reached); approved_by fails closed"),
        ),
        (
            "alice@org-a bob@org-b",
            "absent",
            Some("the node has no evidence from this store"),
        ),
    ];
    for (approvals, store, expect) in cases {
        let d = decide_facts(&p, approvals, store, &[]);
        match expect {
            None => assert_eq!(
                d,
                Decision::Permit {
                    rule: p.allow_rules()[0].id
                },
                "{approvals} {store}: {d}"
            ),
            Some(needle) => {
                assert!(!d.is_permit(), "{approvals} {store}: permitted");
                assert!(d.to_string().contains(needle), "{approvals} {store}: {d}");
            }
        }
    }
}

#[test]
fn decide_without_facts_fails_approved_by() {
    let p = policy(TWO_OF_TWO);
    let reference = Reference::parse("registry.example/team/mean:1").unwrap();
    let digest = Digest::parse(GOOD).unwrap();
    let d = decide(
        &p,
        &Request {
            reference: &reference,
            digest: Some(&digest),
            signers: &BTreeSet::new(),
            requester: &Requester::default(),
        },
    );
    assert!(!d.is_permit());
    assert!(d.to_string().contains("approved_by fails closed"), "{d}");
}

#[test]
fn combined_with_signed_by_needs_both() {
    let p = policy(
        r#"version = 1
[[allow]]
repository = "registry.example/team/mean"
signed_by = { keys = ["keys/signer.pub"], threshold = 1 }
approved_by = { store = "community", reviewers = ["reviewers/alice.pub", "reviewers/bob.pub"], min_approvals = 2, min_organizations = 2 }
"#,
    );
    let signer = ed_key(20).id();
    assert!(decide_facts(&p, "alice@a bob@b", "ok", &[signer]).is_permit());
    let d = decide_facts(&p, "alice@a bob@b", "ok", &[]);
    assert!(d.to_string().contains("0 of the rule's keys signed"), "{d}");
    let d = decide_facts(&p, "alice@a", "ok", &[signer]);
    assert!(d.to_string().contains("1 distinct pinned reviewer"), "{d}");
    // carol is not listed in this rule
    let d = decide_facts(&p, "alice@a carol@c", "ok", &[signer]);
    assert!(!d.is_permit(), "{d}");
}

#[test]
fn precheck_leaves_approved_by_to_the_decision() {
    let p = policy(TWO_OF_TWO);
    let reference = Reference::parse("registry.example/team/mean:1").unwrap();
    match precheck(&p, &reference, &Requester::default()) {
        Precheck::MayAllow { candidates } => assert_eq!(candidates.len(), 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        p.stores_for(reference.repository()),
        BTreeSet::from(["community".to_owned()])
    );
    assert_eq!(p.stores(), BTreeSet::from(["community".to_owned()]));
}

#[test]
fn duplicate_key_files_count_once() {
    let p = policy(
        r#"version = 1
[[allow]]
repository = "registry.example/team/mean"
approved_by = { store = "community", reviewers = ["reviewers/alice.pub", "reviewers/alice-copy.pub", "reviewers/bob.pub"], min_approvals = 2, min_organizations = 1 }
"#,
    );
    let a = p.allow_rules()[0].approved_by.as_ref().unwrap();
    assert_eq!(a.reviewers.len(), 2);
    assert_eq!(a.reviewers[&id("alice")].len(), 2);
}

#[test]
fn load_errors_name_file_line_and_key() {
    let cases: &[(&str, &str)] = &[
        (
            r#"approved_by = { store = "community", reviewers = ["reviewers/alice.pub"], min_approvals = 2, min_organizations = 1 }"#,
            "policy.toml:4:91: `allow[1].approved_by.min_approvals`: min_approvals 2 is above the 1 distinct reviewer keys listed",
        ),
        (
            r#"approved_by = { store = "community", reviewers = ["reviewers/*.pub"], min_approvals = 2, min_organizations = 3 }"#,
            "`allow[1].approved_by.min_organizations`: min_organizations 3 is above min_approvals 2",
        ),
        (
            r#"approved_by = { store = "community", reviewers = ["reviewers/*.pub"], min_approvals = 0, min_organizations = 1 }"#,
            "`allow[1].approved_by.min_approvals`: 0 is out of range",
        ),
        (
            r#"approved_by = { store = "Community!", reviewers = ["reviewers/*.pub"], min_approvals = 1, min_organizations = 1 }"#,
            "`allow[1].approved_by.store`: a store name is 1 to 64",
        ),
        (
            r#"approved_by = { store = "community", reviewers = [], min_approvals = 1, min_organizations = 1 }"#,
            "`allow[1].approved_by.reviewers`: the list is empty",
        ),
        (
            r#"approved_by = { store = "community", reviewers = ["reviewers/dave.pub"], min_approvals = 1, min_organizations = 1 }"#,
            "`allow[1].approved_by.reviewers[1]`: cannot read key file reviewers/dave.pub",
        ),
        (
            r#"approved_by = { store = "community", reviewers = ["nothing/*.pub"], min_approvals = 1, min_organizations = 1 }"#,
            "`allow[1].approved_by.reviewers[1]`: `nothing/*.pub` matches no file",
        ),
        (
            r#"approved_by = { store = "community", reviewers = ["reviewers/*.pub"], min_approvals = 1 }"#,
            "missing field `min_organizations`",
        ),
        (
            r#"approved_by = { store = "community", reviewers = ["reviewers/*.pub"], min_approvals = 1, min_organizations = 1, min_approval = 3 }"#,
            "unknown field `min_approval`",
        ),
    ];
    for (line, needle) in cases {
        let text = format!(
            "version = 1\n[[allow]]\nrepository = \"registry.example/team/mean\"\n{line}\n"
        );
        let e = load(&text).expect_err(line).to_string();
        assert!(e.contains(needle), "{line}\n got: {e}\nwant: {needle}");
        assert!(e.starts_with("policy.toml:4:"), "{e}");
    }
}

#[test]
fn approved_by_is_refused_in_deny_rules() {
    let e = load(
        "version = 1\n[[deny]]\nrepository = \"registry.example/team/mean\"\napproved_by = { store = \"community\", reviewers = [\"reviewers/*.pub\"], min_approvals = 1, min_organizations = 1 }\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("`deny[1].approved_by`: approved_by applies to allow rules only"),
        "{e}"
    );
}

#[test]
fn globs_need_a_lister() {
    let e = Policy::from_toml_str(TWO_OF_TWO, "policy.toml", keys)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("is a glob and this policy is read without listing folders"),
        "{e}"
    );
}

#[test]
fn glob_matching() {
    for (p, n, want) in [
        ("*.pub", "alice.pub", true),
        ("*.pub", "alice.pem", false),
        ("a?ice.pub", "alice.pub", true),
        ("*", "x", true),
        ("a*b*c", "aXXbYYc", true),
        ("a*b*c", "aXXbYY", false),
        ("*.pub", ".pub", true),
    ] {
        assert_eq!(load::glob_match(p, n), want, "{p} {n}");
    }
}

#[test]
fn policy_load_expands_globs_relative_to_the_policy_file() {
    let dir = tempfile::tempdir().unwrap();
    let reviewers = dir.path().join("reviewers");
    std::fs::create_dir(&reviewers).unwrap();
    for (name, seed) in [("alice", 11u8), ("bob", 12)] {
        std::fs::write(reviewers.join(format!("{name}.pub")), ed_key(seed).to_pem()).unwrap();
    }
    std::fs::write(reviewers.join("notes.txt"), "not a key").unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, TWO_OF_TWO).unwrap();
    let p = Policy::load(&path).unwrap();
    let a = p.allow_rules()[0].approved_by.as_ref().unwrap();
    assert_eq!(
        a.reviewers.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([id("alice"), id("bob")])
    );
    assert!(p.allow_rules()[0].to_string().contains("approved_by: store community, 2 approvals from 2 organizations among 2 distinct reviewer keys (reviewers/*.pub)"));
    // a folder glob is refused
    let e = expand_glob(Path::new(dir.path()), "*/alice.pub").unwrap_err();
    assert!(e.0.contains("only the file name part"), "{e}");
}
