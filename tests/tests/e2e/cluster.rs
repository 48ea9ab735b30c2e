//! A 3-node NATS JetStream cluster on loopback, locked down as operators
//! deploy it: each node's config is written by
//! `deploy/nats/cluster/gen-cluster.sh` from the template
//! `deploy/nats/cluster/node.conf.template` (one NKey user per participant
//! and hub replica, TLS on the client port, mutually verified TLS on the
//! routes), into a temporary directory with the keys and certificates it
//! makes. The stream `MPP_EVENTS` runs at replicas 3, created by the
//! bootstrap user [`SETUP_USER`]; the harness's checks read the stream as
//! [`READER_USER`]; every client of the harness logs in with
//! its own NKey and checks the nodes' certificates against the CA
//! ([`NatsCluster::hub_options`], [`NatsCluster::agency_options`],
//! [`NatsCluster::connect_as`]).
//!
//! Each node is a [`NatsServer`] of the harness (its own free ports, its own
//! store in a temporary directory, `kill -9` and restart on the same ports).
//! The nodes start together: JetStream in a cluster answers only once a
//! meta leader is elected, which needs two nodes up.

use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use mpp_tests::natsgen::{run_generator, Logins};
use mpp_tests::ports::free_port;
use mpp_tests::services::{AgencyOptions, HubOptions};
use mpp_tests::{wait_for, NatsServer, STREAM_NAME};

/// The generator of the nodes' configs, keys and certificates.
const GENERATOR: &str = "deploy/nats/cluster/gen-cluster.sh";

/// The bootstrap user of the template: creates the stream and reads its
/// info, nothing else.
pub(crate) const SETUP_USER: &str = "stream-setup";

/// The user the harness's checks read the stream as (stream info and
/// messages by sequence): the hub user, which may read them, as the hub
/// does. No user of the template may read events but the hub replicas.
pub(crate) const READER_USER: &str = "hub";

/// Nodes in the cluster (the stream's replica count too).
pub(crate) const NODES: usize = 3;

/// How long the cluster may take to elect a stream leader and answer
/// stream info, after a start or after a node was killed.
pub(crate) const LEADER_DEADLINE: Duration = Duration::from_secs(60);

/// How long a restarted node may take to hold the stream again (its replica
/// current with the leader).
pub(crate) const REPLICA_CURRENT_DEADLINE: Duration = Duration::from_secs(120);

/// Times the harness starts a fresh cluster (new ports, new stores) when
/// one does not come up: on two loaded cores the meta-leader election has
/// once taken longer than the harness's 20 s start deadline.
pub(crate) const START_ATTEMPTS: u32 = 2;

/// Runs the generator for one node into `gen` (which keeps the keys and
/// the CA it made for the first node) and returns the node's config.
pub(crate) fn render_node_config(
    gen: &std::path::Path,
    server_name: &str,
    client_port: u16,
    cluster_port: u16,
    cluster_ports: &[u16],
    store_dir: &std::path::Path,
) -> Result<String> {
    let routes =
        cluster_ports.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let args = [
        ("--node", server_name.to_owned()),
        ("--host", "127.0.0.1".to_owned()),
        ("--client-port", client_port.to_string()),
        ("--cluster-port", cluster_port.to_string()),
        ("--routes", routes),
        ("--store-dir", store_dir.display().to_string()),
    ];
    let args: Vec<String> = args.into_iter().flat_map(|(flag, value)| [flag.to_owned(), value]).collect();
    run_generator(GENERATOR, gen, &args)?;
    let conf = gen.join(format!("{server_name}.conf"));
    std::fs::read_to_string(&conf).with_context(|| format!("reading {}", conf.display()))
}

/// A 3-node cluster; every node is killed when the cluster is dropped.
#[derive(Debug)]
pub(crate) struct NatsCluster {
    nodes: Vec<NatsServer>,
    /// Each node's `server_name`, read back from its config file.
    names: Vec<String>,
    /// The users' NKey seeds and the CA (in `_gen`).
    logins: Logins,
    /// Each node's route (cluster) port.
    route_ports: Vec<u16>,
    /// The generator's output directory: the nodes read their certificates
    /// from it at every (re)start, so it lives as long as the nodes.
    _gen: tempfile::TempDir,
}

