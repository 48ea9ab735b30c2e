//! Section 1: what this machine can do, in this run, without the hub: a
//! JetStream pull consume like the hub's, durable publishes with
//! `sync_interval: always`, sled writing the hub's two keys per event, and a
//! SHA-256 hash chain.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use async_nats::jetstream::{self, consumer};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use mpp_core::log::{Verdict, GENESIS_HASH};
use mpp_core::LogEntry;
use prost::Message as _;
use sha2::{Digest, Sha256};

use crate::corpus::{Corpus, Pipeline};
use crate::nats::NatsServer;
use crate::report::{Row, Section};
use crate::workload::{now_ms, Interleaved};

/// The hub's pull batch (`mpp-hub serve --batch-max` default).
pub(crate) const HUB_BATCH: usize = 1000;

/// The raw figures later sections compare with.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Raw {
    /// JetStream pull consume with explicit acks (one per message),
    /// messages/s: the definition of raw consume, which the ingest
    /// target is read against.
    pub(crate) consume_per_s: Option<f64>,
    /// JetStream pull consume acking like the hub (AckAll, one per batch),
    /// messages/s: a stricter comparison, shown next to it.
    pub(crate) consume_ack_all_per_s: Option<f64>,
    /// Durable publish, one at a time, messages/s.
    pub(crate) publish_one_per_s: Option<f64>,
    /// SHA-256 chain over 300-byte records, records/s.
    pub(crate) sha_chain_per_s: Option<f64>,
}

/// Sizes of section 1.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawSizes {
    /// Messages consumed.
    pub(crate) consume: u64,
    /// Publishes one at a time.
    pub(crate) publish_one: u64,
    /// Publishes with 512 in flight.
    pub(crate) publish_window: u64,
    /// Events written to sled.
    pub(crate) sled_events: u64,
    /// Records chained.
    pub(crate) sha_records: u64,
}

/// Runs section 1.
pub(crate) async fn run(
    sec: &mut Section,
    tmp: &Path,
    corpus: &Corpus,
    sizes: RawSizes,
    seed: u64,
) -> Result<Raw> {
    let mut raw = Raw::default();
    let entry_bytes = mean_entry_bytes(corpus.mean_payload_bytes());

    let n = sizes.consume.min(corpus.messages);
    // AckAll first: the first pass over the stream reads it cold, and the
    // figure the target is read against should not gain from that.
    let all = consume(&corpus.nats, n, "bench-raw-consume-all", Acks::AllPerBatch).await?;
    raw.consume_ack_all_per_s = Some(all);
    let rate = consume(&corpus.nats, n, "bench-raw-consume", Acks::PerMessage).await?;
    raw.consume_per_s = Some(rate);
    sec.row(Row::new(
        format!("JetStream pull consume, batch {HUB_BATCH}, explicit ack per message"),
        rate,
        "msg/s",
    ));
    sec.row(Row::new(format!("JetStream pull consume, batch {HUB_BATCH}, AckAll per batch"), all, "msg/s"));
    sec.note(format!(
        "Consume: {n} pre-filled messages (mean payload {:.0} B) through a durable pull consumer (max_ack_pending \
         8192, batches of {HUB_BATCH}, the hub's batch), nothing else done per message; with AckPolicy::Explicit and \
         an ack per message (the issue's definition of raw consume, against which the ingest target is read), \
         and with AckPolicy::All and one ack per batch, as the hub acks (the ingest ratio to it is shown too; \
         measured first, so it reads the stream cold and the other warm).",
        corpus.mean_payload_bytes()
    ));

    let nats = crate::nats::start(tmp, crate::nats::SyncInterval::Always).await?;
    let (one, window) = publish(&nats, sizes.publish_one, sizes.publish_window, seed).await?;
    raw.publish_one_per_s = Some(one);
    sec.row(Row::new("JetStream publish, sync_interval always, one at a time", one, "msg/s"));
    sec.row(Row::new("JetStream publish, sync_interval always, 512 in flight", window, "msg/s"));
    sec.note(format!(
        "Publish: realistic envelopes with Nats-Msg-Id, {} awaited one by one, then {} with up to 512 \
         awaiting their PubAck on one connection, to a fresh server with sync_interval: always.",
        sizes.publish_one, sizes.publish_window
    ));

    let sled_rate = sled_append(tmp, sizes.sled_events, entry_bytes)?;
    sec.row(Row::new(
        format!("sled 0.34.7 append, 2 keys/event, {entry_bytes} B entries, batch {HUB_BATCH} + flush"),
        sled_rate,
        "events/s",
    ));

    let sha300 = sha_chain(sizes.sha_records, 300);
    raw.sha_chain_per_s = Some(sha300);
    sec.row(Row::new("SHA-256 hash chain, 300 B records", sha300, "records/s"));
    let sha_entry = sha_chain(sizes.sha_records, entry_bytes);
    sec.row(Row::new(
        format!("SHA-256 hash chain, {entry_bytes} B records (the hub's mean entry)"),
        sha_entry,
        "records/s",
    ));
    Ok(raw)
}

/// The mean encoded log entry for a mean payload (a sample entry's overhead
/// added to the payload).
pub(crate) fn mean_entry_bytes(mean_payload: f64) -> usize {
    let e = LogEntry::new(
        1,
        1,
        1,
        Verdict::Accepted,
        None,
        "",
        "mpp.events.dukcapil.akta-lahir",
        Vec::new(),
        GENESIS_HASH,
    );
    let mut buf = Vec::new();
    e.encode_into(&mut buf);
    buf.len() + mean_payload.round() as usize
}

