//! `reproduced_by`: loading (file/line/key errors, globs, deny rules refused, lint text) and the
//! decision over the build attestations a node verified, attacked: the same key twice, keys not
//! pinned by the rule, builders disagreeing on the commit, nothing checked, a registry down.

use std::collections::BTreeSet;

use warden_reference::{Digest, Reference};
use warden_trust::{KeyId, PublicKey};

use super::*;

const GOOD: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const C1: &str = "1111111111111111111111111111111111111111";
const C2: &str = "2222222222222222222222222222222222222222";

fn ed_key(seed: u8) -> PublicKey {
    PublicKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key())
}

fn keys(file: &str) -> Result<PublicKey, KeyLoadError> {
    match file {
        "builders/a.pub" | "builders/a-copy.pub" => Ok(ed_key(31)),
        "builders/b.pub" => Ok(ed_key(32)),
        "builders/c.pub" => Ok(ed_key(33)),
        other => Err(KeyLoadError(format!("cannot read key file {other}"))),
    }
}

fn globs(pattern: &str) -> Result<Vec<String>, KeyLoadError> {
    match pattern {
        "builders/*.pub" => Ok(vec![
            "builders/a.pub".into(),
            "builders/b.pub".into(),
            "builders/c.pub".into(),
        ]),
        other => Err(KeyLoadError(format!("`{other}` matches no file"))),
    }
}

fn id(name: &str) -> KeyId {
    keys(&format!("builders/{name}.pub")).unwrap().id()
}

fn load(text: &str) -> Result<Policy, PolicyError> {
    Policy::from_toml_str_with_loaders(text, "policy.toml", globs, keys, |_| {
        Err(FileLoadError("no files".into()))
    })
}

const TWO: &str = r#"version = 1
[[allow]]
repository = "registry.example/team/mean"
reproduced_by = { keys = ["builders/*.pub"], min = 2 }
"#;

fn attestation(signers: &[KeyId], commit: &str) -> BuildAttestation {
    BuildAttestation {
        signers: signers.iter().copied().collect(),
        commit: commit.into(),
        path: "algorithms/mean".into(),
    }
}

fn decide_builds(p: &Policy, builds: BuildFacts) -> Decision {
    let reference = Reference::parse("registry.example/team/mean:1").unwrap();
    let digest = Digest::parse(GOOD).unwrap();
    let mut all = Approvals::none();
    all.builds = builds;
    decide_with(
        p,
        &Request {
            reference: &reference,
            digest: Some(&digest),
            signers: &BTreeSet::new(),
            requester: &Requester::default(),
        },
        &all,
    )
}

fn checked(attested: Vec<BuildAttestation>, rejected: usize) -> BuildFacts {
    BuildFacts {
        checked: true,
        attested,
        rejected,
        unavailable: None,
    }
}

#[test]
fn decision_table() {
    let p = load(TWO).unwrap();
    let stranger = ed_key(99).id();
    let cases: Vec<(BuildFacts, Option<&str>)> = vec![
        (
            checked(
                vec![attestation(&[id("a")], C1), attestation(&[id("b")], C1)],
                0,
            ),
            None,
        ),
        // One builder and one naming another commit.
        (
            checked(
                vec![attestation(&[id("a")], C1), attestation(&[id("b")], C2)],
                0,
            ),
            Some(
                "reproduced_by needs 2 distinct builders; 1 attests this digest (builders/a.pub), 1 attestation names another commit",
            ),
        ),
        // The same key twice is one builder.
        (
            checked(
                vec![attestation(&[id("a")], C1), attestation(&[id("a")], C1)],
                0,
            ),
            Some("1 attests this digest (builders/a.pub)"),
        ),
        // A key the rule does not pin, and envelopes that did not verify at the node (forged,
        // for another digest), count for nothing.
        (
            checked(
                vec![attestation(&[id("a")], C1), attestation(&[stranger], C1)],
                2,
            ),
            Some(
                "1 attests this digest (builders/a.pub), 1 attestation by keys the rule does not pin, 2 attestations did not verify",
            ),
        ),
        (
            checked(Vec::new(), 0),
            Some("reproduced_by needs 2 distinct builders; 0 attest this digest"),
        ),
        (
            BuildFacts::default(),
            Some("build attestations could not be checked (not checked"),
        ),
        (
            BuildFacts {
                checked: true,
                unavailable: Some("cannot fetch the attestations: registry down".into()),
                ..Default::default()
            },
            Some("(cannot fetch the attestations: registry down); reproduced_by fails closed"),
        ),
    ];
    for (facts, want) in cases {
        let d = decide_builds(&p, facts.clone());
        match want {
            None => assert!(d.is_permit(), "{facts:?}: {d}"),
            Some(needle) => {
                assert!(!d.is_permit(), "{facts:?}");
                assert!(
                    d.to_string().contains(needle),
                    "{facts:?}\n got: {d}\nwant: {needle}"
                );
            }
        }
    }
}

