//! Mapping tests of the PDAM: each RPC against an in-memory publisher.

use mpp_proto::v1::envelope::Body;
use tonic::Code;

use super::*;
use crate::test_support::{body, in_days, other_region_case};
use crate::test_support::{digits, optional_text, text, Shapes};

desk_fixture! {
    Pdam,
    filing ajukan_pendaftaran(pb::Pendaftaran { layanan: pb::Layanan }) -> pb::PendaftaranDiterima,
    langkah { nomor_berkas, nomor_pendaftaran },
    dokumen: ["KTP-el"],
    petugas: "pdam-4" => "pdam-5",
}

#[test]
fn the_catalogue_has_the_water_standards() {
    let cat = catalogue().unwrap();
    let get = |id: &str| cat.iter().find(|s| s.service.as_str() == id).unwrap();
    assert_eq!((get("sambungan").completion_working_days, get("sambungan").fee_idr), (10, 1_500_000));
    assert_eq!((get("balik-nama").completion_working_days, get("balik-nama").fee_idr), (3, 50_000));
}

#[tokio::test]
async fn ajukan_pendaftaran_opens_a_case_or_files_into_one() {
    let (rec, svc) = desk();
    let r = file(&svc, pb::Layanan::SambunganBaru, "").await;
    assert_eq!(r.pin.len(), 6);
    assert!(r.nomor_pendaftaran.starts_with("PDAM-SB-"), "{}", r.nomor_pendaftaran);
    let events = rec.publisher.events();
    assert_eq!(r.event_ids, events.iter().map(|e| e.event_id().to_owned()).collect::<Vec<_>>());
    assert!(matches!(body(&events[0]), Body::CaseOpened(_)));
    assert!(matches!(body(&events[1]), Body::ApplicationFiled(f) if f.documents == ["KTP-el"]));
    assert!(events.iter().all(|e| e.subject() == "mpp.events.pdam.sambungan"));

    let again = file(&svc, pb::Layanan::BalikNama, &r.nomor_berkas).await;
    assert_eq!((again.nomor_berkas.as_str(), again.pin.as_str()), (r.nomor_berkas.as_str(), ""));
    assert!(again.nomor_pendaftaran.starts_with("PDAM-BN-"));
    assert_eq!(rec.publisher.events()[2].subject(), "mpp.events.pdam.balik-nama");
}

#[tokio::test]
async fn every_step_rpc_maps_to_its_common_event() {
    let (rec, svc) = desk();
    let filed = file(&svc, pb::Layanan::SambunganBaru, "").await;
    let l = langkah(&filed);
    let some = Some(l.clone());
    let check = |rpc: &str, before: usize, id: String| {
        rec.stepped(rpc, before, &id, "sambungan", &filed.nomor_berkas, &filed.nomor_pendaftaran, "pdam-5")
    };
    let visit = |days: i64| pb::Kunjungan {
        langkah: some.clone(),
        waktu_ms: in_days(days),
        alamat: "Jl. Salak No. 9, Kota Bengkulu".into(),
    };

    let n = rec.count();
    let r = svc
        .minta_kelengkapan(Request::new(pb::KekuranganBerkas {
            langkah: some.clone(),
            dokumen: vec!["Denah lokasi rumah".into()],
            loket: "Loket PDAM, MPP".into(),
            catatan: String::new(),
        }))
        .await;
    let e = check("MintaKelengkapan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::DocumentsRequested(d)
        if d.documents == ["Denah lokasi rumah"] && d.counter == "Loket PDAM, MPP"));

    let n = rec.count();
    let r = svc
        .terima_kelengkapan(Request::new(pb::BerkasDilengkapi {
            langkah: some.clone(),
            dokumen: vec!["Denah lokasi rumah".into()],
        }))
        .await;
    let e = check("TerimaKelengkapan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::DocumentsReceived(d) if d.documents == ["Denah lokasi rumah"]));

    let n = rec.count();
    let v = visit(1);
    let at = v.waktu_ms;
    let r = svc.jadwalkan_survei(Request::new(v)).await;
    let e = check("JadwalkanSurvei", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::AppointmentScheduled(a)
        if a.kind == "survey" && a.at_ms == at && a.place == "Jl. Salak No. 9, Kota Bengkulu"));

    let n = rec.count();
    let r = svc
        .terbitkan_rab(Request::new(pb::Rab {
            langkah: some.clone(),
            jumlah_biaya: 1_750_000,
            nomor_rab: "RAB/2026/00123".into(),
            saluran_pembayaran: "Kasir PDAM / Bank daerah".into(),
        }))
        .await;
    let e = check("TerbitkanRab", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::FeeAssessed(f)
        if f.amount_idr == 1_750_000 && f.billing_code == "RAB/2026/00123" && f.payment_channel == "Kasir PDAM / Bank daerah"));

    let n = rec.count();
    let r = svc
        .konfirmasi_pembayaran(Request::new(pb::Pembayaran {
            langkah: some.clone(),
            jumlah_bayar: 1_750_000,
            nomor_kuitansi: "KW-0099".into(),
        }))
        .await;
    let e = check("KonfirmasiPembayaran", n, r.unwrap().into_inner().event_id);
    assert!(
        matches!(body(&e), Body::PaymentReceived(p) if p.amount_idr == 1_750_000 && p.payment_reference == "KW-0099")
    );

    let n = rec.count();
    let v = visit(6);
    let at = v.waktu_ms;
    let r = svc.jadwalkan_pemasangan(Request::new(v)).await;
    let e = check("JadwalkanPemasangan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::AppointmentScheduled(a) if a.kind == "installation" && a.at_ms == at));

    let n = rec.count();
    let r = svc
        .aktifkan_sambungan(Request::new(pb::SambunganAktif {
            langkah: some.clone(),
            nomor_sambungan: "0104512".into(),
        }))
        .await;
    let e = check("AktifkanSambungan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::Issued(i) if i.document_number == "0104512"));

    let n = rec.count();
    let r = svc
        .tolak_pendaftaran(Request::new(pb::Penolakan {
            langkah: some.clone(),
            kode_alasan: "LUAR-JARINGAN".into(),
            alasan: "Lokasi di luar jaringan pipa distribusi".into(),
        }))
        .await;
    let e = check("TolakPendaftaran", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::Rejected(x) if x.reason == "Lokasi di luar jaringan pipa distribusi"));

    let n = rec.count();
    let r = svc
        .batalkan_pendaftaran(Request::new(pb::Pembatalan {
            langkah: some.clone(),
            alasan: "Pindah rumah".into(),
        }))
        .await;
    let e = check("BatalkanPendaftaran", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::Withdrawn(w) if w.reason == "Pindah rumah"));
}