/// How a raw consumer acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acks {
    /// AckPolicy::Explicit, an ack for every message.
    PerMessage,
    /// AckPolicy::All, an ack for the last message of each batch (the hub's way).
    AllPerBatch,
}

/// Consumes the first `n` messages of the stream in the hub's batches and
/// returns messages/s.
pub(crate) async fn consume(nats: &NatsServer, n: u64, name: &str, acks: Acks) -> Result<f64> {
    let js = jetstream::new(nats.connect().await?);
    let stream = js.get_stream(mpp_edge::stream::STREAM_NAME).await.context("stream")?;
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name.to_owned()),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: match acks {
                Acks::PerMessage => consumer::AckPolicy::Explicit,
                Acks::AllPerBatch => consumer::AckPolicy::All,
            },
            ack_wait: Duration::from_secs(60),
            max_ack_pending: mpp_ledger::ingest::ACK_PENDING_MESSAGES_MAX,
            ..Default::default()
        })
        .await
        .context("creating the consumer")?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(HUB_BATCH)
        .expires(Duration::from_secs(5))
        .heartbeat(Duration::from_secs(2))
        .messages()
        .await
        .context("pull")?;
    let started = Instant::now();
    let mut got = 0u64;
    let mut batch = Vec::with_capacity(HUB_BATCH);
    while got < n {
        let first = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .context("no message for 30 s")?
            .context("the message stream ended")?
            .context("pull error")?;
        batch.clear();
        batch.push(first);
        while batch.len() < HUB_BATCH {
            match messages.next().now_or_never() {
                Some(Some(Ok(m))) => batch.push(m),
                _ => break,
            }
        }
        got += batch.len() as u64;
        let to_ack = match acks {
            Acks::PerMessage => &batch[..],
            Acks::AllPerBatch => &batch[batch.len() - 1..],
        };
        for m in to_ack {
            m.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(got as f64 / secs)
}

/// Publishes `one` envelopes one at a time, then `window` with 512 in
/// flight; returns both rates.
async fn publish(nats: &NatsServer, one: u64, window: u64, seed: u64) -> Result<(f64, f64)> {
    let client = nats.connect().await?;
    let js = jetstream::new(client.clone());
    js.get_or_create_stream(mpp_edge::stream::stream_config()).await.context("stream")?;
    let mut gen = Interleaved::new(seed ^ 0x9b, 50_000_000, 256, 0)?;
    let region = gen.region();
    let mut make = || -> Result<(String, String, Bytes)> {
        let step = gen.next_step()?;
        let env = step.envelope(region, now_ms());
        Ok((step.subject(), env.event_id.clone(), Bytes::from(env.encode_to_vec())))
    };
    let msgs: Vec<_> = (0..one).map(|_| make()).collect::<Result<_>>()?;
    let started = Instant::now();
    for (subject, id, payload) in msgs {
        let msg = jetstream::message::PublishMessage::build().payload(payload).message_id(&id);
        let ack = js.send_publish(subject, msg).await?.await?;
        if ack.duplicate {
            bail!("unexpected duplicate");
        }
    }
    let one_rate = one as f64 / started.elapsed().as_secs_f64();
    let msgs: Vec<_> = (0..window).map(|_| make()).collect::<Result<_>>()?;
    let mut pipe = Pipeline::new(client, 512);
    let started = Instant::now();
    for (subject, id, payload) in msgs {
        pipe.send(subject, &id, payload).await?;
    }
    pipe.flush().await?;
    let window_rate = window as f64 / started.elapsed().as_secs_f64();
    Ok((one_rate, window_rate))
}

/// sled writing what the hub writes per event at the least: an entry of
/// `entry_bytes` under a sequence key and an event-id key, in batches of
/// [`HUB_BATCH`], each applied and flushed. Returns events/s.
fn sled_append(tmp: &Path, events: u64, entry_bytes: usize) -> Result<f64> {
    let dir = crate::temp_dir(tmp, "sled-raw-")?;
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(mpp_store::CACHE_CAPACITY_BYTES)
        .flush_every_ms(None)
        .open()?;
    let value = vec![0x5a_u8; entry_bytes];
    let started = Instant::now();
    let mut seq = 0u64;
    while seq < events {
        let mut batch = sled::Batch::default();
        for _ in 0..HUB_BATCH.min((events - seq) as usize) {
            seq += 1;
            let mut k = [0u8; 9];
            k[0] = b'L';
            k[1..].copy_from_slice(&seq.to_be_bytes());
            let mut v = value.clone();
            v[..8].copy_from_slice(&seq.to_be_bytes());
            batch.insert(&k[..], v);
            let mut id = [0u8; 17];
            id[0] = b'E';
            id[1..9].copy_from_slice(&(seq.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_be_bytes());
            id[9..].copy_from_slice(&seq.to_be_bytes());
            batch.insert(&id[..], &seq.to_be_bytes()[..]);
        }
        db.apply_batch(batch)?;
        db.flush()?;
    }
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

/// `h = SHA-256(h || record)` over `n` records of `bytes` bytes; records/s.
pub(crate) fn sha_chain(n: u64, bytes: usize) -> f64 {
    let mut record = vec![0u8; bytes.max(8)];
    let mut h = [0u8; 32];
    let started = Instant::now();
    for i in 0..n {
        record[..8].copy_from_slice(&i.to_le_bytes());
        let mut d = Sha256::new();
        d.update(h);
        d.update(&record);
        h = d.finalize().into();
    }
    std::hint::black_box(h);
    n as f64 / started.elapsed().as_secs_f64()
}
