//! A node whose event push goes silent: the server (in-process, real) is reached through a TCP
//! relay of the test that can freeze the push's connection (stop passing bytes either way while
//! both sockets stay open), as a replica that hangs behind a balancer does, or a path that drops
//! everything without a reset. The node's other requests pass as before. The node must take the
//! silent push as dead after `[server] push_timeout_secs`, connect again, and so see a
//! cancellation that the server sent while it was silent; before the limit existed it waited on
//! the dead connection for ever and the cancelled run went on to its timeout.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::World;
use common::attack::audit_records;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use warden_api::RunState;

/// A TCP relay to the server that counts the event-push connections and can freeze those open.
struct Relay {
    addr: SocketAddr,
    /// Event-push connections seen so far.
    pushes: Arc<AtomicUsize>,
    /// Push connections numbered below this pass nothing any more.
    frozen_below: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pushes = Arc::new(AtomicUsize::new(0));
        let frozen_below = Arc::new(AtomicUsize::new(0));
        let (p, f) = (Arc::clone(&pushes), Arc::clone(&frozen_below));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (p, f) = (Arc::clone(&p), Arc::clone(&f));
                tokio::spawn(relay_one(client, upstream, p, f));
            }
        });
        Relay {
            addr,
            pushes,
            frozen_below,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn pushes(&self) -> usize {
        self.pushes.load(Ordering::SeqCst)
    }

    /// Freezes every push connection open now; returns how many there were.
    fn freeze_pushes(&self) -> usize {
        let n = self.pushes();
        self.frozen_below.store(n, Ordering::SeqCst);
        n
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection: its first bytes say whether it is the event push (`GET /api/events/ws`).
async fn relay_one(
    client: TcpStream,
    upstream: SocketAddr,
    pushes: Arc<AtomicUsize>,
    frozen_below: Arc<AtomicUsize>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut cr, cw) = client.into_split();
    let (sr, mut sw) = server.into_split();
    let mut first = vec![0u8; 16 * 1024];
    let n = match cr.read(&mut first).await {
        Ok(0) | Err(_) => return,
        Ok(n) => n,
    };
    let push = first[..n]
        .starts_with(b"GET /api/events/ws")
        .then(|| pushes.fetch_add(1, Ordering::SeqCst));
    if sw.write_all(&first[..n]).await.is_err() {
        return;
    }
    let up = tokio::spawn(pipe(cr, sw, push, Arc::clone(&frozen_below)));
    pipe(sr, cw, push, frozen_below).await;
    up.abort();
}

/// Copies bytes one way; once the connection is frozen it swallows what comes and holds both
/// sockets open for ever (until the test ends).
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    push: Option<usize>,
    frozen_below: Arc<AtomicUsize>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        if push.is_some_and(|i| i < frozen_below.load(Ordering::SeqCst)) {
            let _keep = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Longest wait for a state or a record (a bound for polling, not a figure): below the run's
/// 60 s timeout, so that a node that never sees the cancel fails here.
const WAIT: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_push_is_ended_and_the_cancel_sent_meanwhile_is_seen() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("slow", "stall-slow", "v1");
    w.sign(&repo, &digest).await;
    let image = format!("{repo}:v1");
    let relay = Relay::start(([127, 0, 0, 1], w.server_port).into()).await;
    let config = w.node_config(&w.a, &w.signed_policy(&repo), "");
    let text = std::fs::read_to_string(&config).unwrap();
    let honest = format!("url = \"{}\"", w.base);
    assert!(text.contains(&honest), "{text}");
    std::fs::write(
        &config,
        text.replace(&honest, &format!("url = \"{}\"", relay.url()))
            .replace(
                "max_backoff_secs = 1\n",
                "max_backoff_secs = 1\npush_timeout_secs = 3\n",
            ),
    )
    .unwrap();
    let node = w.start_node(&config).await;
    let deadline = Instant::now() + WAIT;
    while relay.pushes() == 0 {
        assert!(
            Instant::now() < deadline,
            "the node never opened its event push"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A run that sleeps far longer than the test waits, running at the node.
    let input = json!({"function": "f", "args": {"sleep": 600}});
    let t = w.create_task(&image, &input, &[&w.a]).await;
    let run = t.runs[0].id;
    let r = w.wait_state(run, RunState::Running, WAIT).await;
    assert_eq!(r.state, RunState::Running, "{:?}", r.reason);

    // The push goes silent; the researcher cancels the task meanwhile.
    let frozen = relay.freeze_pushes();
    assert!(frozen >= 1);
    let (s, v) = w
        .call(
            reqwest::Method::POST,
            &w.researcher,
            &format!("/api/tasks/{}/cancel", t.task.id),
            Some(json!(null)),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // The node ends the silent session, connects again and sees the cancellation: the
    // container goes and the audit log says why.
    let deadline = Instant::now() + WAIT;
    loop {
        let cancelled = audit_records(&config, run)
            .iter()
            .any(|r| r["event"] == "cancel");
        let gone = common::containers(&node.label).is_empty();
        // A push connection opened after the freeze: the node connected again.
        let again = relay.pushes() > frozen;
        if cancelled && gone && again {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not end its silent push and act on the cancel sent meanwhile: \
             {} push connection(s), {frozen} frozen; container gone {gone}; audit {:?}",
            relay.pushes(),
            audit_records(&config, run)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.stop().await;
}
