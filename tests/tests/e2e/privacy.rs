//! Personal data under UU 27/2022, end to end (docs/PRIVACY.md):
//! crypto-shredding with per-citizen data keys.
//!
//! Real processes: a private nats-server, `mpp-hub serve` and the front
//! office (`mpp-frontoffice`), sharing one PIN pepper. A case is opened with
//! a name, phone number and e-mail address; `LihatDataPribadi` returns them;
//! the hub's case view (JSON and gRPC) says `sealed`; neither the raw stream
//! messages, nor the nats-server's store files, nor the hub's sled files, nor
//! the front office's data directory or logs hold any of them in the clear.
//! Then `HapusDataPribadi` destroys the citizen's key: `LihatDataPribadi`
//! answers `PERSONAL_DATA_ERASED`, the hub's view says `erased`, and after the
//! hub stops, `mpp-hub audit verify` passes on its data directory (the log
//! was never rewritten: the ciphertext is still in it, unreadable) and
//! `mpp-hub audit rebuild` finds the projection identical to a rebuild.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use mpp_proto::frontoffice::v1 as fo;
use mpp_proto::v1::cases_service_client::CasesServiceClient;
use mpp_proto::v1::envelope::Body;
use mpp_proto::v1::{Envelope, GetCaseRequest};
use mpp_tests::envelope::stream_last_seq;
use mpp_tests::services::{case_opening, AgencyOptions, HubOptions, TEST_PIN_PEPPER};
use mpp_tests::{bins, wait_for, AgencyProcess, HubProcess, NatsServer, READY_DEADLINE};
use prost::Message as _;
use tonic::Code;

/// Region of the MPP: Kota Bengkulu.
const REGION: &str = "1771";

/// The citizen: a fake NIK (a woman born 5 January 1990), name and contacts.
/// The name and e-mail are unusual enough that no other byte string in any
/// store matches them by chance.
const NIK: &str = "1771014501900007";
const NAMA: &str = "Cut Nyak Zulaikha Marpaung";
const TELEPON: &str = "0812-9753-1864";
const SUREL: &str = "zulaikha.marpaung@contoh.id";

/// Distinctive pieces of the personal data looked for in raw bytes.
const NEEDLES: [&str; 5] = [NAMA, "Zulaikha", "Marpaung", "97531864", SUREL];

const CATCH_UP_DEADLINE: Duration = Duration::from_secs(60);

