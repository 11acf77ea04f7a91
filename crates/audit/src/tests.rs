//! The chain and its verification, without files.

use proptest::prelude::*;
use time::macros::datetime;
use warden_trust::keys::{KeyAlgorithm, SigningKey};

use crate::*;

fn record(i: i64) -> Record {
    Record {
        time: datetime!(2026-11-26 09:00:00.123 UTC) + time::Duration::seconds(i),
        event: if i % 2 == 0 {
            Event::Decision
        } else {
            Event::Run
        },
        run_id: Some(i),
        task_id: Some(100 + i),
        organization: Some("org-a".into()),
        user: Some("alice".into()),
        collaboration: Some("collab-1".into()),
        function: None,
        image: "registry.example.org/team/avg:1.0".into(),
        digest: Some(format!("sha256:{}", "ab".repeat(32))),
        rule: Some("reviewed".into()),
        signers: vec![format!("sha256:{}", "cd".repeat(32))],
        input_sha256: None,
        output_sha256: None,
        outcome: if i % 3 == 0 {
            Outcome::Rejected
        } else {
            Outcome::Admitted
        },
        reason: None,
        by: None,
        approvals: Vec::new(),
    }
}

/// A log of `entries` records with a checkpoint after every `every` (and one at the end).
fn build(key: &SigningKey, entries: i64, every: i64) -> Vec<u8> {
    let mut chain = Chain::new();
    let mut out = Vec::new();
    for i in 1..=entries {
        let (line, hash) = chain.entry_line(&record(i)).unwrap();
        out.extend_from_slice(&line);
        chain.commit(hash, false);
        if i % every == 0 || i == entries {
            let (line, hash) = chain
                .checkpoint_line(key, datetime!(2026-11-26 10:00:00 UTC))
                .unwrap();
            out.extend_from_slice(&line);
            chain.commit(hash, true);
        }
    }
    out
}

fn lines(log: &[u8]) -> Vec<Vec<u8>> {
    log.split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn key() -> SigningKey {
    SigningKey::generate(KeyAlgorithm::Ed25519).unwrap()
}

#[test]
fn a_fresh_log_verifies_and_is_covered() {
    let k = key();
    let log = build(&k, 5, 2);
    // entries 1,2 cp 3,4 cp 5 cp: 8 lines
    let r = verify_bytes(&log, &k.public_key()).unwrap();
    assert_eq!((r.lines, r.entries, r.checkpoints), (8, 5, 3));
    assert_eq!((r.covered, r.uncovered), (5, 0));
    assert!(r.is_intact(), "{:?}", r.problems());
    assert_eq!(r.last_checkpoint_line, Some(8));
}

#[test]
fn an_empty_log_is_intact() {
    let k = key();
    let r = verify_bytes(b"", &k.public_key()).unwrap();
    assert_eq!(r.lines, 0);
    assert_eq!(r.head, EntryHash::GENESIS);
    assert!(r.is_intact());
}

#[test]
fn p256_node_keys_work_too() {
    let k = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let log = build(&k, 3, 3);
    assert!(verify_bytes(&log, &k.public_key()).unwrap().is_intact());
}

#[test]
fn line_format_is_as_documented() {
    let k = key();
    let log = build(&k, 1, 1);
    let ls = lines(&log);
    let first = String::from_utf8(ls[0].clone()).unwrap();
    assert!(
        first.starts_with(&format!("{{\"seq\":1,\"prev\":\"sha256:{}\",\"record\":{{\"time\":\"2026-11-26T09:00:01.123Z\",\"event\":\"run\",\"run_id\":1,", "0".repeat(64))),
        "{first}"
    );
    assert!(first.contains("\"function\":null"), "{first}");
    assert!(
        first.ends_with("\"outcome\":\"admitted\",\"reason\":null}}\n"),
        "{first}"
    );
    let cp: serde_json::Value = serde_json::from_slice(&ls[1]).unwrap();
    let h1 = EntryHash::of_line(&ls[0][..ls[0].len() - 1]).to_string();
    assert_eq!(cp["seq"], 2);
    assert_eq!(cp["prev"], h1.as_str());
    assert_eq!(cp["checkpoint"]["head"], h1.as_str());
    assert_eq!(cp["checkpoint"]["count"], 1);
    assert_eq!(cp["key"], k.public_key().id().to_string().as_str());
    // The signature is over the documented message.
    let sig = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        cp["signature"].as_str().unwrap(),
    )
    .unwrap();
    let message = format!(
        "warden-audit checkpoint v1\nseq=2\nhead={h1}\ncount=1\ntime=2026-11-26T10:00:00Z\n"
    );
    k.public_key().verify(message.as_bytes(), &sig).unwrap();
}

