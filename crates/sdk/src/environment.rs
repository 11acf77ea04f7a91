//! The container's side of the contract: environment variables, the input file, the data mounts
//! and the output file.

use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Defaults when a variable is unset: the paths of docs/algorithm-contract.md.
pub const DEFAULT_INPUT_DIR: &str = "/mnt/input";
pub const DEFAULT_DATA_DIR: &str = "/mnt/data";
pub const DEFAULT_OUTPUT: &str = "/mnt/output/output";
pub const DEFAULT_PROXY_SOCKET: &str = "/mnt/proxy/proxy.sock";
/// The input file's name inside the input directory.
pub const INPUT_FILE: &str = "input";
/// Longest data source name.
pub const MAX_DATA_NAME_LEN: usize = 255;

pub const ENV_INPUT_DIR: &str = "WARDEN_INPUT_DIR";
pub const ENV_DATA_DIR: &str = "WARDEN_DATA_DIR";
pub const ENV_OUTPUT: &str = "WARDEN_OUTPUT";
pub const ENV_PROXY_SOCKET: &str = "WARDEN_PROXY_SOCKET";
pub const ENV_TOKEN: &str = "WARDEN_TOKEN";
pub const ENV_RUN_ID: &str = "WARDEN_RUN_ID";
pub const ENV_TASK_ID: &str = "WARDEN_TASK_ID";
pub const ENV_ORGANIZATION_ID: &str = "WARDEN_ORGANIZATION_ID";
pub const ENV_COLLABORATION_ID: &str = "WARDEN_COLLABORATION_ID";

/// What can go wrong with the environment, the input, the data or the output.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("environment variable {name} is not valid UTF-8; the node sets it, do not override it")]
    NotUnicode { name: &'static str },
    #[error(
        "environment variable {name}={value:?} is not a decimal ID; the node sets it, do not override it"
    )]
    BadId { name: &'static str, value: String },
    #[error("cannot read the input file {path}: {source}; the node mounts it at /mnt/input/input")]
    ReadInput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the input file {path} is not valid: {source}; it must be JSON \
         {{\"function\": \"<name>\", \"args\": <any JSON>}}"
    )]
    ParseInput {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the input names an empty function; set \"function\" to one this algorithm offers")]
    EmptyFunction,
    #[error(
        "data source name {0:?} is not valid: use the name from the node's configuration \
         (no slashes, not . or ..)"
    )]
    BadDataName(String),
    #[error("data source {name:?} is not mounted at {path}; this node offers: {available}")]
    NoSuchData {
        name: String,
        path: PathBuf,
        available: String,
    },
    #[error("cannot write the output {path}: {source}; is the output directory mounted writable?")]
    WriteOutput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serialise the output as JSON: {0}")]
    SerializeOutput(#[source] serde_json::Error),
}

/// The run's input: which function to call and its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub function: String,
    /// `null` when the input has no `args`.
    #[serde(default)]
    pub args: serde_json::Value,
}

impl Input {
    /// Parses the input file's bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Input, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Where things are, and which run this is: everything the node passes in the environment.
#[derive(Clone, PartialEq, Eq)]
pub struct Environment {
    pub input_dir: PathBuf,
    pub data_dir: PathBuf,
    pub output: PathBuf,
    pub proxy_socket: PathBuf,
    /// The run's proxy token; `None` when unset.
    pub token: Option<String>,
    pub run_id: Option<i64>,
    pub task_id: Option<i64>,
    pub organization_id: Option<i64>,
    pub collaboration_id: Option<i64>,
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Environment")
            .field("input_dir", &self.input_dir)
            .field("data_dir", &self.data_dir)
            .field("output", &self.output)
            .field("proxy_socket", &self.proxy_socket)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("run_id", &self.run_id)
            .field("task_id", &self.task_id)
            .field("organization_id", &self.organization_id)
            .field("collaboration_id", &self.collaboration_id)
            .finish()
    }
}

