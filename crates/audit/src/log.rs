//! The log file: open (resume, repair a torn tail), append, checkpoint; verify and read a file.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use warden_trust::keys::{PublicKey, SigningKey};

use crate::chain::{
    Chain, EntryHash, LogLine, MAX_LINE, Problem, Report, TornTail, Verifier, VerifyError,
};
use crate::record::Record;

/// Why the log could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(
        "cannot {action} audit log {path}: {source}; check the path, permissions and free space"
    )]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "audit log {path} is locked by another process; run one node per audit log, or stop the other one"
    )]
    Locked { path: PathBuf },
    #[error(
        "refusing to open audit log {path}: {source}; keep the file as evidence and start a new log at another path"
    )]
    Broken {
        path: PathBuf,
        #[source]
        source: VerifyError,
    },
    #[error("cannot write an audit line: {0}")]
    Line(Problem),
    #[error(
        "an earlier write to audit log {path} failed, so its end is unknown; reopen the log to repair and resume it"
    )]
    Poisoned { path: PathBuf },
}

/// How an [`AuditLog`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Write a signed checkpoint after this many entries; 0 means only on
    /// [`AuditLog::checkpoint`].
    pub checkpoint_every: u64,
    /// `fdatasync` after every line (the default). Turning it off loses the last entries on a
    /// power cut; benches measure the difference.
    pub fsync: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            checkpoint_every: 100,
            fsync: true,
        }
    }
}

/// The node's audit log: one file, appended to by one process.
pub struct AuditLog {
    path: PathBuf,
    file: File,
    signer: SigningKey,
    options: Options,
    chain: Chain,
    poisoned: bool,
    /// When this handle last wrote a checkpoint.
    last_checkpoint: Option<OffsetDateTime>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("signer", &self.signer)
            .field("options", &self.options)
            .field("chain", &self.chain)
            .finish()
    }
}

impl AuditLog {
    /// Opens (or creates) the log at `path`, checking its whole chain with `signer`'s public key
    /// and resuming after its last line. A torn last line is cut off (and logged); any other
    /// damage refuses the file. Writes a checkpoint every `checkpoint_every` entries (0: only
    /// when asked) and syncs every line.
    pub fn open(
        path: &Path,
        signer: SigningKey,
        checkpoint_every: u64,
    ) -> Result<Self, AuditError> {
        Self::open_with(
            path,
            signer,
            Options {
                checkpoint_every,
                fsync: true,
            },
        )
    }