/// Verifies `log`; returns the tampered line number and problem.
#[track_caller]
fn tampered(log: &[u8], k: &SigningKey) -> (u64, Problem) {
    match verify_bytes(log, &k.public_key()) {
        Err(VerifyError::Tampered { line, problem }) => (line, problem),
        other => panic!("expected tampering, got {other:?}"),
    }
}

fn join(ls: &[Vec<u8>]) -> Vec<u8> {
    ls.concat()
}

#[test]
fn tamper_table() {
    let k = key();
    // lines: 1 e1, 2 e2, 3 cp, 4 e3, 5 e4, 6 cp, 7 e5, 8 e6, 9 cp
    let log = build(&k, 6, 2);
    let ls = lines(&log);
    assert_eq!(ls.len(), 9);

    // edit a field of a record (line 4): its hash no longer matches line 5's prev
    let mut t = ls.clone();
    t[3] = String::from_utf8(t[3].clone())
        .unwrap()
        .replace("\"outcome\":\"rejected\"", "\"outcome\":\"admitted\"")
        .into_bytes();
    assert_ne!(t[3], ls[3]);
    assert_eq!(tampered(&join(&t), &k), (4, Problem::Altered { next: 5 }));

    // edit a record whose next line is a checkpoint (line 5)
    let mut t = ls.clone();
    t[4] = String::from_utf8(t[4].clone())
        .unwrap()
        .replace("alice", "mallory")
        .into_bytes();
    assert_eq!(tampered(&join(&t), &k), (5, Problem::Altered { next: 6 }));

    // delete a line (line 4)
    let mut t = ls.clone();
    t.remove(3);
    assert_eq!(
        tampered(&join(&t), &k),
        (
            4,
            Problem::Seq {
                expected: 4,
                found: 5
            }
        )
    );

    // delete the first line
    let t = ls[1..].to_vec();
    assert_eq!(
        tampered(&join(&t), &k),
        (
            1,
            Problem::Seq {
                expected: 1,
                found: 2
            }
        )
    );

    // swap two lines (4 and 5)
    let mut t = ls.clone();
    t.swap(3, 4);
    assert_eq!(
        tampered(&join(&t), &k),
        (
            4,
            Problem::Seq {
                expected: 4,
                found: 5
            }
        )
    );

    // append a forged line that links correctly: chain holds, but it is not covered
    let r = verify_bytes(&log, &k.public_key()).unwrap();
    let chain = Chain::resume(&r);
    let (forged, _) = chain.entry_line(&record(99)).unwrap();
    let mut t = ls.clone();
    t.push(forged);
    let r = verify_bytes(&join(&t), &k.public_key()).unwrap();
    assert!(!r.is_intact());
    assert_eq!(
        r.problems(),
        vec!["1 entries after the last signed checkpoint are not covered".to_string()]
    );

    // append a forged line that does not link: blamed on the forged line after a checkpoint
    let mut t = ls.clone();
    let mut bad = ls[6].clone();
    bad = String::from_utf8(bad)
        .unwrap()
        .replace("\"seq\":7", "\"seq\":10")
        .into_bytes();
    t.push(bad);
    assert_eq!(tampered(&join(&t), &k), (10, Problem::Unlinked));

    // append a checkpoint signed by another key
    let other = key();
    let (cp, _) = Chain::resume(&verify_bytes(&log, &k.public_key()).unwrap())
        .checkpoint_line(&other, datetime!(2026-11-26 11:00:00 UTC))
        .unwrap();
    let mut t = ls.clone();
    t.push(cp);
    assert!(matches!(
        tampered(&join(&t), &k),
        (10, Problem::CheckpointKey { .. })
    ));

    // a forged checkpoint naming the node key but signed by another
    let (cp, _) = Chain::resume(&verify_bytes(&log, &k.public_key()).unwrap())
        .checkpoint_line(&other, datetime!(2026-11-26 11:00:00 UTC))
        .unwrap();
    let cp = String::from_utf8(cp)
        .unwrap()
        .replace(
            &other.public_key().id().to_string(),
            &k.public_key().id().to_string(),
        )
        .into_bytes();
    let mut t = ls.clone();
    t.push(cp);
    assert_eq!(tampered(&join(&t), &k), (10, Problem::CheckpointSignature));

    // change a checkpoint signature (line 6): flip one character of the base64
    let mut t = ls.clone();
    let s = String::from_utf8(t[5].clone()).unwrap();
    let at = s.find("\"signature\":\"").unwrap() + 13;
    let mut b = s.into_bytes();
    b[at] = if b[at] == b'A' { b'B' } else { b'A' };
    t[5] = b;
    assert_eq!(tampered(&join(&t), &k), (6, Problem::CheckpointSignature));

    // change a checkpoint's count
    let mut t = ls.clone();
    t[5] = String::from_utf8(t[5].clone())
        .unwrap()
        .replace("\"count\":4", "\"count\":3")
        .into_bytes();
    assert_eq!(
        tampered(&join(&t), &k),
        (
            6,
            Problem::CheckpointCount {
                expected: 4,
                found: 3
            }
        )
    );

    // truncate: drop the last checkpoint: the tail is uncovered
    let t = ls[..8].to_vec();
    let r = verify_bytes(&join(&t), &k.public_key()).unwrap();
    assert_eq!((r.entries, r.covered, r.uncovered), (6, 4, 2));
    assert_eq!(
        r.problems(),
        vec!["2 entries after the last signed checkpoint are not covered".to_string()]
    );

    // truncate mid-line: a torn tail, reported distinctly
    let cut = &log[..log.len() - 10];
    let r = verify_bytes(cut, &k.public_key()).unwrap();
    let torn = r.torn_tail.unwrap();
    assert_eq!(torn.line, 9);
    assert_eq!(torn.offset as usize, join(&ls[..8]).len());
    assert!(
        r.problems()
            .iter()
            .any(|p| p.starts_with("line 9: torn last line"))
    );

    // extra whitespace inside a line is not the canonical form
    let mut t = ls.clone();
    t[1] = String::from_utf8(t[1].clone())
        .unwrap()
        .replacen("{\"seq\"", "{ \"seq\"", 1)
        .into_bytes();
    assert_eq!(tampered(&join(&t), &k), (2, Problem::NotCanonical));

    // an unknown member
    let mut t = ls.clone();
    t[1] = String::from_utf8(t[1].clone())
        .unwrap()
        .replacen("\"reason\":null", "\"reason\":null,\"x\":1", 1)
        .into_bytes();
    assert!(matches!(tampered(&join(&t), &k), (2, Problem::NotJson(_))));

    // the wrong node key: the first checkpoint names another key
    let stranger = key();
    assert!(matches!(
        tampered(&log, &stranger),
        (3, Problem::CheckpointKey { .. })
    ));
}

