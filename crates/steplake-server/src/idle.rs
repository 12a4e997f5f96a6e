//! Stopping when idle: a server started with an idle limit
//! ([`crate::ServerConfig::exit_when_idle`], the local server `steplake.init()`
//! starts for a notebook) stops, flushing as on SIGTERM, once no client has
//! had a connection open to its gRPC port for that long.
//!
//! Connections, not requests, are counted: a trainer's logger and a
//! notebook's query connection keep theirs open while they live, so a
//! training loop that logs rarely (a long evaluation) never finds the
//! server gone; and a process that ends closes its connection.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Open connections, and when their number last changed.
#[derive(Clone)]
pub(crate) struct Activity {
    open: Arc<AtomicUsize>,
    changed: Arc<Mutex<Instant>>,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            open: Arc::new(AtomicUsize::new(0)),
            changed: Arc::new(Mutex::new(Instant::now())),
        }
    }

    fn touch(&self) {
        if let Ok(mut changed) = self.changed.lock() {
            *changed = Instant::now();
        }
    }

    /// `stream`, counted as open until it is dropped.
    pub(crate) fn track(&self, stream: TcpStream) -> Tracked {
        self.open.fetch_add(1, Ordering::SeqCst);
        self.touch();
        Tracked {
            stream,
            activity: self.clone(),
        }
    }

    /// How long no connection has been open; zero while one is.
    fn idle_for(&self) -> Duration {
        if self.open.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        self.changed
            .lock()
            .map(|changed| changed.elapsed())
            .unwrap_or_default()
    }

    /// Completes once no connection has been open for `limit`.
    pub(crate) async fn idle(&self, limit: Duration) {
        let check = (limit / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        loop {
            let idle = self.idle_for();
            if idle >= limit {
                tracing::info!(?limit, "no client connected for the idle limit: stopping");
                return;
            }
            tokio::time::sleep(check.min(limit - idle).max(Duration::from_millis(10))).await;
        }
    }
}

/// A client connection, counted while open.
pub(crate) struct Tracked {
    stream: TcpStream,
    activity: Activity,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.activity.open.fetch_sub(1, Ordering::SeqCst);
        self.activity.touch();
    }
}

impl Connected for Tracked {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_only_after_the_last_connection_closed_for_the_limit() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let activity = Activity::new();
        let client = TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        let tracked = activity.track(accepted);
        let limit = Duration::from_millis(200);
        let waited = tokio::time::timeout(Duration::from_millis(400), activity.idle(limit)).await;
        assert!(waited.is_err(), "idle while a connection is open");
        drop(tracked);
        drop(client);
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), activity.idle(limit))
            .await
            .expect("idle once closed");
        assert!(started.elapsed() >= Duration::from_millis(150));
    }
}
