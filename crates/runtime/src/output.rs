//! The output directory: prepared before a run, read after it, with a size cap and without
//! following anything the algorithm planted there (symlinks, FIFOs, directories).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::run::OUTPUT_FILE;

/// Most entries (files, directories, links, at any depth) the output directory may hold.
pub const OUTPUT_MAX_ENTRIES: u64 = 1000;

/// Why no output could be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutputProblem {
    TooLarge { cap: u64 },
    TooManyEntries { cap: u64 },
    Unreadable(String),
}

/// Empties the output directory and makes it writable for `uid:gid` (by ownership when the node
/// runs as root, else by mode 0777 — the node must keep its parent private).
pub(crate) fn prepare_output_dir(dir: &Path, uid: u32, gid: u32) -> Result<(), String> {
    clear(dir, |_| true)
        .map_err(|e| format!("cannot empty the output directory {}: {e}", dir.display()))?;
    match std::os::unix::fs::chown(dir, Some(uid), Some(gid)) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)),
        Err(e) => {
            tracing::debug!(dir = %dir.display(), error = %e, "chown of the output directory refused; using mode 0777");
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
        }
    }
    .map_err(|e| format!("cannot make the output directory {} writable for {uid}:{gid}: {e}", dir.display()))
}

/// Removes everything in the output directory except the output file.
pub(crate) fn remove_extra_entries(dir: &Path) {
    if let Err(e) = clear(dir, |name| name != OUTPUT_FILE) {
        tracing::warn!(dir = %dir.display(), error = %e, "cleaning the output directory failed");
    }
}

/// Removes everything in the output directory.
pub(crate) fn remove_all_entries(dir: &Path) {
    if let Err(e) = clear(dir, |_| true) {
        tracing::warn!(dir = %dir.display(), error = %e, "cleaning the output directory failed");
    }
}

fn clear(dir: &Path, remove: impl Fn(&str) -> bool) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !remove(&entry.file_name().to_string_lossy()) {
            continue;
        }
        // file_type() does not follow symlinks; remove_dir_all does not follow them either.
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Whether the output directory as a whole holds more than `cap` bytes of files or more than
/// [`OUTPUT_MAX_ENTRIES`] entries. The directory is a host directory the algorithm writes to:
/// the file-size limit bounds each file, this bounds their sum and their number. Never follows
/// symlinks; stops counting as soon as a cap is passed, so it stays cheap on a flooded
/// directory. An unreadable entry counts as an entry and nothing more.
///
/// Bytes are the files' apparent sizes. Blocks allocated beyond them (`fallocate` with
/// `KEEP_SIZE` is not bound by the file-size limit) count against a looser bound that leaves
/// room for block rounding and a filesystem's speculative preallocation.
pub(crate) fn overflow(dir: &Path, cap: u64) -> Option<OutputProblem> {
    let allocated_cap = cap.saturating_mul(2).saturating_add(16 << 20);
    let mut bytes: u64 = 0;
    let mut allocated: u64 = 0;
    let mut entries: u64 = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(listing) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in listing.flatten() {
            entries += 1;
            if entries > OUTPUT_MAX_ENTRIES {
                return Some(OutputProblem::TooManyEntries {
                    cap: OUTPUT_MAX_ENTRIES,
                });
            }
            // DirEntry::metadata does not follow symlinks.
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                bytes = bytes.saturating_add(meta.len());
                allocated = allocated.saturating_add(meta.blocks().saturating_mul(512));
                if bytes > cap || allocated > allocated_cap {
                    return Some(OutputProblem::TooLarge { cap });
                }
            }
        }
    }
    None
}

/// How often a running container's output directory is measured.
pub(crate) const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Resolves when the output directory overflows (see [`overflow`]); never resolves otherwise.
/// Between two looks an algorithm can write at most what the disk takes in [`WATCH_EVERY`].
pub(crate) async fn watch(dir: std::path::PathBuf, cap: u64) -> OutputProblem {
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let d = dir.clone();
        if let Ok(Some(problem)) = tokio::task::spawn_blocking(move || overflow(&d, cap)).await {
            return problem;
        }
    }
}

