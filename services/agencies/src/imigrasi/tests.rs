//! Mapping tests of Kantor Imigrasi: each RPC against an in-memory publisher.

use mpp_core::ids::TrackingNumber;
use mpp_proto::v1::envelope::Body;
use tonic::Code;

use super::*;
use crate::test_support::{body, in_days, other_region_case, typo};
use crate::test_support::{digits, ntpn, Shapes};

desk_fixture! {
    Imigrasi,
    filing ajukan_permohonan(pb::Permohonan { jenis_paspor: pb::JenisPaspor }) -> pb::PermohonanDiterima,
    langkah { nomor_berkas, nomor_permohonan },
    dokumen: ["KTP-el", "Kartu Keluarga"],
    petugas: "img-07" => "img-08",
}

#[test]
fn the_catalogue_has_the_published_passport_standards() {
    let cat = catalogue().unwrap();
    let by_id = |id: &str| cat.iter().find(|s| s.service.as_str() == id).unwrap();
    assert_eq!((by_id("paspor").completion_working_days, by_id("paspor").fee_idr), (4, 350_000));
    assert_eq!((by_id("paspor-el").completion_working_days, by_id("paspor-el").fee_idr), (4, 650_000));
    assert!(cat.iter().all(|s| !s.fiktif_positif && s.version == 1 && !s.requirements.is_empty()));
}

#[test]
fn passport_numbers() {
    for good in ["X1234567", "E1234567", "AB123456", "C123456"] {
        assert!(is_passport_number(good), "{good}");
    }
    for bad in ["1234567", "ABC123456", "x1234567", "X12345", "X12345678", "X123456A", ""] {
        assert!(!is_passport_number(bad), "{bad}");
    }
}

#[tokio::test]
async fn ajukan_permohonan_opens_a_case_or_files_into_one() {
    let (rec, svc) = desk();
    let r = file(&svc, pb::JenisPaspor::Elektronik, "").await;
    assert_eq!(r.pin.len(), 6);
    assert!(r.nomor_permohonan.starts_with("IMG-EPASPOR-"), "{}", r.nomor_permohonan);
    assert!(TrackingNumber::parse(&r.nomor_berkas).is_ok());
    let events = rec.publisher.events();
    assert_eq!(r.event_ids, events.iter().map(|e| e.event_id().to_owned()).collect::<Vec<_>>());
    assert!(matches!(body(&events[0]), Body::CaseOpened(_)));
    assert!(
        matches!(body(&events[1]), Body::ApplicationFiled(f) if f.documents == ["KTP-el", "Kartu Keluarga"])
    );
    assert!(events.iter().all(|e| e.subject() == "mpp.events.imigrasi.paspor-el"));

    let again = file(&svc, pb::JenisPaspor::Biasa, &r.nomor_berkas).await;
    assert_eq!(again.nomor_berkas, r.nomor_berkas);
    assert!(again.pin.is_empty());
    assert_eq!(again.event_ids.len(), 1);
    assert!(again.nomor_permohonan.starts_with("IMG-PASPOR-"));
    assert_eq!(rec.publisher.events()[2].subject(), "mpp.events.imigrasi.paspor");
}

