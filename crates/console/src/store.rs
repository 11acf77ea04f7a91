//! The algorithm store's page of the administrator's view (`warden ui --store NAME|URL`): every
//! algorithm the store lists (`GET /api/algorithms`, as `warden algorithm list`) and each
//! version's review state, reviewers assigned, reviews (who, for which organization, the
//! decision and its comment, the log leaf) and the reason of a revocation or replacement. Read
//! with the store profile's session when there is one; the store decides what it shows, and
//! its refusal is shown with its status and words. Nothing is changed from here: reviews are
//! signed with key files by `warden review approve|reject`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use maud::html;
use warden_api::store as wire;
use warden_client::store::{StoreClient, StoreClientError};

use crate::App;
use crate::pages::{self, frame};

/// The store the console was given: its client and what names it (`--store`).
#[derive(Debug)]
pub struct StoreSide {
    pub client: StoreClient,
    pub name: String,
}

fn state_class(s: wire::VersionState) -> &'static str {
    match s {
        wire::VersionState::Approved => "ok",
        wire::VersionState::Rejected | wire::VersionState::Revoked => "bad",
        wire::VersionState::Submitted | wire::VersionState::UnderReview => "wait",
        wire::VersionState::Replaced => "",
    }
}

/// `GET /admin/algorithms`: the store's algorithms and each version's review state.
pub async fn algorithms(State(app): State<Arc<App>>) -> Response {
    let title = "Algorithms";
    let Some(store) = app.sources.store.as_ref() else {
        return pages::missing(&app, title, "a store (--store NAME|URL)");
    };
    let all: Vec<wire::Algorithm> = match store
        .client
        .get("/api/algorithms", "listing algorithms")
        .await
    {
        Ok(a) => a,
        Err(e) => {
            let status = match &e {
                StoreClientError::Refused { status, .. } => {
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
                }
                _ => StatusCode::BAD_GATEWAY,
            };
            return pages::error(&app, status, title, &e.to_string());
        }
    };
    frame(title, &app, None, body(&store.name, &all)).into_response()
}

/// The page's body (public for the render bench).
pub fn body(store: &str, all: &[wire::Algorithm]) -> maud::Markup {
    html! {
    p { "The algorithms of the store " code { (store) } ", as " code { "warden algorithm list" } " shows them. Reviews are signed with key files by " code { "warden review approve|reject" } "; nothing is changed from this page." }
    @if all.is_empty() { p { "The store lists no algorithm." } }
    @for a in all {
        section class="algorithm" data-algorithm=(a.name) {
            h2 { (a.name) " · " (a.organization) }
            p { (a.description) }
            p { "Source: " code { (a.source) } }
            table {
                    thead { tr {
                        th scope="col" { "id" } th scope="col" { "version" } th scope="col" { "state" }
                        th scope="col" { "image" } th scope="col" { "submitter" } th scope="col" { "reviewers" }
                        th scope="col" { "reviews" }
                    } }
                    tbody {
                        @for v in &a.versions {
                            tr data-version=(v.id) {
                                td { (v.id) }
                                td { (v.version) }
                                td {
                                    span class={ "state " (state_class(v.state)) } { (v.state.as_str()) }
                                    @if let Some(r) = &v.reason { br; span class="reason" { (r) } }
                                }
                                td { code { (v.repository) "@" (v.digest) } }
                                td { (v.submitter) " (" (v.organization) ")" }
                                td { @if v.assigned.is_empty() { "none assigned" } @else { (v.assigned.join(", ")) } }
                                td {
                                    @if v.reviews.is_empty() { "none yet" }
                                    ul class="reviews" {
                                        @for r in &v.reviews {
                                            li {
                                                (r.reviewer) " (" (r.organization) "): " strong { (r.decision) }
                                                @if let Some(c) = &r.comment { " — " (c) }
                                                " · log leaf " (r.leaf_index)
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
