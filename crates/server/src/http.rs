//! The HTTP edge: extractors that only parse (bodies, queries, ids, bearer credentials), one
//! handler per route that calls one service method, and the single mapping from service errors
//! to status codes and error bodies.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, Extension, FromRequest, FromRequestParts, Path, Query, Request,
    State,
};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use warden_api as api;
use warden_api::{ErrorBody, ErrorCode};
use warden_reference::Reference;

use crate::config::LimitsConfig;
use crate::metrics::MetricsAccess;
use crate::service::{
    Bearer, CollaborationQuery, OrganizationQuery, PageRequest, RunQuery, RunUpdate, Service,
    ServiceError, TaskQuery, TaskRequest,
};
use crate::throttle::{SlotRefusal, Throttle};

/// How often a WebSocket session pings the node and re-checks its token.
const WS_PING_EVERY: Duration = Duration::from_secs(20);
/// Events sent per database read in a session.
const WS_BATCH: u32 = 200;

/// An error answer: status plus `{"error": {...}}`.
#[derive(Debug)]
pub struct ApiError(pub ErrorBody);

impl ApiError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError(ErrorBody::new(code, message))
    }
    fn field(code: ErrorCode, message: impl Into<String>, field: &str) -> Self {
        let mut b = ErrorBody::new(code, message);
        b.error.field = Some(field.to_owned());
        ApiError(b)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid { field, message } => {
                let mut b = ErrorBody::new(ErrorCode::InvalidRequest, message);
                b.error.field = field.map(str::to_owned);
                ApiError(b)
            }
            ServiceError::Unauthenticated(m) => ApiError::new(ErrorCode::Unauthenticated, m),
            ServiceError::Forbidden(d) => ApiError::new(ErrorCode::Forbidden, d.0),
            ServiceError::NotFound(m) => ApiError::new(ErrorCode::NotFound, m),
            ServiceError::Missing { field, message } => {
                ApiError::field(ErrorCode::NotFound, message, field)
            }
            ServiceError::Conflict(m) => ApiError::new(ErrorCode::Conflict, m),
            ServiceError::TooLarge(m) => ApiError::new(ErrorCode::PayloadTooLarge, m),
            ServiceError::Locked(m) => ApiError::new(ErrorCode::TooManyRequests, m),
            ServiceError::Storage(e) => {
                tracing::error!(error = %e, "storage error");
                match e {
                    crate::storage::StorageError::Database(sqlx::Error::PoolTimedOut)
                    | crate::storage::StorageError::Database(sqlx::Error::Io(_)) => ApiError::new(
                        ErrorCode::Unavailable,
                        "the database is unavailable; retry later",
                    ),
                    _ => ApiError::new(ErrorCode::Internal, "internal error; see the server log"),
                }
            }
            ServiceError::Auth(e) => {
                tracing::error!(error = %e, "credential error");
                ApiError::new(ErrorCode::Internal, "internal error; see the server log")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.error.code.status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, Json(self.0)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The bearer credential, if any. Only parsed here; resolution happens in the service.
#[derive(Debug)]
pub struct Credential(pub Option<Bearer>);

impl Credential {
    fn get(&self) -> Option<&Bearer> {
        self.0.as_ref()
    }
}

/// A route that needs a credential answers 401 at once when the request carries none (no
/// `Authorization: Bearer` header, or a malformed one), before its body is read or checked:
/// the service resolves a present one. The list routes parse their query string before it
/// (an unknown parameter is a 400 for anyone).
impl<S: Send + Sync> FromRequestParts<S> for Credential {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match bearer_of(&parts.headers) {
            Some(b) => Ok(Credential(Some(b))),
            None => Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "this endpoint needs `Authorization: Bearer <token>`; log in first",
            )),
        }
    }
}

/// The bearer credential of a route that may be called without one (`/metrics`).
#[derive(Debug)]
pub struct MaybeCredential(pub Option<Bearer>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeCredential {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(MaybeCredential(bearer_of(&parts.headers)))
    }
}

fn bearer_of(headers: &HeaderMap) -> Option<Bearer> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty() && token.len() <= 256).then(|| Bearer(token.to_owned()))
}

