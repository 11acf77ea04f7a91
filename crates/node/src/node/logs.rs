//! What a run's algorithm printed, at the run's end: kept at the node (always, in
//! `<spool>/logs/`), and released to the requester only when the run's output rules say
//! `logs = "release"` (and none says `"withhold"`), sealed exactly like a result (to the input's
//! reply key, kind `logs`, bound to the run), within `max_bytes`, never in plaintext, and under
//! `release = "manual"` only with a released result. Every decision is an audit record
//! (`logs`, released or withheld with the reason) written before anything leaves; logs over
//! `max_bytes` are withheld without failing the run.

use time::OffsetDateTime;
use warden_audit::{Event as AuditEvent, Outcome as AuditOutcome, Record};

use super::airlock::record_of;
use super::execute::seal_for_requester;
use super::{Node, sha256_hex};
use crate::spool::RunRecord;

/// Why a run's logs are not released, or `None` when they may be sealed.
fn withheld_because(
    rules: &Result<warden_policy::OutputRules, String>,
    record: &RunRecord,
    held_back: Option<String>,
    len: u64,
) -> Option<String> {
    let rules = match rules {
        Ok(r) => r,
        Err(e) => return Some(format!("the run's output rules cannot be known: {e}")),
    };
    if let Some(why) = rules.logs_withheld_because() {
        return Some(why);
    }
    if record.plaintext {
        return Some(
            "the collaboration is plaintext at this node, and logs are released only sealed; \
             the logs stay at the node"
                .into(),
        );
    }
    if let Some(why) = held_back {
        return Some(format!("{why}; the logs stay at the node"));
    }
    if let Err(v) = rules.check_size(len) {
        return Some(format!(
            "the logs are {len} bytes: {v}; the run is not failed for it"
        ));
    }
    None
}

impl Node {
    /// Releases or withholds a run's logs (see the module's text); `held_back` withholds them
    /// for a reason of the caller's (the airlock's). The audit record is `template` (the run's
    /// own, naming who asked) made a `logs` record, else one from the spool's record. Nothing to
    /// do for a run that printed nothing the node kept (no container ran). False when the
    /// record could not be written: nothing was released, and the caller fails closed.
    pub(super) fn settle_logs(
        &self,
        record: &RunRecord,
        template: Option<&Record>,
        held_back: Option<String>,
    ) -> bool {
        let s = &self.inner;
        let run = record.run_id;
        let logs = match s.spool.log(run) {
            Ok(Some(l)) => l,
            Ok(None) => return true,
            Err(e) => {
                tracing::error!(run, error = %e, "cannot read the run's log; it is not released");
                return true;
            }
        };
        let rules = self.rules_of(record);
        let len = u64::try_from(logs.len()).unwrap_or(u64::MAX);
        let mut why = withheld_because(&rules, record, held_back, len);
        let mut sealed = None;
        if why.is_none() {
            match seal_for_requester(&s.secret, record, warden_seal::Kind::Logs, &logs) {
                Ok(b) => match s.spool.put_sealed_logs(run, &b) {
                    Ok(()) => sealed = Some(b),
                    Err(e) => why = Some(format!("the sealed logs could not be spooled: {e}")),
                },
                Err(e) => {
                    why = Some(format!(
                        "the logs could not be sealed: {}",
                        e.trim_start_matches("cannot seal the result: ")
                    ));
                }
            }
        }
        let outcome = if sealed.is_some() {
            AuditOutcome::Released
        } else {
            AuditOutcome::Withheld
        };
        let mut a = match template {
            Some(t) => {
                let mut a = t.clone();
                a.event = AuditEvent::Logs;
                a.outcome = outcome;
                a.input_sha256 = None;
                a
            }
            None => record_of(AuditEvent::Logs, Some(record), outcome),
        };
        a.time = OffsetDateTime::now_utc();
        match &sealed {
            Some(b) => {
                a.output_sha256 = Some(sha256_hex(b));
                let by = rules
                    .as_ref()
                    .ok()
                    .and_then(|r| r.logs.as_ref())
                    .map(|l| l.rules.iter().cloned().collect::<Vec<_>>().join(" and "))
                    .unwrap_or_default();
                a.reason = Some(format!(
                    "{len} bytes sealed for the requester (logs = \"release\" of {by})"
                ));
            }
            None => {
                a.output_sha256 = Some(sha256_hex(&logs));
                a.reason = why.clone();
            }
        }
        // Nothing is released before its record is on disk.
        let audited = self.audit(a).is_ok();
        if !audited && sealed.is_some() {
            if let Err(e) = s.spool.remove_sealed_logs(run) {
                tracing::error!(run, error = %e, "cannot drop the unaudited sealed logs");
            }
            sealed = None;
        }
        match (&sealed, &why) {
            (Some(_), _) => {
                tracing::info!(run, bytes = len, "logs released, sealed for the requester")
            }
            (None, Some(why)) => tracing::info!(run, bytes = len, reason = %why, "logs withheld"),
            (None, None) => tracing::warn!(run, "logs not released: the audit log is unavailable"),
        }
        if !audited {
            tracing::warn!(run, "the logs' audit record could not be written");
        }
        audited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Result<warden_policy::OutputRules, String> {
        warden_policy::OutputRules::from_toml_str(text, "policy.toml", "allow[1]", |f| {
            Err(warden_policy::FileLoadError(format!("no file {f}")))
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn logs_are_released_only_sealed_within_max_bytes_and_not_held_back() {
        let sealed = RunRecord::received(1, 1, 1, 1, "x");
        let release = rules("logs = \"release\"\nmax_bytes = 10\n");
        assert_eq!(withheld_because(&release, &sealed, None, 10), None);
        let why = withheld_because(&release, &sealed, None, 11).unwrap();
        assert!(
            why.contains("max_bytes = 10") && why.contains("not failed"),
            "{why}"
        );
        let why = withheld_because(&release, &sealed, Some("held".into()), 1).unwrap();
        assert!(why.starts_with("held;"), "{why}");
        let mut plain = RunRecord::received(1, 1, 1, 1, "x");
        plain.plaintext = true;
        let why = withheld_because(&release, &plain, None, 1).unwrap();
        assert!(why.contains("plaintext"), "{why}");
        // The policy's word comes first, and without it nothing is released.
        let why = withheld_because(&rules(""), &sealed, None, 1).unwrap();
        assert!(why.contains("no rule sets logs"), "{why}");
        let why = withheld_because(&Err("gone".into()), &sealed, None, 1).unwrap();
        assert!(why.contains("gone"), "{why}");
    }
}
