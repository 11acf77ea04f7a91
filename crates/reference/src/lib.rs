//! Image references and content digests, parsed and normalised per the OCI distribution
//! reference grammar. This crate does no I/O.
//!
//! The normalised repository (`registry/path`, e.g. `docker.io/library/ubuntu`) is the one form
//! that policy matches against. Normalisation:
//! - the registry host is lower-cased; `index.docker.io` and no registry at all mean `docker.io`;
//! - a one-component Docker Hub path gets `library/`;
//! - with neither tag nor digest, the tag is `latest`;
//! - with a digest, the digest rules and the tag is informational only.

#![forbid(unsafe_code)]

mod digest;

use std::fmt;
use std::str::FromStr;

pub use digest::{Algorithm, Digest};

/// Longest repository name accepted, as the distribution grammar sets it.
pub const NAME_MAX_LEN: usize = 255;
/// Longest tag accepted.
pub const TAG_MAX_LEN: usize = 128;
/// The default registry.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// The default tag.
pub const DEFAULT_TAG: &str = "latest";

/// Why an image reference or digest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid image reference `{input}`: {why}")]
    Reference { input: String, why: String },
    #[error("invalid digest `{input}`: {why}")]
    Digest { input: String, why: String },
}

/// A normalised repository: registry host (with port) and path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    registry: String,
    path: String,
}

impl Repository {
    /// Registry host, lower case, with `:port` if one was given, e.g. `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Path within the registry, e.g. `library/ubuntu`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Parses a repository name without tag or digest and normalises it.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let r = Reference::parse(input)?;
        let tag_given = input.rfind(':').is_some_and(|i| !input[i..].contains('/'));
        if tag_given || r.digest.is_some() {
            return Err(ReferenceError::Reference {
                input: input.to_owned(),
                why: "a repository name takes no tag or digest".into(),
            });
        }
        Ok(r.repository)
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
    }
}

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    repository: Repository,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `input`. See the crate documentation for the rules.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        parse(input)
    }

    /// The normalised repository.
    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    /// The tag: the one given, or `latest` when neither tag nor digest was given, or none when
    /// only a digest was given.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest pinned in the reference, if any. When present it rules over the tag.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }

    /// The same repository pinned to `digest` (keeping the tag for display).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// `registry/path@digest`, the form used to pull exactly one image.
    pub fn pinned(&self, digest: &Digest) -> String {
        format!("{}@{}", self.repository, digest)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl FromStr for Repository {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Repository::parse(s)
    }
}

fn parse(input: &str) -> Result<Reference, ReferenceError> {
    let bad = |why: String| ReferenceError::Reference {
        input: input.to_owned(),
        why,
    };
    if input.is_empty() {
        return Err(bad("the reference is empty".into()));
    }
    if let Some(c) = input.chars().find(|c| !c.is_ascii()) {
        return Err(bad(format!(
            "non-ASCII character `{}` (U+{:04X}); references are ASCII only",
            c.escape_debug(),
            c as u32
        )));
    }
    if let Some(c) = input
        .chars()
        .find(|c| c.is_ascii_whitespace() || c.is_ascii_control())
    {
        return Err(bad(format!(
            "whitespace or control character {:?} is not allowed",
            c
        )));
    }

    // name [":" tag] ["@" digest]
    let (name_and_tag, digest) = match input.split_once('@') {
        Some((rest, d)) => {
            if d.contains('@') {
                return Err(bad("more than one `@`".into()));
            }
            let digest = Digest::parse(d).map_err(|e| match e {
                ReferenceError::Digest { why, .. } => bad(format!("digest `{d}`: {why}")),
                other => other,
            })?;
            (rest, Some(digest))
        }
        None => (input, None),
    };
    let (name, tag) = match name_and_tag.rfind(':') {
        Some(i) if !name_and_tag[i..].contains('/') => {
            (&name_and_tag[..i], Some(&name_and_tag[i + 1..]))
        }
        _ => (name_and_tag, None),
    };
    if let Some(tag) = tag {
        validate_tag(tag).map_err(&bad)?;
    }
    if name.is_empty() {
        return Err(bad("the repository name is empty".into()));
    }
    if name.len() > NAME_MAX_LEN {
        return Err(bad(format!(
            "the repository name is {} characters long; the limit is {NAME_MAX_LEN}",
            name.len()
        )));
    }

    let (registry, path) = split_registry(name);
    let registry = match registry {
        Some(r) => normalise_registry(r).map_err(&bad)?,
        None => DOCKER_HUB.to_owned(),
    };
    validate_path(path).map_err(&bad)?;
    let path = if registry == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_owned()
    };

    // The limit holds for the normal form too: a short name becomes longer with the registry
    // and `library/` added, and a name that parses must print as one that parses again.
    let full = registry.len() + 1 + path.len();
    if full > NAME_MAX_LEN {
        return Err(bad(format!(
            "the repository name `{registry}/{path}` is {full} characters long once normalised; the limit is {NAME_MAX_LEN}"
        )));
    }

    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_owned()),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_TAG.to_owned()),
    };
    Ok(Reference {
        repository: Repository { registry, path },
        tag,
        digest,
    })
}

