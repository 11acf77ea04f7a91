//! The OpenAPI 3.1 document served at `/api/openapi.json`, written by hand from the routes in
//! [`crate::http::router`] and the wire types in `warden-api`.

use serde_json::{Value, json};

fn op(summary: &str, body: Option<&str>, ok: &str) -> Value {
    let mut v = json!({
        "summary": summary,
        "responses": {
            ok: {"description": "success"},
            "400": {"$ref": "#/components/responses/Error"},
            "401": {"$ref": "#/components/responses/Error"},
            "403": {"$ref": "#/components/responses/Error"},
            "404": {"$ref": "#/components/responses/Error"}
        }
    });
    if let Some(schema) = body {
        v["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
        });
    }
    v
}

fn page_params(extra: &[&str]) -> Value {
    let mut p = vec![
        json!({"name": "after", "in": "query", "schema": {"type": "integer"}, "description": "cursor: the `next` of the previous page"}),
        json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": warden_api::MAX_PAGE_LIMIT}}),
    ];
    for name in extra {
        let ty = if matches!(*name, "state" | "name" | "image") {
            "string"
        } else {
            "integer"
        };
        p.push(json!({"name": name, "in": "query", "schema": {"type": ty}}));
    }
    Value::Array(p)
}

fn list(summary: &str, extra: &[&str]) -> Value {
    let mut v = op(summary, None, "200");
    v["parameters"] = page_params(extra);
    v
}

