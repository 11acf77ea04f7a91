//! Delivery of committed events to the connected nodes' sessions.
//!
//! The events live in the database with increasing ids, and a session can always read
//! `id > last sent` from there: that read is the reference. The hub routes each commit's
//! announcement to the sessions of the nodes it concerns only (a task of ten targets touches
//! ten mailboxes, not every connected session), and, where it can prove that nothing is
//! missing, hands them the committed events themselves so that they need no read at all.
//!
//! The proof (SQLite only): SQLite has one writer and `AUTOINCREMENT` ids, so ids are
//! drawn in commit order and none is skipped. The hub records which ids it was told about;
//! an announcement whose first id follows, without a hole, every id announced before it is
//! *certified*: every event of a lower id was committed and announced earlier, so a session
//! that took every earlier note of its mailbox already sent it. Only then does the hub push
//! the events; otherwise (an id not announced yet, a commit of another process, PostgreSQL)
//! the sessions are told to read. A mailbox that fills up (a session that fell behind)
//! collapses into a read too. Sessions drop pushed events at or below the id they last sent,
//! so delivery stays exactly in id order, without a duplicate on one connection and at least
//! once across reconnects.
//!
//! SQLite (one process): the service announces each commit. PostgreSQL (many replicas):
//! every replica also LISTENs on its schema's event channel, which the inserting
//! transaction NOTIFYs at commit, naming the nodes it wrote events for (in several
//! notifications when they do not fit in one), and forwards each to its own hub as a read for
//! those nodes' sessions (for everyone's when a payload is not understood).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::Notify;
use warden_api as api;

use crate::storage::{EVENT_CHANNEL_QUERY, NODES_PREFIX, REVOKED_PREFIX};

/// A node: (collaboration, organization).
pub type NodeKey = (i64, i64);

/// Events a mailbox holds for a session before it collapses them into one database read.
pub const MAILBOX_EVENTS: usize = 256;

/// Announcements above a hole in the announced ids after which the hub heals it (see
/// [`EventHub::announce`]).
pub const HEAL_AFTER: u32 = 8;

/// Which nodes a wake-up concerns (no events handed over: the sessions read).
#[derive(Debug, Clone)]
pub enum Wake {
    /// These (collaboration, organization) pairs got new events.
    Nodes(Vec<NodeKey>),
    /// Some node may have new events (another replica wrote them).
    All,
    /// The node of this (collaboration, organization) pair lost its credentials (key
    /// rotation): its sessions re-check their token now.
    Revoked(i64, i64),
}

impl Wake {
    /// The wake-up a PostgreSQL notification payload stands for: `revoked:<c>:<o>`, the
    /// nodes `nodes:<c>:<o>;...` got events, or anything else (a new event id, a payload of
    /// a newer or older replica) some node got events: everyone reads.
    pub fn from_notification(payload: &str) -> Wake {
        fn pair(s: &str) -> Option<NodeKey> {
            let (c, o) = s.split_once(':')?;
            Some((c.parse().ok()?, o.parse().ok()?))
        }
        if let Some(rest) = payload.strip_prefix(REVOKED_PREFIX) {
            return pair(rest).map_or(Wake::All, |(c, o)| Wake::Revoked(c, o));
        }
        if let Some(rest) = payload.strip_prefix(NODES_PREFIX) {
            let nodes: Option<Vec<NodeKey>> = rest.split(';').map(pair).collect();
            return nodes
                .filter(|n| !n.is_empty())
                .map_or(Wake::All, Wake::Nodes);
        }
        Wake::All
    }
}

/// One committed event, as its transaction announces it: the node, the id (`None`: drawn at
/// the commit, PostgreSQL), and the event as a read would return it (`None`: the sessions
/// read it). An announcement with an id or an event missing is never pushed.
#[derive(Debug, Clone)]
pub struct Committed {
    pub node: NodeKey,
    pub id: Option<i64>,
    pub event: Option<api::Event>,
}

/// The ids announced so far (SQLite): every id up to `through`, and ranges beyond a hole.
#[derive(Debug)]
struct Order {
    through: i64,
    /// start -> end of announced ranges above `through + 1`, disjoint, not adjacent.
    ahead: BTreeMap<i64, i64>,
    /// Announcements since a hole opened below `ahead`.
    above_hole: u32,
}

