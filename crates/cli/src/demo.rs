//! `warden demo`: the whole federation on this machine (crates/demo): a registry, the server
//! with SQLite, three nodes with their own data and policies, a signed federated mean, a denied
//! run, the audit logs; then everything is removed.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

/// Default place of the static algorithm binary (what algorithms/build.sh builds).
const DEFAULT_ALGORITHM: &str = "target/x86_64-unknown-linux-gnu/release/mean";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The static `mean` algorithm binary (algorithms/mean built with crt-static).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_ALGORITHM)]
    algorithm_binary: PathBuf,
    /// Another static isolation probe binary for the nodes; absent: the probe built into them.
    #[arg(long, value_name = "PATH")]
    probe: Option<PathBuf>,
    /// Keep the work directory (configurations, data, keys, audit logs) in DIR, which must be
    /// new or empty. Containers and images are removed either way.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

/// How the demo ended.
#[derive(Debug)]
pub enum Outcome {
    Done,
    /// A prerequisite is missing or an argument is wrong; the message says what to do.
    BadInput(String),
}

pub fn run(args: DemoArgs) -> anyhow::Result<Outcome> {
    crate::common::init_logging("error");
    let options = warden_demo::Options {
        algorithm_binary: args.algorithm_binary,
        probe: args.probe,
        keep: args.keep,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let mut stdout = std::io::stdout();
        tokio::select! {
            r = warden_demo::run(&options, &mut stdout) => match r {
                Ok(_) => Ok(Outcome::Done),
                Err(e @ (warden_demo::DemoError::Prerequisites(_) | warden_demo::DemoError::KeepNotEmpty(_))) => {
                    Ok(Outcome::BadInput(e.to_string()))
                }
                Err(e) => Err(e.into()),
            },
            // Dropping the demo's future stops its registry and removes its containers and images.
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted; the demo's containers and images were removed")),
        }
    })
}
