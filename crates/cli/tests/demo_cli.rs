//! `warden demo` as a user runs it: the real binary, the real Docker engine, Debian's registry,
//! the static `mean` algorithm. The expected mean is computed here from the CSV files the demo
//! wrote (kept with --keep), the audit logs are verified again with `warden audit verify`, and
//! nothing the demo created on the engine may remain.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_warden");
const ORGS: [&str; 3] = ["hospital-a", "hospital-b", "hospital-c"];

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value after `prefix` on the line that starts with it.
fn after<'a>(stdout: &'a str, prefix: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{stdout}"))
}

/// Sum and count of the `age` column of a CSV file, parsed here independently.
fn ages(path: &Path) -> (u64, u64, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let age = header.iter().position(|h| *h == "age").unwrap();
    let id = header.iter().position(|h| *h == "id").unwrap();
    let (mut sum, mut n, mut ids) = (0u64, 0u64, Vec::new());
    for l in lines.filter(|l| !l.is_empty()) {
        let cells: Vec<&str> = l.split(',').collect();
        sum += cells[age].parse::<u64>().unwrap();
        n += 1;
        ids.push(cells[id].to_owned());
    }
    (sum, n, ids)
}

#[test]
fn the_demo_runs_a_signed_federated_mean_shows_a_denial_and_leaves_nothing_behind() {
    let mean = warden_testkit::build_static_binary("warden-algorithm-mean", "mean").unwrap();
    let keep = tempfile::tempdir().unwrap();
    let dir = keep.path().join("demo");
    let out = Command::new(BIN)
        .args(["demo", "--algorithm-binary"])
        .arg(&mean)
        .arg("--keep")
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "status {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );

    // The kept work directory holds secret keys: only this user may read it.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");

    // The mean, recomputed from the very files the nodes read.
    let (mut sum, mut n, mut ids) = (0u64, 0u64, Vec::new());
    for org in ORGS {
        let (s, c, i) = ages(&dir.join(org).join("records.csv"));
        assert_eq!(c, 100, "{org}");
        sum += s;
        n += c;
        ids.extend(i);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 300, "every organization has its own rows");
    let expected = sum as f64 / n as f64;
    let line = after(&stdout, "federated mean of age over 3 organizations: ");
    assert_eq!(line, format!("{expected} (n={n})"), "{stdout}");
    let (value, _) = line.split_once(' ').unwrap();
    assert_eq!(value.parse::<f64>().unwrap(), expected);

    // The researcher's own key, certified by hospital-a, whose certification key every node
    // pins under [certifiers]; the result opened with it and checked against the run.
    let certified = after(&stdout, "researcher's personal key sha256:");
    let (_, ca) = certified
        .split_once("certification key ")
        .unwrap_or_else(|| panic!("{certified}"));
    let ca = ca.trim_end_matches(')');
    assert!(ca.starts_with("sha256:") && ca.len() == 71, "{ca}");
    for org in ORGS {
        let config = std::fs::read_to_string(dir.join(org).join("node.toml")).unwrap();
        let certifiers = config.split("[certifiers]").nth(1).unwrap_or_default();
        assert!(
            certifiers.contains(&format!("hospital-a = \"{ca}\"")),
            "{org}'s node pins hospital-a's certification key:\n{config}"
        );
    }
    let cert = std::fs::read(dir.join("researcher.cert")).unwrap();
    let cert = warden_seal::Certificate::parse(&cert).unwrap();
    assert_eq!(cert.certifier_id().to_string(), ca);
    assert_eq!(cert.statement().organization, "hospital-a");
    let opened = after(&stdout, "result of run ");
    assert!(
        opened.contains("opened with the researcher's key")
            && opened.contains("bound to the task's nonce"),
        "{opened}"
    );

    // The signature and the denial.
    let registry = after(&stdout, "registry on ")
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(registry.starts_with("127.0.0.1:"), "{registry}");
    let signed = after(&stdout, "signed warden/mean@sha256:");
    assert!(signed.contains("with reviewer key sha256:"), "{signed}");
    let rejection = after(&stdout, "rejected at hospital-b: ");
    assert!(
        rejection.contains("denied by deny[1]"),
        "the reason names the deny rule: {rejection}"
    );
    let rule = after(&stdout, "  hospital-b's policy.toml, line ");
    assert!(
        rule.ends_with("repository_regex = '.+/experimental/.+'"),
        "{rule}"
    );
    assert!(
        stdout.contains(&format!(
            "nothing was pulled: {registry}/experimental/mean:1.0 is absent"
        )),
        "{stdout}"
    );

    // Each node's audit log: kept, and intact for `warden audit verify` too.
    for org in ORGS {
        let rest = after(&stdout, &format!("{org} recorded its decisions in "));
        let path = PathBuf::from(rest.split(':').next().unwrap());
        assert!(path.starts_with(dir.canonicalize().unwrap()), "{path:?}");
        assert!(rest.contains("verified intact"), "{rest}");
        let verify = Command::new(BIN)
            .args(["audit", "verify", "--key"])
            .arg(dir.join(org).join("audit.pub"))
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "{org}: {}",
            String::from_utf8_lossy(&verify.stdout)
        );
        let log = std::fs::read_to_string(&path).unwrap();
        assert!(log.contains("warden/mean"), "{org} recorded the mean run");
        if org == "hospital-b" {
            assert!(
                log.contains("experimental/mean"),
                "hospital-b recorded the denial"
            );
        }
    }

    // Nothing left on the engine: no container of the demo's nodes, no image of its registry,
    // none of the images it reported removing.
    for org in ORGS {
        let rest = after(&stdout, &format!("node of {org} up: "));
        let label = rest.rsplit(' ').next().unwrap();
        assert!(label.starts_with("demo-"), "{label}");
        for l in [label.to_owned(), format!("{label}-probe")] {
            let left = docker(&[
                "ps",
                "-aq",
                "--filter",
                &format!("label=org.warden.node={l}"),
            ]);
            assert!(left.trim().is_empty(), "containers of {l} remain: {left}");
        }
    }
    let repos = docker(&["images", "--format", "{{.Repository}}@{{.Digest}}"]);
    assert!(
        !repos.contains(&format!("{registry}/")),
        "images of the demo registry remain:\n{repos}"
    );
    let removed = after(&stdout, "cleaned up: ");
    let list = removed
        .split_once('(')
        .map(|(_, l)| l.trim_end_matches(')'))
        .unwrap_or_default();
    assert!(!list.is_empty(), "{removed}");
    for image in list.split(", ") {
        let gone = !Command::new("docker")
            .args(["image", "inspect", image])
            .output()
            .unwrap()
            .status
            .success();
        assert!(gone, "{image} remains");
    }
    assert!(after(&stdout, "done in ").ends_with(" s"));
}

