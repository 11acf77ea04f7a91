//! The server's TOML configuration, validated while it is parsed so that every error names the
//! file, the line and the key.
//!
//! ```toml
//! [http]
//! listen = "127.0.0.1:7600"
//! [database]
//! url = "sqlite:///var/lib/warden/server.db"   # or postgres://user@host/db
//! [bootstrap]
//! admin_password_file = "admin.pw"
//! ```
//!
//! Relative paths (the SQLite file, the password file) are relative to the config file.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
pub use warden_config::ConfigError;
use warden_config::in_range;

/// Upper bound of any configured lifetime: one year.
const MAX_TTL_SECS: u64 = 365 * 24 * 3600;
/// Upper bound of any configured size: 1 GiB.
const MAX_SIZE_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    #[serde(default)]
    pub bootstrap: BootstrapConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Directory of the config file; relative paths are resolved against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (created when missing) or `postgres://USER@HOST/DB`.
    #[serde(deserialize_with = "database_url")]
    pub url: String,
    #[serde(
        default = "default_max_connections",
        deserialize_with = "max_connections"
    )]
    pub max_connections: u32,
    /// SQLite only: `full` (default; every commit fsynced, survives power loss) or `normal`
    /// (fsync at checkpoints; survives a process crash, may lose the last commits on power loss).
    #[serde(default)]
    pub sqlite_durability: crate::storage::Durability,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapConfig {
    /// File holding the password of the `admin` user created on first start. Read when it
    /// exists; otherwise a random password is generated and written there (mode 0600). Without
    /// this key the generated password is printed once on standard output.
    #[serde(default)]
    pub admin_password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default = "d_access", deserialize_with = "ttl")]
    pub access_token_ttl_secs: u64,
    #[serde(default = "d_refresh", deserialize_with = "ttl")]
    pub refresh_token_ttl_secs: u64,
    #[serde(default = "d_node", deserialize_with = "ttl")]
    pub node_token_ttl_secs: u64,
    #[serde(default = "d_run", deserialize_with = "ttl")]
    pub run_token_ttl_secs: u64,
    /// Failed logins in a row after which the account is locked.
    #[serde(default = "d_threshold", deserialize_with = "threshold")]
    pub lockout_threshold: u32,
    #[serde(default = "d_lockout", deserialize_with = "ttl")]
    pub lockout_secs: u64,
    /// `POST /api/auth/login` per client address: sustained rate (token bucket refill).
    #[serde(default = "d_login_rate", deserialize_with = "rate")]
    pub login_rate_per_minute: u32,
    /// `POST /api/auth/login` per client address: logins allowed at once (bucket size).
    #[serde(default = "d_login_burst", deserialize_with = "burst")]
    pub login_burst: u32,
    /// `POST /api/auth/node` per client address: sustained rate.
    #[serde(default = "d_node_login_rate", deserialize_with = "rate")]
    pub node_login_rate_per_minute: u32,
    /// `POST /api/auth/node` per client address: logins allowed at once.
    #[serde(default = "d_node_login_burst", deserialize_with = "burst")]
    pub node_login_burst: u32,
    /// Client addresses the login limits do not apply to (e.g. a trusted reverse proxy that
    /// limits itself, or a benchmark). Exact addresses; IPv6 counts by its /64.
    #[serde(default)]
    pub rate_limit_exempt: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest JSON request body.
    #[serde(default = "d_body", deserialize_with = "size")]
    pub max_body_bytes: u64,
    /// Largest result upload.
    #[serde(default = "d_result", deserialize_with = "size")]
    pub max_result_bytes: u64,
    /// Most target organizations of one task.
    #[serde(default = "d_targets", deserialize_with = "targets")]
    pub max_targets: u32,
    /// Event WebSockets one node may hold open at once (a node needs one; a few more cover
    /// reconnects that overlap the old session's close).
    #[serde(
        default = "d_sessions_per_node",
        deserialize_with = "sessions_per_node"
    )]
    pub max_event_sessions_per_node: u32,
    /// Event WebSockets the server holds open at once, all nodes together.
    #[serde(default = "d_sessions", deserialize_with = "sessions")]
    pub max_event_sessions: u32,
    /// Deepest chain of subtasks (a root task is at depth 0, its subtasks at 1): a subtask deeper
    /// than this is refused, whatever a node allows.
    #[serde(default = "d_depth", deserialize_with = "depth")]
    pub max_subtask_depth: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// File holding the bearer token that `GET /metrics` requires (read at start, trimmed,
    /// at least [`crate::metrics::MIN_TOKEN_LEN`] characters). Without it `/metrics` is open
    /// and the server warns at start.
    #[serde(default, deserialize_with = "token_file")]
    pub token_file: Option<PathBuf>,
}

