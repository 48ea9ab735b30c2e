//! Mapping tests of PLN: each RPC against an in-memory publisher.

use mpp_core::EventBody as E;
use tonic::Code;

use super::*;
use crate::test_support::{digits, optional_text, Shapes};
use crate::test_support::{in_days, typo};
use crate::test_support::{Refusal, Step};

mapping_tests! {
    Pln,
    filing daftar_permohonan(pb::Permohonan { jenis_layanan: pb::JenisLayanan }) -> pb::PermohonanTerdaftar,
    langkah { nomor_berkas, nomor_agenda },
    dokumen: ["KTP-el", "SLO instalasi"],
    petugas: "pln-11" => "pln-12",
    services: [pb::JenisLayanan::PasangBaru, pb::JenisLayanan::TambahDaya],
}

/// Every step RPC, and the event it must publish.
fn steps(top: &pb::Langkah) -> Vec<Step<Call>> {
    let due = in_days(14);
    let l = || Some(top.clone());
    let slo = || vec!["SLO instalasi".to_owned()];
    let (alamat, survey, install) = ("Jl. Merapi No. 5, Kota Bengkulu", in_days(2), in_days(4));
    let visit = |waktu_ms| pb::Kunjungan { langkah: l(), waktu_ms, alamat: alamat.into() };
    let appointment =
        |kind: &str, at_ms| E::AppointmentScheduled { kind: kind.into(), at_ms, place: alamat.into() };
    let (kode, saluran, note) =
        ("521100123456", "Bank, Kantor Pos, PLN Mobile", "SLO dari LIT TR terakreditasi");
    vec![
        (
            Call::MintaKelengkapan(pb::KekuranganData {
                langkah: l(),
                dokumen: slo(),
                loket: "Loket PLN, MPP".into(),
                catatan: note.into(),
            }),
            E::DocumentsRequested { documents: slo(), counter: "Loket PLN, MPP".into(), note: note.into() },
        ),
        (
            Call::TerimaKelengkapan(pb::DataDilengkapi { langkah: l(), dokumen: slo() }),
            E::DocumentsReceived { documents: slo() },
        ),
        (Call::JadwalkanSurvei(visit(survey)), appointment("survey", survey)),
        (
            Call::TerbitkanTagihan(pb::Tagihan {
                langkah: l(),
                jumlah_tagihan: 1_259_700,
                kode_bayar: kode.into(),
                saluran_pembayaran: saluran.into(),
                jatuh_tempo_ms: due,
            }),
            E::FeeAssessed {
                amount_idr: 1_259_700,
                billing_code: kode.into(),
                payment_channel: saluran.into(),
                due_at_ms: due,
            },
        ),
        (
            Call::KonfirmasiPembayaran(pb::Pembayaran {
                langkah: l(),
                jumlah_bayar: 1_259_700,
                nomor_referensi: String::new(),
            }),
            E::PaymentReceived { amount_idr: 1_259_700, payment_reference: String::new() },
        ),
        (Call::JadwalkanPemasangan(visit(install)), appointment("installation", install)),
        (
            Call::NyalakanSambungan(pb::Penyalaan { langkah: l(), id_pelanggan: "172010012345".into() }),
            E::Issued { document_number: "172010012345".into() },
        ),
        (
            Call::TolakPermohonan(pb::Penolakan {
                langkah: l(),
                kode_alasan: "JTR-PENUH".into(),
                alasan: "Jaringan tegangan rendah belum tersedia".into(),
            }),
            E::Rejected {
                reason_code: "JTR-PENUH".into(),
                reason: "Jaringan tegangan rendah belum tersedia".into(),
            },
        ),
        (
            Call::BatalkanPermohonan(pb::Pembatalan { langkah: l(), alasan: "Pelanggan membatalkan".into() }),
            E::Withdrawn { reason: "Pelanggan membatalkan".into() },
        ),
    ]
}