#[tokio::test]
async fn every_step_rpc_maps_to_its_common_event() {
    let (rec, svc) = desk();
    let filed = file(&svc, pb::JenisPaspor::Biasa, "").await;
    let l = langkah(&filed);
    let some = Some(l.clone());
    let check = |rpc: &str, before: usize, id: String| {
        rec.stepped(rpc, before, &id, "paspor", &filed.nomor_berkas, &filed.nomor_permohonan, "img-08")
    };
    let at = in_days(3);

    let n = rec.count();
    let r = svc
        .minta_kelengkapan(Request::new(pb::KekuranganBerkas {
            langkah: some.clone(),
            dokumen: vec!["Akta kelahiran".into()],
            loket: "Loket Imigrasi, MPP lantai 2".into(),
            catatan: "Bawa asli".into(),
        }))
        .await;
    let e = check("MintaKelengkapan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::DocumentsRequested(d)
        if d.documents == ["Akta kelahiran"] && d.counter == "Loket Imigrasi, MPP lantai 2" && d.note == "Bawa asli"));

    let n = rec.count();
    let r = svc
        .terima_kelengkapan(Request::new(pb::BerkasDilengkapi {
            langkah: some.clone(),
            dokumen: vec!["Akta kelahiran".into()],
        }))
        .await;
    let e = check("TerimaKelengkapan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::DocumentsReceived(d) if d.documents == ["Akta kelahiran"]));

    let n = rec.count();
    let r = svc
        .jadwalkan_wawancara(Request::new(pb::JadwalWawancara {
            langkah: some.clone(),
            waktu_ms: at,
            tempat: "Ruang wawancara Imigrasi".into(),
        }))
        .await;
    let e = check("JadwalkanWawancara", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::AppointmentScheduled(a)
        if a.kind == "interview" && a.at_ms == at && a.place == "Ruang wawancara Imigrasi"));

    let n = rec.count();
    let r = svc.mulai_wawancara(Request::new(l.clone())).await;
    let e = check("MulaiWawancara", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::ReviewStarted(_)));

    let n = rec.count();
    let r = svc
        .terbitkan_kode_billing(Request::new(pb::KodeBilling {
            langkah: some.clone(),
            jumlah_pnbp: 350_000,
            kode_billing: "820260114000123".into(),
            saluran_pembayaran: "Bank persepsi / Kantor Pos (SIMPONI)".into(),
        }))
        .await;
    let e = check("TerbitkanKodeBilling", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::FeeAssessed(f)
        if f.amount_idr == 350_000 && f.billing_code == "820260114000123"
            && f.payment_channel == "Bank persepsi / Kantor Pos (SIMPONI)"));

    let n = rec.count();
    let r = svc
        .konfirmasi_pembayaran(Request::new(pb::PembayaranPnbp {
            langkah: some.clone(),
            jumlah_pnbp: 350_000,
            ntpn: "0A1B2C3D4E5F6G7H".into(),
        }))
        .await;
    let e = check("KonfirmasiPembayaran", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::PaymentReceived(p)
        if p.amount_idr == 350_000 && p.payment_reference == "0A1B2C3D4E5F6G7H"));

    let n = rec.count();
    let r = svc
        .cetak_paspor(Request::new(pb::PasporDicetak {
            langkah: some.clone(),
            nomor_paspor: "X1234567".into(),
        }))
        .await;
    let e = check("CetakPaspor", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::Issued(i) if i.document_number == "X1234567"));

    let n = rec.count();
    let r = svc.serahkan_paspor(Request::new(l.clone())).await;
    let e = check("SerahkanPaspor", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::Collected(_)));

    let n = rec.count();
    let r = svc
        .tolak_permohonan(Request::new(pb::Penolakan {
            langkah: some.clone(),
            kode_alasan: "TL-03".into(),
            alasan: "Data tidak sesuai".into(),
        }))
        .await;
    let e = check("TolakPermohonan", n, r.unwrap().into_inner().event_id);
    assert!(
        matches!(body(&e), Body::Rejected(x) if x.reason_code == "TL-03" && x.reason == "Data tidak sesuai")
    );

    let n = rec.count();
    let r = svc
        .batalkan_permohonan(Request::new(pb::Pembatalan {
            langkah: some.clone(),
            alasan: "Pemohon tidak hadir wawancara".into(),
        }))
        .await;
    let e = check("BatalkanPermohonan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::Withdrawn(w) if w.reason == "Pemohon tidak hadir wawancara"));
}

