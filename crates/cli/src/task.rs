//! `warden task create|wait|show|logs|cancel`: the researcher's side (`warden-client`). The input is
//! strictly parsed and sealed for each target organization, whose key must match the profile's
//! pin, with the researcher's own certified key, bound to a fresh task nonce, the image and the
//! digest resolved here; results are opened with the researcher's key and checked against the
//! run, its organization's pinned key, the nonce and the digest. `create` records what it sent
//! under $XDG_STATE_HOME/warden, so that a later `wait` or `show` checks the server against it.
//!
//! Every string that came from the server or an algorithm is escaped before it is printed
//! (`warden_api::display::safe`).
//!
//! While waiting, each run's state is shown on standard error as it changes (`progress`: live on
//! a terminal, one plain line per change otherwise). Ctrl-C while waiting stops the wait only:
//! the task was created and its record written before the wait began, nothing is cancelled,
//! no result is written, and the message says how to come back (`warden task wait ID`).
//!
//! Exit status: 0 every run completed (for `cancel`: the task is cancelled), 1 some run failed,
//! was rejected or cancelled (reasons printed), the server refused a cancellation (its reason
//! printed), or the server's task or a result did not verify (nothing of it printed); 2 bad input, a server
//! or a key problem (nothing is created when a key does not match its pin); 130 the wait was
//! interrupted (Ctrl-C).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::admin::json_safe;
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use tokio::signal::unix::{Signal, SignalKind, signal};
use warden_api::display::safe;
use warden_api::{RunState, TaskDetail};
use warden_client::{
    Client, ClientError, Expect, Profile, RecordStore, Researcher, RunOutcome, Submission,
    TaskRecord,
};

use crate::common;
use crate::common::Outcome;
use crate::progress::{Watch, waiting_hint};