impl Order {
    /// Records the ids `first..=last` as announced; true when every id below `first` had
    /// been announced before (the announcement is certified).
    fn record(&mut self, first: i64, last: i64) -> bool {
        let certified = first == self.through.saturating_add(1);
        if first <= self.through.saturating_add(1) {
            // Joins (or, for ids met again, overlaps) what is known: all up to `last` now.
            self.through = self.through.max(last);
        } else {
            // A hole below `first`: keep the range until the hole is announced.
            let mut start = first;
            let mut end = last;
            if let Some((&s, &e)) = self.ahead.range(..first).next_back() {
                if e.saturating_add(1) >= first {
                    self.ahead.remove(&s);
                    start = s;
                    end = end.max(e);
                }
            }
            while let Some((&s, &e)) = self.ahead.range(start..).next() {
                if s > end.saturating_add(1) {
                    break;
                }
                self.ahead.remove(&s);
                end = end.max(e);
            }
            self.ahead.insert(start, end);
        }
        // Ranges that the new `through` reaches join it.
        while let Some((&s, &e)) = self.ahead.first_key_value() {
            if s > self.through.saturating_add(1) {
                break;
            }
            self.ahead.remove(&s);
            self.through = self.through.max(e);
        }
        certified
    }
}

/// What a session finds in its mailbox.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Mail {
    /// Read from the database (the events of `events`, if any, are dropped: the read
    /// returns them too).
    pub read: bool,
    /// Committed events for this node, in id order, to send as they are.
    pub events: Vec<api::Event>,
    /// The node's credentials changed: re-check the session's token.
    pub recheck: bool,
}

#[derive(Debug, Default)]
struct MailState {
    read: bool,
    events: Vec<api::Event>,
    recheck: bool,
}

/// One session's notes from the hub. Every note is kept until taken (a read absorbs the
/// events before it, and the mailbox collapses into a read when it is full), so the session
/// never misses one.
#[derive(Debug, Default)]
pub struct Mailbox {
    state: Mutex<MailState>,
    notify: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data under these locks stays consistent at every step (no panics in between).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Mailbox {
    fn post_read(&self) {
        {
            let mut s = lock(&self.state);
            s.read = true;
            s.events = Vec::new();
        }
        self.notify.notify_one();
    }

    fn post_events(&self, events: &[api::Event]) {
        {
            let mut s = lock(&self.state);
            if s.read {
                // The read to come returns these too.
            } else if s.events.len() + events.len() > MAILBOX_EVENTS {
                s.read = true;
                s.events = Vec::new();
            } else {
                s.events.extend_from_slice(events);
            }
        }
        self.notify.notify_one();
    }

    fn post_recheck(&self) {
        lock(&self.state).recheck = true;
        self.notify.notify_one();
    }

    /// Everything posted since the last take.
    pub fn take(&self) -> Mail {
        let mut s = lock(&self.state);
        let s = std::mem::take(&mut *s);
        Mail {
            read: s.read,
            events: if s.read { Vec::new() } else { s.events },
            recheck: s.recheck,
        }
    }

    /// Returns once something was posted after the last take (at once if it already was).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

#[derive(Debug)]
struct HubState {
    sessions: HashMap<NodeKey, Vec<Arc<Mailbox>>>,
    /// `None` (PostgreSQL): ids are not drawn in commit order, nothing is ever pushed.
    order: Option<Order>,
}

#[derive(Debug, Clone)]
pub struct EventHub {
    state: Arc<Mutex<HubState>>,
}

impl Default for EventHub {
    /// A hub that never pushes events (only tells sessions to read).
    fn default() -> Self {
        EventHub::with_order(None)
    }
}

/// A session's registration with the hub, removed on drop.
#[derive(Debug)]
pub struct Subscription {
    hub: EventHub,
    node: NodeKey,
    mailbox: Arc<Mailbox>,
}

impl Subscription {
    pub fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut s = lock(&self.hub.state);
        if let Some(v) = s.sessions.get_mut(&self.node) {
            v.retain(|m| !Arc::ptr_eq(m, &self.mailbox));
            if v.is_empty() {
                s.sessions.remove(&self.node);
            }
        }
    }
}

impl EventHub {
    fn with_order(order: Option<Order>) -> Self {
        EventHub {
            state: Arc::new(Mutex::new(HubState {
                sessions: HashMap::new(),
                order,
            })),
        }
    }

    /// A hub that pushes certified announcements: for a database whose ids are drawn in
    /// commit order with none skipped (SQLite, one process), where every id up to
    /// `last_event_id` is committed and nothing else is in flight (the server's start).
    pub fn ordered(last_event_id: i64) -> Self {
        EventHub::with_order(Some(Order {
            through: last_event_id,
            ahead: BTreeMap::new(),
            above_hole: 0,
        }))
    }

