//! `warden node init` with the real binary: the directory it writes (modes, fingerprints that
//! `warden keys fingerprint` agrees with, a policy `warden policy lint` accepts, a
//! configuration the node's loader reads), its refusals, and a real `warden node start` on it
//! (the real server, the Docker engine for the isolation self-check) that `warden node status`
//! reports healthy.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod researcher;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use researcher::{Out, World, warden_in};
use serde_json::Value;

async fn warden(cwd: &Path, args: &[&str]) -> Out {
    warden_in(cwd, args, &[]).await
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_init_writes_keys_policy_and_a_configuration_that_load() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hospital-b");
    let d = dir.to_str().unwrap();
    let out = warden(
        tmp.path(),
        &["node", "init", "--org", "hospital-b", "--dir", d, "--json"],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    let v = out.json();
    assert_eq!(v["organization"], "hospital-b", "{v}");
    assert_eq!(mode(&dir), 0o700);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "audit.key",
            "audit.pub",
            "audit.pw",
            "certify.key",
            "certify.pub",
            "certify.pw",
            "node.toml",
            "org.key",
            "org.key.pub",
            "policy.toml"
        ]
    );
    for n in &names {
        assert_eq!(mode(&dir.join(n)), 0o600, "{n}");
    }

    // The printed fingerprints are the files' own, as `warden keys` reads them.
    let fp = warden(
        tmp.path(),
        &["keys", "fingerprint", &format!("{d}/org.key.pub")],
    )
    .await;
    assert_eq!(fp.code, 0, "{fp}");
    assert_eq!(
        fp.json()["fingerprint"],
        v["encryption_key"]["fingerprint"],
        "{v}"
    );
    let cert = warden(
        tmp.path(),
        &["keys", "fingerprint", &format!("{d}/certify.pub")],
    )
    .await;
    assert_eq!(
        cert.json()["key_id"],
        v["certification_key"]["key_id"],
        "{v}"
    );
    assert_eq!(v["certification_key"]["algorithm"], "ed25519", "{v}");
    // The audit key opens with the password written beside it.
    let audit = warden(
        tmp.path(),
        &[
            "keys",
            "fingerprint",
            &format!("{d}/audit.key"),
            "--password-file",
            &format!("{d}/audit.pw"),
        ],
    )
    .await;
    assert_eq!(audit.code, 0, "{audit}");
    assert_eq!(audit.json()["key_id"], v["audit_key"]["key_id"], "{v}");
    assert_eq!(
        v["pins"]["organizations"],
        format!(
            "hospital-b = \"{}\"",
            v["encryption_key"]["fingerprint"].as_str().unwrap()
        )
        .as_str()
    );

    // A deny-all policy that lints.
    let lint = warden(tmp.path(), &["policy", "lint", &format!("{d}/policy.toml")]).await;
    assert_eq!(lint.code, 0, "{lint}");
    assert!(
        lint.stdout.contains("0 allow rules, 0 deny rules")
            && lint.stdout.contains("denies everything"),
        "{lint}"
    );
    // The configuration loads: its local socket is found from it (no node runs there).
    let status = warden(
        tmp.path(),
        &["node", "status", "--config", &format!("{d}/node.toml")],
    )
    .await;
    assert_eq!(status.code, 1, "{status}");
    assert!(
        status.stderr.contains(&format!(
            "cannot reach the node's local socket {d}/spool/local.sock"
        )),
        "{status}"
    );

    // Run again: refused, nothing changed.
    let key_before = std::fs::read(dir.join("org.key")).unwrap();
    let again = warden(
        tmp.path(),
        &["node", "init", "--org", "hospital-b", "--dir", d],
    )
    .await;
    assert_eq!(again.code, 2, "{again}");
    assert!(again.stderr.contains("refusing to overwrite"), "{again}");
    assert_eq!(std::fs::read(dir.join("org.key")).unwrap(), key_before);

    // One file in the way: refused before anything is written.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("policy.toml"), "mine").unwrap();
    let o = other.to_str().unwrap();
    let blocked = warden(tmp.path(), &["node", "init", "--org", "x", "--dir", o]).await;
    assert_eq!(blocked.code, 2, "{blocked}");
    assert!(blocked.stderr.contains("policy.toml"), "{blocked}");
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1);
    assert_eq!(std::fs::read(other.join("policy.toml")).unwrap(), b"mine");

    // Bad input.
    let bad = warden(
        tmp.path(),
        &["node", "init", "--org", "a b", "--dir", &format!("{o}/x")],
    )
    .await;
    assert_eq!(bad.code, 2, "{bad}");
    assert!(bad.stderr.contains("not an organization name"), "{bad}");
    let bad = warden(
        tmp.path(),
        &[
            "node",
            "init",
            "--org",
            "a",
            "--dir",
            &format!("{o}/y"),
            "--server",
            "ftp://x",
        ],
    )
    .await;
    assert_eq!(bad.code, 2, "{bad}");
    assert!(
        bad.stderr.contains("not an http:// or https:// URL"),
        "{bad}"
    );
    assert!(!other.join("x").exists() && !other.join("y").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_on_an_initialised_directory_reports_healthy() {
    let w = World::with_registry().await;
    let dir = w.dir.path().join("init-b");
    let d = dir.to_str().unwrap();
    let out = warden(
        w.dir.path(),
        &[
            "node",
            "init",
            "--org",
            "hospital-b",
            "--dir",
            d,
            "--server",
            &w.base,
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout
            .contains("[organizations] hospital-b = \"sha256:"),
        "{out}"
    );
    // What the data owner adds: the API key from the operator. No probe: the node runs the one
    // built into it.
    std::fs::write(dir.join("node.key"), format!("{}\n", w.b.api_key)).unwrap();
    let label = format!("cliinit{}", std::process::id());
    let config = std::fs::read_to_string(dir.join("node.toml")).unwrap();
    assert!(!config.contains("\nprobe ="), "{config}");
    let config = config.replace(
        "spool_dir = \"spool\"",
        &format!("spool_dir = \"spool\"\nname = \"{label}\""),
    );
    std::fs::write(dir.join("node.toml"), config).unwrap();
    let log = dir.join("node.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = std::process::Command::new(researcher::BIN)
        .args(["node", "start", "--config", &format!("{d}/node.toml")])
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let _node = researcher::Proc { child, log, label };

    let deadline = Instant::now() + Duration::from_secs(120);
    let socket = format!("{d}/spool/local.sock");
    let v: Value = loop {
        let st = warden(
            w.dir.path(),
            &["node", "status", "--socket", &socket, "--json"],
        )
        .await;
        if st.code == 0 {
            break st.json();
        }
        assert!(
            Instant::now() < deadline,
            "the node never reported healthy: {st}\n{}",
            std::fs::read_to_string(dir.join("node.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(v["healthy"], true, "{v}");
    assert_eq!(v["node"]["organization"], "hospital-b", "{v}");
    assert_eq!(v["policy"]["allow_rules"], 0, "{v}");
    assert_eq!(v["audit"]["writable"], true, "{v}");
    assert_eq!(v["self_check"]["passed"], true, "{v}");
    let probe = v["self_check"]["probe"].as_str().unwrap();
    assert!(probe.starts_with("built-in (sha256:"), "{v}");
    let log = without_ansi(&std::fs::read_to_string(dir.join("node.log")).unwrap());
    assert!(log.contains("isolation self-check passed"), "{log}");
    // The probe's run is logged as completed, not as a failed run.
    let probe_run = log
        .lines()
        .find(|l| l.contains("run=isolation-probe") && l.contains("run finished"))
        .unwrap_or_else(|| panic!("no line of the probe's run: {log}"));
    assert!(probe_run.contains("outcome=completed"), "{probe_run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_create_config_out_writes_a_configuration_a_real_node_starts_with() {
    let w = World::with_registry().await;
    let cwd = w.dir.path();
    let xdg = cwd.join("xdg");
    let x = xdg.to_str().unwrap();
    let login = run(
        cwd,
        x,
        &[
            "login",
            "--server",
            &w.base,
            "--username",
            "admin",
            "--password-file",
            "admin.pw",
            "--profile",
            "admin",
        ],
    )
    .await;
    assert_eq!(login.code, 0, "{login}");
    // A third organization joins the collaboration; its data owner made its key.
    let key = run(
        cwd,
        x,
        &["keys", "generate", "--kind", "x25519", "--out", "org-c.key"],
    )
    .await;
    assert_eq!(key.code, 0, "{key}");
    let org = run(
        cwd,
        x,
        &[
            "org",
            "create",
            "--name",
            "hospital-c",
            "--public-key",
            "org-c.key.pub",
            "--profile",
            "admin",
            "--json",
        ],
    )
    .await;
    assert_eq!(org.code, 0, "{org}");
    let collab = w.collab.to_string();
    let add = run(
        cwd,
        x,
        &[
            "collab",
            "add-org",
            &collab,
            "hospital-c",
            "--profile",
            "admin",
        ],
    )
    .await;
    assert_eq!(add.code, 0, "{add}");

    let dir = cwd.join("node-c");
    let d = dir.to_str().unwrap();
    let args = [
        "node",
        "create",
        "--org",
        "hospital-c",
        "--collab",
        &collab,
        "--config-out",
        d,
        "--profile",
        "admin",
    ];
    let out = run(cwd, x, &args).await;
    assert_eq!(out.code, 0, "{out}");
    let api_key = std::fs::read_to_string(dir.join("node.key")).unwrap();
    assert!(api_key.starts_with("wdn_"), "{api_key}");
    assert!(
        !out.stdout.contains(api_key.trim()),
        "the key is printed: {out}"
    );
    assert_eq!(mode(&dir), 0o700);
    for f in ["node.key", "node.toml", "policy.toml"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    // Every member of the collaboration pinned, with the fingerprint `warden keys` gives.
    let config = std::fs::read_to_string(dir.join("node.toml")).unwrap();
    assert!(
        config.contains(&format!("url = \"{}\"", w.base)),
        "{config}"
    );
    for (name, pubkey) in [("hospital-c", "org-c.key.pub")] {
        let fp = run(cwd, x, &["keys", "fingerprint", pubkey]).await;
        let fp: Value = fp.json();
        let line = format!("{name} = \"{}\"", fp["fingerprint"].as_str().unwrap());
        assert!(config.contains(&line), "{line}\n{config}");
    }
    for o in [&w.a, &w.b] {
        let line = format!("{} = \"{}\"", o.name, o.secret.public_key().fingerprint());
        assert!(config.contains(&line), "{line}\n{config}");
    }
    let lint = run(cwd, x, &["policy", "lint", &format!("{d}/policy.toml")]).await;
    assert_eq!(lint.code, 0, "{lint}");
    // A second run refuses to overwrite anything and creates no node.
    let again = run(cwd, x, &args).await;
    again_fails(&again, "refusing to overwrite");

    // What the data owner adds: its secret key and an audit key.
    std::fs::copy(cwd.join("org-c.key"), dir.join("org.key")).unwrap();
    std::fs::write(dir.join("audit.pw"), "audit password\n").unwrap();
    let audit = run(
        cwd,
        x,
        &[
            "keys",
            "generate",
            "--kind",
            "ecdsa-p256",
            "--out",
            &format!("{d}/audit"),
            "--password-file",
            &format!("{d}/audit.pw"),
        ],
    )
    .await;
    assert_eq!(audit.code, 0, "{audit}");
    let label = format!("cliconfigout{}", std::process::id());
    let config = config.replace(
        "spool_dir = \"spool\"",
        &format!("spool_dir = \"spool\"\nname = \"{label}\""),
    );
    std::fs::write(dir.join("node.toml"), config).unwrap();
    let log = dir.join("node.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = std::process::Command::new(researcher::BIN)
        .args(["node", "start", "--config", &format!("{d}/node.toml")])
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let _node = researcher::Proc { child, log, label };
    let deadline = Instant::now() + Duration::from_secs(120);
    let socket = format!("{d}/spool/local.sock");
    let v: Value = loop {
        let st = warden(cwd, &["node", "status", "--socket", &socket, "--json"]).await;
        if st.code == 0 {
            break st.json();
        }
        assert!(
            Instant::now() < deadline,
            "the node never reported healthy: {st}\n{}",
            std::fs::read_to_string(dir.join("node.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(v["healthy"], true, "{v}");
    assert_eq!(v["node"]["organization"], "hospital-c", "{v}");
    assert_eq!(v["policy"]["allow_rules"], 0, "{v}");
    // The refused second run created no node: those of a, b and c.
    let nodes = run(
        cwd,
        x,
        &[
            "node",
            "list",
            "--collab",
            &collab,
            "--profile",
            "admin",
            "--json",
        ],
    )
    .await;
    let nodes: Value = nodes.json();
    assert_eq!(nodes.as_array().unwrap().len(), 3, "{nodes}");
}

/// `warden ARGS` in `cwd` with its profiles under `xdg`.
async fn run(cwd: &Path, xdg: &str, args: &[&str]) -> Out {
    warden_in(cwd, args, &[("XDG_CONFIG_HOME", xdg)]).await
}

fn again_fails(out: &Out, needle: &str) {
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains(needle), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
}

/// The text of a log with its colour escapes (`ESC [ ... m`) taken out.
fn without_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
