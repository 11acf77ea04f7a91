//! `warden policy check` and `warden policy lint`, run as the built binary against policy files
//! in a temporary directory.

// Helpers outside `#[test]` functions are test code too.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

const ALICE_PUB: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAD8mpsGrRQPD8srSnS027ThaZ07oRBWRRNkrClM/ax6s=
-----END PUBLIC KEY-----
";
const BOB_PUB: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAyAwaAiapDQ5TWGGfd2Q3+u+9ua88tArvsClcEkQh+k4=
-----END PUBLIC KEY-----
";
const CAROL_PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEoXaYL3Xy/ucNK82Db0j/0XkD9/0S
WTNmsKTArhtRvTaMEgBJj5JMvxySHYvd0/1RNSkwMScAzFmpRS0XJZMLfw==
-----END PUBLIC KEY-----
";
const GOOD: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const BAD: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

const POLICY: &str = r#"version = 1

[[allow]]
repository = "registry.example.org/team/average"
organizations = ["hospital-a"]
functions = ["partial_mean", "central_mean"]

[[allow]]
repository_regex = 'registry\.example\.org/trusted/.+'
digests = ["sha256:1111111111111111111111111111111111111111111111111111111111111111"]
signed_by = { keys = ["keys/alice.pub", "keys/bob.pub", "keys/alice-again.pub"], threshold = 2 }

[[allow]]
repository = "ubuntu"

[[deny]]
repository_regex = '.+/experimental/.+'
"#;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn warden(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the warden binary runs");
    Run {
        code: out.status.code().expect("warden exited, not killed"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    // The policy and its keys live in their own folder: key paths are relative to the policy.
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(etc.join("keys")).expect("mkdir");
    std::fs::write(etc.join("policy.toml"), POLICY).expect("write policy");
    std::fs::write(etc.join("keys/alice.pub"), ALICE_PUB).expect("write key");
    std::fs::write(etc.join("keys/alice-again.pub"), ALICE_PUB).expect("write key");
    std::fs::write(etc.join("keys/bob.pub"), BOB_PUB).expect("write key");
    std::fs::write(dir.path().join("alice.pub"), ALICE_PUB).expect("write key");
    std::fs::write(dir.path().join("bob.pub"), BOB_PUB).expect("write key");
    std::fs::write(dir.path().join("carol.pub"), CAROL_PUB).expect("write key");
    dir
}

/// Runs `warden policy check --json` with `args` before the image; returns exit code and JSON.
fn check_json(dir: &Path, args: &[&str], image: &str) -> (i32, serde_json::Value) {
    let mut all = vec!["policy", "check", "--policy", "etc/policy.toml", "--json"];
    all.extend_from_slice(args);
    all.push(image);
    let run = warden(dir, &all);
    let json = serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{args:?} {image}: stdout is not one JSON object ({e}): {:?} stderr {:?}",
            run.stdout, run.stderr
        )
    });
    (run.code, json)
}

#[track_caller]
fn check(dir: &Path, args: &[&str], image: &str, expect_rule: Option<&str>, reason: &str) {
    let (code, json) = check_json(dir, args, image);
    let reasons: Vec<String> = json["reasons"]
        .as_array()
        .expect("reasons is an array")
        .iter()
        .map(|r| r.as_str().expect("reason is a string").to_owned())
        .collect();
    match expect_rule {
        Some(rule) if rule.starts_with("allow") => {
            assert_eq!(
                (code, json["decision"].as_str()),
                (0, Some("allow")),
                "{image} {args:?}: {json}"
            );
            assert_eq!(json["rule"], rule, "{json}");
            assert!(reasons.is_empty(), "{json}");
        }
        _ => {
            assert_eq!(
                (code, json["decision"].as_str()),
                (1, Some("deny")),
                "{image} {args:?}: {json}"
            );
            match expect_rule {
                Some(rule) => assert_eq!(json["rule"], rule, "{json}"),
                None => assert!(json["rule"].is_null(), "{json}"),
            }
            assert!(!reasons.is_empty(), "{json}");
            assert!(
                reasons.join("\n").contains(reason),
                "{image} {args:?}: {reasons:?} lacks {reason:?}"
            );
        }
    }
}

