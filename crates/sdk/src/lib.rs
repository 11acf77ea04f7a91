//! What a Rust algorithm links to: its input, its data, its output, and the node's proxy.
//!
//! The contract is docs/algorithm-contract.md. A typical algorithm is:
//!
//! ```no_run
//! use std::process::ExitCode;
//! use warden_sdk::{Algorithm, BoxError, Context, Output};
//!
//! #[derive(serde::Deserialize)]
//! struct Args { name: String }
//!
//! fn hello(_ctx: &Context, args: Args) -> Result<Output, BoxError> {
//!     Ok(serde_json::json!({ "greeting": format!("hello {}", args.name) }).into())
//! }
//!
//! fn main() -> ExitCode {
//!     Algorithm::new().function("hello", hello).main()
//! }
//! ```
//!
//! `main` reads `$WARDEN_INPUT_DIR/input`, calls the function it names with its `args`, writes
//! what the function returns to `$WARDEN_OUTPUT`, and on any failure prints the reason to stderr
//! (the node keeps the last lines of the log) and exits non-zero.
//!
//! Dependencies are kept tiny (serde, serde_json, thiserror, base64): algorithms are static
//! binaries in `FROM scratch` images. The proxy is spoken over the Unix socket with a small
//! HTTP/1.1 client of our own ([`http`]); there is no other network.

#![forbid(unsafe_code)]

pub mod environment;
pub mod http;
pub mod proxy;

#[cfg(test)]
mod testing;

use std::collections::BTreeMap;
use std::fmt;
use std::process::ExitCode;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use environment::{EnvError, Environment, Input};
pub use proxy::{
    NewSubtask, Organization, OrganizationId, Proxy, ProxyError, ResultError, RunState,
    SubtaskResult, SubtaskResults, TaskId,
};

/// The error type algorithm functions return: anything that is an error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a function produces; written to `$WARDEN_OUTPUT`.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// No output file (the node reads that as an empty result).
    Empty,
    Bytes(Vec<u8>),
    Json(serde_json::Value),
}

impl Output {
    /// Serialises `value` as a JSON output.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Output, serde_json::Error> {
        serde_json::to_value(value).map(Output::Json)
    }

    /// The bytes to write, `None` for [`Output::Empty`].
    pub fn to_bytes(&self) -> Result<Option<Vec<u8>>, serde_json::Error> {
        match self {
            Output::Empty => Ok(None),
            Output::Bytes(b) => Ok(Some(b.clone())),
            Output::Json(v) => serde_json::to_vec(v).map(Some),
        }
    }
}

impl From<serde_json::Value> for Output {
    fn from(v: serde_json::Value) -> Self {
        Output::Json(v)
    }
}

impl From<Vec<u8>> for Output {
    fn from(b: Vec<u8>) -> Self {
        Output::Bytes(b)
    }
}

impl From<()> for Output {
    fn from(_: ()) -> Self {
        Output::Empty
    }
}

/// What a function sees of its run: the environment (paths, IDs) and the proxy.
#[derive(Debug)]
pub struct Context {
    env: Environment,
    proxy: Option<Proxy>,
    proxy_problem: Option<String>,
}

impl Context {
    /// A context for `env`; the proxy client is built from its socket and token.
    pub fn new(env: Environment) -> Context {
        let (proxy, proxy_problem) = match &env.token {
            None => (
                None,
                Some(format!(
                    "{} is not set; the node sets it for each run",
                    environment::ENV_TOKEN
                )),
            ),
            Some(token) => match Proxy::new(env.proxy_socket.clone(), token) {
                Ok(p) => (Some(p), None),
                Err(e) => (None, Some(e.to_string())),
            },
        };
        Context {
            env,
            proxy,
            proxy_problem,
        }
    }

    /// Uses `proxy` instead of the one built from the environment.
    pub fn with_proxy(mut self, proxy: Proxy) -> Context {
        self.proxy = Some(proxy);
        self.proxy_problem = None;
        self
    }

    pub fn env(&self) -> &Environment {
        &self.env
    }

    /// The node's proxy, or why there is none (no token).
    pub fn proxy(&self) -> Result<&Proxy, ProxyError> {
        match &self.proxy {
            Some(p) => Ok(p),
            None => Err(ProxyError::Token(
                self.proxy_problem
                    .clone()
                    .unwrap_or_else(|| "no proxy".to_owned()),
            )),
        }
    }

    /// The path of data source `name` (see [`Environment::data_path`]).
    pub fn data_path(&self, name: &str) -> Result<std::path::PathBuf, EnvError> {
        self.env.data_path(name)
    }

