//! Headless Chromium through Debian's chromedriver (WebDriver, fantoccini), shared by the
//! console's browser tests: start it, take screenshots into docs/ui, and the checks of a
//! narrow window and of keyboard navigation.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::Locator;
use fantoccini::key::Key;
use serde_json::json;

/// Headless Chromium through Debian's chromedriver. On drop (a failed assertion too) the
/// WebDriver session is ended, so that chromedriver stops its Chromium, and then chromedriver is
/// killed; killing chromedriver alone would leave Chromium running.
pub struct Browser {
    _driver: tokio::process::Child,
    pub client: fantoccini::Client,
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

/// A browser whose window is 1280×800 (the screenshots' size).
pub async fn browser() -> Browser {
    browser_sized(1280, 800).await
}

/// A browser whose window is `width`×`height`.
pub async fn browser_sized(width: u32, height: u32) -> Browser {
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
    let mut options = json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 format!("--window-size={},{height}", width.max(500)), "--hide-scrollbars"]
    });
    // Chromium's windows are at least 500 px wide: a narrower one is a phone's viewport,
    // emulated (the page's `<meta name=viewport>` then applies, as on a phone).
    if width < 500 {
        options["mobileEmulation"] = json!({
            "deviceMetrics": { "width": width, "height": height, "pixelRatio": 1.0, "mobile": true, "touch": false }
        });
    }
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(json!({
        "browserName": "chrome",
        "goog:chromeOptions": options
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
pub fn shots() -> PathBuf {
    let d = warden_testkit::workspace_root().join("docs/ui");
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub async fn shot(c: &fantoccini::Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
}

/// The text of `<main>`.
pub async fn main_text(c: &fantoccini::Client) -> String {
    c.find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The page's width as laid out (or as zoomed out to), the viewport's width and the first
/// element that sticks out to the right of it, not inside a box that scrolls (or "").
pub async fn widths(c: &fantoccini::Client) -> (i64, i64, String) {
    let v = c
        .execute(
            "const w = document.documentElement.clientWidth; let worst = '';
             for (const e of document.body.querySelectorAll('*')) {
               const r = e.getBoundingClientRect();
               let p = e.parentElement, clipped = false;
               while (p && p !== document.body) {
                 const o = getComputedStyle(p).overflowX;
                 if (o === 'auto' || o === 'scroll' || o === 'hidden') { clipped = true; break; }
                 p = p.parentElement;
               }
               if (!clipped && r.right > w + 0.5 && worst === '') {
                 worst = e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className + ' right=' + r.right;
               }
             }
             return [Math.max(document.documentElement.scrollWidth, document.body.scrollWidth,
                              window.innerWidth), w, worst];",
            vec![],
        )
        .await
        .unwrap();
    // A phone zooms out to show a page wider than its viewport: the visual viewport
    // (innerWidth) is then the page's width.
    let a = v.as_array().unwrap();
    (
        a[0].as_i64().unwrap(),
        a[1].as_i64().unwrap(),
        a[2].as_str().unwrap().to_owned(),
    )
}

/// The page at `url` does not scroll sideways: nothing in the body is wider than the window
/// (a table may scroll inside itself).
pub async fn fits(c: &fantoccini::Client, url: &str) {
    c.goto(url).await.unwrap();
    let (page, inner, worst) = widths(c).await;
    assert!(
        inner <= 400,
        "the window is {inner} px wide, not a narrow one"
    );
    assert!(
        page <= inner && worst.is_empty(),
        "{url}: the page is {page} px wide in a window of {inner} ({worst})"
    );
}

/// An identity of the element with focus (or of the fields of a form): its id, else
/// `name=value`, else its tag.
const IDENTITY: &str = "const id = e => e.id || (e.name ? e.name + '=' + e.value : e.tagName);";

/// The form `form`'s fields and buttons in document order (hidden fields left out), each
/// with whether it has an accessible label: a `<label>` (for= or around it), `aria-label` or
/// `aria-labelledby`; a button by its text.
pub async fn form_fields(c: &fantoccini::Client, form: &str) -> Vec<(String, bool)> {
    let v = c
        .execute(
            &format!(
                "{IDENTITY}
                 const f = document.querySelector(arguments[0]);
                 if (!f) return null;
                 return Array.from(f.querySelectorAll('input, select, textarea, button'))
                   .filter(e => e.type !== 'hidden')
                   .map(e => [id(e), (e.labels && e.labels.length > 0 && e.labels[0].textContent.trim() !== '')
                       || !!e.getAttribute('aria-label') || !!e.getAttribute('aria-labelledby')
                       || (e.tagName === 'BUTTON' && e.textContent.trim() !== '')]);"
            ),
            vec![json!(form)],
        )
        .await
        .unwrap();
    let Some(a) = v.as_array() else {
        panic!("no form `{form}` on {}", c.current_url().await.unwrap())
    };
    a.iter()
        .map(|p| (p[0].as_str().unwrap().to_owned(), p[1].as_bool().unwrap()))
        .collect()
}

async fn focused(c: &fantoccini::Client) -> String {
    c.execute(
        &format!("{IDENTITY} return id(document.activeElement);"),
        vec![],
    )
    .await
    .unwrap()
    .as_str()
    .unwrap()
    .to_owned()
}

/// The form `form` on the current page: every field and button has an accessible label, and
/// Tab, from its first field, reaches each of them in document order and ends at its submit
/// button. Returns the order walked.
pub async fn tab_through(c: &fantoccini::Client, form: &str) -> Vec<String> {
    let fields = form_fields(c, form).await;
    assert!(!fields.is_empty(), "{form} has no field");
    for (f, labelled) in &fields {
        assert!(labelled, "{form}: `{f}` has no accessible label");
    }
    // Focus the first field as a click would, then Tab from one to the next.
    c.execute(
        "document.querySelector(arguments[0]).querySelectorAll('input:not([type=hidden]), select, textarea, button')[0].focus();",
        vec![json!(form)],
    )
    .await
    .unwrap();
    let mut walked = vec![focused(c).await];
    for _ in 1..fields.len() {
        c.active_element()
            .await
            .unwrap()
            .send_keys(&Key::Tab.to_string())
            .await
            .unwrap();
        walked.push(focused(c).await);
    }
    let expected: Vec<String> = fields.iter().map(|f| f.0.clone()).collect();
    assert_eq!(
        walked, expected,
        "{form}: the Tab order is not the document's"
    );
    let last = c
        .execute(
            "const b = document.querySelector(arguments[0]).querySelectorAll('input:not([type=hidden]), select, textarea, button');
             const e = b[b.length - 1]; return e.tagName === 'BUTTON' && e.type === 'submit';",
            vec![json!(form)],
        )
        .await
        .unwrap();
    assert_eq!(
        last,
        json!(true),
        "{form}: Tab does not end at its submit button"
    );
    walked
}
