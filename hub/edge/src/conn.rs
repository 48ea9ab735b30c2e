//! Connection-level limits every server of the project shares: how many
//! connections a listener holds, how many of them one client address holds,
//! and how long a peer may leave an answer unread.
//!
//! The accept loop ([`accept`]) never waits: a connection beyond
//! [`ConnLimits::connections_max`] or beyond
//! [`ConnLimits::connections_per_address_max`] for its address is accepted
//! and closed at once (the client sees the connection closed, not a hanging
//! SYN), so one client, or a crowd of slow ones, cannot make a listener stop
//! accepting. Every admitted connection holds a [`Ticket`] until it is
//! dropped; the per-address counters live in a map with at most one entry
//! per open connection, so the map is bounded by the global cap.
//!
//! Addresses are counted per IPv4 address and per IPv6 /64 (one host
//! usually holds a whole /64; counting single IPv6 addresses would let it
//! take every slot). An IPv4-mapped IPv6 address counts as its IPv4 address.
//!
//! A write the peer does not drain for [`ConnLimits::write_stall_ms`] fails
//! the connection ([`Conn`]): a client that asks and never reads (a
//! "slow read", or a watch stream nobody reads) cannot hold an answer and
//! its buffers forever.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Pause after a failed `accept` (e.g. out of file descriptors), in
/// milliseconds, so an accept loop does not spin.
pub const ACCEPT_ERROR_BACKOFF_MS: u64 = 100;

/// Default for [`ConnLimits::connections_max`]: open connections per
/// listener (TLS handshakes in progress included).
pub const CONNECTIONS_MAX: usize = 4096;

/// Default for [`ConnLimits::connections_per_address_max`]: open connections
/// per client address (IPv4 address or IPv6 /64) per listener. Behind a
/// reverse proxy every client shares the proxy's address: raise it there.
pub const CONNECTIONS_PER_ADDRESS_MAX: usize = 64;

/// Default for [`ConnLimits::write_stall_ms`]: longest a write may wait on a
/// peer that does not read, in milliseconds, before the connection is
/// closed.
pub const WRITE_STALL_MS: u64 = 15_000;

/// The connection limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Most connections open at once.
    pub connections_max: usize,
    /// Most connections open at once from one client address.
    pub connections_per_address_max: usize,
    /// Longest a write may wait for the peer to read, in milliseconds.
    pub write_stall_ms: u64,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            connections_max: CONNECTIONS_MAX,
            connections_per_address_max: CONNECTIONS_PER_ADDRESS_MAX,
            write_stall_ms: WRITE_STALL_MS,
        }
    }
}

/// The key a client address is counted under: the IPv4 address, or the
/// IPv6 /64 (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrKey(u128);

impl AddrKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> AddrKey {
        match ip {
            IpAddr::V4(v4) => AddrKey(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey(u128::from(u32::from(v4))),
                // IPv4 keys are below 2^32; bit 32, always set here (in
                // the cleared interface half), keeps IPv6 keys apart.
                None => AddrKey((u128::from(v6) & !((1u128 << 64) - 1)) | (1u128 << 32)),
            },
        }
    }
}

/// Why a connection (or a handshake) was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The listener holds its maximum.
    Full,
    /// The client's address holds its maximum.
    AddressFull,
}

/// Counts admitted items (connections, handshakes) in total and per client
/// address, against two caps.
#[derive(Debug)]
pub struct AddrGate {
    total_max: usize,
    per_address_max: usize,
    counts: Mutex<GateCounts>,
}

#[derive(Debug, Default)]
struct GateCounts {
    total: usize,
    per_address: HashMap<AddrKey, usize>,
}

impl AddrGate {
    /// A gate admitting at most `total_max` items, at most `per_address_max`
    /// of them from one address.
    pub fn new(total_max: usize, per_address_max: usize) -> Arc<AddrGate> {
        Arc::new(AddrGate { total_max, per_address_max, counts: Mutex::new(GateCounts::default()) })
    }

