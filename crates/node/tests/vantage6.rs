//! The vantage6 4.x contract through a real node (issue 13, docs/vantage6.md): a run admitted
//! by a rule with `contract = "vantage6"` finds vantage6's files and environment (encoded as a
//! 4.x node encodes them), only the databases it asked for, a token the proxy accepts (and
//! nothing else), and its output file is its result, sealed as any. An input the contract
//! cannot express, or a database the node does not have, fails the run before any container.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use common::{World, containers};
use serde_json::{Value, json};
use warden_api::RunState;

const WAIT: Duration = Duration::from_secs(120);
const RECORDS: &str = "id,age\n1,30\n2,50\n";

fn lines(output: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(output)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vantage6_run_sees_the_4x_environment_and_its_output_is_the_result() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("v6_env", "v6env", "v6");
    w.sign(&repo, &digest).await;
    let policy = format!("{}contract = \"vantage6\"\n", w.signed_policy(&repo));
    let dir = w.dir.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("records.csv"), RECORDS).unwrap();
    std::fs::write(dir.join("other.csv"), "secret\n").unwrap();
    let extra = format!(
        "\n[data]\nrecords = \"{}\"\nother = \"{}\"\n",
        dir.join("records.csv").display(),
        dir.join("other.csv").display()
    );
    let config = w.node_config(&w.a, &policy, &extra);
    let shim = warden_testkit::build_static_binary("warden-v6shim", "warden-v6-shim").unwrap();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "probe = \"probe\"\n",
        &format!(
            "probe = \"probe\"\nvantage6_shim = \"{}\"\n",
            shim.display()
        ),
    );
    std::fs::write(&config, text).unwrap();
    let node = w.start_node(&config).await;
    let image = format!("{repo}:v6");
    // The ports of the server and the registry on the host, for the program to try.
    let port = |url: &str| -> u16 {
        url.rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches('/')
            .parse()
            .unwrap()
    };
    let (server_port, registry_port) = (port(&w.base), port(&w.registry.host()));

    let task = w
        .create_task(
            &image,
            &json!({"function": "partial", "args": {"args": [server_port, registry_port], "kwargs": {"column": "age"}, "databases": ["records"]}}),
            &[&w.a],
        )
        .await;
    let run = w.wait_final(task.runs[0].id, WAIT).await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.reason);
    let out = lines(&w.result(run.id).await);
    let want = [
        ("INPUT_FILE", "/mnt/input/input"),
        ("OUTPUT_FILE", "/mnt/output/output"),
        ("TOKEN_FILE", "/mnt/input/token"),
        ("TEMPORARY_FOLDER", "/tmp"),
        ("HOST", "http://127.0.0.1"),
        ("PORT", "7601"),
        ("API_PATH", "/api"),
        ("USER_REQUESTED_DATABASE_LABELS", "records"),
        ("RECORDS_DATABASE_URI", "/mnt/data/records"),
        ("RECORDS_DATABASE_TYPE", "csv"),
        // Not requested: neither named nor mounted.
        ("OTHER_DATABASE_URI", "(unset)"),
        ("other_mounted", "0"),
        // Warden's own token is not given under this contract.
        ("WARDEN_TOKEN", "(unset)"),
        // (less its final newline, which the program trims)
        ("data_bytes", &RECORDS.trim_end().len().to_string()),
        // The token file's content is the proxy's token of this run; nothing else is.
        ("proxy_with_token", "200"),
        ("proxy_with_other", "401"),
        // Through the shim on 127.0.0.1:7601 in the run's namespace: the vantage6 subset only.
        ("shim_organizations", "200"),
        ("shim_without_token", "401"),
        ("shim_warden_path", "404"),
        ("shim_delete", "405"),
        // And nothing else: only `lo`; the host's server and registry ports are not on this
        // loopback; no gateway, no outside, no DNS.
        ("interfaces", "1 only_lo=1"),
        ("loopback_server", "refused"),
        ("loopback_registry", "refused"),
        ("gateway_server", "unreachable"),
        ("outside", "unreachable"),
        ("dns", "unreachable dns_docker=refused"),
    ];
    for (k, v) in want {
        assert_eq!(out.get(k).map(String::as_str), Some(v), "{k}: {out:?}");
    }
    // The vantage6 server-API subset, translated and checked by the node's proxy.
    let status = |k: &str| out[k].split(' ').next().unwrap().to_owned();
    assert_eq!(status("v6_organizations"), "200", "{out:?}");
    assert!(
        out["v6_organizations"].contains(&format!("\"id\":{}", w.a.id))
            && out["v6_organizations"].contains(&format!("\"id\":{}", w.b.id))
            && out["v6_organizations"].contains("\"links\":{}"),
        "{out:?}"
    );
    assert_eq!(out["v6_other_collaboration"], "403", "{out:?}");
    assert_eq!(status("v6_blobstream"), "200");
    assert!(out["v6_blobstream"].contains("\"blob_store_enabled\":false"));
    assert_eq!(status("v6_task_other_image"), "400", "{out:?}");
    assert!(
        out["v6_task_other_image"].contains("runs the admitted image")
            && out["v6_task_other_image"].contains("\"msg\""),
        "{out:?}"
    );
    assert_eq!(out["v6_result_not_mine"], "403", "{out:?}");
    assert_eq!(out["v6_unknown_path"], "404", "{out:?}");
    assert_eq!(out["v6_without_token"], "401", "{out:?}");
    let input: Value = serde_json::from_str(&out["input"]).unwrap();
    assert_eq!(
        input,
        json!({"method": "partial", "args": [server_port, registry_port], "kwargs": {"column": "age"}})
    );
    assert!(
        out["shim_user"].starts_with("404") && out["shim_user"].contains("warden-v6-shim"),
        "the shim itself refuses other paths: {out:?}"
    );
    // The token is a JWT the tools can read their claims from.
    let parts: Vec<&str> = out["token"].split('.').collect();
    assert_eq!(parts.len(), 3, "{}", out["token"]);
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"]["organization_id"], w.a.id, "{claims}");
    assert_eq!(claims["sub"]["task_id"], task.task.id, "{claims}");
    assert_eq!(claims["sub"]["collaboration_id"], w.collab, "{claims}");
    assert_eq!(
        claims["sub"]["image"],
        format!("{repo}@{digest}"),
        "{claims}"
    );
    assert_eq!(claims["sub"]["databases"][0]["label"], "records");

    // Without `databases`, every data source of the node is requested, by name.
    let task = w
        .create_task(
            &image,
            &json!({"function": "partial", "args": null}),
            &[&w.a],
        )
        .await;
    let run = w.wait_final(task.runs[0].id, WAIT).await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.reason);
    let out = lines(&w.result(run.id).await);
    assert_eq!(out["USER_REQUESTED_DATABASE_LABELS"], "other,records");
    assert_eq!(out["OTHER_DATABASE_URI"], "/mnt/data/other");
    assert_eq!(out["other_mounted"], "1");

    // What the contract cannot express fails the run before any container, saying why.
    for (args, says) in [
        (json!({"column": "age"}), "unknown key \"column\""),
        (json!([1, 2]), "\"args\" is not an object"),
        (
            json!({"databases": ["default"]}),
            "asks for the database \"default\", which this node does not have",
        ),
        (
            json!({"databases": [{"label": "records", "query": "SELECT 1"}]}),
            "does not apply \"query\"",
        ),
    ] {
        let task = w
            .create_task(
                &image,
                &json!({"function": "partial", "args": args}),
                &[&w.a],
            )
            .await;
        let run = w.wait_final(task.runs[0].id, WAIT).await;
        assert_eq!(run.state, RunState::Failed, "{args}");
        let reason = run.reason.unwrap_or_default();
        assert!(
            reason.contains("allow[1] runs the image with contract = \"vantage6\"")
                && reason.contains(says),
            "{args}: {reason}"
        );
    }
    assert!(
        containers(&node.label).is_empty(),
        "the shims go with their runs"
    );

    // A node without a shim runs no vantage6 image: the run fails before any container.
    let config_b = w.node_config(&w.b, &policy, "");
    let node_b = w.start_node(&config_b).await;
    let task = w
        .create_task(
            &image,
            &json!({"function": "partial", "args": null}),
            &[&w.b],
        )
        .await;
    let run = w.wait_final(task.runs[0].id, WAIT).await;
    assert_eq!(run.state, RunState::Failed);
    let reason = run.reason.unwrap_or_default();
    assert!(
        reason.contains("has no vantage6 shim ([node] vantage6_shim)"),
        "{reason}"
    );
    assert!(containers(&node_b.label).is_empty());
}
