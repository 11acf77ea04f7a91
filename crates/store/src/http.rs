//! The HTTP edge: extractors that only parse (JSON bodies, queries, ids, the bearer), one
//! handler per route calling one service method, and the one mapping from service errors to
//! status codes and error bodies. The route table ([`ROUTES`]) also makes `/api/openapi.json`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use warden_api::store as wire;
use warden_api::{ErrorBody, ErrorCode};

use crate::service::{Service, ServiceError};
use crate::storage::{AccountRow, StorageError};

#[derive(Debug)]
pub struct ApiError(pub ErrorBody);

impl ApiError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError(ErrorBody::new(code, message))
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(m) => ApiError::new(ErrorCode::InvalidRequest, m),
            ServiceError::Unauthenticated(m) => ApiError::new(ErrorCode::Unauthenticated, m),
            ServiceError::Denied(m) => ApiError::new(ErrorCode::Forbidden, m),
            ServiceError::NotFound(m) => ApiError::new(ErrorCode::NotFound, m),
            ServiceError::Conflict(m) => ApiError::new(ErrorCode::Conflict, m),
            e @ ServiceError::Throttled(_) => {
                ApiError::new(ErrorCode::TooManyRequests, e.to_string())
            }
            ServiceError::Locked(m) => ApiError::new(ErrorCode::TooManyRequests, m),
            e @ ServiceError::Registry(_) => {
                ApiError::new(ErrorCode::InvalidRequest, e.to_string())
            }
            ServiceError::Storage(e) => {
                tracing::error!(error = %e, "storage error");
                match e {
                    StorageError::Database(sqlx::Error::PoolTimedOut)
                    | StorageError::Database(sqlx::Error::Io(_)) => ApiError::new(
                        ErrorCode::Unavailable,
                        "the database is unavailable; retry later",
                    ),
                    _ => ApiError::new(ErrorCode::Internal, "internal error; see the store log"),
                }
            }
            ServiceError::Log(e) => {
                tracing::error!(error = %e, "log error");
                ApiError::new(ErrorCode::Internal, "internal error; see the store log")
            }
            ServiceError::Auth(e) => {
                tracing::error!(error = %e, "credential error");
                ApiError::new(ErrorCode::Internal, "internal error; see the store log")
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

/// A JSON body; a malformed one is a 400 (413 when too large) with the error body.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    "the request body is too large",
                ))
            }
            Err(e) => Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("the request body is not valid: {}", e.body_text()),
            )),
        }
    }
}

fn bearer_of(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// The authenticated caller.
#[derive(Debug)]
pub struct Caller(pub AccountRow);

impl FromRequestParts<Service> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, s: &Service) -> Result<Self, ApiError> {
        let b = bearer_of(&parts.headers).ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthenticated,
                "this needs an access token: log in with `warden store login`",
            )
        })?;
        Ok(Caller(s.authenticate(&b).await?))
    }
}