    /// Admits one item from `ip`, or says why not. The ticket gives the
    /// place back when dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refused> {
        let key = AddrKey::of(ip);
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if c.total >= self.total_max {
            return Err(Refused::Full);
        }
        let n = c.per_address.entry(key).or_insert(0);
        if *n >= self.per_address_max {
            return Err(Refused::AddressFull);
        }
        *n += 1;
        c.total += 1;
        // One entry per address with an open item: bounded by `total_max`.
        debug_assert!(c.per_address.len() <= c.total);
        Ok(Ticket { gate: self.clone(), key })
    }

    /// Items admitted and not yet given back.
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).total
    }

    /// Items admitted from `ip` and not yet given back.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        c.per_address.get(&AddrKey::of(ip)).copied().unwrap_or(0)
    }

    fn release(&self, key: AddrKey) {
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(c.total > 0, "a ticket given back twice");
        c.total -= 1;
        if let Some(n) = c.per_address.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                c.per_address.remove(&key);
            }
        }
    }
}

/// One admitted item; dropping it gives its place back.
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<AddrGate>,
    key: AddrKey,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.release(self.key);
    }
}

/// An admitted TCP connection: it holds its [`Ticket`] until dropped, and
/// fails a write its peer leaves undrained for the listener's
/// [`ConnLimits::write_stall_ms`].
#[derive(Debug)]
pub struct Conn {
    io: TcpStream,
    peer: SocketAddr,
    stall_after: Duration,
    stall: Option<Pin<Box<Sleep>>>,
    _ticket: Ticket,
}

