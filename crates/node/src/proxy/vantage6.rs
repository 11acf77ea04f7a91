//! The vantage6 4.x server-API subset `AlgorithmClient` (vantage6-algorithm-tools 4.x) speaks,
//! served by the node's proxy to a run under the vantage6 contract and translated onto the
//! proxy's own operations, with every check of theirs: the organizations of the collaboration,
//! subtasks of this run's task (the admitted image only, this collaboration only, one input for
//! every organization, sealed by the node), and the results of the subtasks this run created
//! (opened and checked by the node). The shim in the container forwards HTTP here and decides
//! nothing; everything is enforced at this end.
//!
//! | vantage6 request | what it is here |
//! |---|---|
//! | `GET /api/organization?collaboration_id=C[&page=N]` | the collaboration's organizations, one page |
//! | `GET /api/organization/{id}` | one of them |
//! | `GET /api/blobstream/status` | `{"blob_store_enabled": false}` |
//! | `POST /api/task` | a subtask (`organizations: [{id, input}]`, input base64 of `{"method","args","kwargs"}`) |
//! | `GET /api/task/{id}` and `/api/task/{id}/status` | its status (`/status` waits up to 10 s for the end) |
//! | `GET /api/result?task_id=T[&page=N]` | its completed runs' results, base64 |

use std::sync::Arc;

use axum::extract::{Path as UrlPath, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use warden_api::proxy as wire;
use warden_api::{ErrorCode, RunState};

use super::{Inner, Refusal, new_subtask, organization_list, read_body, subtask_results};

/// The paths the shim forwards (prefixes; the proxy routes exactly).
pub const PATHS: [&str; 4] = [
    "/api/organization",
    "/api/blobstream/status",
    "/api/task",
    "/api/result",
];
/// How long `GET /api/task/{id}/status` waits for the subtask to end before answering.
const STATUS_WAIT_SECS: u64 = 10;

/// Adds the vantage6 routes.
pub(super) fn routes(app: Router<Arc<Inner>>) -> Router<Arc<Inner>> {
    app.route("/api/organization", get(organizations))
        .route("/api/organization/{id}", get(organization))
        .route("/api/blobstream/status", get(blobstream))
        .route("/api/task", post(create_task))
        .route("/api/task/{id}", get(task))
        .route("/api/task/{id}/status", get(task_status))
        .route("/api/result", get(results))
}

/// A refusal as vantage6 clients read it (`msg`), with Warden's error body beside it.
pub(super) struct V6Refusal(Refusal);

impl From<Refusal> for V6Refusal {
    fn from(r: Refusal) -> Self {
        V6Refusal(r)
    }
}

impl IntoResponse for V6Refusal {
    fn into_response(self) -> Response {
        let Refusal(status, body) = self.0;
        let msg = body.error.message.clone();
        (status, Json(json!({"msg": msg, "error": body.error}))).into_response()
    }
}

fn invalid(message: impl Into<String>) -> V6Refusal {
    V6Refusal(Refusal::new(ErrorCode::InvalidRequest, message))
}

fn forbidden(message: impl Into<String>) -> V6Refusal {
    V6Refusal(Refusal::new(ErrorCode::Forbidden, message))
}

/// The query's `key=value` pairs; a key outside `allowed` or a value that is not a number is
/// refused.
fn query(raw: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, i64)>, V6Refusal> {
    let mut out = Vec::new();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if !allowed.contains(&k) {
            return Err(invalid(format!(
                "the query parameter {} is not offered here; only {}",
                json!(k),
                allowed.join(", ")
            )));
        }
        let n: i64 = v
            .parse()
            .map_err(|_| invalid(format!("{k} must be a number")))?;
        out.push((k.to_owned(), n));
    }
    Ok(out)
}

fn get_param(params: &[(String, i64)], key: &str) -> Option<i64> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

/// One page: all of `items` on page 1 (the default), nothing after it; no `next` link.
fn page(params: &[(String, i64)], items: Vec<Value>) -> Result<Json<Value>, V6Refusal> {
    match get_param(params, "page").unwrap_or(1) {
        1 => Ok(Json(json!({"data": items, "links": {}}))),
        n if n > 1 => Ok(Json(json!({"data": [], "links": {}}))),
        _ => Err(invalid("page must be at least 1")),
    }
}