/// A JSON body, parsed with the request type's own rules (unknown fields refused); every
/// failure becomes a 400 (or 413) error body.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
            } else {
                ApiError::new(ErrorCode::InvalidRequest, "cannot read the request body")
            }
        })?;
        parse_body(&bytes).map(Body)
    }
}

/// The parse step of every JSON body (exposed for property tests). Every request body is a
/// JSON object: serde would otherwise also accept a struct written as an array of its field
/// values, which no client means to send.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.trim_ascii_start().first() == Some(&b'[') {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "the request body is not valid: it must be a JSON object, not an array",
        ));
    }
    let bad = |e: serde_json::Error| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("the request body is not valid: {e}"),
        )
    };
    let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(bad)?;
    integral_numbers(&mut value);
    serde_json::from_value(value).map_err(bad)
}

/// JSON has one number type: `7.0` is the integer 7 (JSON Schema's `integer` matches it),
/// so a number with no fractional part that a double holds exactly becomes an integer
/// before the body is read into its type. Others are left as they are (an integer field
/// refuses them).
fn integral_numbers(v: &mut serde_json::Value) {
    /// 2^53: every integer up to it is exact in a double.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match v {
        serde_json::Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && f.abs() <= EXACT {
                    // In range and integral: the conversion is exact.
                    #[allow(clippy::cast_possible_truncation)]
                    let i = f as i64;
                    *v = serde_json::Value::from(i);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(integral_numbers),
        serde_json::Value::Object(o) => o.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// A query string parsed with the type's rules (unknown parameters refused).
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(q)| Params(q))
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("the query string is not valid: {}", e.body_text()),
                )
            })
    }
}

/// The client's address (the TCP peer), when the server was started with connection info.
/// Behind a reverse proxy this is the proxy's address.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// A positive numeric id from the path.
#[derive(Debug, Clone, Copy)]
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let bad = || {
            ApiError::field(
                ErrorCode::InvalidRequest,
                "the id must be a positive integer",
                "id",
            )
        };
        let Path(id) = Path::<i64>::from_request_parts(parts, state)
            .await
            .map_err(|_| bad())?;
        if id <= 0 {
            return Err(bad());
        }
        Ok(Id(id))
    }
}

/// A collaboration and a member organization from the path (`{id}` and `{org}`), both
/// positive numeric ids.
#[derive(Debug, Clone, Copy)]
pub struct MemberPath {
    pub collaboration_id: i64,
    pub organization_id: i64,
}

impl<S: Send + Sync> FromRequestParts<S> for MemberPath {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((id, org)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "the path is not valid"))?;
        let positive = |v: &str, field: &str, what: &str| match v.parse::<i64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ApiError::field(
                ErrorCode::InvalidRequest,
                format!("the {what} must be a positive integer"),
                field,
            )),
        };
        Ok(MemberPath {
            collaboration_id: positive(&id, "id", "collaboration id")?,
            organization_id: positive(&org, "org", "organization id")?,
        })
    }
}

fn page(after: Option<i64>, limit: Option<u32>) -> ApiResult<PageRequest> {
    Ok(PageRequest::parse(after, limit)?)
}

fn created<T: serde::Serialize>(v: T) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

fn octets(data: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response()
}

// ---- router ----------------------------------------------------------------------------------

/// Builds the router and, from the same calls, the table of every (method, path) it serves,
/// so that the OpenAPI document can be checked against what is really routed.
struct Routes {
    router: Router<Service>,
    served: Vec<(Method, &'static str)>,
    /// The routes that take no query parameters (every route but those added with
    /// [`Routes::get_query`]); a query parameter there is refused before the handler runs.
    no_query: Vec<(Method, &'static str)>,
}

impl Routes {
    fn new() -> Self {
        Routes {
            router: Router::new(),
            served: Vec::new(),
            no_query: Vec::new(),
        }
    }

    fn on<H, T>(self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, Service>,
        T: 'static,
    {
        self.add(method, path, handler, false)
    }

    fn add<H, T>(mut self, method: Method, path: &'static str, handler: H, query: bool) -> Self
    where
        H: Handler<T, Service>,
        T: 'static,
    {
        let filter = match MethodFilter::try_from(method.clone()) {
            Ok(f) => f,
            // Only the methods below are used; an unknown one is a programming error that
            // the route-table test catches (the route is then missing from the table).
            Err(_) => return self,
        };
        let route = if query {
            on(filter, handler)
        } else {
            self.no_query.push((method.clone(), path));
            on(filter, handler).route_layer(middleware::from_fn(refuse_query))
        };
        self.router = self.router.route(path, route);
        self.served.push((method, path));
        self
    }
    fn get<H: Handler<T, Service>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.on(Method::GET, path, h)
    }
    /// A GET whose handler parses the query string itself (with `Params`).
    fn get_query<H: Handler<T, Service>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::GET, path, h, true)
    }
    fn post<H: Handler<T, Service>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.on(Method::POST, path, h)
    }
    fn put<H: Handler<T, Service>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.on(Method::PUT, path, h)
    }
    fn patch<H: Handler<T, Service>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.on(Method::PATCH, path, h)
    }
    fn delete<H: Handler<T, Service>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.on(Method::DELETE, path, h)
    }
}