    /// [`AuditLog::open`] with all options.
    pub fn open_with(
        path: &Path,
        signer: SigningKey,
        options: Options,
    ) -> Result<Self, AuditError> {
        let io = |action: &'static str| {
            move |source: std::io::Error| AuditError::Io {
                action,
                path: path.to_path_buf(),
                source,
            }
        };
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o640)
            .open(path)
            .map_err(io("open"))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                return Err(AuditError::Locked {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => return Err(io("lock")(e.into())),
        }
        if !existed {
            // Make the new directory entry durable too.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io("sync the directory of"))?;
            }
        }
        let public = signer.public_key();
        let report = verify_file(&file, path, &public).map_err(|e| match e {
            VerifyError::Io { source, .. } => io("read")(source),
            tampered => AuditError::Broken {
                path: path.to_path_buf(),
                source: tampered,
            },
        })?;
        if let Some(torn) = report.torn_tail {
            tracing::warn!(
                path = %path.display(),
                line = torn.line,
                bytes = torn.bytes,
                "audit log ends in a torn line (a write interrupted by a crash); removing that partial line"
            );
            file.set_len(torn.offset)
                .map_err(io("truncate the torn line of"))?;
            file.sync_all().map_err(io("sync"))?;
        }
        if report.uncovered > 0 {
            tracing::warn!(
                path = %path.display(),
                uncovered = report.uncovered,
                "audit log resumes with entries after the last signed checkpoint; the next checkpoint will cover them"
            );
        }
        tracing::info!(
            path = %path.display(),
            lines = report.lines,
            entries = report.entries,
            checkpoints = report.checkpoints,
            "audit log opened"
        );
        Ok(AuditLog {
            path: path.to_path_buf(),
            file,
            signer,
            options,
            chain: Chain::resume(&report),
            poisoned: false,
            last_checkpoint: None,
        })
    }

    /// Appends one record; writes a checkpoint afterwards when one is due. Returns the hash of
    /// the entry's line.
    pub fn append(&mut self, record: Record) -> Result<EntryHash, AuditError> {
        let (line, hash) = self.chain.entry_line(&record).map_err(AuditError::Line)?;
        self.write_line(&line)?;
        self.chain.commit(hash, false);
        let every = self.options.checkpoint_every;
        if every > 0 && self.chain.since_checkpoint() >= every {
            self.checkpoint()?;
        }
        Ok(hash)
    }

    /// Writes a signed checkpoint covering every entry so far. Does nothing when the last line
    /// is already a checkpoint (or the log is empty).
    pub fn checkpoint(&mut self) -> Result<(), AuditError> {
        if self.chain.since_checkpoint() == 0 {
            return Ok(());
        }
        let at = OffsetDateTime::now_utc();
        let (line, hash) = self
            .chain
            .checkpoint_line(&self.signer, at)
            .map_err(AuditError::Line)?;
        self.write_line(&line)?;
        self.chain.commit(hash, true);
        self.last_checkpoint = Some(at);
        Ok(())
    }

    /// Writes a final checkpoint and closes the file (releasing the lock).
    pub fn close(mut self) -> Result<(), AuditError> {
        self.checkpoint()
    }

    /// Hash of the last line written.
    pub fn head(&self) -> EntryHash {
        self.chain.head()
    }

    /// Record entries in the log.
    pub fn entries(&self) -> u64 {
        self.chain.entries()
    }

    /// Entries not yet covered by a checkpoint.
    pub fn uncovered(&self) -> u64 {
        self.chain.since_checkpoint()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// When this handle last wrote a checkpoint (`None`: none since it was opened).
    pub fn last_checkpoint_at(&self) -> Option<OffsetDateTime> {
        self.last_checkpoint
    }

    fn write_line(&mut self, line: &[u8]) -> Result<(), AuditError> {
        if self.poisoned {
            return Err(AuditError::Poisoned {
                path: self.path.clone(),
            });
        }
        let result = self.file.write_all(line).and_then(|()| {
            if self.options.fsync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        result.map_err(|source| {
            self.poisoned = true;
            AuditError::Io {
                action: "append to",
                path: self.path.clone(),
                source,
            }
        })
    }
}

/// Verifies the log file at `path` against the node's public key. `Ok` means the chain is
/// intact up to its last complete line; check [`Report::is_intact`] for uncovered entries and a
/// torn tail. `Err(VerifyError::Tampered)` names the line where the damage shows.
pub fn verify(path: &Path, node_key: &PublicKey) -> Result<Report, VerifyError> {
    let file = File::open(path).map_err(|source| VerifyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    verify_file(&file, path, node_key)
}

fn verify_file(file: &File, path: &Path, node_key: &PublicKey) -> Result<Report, VerifyError> {
    let mut verifier = Verifier::new(node_key);
    let mut torn = None;
    each_line(file, path, |line, complete, offset| {
        if complete {
            verifier.push(line).map(|_| ())
        } else {
            torn = Some(TornTail {
                line: verifier.finish(None).lines + 1,
                bytes: line.len() as u64,
                offset,
            });
            Ok(())
        }
    })?;
    Ok(verifier.finish(torn))
}

/// Reads every complete line of the log at `path` without checking the chain or signatures (use
/// [`verify`] for that). A torn last line is skipped.
pub fn read(path: &Path) -> Result<Vec<LogLine>, VerifyError> {
    let file = File::open(path).map_err(|source| VerifyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mut out = Vec::new();
    let mut n = 0u64;
    each_line(&file, path, |line, complete, _| {
        if complete {
            n += 1;
            let parsed = LogLine::parse(line)
                .map_err(|problem| VerifyError::Tampered { line: n, problem })?;
            out.push(parsed);
        }
        Ok(())
    })?;
    Ok(out)
}

/// Calls `f(line without newline, complete, start offset)` for each line; the last one is
/// incomplete if it lacks its newline. Lines longer than [`MAX_LINE`] are refused.
fn each_line(
    file: &File,
    path: &Path,
    mut f: impl FnMut(&[u8], bool, u64) -> Result<(), VerifyError>,
) -> Result<(), VerifyError> {
    let io = |source| VerifyError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut buf = Vec::with_capacity(1024);
    let mut offset = 0u64;
    let mut n = 0u64;
    loop {
        buf.clear();
        let read = (&mut reader)
            .take(MAX_LINE as u64 + 2)
            .read_until(b'\n', &mut buf)
            .map_err(io)?;
        if read == 0 {
            return Ok(());
        }
        n += 1;
        let complete = buf.last() == Some(&b'\n');
        if complete {
            buf.pop();
        } else if buf.len() > MAX_LINE {
            return Err(VerifyError::Tampered {
                line: n,
                problem: Problem::LineTooLong {
                    len: buf.len(),
                    max: MAX_LINE,
                },
            });
        }
        f(&buf, complete, offset)?;
        offset += read as u64;
        if !complete {
            return Ok(());
        }
    }
}
