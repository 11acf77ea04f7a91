//! The seven scenarios. Each starts its own federation, runs a load with its fault, records the
//! final state and checks the history. `Form::Short` is what `scripts/test` runs; `Form::Long`
//! what `scripts/soak` runs (more tasks, longer faults).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::history::{self, Answer, Counts, Entry, History, Violation};
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
pub const SCENARIOS: [&str; 7] = [
    "replica-killed",
    "link-cut",
    "postgres-restarted",
    "rolling-restart",
    "spool-full",
    "replica-stalled",
    "link-lossy",
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
        "replica-stalled" => replica_stalled(&dir, form, &history).await,
        "link-lossy" => link_lossy(&dir, form, &history).await,
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
        link_in_netns: false,
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
        link_in_netns: false,
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
        link_in_netns: false,
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
        link_in_netns: false,
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
                answer: Answer::Refused { status, message },
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
        link_in_netns: false,
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

/// 6. Three replicas behind HAProxy; the one holding the most of the nodes' event pushes frozen
///    (SIGSTOP: a hung process whose sockets stay open, not a dead one) during a burst of
///    creations, then thawed (SIGCONT). The balancer's health check takes it out; the other
///    replicas serve meanwhile; the nodes whose push was on it take the silent push as dead
///    (`push_timeout_secs`) and connect again through the balancer; what was sent to it before
///    it was taken out is answered when it thaws, or retried by its client with the same nonce.
async fn replica_stalled(dir: &Path, form: Form, h: &Arc<History>) -> Result<()> {
    let shape = Shape {
        replicas: 3,
        small_spool: None,
        link_in_netns: false,
    };
    let fed = Arc::new(Federation::start(dir, shape, Arc::clone(h)).await?);
    let stall = Duration::from_secs(form.pick(8, 30));
    let tasks = form.pick(20, 100);
    let h2 = Arc::clone(h);
    fed.load(
        form.pick(3, 4),
        tasks,
        Duration::from_millis(600),
        |fed, acked| async move {
            while acked.load(Ordering::SeqCst) < 4 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let n = fed.replicas.lock().await.len();
            let mut sessions = Vec::new();
            for i in 0..n {
                sessions.push(fed.event_sessions(i).await?);
            }
            // The replica with the most pushes (the second on a tie): its nodes must notice.
            let victim = (0..n)
                .max_by_key(|&i| (sessions[i], i == 1))
                .unwrap_or(1);
            let (name, pid) = {
                let replicas = fed.replicas.lock().await;
                let r = &replicas[victim];
                let pid = r
                    .pid()
                    .ok_or_else(|| anyhow::anyhow!("{} is not running", r.name))?;
                (r.name.clone(), pid)
            };
            let balancer_from = fed.balancer.log_text().len();
            let node_from: Vec<usize> = fed.nodes.iter().map(|n| n.log_text().len()).collect();
            let entries_from = h2.entries().len();
            let server = format!("replicas/r{}", victim + 1);
            let down = |fed: &Federation| {
                fed.balancer
                    .log_text()
                    .get(balancer_from..)
                    .unwrap_or_default()
                    .lines()
                    .any(|l| l.contains(&server) && l.contains("is DOWN"))
            };
            crate::procs::signal(pid, "STOP")?;
            let thaw_at = Instant::now() + stall;
            h2.fault(format!(
                "SIGSTOP {name} (pid {pid}) for {stall:?}; the replicas held {sessions:?} event pushes"
            ));
            // A client of its own creates tasks once the balancer has taken the replica out (the
            // load's clients may all wait on requests sent to it before): each must be served
            // by the others while it is stopped. It keeps no lock they wait for.
            let probe = async {
                while !down(&fed) && Instant::now() < thaw_at {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let (mut sent, mut served) = (0, 0);
                while Instant::now() + Duration::from_secs(1) < thaw_at {
                    let acked = fed
                        .create_task(PROBE_CLIENT, tasks + sent, Duration::from_secs(30))
                        .await?;
                    sent += 1;
                    if acked && Instant::now() < thaw_at {
                        served += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok::<_, anyhow::Error>((sent, served))
            };
            let (probed, ()) = tokio::join!(probe, tokio::time::sleep_until(thaw_at.into()));
            let entries = h2.entries();
            let acked_meanwhile = entries[entries_from..]
                .iter()
                .filter(|e| {
                    matches!(
                        e,
                        Entry::Create {
                            answer: Answer::Acknowledged { .. },
                            ..
                        }
                    )
                })
                .count();
            let taken_out = down(&fed);
            let mut reconnected = Vec::new();
            for (node, from) in fed.nodes.iter().zip(node_from) {
                let text = node.log_text();
                let during = text.get(from..).unwrap_or_default();
                for line in during.lines().filter(|l| l.contains("event push")) {
                    h2.record(Entry::Node {
                        at_ms: h2.now_ms(),
                        node: node.name.clone(),
                        line: line.to_owned(),
                    });
                }
                // Ended as silent, then connected again, while the replica was still stopped.
                if let Some(at) = during.find("silent for") {
                    if during[at..].contains("event push connected") {
                        reconnected.push(node.name.clone());
                    }
                }
            }
            crate::procs::signal(pid, "CONT")?;
            h2.fault(format!("SIGCONT {name}"));
            let (sent, served) = probed?;
            claim(
                &h2,
                "requests served while a replica was stopped",
                sent > 0 && served == sent,
                format!(
                    "{served} of {sent} creation(s) sent after the balancer took {name} out were acknowledged while it was stopped; {acked_meanwhile} creation(s) in all were acknowledged during the {stall:?}"
                ),
            );
            claim(
                &h2,
                "the balancer took the stopped replica out",
                taken_out,
                format!("the balancer's log says `{server} is DOWN` during the stall: {taken_out}"),
            );
            let pushes = usize::try_from(sessions[victim]).unwrap_or(0);
            claim(
                &h2,
                "nodes reconnected",
                reconnected.len() >= pushes,
                format!(
                    "{pushes} push(es) were on {name}; {reconnected:?} ended a silent push and connected again while it was stopped"
                ),
            );
            // Thawed, it answers its health check again as the same process.
            let back = Instant::now();
            while !fed.healthy(victim).await && back.elapsed() < Duration::from_secs(30) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let healthy = fed.healthy(victim).await;
            let same = {
                let mut replicas = fed.replicas.lock().await;
                let r = &mut replicas[victim];
                r.pid() == Some(pid) && r.alive()
            };
            claim(
                &h2,
                "the thawed replica serves again without a restart",
                healthy && same,
                format!(
                    "{name}: healthy {healthy} after {:?}, same process {same}",
                    back.elapsed()
                ),
            );
            Ok(())
        },
    )
    .await?;
    finish(fed, Duration::from_secs(form.pick(90, 300))).await
}

/// The client number of the creations `replica-stalled` makes itself while the replica is out.
const PROBE_CLIENT: usize = 99;

/// The share of packets dropped on a degraded link, each way.
const LOSS: f64 = 0.1;
/// The delay a degraded link adds each way (a 300 ms round trip).
const DELAY: Duration = Duration::from_millis(150);

/// 7. A node's link slowed (256 kbit/s), long (150 ms added each way) and lossy (10 % of the
///    packets dropped each way) with runs in flight and tasks created meanwhile, then taken
///    down altogether for a while (`ip link set down`), brought up, and restored: TCP carries the exchanges through (the node's requests retried when they time
///    out), every result is delivered once and no run executed twice. The link's relay runs in
///    a network namespace of the scenario's own, over a veth pair, and the delay is a relay in
///    front of it (see [`crate::procs::Netns`] and [`crate::delay`] for why not netem).
async fn link_lossy(dir: &Path, form: Form, h: &Arc<History>) -> Result<()> {
    let shape = Shape {
        replicas: 2,
        small_spool: None,
        link_in_netns: true,
    };
    let mut fed = Federation::start(dir, shape, Arc::clone(h)).await?;
    let degraded = Duration::from_secs(form.pick(10, 40));
    let tasks = form.pick(8, 40);
    // Runs in flight at hospital-a when its link degrades.
    for seq in 0..tasks / 2 {
        fed.create_task(0, seq, Duration::from_secs(30)).await?;
    }
    let a = fed.orgs[0].id;
    let in_flight = fed
        .all_tasks()
        .await?
        .iter()
        .flat_map(|t| t.runs.iter())
        .filter(|r| r.organization_id == a && !r.state.is_final())
        .count();
    fed.netns
        .as_mut()
        .ok_or_else(|| anyhow::anyhow!("the federation has no namespace for the link"))?
        .degrade("256kbit", LOSS)?;
    let delay = fed.nodes[0]
        .delay
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the first node has no delayed link"))?;
    delay.set(DELAY);
    h.fault(format!(
        "link of hospital-a slowed (tbf 256kbit, burst 16kbit, latency 200ms, both ends), delayed {DELAY:?} each way and lossy ({:.0} % of packets dropped each way) for {degraded:?}, {in_flight} of its runs not final",
        LOSS * 100.0
    ));
    // What the node now sees of the servers: a health check through its link.
    let started = Instant::now();
    let probe = fed
        .http()
        .get(format!("{}/api/health", delay.url()))
        .timeout(Duration::from_secs(60))
        .send()
        .await;
    let round_trip = started.elapsed();
    // More tasks while it is degraded.
    for seq in tasks / 2..tasks {
        fed.create_task(0, seq, Duration::from_secs(30)).await?;
    }
    tokio::time::sleep(degraded).await;
    // Then the link taken down altogether for a while (degraded still when it comes back).
    let down = Duration::from_secs(form.pick(5, 30));
    let ns = fed
        .netns
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the federation has no namespace for the link"))?;
    ns.set_link(false)?;
    h.fault(format!(
        "link of hospital-a taken down (ip link set down) for {down:?}"
    ));
    let started = Instant::now();
    let through = match &fed.nodes[0].delay {
        Some(d) => fed
            .http()
            .get(format!("{}/api/health", d.url()))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map(|r| r.status().to_string()),
        None => Ok("no delayed link".to_owned()),
    };
    claim(
        h,
        "nothing crossed the link while it was down",
        through.is_err(),
        format!("GET /api/health over hospital-a's link: {through:?}"),
    );
    // Runs for it while it is down: they reach it only once it is up.
    for seq in tasks..tasks + form.pick(2, 10) {
        fed.create_task(0, seq, Duration::from_secs(30)).await?;
    }
    tokio::time::sleep(down.saturating_sub(started.elapsed())).await;
    ns.set_link(true)?;
    h.fault("link of hospital-a up again, still degraded".to_owned());
    let runs: Vec<bool> = fed
        .all_tasks()
        .await?
        .iter()
        .flat_map(|t| t.runs.iter())
        .filter(|r| r.organization_id == a)
        .map(|r| r.state.is_final())
        .collect();
    let ns = fed
        .netns
        .as_mut()
        .ok_or_else(|| anyhow::anyhow!("the federation has no namespace for the link"))?;
    let (dropped, sent) = ns.degraded_counts()?;
    ns.restore(LOSS)?;
    if let Some(d) = &fed.nodes[0].delay {
        d.set(Duration::ZERO);
    }
    h.fault(format!(
        "link of hospital-a restored; {} of its {} runs were final by then",
        runs.iter().filter(|f| **f).count(),
        runs.len()
    ));
    claim(
        h,
        "the degraded link carried hospital-a's traffic and dropped some of it",
        dropped > 0 && sent > 0,
        format!(
            "{dropped} packet(s) dropped in the namespace, {sent} bytes through the host end's rate limit"
        ),
    );
    claim(
        h,
        "the degraded link added its delay both ways",
        probe.as_ref().is_ok_and(|r| r.status().is_success()) && round_trip >= 2 * DELAY,
        format!(
            "GET /api/health over hospital-a's link took {round_trip:?} ({})",
            probe.map_or_else(|e| e.to_string(), |r| r.status().to_string())
        ),
    );
    finish(Arc::new(fed), Duration::from_secs(form.pick(90, 300))).await
}
