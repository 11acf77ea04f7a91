//! Reading and validating a policy file. [`Policy::load`] is the only function here that touches
//! the filesystem; everything else works on text and a key loader passed in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use regex::RegexSetBuilder;
use serde::Deserialize;
use toml::Spanned;
use warden_reference::{Digest, Repository};
use warden_trust::notary::{Identity, TrustStore};
use warden_trust::{KeyId, PublicKey};

use crate::output::{
    FirstRun, Logs, MAX_CHECKERS, MAX_OUTPUT_BYTES, MAX_RUNS_PER_DAY, MAX_SCHEMA_BYTES,
    MAX_SUBTASKS, MIN_K, MinCount, OutputRules, PathPattern, Release, Schema, Sourced,
};
use crate::rule::{
    ApprovedBy, Contract, Index, NotarySigners, Policy, RepositoryMatch, Rule, RuleId, RuleKind,
    SignedBy,
};

/// Key files by the key they hold, each key's files as the policy names them.
type KeyFiles = BTreeMap<KeyId, Vec<String>>;

/// The policy file format version this crate reads.
pub const SUPPORTED_VERSION: i64 = 1;
/// Largest policy file accepted, in bytes.
pub const MAX_POLICY_BYTES: u64 = 16 * 1024 * 1024;
/// Largest key file accepted, in bytes.
pub const MAX_KEY_BYTES: u64 = 64 * 1024;
/// Compiled size limit for all regexes of one kind together, in bytes.
const REGEX_SET_SIZE_LIMIT: usize = 256 * 1024 * 1024;

/// Why a policy was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {}: {source}; check the path and its permissions", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}:{line}:{column}: `{key}`: {message}")]
    Invalid {
        /// The policy file as named by the caller.
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// The key at fault, e.g. `allow[2].signed_by.threshold`.
        key: String,
        message: String,
    },
}

/// Why a file named by the policy (a schema) could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FileLoadError(pub String);

/// Why the key loader could not produce a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyLoadError(pub String);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: Spanned<i64>,
    #[serde(default)]
    allow: Vec<Spanned<RawRule>>,
    #[serde(default)]
    deny: Vec<Spanned<RawRule>>,
}

type SpannedList = Spanned<Vec<Spanned<String>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    repository: Option<Spanned<String>>,
    repository_regex: Option<Spanned<String>>,
    digests: Option<SpannedList>,
    signed_by: Option<Spanned<RawSignedBy>>,
    approved_by: Option<Spanned<RawApprovedBy>>,
    reproduced_by: Option<Spanned<RawReproducedBy>>,
    organizations: Option<SpannedList>,
    users: Option<SpannedList>,
    collaborations: Option<SpannedList>,
    functions: Option<SpannedList>,
    output: Option<Spanned<RawOutput>>,
    contract: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    max_bytes: Option<Spanned<i64>>,
    schema: Option<Spanned<String>>,
    min_count: Option<Spanned<RawMinCount>>,
    release: Option<Spanned<String>>,
    checkers: Option<Spanned<i64>>,
    max_subtasks: Option<Spanned<i64>>,
    runs_per_day: Option<Spanned<i64>>,
    first_run: Option<Spanned<String>>,
    logs: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMinCount {
    paths: SpannedList,
    k: Spanned<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignedBy {
    #[serde(default)]
    keys: Option<SpannedList>,
    #[serde(default)]
    notary: Option<Spanned<RawNotary>>,
    threshold: Spanned<i64>,
}

/// `signed_by.notary`: a trust store file and the identities it is trusted for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotary {
    trust_store: Spanned<String>,
    identities: SpannedList,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprovedBy {
    store: Spanned<String>,
    reviewers: SpannedList,
    min_approvals: Spanned<i64>,
    min_organizations: Spanned<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReproducedBy {
    keys: SpannedList,
    min: Spanned<i64>,
}

/// Most approvals or organizations an `approved_by` may ask for.
pub const MAX_APPROVALS: i64 = 100;

/// Whether a `reviewers` entry is a glob (`*`, `?` or `[` in it).
fn is_glob(entry: &str) -> bool {
    entry.contains(['*', '?', '['])
}

/// Whether `name` matches the glob `pattern` (`*` any run of characters, `?` one character;
/// no character classes).
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Expands a `reviewers` glob relative to `base`: the folder part is taken literally, the file
/// name part may hold `*` and `?`. Matches are returned as written (folder part + file name),
/// sorted; hidden files are skipped.
pub fn expand_glob(base: &Path, pattern: &str) -> Result<Vec<String>, KeyLoadError> {
    let (dir, file) = match pattern.rsplit_once('/') {
        Some((d, f)) => (Some(d), f),
        None => (None, pattern),
    };
    if dir.is_some_and(is_glob) {
        return Err(KeyLoadError(format!(
            "`{pattern}`: only the file name part of a reviewers glob may hold `*` or `?`, not a folder"
        )));
    }
    if file.contains('[') {
        return Err(KeyLoadError(format!(
            "`{pattern}`: character classes (`[...]`) are not supported in a reviewers glob; use `*` and `?`"
        )));
    }
    let folder = base.join(dir.unwrap_or("."));
    let entries = std::fs::read_dir(&folder).map_err(|e| {
        KeyLoadError(format!(
            "cannot list {} for `{pattern}`: {e}; the path is relative to the policy file",
            folder.display()
        ))
    })?;
    let mut out = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| KeyLoadError(format!("cannot list {}: {e}", folder.display())))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') || !glob_match(file, &name) {
            continue;
        }
        if !entry.path().is_file() {
            continue;
        }
        out.push(match dir {
            Some(d) => format!("{d}/{name}"),
            None => name,
        });
    }
    out.sort();
    if out.is_empty() {
        return Err(KeyLoadError(format!(
            "`{pattern}` matches no file in {}; the path is relative to the policy file",
            folder.display()
        )));
    }
    Ok(out)
}

