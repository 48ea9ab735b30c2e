//! Tests across every agency of the crate: categories, catalogues, the
//! mapping tables against the protos and `MAPPING.md`, and the journeys
//! against the hub's state machine.

use std::collections::BTreeSet;
use std::sync::Arc;

use mpp_agency_kit::{EventBuilder, SystemClock};
use mpp_core::ids::RegionCode;
use mpp_core::{AppState, EventKind};
use prost::Message as _;

use crate::test_support::legal_path;
use crate::{imigrasi, AgencyInfo, Category, AGENCIES, MAPPING_VERSION};

const MAPPING_MD: &str = include_str!("../../../docs/MAPPING.md");

fn catalogue(info: &AgencyInfo) -> Vec<mpp_agency_kit::ServiceStandardSpec> {
    info.builtin_standards().unwrap_or_else(|e| panic!("{}: {e}", info.agency_id))
}

#[test]
fn every_category_the_law_names_is_covered() {
    let covered: BTreeSet<Category> = AGENCIES.iter().map(|a| a.category).collect();
    assert_eq!(covered, Category::ALL.iter().copied().collect());
    assert!(AGENCIES.len() >= 5);
}

#[test]
fn ids_prefixes_and_binaries_are_distinct_and_well_formed() {
    let mut agencies = BTreeSet::new();
    let mut prefixes = BTreeSet::new();
    for info in AGENCIES {
        assert!(info.agency_id().is_ok(), "{}", info.agency_id);
        assert!(agencies.insert(info.agency_id), "{}", info.agency_id);
        assert!(prefixes.insert(info.application_prefix), "{}", info.application_prefix);
        assert_eq!(info.binary, format!("mpp-{}", info.agency_id));
        assert!(
            info.grpc_service.starts_with(&format!("mpp.agency.{}.v1.", info.agency_id)),
            "{}",
            info.grpc_service
        );
        let mut codes = BTreeSet::new();
        for s in info.services {
            assert!(s.service().is_ok(), "{}", s.service_id);
            assert!(codes.insert(s.code), "{}", s.code);
            assert!(s.value > 0, "UNSPECIFIED is never a service");
            // An application id with this prefix is valid and names its service.
            let id = mpp_agency_kit::ids::new_application_id(&info.application_prefix(s)).unwrap();
            let info: &'static AgencyInfo = info;
            assert_eq!(info.service_of_application("x", &id).unwrap(), s);
        }
    }
}

#[test]
fn every_service_has_exactly_one_valid_standard() {
    for info in AGENCIES {
        let cat = catalogue(info);
        let ids: Vec<&str> = cat.iter().map(|s| s.service.as_str()).collect();
        let services: Vec<&str> = info.services.iter().map(|s| s.service_id).collect();
        assert_eq!(ids, services, "{}", info.agency_id);
        let builder = EventBuilder::new(
            RegionCode::parse("1771").unwrap(),
            info.agency_id().unwrap(),
            Arc::new(SystemClock),
        );
        for spec in &cat {
            // Version 2 added where the document is collected; nothing else.
            let version = if spec.collection.is_some() { 2 } else { 1 };
            assert_eq!(spec.version, version, "{}/{}", info.agency_id, spec.service);
            assert!(!spec.requirements.is_empty(), "{}", spec.service);
            // The standard passes the hub's own validation.
            spec.to_event(&builder).unwrap_or_else(|e| panic!("{}/{}: {e}", info.agency_id, spec.service));
        }
    }
}

#[test]
fn every_catalogue_holds_the_standards_the_agency_publishes() {
    // (agency, service, completion in working days, fee in rupiah, fiktif positif)
    let published: &[(&str, &str, u32, i64, bool)] = &[
        // Dukcapil services are free of charge (UU 24/2013 art. 79A).
        ("dukcapil", "kk", 3, 0, false),
        ("dukcapil", "ktp-el", 14, 0, false),
        ("dukcapil", "akta-lahir", 5, 0, false),
        ("imigrasi", "paspor", 4, 350_000, false),
        ("imigrasi", "paspor-el", 4, 650_000, false),
        ("bpn", "pengecekan", 1, 50_000, false),
        ("bpn", "peralihan-hak", 5, 50_000, false),
        ("bpn", "pengukuran", 14, 100_000, false),
        // Rp969 per VA: 1 300 VA new, 1 300 → 2 200 VA upgraded.
        ("pln", "pasang-baru", 5, 969 * 1_300, false),
        ("pln", "tambah-daya", 5, 969 * (2_200 - 1_300), false),
        ("pdam", "sambungan", 10, 1_500_000, false),
        ("pdam", "balik-nama", 3, 50_000, false),
        // The bank's desk charges nothing.
        ("bank", "tabungan", 1, 0, false),
        ("bank", "kur", 14, 0, false),
        // PBG is fiktif positif; NIB is free.
        ("dpmptsp", "pbg", 28, 1_500_000, true),
        ("dpmptsp", "nib", 1, 0, false),
    ];
    let mut got = Vec::new();
    for info in AGENCIES {
        for s in catalogue(info) {
            let standard = (s.completion_working_days, s.fee_idr, s.fiktif_positif);
            got.push((info.agency_id, s.service.as_str().to_owned(), standard));
        }
    }
    let want: Vec<_> =
        published.iter().map(|&(a, s, days, fee, fp)| (a, s.to_owned(), (days, fee, fp))).collect();
    assert_eq!(got, want);
}

