//! The pre-filled stream shared by sections 1 (raw consume), 2 (ingest),
//! 5 (lookups), 6 (audit) and 7 (footprint): the participant registry (the
//! bench registrar's statements), the service standards, then journeys of
//! many interleaved cases, every envelope signed by its participant, one
//! signature per participant per [`SIGN_WINDOW_MESSAGES`] messages.
//!
//! Filling a stream under `sync_interval: always` runs at a few thousand
//! messages per second (one fsync per message), so a million would take
//! minutes. The stream is therefore filled by a server with JetStream's
//! default sync, stopped cleanly (which flushes its store), and restarted
//! with `sync_interval: always` on the same store before anything is
//! measured. Only the filling is done in the fast mode.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use mpp_core::ids::TrackingNumber;
use mpp_proto::v1 as pb;

use crate::nats::{self, NatsServer, SyncInterval};
use crate::signing::{Outgoing, Signers, SIGN_WINDOW_MESSAGES};
use crate::workload::{now_ms, standards, Interleaved, OPEN_CASES_DEFAULT};

/// Publishes awaiting their PubAck at once while filling.
pub(crate) const FILL_IN_FLIGHT_MAX: usize = 4096;

/// How long one PubAck may take while filling (not a measured path).
pub(crate) const FILL_ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Tracking numbers remembered for lookups.
pub(crate) const SAMPLE_CASES_MAX: usize = 100_000;

/// The filled stream.
#[derive(Debug)]
pub(crate) struct Corpus {
    /// Its server, now with `sync_interval: always`.
    pub(crate) nats: NatsServer,
    /// Messages in the stream.
    pub(crate) messages: u64,
    /// Sum of their payload sizes, bytes.
    pub(crate) payload_bytes: u64,
    /// The generator, to go on producing the same traffic (section 5).
    pub(crate) generator: Interleaved,
    /// How long filling took.
    pub(crate) fill_secs: f64,
}

impl Corpus {
    /// Mean payload size, bytes.
    pub(crate) fn mean_payload_bytes(&self) -> f64 {
        self.payload_bytes as f64 / self.messages.max(1) as f64
    }

    /// Tracking numbers of cases whose opening is in the stream.
    pub(crate) fn sample_cases(&self) -> &[TrackingNumber] {
        &self.generator.started
    }
}

type AckFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
            > + Send,
    >,
>;

/// Sends messages on one connection with a bounded number awaiting their
/// PubAck. One connection keeps the order of sending, so each case's
/// events are stored in order.
pub(crate) struct Pipeline {
    js: jetstream::Context,
    acks: FuturesUnordered<AckFuture>,
    in_flight_max: usize,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("in_flight", &self.acks.len()).finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline on `client`.
    pub(crate) fn new(client: async_nats::Client, in_flight_max: usize) -> Self {
        let mut js = jetstream::new(client);
        // With thousands of publishes in flight on a loaded machine (the
        // test suite runs this in --quick mode beside other tests), a PubAck
        // can take longer than async-nats' default 5 s; the fill is not timed.
        js.set_timeout(FILL_ACK_TIMEOUT);
        Self { js, acks: FuturesUnordered::new(), in_flight_max: in_flight_max.max(1) }
    }

    /// The JetStream context.
    pub(crate) fn context(&self) -> &jetstream::Context {
        &self.js
    }

    /// Sends one message (`Nats-Msg-Id` = `msg_id`), first waiting for acks
    /// while the window is full.
    pub(crate) async fn send(&mut self, subject: String, msg_id: &str, payload: Bytes) -> Result<()> {
        while self.acks.len() >= self.in_flight_max {
            self.next_ack().await?;
        }
        let msg = PublishMessage::build().payload(payload).message_id(msg_id);
        let ack = self.js.send_publish(subject, msg).await.context("publish")?;
        self.acks.push(Box::pin(std::future::IntoFuture::into_future(ack)));
        Ok(())
    }

    async fn next_ack(&mut self) -> Result<()> {
        if let Some(r) = self.acks.next().await {
            let ack = r.context("PubAck")?;
            if ack.duplicate {
                bail!("JetStream took a bench message for a duplicate (seq {})", ack.sequence);
            }
        }
        Ok(())
    }

    /// Waits for every outstanding ack.
    pub(crate) async fn flush(&mut self) -> Result<()> {
        while !self.acks.is_empty() {
            self.next_ack().await?;
        }
        Ok(())
    }
}

/// The corpus's messages in stream order: the bench registrar's statements
/// and the service standards, then journeys, signed a window at a time.
/// Filling may stop and go on (the footprint run fills in chunks): the
/// messages are the same as one fill of the total.
pub(crate) struct Filler {
    /// The journeys' generator.
    pub(crate) generator: Interleaved,
    signers: Signers,
    region: mpp_core::ids::RegionCode,
    now: i64,
    window: Vec<(String, pb::Envelope)>,
    outgoing: Vec<Outgoing>,
    /// Messages sent so far.
    pub(crate) sent: u64,
    /// Sum of their payload sizes, bytes.
    pub(crate) payload_bytes: u64,
}

impl std::fmt::Debug for Filler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filler").field("sent", &self.sent).finish_non_exhaustive()
    }
}