/// Every route, with the body limits applied.
fn routes(limits: &LimitsConfig) -> Routes {
    let body_limit = usize::try_from(limits.max_body_bytes).unwrap_or(usize::MAX);
    let result_limit = usize::try_from(limits.max_result_bytes).unwrap_or(usize::MAX);
    let results = Routes::new()
        .get("/api/runs/{id}/result", get_result)
        .put("/api/runs/{id}/result", put_result)
        .get("/api/runs/{id}/logs", get_logs)
        .put("/api/runs/{id}/logs", put_logs);
    let api = Routes::new()
        .get("/api/health", health)
        .get("/api/openapi.json", openapi)
        .post("/api/auth/login", login)
        .post("/api/auth/refresh", refresh)
        .post("/api/auth/logout", logout)
        .post("/api/auth/node", node_login)
        .get("/api/auth/whoami", whoami)
        .post("/api/organizations", create_organization)
        .get_query("/api/organizations", list_organizations)
        .get("/api/organizations/{id}", get_organization)
        .post("/api/collaborations", create_collaboration)
        .get_query("/api/collaborations", list_collaborations)
        .get("/api/collaborations/{id}", get_collaboration)
        .post("/api/collaborations/{id}/members", add_member)
        .delete("/api/collaborations/{id}/members/{org}", remove_member)
        .post("/api/users", create_user)
        .get_query("/api/users", list_users)
        .post("/api/users/me/password", change_own_password)
        .get("/api/users/{id}", get_user)
        .patch("/api/users/{id}", update_user)
        .post("/api/users/{id}/password", reset_password)
        .post("/api/nodes", create_node)
        .get_query("/api/nodes", list_nodes)
        .get("/api/nodes/{id}", get_node)
        .post("/api/nodes/{id}/key", rotate_node_key)
        .post("/api/tasks", create_task)
        .get_query("/api/tasks", list_tasks)
        .get("/api/tasks/{id}", get_task)
        .post("/api/tasks/{id}/cancel", cancel_task)
        .get_query("/api/runs", list_runs)
        .get("/api/runs/{id}", get_run)
        .patch("/api/runs/{id}", update_run)
        .post("/api/runs/{id}/ack", ack_run)
        .get("/api/runs/{id}/input", get_input)
        .post("/api/runs/{id}/token", run_token)
        .put("/api/store-checkpoints", put_store_checkpoint)
        .get("/api/store-checkpoints", get_store_checkpoints)
        .get_query("/api/events", poll_events)
        .get_query("/api/events/ws", event_socket)
        .get("/metrics", metrics);
    let mut served = api.served;
    served.extend(results.served);
    let mut no_query = api.no_query;
    no_query.extend(results.no_query);
    Routes {
        router: Router::new()
            .merge(api.router.layer(DefaultBodyLimit::max(body_limit)))
            .merge(results.router.layer(DefaultBodyLimit::max(result_limit))),
        served,
        no_query,
    }
}

/// Every (method, path) the router serves, paths in axum's `{param}` syntax (the OpenAPI
/// syntax too).
pub fn served_routes() -> Vec<(Method, &'static str)> {
    routes(&LimitsConfig::default()).served
}

/// The (method, path) pairs that take no query parameters: any query parameter there is
/// refused with 400, before authentication (as the list routes refuse unknown ones).
pub fn routes_without_query() -> Vec<(Method, &'static str)> {
    routes(&LimitsConfig::default()).no_query
}

