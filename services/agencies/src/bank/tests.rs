//! Mapping tests of the bank's desk: each RPC against an in-memory publisher.

use mpp_proto::v1::envelope::Body;
use tonic::Code;

use super::*;
use crate::test_support::{body, in_days, typo};
use crate::test_support::{digits, optional_text, Shapes};

desk_fixture! {
    Bank,
    filing ajukan_permohonan(pb::PermohonanNasabah { produk: pb::Produk }) -> pb::PermohonanDiterima,
    langkah { nomor_berkas, nomor_referensi },
    dokumen: ["KTP-el"],
    petugas: "cs-21" => "cs-22",
}

#[test]
fn the_catalogue_is_free_of_charge() {
    let cat = catalogue().unwrap();
    let get = |id: &str| cat.iter().find(|s| s.service.as_str() == id).unwrap();
    assert_eq!((get("tabungan").completion_working_days, get("tabungan").fee_idr), (1, 0));
    assert_eq!((get("kur").completion_working_days, get("kur").fee_idr), (14, 0));
}

#[test]
fn account_numbers_are_masked() {
    assert_eq!(masked_account("nomor_rekening", "1234567890").unwrap(), "******7890");
    assert_eq!(masked_account("nomor_rekening", "1234567890123456").unwrap(), "************3456");
    for bad in ["123456789", "12345678901234567", "12345-67890"] {
        assert_eq!(
            masked_account("nomor_rekening", bad).unwrap_err().reason_code(),
            mpp_core::ReasonCode::InvalidFieldValue
        );
    }
}

#[tokio::test]
async fn ajukan_permohonan_opens_a_case_or_files_into_one() {
    let (rec, svc) = desk();
    let r = file(&svc, pb::Produk::Tabungan, "").await;
    assert_eq!(r.pin.len(), 6);
    assert!(r.nomor_referensi.starts_with("BNK-TAB-"), "{}", r.nomor_referensi);
    let events = rec.publisher.events();
    assert_eq!(r.event_ids, events.iter().map(|e| e.event_id().to_owned()).collect::<Vec<_>>());
    assert!(matches!(body(&events[0]), Body::CaseOpened(_)));
    assert!(matches!(body(&events[1]), Body::ApplicationFiled(f) if f.documents == ["KTP-el"]));
    assert!(events.iter().all(|e| e.subject() == "mpp.events.bank.tabungan"));

    let again = file(&svc, pb::Produk::Kur, &r.nomor_berkas).await;
    assert_eq!((again.nomor_berkas.as_str(), again.pin.as_str()), (r.nomor_berkas.as_str(), ""));
    assert!(again.nomor_referensi.starts_with("BNK-KUR-"));
    assert_eq!(rec.publisher.events()[2].subject(), "mpp.events.bank.kur");
}