/// A query string; unknown parameters are refused.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, s: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, s)
            .await
            .map(|Query(v)| Params(v))
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("bad query string: {}", e.body_text()),
                )
            })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoQuery {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionQuery {
    algorithm: Option<String>,
    state: Option<String>,
    reviewer: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeQuery {
    start: u64,
    end: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionQuery {
    index: u64,
    size: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    from: u64,
    to: u64,
}

/// Every route: method, path, who, summary (for the OpenAPI document and docs/store.md).
pub const ROUTES: &[(&str, &str, &str, &str)] = &[
    (
        "get",
        "/api/health",
        "anyone",
        "health of the store and its database",
    ),
    ("get", "/api/openapi.json", "anyone", "this document"),
    ("get", "/metrics", "anyone", "Prometheus metrics"),
    (
        "get",
        "/api/store",
        "anyone",
        "the store's name, keys and review rules",
    ),
    (
        "post",
        "/api/auth/login",
        "anyone",
        "log in with a password",
    ),
    (
        "post",
        "/api/auth/refresh",
        "anyone",
        "spend a refresh token for a new session",
    ),
    ("post", "/api/auth/logout", "account", "revoke the session"),
    ("get", "/api/me", "account", "the caller's account"),
    (
        "put",
        "/api/me/key",
        "account",
        "register the caller's public key (once)",
    ),
    ("get", "/api/organizations", "anyone", "organizations"),
    (
        "post",
        "/api/organizations",
        "administrator",
        "create an organization",
    ),
    (
        "get",
        "/api/accounts",
        "anyone",
        "accounts with their registered keys",
    ),
    (
        "post",
        "/api/accounts",
        "administrator",
        "create an account",
    ),
    (
        "get",
        "/api/algorithms",
        "anyone",
        "algorithms with their versions",
    ),
    ("get", "/api/algorithms/{name}", "anyone", "one algorithm"),
    (
        "get",
        "/api/versions",
        "anyone",
        "versions; ?algorithm= ?state= ?reviewer=",
    ),
    ("post", "/api/versions", "developer", "submit a version"),
    ("get", "/api/versions/{id}", "anyone", "one version"),
    (
        "post",
        "/api/versions/{id}/assign",
        "administrator or the reviewer itself",
        "assign a reviewer",
    ),
    (
        "post",
        "/api/versions/{id}/reviews",
        "assigned reviewer",
        "an approval or rejection envelope",
    ),
    (
        "post",
        "/api/versions/{id}/revoke",
        "reviewer (envelope) or administrator",
        "revoke",
    ),
    (
        "post",
        "/api/versions/{id}/reinstate",
        "administrator",
        "reinstate a replaced version",
    ),
    (
        "get",
        "/api/log/checkpoint",
        "anyone",
        "the latest signed checkpoint (C2SP signed note)",
    ),
    (
        "get",
        "/api/log/entries",
        "anyone",
        "leaves ?start=&end= (at most 1000)",
    ),
    (
        "get",
        "/api/log/proof/inclusion",
        "anyone",
        "inclusion proof ?index=&size=",
    ),
    (
        "get",
        "/api/log/proof/consistency",
        "anyone",
        "consistency proof ?from=&to=",
    ),
    (
        "get",
        "/api/evidence/{digest}",
        "anyone",
        "approvals, rejections and revocations of a digest with inclusion proofs",
    ),
];

fn openapi() -> serde_json::Value {
    let mut paths = serde_json::Map::new();
    for (method, path, who, summary) in ROUTES {
        let entry = paths
            .entry(path.to_string())
            .or_insert_with(|| serde_json::json!({}));
        let mut op = serde_json::json!({
            "summary": summary,
            "description": format!("who: {who}"),
            "responses": {"200": {"description": "ok"}, "default": {"description": "error body {\"error\": {\"code\", \"message\"}}"}},
        });
        if *who != "anyone" {
            op["security"] = serde_json::json!([{"bearer": []}]);
        }
        entry[*method] = op;
    }
    serde_json::json!({
        "openapi": "3.1.0",
        "info": {"title": "Warden algorithm store", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    })
}

async fn health(
    State(s): State<Service>,
    Params(NoQuery {}): Params<NoQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    s.health().await?;
    Ok(Json(serde_json::json!({"status": "ok", "store": s.name()})))
}

async fn openapi_doc() -> Json<serde_json::Value> {
    Json(openapi())
}

async fn metrics(State(s): State<Service>) -> Response {
    let c = s.counters();
    let mut out = String::new();
    let mut line = |name: &str, help: &str, kind: &str, v: u64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
        ));
    };
    line(
        "warden_store_log_size",
        "leaves in the transparency log",
        "gauge",
        s.log_size(),
    );
    line(
        "warden_store_logins_ok_total",
        "successful logins",
        "counter",
        c.logins_ok.load(Ordering::Relaxed),
    );
    line(
        "warden_store_logins_failed_total",
        "failed logins",
        "counter",
        c.logins_failed.load(Ordering::Relaxed),
    );
    line(
        "warden_store_submissions_total",
        "versions submitted",
        "counter",
        c.submissions.load(Ordering::Relaxed),
    );
    line(
        "warden_store_approvals_total",
        "approvals recorded",
        "counter",
        c.approvals.load(Ordering::Relaxed),
    );
    line(
        "warden_store_rejections_total",
        "rejections recorded",
        "counter",
        c.rejections.load(Ordering::Relaxed),
    );
    line(
        "warden_store_revocations_total",
        "revocations recorded",
        "counter",
        c.revocations.load(Ordering::Relaxed),
    );
    line(
        "warden_store_reinstatements_total",
        "reinstatements recorded",
        "counter",
        c.reinstatements.load(Ordering::Relaxed),
    );
    line(
        "warden_store_refused_envelopes_total",
        "review envelopes refused",
        "counter",
        c.refused_envelopes.load(Ordering::Relaxed),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

async fn store_info(
    State(s): State<Service>,
    Params(NoQuery {}): Params<NoQuery>,
) -> Json<wire::StoreInfo> {
    Json(s.info())
}

async fn login(
    State(s): State<Service>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Body(req): Body<wire::LoginRequest>,
) -> ApiResult<Json<wire::Session>> {
    Ok(Json(s.login(addr.ip(), req).await?))
}

async fn refresh(
    State(s): State<Service>,
    Body(req): Body<wire::RefreshRequest>,
) -> ApiResult<Json<wire::Session>> {
    Ok(Json(s.refresh(req).await?))
}

async fn logout(
    State(s): State<Service>,
    headers: HeaderMap,
    Caller(_): Caller,
) -> ApiResult<StatusCode> {
    if let Some(b) = bearer_of(&headers) {
        s.logout(&b).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn me(State(s): State<Service>, Caller(who): Caller) -> Json<wire::Account> {
    Json(s.me(&who))
}

async fn register_key(
    State(s): State<Service>,
    Caller(who): Caller,
    Body(req): Body<wire::RegisterKey>,
) -> ApiResult<Json<wire::Account>> {
    Ok(Json(s.register_key(&who, req).await?))
}

async fn organizations(State(s): State<Service>) -> ApiResult<Json<Vec<wire::Organization>>> {
    Ok(Json(s.organizations().await?))
}

async fn create_organization(
    State(s): State<Service>,
    Caller(who): Caller,
    Body(req): Body<wire::CreateOrganization>,
) -> ApiResult<(StatusCode, Json<wire::Organization>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.create_organization(&who, req).await?),
    ))
}

async fn accounts(State(s): State<Service>) -> ApiResult<Json<Vec<wire::Account>>> {
    Ok(Json(s.accounts().await?))
}

async fn create_account(
    State(s): State<Service>,
    Caller(who): Caller,
    Body(req): Body<wire::CreateAccount>,
) -> ApiResult<(StatusCode, Json<wire::Account>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.create_account(&who, req).await?),
    ))
}

