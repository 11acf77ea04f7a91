//! The OpenAPI document against the running server, checked by an independent tool:
//! schemathesis (installed by scripts/prereqs.sh) generates requests from the document, sends
//! them to a real server (SQLite, or PostgreSQL when `WARDEN_TEST_DATABASE_URL` names one) and
//! checks every answer against the document with all of its checks. Any failure fails the
//! test, and so does a missing schemathesis or another version than the pinned one.

// Test helpers outside #[test] functions: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod kit;

use std::path::Path;
use std::process::Command;

use kit::{Kit, World};

/// Test cases per operation and phase: enough to reach every documented constraint, bounded
/// so that the whole run stays within a couple of minutes on two cores.
const MAX_EXAMPLES: &str = "100";
/// The version scripts/prereqs.sh installs: another one generates other requests.
const VERSION: &str = "4.32.5";

/// Runs schemathesis against `kit` with `token` as the bearer credential on the operations
/// `include` selects (a regex over paths; empty: all) minus those `exclude` names.
fn schemathesis(
    document: &str,
    report: &Path,
    token: &str,
    include: &str,
    exclude: &str,
) -> (bool, String) {
    let mut cmd = Command::new("schemathesis");
    // Its own files (a `.schemathesis` directory) go beside the report, not into the tree.
    cmd.current_dir(report.parent().unwrap_or(report))
        .arg("run")
        .arg(document)
        .args(["--checks", "all"])
        .args(["--max-examples", MAX_EXAMPLES])
        // The same requests on every run (schemathesis then uses no random seed).
        .arg("--generation-deterministic")
        .args(["--workers", "1"])
        .args(["--suppress-health-check", "all"])
        .arg("--no-color")
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .arg("--report-dir")
        .arg(report);
    if !include.is_empty() {
        cmd.args(["--include-path-regex", include]);
    }
    if !exclude.is_empty() {
        cmd.args(["--exclude-path-regex", exclude]);
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run schemathesis ({e}); install it with scripts/prereqs.sh (pip)")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// schemathesis is installed, in the pinned version: otherwise the test fails saying so.
fn check_installed() {
    let out = Command::new("schemathesis")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run schemathesis ({e}); install it with scripts/prereqs.sh (pip install 'schemathesis=={VERSION}')"
            )
        });
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.trim().ends_with(&format!("version {VERSION}")),
        "schemathesis {VERSION} is needed (scripts/prereqs.sh installs it), found: {version}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure_with_all_checks() {
    check_installed();
    let kit = Kit::start().await;
    // Something to find: organizations, collaborations, users, nodes, a task and its runs.
    let world = World::build(&kit).await;
    kit.task(&world.researcher1, world.c12, &[world.org1, world.org2])
        .await;
    let document = kit.url("/api/openapi.json");
    let dir = kit.dir.path().to_owned();
    // A session of its own for logging out, which revokes it.
    let leaving = kit.login("res1", kit::PASSWORD).await;
    let runs = [
        // Everything but logging out, as root.
        ("root", kit.admin.clone(), "", "^/api/auth/logout$"),
        // What only a node may do (its runs, events, relayed checkpoints), as a node.
        (
            "node",
            world.node1.clone(),
            "^/api/(runs|events|store-checkpoints)",
            "",
        ),
        ("logout", leaving, "^/api/auth/logout$", ""),
    ];
    let mut failed = Vec::new();
    for (name, token, include, exclude) in runs {
        let (document, report) = (document.clone(), dir.join(format!("report-{name}")));
        let (ok, text) = tokio::task::spawn_blocking(move || {
            schemathesis(&document, &report, &token, include, exclude)
        })
        .await
        .unwrap();
        if !ok {
            failed.push(format!("---- as {name} ----\n{text}"));
        }
    }
    assert!(
        failed.is_empty(),
        "schemathesis reported failures:\n{}",
        failed.join("\n")
    );
    kit.stop().await;
}
