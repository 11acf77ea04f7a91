//! The real processes of a scenario: a private PostgreSQL cluster, `warden server start`
//! replicas, HAProxy as the balancer and as each node's link, `warden node start` processes,
//! and the small filesystem a node's spool can live on. Each is killed (by its own pid) and
//! cleaned up when dropped.

use std::net::TcpStream;
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
    let deadline = Instant::now() + within;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what} did not listen on 127.0.0.1:{port} within {within:?}")
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

/// HAProxy, started in the foreground (`-db`) on a configuration we write.
#[derive(Debug)]
pub struct Haproxy {
    pub name: String,
    pub port: u16,
    config: PathBuf,
    log: PathBuf,
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
    /// `/api/health` every 500 ms (down after 2 failures, up after 1 success), a connection
    /// that fails retried on another replica (`option redispatch`), WebSockets tunnelled.
    pub fn balancer(dir: &Path, replicas: &[u16]) -> Result<Haproxy> {
        let servers: String = replicas
            .iter()
            .enumerate()
            .map(|(i, p)| format!("    server r{} 127.0.0.1:{p} check\n", i + 1))
            .collect();
        let port = free_port()?;
        let config = format!(
            "global\n    maxconn 4096\n\
             defaults\n    mode http\n    timeout connect 2s\n    timeout client 60s\n    timeout server 60s\n    timeout tunnel 1h\n    retries 3\n    option redispatch\n\
             frontend warden\n    bind 127.0.0.1:{port}\n    default_backend replicas\n\
             backend replicas\n    balance roundrobin\n    option httpchk GET /api/health\n    http-check expect status 200\n    default-server inter 500ms fall 2 rise 1\n{servers}"
        );
        Haproxy::write("balancer", dir, port, &config)
    }

    /// A node's link: a TCP relay from its own port to the balancer, so the link can be cut
    /// (the relay stopped: nothing passes, connections hang) and healed (a new relay: the hung
    /// connections are reset and the node connects again).
    pub fn link(dir: &Path, name: &str, to: u16) -> Result<Haproxy> {
        let port = free_port()?;
        let config = format!(
            "global\n    maxconn 1024\n\
             defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 1h\n    timeout server 1h\n\
             frontend link\n    bind 127.0.0.1:{port}\n    default_backend up\n\
             backend up\n    server balancer 127.0.0.1:{to}\n"
        );
        Haproxy::write(name, dir, port, &config)
    }

    fn write(name: &str, dir: &Path, port: u16, config: &str) -> Result<Haproxy> {
        let path = dir.join(format!("{name}.haproxy.cfg"));
        std::fs::write(&path, config)?;
        Ok(Haproxy {
            name: name.to_owned(),
            port,
            config: path,
            log: dir.join(format!("{name}.haproxy.log")),
            proc: None,
        })
    }

    /// Starts it and waits for its port.
    pub fn start(&mut self) -> Result<()> {
        let mut cmd = Command::new(haproxy_bin()?);
        cmd.arg("-db").arg("-f").arg(&self.config);
        self.proc = Some(Proc::spawn(&self.name, &mut cmd, &self.log)?);
        wait_port(self.port, Duration::from_secs(10), &self.name)
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
        format!("http://127.0.0.1:{}", self.port)
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
