//! Intake of runs from the server: the event push (WebSocket) with a poll fallback and a
//! catch-up listing at every reconnection.

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite;
use warden_api as api;

use super::Node;
use crate::server::ServerError;
use crate::slots::RunSlot;

/// The first delay before retrying the event push, doubled up to `max_backoff_secs`.
const PUSH_BACKOFF_MIN: Duration = Duration::from_millis(250);

/// How a push session ended.
struct PushEnd {
    /// The WebSocket had connected (the session then ended or failed).
    connected: bool,
    reason: String,
}

impl Node {
    /// Takes events from the server until the process ends.
    ///
    /// While the WebSocket push is unavailable the node polls (`catch_up`) every
    /// `[server] poll_secs` and retries the push with its own exponential backoff, up to
    /// `max_backoff_secs`: a poll that succeeds does not reset the push backoff. A push that
    /// connected and then ended resets it, and the node catches up before the next session.
    /// A session silent for `push_timeout_secs` (the node pings after half of it) ends as a
    /// dead one, as does a handshake unanswered that long.
    pub(super) async fn intake(&self) {
        let s = &self.inner;
        let max = Duration::from_secs(s.config.server.max_backoff_secs).max(PUSH_BACKOFF_MIN);
        let poll = Duration::from_secs(s.config.server.poll_secs);
        let mut push_backoff = PUSH_BACKOFF_MIN;
        let mut after = s.spool.cursor().unwrap_or(0);
        let mut next_poll = Instant::now();
        let mut next_push = Instant::now();
        loop {
            if Instant::now() >= next_poll {
                // Catch up: every pending run of this node, whatever the cursor says.
                if let Err(e) = self.catch_up(&mut after).await {
                    tracing::warn!(error = %e, "cannot reach the server");
                }
                next_poll = Instant::now() + poll;
            }
            if Instant::now() >= next_push {
                let end = self.push_session(&mut after).await;
                if end.connected {
                    // The session worked: reconnect soon, catching up first.
                    push_backoff = PUSH_BACKOFF_MIN;
                    next_poll = Instant::now();
                    next_push = Instant::now() + PUSH_BACKOFF_MIN;
                    tracing::info!(reason = %end.reason, "event push ended");
                } else {
                    tracing::warn!(
                        error = %end.reason,
                        retry_in_ms = push_backoff.as_millis() as u64,
                        poll_secs = poll.as_secs(),
                        "event push unavailable; polling"
                    );
                    next_push = Instant::now() + push_backoff;
                    push_backoff = (push_backoff * 2).min(max);
                }
            }
            tokio::time::sleep_until(next_poll.min(next_push).into()).await;
        }
    }

    /// Polls the events after the cursor and lists pending runs, handling each.
    async fn catch_up(&self, after: &mut i64) -> Result<(), ServerError> {
        let s = &self.inner;
        loop {
            let events = s.server.events(*after).await?;
            let n = events.len();
            for e in events {
                self.dispatch(&e);
                *after = e.id;
            }
            if n < 100 {
                break;
            }
        }
        if let Err(e) = s.spool.set_cursor(*after) {
            tracing::error!(error = %e, "cannot save the event cursor");
        }
        for run in s.server.pending_runs().await? {
            self.on_event(run, None);
        }
        Ok(())
    }

    /// One WebSocket session: returns when it ends, saying whether it had connected.
    async fn push_session(&self, after: &mut i64) -> PushEnd {
        let mut connected = false;
        let ended = self.push_session_inner(after, &mut connected).await;
        self.inner
            .push_connected
            .store(false, std::sync::atomic::Ordering::SeqCst);
        match ended {
            Ok(()) => PushEnd {
                connected,
                reason: "the server closed the event push".into(),
            },
            Err(reason) => PushEnd { connected, reason },
        }
    }

