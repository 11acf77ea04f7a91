//! The researcher's pages: collaborations, tasks, a task's runs per organization with their
//! state and each node's reason, and its results opened here with the profile's key, checked
//! exactly as `warden task wait` checks them (`warden_client::Client::outcomes`).

use std::sync::Arc;

use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::http::header;
use axum::response::{IntoResponse as _, Response};
use maud::html;
use warden_api::{Page, RunState, Task};
use warden_client::{Expect, Submission, TaskRecord};

use crate::pages::{self, frame, when};
use crate::security::{CSRF_FIELD, Session};
use crate::{App, ResearcherSide};

/// Tasks shown per page.
const PAGE: u32 = 100;

fn side(app: &App) -> Result<&ResearcherSide, Box<Response>> {
    app.sources.researcher.as_ref().ok_or_else(|| {
        Box::new(match &app.sources.researcher_missing {
            Some(why) => pages::error(
                app,
                StatusCode::NOT_FOUND,
                "Researcher",
                &format!(
                    "the profile has no researcher's side ({why}); a researcher's profile names \
                     [researcher] key and certificate, [collaboration] and the pinned \
                     [organizations] (docs/researcher.md)"
                ),
            ),
            None => pages::missing(app, "Researcher", "a profile (--profile NAME)"),
        })
    })
}

fn server_error(app: &App, what: &str, e: &warden_client::ClientError) -> Response {
    let status = if e.is_verification_failure() {
        StatusCode::CONFLICT
    } else {
        StatusCode::BAD_GATEWAY
    };
    pages::error(app, status, what, &e.to_string())
}

pub async fn collaborations(
    State(app): State<Arc<App>>,
    Query(q): Query<crate::admin::After>,
) -> Response {
    let r = match side(&app) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let list: Page<warden_api::Collaboration> = match crate::admin::page(
        &r.client,
        "/api/collaborations",
        q.after,
        "listing collaborations",
    )
    .await
    {
        Ok(l) => l,
        Err(e) => return server_error(&app, "Collaborations", &e),
    };
    let (next, list) = (list.next, list.items);
    let body = html! {
        @if list.is_empty() { p { "This account sees no collaboration." } }
        @else {
            table {
                thead { tr { th scope="col" { "id" } th scope="col" { "name" } th scope="col" { "sealed" } th scope="col" { "organizations" } th scope="col" { "tasks" } } }
                tbody {
                    @for c in &list {
                        tr {
                            td { (c.id) }
                            td { (c.name) }
                            td { @if c.encrypted { "yes" } @else { "no" } }
                            td { (c.organizations.len()) }
                            td { a href={ "/tasks?collaboration=" (c.id) } { "tasks" } }
                        }
                    }
                }
            }
        }
        (crate::admin::pager("/collaborations", q.after, next, "collaborations"))
    };
    frame("Collaborations", &app, None, body).into_response()
}

#[derive(Debug, serde::Deserialize)]
pub struct TasksQuery {
    collaboration: Option<i64>,
    after: Option<i64>,
}

pub async fn tasks(State(app): State<Arc<App>>, Query(q): Query<TasksQuery>) -> Response {
    let r = match side(&app) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let mut path = format!("/api/tasks?limit={PAGE}");
    if let Some(c) = q.collaboration {
        path.push_str(&format!("&collaboration_id={c}"));
    }
    if let Some(a) = q.after {
        path.push_str(&format!("&after={a}"));
    }
    let page: Page<Task> = match r.client.get(&path, "listing tasks").await {
        Ok(p) => p,
        Err(e) => return server_error(&app, "Tasks", &e),
    };
    // Never more than asked, and a cursor that moves on (down: newest first), as the
    // administrator's lists.
    let moved = match (q.after, page.next) {
        (Some(a), Some(n)) => n < a,
        _ => true,
    };
    if page.items.len() > PAGE as usize || !moved {
        return pages::error(
            &app,
            StatusCode::BAD_GATEWAY,
            "Tasks",
            &format!(
                "the server answered {} tasks for a page of {PAGE}, next {:?} after {:?}; \
                 nothing is shown",
                page.items.len(),
                page.next,
                q.after
            ),
        );
    }
    frame("Tasks", &app, None, tasks_body(&page, q.collaboration)).into_response()
}

