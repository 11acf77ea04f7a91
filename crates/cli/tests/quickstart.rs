//! docs/quickstart.md, run: every `sh` block of the page, in order and exactly as written, in
//! one `bash` with the real `warden` binary first on PATH, against the Docker engine, and a real
//! `docker-registry`, a real `warden server start` and two `warden node start` processes that
//! the page itself starts. The test only provides what the page says the reader brings: an
//! algorithm image built locally (a FROM-scratch image around a static C program; the page's
//! step 0 pushes it to its registry, step 4 signs it) and free ports. So the page cannot rot: a
//! command that changes breaks this test.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use warden_testkit::{FileSource, ImageFile};

const BIN: &str = env!("CARGO_BIN_EXE_warden");
/// The node names the page gives its nodes (container labels).
const NODES: [&str; 2] = ["quickstart-hospital-a", "quickstart-hospital-b"];

/// The `sh` blocks of a Markdown page, in order.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line.trim_end() == "```sh" => current = Some(String::new()),
            Some(_) if line.trim_end() == "```" => blocks.push(current.take().unwrap()),
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    assert!(current.is_none(), "an unclosed block");
    blocks
}

/// Kills the page's PID namespace (server and nodes) if the page has not ended, and removes what
/// the nodes and the test left in Docker.
struct Cleanup {
    /// The `unshare` process while it has not been reaped (its pid cannot be reused till then).
    unshare: Option<u32>,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(pid) = self.unshare {
            // `--kill-child`: unshare's death kills the namespace's first process, and with it
            // every process of the namespace. Never a negative pid: a process group whose
            // leader was reaped can be another group by now (and procps-ng 4.0.2's `kill`
            // took `-KILL -PGID` here for every process on the machine).
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        for node in NODES {
            for label in [node.to_owned(), format!("{node}-probe")] {
                let Ok(out) = Command::new("docker")
                    .args([
                        "ps",
                        "-aq",
                        "--filter",
                        &format!("label=org.warden.node={label}"),
                    ])
                    .output()
                else {
                    continue;
                };
                for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("docker").args(["rm", "-f", "-v", id]).output();
                }
            }
        }
        let refs: Vec<&str> = self.images.iter().map(String::as_str).collect();
        warden_testkit::remove_images(&refs);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Builds the echo program (crates/node/tests/programs/echo.c) into a local image named `tag`,
/// unpushed and unsigned: the page's step 0 pushes it to the registry it starts, and signs it.
fn build_image(tag: &str, dir: &Path, cleanup: &mut Cleanup) {
    let root = warden_testkit::workspace_root();
    let source = std::fs::read_to_string(root.join("crates/node/tests/programs/echo.c")).unwrap();
    let bin = warden_testkit::build_static_c(&source, "echo", dir).unwrap();
    let files = [ImageFile {
        source: FileSource::Path(bin),
        dest: "/echo".to_owned(),
        mode: 0o755,
    }];
    let id =
        warden_testkit::build_scratch_image(tag, &files, &["ENTRYPOINT [\"/echo\"]", "USER 65534"])
            .unwrap();
    // The image ID: removing it by force removes every tag the page gives it too.
    cleanup.images.push(id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_page_runs_as_written_and_gets_a_result() {
    warden_testkit::require_docker().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cleanup = Cleanup {
        unshare: None,
        images: Vec::new(),
    };
    // The reader's algorithm image, built on this machine; the page's step 0 starts Debian's
    // registry on a free loopback port and pushes it there.
    let local_image = format!("quickstart-local/echo:{}", std::process::id());
    build_image(&local_image, dir.path(), &mut cleanup);
    let registry_port = free_port();
    let image = format!("127.0.0.1:{registry_port}/quickstart/echo:v1");

    let root = warden_testkit::workspace_root();
    let page = std::fs::read_to_string(root.join("docs/quickstart.md")).unwrap();
    let blocks = sh_blocks(&page);
    assert!(blocks.len() >= 8, "{} blocks", blocks.len());
    let script = blocks.concat();

    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // The page runs in its own PID namespace, so that whatever it leaves running ends with it.
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--kill-child", "bash", "-c"])
        .arg(&script)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", path)
        .env("HOME", &home)
        .env("IMAGE", &image)
        .env("LOCAL_IMAGE", &local_image)
        .env("REGISTRY_PORT", registry_port.to_string())
        .env("PORT", free_port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Ok(docker_host) = std::env::var("DOCKER_HOST") {
        cmd.env("DOCKER_HOST", docker_host);
    }
    let child = cmd.spawn().unwrap();
    cleanup.unshare = Some(child.id());
    let out = tokio::time::timeout(
        Duration::from_secs(600),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("the quickstart finishes within 10 minutes")
    .unwrap()
    .unwrap();
    // Reaped: the namespace is gone with its first process, and the pid may be reused.
    cleanup.unshare = None;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logs: String = [
        "registry.log",
        "server.log",
        "hospital-a/node.log",
        "hospital-b/node.log",
    ]
    .iter()
    .map(|f| {
        let p = dir.path().join("quickstart").join(f);
        format!(
            "--- {f}\n{}\n",
            std::fs::read_to_string(p).unwrap_or_default()
        )
    })
    .collect();
    let all = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}\n{logs}");
    assert!(out.status.success(), "the page failed: {all}");

    // Step by step, what the page promises.
    assert!(
        stdout.contains("admin (user 1, root) at http://127.0.0.1:"),
        "{all}"
    );
    assert!(stdout.contains("created organization\nid:"), "{all}");
    assert!(stdout.contains("created collaboration\n"), "{all}");
    assert!(
        stdout.contains("members:   hospital-a (1), hospital-b (2)"),
        "{all}"
    );
    assert!(stdout.contains("created user\n"), "{all}");
    assert!(
        !stdout.contains("wdn_"),
        "node keys go to files only: {all}"
    );
    // Both organizations ran the signed image on the sealed input and Rita opened both results.
    let expected = r#"result: env-ok echo:{"args":{"n":1},"function":"hello"}"#;
    assert_eq!(stdout.matches(expected).count(), 2, "{all}");
    assert!(
        stdout.contains("hospital-a: run") && stdout.contains("hospital-b: run"),
        "{all}"
    );
    assert!(stdout.contains("logged in to http://127.0.0.1:"), "{all}");
    // task list shows the task, then logout ends the session.
    let task_line = stdout
        .lines()
        .find(|l| l.starts_with("task ") && l.contains(" at 2 organization(s)"))
        .unwrap_or_else(|| panic!("no task line: {all}"));
    let id = task_line.split(' ').nth(1).unwrap();
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&format!("{id} ")) && l.contains("rita") && l.contains(&image)),
        "task list shows task {id}: {all}"
    );
    assert!(stdout.contains("ended at the server"), "{all}");
    // The node keys are private files; the sessions of the admin remain, rita's is gone.
    let config = home.join(".config/warden");
    assert!(config.join("admin.session").exists());
    assert!(!config.join("cardio.session").exists());
    for org in ["hospital-a", "hospital-b"] {
        let key = dir.path().join("quickstart").join(org).join("node.key");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&key).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{}", key.display());
    }
}

#[test]
fn the_page_blocks_are_found_in_order() {
    let md = "a\n```sh\none\n```\ntext\n```toml\nx\n```\n```sh\ntwo\nthree\n```\n";
    assert_eq!(sh_blocks(md), ["one\n", "two\nthree\n"]);
}
