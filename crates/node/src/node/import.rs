//! `warden image import` at the node: an image archive verified and loaded (crate::images).

use std::path::Path;
use std::sync::Arc;

use axum::http::StatusCode;
use futures_util::StreamExt as _;
use warden_api::local as wire;
use warden_audit::{Event as AuditEvent, LocalUser, Outcome as AuditOutcome, Record};
use warden_policy::Requester;

use super::airlock::record_of;
use super::{AUDIT_UNAVAILABLE, Node};
use crate::images::Images;
use crate::local::LocalError;

impl Node {
    /// Imports the image archive streamed in `body` for `who`, deciding as a run of
    /// `requester` would be decided; every outcome is audited.
    pub(crate) async fn local_import(
        &self,
        who: &LocalUser,
        requester: Requester,
        body: axum::body::Body,
    ) -> Result<wire::Imported, LocalError> {
        let mut audit = record_of(AuditEvent::Import, None, AuditOutcome::Denied);
        audit.organization = requester.organization.clone();
        audit.user = requester.user.clone();
        audit.collaboration = requester.collaboration.clone();
        audit.function = requester.function.clone();
        audit.by = Some(who.clone());
        let Some(images) = self.inner.images.clone() else {
            let why = "this node is not offline: it pulls images from their registries and imports none; set [registry] offline = true to run imported images only";
            return Err(self.import_denied(audit, StatusCode::CONFLICT, why.into()));
        };
        let _one = images.lock.lock().await;
        let staging = images.staging();
        let upload = staging.with_extension("tar");
        let outcome = match receive(body, &upload).await {
            Ok(()) => {
                self.import_staged(&images, &upload, &staging, requester, &mut audit)
                    .await
            }
            Err(why) => Err((StatusCode::BAD_REQUEST, why)),
        };
        let _ = std::fs::remove_file(&upload);
        let _ = std::fs::remove_dir_all(&staging);
        match outcome {
            Ok(imported) => {
                audit.outcome = AuditOutcome::Done;
                audit.reason = None;
                self.audit(audit)
                    .map_err(|_| LocalError::unavailable(AUDIT_UNAVAILABLE))?;
                tracing::info!(image = %imported.image, digest = %imported.digest, by = %who, "image imported");
                Ok(imported)
            }
            Err((status, why)) => Err(self.import_denied(audit, status, why)),
        }
    }

    fn import_denied(&self, mut audit: Record, status: StatusCode, why: String) -> LocalError {
        tracing::warn!(reason = %why, "image import refused");
        audit.outcome = AuditOutcome::Denied;
        audit.reason = Some(why.clone());
        if self.audit(audit).is_err() {
            return LocalError::unavailable(AUDIT_UNAVAILABLE);
        }
        LocalError::new(status, why)
    }

    async fn import_staged(
        &self,
        images: &Arc<Images>,
        upload: &Path,
        staging: &Path,
        requester: Requester,
        audit: &mut Record,
    ) -> Result<wire::Imported, (StatusCode, String)> {
        let s = &self.inner;
        let bad = |why: String| (StatusCode::BAD_REQUEST, why);
        let refused = |why: String| (StatusCode::UNPROCESSABLE_ENTITY, why);
        let started = std::time::Instant::now();
        let (images2, upload2, staging2) = (images.clone(), upload.to_owned(), staging.to_owned());
        let (layout, client, reference) =
            tokio::task::spawn_blocking(move || images2.stage(&upload2, &staging2))
                .await
                .map_err(|e| bad(e.to_string()))?
                .map_err(|e| bad(format!("the archive is refused: {e}")))?;
        audit.image = reference.to_string();
        let unpacked = started.elapsed();
        let checked = s
            .gate
            .precheck(&reference.to_string(), &requester)
            .map_err(|r| refused(format!("{} ({})", r.reason, r.stage.as_str())))?;
        let admitted = match s.gate.admit_import(&client, checked).await {
            Ok(a) => a,
            Err(r) => return Err(refused(super::admit::note_rejection(audit, &r))),
        };
        let admission = started.elapsed() - unpacked;
        audit.digest = Some(admitted.digest().to_string());
        super::admit::note_admission(audit, &s.gate, &admitted);
        // Load from the staged layout, then keep it: a run pins from the kept one.
        let pinned =
            crate::admission::pin_from_layout(&s.engine, &admitted, &layout, &images.scratch())
                .await
                .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))?;
        let loaded = started.elapsed() - unpacked - admission;
        let images2 = images.clone();
        tokio::task::spawn_blocking(move || images2.merge(&layout))
            .await
            .map_err(|e| bad(e.to_string()))?
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e))?;
        tracing::info!(
            digest = %admitted.digest(),
            unpack_ms = unpacked.as_secs_f64() * 1e3,
            admission_ms = admission.as_secs_f64() * 1e3,
            load_ms = loaded.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            "import verified and loaded"
        );
        let evidence = admitted.evidence();
        Ok(wire::Imported {
            image: reference.to_string(),
            digest: admitted.digest().to_string(),
            image_id: pinned.image_id().to_string(),
            rule: admitted.rule().name(),
            signers: audit.signers.clone(),
            approvals: evidence.approvals(),
            builds: evidence
                .builds
                .iter()
                .map(|b| format!("{} built {} {}", b.key, b.commit, b.path))
                .collect(),
            not_counted: evidence.not_counted.clone(),
        })
    }
}

/// Streams the request body into `path`, at most [`wire::MAX_IMPORT_BYTES`].
async fn receive(body: axum::body::Body, path: &Path) -> Result<(), String> {
    use tokio::io::AsyncWriteExt as _;
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("cannot keep the upload at {}: {e}", path.display()))?;
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("reading the upload: {e}"))?;
        total += chunk.len() as u64;
        if total > wire::MAX_IMPORT_BYTES {
            return Err(format!(
                "the archive is larger than {} bytes",
                wire::MAX_IMPORT_BYTES
            ));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| format!("cannot keep the upload: {e}"))?;
    }
    file.sync_all()
        .await
        .map_err(|e| format!("cannot keep the upload: {e}"))?;
    if total == 0 {
        return Err("the upload is empty; send an archive made by `warden image export`".into());
    }
    Ok(())
}
