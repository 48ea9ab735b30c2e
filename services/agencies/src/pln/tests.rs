//! Mapping tests of PLN: each RPC against an in-memory publisher.

use mpp_proto::v1::envelope::Body;
use tonic::Code;

use super::*;
use crate::test_support::{body, in_days, typo};
use crate::test_support::{digits, optional_text, Shapes};

desk_fixture! {
    Pln,
    filing daftar_permohonan(pb::Permohonan { jenis_layanan: pb::JenisLayanan }) -> pb::PermohonanTerdaftar,
    langkah { nomor_berkas, nomor_agenda },
    dokumen: ["KTP-el", "SLO instalasi"],
    petugas: "pln-11" => "pln-12",
}

#[test]
fn the_catalogue_has_the_connection_standards() {
    let cat = catalogue().unwrap();
    let get = |id: &str| cat.iter().find(|s| s.service.as_str() == id).unwrap();
    assert_eq!((get("pasang-baru").completion_working_days, get("pasang-baru").fee_idr), (5, 1_259_700));
    assert_eq!(get("pasang-baru").fee_idr, 969 * 1_300, "Rp969 per VA for 1 300 VA");
    assert_eq!(get("tambah-daya").fee_idr, 969 * (2_200 - 1_300));
}

#[tokio::test]
async fn daftar_permohonan_opens_a_case_or_files_into_one() {
    let (rec, svc) = desk();
    let r = file(&svc, pb::JenisLayanan::PasangBaru, "").await;
    assert_eq!(r.pin.len(), 6);
    assert!(r.nomor_agenda.starts_with("PLN-PB-"), "{}", r.nomor_agenda);
    let events = rec.publisher.events();
    assert_eq!(r.event_ids, events.iter().map(|e| e.event_id().to_owned()).collect::<Vec<_>>());
    assert!(matches!(body(&events[0]), Body::CaseOpened(_)));
    assert!(
        matches!(body(&events[1]), Body::ApplicationFiled(f) if f.documents == ["KTP-el", "SLO instalasi"])
    );
    assert!(events.iter().all(|e| e.subject() == "mpp.events.pln.pasang-baru"));

    let again = file(&svc, pb::JenisLayanan::TambahDaya, &r.nomor_berkas).await;
    assert_eq!((again.nomor_berkas.as_str(), again.pin.as_str()), (r.nomor_berkas.as_str(), ""));
    assert!(again.nomor_agenda.starts_with("PLN-TD-"));
    assert_eq!(rec.publisher.events()[2].subject(), "mpp.events.pln.tambah-daya");
}

