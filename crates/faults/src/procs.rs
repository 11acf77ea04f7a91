//! The real processes of a scenario: a private PostgreSQL cluster, `warden server start`
//! replicas, HAProxy as the balancer and as each node's link, `warden node start` processes,
//! and the small filesystem a node's spool can live on. Each is killed (by its own pid) and
//! cleaned up when dropped.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};

/// A free TCP port on 127.0.0.1 (free when this returns).
pub fn free_port() -> Result<u16> {
    warden_testkit::free_port().map_err(|e| anyhow!(e))
}

/// Runs a command; its stdout, or an error with its output.
pub fn run(cmd: &mut Command) -> Result<String> {
    warden_testkit::run(cmd).map_err(|e| anyhow!(e))
}

/// Sends `signal` (e.g. `STOP`, `CONT`, `KILL`, `TERM`) to one process we started.
pub fn signal(pid: u32, signal: &str) -> Result<()> {
    run(Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string()))
    .map(|_| ())
}

/// The `warden` binary: `WARDEN_BIN` when set, otherwise the debug build of `warden-cli` in
/// the target directory, built first (a no-op when it is up to date).
pub fn warden_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("WARDEN_BIN") {
        return Ok(PathBuf::from(p));
    }
    let root = warden_testkit::workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    run(Command::new(cargo).current_dir(&root).args([
        "build",
        "--quiet",
        "-p",
        "warden-cli",
        "--bin",
        "warden",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug").join("warden");
    if !bin.exists() {
        bail!("built warden-cli but {} is missing", bin.display());
    }
    Ok(bin)
}

/// A child process, killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<Proc> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL, and reaped.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `grace` for the exit (SIGKILL after it).
    pub fn terminate(mut self, grace: Duration) {
        let _ = signal(self.child.id(), "TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `port` on loopback accepts a TCP connection.
fn wait_port(port: u16, within: Duration, what: &str) -> Result<()> {
    wait_addr(Ipv4Addr::LOCALHOST, port, within, what)
}

/// Waits until `ip:port` accepts a TCP connection.
fn wait_addr(ip: Ipv4Addr, port: u16, within: Duration, what: &str) -> Result<()> {
    let deadline = Instant::now() + within;
    let addr = SocketAddr::from((ip, port));
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what} did not listen on {addr} within {within:?}")
}

/// A PostgreSQL cluster of our own (initdb in the scenario's folder, its own port and socket
/// directory), owned by the `postgres` user: it can be stopped and restarted without touching
/// anyone else's database.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    pub port: u16,
    log: PathBuf,
    running: bool,
}

/// The newest installed PostgreSQL's programs (Debian's layout).
fn pg_bin() -> Result<PathBuf> {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no /usr/lib/postgresql: install postgresql (scripts/prereqs.sh)")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let v = versions
        .last()
        .ok_or_else(|| anyhow!("no PostgreSQL under /usr/lib/postgresql"))?;
    Ok(PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")))
}

fn as_postgres(bin: &Path, program: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(bin.join(program));
    c
}

impl Postgres {
    /// initdb (superuser `warden`, trust on loopback) in `dir/pg` and start it.
    pub fn start(dir: &Path) -> Result<Postgres> {
        let bin = pg_bin()?;
        let data = dir.join("pg");
        std::fs::create_dir_all(&data)?;
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&data))?;
        run(as_postgres(&bin, "initdb")
            .args([
                "-U",
                "warden",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data))?;
        let mut pg = Postgres {
            bin,
            log: dir.join("pg").join("postgres.log"),
            data,
            port: free_port()?,
            running: false,
        };
        pg.start_again()?;
        run(Command::new(pg.bin.join("createdb")).args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            "warden",
            "warden",
        ]))?;
        Ok(pg)
    }

    pub fn url(&self) -> String {
        format!("postgres://warden@127.0.0.1:{}/warden", self.port)
    }

    /// Starts the stopped cluster (and waits for it).
    pub fn start_again(&mut self) -> Result<()> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.data.display()
        );
        run(as_postgres(&self.bin, "pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(&self.data)
            .args(["-l"])
            .arg(&self.log)
            .args(["-o", &opts, "start"]))?;
        self.running = true;
        wait_port(self.port, Duration::from_secs(30), "PostgreSQL")
    }

    /// Stops the cluster: `immediate` is a crash (no checkpoint, clients cut), `fast` a clean
    /// stop that still cuts every client.
    pub fn stop(&mut self, mode: &str) -> Result<()> {
        run(as_postgres(&self.bin, "pg_ctl")
            .args(["-w", "-t", "60", "-m", mode, "-D"])
            .arg(&self.data)
            .arg("stop"))?;
        self.running = false;
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let _ = as_postgres(&self.bin, "pg_ctl")
                .args(["-w", "-m", "immediate", "-D"])
                .arg(&self.data)
                .arg("stop")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// One `warden server start` replica.
#[derive(Debug)]
pub struct Replica {
    pub name: String,
    pub port: u16,
    config: PathBuf,
    log: PathBuf,
    bin: PathBuf,
    pub proc: Option<Proc>,
}

impl Replica {
    /// Writes its configuration (listen port, the database, the bootstrap password file, the
    /// balancer's address exempt from the login buckets).
    pub fn new(bin: &Path, dir: &Path, name: &str, database_url: &str) -> Result<Replica> {
        let d = dir.join(name);
        std::fs::create_dir_all(&d)?;
        let port = free_port()?;
        let config = d.join("server.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"127.0.0.1:{port}\"\n[database]\nurl = \"{database_url}\"\nmax_connections = 8\n\
                 [bootstrap]\nadmin_password_file = \"../admin.pw\"\n\
                 [auth]\nrate_limit_exempt = [\"127.0.0.1\"]\n"
            ),
        )?;
        Ok(Replica {
            name: name.to_owned(),
            port,
            config,
            log: d.join("server.log"),
            bin: bin.to_owned(),
            proc: None,
        })
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the process and waits for `GET /api/health` to answer 200.
    pub async fn start(&mut self) -> Result<()> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["server", "start", "--config"])
            .arg(&self.config)
            .env("WARDEN_LOG", "info");
        self.proc = Some(Proc::spawn(&self.name, &mut cmd, &self.log)?);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{}/api/health", self.base())).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if let Some(p) = self.proc.as_mut() {
                if let Some(status) = p.exited() {
                    bail!("{} exited with {status}: {}", self.name, p.log_text());
                }
            }
            if Instant::now() > deadline {
                bail!("{} did not become healthy: {}", self.name, self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.exited().is_none())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// HAProxy, started in the foreground (`-db`) on a configuration we write; in a network
/// namespace of ours when it has one.
#[derive(Debug)]
pub struct Haproxy {
    pub name: String,
    /// The address its clients connect to (loopback, or the namespace's end of its veth pair).
    pub ip: Ipv4Addr,
    pub port: u16,
    config: PathBuf,
    log: PathBuf,
    netns: Option<String>,
    pub proc: Option<Proc>,
}

/// HAProxy's program, or how to get it.
fn haproxy_bin() -> Result<PathBuf> {
    for p in ["/usr/sbin/haproxy", "/usr/bin/haproxy"] {
        if Path::new(p).exists() {
            return Ok(PathBuf::from(p));
        }
    }
    bail!("haproxy is not installed: apt-get install haproxy (scripts/prereqs.sh installs it)")
}

impl Haproxy {
    /// The balancer: HTTP mode over `replicas` (loopback ports), health-checked on
    /// `/api/health` every 500 ms (down after 2 failures, up after 1 success; a check that gets
    /// no answer fails after `inter`, so a hung replica is out within about 1.5 s), a connection
    /// that fails retried on another replica (`option redispatch`), WebSockets tunnelled. It
    /// listens on loopback and, when given, on `also` (the host's end of a namespace's veth
    /// pair, for a node link relayed from inside it).
    pub fn balancer(dir: &Path, replicas: &[u16], also: Option<Ipv4Addr>) -> Result<Haproxy> {
        let servers: String = replicas
            .iter()
            .enumerate()
            .map(|(i, p)| format!("    server r{} 127.0.0.1:{p} check\n", i + 1))
            .collect();
        let port = free_port()?;
        let also = also
            .map(|ip| format!("    bind {ip}:{port}\n"))
            .unwrap_or_default();
        let config = format!(
            "global\n    maxconn 4096\n\
             defaults\n    mode http\n    timeout connect 2s\n    timeout client 60s\n    timeout server 60s\n    timeout tunnel 1h\n    retries 3\n    option redispatch\n\
             frontend warden\n    bind 127.0.0.1:{port}\n{also}    default_backend replicas\n\
             backend replicas\n    balance roundrobin\n    option httpchk GET /api/health\n    http-check expect status 200\n    default-server inter 500ms fall 2 rise 1\n{servers}"
        );
        Haproxy::write("balancer", dir, Ipv4Addr::LOCALHOST, port, &config, None)
    }

    /// A node's link: a TCP relay from its own port to the balancer, so the link can be cut
    /// (the relay stopped: nothing passes, connections hang) and healed (a new relay: the hung
    /// connections are reset and the node connects again).
    pub fn link(dir: &Path, name: &str, to: u16) -> Result<Haproxy> {
        let port = free_port()?;
        let config = Haproxy::relay(Ipv4Addr::LOCALHOST, port, Ipv4Addr::LOCALHOST, to);
        Haproxy::write(name, dir, Ipv4Addr::LOCALHOST, port, &config, None)
    }

    /// A node's link relayed inside the namespace `ns`: it listens on the namespace's end of
    /// the veth pair and connects to the balancer's port `to` on the host's end, so that every
    /// byte between the node and the servers crosses the pair twice, each way (and a
    /// degraded pair, [`Netns::degrade`], slows and drops all of it).
    pub fn link_in(ns: &Netns, dir: &Path, name: &str, to: u16) -> Result<Haproxy> {
        let port = free_port()?;
        let config = Haproxy::relay(ns.ns_ip, port, ns.host_ip, to);
        Haproxy::write(name, dir, ns.ns_ip, port, &config, Some(ns.name.clone()))
    }

    fn relay(ip: Ipv4Addr, port: u16, to_ip: Ipv4Addr, to: u16) -> String {
        format!(
            "global\n    maxconn 1024\n\
             defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 1h\n    timeout server 1h\n\
             frontend link\n    bind {ip}:{port}\n    default_backend up\n\
             backend up\n    server balancer {to_ip}:{to}\n"
        )
    }

    fn write(
        name: &str,
        dir: &Path,
        ip: Ipv4Addr,
        port: u16,
        config: &str,
        netns: Option<String>,
    ) -> Result<Haproxy> {
        let path = dir.join(format!("{name}.haproxy.cfg"));
        std::fs::write(&path, config)?;
        Ok(Haproxy {
            name: name.to_owned(),
            ip,
            port,
            config: path,
            log: dir.join(format!("{name}.haproxy.log")),
            netns,
            proc: None,
        })
    }

    /// Starts it (`ip netns exec`, which execs HAProxy in the same process, when it lives in a
    /// namespace) and waits for its port.
    pub fn start(&mut self) -> Result<()> {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(haproxy_bin()?);
                c
            }
            None => Command::new(haproxy_bin()?),
        };
        cmd.arg("-db").arg("-f").arg(&self.config);
        self.proc = Some(Proc::spawn(&self.name, &mut cmd, &self.log)?);
        wait_addr(self.ip, self.port, Duration::from_secs(10), &self.name)
    }

    /// What it wrote so far (in the foreground HAProxy reports each server going down or up).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Cuts the link: SIGSTOP, so that nothing passes and nothing is closed.
    pub fn cut(&mut self) -> Result<()> {
        match &self.proc {
            Some(p) => signal(p.pid(), "STOP"),
            None => bail!("{} is not running", self.name),
        }
    }

    /// Heals it: the stopped relay killed (its connections reset) and a new one started.
    pub fn heal(&mut self) -> Result<()> {
        if let Some(p) = self.proc.take() {
            p.kill();
        }
        self.start()
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.ip, self.port)
    }
}