#[test]
fn replacing_the_first_line_is_caught_at_genesis() {
    let k = key();
    let log = build(&k, 2, 2);
    let mut ls = lines(&log);
    ls[0] = String::from_utf8(ls[0].clone())
        .unwrap()
        .replacen(&"0".repeat(64), &"1".repeat(64), 1)
        .into_bytes();
    assert_eq!(tampered(&join(&ls), &k), (1, Problem::Genesis));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any single-byte change to a log that ends in a checkpoint is detected: verification fails
    /// or reports the log as not intact.
    #[test]
    fn any_single_byte_change_is_detected(
        entries in 1i64..6,
        every in 1i64..4,
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let k = SigningKey::Ed25519(ed25519_dalek_key());
        let log = build(&k, entries, every);
        let i = pos.index(log.len());
        prop_assume!(log[i] != byte);
        let mut t = log.clone();
        t[i] = byte;
        match verify_bytes(&t, &k.public_key()) {
            Err(VerifyError::Tampered { .. }) => {}
            Err(e) => prop_assert!(false, "unexpected error {e}"),
            Ok(r) => prop_assert!(!r.is_intact(), "change at {i} to {byte:#x} went unnoticed: {r:?}"),
        }
    }
}

/// A fixed Ed25519 key, so the property test does not draw one per case.
fn ed25519_dalek_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[9; 32])
}

