//! Credentials from the Docker config file and parsing of `WWW-Authenticate` challenges.
//!
//! Supported: `auths.<registry>.auth` (base64 of `user:password`),
//! `auths.<registry>.username` + `password`, and credential helpers: `credHelpers.<registry>`
//! and `credsStore` name a `docker-credential-<name>` program, asked once when the file is
//! loaded (`list`, then `get` per registry, Docker's helper protocol). Not supported:
//! `identitytoken` (OAuth refresh tokens, also what a helper returns as user `<token>`); such
//! registries are accessed without credentials and the error says why.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

use crate::RegistryError;

/// Largest Docker config file read.
const CONFIG_MAX_BYTES: u64 = 1024 * 1024;
/// Longest a credential helper may take to answer.
const HELPER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from a credential helper.
const HELPER_MAX_BYTES: u64 = 64 * 1024;

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

    /// Loads `path` (which must exist) and asks the credential helpers it names, found on
    /// `PATH`, for their credentials.
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        Self::load_with_helpers(path, std::env::var_os("PATH").as_deref())
    }

    /// [`DockerConfig::load`], looking for `docker-credential-<name>` programs in `search_path`
    /// (a `PATH`-style list of directories) instead of `PATH`.
    pub fn load_with_helpers(
        path: &Path,
        search_path: Option<&OsStr>,
    ) -> Result<Self, RegistryError> {
        let mut cfg = Self::load_file(path)?;
        cfg.ask_helpers(search_path)
            .map_err(|why| RegistryError::Config {
                path: path.display().to_string(),
                why,
            })?;
        Ok(cfg)
    }

    fn load_file(path: &Path) -> Result<Self, RegistryError> {
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

    /// Fills in the credentials the helpers keep: each `credHelpers` registry from its helper,
    /// and every registry the `credsStore` helper lists. Entries written inline in `auths`
    /// win. A helper that cannot be run or answers garbage is an error; a registry it does not
    /// know, or knows only by an identity token, is left without credentials.
    fn ask_helpers(&mut self, search_path: Option<&OsStr>) -> Result<(), String> {
        let mut wanted: Vec<(String, String, String)> = Vec::new(); // (host, server key, helper)
        for (host, helper) in &self.helpers {
            wanted.push((host.clone(), host.clone(), helper.clone()));
        }
        if let Some(store) = &self.default_helper {
            let listed = run_helper(store, "list", "", search_path).map_err(|e| e.message)?;
            let servers: BTreeMap<String, String> = serde_json::from_slice(&listed)
                .map_err(|e| format!("`docker-credential-{store} list` answered {e}"))?;
            for server in servers.into_keys() {
                let host = normalise_registry(&server);
                if !self.helpers.contains_key(&host) {
                    wanted.push((host, server, store.clone()));
                }
            }
        }
        for (host, server, helper) in wanted {
            if self.auths.contains_key(&host) {
                continue;
            }
            match helper_get(&helper, &server, search_path)? {
                Some(creds) => {
                    self.auths.insert(host, creds);
                }
                None => {
                    tracing::warn!(registry = %host, helper = %helper, "the credential helper has no usable credentials for this registry");
                }
            }
        }
        Ok(())
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
        if self.auths.contains_key(&host) {
            format!("the credentials for {host} in {file} were refused; check them")
        } else {
            match self.helpers.get(&host).or(self.default_helper.as_ref()) {
                Some(helper) => format!(
                    "the credential helper `docker-credential-{helper}` named in {file} has no \
                     user name and password for {host} (an identity token is not supported); \
                     run `docker login {host}` or add an `auths.\"{host}\".auth` entry"
                ),
                None => format!(
                    "no credentials for {host}; run `docker login {host}` or add an \
                     `auths.\"{host}\".auth` entry to {file}"
                ),
            }
        }
    }
}

/// `docker-credential-<helper> get` for `server`: `None` when the helper does not know it or
/// holds only an identity token.
fn helper_get(
    helper: &str,
    server: &str,
    search_path: Option<&OsStr>,
) -> Result<Option<RegistryCredentials>, String> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let out = match run_helper(helper, "get", server, search_path) {
        Ok(out) => out,
        // The protocol's answer for an unknown server: a failure saying "credentials not found".
        Err(e) if e.said.contains("credentials not found") => return Ok(None),
        Err(e) => return Err(e.message),
    };
    let answer: Answer = serde_json::from_slice(&out)
        .map_err(|e| format!("`docker-credential-{helper} get` answered {e}"))?;
    if answer.username == "<token>" || answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(RegistryCredentials {
        username: answer.username,
        password: answer.secret,
    }))
}

/// Why a helper gave no answer: the message for the operator, and what the helper itself said
/// when it ran and failed (empty otherwise).
struct HelperError {
    message: String,
    said: String,
}

impl From<String> for HelperError {
    fn from(message: String) -> Self {
        HelperError {
            message,
            said: String::new(),
        }
    }
}

