//! The administrator's pages: organizations, collaborations, users (create with a role,
//! disable, enable, reset a password) and nodes (create, rotate the API key), through the
//! profile's session with `warden_client`'s administration calls, the same as `warden org|collab|user|node`.
//! The console decides nothing: the server checks every list and change as for the API, and
//! its refusal is shown with its reason. Every form carries the session's CSRF token
//! ([`crate::security::guard`] checks it before any of this runs).
//!
//! A node's API key is shown once, in the answer to the form that created or rotated it: the
//! console keeps no copy, so no page shows it again (every answer is `Cache-Control: no-store`).
//! A password typed into a form is sent to the server and never written into a page or a log.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use maud::{Markup, html};
use serde::de::DeserializeOwned;
use warden_api::{
    Collaboration, CreateCollaboration, CreateNode, CreateOrganization, CreateUser, CreatedNode,
    Node, Organization, Page, Role, User,
};
use warden_client::{Client, ClientError};

use crate::App;
use crate::pages::{self, frame, when};
use crate::security::{CSRF_FIELD, Session};

fn client(app: &App) -> Result<&Client, Box<Response>> {
    app.sources
        .account
        .as_ref()
        .map(|a| a.client.as_ref())
        .ok_or_else(|| {
            Box::new(pages::missing(
                app,
                "Administration",
                "a profile (--profile NAME)",
            ))
        })
}

/// The server's refusal or failure, with its status (403 stays 403) and its words.
fn server_error(app: &App, what: &str, e: &ClientError) -> Response {
    let status = match e {
        ClientError::Api { status, .. } => {
            StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
        }
        _ => StatusCode::BAD_GATEWAY,
    };
    pages::error(app, status, what, &e.to_string())
}

fn bad(app: &App, what: &str, why: &str) -> Response {
    pages::error(app, StatusCode::BAD_REQUEST, what, why)
}

fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(session.csrf); }
}

/// A urlencoded form, repeated fields kept (checkboxes).
struct Fields(Vec<(String, String)>);

impl Fields {
    fn parse(body: &[u8]) -> Result<Fields, String> {
        serde_urlencoded::from_bytes(body)
            .map(Fields)
            .map_err(|e| format!("the form cannot be read: {e}"))
    }

