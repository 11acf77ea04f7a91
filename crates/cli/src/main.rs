//! `warden`: one binary, one subcommand per part. Each subcommand lives in its own module; this
//! file only parses the command line and maps outcomes to exit codes.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

mod admin;
mod algorithm;
mod audit;
mod base_image;
mod build;
mod common;
mod demo;
mod image;
mod image_archive;
mod keys;
mod login;
mod node;
mod policy;
mod progress;
mod server;
mod shell;
mod store;
mod task;
mod tasklist;
mod ui;

#[derive(Debug, Parser)]
#[command(
    name = "warden",
    version,
    about = "Federated analysis where every data owner decides, checks and records what runs on its data"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The algorithm store: start it, log in, register a key, verify its log.
    Store {
        #[command(subcommand)]
        command: store::StoreCommand,
    },
    /// Algorithms in a store: submit versions, list, show, revoke.
    Algorithm {
        #[command(subcommand)]
        command: algorithm::AlgorithmCommand,
    },
    /// Review algorithm versions in a store, signing with your own key.
    Review {
        #[command(subcommand)]
        command: algorithm::ReviewCommand,
    },
    /// Print the normalised form of an image reference, as policy rules see it (one JSON
    /// document).
    ///
    /// Example: warden reference registry.example.org:5000/team/avg:1.0
    Reference {
        /// Image reference, e.g. `ubuntu:22.04` or `registry.example.org:5000/team/avg@sha256:...`.
        image: String,
        #[command(flatten)]
        json: common::AlwaysJson,
    },
    /// The demo federation on this machine: registry, server, three nodes, a signed federated
    /// mean, a denied run, the audit logs; then everything is removed. Exit 2 names what is missing.
    ///
    /// Example: warden demo
    Demo(demo::DemoArgs),
    /// Verify and read a node's audit log, without the server.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Sign images and verify them against a node policy (cosign-compatible signatures).
    Image {
        #[command(subcommand)]
        command: image::ImageCommand,
    },
    /// Create signing keys and inspect public keys.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Run a node: a data owner's station that admits, runs and records algorithms; and, as an
    /// administrator, create nodes at the server and rotate their API keys.
    Node {
        #[command(subcommand)]
        command: NodeCli,
    },
    /// Dry-run a node policy against an image, and lint policy files.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Run the coordination server that researchers and nodes talk to.
    Server {
        #[command(subcommand)]
        command: server::ServerCommand,
    },
    /// Submit tasks as a researcher: inputs sealed to pinned organization keys, results opened.
    Task {
        #[command(subcommand)]
        command: TaskCli,
    },
    /// Log in to a server and keep the session beside the profile (~/.config/warden/NAME.toml).
    ///
    /// Example: warden login --server https://warden.example.org --username rita --profile cardio
    Login(login::LoginArgs),
    /// End the profile's session at the server and forget it here.
    ///
    /// Example: warden logout --profile cardio
    Logout(login::SessionArgs),
    /// Show who the profile's session is logged in as.
    ///
    /// Example: warden whoami --profile cardio --json
    Whoami(login::SessionArgs),
    /// Organizations at the server: a name and the X25519 encryption key its nodes hold.
    Org(admin::Group<admin::OrgCommand>),
    /// Collaborations at the server: member organizations that run tasks together.
    Collab(admin::Group<admin::CollabCommand>),
    /// User accounts at the server: roles, disabling, password resets.
    User(admin::Group<admin::UserCommand>),
    /// The administration commands under one name: `warden admin org|collab|user|node ...` is
    /// `warden org|collab|user ...` and `warden node create|list|rotate-key`.
    #[command(hide = true)]
    Admin(admin::AdminArgs),
    /// Serve the local web console on loopback: a researcher's tasks, runs and results (with a
    /// profile), a data owner's airlock (with the node's socket). Prints the address to open.
    ///
    /// Example: warden ui --profile cardio --node-socket /var/lib/warden/spool/local.sock
    Ui(ui::UiArgs),
    /// Print a shell completion script.
    ///
    /// Example: warden completions bash > /etc/bash_completion.d/warden
    Completions {
        #[arg(value_enum)]
        shell: shell::Shell,
    },
    /// Write the man pages of every command into a folder.
    ///
    /// Example: warden man --out /usr/local/share/man/man1
    Man {
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
    },
    /// Write one Markdown page per command (its --help) and an index into a folder: how
    /// docs/cli is made.
    ///
    /// Example: warden docs --out docs/cli
    #[command(hide = true)]
    Docs {
        #[arg(long, value_name = "DIR", default_value = shell::DOCS_DIR)]
        out: std::path::PathBuf,
    },
}

/// `warden task`: the researcher's commands, and `list`.
#[derive(Debug, Subcommand)]
enum TaskCli {
    #[command(flatten)]
    Core(task::TaskCommand),
    /// List the tasks this account sees (`--collaboration`, `--mine`, `--state`).
    ///
    /// Example: warden task list --profile cardio --mine --state active
    List(tasklist::ListArgs),
}

