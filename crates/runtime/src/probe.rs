//! Isolation self-check at node start-up: run a probe image hardened and require it to find
//! only loopback, no routes, a read-only root, no capabilities, `no-new-privileges`, seccomp,
//! a non-root user and no Docker socket (algorithms/hostile/probe.c).
//!
//! The node gets the probe image either by [`import_probe`] (a static probe binary, shipped with
//! the node or built at start-up, wrapped into a one-file image with `docker import`; no
//! registry needed) or from a pinned, verified image ([`ProbeImage::pinned`]).

use std::path::Path;
use std::time::Duration;

use crate::engine::{Engine, EngineError, ImageId};
use crate::pinned::PinnedImage;
use crate::run::{Limits, Outcome, RunSpec, run_image};

/// Repository name given to an imported probe image.
pub const PROBE_REPOSITORY: &str = "warden-probe";
/// How long the probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// Where the probe binary sits in its image.
const PROBE_PATH: &str = "probe";

/// Why isolation could not be confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsolationError {
    #[error("importing the isolation probe image failed: {0}")]
    Import(EngineError),
    #[error("the isolation probe could not run: {0}; the node must not run algorithms")]
    ProbeFailed(String),
    #[error(
        "isolation does not hold on this engine; the node must not run algorithms until it is \
         fixed. Failed checks:\n{failed}"
    )]
    NotIsolated { failed: String },
    #[error("cannot prepare the probe's directories under {dir}: {why}")]
    WorkDir { dir: String, why: String },
}

/// An image that runs the isolation probe as its entrypoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeImage {
    id: ImageId,
}

impl ProbeImage {
    /// Use a pinned, verified image as the probe.
    pub fn pinned(image: &PinnedImage) -> ProbeImage {
        ProbeImage {
            id: image.image_id().clone(),
        }
    }

    pub fn image_id(&self) -> &ImageId {
        &self.id
    }
}

/// Wraps a static probe binary into a one-file image (`docker import` of a tar holding
/// `/probe`, with `ENTRYPOINT ["/probe"]`).
pub async fn import_probe<E: Engine + ?Sized>(
    engine: &E,
    binary: &[u8],
) -> Result<ProbeImage, IsolationError> {
    let tar = single_file_tar(PROBE_PATH, binary, 0o755);
    let changes = vec![format!("ENTRYPOINT [\"/{PROBE_PATH}\"]")];
    let id = engine
        .import_image(tar, PROBE_REPOSITORY, &changes)
        .await
        .map_err(IsolationError::Import)?;
    let id = ImageId::parse(&id).ok_or_else(|| {
        IsolationError::ProbeFailed(format!("the engine gave a malformed image ID `{id}`"))
    })?;
    Ok(ProbeImage { id })
}

/// Runs the probe hardened under `limits`, as any algorithm would run, and requires every check
/// to pass, the limits in force among them.
/// `work_dir` is an existing directory where the probe's empty input and output directories
/// are made.
pub async fn self_check<E: Engine + ?Sized>(
    engine: &E,
    probe: &ProbeImage,
    node_id: &str,
    work_dir: &Path,
    limits: &Limits,
) -> Result<(), IsolationError> {
    let workdir_err = |why: std::io::Error| IsolationError::WorkDir {
        dir: work_dir.display().to_string(),
        why: why.to_string(),
    };
    let input = work_dir.join("probe-input");
    let output = work_dir.join("probe-output");
    for dir in [&input, &output] {
        std::fs::create_dir_all(dir).map_err(workdir_err)?;
    }
    let mut spec = RunSpec::new("isolation-probe", node_id, &input, &output);
    spec.timeout = PROBE_TIMEOUT;
    // The probe runs under the node's own limits and checks that the engine enforces each.
    spec.limits = limits.clone();
    spec.env.extend(probe_expectations(limits));
    let report = run_image(engine, &probe.id, &spec).await;
    let _ = std::fs::remove_dir_all(&input);
    let _ = std::fs::remove_dir_all(&output);
    let logs = report.logs_text();
    match (&report.outcome, report.exit_code) {
        (_, Some(0)) if logs.lines().any(|l| l.starts_with("ok ")) => {
            tracing::info!(node = %node_id, "isolation self-check passed");
            Ok(())
        }
        (Outcome::Failed { reason }, Some(code)) if code != 0 => {
            let failed: Vec<&str> = logs.lines().filter(|l| l.starts_with("FAIL")).collect();
            if failed.is_empty() {
                return Err(IsolationError::ProbeFailed(format!(
                    "{reason}; log: {logs}"
                )));
            }
            tracing::error!(node = %node_id, failed = ?failed, "isolation self-check failed");
            Err(IsolationError::NotIsolated {
                failed: failed.join("\n"),
            })
        }
        (outcome, _) => Err(IsolationError::ProbeFailed(format!(
            "{}; log: {logs}",
            match outcome {
                Outcome::Failed { reason } => reason.to_string(),
                Outcome::Completed { .. } => "the probe printed no checks".into(),
            }
        ))),
    }
}

/// What the probe must find in force, as environment variables.
pub(crate) fn probe_expectations(limits: &Limits) -> [(String, String); 5] {
    [
        ("WARDEN_PROBE_PIDS".into(), limits.pids.to_string()),
        (
            "WARDEN_PROBE_MEMORY".into(),
            limits.memory_bytes.to_string(),
        ),
        (
            "WARDEN_PROBE_MILLICPUS".into(),
            (limits.nano_cpus / 1_000_000).to_string(),
        ),
        (
            "WARDEN_PROBE_SCRATCH".into(),
            limits.scratch_bytes.to_string(),
        ),
        (
            "WARDEN_PROBE_FSIZE".into(),
            limits.output_bytes.saturating_add(1).to_string(),
        ),
    ]
}

/// A POSIX ustar archive holding one regular file owned by root.
pub(crate) fn single_file_tar(name: &str, content: &[u8], mode: u32) -> Vec<u8> {
    let mut header = [0u8; 512];
    let field = |h: &mut [u8; 512], at: usize, bytes: &[u8]| {
        h[at..at + bytes.len()].copy_from_slice(bytes);
    };
    field(&mut header, 0, name.as_bytes());
    field(&mut header, 100, format!("{mode:07o}\0").as_bytes());
    field(&mut header, 108, b"0000000\0");
    field(&mut header, 116, b"0000000\0");
    field(
        &mut header,
        124,
        format!("{:011o}\0", content.len()).as_bytes(),
    );
    field(&mut header, 136, b"00000000000\0");
    field(&mut header, 148, b"        ");
    header[156] = b'0';
    field(&mut header, 257, b"ustar\0");
    field(&mut header, 263, b"00");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    field(&mut header, 148, format!("{sum:06o}\0 ").as_bytes());
    let mut tar = Vec::with_capacity(512 + content.len() + 512 * 3);
    tar.extend_from_slice(&header);
    tar.extend_from_slice(content);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    tar.resize(tar.len() + 1024, 0);
    tar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_is_ustar_with_a_valid_checksum() {
        let tar = single_file_tar("probe", b"hello", 0o755);
        assert_eq!(tar.len(), 512 + 512 + 1024);
        assert_eq!(&tar[257..263], b"ustar\0");
        let stored = u32::from_str_radix(std::str::from_utf8(&tar[148..154]).unwrap(), 8).unwrap();
        let mut h = tar[..512].to_vec();
        h[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, h.iter().map(|&b| u32::from(b)).sum::<u32>());
        assert_eq!(&tar[512..517], b"hello");
    }
}
