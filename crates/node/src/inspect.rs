//! What the data owner reads of a running node besides its health: the policy in force and the
//! audit log (browsed with filters, and verified as `warden audit verify` does), for the local
//! socket's `GET /v1/policy`, `GET /v1/audit` and `GET /v1/audit/verify`. Pure: the node hands in
//! the policy and the log's bytes.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_api::local as wire;
use warden_audit::{Event, Outcome, Record, Verdict};
use warden_policy::{Policy, RepositoryMatch, Rule};
use warden_trust::{KeyId, PublicKey};

use crate::local::LocalError;

/// The policy as the node parsed it: every rule with each condition it states.
pub fn policy_view(policy: &Policy, file: &str, sha256: &str) -> wire::PolicyView {
    wire::PolicyView {
        file: file.to_owned(),
        sha256: sha256.to_owned(),
        version: warden_policy::SUPPORTED_VERSION,
        allow: policy.allow_rules().iter().map(rule_view).collect(),
        deny: policy.deny_rules().iter().map(rule_view).collect(),
    }
}

fn keys(map: &BTreeMap<KeyId, Vec<String>>) -> Vec<wire::KeyView> {
    map.iter()
        .map(|(id, files)| wire::KeyView {
            id: id.to_string(),
            files: files.clone(),
        })
        .collect()
}

fn set(s: &Option<BTreeSet<String>>) -> Option<Vec<String>> {
    s.as_ref().map(|s| s.iter().cloned().collect())
}

fn rule_view(r: &Rule) -> wire::RuleView {
    let (repository, repository_regex) = match &r.repository {
        RepositoryMatch::Exact(repo) => (Some(repo.to_string()), None),
        RepositoryMatch::Regex { source } => (None, Some(source.clone())),
    };
    wire::RuleView {
        name: r.id.name(),
        line: r.id.line,
        repository,
        repository_regex,
        digests: r
            .digests
            .as_ref()
            .map(|d| d.iter().map(ToString::to_string).collect()),
        signed_by: r.signed_by.as_ref().map(|s| wire::SignedByView {
            threshold: s.threshold,
            keys: keys(&s.keys),
            notary: s.notary.as_ref().map(|n| wire::NotaryView {
                trust_store: n.trust_store_file.clone(),
                identities: n.identities.iter().map(ToString::to_string).collect(),
            }),
        }),
        reproduced_by: r.reproduced_by.as_ref().map(|b| wire::ReproducedByView {
            min: b.min,
            patterns: b.patterns.clone(),
            keys: keys(&b.keys),
        }),
        approved_by: r.approved_by.as_ref().map(|a| wire::ApprovedByView {
            store: a.store.clone(),
            min_approvals: a.min_approvals,
            min_organizations: a.min_organizations,
            patterns: a.patterns.clone(),
            reviewers: keys(&a.reviewers),
        }),
        organizations: set(&r.organizations),
        users: set(&r.users),
        collaborations: set(&r.collaborations),
        functions: set(&r.functions),
        output: r.output.to_string(),
    }
}

/// The query of `GET /v1/audit`, as sent; anything else in the query is refused.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Event names, comma-separated (`decision,refuse`).
    pub kind: Option<String>,
    pub run: Option<i64>,
    /// Outcomes, comma-separated (`rejected,denied`).
    pub outcome: Option<String>,
    /// Only lines with a larger seq.
    pub after: Option<u64>,
    /// Only lines with a smaller seq (the next page: the previous answer's `next_before`).
    pub before: Option<u64>,
    /// RFC 3339 times, inclusive.
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<usize>,
}

/// An [`AuditQuery`] checked: what a record must be to be shown.
#[derive(Debug, Clone)]
pub struct AuditFilter {
    kinds: Option<Vec<Event>>,
    outcomes: Option<Vec<Outcome>>,
    run: Option<i64>,
    after: u64,
    before: u64,
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
    limit: usize,
}

fn names<T: serde::de::DeserializeOwned>(
    raw: &str,
    what: &str,
    known: &str,
) -> Result<Vec<T>, LocalError> {
    raw.split(',')
        .map(str::trim)
        .map(|n| {
            serde_json::from_value(serde_json::Value::String(n.to_owned())).map_err(|_| {
                LocalError::bad(format!(
                    "`{}` is not an audit {what}; use one of {known}",
                    n.escape_debug()
                ))
            })
        })
        .collect()
}

fn moment(raw: &str, key: &str) -> Result<OffsetDateTime, LocalError> {
    OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| {
        LocalError::bad(format!(
            "{key} `{}` is not an RFC 3339 time (e.g. 2026-12-02T14:00:00Z)",
            raw.escape_debug()
        ))
    })
}

