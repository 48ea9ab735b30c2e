//! The hub's figures in the plain terms of `mpp-obs`: the metrics registry
//! with every reason code of this build as a label value, and the store's
//! head as readiness reports it.

use mpp_core::ReasonCode;
use mpp_obs::health::{HeadMark, Health};
use mpp_obs::metrics::HubMetrics;
use mpp_store::Head;

/// A registry whose `mpp_hub_rejected_total` lists every reason code.
pub fn hub_metrics() -> HubMetrics {
    HubMetrics::new(ReasonCode::ALL.iter().map(|c| c.as_str()).collect())
}

/// `head` in plain numbers.
pub fn head_mark(head: &Head) -> HeadMark {
    HeadMark { last_seq: head.last_seq, last_stream_seq: head.last_stream_seq, head_hash: head.head_hash }
}

/// Readiness starting at `head`, with a registry from [`hub_metrics`].
pub fn health(head: &Head) -> Health {
    Health::new(head_mark(head), hub_metrics())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use mpp_obs::metrics::{Scrape, BATCH_SIZE_BUCKETS, COMMIT_SECONDS_BUCKETS};
    use mpp_obs::testing::{histogram_is_consistent, parse};
    use mpp_store::SledStore;

    use super::*;
    use crate::ingest::Writer;
    use crate::ledger::{Ledger, RawMessage};

    fn scrape(health: &Health, now_ms: i64) -> Scrape {
        health.scrape(Some(3), Some(7), now_ms)
    }

    fn raw(seq: u64, subject: &str, payload: &'static [u8]) -> RawMessage {
        RawMessage {
            stream_seq: seq,
            stream_time_ns: 1_750_000_000_000_000_000 + seq as i64,
            subject: subject.to_owned(),
            payload: Bytes::from_static(payload),
            redrive: None,
        }
    }

    #[tokio::test]
    async fn a_batch_with_rejects_moves_the_counters_and_the_text_parses() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let ledger = Ledger::open(store).unwrap();
        let health = health(&ledger.head());
        let writer = Writer::spawn_with_metrics(ledger, None, health.metrics().clone()).unwrap();
        let batch = vec![
            raw(1, "mpp.events.dukcapil.kk", b""),
            raw(2, "mpp.events.dukcapil.kk", b"\xff\xff\xff"),
            raw(3, "mpp.events.dukcapil.kk", b""),
        ];
        let outcome = writer.commit(batch).await.unwrap();
        assert_eq!(outcome.rejected, 3);
        health.set_head(head_mark(&outcome.head));
        health.set_ready();
        health.metrics().set_ingest_lag(5);
        let now_ms = 1_750_000_000_000 + 2_500;
        let text = health.metrics().render(&scrape(&health, now_ms));
        let s = parse(&text);
        assert_eq!(s["mpp_hub_ingest_messages_total{verdict=\"rejected\"}"], 3.0);
        assert_eq!(s["mpp_hub_ingest_messages_total{verdict=\"accepted\"}"], 0.0);
        assert_eq!(s["mpp_hub_rejected_total{reason=\"EMPTY_MESSAGE\"}"], 2.0);
        assert_eq!(s["mpp_hub_rejected_total{reason=\"UNDECODABLE_ENVELOPE\"}"], 1.0);
        assert_eq!(s["mpp_hub_rejected_total{reason=\"BAD_CHECK_DIGIT\"}"], 0.0, "every code is listed");
        assert_eq!(histogram_is_consistent(&s, "mpp_hub_ingest_batch_size", BATCH_SIZE_BUCKETS), 1.0);
        assert_eq!(s["mpp_hub_ingest_batch_size_bucket{le=\"2\"}"], 0.0);
        assert_eq!(s["mpp_hub_ingest_batch_size_bucket{le=\"5\"}"], 1.0, "a batch of 3");
        assert_eq!(s["mpp_hub_ingest_batch_size_sum"], 3.0);
        assert_eq!(histogram_is_consistent(&s, "mpp_hub_commit_seconds", COMMIT_SECONDS_BUCKETS), 1.0);
        assert!(s["mpp_hub_commit_seconds_sum"] > 0.0);
        assert_eq!(s["mpp_hub_last_seq"], 3.0);
        assert_eq!(s["mpp_hub_last_stream_seq"], 3.0);
        assert_eq!(s["mpp_hub_ready"], 1.0);
        assert_eq!(s["mpp_hub_ingest_lag_messages"], 5.0);
        let lag = s["mpp_hub_ingest_lag_seconds"];
        assert!((lag - 2.5).abs() < 0.01, "now minus the last committed message's stream time: {lag}");
        assert_eq!(s["mpp_hub_watchers"], 3.0);
        assert_eq!(s["mpp_hub_access_events_dropped_total"], 7.0);
        assert_eq!(s["mpp_hub_checkpoints_total"], 0.0);
        assert_eq!(s["mpp_hub_standards_in_memory"], 0.0, "no standard accepted");
        assert_eq!(s["mpp_hub_ops_auth_failures_total"], 0.0);
        health.metrics().record_redrive(true);
        health.metrics().record_redrive(false);
        health.metrics().record_redrive(false);
        health.metrics().record_ops_auth_failure();
        let s = parse(&health.metrics().render(&scrape(&health, now_ms)));
        assert_eq!(s["mpp_hub_ops_redrives_total{outcome=\"published\"}"], 1.0);
        assert_eq!(s["mpp_hub_ops_redrives_total{outcome=\"refused\"}"], 2.0);
        assert_eq!(s["mpp_hub_ops_auth_failures_total"], 1.0);
        assert!(!s.contains_key("mpp_hub_sla_overdue_applications"), "no scan yet");
        // Caught up: no lag in seconds, however old the last message.
        health.metrics().set_ingest_lag(0);
        let s = parse(&health.metrics().render(&scrape(&health, now_ms + 3_600_000)));
        assert_eq!(s["mpp_hub_ingest_lag_seconds"], 0.0);
        // A redelivered batch (all skipped) counts as a batch, not as entries.
        let again = writer.commit(vec![raw(3, "mpp.events.dukcapil.kk", b"")]).await.unwrap();
        assert_eq!(again.skipped, 1);
        let s = parse(&health.metrics().render(&scrape(&health, now_ms)));
        assert_eq!(s["mpp_hub_ingest_batch_size_count"], 2.0);
        assert_eq!(s["mpp_hub_rejected_total{reason=\"EMPTY_MESSAGE\"}"], 2.0);
        writer.join();
    }
}
