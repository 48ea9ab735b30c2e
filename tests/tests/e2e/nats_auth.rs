//! NATS authorization: on a server run with the config deploy/nats/gen-secure.sh
//! writes from deploy/nats/secure.conf (one NKey user per participant and
//! per hub replica, seeds in files, TLS), an agency publishes its own
//! events, which reach the hub, and NATS refuses a publish on another
//! agency's subject, a subscription to the events and any JetStream API
//! call; a client without a listed key cannot log in. On a misconfigured (open) server the same foreign
//! publish gets through NATS, and the hub records it as rejected with
//! AGENCY_SUBJECT_MISMATCH (bad_input covers every other bad message).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use async_nats::jetstream::message::PublishMessage;
use mpp_core::{ReasonCode, Verdict};
use mpp_proto::agency::dukcapil::v1 as dk;
use mpp_tests::dukcapil::client;
use mpp_tests::envelope::{
    body, encode, event_id, publish, stream_last_seq, tracking_number, EventFactory, StreamIds,
};
use mpp_tests::nats::{ConfigSlots, NatsUser};
use mpp_tests::natsgen::{run_generator, Logins};
use mpp_tests::services::{nats_and_hub, AgencyOptions, FrontOfficeLink, HubOptions};
use mpp_tests::store::audit_stopped_hub;
use mpp_tests::{AgencyProcess, HubProcess, NatsServer, READY_DEADLINE};
use tokio::sync::mpsc;

const REGION: &str = "1771";
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(60);
/// How long a refused request waits for an answer that never comes.
const REFUSED_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the server's permission error may take to arrive.
const SERVER_ERROR_DEADLINE: Duration = Duration::from_secs(10);
/// Another agency's subject, which the Dukcapil user must not publish on.
const FOREIGN_SUBJECT: &str = "mpp.events.pln.pasang-baru";

/// Runs deploy/nats/gen-secure.sh into `out` for the harness's slots and
/// returns the config it wrote.
fn generate(out: &Path, slots: &ConfigSlots) -> Result<String> {
    let args = [
        "--listen".to_owned(),
        format!("127.0.0.1:{}", slots.port),
        "--http".to_owned(),
        format!("127.0.0.1:{}", slots.http_port),
        "--store-dir".to_owned(),
        slots.store_dir.display().to_string(),
        "--server-name".to_owned(),
        slots.server_name.clone(),
    ];
    run_generator("deploy/nats/gen-secure.sh", out, &args)?;
    let conf = out.join("nats.conf");
    let text = std::fs::read_to_string(&conf).with_context(|| format!("reading {}", conf.display()))?;
    let code: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
    ensure!(!code.iter().any(|l| l.contains("@NKEY_")), "unfilled NKey fields in {}", conf.display());
    ensure!(!code.iter().any(|l| l.contains("password")), "a password in {}", conf.display());
    Ok(text)
}

/// The CA of the throw-away certificate gen-secure.sh made.
fn tls_ca(gen: &Path) -> PathBuf {
    Logins::new(gen).tls_ca()
}

/// The seed file gen-secure.sh keeps for `user`.
fn seed_file(gen: &Path, user: &str) -> PathBuf {
    Logins::new(gen).seed_file(user)
}

/// `user` logging in with the NKey seed gen-secure.sh made for it, over TLS.
fn nkey_user(gen: &Path, user: &str) -> Result<NatsUser> {
    Logins::new(gen).user(user)
}

#[cfg(unix)]
fn mode(path: &Path) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path).with_context(|| format!("stat {}", path.display()))?.permissions().mode()
        & 0o777)
}

/// Waits for the server error naming `what` among the connection's events.
async fn server_error(events: &mut mpsc::UnboundedReceiver<String>, what: &str) -> Result<String> {
    let deadline = tokio::time::Instant::now() + SERVER_ERROR_DEADLINE;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) if e.contains(what) => return Ok(e),
            Ok(Some(e)) => seen.push(e),
            Ok(None) => bail!("the connection's events ended; seen: {seen:?}"),
            Err(_) => {
                bail!("no server error containing {what:?} within {SERVER_ERROR_DEADLINE:?}; seen: {seen:?}")
            }
        }
    }
}

