//! The data owner's reading pages, over the node's local socket: the policy in force
//! (`GET /v1/policy`), the node's recent decisions and the audit log with its filters and
//! paging (`GET /v1/audit`), and the chain verified by the node with its key as `warden audit
//! verify` does (`GET /v1/audit/verify`). Nothing here changes the node; every value (an image
//! name, a reason, a user) is the node's or the server's words and escaped by maud.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use maud::{Markup, html};
use warden_api::local::{AuditEntry, AuditPage, AuditVerification, PolicyView, RuleView};
use warden_node::local::LocalClient;

use crate::App;
use crate::pages::{self, frame};

/// The events the decisions page lists: the policy's admissions and rejections, and the data
/// owner's releases, refusals and approvals at the airlock.
pub const DECISION_KINDS: &str = "decision,release,refuse,approve,refuse_digest";
/// Records on one page of the decisions and audit pages.
pub const PAGE: usize = 50;

/// Every event an audit record can name, for the filter.
const EVENTS: [&str; 10] = [
    "decision",
    "run",
    "view",
    "release",
    "refuse",
    "approve",
    "refuse_digest",
    "logs",
    "store_refused",
    "cancel",
];

fn node(app: &App, what: &str) -> Result<LocalClient, Box<Response>> {
    app.sources.node.clone().ok_or_else(|| {
        Box::new(pages::missing(
            app,
            what,
            "the node's socket (--node-socket PATH)",
        ))
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("the call to the node's socket did not finish: {e}"))?
}

fn list(items: &Option<Vec<String>>) -> Markup {
    html! {
        @match items {
            None => span class="muted" { "any" },
            Some(v) => @for (i, x) in v.iter().enumerate() { @if i > 0 { ", " } code { (x) } },
        }
    }
}

fn rule(r: &RuleView) -> Markup {
    html! {
        section class="rule" data-rule=(r.name) {
            h3 { (r.name) " " span class="muted" { "(line " (r.line) ")" } }
            dl {
                @if let Some(repo) = &r.repository { dt { "repository" } dd { code { (repo) } } }
                @if let Some(re) = &r.repository_regex { dt { "repository regex" } dd { code { (re) } " (the whole name)" } }
                @if r.digests.is_some() { dt { "digests" } dd { (list(&r.digests)) } }
                @if let Some(s) = &r.signed_by {
                    dt { "signed by" }
                    dd {
                        @if let Some(n) = &s.notary {
                            "at least " (s.threshold) " of " (s.keys.len()) " distinct keys and the Notary signers chained to trust store "
                            code { (n.trust_store) } " whose certificate matches one of " (n.identities.len()) " identities"
                            ul { @for i in &n.identities { li { code { (i) } } } }
                        } @else {
                            (s.threshold) " of " (s.keys.len()) " distinct keys"
                        }
                        ul { @for k in &s.keys { li { code { (k.id) } " (" (k.files.join(", ")) ")" } } }
                    }
                }
                @if let Some(b) = &r.reproduced_by {
                    dt { "reproduced by" }
                    dd {
                        (b.min) " of " (b.keys.len()) " distinct builder keys (" (b.patterns.join(", ")) ") attest a build of this digest from one commit"
                        ul { @for k in &b.keys { li { code { (k.id) } " (" (k.files.join(", ")) ")" } } }
                    }
                }
                @if let Some(a) = &r.approved_by {
                    dt { "approved by" }
                    dd {
                        "store " code { (a.store) } ": " (a.min_approvals) " approvals from "
                        (a.min_organizations) " organizations among " (a.reviewers.len()) " reviewer keys ("
                        (a.patterns.join(", ")) ")"
                        ul { @for k in &a.reviewers { li { code { (k.id) } " (" (k.files.join(", ")) ")" } } }
                    }
                }
                dt { "organizations" } dd { (list(&r.organizations)) }
                dt { "users" } dd { (list(&r.users)) }
                dt { "collaborations" } dd { (list(&r.collaborations)) }
                dt { "functions" } dd { (list(&r.functions)) }
                @if r.name.starts_with("allow") { dt { "output" } dd { (r.output) } }
            }
        }
    }
}

/// The policy page's body.
pub fn policy_body(p: &PolicyView) -> Markup {
    html! {
        dl {
            dt { "file" } dd { code { (p.file) } }
            dt { "sha256" } dd { code { (p.sha256) } " (of the file as the node loaded it at start)" }
            dt { "version" } dd { (p.version) }
        }
        p { "A run is denied when any deny rule holds; otherwise the first allow rule whose every condition holds admits it; otherwise it is denied. A condition not stated (any) does not restrict." }
        h2 { "Deny rules (" (p.deny.len()) ")" }
        @if p.deny.is_empty() { p { "No deny rule." } }
        @for r in &p.deny { (rule(r)) }
        h2 { "Allow rules (" (p.allow.len()) ")" }
        @if p.allow.is_empty() { p { "No allow rule: the node denies every run." } }
        @for r in &p.allow { (rule(r)) }
    }
}

pub async fn policy(State(app): State<Arc<App>>) -> Response {
    let c = match node(&app, "Policy") {
        Ok(c) => c,
        Err(r) => return *r,
    };
    match blocking(move || c.policy()).await {
        Ok(p) => frame("Policy in force", &app, None, policy_body(&p)).into_response(),
        Err(e) => pages::error(&app, StatusCode::BAD_GATEWAY, "Policy in force", &e),
    }
}

/// The filters of the audit page, as the browser sends them (empty fields are not filters).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct AuditForm {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub run: String,
    #[serde(default)]
    pub outcome: String,
    #[serde(default)]
    pub after: String,
    #[serde(default)]
    pub before: String,
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
}

