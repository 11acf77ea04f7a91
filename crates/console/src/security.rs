//! What stands between the console and everything else on this machine and in the browser: the
//! loopback-only listen address, the launch token exchanged for an HttpOnly SameSite=Strict
//! session cookie, the Host and Origin checks (DNS rebinding, cross-site forms), the CSRF token
//! of every form, and the headers every answer carries (a strict Content-Security-Policy, no
//! framing, no sniffing, no caching, no referrer to other sites).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand_core::{OsRng, RngCore as _};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::App;

/// The Content-Security-Policy of every answer: nothing but this console's own script, style
/// and images; no inline script or style, no plugin, no framing, forms only to itself.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                       base-uri 'none'";

/// The name of the form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// Largest form body read.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The shortest console password accepted (`--password-file`, `WARDEN_UI_PASSWORD`).
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Refuses a listen address that is not loopback unless a password is set (`password`): the
/// console holds the researcher's session and shows held results in plaintext, so without a
/// password it is for this machine only. Beyond loopback the address must be named (not
/// 0.0.0.0 or [::]): the Host check needs the one address the console answers to.
pub fn check_listen(addr: SocketAddr, password: bool) -> Result<(), String> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    if !password {
        return Err(format!(
            "the console listens on loopback only (127.0.0.1 or [::1]) unless a password is set \
             (--password-file or WARDEN_UI_PASSWORD), not on {addr}: it holds your session and \
             shows held results in plaintext; or reach it from another machine through an SSH \
             tunnel (ssh -L PORT:127.0.0.1:PORT)"
        ));
    }
    if addr.ip().is_unspecified() {
        return Err(format!(
            "name the one address to listen on, not {addr}: the console answers only to the \
             Host it listens on (DNS rebinding), so it cannot listen on every interface"
        ));
    }
    Ok(())
}

/// Refuses a console password that is too short to stand on a network.
pub fn check_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the console's password has {n} characters; it needs at least {MIN_PASSWORD_CHARS}"
        ));
    }
    Ok(())
}

/// 32 random bytes, hex.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// What a logged-in browser holds: its session (by the cookie) and the CSRF token of its forms.
#[derive(Debug, Clone)]
pub struct Session {
    pub csrf: String,
}

/// The launch token, the sessions it opened, and who may be talked to.
#[derive(Debug)]
pub struct Gate {
    launch: [u8; 32],
    /// The Host header values this console answers to.
    hosts: Vec<String>,
    /// The Origin header values it accepts.
    origins: Vec<String>,
    cookie: String,
    /// sha256 of the session cookie -> session.
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    /// sha256 of the password asked by the login form before the cookie, when one is set.
    password: Option<[u8; 32]>,
    /// Held by each password check; a wrong password keeps it a second, so guesses are one
    /// a second whatever the number of connections.
    attempts: tokio::sync::Mutex<()>,
}

impl Gate {
    /// A gate for a console bound to `addr`, opened by `launch_token`.
    pub fn new(addr: SocketAddr, launch_token: &str) -> Gate {
        let port = addr.port();
        let mut hosts = vec![addr.to_string()];
        if addr.ip().is_loopback() {
            hosts.push(format!("localhost:{port}"));
        }
        let origins = hosts.iter().map(|h| format!("http://{h}")).collect();
        Gate {
            launch: digest(launch_token),
            hosts,
            origins,
            // Cookies do not tell ports apart: two consoles on one machine keep their own.
            cookie: format!("warden_console_{port}"),
            sessions: Mutex::new(HashMap::new()),
            password: None,
            attempts: tokio::sync::Mutex::new(()),
        }
    }

    /// The same gate, asking `password` in a login form before it sets the session cookie.
    pub fn with_password(mut self, password: &str) -> Gate {
        self.password = Some(digest(password));
        self
    }

    /// Whether the login asks a password.
    pub fn asks_password(&self) -> bool {
        self.password.is_some()
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn session_of(&self, headers: &HeaderMap) -> Option<Session> {
        let value = cookie_value(headers, &self.cookie)?;
        self.sessions().get(&digest(value)).cloned()
    }

    /// Why a request's Host or Origin is refused, if it is.
    fn refuse_origin(&self, method: &Method, headers: &HeaderMap) -> Option<String> {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        match host {
            Some(h) if self.hosts.iter().any(|a| a == h) => {}
            Some(h) => {
                return Some(format!(
                    "this console answers only to Host {}, not `{}` (a page of another site \
                     reaching it through DNS rebinding is refused)",
                    self.hosts.join(" or "),
                    warden_api::display::safe(h)
                ));
            }
            None => return Some("a request without a Host header is refused".to_owned()),
        }
        let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok());
        match origin {
            Some(o) if self.origins.iter().any(|a| a == o) => {}
            Some(o) => {
                return Some(format!(
                    "a request from another origin (`{}`) is refused; this console is {}",
                    warden_api::display::safe(o),
                    self.origins[0]
                ));
            }
            None if !matches!(*method, Method::GET | Method::HEAD) => {
                return Some(
                    "a form sent without an Origin header is refused (browsers send one)"
                        .to_owned(),
                );
            }
            None => {}
        }
        // Another port of this machine is the same site to a browser, and SameSite cookies go
        // there too: a page of another local server is refused like any other site's.
        if let Some(site) = headers.get("sec-fetch-site").and_then(|h| h.to_str().ok()) {
            if site == "cross-site" || site == "same-site" {
                return Some(format!(
                    "a {site} request is refused: open this console from its own pages or the \
                     address `warden ui` printed"
                ));
            }
        }
        None
    }
}

