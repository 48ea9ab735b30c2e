//! Test support for agency services (feature `testing`): an in-memory
//! [`Publisher`] and a throw-away `nats-server` with JetStream.

use std::io;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::event::OutgoingEvent;
use crate::publish::{Accepted, PubAckInfo, PublishError, PublishFuture, PublishOutcome, Publisher};

/// A [`Publisher`] that keeps events in memory, acknowledging each with the
/// next sequence number. It can be told to fail from the n-th event on.
#[derive(Debug, Default)]
pub struct MemoryPublisher {
    events: Mutex<Vec<OutgoingEvent>>,
    fail_from: Option<usize>,
}

impl MemoryPublisher {
    /// A publisher that accepts everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// A publisher that accepts `n` events and then fails with
    /// [`PublishOutcome::NotStored`].
    pub fn failing_after(n: usize) -> Self {
        Self { events: Mutex::new(Vec::new()), fail_from: Some(n) }
    }

    /// Every event accepted so far, in order.
    pub fn events(&self) -> Vec<OutgoingEvent> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Publisher for MemoryPublisher {
    fn publish_all<'a>(&'a self, events: &'a [OutgoingEvent]) -> PublishFuture<'a> {
        Box::pin(async move {
            let mut stored = self.events.lock().unwrap_or_else(|e| e.into_inner());
            let mut accepted = Vec::new();
            for ev in events {
                if self.fail_from.is_some_and(|n| stored.len() >= n) {
                    return Err(PublishError {
                        reason: mpp_core::ReasonCode::PublishFailed,
                        event_id: ev.event_id().to_owned(),
                        outcome: PublishOutcome::NotStored,
                        attempts: 1,
                        last_error: "MemoryPublisher told to fail".to_owned(),
                        accepted_before: accepted.into_iter().map(|a: Accepted| a.event_id).collect(),
                    });
                }
                stored.push(ev.clone());
                accepted.push(Accepted {
                    event_id: ev.event_id().to_owned(),
                    ack: Some(PubAckInfo {
                        stream: crate::stream::STREAM_NAME.to_owned(),
                        stream_seq: stored.len() as u64,
                        duplicate: false,
                    }),
                    outbox_seq: None,
                });
            }
            Ok(accepted)
        })
    }
}

/// A local TCP port that was free a moment ago (bound and released).
pub fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// How long a test waits for its nats-server to accept connections, in milliseconds.
pub const NATS_START_DEADLINE_MS: u64 = 10_000;

/// A `nats-server` (from PATH) with JetStream on a free local port and a
/// fresh store directory, configured with `sync_interval: always`. Killed
/// and its directory removed on drop.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl NatsServer {
    /// Starts the server (it may not accept connections yet: use
    /// [`NatsServer::connect`]).
    pub fn start() -> io::Result<Self> {
        Self::start_on(free_port()?)
    }

    /// Starts the server on `port` (e.g. one from [`free_port`] that a client
    /// was pointed at before the server existed).
    pub fn start_on(port: u16) -> io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("mpp-nats-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("js"))?;
        let conf = dir.join("nats.conf");
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: {:?}\n  sync_interval: always\n}}\n",
                dir.join("js")
            ),
        )?;
        let log = std::fs::File::create(dir.join("nats.log"))?;
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()?;
        Ok(Self { child, dir, port })
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nats.log")).unwrap_or_default()
    }

    /// Connects, retrying until the server accepts connections or
    /// [`NATS_START_DEADLINE_MS`] passes (then the error includes its log).
    pub async fn connect(&mut self) -> io::Result<async_nats::Client> {
        let deadline = Instant::now() + Duration::from_millis(NATS_START_DEADLINE_MS);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!("nats-server exited with {status}:\n{}", self.log())));
            }
            let attempt = async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_millis(500))
                .connect(self.url())
                .await;
            match attempt {
                Ok(client) => return Ok(client),
                Err(e) if Instant::now() >= deadline => {
                    return Err(io::Error::other(format!(
                        "nats-server not reachable at {}: {e}\n{}",
                        self.url(),
                        self.log()
                    )))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
