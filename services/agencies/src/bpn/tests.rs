//! Mapping tests of the land office: each RPC against an in-memory publisher.

use mpp_proto::v1::envelope::Body;
use tonic::Code;

use super::*;
use crate::test_support::{body, in_days, other_region_case, typo};
use crate::test_support::{digits, ntpn, optional_text, Shapes};

desk_fixture! {
    Bpn,
    filing daftarkan_berkas(pb::PendaftaranBerkas { layanan: pb::LayananPertanahan }) -> pb::BerkasTerdaftar,
    langkah { nomor_berkas_mpp, nomor_permohonan },
    dokumen: ["Formulir permohonan"],
    petugas: "bpn-02" => "bpn-03",
}

#[test]
fn the_catalogue_has_the_land_office_standards() {
    let cat = catalogue().unwrap();
    let get = |id: &str| cat.iter().find(|s| s.service.as_str() == id).unwrap();
    assert_eq!((get("pengecekan").completion_working_days, get("pengecekan").fee_idr), (1, 50_000));
    assert_eq!((get("peralihan-hak").completion_working_days, get("peralihan-hak").fee_idr), (5, 50_000));
    assert_eq!((get("pengukuran").completion_working_days, get("pengukuran").fee_idr), (14, 100_000));
    assert!(cat.iter().all(|s| !s.fiktif_positif));
}

#[tokio::test]
async fn daftarkan_berkas_opens_a_case_or_files_into_one() {
    let (rec, svc) = desk();
    let r = file(&svc, pb::LayananPertanahan::Pengukuran, "").await;
    assert_eq!(r.pin.len(), 6);
    assert!(r.nomor_permohonan.starts_with("BPN-UKUR-"), "{}", r.nomor_permohonan);
    let events = rec.publisher.events();
    assert_eq!(r.event_ids, events.iter().map(|e| e.event_id().to_owned()).collect::<Vec<_>>());
    assert!(matches!(body(&events[0]), Body::CaseOpened(_)));
    assert!(matches!(body(&events[1]), Body::ApplicationFiled(f) if f.documents == ["Formulir permohonan"]));
    assert!(events.iter().all(|e| e.subject() == "mpp.events.bpn.pengukuran"));

    let again = file(&svc, pb::LayananPertanahan::PeralihanHak, &r.nomor_berkas_mpp).await;
    assert_eq!((again.nomor_berkas_mpp.as_str(), again.pin.as_str()), (r.nomor_berkas_mpp.as_str(), ""));
    assert_eq!(again.event_ids.len(), 1);
    assert!(again.nomor_permohonan.starts_with("BPN-PHAK-"));
    assert_eq!(rec.publisher.events()[2].subject(), "mpp.events.bpn.peralihan-hak");
    let cek = file(&svc, pb::LayananPertanahan::Pengecekan, &r.nomor_berkas_mpp).await;
    assert!(cek.nomor_permohonan.starts_with("BPN-CEK-"));
}

