//! The log file: create, append, checkpoint, resume, repair a torn tail, lock, refuse damage.

// Helpers outside `#[test]` functions are test code too.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::Write as _;
use std::path::Path;

use time::OffsetDateTime;
use warden_audit::{
    AuditError, AuditLog, Event, LogLine, Options, Outcome, Problem, Record, VerifyError, read,
    verify,
};
use warden_trust::keys::{KeyAlgorithm, SigningKey};

fn record(run: i64, outcome: Outcome) -> Record {
    Record {
        time: OffsetDateTime::now_utc(),
        event: Event::Run,
        run_id: Some(run),
        task_id: Some(1),
        organization: Some("org-a".into()),
        user: Some("alice".into()),
        collaboration: Some("collab".into()),
        function: Some("mean".into()),
        image: "registry.example.org/team/mean:1".into(),
        digest: Some(format!("sha256:{}", "ab".repeat(32))),
        rule: Some("reviewed".into()),
        signers: vec![],
        input_sha256: Some(format!("sha256:{}", "01".repeat(32))),
        output_sha256: None,
        outcome,
        reason: None,
        by: None,
        approvals: Vec::new(),
    }
}

/// The same key twice (the log takes one by value).
fn keys() -> (SigningKey, SigningKey) {
    let k = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let again = SigningKey::from_pkcs8_der(&k.to_pkcs8_der().unwrap()).unwrap();
    (k, again)
}

fn copy(k: &SigningKey) -> SigningKey {
    SigningKey::from_pkcs8_der(&k.to_pkcs8_der().unwrap()).unwrap()
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[test]
fn append_checkpoint_close_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let (k, signer) = keys();
    let mut log = AuditLog::open(&path, signer, 2).unwrap();
    let mut hashes = Vec::new();
    for run in 1..=5 {
        hashes.push(log.append(record(run, Outcome::Completed)).unwrap());
    }
    // checkpoints after entries 2 and 4; entry 5 waits
    assert_eq!(log.uncovered(), 1);
    assert_eq!(log.head(), hashes[4]);
    let r = verify(&path, &k.public_key()).unwrap();
    assert_eq!(
        (r.entries, r.checkpoints, r.covered, r.uncovered),
        (5, 2, 4, 1)
    );
    assert!(!r.is_intact());
    log.close().unwrap();
    let r = verify(&path, &k.public_key()).unwrap();
    assert_eq!(
        (r.lines, r.entries, r.checkpoints, r.uncovered),
        (8, 5, 3, 0)
    );
    assert!(r.is_intact(), "{:?}", r.problems());

    let lines = read(&path).unwrap();
    assert_eq!(lines.len(), 8);
    let runs: Vec<i64> = lines
        .iter()
        .filter_map(|l| match l {
            LogLine::Entry { record, .. } => record.run_id,
            LogLine::Checkpoint { .. } => None,
        })
        .collect();
    assert_eq!(runs, vec![1, 2, 3, 4, 5]);
}

#[test]
fn reopening_resumes_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let (k, signer) = keys();
    let mut log = AuditLog::open(&path, signer, 0).unwrap();
    log.append(record(1, Outcome::Admitted)).unwrap();
    log.append(record(1, Outcome::Completed)).unwrap();
    let head = log.head();
    drop(log); // crash-like: no final checkpoint

    let mut log = AuditLog::open(&path, copy(&k), 0).unwrap();
    assert_eq!(log.head(), head);
    assert_eq!(log.entries(), 2);
    assert_eq!(log.uncovered(), 2);
    log.append(record(2, Outcome::Rejected)).unwrap();
    log.checkpoint().unwrap();
    log.checkpoint().unwrap(); // nothing new: no second checkpoint
    drop(log);
    let r = verify(&path, &k.public_key()).unwrap();
    assert_eq!((r.lines, r.entries, r.checkpoints), (4, 3, 1));
    assert!(r.is_intact());
}