/// Refuses any query parameter on a route that takes none, naming the first one.
async fn refuse_query(req: Request, next: Next) -> Response {
    if req.uri().query().is_some_and(|q| !q.is_empty()) {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        return match Query::<Vec<(String, String)>>::try_from_uri(req.uri()) {
            Ok(Query(pairs)) => match pairs.into_iter().next() {
                Some((name, _)) => {
                    let shown = api::display::safe(&name);
                    ApiError::field(
                        ErrorCode::InvalidRequest,
                        format!(
                            "the query string is not valid: unknown parameter `{shown}`; {method} {path} takes no query parameters"
                        ),
                        &name,
                    )
                    .into_response()
                }
                None => next.run(req).await,
            },
            Err(e) => ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "the query string is not valid: {}; {method} {path} takes no query parameters",
                    e.body_text()
                ),
            )
            .into_response(),
        };
    }
    next.run(req).await
}

pub fn router(service: Service, metrics: MetricsAccess) -> Router {
    routes(service.limits())
        .router
        .fallback(not_found)
        // After every route is added: it is set on each route's own method router.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(service.clone(), count))
        .layer(Extension(metrics))
        .with_state(service)
}

async fn count(State(svc): State<Service>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    svc.metrics().count_status(resp.status().as_u16());
    resp
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!(
            "{method} is not allowed on {}; the Allow header lists the methods that are, and /api/openapi.json describes them",
            uri.path()
        ),
    )
}

async fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "no such endpoint; see /api/openapi.json",
    )
}

// ---- handlers --------------------------------------------------------------------------------

async fn health(State(svc): State<Service>) -> Response {
    match svc.health().await {
        Ok(()) => Json(api::Health {
            status: "ok".into(),
            database: "ok".into(),
        })
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            ApiError::new(ErrorCode::Unavailable, "the database is unavailable").into_response()
        }
    }
}

async fn openapi(State(svc): State<Service>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document(svc.limits()),
    )
        .into_response()
}

async fn metrics(
    State(svc): State<Service>,
    Extension(access): Extension<MetricsAccess>,
    MaybeCredential(cred): MaybeCredential,
) -> ApiResult<Response> {
    if !access.allows(cred.as_ref().map(|b| b.0.as_str())) {
        let message = if cred.is_some() {
            "the metrics token is not valid; send the token of the server's [metrics] token_file"
        } else {
            "GET /metrics needs `Authorization: Bearer <token>` with the token of the server's [metrics] token_file"
        };
        return Err(ApiError::new(ErrorCode::Unauthenticated, message));
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        svc.metrics().render(),
    )
        .into_response())
}

async fn login(
    State(svc): State<Service>,
    ClientAddr(addr): ClientAddr,
    Body(req): Body<api::LoginRequest>,
) -> Result<Json<api::TokenResponse>, LoginError> {
    throttle(svc.login_throttle(), addr, "login")?;
    Ok(Json(svc.login(req).await?))
}

async fn refresh(
    State(svc): State<Service>,
    Body(req): Body<api::RefreshRequest>,
) -> ApiResult<Json<api::TokenResponse>> {
    Ok(Json(svc.refresh(req).await?))
}

