//! Output rules of an allow rule (`[allow.output]`): what a node checks on a result before it is
//! released, and how it is released. The checks here are pure ([`OutputRules::check_result`],
//! [`OutputRules::check_size`]); the node enforces `release`, `checkers`, `max_subtasks`,
//! `runs_per_day` and `first_run` itself.
//!
//! A reason ([`OutputViolation`]) goes to the server, so it never quotes result values: it names
//! the rule, the check and what the policy wrote (a path pattern, `k`, a schema keyword), never
//! what the result holds.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

/// Largest `max_bytes`: 256 MiB.
pub const MAX_OUTPUT_BYTES: u64 = 256 * 1024 * 1024;
/// Largest `checkers`.
pub const MAX_CHECKERS: u32 = 10;
/// Largest `max_subtasks`.
pub const MAX_SUBTASKS: u32 = 10_000;
/// Largest `runs_per_day`.
pub const MAX_RUNS_PER_DAY: u32 = 1_000_000;
/// Smallest `min_count.k`: with `k = 1` every count would pass.
pub const MIN_K: u64 = 2;
/// Largest schema file accepted, in bytes.
pub const MAX_SCHEMA_BYTES: u64 = 1024 * 1024;
/// Most segments in one `min_count` path.
pub const MAX_PATH_SEGMENTS: usize = 64;

/// How a result that passed the checks is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Release {
    /// As soon as it passes the checks (the default).
    #[default]
    Automatic,
    /// Only once `checkers` different local users of the node released it.
    Manual { checkers: u32 },
}

impl Release {
    /// How many different local users must release a result: 0 for automatic release.
    pub fn checkers(self) -> u32 {
        match self {
            Release::Automatic => 0,
            Release::Manual { checkers } => checkers,
        }
    }
}

/// What happens to what a run's algorithm printed (its stdout and stderr, captured by the node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Logs {
    /// Kept at the node for the data owner (the default when no rule sets the key).
    Withhold,
    /// Sealed for the requester like a result, under the same release rules.
    Release,
}

impl Logs {
    /// The key's value as the policy writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Logs::Withhold => "withhold",
            Logs::Release => "release",
        }
    }
}

/// What happens the first time the node is asked to run a digest it never ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum FirstRun {
    /// It runs like any other (the default: the key is absent).
    #[default]
    Run,
    /// It waits, once per digest, for the data owner's approval.
    Approve,
}

/// A limit together with the rules that set it (`allow[1]`, or the node's default section): two
/// sources when both set the same value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sourced<T> {
    pub value: T,
    pub rules: BTreeSet<String>,
}

impl<T> Sourced<T> {
    pub fn new(value: T, rule: impl Into<String>) -> Self {
        Sourced {
            value,
            rules: BTreeSet::from([rule.into()]),
        }
    }
}

/// Rule names as a reason shows them: `allow[1]`, `allow[1] and default`.
struct Names<'a>(&'a BTreeSet<String>);

impl fmt::Display for Names<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(String::as_str).collect();
        f.write_str(&names.join(" and "))
    }
}

fn names(rules: &BTreeSet<String>) -> String {
    Names(rules).to_string()
}

/// One segment of a `min_count` path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Segment {
    /// `*`: every key of an object, every element of an array.
    Any,
    /// A key of an object, or (when it is a decimal index) an element of an array.
    Key(String),
}

/// A `min_count` path as written (`counts.*`), parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathPattern {
    text: String,
    segments: Vec<Segment>,
}

