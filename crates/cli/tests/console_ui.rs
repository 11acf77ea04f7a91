//! `warden ui` (issue 12), the real binary against the real server in this process, real nodes
//! (`warden node start`), a real registry and the Docker engine, driven by headless Chromium
//! through Debian's chromedriver (WebDriver, fantoccini); and its guards over plain HTTP: no
//! token or cookie, a foreign Host or Origin, a form without its CSRF token, and a value holding
//! HTML. Screenshots of the main pages go to docs/ui/ (docs/ui.md shows them).
//!
//! Chromium and chromedriver must be installed (scripts/prereqs.sh installs them): a test that
//! cannot start them fails.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod researcher;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::Locator;
use researcher::{BIN, PASSWORD, World};
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
    let mut child = tokio::process::Command::new(BIN)
        .current_dir(w.dir.path())
        .arg("ui")
        .args(args)
        .env_remove("WARDEN_PASSWORD")
        .env_remove("XDG_CONFIG_HOME")
        .env("XDG_STATE_HOME", w.state_home())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
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

/// Headless Chromium through Debian's chromedriver. On drop (a failed assertion too) the
/// WebDriver session is ended, so that chromedriver stops its Chromium, and then chromedriver is
/// killed; killing chromedriver alone would leave Chromium running.
struct Browser {
    _driver: tokio::process::Child,
    client: fantoccini::Client,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let c = self.client.clone();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let _ = tokio::time::timeout(Duration::from_secs(20), c.close()).await;
            })
        });
    }
}

async fn browser() -> Browser {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = tokio::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver (Debian's chromium-driver; scripts/prereqs.sh installs it)");
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,800", "--hide-scrollbars"]
        }
    }))
    .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match fantoccini::ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => break c,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "cannot start Chromium through chromedriver: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    Browser {
        _driver: driver,
        client,
    }
}

/// Where the screenshots go.
fn shots() -> PathBuf {
    let d = warden_testkit::workspace_root().join("docs/ui");
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn shot(c: &fantoccini::Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
}

/// The text of `<main>`.
async fn main_text(c: &fantoccini::Client) -> String {
    c.find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
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
