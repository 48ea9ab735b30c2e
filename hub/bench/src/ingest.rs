//! Section 2: hub ingest, in-process, wired exactly as `mpp-hub serve`
//! wires it: [`mpp_ledger::ingest::run`] (the JetStream pull loop that acks
//! only after the batch is durable) feeding the [`Writer`] thread that owns
//! the [`Ledger`] over a [`SledStore`], with checkpoint signing on.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use mpp_core::checkpoint::Origin;
use mpp_core::log::Verdict;
use mpp_ledger::ingest::{self, IngestConfig, Writer};
use mpp_ledger::ledger::Ledger;
use mpp_ledger::signer::{CheckpointPolicy, Checkpointer, Signer};
use mpp_store::{SledStore, Store};
use tokio::sync::watch;

use crate::corpus::Corpus;
use crate::raw::HUB_BATCH;

/// How long ingest of one run may take before the bench gives up.
pub(crate) const INGEST_DEADLINE: Duration = Duration::from_secs(3600);

/// What one in-process ingest run did.
#[derive(Debug, Clone)]
pub(crate) struct IngestRun {
    /// Messages ingested (committed, flushed and acked).
    pub(crate) messages: u64,
    /// Seconds from start to the last of them committed.
    pub(crate) secs: f64,
    /// Entries per verdict (of everything ingested before the stop).
    pub(crate) verdicts: BTreeMap<&'static str, u64>,
    /// Rejection reasons, most frequent first.
    pub(crate) reasons: Vec<(String, u64)>,
    /// The hash of the entry of stream sequence `n` (what the PostgreSQL
    /// batch peer's chain is compared with), if the log holds it.
    pub(crate) hash_at_n: Option<[u8; 32]>,
}

impl IngestRun {
    /// events/s.
    pub(crate) fn rate(&self) -> f64 {
        self.messages as f64 / self.secs
    }
}

/// Ingests the first `n` messages of the corpus into a fresh store under
/// `tmp` and measures the time until the head has reached message `n`.
///
/// With `registry`, the ledger trusts the bench registrar: the corpus's
/// registry statements are accepted and every envelope's signature is
/// verified. Without, the statements are rejected (no registrar key), the
/// registry never comes into force and signatures are not looked at: the
/// path of a hub from before the registry.
pub(crate) async fn run(tmp: &Path, corpus: &Corpus, n: u64, registry: bool) -> Result<IngestRun> {
    let dir = crate::temp_dir(tmp, "ingest-")?;
    let store = SledStore::open(dir.path()).context("opening the store")?;
    let trust = if registry { crate::signing::trust() } else { mpp_ledger::trust::Trust::default() };
    let ledger = Ledger::open_with(store.clone(), Arc::new(trust)).map_err(|e| anyhow!("{e}"))?;
    let head = ledger.head();
    let origin = Origin::for_hub("mpp-bench").map_err(|e| anyhow!("{e:?}"))?;
    let signer = Arc::new(Signer::load_or_create(dir.path(), origin).map_err(|e| anyhow!("{e}"))?);
    let checkpointer =
        Checkpointer::new(signer, CheckpointPolicy::default(), mpp_lookup::lookup::system_clock(), &store)
            .map_err(|e| anyhow!("{e}"))?;
    let writer = Arc::new(Writer::spawn_with_checkpoints(ledger, Some(checkpointer))?);
    let health = Arc::new(mpp_ledger::observe::health(&head));
    let (stop_tx, stop_rx) = watch::channel(false);
    let cfg = IngestConfig {
        nats_url: corpus.nats.url(),
        consumer_name: if registry { "bench-ingest" } else { "bench-ingest-unsigned" }.to_owned(),
        batch_max: HUB_BATCH,
        changes: None,
    };
    let started = Instant::now();
    let task = tokio::spawn(ingest::run(cfg, writer.clone(), health.clone(), head, stop_rx));
    let until = started + INGEST_DEADLINE;
    let (done, reached) = loop {
        let r = health.readiness();
        if r.last_stream_seq >= n {
            break (Instant::now(), r.last_stream_seq);
        }
        if task.is_finished() {
            bail!("ingest stopped at stream seq {}: {:?}", r.last_stream_seq, r.reason);
        }
        if Instant::now() >= until {
            bail!("ingest reached stream seq {} of {n} within {INGEST_DEADLINE:?}", r.last_stream_seq);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let secs = done.duration_since(started).as_secs_f64();
    let _ = stop_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(30), task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => bail!("ingest failed: {e}"),
        Ok(Err(e)) => bail!("ingest task: {e}"),
        Err(_) => bail!("ingest did not stop"),
    }
    if let Ok(w) = Arc::try_unwrap(writer) {
        w.join();
    }
    let messages = reached;
    let mut verdicts = BTreeMap::new();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut hash_at_n = None;
    for e in store.entries(1) {
        let e = e.map_err(|e| anyhow!("{e}"))?;
        if e.stream_seq == n {
            hash_at_n = Some(e.hash);
        }
        let v = match e.verdict {
            Verdict::Accepted => "accepted",
            Verdict::Rejected => "rejected",
            Verdict::Duplicate => "duplicate",
        };
        *verdicts.entry(v).or_insert(0) += 1;
        if let Some(r) = e.reason {
            *reasons.entry(r.as_str().to_owned()).or_insert(0) += 1;
        }
    }
    let mut reasons: Vec<_> = reasons.into_iter().collect();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
    Ok(IngestRun { messages, secs, verdicts, reasons, hash_at_n })
}
