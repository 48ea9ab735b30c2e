//! The JetStream key-value bucket behind `CasKv`, against a real
//! nats-server: compare-and-set, the key bound (and that keys already held
//! can still be rewritten when the bucket is full), and watches.

use std::time::Duration;

use futures::StreamExt;
use mpp_edge::cas::{CasKv, KvChange, KvError, KvValue, KvWrite};
use mpp_edge::cas_batch::BatchingKv;
use mpp_edge::nats_kv::{BucketSpec, NatsKv, StorageType};
use mpp_test_support::nats::NatsServer;

fn spec(keys_max: i64) -> BucketSpec {
    BucketSpec {
        name: "MPP_TEST_GUARD".to_owned(),
        keys_max,
        value_bytes_max: 64,
        max_age: Duration::from_secs(3600),
        replicas: 1,
        storage: StorageType::File,
    }
}

/// The storage of the bucket's stream, as the server reports it.
async fn stored_in(client: &async_nats::Client, spec: &BucketSpec) -> StorageType {
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream(format!("KV_{}", spec.name)).await.unwrap();
    stream.info().await.unwrap().config.storage
}

#[tokio::test]
async fn a_bucket_is_created_in_the_storage_asked_and_an_existing_one_keeps_its_own() {
    let server = NatsServer::start().await.unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let memory = BucketSpec { name: "MPP_TEST_MEM".to_owned(), storage: StorageType::Memory, ..spec(10) };
    let kv = NatsKv::open(client.clone(), &memory).await.unwrap();
    assert_eq!(stored_in(&client, &memory).await, StorageType::Memory);
    let r = kv.put_if("n.a", b"1".to_vec(), 0).await.unwrap();
    let file = spec(10);
    NatsKv::open(client.clone(), &file).await.unwrap();
    assert_eq!(stored_in(&client, &file).await, StorageType::File);

    // A replica configured for file storage binds to the memory bucket as
    // it is (NATS cannot change a stream's storage; the hub warns).
    let other = NatsKv::open(client.clone(), &BucketSpec { storage: StorageType::File, ..memory.clone() })
        .await
        .unwrap();
    assert_eq!(stored_in(&client, &memory).await, StorageType::Memory);
    assert_eq!(other.get("n.a").await.unwrap().revision, r, "the same bucket, its keys kept");
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

fn write(key: &str, value: &[u8], expected: u64) -> KvWrite {
    KvWrite { key: key.to_owned(), value: value.to_vec(), expected }
}

#[tokio::test]
async fn a_batch_is_written_whole_or_not_at_all() {
    let server = NatsServer::start().await.unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let kv = NatsKv::open(client.clone(), &spec(4)).await.unwrap();
    assert!(kv.batches(), "a 2.12+ server and the bucket allow atomic batches");
    let ra = kv.put_if("n.a", b"1".to_vec(), 0).await.unwrap();

    // Each message expects its key's revision; all hold: one commit, the
    // revisions consecutive.
    let revs = kv.put_all_if(&[write("n.a", b"2", ra), write("n.b", b"1", 0)]).await.unwrap();
    assert_eq!(revs, vec![ra + 1, ra + 2]);
    assert_eq!(kv.get("n.a").await.unwrap(), KvValue { value: Some(b"2".to_vec()), revision: ra + 1 });
    assert_eq!(kv.get("n.b").await.unwrap().revision, ra + 2);

    // One stale expectation (the last message's or an earlier one's) fails
    // the whole batch as a conflict, and nothing of it is stored.
    for batch in [
        vec![write("n.c", b"1", 0), write("n.a", b"3", ra)],
        vec![write("n.a", b"3", ra), write("n.c", b"1", 0)],
    ] {
        assert_eq!(kv.put_all_if(&batch).await, Err(KvError::Conflict), "{batch:?}");
        assert_eq!(kv.get("n.c").await.unwrap().revision, 0, "nothing of a failed batch is stored");
        assert_eq!(kv.get("n.a").await.unwrap().revision, ra + 1);
    }

    // A batch that would create keys past the bound is refused whole.
    let past = [write("n.c", b"1", 0), write("n.d", b"1", 0), write("n.a", b"3", ra + 1)];
    assert!(matches!(kv.put_all_if(&past).await, Err(KvError::Full | KvError::BatchRefused(_))));
    assert_eq!((kv.get("n.c").await.unwrap().revision, kv.get("n.a").await.unwrap().revision), (0, ra + 1));

    // Through the batching writer, a conflict among concurrent writes
    // fails only its own write.
    let batching = BatchingKv::new(std::sync::Arc::new(kv.clone()));
    let writes: Vec<_> = [("n.a", ra), ("n.b", ra + 2), ("n.c", 0)]
        .into_iter()
        .map(|(k, e)| {
            let b = batching.clone();
            tokio::spawn(async move { b.put_if(k, b"4".to_vec(), e).await })
        })
        .collect();
    let answers: Vec<_> = futures::future::join_all(writes).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(answers[0], Err(KvError::Conflict), "n.a was at {}", ra + 1);
    assert!(answers[1].is_ok() && answers[2].is_ok(), "{answers:?}");
}

#[tokio::test]
async fn a_bucket_made_without_atomic_batches_is_used_as_it_is_and_takes_none() {
    let server = NatsServer::start().await.unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let old =
        async_nats::jetstream::stream::Config { allow_atomic_publish: false, ..spec(4).stream_config() };
    js.create_stream(old).await.unwrap();
    let kv = NatsKv::open(client.clone(), &spec(4)).await.unwrap();
    assert!(!kv.batches());
    assert!(!js.get_stream("KV_MPP_TEST_GUARD").await.unwrap().cached_info().config.allow_atomic_publish);
    let batch = [write("n.a", b"1", 0), write("n.b", b"1", 0)];
    assert!(matches!(kv.put_all_if(&batch).await, Err(KvError::BatchRefused(_))));
    assert_eq!(kv.get("n.a").await.unwrap().revision, 0);
}

#[tokio::test]
async fn a_memory_bucket_lost_with_its_server_is_created_again_by_the_next_watch() {
    let mut server = NatsServer::start().await.unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let memory = BucketSpec { storage: StorageType::Memory, ..spec(10) };
    let kv = NatsKv::open(client.clone(), &memory).await.unwrap();
    kv.put_if("n.a", b"1".to_vec(), 0).await.unwrap();

    // A single server keeps no memory stream across a restart.
    server.restart().await.unwrap();
    let mut watch =
        mpp_test_support::wait::wait_for("a watch after the restart", Duration::from_secs(10), || async {
            Ok(kv.watch().await.ok())
        })
        .await
        .unwrap();
    assert_eq!(watch.next().await.unwrap().unwrap(), KvChange::Current, "created again, empty");
    assert_eq!(stored_in(&client, &memory).await, StorageType::Memory);
    assert_eq!(kv.get("n.a").await.unwrap().revision, 0, "its keys are lost");
    kv.put_if("n.a", b"2".to_vec(), 0).await.expect("written again");
}