/// The table of one page of tasks (public for the render benchmark).
pub fn tasks_body(page: &Page<Task>, collaboration: Option<i64>) -> maud::Markup {
    html! {
        @if page.items.is_empty() { p { "No task." } }
        @else {
            table {
                thead { tr { th scope="col" { "id" } th scope="col" { "name" } th scope="col" { "image" } th scope="col" { "collaboration" } th scope="col" { "created by" } th scope="col" { "created" } } }
                tbody {
                    @for t in &page.items {
                        tr {
                            td { a href={ "/tasks/" (t.id) } { (t.id) } }
                            td { a href={ "/tasks/" (t.id) } { (t.name) } }
                            td { code { (t.image) } }
                            td { (t.collaboration_id) }
                            td { (t.creator_username.as_deref().unwrap_or("-")) }
                            td { (when(Some(t.created_at))) }
                        }
                    }
                }
            }
        }
        @if let Some(next) = page.next {
            p {
                a href={ "/tasks?after=" (next) @if let Some(c) = collaboration { "&collaboration=" (c) } } { "Next tasks" }
            }
        }
    }
}

/// The local record of a task (what was really sent), if `warden task create` kept one here.
fn record(r: &ResearcherSide, id: i64) -> Result<Option<TaskRecord>, String> {
    r.records
        .load(r.client.base(), id)
        .map_err(|e| e.to_string())
}

fn state_class(s: RunState) -> &'static str {
    match s {
        RunState::Completed => "ok",
        RunState::Failed | RunState::Rejected | RunState::Cancelled => "bad",
        RunState::AwaitingApproval | RunState::AwaitingRelease => "wait",
        _ => "busy",
    }
}

pub async fn task(State(app): State<Arc<App>>, Path(id): Path<i64>) -> Response {
    let r = match side(&app) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let title = format!("Task {id}");
    let detail = match r.client.task(id).await {
        Ok(t) => t,
        Err(e) => return server_error(&app, &title, &e),
    };
    let record = match record(r, id) {
        Ok(rec) => rec,
        Err(e) => return pages::error(&app, StatusCode::INTERNAL_SERVER_ERROR, &title, &e),
    };
    if let Some(rec) = &record {
        if let Err(e) = warden_client::check_task(&detail, rec) {
            return server_error(&app, &title, &e);
        }
    }
    let expect = record.as_ref().map(|rec| Expect {
        record: rec,
        open: None,
    });
    let outcomes = match r.client.outcomes(&detail, expect).await {
        Ok(o) => o,
        Err(e) => return server_error(&app, &title, &e),
    };
    let t = &detail.task;
    let finished = detail.runs.iter().all(|run| run.state.is_final());
    let body = html! {
        dl {
            dt { "name" } dd { (t.name) }
            dt { "image" } dd { code { (t.image) } }
            dt { "collaboration" } dd { (t.collaboration_id) }
            dt { "created" } dd { (when(Some(t.created_at))) " by " (t.creator_username.as_deref().unwrap_or("-")) }
            dt { "checked against" } dd {
                @if record.is_some() { "the local record of what was sent (nonce, image, digest)" }
                @else { "nothing local: this machine holds no record of this task, so only the server's echo can be checked" }
            }
        }
        h2 { "Runs" }
        table {
            thead { tr { th scope="col" { "organization" } th scope="col" { "run" } th scope="col" { "state" } th scope="col" { "reason" } th scope="col" { "digest" } th scope="col" { "finished" } } }
            tbody {
                @for o in &outcomes {
                    tr data-run=(o.run.id) {
                        td { (o.organization) }
                        td { (o.run.id) }
                        td { span class={ "state " (state_class(o.run.state)) } { (o.run.state.as_str()) } }
                        td class="reason" { (o.run.reason.as_deref().unwrap_or("")) }
                        td { code { (o.run.digest.as_deref().unwrap_or("-")) } }
                        td { (when(o.run.finished_at)) }
                    }
                }
            }
        }
        @if outcomes.iter().any(|o| o.run.has_result) {
            p { a href={ "/tasks/" (id) "/results" } { "Open the results here, with your key" } }
        }
    };
    let refresh = if finished { None } else { Some(3) };
    frame(&title, &app, refresh, body).into_response()
}