/// Splits off the registry: the first component is a registry when there is more than one
/// component and it holds a `.` or `:`, is `localhost`, or is a bracketed IPv6 address.
///
/// Docker also takes a first component with upper case as a registry host. Warden does not:
/// lower-casing such a host would make the normal form ambiguous (`Foo/bar` would print as
/// `foo/bar`, which reads back as the Docker Hub path `docker.io/foo/bar`), so such a component
/// stays in the path, where upper case is refused.
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn normalise_registry(registry: &str) -> Result<String, String> {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("registry `{registry}`: unclosed `[` in an IPv6 address"))?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!(
                "registry `{registry}`: `{v6}` is not an IPv6 address"
            ));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| {
                format!("registry `{registry}`: expected `:port` after the IPv6 address")
            })?),
        };
        (format!("[{}]", v6.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match registry.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (registry, None),
        };
        if host.is_empty() {
            return Err(format!("registry `{registry}`: the host is empty"));
        }
        for component in host.split('.') {
            let ok = !component.is_empty()
                && component
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !component.starts_with('-')
                && !component.ends_with('-');
            if !ok {
                return Err(format!(
                    "registry `{registry}`: host component `{component}` must be letters, digits \
                     and inner hyphens"
                ));
            }
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) || p.len() > 5 {
                return Err(format!("registry `{registry}`: port `{p}` is not a number"));
            }
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(format!(
                        "registry `{registry}`: port {p} is outside 1-65535"
                    ));
                }
            }
        }
    };
    let host = if host == DOCKER_HUB_LEGACY && port.is_none() {
        DOCKER_HUB.to_owned()
    } else {
        host
    };
    Ok(match port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    })
}

/// path-component := [a-z0-9]+ (separator [a-z0-9]+)*, separator := [_.] | __ | [-]+
fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the repository path is empty".into());
    }
    for component in path.split('/') {
        if component.is_empty() {
            return Err(format!(
                "repository path `{path}` has an empty component (leading, trailing or double `/`)"
            ));
        }
        if component.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "repository path `{path}` has upper case; repository names are lower case"
            ));
        }
        validate_path_component(component)
            .map_err(|why| format!("repository path component `{component}`: {why}"))?;
    }
    Ok(())
}

fn validate_path_component(component: &str) -> Result<(), String> {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if let Some(&b) = bytes
        .iter()
        .find(|&&b| !alnum(b) && !matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(format!(
            "`{}` is not allowed; use a-z, 0-9 and the separators `.`, `_`, `__`, `-`",
            b as char
        ));
    }
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err("must start and end with a letter or digit".into());
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(format!(
                "separator `{sep}` is not allowed; use one of `.`, `_`, `__` or dashes"
            ));
        }
    }
    Ok(())
}

/// tag := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
fn validate_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() {
        return Err("the tag after `:` is empty".into());
    }
    if tag.len() > TAG_MAX_LEN {
        return Err(format!(
            "the tag is {} characters long; the limit is {TAG_MAX_LEN}",
            tag.len()
        ));
    }
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    if chars.next().is_some_and(|c| !word(c)) {
        return Err(format!(
            "tag `{tag}` must start with a letter, digit or `_`"
        ));
    }
    if let Some(c) = chars.find(|&c| !word(c) && c != '.' && c != '-') {
        return Err(format!(
            "tag `{tag}` has `{c}`; tags use letters, digits, `_`, `.` and `-`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
