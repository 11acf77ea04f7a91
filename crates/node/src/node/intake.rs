//! Intake of runs from the server: the event push (WebSocket) with a poll fallback and a
//! catch-up listing at every reconnection.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use tokio_tungstenite::tungstenite;
use warden_api as api;

use super::Node;
use crate::server::ServerError;
use crate::slots::RunSlot;

impl Node {
    /// Takes events from the server until the process ends.
    pub(super) async fn intake(&self) {
        let s = &self.inner;
        let max = Duration::from_secs(s.config.server.max_backoff_secs);
        let mut backoff = Duration::from_millis(250);
        let mut after = s.spool.cursor().unwrap_or(0);
        loop {
            // Catch up: every pending run of this node, whatever the cursor says.
            match self.catch_up(&mut after).await {
                Ok(()) => backoff = Duration::from_millis(250),
                Err(e) => tracing::warn!(error = %e, "cannot reach the server"),
            }
            match self.push_session(&mut after).await {
                Ok(()) => backoff = Duration::from_millis(250),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "event push unavailable");
                    let poll = Duration::from_secs(s.config.server.poll_secs);
                    tokio::time::sleep(backoff.min(poll)).await;
                    backoff = (backoff * 2).min(max);
                }
            }
        }
    }

    /// Polls the events after the cursor and lists pending runs, handling each.
    async fn catch_up(&self, after: &mut i64) -> Result<(), ServerError> {
        let s = &self.inner;
        loop {
            let events = s.server.events(*after).await?;
            let n = events.len();
            for e in events {
                self.on_event(e.run_id, Some(e.image.clone()));
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

    /// One WebSocket session: returns when it ends.
    async fn push_session(&self, after: &mut i64) -> Result<(), String> {
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
        let (mut ws, _) = match tokio_tungstenite::connect_async(req).await {
            Ok(ok) => ok,
            Err(tungstenite::Error::Http(resp)) if resp.status().as_u16() == 401 => {
                s.server.forget_token().await;
                return Err("the server refused the node token; logging in again".into());
            }
            Err(e) => return Err(e.to_string()),
        };
        tracing::info!("event push connected");
        while let Some(msg) = ws.next().await {
            match msg.map_err(|e| e.to_string())? {
                tungstenite::Message::Text(text) => {
                    let event: api::Event = serde_json::from_str(text.as_str())
                        .map_err(|e| format!("malformed event: {e}"))?;
                    self.on_event(event.run_id, Some(event.image.clone()));
                    *after = event.id;
                    if let Err(e) = s.spool.set_cursor(*after) {
                        tracing::error!(error = %e, "cannot save the event cursor");
                    }
                }
                tungstenite::Message::Close(_) => break,
                _ => {}
            }
        }
        Err("the server closed the event push".into())
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
        }
        let node = self.clone();
        let received = Instant::now();
        tokio::spawn(async move {
            let slot = RunSlot::acquire(&node.inner.slots).await;
            // A run that got its slot only after shutdown began stays pending for the next start.
            if !node
                .inner
                .draining
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                node.handle(run_id, event_image, received, slot).await;
            }
            node.inner
                .active
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&run_id);
        });
    }
}
