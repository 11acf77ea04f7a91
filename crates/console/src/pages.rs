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
                        @if app.sources.store.is_some() {
                            a href="/admin/algorithms" { "Algorithms" }
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
    let value = serde_json::from_str::<Value>(text);
    let drawn = value.as_ref().ok().and_then(chart);
    let drawn = html! {
        @if let Some(svg) = drawn { (figure(svg, "The result's numbers, drawn here.")) }
    };
    match value {
        Ok(Value::Array(n)) if !n.is_empty() && n.iter().all(Value::is_number) => html! {
            (drawn)
            pre class="result" { (text) }
        },
        Ok(Value::Object(map)) => html! {
            (drawn)
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

/// Most bars a chart draws (groups times series).
const MAX_BARS: usize = 40;
/// Most points a line of a line chart draws.
const MAX_POINTS: usize = 2000;
/// Most series (lines, or bars per group) one chart draws.
const MAX_SERIES: usize = 8;
/// The series' colours, in order.
const COLOURS: [(u8, u8, u8); MAX_SERIES] = [
    (31, 95, 191),
    (214, 106, 18),
    (44, 140, 64),
    (178, 34, 52),
    (112, 72, 160),
    (120, 84, 60),
    (200, 80, 150),
    (90, 90, 90),
];

/// A chart of a result, when it is numeric, as SVG (see [`bar_chart`] and [`line_chart`]):
/// an object of numbers as bars by key; an array of numbers as bars by index (a line beyond
/// [`MAX_BARS`]); an object of arrays of numbers as one line per key. `None` for anything
/// else, or too much to draw.
pub fn chart(value: &Value) -> Option<String> {
    match value {
        Value::Object(map) => {
            if let Some(bars) = numbers_by_key(map) {
                let groups: Vec<&str> = bars.iter().map(|b| b.0).collect();
                let values: Vec<Vec<f64>> = bars.iter().map(|b| vec![b.1]).collect();
                return bar_chart(&groups, &[], &values);
            }
            let series: Vec<(&str, Vec<f64>)> = map
                .iter()
                .map(|(k, v)| numbers(v).map(|n| (k.as_str(), n)))
                .collect::<Option<_>>()?;
            line_chart(&series)
        }
        Value::Array(_) => {
            let n = numbers(value)?;
            if n.len() > MAX_BARS {
                return line_chart(&[("", n)]);
            }
            let labels: Vec<String> = (0..n.len()).map(|i| i.to_string()).collect();
            let groups: Vec<&str> = labels.iter().map(String::as_str).collect();
            let values: Vec<Vec<f64>> = n.iter().map(|v| vec![*v]).collect();
            bar_chart(&groups, &[], &values)
        }
        _ => None,
    }
}

/// An object whose values are all numbers, as (key, number), in order.
fn numbers_by_key(map: &serde_json::Map<String, Value>) -> Option<Vec<(&str, f64)>> {
    if map.is_empty() {
        return None;
    }
    map.iter()
        .map(|(k, v)| v.as_f64().map(|n| (k.as_str(), n)))
        .collect()
}

/// A non-empty array of numbers.
fn numbers(v: &Value) -> Option<Vec<f64>> {
    match v {
        Value::Array(a) if !a.is_empty() => a.iter().map(Value::as_f64).collect(),
        _ => None,
    }
}

/// The numbers of one organization's result, by key: a number (key `result`) or an object of
/// numbers.
fn flat_numbers(v: &Value) -> Option<Vec<(String, f64)>> {
    if let Some(n) = v.as_f64() {
        return Some(vec![("result".to_owned(), n)]);
    }
    let Value::Object(map) = v else { return None };
    Some(
        numbers_by_key(map)?
            .into_iter()
            .map(|(k, n)| (k.to_owned(), n))
            .collect(),
    )
}

/// One chart of the results of several organizations, when at least two are a number or an
/// object of numbers: grouped bars, one group per key they all have, one bar (and colour) per
/// organization. `results`: (organization, result bytes).
pub fn chart_by_organization(results: &[(&str, &[u8])]) -> Option<String> {
    let numeric: Vec<(&str, Vec<(String, f64)>)> = results
        .iter()
        .filter_map(|(org, bytes)| {
            let v: Value = serde_json::from_slice(bytes).ok()?;
            flat_numbers(&v).map(|n| (*org, n))
        })
        .collect();
    if numeric.len() < 2 {
        return None;
    }
    let keys: Vec<&str> = numeric[0]
        .1
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| numeric.iter().all(|(_, n)| n.iter().any(|(o, _)| o == k)))
        .collect();
    let values: Vec<Vec<f64>> = keys
        .iter()
        .map(|k| {
            numeric
                .iter()
                .map(|(_, n)| n.iter().find(|(o, _)| o == k).map_or(0.0, |(_, v)| *v))
                .collect()
        })
        .collect();
    let names: Vec<&str> = numeric.iter().map(|(o, _)| *o).collect();
    bar_chart(&keys, &names, &values)
}

/// The low and high ends of the y axis: every value, and zero.
fn y_range<'a>(values: impl Iterator<Item = &'a f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (0.0_f64, 0.0_f64);
    for v in values {
        lo = lo.min(*v);
        hi = hi.max(*v);
    }
    if !lo.is_finite() || !hi.is_finite() {
        return None;
    }
    let top = if hi == lo {
        lo + 1.0
    } else {
        hi + (hi - lo) * 0.05
    };
    Some((lo, top))
}

fn colour(i: usize) -> plotters::style::RGBColor {
    let (r, g, b) = COLOURS[i % MAX_SERIES];
    plotters::style::RGBColor(r, g, b)
}

/// Grouped bars, as SVG from plotters' SVG backend, which escapes every text and attribute it
/// writes (the labels are the algorithm's or the server's words): `values[g][s]` is the bar of
/// series `s` in group `groups[g]`; `series` names them in a legend (none for one unnamed
/// series). `None` when empty or beyond [`MAX_BARS`] bars or [`MAX_SERIES`] series.
pub fn bar_chart(groups: &[&str], series: &[&str], values: &[Vec<f64>]) -> Option<String> {
    use plotters::prelude::*;
    let per_group = values.first().map_or(0, Vec::len);
    if groups.is_empty()
        || groups.len() != values.len()
        || per_group == 0
        || values.iter().any(|v| v.len() != per_group)
        || per_group > MAX_SERIES
        || groups.len() * per_group > MAX_BARS
        || (!series.is_empty() && series.len() != per_group)
    {
        return None;
    }
    let (lo, top) = y_range(values.iter().flatten())?;
    let n = groups.len();
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
                groups[i as usize].chars().take(24).collect()
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
        let width = 0.7 / per_group as f64;
        for s in 0..per_group {
            let drawn = chart
                .draw_series(values.iter().enumerate().map(|(g, v)| {
                    let x = g as f64 + 0.15 + s as f64 * width;
                    Rectangle::new(
                        [(x, 0.0_f64.max(lo)), (x + width, v[s])],
                        colour(s).filled(),
                    )
                }))
                .ok()?;
            if let Some(name) = series.get(s) {
                let c = colour(s);
                drawn
                    .label(name.chars().take(32).collect::<String>())
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled())
                    });
            }
        }
        if !series.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .ok()?;
        }
        root.present().ok()?;
    }
    Some(svg)
}

