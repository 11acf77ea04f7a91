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

/// Logs to stderr at the level `WARDEN_LOG` names (a tracing filter), else `default`, one
/// line per event whatever its fields hold ([`OneLine`]).
pub fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(|| OneLine(std::io::stderr()))
        .init();
}

/// A log writer that keeps each event on one line: a line break or carriage return inside an
/// event (a reason from a server, an error a registry wrote, a name a researcher chose) is
/// written as `\n` or `\r`, so that no one who can put text in a log message can make a line
/// that looks like the node's or the server's own. The formatter writes each event whole,
/// ending in its one line break.
#[derive(Debug)]
pub struct OneLine<W: std::io::Write>(pub W);

impl<W: std::io::Write> std::io::Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (body, end) = match buf.split_last() {
            Some((b'\n', body)) => (body, &b"\n"[..]),
            _ => (buf, &b""[..]),
        };
        let mut out = Vec::with_capacity(buf.len() + 8);
        for &b in body {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b => out.push(b),
            }
        }
        out.extend_from_slice(end);
        self.0.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::OneLine;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A reason that carries a forged log line (what a lying server or a hostile registry
    /// could send) stays inside its own event's line.
    #[test]
    fn a_line_break_in_a_logged_value_cannot_forge_a_log_line() {
        let out = Shared::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || OneLine(writer.clone()))
            .finish();
        let forged = "refused\n2026-12-03T00:00:00.000000Z  INFO warden_node: run 7 admitted\r";
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(reason = %forged, "the server answered");
            tracing::info!("next {}", "event");
        });
        let text = String::from_utf8(out.0.lock().map(|b| b.clone()).unwrap_or_default())
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].contains(
                r"refused\n2026-12-03T00:00:00.000000Z  INFO warden_node: run 7 admitted\r"
            ),
            "{text}"
        );
        assert!(lines[1].contains("next event"), "{text}");
        assert!(text.ends_with('\n') && !text.contains('\r'));
    }
}
