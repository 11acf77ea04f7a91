//! `warden-soak`: runs the fault scenarios again and again (the long forms, or `--short`) for
//! `--minutes N` (default 10), or once each with `--once`, and checks every history. Exit 0 when
//! every invariant held in every run, 1 with the first violated invariant and the history file,
//! 2 for bad usage. Driven by `scripts/soak`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use warden_faults::scenarios::{self, Form, SCENARIOS};

const USAGE: &str = "usage: soak [--minutes N] [--short] [--once] [--scenario NAME]... [--out DIR]\n\
  Runs the fault scenarios (replica-killed, link-cut, postgres-restarted, rolling-restart,\n\
  spool-full, replica-stalled, link-lossy) in turn until N minutes (default 10) have passed, and checks every history.\n\
  Exit 0: every invariant held; 1: an invariant did not (it and the history file are printed);\n\
  2: bad usage.";

struct Args {
    minutes: u64,
    form: Form,
    once: bool,
    scenarios: Vec<String>,
    out: PathBuf,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        minutes: 10,
        form: Form::Long,
        once: false,
        scenarios: Vec::new(),
        out: std::env::temp_dir().join("warden-soak"),
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--minutes" => {
                let v = it.next().ok_or("--minutes needs a number")?;
                a.minutes = v.parse().ok().filter(|m| *m >= 1).ok_or_else(|| {
                    format!("--minutes: `{v}` is not a whole number of minutes >= 1")
                })?;
            }
            "--short" => a.form = Form::Short,
            "--once" => a.once = true,
            "--scenario" => {
                let v = it.next().ok_or("--scenario needs a name")?;
                if !SCENARIOS.contains(&v.as_str()) {
                    return Err(format!(
                        "--scenario: no scenario `{v}`; they are {SCENARIOS:?}"
                    ));
                }
                a.scenarios.push(v);
            }
            "--out" => a.out = PathBuf::from(it.next().ok_or("--out needs a folder")?),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if a.scenarios.is_empty() {
        a.scenarios = SCENARIOS.iter().map(|s| (*s).to_owned()).collect();
    }
    Ok(a)
}

#[allow(clippy::print_stdout)]
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    if std::env::args().skip(1).any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("error: creating {}: {e}", args.out.display());
        return ExitCode::from(2);
    }
    let until = Instant::now() + Duration::from_secs(args.minutes * 60);
    let mut runs = 0;
    loop {
        for name in &args.scenarios {
            let outcome = match scenarios::run(name, args.form, &args.out).await {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("error: {name}: {e:#}");
                    return ExitCode::from(1);
                }
            };
            runs += 1;
            let c = &outcome.counts;
            println!(
                "{name}: {} attempts, {} acknowledged, {} unknown answers, {} tasks, {} runs ({} completed, {} refused for space) in {:.1} s; history {}",
                c.attempts,
                c.acknowledged,
                c.unknown,
                c.tasks,
                c.runs,
                c.completed,
                c.refused_for_space,
                outcome.elapsed.as_secs_f64(),
                outcome.history.display()
            );
            if let Some(v) = outcome.violations.first() {
                println!(
                    "VIOLATED {} ({} violation(s) in all); history: {}",
                    v,
                    outcome.violations.len(),
                    outcome.history.display()
                );
                return ExitCode::from(1);
            }
        }
        if args.once || Instant::now() >= until {
            break;
        }
    }
    println!("every invariant held in {runs} scenario run(s)");
    ExitCode::SUCCESS
}