impl PathPattern {
    /// Parses a dotted path: segments separated by `.`, each `*` or a non-empty key without `.`
    /// and `*`. The error says what is wrong.
    pub fn parse(text: &str) -> Result<PathPattern, String> {
        if text.is_empty() {
            return Err("the path is empty; write a dotted path such as `counts.*`".into());
        }
        let mut segments = Vec::new();
        for seg in text.split('.') {
            if seg.is_empty() {
                return Err(format!(
                    "the path `{}` has an empty segment (a leading, trailing or doubled `.`)",
                    text.escape_debug()
                ));
            }
            if seg == "*" {
                segments.push(Segment::Any);
            } else if seg.contains('*') {
                return Err(format!(
                    "the segment `{}` mixes `*` with other characters; `*` stands alone for every key or element",
                    seg.escape_debug()
                ));
            } else if seg.chars().any(char::is_control) {
                return Err("the path has a control character".into());
            } else {
                segments.push(Segment::Key(seg.to_owned()));
            }
        }
        if segments.len() > MAX_PATH_SEGMENTS {
            return Err(format!(
                "the path has {} segments; at most {MAX_PATH_SEGMENTS} are allowed",
                segments.len()
            ));
        }
        Ok(PathPattern {
            text: text.to_owned(),
            segments,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Calls `f` on every value the path selects, until `f` returns false; false if it did.
    fn each<'v>(&self, value: &'v Value, f: &mut impl FnMut(&'v Value) -> bool) -> bool {
        select(value, &self.segments, f)
    }
}

fn select<'v>(
    value: &'v Value,
    segments: &[Segment],
    f: &mut impl FnMut(&'v Value) -> bool,
) -> bool {
    let Some((first, rest)) = segments.split_first() else {
        return f(value);
    };
    match (first, value) {
        (Segment::Any, Value::Object(map)) => map.values().all(|v| select(v, rest, f)),
        (Segment::Any, Value::Array(items)) => items.iter().all(|v| select(v, rest, f)),
        (Segment::Key(k), Value::Object(map)) => map.get(k).is_none_or(|v| select(v, rest, f)),
        (Segment::Key(k), Value::Array(items)) => index(k)
            .and_then(|i| items.get(i))
            .is_none_or(|v| select(v, rest, f)),
        // A path that runs into a scalar selects nothing there.
        _ => true,
    }
}

/// A decimal array index without leading zeros.
fn index(key: &str) -> Option<usize> {
    if key.len() > 1 && key.starts_with('0') {
        return None;
    }
    if !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    key.parse().ok()
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The small-cell check: every number a path selects is 0 or at least `k`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MinCount {
    pub paths: BTreeSet<PathPattern>,
    pub k: u64,
    /// The rules whose `min_count` this is (both, after [`OutputRules::stricter`]).
    pub rules: BTreeSet<String>,
}

/// A JSON Schema compiled at load, with the rule that names it.
#[derive(Clone)]
pub struct Schema {
    rule: String,
    file: String,
    compiled: Arc<Compiled>,
}

struct Compiled {
    source: Value,
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

/// The URL a schema is compiled under. No loader is registered for it, so a `$ref` to another
/// document is refused at load instead of being read or fetched.
const SCHEMA_URL: &str = "urn:warden:output-schema";

/// Refuses every `$ref` to a document outside the schema (boon reads `file:` URLs by default).
struct NoLoader;

impl boon::UrlLoader for NoLoader {
    fn load(&self, url: &str) -> Result<Value, Box<dyn std::error::Error>> {
        Err(format!(
            "the schema refers to {url}; output schemas must be self-contained (use `$defs`)"
        )
        .into())
    }
}

impl Schema {
    /// Compiles a schema document (draft 2020-12 unless its `$schema` names another draft).
    /// `rule` and `file` name it in reasons. A `$ref` outside the document is refused.
    pub fn compile(rule: &str, file: &str, source: Value) -> Result<Schema, String> {
        let mut compiler = boon::Compiler::new();
        compiler.set_default_draft(boon::Draft::V2020_12);
        compiler.register_url_loader("file", Box::new(NoLoader));
        compiler.register_url_loader("http", Box::new(NoLoader));
        compiler.register_url_loader("https", Box::new(NoLoader));
        compiler.register_url_loader("urn", Box::new(NoLoader));
        let mut schemas = boon::Schemas::new();
        compiler
            .add_resource(SCHEMA_URL, source.clone())
            .map_err(|e| format!("{e:#}").replace('\n', " "))?;
        let index = compiler
            .compile(SCHEMA_URL, &mut schemas)
            .map_err(|e| format!("{e:#}").replace('\n', " "))?;
        Ok(Schema {
            rule: rule.to_owned(),
            file: file.to_owned(),
            compiled: Arc::new(Compiled {
                source,
                schemas,
                index,
            }),
        })
    }

    /// The rule that names this schema.
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// The schema file as the policy wrote it.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The schema document.
    pub fn source(&self) -> &Value {
        &self.compiled.source
    }

    /// Validates `value`; on failure, the failing keyword's location in the schema (never a
    /// value of the result).
    fn validate(&self, value: &Value) -> Result<(), String> {
        let c = &self.compiled;
        if !c.schemas.contains(c.index) {
            return Err("(the schema is not compiled)".into());
        }
        match c.schemas.validate(value, c.index) {
            Ok(()) => Ok(()),
            Err(e) => {
                let mut leaf = &e;
                while let Some(first) = leaf.causes.first() {
                    leaf = first;
                }
                let base = leaf
                    .schema_url
                    .split_once('#')
                    .map_or("", |(_, fragment)| fragment);
                let keyword = leaf
                    .kind
                    .keyword_path()
                    .map(|k| format!("/{}", k.keyword))
                    .unwrap_or_default();
                let location = format!("{base}{keyword}");
                Err(if location.is_empty() {
                    "/".to_owned()
                } else {
                    location
                })
            }
        }
    }
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schema")
            .field("rule", &self.rule)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        self.rule == other.rule && self.file == other.file && self.source() == other.source()
    }
}

impl Eq for Schema {}

/// The output rules of an allow rule, or the node's default section, or the stricter of both.
/// `Default` restricts nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutputRules {
    /// A result (and released logs) larger than this is withheld and the run fails.
    pub max_bytes: Option<Sourced<u64>>,
    /// Every one of these schemas must hold, in order of (rule, file).
    pub schemas: Vec<Schema>,
    pub min_count: Option<MinCount>,
    pub release: Release,
    pub max_subtasks: Option<u32>,
    /// Per requesting organization, for this rule, counted at the node.
    pub runs_per_day: Option<u32>,
    pub first_run: FirstRun,
    /// `logs`, with the rules that set it; absent means withheld.
    pub logs: Option<Sourced<Logs>>,
}

/// Why a result is withheld. Its text goes to the server: it names the rule and the check, and
/// never quotes the result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputViolation {
    #[error(
        "the output is larger than max_bytes = {limit} of {}; it is withheld",
        names(rules)
    )]
    TooLarge { limit: u64, rules: BTreeSet<String> },
    #[error(
        "the result is not JSON (line {line}, column {column}); {checks} of {} can only check JSON; it is withheld",
        names(rules)
    )]
    NotJson {
        line: usize,
        column: usize,
        /// `schema`, `min_count` or `schema and min_count`.
        checks: String,
        rules: BTreeSet<String>,
    },
    #[error(
        "the result does not validate against schema `{file}` of {rule} (keyword `{keyword}` fails); it is withheld"
    )]
    Schema {
        rule: String,
        file: String,
        /// The failing keyword's location in the schema, e.g. `/properties/n/minimum`.
        keyword: String,
    },
    #[error(
        "a count at `{path}` is below k = {k} (min_count of {}); it is withheld",
        names(rules)
    )]
    SmallCount {
        path: String,
        k: u64,
        rules: BTreeSet<String>,
    },
    #[error(
        "a value at `{path}` is not a number, so min_count of {} (k = {k}) cannot check it; it is withheld",
        names(rules)
    )]
    NotANumber {
        path: String,
        k: u64,
        rules: BTreeSet<String>,
    },
}

