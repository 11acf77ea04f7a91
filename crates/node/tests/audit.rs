//! The audit log fails closed: a node whose audit log cannot be written delivers no result and
//! starts no run, each failed with "audit log unavailable", until a write succeeds again. The
//! log lives on a small tmpfs the test mounts (tests run as root, which permission bits do not
//! stop; a full file system stops root too).

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{World, containers};
use serde_json::json;
use warden_api::RunState;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount a tmpfs (the test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Appends to `path` until the file system is full; returns how much was written.
fn fill(path: &Path) -> usize {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let chunk = [b'x'; 4096];
    let mut total = 0;
    loop {
        match f.write(&chunk) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected: {e}");
                return total;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_audit_log_cannot_be_written_delivers_nothing_and_starts_nothing() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("slow", "slow", "v1");
    w.sign(&repo, &digest).await;
    let config = w.node_config(&w.a, &w.signed_policy(&repo), "");
    let audit_dir = config.parent().unwrap().join("audit");
    let _tmpfs = Tmpfs::mount(&audit_dir, "64k");
    let node = w.start_node(&config).await;
    let log = node.node.audit_path().to_path_buf();
    let image = format!("{repo}:v1");
    let run_of = |secs: u32| json!({"function": "sleep", "args": {"sleep": secs}});

    // Works while there is room.
    let task = w.create_task(&image, &run_of(0), &[&w.a]).await;
    let run = w
        .wait_final(task.runs[0].id, Duration::from_secs(120))
        .await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.reason);

    // The disk fills up while a run computes: to the last byte, the log's last page included
    // (as a line cut short by the full disk leaves it). Its closing record cannot be written,
    // so its result is not uploaded.
    let task = w.create_task(&image, &run_of(4), &[&w.a]).await;
    let id = task.runs[0].id;
    w.wait_state(id, RunState::Running, Duration::from_secs(60))
        .await;
    let filler = audit_dir.join("filler");
    fill(&filler);
    fill(&log);
    let run = w.wait_final(id, Duration::from_secs(120)).await;
    assert_eq!(run.state, RunState::Failed);
    assert_eq!(run.reason.as_deref(), Some("audit log unavailable"));
    assert!(
        !run.has_result,
        "a result was uploaded without its audit record"
    );

    // While the log cannot be opened again (here: its path is a directory), no run starts.
    let kept = audit_dir.join("kept.log");
    std::fs::rename(&log, &kept).unwrap();
    std::fs::create_dir(&log).unwrap();
    let task = w.create_task(&image, &run_of(0), &[&w.a]).await;
    let run = w
        .wait_final(task.runs[0].id, Duration::from_secs(120))
        .await;
    assert_eq!(run.state, RunState::Failed);
    assert_eq!(run.reason.as_deref(), Some("audit log unavailable"));
    assert!(!run.has_result);
    assert!(run.started_at.is_none(), "the run started: {run:?}");

    // Room and the file come back: the next run is recorded and completes.
    std::fs::remove_dir(&log).unwrap();
    std::fs::rename(&kept, &log).unwrap();
    std::fs::remove_file(&filler).unwrap();
    let task = w.create_task(&image, &run_of(0), &[&w.a]).await;
    let run = w
        .wait_final(task.runs[0].id, Duration::from_secs(120))
        .await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.reason);
    let out = String::from_utf8(w.result(run.id).await).unwrap();
    assert!(out.starts_with("slept 0:"), "{out}");
    assert!(containers(&node.label).is_empty());
    node.stop().await;

    // The log was repaired (the cut line removed) and verifies: the first run's three records
    // (admission, its logs withheld, its end), the second run's admission, the last run's
    // three; nothing of the runs that failed closed.
    let key_pem = std::fs::read_to_string(config.parent().unwrap().join("audit.pub")).unwrap();
    let key = warden_trust::PublicKey::from_pem(&key_pem).unwrap();
    let report = warden_audit::verify(&log, &key).unwrap();
    assert!(report.is_intact(), "{:?}", report.problems());
    assert_eq!(report.entries, 7);
}