#[tokio::test]
async fn bad_requests_are_refused_with_reason_codes_and_publish_nothing() {
    let (rec, svc) = desk();
    let filed = file(&svc, pb::JenisPaspor::Biasa, "").await;
    let l = langkah(&filed);
    let some = Some(l.clone());
    let n = rec.count();
    let inv = Code::InvalidArgument;

    for jenis in [pb::JenisPaspor::Unspecified as i32, 99] {
        let r = svc
            .ajukan_permohonan(Request::new(pb::Permohonan {
                nomor_berkas: String::new(),
                jenis_paspor: jenis,
                dokumen: vec![],
                petugas: "img-07".into(),
            }))
            .await;
        rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "jenis_paspor");
    }
    let r = svc
        .ajukan_permohonan(Request::new(pb::Permohonan {
            nomor_berkas: typo(&filed.nomor_berkas),
            jenis_paspor: pb::JenisPaspor::Biasa as i32,
            dokumen: vec![],
            petugas: "img-07".into(),
        }))
        .await;
    rec.refused(n, r, inv, "BAD_CHECK_DIGIT", "nomor_berkas");

    let r = svc
        .minta_kelengkapan(Request::new(pb::KekuranganBerkas {
            langkah: None,
            dokumen: vec!["x".into()],
            loket: "Loket".into(),
            catatan: String::new(),
        }))
        .await;
    rec.refused(n, r, inv, "MISSING_FIELD", "langkah");
    let r = svc
        .mulai_wawancara(Request::new(pb::Langkah { nomor_berkas: typo(&l.nomor_berkas), ..l.clone() }))
        .await;
    rec.refused(n, r, inv, "BAD_CHECK_DIGIT", "nomor_berkas");
    let r = svc
        .mulai_wawancara(Request::new(pb::Langkah { nomor_berkas: other_region_case(), ..l.clone() }))
        .await;
    rec.refused(n, r, Code::FailedPrecondition, "REGION_MISMATCH", "nomor_berkas");
    let r = svc
        .serahkan_paspor(Request::new(pb::Langkah { nomor_permohonan: "DKC-KK-ABC".into(), ..l.clone() }))
        .await;
    rec.refused(n, r, inv, "MALFORMED_APPLICATION_ID", "nomor_permohonan");
    let r =
        svc.serahkan_paspor(Request::new(pb::Langkah { petugas: "Budi Santoso".into(), ..l.clone() })).await;
    rec.refused(n, r, inv, "MALFORMED_OFFICER", "petugas");

    let billing = |jumlah_pnbp: i64, kode_billing: &str| pb::KodeBilling {
        langkah: some.clone(),
        jumlah_pnbp,
        kode_billing: kode_billing.into(),
        saluran_pembayaran: "SIMPONI".into(),
    };
    let r = svc.terbitkan_kode_billing(Request::new(billing(-350_000, "820260114000123"))).await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "jumlah_pnbp");
    let r = svc.terbitkan_kode_billing(Request::new(billing(PNBP_IDR_MAX + 1, "820260114000123"))).await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "jumlah_pnbp");
    let r = svc.terbitkan_kode_billing(Request::new(billing(0, "820260114000123"))).await;
    rec.refused(n, r, inv, "MISSING_FIELD", "jumlah_pnbp");
    let r = svc.terbitkan_kode_billing(Request::new(billing(350_000, "KB-123"))).await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "kode_billing");
    let r = svc
        .terbitkan_kode_billing(Request::new(pb::KodeBilling {
            saluran_pembayaran: String::new(),
            ..billing(350_000, "820260114000123")
        }))
        .await;
    rec.refused(n, r, inv, "MISSING_FIELD", "saluran_pembayaran");

    let r = svc
        .konfirmasi_pembayaran(Request::new(pb::PembayaranPnbp {
            langkah: some.clone(),
            jumlah_pnbp: 350_000,
            ntpn: "lunas".into(),
        }))
        .await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "ntpn");

    let r = svc
        .jadwalkan_wawancara(Request::new(pb::JadwalWawancara {
            langkah: some.clone(),
            waktu_ms: in_days(3 * 366),
            tempat: "Ruang wawancara".into(),
        }))
        .await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "waktu_ms");
    let r = svc
        .jadwalkan_wawancara(Request::new(pb::JadwalWawancara {
            langkah: some.clone(),
            waktu_ms: in_days(1),
            tempat: String::new(),
        }))
        .await;
    rec.refused(n, r, inv, "MISSING_FIELD", "tempat");

    let r = svc
        .cetak_paspor(Request::new(pb::PasporDicetak { langkah: some.clone(), nomor_paspor: "12345".into() }))
        .await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "nomor_paspor");
    let r = svc
        .tolak_permohonan(Request::new(pb::Penolakan {
            langkah: some.clone(),
            kode_alasan: String::new(),
            alasan: "x".repeat(501),
        }))
        .await;
    rec.refused(n, r, inv, "FIELD_TOO_LONG", "alasan");
    let r = svc
        .batalkan_permohonan(Request::new(pb::Pembatalan { langkah: some.clone(), alasan: "a\nb".into() }))
        .await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "alasan");
}

#[tokio::test]
async fn a_publish_failure_is_unavailable() {
    let publisher = std::sync::Arc::new(mpp_agency_kit::testing::MemoryPublisher::failing_after(0));
    let svc = Imigrasi::new(crate::test_support::agency(&INFO, publisher));
    let s = svc
        .ajukan_permohonan(Request::new(pb::Permohonan {
            nomor_berkas: String::new(),
            jenis_paspor: pb::JenisPaspor::Biasa as i32,
            dokumen: vec![],
            petugas: "img-07".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!((s.code(), crate::test_support::reason(&s)), (Code::Unavailable, "PUBLISH_FAILED"));
}

round_trip_test!(
    Imigrasi,
    Shapes {
        service_id: "paspor",
        amount_max_idr: PNBP_IDR_MAX,
        billing_code: digits(15..=15),
        payment_reference: ntpn(),
        document_number: "[A-Z]{1,2}[0-9]{6,7}".boxed(),
    },
    |e| e
);
