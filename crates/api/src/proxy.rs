//! The node's proxy as an algorithm sees it, over the Unix socket mounted into its container:
//! the three requests it offers and their bodies. The node serves them (crates/node/src/proxy.rs)
//! and the SDK calls them (crates/sdk); docs/algorithm-contract.md is the contract in prose.
//!
//! Errors travel as the server's [`crate::ErrorBody`].

use serde::{Deserialize, Serialize};

use crate::RunState;

/// `GET`: the collaboration's organizations.
pub const ORGANIZATIONS_PATH: &str = "/v1/organizations";
/// `POST` a [`NewSubtask`]; `GET {SUBTASKS_PATH}/{task_id}/results?wait=SECONDS` its results.
pub const SUBTASKS_PATH: &str = "/v1/subtasks";
/// Longest `?wait=` a results request may ask for, in seconds.
pub const MAX_WAIT_SECS: u64 = 60;

/// One organization of the collaboration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    pub id: i64,
    pub name: String,
}

/// The answer to `GET /v1/organizations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organizations {
    pub organizations: Vec<Organization>,
}

/// The body of `POST /v1/subtasks`: all an algorithm may say. There is no image field: a
/// subtask always runs the admitted digest of the run that creates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSubtask {
    pub function: String,
    #[serde(default)]
    pub args: serde_json::Value,
    pub organizations: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The answer to `POST /v1/subtasks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskCreated {
    pub task_id: i64,
}

/// One run of a subtask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskRun {
    pub organization_id: i64,
    pub state: RunState,
    /// Standard base64 of the result, opened by the node, for a completed run with a result.
    #[serde(default)]
    pub result: Option<String>,
    /// Why the run failed or was rejected.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The answer to `GET /v1/subtasks/{task_id}/results`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskResults {
    /// Every run is in a final state.
    pub complete: bool,
    pub runs: Vec<SubtaskRun>,
}
