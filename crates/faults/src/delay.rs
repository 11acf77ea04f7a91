//! A fixed added delay on a node's link, in user space.
//!
//! `tc netem` would delay every packet, but the kernels this runs on are built without
//! `sch_netem` (see [`crate::procs::Netns`]). [`DelayLink`] is the next best thing: a TCP relay
//! in the harness's own process, in front of the node's link relay, that holds every chunk of
//! bytes it reads, each way, for the delay set at that moment before it writes it on, in order.
//! The node's requests, its answers and its event push all arrive that much later, as over a
//! long link; what it does not model is what netem does below TCP (the delay is added once per
//! chunk read, not per packet, so TCP's own round-trip estimate on either side does not see it).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Chunks in flight per direction of one connection before the reader waits for the writer.
const IN_FLIGHT: usize = 1024;

/// A relay from a port of its own on loopback to `to`, adding [`DelayLink::set`]'s delay to
/// each direction (none at first). Its connections end when it is dropped.
#[derive(Debug)]
pub struct DelayLink {
    pub port: u16,
    delay_micros: Arc<AtomicU64>,
    tasks: JoinSet<()>,
}

impl DelayLink {
    /// Listens on a free loopback port; each connection to it is relayed to `to`. Must be
    /// called inside the harness's Tokio runtime.
    pub async fn start(to: SocketAddr) -> Result<DelayLink> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("a port for the delayed link")?;
        let port = listener.local_addr()?.port();
        let delay_micros = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        let delay = Arc::clone(&delay_micros);
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((down, _)) = listener.accept().await {
                let delay = Arc::clone(&delay);
                conns.spawn(async move {
                    // A link that cannot reach its far end refuses the connection: drop it.
                    let Ok(up) = TcpStream::connect(to).await else {
                        return;
                    };
                    let _ = down.set_nodelay(true);
                    let _ = up.set_nodelay(true);
                    let (down_r, down_w) = down.into_split();
                    let (up_r, up_w) = up.into_split();
                    tokio::join!(
                        pump(down_r, up_w, Arc::clone(&delay)),
                        pump(up_r, down_w, delay)
                    );
                });
                // Reap the connections that ended.
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(DelayLink {
            port,
            delay_micros,
            tasks,
        })
    }

    /// Sets the delay added to each direction from now on (bytes already held keep theirs).
    pub fn set(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.delay_micros.store(micros, Ordering::Relaxed);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for DelayLink {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// Copies `from` to `to`, each chunk written `delay` after it was read, in order; ends when
/// either side does (the write side shut down after the last chunk).
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Arc<AtomicU64>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let due = Instant::now() + Duration::from_micros(delay.load(Ordering::Relaxed));
                    if tx.send((due, buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let write = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// An echo server behind the link: a round trip takes the two directions' delay, the
    /// bytes come back whole and in order, and a delay set to zero is gone for what follows.
    #[tokio::test]
    async fn each_direction_waits_the_delay_and_keeps_the_bytes_in_order() {
        let echo = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let to = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
        });
        let link = DelayLink::start(to).await.unwrap();
        link.set(Duration::from_millis(150));
        let mut c = TcpStream::connect((Ipv4Addr::LOCALHOST, link.port))
            .await
            .unwrap();
        let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let started = std::time::Instant::now();
        let (mut r, mut w) = c.split();
        let (got, ()) = tokio::join!(
            async {
                let mut got = vec![0u8; sent.len()];
                r.read_exact(&mut got).await.unwrap();
                got
            },
            async { w.write_all(&sent).await.unwrap() }
        );
        let round_trip = started.elapsed();
        assert_eq!(got, sent);
        // Both directions held every chunk for 150 ms: the first byte back came after 300 ms.
        assert!(
            round_trip >= Duration::from_millis(300),
            "a round trip over the delayed link took {round_trip:?}"
        );
        link.set(Duration::ZERO);
        c.write_all(b"ping").await.unwrap();
        let mut four = [0u8; 4];
        c.read_exact(&mut four).await.unwrap();
        assert_eq!(&four, b"ping");
    }
}