/// Whether a count passes: 0 or at least `k`.
fn count_ok(n: &serde_json::Number, k: u64) -> bool {
    if let Some(u) = n.as_u64() {
        u == 0 || u >= k
    } else if n.is_i64() {
        false
    } else {
        n.as_f64().is_some_and(|f| f == 0.0 || f >= k as f64)
    }
}

fn smaller<T: Ord + Clone>(a: &Option<Sourced<T>>, b: &Option<Sourced<T>>) -> Option<Sourced<T>> {
    match (a, b) {
        (None, x) | (x, None) => x.clone(),
        (Some(a), Some(b)) => Some(match a.value.cmp(&b.value) {
            std::cmp::Ordering::Less => a.clone(),
            std::cmp::Ordering::Greater => b.clone(),
            std::cmp::Ordering::Equal => Sourced {
                value: a.value.clone(),
                rules: a.rules.union(&b.rules).cloned().collect(),
            },
        }),
    }
}

/// The stricter `logs`: `withhold` wins; a side that does not set the key leaves the other's.
fn stricter_logs(a: &Option<Sourced<Logs>>, b: &Option<Sourced<Logs>>) -> Option<Sourced<Logs>> {
    smaller(a, b)
}

fn smaller_plain(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl OutputRules {
    /// Whether these rules restrict nothing (no key was set).
    pub fn is_unrestricted(&self) -> bool {
        *self == OutputRules::default()
    }

    /// The stricter of `self` and `other`, key by key: the smaller `max_bytes`, `max_subtasks`
    /// and `runs_per_day`; every schema of both; `min_count` on the union of the paths with the
    /// larger `k`; manual release over automatic, with the larger `checkers`; `approve` over
    /// absent; `logs = "withhold"` over `"release"` (a side without the key leaves the other's).
    /// Commutative, and never looser than either side.
    pub fn stricter(&self, other: &OutputRules) -> OutputRules {
        let mut schemas: Vec<Schema> = self.schemas.iter().chain(&other.schemas).cloned().collect();
        schemas.sort_by(|a, b| (&a.rule, &a.file).cmp(&(&b.rule, &b.file)));
        schemas.dedup();
        let min_count = match (&self.min_count, &other.min_count) {
            (None, x) | (x, None) => x.clone(),
            (Some(a), Some(b)) => Some(MinCount {
                paths: a.paths.union(&b.paths).cloned().collect(),
                k: a.k.max(b.k),
                rules: a.rules.union(&b.rules).cloned().collect(),
            }),
        };
        let release = match (self.release, other.release) {
            (Release::Automatic, Release::Automatic) => Release::Automatic,
            (a, b) => Release::Manual {
                checkers: a.checkers().max(b.checkers()).max(1),
            },
        };
        OutputRules {
            max_bytes: smaller(&self.max_bytes, &other.max_bytes),
            schemas,
            min_count,
            release,
            max_subtasks: smaller_plain(self.max_subtasks, other.max_subtasks),
            runs_per_day: smaller_plain(self.runs_per_day, other.runs_per_day),
            first_run: self.first_run.max(other.first_run),
            logs: stricter_logs(&self.logs, &other.logs),
        }
    }

    /// Whether a run's logs may be released (sealed for the requester): only when some rule
    /// says `logs = "release"` and none says `"withhold"`.
    pub fn releases_logs(&self) -> bool {
        matches!(&self.logs, Some(l) if l.value == Logs::Release)
    }

    /// Why logs are withheld, for the audit log: which rule withholds them, or that no rule
    /// releases them. `None` when they are released.
    pub fn logs_withheld_because(&self) -> Option<String> {
        match &self.logs {
            Some(l) if l.value == Logs::Release => None,
            Some(l) => Some(format!(
                "logs = \"withhold\" of {}; the logs stay at the node",
                names(&l.rules)
            )),
            None => Some(
                "no rule sets logs = \"release\" (withhold is the default); the logs stay at the node"
                    .into(),
            ),
        }
    }

    /// The result as JSON, or why it is not (the place of the first error, never its bytes).
    fn parse(&self, bytes: &[u8]) -> Result<Value, OutputViolation> {
        let parsed: Result<Value, _> = serde_json::from_slice(bytes);
        parsed.map_err(|e| {
            let mut rules: BTreeSet<String> = self.schemas.iter().map(|s| s.rule.clone()).collect();
            if let Some(m) = &self.min_count {
                rules.extend(m.rules.iter().cloned());
            }
            let checks = match (self.schemas.is_empty(), self.min_count.is_some()) {
                (false, true) => "schema and min_count",
                (false, false) => "schema",
                (true, _) => "min_count",
            };
            OutputViolation::NotJson {
                line: e.line(),
                column: e.column(),
                checks: checks.to_owned(),
                rules,
            }
        })
    }

    /// `max_bytes` alone, for output the node measures without reading it (released logs, an
    /// output directory).
    pub fn check_size(&self, len: u64) -> Result<(), OutputViolation> {
        match &self.max_bytes {
            Some(limit) if len > limit.value => Err(OutputViolation::TooLarge {
                limit: limit.value,
                rules: limit.rules.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Checks a result: `max_bytes`, then (when a schema or `min_count` is set, which need the
    /// result to be JSON) every schema, then `min_count`. Pure; the first violation found.
    pub fn check_result(&self, bytes: &[u8]) -> Result<(), OutputViolation> {
        self.check_size(u64::try_from(bytes.len()).unwrap_or(u64::MAX))?;
        if self.schemas.is_empty() && self.min_count.is_none() {
            return Ok(());
        }
        let value = self.parse(bytes)?;
        for schema in &self.schemas {
            schema
                .validate(&value)
                .map_err(|keyword| OutputViolation::Schema {
                    rule: schema.rule.clone(),
                    file: schema.file.clone(),
                    keyword,
                })?;
        }
        if let Some(m) = &self.min_count {
            for path in &m.paths {
                let mut bad = None;
                path.each(&value, &mut |v| match v {
                    Value::Number(n) if count_ok(n, m.k) => true,
                    Value::Number(_) => {
                        bad = Some(false);
                        false
                    }
                    _ => {
                        bad = Some(true);
                        false
                    }
                });
                match bad {
                    None => {}
                    Some(not_a_number) => {
                        let (path, k, rules) = (path.text.clone(), m.k, m.rules.clone());
                        return Err(if not_a_number {
                            OutputViolation::NotANumber { path, k, rules }
                        } else {
                            OutputViolation::SmallCount { path, k, rules }
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for OutputRules {
    /// `max_bytes 65536; schema schemas/mean.json; ...`, or `none (release automatic)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unrestricted() {
            return f.write_str("none (release automatic)");
        }
        let mut parts = Vec::new();
        if let Some(m) = &self.max_bytes {
            parts.push(format!("max_bytes {}", m.value));
        }
        for s in &self.schemas {
            parts.push(format!("schema {}", s.file));
        }
        if let Some(m) = &self.min_count {
            let paths: Vec<&str> = m.paths.iter().map(PathPattern::as_str).collect();
            parts.push(format!("min_count k = {} at {}", m.k, paths.join(", ")));
        }
        match self.release {
            Release::Automatic => parts.push("release automatic".into()),
            Release::Manual { checkers } => parts.push(format!(
                "release manual by {checkers} checker{}",
                if checkers == 1 { "" } else { "s" }
            )),
        }
        if let Some(n) = self.max_subtasks {
            parts.push(format!("max_subtasks {n}"));
        }
        if let Some(n) = self.runs_per_day {
            parts.push(format!("runs_per_day {n}"));
        }
        if self.first_run == FirstRun::Approve {
            parts.push("first_run approve".into());
        }
        if let Some(l) = &self.logs {
            parts.push(format!("logs {}", l.value.as_str()));
        }
        f.write_str(&parts.join("; "))
    }
}
