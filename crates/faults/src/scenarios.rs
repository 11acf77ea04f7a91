//! The five scenarios. Each starts its own federation, runs a load with its fault, records the
//! final state and checks the history. `Form::Short` is what `scripts/test` runs; `Form::Long`
//! what `scripts/soak` runs (more tasks, longer faults).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::history::{self, Counts, Entry, History, Violation};
use crate::world::{Federation, Shape};

/// How long a scenario runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Short,
    Long,
}

impl Form {
    fn pick<T>(self, short: T, long: T) -> T {
        match self {
            Form::Short => short,
            Form::Long => long,
        }
    }
}

/// The scenarios, by name.
pub const SCENARIOS: [&str; 5] = [
    "replica-killed",
    "link-cut",
    "postgres-restarted",
    "rolling-restart",
    "spool-full",
];

/// What one scenario run gave.
#[derive(Debug)]
pub struct Outcome {
    pub scenario: String,
    pub history: PathBuf,
    pub counts: Counts,
    pub violations: Vec<Violation>,
    pub elapsed: Duration,
}

/// Runs scenario `name` in a new folder under `out` (kept: it holds the history and every
/// process's log).
pub async fn run(name: &str, form: Form, out: &Path) -> Result<Outcome> {
    let started = Instant::now();
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    let dir = out.join(format!("{name}-{stamp}"));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("history.jsonl");
    let history = Arc::new(History::create(&path)?);
    history.record(Entry::Scenario {
        name: name.to_owned(),
        detail: format!("{form:?}"),
    });
    let result = match name {
        "replica-killed" => replica_killed(&dir, form, &history).await,
        "link-cut" => link_cut(&dir, form, &history).await,
        "postgres-restarted" => postgres_restarted(&dir, form, &history).await,
        "rolling-restart" => rolling_restart(&dir, form, &history).await,
        "spool-full" => spool_full(&dir, form, &history).await,
        other => bail!("no scenario `{other}`; the scenarios are {SCENARIOS:?}"),
    };
    if let Err(e) = result {
        history.record(Entry::Claim {
            name: "scenario ran to its end".to_owned(),
            held: false,
            detail: format!("{e:#}"),
        });
    }
    let (counts, violations) = history::check(&history.entries());
    Ok(Outcome {
        scenario: name.to_owned(),
        history: path,
        counts,
        violations,
        elapsed: started.elapsed(),
    })
}

fn claim(h: &History, name: &str, held: bool, detail: String) {
    h.record(Entry::Claim {
        name: name.to_owned(),
        held,
        detail,
    });
}

/// Every acknowledged run final, then the final state recorded.
async fn finish(fed: Arc<Federation>, within: Duration) -> Result<()> {
    fed.settle(within).await?;
    let mut fed = Arc::try_unwrap(fed)
        .map_err(|_| anyhow::anyhow!("the federation is still shared after the load"))?;
    fed.record_final_state().await
}

/// 1. Three replicas behind HAProxy; one SIGKILLed during a burst of creations. The nodes
///    connected through it reconnect through the balancer and miss no run.
async fn replica_killed(dir: &Path, form: Form, h: &Arc<History>) -> Result<()> {
    let shape = Shape {
        replicas: 3,
        small_spool: None,
    };
    let fed = Arc::new(Federation::start(dir, shape, Arc::clone(h)).await?);
    let tasks = form.pick(12, 60);
    let h2 = Arc::clone(h);
    fed.load(
        4,
        tasks,
        Duration::from_millis(50),
        |fed, acked| async move {
            while acked.load(Ordering::SeqCst) < tasks / 3 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // The replica most nodes' pushes are on is not known; the second takes its share of
            // the round robin, creations in flight included.
            let pid = fed.replicas.lock().await[1].pid();
            if let Some(pid) = pid {
                crate::procs::signal(pid, "KILL")?;
            }
            h2.fault(format!("SIGKILL replica-2 (pid {pid:?})"));
            Ok(())
        },
    )
    .await?;
    finish(fed, Duration::from_secs(form.pick(90, 300))).await
}

/// 2. A node's link cut for a while with runs in flight, then healed: the results are spooled
///    and delivered, no run executed twice.
async fn link_cut(dir: &Path, form: Form, h: &Arc<History>) -> Result<()> {
    let shape = Shape {
        replicas: 2,
        small_spool: None,
    };
    let mut fed = Federation::start(dir, shape, Arc::clone(h)).await?;
    let cut = Duration::from_secs(form.pick(8, 30));
    let tasks = form.pick(8, 40);
    // Runs in flight at hospital-a when its link goes.
    let fed_ref = &fed;
    for seq in 0..tasks / 2 {
        fed_ref.create_task(0, seq, Duration::from_secs(30)).await?;
    }
    fed.nodes[0].link.cut()?;
    h.fault(format!(
        "link of hospital-a cut (relay stopped) for {cut:?}"
    ));
    // More tasks while it is cut: created at the servers, waiting for the node.
    for seq in tasks / 2..tasks {
        fed.create_task(0, seq, Duration::from_secs(30)).await?;
    }
    tokio::time::sleep(cut).await;
    fed.nodes[0].link.heal()?;
    h.fault("link of hospital-a healed");
    finish(Arc::new(fed), Duration::from_secs(form.pick(90, 300))).await
}