impl AuditFilter {
    /// Refuses a query it cannot honour exactly, saying why (400).
    pub fn new(q: &AuditQuery) -> Result<AuditFilter, LocalError> {
        let limit = q.limit.unwrap_or(wire::DEFAULT_AUDIT_LIMIT);
        if limit == 0 || limit > wire::MAX_AUDIT_LIMIT {
            return Err(LocalError::bad(format!(
                "limit {limit} is out of range: ask for 1 to {} records a page and page on with \
                 before",
                wire::MAX_AUDIT_LIMIT
            )));
        }
        if q.run.is_some_and(|r| r <= 0) {
            return Err(LocalError::bad("run must be a positive run id"));
        }
        let since = q.since.as_deref().map(|s| moment(s, "since")).transpose()?;
        let until = q.until.as_deref().map(|s| moment(s, "until")).transpose()?;
        Ok(AuditFilter {
            kinds: q
                .kind
                .as_deref()
                .map(|k| {
                    names(
                        k,
                        "event",
                        "decision, run, view, release, refuse, approve, refuse_digest, logs, \
                         store_refused, cancel",
                    )
                })
                .transpose()?,
            outcomes: q
                .outcome
                .as_deref()
                .map(|o| {
                    names(
                        o,
                        "outcome",
                        "admitted, rejected, completed, failed, awaiting_release, \
                         awaiting_approval, done, denied, released, withheld, cancelled",
                    )
                })
                .transpose()?,
            run: q.run,
            after: q.after.unwrap_or(0),
            before: q.before.unwrap_or(u64::MAX),
            since,
            until,
            limit,
        })
    }

    fn admits(&self, r: &Record) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.contains(&r.event))
            && self
                .outcomes
                .as_ref()
                .is_none_or(|o| o.contains(&r.outcome))
            && self.run.is_none_or(|run| r.run_id == Some(run))
            && self.since.is_none_or(|t| r.time >= t)
            && self.until.is_none_or(|t| r.time <= t)
    }
}

/// One line as browsing reads it: its seq and, for an entry, its record (a checkpoint's other
/// members are not needed here; verification reads every member).
#[derive(Deserialize)]
struct Line {
    seq: u64,
    record: Option<Record>,
}

fn words<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn entry(seq: u64, r: Record) -> wire::AuditEntry {
    wire::AuditEntry {
        seq,
        time: r.time.format(&Rfc3339).unwrap_or_default(),
        event: words(&r.event),
        outcome: words(&r.outcome),
        run_id: r.run_id,
        task_id: r.task_id,
        organization: r.organization,
        user: r.user,
        function: r.function,
        image: r.image,
        digest: r.digest,
        rule: r.rule,
        signers: r.signers,
        reason: r.reason,
        by: r.by.map(|b| b.to_string()),
    }
}

/// The records of `log` (the file's bytes) that `filter` admits, newest first, one page. Reads
/// from the end and stops once the page is full. A line that cannot be read is an error that
/// says to verify the log, never skipped.
pub fn audit_page(log: &[u8], filter: &AuditFilter) -> Result<wire::AuditPage, LocalError> {
    // Complete lines only: a torn last line (a crash mid-write) is not a record yet.
    let body = match log.iter().rposition(|b| *b == b'\n') {
        Some(end) => &log[..end],
        None => &[][..],
    };
    let lines = log.iter().filter(|b| **b == b'\n').count() as u64;
    let mut entries = Vec::new();
    let mut next_before = None;
    if lines > 0 {
        for (i, raw) in body.rsplit(|b| *b == b'\n').enumerate() {
            let number = lines - i as u64;
            let line: Line = serde_json::from_slice(raw).map_err(|e| {
                LocalError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "line {number} of the audit log cannot be read ({e}); verify the log \
                         (GET /v1/audit/verify, warden audit verify)"
                    ),
                )
            })?;
            if line.seq <= filter.after {
                break;
            }
            if line.seq >= filter.before {
                continue;
            }
            let Some(record) = line.record else { continue };
            if !filter.admits(&record) {
                continue;
            }
            if entries.len() == filter.limit {
                next_before = entries.last().map(|e: &wire::AuditEntry| e.seq);
                break;
            }
            entries.push(entry(line.seq, record));
        }
    }
    Ok(wire::AuditPage {
        entries,
        next_before,
        lines,
    })
}