async fn organizations(
    State(inner): State<Arc<Inner>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, V6Refusal> {
    let params = query(raw.as_deref(), &["collaboration_id", "page", "per_page"])?;
    if let Some(c) = get_param(&params, "collaboration_id")
        && c != inner.scope.collaboration_id
    {
        return Err(forbidden(format!(
            "collaboration {c} is not this run's collaboration ({})",
            inner.scope.collaboration_id
        )));
    }
    let list = organization_list(&inner).await?;
    page(
        &params,
        list.into_iter()
            .map(|o| json!({"id": o.id, "name": o.name}))
            .collect(),
    )
}

async fn organization(
    State(inner): State<Arc<Inner>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, V6Refusal> {
    let id: i64 = id
        .parse()
        .map_err(|_| invalid("the organization id must be a number"))?;
    if !inner.scope.members.contains(&id) {
        return Err(forbidden(format!(
            "organization {id} is not a member of this run's collaboration"
        )));
    }
    let list = organization_list(&inner).await?;
    let o = list
        .into_iter()
        .find(|o| o.id == id)
        .ok_or_else(|| forbidden(format!("organization {id} is not known")))?;
    Ok(Json(json!({"id": o.id, "name": o.name})))
}

async fn blobstream() -> Json<Value> {
    Json(json!({"blob_store_enabled": false}))
}

/// `POST /api/task` as `AlgorithmClient.task.create` sends it, made a [`wire::NewSubtask`].
pub fn subtask_of(
    body: &[u8],
    image: &str,
    collaboration_id: i64,
) -> Result<wire::NewSubtask, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the task is not JSON: {e}"))?;
    let Value::Object(o) = v else {
        return Err("the task must be a JSON object".into());
    };
    if let Some(k) = o.keys().find(|k| {
        !matches!(
            k.as_str(),
            "name" | "image" | "collaboration_id" | "description" | "organizations" | "databases"
        )
    }) {
        return Err(format!(
            "the task field {} is not offered (no studies, stores or sessions)",
            json!(k)
        ));
    }
    match o.get("image").and_then(Value::as_str) {
        Some(i) if i == image => {}
        other => {
            return Err(format!(
                "a subtask runs the admitted image {image} only, not {}",
                other.map_or("none".to_owned(), |i| json!(i).to_string())
            ));
        }
    }
    match o.get("collaboration_id").and_then(Value::as_i64) {
        Some(c) if c == collaboration_id => {}
        _ => {
            return Err(format!(
                "a subtask is in this run's collaboration {collaboration_id} only"
            ));
        }
    }
    let Some(Value::Array(targets)) = o.get("organizations") else {
        return Err("organizations must be a list of {\"id\", \"input\"}".into());
    };
    let mut organizations = Vec::with_capacity(targets.len());
    let mut input: Option<Vec<u8>> = None;
    for t in targets {
        let (Some(id), Some(encoded)) = (
            t.get("id").and_then(Value::as_i64),
            t.get("input").and_then(Value::as_str),
        ) else {
            return Err("each organization is {\"id\": number, \"input\": base64}".into());
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| format!("the input for organization {id} is not base64"))?;
        match &input {
            None => input = Some(bytes),
            Some(first) if *first == bytes => {}
            Some(_) => {
                return Err(
                    "the inputs differ between organizations; this node sends one input to \
                     every organization of a subtask (create one subtask per input)"
                        .into(),
                );
            }
        }
        organizations.push(id);
    }
    let input = input.ok_or("organizations must list at least one organization")?;
    let v: Value = serde_json::from_slice(&input)
        .map_err(|e| format!("the subtask input is not JSON: {e}"))?;
    let Value::Object(mut i) = v else {
        return Err("the subtask input must be {\"method\", \"args\", \"kwargs\"}".into());
    };
    if let Some(k) = i
        .keys()
        .find(|k| !matches!(k.as_str(), "method" | "args" | "kwargs"))
    {
        return Err(format!(
            "the subtask input key {} is not offered; give method, args and kwargs",
            json!(k)
        ));
    }
    let function = match i.remove("method") {
        Some(Value::String(m)) => m,
        _ => return Err("the subtask input names no method".into()),
    };
    let mut args = Map::new();
    for key in ["args", "kwargs"] {
        if let Some(v) = i.remove(key)
            && !v.is_null()
        {
            args.insert(key.to_owned(), v);
        }
    }
    if let Some(dbs) = o.get("databases")
        && !dbs.is_null()
    {
        let Value::Array(list) = dbs else {
            return Err("databases must be a list".into());
        };
        let labels = crate::vantage6::database_labels(list)?;
        args.insert("databases".to_owned(), json!(labels));
    }
    // Checked here as the target's node will check it, so a malformed subtask is refused now.
    crate::vantage6::input(
        &serde_json::to_vec(&json!({"function": function, "args": Value::Object(args.clone())}))
            .map_err(|e| e.to_string())?,
    )?;
    Ok(wire::NewSubtask {
        function,
        args: Value::Object(args),
        organizations,
        name: o
            .get("name")
            .and_then(Value::as_str)
            .map(|n| n.chars().take(200).collect()),
    })
}

async fn create_task(
    State(inner): State<Arc<Inner>>,
    request: Request,
) -> Result<(StatusCode, Json<Value>), V6Refusal> {
    let body = read_body(request, inner.deps.limits.request_bytes).await?;
    let req = subtask_of(
        &body,
        &inner.scope.pinned_image,
        inner.scope.collaboration_id,
    )
    .map_err(|e| {
        tracing::warn!(run = inner.scope.run_id, reason = %e, "proxy: vantage6 subtask refused");
        invalid(e)
    })?;
    let name = req.name.clone();
    let organizations = req.organizations.clone();
    let id = new_subtask(&inner, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": id,
            "name": name,
            "image": inner.scope.pinned_image,
            "collaboration": {"id": inner.scope.collaboration_id},
            "parent": {"id": inner.scope.task_id},
            "organizations": organizations.iter().map(|o| json!({"id": o})).collect::<Vec<_>>(),
            "status": "pending",
        })),
    ))
}