#[test]
fn a_torn_last_line_is_reported_and_cut_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let (k, signer) = keys();
    let mut log = AuditLog::open(&path, signer, 1).unwrap();
    log.append(record(1, Outcome::Completed)).unwrap();
    drop(log);
    let intact_len = std::fs::metadata(&path).unwrap().len();
    append_bytes(&path, b"{\"seq\":3,\"prev\":\"sha256:12");

    let r = verify(&path, &k.public_key()).unwrap();
    let torn = r.torn_tail.unwrap();
    assert_eq!((torn.line, torn.bytes, torn.offset), (3, 26, intact_len));
    assert!(!r.is_intact());
    assert!(
        r.problems()[0].starts_with("line 3: torn last line of 26 bytes"),
        "{:?}",
        r.problems()
    );

    let mut log = AuditLog::open(&path, copy(&k), 1).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), intact_len);
    log.append(record(2, Outcome::Completed)).unwrap();
    drop(log);
    let r = verify(&path, &k.public_key()).unwrap();
    assert_eq!((r.entries, r.checkpoints), (2, 2));
    assert!(r.is_intact(), "{:?}", r.problems());
}

#[test]
fn one_writer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let (k, signer) = keys();
    let log = AuditLog::open(&path, signer, 1).unwrap();
    let e = AuditLog::open(&path, copy(&k), 1).unwrap_err();
    assert!(matches!(e, AuditError::Locked { .. }), "{e}");
    assert!(e.to_string().contains("locked by another process"), "{e}");
    drop(log);
    AuditLog::open(&path, k, 1).unwrap();
}

#[test]
fn a_damaged_log_is_refused_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let (k, signer) = keys();
    let mut log = AuditLog::open(&path, signer, 3).unwrap();
    for run in 1..=3 {
        log.append(record(run, Outcome::Completed)).unwrap();
    }
    drop(log);
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replacen("\"run_id\":2", "\"run_id\":7", 1);
    assert_ne!(edited, text);
    std::fs::write(&path, &edited).unwrap();

    let e = AuditLog::open(&path, copy(&k), 3).unwrap_err();
    match &e {
        AuditError::Broken {
            source: VerifyError::Tampered { line, problem },
            ..
        } => {
            assert_eq!(*line, 2);
            assert_eq!(*problem, Problem::Altered { next: 3 });
        }
        other => panic!("expected a broken log, got {other}"),
    }
    assert!(
        e.to_string().contains("line 2: the line was altered"),
        "{e}"
    );
    // the evidence is left alone
    assert_eq!(std::fs::read_to_string(&path).unwrap(), edited);
}

#[test]
fn another_key_cannot_continue_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let (_, signer) = keys();
    let mut log = AuditLog::open(&path, signer, 1).unwrap();
    log.append(record(1, Outcome::Completed)).unwrap();
    drop(log);
    let other = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let e = AuditLog::open(&path, other, 1).unwrap_err();
    assert!(
        matches!(
            e,
            AuditError::Broken {
                source: VerifyError::Tampered {
                    line: 2,
                    problem: Problem::CheckpointKey { .. }
                },
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn without_fsync_the_log_is_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let (k, signer) = keys();
    let mut log = AuditLog::open_with(
        &path,
        signer,
        Options {
            checkpoint_every: 10,
            fsync: false,
        },
    )
    .unwrap();
    for run in 0..25 {
        log.append(record(run, Outcome::Failed)).unwrap();
    }
    log.close().unwrap();
    let r = verify(&path, &k.public_key()).unwrap();
    assert_eq!((r.entries, r.checkpoints), (25, 3));
    assert!(r.is_intact());
}

#[test]
fn a_missing_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let (k, _) = keys();
    let e = verify(&dir.path().join("nope.log"), &k.public_key()).unwrap_err();
    assert!(matches!(e, VerifyError::Io { .. }), "{e}");
    assert_eq!(e.line(), None);
}

#[test]
fn an_oversized_record_is_refused_and_the_log_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let (k, signer) = keys();
    let mut log = AuditLog::open(&path, signer, 0).unwrap();
    let mut big = record(1, Outcome::Failed);
    big.reason = Some("x".repeat(warden_audit::MAX_LINE));
    let e = log.append(big).unwrap_err();
    assert!(
        matches!(e, AuditError::Line(Problem::LineTooLong { .. })),
        "{e}"
    );
    log.append(record(2, Outcome::Failed)).unwrap();
    log.close().unwrap();
    let r = verify(&path, &k.public_key()).unwrap();
    assert_eq!((r.entries, r.checkpoints), (1, 1));
}