async fn algorithms(State(s): State<Service>) -> ApiResult<Json<Vec<wire::Algorithm>>> {
    Ok(Json(s.algorithms().await?))
}

async fn algorithm(
    State(s): State<Service>,
    Path(name): Path<String>,
) -> ApiResult<Json<wire::Algorithm>> {
    Ok(Json(s.algorithm(&name).await?))
}

async fn versions(
    State(s): State<Service>,
    Params(q): Params<VersionQuery>,
) -> ApiResult<Json<Vec<wire::Version>>> {
    let state = match q.state.as_deref() {
        Some(st) => Some(wire::VersionState::parse(st).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                "state must be submitted, under_review, approved, rejected, revoked or replaced",
            )
        })?),
        None => None,
    };
    Ok(Json(
        s.versions(q.algorithm.as_deref(), state, q.reviewer.as_deref())
            .await?,
    ))
}

async fn submit(
    State(s): State<Service>,
    Caller(who): Caller,
    Body(req): Body<wire::Submission>,
) -> ApiResult<(StatusCode, Json<wire::Version>)> {
    Ok((StatusCode::CREATED, Json(s.submit(&who, req).await?)))
}

fn id_of(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|i| *i > 0).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "the version id must be a positive integer",
        )
    })
}

async fn version(
    State(s): State<Service>,
    Path(id): Path<String>,
) -> ApiResult<Json<wire::Version>> {
    Ok(Json(s.version(id_of(&id)?).await?))
}

