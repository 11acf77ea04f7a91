//! Table tests: loading, decisions (including bypass attempts), the precheck, and properties.

use std::collections::BTreeSet;

use proptest::prelude::*;
use warden_reference::{Digest, Reference};
use warden_trust::{KeyId, PublicKey};

use super::*;

const GOOD: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const BAD: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn ed_key(seed: u8) -> PublicKey {
    PublicKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key())
}

/// The test key files: `alice-copy.pub` holds the same key as `alice.pub`.
fn test_keys(file: &str) -> Result<PublicKey, KeyLoadError> {
    match file {
        "keys/alice.pub" | "keys/alice-copy.pub" => Ok(ed_key(1)),
        "keys/bob.pub" => Ok(ed_key(2)),
        "keys/carol.pub" => Ok(ed_key(3)),
        other => Err(KeyLoadError(format!("cannot read key file {other}"))),
    }
}

fn signer(name: &str) -> KeyId {
    test_keys(&format!("keys/{name}.pub")).unwrap().id()
}

fn policy(text: &str) -> Policy {
    match Policy::from_toml_str(text, "policy.toml", test_keys) {
        Ok(p) => p,
        Err(e) => panic!("policy refused: {e}\n{text}"),
    }
}

/// `ctx` is space-separated `org=`, `user=`, `collab=`, `fn=`, `digest=good|bad|<digest>`,
/// `signer=<name>`. `expect` is `allow[N]`, `deny`, or `deny: <text the denial must contain>`.
#[track_caller]
fn check(p: &Policy, image: &str, ctx: &str, expect: &str) {
    let reference = Reference::parse(image).unwrap_or_else(|e| panic!("{image}: {e}"));
    let mut requester = Requester::default();
    let mut digest = None;
    let mut signers = BTreeSet::new();
    for item in ctx.split_whitespace() {
        let (k, v) = item.split_once('=').unwrap();
        match k {
            "org" => requester = requester.organization(v),
            "user" => requester = requester.user(v),
            "collab" => requester = requester.collaboration(v),
            "fn" => requester = requester.function(v),
            "digest" => {
                let d = match v {
                    "good" => GOOD,
                    "bad" => BAD,
                    d => d,
                };
                digest = Some(Digest::parse(d).unwrap());
            }
            "signer" => {
                signers.insert(signer(v));
            }
            other => panic!("unknown ctx key {other}"),
        }
    }
    let decision = decide(
        p,
        &Request {
            reference: &reference,
            digest: digest.as_ref(),
            signers: &signers,
            requester: &requester,
        },
    );
    let shown = decision.to_string();
    match (expect.strip_prefix("deny"), &decision) {
        (Some(rest), Decision::Deny { reasons }) => {
            assert!(
                !reasons.is_empty(),
                "{image} [{ctx}]: a denial without reasons"
            );
            let needle = rest.trim_start_matches(':').trim();
            assert!(
                shown.contains(needle),
                "{image} [{ctx}]: denial {shown:?} does not mention {needle:?}"
            );
        }
        (None, Decision::Permit { rule }) => {
            assert_eq!(rule.name(), expect, "{image} [{ctx}]: {shown}");
        }
        _ => panic!("{image} [{ctx}]: expected {expect}, got {shown}"),
    }
}

/// The reference must be refused before any policy sees it.
#[track_caller]
fn check_unparseable(image: &str) {
    assert!(
        Reference::parse(image).is_err(),
        "{image:?} parsed as {:?}",
        Reference::parse(image)
    );
}