/// Runs `docker-credential-<helper> <verb>` with `input` on its standard input and returns its
/// standard output, within [`HELPER_TIMEOUT`] and [`HELPER_MAX_BYTES`].
fn run_helper(
    helper: &str,
    verb: &str,
    input: &str,
    search_path: Option<&OsStr>,
) -> Result<Vec<u8>, HelperError> {
    if helper.is_empty()
        || !helper
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(format!(
            "credential helper name `{}` is not [A-Za-z0-9_.-]",
            helper.escape_debug()
        )
        .into());
    }
    let name = format!("docker-credential-{helper}");
    let program = find_program(&name, search_path).ok_or_else(|| {
        HelperError::from(format!(
            "the credential helper `{name}` is not installed (not on the search path)"
        ))
    })?;
    let mut child = Command::new(&program)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| HelperError::from(format!("cannot run {}: {e}", program.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that does not read its input is its own affair; its answer decides.
        let _ = stdin.write_all(input.as_bytes());
    }
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(HELPER_MAX_BYTES + 1).read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + HELPER_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{name} {verb}` did not answer within {}s",
                    HELPER_TIMEOUT.as_secs()
                )
                .into());
            }
            Err(e) => return Err(format!("waiting for `{name} {verb}`: {e}").into()),
        }
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if out.len() as u64 > HELPER_MAX_BYTES {
        return Err(format!("`{name} {verb}` answered more than {HELPER_MAX_BYTES} bytes").into());
    }
    if !status.success() {
        let said = String::from_utf8_lossy(if out.is_empty() { &err } else { &out })
            .trim()
            .chars()
            .take(200)
            .collect::<String>();
        return Err(HelperError {
            message: format!("`{name} {verb}` failed ({status}): {said}"),
            said,
        });
    }
    Ok(out)
}

fn find_program(name: &str, search_path: Option<&OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let dirs: OsString = search_path.map(OsStr::to_os_string).unwrap_or_default();
    std::env::split_paths(&dirs)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
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
                .contains("`docker-credential-pass` named in the docker config file has no user")
        );
        assert!(
            cfg.missing_credentials_hint("other.example")
                .contains("no credentials")
        );
        assert!(!format!("{a:?}").contains("s3cr"));
    }

    /// A `docker-credential-fake` speaking Docker's helper protocol, as a shell script.
    fn fake_helper(dir: &Path, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    const KEEPER: &str = r#"case "$1" in
get) server=$(cat)
     case "$server" in
     reg.example:5000) echo '{"ServerURL":"reg.example:5000","Username":"carol","Secret":"pw1"}' ;;
     https://store.example/v1/) echo '{"ServerURL":"https://store.example/v1/","Username":"dave","Secret":"pw2"}' ;;
     token.example) echo '{"ServerURL":"token.example","Username":"<token>","Secret":"refresh"}' ;;
     *) echo "credentials not found in native keychain"; exit 1 ;;
     esac ;;
list) echo '{"https://store.example/v1/":"dave","token.example":"<token>","gone.example":"x"}' ;;
*) exit 2 ;;
esac"#;

    fn load(dir: &Path, json: &str) -> Result<DockerConfig, RegistryError> {
        let file = dir.join("config.json");
        std::fs::write(&file, json).unwrap();
        DockerConfig::load_with_helpers(&file, Some(dir.as_os_str()))
    }

    #[test]
    fn credential_helpers_are_asked_by_docker_s_protocol() {
        let dir = tempfile::tempdir().unwrap();
        fake_helper(dir.path(), "keeper", KEEPER);
        let cfg = load(
            dir.path(),
            r#"{"credHelpers":{"reg.example:5000":"keeper","unknown.example":"keeper"},
                "credsStore":"keeper",
                "auths":{"inline.example":{"auth":"ZXZlOnB3Mw=="},"store.example":{}}}"#,
        )
        .unwrap();
        let c = cfg.credentials_for("reg.example:5000").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("carol", "pw1"));
        // From the store's list, under the host a reference names.
        let d = cfg.credentials_for("store.example").unwrap();
        assert_eq!((d.username.as_str(), d.password.as_str()), ("dave", "pw2"));
        // Inline entries stay; unknown servers and identity tokens give no credentials.
        assert_eq!(
            cfg.credentials_for("inline.example").unwrap().username,
            "eve"
        );
        assert!(cfg.credentials_for("unknown.example").is_none());
        assert!(cfg.credentials_for("token.example").is_none());
        assert!(cfg.credentials_for("gone.example").is_none());
        assert!(
            cfg.missing_credentials_hint("token.example")
                .contains("identity token is not supported")
        );
    }

    #[test]
    fn a_helper_that_is_missing_or_answers_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(dir.path(), r#"{"credsStore":"desktop"}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("`docker-credential-desktop` is not installed"),
            "{e}"
        );
        fake_helper(dir.path(), "broken", "echo 'not json'");
        let e = load(dir.path(), r#"{"credHelpers":{"reg.example":"broken"}}"#).unwrap_err();
        assert!(
            e.to_string().contains("docker-credential-broken get"),
            "{e}"
        );
        fake_helper(dir.path(), "failing", "echo 'keychain locked' >&2; exit 3");
        let e = load(dir.path(), r#"{"credsStore":"failing"}"#).unwrap_err();
        assert!(e.to_string().contains("keychain locked"), "{e}");
        // A name that would leave the helper namespace is refused before anything runs.
        let e = load(dir.path(), r#"{"credsStore":"../../bin/sh"}"#).unwrap_err();
        assert!(e.to_string().contains("is not [A-Za-z0-9_.-]"), "{e}");
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