/// The value of cookie `name` in the request's Cookie headers.
fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// An answer that refuses, with its reason on a page.
pub fn refusal(status: StatusCode, reason: &str) -> Response {
    (status, crate::pages::refusal(status, reason)).into_response()
}

/// The security headers of every answer.
pub async fn headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        // `no-referrer` would make Chromium send `Origin: null` with the console's own forms.
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    resp
}

/// Every request: Host and Origin first; then a session, except for the login and the static
/// files; then, for every POST, the session's CSRF token in the form.
pub async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if let Some(why) = app.gate.refuse_origin(req.method(), req.headers()) {
        return refusal(StatusCode::FORBIDDEN, &why);
    }
    let path = req.uri().path();
    if path == "/login" || path.starts_with("/static/") {
        return next.run(req).await;
    }
    let Some(session) = app.gate.session_of(req.headers()) else {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "no session: open the address that `warden ui` printed (it holds this launch's \
             token)",
        );
    };
    let mut req = req;
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
            Ok(b) => b,
            Err(_) => {
                return refusal(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("a form may be at most {MAX_FORM_BYTES} bytes"),
                );
            }
        };
        let sent = form_field(&bytes, CSRF_FIELD);
        let ok = sent.is_some_and(|s| bool::from(s.as_bytes().ct_eq(session.csrf.as_bytes())));
        if !ok {
            return refusal(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or not this session's: reload the page and \
                 send the form again",
            );
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }
    req.extensions_mut().insert(session);
    next.run(req).await
}

/// The first value of `name` in a urlencoded form.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

#[derive(Debug, serde::Deserialize)]
pub struct LoginQuery {
    token: Option<String>,
}

/// Why `token` is refused, if it is not this launch's.
fn refuse_token(app: &App, token: Option<&str>) -> Option<Response> {
    let Some(token) = token else {
        return Some(refusal(
            StatusCode::UNAUTHORIZED,
            "no launch token: open the address that `warden ui` printed",
        ));
    };
    if !bool::from(digest(token).ct_eq(&app.gate.launch)) {
        return Some(refusal(
            StatusCode::FORBIDDEN,
            "this is not the launch token of this console (it changes every time `warden ui` \
             starts)",
        ));
    }
    None
}

/// `GET /login?token=...`: the launch token for a session cookie (HttpOnly, SameSite=Strict),
/// then a redirect that drops the token from the address bar and the history. With a password
/// set, the launch token opens only the password form.
pub async fn login(State(app): State<Arc<App>>, Query(q): Query<LoginQuery>) -> Response {
    if let Some(refused) = refuse_token(&app, q.token.as_deref()) {
        return refused;
    }
    if app.gate.asks_password() {
        let token = q.token.unwrap_or_default();
        return crate::pages::password_form(&token, None).into_response();
    }
    open_session(&app)
}

#[derive(serde::Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    password: String,
}

impl std::fmt::Debug for PasswordForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordForm { .. }")
    }
}

/// `POST /login`: the launch token and the password (both compared in constant time, as
/// sha256) for a session cookie. A wrong password is answered after a second, one check at a
/// time.
pub async fn login_password(
    State(app): State<Arc<App>>,
    axum::Form(form): axum::Form<PasswordForm>,
) -> Response {
    if let Some(refused) = refuse_token(&app, form.token.as_deref()) {
        return refused;
    }
    let Some(expected) = app.gate.password else {
        return refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            "this console asks no password: open the address that `warden ui` printed",
        );
    };
    let _one_at_a_time = app.gate.attempts.lock().await;
    if !bool::from(digest(&form.password).ct_eq(&expected)) {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        tracing::warn!("console login: a wrong password");
        let token = form.token.unwrap_or_default();
        return (
            StatusCode::FORBIDDEN,
            crate::pages::password_form(
                &token,
                Some("wrong password: this is not the password the console was started with"),
            ),
        )
            .into_response();
    }
    open_session(&app)
}

