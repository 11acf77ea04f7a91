//! `warden task create|wait|show`: the researcher's side. The input is sealed for each target
//! organization with a key whose fingerprint the profile pins, and results are opened with the
//! researcher's organization's secret key (`warden-client` does both).
//!
//! Exit status: 0 every run completed, 1 some run failed or was rejected (reasons printed), 2 bad
//! input, a server or a key problem (nothing is created when a key does not match its pin).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use warden_api::{RunState, TaskDetail};
use warden_client::{Client, ClientError, Profile, RunOutcome};
use warden_seal::SecretKey;

use crate::common;
use crate::common::Outcome;

pub const EXIT_COMPLETED: u8 = 0;
pub const EXIT_RUN_FAILED: u8 = 1;
/// Default of `--timeout`.
const DEFAULT_TIMEOUT_SECS: u64 = 600;
/// Largest `--input-file` read.
const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Seal the input for each target organization (keys checked against the profile's pins)
    /// and create the task; with --wait, wait for its runs and open their results.
    Create {
        #[command(flatten)]
        profile: ProfileArgs,
        /// Image reference of the algorithm, e.g. `registry.example.org/warden/mean:1.0`.
        #[arg(long, value_name = "REF")]
        image: String,
        /// A target organization, by name; repeat for several.
        #[arg(long = "org", value_name = "NAME", required = true)]
        orgs: Vec<String>,
        /// The input, JSON such as `{"function": "partial_mean", "args": {...}}`.
        #[arg(
            long,
            value_name = "JSON",
            conflicts_with = "input_file",
            required_unless_present = "input_file"
        )]
        input: Option<String>,
        /// A file holding the input JSON.
        #[arg(long, value_name = "PATH")]
        input_file: Option<PathBuf>,
        /// A name for the task.
        #[arg(long, value_name = "NAME", default_value = "")]
        name: String,
        /// Wait until every run is final, then print the opened results.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Wait until every run of a task is final and print each organization's state, reason and
    /// opened result.
    Wait {
        #[command(flatten)]
        profile: ProfileArgs,
        #[command(flatten)]
        output: OutputArgs,
        task_id: i64,
    },
    /// Print a task's runs as they are now (no results are downloaded).
    Show {
        #[command(flatten)]
        profile: ProfileArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        task_id: i64,
    },
}

#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// Profile name: $XDG_CONFIG_HOME/warden/NAME.toml, else ~/.config/warden/NAME.toml.
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with = "profile_file",
        required_unless_present = "profile_file"
    )]
    profile: Option<String>,
    /// Profile file.
    #[arg(long, value_name = "PATH")]
    profile_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Seconds to wait for the runs to become final.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT_SECS)]
    timeout: u64,
    /// Write every result to DIR/<organization>-run-<id> instead of printing it.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs a `warden task` subcommand.
pub fn run(command: TaskCommand) -> anyhow::Result<Outcome> {
    common::init_logging("warn");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match command {
        TaskCommand::Create {
            profile,
            image,
            orgs,
            input,
            input_file,
            name,
            wait,
            output,
        } => {
            let input = read_input(input.as_deref(), input_file.as_deref())?;
            let image = warden_client::image_reference(&image)?;
            let profile = load_profile(&profile)?;
            runtime.block_on(create(
                &profile, &image, &orgs, &input, &name, wait, &output,
            ))
        }
        TaskCommand::Wait {
            profile,
            output,
            task_id,
        } => {
            let profile = load_profile(&profile)?;
            runtime.block_on(wait(&profile, task_id, &output))
        }
        TaskCommand::Show {
            profile,
            json,
            task_id,
        } => {
            let profile = load_profile(&profile)?;
            runtime.block_on(show(&profile, task_id, json))
        }
    }
}

fn load_profile(args: &ProfileArgs) -> anyhow::Result<Profile> {
    let path = match (&args.profile, &args.profile_file) {
        (_, Some(p)) => p.clone(),
        (Some(name), None) => warden_client::profile::path_of(name)?,
        (None, None) => bail!("name a profile with --profile NAME or --profile-file PATH"),
    };
    Ok(Profile::load(&path)?)
}

/// The input's bytes, refused unless they are JSON.
fn read_input(input: Option<&str>, file: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    let (bytes, what) = match (input, file) {
        (Some(s), None) => (s.as_bytes().to_vec(), "--input".to_owned()),
        (None, Some(p)) => {
            let meta =
                std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
            if meta.len() > MAX_INPUT_BYTES {
                bail!(
                    "{} is {} bytes, more than the {MAX_INPUT_BYTES} an input may be",
                    p.display(),
                    meta.len()
                );
            }
            let b = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            (b, p.display().to_string())
        }
        _ => bail!("give the input with either --input JSON or --input-file PATH"),
    };
    if let Err(e) = serde_json::from_slice::<Value>(&bytes) {
        bail!(
            "{what} is not JSON ({e}); an input is JSON such as \
             {{\"function\": \"partial_mean\", \"args\": {{}}}}"
        );
    }
    Ok(bytes)
}

