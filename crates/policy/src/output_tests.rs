//! Output rules: every key accepted, refused at load with file/line/key, each check tripped and
//! respected, reasons that never quote the result, and `stricter` as a property.

use std::collections::BTreeSet;

use proptest::prelude::*;
use warden_reference::Reference;
use warden_trust::PublicKey;

use super::*;

fn ed_key(seed: u8) -> PublicKey {
    PublicKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key())
}

fn keys(file: &str) -> Result<PublicKey, KeyLoadError> {
    match file {
        "keys/alice.pub" => Ok(ed_key(1)),
        other => Err(KeyLoadError(format!("cannot read key file {other}"))),
    }
}

const MEAN_SCHEMA: &str = r#"{
  "type": "object",
  "required": ["n", "counts"],
  "properties": {
    "n": { "type": "integer", "minimum": 0 },
    "counts": { "type": "array", "items": { "type": "integer" } },
    "mean": { "type": "number" }
  }
}"#;

fn files(file: &str) -> Result<String, FileLoadError> {
    match file {
        "schemas/mean.json" => Ok(MEAN_SCHEMA.to_owned()),
        "schemas/other.json" => Ok(r#"{"type": "object", "required": ["mean"]}"#.to_owned()),
        "schemas/not-json.json" => Ok("{ not json".to_owned()),
        "schemas/bad-type.json" => Ok(r#"{"type": "integr"}"#.to_owned()),
        "schemas/bad-regex.json" => Ok(r#"{"pattern": "(unclosed"}"#.to_owned()),
        "schemas/remote-ref.json" => Ok(r#"{"$ref": "https://example.org/evil.json"}"#.to_owned()),
        "schemas/file-ref.json" => Ok(r#"{"$ref": "file:///etc/passwd"}"#.to_owned()),
        other => Err(FileLoadError(format!("cannot read schema file {other}"))),
    }
}

/// A policy with one allow rule whose `[allow.output]` body is `output` (starting on line 5).
fn with_output(output: &str) -> String {
    format!(
        "version = 1\n[[allow]]\nrepository = \"registry.example.org/warden/mean\"\n[allow.output]\n{output}\n"
    )
}

fn load(text: &str) -> Result<Policy, PolicyError> {
    Policy::from_toml_str_with_files(text, "policy.toml", keys, files)
}

#[track_caller]
fn rules(output: &str) -> OutputRules {
    match load(&with_output(output)) {
        Ok(p) => p.allow_rules()[0].output.clone(),
        Err(e) => panic!("refused: {e}\n{output}"),
    }
}

/// Refused at `line`, naming `key`, the message containing `message`.
#[track_caller]
fn refused_text(text: &str, line: usize, key: &str, message: &str) {
    match load(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => {
            let PolicyError::Invalid {
                origin,
                line: l,
                key: k,
                message: m,
                ..
            } = &e
            else {
                panic!("unexpected error {e}")
            };
            assert_eq!(origin, "policy.toml");
            assert_eq!((*l, k.as_str()), (line, key), "{e}");
            assert!(m.contains(message), "{e} does not mention {message:?}");
            assert!(
                e.to_string().starts_with(&format!("policy.toml:{line}:")),
                "{e}"
            );
        }
    }
}

#[track_caller]
fn refused(output: &str, line: usize, key: &str, message: &str) {
    refused_text(&with_output(output), line, key, message);
}

const FULL: &str = r#"version = 1

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

[[allow]]
repository = "registry.example.org/warden/other"
"#;

#[test]
fn every_key_is_accepted_and_reachable_from_the_permit() {
    let p = load(FULL).unwrap();
    let reference = Reference::parse("registry.example.org/warden/mean:1").unwrap();
    let signers = BTreeSet::from([ed_key(1).id()]);
    let requester = Requester::default();
    let decision = decide(
        &p,
        &Request {
            reference: &reference,
            digest: None,
            signers: &signers,
            requester: &requester,
        },
    );
    let Decision::Permit { rule } = decision else {
        panic!("{decision}")
    };
    let out = p.output_rules(rule).unwrap();
    assert_eq!(out.max_bytes, Some(Sourced::new(65536, "allow[1]")));
    assert_eq!(out.schemas.len(), 1);
    assert_eq!(
        (out.schemas[0].rule(), out.schemas[0].file()),
        ("allow[1]", "schemas/mean.json")
    );
    let m = out.min_count.as_ref().unwrap();
    assert_eq!(m.k, 5);
    let paths: Vec<&str> = m.paths.iter().map(PathPattern::as_str).collect();
    assert_eq!(paths, ["counts.*", "n"]);
    assert_eq!(out.release, Release::Manual { checkers: 2 });
    assert_eq!(out.release.checkers(), 2);
    assert_eq!(out.max_subtasks, Some(10));
    assert_eq!(out.runs_per_day, Some(50));
    assert_eq!(out.first_run, FirstRun::Approve);
    assert_eq!(
        out.to_string(),
        "max_bytes 65536; schema schemas/mean.json; min_count k = 5 at counts.*, n; release manual by 2 checkers; max_subtasks 10; runs_per_day 50; first_run approve"
    );
    assert!(
        p.allow_rules()[0]
            .to_string()
            .contains("; output: max_bytes 65536;")
    );

    // The rule without `[allow.output]` restricts nothing, and its summary says nothing more.
    let other = &p.allow_rules()[1];
    assert!(other.output.is_unrestricted());
    assert!(!other.to_string().contains("output"), "{other}");
    assert_eq!(other.output.check_result(b"anything, not JSON"), Ok(()));
    // A deny rule has no output rules.
    let deny = RuleId {
        kind: RuleKind::Deny,
        number: 1,
        line: 1,
    };
    assert!(p.output_rules(deny).is_none());
}

#[test]
fn each_key_alone_and_its_defaults() {
    assert_eq!(rules("max_bytes = 1").max_bytes.unwrap().value, 1);
    assert_eq!(
        rules("max_bytes = 268435456").max_bytes.unwrap().value,
        MAX_OUTPUT_BYTES
    );
    assert_eq!(rules("schema = \"schemas/other.json\"").schemas.len(), 1);
    assert_eq!(
        rules("min_count = { paths = [\"a.*.b\"], k = 2 }")
            .min_count
            .unwrap()
            .k,
        2
    );
    assert_eq!(rules("release = \"automatic\"").release, Release::Automatic);
    assert_eq!(
        rules("release = \"manual\"").release,
        Release::Manual { checkers: 1 }
    );
    assert_eq!(
        rules("release = \"manual\"\ncheckers = 10").release,
        Release::Manual { checkers: 10 }
    );
    assert_eq!(rules("max_subtasks = 0").max_subtasks, Some(0));
    assert_eq!(rules("max_subtasks = 10000").max_subtasks, Some(10_000));
    assert_eq!(rules("runs_per_day = 1").runs_per_day, Some(1));
    assert_eq!(
        rules("runs_per_day = 1000000").runs_per_day,
        Some(1_000_000)
    );
    assert_eq!(
        rules("first_run = \"approve\"").first_run,
        FirstRun::Approve
    );
    // An empty table is allowed and restricts nothing.
    let empty = rules("");
    assert!(empty.is_unrestricted());
    assert_eq!(empty.release, Release::Automatic);
    assert_eq!(empty.first_run, FirstRun::Run);
    // The inline form works too.
    let p = load(
        "version = 1\n[[allow]]\nrepository = \"ubuntu\"\noutput = { max_bytes = 10, first_run = \"approve\" }\n",
    )
    .unwrap();
    assert_eq!(
        p.allow_rules()[0].output.max_bytes.as_ref().unwrap().value,
        10
    );
}

#[test]
fn bad_output_rules_are_refused_with_file_line_and_key() {
    let p = "allow[1].output";
    refused(
        "max_bytes = 0",
        5,
        &format!("{p}.max_bytes"),
        "0 is out of range",
    );
    refused(
        "max_bytes = 268435457",
        5,
        &format!("{p}.max_bytes"),
        "at most 256 MiB",
    );
    refused(
        "max_bytes = \"64k\"",
        5,
        &format!("{p}.max_bytes"),
        "invalid type",
    );
    refused(
        "schema = \"schemas/missing.json\"",
        5,
        &format!("{p}.schema"),
        "cannot read schema file schemas/missing.json",
    );
    refused(
        "schema = \"\"",
        5,
        &format!("{p}.schema"),
        "the schema path is empty",
    );
    refused(
        "schema = \"schemas/not-json.json\"",
        5,
        &format!("{p}.schema"),
        "is not JSON",
    );
    refused(
        "schema = \"schemas/bad-type.json\"",
        5,
        &format!("{p}.schema"),
        "not a valid JSON Schema",
    );
    refused(
        "schema = \"schemas/bad-regex.json\"",
        5,
        &format!("{p}.schema"),
        "not a valid JSON Schema",
    );
    refused(
        "schema = \"schemas/remote-ref.json\"",
        5,
        &format!("{p}.schema"),
        "self-contained",
    );
    refused(
        "schema = \"schemas/file-ref.json\"",
        5,
        &format!("{p}.schema"),
        "self-contained",
    );
    refused(
        "min_count = { paths = [\"n\"], k = 1 }",
        5,
        &format!("{p}.min_count.k"),
        "1 is out of range: k is 2..=",
    );
    refused(
        "min_count = { paths = [], k = 5 }",
        5,
        &format!("{p}.min_count.paths"),
        "the list is empty",
    );
    refused(
        "min_count = { paths = [\"n\", \"counts..x\"], k = 5 }",
        5,
        &format!("{p}.min_count.paths[2]"),
        "empty segment",
    );
    refused(
        "min_count = { paths = [\"counts.a*\"], k = 5 }",
        5,
        &format!("{p}.min_count.paths[1]"),
        "`*` stands alone",
    );
    refused(
        "min_count = { paths = [\"\"], k = 5 }",
        5,
        &format!("{p}.min_count.paths[1]"),
        "the path is empty",
    );
    refused(
        "min_count = { paths = [\"n\"] }",
        5,
        &format!("{p}.min_count.k"),
        "missing field `k`",
    );
    refused(
        "release = \"later\"",
        5,
        &format!("{p}.release"),
        "release `later` is not known",
    );
    refused(
        "checkers = 2",
        5,
        &format!("{p}.checkers"),
        "only with release = \"manual\"",
    );
    refused(
        "release = \"automatic\"\ncheckers = 2",
        6,
        &format!("{p}.checkers"),
        "only with release = \"manual\"",
    );
    refused(
        "release = \"manual\"\ncheckers = 0",
        6,
        &format!("{p}.checkers"),
        "checkers is 1..=10",
    );
    refused(
        "release = \"manual\"\ncheckers = 11",
        6,
        &format!("{p}.checkers"),
        "checkers is 1..=10",
    );
    refused(
        "max_subtasks = -1",
        5,
        &format!("{p}.max_subtasks"),
        "max_subtasks is 0..=10000",
    );
    refused(
        "max_subtasks = 10001",
        5,
        &format!("{p}.max_subtasks"),
        "max_subtasks is 0..=10000",
    );
    refused(
        "runs_per_day = 0",
        5,
        &format!("{p}.runs_per_day"),
        "runs_per_day is 1..=1000000",
    );
    refused(
        "runs_per_day = 1000001",
        5,
        &format!("{p}.runs_per_day"),
        "runs_per_day is 1..=1000000",
    );
    refused(
        "first_run = \"always\"",
        5,
        &format!("{p}.first_run"),
        "first_run `always` is not known",
    );
    refused(
        "logs = \"print\"",
        5,
        &format!("{p}.logs"),
        "logs `print` is not known; write \"withhold\" (the default) or \"release\"",
    );
    refused("logs = 1", 5, &format!("{p}.logs"), "invalid type");
    refused(
        "max_byte = 10",
        5,
        &format!("{p}.max_byte"),
        "unknown field `max_byte`",
    );
    refused_text(
        "version = 1\n[[deny]]\nrepository = \"ubuntu\"\n[deny.output]\nmax_bytes = 10\n",
        4,
        "deny[1].output",
        "apply to allow rules only",
    );
    // Without a file reader, a schema cannot be read: refused, saying how to load it.
    let e = Policy::from_toml_str(
        &with_output("schema = \"schemas/mean.json\""),
        "policy.toml",
        keys,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("policy.toml:5:") && e.contains("Policy::load"),
        "{e}"
    );
}

#[test]
fn load_reads_schema_files_relative_to_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc/schemas")).unwrap();
    std::fs::write(dir.path().join("etc/schemas/mean.json"), MEAN_SCHEMA).unwrap();
    let path = dir.path().join("etc/policy.toml");
    std::fs::write(&path, with_output("schema = \"schemas/mean.json\"")).unwrap();
    let p = Policy::load(&path).unwrap();
    let out = &p.allow_rules()[0].output;
    assert_eq!(out.check_result(br#"{"n": 3, "counts": [1]}"#), Ok(()));
    assert!(out.check_result(br#"{"n": -1, "counts": []}"#).is_err());
    // An empty result (an algorithm that wrote no output file) is no JSON: a schema refuses it.
    let e = out.check_result(b"").unwrap_err();
    assert!(matches!(e, OutputViolation::NotJson { .. }), "{e}");

    std::fs::write(&path, with_output("schema = \"schemas/absent.json\"")).unwrap();
    let e = Policy::load(&path).unwrap_err().to_string();
    assert!(
        e.contains(":5:") && e.contains("absent.json") && e.contains("relative to the policy file"),
        "{e}"
    );
}

#[test]
fn max_bytes_is_tripped_and_respected() {
    let out = rules("max_bytes = 10");
    assert_eq!(out.check_result(b"0123456789"), Ok(()));
    assert_eq!(out.check_size(10), Ok(()));
    let e = out.check_result(b"01234567890").unwrap_err();
    assert_eq!(
        e.to_string(),
        "the output is larger than max_bytes = 10 of allow[1]; it is withheld"
    );
    assert!(matches!(
        out.check_size(11),
        Err(OutputViolation::TooLarge { limit: 10, .. })
    ));
    // Without a schema or min_count, a result need not be JSON.
    assert_eq!(out.check_result(b"\xff\xfe"), Ok(()));
}

#[test]
fn schema_is_tripped_and_respected() {
    let out = rules("schema = \"schemas/mean.json\"");
    assert_eq!(
        out.check_result(br#"{"n": 12, "counts": [3, 4], "mean": 1.5}"#),
        Ok(())
    );
    let e = out
        .check_result(br#"{"n": -731, "counts": []}"#)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the result does not validate against schema `schemas/mean.json` of allow[1] (keyword `/properties/n/minimum` fails); it is withheld"
    );
    let e = out
        .check_result(br#"{"n": 1, "counts": ["secret-name"]}"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/properties/counts/items/type") && !e.contains("secret"),
        "{e}"
    );
    let e = out
        .check_result(br#"{"counts": []}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("keyword `/required`"), "{e}");
    let e = out.check_result(b"n=12 secret").unwrap_err();
    assert_eq!(
        e.to_string(),
        "the result is not JSON (line 1, column 2); schema of allow[1] can only check JSON; it is withheld"
    );
}

#[test]
fn min_count_is_tripped_and_respected() {
    let out = rules("min_count = { paths = [\"n\", \"counts.*\", \"groups.*.size\"], k = 5 }");
    let ok: &[&[u8]] = &[
        br#"{"n": 5, "counts": [0, 5, 99], "groups": {"a": {"size": 7}, "b": {"size": 0}}}"#,
        br#"{"n": 0}"#,
        // Paths that select nothing have nothing to check.
        br#"{"other": 1}"#,
        br#"{"n": 5.0, "counts": {"x": 6, "y": 0.0}}"#,
        br#"[1, 2]"#,
    ];
    for result in ok {
        assert_eq!(
            out.check_result(result),
            Ok(()),
            "{}",
            String::from_utf8_lossy(result)
        );
    }
    let small = "a count at `counts.*` is below k = 5 (min_count of allow[1]); it is withheld";
    for (result, reason) in [
        (&br#"{"n": 5, "counts": [0, 5, 2]}"#[..], small),
        (br#"{"n": 5, "counts": {"a": 4}}"#, small),
        (br#"{"n": 5, "counts": [-3]}"#, small),
        (br#"{"n": 5, "counts": [4.5]}"#, small),
        (
            br#"{"n": 1}"#,
            "a count at `n` is below k = 5 (min_count of allow[1]); it is withheld",
        ),
        (
            br#"{"groups": {"a": {"size": 3}}}"#,
            "a count at `groups.*.size` is below k = 5 (min_count of allow[1]); it is withheld",
        ),
        (
            br#"{"n": "three"}"#,
            "a value at `n` is not a number, so min_count of allow[1] (k = 5) cannot check it; it is withheld",
        ),
        (
            br#"{"counts": [[1]]}"#,
            "a value at `counts.*` is not a number, so min_count of allow[1] (k = 5) cannot check it; it is withheld",
        ),
        (
            b"not json",
            "the result is not JSON (line 1, column 2); min_count of allow[1] can only check JSON; it is withheld",
        ),
    ] {
        let e = out.check_result(result).unwrap_err();
        assert_eq!(e.to_string(), reason, "{}", String::from_utf8_lossy(result));
    }
    // Numeric segments pick an array element, and are keys of objects.
    let out = rules("min_count = { paths = [\"rows.1.count\", \"by.3\"], k = 3 }");
    assert_eq!(
        out.check_result(br#"{"rows": [{"count": 1}, {"count": 3}]}"#),
        Ok(())
    );
    assert!(
        out.check_result(br#"{"rows": [{"count": 3}, {"count": 1}]}"#)
            .is_err()
    );
    assert!(out.check_result(br#"{"by": {"3": 2}}"#).is_err());
    assert_eq!(
        out.check_result(br#"{"by": [9, 9, 9, 1]}"#)
            .map_err(|e| e.to_string()),
        Err("a count at `by.3` is below k = 3 (min_count of allow[1]); it is withheld".into())
    );
}

#[test]
fn reasons_never_quote_result_values() {
    let out = rules(
        "max_bytes = 200\nschema = \"schemas/mean.json\"\nmin_count = { paths = [\"counts.*\"], k = 5 }",
    );
    for result in [
        &br#"{"n": 4242, "counts": [3131]}"#[..],
        br#"{"n": 4242, "counts": [1, 2]}"#,
        br#"{"n": 4242, "counts": "7777"}"#,
        br#"{"n": -4242, "counts": []}"#,
        br#"{"n": 4242, "counts": [{"k": 7777}]}"#,
    ] {
        if let Err(e) = out.check_result(result) {
            let text = e.to_string();
            for secret in ["4242", "3131", "7777", "\"1\"", " 1,", " 2"] {
                assert!(!text.contains(secret), "{text} quotes {secret}");
            }
        }
    }
}

#[test]
fn the_node_default_section_loads_and_combines() {
    let default = OutputRules::from_toml_str(
        "max_bytes = 1000\nrelease = \"manual\"\nmin_count = { paths = [\"n\"], k = 10 }\n",
        "node.toml",
        "default",
        files,
    )
    .unwrap();
    let rule = rules(
        "max_bytes = 5000\nschema = \"schemas/other.json\"\nmin_count = { paths = [\"counts.*\"], k = 5 }\nrelease = \"manual\"\ncheckers = 2\nfirst_run = \"approve\"",
    );
    let both = rule.stricter(&default);
    assert_eq!(both.max_bytes, Some(Sourced::new(1000, "default")));
    assert_eq!(both.schemas.len(), 1);
    let m = both.min_count.as_ref().unwrap();
    assert_eq!(m.k, 10);
    assert_eq!(m.paths.len(), 2);
    assert_eq!(both.release, Release::Manual { checkers: 2 });
    assert_eq!(both.first_run, FirstRun::Approve);
    let e = both
        .check_result(br#"{"mean": 1, "counts": [7]}"#)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "a count at `counts.*` is below k = 10 (min_count of allow[1] and default); it is withheld"
    );
    let e = OutputRules::from_toml_str("max_bytes = 0\n", "node.toml", "default", files)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("node.toml:1:13: `max_bytes`: 0 is out of range"),
        "{e}"
    );
}

#[test]
fn compiled_policies_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Policy>();
    send_sync::<OutputRules>();
}

// --- stricter as a property ---

fn schema_pool() -> Vec<Schema> {
    vec![
        Schema::compile("allow[1]", "a.json", serde_json::json!({"type": "object"})).unwrap(),
        Schema::compile("allow[2]", "b.json", serde_json::json!({"required": ["n"]})).unwrap(),
        Schema::compile("default", "c.json", serde_json::json!({"type": "array"})).unwrap(),
    ]
}

fn arb_names() -> impl Strategy<Value = BTreeSet<String>> {
    prop::collection::btree_set(
        prop::sample::select(vec!["allow[1]", "allow[2]", "default"]),
        1..3,
    )
    .prop_map(|s| s.into_iter().map(str::to_owned).collect())
}

fn arb_rules() -> impl Strategy<Value = OutputRules> {
    let max_bytes = prop::option::of(
        (1u64..2000, arb_names()).prop_map(|(value, rules)| Sourced { value, rules }),
    );
    let schemas = prop::collection::vec(0usize..3, 0..3);
    let min_count = prop::option::of(
        (
            prop::collection::btree_set(
                prop::sample::select(vec!["n", "counts.*", "a.*.b", "x.1"]),
                1..4,
            ),
            2u64..20,
            arb_names(),
        )
            .prop_map(|(paths, k, rules)| MinCount {
                paths: paths
                    .into_iter()
                    .map(|p| PathPattern::parse(p).unwrap())
                    .collect(),
                k,
                rules,
            }),
    );
    let release = prop_oneof![
        Just(Release::Automatic),
        (1u32..=10).prop_map(|checkers| Release::Manual { checkers })
    ];
    let first_run = prop_oneof![Just(FirstRun::Run), Just(FirstRun::Approve)];
    let logs = prop::option::of(
        (
            prop_oneof![Just(Logs::Withhold), Just(Logs::Release)],
            arb_names(),
        )
            .prop_map(|(value, rules)| Sourced { value, rules }),
    );
    (
        max_bytes,
        schemas,
        min_count,
        release,
        prop::option::of(0u32..100),
        prop::option::of(1u32..100),
        first_run,
        logs,
    )
        .prop_map(
            |(
                max_bytes,
                schemas,
                min_count,
                release,
                max_subtasks,
                runs_per_day,
                first_run,
                logs,
            )| {
                let pool = schema_pool();
                let mut schemas: Vec<Schema> =
                    schemas.into_iter().map(|i| pool[i].clone()).collect();
                schemas.sort_by(|a, b| (a.rule(), a.file()).cmp(&(b.rule(), b.file())));
                schemas.dedup();
                OutputRules {
                    max_bytes,
                    schemas,
                    min_count,
                    release,
                    max_subtasks,
                    runs_per_day,
                    first_run,
                    logs,
                }
            },
        )
}

/// Whether `a` is at least as strict as `b` on every key.
fn at_least_as_strict(a: &OutputRules, b: &OutputRules) -> bool {
    let le = |x: Option<u64>, y: Option<u64>| match (x, y) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(x), Some(y)) => x <= y,
    };
    let schemas = b.schemas.iter().all(|s| a.schemas.contains(s));
    let min_count = match (&a.min_count, &b.min_count) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(x), Some(y)) => x.k >= y.k && y.paths.is_subset(&x.paths),
    };
    le(
        a.max_bytes.as_ref().map(|m| m.value),
        b.max_bytes.as_ref().map(|m| m.value),
    ) && le(a.max_subtasks.map(u64::from), b.max_subtasks.map(u64::from))
        && le(a.runs_per_day.map(u64::from), b.runs_per_day.map(u64::from))
        && schemas
        && min_count
        && a.release.checkers() >= b.release.checkers()
        && a.first_run >= b.first_run
        // Logs released by the combination only when released by both sides that set the key.
        && (!a.releases_logs() || b.logs.is_none() || b.releases_logs())
        && (b.logs.is_none() || a.logs.is_some())
}

proptest! {
    #[test]
    fn stricter_is_commutative_and_never_looser(a in arb_rules(), b in arb_rules()) {
        let ab = a.stricter(&b);
        prop_assert_eq!(&ab, &b.stricter(&a));
        prop_assert!(at_least_as_strict(&ab, &a), "{ab:?} looser than {a:?}");
        prop_assert!(at_least_as_strict(&ab, &b), "{ab:?} looser than {b:?}");
        // Idempotent, and the unrestricted rules are its identity.
        prop_assert_eq!(&ab.stricter(&ab), &ab);
        prop_assert_eq!(&a.stricter(&OutputRules::default()), &a);
    }

    #[test]
    fn a_result_that_passes_the_stricter_passes_both(
        a in arb_rules(),
        b in arb_rules(),
        n in 0u64..30,
        counts in prop::collection::vec(0u64..30, 0..4),
    ) {
        let result = serde_json::json!({"n": n, "counts": counts, "a": [{"b": n}], "x": counts}).to_string();
        let ab = a.stricter(&b);
        if ab.check_result(result.as_bytes()).is_ok() {
            prop_assert!(a.check_result(result.as_bytes()).is_ok());
            prop_assert!(b.check_result(result.as_bytes()).is_ok());
        }
    }
}

#[test]
fn logs_are_withheld_unless_a_rule_releases_them_and_withhold_wins() {
    // Absent: withheld, and the reason says no rule releases them.
    let none = rules("");
    assert_eq!(none.logs, None);
    assert!(!none.releases_logs());
    assert!(
        none.logs_withheld_because()
            .unwrap()
            .contains("no rule sets logs = \"release\"")
    );
    let release = rules("logs = \"release\"");
    assert_eq!(release.logs, Some(Sourced::new(Logs::Release, "allow[1]")));
    assert!(release.releases_logs());
    assert_eq!(release.logs_withheld_because(), None);
    assert_eq!(release.to_string(), "release automatic; logs release");
    let withhold = rules("logs = \"withhold\"");
    assert!(!withhold.releases_logs());
    assert_eq!(withhold.to_string(), "release automatic; logs withhold");
    // The node's default section: its withhold overrides a rule's release, by name.
    let default_withhold =
        OutputRules::from_toml_str("logs = \"withhold\"\n", "node.toml", "default", files).unwrap();
    let both = release.stricter(&default_withhold);
    assert!(!both.releases_logs());
    assert_eq!(
        both.logs_withheld_because().unwrap(),
        "logs = \"withhold\" of default; the logs stay at the node"
    );
    assert_eq!(both, default_withhold.stricter(&release));
    // A default that says nothing leaves the rule's release; both releasing name both.
    assert!(release.stricter(&OutputRules::default()).releases_logs());
    let default_release =
        OutputRules::from_toml_str("logs = \"release\"\n", "node.toml", "default", files).unwrap();
    let both = release.stricter(&default_release);
    assert!(both.releases_logs());
    assert_eq!(
        both.logs.unwrap().rules,
        BTreeSet::from(["allow[1]".to_owned(), "default".to_owned()])
    );
    // Two withholds name both.
    let both = withhold.stricter(&default_withhold);
    assert!(
        both.logs_withheld_because()
            .unwrap()
            .contains("of allow[1] and default")
    );
    // Refused in the default section with its file and line too.
    let e = OutputRules::from_toml_str("\nlogs = \"all\"\n", "node.toml", "default", files)
        .unwrap_err()
        .to_string();
    assert!(e.contains("node.toml:2"), "{e}");
    assert!(e.contains("logs `all` is not known"), "{e}");
}
