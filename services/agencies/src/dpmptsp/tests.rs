//! Mapping tests of DPMPTSP: each RPC against an in-memory publisher.

use mpp_proto::v1::envelope::Body;
use tonic::Code;

use super::*;
use crate::test_support::{body, in_days, other_region_case};
use crate::test_support::{optional_text, text, Shapes};

desk_fixture! {
    Dpmptsp,
    filing ajukan_permohonan(pb::Permohonan { jenis_izin: pb::JenisIzin }) -> pb::PermohonanDiterima,
    langkah { nomor_berkas, nomor_registrasi },
    dokumen: ["Gambar arsitektur", "Sertipikat tanah"],
    petugas: "ptsp-1" => "ptsp-2",
}

#[test]
fn pbg_is_fiktif_positif_and_nib_is_free() {
    let cat = catalogue().unwrap();
    let get = |id: &str| cat.iter().find(|s| s.service.as_str() == id).unwrap();
    assert_eq!(get("pbg").completion_working_days, 28);
    assert!(get("pbg").fiktif_positif);
    assert!(get("pbg").fee_idr > 0);
    assert_eq!(
        (get("nib").completion_working_days, get("nib").fee_idr, get("nib").fiktif_positif),
        (1, 0, false)
    );
}

#[tokio::test]
async fn ajukan_permohonan_opens_a_case_or_files_into_one() {
    let (rec, svc) = desk();
    let r = file(&svc, pb::JenisIzin::Pbg, "").await;
    assert_eq!(r.pin.len(), 6);
    assert!(r.nomor_registrasi.starts_with("DPM-PBG-"), "{}", r.nomor_registrasi);
    let events = rec.publisher.events();
    assert_eq!(r.event_ids, events.iter().map(|e| e.event_id().to_owned()).collect::<Vec<_>>());
    assert!(matches!(body(&events[0]), Body::CaseOpened(_)));
    assert!(matches!(body(&events[1]), Body::ApplicationFiled(f) if f.documents.len() == 2));
    assert!(events.iter().all(|e| e.subject() == "mpp.events.dpmptsp.pbg"));

    let again = file(&svc, pb::JenisIzin::Nib, &r.nomor_berkas).await;
    assert_eq!((again.nomor_berkas.as_str(), again.pin.as_str()), (r.nomor_berkas.as_str(), ""));
    assert!(again.nomor_registrasi.starts_with("DPM-NIB-"));
    assert_eq!(rec.publisher.events()[2].subject(), "mpp.events.dpmptsp.nib");
}