impl AuditForm {
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("kind", self.kind.as_str()),
            ("run", self.run.as_str()),
            ("outcome", self.outcome.as_str()),
            ("after", self.after.as_str()),
            ("before", self.before.as_str()),
            ("since", self.since.as_str()),
            ("until", self.until.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.trim()))
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }

    /// The node's query: the filters given and one page.
    pub fn query(&self) -> String {
        let mut pairs = self.pairs();
        let limit = PAGE.to_string();
        pairs.push(("limit", &limit));
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }

    /// This page's address with `before` replaced: the next (older) page.
    fn older(&self, path: &str, before: u64) -> String {
        let before = before.to_string();
        let mut pairs: Vec<(&str, &str)> = self
            .pairs()
            .into_iter()
            .filter(|(k, _)| *k != "before")
            .collect();
        pairs.push(("before", &before));
        format!(
            "{path}?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    }
}

fn outcome_class(outcome: &str) -> &'static str {
    match outcome {
        "admitted" | "completed" | "done" | "released" => "state ok",
        "rejected" | "failed" | "denied" | "cancelled" | "withheld" => "state bad",
        _ => "state wait",
    }
}

fn requester(e: &AuditEntry) -> Markup {
    html! {
        @match (&e.user, &e.organization) {
            (None, None) => { "-" }
            (u, o) => { (u.as_deref().unwrap_or("-")) " of " (o.as_deref().unwrap_or("-")) }
        }
    }
}

/// What a data owner's airlock event decided, in words.
fn airlock_word(event: &str) -> &str {
    match event {
        "release" => "released at the airlock",
        "refuse" => "refused at the airlock",
        "approve" => "digest approved",
        "refuse_digest" => "digest refused",
        other => other,
    }
}

fn older_link(form: &AuditForm, path: &str, page: &AuditPage) -> Markup {
    html! {
        @if let Some(b) = page.next_before {
            p { a id="older" href=(form.older(path, b)) { "Older records" } }
        } @else {
            p class="muted" { "No older records match." }
        }
    }
}