impl Conn {
    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Passes `poll` (a write or flush) through, failing it once the peer
    /// has left it pending for `stall_after`.
    fn stalled<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match poll(Pin::new(&mut self.io), cx) {
            Poll::Ready(r) => {
                self.stall = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let after = self.stall_after;
                let stall = self.stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
                match stall.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the peer did not read its answer in time",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.stalled(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stalled(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stalled(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        TcpConnectInfo { local_addr: self.io.local_addr().ok(), remote_addr: Some(self.peer) }
    }
}

/// The client address of a served connection (for the HTTP server's
/// `ConnectInfo`).
pub trait PeerAddr {
    /// The peer's address.
    fn peer_addr(&self) -> SocketAddr;
}

impl PeerAddr for Conn {
    fn peer_addr(&self) -> SocketAddr {
        self.peer
    }
}

impl PeerAddr for tokio_rustls::server::TlsStream<Conn> {
    fn peer_addr(&self) -> SocketAddr {
        self.get_ref().0.peer
    }
}

/// The connections of `listener` that `limits` admit, with TCP_NODELAY set
/// (without it, small answers wait for delayed ACKs, about 40 ms each on
/// Linux). Never waits for a place: a connection over a cap is closed at
/// once (see the module docs). Accept errors are logged and paced by
/// [`ACCEPT_ERROR_BACKOFF_MS`]. `gate` is the listener's connection count
/// (for figures and tests); it must have been made from `limits`.
pub fn accept(
    listener: TcpListener,
    limits: ConnLimits,
    gate: Arc<AddrGate>,
) -> impl Stream<Item = Conn> + Send + 'static {
    let stall_after = Duration::from_millis(limits.write_stall_ms);
    futures::stream::unfold((listener, gate), move |(listener, gate)| async move {
        loop {
            match listener.accept().await {
                Ok((io, peer)) => match gate.admit(peer.ip()) {
                    Ok(ticket) => {
                        if let Err(e) = io.set_nodelay(true) {
                            tracing::debug!(error = %e, "Cannot set TCP_NODELAY");
                        }
                        let conn = Conn { io, peer, stall_after, stall: None, _ticket: ticket };
                        return Some((conn, (listener, gate)));
                    }
                    Err(why) => {
                        tracing::debug!(peer = %peer, why = ?why, "Connection refused by the connection caps");
                        drop(io);
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "Accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                }
            }
        }
    })
}

/// [`accept`] with a fresh gate made from `limits`.
pub fn accept_limited(
    listener: TcpListener,
    limits: ConnLimits,
) -> impl Stream<Item = Conn> + Send + 'static {
    let gate = AddrGate::new(limits.connections_max, limits.connections_per_address_max);
    accept(listener, limits, gate)
}

/// Runs `serve` in a task of its own for every connection `incoming`
/// yields, until `stop` turns true or `incoming` ends; then drops `incoming`
/// (closing the listening socket at once) and returns once every
/// connection's task has ended (each sees `stop` and closes its connection
/// in its own way).
pub async fn serve_each<I, IO, F, Fut>(incoming: I, mut stop: watch::Receiver<bool>, serve: F)
where
    I: Stream<Item = IO>,
    F: Fn(IO, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    // Every connection task holds a sender; the channel closes when the
    // last one ends.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    {
        let mut incoming = std::pin::pin!(incoming);
        loop {
            let io = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                io = incoming.next() => match io {
                    Some(io) => io,
                    None => break,
                },
            };
            let (served, open) = (serve(io, stop.clone()), open_tx.clone());
            tokio::spawn(async move {
                served.await;
                drop(open);
            });
        }
    }
    drop(open_tx);
    let _ = open_rx.recv().await;
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn addresses_count_per_ipv4_address_and_per_ipv6_64() {
        let k = |s: &str| AddrKey::of(s.parse().unwrap());
        assert_ne!(k("127.0.0.1"), k("127.0.0.2"));
        assert_eq!(k("2001:db8::1"), k("2001:db8::ffff:1"));
        assert_ne!(k("2001:db8::1"), k("2001:db8:0:1::1"));
        assert_eq!(k("::ffff:10.0.0.1"), k("10.0.0.1"));
        assert_ne!(k("::a00:1"), k("10.0.0.1"), "IPv6 keys never meet IPv4 keys");
    }

    #[test]
    fn the_gate_caps_in_total_and_per_address_and_gives_places_back() {
        let gate = AddrGate::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = gate.admit(a).unwrap();
        let _a2 = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).unwrap_err(), Refused::AddressFull);
        let _b1 = gate.admit(b).unwrap();
        assert_eq!(gate.admit(b).unwrap_err(), Refused::Full);
        drop(a1);
        assert_eq!(gate.open_from(a), 1);
        let _b2 = gate.admit(b).unwrap();
        assert_eq!((gate.open(), gate.open_from(b)), (3, 2));
    }

    #[tokio::test]
    async fn connections_over_the_address_cap_are_closed_at_once_and_others_still_come_in() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnLimits { connections_max: 8, connections_per_address_max: 2, write_stall_ms: 1_000 };
        let gate = AddrGate::new(limits.connections_max, limits.connections_per_address_max);
        let mut incoming = Box::pin(accept(listener, limits, gate.clone()));
        let connect_from = |ip: &'static str| async move {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.bind(format!("{ip}:0").parse().unwrap()).unwrap();
            s.connect(addr).await.unwrap()
        };
        let _one = connect_from("127.0.0.2").await;
        let _two = connect_from("127.0.0.2").await;
        let mut third = connect_from("127.0.0.2").await;
        let held = [incoming.next().await.unwrap(), incoming.next().await.unwrap()];
        // Another address still gets in, after the third was refused.
        let _other = connect_from("127.0.0.3").await;
        let next = incoming.next().await.unwrap();
        assert_eq!(next.peer().ip().to_string(), "127.0.0.3");
        let mut buf = [0u8; 1];
        assert_eq!(third.read(&mut buf).await.unwrap_or(0), 0, "closed by the server");
        assert_eq!(gate.open(), 3);
        drop(held);
        assert_eq!(gate.open(), 1);
    }

    #[tokio::test]
    async fn a_write_the_peer_never_reads_fails_after_the_stall_limit() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnLimits { connections_max: 8, connections_per_address_max: 8, write_stall_ms: 300 };
        let mut incoming = Box::pin(accept_limited(listener, limits));
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut conn = incoming.next().await.unwrap();
        let chunk = vec![0u8; 64 * 1024];
        let started = tokio::time::Instant::now();
        let err = loop {
            // The client never reads: the socket buffers fill, then the
            // write waits, then fails.
            if let Err(e) = conn.write_all(&chunk).await {
                break e;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "the write never stalled");
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
