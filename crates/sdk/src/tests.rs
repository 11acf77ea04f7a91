use serde::Deserialize;
use serde_json::json;

use super::*;
use crate::testing::{Server, json_answer};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddArgs {
    a: i64,
    b: i64,
}

fn add(_: &Context, args: AddArgs) -> Result<Output, BoxError> {
    Ok(json!({"sum": args.a + args.b}).into())
}

fn fail(_: &Context, _: serde_json::Value) -> Result<Output, BoxError> {
    Err("the data has no column `age`".into())
}

fn algorithm() -> Algorithm {
    Algorithm::new()
        .function("add", add)
        .function("fail", fail)
        .function("raw", |_, _: serde_json::Value| Ok(b"\x00raw".to_vec()))
        .function("nothing", |_, _: serde_json::Value| Ok(()))
        .function("orgs", |ctx, _: serde_json::Value| {
            let orgs = ctx.proxy()?.organizations()?;
            Ok(Output::json(&orgs)?)
        })
}

/// A context whose input holds `input` and whose output goes to a temporary directory.
fn sandbox(input: &str) -> (tempfile::TempDir, Context) {
    let dir = tempfile::tempdir().unwrap();
    for d in ["input", "data", "output"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    std::fs::write(dir.path().join("input/input"), input).unwrap();
    let env = Environment {
        input_dir: dir.path().join("input"),
        data_dir: dir.path().join("data"),
        output: dir.path().join("output/output"),
        ..Environment::default()
    };
    (dir, Context::new(env))
}

fn output_of(ctx: &Context) -> Option<Vec<u8>> {
    std::fs::read(&ctx.env().output).ok()
}

#[test]
fn the_named_function_runs_with_typed_args_and_its_output_is_written() {
    let (_dir, ctx) = sandbox(r#"{"function": "add", "args": {"a": 2, "b": 40}}"#);
    algorithm().run_in(&ctx).unwrap();
    assert_eq!(output_of(&ctx).unwrap(), br#"{"sum":42}"#);

    let (_dir, ctx) = sandbox(r#"{"function": "raw"}"#);
    algorithm().run_in(&ctx).unwrap();
    assert_eq!(output_of(&ctx).unwrap(), b"\x00raw");

    let (_dir, ctx) = sandbox(r#"{"function": "nothing"}"#);
    algorithm().run_in(&ctx).unwrap();
    assert_eq!(output_of(&ctx), None);
}

#[test]
fn dispatch_failures_say_what_to_fix_and_write_no_output() {
    let cases = [
        (
            r#"{"function": "mean"}"#,
            r#"unknown function "mean": this algorithm offers add, fail, nothing, orgs, raw; fix the task's input"#,
        ),
        (
            r#"{"function": "add", "args": {"a": 1}}"#,
            "invalid arguments for add: missing field `b`",
        ),
        (
            r#"{"function": "add", "args": {"a": 1, "b": 2, "c": 3}}"#,
            "invalid arguments for add: unknown field `c`",
        ),
        (
            r#"{"function": "add"}"#,
            "invalid arguments for add: invalid type: null",
        ),
        (
            r#"{"function": "fail"}"#,
            "fail failed: the data has no column `age`",
        ),
        (r#"{"function": "orgs"}"#, "WARDEN_TOKEN is not set"),
        ("{}", "missing field `function`"),
    ];
    for (input, needle) in cases {
        let (_dir, ctx) = sandbox(input);
        let e = algorithm().run_in(&ctx).unwrap_err();
        let text = report(&e);
        assert!(text.contains(needle), "{input}: {text:?} lacks {needle:?}");
        assert_eq!(output_of(&ctx), None, "{input}");
    }
    let (_dir, ctx) = sandbox(r#"{"function": "x"}"#);
    let e = Algorithm::new().run_in(&ctx).unwrap_err();
    assert!(e.to_string().contains("offers no functions"), "{e}");
}

#[test]
fn functions_reach_the_proxy_through_the_context() {
    let server = Server::raw(
        1,
        json_answer(200, r#"{"organizations": [{"id": 5, "name": "clinic"}]}"#),
    );
    let (_dir, ctx) = sandbox(r#"{"function": "orgs"}"#);
    let mut env = ctx.env().clone();
    env.proxy_socket = server.path().to_path_buf();
    env.token = Some("tkn".into());
    let ctx = Context::new(env);
    algorithm().run_in(&ctx).unwrap();
    assert_eq!(output_of(&ctx).unwrap(), br#"[{"id":5,"name":"clinic"}]"#);
    let seen = server.finish();
    assert_eq!(seen[0].header("authorization"), Some("Bearer tkn"));
}

#[test]
fn a_proxy_refusal_fails_the_function_with_the_proxy_message() {
    let server = Server::raw(
        1,
        json_answer(
            403,
            r#"{"error": {"code": "forbidden", "message": "token expired"}}"#,
        ),
    );
    let (_dir, ctx) = sandbox(r#"{"function": "orgs"}"#);
    let ctx = ctx.with_proxy(Proxy::new(server.path(), "tkn").unwrap());
    let e = algorithm().run_in(&ctx).unwrap_err();
    server.finish();
    assert_eq!(
        report(&e),
        "orgs failed: the proxy refused GET /v1/organizations with status 403 (forbidden): token expired"
    );
}

#[test]
fn run_with_hands_the_whole_input_to_one_closure() {
    let (_dir, ctx) = sandbox(r#"{"function": "echo", "args": [1, "two"]}"#);
    run_with(&ctx, |_, input| {
        Ok(json!({"function": input.function, "args": input.args}).into())
    })
    .unwrap();
    assert_eq!(
        output_of(&ctx).unwrap(),
        br#"{"args":[1,"two"],"function":"echo"}"#
    );
    let (_dir, ctx) = sandbox(r#"{"function": "echo"}"#);
    let e = run_with(&ctx, |_, _| Err("nope".into())).unwrap_err();
    assert_eq!(report(&e), "echo failed: nope");
}

#[test]
fn report_appends_causes_the_message_lacks() {
    let io = std::io::Error::other("disk on fire");
    let e = EnvError::WriteOutput {
        path: "/mnt/output/output".into(),
        source: io,
    };
    // The message already contains its source: printed once.
    assert_eq!(report(&e).matches("disk on fire").count(), 1);
}
