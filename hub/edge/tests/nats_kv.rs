//! The JetStream key-value bucket behind `CasKv`, against a real
//! nats-server: compare-and-set, the key bound (and that keys already held
//! can still be rewritten when the bucket is full), and watches.

use std::time::Duration;

use futures::StreamExt;
use mpp_edge::cas::{CasKv, KvChange, KvError};
use mpp_edge::nats_kv::{BucketSpec, NatsKv};
use mpp_test_support::nats::NatsServer;

fn spec(keys_max: i64) -> BucketSpec {
    BucketSpec {
        name: "MPP_TEST_GUARD".to_owned(),
        keys_max,
        value_bytes_max: 64,
        max_age: Duration::from_secs(3600),
        replicas: 1,
    }
}

#[tokio::test]
async fn a_bucket_is_compare_and_set_bounded_and_watchable() {
    let server = NatsServer::start().await.unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let kv = NatsKv::open(client.clone(), &spec(3)).await.unwrap();
    // Opening again (another replica) binds to the same bucket.
    let other = NatsKv::open(client.clone(), &spec(3)).await.unwrap();

    let mut watch = kv.watch().await.unwrap();
    assert_eq!(watch.next().await.unwrap().unwrap(), KvChange::Current, "an empty bucket is current at once");

    assert_eq!(kv.get("n.a").await.unwrap().revision, 0);
    let r1 = kv.put_if("n.a", b"1".to_vec(), 0).await.unwrap();
    assert_eq!(other.put_if("n.a", b"x".to_vec(), 0).await, Err(KvError::Conflict));
    let r2 = other.put_if("n.a", b"2".to_vec(), r1).await.unwrap();
    assert_eq!(kv.put_if("n.a", b"y".to_vec(), r1).await, Err(KvError::Conflict), "a stale revision loses");
    let got = kv.get("n.a").await.unwrap();
    assert_eq!((got.value.as_deref(), got.revision), (Some(&b"2"[..]), r2));
    // The watch yields the key's writes in order, ending with the last
    // (one it had not pulled yet may be skipped: the bucket keeps one value).
    loop {
        match watch.next().await.unwrap().unwrap() {
            KvChange::Put { key, revision, .. } if revision == r2 => {
                assert_eq!(key, "n.a");
                break;
            }
            KvChange::Put { revision, .. } => assert_eq!(revision, r1),
            other => panic!("{other:?}"),
        }
    }

    // Three keys fill the bucket: a fourth is refused, existing ones can
    // still be rewritten.
    let rb = kv.put_if("n.b", b"1".to_vec(), 0).await.unwrap();
    kv.put_if("n.c", b"1".to_vec(), 0).await.unwrap();
    assert_eq!(kv.put_if("n.d", b"1".to_vec(), 0).await, Err(KvError::Full));
    kv.put_if("n.b", b"2".to_vec(), rb).await.expect("a held key is rewritten when the bucket is full");
    assert_eq!(kv.get("bad key").await, Err(KvError::InvalidKey));

    // A new watch (a restarted replica) sees every key, then current.
    let mut again = kv.watch().await.unwrap();
    let mut keys = Vec::new();
    loop {
        match again.next().await.unwrap().unwrap() {
            KvChange::Put { key, .. } => keys.push(key),
            KvChange::Current => break,
            KvChange::Deleted { .. } => panic!("nothing was deleted"),
        }
    }
    keys.sort();
    assert_eq!(keys, ["n.a", "n.b", "n.c"]);
}