#[test]
fn precheck_leaves_reproduced_by_to_the_decision() {
    let p = load(TWO).unwrap();
    let r = Reference::parse("registry.example/team/mean:1").unwrap();
    assert!(matches!(
        precheck(&p, &r, &Requester::default()),
        Precheck::MayAllow { .. }
    ));
    assert!(p.wants_reproduction(r.repository()));
    let other = Reference::parse("registry.example/team/other:1").unwrap();
    assert!(!p.wants_reproduction(other.repository()));
}

#[test]
fn files_holding_one_key_count_once_and_lint_shows_it() {
    let p = load(
        r#"version = 1
[[allow]]
repository = "registry.example/team/mean"
reproduced_by = { keys = ["builders/a.pub", "builders/a-copy.pub", "builders/b.pub"], min = 2 }
"#,
    )
    .unwrap();
    let r = p.allow_rules()[0].reproduced_by.as_ref().unwrap();
    assert_eq!((r.keys.len(), r.min), (2, 2));
    assert!(
        p.allow_rules()[0].to_string().contains(
            "reproduced_by: 2 of 2 distinct builder keys (builders/a.pub, builders/a-copy.pub, builders/b.pub) from one commit"
        ),
        "{}",
        p.allow_rules()[0]
    );
}

#[test]
fn load_errors_name_file_line_and_key() {
    let cases: &[(&str, &str)] = &[
        (
            r#"reproduced_by = { keys = ["builders/a.pub", "builders/a-copy.pub"], min = 2 }"#,
            "policy.toml:4:75: `allow[1].reproduced_by.min`: min 2 is above the 1 distinct builder keys listed",
        ),
        (
            r#"reproduced_by = { keys = ["builders/*.pub"], min = 0 }"#,
            "`allow[1].reproduced_by.min`: 0 is out of range",
        ),
        (
            r#"reproduced_by = { keys = [], min = 1 }"#,
            "`allow[1].reproduced_by.keys`: the list is empty",
        ),
        (
            r#"reproduced_by = { keys = ["builders/dave.pub"], min = 1 }"#,
            "`allow[1].reproduced_by.keys[1]`: cannot read key file builders/dave.pub",
        ),
        (
            r#"reproduced_by = { keys = ["nothing/*.pub"], min = 1 }"#,
            "`allow[1].reproduced_by.keys[1]`: `nothing/*.pub` matches no file",
        ),
        (
            r#"reproduced_by = { keys = ["builders/*.pub"] }"#,
            "missing field `min`",
        ),
        (
            r#"reproduced_by = { keys = ["builders/*.pub"], min = 1, commit = "x" }"#,
            "unknown field `commit`",
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
    let e = load(
        "version = 1\n[[deny]]\nrepository = \"registry.example/team/mean\"\nreproduced_by = { keys = [\"builders/*.pub\"], min = 1 }\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("`deny[1].reproduced_by`: reproduced_by applies to allow rules only"),
        "{e}"
    );
}
