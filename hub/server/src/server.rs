//! `mpp-hub serve`: wires the store, the writer thread, ingest, and the gRPC
//! and HTTP servers, and shuts them down in order.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mpp_core::calendar::CalendarSet;
use mpp_proto::v1::cases_service_server::CasesServiceServer;
use mpp_store::SledStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::ServeArgs;
use crate::grpc::Cases;
use crate::health::{Health, NotReady};
use crate::http::{router, AppState};
use crate::ingest::{self, IngestConfig, Writer};
use crate::ledger::Ledger;
use crate::lookup::{load_calendars, system_clock, Lookups};

/// Concurrent gRPC requests per connection.
pub const GRPC_CONCURRENT_REQUESTS_PER_CONNECTION_MAX: usize = 256;

/// How long shutdown waits for in-flight requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the hub until `shutdown` completes.
pub async fn serve(args: ServeArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let store = SledStore::open(&args.data_dir)
        .with_context(|| format!("opening the store in {}", args.data_dir.display()))?;
    let ledger = Ledger::open(store.clone()).context("reading the ledger head")?;
    let head = ledger.head();
    info!(last_seq = head.last_seq, last_stream_seq = head.last_stream_seq, "Store opened");
    let calendars = match &args.calendars_dir {
        Some(dir) => load_calendars(dir)?,
        None => {
            warn!("No --calendars-dir: SLA clocks count only weekends as days off");
            CalendarSet::new()
        }
    };
    let lookups = Lookups::new(store.clone(), Arc::new(calendars), system_clock());
    let health = Arc::new(Health::new(head));
    let writer = Arc::new(Writer::spawn(ledger).context("starting the ledger writer")?);

    let (stop_tx, stop_rx) = watch::channel(false);

    let grpc_listener = TcpListener::bind(args.grpc_addr)
        .await
        .with_context(|| format!("binding gRPC on {}", args.grpc_addr))?;
    let http_listener = TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding HTTP on {}", args.http_addr))?;
    info!(grpc = %grpc_listener.local_addr()?, http = %http_listener.local_addr()?, "Listening");

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<CasesServiceServer<Cases>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mpp_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building gRPC reflection")?;
    let grpc = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(GRPC_CONCURRENT_REQUESTS_PER_CONNECTION_MAX)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(CasesServiceServer::new(Cases::new(lookups.clone())))
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(grpc_listener), {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        });
    let http = axum::serve(http_listener, router(AppState { lookups, health: health.clone() }))
        .with_graceful_shutdown({
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        });
    let grpc_task = tokio::spawn(grpc);
    let http_task = tokio::spawn(async move { http.await });
    let ingest_task = tokio::spawn(ingest::run(
        IngestConfig {
            nats_url: args.nats_url.clone(),
            consumer_name: args.consumer_name.clone(),
            batch_max: args.batch_max as usize,
        },
        writer.clone(),
        health.clone(),
        head,
        stop_rx.clone(),
    ));

    shutdown.await;
    info!("Shutting down");
    health.set_not_ready(NotReady::Stopping);
    let _ = stop_tx.send(true);
    match tokio::time::timeout(SHUTDOWN_GRACE, ingest_task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => error!(error = %e, "Ingest had halted"),
        Ok(Err(e)) => error!(error = %e, "Ingest task failed"),
        Err(_) => error!("Ingest did not stop in time"),
    }
    for (name, task) in [("gRPC", grpc_task.map_err_to_string()), ("HTTP", http_task.map_err_to_string())] {
        match tokio::time::timeout(SHUTDOWN_GRACE, task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => error!(server = name, error = %e, "Server failed"),
            Err(_) => error!(server = name, "Server did not stop in time"),
        }
    }
    // The writer finishes the batch it holds (if any); its flush made it durable.
    if let Ok(writer) = Arc::try_unwrap(writer) {
        writer.join();
    }
    info!("Stopped");
    Ok(())
}

trait JoinToString {
    fn map_err_to_string(self) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
}

impl<E: std::fmt::Display + Send + 'static> JoinToString for tokio::task::JoinHandle<Result<(), E>> {
    fn map_err_to_string(self) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>> {
        Box::pin(async move {
            match self.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}