    async fn push_session_inner(
        &self,
        after: &mut i64,
        connected: &mut bool,
    ) -> Result<(), String> {
        let s = &self.inner;
        let (url, token) = s
            .server
            .event_socket(*after)
            .await
            .map_err(|e| e.to_string())?;
        let mut req = tungstenite::client::IntoClientRequest::into_client_request(url.as_str())
            .map_err(|e| e.to_string())?;
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| "the token is not a valid header".to_owned())?;
        req.headers_mut().insert("authorization", value);
        // A server that accepts the connection and then hangs (a stopped process behind a
        // balancer, a path that drops everything) would hold the handshake and then the session
        // for ever: both are bounded by the silence limit.
        let limit = Duration::from_secs(s.config.server.push_timeout_secs);
        let (mut ws, _) =
            match tokio::time::timeout(limit, tokio_tungstenite::connect_async(req)).await {
                Err(_) => {
                    return Err(format!(
                        "the event push's handshake got no answer within {} s (push_timeout_secs)",
                        limit.as_secs()
                    ));
                }
                Ok(Ok(ok)) => ok,
                Ok(Err(tungstenite::Error::Http(resp))) if resp.status().as_u16() == 401 => {
                    s.server.forget_token().await;
                    return Err("the server refused the node token; logging in again".into());
                }
                Ok(Err(e)) => return Err(e.to_string()),
            };
        tracing::info!("event push connected");
        *connected = true;
        s.push_connected
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let silent = || {
            format!(
                "the event push was silent for {} s (no event, ping or pong; push_timeout_secs): \
                 its connection is taken as dead",
                limit.as_secs()
            )
        };
        let mut heard = Instant::now();
        let mut pinged = false;
        loop {
            // Quiet for half the limit: ask the server for a pong; quiet for all of it: dead.
            let wait = if pinged { limit } else { limit / 2 };
            let msg = match tokio::time::timeout_at((heard + wait).into(), ws.next()).await {
                Ok(Some(msg)) => msg,
                Ok(None) => break,
                Err(_) if pinged => return Err(silent()),
                Err(_) => {
                    let ping = ws.send(tungstenite::Message::Ping(Default::default()));
                    match tokio::time::timeout_at((heard + limit).into(), ping).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(e.to_string()),
                        Err(_) => return Err(silent()),
                    }
                    pinged = true;
                    continue;
                }
            };
            heard = Instant::now();
            pinged = false;
            match msg.map_err(|e| e.to_string())? {
                tungstenite::Message::Text(text) => {
                    let event: api::Event = serde_json::from_str(text.as_str())
                        .map_err(|e| format!("malformed event: {e}"))?;
                    self.dispatch(&event);
                    *after = event.id;
                    if let Err(e) = s.spool.set_cursor(*after) {
                        tracing::error!(error = %e, "cannot save the event cursor");
                    }
                }
                tungstenite::Message::Close(_) => break,
                _ => {}
            }
        }
        Ok(())
    }

    /// One event: a new run is taken (unless known), a cancelled one stopped (if this node has
    /// it). A cancel never starts anything.
    fn dispatch(&self, e: &api::Event) {
        match e.kind {
            api::EventKind::RunCreated => self.on_event(e.run_id, Some(e.image.clone())),
            api::EventKind::RunCancelled => {
                // In a task of its own: a held result's drop waits for the airlock's lock, and
                // intake goes on meanwhile.
                let node = self.clone();
                let (run, by) = (e.run_id, e.cancelled_by.clone());
                tokio::spawn(async move { node.on_cancel(run, by.as_deref()).await });
            }
        }
    }

    /// Starts handling a run unless it is being handled or already known.
    pub(super) fn on_event(&self, run_id: i64, event_image: Option<String>) {
        let s = &self.inner;
        if s.draining.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        {
            let mut active = s.active.lock().unwrap_or_else(|p| p.into_inner());
            if active.contains(&run_id) || s.spool.has(run_id) {
                return;
            }
            active.insert(run_id);
            s.queued
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(run_id);
        }
        let node = self.clone();
        let received = Instant::now();
        tokio::spawn(async move {
            let slot = RunSlot::acquire(&node.inner.slots).await;
            node.inner
                .queued
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&run_id);
            // A run that got its slot only after shutdown began stays pending for the next start;
            // one cancelled while it waited never starts.
            if node.cancelled(run_id) {
                tracing::info!(
                    run = run_id,
                    "a cancelled run left the queue without starting"
                );
                node.discard(run_id);
            } else if !node
                .inner
                .draining
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                node.handle(run_id, event_image, received, slot, None).await;
            }
            node.inner
                .active
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&run_id);
            node.inner.cancels.forget(run_id);
        });
    }
}
