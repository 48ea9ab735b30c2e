//! The hub's standard probes: the gRPC health service follows readiness
//! (`/readyz`) through a NATS outage and back, and gRPC reflection answers
//! both the v1 and the v1alpha protocol, listing exactly the hub's services.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use futures::stream::once;
use mpp_test_support::wait::wait_until;
use mpp_tests::{HubProcess, NatsServer};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// How long the hub may take to become ready, or to notice NATS is gone.
const PROBE_DEADLINE: Duration = Duration::from_secs(60);

/// The services whose gRPC health status follows readiness ("" is the server).
const SERVICES: [&str; 3] = ["", "mpp.v1.CasesService", "mpp.v1.AuditService"];

async fn statuses(health: &mut HealthClient<Channel>) -> Result<Vec<ServingStatus>> {
    let mut out = Vec::new();
    for service in SERVICES {
        let answer = health
            .check(HealthCheckRequest { service: service.to_owned() })
            .await
            .with_context(|| format!("gRPC health check of {service:?}"))?
            .into_inner();
        out.push(ServingStatus::try_from(answer.status).context("unknown serving status")?);
    }
    Ok(out)
}

/// Waits until `/readyz` answers `http` and every service's gRPC health
/// says `grpc`.
async fn wait_probes(
    hub: &HubProcess,
    health: &HealthClient<Channel>,
    http: u16,
    grpc: ServingStatus,
    what: &str,
) -> Result<()> {
    wait_until(&format!("{what}: /readyz {http} and gRPC health {grpc:?}"), PROBE_DEADLINE, || {
        let mut health = health.clone();
        async move {
            let ready = hub.get("/readyz").await.ok().map(|r| r.status);
            let grpc_now = statuses(&mut health).await.ok();
            let done = ready == Some(http) && grpc_now.as_ref().is_some_and(|s| s.iter().all(|s| *s == grpc));
            Ok((done, (ready, grpc_now)))
        }
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_follows_readiness_through_a_nats_outage() -> Result<()> {
    let mut nats = NatsServer::start().await?;
    let mut hub = HubProcess::spawn(&nats.url())?;
    hub.wait_ready(PROBE_DEADLINE).await?;
    let channel =
        Channel::from_shared(hub.grpc_endpoint())?.connect().await.context("connecting to the hub")?;
    let health = HealthClient::new(channel);

    wait_probes(&hub, &health, 200, ServingStatus::Serving, "ready hub").await?;
    nats.stop().await?;
    wait_probes(&hub, &health, 503, ServingStatus::NotServing, "NATS stopped").await?;
    nats.restart().await?;
    wait_probes(&hub, &health, 200, ServingStatus::Serving, "NATS back").await?;
    Ok(())
}

/// The services gRPC reflection `$version` (`v1` or `v1alpha`) lists on
/// `$channel` (the two versions' types differ, their calls do not).
macro_rules! list_services {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::$version::ServerReflectionRequest;
        let version = stringify!($version);
        let mut client = ServerReflectionClient::new($channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = client
            .server_reflection_info(once(async { request }))
            .await
            .with_context(|| format!("reflection {version}"))?
            .into_inner();
        let answer = answers.message().await?.with_context(|| format!("reflection {version}: no answer"))?;
        match answer.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
            }
            other => anyhow::bail!("reflection {version} answered {other:?}"),
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_reflection_answers_v1_and_v1alpha() -> Result<()> {
    let nats = NatsServer::start().await?;
    let mut hub = HubProcess::spawn(&nats.url())?;
    hub.wait_ready(PROBE_DEADLINE).await?;
    let channel =
        Channel::from_shared(hub.grpc_endpoint())?.connect().await.context("connecting to the hub")?;

    let v1 = list_services!(v1, channel.clone());
    let v1alpha = list_services!(v1alpha, channel);
    let hub_services = [
        "mpp.v1.CasesService",
        "mpp.v1.AuditService",
        "mpp.v1.VerdictService",
        "mpp.v1.CaseEventService",
        "grpc.health.v1.Health",
    ];
    for (names, reflection) in
        [(&v1, "grpc.reflection.v1.ServerReflection"), (&v1alpha, "grpc.reflection.v1alpha.ServerReflection")]
    {
        let mut want: Vec<&str> = hub_services.into_iter().chain([reflection]).collect();
        let mut got: Vec<&str> = names.iter().map(String::as_str).collect();
        want.sort_unstable();
        got.sort_unstable();
        // Exactly the hub's services: not the agencies' ones that share the
        // descriptor set but are served elsewhere.
        ensure!(got == want, "reflection lists {got:?}, the hub serves {want:?}");
    }
    Ok(())
}