/// `log` (the file's bytes) verified under `key` by `warden_audit::verify_bytes`, with `warden
/// audit verify`'s verdict and exit status.
pub fn verification(path: &str, log: &[u8], key: &PublicKey) -> wire::AuditVerification {
    let result = warden_audit::verify_bytes(log, key);
    let verdict = Verdict::of(&result).unwrap_or(Verdict::Tampered);
    let mut v = wire::AuditVerification {
        path: path.to_owned(),
        key: key.id().to_string(),
        status: verdict.as_str().to_owned(),
        exit: verdict.exit(false),
        entries: None,
        covered: None,
        checkpoints: None,
        uncovered: None,
        line: None,
        problems: Vec::new(),
    };
    match result {
        Ok(r) => {
            v.entries = Some(r.entries);
            v.covered = Some(r.covered);
            v.checkpoints = Some(r.checkpoints);
            v.uncovered = Some(r.uncovered);
            v.problems = r.problems();
        }
        Err(e) => {
            v.line = e.line();
            v.problems = vec![e.to_string()];
        }
    }
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use warden_audit::{AuditLog, Options};
    use warden_trust::{KeyAlgorithm, SigningKey};

    use super::*;

    fn record(run: i64, event: Event, outcome: Outcome) -> Record {
        Record {
            time: OffsetDateTime::from_unix_timestamp(1_800_000_000 + run).unwrap(),
            event,
            run_id: Some(run),
            task_id: Some(run),
            organization: None,
            user: None,
            collaboration: None,
            function: None,
            image: "registry.example.org/a/b:1".to_owned(),
            digest: None,
            rule: None,
            signers: Vec::new(),
            input_sha256: None,
            output_sha256: None,
            outcome,
            reason: None,
            by: None,
            approvals: Vec::new(),
        }
    }

    /// A log of six records (runs 1 to 6, decisions on odd runs) and its key.
    fn log() -> (Vec<u8>, PublicKey) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let signer = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let key = signer.public_key();
        let options = Options {
            checkpoint_every: 4,
            fsync: false,
        };
        let mut log = AuditLog::open_with(&path, signer, options).unwrap();
        for run in 1..=6 {
            let (e, o) = if run % 2 == 1 {
                (Event::Decision, Outcome::Rejected)
            } else {
                (Event::Run, Outcome::Completed)
            };
            log.append(record(run, e, o)).unwrap();
        }
        drop(log);
        (std::fs::read(&path).unwrap(), key)
    }

    fn page(log: &[u8], q: AuditQuery) -> Vec<i64> {
        let f = AuditFilter::new(&q).unwrap();
        audit_page(log, &f)
            .unwrap()
            .entries
            .iter()
            .map(|e| e.run_id.unwrap())
            .collect()
    }

    #[test]
    fn pages_are_newest_first_filtered_and_bounded() {
        let (log, key) = log();
        assert_eq!(page(&log, AuditQuery::default()), [6, 5, 4, 3, 2, 1]);
        let kind = AuditQuery {
            kind: Some("decision".into()),
            ..AuditQuery::default()
        };
        assert_eq!(page(&log, kind), [5, 3, 1]);
        let two = AuditQuery {
            limit: Some(2),
            ..AuditQuery::default()
        };
        let p = audit_page(&log, &AuditFilter::new(&two).unwrap()).unwrap();
        // Line 5 is the checkpoint after four entries: run 6 is line 7, run 5 line 6.
        assert_eq!((p.entries[1].seq, p.next_before, p.lines), (6, Some(6), 7));
        let since = AuditQuery {
            since: Some("2027-01-15T08:00:04Z".into()),
            ..AuditQuery::default()
        };
        assert_eq!(page(&log, since), [6, 5, 4]);
        // A torn last line is not a record yet.
        let torn = [&log[..], b"{\"seq\":8,"].concat();
        assert_eq!(page(&torn, AuditQuery::default()).len(), 6);
        for bad in [
            AuditQuery {
                limit: Some(0),
                ..AuditQuery::default()
            },
            AuditQuery {
                limit: Some(wire::MAX_AUDIT_LIMIT + 1),
                ..AuditQuery::default()
            },
            AuditQuery {
                outcome: Some("rejected,maybe".into()),
                ..AuditQuery::default()
            },
        ] {
            assert_eq!(AuditFilter::new(&bad).unwrap_err().status, 400);
        }
        assert_eq!(verification("l", &log, &key).status, "uncovered");
        let mut edited = log.clone();
        let at = edited.windows(8).position(|w| w == b"rejected").unwrap();
        edited[at..at + 8].copy_from_slice(b"admitted");
        let v = verification("l", &edited, &key);
        assert_eq!(
            (v.status.as_str(), v.exit, v.line),
            ("tampered", 1, Some(1))
        );
    }

    #[test]
    fn the_policy_view_names_every_condition() {
        let p = Policy::from_toml_str(
            "version = 1\n[[allow]]\nrepository = \"registry.example.org/a/b\"\n\
             users = [\"rita\"]\n[allow.output]\nmax_bytes = 10\n\n[[deny]]\n\
             repository_regex = '.+/x/.+'\n",
            "policy.toml",
            |f| Err(warden_policy::KeyLoadError(format!("no key {f}"))),
        )
        .unwrap();
        let v = policy_view(&p, "policy.toml", "sha256:00");
        assert_eq!(v.allow[0].name, "allow[1]");
        assert_eq!(v.allow[0].users, Some(vec!["rita".to_owned()]));
        assert_eq!(v.allow[0].organizations, None);
        assert!(
            v.allow[0].output.contains("max_bytes 10"),
            "{:?}",
            v.allow[0]
        );
        assert_eq!(
            (v.deny[0].line, v.deny[0].repository_regex.as_deref()),
            (8, Some(".+/x/.+"))
        );
    }
}
