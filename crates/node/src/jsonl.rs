//! The node's append-only JSON-lines files (the replay cache, the run budget): one record a
//! line, appended and fsync'd before the node acts on it, so that a restart never forgets what
//! it acted on. When a file is opened, a torn last line (a crash while appending, before the
//! node went on) is dropped and any other malformed line is refused, naming the file and line;
//! what is still live is written back atomically (mode 0600), and again whenever the file has
//! grown to twice that.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::marker::PhantomData;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::spool::{SpoolError, write_atomic_private};

/// The file is rewritten once it holds this many more lines than twice the lines live at the
/// previous rewrite.
pub(crate) const COMPACT_SLACK: usize = 1024;

/// An open JSON-lines file of records `L`.
pub(crate) struct JsonLines<L> {
    path: PathBuf,
    file: File,
    /// Lines in the file.
    lines: usize,
    /// At this many lines the owner should rewrite it.
    compact_at: usize,
    record: PhantomData<fn() -> L>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn open_append(path: &Path) -> Result<File, SpoolError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))
}

fn encode<L: Serialize>(path: &Path, records: &[&L]) -> Result<Vec<u8>, SpoolError> {
    let mut out = Vec::new();
    for r in records {
        out.extend(serde_json::to_vec(r).map_err(|e| SpoolError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?);
        out.push(b'\n');
    }
    Ok(out)
}

impl<L: Serialize + DeserializeOwned> JsonLines<L> {
    /// Opens (creating) `path` and returns the records `keep` accepts, in file order; the file
    /// is rewritten with exactly those. `forgets` says, in a refusal, what the node would lose
    /// ("the nonces it accepted").
    pub(crate) fn open(
        path: PathBuf,
        forgets: &str,
        mut keep: impl FnMut(&L) -> bool,
    ) -> Result<(JsonLines<L>, Vec<L>), SpoolError> {
        let mut records = Vec::new();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let complete = bytes.ends_with(b"\n");
                let text = String::from_utf8_lossy(&bytes);
                let lines: Vec<&str> = text.split_terminator('\n').collect();
                for (i, line) in lines.iter().enumerate() {
                    match serde_json::from_str::<L>(line) {
                        Ok(r) => records.push(r),
                        Err(_) if i + 1 == lines.len() && !complete => {
                            tracing::warn!(path = %path.display(), "dropping a torn last line");
                        }
                        Err(e) => {
                            return Err(SpoolError::Corrupt {
                                path: path.clone(),
                                message: format!(
                                    "line {}: {e}; the node will not forget {forgets}: repair or move the file",
                                    i + 1
                                ),
                            });
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        records.retain(|r| keep(r));
        let refs: Vec<&L> = records.iter().collect();
        write_atomic_private(&path, &encode(&path, &refs)?)?;
        let file = open_append(&path)?;
        let file = JsonLines {
            lines: records.len(),
            compact_at: 2 * records.len() + COMPACT_SLACK,
            path,
            file,
            record: PhantomData,
        };
        Ok((file, records))
    }

    /// Appends `record` and makes it durable before returning.
    pub(crate) fn append(&mut self, record: &L) -> Result<(), SpoolError> {
        let bytes = encode(&self.path, &[record])?;
        self.file.write_all(&bytes).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))?;
        self.lines += 1;
        Ok(())
    }

    /// Whether the file has grown enough since the last rewrite for [`JsonLines::rewrite`].
    pub(crate) fn wants_rewrite(&self) -> bool {
        self.lines >= self.compact_at
    }

    /// Replaces the file's contents with `records`, atomically.
    pub(crate) fn rewrite(&mut self, records: &[&L]) -> Result<(), SpoolError> {
        write_atomic_private(&self.path, &encode(&self.path, records)?)?;
        self.file = open_append(&self.path)?;
        self.lines = records.len();
        self.compact_at = 2 * records.len() + COMPACT_SLACK;
        Ok(())
    }
}