/// Turns byte offsets into `line:column` and builds errors that name the file and key.
struct Locator<'a> {
    origin: &'a str,
    text: &'a str,
    /// Byte offset of the start of every line, for a binary search per lookup.
    line_starts: Vec<usize>,
}

impl<'a> Locator<'a> {
    fn new(origin: &'a str, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Locator {
            origin,
            text,
            line_starts,
        }
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        // Lines whose start is at or before the offset; the last of them holds it.
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self
            .line_starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let column = self
            .text
            .get(line_start..offset)
            .map_or(0, |s| s.chars().count())
            + 1;
        (line.max(1), column)
    }

    fn error(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> PolicyError {
        let (line, column) = self.line_col(span.start);
        PolicyError::Invalid {
            origin: self.origin.to_owned(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        }
    }

    /// Maps a TOML syntax or type error to the key it is about.
    fn toml_error(&self, e: &toml::de::Error) -> PolicyError {
        let span = e.span().unwrap_or(0..0);
        // serde names a missing field in its message; the key is the field under its table.
        let missing = e
            .message()
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(field, _)| field);
        let parent = if missing == Some("version") {
            None
        } else {
            key_at(self.text, span.start).or_else(|| key_on_line(self.text, span.start))
        };
        let key = match (parent, missing) {
            (Some(p), Some(m)) => format!("{p}.{m}"),
            (None, Some(m)) => m.to_owned(),
            (Some(p), None) => p,
            (None, None) => "(document)".to_owned(),
        };
        let message = e.message().trim().replace('\n', "; ");
        self.error(span, key, message)
    }
}

/// The dotted key path (`allow[2].signed_by.keys[1]`, arrays 1-based) of the innermost key or
/// value whose span holds `offset`, from a second, untyped parse of the text.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let table = toml::de::DeTable::parse(text).ok()?;
    walk_table(table.get_ref(), offset)
}

/// For a syntax error: the key or table header written on the line of `offset`.
fn key_on_line(text: &str, offset: usize) -> Option<String> {
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(start..)?.lines().next()?.trim();
    let key = if line.starts_with('[') {
        line.trim_matches(|c| c == '[' || c == ']').trim()
    } else {
        line.split_once('=')?.0.trim()
    };
    (!key.is_empty()).then(|| key.to_owned())
}

fn holds(span: &Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}

// The spans of tables and arrays of tables cover only their headers, so every child is searched.
fn walk_table(table: &toml::de::DeTable<'_>, offset: usize) -> Option<String> {
    for (key, value) in table.iter() {
        if holds(&key.span(), offset) {
            return Some(key.get_ref().to_string());
        }
        if let Some(sub) = walk_value(value.get_ref(), offset) {
            let sep = if sub.starts_with('[') { "" } else { "." };
            return Some(format!("{}{sep}{sub}", key.get_ref()));
        }
        if holds(&value.span(), offset) {
            return Some(key.get_ref().to_string());
        }
    }
    None
}

fn walk_value(value: &toml::de::DeValue<'_>, offset: usize) -> Option<String> {
    match value {
        toml::de::DeValue::Table(t) => walk_table(t, offset),
        toml::de::DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                if let Some(sub) = walk_value(item.get_ref(), offset) {
                    let sep = if sub.starts_with('[') { "" } else { "." };
                    return Some(format!("[{}]{sep}{sub}", i + 1));
                }
                if holds(&item.span(), offset) {
                    return Some(format!("[{}]", i + 1));
                }
            }
            None
        }
        _ => None,
    }
}