    /// This node's organization, if the node said.
    pub fn organization_id(&self) -> Option<OrganizationId> {
        self.env.organization_id
    }
}

/// Why a run failed; printed to stderr by [`Algorithm::main`].
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("unknown function {name:?}: this algorithm offers {offered}; fix the task's input")]
    UnknownFunction { name: String, offered: String },
    #[error("invalid arguments for {function}: {source}; fix the task's input")]
    Args {
        function: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{function} failed: {source}")]
    Failed {
        function: String,
        #[source]
        source: BoxError,
    },
    #[error("cannot serialise the output of {function}: {source}")]
    Output {
        function: String,
        #[source]
        source: serde_json::Error,
    },
}

type Handler = Box<dyn Fn(&Context, serde_json::Value) -> Result<Output, RunError>>;

/// An algorithm: named functions, dispatched on the input's `function`.
#[derive(Default)]
pub struct Algorithm {
    functions: BTreeMap<String, Handler>,
}

impl fmt::Debug for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Algorithm")
            .field("functions", &self.functions.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Algorithm {
    pub fn new() -> Algorithm {
        Algorithm::default()
    }

    /// Registers `f` under `name`. Its arguments are the input's `args` deserialised as `A`
    /// (use `serde_json::Value` to take them as they are). A later registration of the same name
    /// replaces the earlier one.
    pub fn function<A, O, F>(mut self, name: &str, f: F) -> Algorithm
    where
        A: DeserializeOwned,
        O: Into<Output>,
        F: Fn(&Context, A) -> Result<O, BoxError> + 'static,
    {
        let function = name.to_owned();
        let handler = move |ctx: &Context, args: serde_json::Value| -> Result<Output, RunError> {
            let args: A = serde_json::from_value(args).map_err(|source| RunError::Args {
                function: function.clone(),
                source,
            })?;
            f(ctx, args)
                .map(Into::into)
                .map_err(|source| RunError::Failed {
                    function: function.clone(),
                    source,
                })
        };
        self.functions.insert(name.to_owned(), Box::new(handler));
        self
    }

    /// The registered function names, sorted.
    pub fn function_names(&self) -> Vec<&str> {
        self.functions.keys().map(String::as_str).collect()
    }

    /// Calls the function `input` names.
    pub fn call(&self, ctx: &Context, input: Input) -> Result<Output, RunError> {
        let Some(handler) = self.functions.get(&input.function) else {
            let offered = if self.functions.is_empty() {
                "no functions".to_owned()
            } else {
                self.function_names().join(", ")
            };
            return Err(RunError::UnknownFunction {
                name: input.function,
                offered,
            });
        };
        handler(ctx, input.args)
    }

    /// Reads the input of `ctx`, calls its function and writes the output.
    pub fn run_in(&self, ctx: &Context) -> Result<(), RunError> {
        let input = ctx.env.read_input()?;
        let function = input.function.clone();
        let output = self.call(ctx, input)?;
        write(ctx, &function, &output)
    }

    /// The whole of an algorithm's `main`: the environment from the process, [`Self::run_in`],
    /// errors to stderr, exit status 0 on success and 1 on failure.
    pub fn main(self) -> ExitCode {
        exit(
            Environment::from_process()
                .map_err(RunError::from)
                .and_then(|env| self.run_in(&Context::new(env))),
        )
    }
}

/// For algorithms that dispatch themselves: reads the input, calls `f` with it, writes what it
/// returns, prints failures to stderr and returns the exit status.
pub fn run<F>(f: F) -> ExitCode
where
    F: FnOnce(&Context, Input) -> Result<Output, BoxError>,
{
    exit(
        Environment::from_process()
            .map_err(RunError::from)
            .and_then(|env| run_with(&Context::new(env), f)),
    )
}

/// [`run`] with a given context, returning the error instead of printing it.
pub fn run_with<F>(ctx: &Context, f: F) -> Result<(), RunError>
where
    F: FnOnce(&Context, Input) -> Result<Output, BoxError>,
{
    let input = ctx.env.read_input()?;
    let function = input.function.clone();
    let output = f(ctx, input).map_err(|source| RunError::Failed {
        function: function.clone(),
        source,
    })?;
    write(ctx, &function, &output)
}

fn write(ctx: &Context, function: &str, output: &Output) -> Result<(), RunError> {
    let bytes = output.to_bytes().map_err(|source| RunError::Output {
        function: function.to_owned(),
        source,
    })?;
    if let Some(bytes) = bytes {
        ctx.env.write_output(&bytes)?;
    }
    Ok(())
}

fn exit(result: Result<(), RunError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping causes its message already contains.
pub fn report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests;
