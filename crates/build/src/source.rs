//! A clean export of exactly one commit: `git archive` of the commit object, never the work
//! tree, so uncommitted changes cannot reach a build.

use std::path::{Component, Path};
use std::process::{Command, Stdio};

use crate::BuildError;

/// What [`export`] found.
#[derive(Debug, Clone)]
pub struct Exported {
    /// Full object name of the commit.
    pub commit: String,
    /// Committer time (seconds since the epoch): the build's `SOURCE_DATE_EPOCH`.
    pub epoch: i64,
    /// The repository's `origin` URL (or the URL given as source).
    pub origin: Option<String>,
}

/// Checks a repository-relative directory: relative, no `..`, not empty.
pub fn check_subdir(path: &str) -> Result<String, BuildError> {
    let p = Path::new(path.trim_end_matches('/'));
    let ok = !path.is_empty()
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && p.components().count() > 0;
    if !ok {
        return Err(BuildError::Input(format!(
            "--path `{}` must be a relative directory inside the repository (no `..`)",
            path.escape_debug()
        )));
    }
    Ok(p.to_string_lossy().into_owned())
}

fn check_commit(commit: &str) -> Result<(), BuildError> {
    if (7..=64).contains(&commit.len()) && commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(BuildError::Input(format!(
            "--commit `{}` must be a commit id in hex (a branch or tag name is not a fixed source)",
            commit.escape_debug()
        )))
    }
}

fn is_url(source: &str) -> bool {
    source.contains("://") || source.starts_with("git@")
}

pub(crate) fn git(repo: &Path, args: &[&str]) -> Result<Vec<u8>, BuildError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BuildError::Tool {
            what: "git".into(),
            why: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(BuildError::Tool {
            what: format!("git {}", args.first().copied().unwrap_or("")),
            why: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out.stdout)
}

/// Exports `commit` of `source` (a repository directory or a git URL, cloned into `scratch`)
/// into `dest`.
pub fn export(
    source: &str,
    commit: &str,
    dest: &Path,
    scratch: &Path,
) -> Result<Exported, BuildError> {
    check_commit(commit)?;
    let (repo, origin) = if is_url(source) {
        let bare = scratch.join("clone.git");
        let out = Command::new("git")
            .args(["clone", "--quiet", "--bare", "--", source])
            .arg(&bare)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| BuildError::Tool {
                what: "git clone".into(),
                why: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(BuildError::Input(format!(
                "cannot clone {}: {}",
                source.escape_debug(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        (bare, Some(source.to_owned()))
    } else {
        let dir = Path::new(source);
        if !dir.is_dir() {
            return Err(BuildError::Input(format!(
                "--source `{}` is neither a directory nor a git URL",
                source.escape_debug()
            )));
        }
        let origin = git(dir, &["remote", "get-url", "origin"])
            .ok()
            .map(|o| String::from_utf8_lossy(&o).trim().to_owned())
            .filter(|o| !o.is_empty() && is_url(o));
        (dir.to_path_buf(), origin)
    };
    let spec = format!("{commit}^{{commit}}");
    let full = git(
        &repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &spec,
        ],
    )
    .map_err(|_| {
        BuildError::Input(format!(
            "commit {commit} is not in {}",
            source.escape_debug()
        ))
    })?;
    let full = String::from_utf8_lossy(&full).trim().to_owned();
    let epoch = git(&repo, &["show", "-s", "--format=%ct", &full])?;
    let epoch: i64 = String::from_utf8_lossy(&epoch)
        .trim()
        .parse()
        .map_err(|e| BuildError::Io(format!("commit time of {full}: {e}")))?;
    let tar = git(&repo, &["archive", "--format=tar", &full])?;
    std::fs::create_dir_all(dest).map_err(|e| BuildError::io(dest.display(), e))?;
    let mut archive = tar::Archive::new(tar.as_slice());
    archive.set_preserve_permissions(true);
    // Files get the time of unpacking, not the commit's: cargo judges path crates by mtime,
    // and an older commit exported into a warm cache must not look older than the artifacts
    // of a newer one (stale code). The image's mtimes come from the commit time, not these.
    archive.set_preserve_mtime(false);
    archive
        .unpack(dest)
        .map_err(|e| BuildError::io("unpacking the commit", e))?;
    Ok(Exported {
        commit: full,
        epoch,
        origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_escaping_paths_and_symbolic_commits() {
        assert!(check_subdir("algorithms/mean").is_ok());
        assert!(check_subdir("algorithms/mean/").is_ok());
        for bad in ["", "/etc", "../x", "a/../b", "./"] {
            assert!(check_subdir(bad).is_err(), "{bad}");
        }
        assert!(check_commit("3f2a9c1").is_ok());
        for bad in ["main", "HEAD", "--output=x", "abc", "3f2a9c1~1"] {
            assert!(check_commit(bad).is_err(), "{bad}");
        }
    }
}