#[test]
fn a_missing_prerequisite_is_named_with_what_to_do_and_exit_2() {
    let out = Command::new(BIN)
        .args(["demo", "--algorithm-binary", "/nonexistent/mean"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("the algorithm binary /nonexistent/mean: cannot read it"),
        "{stderr}"
    );
    assert!(stderr.contains("cargo build --release"), "{stderr}");
    assert!(stderr.contains("scripts/demo"), "{stderr}");
    assert!(stdout.is_empty(), "nothing started: {stdout}");
}

#[test]
fn an_unreachable_docker_engine_is_named_with_every_other_missing_piece() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["demo", "--algorithm-binary", "/bin/sh"])
        .env(
            "DOCKER_HOST",
            format!("unix://{}", dir.path().join("no.sock").display()),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the Docker engine: it does not answer"),
        "{stderr}"
    );
    assert!(stderr.contains("start dockerd"), "{stderr}");
    assert!(
        stderr.contains("the algorithm binary /bin/sh: it is dynamically linked"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_keep_directory_that_is_not_empty_is_refused_before_anything_starts() {
    let mean = warden_testkit::build_static_binary("warden-algorithm-mean", "mean").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious"), "x").unwrap();
    let out = Command::new(BIN)
        .args(["demo", "--algorithm-binary"])
        .arg(&mean)
        .arg("--keep")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is not empty; pass a new or empty directory"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}