/// A connection as `user` whose events (the server's errors among them)
/// arrive on the returned receiver.
async fn connect_watching(
    user: &NatsUser,
    url: &str,
) -> Result<(async_nats::Client, mpsc::UnboundedReceiver<String>)> {
    let (events_tx, events) = mpsc::unbounded_channel();
    let client = user
        .options()
        .connection_timeout(REFUSED_TIMEOUT)
        .event_callback(move |event| {
            let tx = events_tx.clone();
            async move {
                let _ = tx.send(event.to_string());
            }
        })
        .connect(url)
        .await
        .with_context(|| format!("connecting as the {} user", user.user))?;
    Ok((client, events))
}

/// Generates the secure config into a fresh directory with the hub's NKey
/// made first (the generator keeps it), so that the harness can log in as
/// the hub, and starts a server on it: the directory and the server.
async fn start_secure() -> Result<(tempfile::TempDir, NatsServer, NatsUser)> {
    let gen = mpp_tests::temp_dir("mpp-nats-secure-")?;
    std::fs::create_dir_all(gen.path().join("creds"))?;
    let hub_user = Logins::new(gen.path()).write_nkey("hub")?;
    let nats =
        NatsServer::start_with_config(|slots| generate(gen.path(), slots), Some(hub_user.clone())).await?;
    Ok((gen, nats, hub_user))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_agency_publishes_only_its_own_subjects() -> Result<()> {
    let (gen, nats, hub) = start_secure().await?;
    #[cfg(unix)]
    for file in [gen.path().join("nats.conf"), seed_file(gen.path(), "dukcapil")] {
        ensure!(mode(&file)? == 0o600, "{} has mode {:o}, not 0600", file.display(), mode(&file)?);
    }
    let dukcapil = nkey_user(gen.path(), "dukcapil")?;
    let hub_seed = nkey_user(gen.path(), "hub")?.nkey_seed;
    ensure!(hub.nkey_seed == hub_seed, "the generator replaced the hub's NKey");
    // The config holds the public keys only, never a seed.
    let conf = std::fs::read_to_string(gen.path().join("nats.conf"))?;
    ensure!(!conf.contains(&dukcapil.nkey_seed) && !conf.contains(&hub_seed), "a seed in nats.conf");

    // A client without a key cannot log in.
    let anonymous =
        async_nats::ConnectOptions::new().connection_timeout(REFUSED_TIMEOUT).connect(nats.url()).await;
    ensure!(anonymous.is_err(), "an anonymous client logged in to the secure server");
    // Nor with a key the config does not list, whatever user it says it is.
    let stranger =
        NatsUser { user: "pln".to_owned(), nkey_seed: mpp_edge::nats::generate_nkey().0, ..dukcapil.clone() };
    ensure!(
        stranger.options().connection_timeout(REFUSED_TIMEOUT).connect(nats.url()).await.is_err(),
        "logged in with an unlisted NKey"
    );

    // The hub as its user; it creates the stream. Dukcapil as its user,
    // which may not create the stream.
    let mut hub = HubProcess::spawn_with(
        &nats.url(),
        HubOptions {
            nats_login: Some(("hub".to_owned(), seed_file(gen.path(), "hub"))),
            nats_tls_ca_file: Some(tls_ca(gen.path())),
            ..HubOptions::default()
        },
    )?;
    hub.wait_ready(READY_DEADLINE).await?;
    let options = dukcapil_login(gen.path(), true);
    let mut agency = AgencyProcess::spawn("mpp-dukcapil", &nats.url(), options)?;
    agency.wait_listening(READY_DEADLINE).await?;
    ensure!(!agency.log_tail().contains(&dukcapil.nkey_seed[2..]), "mpp-dukcapil logged its NKey seed");

    // (1) A normal Dukcapil call reaches the hub.
    let mut c = client(&agency)?;
    let r = c
        .ajukan_permohonan(mpp_tests::dukcapil::permohonan("", dk::Layanan::Kk))
        .await
        .context("AjukanPermohonan")?
        .into_inner();
    let (tn, pin) = (r.nomor_berkas.clone(), r.pin.clone());
    // A lookup before the case exists counts as a wrong PIN: wait for the
    // events in the stream and the hub to ingest them first.
    let js = nats.jetstream().await?;
    let last = wait_answered(&js, &r.event_ids, &agency).await?;
    hub.wait_caught_up(last, CATCH_UP_DEADLINE).await?;
    let (status, lookup) = hub.case_json(&tn, &pin).await?;
    ensure!(status == 200, "case {tn} not visible at the hub: {status} {lookup}");
    ensure!(
        lookup.pointer("/applications/0/state").and_then(|s| s.as_str()) == Some("submitted"),
        "{lookup}"
    );
    let before = stream_last_seq(&js).await?;
    hub.wait_caught_up(before, CATCH_UP_DEADLINE).await?;

    // (2) A raw publish as the Dukcapil user on PLN's subject is refused by NATS.
    let (raw, mut events) = connect_watching(&dukcapil, &nats.url()).await?;
    let raw_js = async_nats::jetstream::ContextBuilder::new().timeout(REFUSED_TIMEOUT).build(raw.clone());
    let foreign = EventFactory::new("dukcapil", "kk", REGION).app_event(
        &tn,
        &r.nomor_permohonan,
        body::review_started(),
    );
    let ack = raw_js
        .send_publish(
            FOREIGN_SUBJECT,
            PublishMessage::build().payload(encode(&foreign)).message_id(event_id()),
        )
        .await
        .context("sending the foreign publish")?
        .await;
    ensure!(ack.is_err(), "NATS acknowledged a publish on {FOREIGN_SUBJECT} by the dukcapil user: {ack:?}");
    let refused =
        server_error(&mut events, &format!("Permissions Violation for Publish to \"{FOREIGN_SUBJECT}\""))
            .await?;
    println!("foreign publish refused: {refused}; PubAck: {:?}", ack.err());
    // Its own subject still works, and lands right after the last message:
    // the refused one was never stored (a client's messages keep their order).
    let own = raw_js
        .send_publish(
            "mpp.events.dukcapil.kk",
            PublishMessage::build().payload(encode(&foreign)).message_id(event_id()),
        )
        .await
        .context("publishing on the own subject")?
        .await
        .context("PubAck on the own subject")?;
    ensure!(own.sequence == before + 1, "own publish stored at {}, expected {}", own.sequence, before + 1);
    // It cannot read events or the stream either.
    let _sub = raw.subscribe("mpp.events.>").await.context("sending the subscription")?;
    server_error(&mut events, "Permissions Violation for Subscription to \"mpp.events.>\"").await?;
    let info = raw_js.get_stream(mpp_tests::STREAM_NAME).await;
    ensure!(info.is_err(), "the dukcapil user read the stream's info");
    server_error(&mut events, "Permissions Violation for Publish to \"$JS.API.STREAM.INFO.MPP_EVENTS\"")
        .await?;

    let last = stream_last_seq(&js).await?;
    ensure!(last == before + 1, "the stream grew from {before} to {last}; expected one message");
    hub.wait_caught_up(last, CATCH_UP_DEADLINE).await?;
    agency.terminate().await?;
    hub.terminate().await?;
    let audit = audit_stopped_hub(hub.data_dir())?;
    ensure!(
        audit.entries.iter().all(|e| !e.subject.starts_with("mpp.events.pln.")),
        "the hub's log holds an entry on PLN's subjects"
    );
    ensure!(audit.summary.rejected_total() == 0, "rejected entries: {:?}", audit.summary);
    Ok(())
}

/// mpp-dukcapil's options to log in as the user `dukcapil` with the NKey
/// seed in `seed_file`, over TLS verified against `ca` when given; the hub
/// sets up the stream.
fn dukcapil_login(gen: &Path, tls: bool) -> AgencyOptions {
    Logins::new(gen).agency_options("dukcapil", REGION, tls)
}

/// Waits until every event `answered` by `agency` is in the stream; the
/// stream's last sequence.
async fn wait_answered(
    js: &async_nats::jetstream::Context,
    answered: &[String],
    agency: &AgencyProcess,
) -> Result<u64> {
    mpp_tests::wait_for("the answered events in the stream", CATCH_UP_DEADLINE, || async move {
        // A handful of messages: read them all on every probe.
        let mut ids = StreamIds::new();
        let last = ids.read_to_end(js).await?;
        let missing = ids.missing(answered);
        if missing.is_empty() {
            Ok(Some(last))
        } else {
            bail!("missing {missing:?}")
        }
    })
    .await
    .with_context(|| format!("{} log tail:\n{}", agency.name(), agency.log_tail()))
}

/// NKeys: the server's configuration holds only the agency's public key;
/// `mpp-registrar nats-nkey` made the seed (0600), and the agency service
/// logs in with it (`--nats-nkey-file`), signing the server's nonce. Its
/// events reach the hub; as that key, another agency's subject and the
/// operators' redrive subject are refused by NATS; a key the server does
/// not list gets no login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_logs_in_with_its_nkey_and_publishes_only_its_own_subjects() -> Result<()> {
    let dir = mpp_tests::temp_dir("mpp-nats-nkey-")?;
    let seed_file = seed_file(dir.path(), "dukcapil");
    std::fs::create_dir_all(dir.path().join("creds"))?;
    let out = std::process::Command::new(mpp_tests::bins::workspace_bin("mpp-registrar")?)
        .args(["nats-nkey", "--out"])
        .arg(&seed_file)
        .output()
        .context("running mpp-registrar nats-nkey")?;
    ensure!(out.status.success(), "mpp-registrar nats-nkey: {}", String::from_utf8_lossy(&out.stderr));
    let public = String::from_utf8(out.stdout)?.trim().to_owned();
    ensure!(public.starts_with('U') && public.len() == 56, "not an NKey user public key: {public:?}");
    #[cfg(unix)]
    ensure!(mode(&seed_file)? == 0o600, "the seed file has mode {:o}", mode(&seed_file)?);
    let seed = std::fs::read_to_string(&seed_file)?.trim().to_owned();
    let (hub_seed, hub_public) = mpp_edge::nats::generate_nkey();
    let hub_seed_file = dir.path().join("hub.nk");
    std::fs::write(&hub_seed_file, &hub_seed)?;
    let hub_user = NatsUser { user: "hub".to_owned(), nkey_seed: hub_seed, tls_ca_file: None };
    let nats = NatsServer::start_with_config(
        |slots| {
            Ok(format!(
                "server_name: \"{}\"\nlisten: \"127.0.0.1:{}\"\nhttp: \"127.0.0.1:{}\"\n\
                 jetstream {{ store_dir: \"{}\" }}\n\
                 authorization {{ users = [\n\
                   {{ nkey: \"{hub_public}\" }}\n\
                   {{ nkey: \"{public}\", permissions: {{ publish: {{ allow: [\"mpp.events.dukcapil.>\"] }}, \
                      subscribe: {{ allow: [\"_INBOX.dukcapil.>\"] }} }} }}\n\
                 ] }}\n",
                slots.server_name,
                slots.port,
                slots.http_port,
                slots.store_dir.display()
            ))
        },
        Some(hub_user),
    )
    .await?;
    let mut hub = HubProcess::spawn_with(
        &nats.url(),
        HubOptions { nats_login: Some(("hub".to_owned(), hub_seed_file)), ..HubOptions::default() },
    )?;
    hub.wait_ready(READY_DEADLINE).await?;
    // This server has no front office user: Dukcapil files into a case
    // opened elsewhere (the hub, outside the registry, takes it as a shell).
    let options = AgencyOptions { front_office: FrontOfficeLink::None, ..dukcapil_login(dir.path(), false) };
    let mut agency = AgencyProcess::spawn("mpp-dukcapil", &nats.url(), options)?;
    agency.wait_listening(READY_DEADLINE).await?;
    ensure!(!agency.log_tail().contains(&seed[2..]), "mpp-dukcapil logged its NKey seed");
    let case = tracking_number(1771, 42)?;
    let r = client(&agency)?
        .ajukan_permohonan(mpp_tests::dukcapil::permohonan(&case, dk::Layanan::Kk))
        .await
        .context("AjukanPermohonan")?
        .into_inner();
    let js = nats.jetstream().await?;
    let last = wait_answered(&js, &r.event_ids, &agency).await?;
    hub.wait_caught_up(last, CATCH_UP_DEADLINE).await?;

    // The key itself, raw: its own subject only.
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let raw = async_nats::ConnectOptions::with_nkey(seed.clone())
        .custom_inbox_prefix("_INBOX.dukcapil")
        .connection_timeout(REFUSED_TIMEOUT)
        .event_callback(move |event| {
            let tx = events_tx.clone();
            async move {
                let _ = tx.send(event.to_string());
            }
        })
        .connect(nats.url())
        .await
        .context("logging in with the NKey")?;
    let redrive = format!("{}dukcapil.kk", mpp_core::redrive::REDRIVE_SUBJECT_PREFIX);
    for subject in [FOREIGN_SUBJECT, redrive.as_str()] {
        raw.publish(subject.to_owned(), "forged".into()).await?;
        server_error(&mut events, &format!("Permissions Violation for Publish to \"{subject}\"")).await?;
    }
    // A key the server does not list.
    let (stranger, _) = mpp_edge::nats::generate_nkey();
    let refused = async_nats::ConnectOptions::with_nkey(stranger)
        .connection_timeout(REFUSED_TIMEOUT)
        .connect(nats.url())
        .await;
    ensure!(refused.is_err(), "an unlisted NKey logged in");
    ensure!(stream_last_seq(&js).await? == last, "a refused publish reached the stream");
    agency.terminate().await?;
    hub.terminate().await?;
    Ok(())
}