impl Default for Environment {
    /// The contract's paths, no token, no IDs.
    fn default() -> Self {
        Environment {
            input_dir: DEFAULT_INPUT_DIR.into(),
            data_dir: DEFAULT_DATA_DIR.into(),
            output: DEFAULT_OUTPUT.into(),
            proxy_socket: DEFAULT_PROXY_SOCKET.into(),
            token: None,
            run_id: None,
            task_id: None,
            organization_id: None,
            collaboration_id: None,
        }
    }
}

impl Environment {
    /// Reads the process environment; unset paths take the contract's defaults.
    pub fn from_process() -> Result<Environment, EnvError> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// Reads variables through `lookup` (the process environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Result<Environment, EnvError> {
        let text = |name: &'static str| -> Result<Option<String>, EnvError> {
            match lookup(name) {
                None => Ok(None),
                Some(v) => v
                    .into_string()
                    .map(Some)
                    .map_err(|_| EnvError::NotUnicode { name }),
            }
        };
        let path = |name: &'static str, default: &str| -> PathBuf {
            lookup(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(default))
        };
        let id = |name: &'static str| -> Result<Option<i64>, EnvError> {
            match text(name)? {
                None => Ok(None),
                Some(v) if v.is_empty() => Ok(None),
                Some(v) if v.bytes().all(|b| b.is_ascii_digit()) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| EnvError::BadId { name, value: v }),
                Some(v) => Err(EnvError::BadId { name, value: v }),
            }
        };
        Ok(Environment {
            input_dir: path(ENV_INPUT_DIR, DEFAULT_INPUT_DIR),
            data_dir: path(ENV_DATA_DIR, DEFAULT_DATA_DIR),
            output: path(ENV_OUTPUT, DEFAULT_OUTPUT),
            proxy_socket: path(ENV_PROXY_SOCKET, DEFAULT_PROXY_SOCKET),
            token: text(ENV_TOKEN)?.filter(|t| !t.is_empty()),
            run_id: id(ENV_RUN_ID)?,
            task_id: id(ENV_TASK_ID)?,
            organization_id: id(ENV_ORGANIZATION_ID)?,
            collaboration_id: id(ENV_COLLABORATION_ID)?,
        })
    }

    /// `$WARDEN_INPUT_DIR/input`.
    pub fn input_path(&self) -> PathBuf {
        self.input_dir.join(INPUT_FILE)
    }

    /// Reads and parses the input file.
    pub fn read_input(&self) -> Result<Input, EnvError> {
        let path = self.input_path();
        let bytes = std::fs::read(&path).map_err(|source| EnvError::ReadInput {
            path: path.clone(),
            source,
        })?;
        let input =
            Input::from_slice(&bytes).map_err(|source| EnvError::ParseInput { path, source })?;
        if input.function.is_empty() {
            return Err(EnvError::EmptyFunction);
        }
        Ok(input)
    }

    /// The path of data source `name` (a file or a directory), which must exist.
    pub fn data_path(&self, name: &str) -> Result<PathBuf, EnvError> {
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.len() > MAX_DATA_NAME_LEN
            || name.contains(['/', '\0'])
        {
            return Err(EnvError::BadDataName(name.to_owned()));
        }
        let path = self.data_dir.join(name);
        if std::fs::metadata(&path).is_ok() {
            return Ok(path);
        }
        Err(EnvError::NoSuchData {
            name: name.to_owned(),
            path,
            available: self.data_names().join(", "),
        })
    }

    /// The data sources mounted in the data directory, sorted (for error messages).
    pub fn data_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.data_dir)
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        if names.is_empty() {
            names.push("none".into());
        }
        names
    }

    /// Writes `bytes` as the run's output, atomically: a temporary file in the output directory,
    /// synced, then renamed over `$WARDEN_OUTPUT`.
    pub fn write_output(&self, bytes: &[u8]) -> Result<(), EnvError> {
        write_atomically(&self.output, bytes).map_err(|source| EnvError::WriteOutput {
            path: self.output.clone(),
            source,
        })
    }

    /// Writes `value` as JSON to the output.
    pub fn write_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), EnvError> {
        let bytes = serde_json::to_vec(value).map_err(EnvError::SerializeOutput)?;
        self.write_output(&bytes)
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the output path names no file"))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests;