/// A new session: its cookie set, and a redirect to the home page.
fn open_session(app: &App) -> Response {
    let cookie = random_token();
    let session = Session {
        csrf: random_token(),
    };
    app.gate.sessions().insert(digest(&cookie), session);
    let set = format!(
        "{}={cookie}; Path=/; HttpOnly; SameSite=Strict",
        app.gate.cookie
    );
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    match HeaderValue::from_str(&set) {
        Ok(v) => {
            resp.headers_mut().insert(header::SET_COOKIE, v);
            resp
        }
        Err(_) => refusal(StatusCode::INTERNAL_SERVER_ERROR, "cannot set the cookie"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_loopback_is_listened_on() {
        assert!(check_listen("127.0.0.1:0".parse().unwrap(), false).is_ok());
        assert!(check_listen("[::1]:8080".parse().unwrap(), false).is_ok());
        let e = check_listen("0.0.0.0:8080".parse().unwrap(), false).unwrap_err();
        assert!(e.contains("loopback only"), "{e}");
        let e = check_listen("192.168.1.4:80".parse().unwrap(), false).unwrap_err();
        assert!(e.contains("unless a password is set"), "{e}");
        // With a password: a named address, never every interface.
        assert!(check_listen("192.168.1.4:80".parse().unwrap(), true).is_ok());
        for any in ["0.0.0.0:80", "[::]:80"] {
            let e = check_listen(any.parse().unwrap(), true).unwrap_err();
            assert!(e.contains("name the one address"), "{e}");
        }
        assert!(check_password("short").unwrap_err().contains("at least 12"));
        assert!(check_password("twelve chars").is_ok());
    }

    #[test]
    fn beyond_loopback_only_the_address_itself_is_a_host() {
        let g = Gate::new("192.0.2.2:4000".parse().unwrap(), "t");
        assert_eq!(
            g.refuse_origin(&Method::GET, &headers(&[("host", "192.0.2.2:4000")])),
            None
        );
        assert!(
            g.refuse_origin(&Method::GET, &headers(&[("host", "localhost:4000")]))
                .is_some()
        );
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn host_and_origin_must_be_this_console() {
        let g = Gate::new("127.0.0.1:4000".parse().unwrap(), "t");
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(
            g.refuse_origin(&get, &headers(&[("host", "127.0.0.1:4000")])),
            None
        );
        assert_eq!(
            g.refuse_origin(&get, &headers(&[("host", "localhost:4000")])),
            None
        );
        let e = g
            .refuse_origin(&get, &headers(&[("host", "evil.example:4000")]))
            .unwrap();
        assert!(e.contains("DNS rebinding"), "{e}");
        assert!(g.refuse_origin(&get, &headers(&[])).is_some());
        // Another port on the same address is another origin.
        assert!(
            g.refuse_origin(
                &get,
                &headers(&[
                    ("host", "127.0.0.1:4000"),
                    ("origin", "http://127.0.0.1:4001")
                ])
            )
            .is_some()
        );
        assert_eq!(
            g.refuse_origin(
                &post,
                &headers(&[
                    ("host", "127.0.0.1:4000"),
                    ("origin", "http://127.0.0.1:4000")
                ])
            ),
            None
        );
        // A POST must say where it comes from.
        let e = g
            .refuse_origin(&post, &headers(&[("host", "127.0.0.1:4000")]))
            .unwrap();
        assert!(e.contains("without an Origin"), "{e}");
        for site in ["cross-site", "same-site"] {
            assert!(
                g.refuse_origin(
                    &get,
                    &headers(&[("host", "127.0.0.1:4000"), ("sec-fetch-site", site)])
                )
                .is_some(),
                "{site}"
            );
        }
        for site in ["same-origin", "none"] {
            assert_eq!(
                g.refuse_origin(
                    &get,
                    &headers(&[("host", "127.0.0.1:4000"), ("sec-fetch-site", site)])
                ),
                None
            );
        }
        // The error names only this console's own hosts.
        let e = g
            .refuse_origin(&get, &headers(&[("host", "127.0.0.2:4000")]))
            .unwrap();
        assert!(
            e.contains("Host 127.0.0.1:4000 or localhost:4000, not"),
            "{e}"
        );
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; warden_console_4000=abc; b=2")]);
        assert_eq!(cookie_value(&h, "warden_console_4000"), Some("abc"));
        assert_eq!(cookie_value(&h, "warden_console_4001"), None);
        assert_eq!(
            form_field(b"x=1&csrf=a%2Bb", "csrf").as_deref(),
            Some("a+b")
        );
        assert_eq!(form_field(b"x=1", "csrf"), None);
    }
}