/// 3. PostgreSQL stopped (immediate: a crash) and started again under load: the servers
///    recover without a restart of their own.
async fn postgres_restarted(dir: &Path, form: Form, h: &Arc<History>) -> Result<()> {
    let shape = Shape {
        replicas: 2,
        small_spool: None,
    };
    let fed = Arc::new(Federation::start(dir, shape, Arc::clone(h)).await?);
    let pids: Vec<Option<u32>> = fed.replicas.lock().await.iter().map(|r| r.pid()).collect();
    let down = Duration::from_secs(form.pick(3, 15));
    let tasks = form.pick(16, 80);
    let h2 = Arc::clone(h);
    fed.load(
        3,
        tasks,
        Duration::from_millis(100),
        |fed, acked| async move {
            while acked.load(Ordering::SeqCst) < tasks / 4 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let pg = {
                let mut pg = fed.pg.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                pg.stop("immediate")?;
                pg.port
            };
            h2.fault(format!(
                "PostgreSQL (port {pg}) stopped, immediate mode, for {down:?}"
            ));
            tokio::time::sleep(down).await;
            fed.pg
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .start_again()?;
            h2.fault("PostgreSQL started again");
            // Every replica answers its health check again, within 30 s, as the same process.
            let back = Instant::now();
            for i in 0..pids.len() {
                while !fed.healthy(i).await {
                    if back.elapsed() > Duration::from_secs(30) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let healthy = fed.healthy(i).await;
                let mut replicas = fed.replicas.lock().await;
                let r = &mut replicas[i];
                let same = r.pid() == pids[i] && r.alive();
                claim(
                    &h2,
                    "the replicas recover without a restart",
                    healthy && same,
                    format!(
                        "{}: healthy {healthy} after {:?}, same process {same}",
                        r.name,
                        back.elapsed()
                    ),
                );
            }
            Ok(())
        },
    )
    .await?;
    finish(fed, Duration::from_secs(form.pick(90, 300))).await
}

/// 4. Every replica restarted in turn (SIGTERM, then started again) under load: no request
///    fails that a client would not retry, no run is lost.
async fn rolling_restart(dir: &Path, form: Form, h: &Arc<History>) -> Result<()> {
    let shape = Shape {
        replicas: 3,
        small_spool: None,
    };
    let fed = Arc::new(Federation::start(dir, shape, Arc::clone(h)).await?);
    let tasks = form.pick(18, 90);
    let rounds = form.pick(1, 3);
    let h2 = Arc::clone(h);
    fed.load(
        3,
        tasks,
        Duration::from_millis(100),
        |fed, acked| async move {
            while acked.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            for _ in 0..rounds {
                let n = fed.replicas.lock().await.len();
                for i in 0..n {
                    let mut replicas = fed.replicas.lock().await;
                    let r = &mut replicas[i];
                    if let Some(p) = r.proc.take() {
                        p.terminate(Duration::from_secs(20));
                    }
                    h2.fault(format!("{} stopped (SIGTERM)", r.name));
                    r.start().await?;
                    h2.fault(format!("{} started again", r.name));
                    drop(replicas);
                    // The balancer's health check (every 500 ms) sees it up before the next goes.
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                }
            }
            Ok(())
        },
    )
    .await?;
    let refused: Vec<String> = h
        .entries()
        .iter()
        .filter_map(|e| match e {
            Entry::Create {
                answer: history::Answer::Refused { status, message },
                ..
            } => Some(format!("{status} {message}")),
            _ => None,
        })
        .collect();
    claim(
        h,
        "no creation refused during the rolling restart",
        refused.is_empty(),
        format!("{refused:?}"),
    );
    finish(fed, Duration::from_secs(form.pick(90, 300))).await
}

/// 5. A node's spool disk (a small tmpfs) full: its new runs end with a reason that names the
///    space; with space again it runs them as before.
async fn spool_full(dir: &Path, form: Form, h: &Arc<History>) -> Result<()> {
    let shape = Shape {
        replicas: 1,
        small_spool: Some(16 * 1024 * 1024),
    };
    h.record(Entry::Expect {
        runs: "refused_while_full".to_owned(),
    });
    let fed = Federation::start(dir, shape, Arc::clone(h)).await?;
    let per_phase = form.pick(2, 10);
    let mut seq = 0;
    for phase in 0..3 {
        if phase == 1 {
            if let Some(d) = &fed.nodes[0].disk {
                d.fill()?;
            }
            h.fault("spool full: hospital-a's spool filesystem filled");
        }
        if phase == 2 {
            if let Some(d) = &fed.nodes[0].disk {
                d.free()?;
            }
            h.fault("spool freed: hospital-a's spool has space again");
        }
        for _ in 0..per_phase {
            fed.create_task(0, seq, Duration::from_secs(30)).await?;
            seq += 1;
        }
        fed.settle(Duration::from_secs(form.pick(60, 180))).await?;
    }
    let refused = fed
        .all_tasks()
        .await?
        .iter()
        .flat_map(|t| t.runs.iter())
        .filter(|r| r.reason.as_deref().is_some_and(|r| r.contains("space")))
        .count();
    claim(
        h,
        "the full node refused its new runs, naming the space",
        refused == per_phase,
        format!("{refused} run(s) refused for space, {per_phase} created while full"),
    );
    finish(Arc::new(fed), Duration::from_secs(30)).await
}
