//! The store's TOML configuration, validated while it is parsed so that every error names the
//! file, the line and the key (docs/store.md, "Configuration"). Relative paths are relative to
//! the config file.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
pub use warden_config::ConfigError;
use warden_config::in_range;

use crate::storage::Durability;

const MAX_TTL_SECS: u64 = 365 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    #[serde(default)]
    pub bootstrap: BootstrapConfig,
    pub store: StoreConfig,
    #[serde(default)]
    pub review: ReviewConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Directory of the config file; relative paths are resolved against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    #[serde(deserialize_with = "database_url")]
    pub url: String,
    #[serde(default = "d_conns", deserialize_with = "max_connections")]
    pub max_connections: u32,
    #[serde(default)]
    pub sqlite_durability: Durability,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapConfig {
    #[serde(default)]
    pub admin_password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(deserialize_with = "store_name")]
    pub name: String,
    /// The store's Ed25519 key: an encrypted key file.
    pub signing_key: PathBuf,
    /// The key file's password (its first line).
    pub password_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewConfig {
    #[serde(default = "d_two", deserialize_with = "approvals")]
    pub min_approvals: u32,
    #[serde(default = "d_two", deserialize_with = "approvals")]
    pub min_organizations: u32,
    #[serde(default = "d_true")]
    pub reviewers_from_other_organization: bool,
    #[serde(default = "d_true")]
    pub replaced_remain_valid: bool,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        ReviewConfig {
            min_approvals: 2,
            min_organizations: 2,
            reviewers_from_other_organization: true,
            replaced_remain_valid: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default = "d_access", deserialize_with = "ttl")]
    pub access_token_ttl_secs: u64,
    #[serde(default = "d_refresh", deserialize_with = "ttl")]
    pub refresh_token_ttl_secs: u64,
    #[serde(default = "d_threshold", deserialize_with = "threshold")]
    pub lockout_threshold: u32,
    #[serde(default = "d_lockout", deserialize_with = "ttl")]
    pub lockout_secs: u64,
    #[serde(default = "d_rate", deserialize_with = "rate")]
    pub login_rate_per_minute: u32,
    #[serde(default = "d_burst", deserialize_with = "burst")]
    pub login_burst: u32,
    #[serde(default)]
    pub rate_limit_exempt: Vec<IpAddr>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            access_token_ttl_secs: d_access(),
            refresh_token_ttl_secs: d_refresh(),
            lockout_threshold: d_threshold(),
            lockout_secs: d_lockout(),
            login_rate_per_minute: d_rate(),
            login_burst: d_burst(),
            rate_limit_exempt: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(default = "d_body", deserialize_with = "body")]
    pub max_body_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_bytes: d_body(),
        }
    }
}

fn d_conns() -> u32 {
    16
}
fn d_two() -> u32 {
    2
}
fn d_true() -> bool {
    true
}
fn d_access() -> u64 {
    900
}
fn d_refresh() -> u64 {
    7 * 24 * 3600
}
fn d_threshold() -> u32 {
    5
}
fn d_lockout() -> u64 {
    900
}
fn d_rate() -> u32 {
    120
}
fn d_burst() -> u32 {
    30
}
fn d_body() -> u64 {
    1 << 20
}

fn ttl<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, 1, MAX_TTL_SECS, "a duration in seconds")
}
fn threshold<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, 1, 1000, "the lockout threshold")
}
fn approvals<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, 1, 100, "the approval count")
}
fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, 1, 6_000_000, "a rate per minute")
}
fn burst<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, 1, 1_000_000, "a burst")
}
fn body<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, 1024, 64 << 20, "a size in bytes")
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

/// A store name: 1 to 64 of `a-z 0-9 - . _`, starting with a letter or digit.
pub fn valid_store_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._".contains(c))
}

fn store_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if !valid_store_name(&s) {
        return Err(serde::de::Error::custom(
            "the store name must be 1 to 64 of a-z, 0-9, `-`, `.`, `_`, starting with a letter or digit",
        ));
    }
    Ok(s)
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
        if config.review.min_organizations > config.review.min_approvals {
            let at = text.find("min_organizations").unwrap_or(0);
            let (line, col) = warden_config::line_column(text, at);
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column: col,
                key: "review.min_organizations".into(),
                message: format!(
                    "min_organizations ({}) cannot exceed min_approvals ({}); lower it or raise min_approvals",
                    config.review.min_organizations, config.review.min_approvals
                ),
            });
        }
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
listen = "127.0.0.1:7700"
[database]
url = "sqlite:///var/lib/warden/store.db"
[bootstrap]
admin_password_file = "admin.pw"     # the administrator's user name is "admin"
[store]
name = "community"
signing_key = "store.key"            # the checkpoint key (encrypted key file); password_file beside it
password_file = "store.pw"
"#;

    fn err(text: &str) -> String {
        Config::parse(text, Path::new("store.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_minimal_configuration_of_the_issue_loads_with_defaults() {
        let c = Config::parse(MINIMAL, Path::new("store.toml")).unwrap();
        assert_eq!(c.store.name, "community");
        assert_eq!(c.review, ReviewConfig::default());
        assert_eq!(c.http.listen.port(), 7700);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = err(&format!("{MINIMAL}[review]\nmin_approvals = 0\n"));
        assert!(
            e.starts_with("store.toml:13:17: key `review.min_approvals`"),
            "{e}"
        );
        let e = err(&format!("{MINIMAL}[review]\nmin_aprovals = 1\n"));
        assert!(
            e.contains("store.toml:13") && e.contains("min_aprovals"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("\"community\"", "\"Bad Name\""));
        assert!(
            e.contains("store.toml:9") && e.contains("store.name"),
            "{e}"
        );
        let e = err(&format!(
            "{MINIMAL}[review]\nmin_approvals = 1\nmin_organizations = 2\n"
        ));
        assert!(
            e.starts_with("store.toml:14:1: key `review.min_organizations`"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("[store]", "[stor]"));
        assert!(e.contains("stor"), "{e}");
    }
}
