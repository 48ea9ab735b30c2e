//! What a compare-and-set write of a JetStream key-value bucket costs alone
//! and in ADR-50 atomic batches, on a local nats-server with
//! `sync_interval: always` (MPP_NATS_SERVER names it):
//! `cargo run --release -p mpp-edge --example kv_batch_cost`. The figures
//! behind the note in `mpp_edge::cas_batch`.

use mpp_edge::cas::{CasKv, KvWrite};
use mpp_edge::nats_kv::{BucketSpec, NatsKv};
use mpp_test_support::nats::NatsServer;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let server = NatsServer::start().await.expect("nats-server");
    let client = async_nats::connect(server.url()).await.unwrap();
    let spec = BucketSpec {
        name: "MPP_RATE".to_owned(),
        keys_max: 10_000_000,
        value_bytes_max: 64,
        max_age: Duration::from_secs(3600),
        replicas: 1,
        storage: mpp_edge::nats_kv::StorageType::File,
    };
    let kv = NatsKv::open(client, &spec).await.unwrap();
    let mut k = 0u64;
    let t0 = Instant::now();
    for _ in 0..50 {
        k += 1;
        kv.put_if(&format!("n.k{k}"), vec![1; 48], 0).await.unwrap();
    }
    println!("single put_if, one after another: {:.2} ms each", t0.elapsed().as_secs_f64() * 1000.0 / 50.0);
    // Batches in parallel: do they overlap?
    for par in [1usize, 4, 16] {
        let t0 = Instant::now();
        let mut hs = Vec::new();
        for p in 0..par {
            let kv = kv.clone();
            hs.push(tokio::spawn(async move {
                for r in 0..10 {
                    let writes: Vec<KvWrite> = (0..10)
                        .map(|i| KvWrite {
                            key: format!("n.p{par}x{p}x{r}x{i}"),
                            value: vec![1; 48],
                            expected: 0,
                        })
                        .collect();
                    kv.put_all_if(&writes).await.unwrap();
                }
            }));
        }
        for h in hs {
            h.await.unwrap();
        }
        println!(
            "{par} batches of 10 in parallel: {:.2} ms per round",
            t0.elapsed().as_secs_f64() * 1000.0 / 10.0
        );
    }
    for size in [1usize, 2, 10, 30, 100, 250] {
        let t0 = Instant::now();
        let rounds = 20;
        for _ in 0..rounds {
            let writes: Vec<KvWrite> = (0..size)
                .map(|_| {
                    k += 1;
                    KvWrite { key: format!("n.k{k}"), value: vec![1; 48], expected: 0 }
                })
                .collect();
            kv.put_all_if(&writes).await.unwrap();
        }
        let per = t0.elapsed().as_secs_f64() * 1000.0 / rounds as f64;
        println!("batch of {size:>4}: {per:.2} ms per batch, {:.0} writes/s", size as f64 * 1000.0 / per);
    }
}