#[test]
fn check_decides_and_exits_0_or_1() {
    let dir = setup();
    let d = dir.path();
    let requester = ["--organization", "hospital-a", "--function", "partial_mean"];
    check(
        d,
        &requester,
        "registry.example.org/team/average:1.0",
        Some("allow[1]"),
        "",
    );
    check(
        d,
        &["--organization", "hospital-b", "--function", "partial_mean"],
        "registry.example.org/team/average",
        None,
        "organization `hospital-b` is not listed",
    );
    check(
        d,
        &["--organization", "hospital-a"],
        "registry.example.org/team/average",
        None,
        "names no function",
    );
    check(
        d,
        &requester,
        "registry.example.org/team/average-evil",
        None,
        "no allow rule names repository registry.example.org/team/average-evil",
    );
    check(
        d,
        &requester,
        "evil.org/registry.example.org/team/average",
        None,
        "no allow rule",
    );
    check(d, &[], "docker.io/library/ubuntu", Some("allow[3]"), "");
    check(d, &[], "index.docker.io/ubuntu:22.04", Some("allow[3]"), "");
    check(
        d,
        &[],
        "evil/ubuntu",
        None,
        "no allow rule names repository docker.io/evil/ubuntu",
    );
    // Digests and signers.
    let trusted = "registry.example.org/trusted/tool";
    check(
        d,
        &["--signer", "alice.pub", "--signer", "bob.pub"],
        trusted,
        None,
        "the manifest digest is not known",
    );
    check(
        d,
        &[
            "--digest",
            GOOD,
            "--signer",
            "alice.pub",
            "--signer",
            "bob.pub",
        ],
        trusted,
        Some("allow[2]"),
        "",
    );
    check(
        d,
        &["--signer", "alice.pub", "--signer", "bob.pub"],
        &format!("{trusted}:v1@{GOOD}"),
        Some("allow[2]"),
        "",
    );
    check(
        d,
        &[
            "--digest",
            GOOD,
            "--signer",
            "alice.pub",
            "--signer",
            "etc/keys/alice-again.pub",
        ],
        trusted,
        None,
        "1 of the rule's keys signed",
    );
    check(
        d,
        &[
            "--digest",
            GOOD,
            "--signer",
            "alice.pub",
            "--signer",
            "carol.pub",
        ],
        trusted,
        None,
        "1 of the rule's keys signed",
    );
    check(
        d,
        &[
            "--digest",
            BAD,
            "--signer",
            "alice.pub",
            "--signer",
            "bob.pub",
        ],
        trusted,
        None,
        "is not among the rule's digests",
    );
    check(
        d,
        &[
            "--digest",
            BAD,
            "--signer",
            "alice.pub",
            "--signer",
            "bob.pub",
        ],
        &format!("{trusted}@{GOOD}"),
        None,
        "conflicting digests are refused",
    );
    // Deny rules win and are named.
    check(
        d,
        &[
            "--digest",
            GOOD,
            "--signer",
            "alice.pub",
            "--signer",
            "bob.pub",
        ],
        "registry.example.org/trusted/experimental/x",
        Some("deny[1]"),
        "denied by deny[1] (line 16)",
    );

    let (_, json) = check_json(d, &requester, "registry.example.org/team/average");
    assert_eq!(json["line"], 3);
    assert_eq!(json["repository"], "registry.example.org/team/average");
    assert_eq!(
        json["reference"],
        "registry.example.org/team/average:latest"
    );
}

#[test]
fn check_prints_an_explanation_without_json() {
    let dir = setup();
    let run = warden(
        dir.path(),
        &[
            "policy",
            "check",
            "--policy",
            "etc/policy.toml",
            "--organization",
            "hospital-b",
            "registry.example.org/team/average",
        ],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("denied"), "{}", run.stdout);
    assert!(run.stdout.contains("allow[1] (line 3) names this repository but organization `hospital-b` is not listed; the request names no function"), "{}", run.stdout);
    let run = warden(
        dir.path(),
        &["policy", "check", "--policy", "etc/policy.toml", "ubuntu"],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("docker.io/library/ubuntu:latest (repository docker.io/library/ubuntu) under etc/policy.toml: allowed by allow[3] (line 13)"), "{}", run.stdout);
}