/// The policy must be refused, at this `line`, naming `key`, with `message` in the error.
#[track_caller]
fn check_refused(text: &str, line: usize, key: &str, message: &str) {
    match Policy::from_toml_str(text, "policy.toml", test_keys) {
        Ok(p) => panic!("policy accepted: {:?}\n{text}", p.allow_rules()),
        Err(e @ PolicyError::Invalid { .. }) => {
            let PolicyError::Invalid {
                origin,
                line: l,
                key: k,
                message: m,
                ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(origin, "policy.toml");
            assert_eq!((*l, k.as_str()), (line, key), "{e}");
            assert!(m.contains(message), "{e} does not mention {message:?}");
            assert!(
                e.to_string().starts_with(&format!("policy.toml:{line}:")),
                "{e}"
            );
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

const BYPASS: &str = r#"
version = 1

[[allow]]
repository = "registry.example.org/team/average"

[[allow]]
repository_regex = 'registry\.example\.org/trusted/[a-z0-9-]+'

[[allow]]
repository = "ubuntu"

[[allow]]
repository_regex = 'registry\.example\.org/alt/a|registry\.example\.org/alt/b'

[[allow]]
repository_regex = 'registry\.example\.org/lab/.+'

[[allow]]
repository_regex = '(?m)^registry\.example\.org/ml/[a-z]+$'

[[deny]]
repository_regex = '.+/experimental/.+'
"#;

#[test]
fn exact_rule_bypass_attempts() {
    let p = policy(BYPASS);
    check(&p, "registry.example.org/team/average", "", "allow[1]");
    check(&p, "registry.example.org/team/average:1.0", "", "allow[1]");
    // Prefix and suffix extension.
    check(
        &p,
        "registry.example.org/team/average-evil",
        "",
        "deny: no allow rule names repository registry.example.org/team/average-evil",
    );
    check(&p, "registry.example.org/team/averageevil", "", "deny");
    check(&p, "registry.example.org/team/average/x", "", "deny");
    check(&p, "registry.example.org/team/averag", "", "deny");
    check(&p, "registry.example.org/team", "", "deny");
    check(&p, "registry.example.org/xteam/average", "", "deny");
    check(&p, "xregistry.example.org/team/average", "", "deny");
    check(&p, "registry.example.org.evil.com/team/average", "", "deny");
    check(&p, "registry.example.org:443/team/average", "", "deny");
    check(&p, "registry.example.org:5000/team/average", "", "deny");
    check_unparseable("registry.example.org/team/average/../x");
    check_unparseable("registry.example.org/team/../team/average");
    check_unparseable("registry.example.org/team/./average");
    check_unparseable("registry.example.org//team/average");
    // A trusted host as a path component of another registry.
    check(&p, "evil.org/registry.example.org/team/average", "", "deny");
    check(
        &p,
        "localhost/registry.example.org/team/average",
        "",
        "deny",
    );
    check(
        &p,
        "evil.org:5000/registry.example.org/team/average",
        "",
        "deny",
    );
    // Case: hosts are case-insensitive and normalised; paths are lower case only.
    check(&p, "REGISTRY.EXAMPLE.ORG/team/average", "", "allow[1]");
    check(&p, "Registry.Example.Org/team/average:V1", "", "allow[1]");
    check_unparseable("registry.example.org/Team/average");
    check_unparseable("registry.example.org/team/AVERAGE");
    // Docker takes an upper-case first component as a registry host; Warden refuses it, since
    // lower-casing it would make the normal form ambiguous with a Docker Hub path.
    check_unparseable("REGISTRY/team/average");
    check(&p, "Registry.Example.Org/team/average", "", "allow[1]");
    // Unicode look-alikes (Cyrillic a and e, fullwidth solidus, zero-width space).
    check_unparseable("registry.ex\u{430}mple.org/team/average");
    check_unparseable("registry.example.org/team/av\u{435}rage");
    check_unparseable("registry.example.org\u{ff0f}team/average");
    check_unparseable("registry.example.org/team/average\u{200b}");
    // Newlines and other whitespace.
    check_unparseable("registry.example.org/team/average\nevil.org/x");
    check_unparseable("evil.org/x\nregistry.example.org/team/average");
    check_unparseable("registry.example.org/team/average\r");
    check_unparseable("registry.example.org/team/average ");
    check_unparseable("registry.example.org/team/average\0");
}

#[test]
fn docker_hub_normalisation_both_ways() {
    let p = policy(BYPASS);
    for image in [
        "ubuntu",
        "ubuntu:22.04",
        "library/ubuntu",
        "docker.io/ubuntu",
        "docker.io/library/ubuntu",
        "index.docker.io/library/ubuntu",
        "index.docker.io/ubuntu:latest",
        "DOCKER.IO/library/ubuntu",
    ] {
        check(&p, image, "", "allow[3]");
    }
    for image in [
        "evil/ubuntu",
        "docker.io/evil/ubuntu",
        "ubuntu/ubuntu",
        "library/ubuntu/x",
        "registry.example.org/library/ubuntu",
        "registry.example.org/ubuntu",
        "index.docker.io:443/library/ubuntu",
        "docker.io.evil.org/library/ubuntu",
        "ubuntu-evil",
        "ubuntux",
    ] {
        check(&p, image, "", "deny");
    }
    // And the other way round: a policy that writes the long form admits the short one.
    let long = policy("version = 1\n[[allow]]\nrepository = \"index.docker.io/library/alpine\"\n");
    check(&long, "alpine:3", "", "allow[1]");
    check(&long, "docker.io/alpine", "", "allow[1]");
    check(&long, "alpine/alpine", "", "deny");
}

#[test]
fn regex_rules_match_the_whole_repository_only() {
    let p = policy(BYPASS);
    check(&p, "registry.example.org/trusted/x", "", "allow[2]");
    check(&p, "registry.example.org/trusted/x-1:v2", "", "allow[2]");
    check(&p, "registry.example.org/trusted/x/y", "", "deny");
    check(&p, "evil.org/registry.example.org/trusted/x", "", "deny");
    check(&p, "registry.example.org/trusted/x.evil", "", "deny");
    check(&p, "registry.example.org/trusted/x_y", "", "deny");
    check(&p, "registry.example.org:5000/trusted/x", "", "deny");
    // `.` in the rule is escaped: `registryXexample` must not match.
    check(&p, "registry-example.org/trusted/x", "", "deny");
    // Alternation stays whole-string on both sides of the `|`.
    check(&p, "registry.example.org/alt/a", "", "allow[4]");
    check(&p, "registry.example.org/alt/b", "", "allow[4]");
    check(&p, "registry.example.org/alt/ab", "", "deny");
    check(&p, "registry.example.org/alt/a/evil", "", "deny");
    check(&p, "evil.org/registry.example.org/alt/b", "", "deny");
    check(&p, "evil.org/registry.example.org/alt/a", "", "deny");
    // Inline multi-line flag inside the rule cannot reach past the anchors.
    check(&p, "registry.example.org/ml/x", "", "allow[6]");
    check(&p, "registry.example.org/ml/x/y", "", "deny");
    check(&p, "evil.org/registry.example.org/ml/x", "", "deny");
    let compiled =
        regex::Regex::new(&load::anchored(r"(?m)^registry\.example\.org/ml/[a-z]+$")).unwrap();
    assert!(compiled.is_match("registry.example.org/ml/x"));
    assert!(!compiled.is_match("registry.example.org/ml/x\nevil.org/y"));
    assert!(!compiled.is_match("evil.org/y\nregistry.example.org/ml/x"));
}

#[test]
fn deny_rules_win_over_allow_rules() {
    let p = policy(BYPASS);
    check(&p, "registry.example.org/lab/tool", "", "allow[5]");
    check(
        &p,
        "registry.example.org/lab/experimental/tool",
        "",
        "deny: denied by deny[1] (line 22)",
    );
    check(
        &p,
        &format!("registry.example.org/lab/experimental/tool@{GOOD}"),
        "digest=good",
        "deny: deny[1]",
    );
}

const DIGESTS: &str = r#"
version = 1

[[allow]]
repository = "registry.example.org/team/pinned"
digests = ["sha256:1111111111111111111111111111111111111111111111111111111111111111"]
"#;

#[test]
fn tag_and_digest_combinations() {
    let p = policy(DIGESTS);
    let repo = "registry.example.org/team/pinned";
    check(
        &p,
        repo,
        "",
        "deny: the manifest digest is not known and the rule lists digests",
    );
    check(&p, &format!("{repo}:1.0"), "", "deny: digest is not known");
    check(&p, &format!("{repo}:1.0"), "digest=good", "allow[1]");
    check(&p, &format!("{repo}@{GOOD}"), "", "allow[1]");
    check(&p, &format!("{repo}:1.0@{GOOD}"), "", "allow[1]");
    // The tag is informational once a digest is pinned.
    check(&p, &format!("{repo}:evil@{GOOD}"), "", "allow[1]");
    check(&p, &format!("{repo}@{GOOD}"), "digest=good", "allow[1]");
    check(
        &p,
        &format!("{repo}@{BAD}"),
        "",
        &format!("deny: digest {BAD} is not among"),
    );
    check(
        &p,
        &format!("{repo}:1.0"),
        "digest=bad",
        "deny: not among the rule's digests",
    );
    // A digest given twice that disagrees is never an allow, whichever side is the listed one.
    check(
        &p,
        &format!("{repo}@{GOOD}"),
        "digest=bad",
        "deny: conflicting digests are refused",
    );
    check(
        &p,
        &format!("{repo}@{BAD}"),
        "digest=good",
        "deny: conflicting digests",
    );
    check(
        &p,
        &format!("{repo}:1.0@{BAD}"),
        "digest=good",
        "deny: conflicting digests",
    );
    let sha512 = format!("sha512:{}", "1".repeat(128));
    check(&p, &format!("{repo}@{sha512}"), "", "deny: not among");
    check(
        &p,
        &format!("registry.example.org/team/other@{GOOD}"),
        "",
        "deny: no allow rule",
    );
}

const SIGNED: &str = r#"
version = 1

[[allow]]
repository = "registry.example.org/team/signed"
signed_by = { keys = ["keys/alice.pub", "keys/bob.pub", "keys/alice-copy.pub"], threshold = 2 }

[[allow]]
repository = "registry.example.org/team/one"
signed_by = { keys = ["keys/carol.pub"], threshold = 1 }
"#;

#[test]
fn signed_by_counts_distinct_keys() {
    let p = policy(SIGNED);
    let img = "registry.example.org/team/signed";
    check(
        &p,
        img,
        "",
        "deny: 0 of the rule's keys signed with a verified signature; it needs 2",
    );
    check(&p, img, "signer=alice", "deny: 1 of the rule's keys signed");
    // alice-copy is alice: one key, counted once.
    check(&p, img, "signer=alice-copy", "deny: 1 of");
    check(&p, img, "signer=alice signer=alice-copy", "deny: 1 of");
    check(&p, img, "signer=alice signer=carol", "deny: 1 of");
    check(&p, img, "signer=alice signer=bob", "allow[1]");
    check(
        &p,
        img,
        "signer=alice-copy signer=bob signer=carol",
        "allow[1]",
    );
    check(
        &p,
        "registry.example.org/team/one",
        "signer=carol",
        "allow[2]",
    );
    check(
        &p,
        "registry.example.org/team/one",
        "signer=alice signer=bob",
        "deny",
    );
    let rule = &p.allow_rules()[0];
    let s = rule.signed_by.as_ref().unwrap();
    assert_eq!(s.keys.len(), 2);
    assert_eq!(
        s.keys[&signer("alice")],
        vec!["keys/alice.pub", "keys/alice-copy.pub"]
    );
}

const REQUESTER: &str = r#"
version = 1

[[allow]]
repository = "registry.example.org/team/average"
organizations = ["hospital-a", "hospital-b"]
users = ["alice"]
collaborations = ["cardio"]
functions = ["partial_mean", "central_mean"]

[[allow]]
repository = "registry.example.org/team/open"

[[deny]]
repository = "registry.example.org/team/open"
functions = ["debug_dump"]

[[deny]]
repository = "registry.example.org/team/open"
digests = ["sha256:2222222222222222222222222222222222222222222222222222222222222222"]
"#;

#[test]
fn requester_conditions() {
    let p = policy(REQUESTER);
    let img = "registry.example.org/team/average";
    let all = "org=hospital-a user=alice collab=cardio fn=partial_mean";
    check(&p, img, all, "allow[1]");
    check(
        &p,
        img,
        "org=hospital-b user=alice collab=cardio fn=central_mean",
        "allow[1]",
    );
    check(
        &p,
        img,
        "org=hospital-c user=alice collab=cardio fn=partial_mean",
        "deny: organization `hospital-c` is not listed",
    );
    check(
        &p,
        img,
        "org=Hospital-A user=alice collab=cardio fn=partial_mean",
        "deny: organization `Hospital-A` is not listed",
    );
    check(
        &p,
        img,
        "org=hospital-a user=mallory collab=cardio fn=partial_mean",
        "deny: user `mallory`",
    );
    check(
        &p,
        img,
        "org=hospital-a user=alice collab=onco fn=partial_mean",
        "deny: collaboration `onco`",
    );
    check(
        &p,
        img,
        "org=hospital-a user=alice collab=cardio fn=exfiltrate",
        "deny: function `exfiltrate`",
    );
    // A condition that cannot be evaluated fails an allow rule.
    check(
        &p,
        img,
        "user=alice collab=cardio fn=partial_mean",
        "deny: the request names no organization and the rule lists organizations",
    );
    check(
        &p,
        img,
        "org=hospital-a collab=cardio fn=partial_mean",
        "deny: names no user",
    );
    check(
        &p,
        img,
        "org=hospital-a user=alice fn=partial_mean",
        "deny: names no collaboration",
    );
    check(
        &p,
        img,
        "org=hospital-a user=alice collab=cardio",
        "deny: names no function",
    );
    // Every failed condition is listed.
    check(
        &p,
        img,
        "org=x user=y",
        "deny: allow[1] (line 4) names this repository but organization `x` is not listed; user `y` is not listed; the request names no collaboration",
    );
}

#[test]
fn deny_rules_fail_closed_when_they_cannot_be_evaluated() {
    let p = policy(REQUESTER);
    let img = "registry.example.org/team/open";
    check(&p, img, "fn=partial_mean digest=good", "allow[2]");
    check(
        &p,
        img,
        "fn=debug_dump digest=good",
        "deny: denied by deny[1] (line 14)",
    );
    // No function given: deny[1] cannot be evaluated and is taken as matching.
    check(
        &p,
        img,
        "digest=good",
        "deny: denied by deny[1] (line 14); could not evaluate `functions` (the request names no function), taken as holding (fail closed)",
    );
    // No digest known: deny[2] cannot be evaluated and is taken as matching.
    check(
        &p,
        img,
        "fn=partial_mean",
        "deny: denied by deny[2] (line 18); could not evaluate `digests` (the manifest digest is not known)",
    );
    check(&p, img, "fn=partial_mean digest=bad", "deny: deny[2]");
    check(
        &p,
        &format!("{img}@{BAD}"),
        "fn=partial_mean",
        "deny: deny[2]",
    );
    check(&p, &format!("{img}@{GOOD}"), "fn=partial_mean", "allow[2]");
}

#[test]
fn empty_policy_denies_everything() {
    let p = policy("version = 1\n");
    assert!(p.is_empty());
    check(&p, "ubuntu", "", "deny: the policy has no rules");
    check(
        &p,
        "registry.example.org/team/average",
        "org=a user=b collab=c fn=d digest=good signer=alice",
        "deny: no rules",
    );
    let only_deny = policy("version = 1\n[[deny]]\nrepository = \"evil.org/x\"\n");
    check(
        &only_deny,
        "ubuntu",
        "",
        "deny: no allow rule names repository docker.io/library/ubuntu",
    );
    check(&only_deny, "evil.org/x", "", "deny: deny[1]");
}

#[test]
fn first_matching_allow_rule_is_named() {
    let p = policy(
        r#"version = 1
[[allow]]
repository_regex = 'registry\.example\.org/.+'
organizations = ["a"]
[[allow]]
repository = "registry.example.org/team/average"
[[allow]]
repository_regex = '.+'
"#,
    );
    check(&p, "registry.example.org/team/average", "org=a", "allow[1]");
    check(&p, "registry.example.org/team/average", "org=b", "allow[2]");
    check(&p, "registry.example.org/team/other", "org=b", "allow[3]");
    check(&p, "ubuntu", "", "allow[3]");
}

#[test]
fn rule_display_and_lookup() {
    let p = policy(REQUESTER);
    let rule = &p.allow_rules()[0];
    assert_eq!(
        rule.to_string(),
        "allow[1] (line 4): repository registry.example.org/team/average; organizations: hospital-a, hospital-b; users: alice; collaborations: cardio; functions: central_mean, partial_mean"
    );
    assert_eq!(p.rule(rule.id), Some(rule));
    assert_eq!(p.deny_rules()[1].id.to_string(), "deny[2] (line 18)");
    let open = Repository::parse("registry.example.org/team/open").unwrap();
    let names: Vec<String> = p
        .rules_naming(RuleKind::Deny, &open)
        .iter()
        .map(|r| r.id.name())
        .collect();
    assert_eq!(names, ["deny[1]", "deny[2]"]);
    let s = policy(SIGNED);
    assert_eq!(
        s.allow_rules()[0].to_string(),
        "allow[1] (line 4): repository registry.example.org/team/signed; signed_by: 2 of 2 distinct keys (keys/alice.pub, keys/bob.pub, keys/alice-copy.pub)"
    );
}

use warden_reference::Repository;

#[test]
fn precheck_table() {
    let p = policy(
        r#"version = 1
[[allow]]
repository = "registry.example.org/team/average"
organizations = ["hospital-a"]
digests = ["sha256:1111111111111111111111111111111111111111111111111111111111111111"]

[[allow]]
repository_regex = 'registry\.example\.org/team/.+'
functions = ["partial_mean"]
signed_by = { keys = ["keys/alice.pub"], threshold = 1 }

[[deny]]
repository_regex = '.+/experimental/.+'

[[deny]]
repository = "registry.example.org/team/average"
users = ["mallory"]

[[deny]]
repository = "registry.example.org/team/revoked"
digests = ["sha256:2222222222222222222222222222222222222222222222222222222222222222"]
"#,
    );
    // (image, requester, expected: "may: <candidates>" or "deny: <text>")
    let table: &[(&str, &str, &str)] = &[
        (
            "registry.example.org/team/average",
            "user=alice org=hospital-a",
            "may: allow[1]",
        ),
        (
            "registry.example.org/team/average",
            "user=alice org=hospital-a fn=partial_mean",
            "may: allow[1] allow[2]",
        ),
        (
            "registry.example.org/team/average",
            "user=alice org=hospital-b fn=partial_mean",
            "may: allow[2]",
        ),
        (
            "registry.example.org/team/average",
            "user=alice org=hospital-b",
            "deny: organization `hospital-b` is not listed",
        ),
        (
            "registry.example.org/team/average",
            "user=alice",
            "deny: names no organization",
        ),
        // A pinned digest in the reference is ignored by the precheck.
        (
            &format!("registry.example.org/team/average@{BAD}"),
            "user=alice org=hospital-a",
            "may: allow[1]",
        ),
        // A deny rule on names and requester applies early, fail closed as in decide.
        (
            "registry.example.org/team/average",
            "org=hospital-a user=mallory",
            "deny: denied by deny[2] (line 15)",
        ),
        (
            "registry.example.org/team/average",
            "org=hospital-a",
            "deny: denied by deny[2] (line 15); could not evaluate `users`",
        ),
        (
            "registry.example.org/team/x/experimental/y",
            "fn=partial_mean",
            "deny: denied by deny[1]",
        ),
        // Deny rule with digests waits for the evidence.
        (
            "registry.example.org/team/revoked",
            "fn=partial_mean",
            "may: allow[2]",
        ),
        (
            "registry.example.org/other/x",
            "org=hospital-a fn=partial_mean",
            "deny: no allow rule names repository registry.example.org/other/x",
        ),
        (
            "evil.org/registry.example.org/team/average",
            "user=alice org=hospital-a",
            "deny: no allow rule",
        ),
    ];
    for (image, ctx, expect) in table {
        let reference = Reference::parse(image).unwrap();
        let requester = requester_of(ctx);
        let got = precheck(&p, &reference, &requester);
        match (expect.split_once(": ").unwrap(), &got) {
            (("may", names), Precheck::MayAllow { candidates }) => {
                let got: Vec<String> = candidates.iter().map(RuleId::name).collect();
                assert_eq!(got.join(" "), *names, "{image} [{ctx}]");
            }
            (("deny", text), Precheck::Deny { reasons }) => {
                let shown: Vec<String> = reasons.iter().map(ToString::to_string).collect();
                assert!(
                    shown.join("; ").contains(text),
                    "{image} [{ctx}]: {shown:?}"
                );
            }
            _ => panic!("{image} [{ctx}]: expected {expect}, got {got:?}"),
        }
    }
    let empty = policy("version = 1");
    let r = Reference::parse("ubuntu").unwrap();
    assert_eq!(
        precheck(&empty, &r, &Requester::default()),
        Precheck::Deny {
            reasons: vec![DenyReason::NoRules]
        }
    );
}

fn requester_of(ctx: &str) -> Requester {
    let mut r = Requester::default();
    for item in ctx.split_whitespace() {
        let (k, v) = item.split_once('=').unwrap();
        r = match k {
            "org" => r.organization(v),
            "user" => r.user(v),
            "collab" => r.collaboration(v),
            "fn" => r.function(v),
            other => panic!("unknown requester key {other}"),
        };
    }
    r
}

#[test]
fn bad_policies_are_refused_with_file_line_and_key() {
    let rule = "version = 1\n[[allow]]\n";
    check_refused("version = \n", 1, "version", "");
    check_refused(
        "version = 2\n",
        1,
        "version",
        "unsupported policy version 2",
    );
    check_refused("version = '1'\n", 1, "version", "invalid type");
    check_refused(
        "[[allow]]\nrepository = \"a.org/x\"\n",
        1,
        "version",
        "missing field `version`",
    );
    check_refused(
        &format!("{rule}repository = \"a.org/x\"\nrepositry = \"b\"\n"),
        4,
        "allow[1].repositry",
        "unknown field `repositry`",
    );
    check_refused(
        "version = 1\nalow = []\n",
        2,
        "alow",
        "unknown field `alow`",
    );
    check_refused(
        &format!(
            "{rule}repository = \"a.org/x\"\nsigned_by = {{ keys = [\"keys/alice.pub\"], threshold = 1, extra = 1 }}\n"
        ),
        4,
        "allow[1].signed_by.extra",
        "unknown field `extra`",
    );
    check_refused(
        &format!("{rule}repository = \"a.org/x\"\nrepository_regex = 'a'\n"),
        4,
        "allow[1].repository_regex",
        "exactly one of `repository` or `repository_regex`",
    );
    check_refused(
        &format!("{rule}users = [\"a\"]\n"),
        2,
        "allow[1]",
        "names no repository",
    );
    check_refused(
        &format!("{rule}repository = \"a.org/x:1.0\"\n"),
        3,
        "allow[1].repository",
        "takes no tag or digest",
    );
    check_refused(
        &format!("{rule}repository = \"a.org/X\"\n"),
        3,
        "allow[1].repository",
        "upper case",
    );
    check_refused(
        &format!("{rule}repository = \"registry.ex\u{430}mple.org/x\"\n"),
        3,
        "allow[1].repository",
        "non-ASCII",
    );
    check_refused(
        &format!("{rule}repository = \"\"\n"),
        3,
        "allow[1].repository",
        "empty",
    );
    check_refused(
        &format!("{rule}repository_regex = 'a.org/(x'\n"),
        3,
        "allow[1].repository_regex",
        "invalid regex",
    );
    check_refused(
        &format!("{rule}repository_regex = ''\n"),
        3,
        "allow[1].repository_regex",
        "the regex is empty",
    );
    // A regex that is invalid alone but valid once wrapped would escape the anchors.
    check_refused(
        &format!("{rule}repository_regex = 'a.org/x)|(.+'\n"),
        3,
        "allow[1].repository_regex",
        "invalid regex",
    );
    // An extended-mode comment would swallow the closing anchor.
    check_refused(
        &format!("{rule}repository_regex = '(?x)a\\.org/.+ #'\n"),
        3,
        "allow[1].repository_regex",
        "cannot be anchored",
    );
    check_refused(
        &format!(
            "{rule}repository = \"a.org/x\"\nsigned_by = {{ keys = [\"keys/alice.pub\"], threshold = 2 }}\n"
        ),
        4,
        "allow[1].signed_by.threshold",
        "threshold 2 is above the 1 distinct keys",
    );
    check_refused(
        &format!(
            "{rule}repository = \"a.org/x\"\nsigned_by = {{ keys = [\"keys/alice.pub\", \"keys/alice-copy.pub\"], threshold = 2 }}\n"
        ),
        4,
        "allow[1].signed_by.threshold",
        "keys/alice.pub = keys/alice-copy.pub",
    );
    check_refused(
        &format!(
            "{rule}repository = \"a.org/x\"\nsigned_by = {{ keys = [\"keys/alice.pub\"], threshold = 0 }}\n"
        ),
        4,
        "allow[1].signed_by.threshold",
        "threshold 0 would accept unsigned images",
    );
    check_refused(
        &format!(
            "{rule}repository = \"a.org/x\"\nsigned_by = {{ keys = [\"keys/alice.pub\"], threshold = -1 }}\n"
        ),
        4,
        "allow[1].signed_by.threshold",
        "at least 1",
    );
    check_refused(
        &format!("{rule}repository = \"a.org/x\"\nsigned_by = {{ keys = [], threshold = 1 }}\n"),
        4,
        "allow[1].signed_by.keys",
        "the list is empty",
    );
    check_refused(
        &format!("{rule}repository = \"a.org/x\"\nsigned_by = {{ keys = [\"keys/alice.pub\"] }}\n"),
        4,
        "allow[1].signed_by.threshold",
        "missing field `threshold`",
    );
    check_refused(
        &format!(
            "{rule}repository = \"a.org/x\"\nsigned_by = {{ keys = [\"keys/alice.pub\", \"keys/nobody.pub\"], threshold = 1 }}\n"
        ),
        4,
        "allow[1].signed_by.keys[2]",
        "cannot read key file keys/nobody.pub",
    );
    check_refused(
        &format!("{rule}repository = \"a.org/x\"\ndigests = [\"sha256:abc\"]\n"),
        4,
        "allow[1].digests[1]",
        "64 hex characters",
    );
    check_refused(
        &format!("{rule}repository = \"a.org/x\"\ndigests = [\"{GOOD}\", \"md5:00\"]\n"),
        4,
        "allow[1].digests[2]",
        "unsupported digest algorithm",
    );
    check_refused(
        &format!("{rule}repository = \"a.org/x\"\ndigests = []\n"),
        4,
        "allow[1].digests",
        "the list is empty",
    );
    check_refused(
        &format!("{rule}repository = \"a.org/x\"\norganizations = []\n"),
        4,
        "allow[1].organizations",
        "the list is empty",
    );
    check_refused(
        &format!("{rule}repository = \"a.org/x\"\nusers = [\"\"]\n"),
        4,
        "allow[1].users[1]",
        "empty name",
    );
    check_refused(
        &format!("{rule}repository = \"a.org/x\"\nfunctions = [\"f\", \"g \"]\n"),
        4,
        "allow[1].functions[2]",
        "whitespace",
    );
    check_refused(
        &format!("{rule}repository = \"a.org/x\"\ncollaborations = [\"a\\nb\"]\n"),
        4,
        "allow[1].collaborations[1]",
        "control character",
    );
    check_refused(
        &format!("{rule}repository = \"a.org/x\"\nusers = \"alice\"\n"),
        4,
        "allow[1].users",
        "invalid type",
    );
    check_refused(
        &format!("{rule}repository = \"a.org/x\"\nusers = [\"a\", 2]\n"),
        4,
        "allow[1].users[2]",
        "invalid type",
    );
    check_refused(
        &format!("{rule}repository = \"a.org/x\"\nfoo = \n"),
        4,
        "foo",
        "",
    );
    check_refused(
        "version = 1\n[[allow]]\nrepository = \"a.org/x\"\n[[deny]]\nrepository = \"b.org/x\"\n[[deny]]\nrepository_regex = '('\n",
        7,
        "deny[2].repository_regex",
        "invalid regex",
    );
    check_refused(
        "version = 1\nallow = [{ repository = \"a.org/x\" }, { repository = \"b\", x = 1 }]\n",
        2,
        "allow[2].x",
        "unknown field `x`",
    );
}

#[test]
fn error_columns_count_characters() {
    let text = "version = 1\n[[allow]]\nrepository = \"a.org/x\"\nusers = [\"\u{e9}\", 2]\n";
    let e = Policy::from_toml_str(text, "p.toml", test_keys)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("p.toml:4:15: `allow[1].users[2]`: invalid type"),
        "{e}"
    );
}

#[test]
fn load_reads_key_files_relative_to_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    for (name, seed) in [("alice", 1), ("alice-copy", 1), ("bob", 2), ("carol", 3)] {
        std::fs::write(keys.join(format!("{name}.pub")), ed_key(seed).to_pem()).unwrap();
    }
    std::fs::write(keys.join("junk.pub"), "not a key").unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, SIGNED).unwrap();
    let p = Policy::load(&path).unwrap();
    assert_eq!(p.origin(), path.display().to_string());
    let s = p.allow_rules()[0].signed_by.as_ref().unwrap();
    let mut want = vec![signer("alice"), signer("bob")];
    want.sort();
    assert_eq!(s.keys.keys().copied().collect::<Vec<_>>(), want);
    check(
        &p,
        "registry.example.org/team/signed",
        "signer=alice signer=bob",
        "allow[1]",
    );

    std::fs::write(&path, SIGNED.replace("keys/bob.pub", "keys/junk.pub")).unwrap();
    let e = Policy::load(&path).unwrap_err().to_string();
    assert!(
        e.contains(":6:")
            && e.contains("`allow[1].signed_by.keys[2]`")
            && e.contains("not a PEM public key"),
        "{e}"
    );

    std::fs::write(&path, SIGNED.replace("keys/carol.pub", "keys/missing.pub")).unwrap();
    let e = Policy::load(&path).unwrap_err().to_string();
    assert!(
        e.contains(":10:")
            && e.contains("`allow[2].signed_by.keys[1]`")
            && e.contains("missing.pub")
            && e.contains("relative to the policy file"),
        "{e}"
    );

    let e = Policy::load(&dir.path().join("absent.toml")).unwrap_err();
    assert!(matches!(e, PolicyError::Read { .. }), "{e}");
    assert!(e.to_string().contains("absent.toml"), "{e}");
}

fn arb_repo() -> impl Strategy<Value = String> {
    let host = prop_oneof![
        Just("registry.example.org".to_owned()),
        Just("docker.io".to_owned()),
        Just("evil.org".to_owned()),
        Just("localhost:5000".to_owned()),
    ];
    let comp = "[a-z0-9]{1,3}(-[a-z0-9]{1,2})?";
    (host, proptest::collection::vec(comp, 1..4)).prop_map(|(h, p)| format!("{h}/{}", p.join("/")))
}

fn arb_regex() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(r".+".to_owned()),
        Just(r"registry\.example\.org/.+".to_owned()),
        Just(r"[a-z.]+/a.*".to_owned()),
        Just(r".*/b".to_owned()),
        Just(r"docker\.io/[a-z0-9]+/[a-z0-9]+|evil\.org/.+".to_owned()),
        Just(r"a|b|localhost:5000/.+".to_owned()),
        Just(r"(?m)^.*a$".to_owned()),
        Just(r"[a-z]".to_owned()),
        Just(r"evil\.org".to_owned()),
    ]
}