async fn assign(
    State(s): State<Service>,
    Path(id): Path<String>,
    Caller(who): Caller,
    Body(req): Body<wire::Assign>,
) -> ApiResult<Json<wire::Version>> {
    Ok(Json(s.assign(&who, id_of(&id)?, req).await?))
}

async fn review(
    State(s): State<Service>,
    Path(id): Path<String>,
    Caller(who): Caller,
    Body(req): Body<wire::SubmitReview>,
) -> ApiResult<Json<wire::Version>> {
    Ok(Json(s.review(&who, id_of(&id)?, req).await?))
}

async fn revoke(
    State(s): State<Service>,
    Path(id): Path<String>,
    Caller(who): Caller,
    Body(req): Body<wire::Revoke>,
) -> ApiResult<Json<wire::Version>> {
    Ok(Json(s.revoke(&who, id_of(&id)?, req).await?))
}

async fn reinstate(
    State(s): State<Service>,
    Path(id): Path<String>,
    Caller(who): Caller,
    Body(req): Body<wire::Reinstate>,
) -> ApiResult<Json<wire::Version>> {
    Ok(Json(s.reinstate(&who, id_of(&id)?, req).await?))
}

async fn checkpoint(State(s): State<Service>) -> ApiResult<Response> {
    let note = s.checkpoint()?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response())
}

async fn entries(
    State(s): State<Service>,
    Params(q): Params<RangeQuery>,
) -> ApiResult<Json<wire::LogEntries>> {
    Ok(Json(s.entries(q.start, q.end).await?))
}

async fn inclusion(
    State(s): State<Service>,
    Params(q): Params<InclusionQuery>,
) -> ApiResult<Json<wire::InclusionProof>> {
    Ok(Json(s.inclusion(q.index, q.size)?))
}

async fn consistency(
    State(s): State<Service>,
    Params(q): Params<ConsistencyQuery>,
) -> ApiResult<Json<wire::ConsistencyProof>> {
    Ok(Json(s.consistency(q.from, q.to)?))
}

async fn evidence(
    State(s): State<Service>,
    Path(digest): Path<String>,
) -> ApiResult<Json<wire::Evidence>> {
    Ok(Json(s.evidence(&digest).await?))
}

async fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "no such route; see GET /api/openapi.json",
    )
}

/// The router over `service`, bodies capped at `max_body` bytes.
pub fn router(service: Service, max_body: usize) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/openapi.json", get(openapi_doc))
        .route("/metrics", get(metrics))
        .route("/api/store", get(store_info))
        .route("/api/auth/login", post(login))
        .route("/api/auth/refresh", post(refresh))
        .route("/api/auth/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/me/key", put(register_key))
        .route(
            "/api/organizations",
            get(organizations).post(create_organization),
        )
        .route("/api/accounts", get(accounts).post(create_account))
        .route("/api/algorithms", get(algorithms))
        .route("/api/algorithms/{name}", get(algorithm))
        .route("/api/versions", get(versions).post(submit))
        .route("/api/versions/{id}", get(version))
        .route("/api/versions/{id}/assign", post(assign))
        .route("/api/versions/{id}/reviews", post(review))
        .route("/api/versions/{id}/revoke", post(revoke))
        .route("/api/versions/{id}/reinstate", post(reinstate))
        .route("/api/log/checkpoint", get(checkpoint))
        .route("/api/log/entries", get(entries))
        .route("/api/log/proof/inclusion", get(inclusion))
        .route("/api/log/proof/consistency", get(consistency))
        .route("/api/evidence/{digest}", get(evidence))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_lists_every_route() {
        let doc = openapi();
        for (method, path, _, _) in ROUTES {
            assert!(doc["paths"][*path][*method].is_object(), "{method} {path}");
        }
        assert!(doc["paths"]["/api/versions"]["post"]["security"].is_array());
        assert!(doc["paths"]["/api/log/checkpoint"]["get"]["security"].is_null());
    }
}