#[tokio::test]
async fn every_step_rpc_maps_to_its_common_event() {
    let (rec, svc) = desk();
    let filed = file(&svc, pb::LayananPertanahan::Pengukuran, "").await;
    let l = langkah(&filed);
    let some = Some(l.clone());
    let check = |rpc: &str, before: usize, id: String| {
        rec.stepped(
            rpc,
            before,
            &id,
            "pengukuran",
            &filed.nomor_berkas_mpp,
            &filed.nomor_permohonan,
            "bpn-03",
        )
    };
    let at = in_days(5);

    let n = rec.count();
    let r = svc
        .minta_kelengkapan(Request::new(pb::KekuranganBerkas {
            langkah: some.clone(),
            dokumen: vec!["Surat pernyataan tanda batas".into()],
            loket: "Loket BPN, MPP lantai 1".into(),
            catatan: String::new(),
        }))
        .await;
    let e = check("MintaKelengkapan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::DocumentsRequested(d)
        if d.documents == ["Surat pernyataan tanda batas"] && d.counter == "Loket BPN, MPP lantai 1" && d.note.is_empty()));

    let n = rec.count();
    let r = svc
        .terima_kelengkapan(Request::new(pb::BerkasDilengkapi { langkah: some.clone(), dokumen: vec![] }))
        .await;
    let e = check("TerimaKelengkapan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::DocumentsReceived(d) if d.documents.is_empty()));

    let n = rec.count();
    let r = svc.mulai_pemeriksaan(Request::new(l.clone())).await;
    let e = check("MulaiPemeriksaan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::ReviewStarted(_)));

    let n = rec.count();
    let r = svc
        .terbitkan_sps(Request::new(pb::SuratPerintahSetor {
            langkah: some.clone(),
            jumlah_pnbp: 1_250_000,
            kode_billing: "820260115000777".into(),
            saluran_pembayaran: "Bank persepsi / Kantor Pos (SIMPONI)".into(),
        }))
        .await;
    let e = check("TerbitkanSps", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::FeeAssessed(f)
        if f.amount_idr == 1_250_000 && f.billing_code == "820260115000777"
            && f.payment_channel == "Bank persepsi / Kantor Pos (SIMPONI)"));

    let n = rec.count();
    let r = svc
        .konfirmasi_pembayaran(Request::new(pb::PembayaranPnbp {
            langkah: some.clone(),
            jumlah_pnbp: 1_250_000,
            ntpn: "A1B2C3D4E5F6G7H8".into(),
        }))
        .await;
    let e = check("KonfirmasiPembayaran", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::PaymentReceived(p)
        if p.amount_idr == 1_250_000 && p.payment_reference == "A1B2C3D4E5F6G7H8"));

    let n = rec.count();
    let r = svc
        .jadwalkan_pengukuran(Request::new(pb::JadwalPengukuran {
            langkah: some.clone(),
            waktu_ms: at,
            lokasi: "Kel. Padang Jati, patok utara".into(),
        }))
        .await;
    let e = check("JadwalkanPengukuran", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::AppointmentScheduled(a)
        if a.kind == "survey" && a.at_ms == at && a.place == "Kel. Padang Jati, patok utara"));

    let n = rec.count();
    let r = svc
        .terbitkan_produk(Request::new(pb::ProdukTerbit {
            langkah: some.clone(),
            nomor_produk: "PBT 00123/2026".into(),
        }))
        .await;
    let e = check("TerbitkanProduk", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::Issued(i) if i.document_number == "PBT 00123/2026"));

    let n = rec.count();
    let r = svc.serahkan_produk(Request::new(l.clone())).await;
    let e = check("SerahkanProduk", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::Collected(_)));

    let n = rec.count();
    let r = svc
        .tolak_berkas(Request::new(pb::Penolakan {
            langkah: some.clone(),
            kode_alasan: String::new(),
            alasan: "Objek tanah dalam sengketa".into(),
        }))
        .await;
    let e = check("TolakBerkas", n, r.unwrap().into_inner().event_id);
    assert!(
        matches!(body(&e), Body::Rejected(x) if x.reason_code.is_empty() && x.reason == "Objek tanah dalam sengketa")
    );

    let n = rec.count();
    let r = svc
        .batalkan_berkas(Request::new(pb::Pembatalan { langkah: some.clone(), alasan: String::new() }))
        .await;
    let e = check("BatalkanBerkas", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::Withdrawn(w) if w.reason.is_empty()));
}

