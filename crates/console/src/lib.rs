//! `warden ui`: the local web console (issue 12), served on loopback by the process of the person
//! who holds the keys. It is a client, never a side door: the researcher's pages read the server
//! with the profile's session (the server's permission checks apply) and open results with the
//! profile's key in this process; the data owner's pages speak to the node's local socket (the
//! node checks the peer's uid and audits every view, release, refusal and approval). It adds no
//! endpoint to the server. The browser never receives a key.
//!
//! HTML is rendered here with maud (checked at compile time, every value escaped); the one
//! script and the one style sheet are shipped inside the binary and served from `/static/`.
//! What guards it is in [`security`].

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use warden_api::Role;
use warden_client::{Client, Profile, RecordStore, Researcher};
use warden_node::local::LocalClient;

pub mod admin;
pub mod owner;
pub mod pages;
pub mod records;
pub mod researcher;
pub mod security;
pub mod store;

pub use security::{check_listen, check_password};

/// The profile's account at the server: its logged-in client (the administrator's pages use
/// it, and so does the researcher's side) and its role as the server said at launch (only to
/// choose which links to show: the server decides what the account may do).
#[derive(Debug)]
pub struct Account {
    pub client: Arc<Client>,
    pub role: Option<Role>,
}

impl Account {
    /// Whether the account administers something (root or an organization's administrator).
    pub fn administers(&self) -> bool {
        matches!(self.role, Some(Role::Root | Role::OrgAdmin))
    }
}

/// The researcher's side: the profile's client of the server, the profile (pins, registry), the
/// researcher's key to open results and where `warden task create` keeps its task records.
#[derive(Debug)]
pub struct ResearcherSide {
    pub client: Arc<Client>,
    pub profile: Profile,
    pub researcher: Researcher,
    pub records: RecordStore,
}

/// What the console was given: a profile (an account, and a researcher's keys when the profile
/// has them), a node socket, or both.
#[derive(Debug, Default)]
pub struct Sources {
    pub account: Option<Account>,
    pub researcher: Option<ResearcherSide>,
    /// Why a profile's researcher side is missing (no `[researcher]` key, no pins...), shown by
    /// the researcher's pages.
    pub researcher_missing: Option<String>,
    pub node: Option<LocalClient>,
    /// The algorithm store, for the administrator's page of algorithms and reviews.
    pub store: Option<store::StoreSide>,
}

/// The state every handler sees.
#[derive(Debug)]
pub struct App {
    pub sources: Sources,
    pub gate: security::Gate,
}

/// A console bound to a loopback address, ready to serve.
#[derive(Debug)]
pub struct Console {
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    url: String,
}

impl Console {
    /// Binds `listen` (loopback only, unless `password` is given; port 0 picks one) with a
    /// fresh launch token. With a password, the launch token opens a login form that asks it
    /// before the session cookie is set.
    pub async fn bind(
        listen: SocketAddr,
        sources: Sources,
        password: Option<&str>,
    ) -> Result<Console, String> {
        if let Some(p) = password {
            check_password(p)?;
        }
        check_listen(listen, password.is_some())?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot read the address listened on: {e}"))?;
        let token = security::random_token();
        let url = format!("http://{addr}/login?token={token}");
        let mut gate = security::Gate::new(addr, &token);
        if let Some(p) = password {
            gate = gate.with_password(p);
        }
        let app = Arc::new(App { sources, gate });
        Ok(Console { listener, app, url })
    }

    /// The address to open: it carries this launch's token, exchanged for a cookie at once.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serves until `shutdown` completes; returns what it was given back.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Arc<App>, String> {
        let app = self.app.clone();
        axum::serve(self.listener, router(self.app))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| format!("the console stopped: {e}"))?;
        Ok(app)
    }
}

/// Every route of the console, behind [`security::guard`] and with [`security::headers`].
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route(
            "/login",
            get(security::login).post(security::login_password),
        )
        .route("/static/console.js", get(pages::script))
        .route("/static/console.css", get(pages::style))
        .route("/collaborations", get(researcher::collaborations))
        .route("/tasks", get(researcher::tasks))
        .route(
            "/tasks/new",
            get(researcher::new_task).post(researcher::create),
        )
        .route("/tasks/{id}", get(researcher::task))
        .route("/tasks/{id}/results", get(researcher::results))
        .route(
            "/admin/organizations",
            get(admin::organizations).post(admin::create_organization),
        )
        .route(
            "/admin/collaborations",
            get(admin::collaborations).post(admin::create_collaboration),
        )
        .route("/admin/users", get(admin::users).post(admin::create_user))
        .route("/admin/users/{id}", get(admin::user))
        .route("/admin/users/{id}/disable", post(admin::disable_user))
        .route("/admin/users/{id}/enable", post(admin::enable_user))
        .route("/admin/users/{id}/password", post(admin::reset_password))
        .route("/admin/nodes", get(admin::nodes).post(admin::create_node))
        .route("/admin/nodes/{id}/key", post(admin::rotate_key))
        .route("/admin/algorithms", get(store::algorithms))
        .route("/node", get(owner::pending))
        .route("/node/runs/{id}", get(owner::show))
        .route("/node/policy", get(records::policy))
        .route("/node/decisions", get(records::decisions))
        .route("/node/audit", get(records::audit))
        .route("/node/audit/verify", get(records::verify))
        .route("/node/runs/{id}/release", post(owner::release))
        .route("/node/runs/{id}/refuse", post(owner::refuse))
        .route("/node/digests/approve", post(owner::approve))
        .route("/node/digests/refuse", post(owner::refuse_digest))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            security::guard,
        ))
        .layer(axum::middleware::from_fn(security::headers))
        .with_state(app)
}
