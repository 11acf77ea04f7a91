//! Credentials from the Docker config file and parsing of `WWW-Authenticate` challenges.
//!
//! Supported: `auths.<registry>.auth` (base64 of `user:password`) and
//! `auths.<registry>.username` + `password`. Not supported: credential helpers (`credsStore`,
//! `credHelpers`) and `identitytoken`; they are remembered only to say so in errors.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::RegistryError;

/// Largest Docker config file read.
const CONFIG_MAX_BYTES: u64 = 1024 * 1024;

/// A user name and password for one registry. The password is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Credentials read from a Docker config file, keyed by normalised registry host.
#[derive(Debug, Clone, Default)]
pub struct DockerConfig {
    path: Option<PathBuf>,
    auths: BTreeMap<String, RegistryCredentials>,
    helpers: BTreeMap<String, String>,
    default_helper: Option<String>,
}

/// The file format. Unknown keys are allowed on purpose: this file belongs to Docker and holds
/// many settings that are not ours.
#[derive(Debug, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl DockerConfig {
    /// No credentials at all: every registry is accessed anonymously.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// The default location: `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
    }

    /// Loads the default config file; a missing file means anonymous access.
    pub fn load_default() -> Result<Self, RegistryError> {
        match Self::default_path() {
            Some(p) if p.exists() => Self::load(&p),
            _ => Ok(Self::anonymous()),
        }
    }

    /// Loads `path` (which must exist).
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let bad = |why: String| RegistryError::Config {
            path: path.display().to_string(),
            why,
        };
        let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        if meta.len() > CONFIG_MAX_BYTES {
            return Err(bad(format!(
                "the file is larger than {CONFIG_MAX_BYTES} bytes; is it really a docker config?"
            )));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let mut cfg = Self::from_json(&text).map_err(bad)?;
        cfg.path = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Parses the JSON text of a Docker config file.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let file: ConfigFile =
            serde_json::from_str(text).map_err(|e| format!("not a valid docker config: {e}"))?;
        let mut auths = BTreeMap::new();
        for (key, entry) in file.auths {
            let host = normalise_registry(&key);
            let creds = match (&entry.auth, &entry.username, &entry.password) {
                (Some(auth), _, _) if !auth.is_empty() => {
                    decode_auth(auth).map_err(|why| format!("auths entry `{key}`: {why}"))?
                }
                (_, Some(u), Some(p)) => RegistryCredentials {
                    username: u.clone(),
                    password: p.clone(),
                },
                // An entry with no inline secret: kept by a helper, or empty.
                _ => continue,
            };
            auths.insert(host, creds);
        }
        let helpers = file
            .cred_helpers
            .into_iter()
            .map(|(k, v)| (normalise_registry(&k), v))
            .collect();
        Ok(DockerConfig {
            path: None,
            auths,
            helpers,
            default_helper: file.creds_store.filter(|s| !s.is_empty()),
        })
    }

    /// Adds or replaces credentials for `registry` (e.g. from a node's own configuration).
    pub fn with_credentials(mut self, registry: &str, creds: RegistryCredentials) -> Self {
        self.auths.insert(normalise_registry(registry), creds);
        self
    }

    /// Credentials for a registry host as written in a normalised reference (`docker.io`,
    /// `127.0.0.1:5000`, ...).
    pub fn credentials_for(&self, registry: &str) -> Option<&RegistryCredentials> {
        self.auths.get(&normalise_registry(registry))
    }

    /// Explains where credentials for `registry` would have to come from, for error messages.
    pub(crate) fn missing_credentials_hint(&self, registry: &str) -> String {
        let host = normalise_registry(registry);
        let file = self
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the docker config file".to_owned());
        if let Some(helper) = self.helpers.get(&host).or(self.default_helper.as_ref()) {
            return format!(
                "credentials for {host} are kept by the docker credential helper `{helper}`, which \
                 warden does not support; add an `auths.\"{host}\".auth` entry (base64 of \
                 user:password) to {file}"
            );
        }
        if self.auths.contains_key(&host) {
            format!("the credentials for {host} in {file} were refused; check them")
        } else {
            format!(
                "no credentials for {host}; run `docker login {host}` (without a credential \
                 helper) or add an `auths.\"{host}\".auth` entry to {file}"
            )
        }
    }
}

