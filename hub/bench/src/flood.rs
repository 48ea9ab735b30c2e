//! `mpp-bench --standards-flood N`: the hub's resident memory under a flood
//! of N service standards (issue 15: "5,000 service standards from an
//! unregistered agency added 112–172 MiB to every hub's memory,
//! permanently; 20,000 pushed a fresh hub to 561 MiB").
//!
//! Each scenario runs on a fresh nats-server and a fresh `mpp-hub serve`:
//! the RSS is read from `/proc/<pid>/status` once the hub has ingested what
//! comes before the flood, and again once it has ingested the flood (with
//! the peak, `VmHWM`, and the hub's own `mpp_hub_standards_in_memory`),
//! and once more after the hub was stopped and started again on the same
//! store (the issue found the flood's memory kept "permanently").
//! Every flood standard is as large as validation allows (two names and
//! [`limits::LIST_ITEMS_MAX`] requirements of [`limits::TEXT_BYTES_MAX`]
//! bytes, about 17 KB), as an attacker would make them.
//!
//! - `unregistered`: the registry in force (the bench registrar's
//!   statements), N standards of distinct services from an agency nobody
//!   registered, signed with a key of its own: all refused
//!   (`UNREGISTERED_PARTICIPANT`).
//! - `versions`: the registry in force, N successive versions of one
//!   registered agency's service: all accepted, one held.
//! - `no registry`: a hub whose log has no registry statement yet (a hub
//!   migrating, docs/OPERATIONS.md): N standards of distinct services from
//!   one agency, unsigned, all accepted; the ledger holds each one's terms
//!   only.
//!
//! Not part of the report: the figures go to stdout.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use mpp_agency_kit::signing::{EnvelopeSigner, ToSign};
use mpp_core::ids::AgencyId;
use mpp_core::limits;
use mpp_proto::v1 as pb;

use crate::corpus::{Pipeline, FILL_IN_FLIGHT_MAX};
use crate::nats::{self, SyncInterval};
use crate::proc::{self, Hub, Memory};
use crate::signing::Signers;
use crate::workload::{now_ms, REGION};

/// How long a hub may take to ingest a flood (20,000 messages of ~17 KB on
/// a debug build, with the machine shared).
const FLOOD_INGEST_DEADLINE: Duration = Duration::from_secs(900);

/// Envelopes signed together by the flooding participant (one signature
/// per batch, as a relay signs).
const FLOOD_SIGN_BATCH: usize = 256;

/// The flooding agency nobody registered.
const UNREGISTERED_AGENCY: &str = "banjir";

/// What one scenario measured.
#[derive(Debug, Clone)]
pub(crate) struct FloodReading {
    /// Which scenario.
    pub(crate) scenario: &'static str,
    /// Standards published in the flood.
    pub(crate) standards: usize,
    /// RSS once the hub had ingested everything before the flood.
    pub(crate) before: Memory,
    /// RSS once it had ingested the flood (peak: `VmHWM` over its life).
    pub(crate) after: Memory,
    /// RSS of a hub started again on the same store, once caught up.
    pub(crate) restarted: Memory,
    /// `mpp_hub_standards_in_memory` after the flood (and the restart).
    pub(crate) in_memory: u64,
    /// `mpp_hub_rejected_total` summed over reasons, after the flood.
    pub(crate) rejected: u64,
}

/// A standard as large as validation allows.
fn big_standard(agency: &str, service: &str, version: u32) -> pb::Envelope {
    let text = |what: &str| {
        let mut s = format!("{what} ");
        while s.len() < limits::TEXT_BYTES_MAX {
            s.push('x');
        }
        s
    };
    pb::Envelope {
        schema_version: 1,
        event_id: uuid::Uuid::now_v7().hyphenated().to_string(),
        case_id: String::new(),
        region_code: REGION.to_owned(),
        agency_id: agency.to_owned(),
        service_id: service.to_owned(),
        application_id: String::new(),
        occurred_at_ms: now_ms(),
        officer: "admin-katalog".to_owned(),
        body: Some(pb::envelope::Body::ServiceStandardPublished(pb::ServiceStandardPublished {
            name_id: text("nama"),
            name_en: text("name"),
            completion_working_days: 5,
            fee_idr: 0,
            requirements: (0..limits::LIST_ITEMS_MAX).map(|i| text(&format!("syarat-{i}"))).collect(),
            fiktif_positif: false,
            version,
            collection: None,
        })),
        signature: None,
    }
}

fn subject_of(env: &pb::Envelope) -> String {
    format!("mpp.events.{}.{}", env.agency_id, env.service_id)
}

/// Publishes `envelopes`, signed by `signer` in batches (unsigned without).
async fn publish_all(
    pipe: &mut Pipeline,
    signer: Option<&EnvelopeSigner>,
    envelopes: impl Iterator<Item = pb::Envelope>,
) -> Result<u64> {
    let mut sent = 0u64;
    let mut batch: Vec<ToSign> = Vec::with_capacity(FLOOD_SIGN_BATCH);
    let mut envelopes = envelopes.peekable();
    while envelopes.peek().is_some() {
        batch.clear();
        for env in envelopes.by_ref().take(FLOOD_SIGN_BATCH) {
            batch.push(ToSign {
                subject: subject_of(&env),
                event_id: env.event_id.clone(),
                payload: prost::Message::encode_to_vec(&env),
            });
        }
        if let Some(s) = signer {
            s.sign_batch(&mut batch);
        }
        for t in batch.drain(..) {
            pipe.send(t.subject, &t.event_id, Bytes::from(t.payload)).await?;
            sent += 1;
        }
    }
    pipe.flush().await?;
    Ok(sent)
}