/// Bad requests: each with the status code, reason code and field it
/// must be refused with.
fn refusals(l: &pb::Langkah) -> Vec<Refusal<Call>> {
    let inv = Code::InvalidArgument;
    let unknown_layanan = Call::DaftarPermohonan(pb::Permohonan {
        nomor_berkas: String::new(),
        jenis_layanan: 7,
        dokumen: vec![],
        petugas: "pln-11".into(),
    });
    let visit = |langkah: Option<pb::Langkah>, waktu_ms: i64, alamat: &str| pb::Kunjungan {
        langkah,
        waktu_ms,
        alamat: alamat.into(),
    };
    let survei = |langkah| Call::JadwalkanSurvei(visit(Some(langkah), in_days(1), "x"));
    let pasang = |waktu_ms, alamat| Call::JadwalkanPemasangan(visit(Some(l.clone()), waktu_ms, alamat));
    let tagihan = |jumlah_tagihan: i64, kode_bayar: &str| {
        Call::TerbitkanTagihan(pb::Tagihan {
            langkah: Some(l.clone()),
            jumlah_tagihan,
            kode_bayar: kode_bayar.into(),
            saluran_pembayaran: "PLN Mobile".into(),
            jatuh_tempo_ms: 0,
        })
    };
    let bayar = |jumlah_bayar| {
        Call::KonfirmasiPembayaran(pb::Pembayaran {
            langkah: Some(l.clone()),
            jumlah_bayar,
            nomor_referensi: String::new(),
        })
    };
    let nyalakan = |id: &str| {
        Call::NyalakanSambungan(pb::Penyalaan { langkah: Some(l.clone()), id_pelanggan: id.into() })
    };
    let typo_case = pb::Langkah { nomor_berkas: typo(&l.nomor_berkas), ..l.clone() };
    let foreign_app = pb::Langkah { nomor_agenda: "PDAM-SB-ABC".into(), ..l.clone() };
    vec![
        (unknown_layanan, inv, "INVALID_FIELD_VALUE", "jenis_layanan"),
        (Call::JadwalkanSurvei(visit(None, in_days(1), "x")), inv, "MISSING_FIELD", "langkah"),
        (survei(typo_case), inv, "BAD_CHECK_DIGIT", "langkah.nomor_berkas"),
        (pasang(-1, "Jl. Merapi"), inv, "INVALID_FIELD_VALUE", "waktu_ms"),
        (pasang(in_days(1), " "), inv, "MISSING_FIELD", "alamat"),
        (survei(foreign_app), inv, "MALFORMED_APPLICATION_ID", "nomor_agenda"),
        (tagihan(-1_259_700, "521100123456"), inv, "INVALID_FIELD_VALUE", "jumlah_tagihan"),
        (tagihan(TAGIHAN_IDR_MAX + 1, "521100123456"), inv, "INVALID_FIELD_VALUE", "jumlah_tagihan"),
        (tagihan(1_259_700, "5211-0012"), inv, "INVALID_FIELD_VALUE", "kode_bayar"),
        // A due date already past, or more than a year ahead.
        (
            Call::TerbitkanTagihan(pb::Tagihan {
                langkah: Some(l.clone()),
                jumlah_tagihan: 1_259_700,
                kode_bayar: "521100123456".into(),
                saluran_pembayaran: "PLN Mobile".into(),
                jatuh_tempo_ms: in_days(-1),
            }),
            inv,
            "INVALID_FIELD_VALUE",
            "jatuh_tempo_ms",
        ),
        (
            Call::TerbitkanTagihan(pb::Tagihan {
                langkah: Some(l.clone()),
                jumlah_tagihan: 1_259_700,
                kode_bayar: "521100123456".into(),
                saluran_pembayaran: "PLN Mobile".into(),
                jatuh_tempo_ms: in_days(367),
            }),
            inv,
            "INVALID_FIELD_VALUE",
            "jatuh_tempo_ms",
        ),
        (bayar(i64::MIN), inv, "INVALID_FIELD_VALUE", "jumlah_bayar"),
        (nyalakan("17201001234"), inv, "INVALID_FIELD_VALUE", "id_pelanggan"),
        (nyalakan(""), inv, "MISSING_FIELD", "id_pelanggan"),
    ]
}