#[tokio::test]
async fn every_step_rpc_maps_to_its_common_event() {
    let (rec, svc) = desk();
    let filed = file(&svc, pb::JenisLayanan::PasangBaru, "").await;
    let l = langkah(&filed);
    let some = Some(l.clone());
    let check = |rpc: &str, before: usize, id: String| {
        rec.stepped(rpc, before, &id, "pasang-baru", &filed.nomor_berkas, &filed.nomor_agenda, "pln-12")
    };
    let visit = |days: i64| pb::Kunjungan {
        langkah: some.clone(),
        waktu_ms: in_days(days),
        alamat: "Jl. Merapi No. 5, Kota Bengkulu".into(),
    };

    let n = rec.count();
    let r = svc
        .minta_kelengkapan(Request::new(pb::KekuranganData {
            langkah: some.clone(),
            dokumen: vec!["SLO instalasi".into()],
            loket: "Loket PLN, MPP".into(),
            catatan: "SLO dari LIT TR terakreditasi".into(),
        }))
        .await;
    let e = check("MintaKelengkapan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::DocumentsRequested(d)
        if d.documents == ["SLO instalasi"] && d.counter == "Loket PLN, MPP" && d.note == "SLO dari LIT TR terakreditasi"));

    let n = rec.count();
    let r = svc
        .terima_kelengkapan(Request::new(pb::DataDilengkapi {
            langkah: some.clone(),
            dokumen: vec!["SLO instalasi".into()],
        }))
        .await;
    let e = check("TerimaKelengkapan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::DocumentsReceived(d) if d.documents == ["SLO instalasi"]));

    let n = rec.count();
    let v = visit(2);
    let at = v.waktu_ms;
    let r = svc.jadwalkan_survei(Request::new(v)).await;
    let e = check("JadwalkanSurvei", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::AppointmentScheduled(a)
        if a.kind == "survey" && a.at_ms == at && a.place == "Jl. Merapi No. 5, Kota Bengkulu"));

    let n = rec.count();
    let r = svc
        .terbitkan_tagihan(Request::new(pb::Tagihan {
            langkah: some.clone(),
            jumlah_tagihan: 1_259_700,
            kode_bayar: "521100123456".into(),
            saluran_pembayaran: "Bank, Kantor Pos, PLN Mobile".into(),
        }))
        .await;
    let e = check("TerbitkanTagihan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::FeeAssessed(f)
        if f.amount_idr == 1_259_700 && f.billing_code == "521100123456" && f.payment_channel == "Bank, Kantor Pos, PLN Mobile"));

    let n = rec.count();
    let r = svc
        .konfirmasi_pembayaran(Request::new(pb::Pembayaran {
            langkah: some.clone(),
            jumlah_bayar: 1_259_700,
            nomor_referensi: String::new(),
        }))
        .await;
    let e = check("KonfirmasiPembayaran", n, r.unwrap().into_inner().event_id);
    assert!(
        matches!(body(&e), Body::PaymentReceived(p) if p.amount_idr == 1_259_700 && p.payment_reference.is_empty())
    );

    let n = rec.count();
    let v = visit(4);
    let at = v.waktu_ms;
    let r = svc.jadwalkan_pemasangan(Request::new(v)).await;
    let e = check("JadwalkanPemasangan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::AppointmentScheduled(a) if a.kind == "installation" && a.at_ms == at));

    let n = rec.count();
    let r = svc
        .nyalakan_sambungan(Request::new(pb::Penyalaan {
            langkah: some.clone(),
            id_pelanggan: "172010012345".into(),
        }))
        .await;
    let e = check("NyalakanSambungan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::Issued(i) if i.document_number == "172010012345"));

    let n = rec.count();
    let r = svc
        .tolak_permohonan(Request::new(pb::Penolakan {
            langkah: some.clone(),
            kode_alasan: "JTR-PENUH".into(),
            alasan: "Jaringan tegangan rendah belum tersedia".into(),
        }))
        .await;
    let e = check("TolakPermohonan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::Rejected(x) if x.reason_code == "JTR-PENUH"));

    let n = rec.count();
    let r = svc
        .batalkan_permohonan(Request::new(pb::Pembatalan {
            langkah: some.clone(),
            alasan: "Pelanggan membatalkan".into(),
        }))
        .await;
    let e = check("BatalkanPermohonan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::Withdrawn(w) if w.reason == "Pelanggan membatalkan"));
}

#[tokio::test]
async fn bad_requests_are_refused_with_reason_codes_and_publish_nothing() {
    let (rec, svc) = desk();
    let filed = file(&svc, pb::JenisLayanan::PasangBaru, "").await;
    let l = langkah(&filed);
    let some = Some(l.clone());
    let n = rec.count();
    let inv = Code::InvalidArgument;

    let r = svc
        .daftar_permohonan(Request::new(pb::Permohonan {
            nomor_berkas: String::new(),
            jenis_layanan: 7,
            dokumen: vec![],
            petugas: "pln-11".into(),
        }))
        .await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "jenis_layanan");
    let r = svc
        .jadwalkan_survei(Request::new(pb::Kunjungan {
            langkah: None,
            waktu_ms: in_days(1),
            alamat: "x".into(),
        }))
        .await;
    rec.refused(n, r, inv, "MISSING_FIELD", "langkah");
    let r = svc
        .jadwalkan_survei(Request::new(pb::Kunjungan {
            langkah: Some(pb::Langkah { nomor_berkas: typo(&l.nomor_berkas), ..l.clone() }),
            waktu_ms: in_days(1),
            alamat: "x".into(),
        }))
        .await;
    rec.refused(n, r, inv, "BAD_CHECK_DIGIT", "langkah.nomor_berkas");
    let r = svc
        .jadwalkan_pemasangan(Request::new(pb::Kunjungan {
            langkah: some.clone(),
            waktu_ms: -1,
            alamat: "Jl. Merapi".into(),
        }))
        .await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "waktu_ms");
    let r = svc
        .jadwalkan_pemasangan(Request::new(pb::Kunjungan {
            langkah: some.clone(),
            waktu_ms: in_days(1),
            alamat: " ".into(),
        }))
        .await;
    rec.refused(n, r, inv, "MISSING_FIELD", "alamat");
    let r = svc
        .jadwalkan_survei(Request::new(pb::Kunjungan {
            langkah: Some(pb::Langkah { nomor_agenda: "PDAM-SB-ABC".into(), ..l.clone() }),
            waktu_ms: in_days(1),
            alamat: "x".into(),
        }))
        .await;
    rec.refused(n, r, inv, "MALFORMED_APPLICATION_ID", "nomor_agenda");

    let tagihan = |jumlah_tagihan: i64, kode_bayar: &str| pb::Tagihan {
        langkah: some.clone(),
        jumlah_tagihan,
        kode_bayar: kode_bayar.into(),
        saluran_pembayaran: "PLN Mobile".into(),
    };
    let r = svc.terbitkan_tagihan(Request::new(tagihan(-1_259_700, "521100123456"))).await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "jumlah_tagihan");
    let r = svc.terbitkan_tagihan(Request::new(tagihan(TAGIHAN_IDR_MAX + 1, "521100123456"))).await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "jumlah_tagihan");
    let r = svc.terbitkan_tagihan(Request::new(tagihan(1_259_700, "5211-0012"))).await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "kode_bayar");
    let r = svc
        .konfirmasi_pembayaran(Request::new(pb::Pembayaran {
            langkah: some.clone(),
            jumlah_bayar: i64::MIN,
            nomor_referensi: String::new(),
        }))
        .await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "jumlah_bayar");
    let r = svc
        .nyalakan_sambungan(Request::new(pb::Penyalaan {
            langkah: some.clone(),
            id_pelanggan: "17201001234".into(),
        }))
        .await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "id_pelanggan");
    let r = svc
        .nyalakan_sambungan(Request::new(pb::Penyalaan {
            langkah: some.clone(),
            id_pelanggan: String::new(),
        }))
        .await;
    rec.refused(n, r, inv, "MISSING_FIELD", "id_pelanggan");
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