/// `warden node`: the node's own commands, and the server's records of nodes.
#[derive(Debug, Subcommand)]
enum NodeCli {
    #[command(flatten)]
    Local(node::NodeCommand),
    Create(admin::One<admin::NodeCreate>),
    List(admin::One<admin::NodeList>),
    RotateKey(admin::One<admin::NodeRotate>),
}

/// Exit status for bad input (an unreadable policy, a malformed reference, a registry failure).
const EXIT_BAD_INPUT: u8 = 2;
/// Exit status when what the server shows of a task, or a result, did not verify.
const EXIT_NOT_VERIFIED: u8 = 1;

/// Prints an error on stderr. It may hold strings from the server (names, its error messages)
/// or from a file: every control character is escaped, so it is one line that this tool wrote.
fn print_error(e: &anyhow::Error) {
    eprintln!("error: {}", warden_api::display::safe(&format!("{e:#}")));
}

/// Writes a command's output on stdout. A reader that has gone away (`warden ... | head -1`)
/// is not this command's failure: the rest of the output is dropped and the command keeps its
/// own exit status (Rust ignores SIGPIPE, so without this every print would panic with 101).
pub(crate) fn emit(text: &dyn std::fmt::Display) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: cannot write the output: {e}");
        }
    }
}

/// The exit status of an error: bad input, unless the server's task or a result did not
/// verify.
fn error_status(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<warden_client::ClientError>() {
        Some(c) if c.is_verification_failure() => EXIT_NOT_VERIFIED,
        _ => EXIT_BAD_INPUT,
    }
}