/// A vantage6 task status from the runs: `completed` when all completed, `failed` when all
/// ended and one did not complete, else `active` (`pending` with no run yet).
pub fn status_of(results: &wire::SubtaskResults) -> &'static str {
    if results.runs.is_empty() {
        "pending"
    } else if !results.complete {
        "active"
    } else if results.runs.iter().all(|r| r.state == RunState::Completed) {
        "completed"
    } else {
        "failed"
    }
}

fn task_id(id: &str) -> Result<i64, V6Refusal> {
    id.parse()
        .map_err(|_| invalid("the task id must be a number"))
}

async fn task(
    State(inner): State<Arc<Inner>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, V6Refusal> {
    let id = task_id(&id)?;
    let r = subtask_results(&inner, id, 0).await?;
    Ok(Json(json!({"id": id, "status": status_of(&r)})))
}

async fn task_status(
    State(inner): State<Arc<Inner>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, V6Refusal> {
    let id = task_id(&id)?;
    let r = subtask_results(&inner, id, STATUS_WAIT_SECS).await?;
    Ok(Json(json!({"id": id, "status": status_of(&r)})))
}

async fn results(
    State(inner): State<Arc<Inner>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, V6Refusal> {
    let params = query(raw.as_deref(), &["task_id", "page", "per_page"])?;
    let Some(id) = get_param(&params, "task_id") else {
        return Err(invalid("task_id is required"));
    };
    let r = subtask_results(&inner, id, 0).await?;
    let items = r
        .runs
        .iter()
        .filter_map(|run| {
            run.result.as_ref().map(|result| {
                json!({
                    "organization": {"id": run.organization_id},
                    "task": {"id": id},
                    "status": "completed",
                    "result": result,
                    "blob_storage_used": false,
                })
            })
        })
        .collect();
    page(&params, items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &Value) -> String {
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(v).unwrap())
    }

    fn body(orgs: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "name": "subtask", "image": "r/x@sha256:00", "collaboration_id": 1,
            "description": "d", "organizations": orgs, "databases": [{"label": "records"}],
        }))
        .unwrap()
    }

    #[test]
    fn a_vantage6_subtask_becomes_one_warden_subtask() {
        let input = json!({"method": "partial", "kwargs": {"column": "age"}});
        let t = subtask_of(
            &body(json!([{"id": 1, "input": b64(&input)}, {"id": 2, "input": b64(&input)}])),
            "r/x@sha256:00",
            1,
        )
        .unwrap();
        assert_eq!(t.function, "partial");
        assert_eq!(t.organizations, vec![1, 2]);
        assert_eq!(
            t.args,
            json!({"kwargs": {"column": "age"}, "databases": ["records"]})
        );
    }

    #[test]
    fn what_the_node_would_not_run_is_refused() {
        let input = b64(&json!({"method": "partial"}));
        let other = b64(&json!({"method": "partial", "args": [1]}));
        let one = json!([{"id": 1, "input": input}]);
        for (body, image, collab, says) in [
            (body(one.clone()), "r/y@sha256:00", 1, "admitted image"),
            (
                body(one.clone()),
                "r/x@sha256:00",
                2,
                "collaboration 2 only",
            ),
            (
                body(json!([{"id": 1, "input": input}, {"id": 2, "input": other}])),
                "r/x@sha256:00",
                1,
                "inputs differ",
            ),
            (body(json!([])), "r/x@sha256:00", 1, "at least one"),
            (
                body(json!([{"id": 1, "input": "%%%"}])),
                "r/x@sha256:00",
                1,
                "not base64",
            ),
            (
                body(json!([{"id": 1, "input": b64(&json!({"method": "p", "env": 1}))}])),
                "r/x@sha256:00",
                1,
                "\"env\"",
            ),
            (
                serde_json::to_vec(&json!({"image": "r/x@sha256:00", "collaboration_id": 1,
                    "organizations": one, "study_id": 3}))
                .unwrap(),
                "r/x@sha256:00",
                1,
                "\"study_id\"",
            ),
        ] {
            let e = subtask_of(&body, image, collab).unwrap_err();
            assert!(e.contains(says), "{says}: {e}");
        }
    }

    #[test]
    fn statuses_read_as_vantage6s() {
        let run = |state| wire::SubtaskRun {
            organization_id: 1,
            state,
            result: None,
            reason: None,
        };
        let r = |complete, runs| wire::SubtaskResults { complete, runs };
        assert_eq!(status_of(&r(false, vec![])), "pending");
        assert_eq!(status_of(&r(false, vec![run(RunState::Running)])), "active");
        assert_eq!(
            status_of(&r(true, vec![run(RunState::Completed)])),
            "completed"
        );
        assert_eq!(
            status_of(&r(
                true,
                vec![run(RunState::Completed), run(RunState::Failed)]
            )),
            "failed"
        );
    }
}
