//! What the client checks in the server's answers, as pure functions: organization keys
//! against pins, the created task against what was sent, every run against the task and the
//! resolved digest, and every result against the run it claims to be.

use std::collections::BTreeMap;

use warden_api::{Collaboration, Organization, Run, RunState, TaskDetail};
use warden_seal::{Fingerprint, Kind, PublicKey, ResultBinding};

use crate::{ClientError, Researcher, Target, TaskRecord};

/// Checks an organization as the server describes it against the pins.
pub fn check_pin(
    org: &Organization,
    pins: &BTreeMap<String, Fingerprint>,
    profile: &str,
) -> Result<Target, ClientError> {
    let key = PublicKey::from_base64(&org.public_key).map_err(|e| ClientError::Malformed {
        id: org.id,
        message: e.to_string(),
    })?;
    let Some(pinned) = pins.get(&org.name) else {
        return Err(ClientError::NotPinned {
            name: org.name.clone(),
            profile: profile.to_owned(),
        });
    };
    let got = key.fingerprint();
    if got != *pinned {
        return Err(ClientError::Changed {
            id: org.id,
            name: org.name.clone(),
            pinned: pinned.to_string(),
            got: got.to_string(),
        });
    }
    Ok(Target {
        id: org.id,
        name: org.name.clone(),
        key,
    })
}

/// A run listed under `task` must belong to it, and to its collaboration.
pub fn check_run(task: &TaskDetail, run: &Run) -> Result<(), ClientError> {
    if run.task_id != task.task.id || run.collaboration_id != task.task.collaboration_id {
        return Err(ClientError::Unexpected {
            what: format!("reading task {}", task.task.id),
            message: format!(
                "run {} belongs to task {} in collaboration {}, not to task {} in collaboration {}",
                run.id, run.task_id, run.collaboration_id, task.task.id, task.task.collaboration_id
            ),
        });
    }
    Ok(())
}

/// The server's task must be the one recorded: its id, the nonce this client chose and the
/// image it asked for.
pub fn check_task(task: &TaskDetail, record: &TaskRecord) -> Result<(), ClientError> {
    let t = &task.task;
    if t.id != record.task_id {
        return Err(ClientError::Unexpected {
            what: format!("reading task {}", record.task_id),
            message: format!("the server answered task {}", t.id),
        });
    }
    let echo = |what: &'static str, got: &str, sent: &str| ClientError::Echo {
        task: t.id,
        what,
        sent: sent.to_owned(),
        got: got.to_owned(),
    };
    match &t.nonce {
        Some(n) if *n == record.nonce => {}
        Some(n) => return Err(echo("nonce", n, &record.nonce)),
        None => return Err(echo("nonce", "(none)", &record.nonce)),
    }
    if t.image != record.image {
        return Err(echo("image", &t.image, &record.image));
    }
    Ok(())
}

/// The task the server created must have exactly one run per target, in the collaboration, and
/// echo what was sent (see [`check_task`]).
pub fn check_created(
    task: &TaskDetail,
    collab: &Collaboration,
    targets: &[Target],
    record: &TaskRecord,
) -> Result<(), ClientError> {
    let mut got: Vec<i64> = task.runs.iter().map(|r| r.organization_id).collect();
    let mut want: Vec<i64> = targets.iter().map(|t| t.id).collect();
    got.sort_unstable();
    want.sort_unstable();
    if task.task.collaboration_id != collab.id || got != want {
        return Err(ClientError::Unexpected {
            what: "creating the task".to_owned(),
            message: format!(
                "task {} has runs at organizations {got:?} in collaboration {}, asked for \
                 {want:?} in collaboration {}",
                task.task.id, task.task.collaboration_id, collab.id
            ),
        });
    }
    task.runs.iter().try_for_each(|r| check_run(task, r))?;
    check_task(task, record)
}

