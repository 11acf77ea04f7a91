//! `warden task list`: the tasks this account sees, newest last, as a table or JSON; every
//! string from the server escaped.
//!
//! Exit status: 0 ok, 1 refused by the server (its reason printed), 2 bad input.

use clap::Args;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use warden_api::display::safe;
use warden_api::{RunState, Task, TaskDetail, WhoAmI};

use crate::admin::{json_safe_if, table};
use crate::common::Outcome;
use crate::login::{self, ProfileChoice};

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub profile: ProfileChoice,
    /// Only the tasks of this collaboration (name or id).
    #[arg(long, value_name = "COLLAB")]
    pub collaboration: Option<String>,
    /// Only the tasks this account created.
    #[arg(long)]
    pub mine: bool,
    /// Only the tasks in this state, read from their runs (one more request per task): active
    /// (a run has not ended), completed (every run completed), failed (a run failed or was
    /// rejected), cancelled (the task was cancelled). Adds the STATE column (`state` in JSON).
    #[arg(long, value_enum, value_name = "STATE")]
    pub state: Option<TaskState>,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What `--state` selects: a task's state as its runs make it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskState {
    Active,
    Completed,
    Failed,
    Cancelled,
}

impl TaskState {
    fn as_str(self) -> &'static str {
        match self {
            TaskState::Active => "active",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// A task's state: cancelled once cancelled, else active while a run has not ended, else
    /// failed when a run did not complete, else completed.
    pub fn of(detail: &TaskDetail) -> TaskState {
        if detail.task.cancelled_at.is_some() {
            TaskState::Cancelled
        } else if detail.runs.iter().any(|r| !r.state.is_final()) {
            TaskState::Active
        } else if detail.runs.iter().any(|r| r.state != RunState::Completed) {
            TaskState::Failed
        } else {
            TaskState::Completed
        }
    }
}

fn task_json(t: &Task) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

/// Runs `warden task list`.
pub fn run(args: ListArgs) -> anyhow::Result<Outcome> {
    let runtime = login::runtime()?;
    runtime.block_on(async {
        let (client, file, before) = login::connect(&args.profile).await?;
        let listed = async {
            let mut query = Vec::new();
            if let Some(x) = &args.collaboration {
                let id = crate::admin::find_collab(&client, x).await?.id;
                query.push(format!("collaboration_id={id}"));
            }
            if args.mine {
                if let WhoAmI::User { id, .. } = client.whoami().await? {
                    query.push(format!("creator_user_id={id}"));
                }
            }
            let path = if query.is_empty() {
                "/api/tasks".to_owned()
            } else {
                format!("/api/tasks?{}", query.join("&"))
            };
            let tasks = client.list_all::<Task>(&path, "listing tasks").await?;
            let Some(wanted) = args.state else {
                return anyhow::Ok(tasks.into_iter().map(|t| (t, None)).collect::<Vec<_>>());
            };
            let mut kept = Vec::new();
            for t in tasks {
                let state = TaskState::of(&client.task(t.id).await?);
                if state == wanted {
                    kept.push((t, Some(state)));
                }
            }
            anyhow::Ok(kept)
        }
        .await;
        login::finish(&client, &file, before.as_ref())?;
        let tasks = listed?;
        let output = if args.json {
            Value::Array(
                tasks
                    .iter()
                    .map(|(t, state)| {
                        let mut v = task_json(t);
                        if let Some(s) = state {
                            v["state"] = Value::from(s.as_str());
                        }
                        v
                    })
                    .collect(),
            )
            .to_string()
        } else {
            let mut headers = vec!["ID", "COLLABORATION", "CREATOR", "CREATED", "IMAGE", "NAME"];
            if args.state.is_some() {
                headers.push("STATE");
            }
            table(
                &headers,
                tasks
                    .iter()
                    .map(|(t, state)| {
                        let mut row = vec![
                            t.id.to_string(),
                            t.collaboration_id.to_string(),
                            t.creator_username
                                .as_deref()
                                .map(|u| safe(u).into_owned())
                                .or_else(|| t.creator_run_id.map(|r| format!("run {r}")))
                                .unwrap_or_else(|| "-".to_owned()),
                            t.created_at
                                .format(&Rfc3339)
                                .unwrap_or_else(|_| t.created_at.to_string()),
                            safe(&t.image).into_owned(),
                            safe(&t.name).into_owned(),
                        ];
                        row.extend(state.map(|s| s.as_str().to_owned()));
                        row
                    })
                    .collect(),
            )
        };
        Ok(Outcome {
            output: json_safe_if(args.json, output),
            exit: 0,
        })
    })
}
