//! A researcher's profile: which server, who logs in, the researcher's own key and the
//! certificate their organization issued for it, the collaboration, the pinned key fingerprints
//! of the organizations a task may go to, and how to reach the registry to resolve a tag.
//!
//! ```toml
//! [server]
//! url = "https://warden.example.org"
//! username = "rita"
//! password_file = "rita.pw"            # else WARDEN_PASSWORD
//!
//! [researcher]
//! key = "rita.key"                     # personal X25519 key (WARDEN X25519 PRIVATE KEY)
//! certificate = "rita.cert"            # issued by the organization (warden keys certify)
//!
//! [collaboration]
//! name = "cardio"                      # or: id = 3
//!
//! [organizations]                      # pinned public-key fingerprints, by organization name
//! hospital-a = "sha256:..."
//! hospital-b = "sha256:..."
//!
//! [registry]                           # optional: how a tag is resolved to a digest
//! insecure = ["127.0.0.1:5000"]        # plain HTTP allowed (loopback always is)
//! docker_config = "~/.docker/config.json"
//! ```
//!
//! Relative paths are relative to the profile's folder (`~/` is the home folder). Unknown keys
//! are refused, and every error names the file, line and column. A profile of the first form,
//! with `[organization] secret_key`, is refused with the steps to move to a researcher key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use warden_config::ConfigError;
use warden_seal::Fingerprint;

/// Largest accepted profile file.
pub const MAX_PROFILE_BYTES: u64 = 1 << 20;
/// Environment variable that overrides `~/.config` as the folder of `warden/<name>.toml`.
pub const XDG_CONFIG_HOME: &str = "XDG_CONFIG_HOME";

/// What an old profile is told: researchers no longer hold their organization's secret key.
pub const MOVE_FROM_ORGANIZATION_KEY: &str = "[organization] secret_key is no longer used: \
     researchers do not hold their organization's secret key any more. Move to a key of your \
     own: run `warden keys generate --kind x25519 --out rita.key`, send rita.key.pub to your \
     organization to certify (`warden keys certify ... --key rita.key.pub --out rita.cert`), \
     then replace the [organization] section with [researcher] key = \"rita.key\" and \
     certificate = \"rita.cert\"";

/// A parsed profile, paths resolved against the profile's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Where the profile was read from.
    pub path: PathBuf,
    pub server: ServerSection,
    pub researcher: ResearcherSection,
    pub collaboration: CollaborationRef,
    /// Organization name -> pinned fingerprint of its X25519 public key.
    pub pins: BTreeMap<String, Fingerprint>,
    pub registry: RegistrySection,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Base URL of the server, `http://` or `https://`.
    #[serde(deserialize_with = "server_url")]
    pub url: String,
    pub username: String,
    /// The password, one trailing newline dropped; without it, `WARDEN_PASSWORD`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// The researcher's own key pair and the certificate their organization issued for it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResearcherSection {
    /// PEM file of the researcher's X25519 secret key (`WARDEN X25519 PRIVATE KEY`): inputs are
    /// sealed with it and results come back sealed to it.
    pub key: PathBuf,
    /// The certificate (JSON) the organization's certification key issued for that key.
    pub certificate: PathBuf,
}

/// How the client reaches registries to resolve a tag to a digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySection {
    /// Registries (`host` or `host:port`) that may be reached over plain HTTP; loopback always
    /// may.
    #[serde(default)]
    pub insecure: Vec<String>,
    /// A Docker config file with registry credentials; without it `$DOCKER_CONFIG/config.json`
    /// or `~/.docker/config.json` when it exists, else anonymous access.
    #[serde(default)]
    pub docker_config: Option<PathBuf>,
}

/// The collaboration a profile works in: by name or by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CollaborationRef {
    Name(String),
    Id(i64),
}