impl Policy {
    /// Reads and validates the policy at `path`, reading key files relative to the policy's
    /// folder. A node must refuse to start when this fails.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = read_capped(path, MAX_POLICY_BYTES).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let origin = path.display().to_string();
        Policy::from_toml_str_with_loaders(
            &text,
            &origin,
            |pattern| expand_glob(base, pattern),
            |key_file| {
                let key_path = base.join(key_file);
                let pem = read_capped(&key_path, MAX_KEY_BYTES).map_err(|e| {
                    KeyLoadError(format!(
                        "cannot read key file {}: {e}; the path is relative to the policy file",
                        key_path.display()
                    ))
                })?;
                PublicKey::from_pem(&pem)
                    .map_err(|e| KeyLoadError(format!("key file {}: {e}", key_path.display())))
            },
            schema_reader(base),
        )
    }

    /// Validates a policy from its text. `origin` names it in errors (usually the file name);
    /// `load_key` turns a `signed_by.keys` entry, exactly as written, into a public key.
    ///
    /// This caller reads no other files: a policy with an output `schema` is refused (use
    /// [`Policy::load`] or [`Policy::from_toml_str_with_files`]).
    pub fn from_toml_str(
        text: &str,
        origin: &str,
        load_key: impl FnMut(&str) -> Result<PublicKey, KeyLoadError>,
    ) -> Result<Policy, PolicyError> {
        Policy::from_toml_str_with_files(text, origin, load_key, |_| {
            Err(FileLoadError(
                "this policy is read without access to schema files; load it with `Policy::load` or `Policy::from_toml_str_with_files`".into(),
            ))
        })
    }

    /// As [`Policy::from_toml_str`]; `load_file` turns an output `schema` path, exactly as
    /// written, into the file's text (the caller resolves it relative to the policy file).
    pub fn from_toml_str_with_files(
        text: &str,
        origin: &str,
        load_key: impl FnMut(&str) -> Result<PublicKey, KeyLoadError>,
        load_file: impl FnMut(&str) -> Result<String, FileLoadError>,
    ) -> Result<Policy, PolicyError> {
        Policy::from_toml_str_with_loaders(
            text,
            origin,
            |pattern| {
                Err(KeyLoadError(format!(
                    "`{pattern}` is a glob and this policy is read without listing folders; load it with `Policy::load` or `Policy::from_toml_str_with_loaders`"
                )))
            },
            load_key,
            load_file,
        )
    }

    /// As [`Policy::from_toml_str_with_files`]; `expand` turns an `approved_by.reviewers` glob
    /// (an entry with `*` or `?`), exactly as written, into the key files it matches, as
    /// `load_key` then reads them (see [`Policy::load`]: relative to the policy file).
    pub fn from_toml_str_with_loaders(
        text: &str,
        origin: &str,
        mut expand: impl FnMut(&str) -> Result<Vec<String>, KeyLoadError>,
        mut load_key: impl FnMut(&str) -> Result<PublicKey, KeyLoadError>,
        mut load_file: impl FnMut(&str) -> Result<String, FileLoadError>,
    ) -> Result<Policy, PolicyError> {
        let loc = Locator::new(origin, text);
        let raw: RawPolicy = toml::from_str(text).map_err(|e| loc.toml_error(&e))?;
        if *raw.version.get_ref() != SUPPORTED_VERSION {
            return Err(loc.error(
                raw.version.span(),
                "version",
                format!(
                    "unsupported policy version {}; this Warden reads `version = {SUPPORTED_VERSION}`",
                    raw.version.get_ref()
                ),
            ));
        }
        let mut builder = Builder {
            loc: &loc,
            load_key: &mut load_key,
            load_file: &mut load_file,
            expand: &mut expand,
            key_cache: HashMap::new(),
        };
        let allow = raw
            .allow
            .into_iter()
            .enumerate()
            .map(|(i, r)| builder.rule(RuleKind::Allow, i + 1, r))
            .collect::<Result<Vec<_>, _>>()?;
        let deny = raw
            .deny
            .into_iter()
            .enumerate()
            .map(|(i, r)| builder.rule(RuleKind::Deny, i + 1, r))
            .collect::<Result<Vec<_>, _>>()?;
        let allow_index = build_index(&loc, RuleKind::Allow, &allow)?;
        let deny_index = build_index(&loc, RuleKind::Deny, &deny)?;
        Ok(Policy {
            origin: origin.to_owned(),
            allow,
            deny,
            allow_index,
            deny_index,
        })
    }
}

/// Reads schema files relative to `base`, capped at [`MAX_SCHEMA_BYTES`].
pub(crate) fn schema_reader(base: &Path) -> impl FnMut(&str) -> Result<String, FileLoadError> + '_ {
    move |file| {
        let path = base.join(file);
        read_capped(&path, MAX_SCHEMA_BYTES).map_err(|e| {
            FileLoadError(format!(
                "cannot read schema file {}: {e}; the path is relative to the policy file",
                path.display()
            ))
        })
    }
}

impl OutputRules {
    /// Reads a standalone output section (the keys of `[allow.output]` at the top level, e.g. a
    /// node's default section), named `name` in reasons and `origin` in errors. `load_file`
    /// reads `schema` as for [`Policy::from_toml_str_with_files`].
    pub fn from_toml_str(
        text: &str,
        origin: &str,
        name: &str,
        mut load_file: impl FnMut(&str) -> Result<String, FileLoadError>,
    ) -> Result<OutputRules, PolicyError> {
        let loc = Locator::new(origin, text);
        let raw: RawOutput = toml::from_str(text).map_err(|e| loc.toml_error(&e))?;
        output_rules(&loc, name, "", raw, &mut load_file)
    }
}

fn int_in<T: TryFrom<i64>>(
    loc: &Locator<'_>,
    value: &Spanned<i64>,
    key: &str,
    range: (i64, i64),
    what: &str,
) -> Result<T, PolicyError> {
    let v = *value.get_ref();
    if v < range.0 || v > range.1 {
        return Err(loc.error(
            value.span(),
            key,
            format!("{v} is out of range: {what} is {}..={}", range.0, range.1),
        ));
    }
    T::try_from(v).map_err(|_| loc.error(value.span(), key, format!("{v} is out of range")))
}