fn token_file<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let p = PathBuf::deserialize(d)?;
    if p.as_os_str().is_empty() {
        return Err(serde::de::Error::custom(
            "the metrics token file must be a path; leave the key out to keep /metrics open",
        ));
    }
    Ok(Some(p))
}

fn default_max_connections() -> u32 {
    16
}
fn d_access() -> u64 {
    15 * 60
}
fn d_refresh() -> u64 {
    7 * 24 * 3600
}
fn d_node() -> u64 {
    3600
}
fn d_run() -> u64 {
    24 * 3600
}
fn d_threshold() -> u32 {
    5
}
fn d_lockout() -> u64 {
    15 * 60
}
fn d_login_rate() -> u32 {
    120
}
fn d_login_burst() -> u32 {
    30
}
fn d_node_login_rate() -> u32 {
    600
}
fn d_node_login_burst() -> u32 {
    60
}
fn d_sessions_per_node() -> u32 {
    4
}
fn d_sessions() -> u32 {
    10_000
}
fn d_body() -> u64 {
    16 << 20
}
fn d_result() -> u64 {
    64 << 20
}
fn d_targets() -> u32 {
    1000
}
fn d_depth() -> u32 {
    8
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            access_token_ttl_secs: d_access(),
            refresh_token_ttl_secs: d_refresh(),
            node_token_ttl_secs: d_node(),
            run_token_ttl_secs: d_run(),
            lockout_threshold: d_threshold(),
            lockout_secs: d_lockout(),
            login_rate_per_minute: d_login_rate(),
            login_burst: d_login_burst(),
            node_login_rate_per_minute: d_node_login_rate(),
            node_login_burst: d_node_login_burst(),
            rate_limit_exempt: Vec::new(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_bytes: d_body(),
            max_result_bytes: d_result(),
            max_targets: d_targets(),
            max_event_sessions_per_node: d_sessions_per_node(),
            max_event_sessions: d_sessions(),
            max_subtask_depth: d_depth(),
        }
    }
}

fn ttl<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, 1, MAX_TTL_SECS, "a duration in seconds")
}
fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, 1024, MAX_SIZE_BYTES, "a size in bytes")
}
fn threshold<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, 1, 1000, "the lockout threshold")
}
fn targets<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, 1, 100_000, "the target count")
}
fn depth<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, 1, 64, "the subtask depth")
}
fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, 1, 6_000_000, "a rate per minute")
}
fn burst<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, 1, 1_000_000, "a burst")
}
fn sessions_per_node<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, 1, 1000, "the session count per node")
}
fn sessions<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, 1, 1_000_000, "the session count")
}
fn max_connections<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, 1, 1000, "the connection count")
}

fn database_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let url = String::deserialize(d)?;
    let ok = ["sqlite:", "postgres://", "postgresql://"]
        .iter()
        .any(|p| url.starts_with(p) && url.len() > p.len());
    if !ok {
        return Err(serde::de::Error::custom(
            "the database url must start with sqlite:// (a file path) or postgres://",
        ));
    }
    Ok(url)
}

impl Config {
    /// Read and validate a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::parse(&text, path)?;
        config.base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(config)
    }

    /// Parse configuration text; `path` only labels errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = warden_config::from_toml(text).map_err(|e| e.in_file(path))?;
        config.base_dir = PathBuf::from(".");
        Ok(config)
    }

    /// A path from the config, resolved against the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[http]
