//! The SLA gauge of `/metrics` (`mpp_hub_sla_overdue_applications`): the
//! open applications past their service standard's due date, as of now.
//!
//! Counting overdue applications needs every case's SLA clock as of now: a
//! scan of the whole projection. Doing it per scrape would make scrapes as
//! costly as the store is large, so a background task
//! ([`spawn_sla_refresh`]) rescans every [`SLA_REFRESH_INTERVAL`] on a
//! blocking thread, reading at most [`SLA_SCAN_CASES_MAX`] cases (one sled
//! read, one decode and one SLA computation per case: roughly tens of
//! microseconds each, so about a second of one core per interval at the
//! bound). A store with more cases is not counted at all (a partial count
//! would look like a real one): the gauge is left out and
//! `mpp_hub_sla_scan_truncated` is 1; `mpp-hub audit sla-report` gives the
//! full figures offline.

use std::sync::Arc;
use std::time::Duration;

use mpp_core::calendar::CalendarSet;
use mpp_core::sla::case_sla;
use mpp_obs::health::Health;
use mpp_obs::metrics::SlaScan;
use mpp_store::{Store, StoreError};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::lookup::Lookups;

/// How often the SLA gauge is recomputed.
pub const SLA_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// Most cases one SLA scan reads; beyond, the gauge is left out (see the
/// module docs).
pub const SLA_SCAN_CASES_MAX: usize = 50_000;

/// Counts the open applications past their due date as of `now_ms`,
/// reading at most `cases_max` cases (see the module docs).
pub fn scan_sla_overdue(
    store: &impl Store,
    calendars: &CalendarSet,
    now_ms: i64,
    cases_max: usize,
) -> Result<SlaScan, StoreError> {
    let mut scan = SlaScan { overdue_applications: 0, cases: 0, truncated: false };
    for case in store.cases() {
        if scan.cases == cases_max {
            scan.truncated = true;
            break;
        }
        let case = case?;
        scan.cases += 1;
        let overdue = case_sla(&case, calendars, now_ms).iter().filter(|s| s.overdue).count();
        scan.overdue_applications += overdue as u64;
    }
    Ok(scan)
}

/// Refreshes the SLA gauge every [`SLA_REFRESH_INTERVAL`] (the first time
/// right away) until `stop` turns true.
pub fn spawn_sla_refresh(
    health: Arc<Health>,
    lookups: Lookups,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SLA_REFRESH_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warned = false;
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let l = lookups.clone();
            let scan = tokio::task::spawn_blocking(move || {
                scan_sla_overdue(l.store(), l.calendars(), l.now_ms(), SLA_SCAN_CASES_MAX)
            })
            .await;
            match scan {
                Ok(Ok(scan)) => {
                    if scan.truncated && !warned {
                        warn!(
                            cases_max = SLA_SCAN_CASES_MAX,
                            "More cases than one SLA scan reads: mpp_hub_sla_overdue_applications is left out"
                        );
                        warned = true;
                    }
                    debug!(cases = scan.cases, overdue = scan.overdue_applications, "SLA scan done");
                    health.metrics().set_sla_scan(scan);
                }
                Ok(Err(e)) => warn!(error = %e, "SLA scan failed; the gauge keeps its last value"),
                Err(e) => warn!(error = %e, "SLA scan task failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use mpp_obs::metrics::Scrape;
    use mpp_obs::testing::parse;
    use mpp_store::SledStore;

    use super::*;

    fn scrape(health: &Health) -> Scrape {
        health.scrape(None, None, 0)
    }

    #[test]
    fn an_sla_scan_of_an_empty_store_is_complete_and_a_bound_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let scan = scan_sla_overdue(&store, &CalendarSet::new(), 0, SLA_SCAN_CASES_MAX).unwrap();
        assert_eq!(scan, SlaScan { overdue_applications: 0, cases: 0, truncated: false });
        let m = mpp_ledger::observe::hub_metrics();
        m.set_sla_scan(scan);
        let health = mpp_ledger::observe::health(&mpp_store::Head::GENESIS);
        let s = parse(&m.render(&scrape(&health)));
        assert_eq!(s["mpp_hub_sla_overdue_applications"], 0.0);
        assert_eq!(s["mpp_hub_sla_scan_truncated"], 0.0);
        m.set_sla_scan(SlaScan { overdue_applications: 4, cases: 10, truncated: true });
        let s = parse(&m.render(&scrape(&health)));
        assert!(!s.contains_key("mpp_hub_sla_overdue_applications"), "a partial count is left out");
        assert_eq!(s["mpp_hub_sla_scan_truncated"], 1.0);
    }
}