/// Reads the output file: a regular file (never a symlink), at most `cap` bytes. An oversized
/// file is deleted.
pub(crate) fn collect_output(dir: &Path, cap: u64) -> Result<Vec<u8>, OutputProblem> {
    let path = dir.join(OUTPUT_FILE);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        // docs/algorithm-contract.md: an absent output file is an empty result (the rest of the
        // directory still counts against the caps).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return match overflow(dir, cap) {
                Some(problem) => Err(problem),
                None => Ok(Vec::new()),
            };
        }
        Err(e) => return Err(OutputProblem::Unreadable(e.to_string())),
    };
    if !meta.is_file() {
        return Err(OutputProblem::Unreadable(
            "the output is not a regular file".into(),
        ));
    }
    if let Some(problem) = overflow(dir, cap) {
        return Err(problem);
    }
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| OutputProblem::Unreadable(e.to_string()))?;
    let opened = file
        .metadata()
        .map_err(|e| OutputProblem::Unreadable(e.to_string()))?;
    if !opened.is_file() || opened.ino() != meta.ino() || opened.dev() != meta.dev() {
        return Err(OutputProblem::Unreadable(
            "the output file changed while it was opened".into(),
        ));
    }
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| OutputProblem::Unreadable(e.to_string()))?;
    if bytes.len() as u64 > cap {
        let _ = std::fs::remove_file(&path);
        return Err(OutputProblem::TooLarge { cap });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_read_within_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(OUTPUT_FILE), b"result").unwrap();
        assert_eq!(collect_output(dir.path(), 6).unwrap(), b"result");
        assert_eq!(
            collect_output(dir.path(), 5),
            Err(OutputProblem::TooLarge { cap: 5 })
        );
        std::fs::remove_file(dir.path().join(OUTPUT_FILE)).unwrap();
        assert_eq!(
            collect_output(dir.path(), 5).unwrap(),
            b"",
            "an absent file is an empty result"
        );
    }

    #[test]
    fn the_whole_directory_counts_against_the_caps() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(OUTPUT_FILE), b"result").unwrap();
        assert_eq!(overflow(dir.path(), 10), None);
        // Other files and files in subdirectories add up.
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/extra"), b"12345").unwrap();
        assert_eq!(
            overflow(dir.path(), 10),
            Some(OutputProblem::TooLarge { cap: 10 })
        );
        assert_eq!(overflow(dir.path(), 11), None);
        assert_eq!(
            collect_output(dir.path(), 10),
            Err(OutputProblem::TooLarge { cap: 10 })
        );
        // Many empty files are refused by their number.
        for i in 0..OUTPUT_MAX_ENTRIES {
            std::fs::write(dir.path().join(format!("f{i}")), b"").unwrap();
        }
        assert_eq!(
            overflow(dir.path(), 1 << 20),
            Some(OutputProblem::TooManyEntries {
                cap: OUTPUT_MAX_ENTRIES
            })
        );
    }

    #[test]
    fn a_symlinked_directory_is_counted_as_one_entry_not_walked() {
        let big = tempfile::tempdir().unwrap();
        std::fs::write(big.path().join("big"), vec![0u8; 4096]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(big.path(), dir.path().join("link")).unwrap();
        assert_eq!(overflow(dir.path(), 100), None);
    }

    #[test]
    fn blocks_allocated_beyond_the_size_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prealloc");
        std::fs::write(&path, b"").unwrap();
        // 32 MiB allocated without growing the file (util-linux `fallocate --keep-size`).
        let status = std::process::Command::new("fallocate")
            .args(["--keep-size", "--length", "32MiB"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert_eq!(
            overflow(dir.path(), 1 << 20),
            Some(OutputProblem::TooLarge { cap: 1 << 20 })
        );
    }

    #[test]
    fn a_planted_symlink_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"host secret").unwrap();
        let out = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(&secret, out.path().join(OUTPUT_FILE)).unwrap();
        assert!(matches!(
            collect_output(out.path(), 100),
            Err(OutputProblem::Unreadable(_))
        ));
        std::fs::remove_file(out.path().join(OUTPUT_FILE)).unwrap();
        std::fs::create_dir(out.path().join(OUTPUT_FILE)).unwrap();
        assert!(matches!(
            collect_output(out.path(), 100),
            Err(OutputProblem::Unreadable(_))
        ));
    }

    #[test]
    fn preparing_empties_the_directory_and_cleanup_keeps_only_the_output() {
        let out = tempfile::tempdir().unwrap();
        std::fs::write(out.path().join(OUTPUT_FILE), b"stale").unwrap();
        std::fs::create_dir(out.path().join("junk")).unwrap();
        prepare_output_dir(out.path(), 65534, 65534).unwrap();
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
        std::fs::write(out.path().join(OUTPUT_FILE), b"new").unwrap();
        std::fs::write(out.path().join("extra"), b"x").unwrap();
        remove_extra_entries(out.path());
        let names: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(OUTPUT_FILE)]);
    }
}