/// A run must report the digest this task's image resolved to: a completed run must report
/// one, and any run that reports one must report that one. A rejected run is exempt (its reason
/// says what the node refused, e.g. a digest of its own).
pub fn check_run_digest(
    run: &Run,
    organization: &str,
    record: &TaskRecord,
) -> Result<(), ClientError> {
    if run.state == RunState::Rejected {
        return Ok(());
    }
    let mismatch = |got: &str| ClientError::RunDigest {
        run: run.id,
        organization: organization.to_owned(),
        expected: record.digest.clone(),
        got: got.to_owned(),
    };
    match &run.digest {
        Some(d) if *d == record.digest => Ok(()),
        Some(d) => Err(mismatch(d)),
        None if run.state == RunState::Completed => Err(mismatch("(none)")),
        None => Ok(()),
    }
}

/// Opens the sealed result of `run` with the researcher's key, sealed by `producer` (the run's
/// organization, its key checked against the pin), and checks what it is bound to: the task's
/// nonce, this run, this organization and the resolved digest. The run itself must report
/// that digest too.
pub fn open_result(
    sealed: &[u8],
    researcher: &Researcher,
    producer: &Target,
    run: &Run,
    record: &TaskRecord,
) -> Result<Vec<u8>, ClientError> {
    open_sealed(Kind::Result, sealed, researcher, producer, run, record)
}

/// Opens the released logs of `run` exactly as [`open_result`] opens its result, but as kind
/// `logs`: logs never open as a result nor a result as logs, and logs bound to another run,
/// nonce, organization or digest are refused.
pub fn open_logs(
    sealed: &[u8],
    researcher: &Researcher,
    producer: &Target,
    run: &Run,
    record: &TaskRecord,
) -> Result<Vec<u8>, ClientError> {
    open_sealed(Kind::Logs, sealed, researcher, producer, run, record)
}

fn open_sealed(
    kind: Kind,
    sealed: &[u8],
    researcher: &Researcher,
    producer: &Target,
    run: &Run,
    record: &TaskRecord,
) -> Result<Vec<u8>, ClientError> {
    if run.organization_id != producer.id {
        return Err(ClientError::Unexpected {
            what: format!("opening the result of run {}", run.id),
            message: format!(
                "run {} is at organization {}, not at `{}` (id {})",
                run.id, run.organization_id, producer.name, producer.id
            ),
        });
    }
    check_run_digest(run, &producer.name, record)?;
    let (binding, body) =
        warden_seal::open_result(researcher.secret(), &producer.key, kind, sealed).map_err(
            |e| ClientError::Open {
                run: run.id,
                organization: producer.name.clone(),
                message: e.to_string(),
            },
        )?;
    check_binding(&binding, run.id, &producer.name, record)?;
    Ok(body.to_vec())
}