async fn logout(State(svc): State<Service>, cred: Credential) -> ApiResult<StatusCode> {
    svc.logout(cred.get()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn node_login(
    State(svc): State<Service>,
    ClientAddr(addr): ClientAddr,
    Body(req): Body<api::NodeLoginRequest>,
) -> Result<Json<api::TokenResponse>, LoginError> {
    throttle(svc.node_login_throttle(), addr, "node login")?;
    Ok(Json(svc.node_login(req).await?))
}

/// A login's failure: throttled (429 with `Retry-After`) or any other error.
#[derive(Debug)]
enum LoginError {
    Throttled { what: &'static str, secs: u64 },
    Api(ApiError),
}

impl From<ServiceError> for LoginError {
    fn from(e: ServiceError) -> Self {
        LoginError::Api(e.into())
    }
}

impl IntoResponse for LoginError {
    fn into_response(self) -> Response {
        match self {
            LoginError::Api(e) => e.into_response(),
            LoginError::Throttled { what, secs } => {
                let mut resp = ApiError::new(
                    ErrorCode::TooManyRequests,
                    format!("too many {what} attempts from this address; retry after {secs} s"),
                )
                .into_response();
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                resp
            }
        }
    }
}

/// Take a token from the address's login bucket.
fn throttle(bucket: &Throttle, addr: Option<IpAddr>, what: &'static str) -> Result<(), LoginError> {
    let Some(addr) = addr else {
        return Ok(());
    };
    let Err(wait) = bucket.check(addr, Instant::now()) else {
        return Ok(());
    };
    // Whole seconds, rounded up, at least 1.
    let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    // Debug level: whoever is throttled can trigger this as often as they like.
    tracing::debug!(%addr, retry_after = secs, "{what} throttled");
    Err(LoginError::Throttled { what, secs })
}

async fn whoami(State(svc): State<Service>, cred: Credential) -> ApiResult<Json<api::WhoAmI>> {
    Ok(Json(svc.whoami(cred.get()).await?))
}

async fn create_organization(
    State(svc): State<Service>,
    cred: Credential,
    Body(req): Body<api::CreateOrganization>,
) -> ApiResult<Response> {
    Ok(created(svc.create_organization(cred.get(), req).await?))
}

async fn list_organizations(
    State(svc): State<Service>,
    Params(q): Params<api::OrganizationQuery>,
    cred: Credential,
) -> ApiResult<Json<api::Page<api::Organization>>> {
    let filter = OrganizationQuery { name: q.name };
    Ok(Json(
        svc.list_organizations(cred.get(), filter, page(q.after, q.limit)?)
            .await?,
    ))
}

async fn get_organization(
    State(svc): State<Service>,
    cred: Credential,
    Id(id): Id,
) -> ApiResult<Json<api::Organization>> {
    Ok(Json(svc.organization(cred.get(), id).await?))
}

async fn create_collaboration(
    State(svc): State<Service>,
    cred: Credential,
    Body(req): Body<api::CreateCollaboration>,
) -> ApiResult<Response> {
    Ok(created(svc.create_collaboration(cred.get(), req).await?))
}

async fn add_member(
    State(svc): State<Service>,
    cred: Credential,
    Id(id): Id,
    Body(req): Body<api::CollaborationMember>,
) -> ApiResult<Json<api::Collaboration>> {
    Ok(Json(svc.add_member(cred.get(), id, req).await?))
}

async fn remove_member(
    State(svc): State<Service>,
    cred: Credential,
    member: MemberPath,
) -> ApiResult<Json<api::Collaboration>> {
    Ok(Json(
        svc.remove_member(cred.get(), member.collaboration_id, member.organization_id)
            .await?,
    ))
}

async fn list_collaborations(
    State(svc): State<Service>,
    Params(q): Params<api::CollaborationQuery>,
    cred: Credential,
) -> ApiResult<Json<api::Page<api::Collaboration>>> {
    let filter = CollaborationQuery {
        name: q.name,
        organization_id: q.organization_id,
    };
    Ok(Json(
        svc.list_collaborations(cred.get(), filter, page(q.after, q.limit)?)
            .await?,
    ))
}

async fn get_collaboration(
    State(svc): State<Service>,
    cred: Credential,
    Id(id): Id,
) -> ApiResult<Json<api::Collaboration>> {
    Ok(Json(svc.collaboration(cred.get(), id).await?))
}

async fn create_user(
    State(svc): State<Service>,
    cred: Credential,
    Body(req): Body<api::CreateUser>,
) -> ApiResult<Response> {
    Ok(created(svc.create_user(cred.get(), req).await?))
}

async fn list_users(
    State(svc): State<Service>,
    Params(q): Params<api::UserQuery>,
    cred: Credential,
) -> ApiResult<Json<api::Page<api::User>>> {
    Ok(Json(
        svc.list_users(cred.get(), q.organization_id, page(q.after, q.limit)?)
            .await?,
    ))
}

async fn get_user(
    State(svc): State<Service>,
    cred: Credential,
    Id(id): Id,
) -> ApiResult<Json<api::User>> {
    Ok(Json(svc.user(cred.get(), id).await?))
}

async fn update_user(
    State(svc): State<Service>,
    cred: Credential,
    Id(id): Id,
    Body(req): Body<api::UpdateUser>,
) -> ApiResult<Json<api::User>> {
    Ok(Json(svc.update_user(cred.get(), id, req).await?))
}

async fn change_own_password(
    State(svc): State<Service>,
    cred: Credential,
    Body(req): Body<api::ChangePassword>,
) -> ApiResult<Json<api::TokenResponse>> {
    Ok(Json(svc.change_own_password(cred.get(), req).await?))
}

async fn reset_password(
    State(svc): State<Service>,
    cred: Credential,
    Id(id): Id,
    Body(req): Body<api::ResetPassword>,
) -> ApiResult<StatusCode> {
    svc.reset_password(cred.get(), id, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate_node_key(
    State(svc): State<Service>,
    cred: Credential,
    Id(id): Id,
) -> ApiResult<Json<api::CreatedNode>> {
    Ok(Json(svc.rotate_node_key(cred.get(), id).await?))
}

async fn create_node(
    State(svc): State<Service>,
    cred: Credential,
    Body(req): Body<api::CreateNode>,
) -> ApiResult<Response> {
    Ok(created(svc.create_node(cred.get(), req).await?))
}

async fn list_nodes(
    State(svc): State<Service>,
    Params(q): Params<api::NodeQuery>,
    cred: Credential,
) -> ApiResult<Json<api::Page<api::Node>>> {
    Ok(Json(
        svc.list_nodes(cred.get(), q.collaboration_id, page(q.after, q.limit)?)
            .await?,
    ))
}

async fn get_node(
    State(svc): State<Service>,
    cred: Credential,
    Id(id): Id,
) -> ApiResult<Json<api::Node>> {
    Ok(Json(svc.node(cred.get(), id).await?))
}

async fn create_task(
    State(svc): State<Service>,
    cred: Credential,
    Body(req): Body<api::CreateTask>,
) -> ApiResult<Response> {
    let max = usize::try_from(svc.limits().max_targets).unwrap_or(usize::MAX);
    let req = TaskRequest::parse(req, max)?;
    Ok(created(svc.create_task(cred.get(), req).await?))
}

async fn list_tasks(
    State(svc): State<Service>,
    Params(q): Params<api::TaskQuery>,
    cred: Credential,
) -> ApiResult<Json<api::Page<api::Task>>> {
    let filter = TaskQuery {
        collaboration_id: q.collaboration_id,
        parent_task_id: q.parent_task_id,
        creator_user_id: q.creator_user_id,
        organization_id: q.organization_id,
        // Tasks store the normalised reference, so the filter is normalised the same way. A
        // value that is no reference is compared as it is: no stored (normal, parseable) image
        // equals it, so it matches no task.
        image: q
            .image
            .map(|i| Reference::parse(&i).map(|r| r.to_string()).unwrap_or(i)),
    };
    Ok(Json(
        svc.list_tasks(cred.get(), filter, page(q.after, q.limit)?)
            .await?,
    ))
}

async fn get_task(
    State(svc): State<Service>,
    cred: Credential,
    Id(id): Id,
) -> ApiResult<Json<api::TaskDetail>> {
    Ok(Json(svc.task(cred.get(), id).await?))
}

async fn cancel_task(
    State(svc): State<Service>,
    cred: Credential,
    Id(id): Id,
) -> ApiResult<Json<api::TaskDetail>> {
    Ok(Json(svc.cancel_task(cred.get(), id).await?))
}

async fn list_runs(
    State(svc): State<Service>,
    Params(q): Params<api::RunQuery>,
    cred: Credential,
) -> ApiResult<Json<api::Page<api::Run>>> {
    let filter = RunQuery {
        collaboration_id: q.collaboration_id,
        organization_id: q.organization_id,
        task_id: q.task_id,
        state: q.state,
    };
    Ok(Json(
        svc.list_runs(cred.get(), filter, page(q.after, q.limit)?)
            .await?,
    ))
}

async fn get_run(
    State(svc): State<Service>,
    cred: Credential,
    Id(id): Id,
) -> ApiResult<Json<api::Run>> {
    Ok(Json(svc.run(cred.get(), id).await?))
}

async fn update_run(
    State(svc): State<Service>,
    cred: Credential,
    Id(id): Id,
    Body(req): Body<api::UpdateRun>,
) -> ApiResult<Json<api::Run>> {
    let update = RunUpdate::parse(req)?;
    Ok(Json(svc.update_run(cred.get(), id, update).await?))
}

async fn ack_run(
    State(svc): State<Service>,
    cred: Credential,
    Id(id): Id,
) -> ApiResult<Json<api::Run>> {
    Ok(Json(svc.ack_run(cred.get(), id).await?))
}

/// A node reports the latest checkpoint of an algorithm store it verified (split views).
async fn put_store_checkpoint(
    State(svc): State<Service>,
    cred: Credential,
    Body(req): Body<api::store::RelayedCheckpoint>,
) -> ApiResult<StatusCode> {
    svc.report_store_checkpoint(cred.get(), req).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The store checkpoints nodes reported, for a node to compare with its own.
async fn get_store_checkpoints(
    State(svc): State<Service>,
    cred: Credential,
) -> ApiResult<Json<api::store::RelayedCheckpoints>> {
    Ok(Json(svc.store_checkpoints(cred.get()).await?))
}

async fn get_input(
    State(svc): State<Service>,
    cred: Credential,
    Id(id): Id,
) -> ApiResult<Response> {
    Ok(octets(svc.run_input(cred.get(), id).await?))
}

async fn run_token(
    State(svc): State<Service>,
    cred: Credential,
    Id(id): Id,
) -> ApiResult<Json<api::RunToken>> {
    Ok(Json(svc.run_token(cred.get(), id).await?))
}

/// An upload's body, or why it could not be read: `too_large` when over the route's cap,
/// "cannot read `what`" otherwise.
fn upload_body(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    too_large: &'static str,
    what: &str,
) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(ErrorCode::PayloadTooLarge, too_large)
        } else {
            ApiError::new(ErrorCode::InvalidRequest, format!("cannot read {what}"))
        }
    })
}

async fn put_result(
    State(svc): State<Service>,
    cred: Credential,
    Id(id): Id,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<StatusCode> {
    let body = upload_body(
        body,
        "the result is larger than the server accepts",
        "the result body",
    )?;
    svc.put_result(cred.get(), id, &body).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_result(
    State(svc): State<Service>,
    cred: Credential,
    Id(id): Id,
) -> ApiResult<Response> {
    Ok(octets(svc.result(cred.get(), id).await?))
}

async fn put_logs(
    State(svc): State<Service>,
    cred: Credential,
    Id(id): Id,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<StatusCode> {
    let body = upload_body(
        body,
        "the logs are larger than the server accepts",
        "the logs body",
    )?;
    svc.put_logs(cred.get(), id, &body).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_logs(State(svc): State<Service>, cred: Credential, Id(id): Id) -> ApiResult<Response> {
    Ok(octets(svc.logs(cred.get(), id).await?))
}

fn event_params(q: &api::EventQuery) -> ApiResult<(i64, u32)> {
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::field(
            ErrorCode::InvalidRequest,
            "after must be 0 or a positive event id",
            "after",
        ));
    }
    let limit = q.limit.unwrap_or(api::DEFAULT_PAGE_LIMIT);
    if limit == 0 || limit > api::MAX_PAGE_LIMIT {
        return Err(ApiError::field(
            ErrorCode::InvalidRequest,
            format!("limit must be between 1 and {}", api::MAX_PAGE_LIMIT),
            "limit",
        ));
    }
    Ok((after, limit))
}

/// Poll fallback: the events after `?after=`, oldest first.
async fn poll_events(
    State(svc): State<Service>,
    Params(q): Params<api::EventQuery>,
    cred: Credential,
) -> ApiResult<Json<Vec<api::Event>>> {
    let (after, limit) = event_params(&q)?;
    let node = svc.event_subscriber(cred.get()).await?;
    Ok(Json(svc.events(node, after, limit).await?))
}

/// Push: a WebSocket that first replays every event after `?after=` and then sends new ones
/// as they are committed, one JSON [`api::Event`] per text message.
async fn event_socket(
    State(svc): State<Service>,
    Params(q): Params<api::EventQuery>,
    cred: Credential,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let (after, _) = event_params(&q)?;
    let node = svc.event_subscriber(cred.get()).await?;
    let ws = ws.map_err(|r| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "this endpoint is a WebSocket and the upgrade failed ({}); connect with a WebSocket client, or poll GET /api/events",
                r.body_text()
            ),
        )
    })?;
    // The slot is taken before the upgrade and held by the session until it ends (or by
    // the upgrade callback, dropped with it if the upgrade never completes).
    let slot = match svc.session_slots().acquire(node) {
        Ok(()) => SlotGuard(svc.clone(), node),
        Err(refusal) => {
            let message = match refusal {
                SlotRefusal::Node(n) => format!(
                    "this node already has {n} event sessions open, the most allowed; close one (a node needs one) or poll GET /api/events"
                ),
                SlotRefusal::Total(n) => format!(
                    "the server already holds {n} event sessions, the most it allows; retry later or poll GET /api/events"
                ),
            };
            tracing::info!(
                collaboration = node.0,
                organization = node.1,
                ?refusal,
                "event session refused"
            );
            return Err(ApiError::new(ErrorCode::TooManyRequests, message));
        }
    };
    let bearer = cred.0;
    // A node's session carries small JSON events: tungstenite's default 128 KiB read and
    // write buffers per connection were most of the server's memory with thousands of nodes
    // connected (BENCHMARKS.md, "Scale: connected nodes"). Events are written at once.
    Ok(ws
        .max_message_size(64 * 1024)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .on_upgrade(move |socket| session(svc, socket, node, bearer, after, slot)))
}

struct SessionGuard(Service);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.session_closed();
    }
}

