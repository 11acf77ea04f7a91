//! The policy in force and the audit log, read for the local socket (`GET /v1/policy`,
//! `GET /v1/audit`, `GET /v1/audit/verify`). Nothing here changes the node or writes a record.

use warden_api::local as wire;

use super::Node;
use crate::inspect::{self, AuditFilter};
use crate::local::LocalError;

impl Node {
    /// The policy the node loaded at start, every rule as it was parsed.
    pub(crate) fn local_policy(&self) -> wire::PolicyView {
        let s = &self.inner;
        inspect::policy_view(
            s.gate.policy(),
            &s.config.node.policy.display().to_string(),
            s.gate.policy_sha256(),
        )
    }

    /// The log's bytes, read while no record is being appended, so that its last line is whole.
    fn audit_bytes(&self) -> Result<Vec<u8>, LocalError> {
        let s = &self.inner;
        let _appending = s.audit.lock().unwrap_or_else(|p| p.into_inner());
        std::fs::read(&s.audit_path).map_err(|e| {
            LocalError::unavailable(format!(
                "cannot read the audit log {}: {e}",
                s.audit_path.display()
            ))
        })
    }

    /// One page of audit records, newest first (blocking: call it off the async threads).
    pub(crate) fn local_audit(&self, filter: &AuditFilter) -> Result<wire::AuditPage, LocalError> {
        let bytes = self.audit_bytes()?;
        inspect::audit_page(&bytes, filter)
    }

    /// The log verified under the node's own audit key, as `warden audit verify` would
    /// (blocking: call it off the async threads).
    pub(crate) fn local_verify(&self) -> Result<wire::AuditVerification, LocalError> {
        let s = &self.inner;
        let key = warden_trust::SigningKey::from_pkcs8_der(&s.audit_signer)
            .map_err(|e| {
                LocalError::unavailable(format!("the node's audit key cannot be read: {e}"))
            })?
            .public_key();
        let bytes = self.audit_bytes()?;
        Ok(inspect::verification(
            &s.audit_path.display().to_string(),
            &bytes,
            &key,
        ))
    }
}