/// The prefix of every network namespace and veth interface the harness makes: what an earlier
/// run that crashed left is found by it (and its process id) and removed.
const NETNS_PREFIX: &str = "wfaults-";
const VETH_HOST: &str = "wfh";
const VETH_NS: &str = "wfn";
/// The private range the veth pairs take their /30s from.
const NETNS_RANGE: [u8; 2] = [10, 213];

/// A network namespace of the scenario's own, joined to the host by a veth pair with a /30 of
/// 10.213.0.0/16 (the host's end `.1`, the namespace's `.2`), in which a node's link relay runs
/// ([`Haproxy::link_in`]). Only that pair leads out of the namespace, and only to the host, so
/// the degraded link carries nothing but that node's traffic to the balancer. Removed (with its
/// pair and its netfilter rules) when dropped.
///
/// Why not `tc netem` for the delay and the loss: the kernels this runs on (Debian's cloud
/// kernel among them) are built without `sch_netem` (`tc qdisc add ... netem` answers
/// "Specified qdisc kind is unknown"). So [`Netns::degrade`] slows the pair with `tbf` (a rate
/// limit whose queue delays packets up to its `latency`) and drops packets at random with
/// netfilter's `statistic` match, in the namespace, both ways. Neither adds a fixed delay to
/// every packet as netem would: the delay here is the queue behind the rate limit and the
/// retransmissions of what was dropped; a fixed delay is added above TCP by
/// [`crate::delay::DelayLink`] in front of the link.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
    host_if: String,
    ns_if: String,
    pub host_ip: Ipv4Addr,
    pub ns_ip: Ipv4Addr,
    degraded: bool,
}