/// Validates an output section. `name` names the rule in reasons (`allow[1]`); `prefix` is put
/// before key names in errors (`allow[1].output.`, or empty for a standalone section).
fn output_rules(
    loc: &Locator<'_>,
    name: &str,
    prefix: &str,
    raw: RawOutput,
    load_file: &mut dyn FnMut(&str) -> Result<String, FileLoadError>,
) -> Result<OutputRules, PolicyError> {
    let key = |k: &str| format!("{prefix}{k}");
    let max_bytes = match &raw.max_bytes {
        None => None,
        Some(v) => Some(Sourced::new(
            int_in::<u64>(
                loc,
                v,
                &key("max_bytes"),
                (1, MAX_OUTPUT_BYTES as i64),
                "max_bytes (bytes, at most 256 MiB)",
            )?,
            name,
        )),
    };
    let mut schemas = Vec::new();
    if let Some(file) = &raw.schema {
        let k = key("schema");
        if file.get_ref().is_empty() {
            return Err(loc.error(
                file.span(),
                k,
                "the schema path is empty; name a JSON Schema file relative to the policy file",
            ));
        }
        let text = load_file(file.get_ref()).map_err(|e| loc.error(file.span(), &k, e.0))?;
        let source: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            loc.error(
                file.span(),
                &k,
                format!("schema file `{}` is not JSON: {e}", file.get_ref()),
            )
        })?;
        let schema = Schema::compile(name, file.get_ref(), source).map_err(|e| {
            loc.error(
                file.span(),
                &k,
                format!(
                    "schema file `{}` is not a valid JSON Schema: {e}",
                    file.get_ref()
                ),
            )
        })?;
        schemas.push(schema);
    }
    let min_count = match raw.min_count {
        None => None,
        Some(m) => {
            let m = m.into_inner();
            let k_key = key("min_count.k");
            let k = int_in::<u64>(loc, &m.k, &k_key, (MIN_K as i64, i64::MAX), "k")?;
            let paths_key = key("min_count.paths");
            if m.paths.get_ref().is_empty() {
                return Err(loc.error(
                    m.paths.span(),
                    paths_key,
                    "the list is empty, so nothing would be checked; list at least one path or remove min_count",
                ));
            }
            let mut paths = BTreeSet::new();
            for (i, p) in m.paths.into_inner().into_iter().enumerate() {
                let pattern = PathPattern::parse(p.get_ref())
                    .map_err(|e| loc.error(p.span(), format!("{paths_key}[{}]", i + 1), e))?;
                paths.insert(pattern);
            }
            Some(MinCount {
                paths,
                k,
                rules: BTreeSet::from([name.to_owned()]),
            })
        }
    };
    let manual = match &raw.release {
        None => false,
        Some(r) => match r.get_ref().as_str() {
            "automatic" => false,
            "manual" => true,
            other => {
                return Err(loc.error(
                    r.span(),
                    key("release"),
                    format!(
                        "release `{}` is not known; write \"automatic\" or \"manual\"",
                        other.escape_debug()
                    ),
                ));
            }
        },
    };
    let release = match (&raw.checkers, manual) {
        (Some(c), false) => {
            return Err(loc.error(
                c.span(),
                key("checkers"),
                "checkers apply only with release = \"manual\"; set it or remove checkers",
            ));
        }
        (Some(c), true) => Release::Manual {
            checkers: int_in(
                loc,
                c,
                &key("checkers"),
                (1, i64::from(MAX_CHECKERS)),
                "checkers",
            )?,
        },
        (None, true) => Release::Manual { checkers: 1 },
        (None, false) => Release::Automatic,
    };
    let max_subtasks = raw
        .max_subtasks
        .as_ref()
        .map(|v| {
            int_in(
                loc,
                v,
                &key("max_subtasks"),
                (0, i64::from(MAX_SUBTASKS)),
                "max_subtasks",
            )
        })
        .transpose()?;
    let runs_per_day = raw
        .runs_per_day
        .as_ref()
        .map(|v| {
            int_in(
                loc,
                v,
                &key("runs_per_day"),
                (1, i64::from(MAX_RUNS_PER_DAY)),
                "runs_per_day",
            )
        })
        .transpose()?;
    let first_run = match &raw.first_run {
        None => FirstRun::Run,
        Some(f) if f.get_ref() == "approve" => FirstRun::Approve,
        Some(f) => {
            return Err(loc.error(
                f.span(),
                key("first_run"),
                format!(
                    "first_run `{}` is not known; write \"approve\" or remove the key",
                    f.get_ref().escape_debug()
                ),
            ));
        }
    };
    let logs = match &raw.logs {
        None => None,
        Some(l) => {
            let value = match l.get_ref().as_str() {
                "withhold" => Logs::Withhold,
                "release" => Logs::Release,
                other => {
                    return Err(loc.error(
                        l.span(),
                        key("logs"),
                        format!(
                            "logs `{}` is not known; write \"withhold\" (the default) or \"release\"",
                            other.escape_debug()
                        ),
                    ));
                }
            };
            Some(Sourced::new(value, name))
        }
    };
    Ok(OutputRules {
        max_bytes,
        schemas,
        min_count,
        release,
        max_subtasks,
        runs_per_day,
        first_run,
        logs,
    })
}

fn read_capped(path: &Path, cap: u64) -> std::io::Result<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    file.take(cap + 1).read_to_string(&mut text)?;
    if text.len() as u64 > cap {
        return Err(std::io::Error::other(format!(
            "the file is larger than {cap} bytes"
        )));
    }
    Ok(text)
}

