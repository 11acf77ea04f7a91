//! Fan-out of "new events exist" wake-ups to connected nodes.
//!
//! The events themselves live in the database with increasing ids; the hub only wakes the
//! WebSocket sessions, which then read `id > last seen` from the database. A lost or spurious
//! wake-up is therefore harmless: delivery is at least once and ordered by id.
//!
//! SQLite (one process): the service wakes the hub after each commit. PostgreSQL (many
//! replicas): every replica also LISTENs on [`crate::storage::EVENT_CHANNEL`], which the
//! inserting transaction NOTIFYs at commit, and forwards it to its own hub.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::broadcast;

use crate::storage::{EVENT_CHANNEL, REVOKED_PREFIX};

/// Which nodes a wake-up concerns.
#[derive(Debug, Clone)]
pub enum Wake {
    /// (collaboration, organization) pairs that got new events, sorted (build it with
    /// [`Wake::nodes`]): every connected session looks itself up in it, so with thousands of
    /// sessions and a task of a thousand targets the lookup is a binary search, not a scan.
    Nodes(Arc<[(i64, i64)]>),
    /// Some node may have new events (another replica wrote them).
    All,
    /// The node of this (collaboration, organization) pair lost its credentials (key
    /// rotation): its sessions re-check their token now.
    Revoked(i64, i64),
}

impl Wake {
    /// The wake-up of these pairs (sorted and deduplicated here).
    pub fn nodes(pairs: impl IntoIterator<Item = (i64, i64)>) -> Wake {
        let mut v: Vec<(i64, i64)> = pairs.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        Wake::Nodes(v.into())
    }

    pub fn concerns(&self, collaboration_id: i64, organization_id: i64) -> bool {
        match self {
            Wake::All => true,
            Wake::Nodes(v) => v
                .binary_search(&(collaboration_id, organization_id))
                .is_ok(),
            Wake::Revoked(..) => false,
        }
    }

    /// Whether the node of this pair must re-check its credential now.
    pub fn revokes(&self, collaboration_id: i64, organization_id: i64) -> bool {
        matches!(self, Wake::Revoked(c, o) if *c == collaboration_id && *o == organization_id)
    }

    /// The wake-up a PostgreSQL notification payload stands for: `revoked:<c>:<o>` or a new
    /// event id (anything else).
    pub fn from_notification(payload: &str) -> Wake {
        payload
            .strip_prefix(REVOKED_PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .and_then(|(c, o)| Some(Wake::Revoked(c.parse().ok()?, o.parse().ok()?)))
            .unwrap_or(Wake::All)
    }
}

/// Capacity of the wake-up channel; a session that lags simply re-reads from the database.
const HUB_CAPACITY: usize = 1024;

#[derive(Debug, Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Wake>,
}

impl Default for EventHub {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(HUB_CAPACITY);
        EventHub { tx }
    }
}

impl EventHub {
    pub fn wake(&self, w: Wake) {
        // No receiver is not an error: no node is connected.
        let _ = self.tx.send(w);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Wake> {
        self.tx.subscribe()
    }

    /// Forward PostgreSQL notifications to this hub until the pool closes. Reconnects after
    /// an error and wakes everyone, since notifications may have been missed meanwhile.
    pub fn spawn_pg_listener(&self, pool: PgPool) -> tokio::task::JoinHandle<()> {
        let hub = self.clone();
        tokio::spawn(async move {
            loop {
                if pool.is_closed() {
                    return;
                }
                match PgListener::connect_with(&pool).await {
                    Ok(mut l) => {
                        if let Err(e) = l.listen(EVENT_CHANNEL).await {
                            tracing::warn!(error = %e, "cannot LISTEN for events; retrying");
                        } else {
                            hub.wake(Wake::All);
                            loop {
                                match l.recv().await {
                                    Ok(n) => hub.wake(Wake::from_notification(n.payload())),
                                    Err(e) => {
                                        tracing::warn!(error = %e, "event listener lost; reconnecting");
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => {
                        if pool.is_closed() {
                            return;
                        }
                        tracing::warn!(error = %e, "cannot connect the event listener; retrying");
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_wakeups_find_every_pair_in_any_order() {
        let pairs = [(5, 9), (1, 2), (5, 1), (1, 2), (3, 3)];
        let w = Wake::nodes(pairs);
        for (c, o) in pairs {
            assert!(w.concerns(c, o), "{c} {o}");
        }
        for (c, o) in [(9, 5), (2, 1), (5, 2), (0, 0), (3, 4)] {
            assert!(!w.concerns(c, o), "{c} {o}");
        }
    }

    #[test]
    fn notifications_are_event_ids_or_revocations() {
        let w = Wake::from_notification("revoked:3:7");
        assert!(w.revokes(3, 7));
        assert!(!w.revokes(7, 3));
        assert!(!w.concerns(3, 7));
        for other in [
            "42",
            "",
            "revoked:",
            "revoked:3",
            "revoked:x:7",
            "revoked:3:7:1",
        ] {
            let w = Wake::from_notification(other);
            assert!(w.concerns(3, 7) && !w.revokes(3, 7), "{other}");
        }
    }
}
