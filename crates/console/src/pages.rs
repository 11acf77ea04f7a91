//! The page frame, the home page, refusals and errors, the static files, and how a result is
//! shown. Everything is maud: each value is escaped as it is written into the page.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use crate::App;

const SCRIPT: &str = include_str!("../static/console.js");
const STYLE: &str = include_str!("../static/console.css");

/// The frame of every page. `refresh`: seconds between the script's reloads of `<main>` (with
/// backoff), for pages whose state changes at the server or the node.
pub fn frame(title: &str, app: &App, refresh: Option<u32>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Warden" }
                link rel="stylesheet" href="/static/console.css";
                script src="/static/console.js" defer {}
            }
            body {
                header {
                    nav aria-label="main" {
                        a href="/" { strong { "Warden" } }
                        @if app.sources.researcher.is_some() {
                            a href="/collaborations" { "Collaborations" }
                            a href="/tasks" { "Tasks" }
                            a href="/tasks/new" { "New task" }
                        }
                        @if app.sources.account.as_ref().is_some_and(crate::Account::administers) {
                            a href="/admin/organizations" { "Organizations" }
                            a href="/admin/collaborations" { "Members" }
                            a href="/admin/users" { "Users" }
                            a href="/admin/nodes" { "Nodes" }
                        }
                        @if app.sources.node.is_some() {
                            a href="/node" { "Airlock" }
                            a href="/node/policy" { "Policy" }
                            a href="/node/decisions" { "Decisions" }
                            a href="/node/audit" { "Audit log" }
                        }
                    }
                }
                main data-refresh=[refresh] {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page without the frame's links, for refusals (no session, wrong origin).
pub fn refusal(status: StatusCode, reason: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Refused · Warden" }
                link rel="stylesheet" href="/static/console.css";
            }
            body {
                main {
                    h1 { "Refused (" (status.as_u16()) ")" }
                    p class="error" role="alert" { (reason) }
                }
            }
        }
    }
}

/// The login form of a console started with a password (`--listen` beyond loopback): the
/// launch token in a hidden field, the password never filled in; `error` says why the last
/// attempt was refused.
pub fn password_form(token: &str, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Log in · Warden" }
                link rel="stylesheet" href="/static/console.css";
            }
            body {
                main {
                    h1 { "Log in" }
                    p { "This console was started with a password. Type it to open the console." }
                    @if let Some(e) = error {
                        p class="error" role="alert" { (e) }
                    }
                    form method="post" action="/login" {
                        input type="hidden" name="token" value=(token);
                        label for="password" { "Password" }
                        input type="password" id="password" name="password" required
                            autocomplete="current-password" autofocus;
                        button type="submit" { "Log in" }
                    }
                }
            }
        }
    }
}

/// An error page within the frame: what failed and why (the server's, the node's or the
/// client's words, escaped).
pub fn error(app: &App, status: StatusCode, what: &str, why: &str) -> Response {
    (
        status,
        frame(
            what,
            app,
            None,
            html! { p class="error" role="alert" { (why) } },
        ),
    )
        .into_response()
}

/// What is answered when a page needs a source the console was not given.
pub fn missing(app: &App, what: &str, flag: &str) -> Response {
    error(
        app,
        StatusCode::NOT_FOUND,
        what,
        &format!("this console was started without {flag}"),
    )
}

pub async fn home(State(app): State<Arc<App>>) -> Markup {
    let body = html! {
        @if let Some(r) = &app.sources.researcher {
            section aria-labelledby="researcher" {
                h2 id="researcher" { "Researcher" }
                p {
                    "Logged in as " strong { (r.client.username()) } " at " code { (r.client.base()) }
                    " (profile " code { (r.profile.path.display().to_string()) } "). Results are opened here, with your key; the browser never receives it."
                }
                ul {
                    li { a href="/collaborations" { "Collaborations" } }
                    li { a href="/tasks" { "Tasks and their runs" } }
                    li { a href="/tasks/new" { "Create a task" } }
                }
            }
        }
        @if let Some(a) = &app.sources.account {
            @if let Some(why) = &app.sources.researcher_missing {
                section aria-labelledby="researcher" {
                    h2 id="researcher" { "Researcher" }
                    p {
                        "Logged in as " strong { (a.client.username()) } " at " code { (a.client.base()) }
                        ". The researcher's pages are off: " (why) "."
                    }
                }
            }
            @if a.administers() {
            section aria-labelledby="administrator" {
                h2 id="administrator" { "Administration" }
                p {
                    "As " strong { (a.client.username()) }
                    @if let Some(role) = a.role { " (" (role.as_str()) ")" }
                    ", with the profile's session: the server decides what this account may see and change, exactly as for "
                    code { "warden org" } ", " code { "warden collab" } ", " code { "warden user" } " and " code { "warden node create" } "."
                }
                ul {
                    li { a href="/admin/organizations" { "Organizations" } }
                    li { a href="/admin/collaborations" { "Collaborations and their members" } }
                    li { a href="/admin/users" { "Users: create, disable, enable, reset a password" } }
                    li { a href="/admin/nodes" { "Nodes: create, rotate the API key" } }
                }
            }
            }
        }
        @if app.sources.node.is_some() {
            section aria-labelledby="owner" {
                h2 id="owner" { "Data owner" }
                p { "The node's local socket: the node checks who you are and records every view, release, refusal and approval in its audit log." }
                ul {
                    li { a href="/node" { "Airlock: held results and the first-run approval queue" } }
                    li { a href="/node/policy" { "The policy in force and its rules" } }
                    li { a href="/node/decisions" { "Recent decisions: admissions and refusals" } }
                    li { a href="/node/audit" { "The audit log: browse, filter, verify the chain" } }
                }
            }
        }
        @if app.sources.account.is_none() && app.sources.node.is_none() {
            p { "Start the console with --profile NAME, --node-socket PATH, or both." }
        }
    };
    frame("Console", &app, None, body)
}