/// With the secure config, NATS itself refuses what no participant may do,
/// each with a "Permissions Violation" and no answer: a publish on another
/// agency's subject; deleting or updating the stream, even by the hub
/// replica that created it; deleting or pulling from another replica's
/// consumer; reading another replica's inbox (its deliveries) or injecting
/// into it. The plain-text port is closed: a client that will not speak TLS
/// gets no login. Each replica still does its own work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secure_config_refuses_foreign_publishes_stream_changes_and_other_replicas() -> Result<()> {
    let (gen, nats, hub) = start_secure().await?;
    let hub2 = nkey_user(gen.path(), "hub-2")?;
    let dukcapil = nkey_user(gen.path(), "dukcapil")?;
    let registrar = nkey_user(gen.path(), "registrar")?;
    // Without the CA the server's certificate is not trusted.
    let untrusted = NatsUser { tls_ca_file: None, ..hub.clone() };
    ensure!(
        untrusted.options().connection_timeout(REFUSED_TIMEOUT).connect(nats.url()).await.is_err(),
        "logged in over TLS without trusting the throw-away CA"
    );

    // Replica "hub" sets up the stream and its consumer, as mpp-hub serve does.
    let (hub_client, mut hub_events) = connect_watching(&hub, &nats.url()).await?;
    let hub_js = async_nats::jetstream::ContextBuilder::new().timeout(REFUSED_TIMEOUT).build(hub_client);
    let stream = hub_js
        .get_or_create_stream(mpp_edge::stream::stream_config())
        .await
        .context("creating the stream")?;
    let consumer_config = |name: &str| async_nats::jetstream::consumer::pull::Config {
        durable_name: Some(name.to_owned()),
        filter_subject: mpp_edge::stream::STREAM_SUBJECT_FILTER.to_owned(),
        ..Default::default()
    };
    stream.create_consumer(consumer_config("mpp-hub")).await.context("creating consumer mpp-hub")?;

    // (1) A foreign publish.
    let (agency, mut agency_events) = connect_watching(&dukcapil, &nats.url()).await?;
    let agency_js = async_nats::jetstream::ContextBuilder::new().timeout(REFUSED_TIMEOUT).build(agency);
    let ack = agency_js.publish(FOREIGN_SUBJECT, "foreign".into()).await?.await;
    ensure!(ack.is_err(), "NATS acknowledged dukcapil's publish on {FOREIGN_SUBJECT}: {ack:?}");
    server_error(&mut agency_events, &format!("Permissions Violation for Publish to \"{FOREIGN_SUBJECT}\""))
        .await?;

    // (2) Deleting or updating the stream, even by the replica that made it.
    let deleted = hub_js.delete_stream(mpp_tests::STREAM_NAME).await;
    ensure!(deleted.is_err(), "the hub user deleted the stream");
    server_error(
        &mut hub_events,
        "Permissions Violation for Publish to \"$JS.API.STREAM.DELETE.MPP_EVENTS\"",
    )
    .await?;
    let mut wider = mpp_edge::stream::stream_config();
    wider.deny_delete = false;
    let updated = hub_js.update_stream(wider).await;
    ensure!(updated.is_err(), "the hub user updated the stream: {updated:?}");
    server_error(
        &mut hub_events,
        "Permissions Violation for Publish to \"$JS.API.STREAM.UPDATE.MPP_EVENTS\"",
    )
    .await?;

    // An agency cannot delete the stream or a replica's consumer either.
    let agency_client = agency_js.client();
    for api in ["$JS.API.STREAM.DELETE.MPP_EVENTS", "$JS.API.CONSUMER.DELETE.MPP_EVENTS.mpp-hub"] {
        agency_client.publish(api, "".into()).await?;
        server_error(&mut agency_events, &format!("Permissions Violation for Publish to \"{api}\"")).await?;
    }

    // (3) Replica "hub-2" deleting replica "hub"'s consumer, or pulling from it.
    let (hub2_client, mut hub2_events) = connect_watching(&hub2, &nats.url()).await?;
    let hub2_js =
        async_nats::jetstream::ContextBuilder::new().timeout(REFUSED_TIMEOUT).build(hub2_client.clone());
    let hub2_stream = hub2_js.get_stream(mpp_tests::STREAM_NAME).await.context("hub-2 reading the stream")?;
    let gone = hub2_stream.delete_consumer("mpp-hub").await;
    ensure!(gone.is_err(), "hub-2 deleted hub's consumer");
    server_error(
        &mut hub2_events,
        "Permissions Violation for Publish to \"$JS.API.CONSUMER.DELETE.MPP_EVENTS.mpp-hub\"",
    )
    .await?;
    hub2_client.publish("$JS.API.CONSUMER.MSG.NEXT.MPP_EVENTS.mpp-hub", "1".into()).await?;
    server_error(
        &mut hub2_events,
        "Permissions Violation for Publish to \"$JS.API.CONSUMER.MSG.NEXT.MPP_EVENTS.mpp-hub\"",
    )
    .await?;

    // (4) Reading replica "hub"'s inbox (where its deliveries arrive), or
    // injecting a message into it, as another replica or an agency.
    let _sub = hub2_client.subscribe("_INBOX.hub.>").await.context("sending the subscription")?;
    server_error(&mut hub2_events, "Permissions Violation for Subscription to \"_INBOX.hub.>\"").await?;
    hub2_client.publish("_INBOX.hub.injected", "forged".into()).await?;
    server_error(&mut hub2_events, "Permissions Violation for Publish to \"_INBOX.hub.injected\"").await?;
    agency_client.publish("_INBOX.hub.injected", "forged".into()).await?;
    server_error(&mut agency_events, "Permissions Violation for Publish to \"_INBOX.hub.injected\"").await?;

    // (5) An operator's redrive: only the hub may publish one, so an
    // agency cannot make its message look like an operator's.
    let redrive = format!("{}dukcapil.kk", mpp_core::redrive::REDRIVE_SUBJECT_PREFIX);
    let ack = agency_js.publish(redrive.clone(), "forged".into()).await?.await;
    ensure!(ack.is_err(), "NATS acknowledged dukcapil's publish on {redrive}: {ack:?}");
    server_error(&mut agency_events, &format!("Permissions Violation for Publish to \"{redrive}\"")).await?;
    hub_js.publish(redrive.clone(), "redrive".into()).await?.await.context("the hub publishing a redrive")?;

    // (6) The registrar: the registry subject only, never an agency's.
    let (registrar_client, mut registrar_events) = connect_watching(&registrar, &nats.url()).await?;
    let registrar_js =
        async_nats::jetstream::ContextBuilder::new().timeout(REFUSED_TIMEOUT).build(registrar_client);
    let ack = registrar_js.publish(FOREIGN_SUBJECT, "forged".into()).await?.await;
    ensure!(ack.is_err(), "NATS acknowledged the registrar's publish on {FOREIGN_SUBJECT}: {ack:?}");
    server_error(
        &mut registrar_events,
        &format!("Permissions Violation for Publish to \"{FOREIGN_SUBJECT}\""),
    )
    .await?;
    registrar_js
        .publish(mpp_core::registry::REGISTRY_SUBJECT, "statement".into())
        .await?
        .await
        .context("the registrar publishing on the registry subject")?;

    // Nothing was changed, and each replica still does its own work.
    let mut stream = hub_js.get_stream(mpp_tests::STREAM_NAME).await.context("the stream is gone")?;
    ensure!(stream.info().await?.config.deny_delete, "the stream's settings changed");
    stream.consumer_info("mpp-hub").await.context("hub's consumer is gone")?;
    hub2_stream
        .create_consumer(consumer_config("mpp-hub-2"))
        .await
        .context("hub-2 creating its own consumer")?;
    hub2_stream.delete_consumer("mpp-hub-2").await.context("hub-2 deleting its own consumer")?;
    Ok(())
}