fn arb_rule(kind: &'static str) -> impl Strategy<Value = String> {
    (
        prop_oneof![arb_repo().prop_map(|r| format!("repository = \"{r}\"")), arb_regex().prop_map(|r| format!("repository_regex = '{r}'"))],
        proptest::option::of(prop_oneof![Just(GOOD), Just(BAD)]),
        proptest::option::of(prop_oneof![Just("a"), Just("b")]),
        proptest::option::of(prop_oneof![Just("f"), Just("g")]),
        proptest::option::of(1usize..=2),
    )
        .prop_map(move |(repo, digest, org, function, signed)| {
            let mut s = format!("[[{kind}]]\n{repo}\n");
            if let Some(d) = digest {
                s.push_str(&format!("digests = [\"{d}\"]\n"));
            }
            if let Some(o) = org {
                s.push_str(&format!("organizations = [\"{o}\"]\n"));
            }
            if let Some(f) = function {
                s.push_str(&format!("functions = [\"{f}\"]\n"));
            }
            if let Some(t) = signed {
                s.push_str(&format!("signed_by = {{ keys = [\"keys/alice.pub\", \"keys/bob.pub\"], threshold = {t} }}\n"));
            }
            s
        })
}

fn arb_policy() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(arb_rule("allow"), 0..6),
        proptest::collection::vec(arb_rule("deny"), 0..4),
    )
        .prop_map(|(a, d)| format!("version = 1\n{}{}", a.concat(), d.concat()))
}

