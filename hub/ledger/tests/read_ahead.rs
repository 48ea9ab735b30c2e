//! `verify_chain` and `rebuild` read the log in chunks on reader threads
//! ahead of their walk (`ledger::READ_AHEAD_CHUNK_ENTRIES` entries each):
//! over several chunks they count every entry, and on a damaged log they
//! stop at the same entry, with the same error, as one iterator over
//! `Store::entries` does.

use mpp_core::log::{LogEntry, Verdict, GENESIS_HASH};
use mpp_core::ReasonCode;
use mpp_ledger::ledger::{self, LedgerError, READ_AHEAD_CHUNK_ENTRIES};
use mpp_store::{push_entry, CommitBatch, Head, SledStore, Store};

/// Entries per commit while filling (blocks never span two commits).
const COMMIT_ENTRIES: u64 = 1000;

/// A store of `n` entries holding empty messages (each replays as
/// rejected `EMPTY_MESSAGE`), with 1 ms between entries.
fn filled(dir: &std::path::Path, n: u64) {
    let store = SledStore::open(dir).unwrap();
    let (mut head, mut frontier) = store.head_and_frontier().unwrap();
    let mut prev = GENESIS_HASH;
    let mut seq = 0;
    while seq < n {
        let mut entries = Vec::new();
        let mut subtrees = Vec::new();
        for _ in 0..COMMIT_ENTRIES.min(n - seq) {
            seq += 1;
            let e = LogEntry::new(
                seq,
                seq + 10,
                1_700_000_000_000_000_000 + seq as i64 * 1_000_000,
                Verdict::Rejected,
                Some(ReasonCode::EmptyMessage),
                "the message payload is empty",
                "mpp.events.dukcapil.kk",
                Vec::new(),
                prev,
            );
            prev = e.hash;
            push_entry(&mut frontier, &e.hash, &mut subtrees).unwrap();
            head = Head { last_seq: e.seq, last_stream_seq: e.stream_seq, head_hash: e.hash };
            entries.push(e);
        }
        store
            .commit(CommitBatch { entries, head, frontier: frontier.clone(), subtrees, ..Default::default() })
            .unwrap();
    }
}

/// The first sequence of every stored log block, in order.
fn block_starts(db: &sled::Db) -> Vec<u64> {
    db.scan_prefix(b"L").map(|r| u64::from_be_bytes(r.unwrap().0[1..9].try_into().unwrap())).collect()
}

/// The database under the store (whose handle may take a moment to let
/// go of its lock after being dropped).
fn raw_sled(dir: &std::path::Path) -> sled::Db {
    mpp_edge::sled_open::open_waiting_for_lock(&sled::Config::new().path(dir)).unwrap()
}

/// Replaces the log block holding `seq` with bytes that do not parse.
fn damage_block_holding(dir: &std::path::Path, seq: u64) -> u64 {
    let db = raw_sled(dir);
    let first = block_starts(&db).into_iter().filter(|&s| s <= seq).max().unwrap();
    let mut key = b"L".to_vec();
    key.extend_from_slice(&first.to_be_bytes());
    db.insert(key, vec![0xee, 1, 2, 3]).unwrap();
    db.flush().unwrap();
    first
}

/// Where and why one iterator over `Store::entries` stops: the sequence
/// `verify_chain` names for a read error and the error's text.
fn first_read_error(store: &SledStore) -> (u64, String) {
    let mut last = 0;
    for e in store.entries(1) {
        match e {
            Ok(e) => last = e.seq,
            Err(err) => return (last + 1, err.to_string()),
        }
    }
    panic!("the damaged log read without error");
}

#[test]
fn several_chunks_verify_and_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3 * READ_AHEAD_CHUNK_ENTRIES + 123;
    filled(dir.path(), n);
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(ledger::verify_chain(&store).unwrap(), n);
    let (_, head) = ledger::rebuild(&store).unwrap();
    assert_eq!(head.last_seq, n);
}

#[test]
fn a_damaged_block_stops_both_where_one_iterator_stops() {
    let n = 3 * READ_AHEAD_CHUNK_ENTRIES + 123;
    // Inside the second chunk, in the block straddling the first chunk's
    // end, and two damaged blocks (the first one found counts).
    let cases: [&[u64]; 3] = [
        &[READ_AHEAD_CHUNK_ENTRIES + 700],
        &[READ_AHEAD_CHUNK_ENTRIES + 1],
        &[2 * READ_AHEAD_CHUNK_ENTRIES + 5, 600],
    ];
    for damaged in cases {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path(), n);
        let firsts: Vec<u64> = damaged.iter().map(|&s| damage_block_holding(dir.path(), s)).collect();
        let store = SledStore::open(dir.path()).unwrap();
        let (seq, what) = first_read_error(&store);
        assert_eq!(seq, *firsts.iter().min().unwrap(), "{damaged:?}");
        let err = ledger::verify_chain(&store).unwrap_err();
        assert_eq!((err.seq, err.what.as_str()), (seq, what.as_str()), "{damaged:?}");
        match ledger::rebuild(&store) {
            Err(LedgerError::Chain(err)) => {
                assert_eq!((err.seq, err.what.as_str()), (seq, what.as_str()), "{damaged:?}")
            }
            other => panic!("{damaged:?}: expected a chain error, got {other:?}"),
        }
    }
}