/// A reserved event-session slot of a node, released on drop.
struct SlotGuard(Service, (i64, i64));

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.session_slots().release(self.1);
    }
}

async fn session(
    svc: Service,
    mut socket: WebSocket,
    node: (i64, i64),
    bearer: Option<Bearer>,
    mut after: i64,
    _slot: SlotGuard,
) {
    svc.session_opened();
    let _guard = SessionGuard(svc.clone());
    // Subscribe before the first read so that nothing committed in between is missed.
    let sub = svc.hub().subscribe(node);
    // The first ping at a random point of the second half of the period, then every
    // period: thousands of sessions opened together (a restart of the server) do not all
    // re-check their token in the same seconds, which held up the deliveries due then.
    let first = tokio::time::Instant::now() + WS_PING_EVERY.mul_f64(0.5 + 0.5 * random_fraction());
    let mut ping = tokio::time::interval_at(first, WS_PING_EVERY);
    let mut read = true;
    loop {
        // The database read: what the session was told to read, a lagging mailbox, the
        // first read and the periodic safety net.
        while read {
            svc.event_read();
            let events = match svc.events(node, after, WS_BATCH).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read events for a session");
                    return;
                }
            };
            read = events.len() == WS_BATCH as usize;
            for e in events {
                if !send_event(&mut socket, &e).await {
                    return;
                }
                after = e.id;
            }
        }
        let mail = sub.mailbox().take();
        if mail.recheck {
            // The node's key was rotated: close now if this token died with it.
            if svc.event_subscriber(bearer.as_ref()).await.is_err() {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
        }
        if mail.read {
            read = true;
            continue;
        }
        if !mail.events.is_empty() {
            // Committed events handed over by the hub, in id order, each following every
            // event of this node before it (crate::events); those a read sent already are
            // skipped.
            let mut pushed = 0;
            for e in &mail.events {
                if e.id <= after {
                    continue;
                }
                if !send_event(&mut socket, e).await {
                    return;
                }
                after = e.id;
                pushed += 1;
            }
            svc.events_pushed(pushed);
            continue;
        }
        tokio::select! {
            () = sub.mailbox().changed() => {}
            _ = ping.tick() => {
                if svc.event_subscriber(bearer.as_ref()).await.is_err() {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                    return;
                }
                // Also a periodic safety net.
                read = true;
            }
            m = socket.recv() => match m {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// A fraction in [0, 1) from the process's random hash keys (no generator needed for a
/// spread of ping times).
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Send one event as a JSON text message; false when the session is over.
async fn send_event(socket: &mut WebSocket, e: &api::Event) -> bool {
    let Ok(text) = serde_json::to_string(e) else {
        return false;
    };
    socket.send(Message::Text(text.into())).await.is_ok()
}