impl std::fmt::Display for CollaborationRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CollaborationRef::Name(n) => write!(f, "`{n}`"),
            CollaborationRef::Id(id) => write!(f, "{id}"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    server: ServerSection,
    /// Only to refuse the first form of profiles with a message that says how to move.
    #[serde(default)]
    organization: Option<IgnoredAny>,
    #[serde(default)]
    researcher: Option<ResearcherSection>,
    collaboration: CollaborationSection,
    #[serde(default)]
    organizations: BTreeMap<String, Pin>,
    #[serde(default)]
    registry: RegistrySection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CollaborationSection {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    id: Option<i64>,
}

#[derive(Debug)]
struct Pin(Fingerprint);

impl<'de> Deserialize<'de> for Pin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<Fingerprint>().map(Pin).map_err(|_| {
            serde::de::Error::custom(
                "a fingerprint is `sha256:` and 64 lower-case hex digits; ask the organization \
                 for its key's fingerprint",
            )
        })
    }
}

fn server_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    let url = reqwest::Url::parse(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{s}` is not a URL ({e}); write e.g. https://warden.example.org"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(serde::de::Error::custom(format!(
            "`{s}` is not an http:// or https:// URL with a host"
        )));
    }
    Ok(s.trim_end_matches('/').to_owned())
}

/// Whether `name` may name a profile: 1 to 64 of `[A-Za-z0-9_.-]`, not starting with a dot.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The file of profile `name`: `$XDG_CONFIG_HOME/warden/<name>.toml`, else
/// `$HOME/.config/warden/<name>.toml`.
pub fn path_of(name: &str) -> Result<PathBuf, ConfigError> {
    let bad = |message: String| ConfigError::Read {
        path: PathBuf::from(format!("{name}.toml")),
        source: std::io::Error::other(message),
    };
    if !valid_name(name) {
        return Err(bad(format!(
            "`{}` is not a profile name: use 1 to 64 of [A-Za-z0-9_.-], not starting with a dot",
            name.escape_debug()
        )));
    }
    let base = match std::env::var_os(XDG_CONFIG_HOME).filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => PathBuf::from(h).join(".config"),
            None => {
                return Err(bad(
                    "neither XDG_CONFIG_HOME nor HOME is set; pass --profile-file PATH".to_owned(),
                ));
            }
        },
    };
    Ok(base.join("warden").join(format!("{name}.toml")))
}

/// `p` resolved against `base` when relative; `~/...` is under `$HOME`.
fn resolve_path(p: PathBuf, base: &Path) -> PathBuf {
    if let Ok(rest) = p.strip_prefix("~") {
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            return PathBuf::from(home).join(rest);
        }
    }
    if p.is_relative() { base.join(p) } else { p }
}

impl Profile {
    /// Reads and parses the profile at `path`.
    pub fn load(path: &Path) -> Result<Profile, ConfigError> {
        let (text, base) = warden_config::read_file(path, MAX_PROFILE_BYTES)?;
        Profile::parse(&text, path, &base)
    }

    /// Parses `text` (named `path` in errors); relative paths are resolved against `base`.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Profile, ConfigError> {
        let file: File = warden_config::from_toml(text).map_err(|e| e.in_file(path))?;
        let at_section = |key: &str, section: &str, message: &str| {
            let span = text.find(section).map(|o| o..o + section.len());
            warden_config::locate(text, key.to_owned(), message.to_owned(), span).in_file(path)
        };
        if file.organization.is_some() {
            return Err(at_section(
                "organization",
                "[organization]",
                MOVE_FROM_ORGANIZATION_KEY,
            ));
        }
        let Some(researcher) = file.researcher else {
            return Err(at_section(
                "researcher",
                "[researcher]",
                "missing the [researcher] section: key = \"...\" (your X25519 key, from \
                 `warden keys generate --kind x25519`) and certificate = \"...\" (issued for it \
                 by your organization with `warden keys certify`)",
            ));
        };
        let collaboration = match (file.collaboration.name, file.collaboration.id) {
            (Some(name), None) if !name.is_empty() => CollaborationRef::Name(name),
            (None, Some(id)) if id > 0 => CollaborationRef::Id(id),
            (Some(_), Some(_)) => {
                return Err(at_section(
                    "collaboration",
                    "[collaboration]",
                    "give either collaboration.name or collaboration.id, not both",
                ));
            }
            _ => {
                return Err(at_section(
                    "collaboration",
                    "[collaboration]",
                    "name the collaboration: collaboration.name = \"...\" (or a positive id)",
                ));
            }
        };
        let resolve = |p: PathBuf| resolve_path(p, base);
        let mut server = file.server;
        server.password_file = server.password_file.map(resolve);
        let mut registry = file.registry;
        registry.docker_config = registry.docker_config.map(resolve);
        Ok(Profile {
            path: path.to_path_buf(),
            server,
            researcher: ResearcherSection {
                key: resolve(researcher.key),
                certificate: resolve(researcher.certificate),
            },
            collaboration,
            pins: file
                .organizations
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect(),
            registry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn good() -> String {
        format!(
            "[server]\nurl = \"http://127.0.0.1:7600/\"\nusername = \"rita\"\npassword_file = \"rita.pw\"\n\n\
             [researcher]\nkey = \"rita.key\"\ncertificate = \"rita.cert\"\n\n\
             [collaboration]\nname = \"cardio\"\n\n\
             [organizations]\nhospital-a = \"{FP}\"\n"
        )
    }

    fn parse(text: &str) -> Result<Profile, ConfigError> {
        Profile::parse(text, Path::new("/p/rita.toml"), Path::new("/p"))
    }

    /// The error for `text` is at `line`:`column`, names `key` and says `needle`.
    #[track_caller]
    fn check(text: &str, line: usize, column: usize, key: &str, needle: &str) {
        match parse(text) {
            Err(ConfigError::Invalid {
                path,
                line: l,
                column: c,
                key: k,
                message,
            }) => {
                assert_eq!(path, Path::new("/p/rita.toml"));
                assert_eq!((l, c, k.as_str()), (line, column, key), "{message}");
                assert!(message.contains(needle), "{message}");
            }
            other => panic!("expected a located error, got {other:?}"),
        }
    }

    #[test]
    fn a_good_profile_parses_and_resolves_paths_against_its_folder() {
        let p = parse(&good()).unwrap();
        assert_eq!(p.server.url, "http://127.0.0.1:7600");
        assert_eq!(p.server.username, "rita");
        assert_eq!(p.server.password_file, Some(PathBuf::from("/p/rita.pw")));
        assert_eq!(p.researcher.key, PathBuf::from("/p/rita.key"));
        assert_eq!(p.researcher.certificate, PathBuf::from("/p/rita.cert"));
        assert_eq!(p.collaboration, CollaborationRef::Name("cardio".into()));
        assert_eq!(p.pins["hospital-a"].to_string(), FP);
        assert_eq!(p.registry, RegistrySection::default());
        let by_id = good().replace("name = \"cardio\"", "id = 3");
        assert_eq!(
            parse(&by_id).unwrap().collaboration,
            CollaborationRef::Id(3)
        );
        let abs = good().replace("\"rita.key\"", "\"/etc/warden/rita.key\"");
        assert_eq!(
            parse(&abs).unwrap().researcher.key,
            PathBuf::from("/etc/warden/rita.key")
        );
        let no_pw = good().replace("password_file = \"rita.pw\"\n", "");
        assert_eq!(parse(&no_pw).unwrap().server.password_file, None);
    }

    #[test]
    fn the_registry_section_is_optional_and_resolves_its_path() {
        let text = format!(
            "{}\n[registry]\ninsecure = [\"127.0.0.1:5000\", \"registry.local\"]\n\
             docker_config = \"docker/config.json\"\n",
            good()
        );
        let p = parse(&text).unwrap();
        assert_eq!(p.registry.insecure, ["127.0.0.1:5000", "registry.local"]);
        assert_eq!(
            p.registry.docker_config,
            Some(PathBuf::from("/p/docker/config.json"))
        );
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            let tilde = text.replace("\"docker/config.json\"", "\"~/.docker/config.json\"");
            assert_eq!(
                parse(&tilde).unwrap().registry.docker_config,
                Some(PathBuf::from(home).join(".docker/config.json"))
            );
        }
        check(
            &format!("{}\n[registry]\nmirror = \"x\"\n", good()),
            17,
            1,
            "registry.mirror",
            "unknown field `mirror`",
        );
        check(
            &format!("{}\n[registry]\ninsecure = \"127.0.0.1:5000\"\n", good()),
            17,
            12,
            "registry.insecure",
            "invalid type",
        );
    }

    #[test]
    fn an_old_profile_with_the_organization_key_is_refused_with_how_to_move() {
        let old = good().replace(
            "[researcher]\nkey = \"rita.key\"\ncertificate = \"rita.cert\"\n",
            "[organization]\nsecret_key = \"org.key\"\n",
        );
        check(
            &old,
            6,
            1,
            "organization",
            "warden keys generate --kind x25519",
        );
        let e = parse(&old).unwrap_err().to_string();
        assert!(
            e.contains("warden keys certify")
                && e.contains("[researcher] key = \"rita.key\"")
                && e.contains("no longer used"),
            "{e}"
        );
        // Both sections: still refused, the old one must go.
        let both = format!("{}\n[organization]\nsecret_key = \"org.key\"\n", good());
        check(&both, 16, 1, "organization", "no longer used");
    }

    #[test]
    fn errors_name_file_line_column_and_key() {
        // unknown key, in a section and at the top
        check(
            &good().replace("username", "user = \"x\"\nusername"),
            3,
            1,
            "server.user",
            "unknown field `user`",
        );
        check(
            &format!("colour = 1\n{}", good()),
            1,
            1,
            "colour",
            "unknown field `colour`",
        );
        check(
            &good().replace("[researcher]\n", "[researcher]\nsecret_key = \"x\"\n"),
            7,
            1,
            "researcher.secret_key",
            "unknown field `secret_key`",
        );
        // a missing key or section
        check(
            &good().replace("certificate = \"rita.cert\"\n", ""),
            6,
            1,
            "researcher",
            "missing field `certificate`",
        );
        check(
            &good().replace(
                "[researcher]\nkey = \"rita.key\"\ncertificate = \"rita.cert\"\n",
                "",
            ),
            1,
            1,
            "researcher",
            "warden keys certify",
        );
        check(
            &good().replace("username = \"rita\"\n", ""),
            1,
            1,
            "server",
            "missing field `username`",
        );
        // a malformed pin, at its value
        check(
            &good().replace(FP, "sha256:ABC"),
            14,
            14,
            "organizations.hospital-a",
            "64 lower-case hex",
        );
        check(
            &good().replace(FP, &FP.to_uppercase().replace("SHA256", "sha256")),
            14,
            14,
            "organizations.hospital-a",
            "lower-case",
        );
        // a URL that is not http(s)
        check(
            &good().replace("http://127.0.0.1:7600/", "ftp://x"),
            2,
            7,
            "server.url",
            "not an http:// or https:// URL",
        );
        check(
            &good().replace("http://127.0.0.1:7600/", "not a url"),
            2,
            7,
            "server.url",
            "is not a URL",
        );
        // a wrong type
        check(
            &good().replace("name = \"cardio\"", "id = \"three\""),
            11,
            6,
            "collaboration.id",
            "invalid type",
        );
        // the collaboration: neither, both, empty
        check(
            &good().replace("name = \"cardio\"\n", ""),
            10,
            1,
            "collaboration",
            "name the collaboration",
        );
        check(
            &good().replace("name = \"cardio\"", "name = \"cardio\"\nid = 3"),
            10,
            1,
            "collaboration",
            "not both",
        );
        check(
            &good().replace("name = \"cardio\"", "name = \"\""),
            10,
            1,
            "collaboration",
            "name the collaboration",
        );
        // a syntax error
        check("[server\n", 1, 8, "", "");
    }

    #[test]
    fn profile_names_are_plain_file_names() {
        for ok in ["rita", "cardio-study", "a.b_c", "X1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", ".hidden", "../etc", "a/b", "a b", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
            assert!(path_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("absent.toml");
        let e = Profile::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("absent.toml") && e.contains("check the path"),
            "{e}"
        );
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; MAX_PROFILE_BYTES as usize + 1]).unwrap();
        let e = Profile::load(&big).unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
        let good_file = dir.path().join("rita.toml");
        std::fs::write(&good_file, good()).unwrap();
        let p = Profile::load(&good_file).unwrap();
        assert_eq!(p.researcher.key, dir.path().join("rita.key"));
    }
}