pub async fn results(State(app): State<Arc<App>>, Path(id): Path<i64>) -> Response {
    let r = match side(&app) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let title = format!("Results of task {id}");
    let detail = match r.client.task(id).await {
        Ok(t) => t,
        Err(e) => return server_error(&app, &title, &e),
    };
    let (record, local) = match record(r, id) {
        Ok(Some(rec)) => (rec, true),
        Ok(None) => {
            match TaskRecord::from_echo(r.client.base(), &detail, &r.profile.registry).await {
                Ok(rec) => (rec, false),
                Err(e) => return server_error(&app, &title, &e),
            }
        }
        Err(e) => return pages::error(&app, StatusCode::INTERNAL_SERVER_ERROR, &title, &e),
    };
    if let Err(e) = warden_client::check_task(&detail, &record) {
        return server_error(&app, &title, &e);
    }
    let from = r.profile.path.display().to_string();
    let expect = Expect {
        record: &record,
        open: Some((&r.researcher, &r.profile.pins, &from)),
    };
    let outcomes = match r.client.outcomes(&detail, Some(expect)).await {
        Ok(o) => o,
        Err(e) => return server_error(&app, &title, &e),
    };
    let numeric: Vec<(&str, &[u8])> = outcomes
        .iter()
        .filter_map(|o| o.result.as_deref().map(|r| (o.organization.as_str(), r)))
        .collect();
    let by_organization = pages::chart_by_organization(&numeric);
    let body = html! {
        @if let Some(svg) = by_organization {
            (pages::figure(svg, "The organizations' numbers side by side (the keys every one of them has), drawn here."))
        }
        p {
            "Each result was downloaded sealed, opened here with your key, and checked: sealed by its organization's pinned key, bound to "
            @if local { "the nonce and digest this machine sent." } @else { "the nonce the server shows and the digest the image resolves to now (no local record of this task)." }
        }
        @for o in &outcomes {
            section class="run" data-run=(o.run.id) {
                h2 { (o.organization) " · run " (o.run.id) " · " span class={ "state " (state_class(o.run.state)) } { (o.run.state.as_str()) } }
                @if let Some(reason) = &o.run.reason { p class="reason" { (reason) } }
                @match &o.result {
                    Some(bytes) => (pages::result(bytes)),
                    None => p { "No result." },
                }
            }
        }
        p { a href={ "/tasks/" (id) } { "Back to the task" } }
    };
    frame(&title, &app, None, body).into_response()
}

/// `GET /tasks/new`: the form that creates a task as `warden task create` does.
pub async fn new_task(
    State(app): State<Arc<App>>,
    Extension(session): Extension<Session>,
) -> Response {
    let r = match side(&app) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let body = html! {
        p {
            "The input is sealed here for each organization you choose, to the key the profile pins for it ("
            code { (r.profile.path.display().to_string()) } "), with your certified key; the image's tag is resolved to its digest here, once."
        }
        form method="post" action="/tasks/new" class="create" {
            input type="hidden" name=(CSRF_FIELD) value=(session.csrf);
            label for="image" { "Image" }
            input id="image" type="text" name="image" required placeholder="registry.example.org/warden/mean:1.0";
            fieldset {
                legend { "Organizations" }
                @for name in r.profile.pins.keys() {
                    label { input type="checkbox" name="org" value=(name); " " (name) }
                }
            }
            label for="input" { "Input (strict JSON: function and args)" }
            textarea id="input" name="input" rows="4" required { r#"{"function": "", "args": {}}"# }
            label for="name" { "Name" }
            input id="name" type="text" name="name";
            button type="submit" id="create" { "Create the task" }
        }
    };
    frame("New task", &app, None, body).into_response()
}

/// `POST /tasks/new`: seals and creates the task (`warden_client::Client::create_task`), keeps
/// its record beside `warden task create`'s, and goes to its page.
pub async fn create(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Response {
    let r = match side(&app) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let title = "New task";
    let bad = |why: String| pages::error(&app, StatusCode::BAD_REQUEST, title, &why);
    let fields: Vec<(String, String)> = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(e) => return bad(format!("the form cannot be read: {e}")),
    };
    let field = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim())
            .unwrap_or("")
    };
    let orgs: Vec<String> = fields
        .iter()
        .filter(|(k, _)| k == "org")
        .map(|(_, v)| v.clone())
        .collect();
    if orgs.is_empty() {
        return bad("choose at least one organization".to_owned());
    }
    let input = match warden_client::parse_input(field("input").as_bytes()) {
        Ok(i) => i,
        Err(e) => return bad(e.to_string()),
    };
    let image = match warden_client::image_reference(field("image")) {
        Ok(i) => i,
        Err(e) => return bad(e.to_string()),
    };
    let created = async {
        r.client.check_researcher(&r.researcher).await?;
        let collab = r.client.collaboration(&r.profile.collaboration).await?;
        let targets = r.client.targets(&collab, &orgs, &r.profile).await?;
        let digest = warden_client::resolve_digest(&image, &r.profile.registry).await?;
        let submission = Submission {
            collaboration: &collab,
            targets: &targets,
            name: field("name"),
            image: &image,
            digest: &digest,
            input: &input,
        };
        r.client.create_task(&r.researcher, &submission).await
    }
    .await;
    let (task, record) = match created {
        Ok(c) => c,
        Err(e) => return server_error(&app, title, &e),
    };
    if let Err(e) = r.records.save(&record) {
        return pages::error(
            &app,
            StatusCode::INTERNAL_SERVER_ERROR,
            title,
            &format!(
                "task {} was created, but {e}; its runs and results are then checked against the \
                 server's echo only",
                task.task.id
            ),
        );
    }
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("/tasks/{}", task.task.id))],
    )
        .into_response()
}