fn decode_auth(auth: &str) -> Result<RegistryCredentials, String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| "`auth` is not valid base64 of user:password".to_owned())?;
    let text = String::from_utf8(raw).map_err(|_| "`auth` is not UTF-8".to_owned())?;
    let (u, p) = text
        .split_once(':')
        .ok_or_else(|| "`auth` must decode to user:password".to_owned())?;
    Ok(RegistryCredentials {
        username: u.to_owned(),
        password: p.to_owned(),
    })
}

/// Maps the spellings Docker uses for a registry key (`https://index.docker.io/v1/`,
/// `registry-1.docker.io`, `HOST:PORT`, `http://HOST/v2/`) to the host of a normalised reference.
pub(crate) fn normalise_registry(key: &str) -> String {
    let k = key.trim();
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        _ => host,
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses the first Basic or Bearer challenge of a `WWW-Authenticate` header value.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = match header.split_once(char::is_whitespace) {
        Some((s, r)) => (s, r),
        None => (header, ""),
    };
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let realm = params.get("realm")?.clone();
    Some(Challenge::Bearer {
        realm,
        service: params.get("service").cloned(),
        scope: params.get("scope").cloned(),
    })
}

/// `key="value", key=value` pairs; quoted values may contain commas and `\"` escapes.
fn parse_params(input: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    _ => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auth_and_user_password_entries() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        let json = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},
            "127.0.0.1:5000":{{"username":"bob","password":"pw"}},
            "helper.example":{{}}}},
            "credHelpers":{{"helper.example":"pass"}}, "psFormat":"x"}}"#
        );
        let cfg = DockerConfig::from_json(&json).unwrap();
        let a = cfg.credentials_for("docker.io").unwrap();
        assert_eq!(
            (a.username.as_str(), a.password.as_str()),
            ("alice", "s3cr:et")
        );
        let b = cfg.credentials_for("127.0.0.1:5000").unwrap();
        assert_eq!(b.username, "bob");
        assert!(cfg.credentials_for("helper.example").is_none());
        assert!(
            cfg.missing_credentials_hint("helper.example")
                .contains("credential helper `pass`, which warden does not support")
        );
        assert!(
            cfg.missing_credentials_hint("other.example")
                .contains("no credentials")
        );
        assert!(!format!("{a:?}").contains("s3cr"));
    }

    #[test]
    fn refuses_bad_auth() {
        for bad in [
            r#"{"auths":{"x":{"auth":"!!"}}}"#,
            r#"{"auths":{"x":{"auth":"bm9jb2xvbg=="}}}"#,
        ] {
            assert!(DockerConfig::from_json(bad).is_err(), "{bad}");
        }
        assert!(DockerConfig::from_json("42").is_err());
    }

    #[test]
    fn normalises_registry_keys() {
        for (k, want) in [
            ("https://index.docker.io/v1/", "docker.io"),
            ("registry-1.docker.io", "docker.io"),
            ("http://LOCALHOST:5000/v2/", "localhost:5000"),
            ("ghcr.io", "ghcr.io"),
        ] {
            assert_eq!(normalise_registry(k), want, "{k}");
        }
    }

    proptest::proptest! {
        #[test]
        fn challenge_parser_never_panics(s in "\\PC{0,120}") {
            let _ = parse_challenge(&s);
            let _ = parse_challenge(&format!("Bearer {s}"));
        }
    }

    #[test]
    fn parses_challenges() {
        assert_eq!(parse_challenge("Basic realm=\"x\""), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="reg, one",scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("reg, one".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }
}