fn ip_cmd(args: &[&str]) -> Result<String> {
    run(Command::new("ip").args(args))
}

/// The process id a harness name (`wfaults-123`, `wfh123`) carries.
fn pid_of(name: &str, prefix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?.parse().ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes the namespaces and veth interfaces of harness processes that are gone (and any of
/// this process id, which can only be an earlier run's).
pub fn remove_leftover_netns() -> Result<()> {
    let me = std::process::id();
    let stale = |pid: Option<u32>| pid.is_some_and(|p| p == me || !alive(p));
    for line in ip_cmd(&["netns", "list"])?.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if stale(pid_of(name, NETNS_PREFIX)) {
            ip_cmd(&["netns", "delete", name])
                .with_context(|| format!("removing the leftover namespace {name}"))?;
        }
    }
    for line in ip_cmd(&["-o", "link", "show"])?.lines() {
        // `7: wfh123@if6: <BROADCAST,...`
        let Some(name) = line.split(": ").nth(1).and_then(|n| n.split('@').next()) else {
            continue;
        };
        if stale(pid_of(name, VETH_HOST)) {
            ip_cmd(&["link", "delete", name])
                .with_context(|| format!("removing the leftover interface {name}"))?;
        }
    }
    Ok(())
}

impl Netns {
    /// Creates the namespace, the pair and their addresses (after removing an earlier run's
    /// leftovers). Needs root.
    pub fn create() -> Result<Netns> {
        remove_leftover_netns()?;
        let pid = std::process::id();
        let slot = pid % 16_384;
        let [a, b] = NETNS_RANGE;
        let (c, d) = ((slot / 64) as u8, ((slot % 64) * 4) as u8);
        let host_ip = Ipv4Addr::new(a, b, c, d + 1);
        let ns_ip = Ipv4Addr::new(a, b, c, d + 2);
        let taken = ip_cmd(&["-o", "-4", "addr", "show"])?;
        for ip in [host_ip, ns_ip] {
            if taken.contains(&format!(" {ip}/")) {
                bail!(
                    "{ip} is already an address of this host; the harness takes its veth pairs from {a}.{b}.0.0/16"
                );
            }
        }
        let name = format!("{NETNS_PREFIX}{pid}");
        ip_cmd(&["netns", "add", &name])
            .context("creating a network namespace (needs root and iproute2)")?;
        // From here on a failure drops the value, which removes what was made.
        let ns = Netns {
            name,
            host_if: format!("{VETH_HOST}{pid}"),
            ns_if: format!("{VETH_NS}{pid}"),
            host_ip,
            ns_ip,
            degraded: false,
        };
        ip_cmd(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns.ns_if,
            "netns",
            &ns.name,
        ])?;
        ip_cmd(&["addr", "add", &format!("{host_ip}/30"), "dev", &ns.host_if])?;
        ip_cmd(&["link", "set", &ns.host_if, "up"])?;
        ns.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{ns_ip}/30"),
            "dev",
            &ns.ns_if,
        ])?;
        ns.exec(&["ip", "link", "set", &ns.ns_if, "up"])?;
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs a program inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args))
    }

    /// The random drop rules, in the namespace: what comes in over the pair and what goes out.
    fn drop_rules(&self, loss: f64) -> [Vec<String>; 2] {
        let p = format!("{loss}");
        let rule = |chain: &str, dir: &str| -> Vec<String> {
            [
                chain,
                dir,
                self.ns_if.as_str(),
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                p.as_str(),
                "-j",
                "DROP",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
        };
        [rule("INPUT", "-i"), rule("OUTPUT", "-o")]
    }

    /// Slows the pair to `rate` (tbf on both ends: `rate 256kbit burst 16kbit latency 200ms`)
    /// and drops `loss` (e.g. 0.1) of the packets crossing it, each way.
    pub fn degrade(&mut self, rate: &str, loss: f64) -> Result<()> {
        self.degraded = true;
        let tbf = [
            "root", "tbf", "rate", rate, "burst", "16kbit", "latency", "200ms",
        ];
        let mut host = vec!["qdisc", "replace", "dev", &self.host_if];
        host.extend(tbf);
        run(Command::new("tc").args(&host)).context("tbf on the host's end of the veth pair")?;
        let mut inner = vec!["tc", "qdisc", "replace", "dev", &self.ns_if];
        inner.extend(tbf);
        self.exec(&inner)
            .context("tbf on the namespace's end of the veth pair")?;
        for rule in self.drop_rules(loss) {
            let mut args = vec!["iptables", "-w", "-A"];
            args.extend(rule.iter().map(String::as_str));
            self.exec(&args)
                .context("a random drop rule (iptables statistic) in the namespace")?;
        }
        Ok(())
    }

    /// Packets the drop rules dropped so far, and bytes the host end's tbf sent.
    pub fn degraded_counts(&self) -> Result<(u64, u64)> {
        let listing = self.exec(&["iptables", "-w", "-L", "-v", "-x", "-n"])?;
        let dropped = listing
            .lines()
            .filter(|l| l.contains("DROP") && l.contains("statistic"))
            .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        let stats = run(Command::new("tc").args(["-s", "qdisc", "show", "dev", &self.host_if]))?;
        let sent = stats
            .split_whitespace()
            .skip_while(|w| *w != "Sent")
            .nth(1)
            .and_then(|w| w.parse().ok())
            .unwrap_or(0);
        Ok((dropped, sent))
    }

    /// Takes the pair's host end down (`ip link set ... down`, a cable pulled: nothing
    /// crosses, nothing is closed or reset) or brings it up again.
    pub fn set_link(&self, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        ip_cmd(&["link", "set", &self.host_if, state])
            .with_context(|| format!("taking the host's end of the veth pair {state}"))?;
        Ok(())
    }

    /// Takes the rate limit and the drop rules off again.
    pub fn restore(&mut self, loss: f64) -> Result<()> {
        run(Command::new("tc").args(["qdisc", "del", "dev", &self.host_if, "root"]))?;
        self.exec(&["tc", "qdisc", "del", "dev", &self.ns_if, "root"])?;
        for rule in self.drop_rules(loss) {
            let mut args = vec!["iptables", "-w", "-D"];
            args.extend(rule.iter().map(String::as_str));
            self.exec(&args)?;
        }
        self.degraded = false;
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.degraded {
            let _ = Command::new("tc")
                .args(["qdisc", "del", "dev", &self.host_if, "root"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // The namespace goes with its end of the pair, its rules and (the pair being gone) the
        // host's end; the host's end is removed by name too, in case the namespace was held.
        for args in [
            vec!["netns", "delete", &self.name],
            vec!["link", "delete", &self.host_if],
        ] {
            let _ = Command::new("ip")
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A small tmpfs mounted on a node's spool, to fill it.
#[derive(Debug)]
pub struct SmallDisk {
    pub mount: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `bytes` on `mount` (created).
    pub fn mount(mount: &Path, bytes: u64) -> Result<SmallDisk> {
        std::fs::create_dir_all(mount)?;
        run(Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0700"),
                "tmpfs",
            ])
            .arg(mount))
        .context("mounting a tmpfs for the spool (needs root)")?;
        Ok(SmallDisk {
            mount: mount.to_owned(),
        })
    }

    fn filler(&self) -> PathBuf {
        self.mount.join("filler")
    }

    /// Fills the filesystem to the last byte with one file.
    pub fn fill(&self) -> Result<()> {
        use std::io::Write as _;
        let mut f = std::fs::File::create(self.filler())?;
        let block = vec![0u8; 64 * 1024];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => return Err(e.into()),
            }
        }
        // the last partial block
        let small = [0u8; 512];
        while f.write(&small).map(|n| n > 0).unwrap_or(false) {}
        Ok(())
    }

    /// Frees what [`SmallDisk::fill`] took.
    pub fn free(&self) -> Result<()> {
        std::fs::remove_file(self.filler())?;
        Ok(())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mount)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Removes every container a node labelled `label` left (its runs and its probe).
pub fn remove_containers(label: &str) {
    for l in [label.to_owned(), format!("{label}-probe")] {
        let Ok(out) = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=org.warden.node={l}"),
            ])
            .output()
        else {
            continue;
        };
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