#[tokio::test]
async fn bad_requests_are_refused_with_reason_codes_and_publish_nothing() {
    let (rec, svc) = desk();
    let filed = file(&svc, pb::LayananPertanahan::Pengecekan, "").await;
    let l = langkah(&filed);
    let some = Some(l.clone());
    let n = rec.count();
    let inv = Code::InvalidArgument;

    let r = svc
        .daftarkan_berkas(Request::new(pb::PendaftaranBerkas {
            nomor_berkas_mpp: String::new(),
            layanan: pb::LayananPertanahan::Unspecified as i32,
            dokumen: vec![],
            petugas: "bpn-02".into(),
        }))
        .await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "layanan");
    let r = svc
        .daftarkan_berkas(Request::new(pb::PendaftaranBerkas {
            nomor_berkas_mpp: other_region_case(),
            layanan: pb::LayananPertanahan::Pengecekan as i32,
            dokumen: vec![],
            petugas: "bpn-02".into(),
        }))
        .await;
    rec.refused(n, r, Code::FailedPrecondition, "REGION_MISMATCH", "nomor_berkas_mpp");
    let r = svc
        .daftarkan_berkas(Request::new(pb::PendaftaranBerkas {
            nomor_berkas_mpp: String::new(),
            layanan: pb::LayananPertanahan::Pengecekan as i32,
            dokumen: vec![],
            petugas: String::new(),
        }))
        .await;
    rec.refused(n, r, inv, "MISSING_FIELD", "petugas");

    let r = svc
        .mulai_pemeriksaan(Request::new(pb::Langkah {
            nomor_berkas_mpp: typo(&l.nomor_berkas_mpp),
            ..l.clone()
        }))
        .await;
    rec.refused(n, r, inv, "BAD_CHECK_DIGIT", "nomor_berkas_mpp");
    let r = svc
        .serahkan_produk(Request::new(pb::Langkah { nomor_permohonan: "IMG-PASPOR-ABC".into(), ..l.clone() }))
        .await;
    rec.refused(n, r, inv, "MALFORMED_APPLICATION_ID", "nomor_permohonan");
    let r = svc
        .serahkan_produk(Request::new(pb::Langkah { nomor_permohonan: "BPN-XYZ-ABC".into(), ..l.clone() }))
        .await;
    rec.refused(n, r, inv, "MALFORMED_APPLICATION_ID", "nomor_permohonan");

    let sps = |jumlah_pnbp: i64| pb::SuratPerintahSetor {
        langkah: some.clone(),
        jumlah_pnbp,
        kode_billing: "820260115000777".into(),
        saluran_pembayaran: "SIMPONI".into(),
    };
    let r = svc.terbitkan_sps(Request::new(sps(-50_000))).await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "jumlah_pnbp");
    let r = svc.terbitkan_sps(Request::new(sps(PNBP_IDR_MAX + 1))).await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "jumlah_pnbp");
    let r = svc.terbitkan_sps(Request::new(pb::SuratPerintahSetor { langkah: None, ..sps(50_000) })).await;
    rec.refused(n, r, inv, "MISSING_FIELD", "langkah");
    let r = svc
        .terbitkan_sps(Request::new(pb::SuratPerintahSetor { kode_billing: String::new(), ..sps(50_000) }))
        .await;
    rec.refused(n, r, inv, "MISSING_FIELD", "kode_billing");
    let r = svc
        .konfirmasi_pembayaran(Request::new(pb::PembayaranPnbp {
            langkah: some.clone(),
            jumlah_pnbp: -1,
            ntpn: "A1B2C3D4E5F6G7H8".into(),
        }))
        .await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "jumlah_pnbp");
    let r = svc
        .jadwalkan_pengukuran(Request::new(pb::JadwalPengukuran {
            langkah: some.clone(),
            waktu_ms: 0,
            lokasi: "Kel. Padang Jati".into(),
        }))
        .await;
    rec.refused(n, r, inv, "MISSING_FIELD", "waktu_ms");
    let r = svc
        .minta_kelengkapan(Request::new(pb::KekuranganBerkas {
            langkah: some.clone(),
            dokumen: vec![],
            loket: "Loket BPN".into(),
            catatan: String::new(),
        }))
        .await;
    rec.refused(n, r, inv, "MISSING_FIELD", "dokumen");
    let r = svc
        .terbitkan_produk(Request::new(pb::ProdukTerbit {
            langkah: some.clone(),
            nomor_produk: "x".repeat(501),
        }))
        .await;
    rec.refused(n, r, inv, "FIELD_TOO_LONG", "nomor_produk");
    let r = svc
        .tolak_berkas(Request::new(pb::Penolakan {
            langkah: some.clone(),
            kode_alasan: "B1".into(),
            alasan: String::new(),
        }))
        .await;
    rec.refused(n, r, inv, "MISSING_FIELD", "alasan");
}

round_trip_test!(
    Bpn,
    Shapes {
        service_id: "pengecekan",
        amount_max_idr: PNBP_IDR_MAX,
        billing_code: digits(15..=15),
        payment_reference: ntpn(),
        document_number: optional_text(),
    },
    |e| e
);