fn arb_request() -> impl Strategy<Value = (String, Option<&'static str>, Requester, BTreeSet<KeyId>)>
{
    (
        arb_repo(),
        proptest::option::of(prop_oneof![Just(GOOD), Just(BAD)]),
        proptest::option::of(prop_oneof![Just("a"), Just("b")]),
        proptest::option::of(prop_oneof![Just("f"), Just("g")]),
        proptest::collection::btree_set(
            prop_oneof![Just("alice"), Just("bob"), Just("carol")],
            0..3,
        ),
    )
        .prop_map(|(repo, digest, org, function, signers)| {
            let requester = Requester {
                organization: org.map(str::to_owned),
                function: function.map(str::to_owned),
                ..Requester::default()
            };
            (
                repo,
                digest,
                requester,
                signers.into_iter().map(signer).collect(),
            )
        })
}

/// Whether `rule`'s repository matcher, compiled on its own, matches `repo`.
fn matches_alone(rule: &Rule, repo: &str) -> bool {
    match &rule.repository {
        RepositoryMatch::Exact(r) => r.to_string() == repo,
        RepositoryMatch::Regex { source } => regex::Regex::new(&format!("^(?:{source})$"))
            .unwrap()
            .is_match(repo),
    }
}

proptest! {
    #[test]
    fn deny_rules_always_win((text, (repo, digest, requester, signers)) in (arb_policy(), arb_request())) {
        let p = policy(&text);
        let reference = Reference::parse(&repo).unwrap();
        let digest = digest.map(|d| Digest::parse(d).unwrap());
        let decision = decide(&p, &Request { reference: &reference, digest: digest.as_ref(), signers: &signers, requester: &requester });
        let facts_deny = p.deny_rules().iter().any(|rule| {
            matches_alone(rule, &reference.repository().to_string())
                && rule.digests.as_ref().is_none_or(|d| digest.as_ref().is_none_or(|x| d.contains(x)))
                && rule.organizations.as_ref().is_none_or(|o| requester.organization.as_ref().is_none_or(|x| o.contains(x)))
                && rule.functions.as_ref().is_none_or(|o| requester.function.as_ref().is_none_or(|x| o.contains(x)))
                && rule.signed_by.as_ref().is_none_or(|s| s.count(&signers) >= s.threshold)
        });
        if facts_deny {
            prop_assert!(!decision.is_permit(), "a matching deny rule did not deny: {decision}\n{text}");
            let named_deny = matches!(decision.rule(), Some(RuleId { kind: RuleKind::Deny, .. }));
            prop_assert!(named_deny, "the denial names no deny rule: {decision}");
        }
        if let Decision::Permit { rule } = decision {
            let rule = p.rule(rule).unwrap();
            prop_assert!(matches_alone(rule, &reference.repository().to_string()));
        }
        // The precheck never denies what decide would allow.
        if let Precheck::Deny { .. } = precheck(&p, &reference, &requester) {
            prop_assert!(!decision.is_permit(), "precheck denied but decide allowed\n{text}");
        }
    }

    #[test]
    fn empty_policy_denies_everything_prop((repo, digest, requester, signers) in arb_request()) {
        let p = policy("version = 1\n");
        let reference = Reference::parse(&repo).unwrap();
        let digest = digest.map(|d| Digest::parse(d).unwrap());
        let decision = decide(&p, &Request { reference: &reference, digest: digest.as_ref(), signers: &signers, requester: &requester });
        prop_assert_eq!(decision, Decision::Deny { reasons: vec![DenyReason::NoRules] });
    }

    #[test]
    fn regex_rules_never_match_beyond_the_anchored_regex(regex in arb_regex(), repo in arb_repo(), noise in "[a-z./:-]{0,6}") {
        let p = policy(&format!("version = 1\n[[allow]]\nrepository_regex = '{regex}'\n"));
        let anchored = regex::Regex::new(&format!("^(?:{regex})$")).unwrap();
        for candidate in [repo.clone(), format!("{repo}{noise}"), format!("{noise}{repo}")] {
            let Ok(reference) = Reference::parse(&candidate) else { continue };
            let normalised = reference.repository().to_string();
            let named = !p.rules_naming(RuleKind::Allow, reference.repository()).is_empty();
            prop_assert_eq!(named, anchored.is_match(&normalised), "{} vs {}", regex, normalised);
        }
    }
}

#[test]
fn dead_regex_literals_are_refused() {
    let rule = "version = 1\n[[allow]]\n";
    // Literals that a normalised repository can never contain would make a rule dead, and a dead
    // deny rule lets everything through.
    check_refused(
        &format!("{rule}repository_regex = '.+/\u{435}xperimental/.+'\n"),
        3,
        "allow[1].repository_regex",
        "non-ASCII character `\u{435}` (U+0435)",
    );
    check_refused(
        &format!("{rule}repository_regex = '.+/\\x{{435}}xperimental/.+'\n"),
        3,
        "allow[1].repository_regex",
        "U+0435",
    );
    check_refused(
        "version = 1\n[[deny]]\nrepository_regex = '.+/Experimental/.+'\n",
        3,
        "deny[1].repository_regex",
        "upper-case letter `E`",
    );
    // Case-insensitive, extended-mode and class-based regexes still load and stay anchored.
    let flags = policy(
        "version = 1\n[[allow]]\nrepository_regex = '(?i)REGISTRY\\.example\\.org/[A-Za-z]+'\n\
         [[allow]]\nrepository_regex = '''(?x) registry\\.example\\.org / x [0-9]+ # comment\n'''\n",
    );
    check(&flags, "registry.example.org/abc", "", "allow[1]");
    check(&flags, "evil.org/registry.example.org/abc", "", "deny");
    check(&flags, "registry.example.org/x12", "", "allow[2]");
    check(&flags, "registry.example.org/x12/y", "", "deny");
}

#[test]
fn contract_defaults_to_warden_and_vantage6_is_read_and_shown() {
    let p = policy(
        "version = 1\n[[allow]]\nrepository = \"r.example/a\"\n\
         [[allow]]\nrepository = \"r.example/v6\"\ncontract = \"vantage6\"\n\
         [[allow]]\nrepository = \"r.example/w\"\ncontract = \"warden\"\n",
    );
    let contracts: Vec<Contract> = p.allow_rules().iter().map(|r| r.contract).collect();
    assert_eq!(
        contracts,
        [Contract::Warden, Contract::Vantage6, Contract::Warden]
    );
    let v6 = p.allow_rules()[1].id;
    assert_eq!(p.contract(v6), Some(Contract::Vantage6));
    assert!(
        p.allow_rules()[1]
            .to_string()
            .contains("; contract: vantage6"),
        "{}",
        p.allow_rules()[1]
    );
    assert!(!p.allow_rules()[0].to_string().contains("contract"));
}

#[test]
fn contract_is_refused_when_unknown_or_on_a_deny_rule() {
    check_refused(
        "version = 1\n[[allow]]\nrepository = \"r.example/a\"\ncontract = \"vantage5\"\n",
        4,
        "allow[1].contract",
        "unknown contract `vantage5`; write one of warden, vantage6",
    );
    check_refused(
        "version = 1\n[[allow]]\nrepository = \"r.example/a\"\ncontract = \"Vantage6\"\n",
        4,
        "allow[1].contract",
        "unknown contract",
    );
    check_refused(
        "version = 1\n[[deny]]\nrepository = \"r.example/a\"\ncontract = \"vantage6\"\n",
        4,
        "deny[1].contract",
        "contract applies to allow rules only",
    );
}