/// The stream's cluster placement as the current leader reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    /// Index (into the cluster's nodes) of the stream leader.
    pub(crate) leader: usize,
    /// Indexes of the replicas the leader reports current.
    pub(crate) current: Vec<usize>,
}

impl NatsCluster {
    /// Starts three nodes together and creates `MPP_EVENTS` at replicas 3
    /// with the hub's stream settings.
    pub(crate) async fn start() -> Result<Self> {
        let mut attempt = 1;
        loop {
            match Self::start_once().await {
                Ok(cluster) => return Ok(cluster),
                Err(e) if attempt < START_ATTEMPTS => {
                    println!("[cluster] start attempt {attempt} failed, starting afresh: {e:#}");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn start_once() -> Result<Self> {
        let gen = mpp_tests::temp_dir("mpp-nats-cluster-")?;
        let logins = Logins::new(gen.path());
        // The harness probes each node as the setup user: its key first
        // (the generator keeps it, and makes every other one).
        let setup = logins.write_nkey(SETUP_USER)?;
        let cluster_ports = (0..NODES).map(|_| free_port()).collect::<Result<Vec<u16>>>()?;
        let starts = cluster_ports.iter().map(|&cluster_port| {
            let ports = cluster_ports.clone();
            let dir = gen.path().to_owned();
            NatsServer::start_with_config(
                move |slots| {
                    render_node_config(
                        &dir,
                        &slots.server_name,
                        slots.port,
                        cluster_port,
                        &ports,
                        &slots.store_dir,
                    )
                },
                Some(setup.clone()),
            )
        });
        let nodes =
            futures::future::try_join_all(starts).await.context("starting the 3-node NATS cluster")?;
        let names = nodes.iter().map(|n| server_name_of(n.config_path())).collect::<Result<Vec<_>>>()?;
        let cluster = Self { nodes, names, logins, route_ports: cluster_ports, _gen: gen };
        let js = async_nats::jetstream::new(cluster.connect_as(SETUP_USER).await?);
        let config = async_nats::jetstream::stream::Config {
            num_replicas: NODES,
            ..mpp_edge::stream::stream_config()
        };
        wait_for("the cluster to create MPP_EVENTS at replicas 3", LEADER_DEADLINE, || {
            let (js, config) = (js.clone(), config.clone());
            async move {
                let mut s = js.get_or_create_stream(config).await.map_err(|e| anyhow!("{e}"))?;
                let info = s.info().await.map_err(|e| anyhow!("{e}"))?;
                ensure!(
                    info.config.num_replicas == NODES,
                    "stream has {} replicas",
                    info.config.num_replicas
                );
                Ok(Some(()))
            }
        })
        .await?;
        cluster.wait_placement(|_| true).await?;
        println!("[cluster] 3 NATS nodes on {} with {STREAM_NAME} at R{NODES}", cluster.urls());
        Ok(cluster)
    }

    /// Comma-separated client URLs of every node (what agency services and
    /// hubs get as `--nats-url`; they connect to whichever node answers and
    /// fail over to the others).
    pub(crate) fn urls(&self) -> String {
        self.nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }

    /// A JetStream context on a connection to any running node, as
    /// [`READER_USER`] (stream info and messages).
    pub(crate) async fn jetstream(&self) -> Result<async_nats::jetstream::Context> {
        Ok(async_nats::jetstream::new(self.connect_as(READER_USER).await?))
    }

    /// A connection to any running node as `user` (a user of the template),
    /// over TLS checked against the cluster's CA.
    pub(crate) async fn connect_as(&self, user: &str) -> Result<async_nats::Client> {
        let urls: Vec<String> = self.nodes.iter().map(NatsServer::url).collect();
        self.logins
            .user(user)?
            .options()
            .connection_timeout(Duration::from_secs(5))
            .connect(urls.iter().map(String::as_str).collect::<Vec<_>>())
            .await
            .with_context(|| format!("cannot connect to the NATS cluster as {user}"))
    }

    /// A hub replica's options: it logs in as `user` (`hub`, `hub-2`: the
    /// template's hub users) and reads through `consumer` (the template
    /// lets user `hub` use `mpp-hub`, the hub's default, and `hub-2`
    /// `mpp-hub-2`).
    pub(crate) fn hub_options(&self, user: &str, consumer: Option<&str>) -> HubOptions {
        self.logins.hub_options(user, consumer)
    }

    /// An agency service's options: it logs in as `user` (its agency id in
    /// the template), over TLS, for region `region`.
    pub(crate) fn agency_options(&self, user: &str, region: &str) -> AgencyOptions {
        self.logins.agency_options(user, region, true)
    }

    /// The stream's leader and current replicas, from stream info.
    pub(crate) async fn placement(&self, js: &async_nats::jetstream::Context) -> Result<Placement> {
        let mut stream = js.get_stream(STREAM_NAME).await.map_err(|e| anyhow!("get stream: {e}"))?;
        let info = stream.info().await.map_err(|e| anyhow!("stream info: {e}"))?;
        let cluster = info.cluster.as_ref().ok_or_else(|| anyhow!("stream info has no cluster section"))?;
        let name = cluster.leader.clone().ok_or_else(|| anyhow!("the stream has no leader"))?;
        let leader = self.index_of(&name)?;
        let mut current = vec![leader];
        for r in &cluster.replicas {
            if r.current && !r.offline {
                current.push(self.index_of(&r.name)?);
            }
        }
        current.sort_unstable();
        Ok(Placement { leader, current })
    }

    /// Waits until the stream has a leader on a running node and `accept`
    /// says yes to the placement.
    pub(crate) async fn wait_placement(&self, accept: impl Fn(&Placement) -> bool) -> Result<Placement> {
        let js = self.jetstream().await?;
        wait_for("the stream's leader and replicas", LEADER_DEADLINE.max(REPLICA_CURRENT_DEADLINE), || {
            let (js, accept) = (js.clone(), &accept);
            async move {
                let p = self.placement(&js).await?;
                if accept(&p) {
                    Ok(Some(p))
                } else {
                    bail!("placement {p:?}")
                }
            }
        })
        .await
    }

    /// `kill -9` of node `i`.
    pub(crate) fn kill9(&mut self, i: usize) -> Result<()> {
        self.nodes[i].kill9()
    }

    /// Starts node `i` again (same ports, same store) and waits until every
    /// node's replica is current.
    pub(crate) async fn restart(&mut self, i: usize) -> Result<Placement> {
        self.nodes[i].restart().await?;
        self.wait_placement(|p| p.current.len() == NODES).await
    }

    /// Each node's route port (where another node would join).
    pub(crate) fn route_ports(&self) -> &[u16] {
        &self.route_ports
    }

    /// How many times each node's log says a route's TLS handshake failed.
    pub(crate) fn route_handshake_failures(&self) -> Result<Vec<usize>> {
        self.nodes.iter().map(|n| count_in_log(n, ROUTE_REFUSED)).collect()
    }

    fn index_of(&self, server_name: &str) -> Result<usize> {
        self.names
            .iter()
            .position(|n| n == server_name)
            .ok_or_else(|| anyhow!("{server_name:?} is not a node of this cluster"))
    }
}

/// What a node logs when a route's TLS handshake fails (nats-server's
/// "TLS route handshake error").
pub(crate) const ROUTE_REFUSED: &str = "TLS route handshake error";

/// Lines of `node`'s whole log holding `needle`.
fn count_in_log(node: &NatsServer, needle: &str) -> Result<usize> {
    let path = node.dir().join("nats-server.log");
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(String::from_utf8_lossy(&text).lines().filter(|l| l.contains(needle)).count())
}

/// The `server_name` a config file sets.
fn server_name_of(config: &std::path::Path) -> Result<String> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("cannot read {}", config.display()))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("server_name:"))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .ok_or_else(|| anyhow!("{} sets no server_name", config.display()))
}

/// The cluster harness's own guarantee: the nodes refuse an anonymous
/// client; the stream survives a `kill -9` of
/// its leader (another node takes over and holds every acknowledged
/// message), and the restarted node catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_keeps_acknowledged_messages_when_the_stream_leader_is_killed() -> Result<()> {
    let mut cluster = NatsCluster::start().await?;
    // The nodes run the locked-down template: no anonymous login.
    let anonymous = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(cluster.urls().split(',').collect::<Vec<_>>())
        .await;
    ensure!(anonymous.is_err(), "an anonymous client logged in to the cluster");
    // Dukcapil publishes, as its own user.
    let js = async_nats::jetstream::new(cluster.connect_as("dukcapil").await?);
    let f = mpp_tests::envelope::EventFactory::new("dukcapil", "kk", "1771");
    for v in 1..=20 {
        mpp_tests::envelope::publish_envelope(&js, &f.standard(v)).await?;
    }
    let before = cluster.wait_placement(|p| p.current.len() == NODES).await?;
    cluster.kill9(before.leader)?;
    let after = cluster.wait_placement(|p| p.leader != before.leader).await?;
    let js = cluster.jetstream().await?;
    let last = mpp_tests::envelope::stream_last_seq(&js).await?;
    ensure!(last == 20, "the new leader holds {last} messages, 20 were acknowledged");
    let restarted = cluster.restart(before.leader).await?;
    println!("leader {} killed; new leader {}; after restart {restarted:?}", before.leader, after.leader);
    Ok(())
}