/// The regex as compiled: anchored at both ends of the whole repository.
pub(crate) fn anchored(source: &str) -> String {
    format!(r"\A(?:{source})\z")
}

/// Checks a rule regex on its own, then proves that its anchored form is `\A`, one group that
/// spans exactly the rule's regex, and `\z`: so every match is the whole repository.
fn check_regex(source: &str) -> Result<(), String> {
    use regex_syntax::ast::{AssertionKind, Ast, GroupKind};
    if source.is_empty() {
        return Err("the regex is empty; write the repository pattern, e.g. 'registry\\.example\\.org/team/.+'".into());
    }
    regex_syntax::Parser::new()
        .parse(source)
        .map_err(|e| format!("invalid regex: {}", e.to_string().replace('\n', " ")))?;
    let ast = regex_syntax::ast::parse::Parser::new()
        .parse(source)
        .map_err(|e| format!("invalid regex: {}", e.to_string().replace('\n', " ")))?;
    dead_literal(&ast, source.contains("(?i"))?;
    let wrapped = anchored(source);
    let cannot =
        "the regex cannot be anchored to the whole repository; remove inline `(?x)` comments";
    let ast = regex_syntax::ast::parse::Parser::new()
        .parse(&wrapped)
        .map_err(|_| cannot.to_owned())?;
    let Ast::Concat(concat) = &ast else {
        return Err(cannot.into());
    };
    let anchored_whole = match concat.asts.as_slice() {
        [
            Ast::Assertion(start),
            Ast::Group(group),
            Ast::Assertion(end),
        ] => {
            start.kind == AssertionKind::StartText
                && end.kind == AssertionKind::EndText
                && matches!(&group.kind, GroupKind::NonCapturing(flags) if flags.items.is_empty())
                && group.span.start.offset == 2
                && group.span.end.offset == wrapped.len() - 2
        }
        _ => false,
    };
    if anchored_whole {
        Ok(())
    } else {
        Err(cannot.into())
    }
}

/// Normalised repositories are lower-case ASCII, so a literal that is not could never match: in a
/// deny rule that would silently let everything through. Refuses non-ASCII literals (look-alikes
/// such as a Cyrillic `е`, also when escaped) and, unless the regex sets `(?i)`, upper case.
fn dead_literal(ast: &regex_syntax::ast::Ast, case_insensitive: bool) -> Result<(), String> {
    use regex_syntax::ast::Ast;
    match ast {
        Ast::Literal(lit) => {
            let c = lit.c;
            if !c.is_ascii() {
                return Err(format!(
                    "the regex has the non-ASCII character `{}` (U+{:04X}); repositories are ASCII only, so it could never match",
                    c.escape_debug(),
                    c as u32
                ));
            }
            if c.is_ascii_uppercase() && !case_insensitive {
                return Err(format!(
                    "the regex has the upper-case letter `{c}`; normalised repositories are lower case, so it could never match"
                ));
            }
            Ok(())
        }
        Ast::Repetition(r) => dead_literal(&r.ast, case_insensitive),
        Ast::Group(g) => dead_literal(&g.ast, case_insensitive),
        Ast::Alternation(a) => a
            .asts
            .iter()
            .try_for_each(|a| dead_literal(a, case_insensitive)),
        Ast::Concat(c) => c
            .asts
            .iter()
            .try_for_each(|a| dead_literal(a, case_insensitive)),
        _ => Ok(()),
    }
}

fn build_index(loc: &Locator<'_>, kind: RuleKind, rules: &[Rule]) -> Result<Index, PolicyError> {
    let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
    let mut patterns = Vec::new();
    let mut regex_rules = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        match &rule.repository {
            RepositoryMatch::Exact(r) => exact.entry(r.to_string()).or_default().push(i),
            RepositoryMatch::Regex { source } => {
                patterns.push(anchored(source));
                regex_rules.push(i);
            }
        }
    }
    let regex = RegexSetBuilder::new(&patterns)
        .size_limit(REGEX_SET_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            loc.error(
                0..0,
                kind.name(),
                format!(
                    "the {} rules' regexes together are too large to compile ({}); use fewer or simpler regexes",
                    kind.name(),
                    e.to_string().replace('\n', " ")
                ),
            )
        })?;
    Ok(Index::new(exact, regex, regex_rules))
}

struct Builder<'a, 'b, F, G, X> {
    loc: &'a Locator<'b>,
    load_key: &'a mut F,
    load_file: &'a mut G,
    expand: &'a mut X,
    /// Key file as written -> key id, so a file named by many rules is read once.
    key_cache: HashMap<String, KeyId>,
}

