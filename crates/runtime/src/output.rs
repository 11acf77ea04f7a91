//! The output directory: prepared before a run, read after it, with a size cap and without
//! following anything the algorithm planted there (symlinks, FIFOs, directories).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::run::OUTPUT_FILE;

/// Why no output could be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutputProblem {
    Missing,
    TooLarge { cap: u64 },
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

/// If the output file is a regular file above `cap` bytes, deletes it and returns the cap.
pub(crate) fn output_too_large(dir: &Path, cap: u64) -> Option<u64> {
    let path = dir.join(OUTPUT_FILE);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if meta.is_file() && meta.len() > cap {
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %e, "deleting an oversized output failed");
        }
        return Some(cap);
    }
    None
}

/// Reads the output file: a regular file (never a symlink), at most `cap` bytes. An oversized
/// file is deleted.
pub(crate) fn collect_output(dir: &Path, cap: u64) -> Result<Vec<u8>, OutputProblem> {
    let path = dir.join(OUTPUT_FILE);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(OutputProblem::Missing),
        Err(e) => return Err(OutputProblem::Unreadable(e.to_string())),
    };
    if !meta.is_file() {
        return Err(OutputProblem::Unreadable(
            "the output is not a regular file".into(),
        ));
    }
    if output_too_large(dir, cap).is_some() {
        return Err(OutputProblem::TooLarge { cap });
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
        assert!(
            !dir.path().join(OUTPUT_FILE).exists(),
            "oversized output deleted"
        );
        assert_eq!(collect_output(dir.path(), 5), Err(OutputProblem::Missing));
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
