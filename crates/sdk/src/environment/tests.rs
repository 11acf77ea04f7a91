use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use super::*;

fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
    let map: HashMap<String, OsString> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    move |name| map.get(name).cloned()
}

/// An environment whose input, data and output live in a temporary directory.
fn sandbox() -> (tempfile::TempDir, Environment) {
    let dir = tempfile::tempdir().unwrap();
    for d in ["input", "data", "output"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    let env = Environment {
        input_dir: dir.path().join("input"),
        data_dir: dir.path().join("data"),
        output: dir.path().join("output").join("output"),
        ..Environment::default()
    };
    (dir, env)
}

#[track_caller]
fn check_input(text: &str, expect: Result<(&str, serde_json::Value), &str>) {
    let (_dir, env) = sandbox();
    std::fs::write(env.input_path(), text).unwrap();
    match (env.read_input(), expect) {
        (Ok(input), Ok((function, args))) => {
            assert_eq!((input.function.as_str(), &input.args), (function, &args))
        }
        (Err(e), Err(needle)) => assert!(e.to_string().contains(needle), "{e} lacks {needle:?}"),
        (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn the_contract_paths_are_the_defaults() {
    let env = Environment::from_lookup(lookup(&[])).unwrap();
    assert_eq!(env, Environment::default());
    assert_eq!(env.input_path(), Path::new("/mnt/input/input"));
    assert_eq!(env.output, Path::new("/mnt/output/output"));
    assert_eq!(env.proxy_socket, Path::new("/mnt/proxy/proxy.sock"));
    assert_eq!(env.token, None);
}

#[test]
fn variables_set_paths_token_and_ids() {
    let env = Environment::from_lookup(lookup(&[
        ("WARDEN_INPUT_DIR", "/in"),
        ("WARDEN_DATA_DIR", "/data"),
        ("WARDEN_OUTPUT", "/out/o"),
        ("WARDEN_PROXY_SOCKET", "/p.sock"),
        ("WARDEN_TOKEN", "tok"),
        ("WARDEN_RUN_ID", "7"),
        ("WARDEN_TASK_ID", "8"),
        ("WARDEN_ORGANIZATION_ID", "9"),
        ("WARDEN_COLLABORATION_ID", "10"),
    ]))
    .unwrap();
    assert_eq!(env.input_path(), Path::new("/in/input"));
    assert_eq!(env.data_dir, Path::new("/data"));
    assert_eq!(env.output, Path::new("/out/o"));
    assert_eq!(env.proxy_socket, Path::new("/p.sock"));
    assert_eq!(env.token.as_deref(), Some("tok"));
    assert_eq!(
        (
            env.run_id,
            env.task_id,
            env.organization_id,
            env.collaboration_id
        ),
        (Some(7), Some(8), Some(9), Some(10))
    );
    // The token never shows in debug output.
    assert!(!format!("{env:?}").contains("tok\""), "{env:?}");
}

#[test]
fn bad_ids_and_non_unicode_values_are_errors() {
    for bad in ["-1", "1.5", "x", "99999999999999999999", " 1"] {
        let e = Environment::from_lookup(lookup(&[("WARDEN_RUN_ID", bad)])).unwrap_err();
        assert!(
            matches!(
                e,
                EnvError::BadId {
                    name: "WARDEN_RUN_ID",
                    ..
                }
            ),
            "{bad}: {e:?}"
        );
    }
    let e = Environment::from_lookup(|name| {
        (name == "WARDEN_TOKEN").then(|| OsString::from_vec(vec![0xff, 0xfe]))
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            EnvError::NotUnicode {
                name: "WARDEN_TOKEN"
            }
        ),
        "{e:?}"
    );
}

#[test]
fn input_files_are_parsed_strictly() {
    check_input(
        r#"{"function": "partial_mean", "args": {"column": "age"}}"#,
        Ok(("partial_mean", serde_json::json!({"column": "age"}))),
    );
    check_input(
        r#"{"function": "count"}"#,
        Ok(("count", serde_json::Value::Null)),
    );
    check_input(
        r#"{"function": "f", "args": [1, 2]}"#,
        Ok(("f", serde_json::json!([1, 2]))),
    );
    check_input("", Err("is not valid"));
    check_input("not json", Err("is not valid"));
    check_input(r#"{"args": {}}"#, Err("missing field `function`"));
    check_input(r#"{"function": 3}"#, Err("invalid type"));
    check_input(
        r#"{"function": "f", "arg": {}}"#,
        Err("unknown field `arg`"),
    );
    check_input(r#"{"function": ""}"#, Err("empty function"));
    check_input(r#"{"function": "f"} trailing"#, Err("trailing characters"));
    check_input("\u{feff}{\"function\": \"f\"}", Err("is not valid"));
}

#[test]
fn a_missing_input_file_names_its_path() {
    let (_dir, env) = sandbox();
    let e = env.read_input().unwrap_err();
    assert!(matches!(e, EnvError::ReadInput { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains(&env.input_path().display().to_string()),
        "{e}"
    );
}

#[test]
fn data_paths_exist_and_cannot_escape_the_data_directory() {
    let (_dir, env) = sandbox();
    std::fs::write(env.data_dir.join("records"), "a\n1\n").unwrap();
    std::fs::create_dir(env.data_dir.join("images")).unwrap();
    assert_eq!(
        env.data_path("records").unwrap(),
        env.data_dir.join("records")
    );
    assert_eq!(
        env.data_path("images").unwrap(),
        env.data_dir.join("images")
    );
    for bad in ["", ".", "..", "../etc", "a/b", "/etc/passwd", "x\0y"] {
        let e = env.data_path(bad).unwrap_err();
        assert!(matches!(e, EnvError::BadDataName(_)), "{bad:?}: {e:?}");
    }
    let e = env.data_path("missing").unwrap_err();
    assert!(
        e.to_string().contains("this node offers: images, records"),
        "{e}"
    );
    let (_dir2, empty) = sandbox();
    let e = empty.data_path("records").unwrap_err();
    assert!(e.to_string().ends_with("this node offers: none"), "{e}");
}

#[test]
fn output_is_written_atomically_and_replaced_whole() {
    let (_dir, env) = sandbox();
    env.write_output(b"first, longer content").unwrap();
    env.write_json(&serde_json::json!({"mean": 1.5})).unwrap();
    assert_eq!(std::fs::read(&env.output).unwrap(), br#"{"mean":1.5}"#);
    // No temporary file is left next to it.
    let names: Vec<_> = std::fs::read_dir(env.output.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["output"]);
}

#[test]
fn an_unwritable_output_is_an_error_naming_the_path() {
    let (dir, mut env) = sandbox();
    env.output = dir.path().join("no-such-dir").join("output");
    let e = env.write_output(b"x").unwrap_err();
    assert!(matches!(e, EnvError::WriteOutput { .. }), "{e:?}");
    assert!(e.to_string().contains("no-such-dir"), "{e}");
}