/// The RPC names of each `mpp.agency.<id>.v1` service in the descriptor set.
fn proto_rpcs(info: &AgencyInfo) -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(mpp_proto::FILE_DESCRIPTOR_SET).unwrap();
    let package = format!("mpp.agency.{}.v1", info.agency_id);
    let file = set.file.iter().find(|f| f.package() == package).unwrap_or_else(|| panic!("no {package}"));
    let service =
        file.service.iter().find(|s| info.grpc_service == format!("{package}.{}", s.name())).unwrap();
    service.method.iter().map(|m| m.name().to_owned()).collect()
}

#[test]
fn the_mapping_table_lists_every_rpc_of_the_proto_in_order() {
    for info in AGENCIES {
        let table: Vec<&str> = info.rpcs.iter().map(|m| m.rpc).collect();
        assert_eq!(proto_rpcs(info), table, "{}", info.agency_id);
        assert_eq!(info.rpcs[0].event, EventKind::ApplicationFiled, "the filing RPC comes first");
        assert!(info.rpcs[1..]
            .iter()
            .all(|m| m.event.is_application_event() && m.event != EventKind::ApplicationFiled));
        for needed in
            [EventKind::Issued, EventKind::Rejected, EventKind::Withdrawn, EventKind::DocumentsRequested]
        {
            assert!(
                info.rpcs.iter().any(|m| m.event == needed),
                "{} has no {}",
                info.agency_id,
                needed.as_str()
            );
        }
    }
}

/// The `MAPPING.md` section of an agency: from its `## ` heading (which
/// names the agency id in backticks) to the next.
fn section(info: &AgencyInfo) -> &'static str {
    let heading = format!("## {} ", info.name);
    let start = MAPPING_MD.find(&heading).unwrap_or_else(|| panic!("MAPPING.md has no section {heading:?}"));
    let rest = &MAPPING_MD[start + heading.len()..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn mapping_md_documents_every_rpc_service_and_journey() {
    assert!(MAPPING_MD.contains(&format!("mapping v{MAPPING_VERSION}")));
    for info in AGENCIES {
        let s = section(info);
        assert!(s.contains(&format!("`{}`", info.agency_id)), "{}", info.agency_id);
        for m in info.rpcs {
            let row = s
                .lines()
                .find(|l| l.starts_with(&format!("| `{}`", m.rpc)))
                .unwrap_or_else(|| panic!("{}: no row for {}", info.agency_id, m.rpc));
            assert!(row.contains(&format!("`{}`", m.event.as_str())), "{}: {row}", info.agency_id);
        }
        for svc in info.services {
            assert!(s.contains(&format!("`{}`", svc.service_id)), "{}: {}", info.agency_id, svc.service_id);
            assert!(s.contains(&format!("`{}-{}-", info.application_prefix, svc.code)), "{}", svc.code);
        }
        let journey = info.journey.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(" → ");
        assert!(s.contains(&journey), "{}: journey {journey} not documented", info.agency_id);
    }
}

#[test]
fn every_journey_is_legal_in_the_hubs_state_machine() {
    for info in AGENCIES {
        let kinds: Vec<EventKind> = info
            .journey
            .iter()
            .map(|rpc| {
                info.event_of(rpc).unwrap_or_else(|| panic!("{}: {rpc} not in the table", info.agency_id))
            })
            .collect();
        let end = legal_path(&kinds);
        assert!(matches!(end, AppState::Issued | AppState::Collected), "{}: ends {end:?}", info.agency_id);
        assert!(kinds.contains(&EventKind::Issued), "{}", info.agency_id);
    }
}

#[test]
fn the_imigrasi_booked_interview_path_is_legal_too() {
    // Booked interview: the appointment, then straight to the billing code.
    let booked = [
        "AjukanPermohonan",
        "JadwalkanWawancara",
        "TerbitkanKodeBilling",
        "KonfirmasiPembayaran",
        "CetakPaspor",
    ];
    let kinds: Vec<EventKind> = booked.iter().map(|r| imigrasi::INFO.event_of(r).unwrap()).collect();
    assert_eq!(legal_path(&kinds), AppState::Issued);
}

/// The state an application is in after the hub accepts `kind`.
fn state_after(kind: EventKind) -> &'static str {
    match kind {
        EventKind::ApplicationFiled | EventKind::DocumentsReceived => "Diterima",
        EventKind::DocumentsRequested => "Perlu Kelengkapan",
        EventKind::ReviewStarted => "Diproses",
        EventKind::FeeAssessed => "Menunggu Pembayaran",
        EventKind::PaymentReceived => "Dibayar",
        EventKind::AppointmentScheduled => "Dijadwalkan",
        EventKind::Issued => "Terbit",
        EventKind::Collected => "Diambil",
        EventKind::Rejected => "Ditolak",
        EventKind::Withdrawn => "Dibatalkan",
        other => panic!("{} is not an application step", other.as_str()),
    }
}

