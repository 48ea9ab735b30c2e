//! The outbox writer thread: group commit, pipelined through the channel.
//!
//! It blocks on the channel for one call, takes every further call already
//! waiting (up to [`GROUP_COMMIT_CALLS_MAX`] calls or
//! [`GROUP_COMMIT_BYTES_MAX`] bytes), writes the admitted ones in one redb
//! transaction, commits it durably, and only then answers each caller. It
//! never waits for more calls: the calls that arrive while a commit syncs
//! queue in the channel and form the next group, so the disk syncs without
//! pause while calls come, and concurrent callers settle into groups that
//! alternate (each group's callers come back while the other's commit
//! syncs). No caller is answered before its own commit returned. It is a
//! plain thread because the commit's sync blocks.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, Notify};

use super::{Append, AppendError, Counters, Store, GROUP_COMMIT_BYTES_MAX, GROUP_COMMIT_CALLS_MAX};

use crate::event::Clock;

/// The writer's state; owned by its thread.
#[derive(Debug)]
pub(super) struct Writer {
    pub(super) store: Arc<Store>,
    pub(super) counters: Arc<Counters>,
    pub(super) notify: Arc<Notify>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) entries_max: u64,
    pub(super) bytes_max: u64,
    /// The sequence of the next entry.
    pub(super) next_seq: u64,
}

impl Writer {
    /// Runs until every sender is gone and the channel is empty.
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Append>) {
        while let Some(first) = rx.blocking_recv() {
            let mut bytes = first.bytes;
            let mut calls = vec![first];
            while calls.len() < GROUP_COMMIT_CALLS_MAX && bytes < GROUP_COMMIT_BYTES_MAX as u64 {
                match rx.try_recv() {
                    Ok(call) => {
                        bytes += call.bytes;
                        calls.push(call);
                    }
                    Err(_) => break,
                }
            }
            self.commit(calls);
        }
        tracing::debug!("Outbox writer stopped");
    }

    /// Writes the calls that fit in one transaction, commits, answers
    /// everyone.
    fn commit(&mut self, calls: Vec<Append>) {
        let now_ms = self.clock.now_ms();
        let mut depth = self.counters.depth.load(Ordering::Relaxed);
        let mut bytes = self.counters.bytes.load(Ordering::Relaxed);
        let mut rows = Vec::new();
        let mut admitted = Vec::with_capacity(calls.len());
        let mut refused = Vec::new();
        let mut events = 0u64;
        for mut call in calls {
            // A caller that gave up (cancelled RPC) is not written: nobody
            // would learn that its events were accepted.
            if call.reply.is_closed() {
                continue;
            }
            let n = call.values.len() as u64;
            if depth + n > self.entries_max || bytes + call.bytes > self.bytes_max {
                refused.push(call);
                continue;
            }
            let seq = self.next_seq;
            for value in &mut call.values {
                if let Some(time) = value.get_mut(1..9) {
                    time.copy_from_slice(&now_ms.to_be_bytes());
                }
                rows.push((self.next_seq, std::mem::take(value)));
                self.next_seq += 1;
            }
            depth += n;
            bytes += call.bytes;
            events += n;
            admitted.push((call.reply, call.bytes, n, seq));
        }
        if !refused.is_empty() {
            self.counters.full_total.fetch_add(refused.len() as u64, Ordering::Relaxed);
            let (depth, bytes) =
                (self.counters.depth.load(Ordering::Relaxed), self.counters.bytes.load(Ordering::Relaxed));
            tracing::warn!(calls = refused.len(), depth, bytes, "Outbox full: calls refused");
            for call in refused {
                let _ = call.reply.send(Err(AppendError::Full {
                    depth,
                    bytes,
                    entries_max: self.entries_max,
                    bytes_max: self.bytes_max,
                }));
            }
        }
        if admitted.is_empty() {
            return;
        }
        let started = Instant::now();
        let result = match self.store.append(&rows) {
            Ok(()) => Ok(()),
            Err(e) => {
                // The commit may have reached the disk (a sync that failed
                // after the write): the relay may find these entries, so they
                // count, and their sequences are not used again. redb refuses
                // every later write until the outbox is reopened, which then
                // counts what is really there.
                Err(AppendError::Storage { error: e.to_string(), maybe_stored: true })
            }
        };
        let flush_us = started.elapsed().as_micros() as u64;
        let added: u64 = admitted.iter().map(|(_, b, _, _)| *b).sum();
        self.counters.depth.fetch_add(events, Ordering::Relaxed);
        self.counters.bytes.fetch_add(added, Ordering::Relaxed);
        match result {
            Ok(()) => {
                self.counters.flushes_total.fetch_add(1, Ordering::Relaxed);
                self.counters.flush_us_total.fetch_add(flush_us, Ordering::Relaxed);
                self.counters.accepted_events_total.fetch_add(events, Ordering::Relaxed);
                self.counters.durable_next_seq.store(self.next_seq, Ordering::Relaxed);
                self.counters.write_failed.store(false, Ordering::Relaxed);
                tracing::trace!(calls = admitted.len(), events, flush_us, "Outbox batch committed");
                self.notify.notify_one();
                for (reply, _, _, seq) in admitted {
                    let _ = reply.send(Ok(seq));
                }
            }
            Err(err) => {
                self.counters.write_failed.store(true, Ordering::Relaxed);
                tracing::error!(calls = admitted.len(), error = ?err, "Outbox write failed: calls not accepted");
                self.notify.notify_one();
                for (reply, _, _, _) in admitted {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}