fn check_binding(
    b: &ResultBinding,
    run: i64,
    organization: &str,
    record: &TaskRecord,
) -> Result<(), ClientError> {
    let mismatch = |what: &'static str, expected: String, got: String| {
        Err(ClientError::ResultMismatch {
            run,
            organization: organization.to_owned(),
            what,
            expected,
            got,
        })
    };
    if b.nonce != record.nonce {
        return mismatch("the task nonce", record.nonce.clone(), b.nonce.clone());
    }
    if b.run_id != run {
        return mismatch("run", run.to_string(), b.run_id.to_string());
    }
    if b.organization != organization {
        return mismatch(
            "organization",
            organization.to_owned(),
            b.organization.clone(),
        );
    }
    if b.digest != record.digest {
        return mismatch("the image digest", record.digest.clone(), b.digest.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use warden_seal::{Certificate, SecretKey};
    use warden_trust::{KeyAlgorithm, SigningKey};

    use super::*;

    fn org(id: i64, name: &str, key: &str) -> Organization {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": name, "public_key": key, "created_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn a_key_is_used_only_when_it_matches_its_pin() {
        let a = SecretKey::generate().public_key();
        let other = SecretKey::generate().public_key();
        let pins: BTreeMap<String, Fingerprint> =
            [("hospital-a".to_owned(), a.fingerprint())].into();
        let t = check_pin(&org(1, "hospital-a", &a.to_base64()), &pins, "p.toml").unwrap();
        assert_eq!((t.id, t.name.as_str(), t.key), (1, "hospital-a", a));

        let e = check_pin(&org(1, "hospital-a", &other.to_base64()), &pins, "p.toml");
        let e = e.unwrap_err().to_string();
        assert!(
            e.contains(&other.fingerprint().to_string())
                && e.contains(&a.fingerprint().to_string())
                && e.contains("nothing was sent"),
            "{e}"
        );
        // The pin is by name: the pinned key under another name is not trusted.
        let e = check_pin(&org(2, "hospital-b", &a.to_base64()), &pins, "p.toml");
        let e = e.unwrap_err().to_string();
        assert!(e.contains("no pinned key") && e.contains("p.toml"), "{e}");
        let e = check_pin(&org(1, "hospital-a", "AAAA"), &pins, "p.toml");
        assert!(
            matches!(e, Err(ClientError::Malformed { id: 1, .. })),
            "{e:?}"
        );
    }

    const NONCE: &str = "0123456789abcdef0123456789abcdef";

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn record() -> TaskRecord {
        TaskRecord {
            server: "http://127.0.0.1:7600".into(),
            task_id: 7,
            nonce: NONCE.into(),
            image: "registry.example.org/warden/mean:1.0".into(),
            digest: digest('a'),
        }
    }

    /// A task 7 in collaboration `collab` with runs (id, task, collaboration, organization).
    fn detail(collab: i64, runs: &[(i64, i64, i64, i64)]) -> TaskDetail {
        let runs: Vec<serde_json::Value> = runs
            .iter()
            .map(|(id, task_id, collab, org)| {
                serde_json::json!({
                    "id": id, "task_id": task_id, "collaboration_id": collab,
                    "organization_id": org, "state": "pending", "has_result": false,
                    "created_at": "2026-01-01T00:00:00Z", "admitted_at": null,
                    "started_at": null, "finished_at": null, "acked_at": null
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "task": {"id": 7, "collaboration_id": collab, "name": "",
                     "image": "registry.example.org/warden/mean:1.0", "nonce": NONCE,
                     "organization_id": 1, "created_at": "2026-01-01T00:00:00Z"},
            "runs": runs
        }))
        .unwrap()
    }

    fn collab() -> Collaboration {
        serde_json::from_value(serde_json::json!({
            "id": 3, "name": "study", "encrypted": true, "organizations": [1, 2],
            "created_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    fn target(id: i64, key: PublicKey) -> Target {
        Target {
            id,
            name: format!("o{id}"),
            key,
        }
    }

    #[test]
    fn a_created_task_must_have_one_run_per_target_and_echo_what_was_sent() {
        let key = SecretKey::generate().public_key();
        let both = [target(1, key), target(2, key)];
        let ok = detail(3, &[(10, 7, 3, 2), (11, 7, 3, 1)]);
        check_created(&ok, &collab(), &both, &record()).unwrap();
        for bad in [
            // a target is missing
            detail(3, &[(10, 7, 3, 1)]),
            // another organization
            detail(3, &[(10, 7, 3, 1), (11, 7, 3, 9)]),
            // another collaboration
            detail(4, &[(10, 7, 4, 1), (11, 7, 4, 2)]),
            // a run of another task
            detail(3, &[(10, 7, 3, 1), (11, 8, 3, 2)]),
            // a run of another collaboration
            detail(3, &[(10, 7, 3, 1), (11, 7, 5, 2)]),
        ] {
            let e = check_created(&bad, &collab(), &both, &record());
            assert!(matches!(e, Err(ClientError::Unexpected { .. })), "{bad:?}");
        }
        // The nonce: another, or none at all.
        let mut t = ok.clone();
        t.task.nonce = Some("f".repeat(32));
        let e = check_created(&t, &collab(), &both, &record()).unwrap_err();
        assert!(e.is_verification_failure());
        let e = e.to_string();
        assert!(
            e.contains("task 7") && e.contains("nonce") && e.contains(NONCE),
            "{e}"
        );
        t.task.nonce = None;
        let e = check_task(&t, &record()).unwrap_err().to_string();
        assert!(e.contains("nonce `(none)`"), "{e}");
        // The image.
        let mut t = ok.clone();
        t.task.image = "registry.example.org/warden/evil:1.0".into();
        let e = check_task(&t, &record()).unwrap_err().to_string();
        assert!(
            e.contains("image `registry.example.org/warden/evil:1.0`"),
            "{e}"
        );
        // Another task altogether.
        let mut t = ok;
        t.task.id = 8;
        assert!(matches!(
            check_task(&t, &record()),
            Err(ClientError::Unexpected { .. })
        ));
    }

    fn run(id: i64, org: i64, state: &str, digest: Option<&str>) -> Run {
        serde_json::from_value(serde_json::json!({
            "id": id, "task_id": 7, "collaboration_id": 3, "organization_id": org,
            "state": state, "digest": digest, "has_result": state == "completed",
            "created_at": "2026-01-01T00:00:00Z", "admitted_at": null,
            "started_at": null, "finished_at": null, "acked_at": null
        }))
        .unwrap()
    }

    #[test]
    fn every_run_must_report_the_resolved_digest() {
        let r = record();
        let a = digest('a');
        let b = digest('b');
        for (state, d, ok) in [
            ("completed", Some(a.as_str()), true),
            ("completed", Some(b.as_str()), false),
            ("completed", None, false),
            ("running", Some(a.as_str()), true),
            ("running", Some(b.as_str()), false),
            ("admitted", Some(b.as_str()), false),
            ("failed", Some(b.as_str()), false),
            ("pending", None, true),
            ("failed", None, true),
            // A rejection's reason speaks for itself.
            ("rejected", Some(b.as_str()), true),
            ("rejected", None, true),
        ] {
            let got = check_run_digest(&run(10, 2, state, d), "hospital-b", &r);
            assert_eq!(got.is_ok(), ok, "{state} {d:?}: {got:?}");
            if let Err(e) = got {
                assert!(e.is_verification_failure());
                let e = e.to_string();
                assert!(
                    e.contains("run 10 at `hospital-b`") && e.contains(&a),
                    "{e}"
                );
            }
        }
    }

    struct Keys {
        researcher: Researcher,
        node: SecretKey,
        producer: Target,
    }

    fn keys() -> Keys {
        let ca = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let sk = SecretKey::generate();
        let cert =
            Certificate::issue(&ca, "hospital-a", "rita", &sk.public_key(), 0, 86_400).unwrap();
        let node = SecretKey::generate();
        let producer = Target {
            id: 2,
            name: "hospital-b".into(),
            key: node.public_key(),
        };
        Keys {
            researcher: Researcher::new(sk, cert).unwrap(),
            node,
            producer,
        }
    }

    fn binding(run_id: i64) -> ResultBinding {
        ResultBinding {
            nonce: NONCE.into(),
            run_id,
            organization: "hospital-b".into(),
            digest: digest('a'),
        }
    }

    fn seal(by: &SecretKey, to: &PublicKey, b: &ResultBinding) -> Vec<u8> {
        warden_seal::seal_result(by, Kind::Result, to, b, b"42").unwrap()
    }

    /// Opening `sealed` as the result of run 10 at hospital-b fails, saying `needle`.
    #[track_caller]
    fn refused(k: &Keys, sealed: &[u8], run: &Run, needle: &str) {
        let e = open_result(sealed, &k.researcher, &k.producer, run, &record()).unwrap_err();
        assert!(e.is_verification_failure(), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("run 10 at `hospital-b`") && e.contains(needle),
            "wanted `{needle}`: {e}"
        );
    }

    #[test]
    fn a_result_opens_only_from_the_pinned_producer_bound_to_this_run() {
        let k = keys();
        let me = k.researcher.public_key();
        let done = run(10, 2, "completed", Some(&digest('a')));
        let good = seal(&k.node, &me, &binding(10));
        assert_eq!(
            open_result(&good, &k.researcher, &k.producer, &done, &record()).unwrap(),
            b"42"
        );

        // Sealed by another key (whoever holds the researcher's public key can seal to it).
        let mallory = SecretKey::generate();
        refused(
            &k,
            &seal(&mallory, &me, &binding(10)),
            &done,
            "does not open",
        );
        // Sealed for another researcher.
        let other = SecretKey::generate().public_key();
        refused(
            &k,
            &seal(&k.node, &other, &binding(10)),
            &done,
            "does not open",
        );
        // Logs are not a result; an input is not either; nor are junk bytes.
        let logs =
            warden_seal::seal_result(&k.node, Kind::Logs, &me, &binding(10), b"log").unwrap();
        refused(&k, &logs, &done, "does not open");
        refused(&k, b"\x02junk", &done, "does not open");
        refused(&k, &good[..good.len() - 1], &done, "does not open");

        // Genuine, but bound to something else: another task's nonce, another run (a replay),
        // another organization, another image.
        let mut b = binding(10);
        b.nonce = "f".repeat(32);
        refused(&k, &seal(&k.node, &me, &b), &done, "the task nonce");
        refused(
            &k,
            &seal(&k.node, &me, &binding(11)),
            &done,
            "bound to run `11`",
        );
        let mut b = binding(10);
        b.organization = "hospital-c".into();
        refused(
            &k,
            &seal(&k.node, &me, &b),
            &done,
            "organization `hospital-c`",
        );
        let mut b = binding(10);
        b.digest = digest('b');
        refused(&k, &seal(&k.node, &me, &b), &done, "the image digest");

        // The run reports another digest than the one resolved: refused before opening.
        let other_digest = run(10, 2, "completed", Some(&digest('b')));
        refused(&k, &good, &other_digest, "reports the image digest");
        // A run of another organization than the producer.
        let e = open_result(
            &good,
            &k.researcher,
            &k.producer,
            &run(10, 1, "completed", Some(&digest('a'))),
            &record(),
        )
        .unwrap_err();
        assert!(matches!(e, ClientError::Unexpected { .. }), "{e}");
    }

    #[test]
    fn logs_open_only_as_logs_of_their_own_run() {
        let k = keys();
        let me = k.researcher.secret().public_key();
        let done = run(10, 2, "failed", Some(&digest('a')));
        let logs = |b: &ResultBinding| {
            warden_seal::seal_result(&k.node, Kind::Logs, &me, b, b"line 1\n").unwrap()
        };
        let open = |sealed: &[u8]| open_logs(sealed, &k.researcher, &k.producer, &done, &record());
        assert_eq!(open(&logs(&binding(10))).unwrap(), b"line 1\n");
        // A result is not logs.
        let e = open(&seal(&k.node, &me, &binding(10))).unwrap_err();
        assert!(e.is_verification_failure(), "{e}");
        assert!(e.to_string().contains("does not open"), "{e}");
        // Another run's logs (a swap by the server) are refused.
        let e = open(&logs(&binding(11))).unwrap_err();
        assert!(e.to_string().contains("bound to run `11`"), "{e}");
        let mut b = binding(10);
        b.nonce = "f".repeat(32);
        assert!(open(&logs(&b)).unwrap_err().is_verification_failure());
        // Sealed by another key than the pinned one.
        let mallory = SecretKey::generate();
        let forged =
            warden_seal::seal_result(&mallory, Kind::Logs, &me, &binding(10), b"x").unwrap();
        assert!(open(&forged).unwrap_err().is_verification_failure());
    }
}
