//! Whether compare-and-set writes of a JetStream key-value bucket wait
//! less when the keys are spread over several buckets (streams), each of
//! which stores its messages in order with an fsync each, on a local
//! nats-server with `sync_interval: always` (MPP_NATS_SERVER names it):
//! `cargo run --release -p mpp-edge --example kv_shard_cost`. `WRITERS`
//! tasks write new keys for `WINDOW` per shape; the figures behind the
//! note "Where a lookup's time goes" in BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mpp_edge::cas::CasKv;
use mpp_edge::nats_kv::{BucketSpec, NatsKv};
use mpp_test_support::nats::NatsServer;

/// Concurrent writers (the bench's 32 lookup clients keep a few writes
/// in flight; 32 is every client at once).
const WRITERS: [usize; 2] = [8, 32];

/// Buckets the keys are spread over.
const SHARDS: [usize; 4] = [1, 2, 4, 8];

/// How long each shape writes.
const WINDOW: Duration = Duration::from_secs(3);

#[tokio::main]
async fn main() {
    let server = NatsServer::start().await.expect("nats-server");
    let client = async_nats::connect(server.url()).await.unwrap();
    for shards in SHARDS {
        let mut kvs = Vec::new();
        for s in 0..shards {
            let spec = BucketSpec {
                name: format!("MPP_S{shards}_{s}"),
                keys_max: 200_000,
                value_bytes_max: 64,
                max_age: Duration::from_secs(3600),
                replicas: 1,
                storage: mpp_edge::nats_kv::StorageType::File,
            };
            kvs.push(NatsKv::open(client.clone(), &spec).await.unwrap());
        }
        let kvs = Arc::new(kvs);
        for writers in WRITERS {
            let t0 = Instant::now();
            let mut hs = Vec::new();
            for w in 0..writers {
                let kvs = kvs.clone();
                hs.push(tokio::spawn(async move {
                    let mut took = Vec::new();
                    let mut j = 0usize;
                    while t0.elapsed() < WINDOW {
                        j += 1;
                        let kv = &kvs[(w + j) % kvs.len()];
                        let t = Instant::now();
                        kv.put_if(&format!("n.w{writers}x{w}x{j}"), vec![1; 48], 0).await.unwrap();
                        took.push(t.elapsed());
                    }
                    took
                }));
            }
            let mut all = Vec::new();
            for h in hs {
                all.extend(h.await.unwrap());
            }
            let secs = t0.elapsed().as_secs_f64();
            all.sort();
            let at =
                |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0;
            println!(
                "{shards} bucket(s), {writers:>2} writers: {:>6.0} writes/s, p50 {:.2} ms, p99 {:.2} ms",
                all.len() as f64 / secs,
                at(0.5),
                at(0.99)
            );
        }
    }
}