/// The profile's password: `[server] password_file`, else `WARDEN_PASSWORD`.
fn password(profile: &Profile) -> anyhow::Result<String> {
    let file = profile.server.password_file.as_deref();
    if file.is_none() && std::env::var_os(common::PASSWORD_ENV).is_none() {
        bail!(
            "no password for `{}`: set [server] password_file in {} or the environment variable {}",
            profile.server.username,
            profile.path.display(),
            common::PASSWORD_ENV
        );
    }
    let pw = common::password(file, "write the account's password there")?;
    let pw = std::str::from_utf8(&pw).context("the password is not UTF-8 text")?;
    Ok(pw.to_owned())
}

fn secret_key(profile: &Profile) -> anyhow::Result<SecretKey> {
    let path = &profile.organization.secret_key;
    let pem = common::read_small(path)
        .with_context(|| format!("[organization] secret_key in {}", profile.path.display()))?;
    let pem = std::str::from_utf8(&pem)
        .with_context(|| format!("{} is not a PEM key file", path.display()))?;
    SecretKey::from_pem(pem).with_context(|| {
        format!(
            "{} is not an X25519 secret key file (`WARDEN X25519 PRIVATE KEY`)",
            path.display()
        )
    })
}

async fn login(profile: &Profile) -> anyhow::Result<Client> {
    let pw = password(profile)?;
    Ok(Client::login(&profile.server.url, &profile.server.username, &pw).await?)
}

async fn create(
    profile: &Profile,
    image: &str,
    orgs: &[String],
    input: &[u8],
    name: &str,
    wait_for_runs: bool,
    output: &OutputArgs,
) -> anyhow::Result<Outcome> {
    let secret = secret_key(profile)?;
    let client = login(profile).await?;
    let collab = client.collaboration(&profile.collaboration).await?;
    client.check_own_key(&secret).await?;
    let targets = client.targets(&collab, orgs, profile).await?;
    let task = client
        .create_task(&collab, &targets, name, image, input)
        .await?;
    if !wait_for_runs {
        let outcomes = client.outcomes(&task, None).await?;
        return render(&task, &outcomes, output.out.as_deref(), output.json, false);
    }
    finish(&client, &secret, task.task.id, output).await
}

async fn wait(profile: &Profile, task_id: i64, output: &OutputArgs) -> anyhow::Result<Outcome> {
    let secret = secret_key(profile)?;
    let client = login(profile).await?;
    finish(&client, &secret, task_id, output).await
}

/// Waits for every run, opens the results and renders them.
async fn finish(
    client: &Client,
    secret: &SecretKey,
    task_id: i64,
    output: &OutputArgs,
) -> anyhow::Result<Outcome> {
    let task = match client
        .wait(task_id, Duration::from_secs(output.timeout))
        .await
    {
        Ok(t) => t,
        Err(ClientError::Timeout {
            task,
            pending,
            secs,
            detail,
        }) => {
            let states: Vec<String> = detail
                .runs
                .iter()
                .map(|r| format!("run {} {}", r.id, r.state))
                .collect();
            bail!(
                "task {task}: {pending} run(s) not final after {secs} s ({}); wait again with \
                 `warden task wait {task}`",
                states.join(", ")
            );
        }
        Err(e) => return Err(e.into()),
    };
    let outcomes = client.outcomes(&task, Some(secret)).await?;
    render(&task, &outcomes, output.out.as_deref(), output.json, true)
}

async fn show(profile: &Profile, task_id: i64, json: bool) -> anyhow::Result<Outcome> {
    let client = login(profile).await?;
    let task = client.task(task_id).await?;
    let outcomes = client.outcomes(&task, None).await?;
    render(&task, &outcomes, None, json, false)
}

/// `name` made safe as part of a file name (the server chooses organization names).
fn file_safe(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if s.is_empty() { "org".to_owned() } else { s }
}