/// An intruder node cannot join the locked cluster: one that routes without
/// TLS and one with TLS under a CA of its own (as a stolen config without
/// the cluster's keys would) are each refused at the TLS handshake by every
/// node, and the stream's peers stay the cluster's three, all current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intruder_node_cannot_join_the_cluster() -> Result<()> {
    let cluster = NatsCluster::start().await?;
    let routes = cluster
        .route_ports()
        .iter()
        .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let plain = {
        let routes = routes.clone();
        move |slots: &mpp_tests::nats::ConfigSlots| -> Result<String> {
            Ok(format!(
                "server_name: \"{}\"\nlisten: \"127.0.0.1:{}\"\ncluster {{\n  name: \"mpp-nats\"\n  listen: \"127.0.0.1:{}\"\n  routes: [{routes}]\n}}\n",
                slots.server_name,
                slots.port,
                free_port()?,
            ))
        }
    };
    let foreign_ca = mpp_tests::temp_dir("mpp-nats-intruder-")?;
    let foreign = {
        let (dir, ports) = (foreign_ca.path().to_owned(), cluster.route_ports().to_vec());
        move |slots: &mpp_tests::nats::ConfigSlots| -> Result<String> {
            // The deployment's own generator, run afresh: a valid node config
            // with certificates of a CA the cluster does not trust.
            render_node_config(&dir, &slots.server_name, slots.port, free_port()?, &ports, &slots.store_dir)
        }
    };
    let intruder = NatsServer::start_without_jetstream(plain).await?;
    expect_refused(&cluster, "without TLS", intruder, false).await?;
    let intruder = NatsServer::start_without_jetstream(foreign).await?;
    // It distrusts the cluster's certificates as the cluster distrusts its.
    expect_refused(&cluster, "with a CA of its own", intruder, true).await?;
    Ok(())
}