/// Largest file read when scanning a data directory for clear text, in bytes.
const SCANNED_FILE_BYTES_MAX: u64 = 512 * 1024 * 1024;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir` (recursively) that holds one of [`NEEDLES`], as
/// "path: needle" lines; also the number of files and bytes scanned.
fn clear_text_in(dir: &Path) -> Result<(Vec<String>, usize, u64)> {
    let (mut found, mut files, mut bytes) = (Vec::new(), 0usize, 0u64);
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("read_dir {}", d.display()))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
                continue;
            }
            ensure!(meta.len() <= SCANNED_FILE_BYTES_MAX, "{} is too large to scan", entry.path().display());
            let data = std::fs::read(entry.path())?;
            files += 1;
            bytes += data.len() as u64;
            for n in NEEDLES {
                if contains(&data, n.as_bytes()) {
                    found.push(format!("{}: {n:?}", entry.path().display()));
                }
            }
        }
    }
    Ok((found, files, bytes))
}

/// Runs `mpp-hub audit <args> --data-dir <dir>`: exit code and stdout.
fn audit(args: &[&str], data_dir: &Path) -> Result<(i32, String)> {
    let exe = bins::workspace_bin("mpp-hub")?;
    let out = Command::new(exe)
        .arg("audit")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("MPP_LOG", "warn")
        .output()
        .context("running mpp-hub audit")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    Ok((out.status.code().unwrap_or(-1), format!("{stdout}{stderr}")))
}

/// Waits until the stream holds at least `n` messages, then until the hub
/// has ingested them.
async fn wait_ingested(hub: &mut HubProcess, js: &async_nats::jetstream::Context, n: u64) -> Result<u64> {
    let last = wait_for(&format!("{n} messages in MPP_EVENTS"), CATCH_UP_DEADLINE, || async {
        let last = stream_last_seq(js).await?;
        Ok((last >= n).then_some(last))
    })
    .await?;
    ensure!(last == n, "the stream holds {last} messages, expected {n}");
    hub.wait_caught_up(last, CATCH_UP_DEADLINE).await?;
    Ok(last)
}

/// The hub's view of the case's personal data, over HTTP and gRPC (they
/// must agree).
async fn hub_says(hub: &HubProcess, tn: &str, pin: &str) -> Result<String> {
    let (status, body) = hub.case_json(tn, pin).await?;
    ensure!(status == 200, "GET case answered {status}: {body}");
    let json = body.get("personal_data").and_then(|v| v.as_str()).unwrap_or("<missing>").to_owned();
    let text = body.to_string();
    for n in NEEDLES {
        ensure!(!text.contains(n), "the JSON case view holds {n:?}: {text}");
    }
    let mut cases = CasesServiceClient::connect(hub.grpc_endpoint()).await?;
    let view = cases
        .get_case(GetCaseRequest {
            tracking_number: tn.to_owned(),
            pin: pin.to_owned(),
            ..Default::default()
        })
        .await
        .context("GetCase")?
        .into_inner();
    ensure!(view.personal_data == json, "gRPC says {:?}, JSON says {json:?}", view.personal_data);
    Ok(json)
}

/// The client system the harness's front office authenticates (its tokens
/// file, `mpp_tests::services`).
const FRONT_OFFICE_CLIENT: &str = "e2e-tests";

fn reason(s: &tonic::Status) -> &str {
    s.metadata().get("mpp-reason-code").and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn personal_data_is_sealed_readable_at_the_front_office_and_crypto_shredded_on_erasure() -> Result<()> {
    // Given: NATS, the hub and the front office, one pepper.
    let nats = NatsServer::start().await?;
    let js = nats.jetstream().await?;
    let secrets = mpp_tests::temp_dir("mpp-privacy-secrets-")?;
    let pepper = secrets.path().join("pin-pepper");
    std::fs::write(&pepper, TEST_PIN_PEPPER).context("cannot write the pepper")?;
    let mut hub = HubProcess::spawn_with(
        &nats.url(),
        HubOptions { pin_pepper_file: Some(pepper.clone()), ..HubOptions::default() },
    )?;
    hub.wait_ready(READY_DEADLINE).await?;
    let options = AgencyOptions { pin_pepper_file: Some(pepper), ..AgencyOptions::region(REGION) };
    let mut front = AgencyProcess::spawn_frontoffice(&nats.url(), options)?;
    front.wait_listening(READY_DEADLINE).await?;
    let mut client = front.front_office_client()?;

    // When: a case is opened with the citizen's name and contacts.
    let opened = client
        .buka_berkas(fo::PembukaanBerkas {
            nama: NAMA.to_owned(),
            surel: SUREL.to_owned(),
            ..case_opening(NIK, TELEPON)
        })
        .await
        .context("BukaBerkas")?
        .into_inner();
    let (tn, pin) = (opened.nomor_berkas.clone(), opened.pin.clone());
    let ask = || fo::PermintaanDataPribadi { nomor_berkas: tn.clone(), petugas: "ptg-loket-1".to_owned() };

    // Then: the front office reads them back...
    let data = client.lihat_data_pribadi(ask()).await.context("LihatDataPribadi")?.into_inner();
    ensure!(
        (data.nama.as_str(), data.telepon.as_str(), data.surel.as_str()) == (NAMA, "+6281297531864", SUREL),
        "read back {data:?}"
    );
    // ...the hub has the case_opened, personal_data_sealed and the read's
    // record, and says "sealed"...
    wait_ingested(&mut hub, &js, 3).await?;
    ensure!(hub_says(&hub, &tn, &pin).await? == "sealed", "the hub's view is not sealed");
    // ...and the citizen sees the read in the case's access history, with
    // the authenticated client system (not the request's petugas).
    let (_, body) = hub.case_json(&tn, &pin).await?;
    let reads: Vec<&serde_json::Value> = body["access_events"]
        .as_array()
        .context("access_events")?
        .iter()
        .filter(|e| e["channel"] == "personal_data")
        .collect();
    ensure!(reads.len() == 1, "one read in the access history: {body}");
    ensure!(
        reads[0]["client_id"] == FRONT_OFFICE_CLIENT
            && reads[0]["accessor"] == "officer"
            && reads[0]["agency_id"] == format!("mpp-{REGION}"),
        "the read's access event: {}",
        reads[0]
    );
    let mut cases = CasesServiceClient::connect(hub.grpc_endpoint()).await?;
    let view = cases
        .get_case(GetCaseRequest { tracking_number: tn.clone(), pin: pin.clone(), ..Default::default() })
        .await?
        .into_inner();
    ensure!(
        view.access_events.iter().any(|e| e.channel == "personal_data" && e.client_id == FRONT_OFFICE_CLIENT),
        "gRPC access events: {:?}",
        view.access_events
    );

    // And nothing personal is in the raw stream messages.
    let stream = js.get_stream(mpp_tests::STREAM_NAME).await?;
    let mut kinds = Vec::new();
    let mut sealed_key_id = Vec::new();
    for seq in 1..=3 {
        let msg = stream.get_raw_message(seq).await?;
        for n in NEEDLES {
            ensure!(!contains(&msg.payload, n.as_bytes()), "stream message {seq} holds {n:?}");
        }
        let env = Envelope::decode(msg.payload.clone())?;
        ensure!(env.case_id == tn, "stream message {seq} is of case {}", env.case_id);
        match env.body {
            Some(Body::CaseOpened(_)) => kinds.push("case_opened"),
            Some(Body::PersonalDataSealed(p)) => {
                ensure!(p.ciphertext.len() > NAMA.len(), "a ciphertext too short to hold the data");
                sealed_key_id = p.key_id;
                kinds.push("personal_data_sealed");
            }
            Some(Body::PersonalDataRead(r)) => {
                ensure!(r.client_id == FRONT_OFFICE_CLIENT, "the read names {:?}", r.client_id);
                kinds.push("personal_data_read");
            }
            other => bail!("unexpected message {seq}: {other:?}"),
        }
    }
    ensure!(kinds == ["case_opened", "personal_data_sealed", "personal_data_read"], "stream holds {kinds:?}");

    // When: the citizen asks for erasure.
    let erased = client
        .hapus_data_pribadi(fo::PenghapusanDataPribadi {
            nomor_berkas: tn.clone(),
            petugas: "ptg-loket-1".to_owned(),
        })
        .await
        .context("HapusDataPribadi")?
        .into_inner();
    ensure!(erased.nomor_berkas == [tn.clone()] && erased.event_ids.len() == 1, "erased {erased:?}");

    // Then: the front office can no longer read the data...
    let refused = match client.lihat_data_pribadi(ask()).await {
        Ok(r) => bail!("LihatDataPribadi after erasure answered {:?}", r.into_inner()),
        Err(s) => s,
    };
    ensure!(
        refused.code() == Code::FailedPrecondition && reason(&refused) == "PERSONAL_DATA_ERASED",
        "after erasure: {refused:?}"
    );
    // ...the hub recorded personal_data_erased for the sealed key and says "erased".
    wait_ingested(&mut hub, &js, 4).await?;
    let msg = stream.get_raw_message(4).await?;
    match Envelope::decode(msg.payload.clone())?.body {
        Some(Body::PersonalDataErased(p)) => ensure!(p.key_id == sealed_key_id, "another key was erased"),
        other => bail!("message 4 is {other:?}"),
    }
    ensure!(hub_says(&hub, &tn, &pin).await? == "erased", "the hub's view is not erased");

    // Nothing personal in the clear in any store: the nats-server's files,
    // the front office's data directory (vault, counter, outbox) and logs.
    let (found, files, bytes) = clear_text_in(nats.store_dir())?;
    ensure!(found.is_empty(), "clear text in the stream's files: {found:?}");
    println!("nats store: {files} files, {bytes} bytes scanned");
    front.terminate().await?;
    let (found, files, bytes) = clear_text_in(front.dir())?;
    ensure!(found.is_empty(), "clear text at the front office (data or log): {found:?}");
    println!("front office: {files} files, {bytes} bytes scanned");

    // After the hub stops: its sled files hold nothing personal in the
    // clear, the chain verifies and the projection equals a rebuild.
    hub.terminate().await?;
    let (found, files, bytes) = clear_text_in(hub.dir())?;
    ensure!(found.is_empty(), "clear text in the hub's files: {found:?}");
    println!("hub: {files} files, {bytes} bytes scanned");
    let key = hub.data_dir().join("keys").join("checkpoint.pub");
    let key = key.to_str().context("key path")?;
    let (code, out) = audit(&["verify", "--public-key", key], hub.data_dir())?;
    ensure!(code == 0 && out.starts_with("OK: 4 entries"), "audit verify exited {code}: {out}");
    let (code, out) = audit(&["rebuild"], hub.data_dir())?;
    ensure!(code == 0 && out.starts_with("identical:"), "audit rebuild exited {code}: {out}");
    Ok(())
}