#[track_caller]
fn bad_input(dir: &Path, args: &[&str], stderr: &str) {
    let run = warden(dir, args);
    assert_eq!(
        run.code, 2,
        "{args:?}: stdout {:?} stderr {:?}",
        run.stdout, run.stderr
    );
    assert!(run.stdout.is_empty(), "{args:?}: {:?}", run.stdout);
    assert!(
        run.stderr.contains(stderr),
        "{args:?}: {:?} lacks {stderr:?}",
        run.stderr
    );
}

#[test]
fn bad_input_exits_2_with_the_error_on_stderr() {
    let dir = setup();
    let d = dir.path();
    let check = ["policy", "check", "--policy", "etc/policy.toml"];
    let with = |extra: &[&'static str]| [check.as_slice(), extra].concat();
    bad_input(
        d,
        &with(&["registry.example.org/team/../x"]),
        "invalid image reference",
    );
    bad_input(
        d,
        &with(&["registry.example.org/team/av\u{435}rage"]),
        "non-ASCII",
    );
    bad_input(
        d,
        &with(&["registry.example.org/team/average\nevil.org/x"]),
        "whitespace or control character",
    );
    bad_input(
        d,
        &with(&["--digest", "sha256:abc", "ubuntu"]),
        "--digest takes",
    );
    bad_input(
        d,
        &with(&["--signer", "missing.pub", "ubuntu"]),
        "cannot read signer key file missing.pub",
    );
    bad_input(
        d,
        &with(&["--signer", "etc/policy.toml", "ubuntu"]),
        "is not a usable public key",
    );
    bad_input(
        d,
        &["policy", "check", "--policy", "etc/absent.toml", "ubuntu"],
        "cannot read policy file etc/absent.toml",
    );

    std::fs::write(
        d.join("etc/bad.toml"),
        POLICY.replace("threshold = 2", "threshold = 3"),
    )
    .expect("write");
    bad_input(
        d,
        &["policy", "check", "--policy", "etc/bad.toml", "ubuntu"],
        "etc/bad.toml:11:",
    );
    bad_input(
        d,
        &["policy", "check", "--policy", "etc/bad.toml", "ubuntu"],
        "`allow[2].signed_by.threshold`: threshold 3 is above the 2 distinct keys listed (files holding the same key count once: keys/alice.pub = keys/alice-again.pub)",
    );
    std::fs::write(
        d.join("etc/bad.toml"),
        POLICY.replace("functions =", "function ="),
    )
    .expect("write");
    bad_input(
        d,
        &["policy", "check", "--policy", "etc/bad.toml", "ubuntu"],
        "etc/bad.toml:6:1: `allow[1].function`: unknown field `function`",
    );
}

#[test]
fn lint_validates_and_summarises() {
    let dir = setup();
    let d = dir.path();
    let run = warden(d, &["policy", "lint", "etc/policy.toml"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "etc/policy.toml: valid, version 1, 3 allow rules, 1 deny rule"
    );
    assert_eq!(
        lines[1].trim(),
        "deny[1] (line 16): repository_regex '.+/experimental/.+'"
    );
    assert_eq!(
        lines[2].trim(),
        "allow[1] (line 3): repository registry.example.org/team/average; organizations: hospital-a; functions: central_mean, partial_mean"
    );
    assert!(lines[3].contains("allow[2] (line 8)") && lines[3].contains("signed_by: 2 of 2 distinct keys (keys/alice.pub, keys/bob.pub, keys/alice-again.pub)"), "{}", lines[3]);
    assert_eq!(
        lines[4].trim(),
        "allow[3] (line 13): repository docker.io/library/ubuntu"
    );

    std::fs::write(d.join("empty.toml"), "version = 1\n").expect("write");
    let run = warden(d, &["policy", "lint", "empty.toml"]);
    assert_eq!(run.code, 0);
    assert!(
        run.stdout
            .contains("no rules: this policy denies everything"),
        "{}",
        run.stdout
    );
    let (code, json) = {
        let run = warden(
            d,
            &[
                "policy",
                "check",
                "--policy",
                "empty.toml",
                "--json",
                "ubuntu",
            ],
        );
        (
            run.code,
            serde_json::from_str::<serde_json::Value>(&run.stdout).expect("json"),
        )
    };
    assert_eq!((code, json["decision"].as_str()), (1, Some("deny")));

    for (text, error) in [
        (
            "version = 2\n",
            "empty.toml:1:11: `version`: unsupported policy version 2",
        ),
        (
            "version = 1\n[[allow]]\nrepository_regex = '(a'\n",
            "empty.toml:3:20: `allow[1].repository_regex`: invalid regex",
        ),
        (
            "version = 1\n[[allow]]\nrepository = \"a.org/x\"\nrepository_regex = 'a'\n",
            "`allow[1].repository_regex`: a rule sets exactly one",
        ),
        (
            "version = 1\n[[deny]]\nrepository = \"a.org/x\"\ndigests = []\n",
            "empty.toml:4:11: `deny[1].digests`: the list is empty",
        ),
        (
            "version = 1\n[[allow]]\nrepository = \"a.org/x\"\nsigned_by = { keys = [\"keys/x.pub\"], threshold = 1 }\n",
            "`allow[1].signed_by.keys[1]`: cannot read key file",
        ),
        ("version = 1\n[[allow]\n", "empty.toml:2:"),
    ] {
        std::fs::write(d.join("empty.toml"), text).expect("write");
        bad_input(d, &["policy", "lint", "empty.toml"], error);
    }
}

const OUTPUT_POLICY: &str = r#"version = 1

[[allow]]
repository = "registry.example.org/warden/mean"
signed_by = { keys = ["keys/alice.pub"], threshold = 1 }
[allow.output]
max_bytes = 65536
schema = "schemas/mean.json"
min_count = { paths = ["n", "counts.*"], k = 5 }
release = "manual"
checkers = 2
max_subtasks = 10
runs_per_day = 50
first_run = "approve"
logs = "release"

[[allow]]
repository = "ubuntu"
"#;

const MEAN_SCHEMA: &str =
    r#"{"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}"#;

fn setup_output() -> tempfile::TempDir {
    let dir = setup();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(etc.join("schemas")).expect("mkdir");
    std::fs::write(etc.join("schemas/mean.json"), MEAN_SCHEMA).expect("write schema");
    std::fs::write(etc.join("output.toml"), OUTPUT_POLICY).expect("write policy");
    dir
}

#[test]
fn lint_and_check_show_the_output_rules() {
    let dir = setup_output();
    let d = dir.path();
    let rules = "max_bytes 65536; schema schemas/mean.json; min_count k = 5 at counts.*, n; release manual by 2 checkers; max_subtasks 10; runs_per_day 50; first_run approve; logs release";

    let run = warden(d, &["policy", "lint", "etc/output.toml"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[1].trim(),
        format!(
            "allow[1] (line 3): repository registry.example.org/warden/mean; signed_by: 1 of 1 distinct keys (keys/alice.pub); output: {rules}"
        )
    );
    assert_eq!(
        lines[2].trim(),
        "allow[2] (line 17): repository docker.io/library/ubuntu"
    );

    // check, human text: the output rules of the rule that permits.
    let base = ["policy", "check", "--policy", "etc/output.toml"];
    let mut args = base.to_vec();
    args.extend([
        "--signer",
        "alice.pub",
        "registry.example.org/warden/mean:1",
    ]);
    let run = warden(d, &args);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("allowed by allow[1] (line 3)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!("\n  output: {rules}")),
        "{}",
        run.stdout
    );
    let mut args = base.to_vec();
    args.push("ubuntu");
    let run = warden(d, &args);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("allowed by allow[2] (line 17)\n  output: none (release automatic)"),
        "{}",
        run.stdout
    );

    // check --json: `output` is the permitting rule's, `null` for a denial.
    let json_of = |args: &[&str]| {
        let mut all = base.to_vec();
        all.push("--json");
        all.extend_from_slice(args);
        let run = warden(d, &all);
        let json: serde_json::Value = serde_json::from_str(run.stdout.trim())
            .unwrap_or_else(|e| panic!("{e}: {} {}", run.stdout, run.stderr));
        (run.code, json)
    };
    let (code, json) = json_of(&[
        "--signer",
        "alice.pub",
        "registry.example.org/warden/mean:1",
    ]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(
        json["output"],
        serde_json::json!({
            "max_bytes": 65536,
            "schemas": ["schemas/mean.json"],
            "min_count": {"paths": ["counts.*", "n"], "k": 5},
            "release": "manual",
            "checkers": 2,
            "max_subtasks": 10,
            "runs_per_day": 50,
            "first_run": "approve",
            "logs": "release",
        })
    );
    let (code, json) = json_of(&["ubuntu"]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(
        json["output"],
        serde_json::json!({
            "max_bytes": null, "schemas": [], "min_count": null, "release": "automatic",
            "checkers": null, "max_subtasks": null, "runs_per_day": null, "first_run": null,
            "logs": null,
        })
    );
    let (code, json) = json_of(&["registry.example.org/warden/mean:1"]);
    assert_eq!(
        (code, json["decision"].as_str()),
        (1, Some("deny")),
        "{json}"
    );
    assert!(json["output"].is_null(), "{json}");
}

#[test]
fn bad_output_rules_exit_2_with_file_line_and_key() {
    let dir = setup_output();
    let d = dir.path();
    std::fs::write(d.join("etc/schemas/broken.json"), r#"{"type": 5}"#).expect("write");
    for (from, to, error) in [
        (
            "max_bytes = 65536",
            "max_bytes = 0",
            "etc/output.toml:7:13: `allow[1].output.max_bytes`: 0 is out of range",
        ),
        (
            "schemas/mean.json",
            "schemas/absent.json",
            "etc/output.toml:8:10: `allow[1].output.schema`: cannot read schema file",
        ),
        (
            "schemas/mean.json",
            "schemas/broken.json",
            "etc/output.toml:8:10: `allow[1].output.schema`: schema file `schemas/broken.json` is not a valid JSON Schema",
        ),
        (
            "k = 5",
            "k = 1",
            "etc/output.toml:9:46: `allow[1].output.min_count.k`: 1 is out of range",
        ),
        (
            "release = \"manual\"",
            "release = \"automatic\"",
            "etc/output.toml:11:12: `allow[1].output.checkers`: checkers apply only with release = \"manual\"",
        ),
        (
            "first_run = \"approve\"",
            "first_run = \"yes\"",
            "etc/output.toml:14:13: `allow[1].output.first_run`: first_run `yes` is not known",
        ),
        (
            "logs = \"release\"",
            "logs = \"stdout\"",
            "etc/output.toml:15:8: `allow[1].output.logs`: logs `stdout` is not known",
        ),
    ] {
        std::fs::write(d.join("etc/output.toml"), OUTPUT_POLICY.replace(from, to)).expect("write");
        bad_input(d, &["policy", "lint", "etc/output.toml"], error);
    }
}

/// Without the store's evidence, `approved_by` is shown as not evaluated, never as a failure:
/// a rule that fails on it alone leaves the check undecided (exit 1), a rule that fails on
/// something else as well is still a denial, and a deny rule still denies.
#[test]
fn approved_by_is_not_evaluated_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(etc.join("reviewers")).expect("mkdir");
    std::fs::write(etc.join("reviewers/alice.pub"), ALICE_PUB).expect("write key");
    std::fs::write(etc.join("reviewers/bob.pub"), BOB_PUB).expect("write key");
    std::fs::write(
        etc.join("policy.toml"),
        r#"version = 1

[[deny]]
repository = "registry.example.org/team/banned"

[[allow]]
repository = "registry.example.org/team/mean"
approved_by = { store = "community", reviewers = ["reviewers/*.pub"], min_approvals = 2, min_organizations = 2 }

[[allow]]
repository_regex = "registry.example.org/team/(other|banned)"
organizations = ["hospital-a"]
approved_by = { store = "community", reviewers = ["reviewers/*.pub"], min_approvals = 1, min_organizations = 1 }
"#,
    )
    .expect("write policy");
    let d = dir.path();
    let (code, json) = check_json(d, &["--digest", GOOD], "registry.example.org/team/mean");
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["decision"], "undecided", "{json}");
    assert_eq!(
        json["approved_by"],
        "not evaluated offline (needs the store's evidence)"
    );
    assert_eq!(json["undecided_rules"], serde_json::json!(["allow[1]"]));
    let reasons = json["reasons"].to_string();
    assert!(
        reasons.contains(
            "approved_by: not evaluated offline (needs the store's evidence) of store `community`"
        ),
        "{reasons}"
    );
    assert!(
        !reasons.contains("fails closed") && !reasons.contains("could not be checked"),
        "{reasons}"
    );

    // another condition fails too: a denial, with approved_by still said as not evaluated
    let (code, json) = check_json(
        d,
        &["--organization", "hospital-b"],
        "registry.example.org/team/other",
    );
    assert_eq!(
        (code, json["decision"].as_str()),
        (1, Some("deny")),
        "{json}"
    );
    let reasons = json["reasons"].to_string();
    assert!(
        reasons.contains("organization `hospital-b` is not listed")
            && reasons.contains("approved_by: not evaluated offline"),
        "{reasons}"
    );

    // a deny rule denies whatever the store would say
    let (code, json) = check_json(
        d,
        &["--organization", "hospital-a"],
        "registry.example.org/team/banned",
    );
    assert_eq!(
        (code, json["decision"].as_str()),
        (1, Some("deny")),
        "{json}"
    );
    assert_eq!(json["rule"], "deny[1]", "{json}");

    // a rule without approved_by is not affected
    let (_, json) = check_json(d, &[], "registry.example.org/team/unknown");
    assert!(json["approved_by"].is_null(), "{json}");

    let run = warden(
        d,
        &[
            "policy",
            "check",
            "--policy",
            "etc/policy.toml",
            "registry.example.org/team/mean",
        ],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("undecided: allow[1] (line 6) would permit if approved_by holds; approved_by: not evaluated offline (needs the store's evidence); give --node-config"),
        "{}",
        run.stdout
    );
}

#[test]
fn lint_json_is_one_document_naming_each_rule() {
    let dir = setup();
    let d = dir.path();
    let run = warden(d, &["policy", "lint", "--json", "etc/policy.toml"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    assert_eq!(v["policy"], "etc/policy.toml");
    assert_eq!(v["version"], 1);
    assert_eq!(v["denies_everything"], false);
    let allow = v["allow"].as_array().expect("allow rules");
    let deny = v["deny"].as_array().expect("deny rules");
    assert_eq!((allow.len(), deny.len()), (3, 1), "{v}");
    let first = &allow[0];
    assert_eq!(
        (&first["rule"], &first["line"], &first["repository"]),
        (
            &"allow[1]".into(),
            &3.into(),
            &"registry.example.org/team/average".into()
        )
    );
    assert_eq!(first["repository_regex"], serde_json::Value::Null);
    assert_eq!(first["organizations"], serde_json::json!(["hospital-a"]));
    assert_eq!(
        first["functions"],
        serde_json::json!(["central_mean", "partial_mean"])
    );
    assert!(
        first["users"].is_null() && first["signed_by"].is_null(),
        "{first}"
    );
    assert_eq!(first["output"]["release"], "automatic", "{first}");
    // The signed_by keys by identity: alice's key twice is one key; the key IDs are those
    // `warden keys fingerprint` prints.
    let key_id = |file: &str| {
        let run = warden(d, &["keys", "fingerprint", file]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
        v["key_id"].as_str().expect("key_id").to_owned()
    };
    let mut ids = vec![key_id("etc/keys/alice.pub"), key_id("etc/keys/bob.pub")];
    ids.sort();
    let second = &allow[1];
    assert_eq!(second["repository"], serde_json::Value::Null);
    assert_eq!(
        second["repository_regex"],
        r"registry\.example\.org/trusted/.+"
    );
    assert_eq!(second["digests"], serde_json::json!([GOOD]));
    assert_eq!(second["signed_by"]["threshold"], 2);
    assert_eq!(second["signed_by"]["key_ids"], serde_json::json!(ids));
    assert_eq!(
        second["signed_by"]["files"],
        serde_json::json!(["keys/alice.pub", "keys/bob.pub", "keys/alice-again.pub"])
    );
    assert_eq!(allow[2]["repository"], "docker.io/library/ubuntu");
    assert_eq!(
        (&deny[0]["rule"], &deny[0]["line"]),
        (&"deny[1]".into(), &16.into())
    );
    assert_eq!(deny[0]["repository_regex"], ".+/experimental/.+");
    assert!(deny[0].get("output").is_none(), "{}", deny[0]);

    // The output rules as `check --json` names them.
    let dir = setup_output();
    let run = warden(dir.path(), &["policy", "lint", "--json", "etc/output.toml"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let output = &v["allow"][0]["output"];
    assert_eq!(output["max_bytes"], 65536, "{output}");
    assert_eq!(output["release"], "manual");
    assert_eq!(output["checkers"], 2);
    assert_eq!(output["first_run"], "approve");

    // An empty policy denies everything; a refused one exits 2 with the error on stderr and
    // nothing on stdout, as without --json.
    std::fs::write(d.join("empty.toml"), "version = 1\n").expect("write");
    let run = warden(d, &["policy", "lint", "--json", "empty.toml"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(v["denies_everything"], true);
    assert_eq!(v["allow"], serde_json::json!([]));
    std::fs::write(d.join("bad.toml"), "version = 2\n").expect("write");
    let run = warden(d, &["policy", "lint", "--json", "bad.toml"]);
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(
        run.stderr.contains("unsupported policy version 2"),
        "{}",
        run.stderr
    );
}

#[test]
fn lint_and_check_show_the_contract_of_an_allow_rule() {
    let dir = setup();
    let d = dir.path();
    std::fs::write(
        d.join("etc/v6.toml"),
        "version = 1\n[[allow]]\nrepository = \"registry.example.org/v6/mean\"\ncontract = \"vantage6\"\n\
         [[allow]]\nrepository = \"registry.example.org/warden/mean\"\n",
    )
    .expect("write policy");
    let run = warden(d, &["policy", "lint", "etc/v6.toml"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(
            "allow[1] (line 2): repository registry.example.org/v6/mean; contract: vantage6"
        ),
        "{}",
        run.stdout
    );
    let run = warden(d, &["policy", "lint", "--json", "etc/v6.toml"]);
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("one JSON document");
    assert_eq!(v["allow"][0]["contract"], "vantage6", "{v}");
    assert_eq!(v["allow"][1]["contract"], "warden", "{v}");

    let base = ["policy", "check", "--policy", "etc/v6.toml"];
    let run = warden(
        d,
        &[&base[..], &["registry.example.org/v6/mean:1"]].concat(),
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("\n  contract: vantage6"),
        "{}",
        run.stdout
    );
    let run = warden(
        d,
        &[&base[..], &["--json", "registry.example.org/warden/mean:1"]].concat(),
    );
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("one JSON document");
    assert_eq!(v["contract"], "warden", "{v}");
    let run = warden(
        d,
        &[&base[..], &["--json", "registry.example.org/other:1"]].concat(),
    );
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("one JSON document");
    assert!(v["contract"].is_null(), "{v}");

    // An unknown contract is bad input, with file, line and key.
    std::fs::write(
        d.join("etc/bad.toml"),
        "version = 1\n[[allow]]\nrepository = \"r.example/a\"\ncontract = \"vantage5\"\n",
    )
    .expect("write policy");
    let run = warden(d, &["policy", "lint", "etc/bad.toml"]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("allow[1].contract")
            && run.stderr.contains("unknown contract `vantage5`"),
        "{}",
        run.stderr
    );
}