#[tokio::test]
async fn every_step_rpc_maps_to_its_common_event() {
    let (rec, svc) = desk();
    let filed = file(&svc, pb::JenisIzin::Pbg, "").await;
    let l = langkah(&filed);
    let some = Some(l.clone());
    let check = |rpc: &str, before: usize, id: String| {
        rec.stepped(rpc, before, &id, "pbg", &filed.nomor_berkas, &filed.nomor_registrasi, "ptsp-2")
    };

    let n = rec.count();
    let r = svc
        .minta_perbaikan(Request::new(pb::PerbaikanDokumen {
            langkah: some.clone(),
            dokumen: vec!["Perhitungan struktur".into()],
            loket: "Loket DPMPTSP, MPP / SIMBG".into(),
            catatan: "Ditandatangani tenaga ahli".into(),
        }))
        .await;
    let e = check("MintaPerbaikan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::DocumentsRequested(d)
        if d.documents == ["Perhitungan struktur"] && d.counter == "Loket DPMPTSP, MPP / SIMBG" && d.note == "Ditandatangani tenaga ahli"));

    let n = rec.count();
    let r = svc
        .terima_perbaikan(Request::new(pb::DokumenDiperbaiki {
            langkah: some.clone(),
            dokumen: vec!["Perhitungan struktur".into()],
        }))
        .await;
    let e = check("TerimaPerbaikan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::DocumentsReceived(d) if d.documents == ["Perhitungan struktur"]));

    let n = rec.count();
    let r = svc.mulai_pemeriksaan(Request::new(l.clone())).await;
    let e = check("MulaiPemeriksaan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::ReviewStarted(_)));

    let n = rec.count();
    let at = in_days(7);
    let r = svc
        .jadwalkan_peninjauan(Request::new(pb::PeninjauanLapangan {
            langkah: some.clone(),
            waktu_ms: at,
            lokasi: "Jl. Soekarno-Hatta, Kel. Anggut Atas".into(),
        }))
        .await;
    let e = check("JadwalkanPeninjauan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::AppointmentScheduled(a)
        if a.kind == "inspection" && a.at_ms == at && a.place == "Jl. Soekarno-Hatta, Kel. Anggut Atas"));

    let n = rec.count();
    let r = svc
        .tetapkan_retribusi(Request::new(pb::Skrd {
            langkah: some.clone(),
            jumlah_retribusi: 2_340_000,
            nomor_skrd: "SKRD/PBG/2026/0042".into(),
            saluran_pembayaran: "Bank daerah, kas daerah".into(),
        }))
        .await;
    let e = check("TetapkanRetribusi", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::FeeAssessed(f)
        if f.amount_idr == 2_340_000 && f.billing_code == "SKRD/PBG/2026/0042" && f.payment_channel == "Bank daerah, kas daerah"));

    let n = rec.count();
    let r = svc
        .konfirmasi_pembayaran(Request::new(pb::PembayaranRetribusi {
            langkah: some.clone(),
            jumlah_bayar: 2_340_000,
            nomor_sts: "STS-2026-1187".into(),
        }))
        .await;
    let e = check("KonfirmasiPembayaran", n, r.unwrap().into_inner().event_id);
    assert!(
        matches!(body(&e), Body::PaymentReceived(p) if p.amount_idr == 2_340_000 && p.payment_reference == "STS-2026-1187")
    );

    let n = rec.count();
    let r = svc
        .terbitkan_izin(Request::new(pb::IzinTerbit {
            langkah: some.clone(),
            nomor_izin: "SK-PBG-177101-14012026-0001".into(),
        }))
        .await;
    let e = check("TerbitkanIzin", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::Issued(i) if i.document_number == "SK-PBG-177101-14012026-0001"));

    let n = rec.count();
    let r = svc
        .tolak_permohonan(Request::new(pb::Penolakan {
            langkah: some.clone(),
            kode_alasan: "KKPR".into(),
            alasan: "Tidak sesuai rencana tata ruang".into(),
        }))
        .await;
    let e = check("TolakPermohonan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::Rejected(x) if x.reason_code == "KKPR"));

    let n = rec.count();
    let r = svc
        .batalkan_permohonan(Request::new(pb::Pembatalan {
            langkah: some.clone(),
            alasan: "Ditarik pemohon".into(),
        }))
        .await;
    let e = check("BatalkanPermohonan", n, r.unwrap().into_inner().event_id);
    assert!(matches!(body(&e), Body::Withdrawn(w) if w.reason == "Ditarik pemohon"));
}

#[tokio::test]
async fn a_nib_is_issued_with_its_13_digits() {
    let (rec, svc) = desk();
    let filed = file(&svc, pb::JenisIzin::Nib, "").await;
    let l = langkah(&filed);
    let n = rec.count();
    let r = svc
        .terbitkan_izin(Request::new(pb::IzinTerbit {
            langkah: Some(l.clone()),
            nomor_izin: "SK-PBG-1".into(),
        }))
        .await;
    rec.refused(n, r, Code::InvalidArgument, "INVALID_FIELD_VALUE", "nomor_izin");
    let r = svc
        .terbitkan_izin(Request::new(pb::IzinTerbit {
            langkah: Some(l.clone()),
            nomor_izin: "9120001234567".into(),
        }))
        .await;
    let e = rec.stepped(
        "TerbitkanIzin",
        n,
        &r.unwrap().into_inner().event_id,
        "nib",
        &filed.nomor_berkas,
        &filed.nomor_registrasi,
        "ptsp-2",
    );
    assert!(matches!(body(&e), Body::Issued(i) if i.document_number == "9120001234567"));
}

