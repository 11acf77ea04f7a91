//! The data owner's pages, over the node's local socket (`warden_node::local::LocalClient`, the
//! same client as `warden node pending|show|release|refuse|approve|refuse-digest`): the results
//! held in the airlock, one shown in plaintext with its release and refusal forms, and the
//! first-run approval queue. The node knows who asks from the socket's peer credentials (this
//! process's user) and audits every view and decision; every form carries the session's CSRF
//! token ([`crate::security::guard`] checks it before any of this runs).

use std::sync::Arc;

use axum::extract::{Extension, Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use maud::{Markup, html};
use warden_api::local::Answer;
use warden_node::local::LocalClient;

use crate::App;
use crate::pages::{self, frame};
use crate::security::{CSRF_FIELD, Session};

fn node(app: &App) -> Result<LocalClient, Box<Response>> {
    app.sources.node.clone().ok_or_else(|| {
        Box::new(pages::missing(
            app,
            "Airlock",
            "the node's socket (--node-socket PATH)",
        ))
    })
}

/// Runs a blocking call of the local client off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("the call to the node's socket did not finish: {e}"))?
}

fn when(at: i64) -> String {
    warden_node::airlock::when(at)
}

fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(session.csrf); }
}

pub async fn pending(
    State(app): State<Arc<App>>,
    Extension(session): Extension<Session>,
) -> Response {
    let c = match node(&app) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let p = match blocking(move || c.pending()).await {
        Ok(p) => p,
        Err(e) => return pages::error(&app, StatusCode::BAD_GATEWAY, "Airlock", &e),
    };
    let body = html! {
        h2 { "Results held for release" }
        @if p.results.is_empty() { p { "No result is held." } }
        @else {
            table {
                thead { tr { th scope="col" { "run" } th scope="col" { "task" } th scope="col" { "image" } th scope="col" { "rule" } th scope="col" { "bytes" } th scope="col" { "held since" } th scope="col" { "refused at" } th scope="col" { "released by" } } }
                tbody {
                    @for r in &p.results {
                        tr data-run=(r.run_id) {
                            td { a href={ "/node/runs/" (r.run_id) } { "run " (r.run_id) } }
                            td { (r.task_id) }
                            td { code { (r.image) } br; code { (r.digest.as_deref().unwrap_or("-")) } }
                            td { (r.rule.as_deref().unwrap_or("-")) }
                            td { (r.bytes) }
                            td { (when(r.held_at)) }
                            td { (when(r.deadline)) }
                            td { (r.released_by.len()) " of " (r.checkers) @if !r.released_by.is_empty() { " (" (r.released_by.join(", ")) ")" } }
                        }
                    }
                }
            }
        }
        h2 { "Runs waiting for a digest's approval" }
        @if p.approvals.is_empty() { p { "No run waits for an approval." } }
        @else {
            table {
                thead { tr { th scope="col" { "run" } th scope="col" { "task" } th scope="col" { "image and digest" } th scope="col" { "rule" } th scope="col" { "waiting since" } th scope="col" { "refused at" } th scope="col" { "decide" } } }
                tbody {
                    @for a in &p.approvals {
                        tr data-run=(a.run_id) {
                            td { (a.run_id) }
                            td { (a.task_id) }
                            td { code { (a.image) } br; code { (a.digest) } }
                            td { (a.rule.as_deref().unwrap_or("-")) }
                            td { (when(a.waiting_since)) }
                            td { (when(a.deadline)) }
                            td {
                                form method="post" action="/node/digests/approve" {
                                    (csrf(&session))
                                    input type="hidden" name="digest" value=(a.digest);
                                    button type="submit" { "Approve this digest" }
                                }
                                form method="post" action="/node/digests/refuse" {
                                    (csrf(&session))
                                    input type="hidden" name="digest" value=(a.digest);
                                    label for={ "digest-reason-" (a.run_id) } { "Reason" }
                                    input id={ "digest-reason-" (a.run_id) } type="text" name="reason" required maxlength="1000";
                                    button type="submit" { "Refuse" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    frame("Airlock", &app, Some(5), body).into_response()
}

pub async fn show(
    State(app): State<Arc<App>>,
    Extension(session): Extension<Session>,
    Path(run): Path<i64>,
) -> Response {
    let c = match node(&app) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let title = format!("Held result of run {run}");
    let held = match blocking(move || c.show(run)).await {
        Ok(h) => h,
        Err(e) => return pages::error(&app, StatusCode::BAD_GATEWAY, &title, &e),
    };
    let bytes = match LocalClient::result_bytes(&held) {
        Ok(b) => b,
        Err(e) => return pages::error(&app, StatusCode::BAD_GATEWAY, &title, &e),
    };
    let r = &held.pending;
    let body = html! {
        p { "Shown to you at the node only, in plaintext; the node recorded this view in its audit log." }
        dl {
            dt { "task" } dd { (r.task_id) }
            dt { "image" } dd { code { (r.image) } " " code { (r.digest.as_deref().unwrap_or("-")) } }
            dt { "rule" } dd { (r.rule.as_deref().unwrap_or("-")) }
            dt { "size" } dd { (r.bytes) " bytes, sha256 " code { (r.sha256) } }
            dt { "released by" } dd { (r.released_by.len()) " of " (r.checkers) }
            dt { "refused at" } dd { (when(r.deadline)) " unless released" }
        }
        h2 { "Result" }
        (pages::result(&bytes))
        h2 { "Decide" }
        form method="post" action={ "/node/runs/" (run) "/release" } {
            (csrf(&session))
            button type="submit" id="release" { "Release" }
        }
        form method="post" action={ "/node/runs/" (run) "/refuse" } {
            (csrf(&session))
            label for="reason" { "Reason (the researcher sees it)" }
            input id="reason" type="text" name="reason" required maxlength="1000";
            button type="submit" id="refuse" { "Refuse" }
        }
    };
    frame(&title, &app, None, body).into_response()
}

/// The node's answer to a decision, on a page that leads back to the airlock.
fn answered(app: &App, what: &str, answer: Result<Answer, String>) -> Response {
    match answer {
        Ok(a) => frame(
            what,
            app,
            None,
            html! {
                p class="answer" role="status" { (a.message) }
                p { a href="/node" { "Back to the airlock" } }
            },
        )
        .into_response(),
        Err(e) => pages::error(app, StatusCode::CONFLICT, what, &e),
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct ReasonForm {
    #[serde(default)]
    reason: String,
}

#[derive(Debug, serde::Deserialize)]
pub struct DigestForm {
    digest: String,
    #[serde(default)]
    reason: String,
}

pub async fn release(State(app): State<Arc<App>>, Path(run): Path<i64>) -> Response {
    let c = match node(&app) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let answer = blocking(move || c.release(run)).await;
    answered(&app, &format!("Release of run {run}"), answer)
}

pub async fn refuse(
    State(app): State<Arc<App>>,
    Path(run): Path<i64>,
    Form(f): Form<ReasonForm>,
) -> Response {
    let c = match node(&app) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let answer = blocking(move || c.refuse(run, &f.reason)).await;
    answered(&app, &format!("Refusal of run {run}"), answer)
}

pub async fn approve(State(app): State<Arc<App>>, Form(f): Form<DigestForm>) -> Response {
    let c = match node(&app) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let answer = blocking(move || c.approve(&f.digest)).await;
    answered(&app, "Approval", answer)
}

pub async fn refuse_digest(State(app): State<Arc<App>>, Form(f): Form<DigestForm>) -> Response {
    let c = match node(&app) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let answer = blocking(move || c.refuse_digest(&f.digest, &f.reason)).await;
    answered(&app, "Refusal of a digest", answer)
}
