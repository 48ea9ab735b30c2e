//! Power cuts under the outbox ([`crate::testing::power_cut`]): calls from
//! concurrent callers and the relay's deletions (carried by the group
//! commits, or by the idle relay's sync), the power going out at a
//! seeded storage call, then a reopen. Every event a call was answered
//! "accepted" for is, after every cut, in the outbox exactly once or was
//! already published (deleted after its PubAck); nothing else appears.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use mpp_core::ids::{AgencyId, RegionCode};

use super::{Outbox, OutboxConfig};
use crate::event::{EventBuilder, OutgoingEvent, SystemClock};
use crate::publish::Publisher;
use crate::testing::call_events;
use crate::testing::power_cut::{self, Rng, SimDisk};

/// Power cuts this test makes (the counter's and the vault's tests in the
/// front office make theirs).
const OUTBOX_POWER_CUTS: u64 = 350;

/// Most storage calls before a cut: a few group commits.
const CALLS_BEFORE_CUT_MAX: u64 = 120;

#[test]
fn accepted_events_survive_power_cuts_exactly_once() {
    let seed = power_cut::seed("outbox");
    let mut rng = Rng::new(seed);
    let disk = SimDisk::new(rng.next_u64());
    let b = EventBuilder::new(
        RegionCode::parse("1771").unwrap(),
        AgencyId::parse("dukcapil").unwrap(),
        Arc::new(SystemClock),
    );
    let config = OutboxConfig::new("(simulated)");
    let (mut accepted, mut published, mut sent) =
        (BTreeSet::<String>::new(), BTreeSet::<String>::new(), BTreeSet::<String>::new());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for cycle in 0..OUTBOX_POWER_CUTS {
        let at = format!("seed {seed}, cycle {cycle}");
        let outbox = Outbox::open_in(config.clone(), disk.storage("outbox"), Arc::new(SystemClock))
            .unwrap_or_else(|e| panic!("{at}: the outbox does not reopen after a power cut: {e}"));
        let entries = outbox.entries(0, usize::MAX).unwrap();
        let mut count: HashMap<&str, usize> = HashMap::new();
        for e in &entries {
            *count.entry(e.event_id.as_str()).or_default() += 1;
        }
        assert!(count.values().all(|&n| n == 1), "{at}: an event twice in the outbox");
        assert!(count.keys().all(|id| sent.contains(*id)), "{at}: an event nobody sent");
        for id in &accepted {
            assert!(
                count.contains_key(id.as_str()) || published.contains(id),
                "{at}: accepted event {id} lost"
            );
        }
        assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq), "{at}: outbox order");
        disk.arm(rng.below(CALLS_BEFORE_CUT_MAX));
        // The relay's deletion of the oldest entries, as after their PubAck
        // (hidden at once, written by the next durable commit), then
        // concurrent calls (so that group commits gather several and carry
        // the deletion), then, sometimes, the idle relay's sync.
        let oldest = outbox.entries(0, rng.below(4) as usize).unwrap_or_default();
        if let Some(last) = oldest.last() {
            outbox.store.acknowledge(last.seq);
            published.extend(oldest.into_iter().map(|e| e.event_id));
        }
        let calls: Vec<Vec<OutgoingEvent>> =
            (0..1 + rng.below(6)).map(|_| call_events(&b, 1 + rng.below(3) as usize)).collect();
        sent.extend(calls.iter().flatten().map(|e| e.event_id().to_owned()));
        let publisher = outbox.publisher();
        let results = rt.block_on(futures::future::join_all(calls.iter().map(|c| publisher.publish_all(c))));
        for (call, result) in calls.iter().zip(results) {
            if result.is_ok() {
                accepted.extend(call.iter().map(|e| e.event_id().to_owned()));
            }
        }
        if rng.below(4) == 0 {
            let _ = outbox.store.sync();
        }
        disk.cut_now();
        drop(outbox);
    }
    let stats = disk.stats();
    println!(
        "outbox power cuts: {} cuts ({} tearing a write), {} events accepted, seed {seed}",
        stats.cuts,
        stats.torn_writes,
        accepted.len()
    );
    assert!(stats.cuts >= OUTBOX_POWER_CUTS);
    assert!(
        accepted.len() as u64 > OUTBOX_POWER_CUTS / 2,
        "{seed}: too few calls got through to test anything"
    );
}
