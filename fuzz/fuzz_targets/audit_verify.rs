//! Audit log lines and whole logs (`warden_audit::LogLine::parse`, `verify_bytes`): never panic;
//! a line that parses is in canonical form; a report's counts add up; and a signed log changed
//! anywhere (the input is spliced into it) verifies as intact only if the result is the
//! original cut right after one of its signed checkpoints.
#![no_main]

use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;
use warden_audit::{Chain, Event, LogLine, Outcome, Record, verify_bytes};
use warden_trust::{KeyAlgorithm, PublicKey, SigningKey};

struct Fixture {
    key: PublicKey,
    log: Vec<u8>,
    /// Byte lengths of the prefixes of `log` that end right after a checkpoint line (and 0).
    intact_cuts: Vec<usize>,
}

static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();

fn record(i: i64) -> Record {
    Record {
        time: OffsetDateTime::from_unix_timestamp(1_790_000_000 + i).expect("time"),
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
        signers: vec![],
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

fn fixture() -> Fixture {
    let signer = SigningKey::generate(KeyAlgorithm::Ed25519).expect("key");
    let mut chain = Chain::new();
    let mut log = Vec::new();
    let mut intact_cuts = vec![0];
    for i in 0..5 {
        let (line, hash) = chain.entry_line(&record(i)).expect("entry");
        log.extend_from_slice(&line);
        chain.commit(hash, false);
        if i == 1 || i == 4 {
            let t = OffsetDateTime::from_unix_timestamp(1_790_000_100 + i).expect("time");
            let (line, hash) = chain.checkpoint_line(&signer, t).expect("checkpoint");
            log.extend_from_slice(&line);
            chain.commit(hash, true);
            intact_cuts.push(log.len());
        }
    }
    let key = signer.public_key();
    assert!(
        verify_bytes(&log, &key)
            .expect("fixture verifies")
            .is_intact()
    );
    Fixture {
        key,
        log,
        intact_cuts,
    }
}

fuzz_target!(|data: &[u8]| {
    let f = FIXTURE.get_or_init(fixture);

    // Arbitrary bytes as lines and as a whole log.
    for line in data.split(|&b| b == b'\n') {
        if let Ok(parsed) = LogLine::parse(line) {
            assert_eq!(
                parsed.to_bytes().expect("serialises"),
                line,
                "non-canonical line"
            );
        }
    }
    if let Ok(report) = verify_bytes(data, &f.key) {
        assert_eq!(report.entries, report.covered + report.uncovered);
        assert!(report.lines >= report.entries + report.checkpoints);
        // Nothing in random bytes carries a signature by the fixture's key, unless it is a
        // copy of the fixture's own lines.
        if report.checkpoints > 0 {
            let signed = data.get(..f.intact_cuts[1]);
            assert_eq!(
                signed,
                Some(&f.log[..f.intact_cuts[1]]),
                "a forged checkpoint verified"
            );
        }
    }

    // The input spliced into the signed log: [start (2 bytes), removed length, bytes..].
    let [s0, s1, removed, insert @ ..] = data else {
        return;
    };
    let start = usize::from(u16::from_le_bytes([*s0, *s1])) % (f.log.len() + 1);
    let end = (start + usize::from(*removed)).min(f.log.len());
    let mut altered = f.log[..start].to_vec();
    altered.extend_from_slice(insert);
    altered.extend_from_slice(&f.log[end..]);
    if let Ok(report) = verify_bytes(&altered, &f.key) {
        if report.is_intact() {
            assert!(
                f.intact_cuts
                    .iter()
                    .any(|&cut| altered.as_slice() == &f.log[..cut]),
                "an altered log verified as intact: {:?}",
                String::from_utf8_lossy(&altered)
            );
        }
    }
});
