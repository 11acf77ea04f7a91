//! `warden login`, `warden logout`, `warden whoami`: a session kept beside the profile
//! (`~/.config/warden/NAME.session`, 0600), so that later commands need no password.
//!
//! `login` writes or updates `[server]` of the profile `NAME.toml` (url and username; every
//! other section and comment of an existing profile is kept; the file is 0600 and its folder
//! 0700), logs in with the password read from the terminal without echo or from
//! `--password-file`, and keeps the session's tokens, never the password. `logout` ends the
//! session at the server (`POST /api/auth/logout`) and forgets it here.
//!
//! Exit status: 0 ok, 1 refused by the server (its reason printed), 2 bad input.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::json;
use warden_api::WhoAmI;
use warden_api::display::safe;
use warden_client::admin::{self as session, Renewal, SessionError, StoredSession};
use warden_client::profile::ServerSection;
use warden_client::{Client, ClientError};

use crate::common;
use crate::common::Outcome;

/// The profile used when none is named.
pub const DEFAULT_PROFILE: &str = "default";
/// The environment variable that names the profile when `--profile` is not given.
pub const PROFILE_ENV: &str = "WARDEN_PROFILE";

/// Which profile a command uses.
#[derive(Debug, Clone, Args)]
pub struct ProfileChoice {
    /// Profile name: $XDG_CONFIG_HOME/warden/NAME.toml, else ~/.config/warden/NAME.toml
    /// [default: $WARDEN_PROFILE, else `default`].
    #[arg(
        long,
        value_name = "NAME",
        global = true,
        conflicts_with = "profile_file"
    )]
    pub profile: Option<String>,
    /// Profile file (its session is kept beside it, PATH with `.session`).
    #[arg(long, value_name = "PATH", global = true)]
    pub profile_file: Option<PathBuf>,
}