impl<F, G, X> Builder<'_, '_, F, G, X>
where
    F: FnMut(&str) -> Result<PublicKey, KeyLoadError>,
    G: FnMut(&str) -> Result<String, FileLoadError>,
    X: FnMut(&str) -> Result<Vec<String>, KeyLoadError>,
{
    fn rule(
        &mut self,
        kind: RuleKind,
        number: usize,
        raw: Spanned<RawRule>,
    ) -> Result<Rule, PolicyError> {
        let span = raw.span();
        // The span of an `[[allow]]` table is its header; of an inline table, the table.
        let (line, _) = self.loc.line_col(span.start);
        let id = RuleId { kind, number, line };
        let name = id.name();
        let raw = raw.into_inner();
        let repository = match (raw.repository, raw.repository_regex) {
            (Some(_), Some(re)) => {
                return Err(self.loc.error(
                    re.span(),
                    format!("{name}.repository_regex"),
                    "a rule sets exactly one of `repository` or `repository_regex`; remove one",
                ));
            }
            (None, None) => {
                return Err(self.loc.error(
                    span,
                    name,
                    "the rule names no repository; set `repository` or `repository_regex`",
                ));
            }
            (Some(r), None) => {
                let repo = Repository::parse(r.get_ref()).map_err(|e| {
                    self.loc.error(
                        r.span(),
                        format!("{name}.repository"),
                        format!("{e}; write a repository name without tag or digest, e.g. registry.example.org/team/average"),
                    )
                })?;
                RepositoryMatch::Exact(repo)
            }
            (None, Some(re)) => {
                check_regex(re.get_ref()).map_err(|m| {
                    self.loc
                        .error(re.span(), format!("{name}.repository_regex"), m)
                })?;
                RepositoryMatch::Regex {
                    source: re.into_inner(),
                }
            }
        };
        let digests = match raw.digests {
            None => None,
            Some(list) => {
                let key = format!("{name}.digests");
                let items = self.non_empty(list, &key)?;
                let mut set = BTreeSet::new();
                for (i, d) in items.into_iter().enumerate() {
                    let digest = Digest::parse(d.get_ref()).map_err(|e| {
                        self.loc.error(
                            d.span(),
                            format!("{key}[{}]", i + 1),
                            format!("{e}; write `sha256:<64 lower-case hex>` or `sha512:<128 lower-case hex>`"),
                        )
                    })?;
                    set.insert(digest);
                }
                Some(set)
            }
        };
        let signed_by = match raw.signed_by {
            None => None,
            Some(s) => Some(self.signed_by(&name, s)?),
        };
        let approved_by = match (raw.approved_by, kind) {
            (None, _) => None,
            (Some(a), RuleKind::Deny) => {
                return Err(self.loc.error(
                    a.span(),
                    format!("{name}.approved_by"),
                    "approved_by applies to allow rules only; to refuse an algorithm, revoke it in the store or name it in a deny rule by repository or digests",
                ));
            }
            (Some(a), RuleKind::Allow) => Some(self.approved_by(&name, a)?),
        };
        let reproduced_by = match (raw.reproduced_by, kind) {
            (None, _) => None,
            (Some(r), RuleKind::Deny) => {
                return Err(self.loc.error(
                    r.span(),
                    format!("{name}.reproduced_by"),
                    "reproduced_by applies to allow rules only; to refuse an image, name it in a deny rule by repository or digests",
                ));
            }
            (Some(r), RuleKind::Allow) => Some(self.reproduced_by(&name, r)?),
        };
        let organizations = self.names(raw.organizations, &format!("{name}.organizations"))?;
        let users = self.names(raw.users, &format!("{name}.users"))?;
        let collaborations = self.names(raw.collaborations, &format!("{name}.collaborations"))?;
        let functions = self.names(raw.functions, &format!("{name}.functions"))?;
        let output = match (raw.output, kind) {
            (None, _) => OutputRules::default(),
            (Some(o), RuleKind::Deny) => {
                return Err(self.loc.error(
                    o.span(),
                    format!("{name}.output"),
                    "output rules apply to allow rules only (a denied run has no output); move the table to an [[allow]] rule or remove it",
                ));
            }
            (Some(o), RuleKind::Allow) => output_rules(
                self.loc,
                &name,
                &format!("{name}.output."),
                o.into_inner(),
                self.load_file,
            )?,
        };
        let contract = match (raw.contract, kind) {
            (None, _) => Contract::Warden,
            (Some(c), RuleKind::Deny) => {
                return Err(self.loc.error(
                    c.span(),
                    format!("{name}.contract"),
                    "contract applies to allow rules only (a denied algorithm is not run); move it to an [[allow]] rule or remove it",
                ));
            }
            (Some(c), RuleKind::Allow) => Contract::parse(c.get_ref()).ok_or_else(|| {
                let known: Vec<&str> = Contract::ALL.iter().map(|c| c.name()).collect();
                self.loc.error(
                    c.span(),
                    format!("{name}.contract"),
                    format!(
                        "unknown contract `{}`; write one of {}",
                        c.get_ref(),
                        known.join(", ")
                    ),
                )
            })?,
        };
        Ok(Rule {
            id,
            repository,
            digests,
            signed_by,
            approved_by,
            reproduced_by,
            organizations,
            users,
            collaborations,
            functions,
            output,
            contract,
        })
    }

    /// The key files of a `keys` or `reviewers` list (each entry a path or a glob, relative to
    /// the policy file), read and grouped by key id, with the entries as written (deduplicated).
    /// `list_key` names the list in errors (`allow[1].approved_by.reviewers`).
    fn pinned_key_files(
        &mut self,
        entries: Vec<Spanned<String>>,
        list_key: &str,
    ) -> Result<(KeyFiles, Vec<String>), PolicyError> {
        let mut keys: BTreeMap<KeyId, Vec<String>> = BTreeMap::new();
        let mut patterns = Vec::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let entry_key = format!("{list_key}[{}]", i + 1);
            let files = if is_glob(entry.get_ref()) {
                (self.expand)(entry.get_ref())
                    .map_err(|e| self.loc.error(entry.span(), entry_key.clone(), e.0))?
            } else {
                vec![entry.get_ref().clone()]
            };
            for file in files {
                let id = self.key_id(&file, entry.span(), entry_key.clone())?;
                let names = keys.entry(id).or_default();
                if !names.contains(&file) {
                    names.push(file);
                }
            }
            if !patterns.contains(entry.get_ref()) {
                patterns.push(entry.into_inner());
            }
        }
        Ok((keys, patterns))
    }

    fn non_empty(&self, list: SpannedList, key: &str) -> Result<Vec<Spanned<String>>, PolicyError> {
        if list.get_ref().is_empty() {
            return Err(self.loc.error(
                list.span(),
                key,
                "the list is empty, so the condition could never hold; list at least one entry or remove the key",
            ));
        }
        Ok(list.into_inner())
    }

    fn names(
        &self,
        list: Option<SpannedList>,
        key: &str,
    ) -> Result<Option<BTreeSet<String>>, PolicyError> {
        let Some(list) = list else { return Ok(None) };
        let items = self.non_empty(list, key)?;
        let mut set = BTreeSet::new();
        for (i, item) in items.into_iter().enumerate() {
            let s = item.get_ref();
            let problem = if s.is_empty() {
                Some("an empty name never matches; remove it")
            } else if s.trim() != s {
                Some(
                    "the name has leading or trailing whitespace and would never match; names are compared exactly",
                )
            } else if s.chars().any(char::is_control) {
                Some("the name has a control character; names are compared exactly")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(self
                    .loc
                    .error(item.span(), format!("{key}[{}]", i + 1), problem));
            }
            set.insert(item.into_inner());
        }
        Ok(Some(set))
    }

    fn signed_by(
        &mut self,
        name: &str,
        raw: Spanned<RawSignedBy>,
    ) -> Result<SignedBy, PolicyError> {
        let key = format!("{name}.signed_by");
        let raw = raw.into_inner();
        let threshold_span = raw.threshold.span();
        let threshold = *raw.threshold.get_ref();
        let notary = match raw.notary {
            Some(n) => Some(self.notary_signers(&key, n)?),
            None => None,
        };
        let files = match raw.keys {
            Some(list) => self.non_empty(list, &format!("{key}.keys"))?,
            None if notary.is_some() => Vec::new(),
            None => {
                return Err(self.loc.error(
                    threshold_span,
                    key.clone(),
                    "signed_by names neither `keys` (cosign keys) nor `notary` (Notary Project identities), so it could never hold",
                ));
            }
        };
        let mut keys: BTreeMap<KeyId, Vec<String>> = BTreeMap::new();
        let mut in_order: Vec<String> = Vec::new();
        for (i, file) in files.into_iter().enumerate() {
            let id = match self.key_cache.get(file.get_ref()) {
                Some(id) => *id,
                None => {
                    let public = (self.load_key)(file.get_ref()).map_err(|e| {
                        self.loc
                            .error(file.span(), format!("{key}.keys[{}]", i + 1), e.0)
                    })?;
                    let id = public.id();
                    self.key_cache.insert(file.get_ref().clone(), id);
                    id
                }
            };
            let names = keys.entry(id).or_default();
            if !names.contains(file.get_ref()) {
                names.push(file.get_ref().clone());
                in_order.push(file.into_inner());
            }
        }
        if threshold < 1 {
            return Err(self.loc.error(
                threshold_span,
                format!("{key}.threshold"),
                format!("threshold {threshold} would accept unsigned images; set it to at least 1"),
            ));
        }
        let identities = notary.as_ref().map_or(0, |n| n.identities.len());
        let distinct = keys.len() + identities;
        let threshold = usize::try_from(threshold).unwrap_or(usize::MAX);
        if threshold > distinct && notary.is_some() {
            return Err(self.loc.error(
                threshold_span,
                format!("{key}.threshold"),
                format!(
                    "threshold {threshold} is above the {distinct} distinct signers listed ({} keys, {identities} Notary identities), so the rule could never hold; lower it or list more",
                    keys.len()
                ),
            ));
        }
        if threshold > distinct {
            let same: Vec<String> = keys
                .values()
                .filter(|v| v.len() > 1)
                .map(|v| v.join(" = "))
                .collect();
            let note = if same.is_empty() {
                String::new()
            } else {
                format!(
                    " (files holding the same key count once: {})",
                    same.join("; ")
                )
            };
            return Err(self.loc.error(
                threshold_span,
                format!("{key}.threshold"),
                format!(
                    "threshold {threshold} is above the {distinct} distinct keys listed{note}, so the rule could never hold; lower it or list more keys"
                ),
            ));
        }
        Ok(SignedBy {
            keys,
            files: in_order,
            notary,
            threshold,
        })
    }

    /// `signed_by.notary`: the trust store read through `load_file` (relative to the policy
    /// file) and parsed, the identities parsed; `*` only alone, no identity twice.
    fn notary_signers(
        &mut self,
        key: &str,
        raw: Spanned<RawNotary>,
    ) -> Result<NotarySigners, PolicyError> {
        let raw = raw.into_inner();
        let store_key = format!("{key}.notary.trust_store");
        let file = raw.trust_store;
        let text = (self.load_file)(file.get_ref()).map_err(|e| {
            let why = e.0.replace("schema file", "trust store file");
            self.loc.error(file.span(), store_key.clone(), why)
        })?;
        let trust_store = TrustStore::from_pem(&text).map_err(|e| {
            self.loc.error(
                file.span(),
                store_key.clone(),
                format!("trust store {}: {e}", file.get_ref()),
            )
        })?;
        let ids_key = format!("{key}.notary.identities");
        let items = self.non_empty(raw.identities, &ids_key)?;
        let many = items.len() > 1;
        let mut identities: Vec<Identity> = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let at = format!("{ids_key}[{}]", i + 1);
            let id = Identity::parse(item.get_ref())
                .map_err(|e| self.loc.error(item.span(), at.clone(), e.0))?;
            if id == Identity::Any && many {
                return Err(self.loc.error(
                    item.span(),
                    at,
                    "`*` trusts every identity the trust store anchors; it cannot be listed with others",
                ));
            }
            // The same attributes in another order are the same identity (a set comparison).
            let sorted = |i: &Identity| match i {
                Identity::Any => None,
                Identity::Subject(a) => {
                    let mut a = a.clone();
                    a.sort();
                    Some(a)
                }
            };
            if identities.iter().any(|known| sorted(known) == sorted(&id)) {
                return Err(self.loc.error(
                    item.span(),
                    at,
                    format!("identity `{id}` is listed twice; it would count once"),
                ));
            }
            identities.push(id);
        }
        Ok(NotarySigners {
            trust_store_file: file.into_inner(),
            trust_store,
            identities,
        })
    }

    /// Reads one key file (cached by the name as written) and returns its id.
    fn key_id(
        &mut self,
        file: &str,
        span: Range<usize>,
        key: String,
    ) -> Result<KeyId, PolicyError> {
        if let Some(id) = self.key_cache.get(file) {
            return Ok(*id);
        }
        let public = (self.load_key)(file).map_err(|e| self.loc.error(span, key, e.0))?;
        let id = public.id();
        self.key_cache.insert(file.to_owned(), id);
        Ok(id)
    }

    /// `reproduced_by = { keys = ["builders/*.pub"], min = 2 }`: key files (or globs) relative
    /// to the policy file, as `approved_by.reviewers` are.
    fn reproduced_by(
        &mut self,
        name: &str,
        raw: Spanned<RawReproducedBy>,
    ) -> Result<crate::reproduced::ReproducedBy, PolicyError> {
        let key = format!("{name}.reproduced_by");
        let raw = raw.into_inner();
        let entries = self.non_empty(raw.keys, &format!("{key}.keys"))?;
        let (keys, patterns) = self.pinned_key_files(entries, &format!("{key}.keys"))?;
        let min: usize = int_in(
            self.loc,
            &raw.min,
            &format!("{key}.min"),
            (1, MAX_APPROVALS),
            "min",
        )?;
        if min > keys.len() {
            return Err(self.loc.error(
                raw.min.span(),
                format!("{key}.min"),
                format!(
                    "min {min} is above the {} distinct builder keys listed (files holding the same key count once), so the rule could never hold; lower it or list more keys",
                    keys.len()
                ),
            ));
        }
        Ok(crate::reproduced::ReproducedBy {
            keys,
            patterns,
            min,
        })
    }

    fn approved_by(
        &mut self,
        name: &str,
        raw: Spanned<RawApprovedBy>,
    ) -> Result<ApprovedBy, PolicyError> {
        let key = format!("{name}.approved_by");
        let raw = raw.into_inner();
        let store = raw.store.get_ref();
        let store_ok = !store.is_empty()
            && store.len() <= 64
            && store
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
        if !store_ok {
            return Err(self.loc.error(
                raw.store.span(),
                format!("{key}.store"),
                "a store name is 1 to 64 of `a-z0-9-._`, as the node configuration's [[stores]] name it",
            ));
        }
        let entries = self.non_empty(raw.reviewers, &format!("{key}.reviewers"))?;
        let (reviewers, patterns) = self.pinned_key_files(entries, &format!("{key}.reviewers"))?;
        let min_approvals: usize = int_in(
            self.loc,
            &raw.min_approvals,
            &format!("{key}.min_approvals"),
            (1, MAX_APPROVALS),
            "min_approvals",
        )?;
        let min_organizations: usize = int_in(
            self.loc,
            &raw.min_organizations,
            &format!("{key}.min_organizations"),
            (1, MAX_APPROVALS),
            "min_organizations",
        )?;
        if min_organizations > min_approvals {
            return Err(self.loc.error(
                raw.min_organizations.span(),
                format!("{key}.min_organizations"),
                format!(
                    "min_organizations {min_organizations} is above min_approvals {min_approvals}; each approval comes from one organization, so set it to at most {min_approvals}"
                ),
            ));
        }
        if min_approvals > reviewers.len() {
            return Err(self.loc.error(
                raw.min_approvals.span(),
                format!("{key}.min_approvals"),
                format!(
                    "min_approvals {min_approvals} is above the {} distinct reviewer keys listed, so the rule could never hold; lower it or list more keys",
                    reviewers.len()
                ),
            ));
        }
        Ok(ApprovedBy {
            store: raw.store.into_inner(),
            reviewers,
            patterns,
            min_approvals,
            min_organizations,
        })
    }
}