pub const EXIT_COMPLETED: u8 = 0;
pub const EXIT_RUN_FAILED: u8 = 1;
/// The wait was interrupted by Ctrl-C (128 + SIGINT); nothing was cancelled.
pub const EXIT_INTERRUPTED: u8 = 130;
/// Default of `--timeout`.
const DEFAULT_TIMEOUT_SECS: u64 = 600;
/// Largest `--input-file` read.
const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Seal the input for each target organization (keys checked against the profile's pins)
    /// with your certified key and create the task; with --wait, wait for its runs and open
    /// and check their results.
    ///
    /// Example: warden task create --profile cardio --image registry.example.org/warden/mean:1.0 --org hospital-a --org hospital-b --input '{"function": "partial_mean", "args": {"column": "age"}}' --wait
    Create {
        #[command(flatten)]
        profile: ProfileArgs,
        /// Image reference of the algorithm, e.g. `registry.example.org/warden/mean:1.0`; a tag
        /// is resolved to its digest at the registry here, once.
        #[arg(long, value_name = "REF")]
        image: String,
        /// A target organization, by name; repeat for several.
        #[arg(long = "org", value_name = "NAME", required = true)]
        orgs: Vec<String>,
        /// The input, strict JSON such as `{"function": "partial_mean", "args": {...}}`.
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
    /// opened result. Also spelled `task results` (at once when every run has ended); with
    /// `--out DIR` (or `--output DIR`) each result is written whole (a temporary file renamed).
    ///
    /// Example: warden task results --profile cardio 12 --output results/
    #[command(visible_alias = "results")]
    Wait {
        #[command(flatten)]
        profile: ProfileArgs,
        #[command(flatten)]
        output: OutputArgs,
        task_id: i64,
    },
    /// Print the logs each run's node released (sealed for you: opened with your key and
    /// checked like a result), escaped for the terminal; a run without released logs says why.
    ///
    /// Example: warden task logs --profile cardio --org hospital-a 12
    Logs {
        #[command(flatten)]
        profile: ProfileArgs,
        /// Only the run at this organization, by name.
        #[arg(long = "org", value_name = "NAME")]
        org: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        task_id: i64,
    },
    /// Cancel a task: its runs that have not ended become cancelled and their nodes stop
    /// them (a running container is killed, nothing of the run leaves its node); runs that had
    /// ended keep their state. Cancelling it again changes nothing.
    ///
    /// Example: warden task cancel --profile cardio 12
    Cancel {
        #[command(flatten)]
        profile: ProfileArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        task_id: i64,
    },
    /// Print a task's runs as they are now (no results are downloaded).
    ///
    /// Example: warden task show --profile cardio 12 --json
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
    #[arg(long, visible_alias = "output", value_name = "DIR")]
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
            let hint = profile.hint();
            let profile = load_profile(&profile)?;
            let waiting = wait.then_some(hint.as_str());
            runtime.block_on(create(
                &profile, &image, &orgs, &input, &name, waiting, &output,
            ))
        }
        TaskCommand::Wait {
            profile,
            output,
            task_id,
        } => {
            let hint = profile.hint();
            let profile = load_profile(&profile)?;
            runtime.block_on(wait(&profile, &hint, task_id, &output))
        }
        TaskCommand::Logs {
            profile,
            org,
            json,
            task_id,
        } => {
            let profile = load_profile(&profile)?;
            runtime.block_on(logs(&profile, task_id, org.as_deref(), json))
        }
        TaskCommand::Cancel {
            profile,
            json,
            task_id,
        } => {
            let profile = load_profile(&profile)?;
            runtime.block_on(cancel(&profile, task_id, json))
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

impl ProfileArgs {
    /// The profile option as given, for the command that comes back to a task.
    fn hint(&self) -> String {
        match (&self.profile, &self.profile_file) {
            (_, Some(p)) => format!("--profile-file {}", shell_word(&p.display().to_string())),
            (Some(name), None) => format!("--profile {}", shell_word(name)),
            (None, None) => String::new(),
        }
    }
}

/// `word` quoted for a POSIX shell when it needs it, made safe to print.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@,".contains(c));
    if plain {
        word.to_owned()
    } else {
        safe(&format!("'{}'", word.replace('\'', "'\\''"))).into_owned()
    }
}

/// Ctrl-C (SIGINT) from here on is taken by the wait instead of ending the process, so that
/// nothing between now and the wait (the task's creation, its record) is cut in half.
fn interrupts() -> anyhow::Result<Signal> {
    signal(SignalKind::interrupt()).context("cannot watch for Ctrl-C")
}

fn load_profile(args: &ProfileArgs) -> anyhow::Result<Profile> {
    let path = match (&args.profile, &args.profile_file) {
        (_, Some(p)) => p.clone(),
        (Some(name), None) => warden_client::profile::path_of(name)?,
        (None, None) => bail!("name a profile with --profile NAME or --profile-file PATH"),
    };
    Ok(Profile::load(&path)?)
}

/// The input, strictly parsed: refused unless it is an input `{"function": ..., "args": ...}`
/// that every parser reads the same way.
fn read_input(
    input: Option<&str>,
    file: Option<&Path>,
) -> anyhow::Result<warden_api::strict::Input> {
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
    warden_client::parse_input(&bytes).with_context(|| what.clone())
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

fn researcher(profile: &Profile) -> anyhow::Result<Researcher> {
    Ok(Researcher::load(
        &profile.researcher.key,
        &profile.researcher.certificate,
    )?)
}

async fn login(profile: &Profile) -> anyhow::Result<Client> {
    // The session `warden login` keeps beside the profile, when there is one.
    if warden_client::admin::session_path(&profile.path).exists() {
        let hint = format!("--profile-file {}", profile.path.display());
        return crate::login::resume_or_login(&profile.path, &profile.server, &hint).await;
    }
    let pw = password(profile)?;
    Ok(Client::login(&profile.server.url, &profile.server.username, &pw).await?)
}

fn warn(message: &str) {
    eprintln!("warning: {}", safe(message));
}

/// Where task records are kept.
fn store() -> anyhow::Result<RecordStore> {
    Ok(RecordStore::default_location()?)
}

fn pins_from(profile: &Profile) -> String {
    profile.path.display().to_string()
}

async fn create(
    profile: &Profile,
    image: &str,
    orgs: &[String],
    input: &warden_api::strict::Input,
    name: &str,
    wait_for_runs: Option<&str>,
    output: &OutputArgs,
) -> anyhow::Result<Outcome> {
    let researcher = researcher(profile)?;
    let store = store()?;
    let client = login(profile).await?;
    client.check_researcher(&researcher).await?;
    let collab = client.collaboration(&profile.collaboration).await?;
    let targets = client.targets(&collab, orgs, profile).await?;
    let digest = warden_client::resolve_digest(image, &profile.registry).await?;
    let submission = Submission {
        collaboration: &collab,
        targets: &targets,
        name,
        image,
        digest: &digest,
        input,
    };
    let mut sigint = interrupts()?;
    let (task, record) = client.create_task(&researcher, &submission).await?;
    if let Err(e) = store.save(&record) {
        warn(&format!(
            "task {} was created, but {e}; a later `warden task wait` or `show` falls back to \
             the server's echo",
            task.task.id
        ));
    }
    let Some(hint) = wait_for_runs else {
        let expect = Expect {
            record: &record,
            open: None,
        };
        let outcomes = client.outcomes(&task, Some(expect)).await?;
        return render(&task, &outcomes, output.out.as_deref(), output.json, false);
    };
    let waited = finish(&client, profile, &researcher, &record, output, &mut sigint).await?;
    waited.into_outcome(task.task.id, hint)
}

/// The record `create` wrote for `task_id`, else (with a warning) `None`.
fn recorded(
    store: &RecordStore,
    client: &Client,
    task_id: i64,
) -> anyhow::Result<Option<TaskRecord>> {
    let record = store.load(client.base(), task_id)?;
    if record.is_none() {
        warn(&format!(
            "no local record of task {task_id} in {} (`warden task create` on this machine \
             writes one); checking against the nonce and image the server shows instead",
            store.dir().display()
        ));
    }
    Ok(record)
}

async fn wait(
    profile: &Profile,
    hint: &str,
    task_id: i64,
    output: &OutputArgs,
) -> anyhow::Result<Outcome> {
    let mut sigint = interrupts()?;
    let researcher = researcher(profile)?;
    let store = store()?;
    let client = login(profile).await?;
    client.check_researcher(&researcher).await?;
    let record = match recorded(&store, &client, task_id)? {
        Some(r) => r,
        None => {
            let task = client.task(task_id).await?;
            TaskRecord::from_echo(client.base(), &task, &profile.registry).await?
        }
    };
    let waited = finish(&client, profile, &researcher, &record, output, &mut sigint).await?;
    waited.into_outcome(task_id, hint)
}

/// How a wait ended.
enum Waited {
    Done(Outcome),
    /// Ctrl-C: nothing was written, nothing cancelled.
    Interrupted,
}

impl Waited {
    fn into_outcome(self, task_id: i64, hint: &str) -> anyhow::Result<Outcome> {
        match self {
            Waited::Done(o) => Ok(o),
            Waited::Interrupted => {
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "stopped waiting for task {task_id} (Ctrl-C); nothing was cancelled: its \
                     runs go on at their nodes. Come back with `warden task wait {hint} {task_id}`"
                );
                Ok(Outcome {
                    output: String::new(),
                    exit: EXIT_INTERRUPTED,
                })
            }
        }
    }
}

/// Waits for every run, opens and checks the results and renders them; Ctrl-C (`sigint`) stops
/// the wait or the downloads, before anything is written.
async fn finish(
    client: &Client,
    profile: &Profile,
    researcher: &Researcher,
    record: &TaskRecord,
    output: &OutputArgs,
    sigint: &mut Signal,
) -> anyhow::Result<Waited> {
    let opened = tokio::select! {
        r = wait_and_open(client, profile, researcher, record, output) => r?,
        _ = sigint.recv() => return Ok(Waited::Interrupted),
    };
    let (task, outcomes) = opened;
    let shown = render(&task, &outcomes, output.out.as_deref(), output.json, true)?;
    Ok(Waited::Done(shown))
}

/// Waits for every run, showing their states as they change, then downloads, opens and checks
/// the results.
async fn wait_and_open(
    client: &Client,
    profile: &Profile,
    researcher: &Researcher,
    record: &TaskRecord,
    output: &OutputArgs,
) -> anyhow::Result<(TaskDetail, Vec<RunOutcome>)> {
    // Each run's state is shown on standard error when it changes, so that a researcher sees
    // a run wait at its node (for approval or release) rather than a silent wait.
    let names = organization_names(client, record.task_id).await;
    let mut watch = Watch::new(names, Watch::live_here());
    let waited = client
        .wait_watching(record.task_id, Duration::from_secs(output.timeout), |t| {
            watch.seen(t)
        })
        .await;
    watch.stop();
    let task = match waited {
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
    warden_client::check_task(&task, record)?;
    let from = pins_from(profile);
    let expect = Expect {
        record,
        open: Some((researcher, &profile.pins, &from)),
    };
    let outcomes = client.outcomes(&task, Some(expect)).await?;
    Ok((task, outcomes))
}

async fn show(profile: &Profile, task_id: i64, json: bool) -> anyhow::Result<Outcome> {
    let store = store()?;
    let client = login(profile).await?;
    let record = recorded(&store, &client, task_id)?;
    let task = client.task(task_id).await?;
    let outcomes = match &record {
        Some(record) => {
            warden_client::check_task(&task, record)?;
            let expect = Expect { record, open: None };
            client.outcomes(&task, Some(expect)).await?
        }
        None => client.outcomes(&task, None).await?,
    };
    render(&task, &outcomes, None, json, false)
}

/// `warden task cancel`: the server's answer, each run's state per organization. A refusal by
/// the server (not the requester, no such task, every run had ended) is exit 1 with its reason.
async fn cancel(profile: &Profile, task_id: i64, json: bool) -> anyhow::Result<Outcome> {
    let client = login(profile).await?;
    let task = match client.cancel_task(task_id).await {
        Ok(t) => t,
        Err(e) => {
            let e = anyhow::Error::from(e);
            if crate::login::is_refusal(&e) {
                crate::print_error(&e);
                return Ok(Outcome {
                    output: String::new(),
                    exit: EXIT_RUN_FAILED,
                });
            }
            return Err(e);
        }
    };
    let t = &task.task;
    let when = t.cancelled_at.and_then(|at| {
        at.format(&time::format_description::well_known::Rfc3339)
            .ok()
    });
    let by = t.cancelled_by.as_deref().map(|b| safe(b).into_owned());
    let mut text = format!(
        "task {} cancelled{}{}\n",
        t.id,
        by.as_deref()
            .map(|b| format!(" by {b}"))
            .unwrap_or_default(),
        when.as_deref()
            .map(|w| format!(" at {w}"))
            .unwrap_or_default(),
    );
    let mut runs = Vec::new();
    for run in &task.runs {
        let org = match client.organization(run.organization_id).await {
            Ok(o) => o.name,
            Err(_) => format!("organization {}", run.organization_id),
        };
        let note = if run.state == RunState::Cancelled {
            ""
        } else {
            " (it had ended before the cancellation)"
        };
        let _ = writeln!(text, "  {}: run {} {}{note}", safe(&org), run.id, run.state);
        runs.push(json!({
            "id": run.id,
            "organization": org,
            "organization_id": run.organization_id,
            "state": run.state,
        }));
    }
    let output = if json {
        let v = json!({
            "task": {"id": t.id, "cancelled_at": when, "cancelled_by": t.cancelled_by},
            "runs": runs,
        });
        json_safe(&format!("{v:#}"))
    } else {
        text.trim_end().to_owned()
    };
    Ok(Outcome {
        output,
        exit: EXIT_COMPLETED,
    })
}

/// Why a run shows no released logs: (status for `--json`, the sentence).
fn no_logs(state: RunState) -> (&'static str, &'static str) {
    match state {
        RunState::Rejected => (
            "none",
            "none: the run was rejected before it ran, so it printed nothing",
        ),
        s if !s.is_final() => (
            "not_yet",
            "not yet: a node releases logs only when the run ends",
        ),
        _ => (
            "withheld",
            "withheld by the node's policy: it released no logs for this run (logs are withheld \
             unless its rule says logs = \"release\"; logs over max_bytes, of a refused result \
             or of a plaintext collaboration are withheld too); the node's audit log says which",
        ),
    }
}

/// `warden task logs`: each run's released logs, opened with the researcher's key and checked
/// against its organization's pinned key, the nonce, the run and the digest.
async fn logs(
    profile: &Profile,
    task_id: i64,
    only: Option<&str>,
    json: bool,
) -> anyhow::Result<Outcome> {
    let researcher = researcher(profile)?;
    let store = store()?;
    let client = login(profile).await?;
    client.check_researcher(&researcher).await?;
    let task = client.task(task_id).await?;
    let record = match recorded(&store, &client, task_id)? {
        Some(r) => r,
        None => TaskRecord::from_echo(client.base(), &task, &profile.registry).await?,
    };
    warden_client::check_task(&task, &record)?;
    let from = pins_from(profile);
    let mut text = String::new();
    let mut runs = Vec::new();
    let mut matched = false;
    for run in &task.runs {
        let org = client.organization(run.organization_id).await?;
        if only.is_some_and(|name| name != org.name) {
            continue;
        }
        matched = true;
        let producer = warden_client::check_pin(&org, &profile.pins, &from)?;
        let opened = if run.state.is_final() {
            client.logs(run, &producer, &researcher, &record).await?
        } else {
            None
        };
        let _ = writeln!(text, "{}: run {} {}", safe(&org.name), run.id, run.state);
        match &opened {
            Some(bytes) => {
                let body = String::from_utf8_lossy(bytes);
                let _ = writeln!(text, "  logs: {} bytes, released sealed", bytes.len());
                for line in body.lines() {
                    let _ = writeln!(text, "  | {}", safe(line));
                }
                runs.push(json!({
                    "id": run.id,
                    "organization": org.name,
                    "state": run.state,
                    "logs": "released",
                    "text": body,
                }));
            }
            None => {
                let (status, why) = no_logs(run.state);
                let _ = writeln!(text, "  logs: {why}");
                runs.push(json!({
                    "id": run.id,
                    "organization": org.name,
                    "state": run.state,
                    "logs": status,
                    "why": why,
                    "text": null,
                }));
            }
        }
    }
    if let Some(name) = only
        && !matched
    {
        bail!(
            "task {task_id} has no run at an organization named `{}`",
            safe(name)
        );
    }
    let output = if json {
        json_safe(&format!("{:#}", json!({"task_id": task_id, "runs": runs})))
    } else {
        text.trim_end().to_owned()
    };
    Ok(Outcome { output, exit: 0 })
}

/// The names of the organizations of a task's runs, by id (best effort: an id is shown when a
/// name cannot be read).
async fn organization_names(
    client: &Client,
    task_id: i64,
) -> std::collections::BTreeMap<i64, String> {
    let mut names = std::collections::BTreeMap::new();
    let Ok(task) = client.task(task_id).await else {
        return names;
    };
    for r in &task.runs {
        if let Ok(o) = client.organization(r.organization_id).await {
            names.insert(r.organization_id, o.name);
        }
    }
    names
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

/// Writes a result whole or not at all: a temporary file in the same folder, flushed to disk,
/// then renamed over `path`.
fn write_result(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let what = || format!("cannot write {}", path.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(".warden-result-")
        .tempfile_in(dir)
        .with_context(what)?;
    tmp.write_all(bytes).with_context(what)?;
    tmp.as_file().sync_all().with_context(what)?;
    tmp.persist(path).map_err(|e| e.error).with_context(what)?;
    Ok(())
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
        safe(&t.name),
        t.collaboration_id,
        safe(&t.image),
        outcomes.len()
    );
    let cancelled_at = t.cancelled_at.and_then(|at| {
        at.format(&time::format_description::well_known::Rfc3339)
            .ok()
    });
    if let Some(at) = &cancelled_at {
        let by = t
            .cancelled_by
            .as_deref()
            .map(|b| format!(" by {}", safe(b)))
            .unwrap_or_default();
        let _ = writeln!(text, "cancelled{by} at {at}");
    }
    let mut runs = Vec::new();
    for o in outcomes {
        let r = &o.run;
        let org = safe(&o.organization);
        let _ = writeln!(text, "{org}: run {} {}", r.id, r.state);
        if let Some(hint) = waiting_hint(r.state) {
            let _ = writeln!(text, "  waiting: {hint}");
        }
        if let Some(reason) = &r.reason {
            let _ = writeln!(text, "  reason: {}", safe(reason));
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
                    let _ = writeln!(text, "  result: {}", safe(s));
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
    let bad = outcomes.iter().any(|o| {
        matches!(
            o.run.state,
            RunState::Failed | RunState::Rejected | RunState::Cancelled
        )
    });
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
                "nonce": t.nonce,
                "cancelled_at": cancelled_at,
                "cancelled_by": t.cancelled_by,
            },
            "runs": runs,
        });
        json_safe(&format!("{v:#}"))
    } else {
        text.trim_end().to_owned()
    };
    Ok(Outcome { output, exit })
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn names_from_the_server_cannot_leave_the_output_folder() {
        assert_eq!(file_safe("hospital-a"), "hospital-a");
        assert_eq!(file_safe("../../etc/passwd"), "______etc_passwd");
        assert_eq!(file_safe(""), "org");
        assert_eq!(file_safe(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn json_leaves_nothing_a_terminal_acts_on_and_reads_back_the_same() {
        let v = json!({"reason": "a\nb\u{1b}[2J\u{9b}31m\u{202e}x\u{7f}\\"});
        let text = json_safe(&format!("{v:#}"));
        assert!(
            !text.contains(['\u{1b}', '\u{9b}', '\u{202e}', '\u{7f}']),
            "{text}"
        );
        assert!(
            text.contains("\\u009b") && text.contains("\\u202e"),
            "{text}"
        );
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
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
    fn names_reasons_and_results_from_the_server_are_printed_escaped() {
        let (mut d, mut o) = outcomes(&["completed", "rejected"]);
        d.task.name = "t\nrun 1 completed".into();
        o[0].organization = "evil\u{1b}[2K".into();
        o[0].result = Some(b"42\n\x1b]0;owned\x07".to_vec());
        o[1].run.reason = Some("no\r\nhospital-a: run 10 completed\u{202e}".into());
        let text = render(&d, &o, None, false, true).unwrap().output;
        assert_eq!(
            text,
            "task 7 `t\\nrun 1 completed` in collaboration 3: x at 2 organization(s)\n\
             evil\\u{1b}[2K: run 10 completed\n\
             \x20 result: 42\\n\\u{1b}]0;owned\\u{7}\n\
             org-2: run 11 rejected\n\
             \x20 reason: no\\r\\nhospital-a: run 10 completed\\u{202e}"
        );
    }

    #[test]
    fn an_input_must_be_json() {
        assert!(read_input(Some("{\"function\":\"f\"}"), None).is_ok());
        let e = format!("{:#}", read_input(Some("{function"), None).unwrap_err());
        assert!(e.contains("--input: the input is not accepted"), "{e}");
        let e = format!(
            "{:#}",
            read_input(Some(r#"{"function":"f","function":"g"}"#), None).unwrap_err()
        );
        assert!(e.contains("twice") && e.contains("nothing was sent"), "{e}");
        let e = read_input(None, Some(Path::new("/nonexistent/in.json")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read /nonexistent/in.json"), "{e}");
    }
}