/// On a misconfigured server (no users: anyone publishes anywhere) the
/// foreign publish gets in, and the hub rejects it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_publish_past_nats_is_rejected_by_the_hub() -> Result<()> {
    let (nats, mut hub) = nats_and_hub(READY_DEADLINE).await?;
    let js = nats.jetstream().await?;
    let tn = mpp_tests::envelope::tracking_number(1771, 424_242)?;
    let foreign = EventFactory::new("dukcapil", "kk", REGION).case_opened(&tn);
    let ack = publish(&js, FOREIGN_SUBJECT, Some(&foreign.event_id), encode(&foreign)).await?;
    hub.wait_caught_up(ack.sequence, CATCH_UP_DEADLINE).await?;
    hub.terminate().await?;
    let audit = audit_stopped_hub(hub.data_dir())?;
    let entry = audit
        .entries
        .iter()
        .find(|e| e.stream_seq == ack.sequence)
        .with_context(|| format!("no log entry for stream seq {}", ack.sequence))?;
    ensure!(
        entry.verdict == Verdict::Rejected && entry.reason == Some(ReasonCode::AgencySubjectMismatch),
        "recorded {:?} {:?} {:?}, expected rejected AGENCY_SUBJECT_MISMATCH",
        entry.verdict,
        entry.reason.map(ReasonCode::as_str),
        entry.detail
    );
    ensure!(entry.subject == FOREIGN_SUBJECT, "recorded on {:?}", entry.subject);
    Ok(())
}