/// Waits until every node of `cluster` logged a refused route handshake
/// more than before `intruder` started (and, with `intruder_refuses`, the
/// intruder too), checks the stream's peers are still the cluster's, all
/// current, and stops the intruder.
async fn expect_refused(
    cluster: &NatsCluster,
    what: &str,
    mut intruder: NatsServer,
    intruder_refuses: bool,
) -> Result<()> {
    let before = cluster.route_handshake_failures()?;
    let refused = wait_for(&format!("every node to refuse the intruder {what}"), LEADER_DEADLINE, || {
        let before = before.clone();
        let intruder = &intruder;
        async move {
            let now = cluster.route_handshake_failures()?;
            let own = if intruder_refuses { count_in_log(intruder, ROUTE_REFUSED)? } else { 1 };
            Ok((own > 0 && now.iter().zip(&before).all(|(n, b)| n > b)).then_some(now))
        }
    })
    .await
    .with_context(|| format!("intruder's log: {}", intruder.log_tail()))?;
    // The stream's peers are still the cluster's nodes (an unknown server
    // name fails `placement`), all current.
    let placement = cluster.wait_placement(|p| p.current.len() == NODES).await?;
    println!("intruder {what}: refused ({refused:?} handshake errors per node), placement {placement:?}");
    intruder.stop().await
}