#[tokio::test]
async fn bad_requests_are_refused_with_reason_codes_and_publish_nothing() {
    let (rec, svc) = desk();
    let filed = file(&svc, pb::JenisIzin::Pbg, "").await;
    let l = langkah(&filed);
    let some = Some(l.clone());
    let n = rec.count();
    let inv = Code::InvalidArgument;

    let r = svc
        .ajukan_permohonan(Request::new(pb::Permohonan {
            nomor_berkas: String::new(),
            jenis_izin: -3,
            dokumen: vec![],
            petugas: "ptsp-1".into(),
        }))
        .await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "jenis_izin");
    let r = svc
        .mulai_pemeriksaan(Request::new(pb::Langkah { nomor_berkas: other_region_case(), ..l.clone() }))
        .await;
    rec.refused(n, r, Code::FailedPrecondition, "REGION_MISMATCH", "nomor_berkas");
    let r = svc
        .mulai_pemeriksaan(Request::new(pb::Langkah { nomor_registrasi: String::new(), ..l.clone() }))
        .await;
    rec.refused(n, r, inv, "MISSING_FIELD", "nomor_registrasi");
    let skrd = |jumlah_retribusi: i64| pb::Skrd {
        langkah: some.clone(),
        jumlah_retribusi,
        nomor_skrd: "SKRD/1".into(),
        saluran_pembayaran: "Bank daerah".into(),
    };
    let r = svc.tetapkan_retribusi(Request::new(skrd(-2_340_000))).await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "jumlah_retribusi");
    let r = svc.tetapkan_retribusi(Request::new(skrd(RETRIBUSI_IDR_MAX + 1))).await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "jumlah_retribusi");
    let r = svc.tetapkan_retribusi(Request::new(pb::Skrd { nomor_skrd: " ".into(), ..skrd(1) })).await;
    rec.refused(n, r, inv, "MISSING_FIELD", "nomor_skrd");
    let r = svc
        .konfirmasi_pembayaran(Request::new(pb::PembayaranRetribusi {
            langkah: some.clone(),
            jumlah_bayar: RETRIBUSI_IDR_MAX * 10,
            nomor_sts: String::new(),
        }))
        .await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "jumlah_bayar");
    let r = svc
        .jadwalkan_peninjauan(Request::new(pb::PeninjauanLapangan {
            langkah: some.clone(),
            waktu_ms: in_days(1000),
            lokasi: "Lokasi".into(),
        }))
        .await;
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "waktu_ms");
    let r = svc
        .terbitkan_izin(Request::new(pb::IzinTerbit { langkah: some.clone(), nomor_izin: String::new() }))
        .await;
    rec.refused(n, r, inv, "MISSING_FIELD", "nomor_izin");
    let r = svc
        .minta_perbaikan(Request::new(pb::PerbaikanDokumen {
            langkah: some.clone(),
            dokumen: vec!["ok".into(), "bad\u{202e}name".into()],
            loket: "Loket".into(),
            catatan: String::new(),
        }))
        .await;
    // U+202E (a bidirectional override) is refused by the hub's validation
    // gate, which the kit runs before anything is published.
    rec.refused(n, r, inv, "INVALID_FIELD_VALUE", "documents");
}

round_trip_test!(
    Dpmptsp,
    Shapes {
        service_id: "pbg",
        amount_max_idr: RETRIBUSI_IDR_MAX,
        billing_code: text(),
        payment_reference: optional_text(),
        document_number: text(),
    },
    |e| e
);