round_trip_test!(
    Pln,
    Shapes {
        service_id: "pasang-baru",
        amount_max_idr: TAGIHAN_IDR_MAX,
        billing_code: digits(10..=16),
        payment_reference: optional_text(),
        document_number: digits(ID_PELANGGAN_DIGITS..=ID_PELANGGAN_DIGITS),
    },
    |e| e
);

/// DPMPTSP's PBG issued on a case where PLN has these applications.
fn pbg_issued(own: &[(&str, &str, &str)]) -> mpp_proto::v1::CaseEvent {
    mpp_proto::v1::CaseEvent {
        seq: 42,
        event_id: "01890000-0000-7000-8000-0000000000aa".to_owned(),
        case_id: TrackingNumber::new(mpp_core::ids::RegionCode::parse("1771").unwrap(), 12_345)
            .unwrap()
            .to_string(),
        agency_id: PBG_AGENCY.to_owned(),
        service_id: PBG_SERVICE.to_owned(),
        application_id: "DPM-PBG-1".to_owned(),
        event_type: "issued".to_owned(),
        recorded_at_ms: in_days(0),
        own_applications: own
            .iter()
            .map(|(id, service, state)| mpp_proto::v1::OwnApplication {
                application_id: (*id).to_owned(),
                service_id: (*service).to_owned(),
                state: (*state).to_owned(),
            })
            .collect(),
        notice: None,
        sla: None,
    }
}

#[tokio::test]
async fn a_pbg_issued_schedules_the_installation_of_each_paid_new_connection_once_per_id() {
    let publisher = std::sync::Arc::new(mpp_agency_kit::testing::MemoryPublisher::new());
    let agency = crate::test_support::agency(&INFO, publisher.clone());
    let event = pbg_issued(&[
        ("PLN-PB-1", "pasang-baru", "paid"),
        ("PLN-PB-2", "pasang-baru", "submitted"),
        ("PLN-TD-3", "tambah-daya", "paid"),
    ]);
    assert_eq!(waiting_applications(&event), ["PLN-PB-1"]);
    reaction().call(agency.clone(), event.clone()).await.unwrap();
    reaction().call(agency.clone(), event.clone()).await.unwrap();
    let events = publisher.events();
    assert_eq!(events.len(), 2, "one step per delivery");
    let (a, b) = (events[0].envelope(), events[1].envelope());
    assert_eq!(a.event_id, b.event_id, "a redelivery publishes the same event id (a duplicate at the hub)");
    assert_eq!(a.event_id, reaction_event_id(&event, "PLN-PB-1").hyphenated().to_string());
    assert_eq!((a.service_id.as_str(), a.application_id.as_str()), ("pasang-baru", "PLN-PB-1"));
    assert_eq!(a.case_id, event.case_id);
    match &a.body {
        Some(mpp_proto::v1::envelope::Body::AppointmentScheduled(s)) => {
            assert_eq!(s.kind, "installation");
            assert_eq!(s.at_ms, event.recorded_at_ms + INSTALLATION_LEAD_MS);
            assert_eq!(s.place, INSTALLATION_PLACE);
        }
        other => panic!("expected an installation, got {other:?}"),
    }

    // Not the PBG issued, or nothing paid: nothing happens.
    let publisher = std::sync::Arc::new(mpp_agency_kit::testing::MemoryPublisher::new());
    let agency = crate::test_support::agency(&INFO, publisher.clone());
    let mut rejected = event.clone();
    rejected.event_type = "rejected".to_owned();
    let mut nib = event.clone();
    nib.service_id = "nib".to_owned();
    for e in [rejected, nib, pbg_issued(&[("PLN-PB-1", "pasang-baru", "scheduled")])] {
        assert!(waiting_applications(&e).is_empty());
        reaction().call(agency.clone(), e).await.unwrap();
    }
    assert!(publisher.events().is_empty());
}
