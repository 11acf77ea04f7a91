//! `warden task list`: the tasks this account sees, newest last, as a table or JSON; every
//! string from the server escaped.
//!
//! Exit status: 0 ok, 1 refused by the server (its reason printed), 2 bad input.

use clap::Args;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use warden_api::display::safe;
use warden_api::{Task, WhoAmI};
use warden_client::CollaborationRef;

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
    /// Print one JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
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
                let r = match x.parse::<i64>() {
                    Ok(id) => CollaborationRef::Id(id),
                    Err(_) => CollaborationRef::Name(x.clone()),
                };
                let id = client.collaboration(&r).await?.id;
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
            anyhow::Ok(client.list_all::<Task>(&path, "listing tasks").await?)
        }
        .await;
        login::finish(&client, &file, before.as_ref())?;
        let tasks = listed?;
        let output = if args.json {
            Value::Array(tasks.iter().map(task_json).collect()).to_string()
        } else {
            table(
                &["ID", "COLLABORATION", "CREATOR", "CREATED", "IMAGE", "NAME"],
                tasks
                    .iter()
                    .map(|t| {
                        vec![
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
                        ]
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