/// The decisions page's body: one page of admissions and refusals, newest first.
pub fn decisions_body(page: &AuditPage, form: &AuditForm) -> Markup {
    html! {
        p { "The node's admission decisions (its policy's, in its words) and its data owner's releases, refusals and approvals at the airlock, newest first, from its audit log." }
        @if page.entries.is_empty() { p { "No decision is recorded." } }
        @else {
            table class="decisions" {
                thead { tr { th scope="col" { "seq" } th scope="col" { "time" } th scope="col" { "run" } th scope="col" { "task" } th scope="col" { "image and digest" } th scope="col" { "requester" } th scope="col" { "decision" } th scope="col" { "rule" } th scope="col" { "reason" } } }
                tbody {
                    @for e in &page.entries {
                        tr data-seq=(e.seq) data-run=[e.run_id] {
                            td { (e.seq) }
                            td { (e.time) }
                            td { (e.run_id.map(|r| r.to_string()).unwrap_or_else(|| "-".into())) }
                            td { (e.task_id.map(|r| r.to_string()).unwrap_or_else(|| "-".into())) }
                            td { code { (e.image) } @if let Some(d) = &e.digest { br; code { (d) } } }
                            td { (requester(e)) }
                            td {
                                @if e.event == "decision" {
                                    span class=(outcome_class(&e.outcome)) { (e.outcome) }
                                } @else {
                                    span class=(outcome_class(&e.outcome)) { (airlock_word(&e.event)) }
                                    @if e.outcome != "done" { " (" (e.outcome) ")" }
                                    @if let Some(by) = &e.by { " by " (by) }
                                }
                            }
                            td { (e.rule.as_deref().unwrap_or("-")) }
                            td class="reason" { (e.reason.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        (older_link(form, "/node/decisions", page))
    }
}

pub async fn decisions(State(app): State<Arc<App>>, Query(form): Query<AuditForm>) -> Response {
    let title = "Recent decisions";
    let c = match node(&app, title) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let form = AuditForm {
        kind: DECISION_KINDS.to_owned(),
        ..form
    };
    let query = form.query();
    match blocking(move || c.audit(&query)).await {
        Ok(p) => frame(title, &app, Some(10), decisions_body(&p, &form)).into_response(),
        Err(e) => pages::error(&app, StatusCode::BAD_GATEWAY, title, &e),
    }
}

fn field(id: &str, label: &str, value: &str, hint: &str) -> Markup {
    html! {
        label for=(id) { (label) }
        input id=(id) type="text" name=(id) value=(value) placeholder=(hint);
    }
}

/// The audit page's body: the filter form, one page of records, and the way to verify.
pub fn audit_body(page: &AuditPage, form: &AuditForm) -> Markup {
    html! {
        p {
            "The node's hash-chained audit log, " (page.lines) " lines, newest first. "
            a id="verify" href="/node/audit/verify" { "Verify the chain" }
            " with the node's key, as " code { "warden audit verify" } " does."
        }
        form method="get" action="/node/audit" class="filters" {
            label for="kind" { "event" }
            select id="kind" name="kind" {
                option value="" selected[form.kind.is_empty()] { "any" }
                @for k in EVENTS { option value=(k) selected[form.kind == k] { (k) } }
            }
            (field("run", "run", &form.run, "id"))
            (field("outcome", "outcome", &form.outcome, "e.g. rejected"))
            (field("after", "after seq", &form.after, "seq"))
            (field("before", "before seq", &form.before, "seq"))
            (field("since", "since", &form.since, "2026-12-02T14:00:00Z"))
            (field("until", "until", &form.until, "RFC 3339"))
            button type="submit" id="filter" { "Filter" }
        }
        @if page.entries.is_empty() { p { "No record matches." } }
        @else {
            table class="audit" {
                thead { tr { th scope="col" { "seq" } th scope="col" { "time" } th scope="col" { "event" } th scope="col" { "outcome" } th scope="col" { "run" } th scope="col" { "task" } th scope="col" { "requester" } th scope="col" { "image" } th scope="col" { "rule" } th scope="col" { "by" } th scope="col" { "reason" } } }
                tbody {
                    @for e in &page.entries {
                        tr data-seq=(e.seq) data-event=(e.event) {
                            td { (e.seq) }
                            td { (e.time) }
                            td { (e.event) }
                            td { span class=(outcome_class(&e.outcome)) { (e.outcome) } }
                            td { (e.run_id.map(|r| r.to_string()).unwrap_or_else(|| "-".into())) }
                            td { (e.task_id.map(|r| r.to_string()).unwrap_or_else(|| "-".into())) }
                            td { (requester(e)) }
                            td { code { (e.image) } @if let Some(d) = &e.digest { br; code { (d) } } }
                            td { (e.rule.as_deref().unwrap_or("-")) }
                            td { (e.by.as_deref().unwrap_or("-")) }
                            td class="reason" { (e.reason.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        (older_link(form, "/node/audit", page))
    }
}

pub async fn audit(State(app): State<Arc<App>>, Query(form): Query<AuditForm>) -> Response {
    let title = "Audit log";
    let c = match node(&app, title) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let query = form.query();
    match blocking(move || c.audit(&query)).await {
        Ok(p) => frame(title, &app, None, audit_body(&p, &form)).into_response(),
        // The node's 400 names the filter it refused.
        Err(e) => pages::error(&app, StatusCode::BAD_REQUEST, title, &e),
    }
}

/// The verification page's body: intact, uncovered, incomplete or tampered, each said apart.
pub fn verify_body(v: &AuditVerification) -> Markup {
    let (class, headline) = match v.status.as_str() {
        "intact" => (
            "verdict intact",
            "Intact: the chain links and every entry is covered by a checkpoint signed with the node's key.".to_owned(),
        ),
        "uncovered" => (
            "verdict uncovered",
            format!(
                "The chain links and every checkpoint verifies; {} entries after the last signed checkpoint are not covered yet (a running node signs them at its next checkpoint).",
                v.uncovered.unwrap_or(0)
            ),
        ),
        "incomplete" => (
            "verdict tampered",
            "Incomplete: the last line is torn (a crash mid-write, or the file was cut).".to_owned(),
        ),
        _ => (
            "verdict tampered",
            "Tampered: the log was altered.".to_owned(),
        ),
    };
    html! {
        p class=(class) id="verdict" data-status=(v.status) role="status" { (headline) }
        dl {
            dt { "status" } dd { code { (v.status) } " (" code { "warden audit verify" } " exits " (v.exit) @if v.status == "uncovered" { ", 1 with --require-covered" } ")" }
            dt { "file" } dd { code { (v.path) } }
            dt { "node key" } dd { code { (v.key) } }
            @if let Some(n) = v.entries { dt { "entries" } dd { (n) ", " (v.covered.unwrap_or(0)) " covered by " (v.checkpoints.unwrap_or(0)) " signed checkpoints" } }
            @if let Some(l) = v.line { dt { "line" } dd { (l) } }
        }
        @if !v.problems.is_empty() {
            ul class="problems" { @for p in &v.problems { li { (p) } } }
        }
        p { a href="/node/audit" { "Back to the audit log" } }
    }
}

pub async fn verify(State(app): State<Arc<App>>) -> Response {
    let title = "Audit log verification";
    let c = match node(&app, title) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    match blocking(move || c.verify_audit()).await {
        Ok(v) => frame(title, &app, None, verify_body(&v)).into_response(),
        Err(e) => pages::error(&app, StatusCode::BAD_GATEWAY, title, &e),
    }
}

#[cfg(test)]
mod tests {
    use warden_api::local::{KeyView, NotaryView, ReproducedByView, SignedByView};

    use super::*;

    fn key(id: &str, file: &str) -> KeyView {
        KeyView {
            id: id.into(),
            files: vec![file.into()],
        }
    }

    #[test]
    fn the_policy_page_shows_notary_signers_and_builders_escaped() {
        let rule = RuleView {
            name: "allow[1]".into(),
            line: 3,
            repository: Some("registry.example.org/team/mean".into()),
            repository_regex: None,
            digests: None,
            signed_by: Some(SignedByView {
                threshold: 2,
                keys: vec![key("sha256:aa", "image.pub")],
                notary: Some(NotaryView {
                    trust_store: "notary/ca.pem".into(),
                    identities: vec!["x509.subject: CN=<script>x</script>,O=Hospital A".into()],
                }),
            }),
            approved_by: None,
            reproduced_by: Some(ReproducedByView {
                min: 2,
                patterns: vec!["builders/*.pub".into()],
                keys: vec![
                    key("sha256:b1", "builders/a.pub"),
                    key("sha256:b2", "builders/b.pub"),
                ],
            }),
            organizations: None,
            users: None,
            collaborations: None,
            functions: None,
            output: "none (release automatic)".into(),
        };
        let page = policy_body(&PolicyView {
            file: "policy.toml".into(),
            sha256: "sha256:00".into(),
            version: 1,
            allow: vec![rule],
            deny: Vec::new(),
        })
        .into_string();
        assert!(
            page.contains(
                "at least 2 of 1 distinct keys and the Notary signers chained to trust store"
            ),
            "{page}"
        );
        assert!(page.contains("notary/ca.pem"), "{page}");
        assert!(
            page.contains("CN=&lt;script&gt;x&lt;/script&gt;,O=Hospital A"),
            "{page}"
        );
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("reproduced by"), "{page}");
        assert!(
            page.contains("2 of 2 distinct builder keys (builders/*.pub) attest a build of this digest from one commit"),
            "{page}"
        );
        assert!(page.contains("builders/b.pub"), "{page}");
    }
}