    /// The first value of `name`, or "" (untrimmed: passwords are taken as typed).
    fn raw(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    fn get(&self, name: &str) -> &str {
        self.raw(name).trim()
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An id chosen in a `<select>`.
    fn id(&self, name: &str, what: &str) -> Result<i64, String> {
        self.get(name).parse().map_err(|_| format!("choose {what}"))
    }
}

/// `name (id)`, or the id alone when the account does not see the name.
fn named(names: &BTreeMap<i64, String>, id: i64) -> String {
    match names.get(&id) {
        Some(n) => format!("{n} ({id})"),
        None => id.to_string(),
    }
}

/// A line saying what was done, above a page.
fn done(notice: Option<&str>) -> Markup {
    html! {
        @if let Some(n) = notice { p class="answer" role="status" { (n) } }
    }
}

// ----------------------------------------------------------------------------- paging

/// Rows of a list shown per page: one page of the server's list (its cursor), never more.
pub const PAGE: u32 = 50;

/// `?after=`: where the page starts (the server's cursor, the `next` of the page before).
#[derive(Debug, Default, serde::Deserialize)]
pub struct After {
    pub(crate) after: Option<i64>,
}

/// One page of the server's list at `path` (newest first), from `after`. A page longer than
/// asked, or a cursor that does not move on (down), is refused (the console never shows what it did not
/// ask for, nor loops).
pub(crate) async fn page<T: DeserializeOwned>(
    c: &Client,
    path: &str,
    after: Option<i64>,
    what: &str,
) -> Result<Page<T>, ClientError> {
    let mut q = format!("{path}?limit={PAGE}");
    if let Some(a) = after {
        q.push_str(&format!("&after={a}"));
    }
    let p: Page<T> = c.get(&q, what).await?;
    let unexpected = |message: String| ClientError::Unexpected {
        what: what.to_owned(),
        message,
    };
    if p.items.len() > PAGE as usize {
        return Err(unexpected(format!(
            "the server answered {} items for a page of {PAGE}",
            p.items.len()
        )));
    }
    // Newest first: the next page starts below this one's cursor.
    if let (Some(a), Some(n)) = (after, p.next) {
        if n >= a {
            return Err(unexpected(format!(
                "the page cursor did not move on from {a} (it is {n})"
            )));
        }
    }
    Ok(p)
}

/// The links between pages: to the first when this is not it, to the next when there is one.
/// Plain links, so paging works without JavaScript.
pub fn pager(path: &str, after: Option<i64>, next: Option<i64>, what: &str) -> Markup {
    html! {
        @if after.is_some() || next.is_some() {
            nav class="pages" aria-label={ "pages of " (what) } {
                @if after.is_some() { a href=(path) { "First page" } }
                @if let Some(n) = next { a href={ (path) "?after=" (n) } rel="next" { "Next " (PAGE) " " (what) } }
            }
        }
    }
}

// ----------------------------------------------------------------------------- organizations

pub async fn organizations(
    State(app): State<Arc<App>>,
    Extension(session): Extension<Session>,
    Query(q): Query<After>,
) -> Response {
    organizations_page(&app, &session, q.after, None).await
}

async fn organizations_page(
    app: &App,
    session: &Session,
    after: Option<i64>,
    notice: Option<&str>,
) -> Response {
    let title = "Organizations";
    let c = match client(app) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let list: Page<Organization> =
        match page(c, "/api/organizations", after, "listing organizations").await {
            Ok(l) => l,
            Err(e) => return server_error(app, title, &e),
        };
    let (next, list) = (list.next, list.items);
    let body = html! {
        (done(notice))
        @if list.is_empty() { p { "This account sees no organization." } }
        @else {
            table {
                thead { tr { th scope="col" { "id" } th scope="col" { "name" } th scope="col" { "key fingerprint (what researchers pin)" } th scope="col" { "created" } } }
                tbody {
                    @for o in &list {
                        tr data-org=(o.id) {
                            td { (o.id) }
                            td { (o.name) }
                            td { code { (warden_client::admin::fingerprint(o)) } }
                            td { (when(Some(o.created_at))) }
                        }
                    }
                }
            }
        }
        (pager("/admin/organizations", after, next, "organizations"))
        h2 { "Create an organization" }
        form method="post" action="/admin/organizations" class="create" {
            (csrf(session))
            label for="org-name" { "Name" }
            input id="org-name" type="text" name="name" required maxlength="200";
            label for="org-key" { "X25519 public key (the .pub that " code { "warden keys generate --kind x25519" } " wrote, base64)" }
            textarea id="org-key" name="public_key" rows="2" required {}
            button type="submit" id="create-org" { "Create the organization" }
        }
    };
    frame(title, app, None, body).into_response()
}

pub async fn create_organization(
    State(app): State<Arc<App>>,
    Extension(session): Extension<Session>,
    body: axum::body::Bytes,
) -> Response {
    let what = "New organization";
    let c = match client(&app) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let f = match Fields::parse(&body) {
        Ok(f) => f,
        Err(e) => return bad(&app, what, &e),
    };
    let name = f.get("name");
    if name.is_empty() {
        return bad(&app, what, "give the organization a name");
    }
    let key = match warden_seal::PublicKey::from_base64(f.get("public_key")) {
        Ok(k) => k,
        Err(e) => {
            return bad(
                &app,
                what,
                &format!(
                    "the public key is not an X25519 public key ({e}); paste the .pub that \
                     `warden keys generate --kind x25519 --out ORG.key` wrote"
                ),
            );
        }
    };
    let req = CreateOrganization {
        name: name.to_owned(),
        public_key: key.to_base64(),
    };
    match c.create_organization(&req).await {
        Ok(o) => {
            let notice = format!(
                "created organization {} (id {}), key fingerprint {}",
                o.name,
                o.id,
                warden_client::admin::fingerprint(&o)
            );
            organizations_page(&app, &session, None, Some(&notice)).await
        }
        Err(e) => server_error(&app, what, &e),
    }
}

// ----------------------------------------------------------------------------- collaborations

pub async fn collaborations(
    State(app): State<Arc<App>>,
    Extension(session): Extension<Session>,
    Query(q): Query<After>,
) -> Response {
    collaborations_page(&app, &session, q.after, None).await
}

async fn collaborations_page(
    app: &App,
    session: &Session,
    after: Option<i64>,
    notice: Option<&str>,
) -> Response {
    let title = "Collaborations";
    let c = match client(app) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let (list, orgs) = match tokio::try_join!(
        page::<Collaboration>(c, "/api/collaborations", after, "listing collaborations"),
        c.organization_names()
    ) {
        Ok(x) => x,
        Err(e) => return server_error(app, title, &e),
    };
    let (next, list) = (list.next, list.items);
    let body = html! {
        (done(notice))
        @if list.is_empty() { p { "This account sees no collaboration." } }
        @else {
            table {
                thead { tr { th scope="col" { "id" } th scope="col" { "name" } th scope="col" { "sealed" } th scope="col" { "members" } th scope="col" { "created" } } }
                tbody {
                    @for x in &list {
                        tr data-collaboration=(x.id) {
                            td { (x.id) }
                            td { (x.name) }
                            td { @if x.encrypted { "yes" } @else { "no" } }
                            td { (x.organizations.iter().map(|id| named(&orgs, *id)).collect::<Vec<_>>().join(", ")) }
                            td { (when(Some(x.created_at))) }
                        }
                    }
                }
            }
        }
        (pager("/admin/collaborations", after, next, "collaborations"))
        h2 { "Create a collaboration" }
        form method="post" action="/admin/collaborations" class="create" {
            (csrf(session))
            label for="collab-name" { "Name" }
            input id="collab-name" type="text" name="name" required maxlength="200";
            fieldset {
                legend { "Member organizations" }
                @for (id, name) in &orgs {
                    label { input type="checkbox" name="org" value=(id); " " (name) }
                }
            }
            label { input type="checkbox" name="plaintext" value="1"; " Plaintext: inputs and results are not sealed (nodes must allow it)" }
            button type="submit" id="create-collab" { "Create the collaboration" }
        }
    };
    frame(title, app, None, body).into_response()
}

pub async fn create_collaboration(
    State(app): State<Arc<App>>,
    Extension(session): Extension<Session>,
    body: axum::body::Bytes,
) -> Response {
    let what = "New collaboration";
    let c = match client(&app) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let f = match Fields::parse(&body) {
        Ok(f) => f,
        Err(e) => return bad(&app, what, &e),
    };
    let name = f.get("name");
    if name.is_empty() {
        return bad(&app, what, "give the collaboration a name");
    }
    let mut members = Vec::new();
    for v in f.all("org") {
        match v.parse::<i64>() {
            Ok(id) if !members.contains(&id) => members.push(id),
            Ok(_) => {}
            Err(_) => return bad(&app, what, &format!("`{v}` is not an organization id")),
        }
    }
    if members.is_empty() {
        return bad(&app, what, "choose at least one member organization");
    }
    let req = CreateCollaboration {
        name: name.to_owned(),
        organizations: members,
        encrypted: f.get("plaintext").is_empty(),
    };
    match c.create_collaboration(&req).await {
        Ok(x) => {
            let notice = format!("created collaboration {} (id {})", x.name, x.id);
            collaborations_page(&app, &session, None, Some(&notice)).await
        }
        Err(e) => server_error(&app, what, &e),
    }
}

// ----------------------------------------------------------------------------- users

pub async fn users(
    State(app): State<Arc<App>>,
    Extension(session): Extension<Session>,
    Query(q): Query<After>,
) -> Response {
    users_page(&app, &session, q.after, None).await
}

async fn users_page(
    app: &App,
    session: &Session,
    after: Option<i64>,
    notice: Option<&str>,
) -> Response {
    let title = "Users";
    let c = match client(app) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let (list, orgs) = match tokio::try_join!(
        page::<User>(c, "/api/users", after, "listing users"),
        c.organization_names()
    ) {
        Ok(x) => x,
        Err(e) => return server_error(app, title, &e),
    };
    let (next, list) = (list.next, list.items);
    let body = html! {
        (done(notice))
        table {
            thead { tr { th scope="col" { "id" } th scope="col" { "user name" } th scope="col" { "role" } th scope="col" { "organization" } th scope="col" { "state" } th scope="col" { "created" } } }
            tbody {
                @for u in &list {
                    tr data-user=(u.id) {
                        td { (u.id) }
                        td { a href={ "/admin/users/" (u.id) } { (u.username) } }
                        td { (u.role.as_str()) }
                        td { (u.organization_id.map(|o| named(&orgs, o)).unwrap_or_else(|| "-".to_owned())) }
                        td { @if u.disabled { span class="state bad" { "disabled" } } @else { span class="state ok" { "enabled" } } }
                        td { (when(Some(u.created_at))) }
                    }
                }
            }
        }
        (pager("/admin/users", after, next, "users"))
        h2 { "Create a user" }
        form method="post" action="/admin/users" class="create" {
            (csrf(session))
            label for="user-name" { "User name" }
            input id="user-name" type="text" name="username" required maxlength="200" autocomplete="off";
            label for="user-role" { "Role" }
            select id="user-role" name="role" {
                @for r in Role::ALL {
                    option value=(r.as_str()) selected[r == Role::Researcher] { (r.as_str()) }
                }
            }
            label for="user-org" { "Organization (every role but root has one)" }
            select id="user-org" name="organization" {
                option value="" { "none (root)" }
                @for (id, name) in &orgs {
                    option value=(id) { (name) }
                }
            }
            (password_fields("user-password"))
            button type="submit" id="create-user" { "Create the user" }
        }
    };
    frame(title, app, None, body).into_response()
}

/// A new password, typed twice; never filled in by the console.
fn password_fields(id: &str) -> Markup {
    html! {
        label for=(id) { "Password" }
        input id=(id) type="password" name="password" required autocomplete="new-password";
        label for={ (id) "-again" } { "The same password again" }
        input id={ (id) "-again" } type="password" name="password_again" required autocomplete="new-password";
    }
}

/// The password of a form, typed the same twice and not empty.
fn new_password(f: &Fields) -> Result<String, &'static str> {
    let pw = f.raw("password");
    if pw.is_empty() {
        return Err("type the new password");
    }
    if pw != f.raw("password_again") {
        return Err("the two passwords differ; nothing was changed");
    }
    Ok(pw.to_owned())
}

pub async fn create_user(
    State(app): State<Arc<App>>,
    Extension(session): Extension<Session>,
    body: axum::body::Bytes,
) -> Response {
    let what = "New user";
    let c = match client(&app) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let f = match Fields::parse(&body) {
        Ok(f) => f,
        Err(e) => return bad(&app, what, &e),
    };
    let username = f.get("username");
    if username.is_empty() {
        return bad(&app, what, "give the user a name");
    }
    let role = match warden_client::admin::role(f.get("role")) {
        Ok(r) => r,
        Err(e) => return bad(&app, what, &e),
    };
    let organization_id = match f.get("organization") {
        "" => None,
        _ => match f.id("organization", "the user's organization") {
            Ok(id) => Some(id),
            Err(e) => return bad(&app, what, &e),
        },
    };
    let password = match new_password(&f) {
        Ok(p) => p,
        Err(e) => return bad(&app, what, e),
    };
    let req = CreateUser {
        username: username.to_owned(),
        password,
        role,
        organization_id,
    };
    match c.create_user(&req).await {
        Ok(u) => {
            let notice = format!("created user {} (id {}, {})", u.username, u.id, u.role);
            users_page(&app, &session, None, Some(&notice)).await
        }
        Err(e) => server_error(&app, what, &e),
    }
}

pub async fn user(
    State(app): State<Arc<App>>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
) -> Response {
    user_page(&app, &session, id, None).await
}

async fn user_page(app: &App, session: &Session, id: i64, notice: Option<&str>) -> Response {
    let title = format!("User {id}");
    let c = match client(app) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let (u, orgs) = match tokio::try_join!(c.user(id), c.organization_names()) {
        Ok(x) => x,
        Err(e) => return server_error(app, &title, &e),
    };
    let body = html! {
        (done(notice))
        dl {
            dt { "user name" } dd { (u.username) }
            dt { "role" } dd { (u.role.as_str()) }
            dt { "organization" } dd { (u.organization_id.map(|o| named(&orgs, o)).unwrap_or_else(|| "-".to_owned())) }
            dt { "state" } dd {
                @if u.disabled { span class="state bad" { "disabled: login refused, no token works" } }
                @else { span class="state ok" { "enabled" } }
            }
            dt { "created" } dd { (when(Some(u.created_at))) }
        }
        h2 { @if u.disabled { "Enable" } @else { "Disable" } }
        @if u.disabled {
            form method="post" action={ "/admin/users/" (id) "/enable" } {
                (csrf(session))
                button type="submit" id="enable" { "Enable this user" }
            }
        } @else {
            form method="post" action={ "/admin/users/" (id) "/disable" } {
                (csrf(session))
                button type="submit" id="disable" { "Disable this user (every token revoked at once)" }
            }
        }
        h2 { "Reset the password" }
        form method="post" action={ "/admin/users/" (id) "/password" } class="create" {
            (csrf(session))
            (password_fields("new-password"))
            button type="submit" id="reset" { "Set this password (every session of the user ends)" }
        }
        p { a href="/admin/users" { "All users" } }
    };
    frame(&title, app, None, body).into_response()
}

async fn set_disabled(app: &App, session: &Session, id: i64, disabled: bool) -> Response {
    let c = match client(app) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    match c.set_user_disabled(id, disabled).await {
        Ok(u) => {
            let notice = format!(
                "{} user {}",
                if disabled { "disabled" } else { "enabled" },
                u.username
            );
            user_page(app, session, id, Some(&notice)).await
        }
        Err(e) => server_error(app, &format!("User {id}"), &e),
    }
}

pub async fn disable_user(
    State(app): State<Arc<App>>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
) -> Response {
    set_disabled(&app, &session, id, true).await
}

pub async fn enable_user(
    State(app): State<Arc<App>>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
) -> Response {
    set_disabled(&app, &session, id, false).await
}

pub async fn reset_password(
    State(app): State<Arc<App>>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> Response {
    let what = format!("User {id}");
    let c = match client(&app) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let f = match Fields::parse(&body) {
        Ok(f) => f,
        Err(e) => return bad(&app, &what, &e),
    };
    let password = match new_password(&f) {
        Ok(p) => p,
        Err(e) => return bad(&app, &what, e),
    };
    match c.reset_password(id, &password).await {
        Ok(()) => {
            user_page(
                &app,
                &session,
                id,
                Some("the password was set; every session of the user ended"),
            )
            .await
        }
        Err(e) => server_error(&app, &what, &e),
    }
}

// ----------------------------------------------------------------------------- nodes

pub async fn nodes(
    State(app): State<Arc<App>>,
    Extension(session): Extension<Session>,
    Query(q): Query<After>,
) -> Response {
    let title = "Nodes";
    let c = match client(&app) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let (list, orgs, collabs) = match tokio::try_join!(
        page::<Node>(c, "/api/nodes", q.after, "listing nodes"),
        c.organization_names(),
        c.collaboration_names()
    ) {
        Ok(x) => x,
        Err(e) => return server_error(&app, title, &e),
    };
    let (next, list) = (list.next, list.items);
    let body = html! {
        @if list.is_empty() { p { "This account sees no node." } }
        @else {
            table {
                thead { tr { th scope="col" { "id" } th scope="col" { "organization" } th scope="col" { "collaboration" } th scope="col" { "last seen" } th scope="col" { "created" } th scope="col" { "API key" } } }
                tbody {
                    @for n in &list {
                        tr data-node=(n.id) {
                            td { (n.id) }
                            td { (named(&orgs, n.organization_id)) }
                            td { (named(&collabs, n.collaboration_id)) }
                            td { @if n.last_seen_at.is_some() { (when(n.last_seen_at)) } @else { "never" } }
                            td { (when(Some(n.created_at))) }
                            td {
                                form method="post" action={ "/admin/nodes/" (n.id) "/key" } {
                                    (csrf(&session))
                                    label { input type="checkbox" name="confirm" value="1" required; " the node's current key stops working" }
                                    button type="submit" { "Rotate" }
                                }
                            }
                        }
                    }
                }
            }
        }
        (pager("/admin/nodes", q.after, next, "nodes"))
        h2 { "Create a node" }
        p { "One node per organization and collaboration. Its API key is shown once, on the next page, and never again." }
        form method="post" action="/admin/nodes" class="create" {
            (csrf(&session))
            label for="node-org" { "Organization" }
            select id="node-org" name="organization" required {
                @for (id, name) in &orgs { option value=(id) { (name) } }
            }
            label for="node-collab" { "Collaboration" }
            select id="node-collab" name="collaboration" required {
                @for (id, name) in &collabs { option value=(id) { (name) } }
            }
            button type="submit" id="create-node" { "Create the node" }
        }
    };
    frame(title, &app, None, body).into_response()
}

/// The one page that shows a node's API key: the answer to the form that made it. The console
/// keeps no copy.
async fn key_page(app: &App, c: &Client, heading: &str, created: &CreatedNode) -> Response {
    let n = &created.node;
    let (orgs, collabs) = tokio::join!(c.organization_names(), c.collaboration_names());
    let (orgs, collabs) = (orgs.unwrap_or_default(), collabs.unwrap_or_default());
    let body = html! {
        p class="answer" role="status" { (heading) }
        dl {
            dt { "node" } dd { (n.id) }
            dt { "organization" } dd { (named(&orgs, n.organization_id)) }
            dt { "collaboration" } dd { (named(&collabs, n.collaboration_id)) }
        }
        h2 { "API key" }
        p class="once" { "Shown only this once: this console keeps no copy and no page shows it again. Put it in the node's " code { "api_key_file" } " now (mode 0600)." }
        pre class="key" { code id="api-key" { (created.api_key) } }
        p { a href="/admin/nodes" { "All nodes" } }
    };
    frame(&format!("Node {}", n.id), app, None, body).into_response()
}

pub async fn create_node(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Response {
    let what = "New node";
    let c = match client(&app) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let f = match Fields::parse(&body) {
        Ok(f) => f,
        Err(e) => return bad(&app, what, &e),
    };
    let req = match (
        f.id("organization", "the node's organization"),
        f.id("collaboration", "the node's collaboration"),
    ) {
        (Ok(organization_id), Ok(collaboration_id)) => CreateNode {
            organization_id,
            collaboration_id,
        },
        (Err(e), _) | (_, Err(e)) => return bad(&app, what, &e),
    };
    match c.create_node(&req).await {
        Ok(created) => key_page(&app, c, "created the node", &created).await,
        Err(e) => server_error(&app, what, &e),
    }
}

pub async fn rotate_key(
    State(app): State<Arc<App>>,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> Response {
    let c = match client(&app) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    // One click would cut a running node off the server: the form asks first.
    let confirmed = Fields::parse(&body).is_ok_and(|f| f.get("confirm") == "1");
    if !confirmed {
        return bad(
            &app,
            &format!("Node {id}"),
            "nothing was changed: tick that the node's current key stops working, then rotate",
        );
    }
    match c.rotate_node_key(id).await {
        Ok(created) => {
            key_page(
                &app,
                c,
                "rotated the node's key: the old key, and every token issued under it, no \
                 longer work",
                &created,
            )
            .await
        }
        Err(e) => server_error(&app, &format!("Node {id}"), &e),
    }
}