/// Lines, one per series (by index on the x axis), as SVG from plotters' SVG backend, with a
/// legend of the series' names (none for one unnamed series). `None` when empty or beyond
/// [`MAX_SERIES`] series or [`MAX_POINTS`] points a line.
pub fn line_chart(series: &[(&str, Vec<f64>)]) -> Option<String> {
    use plotters::prelude::*;
    let longest = series.iter().map(|s| s.1.len()).max().unwrap_or(0);
    if series.is_empty() || series.len() > MAX_SERIES || longest == 0 || longest > MAX_POINTS {
        return None;
    }
    let (lo, top) = y_range(series.iter().flat_map(|s| s.1.iter()))?;
    let right = (longest.max(2) - 1) as f64;
    let named = series.iter().any(|s| !s.0.is_empty());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 320)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..right, lo..top)
            .ok()?;
        chart
            .configure_mesh()
            .x_label_formatter(&|x: &f64| format!("{x:.0}"))
            .draw()
            .ok()?;
        for (i, (name, points)) in series.iter().enumerate() {
            let c = colour(i);
            let drawn = chart
                .draw_series(LineSeries::new(
                    points.iter().enumerate().map(|(x, y)| (x as f64, *y)),
                    c.stroke_width(2),
                ))
                .ok()?;
            if named {
                drawn
                    .label(name.chars().take(32).collect::<String>())
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 14, y)], c.stroke_width(2))
                    });
            }
        }
        if named {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .ok()?;
        }
        root.present().ok()?;
    }
    Some(svg)
}