/// Prints a command's output and returns its exit status; an error is bad input, or (for a
/// task whose results do not verify) a failure, and prints nothing on stdout.
fn report(result: anyhow::Result<common::Outcome>) -> ExitCode {
    match result {
        Ok(outcome) => {
            // An interrupted wait prints nothing on standard output.
            if !outcome.output.is_empty() {
                emit(&outcome.output);
            }
            ExitCode::from(outcome.exit)
        }
        Err(e) => {
            print_error(&e);
            ExitCode::from(error_status(&e))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Store { command } => ExitCode::from(store::run(command)),
        Command::Algorithm { command } => ExitCode::from(algorithm::run_algorithm(command)),
        Command::Review { command } => ExitCode::from(algorithm::run_review(command)),
        Command::Audit { command } => report(audit::run(command)),
        Command::Demo(args) => match demo::run(args) {
            Ok(demo::Outcome::Done) => ExitCode::SUCCESS,
            Ok(demo::Outcome::BadInput(what)) => {
                eprintln!("error: {}", warden_api::display::safe(&what));
                ExitCode::from(EXIT_BAD_INPUT)
            }
            Err(e) => {
                print_error(&e);
                ExitCode::FAILURE
            }
        },
        Command::Image { command } => report(image::run(command)),
        Command::Policy { command } => report(policy::run(command)),
        Command::Node {
            command: NodeCli::Create(a),
        } => login::exit_of(admin::run(a.admin(admin::NodeCommand::Create))),
        Command::Node {
            command: NodeCli::List(a),
        } => login::exit_of(admin::run(a.admin(admin::NodeCommand::List))),
        Command::Node {
            command: NodeCli::RotateKey(a),
        } => login::exit_of(admin::run(a.admin(admin::NodeCommand::RotateKey))),
        Command::Node {
            command: NodeCli::Local(command),
        } => match node::run(command) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                print_error(&e);
                ExitCode::from(EXIT_BAD_INPUT)
            }
        },
        Command::Server { command } => match server::run(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                print_error(&e);
                ExitCode::from(EXIT_BAD_INPUT)
            }
        },
        Command::Task {
            command: TaskCli::Core(command),
        } => report(task::run(command)),
        Command::Task {
            command: TaskCli::List(args),
        } => login::exit_of(tasklist::run(args)),
        Command::Login(args) => login::exit_of(login::login(args)),
        Command::Logout(args) => login::exit_of(login::logout(args)),
        Command::Whoami(args) => login::exit_of(login::whoami(args)),
        Command::Admin(args) => login::exit_of(admin::run(args)),
        Command::Org(a) => login::exit_of(admin::run(
            a.admin(|command| admin::AdminCommand::Org { command }),
        )),
        Command::Collab(a) => login::exit_of(admin::run(
            a.admin(|command| admin::AdminCommand::Collab { command }),
        )),
        Command::User(a) => login::exit_of(admin::run(
            a.admin(|command| admin::AdminCommand::User { command }),
        )),
        Command::Ui(args) => login::exit_of(ui::run(args)),
        Command::Completions { shell } => {
            emit(&shell::completions(shell, Cli::command()).trim_end());
            ExitCode::SUCCESS
        }
        Command::Man { out } => match shell::man_pages(Cli::command(), &out) {
            Ok(n) => {
                emit(&format_args!("wrote {n} man pages to {}", out.display()));
                ExitCode::SUCCESS
            }
            Err(e) => {
                print_error(&e);
                ExitCode::from(EXIT_BAD_INPUT)
            }
        },
        Command::Docs { out } => match shell::write_doc_pages(Cli::command(), &out) {
            Ok(n) => {
                emit(&format_args!("wrote {n} pages to {}", out.display()));
                ExitCode::SUCCESS
            }
            Err(e) => {
                print_error(&e);
                ExitCode::from(EXIT_BAD_INPUT)
            }
        },
        Command::Keys { command } => match keys::run(command) {
            Ok(out) => {
                emit(&format_args!("{out:#}"));
                ExitCode::SUCCESS
            }
            Err(e) => {
                print_error(&e);
                ExitCode::from(EXIT_BAD_INPUT)
            }
        },
        Command::Reference { image, .. } => match warden_reference::Reference::parse(&image) {
            Ok(r) => {
                let out = serde_json::json!({
                    "reference": r.to_string(),
                    "repository": r.repository().to_string(),
                    "tag": r.tag(),
                    "digest": r.digest().map(|d| d.to_string()),
                });
                emit(&format_args!("{out:#}"));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {}", warden_api::display::safe(&e.to_string()));
                ExitCode::from(EXIT_BAD_INPUT)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;

    /// Every leaf command (one without subcommands), by its full name, with its long help.
    fn leaves(command: &clap::Command, name: &str, out: &mut Vec<(String, String)>) {
        let subs: Vec<&clap::Command> = command
            .get_subcommands()
            .filter(|s| s.get_name() != "help")
            .collect();
        if subs.is_empty() {
            let mut c = command.clone();
            out.push((name.to_owned(), c.render_long_help().to_string()));
        }
        for sub in subs {
            leaves(sub, &format!("{name} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn the_committed_command_pages_are_those_the_definitions_make() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(crate::shell::DOCS_DIR);
        let pages = crate::shell::doc_pages(Cli::command());
        assert!(pages.len() > 60, "{} pages", pages.len());
        let mut stale = Vec::new();
        for (file, text) in &pages {
            if std::fs::read_to_string(dir.join(file)).ok().as_deref() != Some(text.as_str()) {
                stale.push(file.clone());
            }
        }
        let wanted: std::collections::BTreeSet<&str> =
            pages.iter().map(|(f, _)| f.as_str()).collect();
        for entry in std::fs::read_dir(&dir).expect("docs/cli exists") {
            let name = entry.expect("an entry").file_name();
            let name = name.to_string_lossy().into_owned();
            if !wanted.contains(name.as_str()) {
                stale.push(format!("{name} (no such command)"));
            }
        }
        assert!(
            stale.is_empty(),
            "docs/cli is stale; run `cargo run -p warden-cli -- docs --out docs/cli` and commit \
             it:\n{}",
            stale.join("\n")
        );
    }

    #[test]
    fn every_leaf_command_takes_json_but_servers_and_file_writers() {
        // Serve until stopped, or write files and scripts: no document to print.
        const EXEMPT: &[&str] = &[
            "warden server start",
            "warden store start",
            "warden node start",
            "warden ui",
            "warden demo",
            "warden man",
            "warden completions",
            "warden docs",
        ];
        fn walk(command: &clap::Command, name: &str, out: &mut Vec<(String, bool)>) {
            let subs: Vec<&clap::Command> = command
                .get_subcommands()
                .filter(|s| s.get_name() != "help")
                .collect();
            if subs.is_empty() {
                let json = command
                    .get_arguments()
                    .any(|a| a.get_long() == Some("json"));
                out.push((name.to_owned(), json));
            }
            for sub in subs {
                walk(sub, &format!("{name} {}", sub.get_name()), out);
            }
        }
        let mut command = Cli::command();
        command.build();
        let mut all = Vec::new();
        walk(&command, "warden", &mut all);
        assert!(all.len() > 40, "{} leaf commands", all.len());
        let missing: Vec<&str> = all
            .iter()
            .filter(|(name, json)| !json && !EXEMPT.contains(&name.as_str()))
            .map(|(name, _)| name.as_str())
            .collect();
        assert!(
            missing.is_empty(),
            "{} leaf commands take no --json:\n{}",
            missing.len(),
            missing.join("\n")
        );
        for exempt in EXEMPT {
            assert!(
                all.iter().any(|(name, _)| name == exempt),
                "{exempt} is no command"
            );
        }
    }

    #[test]
    fn every_leaf_command_s_help_carries_an_example() {
        let mut command = Cli::command();
        command.build();
        let mut all = Vec::new();
        leaves(&command, "warden", &mut all);
        assert!(all.len() > 40, "{} leaf commands", all.len());
        let missing: Vec<&str> = all
            .iter()
            .filter(|(_, help)| {
                !help.lines().any(|l| {
                    let l = l.trim_start();
                    l.starts_with("Example: warden ") || l.starts_with("Example: `warden ")
                })
            })
            .map(|(name, _)| name.as_str())
            .collect();
        assert!(
            missing.is_empty(),
            "{} of {} leaf commands have no `Example: warden ...` line in --help:\n{}",
            missing.len(),
            all.len(),
            missing.join("\n")
        );
    }
}