impl ProfileChoice {
    /// The profile's path and the name commands should suggest for it.
    pub fn path(&self) -> anyhow::Result<(PathBuf, String)> {
        if let Some(p) = &self.profile_file {
            return Ok((p.clone(), format!("--profile-file {}", p.display())));
        }
        let name = match &self.profile {
            Some(n) => n.clone(),
            None => std::env::var(PROFILE_ENV)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| DEFAULT_PROFILE.to_owned()),
        };
        let path = warden_client::profile::path_of(&name)?;
        Ok((path, format!("--profile {name}")))
    }
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server's URL, e.g. https://warden.example.org.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// The account's user name.
    #[arg(long, value_name = "NAME")]
    pub username: String,
    /// Read the password from FILE (one trailing newline dropped) instead of asking for it.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    #[command(flatten)]
    pub profile: ProfileChoice,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SessionArgs {
    #[command(flatten)]
    pub profile: ProfileChoice,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Whether an error is the server refusing (exit 1) rather than bad input (exit 2).
pub fn is_refusal(e: &anyhow::Error) -> bool {
    let client = e.downcast_ref::<ClientError>().or_else(|| {
        e.downcast_ref::<SessionError>().and_then(|s| match s {
            SessionError::Client(c) => Some(c),
            _ => None,
        })
    });
    matches!(
        client,
        Some(ClientError::Login { .. })
            | Some(ClientError::Api {
                status: 401 | 403 | 404 | 409 | 429,
                ..
            })
    )
}

/// Runs a command of this module (or `warden admin`) on its own runtime; errors are printed
/// and mapped to 1 (refused) or 2 (bad input).
pub fn exit_of(result: anyhow::Result<Outcome>) -> std::process::ExitCode {
    match result {
        Ok(o) => {
            if !o.output.is_empty() {
                crate::emit(&o.output);
            }
            std::process::ExitCode::from(o.exit)
        }
        Err(e) => {
            crate::print_error(&e);
            std::process::ExitCode::from(if is_refusal(&e) { 1 } else { 2 })
        }
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    common::init_logging("warn");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The password for a login or a new account: from `file`, else asked on the terminal
/// without echo (never from the command line).
pub fn read_password(file: Option<&Path>, prompt: &str) -> anyhow::Result<String> {
    let pw = match file {
        Some(f) => {
            let pw = common::password(Some(f), "write the password in it")?;
            String::from_utf8(pw.to_vec()).context("the password is not UTF-8 text")?
        }
        None => {
            let pw = rpassword::prompt_password(prompt).map_err(|e| {
                anyhow::anyhow!(
                    "cannot ask for the password ({e}); run this on a terminal or pass \
                     --password-file FILE"
                )
            })?;
            if pw.is_empty() {
                bail!(
                    "refusing an empty password; type the password, or pass --password-file FILE"
                );
            }
            pw
        }
    };
    Ok(pw)
}

/// The profile text with `[server] url` and `username` set: a new profile, or `existing` with
/// every other key and comment kept (a different account's `password_file` is dropped).
pub fn profile_text(existing: Option<&str>, url: &str, username: &str) -> anyhow::Result<String> {
    let Some(text) = existing else {
        return Ok(format!(
            "# written by `warden login`; the session is kept beside this file (.session)\n\
             [server]\nurl = {}\nusername = {}\n\n\
             # a researcher adds [researcher] key and certificate, [collaboration] name and the\n\
             # [organizations] pins: see docs/researcher.md\n",
            toml_edit::Value::from(url),
            toml_edit::Value::from(username)
        ));
    };
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .context("the existing profile is not TOML; fix or remove it, then log in again")?;
    let server = doc
        .entry("server")
        .or_insert(toml_edit::table())
        .as_table_mut()
        .context("the existing profile's `server` is not a table; fix it, then log in again")?;
    let same_account = server.get("username").and_then(|v| v.as_str()) == Some(username);
    server["url"] = toml_edit::value(url);
    server["username"] = toml_edit::value(username);
    if !same_account {
        server.remove("password_file");
    }
    Ok(doc.to_string())
}

/// `warden login`.
pub fn login(args: LoginArgs) -> anyhow::Result<Outcome> {
    let url = session::server_url(&args.server).map_err(anyhow::Error::msg)?;
    if args.username.is_empty() {
        bail!("give the account's user name with --username NAME");
    }
    let (path, _) = args.profile.path()?;
    let existing = match std::fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => bail!("cannot read the profile {}: {e}", path.display()),
    };
    let text = profile_text(existing.as_deref(), &url, &args.username)?;
    let password = read_password(
        args.password_file.as_deref(),
        &format!("password for {} at {url}: ", args.username),
    )?;
    let runtime = runtime()?;
    let client = runtime.block_on(Client::login(&url, &args.username, &password))?;
    let me = runtime.block_on(client.whoami())?;
    let (role, org) = describe(&runtime, &client, &me);
    // Kept after the last request: a request may have renewed the session (a short-lived
    // access token), and the refresh token it spent must not be the one on disk.
    let Some(stored) = client.stored_session() else {
        bail!("the server gave no refresh token, so there is no session to keep");
    };
    session::write_private(&path, text.as_bytes())
        .with_context(|| format!("cannot write the profile {}", path.display()))?;
    let session_file = session::session_path(&path);
    session::save_session(&session_file, &stored)?;
    let output = if args.json {
        json!({
            "server": url,
            "username": client.username(),
            "role": role,
            "organization": org,
            "profile": path.display().to_string(),
            "session": session_file.display().to_string(),
        })
        .to_string()
    } else {
        format!(
            "logged in to {url} as {} ({role}{}); profile {}, session {}",
            safe(client.username()),
            org.as_deref()
                .map(|o| format!(" of {}", safe(o)))
                .unwrap_or_default(),
            path.display(),
            session_file.display()
        )
    };
    Ok(Outcome { output, exit: 0 })
}

/// The role and organization name (if any) of `me`.
fn describe(
    runtime: &tokio::runtime::Runtime,
    client: &Client,
    me: &WhoAmI,
) -> (String, Option<String>) {
    match me {
        WhoAmI::User {
            role,
            organization_id,
            ..
        } => {
            let org = organization_id.map(|id| {
                runtime
                    .block_on(client.organization(id))
                    .map(|o| o.name)
                    .unwrap_or_else(|_| format!("organization {id}"))
            });
            (role.to_string(), org)
        }
        WhoAmI::Node { .. } => ("node".to_owned(), None),
        WhoAmI::Run { .. } => ("run".to_owned(), None),
    }
}

/// A client for the chosen profile: its kept session (renewed when due), else a password
/// login with `[server] password_file` or `WARDEN_PASSWORD`. Returns the client and the
/// session as loaded, for [`finish`].
pub async fn connect(
    choice: &ProfileChoice,
) -> anyhow::Result<(Client, PathBuf, Option<StoredSession>)> {
    let (path, hint) = choice.path()?;
    let server = match session::load_server_section(&path) {
        Ok(s) => s,
        Err(e) if !path.exists() => {
            bail!(
                "no profile at {} ({e}); log in first with `warden login --server URL \
                 --username NAME {hint}`",
                path.display()
            )
        }
        Err(e) => return Err(e.into()),
    };
    let client = resume_or(&path, &server, &hint, Renewal::Shared).await?;
    let file = session::session_path(&path);
    let before = client.stored_session();
    Ok((client, file, before))
}

/// The kept session of the profile at `path`, renewed whenever due under the session's lock and
/// written back at once (for `warden task`, whose waits may outlive the access token), else a
/// password login; an ended session says how to log in again.
pub async fn resume_or_login(
    path: &Path,
    server: &ServerSection,
    hint: &str,
) -> anyhow::Result<Client> {
    resume_or(path, server, hint, Renewal::Kept).await
}

async fn resume_or(
    path: &Path,
    server: &ServerSection,
    hint: &str,
    renewal: Renewal,
) -> anyhow::Result<Client> {
    let file = session::session_path(path);
    match Client::resume_as(&file, server, renewal).await {
        Ok(Some(c)) => return Ok(c),
        Ok(None) => {}
        Err(SessionError::Client(ClientError::Api { status: 401, .. })) => {
            bail!(
                "the session of `{}` at {} has ended (logged out, expired, or the password was \
                 reset); log in again with `warden login --server {} --username {} {hint}`",
                server.username,
                server.url,
                server.url,
                server.username
            );
        }
        Err(e) => return Err(e.into()),
    }
    let file_pw = server.password_file.as_deref();
    if file_pw.is_none() && std::env::var_os(common::PASSWORD_ENV).is_none() {
        bail!(
            "not logged in as `{}` at {}; run `warden login --server {} --username {} {hint}`",
            server.username,
            server.url,
            server.url,
            server.username
        );
    }
    let pw = common::password(file_pw, "write the account's password there")?;
    let pw = std::str::from_utf8(&pw).context("the password is not UTF-8 text")?;
    Ok(Client::login(&server.url, &server.username, pw).await?)
}

/// Keeps a session renewed during the command.
pub fn finish(client: &Client, file: &Path, before: Option<&StoredSession>) -> anyhow::Result<()> {
    if before.is_some() {
        client.keep_session(file, before)?;
    }
    Ok(())
}

/// `warden logout`.
pub fn logout(args: SessionArgs) -> anyhow::Result<Outcome> {
    let (path, _) = args.profile.path()?;
    let file = session::session_path(&path);
    let Some(stored) = session::load_session(&file)? else {
        bail!(
            "no session is kept for the profile {} ({} does not exist); nothing to log out",
            path.display(),
            file.display()
        );
    };
    let server = ServerSection {
        url: stored.server.clone(),
        username: stored.username.clone(),
        password_file: None,
    };
    let runtime = runtime()?;
    let ended_here = runtime.block_on(async {
        match Client::resume(&file, &server).await {
            Ok(Some(c)) => match c.logout().await {
                Ok(()) => Ok(true),
                // The session died meanwhile: the server has already ended it.
                Err(ClientError::Api { status: 401, .. }) => Ok(false),
                Err(e) => Err(SessionError::from(e)),
            },
            Ok(None) => Ok(false),
            Err(SessionError::Client(ClientError::Api { status: 401, .. })) => Ok(false),
            Err(e) => Err(e),
        }
    })?;
    session::forget_session(&file)?;
    let what = if ended_here {
        "the session was ended at the server and forgotten here"
    } else {
        "the server had already ended the session; it is forgotten here"
    };
    let output = if args.json {
        json!({
            "server": stored.server,
            "username": stored.username,
            "ended_at_server": ended_here,
        })
        .to_string()
    } else {
        format!(
            "logged out `{}` at {}: {what}",
            safe(&stored.username),
            safe(&stored.server)
        )
    };
    Ok(Outcome { output, exit: 0 })
}

/// `warden whoami`.
pub fn whoami(args: SessionArgs) -> anyhow::Result<Outcome> {
    let runtime = runtime()?;
    let (client, file, before) = runtime.block_on(connect(&args.profile))?;
    let me = runtime.block_on(client.whoami())?;
    let (role, org) = describe(&runtime, &client, &me);
    finish(&client, &file, before.as_ref())?;
    let id = match me {
        WhoAmI::User { id, .. } | WhoAmI::Node { id, .. } => id,
        WhoAmI::Run { run_id, .. } => run_id,
    };
    let output = if args.json {
        json!({
            "server": client.base(),
            "id": id,
            "username": client.username(),
            "role": role,
            "organization": org,
        })
        .to_string()
    } else {
        format!(
            "{} (user {id}, {role}{}) at {}",
            safe(client.username()),
            org.as_deref()
                .map(|o| format!(" of {}", safe(o)))
                .unwrap_or_default(),
            safe(client.base())
        )
    };
    Ok(Outcome {
        output: crate::admin::json_safe_if(args.json, output),
        exit: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_profile_has_only_the_server() {
        let t = profile_text(None, "http://127.0.0.1:7600", "ad\"min").unwrap();
        let v: toml_edit::DocumentMut = t.parse().unwrap();
        assert_eq!(v["server"]["url"].as_str(), Some("http://127.0.0.1:7600"));
        assert_eq!(v["server"]["username"].as_str(), Some("ad\"min"));
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn an_existing_profile_keeps_its_other_sections_and_comments() {
        let old = "# mine\n[server]\nurl = \"http://old\"\nusername = \"rita\"\npassword_file = \"rita.pw\"\n\n\
                   [researcher]\nkey = \"rita.key\" # here\ncertificate = \"rita.cert\"\n";
        let t = profile_text(Some(old), "http://new:1", "rita").unwrap();
        assert!(t.contains("# mine") && t.contains("# here"), "{t}");
        assert!(t.contains("url = \"http://new:1\""), "{t}");
        assert!(t.contains("password_file = \"rita.pw\""), "{t}");
        // another account: the old account's password file goes
        let t = profile_text(Some(old), "http://new:1", "ted").unwrap();
        assert!(!t.contains("password_file"), "{t}");
        assert!(t.contains("[researcher]"), "{t}");
        assert!(profile_text(Some("[server"), "http://x", "a").is_err());
        assert!(profile_text(Some("server = 1"), "http://x", "a").is_err());
    }
}