#[tokio::test]
async fn every_step_rpc_maps_to_its_common_event() {
    let (rec, svc) = desk();
    let filed = file(&svc, pb::Produk::Tabungan, "").await;
    let l = langkah(&filed);
    let some = Some(l.clone());
    let check = |rpc: &str, before: usize, id: String| {
        rec.stepped(rpc, before, &id, "tabungan", &filed.nomor_berkas, &filed.nomor_referensi, "cs-22")
    };

    let n = rec.count();
    let r = svc.verifikasi_data_nasabah(Request::new(l.clone())).await;
    let e = check("VerifikasiDataNasabah", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::ReviewStarted(_)));

    let n = rec.count();
    let r = svc
        .minta_dokumen(Request::new(pb::DokumenKurang {
            langkah: some.clone(),
            dokumen: vec!["NPWP".into()],
            meja_layanan: "Meja Bank Mitra Swasta, MPP".into(),
            catatan: String::new(),
        }))
        .await;
    let e = check("MintaDokumen", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::DocumentsRequested(d)
        if d.documents == ["NPWP"] && d.counter == "Meja Bank Mitra Swasta, MPP"));

    let n = rec.count();
    let r = svc
        .terima_dokumen(Request::new(pb::DokumenDiterima {
            langkah: some.clone(),
            dokumen: vec!["NPWP".into()],
        }))
        .await;
    let e = check("TerimaDokumen", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::DocumentsReceived(d) if d.documents == ["NPWP"]));

    let n = rec.count();
    let at = in_days(2);
    let r = svc
        .jadwalkan_survei_usaha(Request::new(pb::SurveiUsaha {
            langkah: some.clone(),
            waktu_ms: at,
            lokasi_usaha: "Warung kelontong, Pasar Minggu".into(),
        }))
        .await;
    let e = check("JadwalkanSurveiUsaha", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::AppointmentScheduled(a)
        if a.kind == "survey" && a.at_ms == at && a.place == "Warung kelontong, Pasar Minggu"));

    let n = rec.count();
    let r = svc
        .tagih_setoran_awal(Request::new(pb::TagihanSetoranAwal {
            langkah: some.clone(),
            jumlah_setoran: 100_000,
            saluran_setoran: "Teller Bank Mitra Swasta, MPP".into(),
        }))
        .await;
    let e = check("TagihSetoranAwal", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::FeeAssessed(f)
        if f.amount_idr == 100_000 && f.payment_channel == "Teller Bank Mitra Swasta, MPP" && f.billing_code.is_empty()));

    let n = rec.count();
    let r = svc
        .terima_setoran_awal(Request::new(pb::SetoranAwal {
            langkah: some.clone(),
            jumlah_setoran: 100_000,
            nomor_transaksi: "TRX-778812".into(),
        }))
        .await;
    let e = check("TerimaSetoranAwal", n, r.unwrap().into_inner().event_id);
    assert!(
        matches!(body(&e), Body::PaymentReceived(p) if p.amount_idr == 100_000 && p.payment_reference == "TRX-778812")
    );

    let n = rec.count();
    let r = svc
        .aktifkan_rekening(Request::new(pb::RekeningAktif {
            langkah: some.clone(),
            nomor_rekening: "0081234567890".into(),
        }))
        .await;
    let e = check("AktifkanRekening", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::Issued(i) if i.document_number == "*********7890"));
    assert!(!e.encode().windows(9).any(|w| w == b"008123456"), "the full account number is never published");

    let n = rec.count();
    let r = svc.serahkan_kartu(Request::new(l.clone())).await;
    let e = check("SerahkanKartu", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::Collected(_)));

    let n = rec.count();
    let r = svc
        .tolak_permohonan(Request::new(pb::Penolakan {
            langkah: some.clone(),
            kode_alasan: "CDD-01".into(),
            alasan: "Data nasabah tidak dapat diverifikasi".into(),
        }))
        .await;
    let e = check("TolakPermohonan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::Rejected(x) if x.reason_code == "CDD-01"));

    let n = rec.count();
    let r = svc
        .batalkan_permohonan(Request::new(pb::Pembatalan { langkah: some.clone(), alasan: String::new() }))
        .await;
    let e = check("BatalkanPermohonan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::Withdrawn(_)));
}

#[tokio::test]
async fn bad_requests_are_refused_with_reason_codes_and_publish_nothing() {
    let (rec, svc) = desk();
    let filed = file(&svc, pb::Produk::Tabungan, "").await;
    let l = langkah(&filed);
    let some = Some(l.clone());
    let n = rec.count();
    let inv = Code::InvalidArgument;

    let r = svc
        .ajukan_permohonan(Request::new(pb::PermohonanNasabah {
            nomor_berkas: String::new(),
            produk: pb::Produk::Unspecified as i32,
            dokumen: vec![],
            petugas: "cs-21".into(),
        }))
        .await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "produk");
    let r = svc
        .verifikasi_data_nasabah(Request::new(pb::Langkah {
            nomor_berkas: typo(&l.nomor_berkas),
            ..l.clone()
        }))
        .await;
    rec.refused(n, r, inv, "BAD_CHECK_DIGIT", "nomor_berkas");
    let r = svc
        .verifikasi_data_nasabah(Request::new(pb::Langkah { nomor_berkas: "abc".into(), ..l.clone() }))
        .await;
    rec.refused(n, r, inv, "MALFORMED_TRACKING_NUMBER", "nomor_berkas");
    let r = svc
        .minta_dokumen(Request::new(pb::DokumenKurang {
            langkah: some.clone(),
            dokumen: vec!["NPWP".into()],
            meja_layanan: String::new(),
            catatan: String::new(),
        }))
        .await;
    rec.refused(n, r, inv, "MISSING_FIELD", "meja_layanan");
    let setoran = |jumlah_setoran: i64| pb::TagihanSetoranAwal {
        langkah: some.clone(),
        jumlah_setoran,
        saluran_setoran: "Teller".into(),
    };
    let r = svc.tagih_setoran_awal(Request::new(setoran(-100_000))).await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "jumlah_setoran");
    let r = svc.tagih_setoran_awal(Request::new(setoran(SETORAN_IDR_MAX + 1))).await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "jumlah_setoran");
    let r = svc
        .tagih_setoran_awal(Request::new(pb::TagihanSetoranAwal {
            saluran_setoran: String::new(),
            ..setoran(100_000)
        }))
        .await;
    rec.refused(n, r, inv, "MISSING_FIELD", "saluran_setoran");
    let r = svc
        .terima_setoran_awal(Request::new(pb::SetoranAwal {
            langkah: some.clone(),
            jumlah_setoran: -5,
            nomor_transaksi: String::new(),
        }))
        .await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "jumlah_setoran");
    let r = svc
        .aktifkan_rekening(Request::new(pb::RekeningAktif {
            langkah: some.clone(),
            nomor_rekening: "12".into(),
        }))
        .await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "nomor_rekening");
    let r = svc
        .jadwalkan_survei_usaha(Request::new(pb::SurveiUsaha {
            langkah: some.clone(),
            waktu_ms: 1_000,
            lokasi_usaha: "Pasar".into(),
        }))
        .await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "waktu_ms");
    let r = svc
        .serahkan_kartu(Request::new(pb::Langkah { nomor_referensi: "BNK-TAB-ABC DEF".into(), ..l.clone() }))
        .await;
    rec.refused(n, r, inv, "MALFORMED_APPLICATION_ID", "nomor_referensi");
}

round_trip_test!(
    Bank,
    Shapes {
        service_id: "tabungan",
        amount_max_idr: SETORAN_IDR_MAX,
        billing_code: optional_text(),
        payment_reference: optional_text(),
        document_number: digits(10..=16),
    },
    |e| match e {
        // The deposit has no billing code, and the account number is published masked.
        EventBody::FeeAssessed { amount_idr, payment_channel, .. } => {
            EventBody::FeeAssessed { amount_idr, payment_channel, billing_code: String::new() }
        }
        EventBody::Issued { document_number } => {
            EventBody::Issued { document_number: masked_account("x", &document_number).unwrap() }
        }
        other => other,
    }
);