#[tokio::test]
async fn bad_requests_are_refused_with_reason_codes_and_publish_nothing() {
    let (rec, svc) = desk();
    let filed = file(&svc, pb::Layanan::SambunganBaru, "").await;
    let l = langkah(&filed);
    let some = Some(l.clone());
    let n = rec.count();
    let inv = Code::InvalidArgument;

    let r = svc
        .ajukan_pendaftaran(Request::new(pb::Pendaftaran {
            nomor_berkas: String::new(),
            layanan: pb::Layanan::Unspecified as i32,
            dokumen: vec![],
            petugas: "pdam-4".into(),
        }))
        .await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "layanan");
    let r = svc
        .ajukan_pendaftaran(Request::new(pb::Pendaftaran {
            nomor_berkas: String::new(),
            layanan: pb::Layanan::SambunganBaru as i32,
            dokumen: vec!["x".to_owned(); 33],
            petugas: "pdam-4".into(),
        }))
        .await;
    rec.refused(n, r, inv, "FIELD_TOO_LONG", "dokumen");
    let r = svc
        .jadwalkan_survei(Request::new(pb::Kunjungan {
            langkah: Some(pb::Langkah { nomor_berkas: other_region_case(), ..l.clone() }),
            waktu_ms: in_days(1),
            alamat: "x".into(),
        }))
        .await;
    rec.refused(n, r, Code::FailedPrecondition, "REGION_MISMATCH", "langkah.nomor_berkas");
    let r = svc
        .jadwalkan_survei(Request::new(pb::Kunjungan {
            langkah: Some(pb::Langkah { nomor_pendaftaran: "PDAM-SB-".into(), ..l.clone() }),
            waktu_ms: in_days(1),
            alamat: "x".into(),
        }))
        .await;
    rec.refused(n, r, inv, "MALFORMED_APPLICATION_ID", "nomor_pendaftaran");

    let rab = |jumlah_biaya: i64, nomor_rab: &str| pb::Rab {
        langkah: some.clone(),
        jumlah_biaya,
        nomor_rab: nomor_rab.into(),
        saluran_pembayaran: "Kasir PDAM".into(),
    };
    let r = svc.terbitkan_rab(Request::new(rab(-1, "RAB/1"))).await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "jumlah_biaya");
    let r = svc.terbitkan_rab(Request::new(rab(BIAYA_IDR_MAX + 1, "RAB/1"))).await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "jumlah_biaya");
    let r = svc.terbitkan_rab(Request::new(rab(1_500_000, ""))).await;
    rec.refused(n, r, inv, "MISSING_FIELD", "nomor_rab");
    let r = svc
        .konfirmasi_pembayaran(Request::new(pb::Pembayaran {
            langkah: some.clone(),
            jumlah_bayar: 0,
            nomor_kuitansi: String::new(),
        }))
        .await;
    rec.refused(n, r, inv, "MISSING_FIELD", "jumlah_bayar");
    let r = svc
        .aktifkan_sambungan(Request::new(pb::SambunganAktif {
            langkah: some.clone(),
            nomor_sambungan: "AB-12".into(),
        }))
        .await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "nomor_sambungan");
    let r = svc
        .batalkan_pendaftaran(Request::new(pb::Pembatalan {
            langkah: Some(pb::Langkah { petugas: String::new(), ..l.clone() }),
            alasan: String::new(),
        }))
        .await;
    rec.refused(n, r, inv, "MISSING_FIELD", "langkah.petugas");
}

round_trip_test!(
    Pdam,
    Shapes {
        service_id: "sambungan",
        amount_max_idr: BIAYA_IDR_MAX,
        billing_code: text(),
        payment_reference: optional_text(),
        document_number: digits(6..=12),
    },
    |e| e
);
