//! `warden algorithm base python` against the real Docker engine, Debian mirror and PyPI: the
//! image is built once per machine (the same tag and options as python/tests/pyimage.py, so the
//! Python tests reuse it by its content key), runs as 65534:65534 with a read-only root and no
//! network, imports its wheel and `warden_algorithm` from byte code, has no apt, and its labels list exactly the
//! Debian packages dpkg knows inside it and the wheels pip installed.

// Helpers outside `#[test]` functions are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::process::Command;

const TAG: &str = "warden-test/python-base:numpy";
const ARGS: &[&str] = &[
    "--wheel",
    "numpy==1.26.4",
    "--cache-dir",
    "/var/cache/warden/debootstrap",
];

fn base() -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["algorithm", "base", "python", "--tag", TAG])
        .args(ARGS)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `docker run --rm --read-only --network none [--entrypoint E] TAG args...`
fn run(entrypoint: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut c = Command::new("docker");
    c.args(["run", "--rm", "--read-only", "--network", "none"]);
    if let Some(e) = entrypoint {
        c.args(["--entrypoint", e]);
    }
    c.arg(TAG).args(args).output().unwrap()
}

fn labels() -> BTreeMap<String, String> {
    let out = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{json .Config.Labels}}",
            TAG,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_python_base_image_is_cached_minimal_non_root_and_lists_exact_versions() {
    let first = base();
    // a second build with the same options finds it by its content key
    let again = base();
    assert_eq!(again["cached"], true, "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["key"], first["key"]);
    assert_eq!(again["debian"], first["debian"]);
    assert_eq!(again["wheels"]["numpy"], "1.26.4", "{again}");

    // non-root, read-only root, the wheel and warden_algorithm importable, no network needed
    let out = run(
        None,
        &[
            "-c",
            "import os, numpy, warden_algorithm; print(os.getuid(), os.getgid(), numpy.__version__, float(numpy.mean([1, 2, 6])))",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "65534 65534 1.26.4 3.0"
    );
    // every module an algorithm imports comes from its byte code in the image: none is
    // stale (Debian's byte code records the sources' mtimes, which the image's fixed mtimes
    // change) and none is compiled from source at start (which cost about 600 ms a run)
    let out = run(
        None,
        &[
            "-v",
            "-c",
            "import warden_algorithm, numpy, csv, json, math, http.client, socket, statistics",
        ],
    );
    let verbose = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{verbose}");
    let from_pyc = verbose
        .lines()
        .filter(|l| l.starts_with("# code object from '") && l.ends_with(".pyc'"))
        .count();
    assert!(
        from_pyc > 50,
        "only {from_pyc} modules from byte code:\n{verbose}"
    );
    let compiled: Vec<&str> = verbose
        .lines()
        .filter(|l| {
            l.contains("bytecode is stale")
                || (l.starts_with("# code object from '") && l.ends_with(".py'"))
        })
        .collect();
    assert!(compiled.is_empty(), "compiled at start: {compiled:#?}");
    // nothing on the root can be written, not even as the owner of nothing: /tmp neither,
    // unless the runner mounts one (the node does)
    for path in ["/usr/lib/x", "/tmp/x", "/x"] {
        let out = run(None, &["-c", &format!("open({path:?}, 'w')")]);
        assert!(!out.status.success(), "{path} was writable");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Read-only file system"), "{path}: {err}");
    }
    // apt is gone, its caches and the documentation too
    for path in [
        "/usr/bin/apt-get",
        "/usr/share/doc",
        "/var/lib/apt",
        "/var/cache/apt",
    ] {
        let out = run(
            None,
            &["-c", &format!("import os; print(os.path.exists({path:?}))")],
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "False",
            "{path}"
        );
    }

    // the labels: the exact versions dpkg records inside the image, and pip's wheel
    let labels = labels();
    assert_eq!(
        labels["org.warden.base.key"],
        first["key"].as_str().unwrap()
    );
    let inside = run(
        Some("/usr/bin/dpkg-query"),
        &["-W", "-f", "${db:Status-Abbrev}${Package}=${Version}\n"],
    );
    assert!(
        inside.status.success(),
        "{}",
        String::from_utf8_lossy(&inside.stderr)
    );
    let mut dpkg: Vec<String> = String::from_utf8_lossy(&inside.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("ii "))
        .map(str::to_owned)
        .collect();
    dpkg.sort();
    let mut labelled: Vec<String> = labels["org.warden.base.debian"]
        .split(' ')
        .map(str::to_owned)
        .collect();
    labelled.sort();
    assert_eq!(labelled, dpkg);
    assert!(
        !labelled.iter().any(|p| p.starts_with("apt=")),
        "{labelled:?}"
    );
    let python = labels["org.warden.base.python"].clone();
    assert!(
        labelled.contains(&format!("python3.11={python}")),
        "{python}"
    );
    assert!(python.starts_with("3.11."), "{python}");
    let version = run(
        None,
        &["-c", "import platform; print(platform.python_version())"],
    );
    assert!(python.starts_with(String::from_utf8_lossy(&version.stdout).trim()));
    assert_eq!(labels["org.warden.base.wheels"], "numpy==1.26.4");
    assert_eq!(labels["org.warden.base.suite"], "bookworm");
    assert_eq!(
        labels["org.warden.base.rootfs"],
        first["rootfs"].as_str().unwrap()
    );

    // the configuration needs no shell: exec-form entry point, non-root user
    let out = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{json .Config.Entrypoint}} {{.Config.User}}",
            TAG,
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"["/usr/bin/python3","-s","-B"] 65534:65534"#
    );
}