/// `docs/MAPPING.md`, from each agency's [`AgencyInfo`].
fn render_mapping_md() -> String {
    let mut out = format!(
        "# Agencies → common events, mapping v{MAPPING_VERSION}\n\
         \n\
         <!-- Generated by services/agencies/src/tests.rs from each agency's `AgencyInfo` (services,\n\
         \x20    RPC table, journey); do not edit by hand.\n\
         \x20    Regenerate with: MPP_BLESS=1 cargo test -p mpp-agencies --lib mapping_md_is_up_to_date -->\n\
         \n\
         Each agency service of `mpp-agencies` (`services/agencies`) translates its own gRPC vocabulary\n\
         (`proto/proto/mpp/v1/<agency>.proto`, package `mpp.agency.<agency>.v1`) into the hub's common\n\
         events (`mpp.v1.Envelope`, `proto/proto/mpp/v1/event.proto`). These tables are the contract;\n\
         they are versioned (`MAPPING_VERSION`) and a change that alters which event an RPC produces\n\
         bumps the version. Each agency's module holds the table (`INFO.rpcs`), the RPC handlers and\n\
         the inverse (`request`: event → RPC); the tests check them against the protos, the hub's state\n\
         machine and each other. What every agency shares (filing, states, service standards, the\n\
         checks before publishing) and notes per agency: `services/agencies/MAPPING.md`.\n\
         \n\
         | agency | category | binary | default `--grpc-addr` | agency id |\n\
         |---|---|---|---|---|\n"
    );
    for info in AGENCIES {
        out.push_str(&format!(
            "| {} | {} | `{}` | {} | `{}` |\n",
            info.name,
            crate::common::category_label(info.category),
            info.binary,
            info.default_grpc_addr,
            info.agency_id
        ));
    }
    for info in AGENCIES {
        out.push_str(&format!(
            "\n## {} (`{}`, {})\n\n`{}`; application ids `{}-<code>-…`, called `{}`.\n\n",
            info.name,
            info.agency_id,
            crate::common::category_label(info.category),
            info.grpc_service,
            info.application_prefix,
            info.application_field
        ));
        out.push_str(&format!("| `{}` | service id | application id |\n|---|---|---|\n", info.service_field));
        for s in info.services {
            out.push_str(&format!(
                "| `{}` | `{}` | `{}-<12 chars>` |\n",
                s.enum_name,
                s.service_id,
                info.application_prefix(s)
            ));
        }
        out.push_str("\n| RPC | common event | state | field mapping |\n|---|---|---|---|\n");
        for (i, m) in info.rpcs.iter().enumerate() {
            let opens = if i == 0 { " (after `case_opened` when the tracking number is empty)" } else { "" };
            out.push_str(&format!(
                "| `{}` | `{}`{opens} | {} | {} |\n",
                m.rpc,
                m.event.as_str(),
                state_after(m.event),
                m.fields.replace('|', "\\|")
            ));
        }
        let journey = info.journey.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(" → ");
        out.push_str(&format!("\nJourney: {journey}.\n"));
    }
    out
}

#[test]
fn mapping_md_is_up_to_date() {
    let want = render_mapping_md();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/MAPPING.md");
    if std::env::var("MPP_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, &want).expect("write docs/MAPPING.md");
        return;
    }
    let got = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} is missing ({e}); run with MPP_BLESS=1", path.display()));
    assert!(
        got == want,
        "{} is out of date with the agencies' mapping tables; run \
         `MPP_BLESS=1 cargo test -p mpp-agencies --lib mapping_md_is_up_to_date`",
        path.display()
    );
}