impl Filler {
    /// A filler of the corpus of `seed`, not yet started.
    pub(crate) fn new(seed: u64) -> Result<Self> {
        let generator = Interleaved::new(seed, 1, OPEN_CASES_DEFAULT, SAMPLE_CASES_MAX)?;
        let region = generator.region();
        let now = now_ms();
        let signers = Signers::new()?;
        let window = standards(1)?.iter().map(|s| (s.subject(), s.envelope(region, now))).collect();
        let outgoing = signers.statements(region, now)?;
        Ok(Self { generator, signers, region, now, window, outgoing, sent: 0, payload_bytes: 0 })
    }

    /// Sends messages through `pipe` until `messages` were sent in all (at
    /// least the statements and standards), then waits for their acks.
    pub(crate) async fn fill_to(&mut self, pipe: &mut Pipeline, messages: u64) -> Result<()> {
        loop {
            while self.window.len() < SIGN_WINDOW_MESSAGES
                && self.sent + ((self.outgoing.len() + self.window.len()) as u64) < messages
            {
                let step = self.generator.next_step()?;
                self.window.push((step.subject(), step.envelope(self.region, self.now)));
            }
            let window = std::mem::take(&mut self.window);
            self.outgoing.extend(self.signers.sign(window)?);
            if self.outgoing.is_empty() {
                break;
            }
            for (subject, id, payload) in self.outgoing.drain(..) {
                self.payload_bytes += payload.len() as u64;
                pipe.send(subject, &id, payload).await?;
                self.sent += 1;
            }
            if self.sent >= messages {
                break;
            }
        }
        pipe.flush().await
    }
}

/// Fills a new stream with the standards and then `messages` events in all
/// (at least the standards), and restarts its server with
/// `sync_interval: always`.
pub(crate) async fn fill(parent: &Path, messages: u64, seed: u64) -> Result<Corpus> {
    let started = Instant::now();
    let mut nats = nats::start(parent, SyncInterval::ServerDefault).await?;
    let client = nats.connect().await?;
    let mut pipe = Pipeline::new(client.clone(), FILL_IN_FLIGHT_MAX);
    pipe.context()
        .get_or_create_stream(mpp_edge::stream::stream_config())
        .await
        .context("creating the stream")?;
    let mut filler = Filler::new(seed)?;
    filler.fill_to(&mut pipe, messages).await?;
    let Filler { generator, sent, payload_bytes, .. } = filler;
    drop(pipe);
    drop(client);
    nats.restart_with_sync(SyncInterval::Always).await?;
    let js = jetstream::new(nats.connect().await?);
    let mut stream = js.get_stream(mpp_edge::stream::STREAM_NAME).await.context("the filled stream")?;
    let stored = stream.info().await.context("stream info")?.state.messages;
    if stored != sent {
        bail!("the filled stream holds {stored} messages after the restart, {sent} were sent");
    }
    Ok(Corpus { nats, messages: sent, payload_bytes, generator, fill_secs: started.elapsed().as_secs_f64() })
}

/// Envelopes generated and signed ahead of a paced publication
/// ([`presign`], [`publish_paced`]): the publication then only sends them,
/// so the load generator's own CPU (Ed25519 signing above all) is not
/// spent on the machine's cores while the hub is being measured. The hub's
/// and nats-server's work per event is the same either way.
pub(crate) type Presigned = std::collections::VecDeque<crate::signing::Outgoing>;

/// Generates and signs the next `count` events of `generator`, stamped now.
pub(crate) fn presign(generator: &mut Interleaved, count: usize) -> Result<Presigned> {
    let region = generator.region();
    let signers = Signers::new()?;
    let now = now_ms();
    let mut out = Presigned::with_capacity(count);
    while out.len() < count {
        let n = (count - out.len()).min(SIGN_WINDOW_MESSAGES);
        let mut window = Vec::with_capacity(n);
        for _ in 0..n {
            let step = generator.next_step()?;
            window.push((step.subject(), step.envelope(region, now)));
        }
        out.extend(signers.sign(window)?);
    }
    Ok(out)
}

/// Publishes further events at `rate` events per second until `stop` turns
/// true: first those of `presigned`, then (should they run out) new ones of
/// `generator`, signed as they are sent; returns how many were
/// acknowledged. Presigned events left when `stop` comes are dropped
/// (their cases stay unfinished, as every open case of the generator does).
pub(crate) async fn publish_paced(
    client: async_nats::Client,
    generator: &mut Interleaved,
    mut presigned: Presigned,
    rate: f64,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<u64> {
    let mut pipe = Pipeline::new(client, 512);
    let region = generator.region();
    let signers = Signers::new()?;
    let start = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    while !*stop.borrow() {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            let Some((subject, id, payload)) = presigned.pop_front() else { break };
            pipe.send(subject, &id, payload).await?;
            sent += 1;
        }
        let mut window = Vec::new();
        while sent + (window.len() as u64) < due {
            let step = generator.next_step()?;
            window.push((step.subject(), step.envelope(region, now_ms())));
        }
        for (subject, id, payload) in signers.sign(window)? {
            pipe.send(subject, &id, payload).await?;
            sent += 1;
        }
    }
    pipe.flush().await?;
    Ok(sent)
}
