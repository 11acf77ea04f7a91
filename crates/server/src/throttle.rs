//! The caps on open event WebSockets; the per-address login buckets are
//! `warden_accounts::throttle`, re-exported here.

use std::collections::HashMap;
use std::sync::Mutex;

pub use warden_accounts::throttle::{Bucket, Rate, Throttle};

/// Caps on open event WebSockets: per node and in total.
#[derive(Debug)]
pub struct SessionSlots {
    per_node: u32,
    total: u32,
    open: Mutex<OpenSessions>,
}

/// Sessions open now: in total and per node (collaboration, organization).
#[derive(Debug, Default)]
struct OpenSessions {
    total: u32,
    per_node: HashMap<(i64, i64), u32>,
}

/// Why a session was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRefusal {
    /// The node already has this many sessions open.
    Node(u32),
    /// The server already has this many sessions open.
    Total(u32),
}

impl SessionSlots {
    pub fn new(per_node: u32, total: u32) -> SessionSlots {
        SessionSlots {
            per_node,
            total,
            open: Mutex::new(OpenSessions::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OpenSessions> {
        match self.open.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Reserve a slot for the node (collaboration, organization); released by
    /// [`SessionSlots::release`] (the session's drop guard calls it).
    pub fn acquire(&self, node: (i64, i64)) -> Result<(), SlotRefusal> {
        let mut g = self.lock();
        let open = &mut *g;
        if open.total >= self.total {
            return Err(SlotRefusal::Total(self.total));
        }
        let n = open.per_node.entry(node).or_insert(0);
        if *n >= self.per_node {
            return Err(SlotRefusal::Node(self.per_node));
        }
        *n += 1;
        open.total += 1;
        Ok(())
    }

    pub fn release(&self, node: (i64, i64)) {
        let mut g = self.lock();
        let open = &mut *g;
        if let Some(n) = open.per_node.get_mut(&node) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_node.remove(&node);
            }
            open.total = open.total.saturating_sub(1);
        }
    }

    /// Sessions open now.
    pub fn open(&self) -> u32 {
        self.lock().total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_slots_cap_per_node_and_in_total() {
        let s = SessionSlots::new(2, 3);
        assert_eq!(s.acquire((1, 1)), Ok(()));
        assert_eq!(s.acquire((1, 1)), Ok(()));
        assert_eq!(s.acquire((1, 1)), Err(SlotRefusal::Node(2)));
        assert_eq!(s.acquire((1, 2)), Ok(()));
        assert_eq!(s.acquire((1, 3)), Err(SlotRefusal::Total(3)));
        s.release((1, 1));
        assert_eq!(s.open(), 2);
        assert_eq!(s.acquire((1, 3)), Ok(()));
        assert_eq!(s.acquire((1, 1)), Err(SlotRefusal::Total(3)));
        // Releasing what was never acquired changes nothing.
        s.release((9, 9));
        assert_eq!(s.open(), 3);
    }
}
