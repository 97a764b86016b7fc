//! Accepting connections and serving HTTP/1.1 on each, until shut down.
//!
//! In place of `axum::serve`, which gives no way to set hyper's options: its connections
//! send each answer's head and body with one `writev` of two buffers. Here the body is
//! copied behind the head and sent with one `write` of one buffer: fewer instructions in
//! hyper and a whole request's CPU about 3 % lower for `GET /v1/whoami` (docs/BENCHMARKS.md,
//! 2026-12-04 later). A large body (a dashboard page, an export) is copied once more in user
//! space for it, beside the copy the kernel makes anyway. Requests reach the service with
//! hyper's body as it is, so that the key check answered before the router
//! ([`super::gate`]) does not box a body it never reads.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};

type Connection<S> = hyper::server::conn::http1::Connection<TokioIo<TcpStream>, S>;

/// How long to wait before accepting again after an error such as too many open files.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// How long shutdown waits for connections to finish what they are answering. A client that
/// stops halfway through sending its request, or stops reading its answer, must not keep the
/// process from writing the usage it holds and exiting.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Serves `listener`'s connections, each with the service `service_for(peer)` makes, until
/// `shutdown` completes; then stops accepting, lets each connection finish the request it is
/// answering (idle ones close at once) and returns when all are closed, or after
/// [`DRAIN_LIMIT`] with the stragglers left to end with the process.
pub async fn serve<M, S>(
    listener: TcpListener,
    mut service_for: M,
    shutdown: impl Future<Output = ()>,
) where
    M: FnMut(SocketAddr) -> S,
    S: tower::Service<hyper::Request<Incoming>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.writev(false);
    // No timer, so no header-read timeout, as under `axum::serve`: hyper arms it for every
    // request, 1 340 instructions more a `GET /v1/whoami` (+9 %, bench/instructions.py).
    // A client stalled mid-request holds only its own connection, and shutdown waits for it
    // at most DRAIN_LIMIT.
    // Tells every connection to finish once shutdown begins; each holds a receiver, so the
    // channel closes when the last connection is done.
    let (stop, stopped) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, most likely: the error repeats until some
                    // connection closes, so wait (still ready to shut down) before trying again.
                    tracing::error!(error = %e, "cannot accept connections; trying again in a second");
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(service_for(peer));
        let connection = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(until_stopped(connection, stopped.clone(), peer));
    }
    drop(listener);
    drop(stopped);
    let _ = stop.send(());
    if tokio::time::timeout(DRAIN_LIMIT, stop.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            // Each connection holds two receivers (see `until_stopped`).
            connections = stop.receiver_count() / 2,
            "shutting down with connections still answering after {DRAIN_LIMIT:?}"
        );
    }
}

/// Serves `connection` to its end, shutting it down gracefully once `stopped` changes.
///
/// Not a `select!` of the two: that would poll the stop signal on every wake-up of the
/// connection, and polling a waiting `watch` receiver takes a lock each time. The signal is
/// polled once, so that it holds this task's waker and wakes the task when shutdown begins;
/// after that, a wake-up only reads the channel's version. A spawned task's waker is the same
/// on every poll, so the one the signal keeps stays the right one.
async fn until_stopped<S>(
    connection: Connection<S>,
    mut stopped: tokio::sync::watch::Receiver<()>,
    peer: SocketAddr,
) where
    S: hyper::service::HttpService<Incoming, ResBody = Body>,
{
    // A second receiver to read the version with while `stop` borrows the first (so a
    // connection counts twice in `receiver_count`).
    let probe = stopped.clone();
    let mut connection = std::pin::pin!(connection);
    let mut stop = std::pin::pin!(stopped.changed());
    let (mut registered, mut stopping) = (false, false);
    let result = std::future::poll_fn(|cx| {
        if !stopping {
            let signalled = if registered {
                // Sent, or the sender is gone: either way, stop.
                !matches!(probe.has_changed(), Ok(false))
            } else {
                registered = true;
                stop.as_mut().poll(cx).is_ready()
            };
            if signalled {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
        connection.as_mut().poll(cx)
    })
    .await;
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// An accept that failed for this one connection (the peer gave up before it was taken), not
/// for the listener: accepting the next goes on at once.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::Notify;

    use super::*;

    /// Everything the peer sends until it closes the connection.
    async fn read_to_close(stream: &mut TcpStream) -> String {
        let mut text = Vec::new();
        stream.read_to_end(&mut text).await.expect("read");
        String::from_utf8_lossy(&text).into_owned()
    }

    #[tokio::test]
    async fn shutdown_answers_the_request_in_flight_and_closes_idle_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        // `/slow` waits for `release` after saying it `started`; anything else answers at once.
        let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let service = {
            let (started, release) = (started.clone(), release.clone());
            tower::service_fn(move |req: hyper::Request<Incoming>| {
                let (started, release) = (started.clone(), release.clone());
                async move {
                    let body = if req.uri().path() == "/slow" {
                        started.notify_one();
                        release.notified().await;
                        "slow done"
                    } else {
                        "quick"
                    };
                    Ok::<_, Infallible>(Response::new(Body::from(body)))
                }
            })
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, move |_| service.clone(), async {
            let _ = stopped.await;
        }));

        // One connection answered and left open (keep-alive), one waiting for its answer.
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        idle.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let mut first = [0u8; 512];
        let n = idle.read(&mut first).await.expect("read");
        assert!(String::from_utf8_lossy(&first[..n]).ends_with("quick"));
        let mut busy = TcpStream::connect(addr).await.expect("connect");
        busy.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        started.notified().await;

        stop.send(()).expect("the server is running");
        // The idle connection is closed without an answer; the server waits for the busy one.
        assert_eq!(read_to_close(&mut idle).await, "");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!server.is_finished(), "returned with a request in flight");
        release.notify_one();
        let answer = read_to_close(&mut busy).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with("slow done"), "{answer}");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("returns once the last connection closed")
            .expect("no panic");
        // Nothing is accepted any more.
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
