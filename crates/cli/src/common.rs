//! Small pieces the subcommands share: passwords, small secret files, logging.

use std::path::Path;

use anyhow::{Context as _, bail};
use zeroize::Zeroizing;

/// `--json` on a command whose output is always one JSON document: accepted so that a script
/// may pass `--json` to every `warden` command, and changing nothing.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct AlwaysJson {
    /// Accepted for scripts: this command always prints one JSON document.
    #[arg(long = "json")]
    pub json: bool,
}

/// The environment variable a key's password is read from when no file is given.
pub const PASSWORD_ENV: &str = "WARDEN_PASSWORD";
/// Largest key, password or public-key file read.
const MAX_SMALL_FILE: u64 = 64 * 1024;

/// The password from `password_file` (one trailing newline dropped) or else from
/// `WARDEN_PASSWORD`; an empty one is refused with `empty_hint` saying what to do.
pub fn password(
    password_file: Option<&Path>,
    empty_hint: &str,
) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut password = match password_file {
        Some(path) => read_small(path)?,
        None => match std::env::var_os(PASSWORD_ENV) {
            Some(v) => Zeroizing::new(v.into_encoded_bytes()),
            None => bail!("no password given; set {PASSWORD_ENV} or pass --password-file FILE"),
        },
    };
    if password_file.is_some() {
        let len = password.len();
        if password.ends_with(b"\r\n") {
            password.truncate(len - 2);
        } else if password.ends_with(b"\n") {
            password.truncate(len - 1);
        }
    }
    if password.is_empty() {
        bail!("refusing an empty password; {empty_hint}");
    }
    Ok(password)
}

/// Reads a small file (a key or a password), refusing one larger than 64 KiB.
pub fn read_small(path: &Path) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > MAX_SMALL_FILE {
        bail!(
            "{} is {} bytes, more than the {MAX_SMALL_FILE} expected; is it the right file?",
            path.display(),
            meta.len()
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Zeroizing::new(bytes))
}

/// Logs to stderr at the level `WARDEN_LOG` names (a tracing filter), else `default`.
pub fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// What a command prints on standard output and its exit status.
#[derive(Debug)]
pub struct Outcome {
    pub output: String,
    pub exit: u8,
}

/// The one JSON document a `--json` run prints: pretty-printed, with the characters a terminal
/// could act on escaped ([`crate::admin::json_safe`]), so it reads back as the same value.
pub fn json_document<T: serde::Serialize + ?Sized>(value: &T) -> String {
    crate::admin::json_safe(&serde_json::to_string_pretty(value).unwrap_or_default())
}

/// Who asks, as a node's policy sees a run's requester (each optional; a rule restricting a
/// field the request does not give does not hold).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RequesterArgs {
    /// The requesting organization.
    #[arg(long)]
    pub organization: Option<String>,
    /// The requesting user.
    #[arg(long)]
    pub user: Option<String>,
    /// The collaboration the run belongs to.
    #[arg(long)]
    pub collaboration: Option<String>,
    /// The algorithm function (entry point) to be called.
    #[arg(long)]
    pub function: Option<String>,
}

impl RequesterArgs {
    pub fn requester(self) -> warden_policy::Requester {
        warden_policy::Requester {
            organization: self.organization,
            user: self.user,
            collaboration: self.collaboration,
            function: self.function,
        }
    }
}
