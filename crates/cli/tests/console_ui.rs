//! `warden ui` (issue 12), the real binary against the real server in this process, real nodes
//! (`warden node start`), a real registry and the Docker engine, driven by headless Chromium
//! through Debian's chromedriver (WebDriver, fantoccini); and its guards over plain HTTP: no
//! token or cookie, a foreign Host or Origin, a form without its CSRF token, and a value holding
//! HTML. The administrator's pages (a profile with only `[server]`, as root): organizations,
//! collaborations, users and nodes made in the browser, a node's key shown once and accepted by
//! the server, forms without their CSRF token changing nothing, and a researcher refused with
//! the server's reason. Screenshots of the main pages go to docs/ui/ (docs/ui.md shows them).
//!
//! Chromium and chromedriver must be installed (scripts/prereqs.sh installs them): a test that
//! cannot start them fails.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod browser;
mod researcher;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use browser::{browser, browser_sized, fits, main_text, shot, tab_through};
use fantoccini::Locator;
use researcher::{ADMIN_PASSWORD, BIN, PASSWORD, World};
use serde_json::json;
use tokio::io::AsyncBufReadExt as _;

const WAIT: Duration = Duration::from_secs(120);

/// A running `warden ui`, stopped on drop.
struct Ui {
    _child: tokio::process::Child,
    /// The address it printed (with the launch token).
    url: String,
    /// `http://127.0.0.1:PORT`.
    base: String,
}

/// Starts `warden ui ARGS` with the world's task records and reads the address it prints.
async fn ui(w: &World, args: &[&str]) -> Ui {
    ui_logging(w, args, None).await
}