/// The document as a JSON string.
pub fn document() -> String {
    let id = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1}}]);
    let with_id = |mut v: Value| {
        v["parameters"] = id.clone();
        v
    };
    let conflict = |mut v: Value| {
        v["responses"]["409"] = json!({"$ref": "#/components/responses/Error"});
        v
    };
    let mut change_password = op(
        "change your own password, giving the current one (a wrong one counts towards the login lockout); every session is revoked and a new one returned",
        Some("ChangePassword"),
        "200",
    );
    change_password["responses"]["409"] = json!({"$ref": "#/components/responses/Error"});
    // Logins are limited per client address: 429 with `Retry-After` (seconds).
    let throttled = |mut v: Value| {
        v["responses"]["429"] = json!({"description": "too many logins from this address", "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds until a login is accepted again"}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}});
        v
    };
    change_password["responses"]["429"] = json!({"$ref": "#/components/responses/Error"});
    // 400: not an upgrade; 429: the node's or the server's cap on open sessions.
    // 409: the nonce is already used by another task of the collaboration.
    let mut create_task = op(
        "create a task and one run per target organization",
        Some("CreateTask"),
        "201",
    );
    create_task["responses"]["409"] = json!({"$ref": "#/components/responses/Error"});
    let mut event_socket = op("node: WebSocket push of events after ?after=", None, "101");
    event_socket["responses"]["101"] = json!({"description": "switching protocols"});
    event_socket["responses"]["429"] = json!({"$ref": "#/components/responses/Error"});
    event_socket["parameters"] = page_params(&[]);
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "Warden coordination server", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}, "metricsToken": {"type": "http", "scheme": "bearer", "description": "the token in the file named by the server's `[metrics] token_file`"}},
            "responses": {"Error": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}},
            "schemas": {
                "ErrorBody": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string", "enum": ["invalid_request", "unauthenticated", "forbidden", "not_found", "method_not_allowed", "conflict", "payload_too_large", "too_many_requests", "internal", "unavailable"]},
                    "message": {"type": "string"}, "field": {"type": "string"}}}}},
                "LoginRequest": {"type": "object", "additionalProperties": false, "required": ["username", "password"], "properties": {"username": {"type": "string"}, "password": {"type": "string", "maxLength": 256}}},
                "RefreshRequest": {"type": "object", "additionalProperties": false, "required": ["refresh_token"], "properties": {"refresh_token": {"type": "string"}}},
                "NodeLoginRequest": {"type": "object", "additionalProperties": false, "required": ["api_key"], "properties": {"api_key": {"type": "string"}}},
                "CreateOrganization": {"type": "object", "additionalProperties": false, "required": ["name", "public_key"], "properties": {"name": {"type": "string"}, "public_key": {"type": "string", "description": "base64 X25519 public key"}}},
                "CreateCollaboration": {"type": "object", "additionalProperties": false, "required": ["name", "organizations"], "properties": {"name": {"type": "string"}, "organizations": {"type": "array", "items": {"type": "integer"}}, "encrypted": {"type": "boolean", "default": true}}},
                "CreateUser": {"type": "object", "additionalProperties": false, "required": ["username", "password", "role"], "properties": {"username": {"type": "string"}, "password": {"type": "string", "minLength": 12, "maxLength": 256}, "role": {"type": "string", "enum": ["root", "org_admin", "researcher", "viewer"]}, "organization_id": {"type": "integer"}}},
                "UpdateUser": {"type": "object", "additionalProperties": false, "minProperties": 1, "properties": {"disabled": {"type": "boolean", "description": "true: login refused and every token revoked at once; false: enabled again"}}},
                "ChangePassword": {"type": "object", "additionalProperties": false, "required": ["current_password", "new_password"], "properties": {"current_password": {"type": "string", "maxLength": 256}, "new_password": {"type": "string", "minLength": 12, "maxLength": 256}}},
                "ResetPassword": {"type": "object", "additionalProperties": false, "required": ["password"], "properties": {"password": {"type": "string", "minLength": 12, "maxLength": 256}}},
                "CreateNode": {"type": "object", "additionalProperties": false, "required": ["organization_id", "collaboration_id"], "properties": {"organization_id": {"type": "integer"}, "collaboration_id": {"type": "integer"}}},
                "CreateTask": {"type": "object", "additionalProperties": false, "required": ["collaboration_id", "image", "inputs"], "properties": {
                    "collaboration_id": {"type": "integer"}, "name": {"type": "string"}, "image": {"type": "string"},
                    "inputs": {"type": "array", "items": {"type": "object", "additionalProperties": false, "required": ["organization_id", "input"], "properties": {"organization_id": {"type": "integer"}, "input": {"type": "string", "contentEncoding": "base64"}}}},
                    "parent_task_id": {"type": "integer"},
                    "nonce": {"type": "string", "minLength": warden_seal::envelope::MIN_NONCE, "maxLength": warden_seal::envelope::MAX_NONCE, "pattern": "^[0-9A-Za-z_-]+$",
                        "description": "chosen by whoever seals the inputs and bound inside each sealed input; unique within the collaboration (409 when another task has it); echoed on the task"}}},
                "UpdateRun": {"type": "object", "additionalProperties": false, "required": ["state"], "properties": {"state": {"type": "string", "enum": ["admitted", "running", "awaiting_approval", "awaiting_release", "completed", "failed", "rejected"]}, "reason": {"type": "string"}, "digest": {"type": "string"}}}
            }
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/health": {"get": op("database reachability", None, "200")},
            "/api/openapi.json": {"get": {"summary": "this document", "security": [], "responses": {"200": {"description": "the OpenAPI document", "content": {"application/json": {}}}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (text exposition format)",
                "description": "with `[metrics] token_file` set, only the bearer token in that file is accepted (401 otherwise); without it the endpoint is open and the server warns at start",
                "security": [{"metricsToken": []}, {}],
                "responses": {"200": {"description": "metrics", "content": {"text/plain": {}}}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}}}},
            "/api/auth/login": {"post": throttled(op("user login: access and refresh token", Some("LoginRequest"), "200"))},
            "/api/auth/refresh": {"post": op("rotate a refresh token", Some("RefreshRequest"), "200")},
            "/api/auth/logout": {"post": op("revoke the session of the access token", None, "204")},
            "/api/auth/node": {"post": throttled(op("node login with its API key", Some("NodeLoginRequest"), "200"))},
            "/api/auth/whoami": {"get": op("who the token belongs to", None, "200")},
            "/api/organizations": {"post": op("create an organization (root)", Some("CreateOrganization"), "201"), "get": list("organizations sharing a collaboration with the caller; name: exact", &["name"])},
            "/api/organizations/{id}": {"get": with_id(op("one organization", None, "200"))},
            "/api/collaborations": {"post": op("create a collaboration (root)", Some("CreateCollaboration"), "201"), "get": list("collaborations of the caller; name: exact; organization_id: collaborations it is a member of", &["name", "organization_id"])},
            "/api/collaborations/{id}": {"get": with_id(op("one collaboration", None, "200"))},
            "/api/users": {"post": op("create a user", Some("CreateUser"), "201"), "get": list("users", &["organization_id"])},
            "/api/users/me/password": {"post": change_password},
            "/api/users/{id}": {"get": with_id(op("one user", None, "200")), "patch": with_id(op("disable or enable a user (root; org admin for its own organization); disabling revokes every token of the user at once; nobody disables themselves or the last enabled root", Some("UpdateUser"), "200"))},
            "/api/users/{id}/password": {"post": with_id(op("set another user's password (root; org admin for its own organization); clears its lockout and revokes every session", Some("ResetPassword"), "204"))},
            "/api/nodes": {"post": op("create a node; the API key is shown once", Some("CreateNode"), "201"), "get": list("nodes", &["collaboration_id"])},
            "/api/nodes/{id}": {"get": with_id(op("one node", None, "200"))},
            "/api/nodes/{id}/key": {"post": with_id(op("rotate the node's API key (root; org admin of the node's organization): the new key is shown once; the old key and every node token issued under it stop working at once", None, "200"))},
            "/api/tasks": {"post": create_task, "get": list("tasks, newest first; organization_id: the creating organization; image: the reference, normalised before comparing", &["collaboration_id", "parent_task_id", "creator_user_id", "organization_id", "image"])},
            "/api/tasks/{id}": {"get": with_id(op("one task with its runs; creator_username names the requesting user (for a subtask, the root task's creator); nonce is the one given at creation", None, "200"))},
            "/api/runs": {"get": list("runs, newest first", &["collaboration_id", "organization_id", "task_id", "state"])},
            "/api/runs/{id}": {"get": with_id(op("one run", None, "200")), "patch": with_id(op("node: report a state transition", Some("UpdateRun"), "200"))},
            "/api/runs/{id}/ack": {"post": with_id(op("node: acknowledge delivery (idempotent)", None, "200"))},
            "/api/runs/{id}/input": {"get": with_id(op("node: the run's encrypted input (octet-stream)", None, "200"))},
            "/api/runs/{id}/token": {"post": with_id(op("node: a token for the run's algorithm", None, "200"))},
            "/api/runs/{id}/result": {
                "put": with_id(conflict(op("node: upload the encrypted result (octet-stream); 409 unless the run is running or awaiting release (a cancelled run takes none)", None, "204"))),
                "get": with_id(op("the encrypted result (octet-stream)", None, "200"))
            },
            "/api/runs/{id}/logs": {
                "put": with_id(conflict(op("node: upload the run's logs, sealed for the requester (octet-stream; the same size cap as a result); only when the node's policy releases them; 409 unless the run is running or awaiting release (a cancelled run takes none)", None, "204"))),
                "get": with_id(op("the run's sealed logs (octet-stream), for whoever may read its result; 404 when its node released none", None, "200"))
            },
            "/api/events": {"get": {"summary": "node: poll events after ?after=", "parameters": page_params(&[]), "responses": {"200": {"description": "events, oldest first"}}}},
            "/api/events/ws": {"get": event_socket}
        }
    });
    // Split views: nodes relay the store checkpoints they verified (outside the macro above,
    // which is at serde_json's recursion limit).
    doc["paths"]["/api/store-checkpoints"] = json!({
        "put": op("node: report the latest checkpoint of an algorithm store it verified (kept per store, key and node when larger; the server checks only its shape)", Some("RelayedCheckpoint"), "204"),
        "get": op("node: the latest store checkpoints every node reported (split views: each node verifies them under the store key it pins and checks them against its own)", None, "200")
    });
    doc["components"]["schemas"]["RelayedCheckpoint"] = json!({"type": "object", "additionalProperties": false, "required": ["store", "key", "checkpoint"], "properties": {"store": {"type": "string", "pattern": "^[a-z0-9._-]{1,64}$"}, "key": {"type": "string", "maxLength": warden_api::store::MAX_RELAYED_KEY, "description": "the C2SP verifier key warden-store/<store>+<hex>+<base64>"}, "checkpoint": {"type": "string", "maxLength": warden_api::store::MAX_RELAYED_CHECKPOINT, "description": "the signed note as the store served it"}}});
    // Adding an organization to a collaboration (root).
    doc["paths"]["/api/collaborations/{id}/members"] = json!({
        "post": with_id(conflict(op("add an organization to the collaboration (root); answers the collaboration with its members (409: already a member)", Some("CollaborationMember"), "200")))
    });
    doc["components"]["schemas"]["CollaborationMember"] = json!({"type": "object", "additionalProperties": false, "required": ["organization_id"], "properties": {"organization_id": {"type": "integer"}}});
    // Cancellation (the task's requester, an org admin of its organization, root).
    doc["paths"]["/api/tasks/{id}/cancel"] = json!({
        "post": with_id(conflict(op("cancel a task (its requester; an org admin of the organization that created it; root): every run that has not ended becomes cancelled and its node is told to stop it; final runs keep their state; answers the task with its runs; again on a cancelled task answers it unchanged (409: every run had ended before)", None, "200")))
    });
    doc.to_string()
}