/// A chart in its figure, with what it shows.
pub fn figure(svg: String, caption: &str) -> Markup {
    html! {
        figure class="chart" {
            (maud::PreEscaped(svg))
            figcaption { (caption) }
        }
    }
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

    /// Bars drawn (and legend keys): rectangles filled with a series' colour.
    fn bars(svg: &str) -> usize {
        svg.lines()
            .filter(|l| {
                l.starts_with("<rect")
                    && COLOURS
                        .iter()
                        .any(|(r, g, b)| l.contains(&format!("fill=\"#{r:02X}{g:02X}{b:02X}\"")))
            })
            .count()
    }

    /// Lines drawn (and legend keys): the series' strokes, two pixels wide.
    fn lines(svg: &str) -> usize {
        svg.lines()
            .filter(|l| l.starts_with("<polyline") && l.contains("stroke-width=\"2\""))
            .count()
    }

    fn svg(bytes: &[u8]) -> String {
        chart(&serde_json::from_slice(bytes).unwrap()).unwrap_or_default()
    }

    #[test]
    fn numeric_results_are_drawn_as_bars_or_lines_and_their_words_escaped() {
        // An object of numbers: one bar a key.
        let drawn = svg(br#"{"a": 1, "b": -2.5, "<script>x</script>": 3}"#);
        assert_eq!(bars(&drawn), 3, "{drawn}");
        assert!(!drawn.contains("<script"), "{drawn}");
        assert!(drawn.contains("&lt;script&gt;"), "{drawn}");
        // An array of numbers: bars by index, a line when long.
        let short = svg(b"[3, 1, 4, 1, 5]");
        assert_eq!(bars(&short), 5, "{short}");
        let long: Vec<i32> = (0..100).collect();
        let long = svg(serde_json::to_string(&long).unwrap().as_bytes());
        assert_eq!((bars(&long), lines(&long)), (0, 1), "{long}");
        // An object of arrays of numbers: one line a key, with a legend.
        // Two lines and their two keys in the legend.
        let two = svg(br#"{"loss": [3, 2, 1.5, 1.2], "<i>acc</i>": [0.1, 0.5, 0.7]}"#);
        assert_eq!(lines(&two), 4, "{two}");
        assert!(
            two.contains("loss") && two.contains("&lt;i&gt;acc&lt;/i&gt;"),
            "{two}"
        );
        assert!(!two.contains("<i>"), "{two}");
        // Not numeric, mixed, empty or too much: no chart.
        for v in [
            &br#"{"a": 1, "b": "x"}"#[..],
            b"[1, \"2\"]",
            b"[]",
            b"{}",
            br#"{"a": [1], "b": 2}"#,
            b"7",
        ] {
            assert_eq!(svg(v), "", "{}", String::from_utf8_lossy(v));
        }
        let many: serde_json::Map<String, Value> =
            (0..41).map(|i| (format!("k{i}"), Value::from(i))).collect();
        assert!(chart(&Value::Object(many)).is_none());
        let nine: serde_json::Map<String, Value> = (0..9)
            .map(|i| (format!("s{i}"), serde_json::json!([1, 2])))
            .collect();
        assert!(chart(&Value::Object(nine)).is_none());
        // The page: the chart and the numbers as text.
        let page = result(b"[3, 1, 4]").into_string();
        assert!(page.contains("<figure class=\"chart\"><svg"), "{page}");
        assert!(
            page.contains("<pre class=\"result\">[3, 1, 4]</pre>"),
            "{page}"
        );
    }

    #[test]
    fn the_organizations_numbers_are_drawn_side_by_side_by_the_keys_they_share() {
        let a = br#"{"mean": 4.5, "n": 10, "only_a": 1}"#;
        let b = br#"{"mean": 5.5, "n": 12}"#;
        let c = b"7";
        let text = b"not json";
        let two =
            chart_by_organization(&[("<b>org-a</b>", a), ("org-b", b), ("org-t", text)]).unwrap();
        // Two keys shared, two organizations: four bars, and two keys in the legend.
        assert_eq!(bars(&two), 4 + 2, "{two}");
        assert!(
            two.contains("&lt;b&gt;org-a&lt;/b&gt;") && !two.contains("<b>"),
            "{two}"
        );
        assert!(!two.contains("only_a") && !two.contains("org-t"), "{two}");
        // A bare number is the key `result`, which no object shares: nothing in common.
        assert!(chart_by_organization(&[("a", a), ("c", c)]).is_none());
        assert!(chart_by_organization(&[("c", c), ("d", b"8")]).is_some());
        // One numeric organization is the result's own chart, not a comparison.
        assert!(chart_by_organization(&[("a", a), ("t", text)]).is_none());
    }
}