proptest! {
    /// Arbitrary bytes never panic the verifier: they verify, or are reported with a line.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let k = SigningKey::Ed25519(ed25519_dalek_key());
        match verify_bytes(&bytes, &k.public_key()) {
            Ok(r) => prop_assert!(r.entries == 0 || bytes.contains(&b'\n')),
            Err(VerifyError::Tampered { line, .. }) => prop_assert!(line >= 1),
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}

#[test]
fn an_airlock_record_names_its_user_and_older_lines_keep_their_form() {
    let k = key();
    let mut chain = Chain::new();
    let mut log = Vec::new();
    let plain = record(1);
    let mut release = record(2);
    release.event = Event::Release;
    release.outcome = Outcome::Done;
    release.by = Some(LocalUser {
        uid: 1000,
        gid: 2000,
        name: Some("alice".into()),
    });
    for r in [&plain, &release] {
        let (line, hash) = chain.entry_line(r).unwrap();
        log.extend_from_slice(&line);
        chain.commit(hash, false);
    }
    let (line, hash) = chain
        .checkpoint_line(&k, datetime!(2026-11-26 10:00:00 UTC))
        .unwrap();
    log.extend_from_slice(&line);
    chain.commit(hash, true);
    assert!(verify_bytes(&log, &k.public_key()).unwrap().is_intact());
    let text = String::from_utf8(log.clone()).unwrap();
    let first = text.lines().next().unwrap();
    assert!(
        !first.contains("\"by\""),
        "a record without a user has no by: {first}"
    );
    let second = text.lines().nth(1).unwrap();
    assert!(
        second.contains(r#""event":"release""#)
            && second.contains(r#""outcome":"done""#)
            && second.contains(r#""by":{"uid":1000,"gid":2000,"name":"alice"}"#),
        "{second}"
    );
    assert_eq!(release.by.as_ref().unwrap().to_string(), "alice (uid 1000)");
    // The user cannot be changed unnoticed.
    let forged = text.replace(r#""uid":1000"#, r#""uid":1001"#);
    assert!(matches!(
        verify_bytes(forged.as_bytes(), &k.public_key()),
        Err(VerifyError::Tampered { line: 2, .. })
    ));
}

#[test]
fn an_admission_record_names_its_approvals_and_they_cannot_be_changed() {
    let k = key();
    let mut chain = Chain::new();
    let mut log = Vec::new();
    let plain = record(1);
    let mut admitted = record(2);
    admitted.approvals = vec![
        Approval {
            store: "community".into(),
            key_id: format!("sha256:{}", "11".repeat(32)),
            organization: "org-b".into(),
            index: 3,
        },
        Approval {
            store: "community".into(),
            key_id: format!("sha256:{}", "22".repeat(32)),
            organization: "org-c".into(),
            index: 7,
        },
    ];
    for r in [&plain, &admitted] {
        let (line, hash) = chain.entry_line(r).unwrap();
        log.extend_from_slice(&line);
        chain.commit(hash, false);
    }
    let (line, hash) = chain
        .checkpoint_line(&k, datetime!(2026-11-26 10:00:00 UTC))
        .unwrap();
    log.extend_from_slice(&line);
    chain.commit(hash, true);
    assert!(verify_bytes(&log, &k.public_key()).unwrap().is_intact());
    let text = String::from_utf8(log.clone()).unwrap();
    let first = text.lines().next().unwrap();
    assert!(
        !first.contains("\"approvals\""),
        "a record without approvals keeps its form: {first}"
    );
    let second = text.lines().nth(1).unwrap();
    let want = format!(
        r#""approvals":[{{"store":"community","key_id":"sha256:{}","organization":"org-b","index":3}},{{"store":"community","key_id":"sha256:{}","organization":"org-c","index":7}}]"#,
        "11".repeat(32),
        "22".repeat(32)
    );
    assert!(second.contains(&want), "{second}");
    let parsed: serde_json::Value = serde_json::from_str(second).unwrap();
    let back: Record = serde_json::from_value(parsed["record"].clone()).unwrap();
    assert_eq!(back, admitted);
    // Neither an approval's organization nor its index can be changed unnoticed, nor can an
    // empty list be written out to look like another form of the same record.
    for forged in [
        text.replace(r#""organization":"org-c""#, r#""organization":"org-b""#),
        text.replace(r#""index":7"#, r#""index":8"#),
        text.replacen("\"reason\":null}", "\"reason\":null,\"approvals\":[]}", 1),
    ] {
        assert!(
            matches!(
                verify_bytes(forged.as_bytes(), &k.public_key()),
                Err(VerifyError::Tampered { line: 1 | 2, .. })
            ),
            "{forged}"
        );
    }
}
