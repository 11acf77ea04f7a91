//! A reader that has gone away (`warden reference ubuntu | true`) is not a command's failure:
//! with its standard output a pipe whose read end is closed, a command keeps its own exit status
//! and prints no panic (Rust ignores SIGPIPE, so an unchecked print would panic with 101).

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_warden");

/// Runs `warden ARGS` with stdout a stream whose reader has gone away (a write gets EPIPE, as
/// into a pipe whose read end is closed).
fn with_closed_stdout(args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(reader);
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(writer)))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn commands_whose_reader_went_away_keep_their_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("org.key");
    let made = Command::new(BIN)
        .args(["keys", "generate", "--kind", "x25519", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let key = key.to_str().unwrap();
    for args in [
        &["reference", "ubuntu"][..],
        &["completions", "bash"],
        &["--help"],
        &["keys", "show", key],
        &["keys", "fingerprint", key],
    ] {
        let (code, stderr) = with_closed_stdout(args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // A refusal keeps its own status too.
    let (code, stderr) = with_closed_stdout(&["reference", "UPPER/Case:tag"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