/// Text fit for a terminal: control characters other than newline and tab are escaped.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn write_result(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Prints the task and its runs; with results, writes those that go to files. The exit status
/// is 1 when a run failed or was rejected; when `final_only`, 0 only if every run completed.
fn render(
    detail: &TaskDetail,
    outcomes: &[RunOutcome],
    out: Option<&Path>,
    json: bool,
    final_only: bool,
) -> anyhow::Result<Outcome> {
    if let Some(dir) = out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the output folder {}", dir.display()))?;
    }
    let t = &detail.task;
    let mut text = format!(
        "task {} `{}` in collaboration {}: {} at {} organization(s)\n",
        t.id,
        printable(&t.name),
        t.collaboration_id,
        printable(&t.image),
        outcomes.len()
    );
    let mut runs = Vec::new();
    for o in outcomes {
        let r = &o.run;
        let org = printable(&o.organization);
        let _ = writeln!(text, "{org}: run {} {}", r.id, r.state);
        if let Some(reason) = &r.reason {
            let _ = writeln!(text, "  reason: {}", printable(reason));
        }
        let mut result_text = None;
        let mut result_file = None;
        if let Some(bytes) = &o.result {
            let as_text = std::str::from_utf8(bytes).ok();
            match (out, as_text) {
                (Some(dir), _) => {
                    let p = dir.join(format!("{}-run-{}", file_safe(&o.organization), r.id));
                    write_result(&p, bytes)?;
                    let _ = writeln!(
                        text,
                        "  result: {} bytes written to {}",
                        bytes.len(),
                        p.display()
                    );
                    result_file = Some(p);
                }
                (None, Some(s)) => {
                    let _ = writeln!(text, "  result: {}", printable(s));
                    result_text = Some(s.to_owned());
                }
                (None, None) => {
                    let p = PathBuf::from(format!("run-{}.bin", r.id));
                    write_result(&p, bytes)?;
                    let _ = writeln!(
                        text,
                        "  result: {} bytes (not text) written to {}",
                        bytes.len(),
                        p.display()
                    );
                    result_file = Some(p);
                }
            }
        }
        runs.push(json!({
            "id": r.id,
            "organization": o.organization,
            "organization_id": r.organization_id,
            "state": r.state,
            "reason": r.reason,
            "digest": r.digest,
            "has_result": r.has_result,
            "result": result_text,
            "result_file": result_file.map(|p| p.display().to_string()),
        }));
    }
    let bad = outcomes
        .iter()
        .any(|o| matches!(o.run.state, RunState::Failed | RunState::Rejected));
    let all_done = outcomes.iter().all(|o| o.run.state == RunState::Completed);
    let exit = if bad || (final_only && !all_done) {
        EXIT_RUN_FAILED
    } else {
        EXIT_COMPLETED
    };
    let output = if json {
        let v = json!({
            "task": {
                "id": t.id,
                "name": t.name,
                "image": t.image,
                "collaboration_id": t.collaboration_id,
                "organization_id": t.organization_id,
            },
            "runs": runs,
        });
        format!("{v:#}")
    } else {
        text.trim_end().to_owned()
    };
    Ok(Outcome { output, exit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_server_cannot_leave_the_output_folder() {
        assert_eq!(file_safe("hospital-a"), "hospital-a");
        assert_eq!(file_safe("../../etc/passwd"), "______etc_passwd");
        assert_eq!(file_safe(""), "org");
        assert_eq!(file_safe(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn control_characters_are_escaped_for_the_terminal() {
        assert_eq!(printable("a\tb\nc"), "a\tb\nc");
        assert_eq!(printable("\u{1b}[2J"), "\\u{1b}[2J");
    }

    fn outcomes(states: &[&str]) -> (TaskDetail, Vec<RunOutcome>) {
        let runs: Vec<Value> = states
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({
                    "id": i + 10, "task_id": 7, "collaboration_id": 3, "organization_id": i + 1,
                    "state": s, "has_result": false, "created_at": "2026-01-01T00:00:00Z",
                    "admitted_at": null, "started_at": null, "finished_at": null, "acked_at": null,
                    "reason": if *s == "rejected" { Some("denied by policy") } else { None },
                })
            })
            .collect();
        let detail: TaskDetail = serde_json::from_value(json!({
            "task": {"id": 7, "collaboration_id": 3, "name": "t", "image": "x",
                     "organization_id": 1, "created_at": "2026-01-01T00:00:00Z"},
            "runs": runs
        }))
        .unwrap();
        let o = detail
            .runs
            .iter()
            .map(|r| RunOutcome {
                run: r.clone(),
                organization: format!("org-{}", r.organization_id),
                result: None,
            })
            .collect();
        (detail, o)
    }

    #[track_caller]
    fn exit(states: &[&str], final_only: bool) -> u8 {
        let (d, o) = outcomes(states);
        render(&d, &o, None, false, final_only).unwrap().exit
    }

    #[test]
    fn the_exit_status_is_0_only_when_no_run_failed_or_was_rejected() {
        assert_eq!(exit(&["completed", "completed"], true), 0);
        assert_eq!(exit(&["completed", "rejected"], true), 1);
        assert_eq!(exit(&["failed", "completed"], true), 1);
        assert_eq!(exit(&["pending", "running"], false), 0);
        assert_eq!(exit(&["pending", "failed"], false), 1);
        let (d, o) = outcomes(&["completed", "rejected"]);
        let text = render(&d, &o, None, false, true).unwrap().output;
        assert!(
            text.contains("org-2: run 11 rejected\n  reason: denied by policy"),
            "{text}"
        );
    }

    #[test]
    fn an_input_must_be_json() {
        assert!(read_input(Some("{\"function\":\"f\"}"), None).is_ok());
        let e = read_input(Some("{function"), None).unwrap_err().to_string();
        assert!(e.contains("--input is not JSON"), "{e}");
        let e = read_input(None, Some(Path::new("/nonexistent/in.json")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read /nonexistent/in.json"), "{e}");
    }
}
