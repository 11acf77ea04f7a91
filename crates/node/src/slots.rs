//! Run slots: the node's `concurrent_runs` limit (the containers alive, waiting ones included,
//! are bounded separately by `max_containers`, taken in `node::execute`).
//!
//! A run holds a slot from admission until its container is gone. A central function that waits
//! on the proxy for its subtasks would otherwise hold its slot while a subtask at this same node
//! waits for one: with every slot held by such a run, the node deadlocks (one slot and one
//! central run is enough). So a run lends its slot back while it waits for subtask results and
//! takes a slot again, in turn with the runs queued meanwhile, before the wait's answer reaches
//! the algorithm. The limit therefore counts runs that compute; runs blocked on their subtasks
//! still hold their container's memory, within each run's own limits.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One run's slot, shared between the run and its proxy.
#[derive(Clone, Debug)]
pub struct RunSlot {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Arc<Semaphore>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    permit: Option<OwnedSemaphorePermit>,
    /// Proxy requests of this run currently waiting with the slot lent.
    waiting: usize,
}

impl RunSlot {
    /// Waits for a free slot in `pool`.
    pub async fn acquire(pool: &Arc<Semaphore>) -> Self {
        let permit = pool.clone().acquire_owned().await.ok();
        RunSlot {
            inner: Arc::new(Inner {
                pool: pool.clone(),
                state: Mutex::new(State { permit, waiting: 0 }),
            }),
        }
    }

    /// Gives the slot back to the pool until the returned guard's [`Lent::reclaim`] (or drop).
    /// Several concurrent waits of one run lend one slot.
    pub fn lend(&self) -> Lent {
        let mut state = self.state();
        state.waiting += 1;
        drop(state.permit.take());
        Lent {
            slot: Some(self.clone()),
        }
    }

    /// Whether the run holds a slot now.
    pub fn held(&self) -> bool {
        self.state().permit.is_some()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends one wait; true when the run needs its slot back.
    fn end_wait(&self) -> bool {
        let mut state = self.state();
        state.waiting = state.waiting.saturating_sub(1);
        state.waiting == 0 && state.permit.is_none()
    }

    fn store(&self, permit: OwnedSemaphorePermit) {
        let mut state = self.state();
        if state.waiting == 0 && state.permit.is_none() {
            state.permit = Some(permit);
        }
    }
}

/// A slot lent back to the pool during one wait.
#[derive(Debug)]
#[must_use = "a lent slot is taken back by reclaim().await"]
pub struct Lent {
    slot: Option<RunSlot>,
}

impl Lent {
    /// Takes a slot again, waiting in turn behind the runs that queued meanwhile.
    pub async fn reclaim(mut self) {
        let Some(slot) = self.slot.take() else { return };
        if slot.end_wait()
            && let Ok(permit) = slot.inner.pool.clone().acquire_owned().await
        {
            slot.store(permit);
        }
    }
}

impl Lent {
    /// Ends the wait without taking a slot back: the run is ending.
    pub fn forget(mut self) {
        if let Some(slot) = self.slot.take() {
            slot.end_wait();
        }
    }
}

impl Drop for Lent {
    /// A wait abandoned before `reclaim` (the request was cancelled): the run takes a slot again
    /// in the background, so the limit still holds once it is back.
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else { return };
        if !slot.end_wait() {
            return;
        }
        match slot.inner.pool.clone().try_acquire_owned() {
            Ok(permit) => slot.store(permit),
            Err(_) => {
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    handle.spawn(async move {
                        if let Ok(permit) = slot.inner.pool.clone().acquire_owned().await {
                            slot.store(permit);
                        }
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_waiting_run_lets_another_run_take_its_slot() {
        let pool = Arc::new(Semaphore::new(1));
        let central = RunSlot::acquire(&pool).await;
        assert!(central.held());
        assert_eq!(pool.available_permits(), 0);

        let lent = central.lend();
        assert!(!central.held());
        // The subtask at this node gets the slot while the central run waits.
        let subtask = RunSlot::acquire(&pool).await;
        assert!(subtask.held());

        // The central run takes a slot again only once the subtask's is free.
        let reclaim = tokio::spawn(lent.reclaim());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!reclaim.is_finished());
        drop(subtask);
        reclaim.await.unwrap();
        assert!(central.held());
        assert_eq!(pool.available_permits(), 0);
        drop(central);
        assert_eq!(pool.available_permits(), 1);
    }

    #[tokio::test]
    async fn concurrent_waits_of_one_run_lend_one_slot() {
        let pool = Arc::new(Semaphore::new(2));
        let run = RunSlot::acquire(&pool).await;
        let first = run.lend();
        let second = run.lend();
        assert_eq!(pool.available_permits(), 2);
        first.reclaim().await;
        assert!(!run.held(), "still waiting in the second request");
        second.reclaim().await;
        assert!(run.held());
        assert_eq!(pool.available_permits(), 1);
    }

    #[tokio::test]
    async fn an_abandoned_wait_takes_the_slot_back() {
        let pool = Arc::new(Semaphore::new(1));
        let run = RunSlot::acquire(&pool).await;
        drop(run.lend());
        assert!(run.held());
        assert_eq!(pool.available_permits(), 0);

        // With the pool busy, it is taken back in the background when it frees up.
        let lent = run.lend();
        let other = RunSlot::acquire(&pool).await;
        drop(lent);
        assert!(!run.held());
        drop(other);
        tokio::time::timeout(Duration::from_secs(5), async {
            while !run.held() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(pool.available_permits(), 0);
    }
}
