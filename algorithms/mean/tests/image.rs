//! The `mean` algorithm as it ships: a static binary in a FROM-scratch image, run by the real
//! Docker engine with the contract's mounts and the hardening flags (no network, read-only root,
//! non-root, no capabilities). The node's hardened runner is crates/runtime; this proves the image.

// Test-only helpers outside #[test] functions fail loudly, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use warden_testkit::{FileSource, ImageFile};

/// Removes the image when the test ends, passed or failed.
struct ImageGuard(String);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        warden_testkit::remove_images(&[&self.0]);
    }
}

/// Input, data and output directories of one run, readable (and for the output, writable) by
/// the image's user 65534.
struct RunDirs {
    _root: tempfile::TempDir,
    input: PathBuf,
    data: PathBuf,
    output: PathBuf,
}

impl RunDirs {
    fn new(input: Value) -> RunDirs {
        let root = tempfile::tempdir().unwrap();
        let dirs = RunDirs {
            input: root.path().join("input"),
            data: root.path().join("data"),
            output: root.path().join("output"),
            _root: root,
        };
        for (dir, mode) in [
            (dirs._root.path(), 0o755),
            (&dirs.input, 0o755),
            (&dirs.data, 0o755),
            (&dirs.output, 0o777),
        ] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        write(&dirs.input.join("input"), &input.to_string());
        dirs
    }

    fn data_file(&self, name: &str, content: &str) -> &Self {
        write(&self.data.join(name), content);
        self
    }

    fn output(&self) -> Option<Vec<u8>> {
        std::fs::read(self.output.join("output")).ok()
    }

    /// `docker run` of `image` with the contract's mounts and variables, hardened.
    fn run(&self, image: &str) -> Output {
        let mount = |host: &Path, container: &str, mode: &str| {
            format!("{}:{container}:{mode}", host.display())
        };
        Command::new("docker")
            .args(["run", "--rm", "--network", "none", "--read-only"])
            .args(["--cap-drop", "ALL", "--security-opt", "no-new-privileges"])
            .args(["--pids-limit", "64", "--memory", "256m"])
            .args(["--tmpfs", "/tmp:size=16m"])
            .arg("-v")
            .arg(mount(&self.input, "/mnt/input", "ro"))
            .arg("-v")
            .arg(mount(&self.data, "/mnt/data", "ro"))
            .arg("-v")
            .arg(mount(&self.output, "/mnt/output", "rw"))
            .args(["-e", "WARDEN_INPUT_DIR=/mnt/input"])
            .args(["-e", "WARDEN_DATA_DIR=/mnt/data"])
            .args(["-e", "WARDEN_OUTPUT=/mnt/output/output"])
            .args(["-e", "WARDEN_RUN_ID=1", "-e", "WARDEN_ORGANIZATION_ID=2"])
            .arg(image)
            .output()
            .unwrap()
    }
}

fn write(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

#[track_caller]
fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn the_scratch_image_computes_partial_means_under_hardened_flags() {
    let binary = warden_testkit::build_static_binary("warden-algorithm-mean", "mean").unwrap();
    let tag = format!("warden-test/mean:t{}", std::process::id());
    let _guard = ImageGuard(tag.clone());
    warden_testkit::build_scratch_image(
        &tag,
        &[ImageFile {
            source: FileSource::Path(binary),
            dest: "/mean".into(),
            mode: 0o755,
        }],
        &["USER 65534", r#"ENTRYPOINT ["/mean"]"#],
    )
    .unwrap();

    // partial_mean on a CSV file: sum, count, and the skipped cells (empty, text).
    let run = RunDirs::new(json!({
        "function": "partial_mean",
        "args": {"column": "age", "data": "records"}
    }));
    run.data_file(
        "records",
        "id,name,age\n1,\"Doe, Jane\",34\n2,Roe,\n3,Poe,unknown\n4,Loe,41.5\n5,Moe,20\n",
    );
    let out = run.run(&tag);
    assert_success(&out);
    assert_eq!(
        json_of(&run.output().unwrap()),
        json!({"sum": 95.5, "count": 3, "skipped": 2})
    );
    // The function logged what it did, and nothing else was left in the output directory.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("3 values, 2 skipped"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<_> = std::fs::read_dir(&run.output)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["output"]);

    // count on a directory data source holding data.csv.
    let run = RunDirs::new(json!({"function": "count", "args": {"data": "cohort"}}));
    std::fs::create_dir(run.data.join("cohort")).unwrap();
    std::fs::set_permissions(
        run.data.join("cohort"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    run.data_file("cohort/data.csv", "a,b\n1,2\n3,4\n5,6\n");
    let out = run.run(&tag);
    assert_success(&out);
    assert_eq!(json_of(&run.output().unwrap()), json!({"count": 3}));

    // A bad column: non-zero exit, the reason on stderr, no output.
    let run = RunDirs::new(json!({
        "function": "partial_mean",
        "args": {"column": "weight", "data": "records"}
    }));
    run.data_file("records", "id,age\n1,2\n");
    let out = run.run(&tag);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"error: partial_mean failed: /mnt/data/records has no column "weight"; its columns are: "id", "age""#),
        "{stderr}"
    );
    assert_eq!(run.output(), None);

    // central_mean without a proxy (none is mounted here): fails, saying so.
    let run = RunDirs::new(json!({
        "function": "central_mean",
        "args": {"column": "age", "data": "records"}
    }));
    let out = run.run(&tag);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("WARDEN_TOKEN is not set"),
        "{out:?}"
    );
}

#[test]
fn build_script_builds_an_image_from_the_dockerfile() {
    warden_testkit::require_docker().unwrap();
    let root = warden_testkit::workspace_root();
    let prefix = format!("warden-test-{}.invalid", std::process::id());
    // Shares the static target directory with build_static_binary: no second full build.
    let target_dir = std::env::var_os("WARDEN_STATIC_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target").join("static"));
    let stdout = warden_testkit::run(
        Command::new(root.join("algorithms/build.sh"))
            .arg(&prefix)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env_remove("WARDEN_PUSH"),
    )
    .unwrap();
    let last = stdout.lines().last().unwrap_or_default().to_owned();
    let version = env!("CARGO_PKG_VERSION");
    let tag = format!("{prefix}/warden/mean:{version}");
    let _guard = ImageGuard(tag.clone());
    let words: Vec<&str> = last.split_whitespace().collect();
    assert_eq!(words.len(), 3, "{stdout}");
    assert_eq!((words[0], words[1]), ("built", tag.as_str()), "{stdout}");
    assert_eq!(words[2], warden_testkit::image_id(&tag).unwrap());

    // The image is FROM scratch with one file, runs as nobody, enters at /mean.
    let config = warden_testkit::run(Command::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{.Config.User}} {{json .Config.Entrypoint}} {{len .RootFS.Layers}}",
        &tag,
    ]))
    .unwrap();
    assert_eq!(config.trim(), r#"65534:65534 ["/mean"] 1"#);

    let run = RunDirs::new(json!({
        "function": "partial_mean",
        "args": {"column": "x", "data": "d"}
    }));
    run.data_file("d", "x\n1\n2\n");
    let out = run.run(&tag);
    assert_success(&out);
    assert_eq!(
        json_of(&run.output().unwrap()),
        json!({"sum": 3.0, "count": 2, "skipped": 0})
    );
}