listen = "127.0.0.1:7600"
[database]
url = "sqlite:///var/lib/warden/server.db"   # or postgres://user@host/db
[bootstrap]
admin_password_file = "admin.pw"             # the administrator's user name is "admin"
"#;

    fn err(text: &str) -> String {
        Config::parse(text, Path::new("server.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_minimal_configuration_loads_with_defaults() {
        let c = Config::parse(MINIMAL, Path::new("server.toml")).unwrap();
        assert_eq!(c.http.listen, "127.0.0.1:7600".parse().unwrap());
        assert_eq!(c.database.url, "sqlite:///var/lib/warden/server.db");
        assert_eq!(
            c.bootstrap.admin_password_file,
            Some(PathBuf::from("admin.pw"))
        );
        assert_eq!(c.auth, AuthConfig::default());
        assert_eq!(c.limits, LimitsConfig::default());
        assert_eq!(c.metrics.token_file, None);
    }

    #[test]
    fn the_metrics_token_file_is_optional_and_checked() {
        let c = Config::parse(
            &format!("{MINIMAL}[metrics]\ntoken_file = \"metrics.token\"\n"),
            Path::new("server.toml"),
        )
        .unwrap();
        assert_eq!(c.metrics.token_file, Some(PathBuf::from("metrics.token")));

        let e = err(&format!("{MINIMAL}[metrics]\ntoken_file = \"\"\n"));
        assert!(
            e.starts_with("server.toml:9:14: key `metrics.token_file`"),
            "{e}"
        );
        let e = err(&format!("{MINIMAL}[metrics]\ntoken = \"x\"\n"));
        assert!(e.starts_with("server.toml:9:1: key `metrics.token`"), "{e}");
        assert!(e.contains("unknown field"), "{e}");
        let e = err(&format!("{MINIMAL}[metrics]\ntoken_file = 3\n"));
        assert!(
            e.starts_with("server.toml:9:14: key `metrics.token_file`"),
            "{e}"
        );
    }

    #[test]
    fn login_limits_and_session_caps_are_configurable() {
        let c = Config::parse(
            &format!(
                "{MINIMAL}[auth]\nlogin_rate_per_minute = 6\nlogin_burst = 2\nnode_login_rate_per_minute = 60\nnode_login_burst = 5\nrate_limit_exempt = [\"127.0.0.1\", \"::1\"]\n[limits]\nmax_event_sessions_per_node = 2\nmax_event_sessions = 100\nmax_subtask_depth = 3\n"
            ),
            Path::new("server.toml"),
        )
        .unwrap();
        assert_eq!((c.auth.login_rate_per_minute, c.auth.login_burst), (6, 2));
        assert_eq!(
            (c.auth.node_login_rate_per_minute, c.auth.node_login_burst),
            (60, 5)
        );
        assert_eq!(
            c.auth.rate_limit_exempt,
            [
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(c.limits.max_event_sessions_per_node, 2);
        assert_eq!(c.limits.max_event_sessions, 100);
        assert_eq!(c.limits.max_subtask_depth, 3);
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(
            c.resolve(Path::new("admin.pw")),
            dir.path().join("admin.pw")
        );
        assert_eq!(c.resolve(Path::new("/x/y")), PathBuf::from("/x/y"));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = err(
            "[http]\nlisten = \"127.0.0.1:7600\"\nport = 3\n[database]\nurl = \"sqlite://a.db\"\n",
        );
        assert!(e.starts_with("server.toml:3:1: key `http.port`"), "{e}");
        assert!(e.contains("unknown field"), "{e}");

        let e = err("[http]\nlisten = \"nowhere\"\n[database]\nurl = \"sqlite://a.db\"\n");
        assert!(e.starts_with("server.toml:2:10: key `http.listen`"), "{e}");

        let e = err("[http]\nlisten = \"127.0.0.1:1\"\n[database]\nurl = \"mysql://x\"\n");
        assert!(e.starts_with("server.toml:4:7: key `database.url`"), "{e}");
        assert!(e.contains("sqlite://"), "{e}");

        let e = err(
            "[http]\nlisten = \"127.0.0.1:1\"\n[database]\nurl = \"sqlite://a\"\n[auth]\nlockout_threshold = 0\n",
        );
        assert!(
            e.starts_with("server.toml:6:21: key `auth.lockout_threshold`"),
            "{e}"
        );
        assert!(e.contains("between 1 and 1000"), "{e}");

        let e = err(
            "[http]\nlisten = \"127.0.0.1:1\"\n[database]\nurl = \"sqlite://a\"\n[auth]\nrate_limit_exempt = [\"localhost\"]\n",
        );
        assert!(
            e.starts_with("server.toml:6:22: key `auth.rate_limit_exempt[0]`"),
            "{e}"
        );

        let e = err(
            "[http]\nlisten = \"127.0.0.1:1\"\n[database]\nurl = \"sqlite://a\"\n[limits]\nmax_event_sessions_per_node = 0\n",
        );
        assert!(
            e.starts_with("server.toml:6:31: key `limits.max_event_sessions_per_node`"),
            "{e}"
        );

        let e = err("[http]\nlisten = \"127.0.0.1:1\"\n");
        assert!(e.contains("missing field `database`"), "{e}");

        let e = err("[http\n");
        assert!(e.starts_with("server.toml:1:"), "{e}");
    }
}
