//! Example Warden algorithm: the federated mean and count of a column of a CSV data file.
//!
//! Functions (the input's `function`):
//!
//! - `partial_mean` `{"column": "age", "data": "records"}`: at one organization, reads
//!   `/mnt/data/<data>` (a CSV file, or a directory holding `data.csv`) and returns
//!   `{"sum": f64, "count": u64, "skipped": u64}` for the column.
//! - `central_mean` `{"column", "data", "organizations": [optional ids], "timeout_seconds":
//!   optional}`: creates one `partial_mean` subtask at every organization of the collaboration (or
//!   the listed ones), waits for all of them, and returns `{"mean", "count", "organizations"}`.
//!   Any failed or rejected subtask fails the whole function, naming the organization and reason.
//! - `count` `{"data": "records"}`: `{"count": rows}`, header excluded.

#![forbid(unsafe_code)]

pub mod stats;
pub mod table;

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use warden_sdk::{
    Algorithm, BoxError, Context, Organization, OrganizationId, Output, SubtaskResult,
};

use crate::stats::{CombineError, Mean, combine};
use crate::table::ColumnStats;

/// How long `central_mean` waits for its subtasks unless `timeout_seconds` says otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(1800);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialArgs {
    pub column: String,
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CentralArgs {
    pub column: String,
    pub data: String,
    /// Only these organizations; all of the collaboration's when absent.
    #[serde(default)]
    pub organizations: Option<Vec<OrganizationId>>,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountArgs {
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CentralError {
    #[error("\"organizations\" is empty; list at least one organization or leave it out for all")]
    NoOrganizations,
    #[error("organization {0} is listed twice in \"organizations\"")]
    DuplicateOrganization(OrganizationId),
    #[error("organization {id} is not in the collaboration; its organizations are: {known}")]
    UnknownOrganization { id: OrganizationId, known: String },
    #[error("the partial means did not all arrive: {}", .0.join("; "))]
    Subtasks(Vec<String>),
    #[error(transparent)]
    Combine(#[from] CombineError),
}

/// The algorithm with its three functions.
pub fn algorithm() -> Algorithm {
    Algorithm::new()
        .function("partial_mean", partial_mean)
        .function("central_mean", central_mean)
        .function("count", count)
}

fn partial_mean(ctx: &Context, args: PartialArgs) -> Result<Output, BoxError> {
    let file = table::table_file(&ctx.data_path(&args.data)?)?;
    let stats = table::column_stats_file(&file, &args.column)?;
    eprintln!(
        "partial_mean: column {:?} of {:?}: {} values, {} skipped",
        args.column, args.data, stats.count, stats.skipped
    );
    Ok(Output::json(&stats)?)
}

fn count(ctx: &Context, args: CountArgs) -> Result<Output, BoxError> {
    let file = table::table_file(&ctx.data_path(&args.data)?)?;
    let rows = table::count_rows_file(&file)?;
    Ok(json!({ "count": rows }).into())
}

fn central_mean(ctx: &Context, args: CentralArgs) -> Result<Output, BoxError> {
    let proxy = ctx.proxy()?;
    let collaboration = proxy.organizations()?;
    let targets = select(&collaboration, args.organizations.as_deref())?;
    let ids: Vec<OrganizationId> = targets.iter().map(|o| o.id).collect();
    let partial = PartialArgs {
        column: args.column,
        data: args.data,
    };
    let task = proxy.create_subtask("partial_mean", &serde_json::to_value(&partial)?, &ids)?;
    eprintln!("central_mean: subtask {task} at organizations {ids:?}");
    let wait = args
        .timeout_seconds
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_WAIT);
    let runs = proxy.wait_results(task, wait)?;
    let mean = gather(&targets, &runs)?;
    Ok(Output::json(&mean)?)
}

/// The organizations to ask: all of the collaboration's, or the listed ones (each must be in it).
pub fn select(
    collaboration: &[Organization],
    listed: Option<&[OrganizationId]>,
) -> Result<Vec<Organization>, CentralError> {
    let Some(listed) = listed else {
        if collaboration.is_empty() {
            return Err(CentralError::NoOrganizations);
        }
        return Ok(collaboration.to_vec());
    };
    if listed.is_empty() {
        return Err(CentralError::NoOrganizations);
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(listed.len());
    for &id in listed {
        if !seen.insert(id) {
            return Err(CentralError::DuplicateOrganization(id));
        }
        let org = collaboration.iter().find(|o| o.id == id).ok_or_else(|| {
            CentralError::UnknownOrganization {
                id,
                known: describe(collaboration),
            }
        })?;
        out.push(org.clone());
    }
    Ok(out)
}

fn describe(orgs: &[Organization]) -> String {
    if orgs.is_empty() {
        return "none".into();
    }
    orgs.iter()
        .map(|o| format!("{} ({})", o.id, o.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Takes exactly one completed partial from each target and combines them. Every problem is
/// named with its organization: a failed or rejected run (with its reason), a missing run, a
/// result that is not a partial mean, a run from an organization that was not asked.
pub fn gather(targets: &[Organization], runs: &[SubtaskResult]) -> Result<Mean, CentralError> {
    let mut problems = Vec::new();
    let mut partials = Vec::with_capacity(targets.len());
    for org in targets {
        let mine: Vec<&SubtaskResult> = runs
            .iter()
            .filter(|r| r.organization_id == org.id)
            .collect();
        let who = format!("organization {} ({})", org.id, org.name);
        match mine.as_slice() {
            [] => problems.push(format!("{who}: no run was reported")),
            [run] => match run.json::<ColumnStats>() {
                Ok(p) => partials.push(p),
                Err(e) => problems.push(format!("{who}: {}", run_problem(run, &e))),
            },
            _ => problems.push(format!(
                "{who}: {} runs were reported, expected one",
                mine.len()
            )),
        }
    }
    for run in runs {
        if !targets.iter().any(|o| o.id == run.organization_id) {
            problems.push(format!(
                "organization {}: a run was reported but the subtask was not sent there",
                run.organization_id
            ));
        }
    }
    if !problems.is_empty() {
        return Err(CentralError::Subtasks(problems));
    }
    Ok(combine(&partials)?)
}

fn run_problem(run: &SubtaskResult, e: &warden_sdk::ResultError) -> String {
    match e {
        warden_sdk::ResultError::NotCompleted { .. } => format!(
            "{}: {}",
            run.state,
            run.reason.as_deref().unwrap_or("no reason given")
        ),
        warden_sdk::ResultError::Json { source, .. } => {
            format!("its result is not a partial mean: {source}")
        }
    }
}

#[cfg(test)]
mod tests;