    /// Register a session of `node`: from now on every announcement concerning it is
    /// posted to its mailbox. Subscribe before the session's first read.
    pub fn subscribe(&self, node: NodeKey) -> Subscription {
        let mailbox = Arc::new(Mailbox::default());
        lock(&self.state)
            .sessions
            .entry(node)
            .or_default()
            .push(mailbox.clone());
        Subscription {
            hub: self.clone(),
            node,
            mailbox,
        }
    }

    /// Tell sessions to read (or re-check their token).
    pub fn wake(&self, w: Wake) {
        let s = lock(&self.state);
        match w {
            Wake::All => s.sessions.values().flatten().for_each(|m| m.post_read()),
            Wake::Nodes(nodes) => {
                for n in nodes {
                    s.sessions
                        .get(&n)
                        .into_iter()
                        .flatten()
                        .for_each(|m| m.post_read());
                }
            }
            Wake::Revoked(c, o) => s
                .sessions
                .get(&(c, o))
                .into_iter()
                .flatten()
                .for_each(|m| m.post_recheck()),
        }
    }

    /// The events one transaction committed, announced after its commit. Pushed to the
    /// nodes' sessions when certified (see the module), else the sessions are told to read.
    /// Returns whether the events were pushed.
    pub fn announce(&self, mut events: Vec<Committed>) -> bool {
        if events.is_empty() {
            return false;
        }
        events.sort_unstable_by_key(|e| (e.node, e.id));
        let mut ids: Vec<i64> = events.iter().filter_map(|e| e.id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut guard = lock(&self.state);
        let s = &mut *guard;
        // Certified: the ids are one range with nothing skipped (one transaction of the one
        // writer) and every id below it was announced before. Recorded either way, run by
        // run, so that a hole inside stays a hole.
        let push = match &mut s.order {
            Some(order) => {
                let mut certified = ids.len() == events.len();
                let mut k = 0;
                while k < ids.len() {
                    let mut end = k;
                    while end + 1 < ids.len() && ids[end + 1] == ids[end] + 1 {
                        end += 1;
                    }
                    let joined = order.record(ids[k], ids[end]);
                    certified &= joined && k == 0 && end + 1 == ids.len();
                    k = end + 1;
                }
                certified
            }
            None => false,
        } && events
            .iter()
            .all(|e| e.event.as_ref().is_some_and(|ev| Some(ev.id) == e.id));
        // A hole that stays: on SQLite an id below an announced one is committed (one
        // writer; only a rolled-back transaction's ids are drawn again, and they are drawn
        // by the next one), so the hole is events committed and not announced yet: one
        // announced late (a read is posted for it when it comes), or written by another
        // process. After HEAL_AFTER announcements, every session reads once; that read
        // covers the hole's events whichever node they are for, and pushes resume.
        if let Some(order) = &mut s.order {
            if order.ahead.is_empty() {
                order.above_hole = 0;
            } else {
                order.above_hole += 1;
                if order.above_hole >= HEAL_AFTER {
                    if let Some((_, &end)) = order.ahead.last_key_value() {
                        order.through = order.through.max(end);
                    }
                    order.ahead.clear();
                    order.above_hole = 0;
                    tracing::info!(
                        through = order.through,
                        "events committed without an announcement: every session reads"
                    );
                    s.sessions.values().flatten().for_each(|m| m.post_read());
                    return false;
                }
            }
        }
        if !push {
            tracing::debug!(
                first = ids.first(),
                last = ids.last(),
                "events announced for a read (not certified)"
            );
        }
        let mut i = 0;
        while i < events.len() {
            let node = events[i].node;
            let j = i + events[i..].iter().take_while(|e| e.node == node).count();
            if let Some(boxes) = s.sessions.get(&node) {
                if push {
                    let mine: Vec<api::Event> = events[i..j]
                        .iter()
                        .filter_map(|e| e.event.clone())
                        .collect();
                    boxes.iter().for_each(|m| m.post_events(&mine));
                } else {
                    boxes.iter().for_each(|m| m.post_read());
                }
            }
            i = j;
        }
        push
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
                        // The channel of the schema this connection uses (the pool's).
                        let listening = match sqlx::query_scalar::<_, String>(EVENT_CHANNEL_QUERY)
                            .fetch_one(&mut l)
                            .await
                        {
                            Ok(channel) => l.listen(&channel).await,
                            Err(e) => Err(e),
                        };
                        if let Err(e) = listening {
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

    fn event(id: i64) -> api::Event {
        api::Event {
            id,
            kind: api::EventKind::RunCreated,
            run_id: id * 10,
            task_id: 1,
            image: "registry.example.org/team/avg:1.0".into(),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            cancelled_by: None,
        }
    }

    fn committed(node: NodeKey, id: i64) -> Committed {
        Committed {
            node,
            id: Some(id),
            event: Some(event(id)),
        }
    }

    #[test]
    fn announcements_reach_only_the_nodes_they_concern() {
        let hub = EventHub::ordered(0);
        let a = hub.subscribe((1, 2));
        let b = hub.subscribe((1, 3));
        let a2 = hub.subscribe((1, 2));
        assert!(hub.announce(vec![committed((1, 2), 1), committed((9, 9), 2)]));
        for m in [&a, &a2] {
            assert_eq!(m.mailbox().take().events, vec![event(1)]);
        }
        assert_eq!(b.mailbox().take(), Mail::default());
        hub.wake(Wake::Nodes(vec![(1, 3)]));
        assert!(b.mailbox().take().read);
        assert_eq!(a.mailbox().take(), Mail::default());
        hub.wake(Wake::Revoked(1, 2));
        let m = a.mailbox().take();
        assert!(m.recheck && !m.read);
        assert!(!b.mailbox().take().recheck);
        hub.wake(Wake::All);
        assert!(a.mailbox().take().read && b.mailbox().take().read);
        // A dropped session is gone from the hub.
        drop(a2);
        assert_eq!(lock(&hub.state).sessions[&(1, 2)].len(), 1);
        drop(a);
        assert!(!lock(&hub.state).sessions.contains_key(&(1, 2)));
    }

    #[test]
    fn only_announcements_that_follow_every_earlier_id_are_pushed() {
        let hub = EventHub::ordered(10);
        let s = hub.subscribe((1, 1));
        // 11..=12 follow 10: pushed, in id order whatever the order given.
        assert!(hub.announce(vec![committed((1, 1), 12), committed((1, 1), 11)]));
        assert_eq!(s.mailbox().take().events, vec![event(11), event(12)]);
        // 14 comes before 13 was announced (13 may be committed and unannounced): a read.
        assert!(!hub.announce(vec![committed((1, 1), 14)]));
        let m = s.mailbox().take();
        assert!(m.read && m.events.is_empty());
        // 13 fills the hole: pushed, and 15 after it too.
        assert!(hub.announce(vec![committed((1, 1), 13)]));
        assert!(hub.announce(vec![committed((1, 1), 15)]));
        // A transaction whose ids skip one (16, 18) is not pushed, nor what follows the
        // skipped id until it is announced.
        assert!(!hub.announce(vec![committed((1, 1), 16), committed((1, 1), 18)]));
        assert!(!hub.announce(vec![committed((1, 1), 19)]));
        assert!(!hub.announce(vec![Committed {
            node: (1, 1),
            id: Some(17),
            event: None,
        }]));
        assert!(hub.announce(vec![committed((1, 1), 20)]));
        // Ids met again (a failed commit's ids drawn anew): a read, then pushes resume.
        assert!(!hub.announce(vec![committed((1, 1), 20)]));
        assert!(hub.announce(vec![committed((1, 1), 21)]));
        // A payload that is not the announced id's is never pushed.
        assert!(!hub.announce(vec![Committed {
            node: (1, 1),
            id: Some(22),
            event: Some(event(99)),
        }]));
        assert!(hub.announce(vec![committed((1, 1), 23)]));
    }

    #[test]
    fn a_hole_that_stays_is_healed_by_one_read_of_every_session() {
        let hub = EventHub::ordered(0);
        let mine = hub.subscribe((1, 1));
        let other = hub.subscribe((2, 2));
        // Id 1 is committed by someone who never announces it.
        for id in 2..(2 + i64::from(HEAL_AFTER) - 1) {
            assert!(!hub.announce(vec![committed((1, 1), id)]));
            assert!(mine.mailbox().take().read);
            assert_eq!(other.mailbox().take(), Mail::default());
        }
        // The last announcement before healing: every session reads, whatever its node.
        let next = 1 + i64::from(HEAL_AFTER);
        assert!(!hub.announce(vec![committed((1, 1), next)]));
        assert!(mine.mailbox().take().read);
        assert!(other.mailbox().take().read);
        // Then pushes resume; the late announcement of id 1 is a read for its node.
        assert!(hub.announce(vec![committed((1, 1), next + 1)]));
        assert_eq!(mine.mailbox().take().events, vec![event(next + 1)]);
        assert!(!hub.announce(vec![committed((2, 2), 1)]));
        assert!(other.mailbox().take().read);
        assert!(hub.announce(vec![committed((2, 2), next + 2)]));
    }

    #[test]
    fn a_hub_without_order_never_pushes() {
        let hub = EventHub::default();
        let s = hub.subscribe((1, 1));
        assert!(!hub.announce(vec![committed((1, 1), 1)]));
        assert!(s.mailbox().take().read);
    }

    #[test]
    fn a_full_mailbox_becomes_one_read_and_a_read_absorbs_the_events() {
        let hub = EventHub::ordered(0);
        let s = hub.subscribe((1, 1));
        let mut id = 0;
        for _ in 0..MAILBOX_EVENTS {
            id += 1;
            assert!(hub.announce(vec![committed((1, 1), id)]));
        }
        assert_eq!(s.mailbox().take().events.len(), MAILBOX_EVENTS);
        for _ in 0..=MAILBOX_EVENTS {
            id += 1;
            assert!(hub.announce(vec![committed((1, 1), id)]));
        }
        let m = s.mailbox().take();
        assert!(m.read && m.events.is_empty());
        // Events after a read not yet taken are in that read.
        hub.wake(Wake::Nodes(vec![(1, 1)]));
        id += 1;
        assert!(hub.announce(vec![committed((1, 1), id)]));
        let m = s.mailbox().take();
        assert!(m.read && m.events.is_empty());
        assert_eq!(s.mailbox().take(), Mail::default());
    }

    #[test]
    fn order_joins_ranges_in_any_order() {
        let mut o = Order {
            through: 0,
            ahead: BTreeMap::new(),
            above_hole: 0,
        };
        assert!(!o.record(5, 6));
        assert!(!o.record(9, 9));
        assert!(!o.record(3, 3));
        assert!(!o.record(7, 8));
        assert_eq!(o.ahead.len(), 2, "{o:?}");
        assert!(!o.record(2, 2));
        assert!(o.record(1, 1));
        assert_eq!(o.through, 3);
        assert!(o.record(4, 4));
        assert_eq!((o.through, o.ahead.len()), (9, 0));
    }

    #[tokio::test]
    async fn a_post_before_waiting_is_not_lost() {
        let hub = EventHub::ordered(0);
        let s = hub.subscribe((1, 1));
        hub.wake(Wake::Nodes(vec![(1, 1)]));
        tokio::time::timeout(Duration::from_secs(10), s.mailbox().changed())
            .await
            .expect("the earlier post wakes the waiter");
        assert!(s.mailbox().take().read);
    }

    #[test]
    fn notifications_are_event_ids_or_revocations() {
        for (payload, revoked) in [("revoked:3:7", true), ("revoked:7:3", false)] {
            assert_eq!(
                matches!(Wake::from_notification(payload), Wake::Revoked(3, 7)),
                revoked
            );
        }
        // A commit's nodes wake those nodes' sessions only.
        assert!(
            matches!(Wake::from_notification("nodes:1:2;1:3;4:5"), Wake::Nodes(n) if n == [(1, 2), (1, 3), (4, 5)])
        );
        let few = crate::storage::nodes_payloads([(9, 2), (9, 0), (9, 1), (9, 0)].into_iter());
        assert_eq!(few.len(), 1);
        assert!(
            matches!(Wake::from_notification(&few[0]), Wake::Nodes(n) if n == [(9, 0), (9, 1), (9, 2)])
        );
        // Too many nodes for one payload: several, each within PostgreSQL's limit, that name
        // every node once between them.
        let all: Vec<(i64, i64)> = (0..2_000).map(|o| (1, 100_000 + o)).collect();
        let many = crate::storage::nodes_payloads(all.iter().copied());
        assert!(many.len() > 1, "{} payloads", many.len());
        assert!(many.iter().all(|p| p.len() <= 7_900));
        let mut named = Vec::new();
        for p in &many {
            let wake = Wake::from_notification(p);
            assert!(
                matches!(wake, Wake::Nodes(_)),
                "payload {p} read as {wake:?}"
            );
            if let Wake::Nodes(n) = wake {
                named.extend(n);
            }
        }
        assert_eq!(named, all);
        assert!(crate::storage::nodes_payloads(std::iter::empty()).is_empty());
        // Anything not understood wakes everyone: a wake-up too many, never one too few.
        for other in [
            "42",
            "",
            "revoked:",
            "revoked:3",
            "revoked:x:7",
            "revoked:3:7:1",
            "nodes:",
            "nodes:1:2;",
            "nodes:1:2;x:3",
            "nodes:1",
            "nodes:1:2:3",
        ] {
            assert!(
                matches!(Wake::from_notification(other), Wake::All),
                "{other}"
            );
        }
    }
}