/// Reads a series' value from the hub's `/metrics` (summed over labels).
async fn metric_sum(hub: &Hub, name: &str) -> Result<u64> {
    let r = crate::http::get(&hub.http_addr, "/metrics", &[]).await?;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let mut total = 0f64;
    let mut found = false;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        if series == name || series.starts_with(&format!("{name}{{")) {
            total += value.parse::<f64>().with_context(|| format!("{line:?}"))?;
            found = true;
        }
    }
    if !found {
        bail!("no {name} in the hub's /metrics");
    }
    Ok(total as u64)
}

/// The three scenarios for a flood of `n` standards.
pub(crate) async fn run(exe: &Path, tmp: &Path, n: usize) -> Result<Vec<FloodReading>> {
    let mut out = Vec::new();
    for scenario in ["unregistered", "versions", "no registry"] {
        eprintln!("[mpp-bench] standards flood of {n}: {scenario}");
        out.push(scenario_run(exe, tmp, n, scenario).await.with_context(|| format!("scenario {scenario}"))?);
    }
    Ok(out)
}

async fn scenario_run(exe: &Path, tmp: &Path, n: usize, scenario: &'static str) -> Result<FloodReading> {
    let dir = crate::temp_dir(tmp, "flood-")?;
    let nats = nats::start(dir.path(), SyncInterval::ServerDefault).await?;
    let client = nats.connect().await?;
    let mut pipe = Pipeline::new(client, FILL_IN_FLIGHT_MAX);
    pipe.context()
        .get_or_create_stream(mpp_edge::stream::stream_config())
        .await
        .context("creating the stream")?;
    let mut hub = Hub::start(exe, dir.path(), &nats.url()).await?;
    let pid = hub.pid().ok_or_else(|| anyhow!("the hub has no pid"))?;
    let signers = Signers::new()?;
    let (agency, service) = *crate::workload::services().first().ok_or_else(|| anyhow!("no service"))?;
    // Before the flood: the registry (and the registered agency's first
    // standard), or nothing.
    let mut sent = 0u64;
    if scenario != "no registry" {
        for (subject, id, payload) in signers.statements(crate::workload::region()?, now_ms())? {
            pipe.send(subject, &id, payload).await?;
            sent += 1;
        }
        let first = signers.sign(vec![{
            let e = big_standard(agency, service, 1);
            (subject_of(&e), e)
        }])?;
        for (subject, id, payload) in first {
            pipe.send(subject, &id, payload).await?;
            sent += 1;
        }
        pipe.flush().await?;
    }
    hub.wait_for_stream_seq(sent, FLOOD_INGEST_DEADLINE, |_| {}).await?;
    let before = proc::memory(pid)?;
    // The flood.
    sent += match scenario {
        "unregistered" => {
            let seed = [0xbau8; 32];
            let id = AgencyId::parse(UNREGISTERED_AGENCY).map_err(|e| anyhow!("{e}"))?;
            let evil = EnvelopeSigner::from_seed(id, &seed);
            let flood = (0..n).map(|i| big_standard(UNREGISTERED_AGENCY, &format!("layanan-{i}"), 1));
            publish_all(&mut pipe, Some(&evil), flood).await?
        }
        "versions" => {
            let signer = signers.signer_of(agency)?;
            let flood = (0..n).map(|i| big_standard(agency, service, 2 + i as u32));
            publish_all(&mut pipe, Some(signer), flood).await?
        }
        _ => {
            let flood = (0..n).map(|i| big_standard(UNREGISTERED_AGENCY, &format!("layanan-{i}"), 1));
            publish_all(&mut pipe, None, flood).await?
        }
    };
    hub.wait_for_stream_seq(sent, FLOOD_INGEST_DEADLINE, |_| {}).await?;
    let after = proc::memory(pid)?;
    let in_memory = metric_sum(&hub, "mpp_hub_standards_in_memory").await?;
    let rejected = metric_sum(&hub, "mpp_hub_rejected_total").await?;
    hub.stop().await?;
    // The "permanently": a hub started again on the same store.
    let mut hub = Hub::start(exe, dir.path(), &nats.url()).await?;
    let pid = hub.pid().ok_or_else(|| anyhow!("the restarted hub has no pid"))?;
    hub.wait_for_stream_seq(sent, FLOOD_INGEST_DEADLINE, |_| {}).await?;
    let restarted = proc::memory(pid)?;
    let restarted_in_memory = metric_sum(&hub, "mpp_hub_standards_in_memory").await?;
    hub.stop().await?;
    if restarted_in_memory != in_memory {
        bail!("the restarted hub holds {restarted_in_memory} standards, {in_memory} before the restart");
    }
    Ok(FloodReading { scenario, standards: n, before, after, restarted, in_memory, rejected })
}

/// The readings as a table (stdout).
pub(crate) fn table(readings: &[FloodReading]) -> String {
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    let mut s = String::from(
        "| scenario | standards | RSS before (MiB) | RSS after (MiB) | growth (MiB) | peak RSS (MiB) | RSS after a restart (MiB) | standards in memory | rejected |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in readings {
        s.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {:+.1} | {:.1} | {:.1} | {} | {} |\n",
            r.scenario,
            r.standards,
            mib(r.before.rss_bytes),
            mib(r.after.rss_bytes),
            mib(r.after.rss_bytes) - mib(r.before.rss_bytes),
            mib(r.after.peak_rss_bytes),
            mib(r.restarted.rss_bytes),
            r.in_memory,
            r.rejected,
        ));
    }
    s
}