/// [`ui`], its standard error (with every log line, `WARDEN_LOG=trace`) written to `log` when
/// given.
async fn ui_logging(w: &World, args: &[&str], log: Option<&std::path::Path>) -> Ui {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.current_dir(w.dir.path())
        .arg("ui")
        .args(args)
        .env_remove("WARDEN_PASSWORD")
        .env_remove("XDG_CONFIG_HOME")
        .env("XDG_STATE_HOME", w.state_home())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(path) = log {
        cmd.env("WARDEN_LOG", "trace")
            .stderr(std::fs::File::create(path).unwrap());
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("warden ui printed its address")
        .unwrap()
        .expect("warden ui printed a line");
    let base = url.split("/login?").next().unwrap().to_owned();
    assert!(
        base.starts_with("http://127.0.0.1:") && url.contains("/login?token="),
        "{url}"
    );
    Ui {
        _child: child,
        url,
        base,
    }
}

/// A collaboration whose name is HTML, with both organizations.
const HTML_NAME: &str = "<script>alert('x')</script><b>study</b>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_refuses_without_token_from_another_origin_without_csrf_and_escapes_values() {
    let w = World::new().await;
    let (s, v) = w
        .call(
            reqwest::Method::POST,
            &w.admin,
            "/api/collaborations",
            Some(json!({"name": HTML_NAME, "organizations": [w.a.id, w.b.id], "encrypted": true})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let profile = w.profile(&w.dir.path().join("p"), &[&w.a, &w.b], PASSWORD);

    // Anywhere but loopback is refused before anything else.
    let out = w
        .warden(
            &[
                "ui",
                "--profile-file",
                profile.to_str().unwrap(),
                "--listen",
                "0.0.0.0:0",
            ],
            &[],
        )
        .await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("loopback only"), "{out}");

    let ui = ui(
        &w,
        &[
            "--profile-file",
            profile.to_str().unwrap(),
            "--node-socket",
            "/nonexistent/node.sock",
        ],
    )
    .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: &str| http.get(format!("{}{path}", ui.base));

    // No cookie: 401 on every page, with the reason; the static files are public code.
    for path in [
        "/",
        "/tasks",
        "/collaborations",
        "/node",
        "/tasks/1/results",
    ] {
        let r = get(path).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert!(r.text().await.unwrap().contains("no session"), "{path}");
    }
    assert_eq!(
        get("/static/console.js").send().await.unwrap().status(),
        200
    );
    // A wrong or missing launch token: refused, no cookie.
    let r = get("/login?token=00").send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(get("/login").send().await.unwrap().status(), 401);

    // The launch token: a cookie (HttpOnly, SameSite=Strict) and a redirect that drops it.
    let r = http.get(&ui.url).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    let port = ui.base.rsplit(':').next().unwrap().to_owned();
    assert!(
        cookie.starts_with(&format!("warden_console_{port}=")),
        "{cookie}"
    );

    // With it: the page, and the headers every answer carries.
    let r = get("/").header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("script-src 'self'")
            && !csp.contains("unsafe-inline")
            && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store");
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Logged in as") && page.contains("rita"),
        "{page}"
    );
    // No inline script: the one script is a file of the console.
    assert!(
        page.contains(r#"<script src="/static/console.js" defer></script>"#),
        "{page}"
    );
    assert_eq!(page.matches("<script").count(), 1, "{page}");

    // Another Host (DNS rebinding) or Origin: refused even with the cookie.
    let r = get("/")
        .header("cookie", &cookie)
        .header("host", format!("rebound.example:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("DNS rebinding"));
    let r = get("/")
        .header("cookie", &cookie)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("another origin"));

    // A form without this session's CSRF token, or without an Origin: refused before the node
    // is asked anything.
    let origin = ui.base.clone();
    let post = |path: &str, body: &'static str| {
        http.post(format!("{}{path}", ui.base))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    for body in ["", "csrf=", "csrf=0123", "reason=x"] {
        let r = post("/node/runs/1/refuse", body)
            .header("origin", &origin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{body}");
        assert!(r.text().await.unwrap().contains("CSRF token"), "{body}");
    }
    // Nor is a task created by a form without it.
    let r = post(
        "/tasks/new",
        "image=example.org%2Fa%3A1&org=hospital-a&input=%7B%7D",
    )
    .header("origin", &origin)
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(w.task_count(), 0);
    let r = post("/node/runs/1/release", "csrf=0123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("without an Origin"));
    let r = post("/node/digests/approve", "csrf=0123")
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // A collaboration named with HTML is shown as text.
    let r = get("/collaborations")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("&lt;script&gt;alert('x')&lt;/script&gt;&lt;b&gt;study&lt;/b&gt;"),
        "{page}"
    );
    assert!(
        !page.contains("<script>alert") && !page.contains("<b>study"),
        "{page}"
    );
}

/// Reloads `url` until the row of run `run` holds `needle`; returns that row's text.
async fn until_row(c: &fantoccini::Client, w: &World, url: &str, run: i64, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    let css = format!("tr[data-run=\"{run}\"]");
    loop {
        c.goto(url).await.unwrap();
        if let Ok(row) = c.find(Locator::Css(&css)).await {
            let text = row.text().await.unwrap();
            if text.contains(needle) {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "run {run} never showed `{needle}` at {url}: {}\n{}",
            main_text(c).await,
            w.node_logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_a_rejected_runs_reason_shows_and_a_released_result_arrives_completed() {
    let mut w = World::with_registry().await;
    // The algorithm writes its args as its result: a JSON object of numbers, one key HTML.
    let (repo, _) = w.push_signed("json_out", "ui-json", "v1").await;
    // Hospital A allows another repository only: it rejects the run with its reason.
    let other = warden_reference::Repository::parse(&format!(
        "{}/cli/ui-other",
        w.registry.as_ref().unwrap().host()
    ))
    .unwrap();
    let deny = w.signed_policy(&other);
    w.start_node("hospital-a", &deny);
    // Hospital B holds the result for its owner's release.
    let manual = format!(
        "{}[allow.output]\nrelease = \"manual\"\n",
        w.signed_policy(&repo)
    );
    w.start_node("hospital-b", &manual);
    let socket = w
        .dir
        .path()
        .join("node-hospital-b/spool/local.sock")
        .display()
        .to_string();
    let profile = w.profile(&w.dir.path().join("p"), &[&w.a, &w.b], PASSWORD);
    let p = profile.to_str().unwrap();
    let name = "<script>alert('name')</script> mean";
    let out = w
        .warden(
            &[
                "task",
                "create",
                "--profile-file",
                p,
                "--image",
                &format!("{repo}:v1"),
                "--org",
                "hospital-a",
                "--org",
                "hospital-b",
                "--input",
                r#"{"function":"f","args":{"<b>cases</b>":12,"controls":30}}"#,
                "--name",
                name,
                "--json",
            ],
            &[],
        )
        .await;
    let created = out.json();
    let task = created["task"]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("{out}"));
    let run_of = |org: i64| {
        created["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["organization_id"] == org)
            .map(|r| r["id"].as_i64().unwrap())
            .unwrap_or_else(|| panic!("no run at {org}: {out}"))
    };
    let (run_a, run_b) = (run_of(w.a.id), run_of(w.b.id));

    let ui = ui(&w, &["--profile-file", p, "--node-socket", &socket]).await;
    let b = browser().await;
    let c = &b.client;

    // The printed address logs in and leaves no token in the address bar.
    c.goto(&ui.url).await.unwrap();
    let at = c.current_url().await.unwrap();
    assert_eq!((at.path(), at.query()), ("/", None), "{at}");
    assert!(main_text(c).await.contains("Logged in as rita"));
    shot(c, "home").await;

    // The task list, with the task's HTML name as text.
    c.goto(&format!("{}/tasks", ui.base)).await.unwrap();
    assert!(main_text(c).await.contains(name));
    shot(c, "tasks").await;

    // The task: hospital A's rejection with its node's reason.
    let task_url = format!("{}/tasks/{task}", ui.base);
    let row = until_row(c, &w, &task_url, run_a, "rejected").await;
    assert!(
        row.contains("hospital-a") && row.contains("denied"),
        "{row}"
    );
    let text = main_text(c).await;
    assert!(text.contains(name), "{text}");
    // The name's script did not run (no alert is open).
    assert!(c.get_alert_text().await.is_err());
    until_row(c, &w, &task_url, run_b, "awaiting_release").await;
    shot(c, "task").await;

    // The data owner's airlock: the held result, shown in plaintext, then released.
    let airlock = format!("{}/node", ui.base);
    until_row(c, &w, &airlock, run_b, &format!("run {run_b}")).await;
    shot(c, "airlock").await;
    c.find(Locator::LinkText(&format!("run {run_b}")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Id("release"))
        .await
        .unwrap();
    let held = main_text(c).await;
    assert!(
        held.contains("<b>cases</b>") && held.contains("controls") && held.contains("30"),
        "{held}"
    );
    assert!(c.find_all(Locator::Css("main b")).await.unwrap().is_empty());
    shot(c, "held-result").await;
    c.find(Locator::Id("release"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The form's answer page (the click returns before the next page has loaded).
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("p.answer, p.error"))
        .await
        .unwrap();
    let answer = main_text(c).await;
    assert!(answer.contains("released by root (uid 0)"), "{answer}");

    // The researcher's view: completed, and the result opened here with her key.
    until_row(c, &w, &task_url, run_b, "completed").await;
    c.find(Locator::LinkText("Open the results here, with your key"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("section.run, p.error"))
        .await
        .unwrap();
    let results = main_text(c).await;
    assert!(
        results.contains("<b>cases</b>") && results.contains("hospital-b"),
        "{results}"
    );
    // The numbers drawn as an SVG chart, made here; its labels are text.
    let svg = c
        .find(Locator::Css("section.run figure.chart svg"))
        .await
        .unwrap();
    assert!(svg.text().await.unwrap().contains("<b>cases</b>"));
    assert!(c.find_all(Locator::Css("main b")).await.unwrap().is_empty());
    assert!(results.contains("this machine sent"), "{results}");
    shot(c, "results").await;

    // Without the local record (the task made on another machine), the results are checked
    // against the server's nonce and the digest the tag resolves to now, and the page says so.
    let records = w.state_home().join("warden/tasks");
    for f in std::fs::read_dir(&records).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    c.goto(&format!("{}/tasks/{task}/results", ui.base))
        .await
        .unwrap();
    let echoed = main_text(c).await;
    assert!(
        echoed.contains("no local record of this task") && echoed.contains("<b>cases</b>"),
        "{echoed}"
    );
}

/// Clicks `button` (a form's submit button) and waits for the node's answer page.
async fn submit(c: &fantoccini::Client, button: Locator<'_>) -> String {
    c.find(button).await.unwrap().click().await.unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("p.answer, p.error"))
        .await
        .unwrap();
    main_text(c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_a_task_made_with_the_form_waits_for_approval_and_its_result_is_refused_with_a_reason_shown_as_text()
 {
    let mut w = World::with_registry().await;
    let (repo, digest) = w.push_signed("echo", "ui-first", "v1").await;
    let policy = format!(
        "{}[allow.output]\nfirst_run = \"approve\"\nrelease = \"manual\"\n",
        w.signed_policy(&repo)
    );
    w.start_node("hospital-b", &policy);
    let socket = w
        .dir
        .path()
        .join("node-hospital-b/spool/local.sock")
        .display()
        .to_string();
    let profile = w.profile(&w.dir.path().join("p"), &[&w.a, &w.b], PASSWORD);
    let p = profile.to_str().unwrap();
    let ui = ui(&w, &["--profile-file", p, "--node-socket", &socket]).await;
    let b = browser().await;
    let c = &b.client;
    c.goto(&ui.url).await.unwrap();

    // The task is created from the form: sealed here, for hospital B.
    c.goto(&format!("{}/tasks/new", ui.base)).await.unwrap();
    c.find(Locator::Id("image"))
        .await
        .unwrap()
        .send_keys(&format!("{repo}:v1"))
        .await
        .unwrap();
    c.find(Locator::Css("input[name=org][value=hospital-b]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let input = c.find(Locator::Id("input")).await.unwrap();
    input.clear().await.unwrap();
    input
        .send_keys(r#"{"function":"f","args":{"n":2}}"#)
        .await
        .unwrap();
    c.find(Locator::Id("name"))
        .await
        .unwrap()
        .send_keys("from the form")
        .await
        .unwrap();
    shot(c, "new-task").await;
    c.find(Locator::Id("create"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let row = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("tr[data-run]"))
        .await
        .unwrap();
    let run: i64 = row
        .attr("data-run")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    let at = c.current_url().await.unwrap();
    let task: i64 = at.path().strip_prefix("/tasks/").unwrap().parse().unwrap();
    let text = main_text(c).await;
    assert!(
        text.contains("from the form") && text.contains("the local record of what was sent"),
        "{text}"
    );
    assert!(row.text().await.unwrap().contains("hospital-b"));
    // Exactly as `warden task create`: the record kept where `warden task show` reads it.
    let show = w
        .warden(
            &["task", "show", "--profile-file", p, &task.to_string()],
            &[],
        )
        .await;
    assert!(
        show.stdout.contains(&format!("hospital-b: run {run}"))
            && !show.stderr.contains("no local record"),
        "{show}"
    );

    // The first-run approval queue: the digest, approved from its form.
    let airlock = format!("{}/node", ui.base);
    let row = until_row(c, &w, &airlock, run, &digest.to_string()).await;
    assert!(row.contains("Approve this digest"), "{row}");
    shot(c, "approvals").await;
    let answer = submit(c, Locator::Css("button[type=submit]")).await;
    assert!(answer.contains("approved by root (uid 0)"), "{answer}");

    // It ran and is held; refused with a reason that holds HTML.
    until_row(c, &w, &airlock, run, &format!("run {run}")).await;
    c.goto(&format!("{}/node/runs/{run}", ui.base))
        .await
        .unwrap();
    let reason = "<img src=x onerror=alert(1)> counts below 5";
    c.find(Locator::Id("reason"))
        .await
        .unwrap()
        .send_keys(reason)
        .await
        .unwrap();
    let answer = submit(c, Locator::Id("refuse")).await;
    assert!(answer.contains("refused"), "{answer}");

    // The researcher sees the run end with the data owner's words, as text.
    let task_url = format!("{}/tasks/{task}", ui.base);
    let row = until_row(c, &w, &task_url, run, "failed").await;
    assert!(row.contains(reason), "{row}");
    assert!(c.get_alert_text().await.is_err());
    let cell = c
        .find(Locator::Css(&format!("tr[data-run=\"{run}\"] td.reason")))
        .await
        .unwrap();
    assert_eq!(cell.find_all(Locator::Css("img")).await.unwrap().len(), 0);
    shot(c, "refused").await;
}

/// The server's reason when a role may not do something (crates/server/src/permissions).
const NOT_ROLE: &str = "your role does not allow this action";

/// The administrator's profile: `[server]` only (no researcher's key, no pins), as root.
fn admin_profile(w: &World) -> PathBuf {
    let dir = w.dir.path().join("admin");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("admin.pw"), format!("{ADMIN_PASSWORD}\n")).unwrap();
    let path = dir.join("admin.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nurl = \"{}\"\nusername = \"admin\"\npassword_file = \"admin.pw\"\n",
            w.base
        ),
    )
    .unwrap();
    path
}

/// The status of a password login at the server.
async fn login_status(w: &World, user: &str, password: &str) -> u16 {
    w.http
        .post(w.url("/api/auth/login"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Who the server says a node API key is: `(status, whoami)` after `POST /api/auth/node`.
async fn node_login(w: &World, key: &str) -> (u16, serde_json::Value) {
    let r = w
        .http
        .post(w.url("/api/auth/node"))
        .json(&json!({ "api_key": key }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    if status != 200 {
        return (status, serde_json::Value::Null);
    }
    let token: serde_json::Value = r.json().await.unwrap();
    let (s, me) = w
        .call(
            reqwest::Method::GET,
            token["access_token"].as_str().unwrap(),
            "/api/auth/whoami",
            None,
        )
        .await;
    assert_eq!(s, 200, "{me}");
    (status, me)
}

/// An organization's id, as the administrator sees it.
async fn org_id(w: &World, name: &str) -> i64 {
    let (s, v) = w
        .call(reqwest::Method::GET, &w.admin, "/api/organizations", None)
        .await;
    assert_eq!(s, 200, "{v}");
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no organization {name}: {v}"))["id"]
        .as_i64()
        .unwrap()
}

/// Clicks `button` and waits for the answer of the form: a `p.answer` holding `needle`, or an
/// error (a failure, with the page).
async fn submit_for(c: &fantoccini::Client, button: Locator<'_>, needle: &str) -> String {
    c.find(button).await.unwrap().click().await.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(e) = c.find(Locator::Css("p.error")).await {
            panic!("the form was refused: {}", e.text().await.unwrap());
        }
        if let Ok(e) = c.find(Locator::Css("p.answer")).await {
            if e.text().await.unwrap_or_default().contains(needle) {
                return main_text(c).await;
            }
        }
        assert!(Instant::now() < deadline, "no answer `{needle}`");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn type_into(c: &fantoccini::Client, id: &str, text: &str) {
    c.find(Locator::Id(id))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

async fn choose(c: &fantoccini::Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_an_administrator_makes_an_organization_a_collaboration_a_user_and_a_node_whose_key_shows_once_and_works()
 {
    let w = World::new().await;
    let admin = admin_profile(&w);
    // A profile without researcher keys starts the console.
    let ui = ui(&w, &["--profile-file", admin.to_str().unwrap()]).await;
    let b = browser().await;
    let c = &b.client;
    c.goto(&ui.url).await.unwrap();
    let home = main_text(c).await;
    assert!(
        home.contains("Administration")
            && home.contains("admin (root)")
            && home.contains("The researcher's pages are off"),
        "{home}"
    );
    shot(c, "admin-home").await;
    // The researcher's pages say what is missing.
    c.goto(&format!("{}/tasks", ui.base)).await.unwrap();
    let tasks = main_text(c).await;
    assert!(
        tasks.contains("no researcher's side") && tasks.contains("[researcher] key"),
        "{tasks}"
    );

    // An organization, with its X25519 key pasted as the .pub holds it.
    let key = warden_seal::SecretKey::generate();
    c.goto(&format!("{}/admin/organizations", ui.base))
        .await
        .unwrap();
    type_into(c, "org-name", "hospital-c").await;
    type_into(c, "org-key", &format!("{}\n", key.public_key().to_base64())).await;
    let page = submit_for(
        c,
        Locator::Id("create-org"),
        "created organization hospital-c",
    )
    .await;
    let fp = key.public_key().fingerprint().to_string();
    assert!(page.contains(&fp), "{page}");
    let hc = org_id(&w, "hospital-c").await;
    shot(c, "admin-organizations").await;

    // A collaboration of hospital A and the new one.
    c.goto(&format!("{}/admin/collaborations", ui.base))
        .await
        .unwrap();
    type_into(c, "collab-name", "cardio").await;
    choose(c, &format!("input[name=org][value=\"{hc}\"]")).await;
    choose(c, &format!("input[name=org][value=\"{}\"]", w.a.id)).await;
    let page = submit_for(
        c,
        Locator::Id("create-collab"),
        "created collaboration cardio",
    )
    .await;
    assert!(
        page.contains(&format!("hospital-a ({}), hospital-c ({hc})", w.a.id))
            || page.contains(&format!("hospital-c ({hc}), hospital-a ({})", w.a.id)),
        "{page}"
    );
    let (s, v) = w
        .call(
            reqwest::Method::GET,
            &w.admin,
            "/api/collaborations?name=cardio",
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let cardio = v["items"][0]["id"].as_i64().unwrap();
    shot(c, "admin-collaborations").await;

    // A researcher of hospital C, whose password works at the server.
    let first = "carl's first password";
    c.goto(&format!("{}/admin/users", ui.base)).await.unwrap();
    type_into(c, "user-name", "carl").await;
    choose(c, &format!("#user-org option[value=\"{hc}\"]")).await;
    type_into(c, "user-password", first).await;
    type_into(c, "user-password-again", first).await;
    let page = submit_for(c, Locator::Id("create-user"), "created user carl").await;
    assert!(!c.source().await.unwrap().contains(first));
    assert!(
        page.contains("researcher") && page.contains("hospital-c"),
        "{page}"
    );
    assert_eq!(login_status(&w, "carl", first).await, 200);
    shot(c, "admin-users").await;

    // Disabled: the server refuses carl's login; a new password; enabled again.
    c.find(Locator::LinkText("carl"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Id("disable"))
        .await
        .unwrap();
    let user_url = c.current_url().await.unwrap().to_string();
    submit_for(c, Locator::Id("disable"), "disabled user carl").await;
    assert_ne!(login_status(&w, "carl", first).await, 200);
    let second = "carl's second password";
    c.goto(&user_url).await.unwrap();
    type_into(c, "new-password", second).await;
    type_into(c, "new-password-again", second).await;
    submit_for(c, Locator::Id("reset"), "the password was set").await;
    assert!(!c.source().await.unwrap().contains(second));
    c.goto(&user_url).await.unwrap();
    submit_for(c, Locator::Id("enable"), "enabled user carl").await;
    assert_eq!(login_status(&w, "carl", second).await, 200);
    assert_ne!(login_status(&w, "carl", first).await, 200);
    shot(c, "admin-user").await;

    // A node of hospital C in cardio: its key shown once, and the server takes it as that node.
    c.goto(&format!("{}/admin/nodes", ui.base)).await.unwrap();
    choose(c, &format!("#node-org option[value=\"{hc}\"]")).await;
    choose(c, &format!("#node-collab option[value=\"{cardio}\"]")).await;
    c.find(Locator::Id("create-node"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let shown = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Id("api-key"))
        .await
        .unwrap();
    let api_key = shown.text().await.unwrap();
    assert!(api_key.starts_with("wdn_"), "{api_key}");
    assert!(main_text(c).await.contains("Shown only this once"));
    shot(c, "admin-node-key").await;
    let (s, me) = node_login(&w, &api_key).await;
    assert_eq!(s, 200);
    assert_eq!(me["kind"], "node", "{me}");
    assert_eq!(
        (
            me["organization_id"].as_i64(),
            me["collaboration_id"].as_i64()
        ),
        (Some(hc), Some(cardio)),
        "{me}"
    );
    let node = me["id"].as_i64().unwrap();
    // No page shows it again.
    for path in ["/", "/admin/organizations", "/admin/nodes"] {
        c.goto(&format!("{}{path}", ui.base)).await.unwrap();
        assert!(!c.source().await.unwrap().contains(&api_key), "{path}");
    }
    shot(c, "admin-nodes").await;

    // A rotation: asked to confirm first; then a new key shown once, the old one refused.
    let row = format!("tr[data-node=\"{node}\"]");
    choose(c, &format!("{row} button[type=submit]")).await;
    // The browser does not send the form until the box is ticked (the server refuses it too,
    // tested over HTTP).
    c.find(Locator::Css(&format!("{row} input[name=confirm]:invalid")))
        .await
        .unwrap();
    choose(c, &format!("{row} input[name=confirm]")).await;
    choose(c, &format!("{row} button[type=submit]")).await;
    let shown = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Id("api-key"))
        .await
        .unwrap();
    let rotated = shown.text().await.unwrap();
    assert!(
        rotated.starts_with("wdn_") && rotated != api_key,
        "{rotated}"
    );
    assert!(main_text(c).await.contains("the old key"));
    assert_eq!(node_login(&w, &api_key).await.0, 401);
    let (s, me) = node_login(&w, &rotated).await;
    assert_eq!((s, me["id"].as_i64()), (200, Some(node)), "{me}");
}

/// A session of `ui` over plain HTTP: a client that follows no redirect and the cookie.
async fn http_session(ui: &Ui) -> (reqwest::Client, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(&ui.url).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    (http, cookie)
}

/// The CSRF token in a page's forms.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF field: {page}"));
    let rest = &page[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_pages_change_nothing_without_csrf_show_html_names_as_text_keep_no_key_and_show_a_researcher_the_servers_refusal()
 {
    let w = World::new().await;
    let html_org = "<img src=x onerror=alert(1)><b>clinic</b>";
    let key = warden_seal::SecretKey::generate();
    let (s, v) = w
        .call(
            reqwest::Method::POST,
            &w.admin,
            "/api/organizations",
            Some(json!({"name": html_org, "public_key": key.public_key().to_base64()})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let clinic = v["id"].as_i64().unwrap();
    let rita = w.query("SELECT id FROM users WHERE username = 'rita'")[0].clone();
    let root = w.query("SELECT id FROM users WHERE username = 'admin'")[0].clone();
    let admin = admin_profile(&w);
    let log = w.dir.path().join("ui.log");
    let ui = ui_logging(&w, &["--profile-file", admin.to_str().unwrap()], Some(&log)).await;
    let (http, cookie) = http_session(&ui).await;
    let get = |path: &str| {
        http.get(format!("{}{path}", ui.base))
            .header("cookie", &cookie)
    };
    let post = |path: &str, body: String| {
        http.post(format!("{}{path}", ui.base))
            .header("cookie", &cookie)
            .header("origin", &ui.base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };

    // The organization named with HTML is text, in the list and in every form that names it.
    for path in [
        "/admin/organizations",
        "/admin/collaborations",
        "/admin/users",
        "/admin/nodes",
    ] {
        let r = get(path).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let page = r.text().await.unwrap();
        assert!(
            page.contains("&lt;img src=x onerror=alert(1)&gt;&lt;b&gt;clinic&lt;/b&gt;"),
            "{path}: {page}"
        );
        assert!(
            !page.contains("<img") && !page.contains("<b>clinic"),
            "{path}"
        );
    }
    let page = get("/admin/nodes")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);

    // Without this session's CSRF token, no form changes anything at the server.
    let count = |table: &str| w.query(&format!("SELECT count(*) FROM {table}"))[0].clone();
    let before: Vec<String> = ["organizations", "collaborations", "users", "nodes"]
        .iter()
        .map(|t| count(t))
        .collect();
    let pk = key
        .public_key()
        .to_base64()
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let forms = [
        (
            "/admin/organizations".to_owned(),
            format!("name=other&public_key={pk}"),
        ),
        (
            "/admin/collaborations".to_owned(),
            format!("name=other&org={clinic}"),
        ),
        (
            "/admin/users".to_owned(),
            "username=mallory&role=root&organization=&password=p1p1p1p1p1p1&password_again=p1p1p1p1p1p1"
                .to_owned(),
        ),
        (format!("/admin/users/{rita}/disable"), String::new()),
        (
            format!("/admin/users/{rita}/password"),
            "password=taken+over+now&password_again=taken+over+now".to_owned(),
        ),
        (
            "/admin/nodes".to_owned(),
            format!("organization={clinic}&collaboration={}", w.collab),
        ),
        ("/admin/nodes/1/key".to_owned(), "confirm=1".to_owned()),
    ];
    for (path, body) in &forms {
        for bad in ["", "&csrf=", "&csrf=00ff"] {
            let r = post(path, format!("{body}{bad}")).send().await.unwrap();
            assert_eq!(r.status(), 403, "{path} {bad}");
            assert!(r.text().await.unwrap().contains("CSRF token"), "{path}");
        }
    }
    let after: Vec<String> = ["organizations", "collaborations", "users", "nodes"]
        .iter()
        .map(|t| count(t))
        .collect();
    assert_eq!(before, after);
    assert_eq!(login_status(&w, "rita", PASSWORD).await, 200);
    assert_eq!(node_login(&w, &w.a.api_key).await.0, 200);

    // With it: a collaboration made, then a node, its key on that answer alone (not cached,
    // not kept).
    let r = post(
        "/admin/collaborations",
        format!("name=clinic+study&org={clinic}&csrf={csrf}"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("created collaboration clinic study"),
        "{page}"
    );
    let study = w.query("SELECT id FROM collaborations WHERE name = 'clinic study'")[0].clone();
    let r = post(
        "/admin/nodes",
        format!("organization={clinic}&collaboration={study}&csrf={csrf}"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let page = r.text().await.unwrap();
    let at = page.find("wdn_").unwrap_or_else(|| panic!("{page}"));
    let api_key: String = page[at..].chars().take_while(|c| *c != '<').collect();
    assert_eq!(node_login(&w, &api_key).await.0, 200);
    for path in ["/", "/admin/nodes", "/admin/organizations", "/admin/users"] {
        let page = get(path).send().await.unwrap().text().await.unwrap();
        assert!(!page.contains(&api_key), "{path}");
    }
    // A rotation not confirmed in its form changes nothing.
    let r = post("/admin/nodes/1/key", format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("nothing was changed"));
    assert_eq!(node_login(&w, &w.a.api_key).await.0, 200);
    // A password set from a form is never written into the answer.
    let r = post(
        "/admin/users",
        format!(
            "username=dora&role=viewer&organization={clinic}&password=dora+secret+words&password_again=dora+secret+words&csrf={csrf}"
        ),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("created user dora") && !page.contains("dora secret words"),
        "{page}"
    );
    assert_eq!(login_status(&w, "dora", "dora secret words").await, 200);
    // Nor into the console's log, even at its most verbose; nor is the node's key.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("TRACE") || logged.contains("DEBUG"),
        "{logged}"
    );
    for secret in [
        "dora secret words",
        "dora+secret+words",
        "taken over now",
        &api_key,
    ] {
        assert!(!logged.contains(secret), "{secret} in the log");
    }

    // A researcher's profile: the pages are the server's view of her account, and a change is
    // refused with the server's reason; nothing changes.
    let dora = w.query("SELECT id FROM users WHERE username = 'dora'")[0].clone();
    let profile = w.profile(&w.dir.path().join("p"), &[&w.a, &w.b], PASSWORD);
    let rui = crate::ui(&w, &["--profile-file", profile.to_str().unwrap()]).await;
    let (rhttp, rcookie) = http_session(&rui).await;
    let home = rhttp
        .get(format!("{}/", rui.base))
        .header("cookie", &rcookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!home.contains("/admin/"), "{home}");
    let page = rhttp
        .get(format!("{}/admin/organizations", rui.base))
        .header("cookie", &rcookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rcsrf = csrf_of(&page);
    let before = count("organizations");
    let refused = [
        (
            "/admin/organizations".to_owned(),
            format!("name=rogue&public_key={pk}"),
            "only root may do this",
        ),
        (
            format!("/admin/users/{root}/password"),
            "password=a+new+one+here&password_again=a+new+one+here".to_owned(),
            NOT_ROLE,
        ),
        (
            format!("/admin/users/{dora}/disable"),
            String::new(),
            NOT_ROLE,
        ),
        (
            "/admin/nodes/1/key".to_owned(),
            "confirm=1".to_owned(),
            NOT_ROLE,
        ),
    ];
    for (path, body, why) in &refused {
        let r = rhttp
            .post(format!("{}{path}", rui.base))
            .header("cookie", &rcookie)
            .header("origin", &rui.base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("{body}&csrf={rcsrf}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
        let page = r.text().await.unwrap();
        assert!(
            page.contains("the server answered 403") && page.contains(why),
            "{path}: {page}"
        );
    }
    assert_eq!(count("organizations"), before);
    assert_eq!(node_login(&w, &w.a.api_key).await.0, 200);
    assert_eq!(login_status(&w, "admin", ADMIN_PASSWORD).await, 200);
    assert_eq!(login_status(&w, "dora", "dora secret words").await, 200);
}

/// The `data-status` of the verification page's verdict.
async fn verdict(c: &fantoccini::Client) -> String {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("p#verdict, p.error"))
        .await
        .unwrap()
        .attr("data-status")
        .await
        .unwrap()
        .unwrap_or_else(|| "error".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_the_data_owner_reads_the_policy_the_decisions_with_their_reasons_as_text_and_the_audit_log_filtered_verified_and_tampered()
 {
    let mut w = World::with_registry().await;
    let (repo, digest) = w.push_signed("json_out", "ui-owner", "v1").await;
    let (denied, _) = w.push_signed("json_out", "ui-owner-denied", "v1").await;
    // Hospital B admits one repository, holding its results for release, and denies the other.
    let policy = format!(
        "{}[allow.output]\nrelease = \"manual\"\n\n[[deny]]\nrepository = \"{denied}\"\n",
        w.signed_policy(&repo)
    );
    w.start_node("hospital-b", &policy);
    let node_dir = w.dir.path().join("node-hospital-b");
    let socket = node_dir.join("spool/local.sock").display().to_string();
    let profile = w.profile(&w.dir.path().join("p"), &[&w.a, &w.b], PASSWORD);
    let p = profile.to_str().unwrap();
    let create = async |image: String| {
        let out = w
            .warden(
                &[
                    "task",
                    "create",
                    "--profile-file",
                    p,
                    "--image",
                    &image,
                    "--org",
                    "hospital-b",
                    "--input",
                    r#"{"function":"f","args":{"n":7}}"#,
                    "--json",
                ],
                &[],
            )
            .await;
        out.json()["runs"][0]["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("{out}"))
    };
    let admitted = create(format!("{repo}:v1")).await;
    let rejected = create(format!("{denied}:v1")).await;

    let ui = ui(&w, &["--node-socket", &socket]).await;
    let b = browser().await;
    let c = &b.client;
    c.goto(&ui.url).await.unwrap();

    // The held result is refused with a reason that holds HTML.
    let airlock = format!("{}/node", ui.base);
    until_row(c, &w, &airlock, admitted, &format!("run {admitted}")).await;
    c.goto(&format!("{}/node/runs/{admitted}", ui.base))
        .await
        .unwrap();
    let reason = "<script>alert('reason')</script><b>counts below 5</b>";
    type_into(c, "reason", reason).await;
    let answer = submit(c, Locator::Id("refuse")).await;
    assert!(answer.contains("refused"), "{answer}");

    // The policy in force: both rules with what they match, the file's hash.
    c.goto(&format!("{}/node/policy", ui.base)).await.unwrap();
    let text = main_text(c).await;
    for needle in [
        "allow[1]",
        "deny[1]",
        &repo.to_string(),
        &denied.to_string(),
        "1 of 1 distinct keys",
        "image.pub",
        "release manual by 1 checker",
        "sha256:",
        "policy.toml",
    ] {
        assert!(text.contains(needle), "`{needle}` in {text}");
    }
    let rules = c.find_all(Locator::Css("section.rule")).await.unwrap();
    assert_eq!(rules.len(), 2);
    shot(c, "node-policy").await;

    // The decisions, newest first: the data owner's refusal with its reason as text, the
    // policy's denial in the node's words, the admission with its digest.
    let decisions = format!("{}/node/decisions", ui.base);
    let row = until_row(c, &w, &decisions, rejected, "rejected").await;
    assert!(row.contains("deny[1]") && row.contains("rita"), "{row}");
    let row = until_row(c, &w, &decisions, admitted, reason).await;
    assert!(
        row.contains("refused at the airlock by root (uid 0)"),
        "{row}"
    );
    let text = main_text(c).await;
    assert!(
        text.contains(&digest.to_string()) && text.contains("admitted"),
        "{text}"
    );
    assert!(c.get_alert_text().await.is_err(), "a script ran");
    assert!(
        c.find_all(Locator::Css("main b, main script"))
            .await
            .unwrap()
            .is_empty()
    );
    shot(c, "node-decisions").await;

    // The audit log, filtered by event kind.
    c.goto(&format!("{}/node/audit", ui.base)).await.unwrap();
    let all = c
        .find_all(Locator::Css("tr[data-seq]"))
        .await
        .unwrap()
        .len();
    choose(c, "select#kind option[value=decision]").await;
    c.find(Locator::Id("filter"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    // A GET form sends its empty fields too; the console drops them.
    while !c
        .current_url()
        .await
        .unwrap()
        .query()
        .is_some_and(|q| q.starts_with("kind=decision&"))
    {
        assert!(Instant::now() < deadline, "the filter was not applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = c.find_all(Locator::Css("tr[data-seq]")).await.unwrap();
    let decisions_only = c
        .find_all(Locator::Css("tr[data-event=decision]"))
        .await
        .unwrap();
    assert_eq!((rows.len(), decisions_only.len()), (2, 2));
    assert!(all > 2, "{all} records in all");
    let text = main_text(c).await;
    assert!(text.contains("deny[1]"), "{text}");
    shot(c, "node-audit").await;

    // A stranger whom the file modes let reach the socket is refused by the node's own check of
    // its peer credentials, on each reading endpoint, and so is a console it runs.
    stranger_is_refused(&w, &socket, &denied.to_string()).await;

    // Verified by the node with its key, then tampered with.
    c.find(Locator::Id("verify"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let status = verdict(c).await;
    assert!(
        status == "intact" || status == "uncovered",
        "{status}: {}",
        main_text(c).await
    );
    assert!(main_text(c).await.contains("exits 0"));
    shot(c, "node-audit-verify").await;
    let log = node_dir.join("audit/audit.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let (line1, rest) = text.split_once('\n').unwrap();
    let edited = line1.replacen("\"event\":\"decision\"", "\"event\":\"run\"", 1);
    assert_ne!(edited, line1, "line 1 is a decision: {line1}");
    std::fs::write(&log, format!("{edited}\n{rest}")).unwrap();
    c.refresh().await.unwrap();
    assert_eq!(verdict(c).await, "tampered");
    let text = main_text(c).await;
    assert!(
        text.contains("Tampered") && text.contains("line 1") && text.contains("exits 1"),
        "{text}"
    );
    shot(c, "node-audit-tampered").await;
}

/// This machine's first IPv4 address that is not loopback (the test fails without one).
fn non_loopback_address() -> String {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|cidr| cidr.split('/').next())
        .find(|a| !a.starts_with("127."))
        .unwrap_or_else(|| panic!("no IPv4 address beside loopback on this machine"))
        .to_owned()
}

/// `warden ui ARGS` with `env`, run to its end: exit status and standard error.
async fn ui_refused(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = tokio::process::Command::new(BIN)
        .arg("ui")
        .args(args)
        .env_remove("WARDEN_UI_PASSWORD")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    let out = tokio::time::timeout(WAIT, out).await.unwrap().unwrap();
    assert!(out.stdout.is_empty(), "no address printed");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_the_console_is_refused_without_a_password_and_asks_it_before_the_cookie() {
    let ip = non_loopback_address();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("no-node.sock").display().to_string();
    let listen = format!("{ip}:0");
    // No password: refused before anything is read or bound.
    let (code, err) = ui_refused(&["--listen", &listen, "--node-socket", &socket], &[]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unless a password is set"), "{err}");
    // A short password, every interface, a missing file: refused, each said apart.
    let (code, err) = ui_refused(
        &["--listen", &listen, "--node-socket", &socket],
        &[("WARDEN_UI_PASSWORD", "short")],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("at least 12"), "{err}");
    let (code, err) = ui_refused(
        &["--listen", "0.0.0.0:0", "--node-socket", &socket],
        &[("WARDEN_UI_PASSWORD", PASSWORD)],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("name the one address"), "{err}");
    let missing = dir.path().join("missing").display().to_string();
    let (code, err) = ui_refused(
        &[
            "--listen",
            &listen,
            "--node-socket",
            &socket,
            "--password-file",
            &missing,
        ],
        &[],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read the password file"), "{err}");

    // With a password file: it listens there and asks the password before the cookie.
    let file = dir.path().join("ui-password");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .arg("ui")
        .args([
            "--listen",
            &listen,
            "--node-socket",
            &socket,
            "--password-file",
        ])
        .arg(&file)
        .env_remove("WARDEN_UI_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let base = url.split("/login?").next().unwrap().to_owned();
    assert!(base.starts_with(&format!("http://{ip}:")), "{url}");
    let token = url.split("token=").nth(1).unwrap().to_owned();
    let host = base.trim_start_matches("http://").to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The launch token alone opens the form, not the console.
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none());
    let form = r.text().await.unwrap();
    assert!(
        form.contains("type=\"password\"") && form.contains("action=\"/login\""),
        "{form}"
    );
    assert!(!form.contains(PASSWORD));
    assert_eq!(
        http.get(format!("{base}/")).send().await.unwrap().status(),
        401
    );
    // `localhost` is not this console's host beyond loopback.
    let r = http
        .get(&url)
        .header(
            "host",
            format!("localhost:{}", host.rsplit(':').next().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let post = |token: String, password: &'static str, origin: Option<String>| {
        let mut req = http
            .post(format!("{base}/login"))
            .form(&[("token", token.as_str()), ("password", password)]);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    // A wrong password: refused after a second, no cookie, the reason on the form.
    let started = Instant::now();
    let r = post(token.clone(), "not the password at all", Some(base.clone()))
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(r.headers().get("set-cookie").is_none());
    let page = r.text().await.unwrap();
    assert!(page.contains("wrong password"), "{page}");
    // The right password with another token, or from another origin, or without one.
    let r = post("00".repeat(32), PASSWORD, Some(base.clone()))
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("not the launch token"));
    let r = post(token.clone(), PASSWORD, Some("http://evil.example".into()))
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    let r = post(token.clone(), PASSWORD, None).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("without an Origin"));
    // Token and password: the cookie, and the console opens.
    let r = post(token.clone(), PASSWORD, Some(base.clone()))
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let r = http
        .get(format!("{base}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Airlock"));
    drop(child);
}

/// Who uid 65534 (nobody) is at the node: each reading endpoint of the socket (`/v1/policy`,
/// `/v1/audit`, `/v1/audit/verify`) asked with curl, and the same pages of a `warden ui` it
/// runs, all refused by the node's check of the peer's credentials (the socket's directories
/// and mode opened to others for the while, so that the file modes do not refuse first);
/// nothing of the policy or the log (`secret`) in any answer.
async fn stranger_is_refused(w: &World, socket: &str, secret: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    const NOBODY: &str = "65534";
    let setpriv = |program: &str| {
        let mut cmd = tokio::process::Command::new("setpriv");
        cmd.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            program,
        ])
        .current_dir("/");
        cmd
    };
    let mut opened = Vec::new();
    let mut dir = std::path::Path::new(socket).parent().unwrap();
    loop {
        let mode = std::fs::metadata(dir).unwrap().permissions().mode();
        opened.push((dir.to_path_buf(), mode));
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o001)).unwrap();
        if dir == w.dir.path() {
            break;
        }
        dir = dir.parent().unwrap();
    }
    let mode = std::fs::metadata(socket).unwrap().permissions().mode();
    opened.push((PathBuf::from(socket), mode));
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666)).unwrap();

    for path in ["/v1/policy", "/v1/audit", "/v1/audit/verify"] {
        let out = setpriv("curl")
            .args(["-sS", "-w", "\n%{http_code}", "--unix-socket", socket])
            .arg(format!("http://node{path}"))
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, status) = text.rsplit_once('\n').unwrap();
        assert_eq!(
            status,
            "403",
            "{path}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            body.contains("may not use this node's local socket") && body.contains(NOBODY),
            "{path}: {body}"
        );
        assert!(!body.contains(secret), "{path}: {body}");
    }

    let mut child = setpriv(BIN)
        .args(["ui", "--node-socket", socket])
        .env_remove("WARDEN_PASSWORD")
        .env_remove("WARDEN_PROFILE")
        .env("HOME", "/nonexistent")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .expect("the stranger's warden ui printed its address");
    let base = url.split("/login?").next().unwrap().to_owned();
    let ui = Ui {
        _child: child,
        url,
        base,
    };
    let (http, cookie) = http_session(&ui).await;
    for page in ["/node/policy", "/node/audit", "/node/audit/verify"] {
        let r = http
            .get(format!("{}{page}", ui.base))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert!(
            status.is_client_error() || status.is_server_error(),
            "{page}: {status} {body}"
        );
        assert!(
            body.contains("may not use this node&#39;s local socket")
                || body.contains("may not use this node's local socket"),
            "{page}: {body}"
        );
        assert!(!body.contains(secret), "{page}: {body}");
    }
    drop(ui);
    for (path, mode) in opened.into_iter().rev() {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// The ids of the rows `<tr ATTR="ID">` of a page, in order.
fn row_ids(page: &str, attr: &str) -> Vec<i64> {
    let mark = format!("<tr {attr}=\"");
    page.match_indices(&mark)
        .map(|(at, _)| {
            let rest = &page[at + mark.len()..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}

/// The `rel="next"` link of a page, if any.
fn next_link(page: &str) -> Option<String> {
    let at = page.find("rel=\"next\"")?;
    let start = page[..at].rfind("href=\"").unwrap() + "href=\"".len();
    let rest = &page[start..];
    Some(rest[..rest.find('"').unwrap()].replace("&amp;", "&"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_administrators_lists_page_by_plain_links_fifty_rows_at_most_every_row_once_and_html_names_as_text()
 {
    let w = World::new().await;
    let html_org = "<img src=x onerror=alert(2)><i>org</i>";
    // 2 + 201 organizations (the newest named with HTML; more than two pages of the client's
    // 100, which the users' and nodes' pages read for names), a collaboration of 53 of them
    // with a node each (2 + 53 nodes), 2 + 51 collaborations and 2 + 51 users: more than a
    // page of each.
    let mut orgs = Vec::new();
    for i in 0..201 {
        let name = if i == 200 {
            html_org.to_owned()
        } else {
            format!("org-{i:02}")
        };
        let key = warden_seal::SecretKey::generate();
        let (s, v) = w
            .call(
                reqwest::Method::POST,
                &w.admin,
                "/api/organizations",
                Some(json!({"name": name, "public_key": key.public_key().to_base64()})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        orgs.push(v["id"].as_i64().unwrap());
    }
    let (s, v) = w
        .call(
            reqwest::Method::POST,
            &w.admin,
            "/api/collaborations",
            Some(json!({"name": "wide", "organizations": orgs[..53], "encrypted": true})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let wide = v["id"].as_i64().unwrap();
    for o in &orgs[..53] {
        let (s, v) = w
            .call(
                reqwest::Method::POST,
                &w.admin,
                "/api/nodes",
                Some(json!({"organization_id": o, "collaboration_id": wide})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    for i in 0..51 {
        let (s, v) = w
            .call(
                reqwest::Method::POST,
                &w.admin,
                "/api/collaborations",
                Some(json!({"name": format!("c-{i:02}"), "organizations": [w.a.id], "encrypted": true})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        w.user(&format!("user-{i:02}"), w.a.id).await;
    }
    let admin = admin_profile(&w);
    let ui = ui(&w, &["--profile-file", admin.to_str().unwrap()]).await;
    let (http, cookie) = http_session(&ui).await;

    // Over plain HTTP (no script runs): each list is walked by its links, at most 50 rows a
    // page, every row once, in the server's order, and the total is the server's.
    for (path, attr, api) in [
        ("/admin/organizations", "data-org", "/api/organizations"),
        ("/admin/users", "data-user", "/api/users"),
        ("/admin/nodes", "data-node", "/api/nodes"),
        (
            "/admin/collaborations",
            "data-collaboration",
            "/api/collaborations",
        ),
    ] {
        let mut all = Vec::new();
        let mut pages = 0;
        let mut at = path.to_owned();
        loop {
            let r = http
                .get(format!("{}{at}", ui.base))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{at}");
            let page = r.text().await.unwrap();
            let ids = row_ids(&page, attr);
            assert!(
                !ids.is_empty() && ids.len() <= 50,
                "{at}: {} rows",
                ids.len()
            );
            // The first page has no link to itself; every later one links back to it.
            assert_eq!(
                page.contains(&format!("<a href=\"{path}\">First page</a>")),
                pages > 0,
                "{at}"
            );
            if api == "/api/organizations" && ids.contains(orgs.last().unwrap()) {
                assert!(
                    page.contains("&lt;img src=x onerror=alert(2)&gt;&lt;i&gt;org&lt;/i&gt;")
                        && !page.contains("<img src=x")
                        && !page.contains("<i>org"),
                    "{at}: {page}"
                );
            }
            all.extend(ids);
            pages += 1;
            match next_link(&page) {
                Some(next) => {
                    assert!(next.starts_with(&format!("{path}?after=")), "{next}");
                    at = next;
                }
                None => break,
            }
        }
        assert!(pages >= 2, "{path}: {pages} page(s)");
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        sorted.reverse();
        assert_eq!(sorted, all, "{path}: rows repeated or not newest first");
        let mut from_api = Vec::new();
        let mut after = String::new();
        loop {
            let (s, v) = w
                .call(
                    reqwest::Method::GET,
                    &w.admin,
                    &format!("{api}?limit=500{after}"),
                    None,
                )
                .await;
            assert_eq!(s, 200, "{v}");
            from_api.extend(
                v["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x["id"].as_i64().unwrap()),
            );
            match v["next"].as_i64() {
                Some(n) => after = format!("&after={n}"),
                None => break,
            }
        }
        assert_eq!(all, from_api, "{path}: not the server's list");
    }
    // A cursor that is not a number is refused, not read as the first page.
    let r = http
        .get(format!("{}/admin/users?after=1%20OR%201=1", ui.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // In the browser: the link to the next page is followed like any link.
    let b = browser().await;
    let c = &b.client;
    c.goto(&ui.url).await.unwrap();
    c.goto(&format!("{}/admin/organizations", ui.base))
        .await
        .unwrap();
    let first = c
        .find_all(Locator::Css("tr[data-org]"))
        .await
        .unwrap()
        .len();
    assert_eq!(first, 50);
    let text = main_text(c).await;
    assert!(text.contains(html_org), "{text}");
    assert!(
        c.find(Locator::Css("main img")).await.is_err(),
        "an element was made of a name"
    );
    c.find(Locator::Css("a[rel=next]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::LinkText("First page"))
        .await
        .unwrap();
    assert_eq!(
        c.find_all(Locator::Css("tr[data-org]"))
            .await
            .unwrap()
            .len(),
        50
    );
    assert!(
        c.find(Locator::Css("img")).await.is_err(),
        "an element was made of a name"
    );
    shot(c, "admin-organizations-page-2").await;
}

/// A task's name of one word wider than a phone: it must wrap, not widen the page.
const LONG: &str = "sentbyEnterinanarrowwindowwithanameofonelongwordthatmustwrapxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

/// Waits for an element of `css` on the page (after a click or Enter).
async fn until_css(c: &fantoccini::Client, css: &str) {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}`: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_390_pixels_wide_every_main_page_reflows_and_every_form_is_labelled_tabbed_in_order_and_sent_by_enter()
 {
    let mut w = World::with_registry().await;
    let (repo, _) = w.push_signed("json_out", "ui-narrow", "v1").await;
    let policy = format!(
        "{}[allow.output]\nrelease = \"manual\"\n",
        w.signed_policy(&repo)
    );
    w.start_node("hospital-b", &policy);
    let socket = w
        .dir
        .path()
        .join("node-hospital-b/spool/local.sock")
        .display()
        .to_string();
    let profile = w.profile(&w.dir.path().join("p"), &[&w.a, &w.b], PASSWORD);
    let p = profile.to_str().unwrap();
    let ui = ui(&w, &["--profile-file", p, "--node-socket", &socket]).await;
    let b = browser_sized(390, 844).await;
    let c = &b.client;
    c.goto(&ui.url).await.unwrap();
    let at = |path: &str| format!("{}{path}", ui.base);
    for path in ["/", "/collaborations", "/tasks", "/tasks/new"] {
        fits(c, &at(path)).await;
    }
    // The check sees a page that would scroll sideways: an element wider than the window.
    c.execute(
        "const d = document.createElement('div'); d.id = 'wide'; d.style.width = '600px';
         d.textContent = 'x'; document.querySelector('main').append(d);",
        vec![],
    )
    .await
    .unwrap();
    let (page, inner, worst) = browser::widths(c).await;
    assert!(
        page > inner && worst.starts_with("DIV#wide"),
        "{page} {inner} {worst}"
    );

    // The task form: labelled, tabbed in order to its button, and sent by Enter in a field.
    let order = tab_through(c, "form[action='/tasks/new']").await;
    assert_eq!(
        order,
        [
            "image",
            "org=hospital-a",
            "org=hospital-b",
            "input",
            "name",
            "create"
        ],
        "{order:?}"
    );
    c.find(Locator::Id("image"))
        .await
        .unwrap()
        .send_keys(&format!("{repo}:v1"))
        .await
        .unwrap();
    c.find(Locator::Css("input[name=org][value=hospital-b]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let input = c.find(Locator::Id("input")).await.unwrap();
    input.clear().await.unwrap();
    input
        .send_keys(r#"{"function":"f","args":{"n":3}}"#)
        .await
        .unwrap();
    c.find(Locator::Id("name"))
        .await
        .unwrap()
        .send_keys(&format!("{LONG}{}", fantoccini::key::Key::Enter))
        .await
        .unwrap();
    until_css(c, "tr[data-run], p.error").await;
    let row = c
        .find(Locator::Css("tr[data-run]"))
        .await
        .unwrap_or_else(|_| panic!("Enter did not create the task"));
    let run: i64 = row
        .attr("data-run")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    let task_url = c.current_url().await.unwrap().to_string();
    assert!(main_text(c).await.contains(LONG));
    until_row(c, &w, &task_url, run, "awaiting_release").await;
    fits(c, &task_url).await;

    // The data owner's pages, the held result and its forms.
    let airlock = at("/node");
    until_row(c, &w, &airlock, run, &format!("run {run}")).await;
    fits(c, &airlock).await;
    let held = at(&format!("/node/runs/{run}"));
    fits(c, &held).await;
    let order = tab_through(c, &format!("form[action='/node/runs/{run}/refuse']")).await;
    assert_eq!(order, ["reason", "refuse"]);
    tab_through(c, &format!("form[action='/node/runs/{run}/release']")).await;
    c.find(Locator::Id("release"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_css(c, "p.answer, p.error").await;
    assert!(main_text(c).await.contains("released by"));
    until_row(c, &w, &task_url, run, "completed").await;
    fits(c, &format!("{task_url}/results")).await;
    until_css(c, "section.run").await;
    assert!(c.find(Locator::Css("figure.chart svg")).await.is_ok());
    shot(c, "narrow-results").await;
    for path in [
        "/node/policy",
        "/node/decisions",
        "/node/audit",
        "/node/audit/verify",
    ] {
        fits(c, &at(path)).await;
    }
    c.goto(&at("/node/audit")).await.unwrap();
    let order = tab_through(c, "form.filters").await;
    assert_eq!(
        order,
        [
            "kind", "run", "outcome", "after", "before", "since", "until", "filter"
        ],
        "{order:?}"
    );

    // The administrator's pages (a profile with only [server]).
    let admin = admin_profile(&w);
    let admin_ui = self::ui(&w, &["--profile-file", admin.to_str().unwrap()]).await;
    c.goto(&admin_ui.url).await.unwrap();
    let rita = w.query("SELECT id FROM users WHERE username = 'rita'")[0].clone();
    let admin_at = |path: &str| format!("{}{path}", admin_ui.base);
    for (path, form, first) in [
        (
            "/admin/organizations",
            "form[action='/admin/organizations']",
            "org-name",
        ),
        (
            "/admin/collaborations",
            "form[action='/admin/collaborations']",
            "collab-name",
        ),
        ("/admin/users", "form[action='/admin/users']", "user-name"),
        ("/admin/nodes", "form[action='/admin/nodes']", "node-org"),
    ] {
        fits(c, &admin_at(path)).await;
        let order = tab_through(c, form).await;
        assert_eq!(order[0], first, "{path}: {order:?}");
    }
    fits(c, &admin_at("/")).await;
    fits(c, &admin_at(&format!("/admin/users/{rita}"))).await;
    let order = tab_through(c, &format!("form[action='/admin/users/{rita}/password']")).await;
    assert_eq!(order, ["new-password", "new-password-again", "reset"]);
    // A node's rotation form: its box is labelled, then its button.
    c.goto(&admin_at("/admin/nodes")).await.unwrap();
    let order = tab_through(c, "tr[data-node] form").await;
    assert_eq!(order, ["confirm=1", "BUTTON"]);

    // The login form of a console with a password: labelled, tabbed, sent by Enter.
    let file = w.dir.path().join("ui-password");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let locked = self::ui(
        &w,
        &[
            "--node-socket",
            &socket,
            "--password-file",
            file.to_str().unwrap(),
        ],
    )
    .await;
    fits(c, &locked.url).await;
    let order = tab_through(c, "form[action='/login']").await;
    assert_eq!(order.len(), 2, "{order:?}");
    assert_eq!(order[0], "password");
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(&format!("{PASSWORD}{}", fantoccini::key::Key::Enter))
        .await
        .unwrap();
    until_css(c, "section[aria-labelledby=owner], p.error").await;
    assert!(main_text(c).await.contains("Data owner"));

    // The login form is a screenshot of docs/ui.md, at the others' 1280×800.
    drop(b);
    let wide = browser().await;
    wide.client.goto(&locked.url).await.unwrap();
    until_css(&wide.client, "form[action='/login']").await;
    shot(&wide.client, "login").await;
}