pub async fn not_found(State(app): State<Arc<App>>) -> Response {
    error(
        &app,
        StatusCode::NOT_FOUND,
        "Not found",
        "no such page in this console",
    )
}

pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

pub async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// A time as RFC 3339, or `-`.
pub fn when(t: Option<time::OffsetDateTime>) -> String {
    t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_else(|| "-".to_owned())
}

/// A result's bytes: JSON as a table (an object by key, an array of objects by column), other
/// text as it is, anything else by size.
pub fn result(bytes: &[u8]) -> Markup {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return html! { p { "A binary result of " (bytes.len()) " bytes." } };
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => html! {
            @if let Some(svg) = chart(&map) {
                figure class="chart" {
                    (maud::PreEscaped(svg))
                    figcaption { "The result's numbers, drawn here." }
                }
            }
            table class="result" {
                thead { tr { th scope="col" { "key" } th scope="col" { "value" } } }
                tbody {
                    @for (k, v) in &map {
                        tr { th scope="row" { (k) } td { (cell(v)) } }
                    }
                }
            }
        },
        Ok(Value::Array(rows)) if !rows.is_empty() && rows.iter().all(Value::is_object) => {
            let mut columns: Vec<&String> = Vec::new();
            for r in &rows {
                if let Value::Object(m) = r {
                    for k in m.keys() {
                        if !columns.contains(&k) {
                            columns.push(k);
                        }
                    }
                }
            }
            html! {
                table class="result" {
                    thead { tr { @for c in &columns { th scope="col" { (c) } } } }
                    tbody {
                        @for r in &rows {
                            tr { @for c in &columns { td { (r.get(c.as_str()).map(cell).unwrap_or_default()) } } }
                        }
                    }
                }
            }
        }
        _ => html! { pre class="result" { (text) } },
    }
}

/// Most bars a chart draws.
const MAX_BARS: usize = 40;

/// A bar chart of a result whose values are all numbers (at most [`MAX_BARS`]), as SVG from
/// plotters' SVG backend, which escapes every text and attribute it writes (the keys are the
/// algorithm's words). `None` when the result is not such an object or cannot be drawn.
pub fn chart(map: &serde_json::Map<String, Value>) -> Option<String> {
    use plotters::prelude::*;
    if map.is_empty() || map.len() > MAX_BARS {
        return None;
    }
    let bars: Vec<(&str, f64)> = map
        .iter()
        .map(|(k, v)| v.as_f64().map(|n| (k.as_str(), n)))
        .collect::<Option<_>>()?;
    let lo = bars.iter().map(|b| b.1).fold(0.0_f64, f64::min);
    let hi = bars.iter().map(|b| b.1).fold(0.0_f64, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return None;
    }
    let top = if hi == lo {
        lo + 1.0
    } else {
        hi + (hi - lo) * 0.05
    };
    let n = bars.len();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 320)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..n as f64, lo..top)
            .ok()?;
        let label = |x: &f64| {
            let i = x.floor();
            if i >= 0.0 && (i as usize) < n && (x - i - 0.5).abs() < 1e-9 {
                bars[i as usize].0.chars().take(24).collect()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(2 * n + 1)
            .x_label_formatter(&label)
            .draw()
            .ok()?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                let x = i as f64;
                Rectangle::new(
                    [(x + 0.15, 0.0_f64.max(lo)), (x + 0.85, *v)],
                    RGBColor(31, 95, 191).filled(),
                )
            }))
            .ok()?;
        root.present().ok()?;
    }
    Some(svg)
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_tables_or_text_and_every_value_is_escaped() {
        let obj = result(br#"{"mean": 4.5, "<b>n</b>": "<script>x</script>"}"#).into_string();
        assert!(obj.contains("<table class=\"result\">"), "{obj}");
        assert!(
            obj.contains("&lt;b&gt;n&lt;/b&gt;") && obj.contains("&lt;script&gt;x&lt;/script&gt;"),
            "{obj}"
        );
        assert!(!obj.contains("<script>") && !obj.contains("<b>"), "{obj}");
        let rows =
            result(br#"[{"site": "a", "n": 3}, {"site": "b", "extra": true}]"#).into_string();
        assert!(rows.contains("<th scope=\"col\">extra</th>"), "{rows}");
        assert_eq!(rows.matches("<tr>").count(), 3, "{rows}");
        let text = result(b"env-ok <img src=x>").into_string();
        assert_eq!(text, "<pre class=\"result\">env-ok &lt;img src=x&gt;</pre>");
        assert!(
            result(&[0xff, 0xfe])
                .into_string()
                .contains("binary result of 2 bytes")
        );
    }
}
