//! Mapping tests of the land office: each RPC against an in-memory publisher.

use mpp_core::EventBody as E;
use tonic::Code;

use super::*;
use crate::test_support::{digits, ntpn, optional_text, Shapes};
use crate::test_support::{in_days, other_region_case, typo};
use crate::test_support::{Refusal, Step};

mapping_tests! {
    Bpn,
    filing daftarkan_berkas(pb::PendaftaranBerkas { layanan: pb::LayananPertanahan }) -> pb::BerkasTerdaftar,
    langkah { nomor_berkas_mpp, nomor_permohonan },
    dokumen: ["Formulir permohonan"],
    petugas: "bpn-02" => "bpn-03",
    services: [pb::LayananPertanahan::Pengukuran, pb::LayananPertanahan::PeralihanHak, pb::LayananPertanahan::Pengecekan],
}

/// Every step RPC, and the event it must publish.
fn steps(top: &pb::Langkah) -> Vec<Step<Call>> {
    let due = in_days(14);
    let l = || Some(top.clone());
    let tanda_batas = || vec!["Surat pernyataan tanda batas".to_owned()];
    let (kode, simponi, ntpn) =
        ("820260115000777", "Bank persepsi / Kantor Pos (SIMPONI)", "A1B2C3D4E5F6G7H8");
    let (at, lokasi) = (in_days(5), "Kel. Padang Jati, patok utara");
    vec![
        (
            Call::MintaKelengkapan(pb::KekuranganBerkas {
                langkah: l(),
                dokumen: tanda_batas(),
                loket: "Loket BPN, MPP lantai 1".into(),
                catatan: String::new(),
            }),
            E::DocumentsRequested {
                documents: tanda_batas(),
                counter: "Loket BPN, MPP lantai 1".into(),
                note: String::new(),
            },
        ),
        (
            Call::TerimaKelengkapan(pb::BerkasDilengkapi { langkah: l(), dokumen: vec![] }),
            E::DocumentsReceived { documents: vec![] },
        ),
        (Call::MulaiPemeriksaan(top.clone()), E::ReviewStarted),
        (
            Call::TerbitkanSps(pb::SuratPerintahSetor {
                langkah: l(),
                jumlah_pnbp: 1_250_000,
                kode_billing: kode.into(),
                saluran_pembayaran: simponi.into(),
                batas_bayar_ms: due,
            }),
            E::FeeAssessed {
                amount_idr: 1_250_000,
                billing_code: kode.into(),
                payment_channel: simponi.into(),
                due_at_ms: due,
            },
        ),
        (
            Call::KonfirmasiPembayaran(pb::PembayaranPnbp {
                langkah: l(),
                jumlah_pnbp: 1_250_000,
                ntpn: ntpn.into(),
            }),
            E::PaymentReceived { amount_idr: 1_250_000, payment_reference: ntpn.into() },
        ),
        (
            Call::JadwalkanPengukuran(pb::JadwalPengukuran {
                langkah: l(),
                waktu_ms: at,
                lokasi: lokasi.into(),
            }),
            E::AppointmentScheduled { kind: "survey".into(), at_ms: at, place: lokasi.into() },
        ),
        (
            Call::TerbitkanProduk(pb::ProdukTerbit { langkah: l(), nomor_produk: "PBT 00123/2026".into() }),
            E::Issued { document_number: "PBT 00123/2026".into() },
        ),
        (Call::SerahkanProduk(top.clone()), E::Collected),
        (
            Call::TolakBerkas(pb::Penolakan {
                langkah: l(),
                kode_alasan: String::new(),
                alasan: "Objek tanah dalam sengketa".into(),
            }),
            E::Rejected { reason_code: String::new(), reason: "Objek tanah dalam sengketa".into() },
        ),
        (
            Call::BatalkanBerkas(pb::Pembatalan { langkah: l(), alasan: String::new() }),
            E::Withdrawn { reason: String::new() },
        ),
    ]
}

/// Bad requests: each with the status code, reason code and field it
/// must be refused with.
fn refusals(l: &pb::Langkah) -> Vec<Refusal<Call>> {
    let inv = Code::InvalidArgument;
    let filing = |nomor_berkas_mpp: String, layanan: pb::LayananPertanahan, petugas: &str| {
        Call::DaftarkanBerkas(pb::PendaftaranBerkas {
            nomor_berkas_mpp,
            layanan: layanan as i32,
            dokumen: vec![],
            petugas: petugas.into(),
        })
    };
    let cek = pb::LayananPertanahan::Pengecekan;
    let sps = |jumlah_pnbp: i64| pb::SuratPerintahSetor {
        langkah: Some(l.clone()),
        jumlah_pnbp,
        kode_billing: "820260115000777".into(),
        saluran_pembayaran: "SIMPONI".into(),
        batas_bayar_ms: 0,
    };
    let app = |nomor_permohonan: &str| pb::Langkah { nomor_permohonan: nomor_permohonan.into(), ..l.clone() };
    let no_documents = pb::KekuranganBerkas {
        langkah: Some(l.clone()),
        dokumen: vec![],
        loket: "Loket BPN".into(),
        catatan: String::new(),
    };
    vec![
        (
            filing(String::new(), pb::LayananPertanahan::Unspecified, "bpn-02"),
            inv,
            "INVALID_FIELD_VALUE",
            "layanan",
        ),
        (
            filing(other_region_case(), cek, "bpn-02"),
            Code::FailedPrecondition,
            "REGION_MISMATCH",
            "nomor_berkas_mpp",
        ),
        (filing(String::new(), cek, ""), inv, "MISSING_FIELD", "petugas"),
        (
            Call::MulaiPemeriksaan(pb::Langkah { nomor_berkas_mpp: typo(&l.nomor_berkas_mpp), ..l.clone() }),
            inv,
            "BAD_CHECK_DIGIT",
            "nomor_berkas_mpp",
        ),
        (Call::SerahkanProduk(app("IMG-PASPOR-ABC")), inv, "MALFORMED_APPLICATION_ID", "nomor_permohonan"),
        (Call::SerahkanProduk(app("BPN-XYZ-ABC")), inv, "MALFORMED_APPLICATION_ID", "nomor_permohonan"),
        (Call::TerbitkanSps(sps(-50_000)), inv, "INVALID_FIELD_VALUE", "jumlah_pnbp"),
        (Call::TerbitkanSps(sps(PNBP_IDR_MAX + 1)), inv, "INVALID_FIELD_VALUE", "jumlah_pnbp"),
        (
            Call::TerbitkanSps(pb::SuratPerintahSetor { langkah: None, ..sps(50_000) }),
            inv,
            "MISSING_FIELD",
            "langkah",
        ),
        (
            Call::TerbitkanSps(pb::SuratPerintahSetor { kode_billing: String::new(), ..sps(50_000) }),
            inv,
            "MISSING_FIELD",
            "kode_billing",
        ),
        (
            Call::KonfirmasiPembayaran(pb::PembayaranPnbp {
                langkah: Some(l.clone()),
                jumlah_pnbp: -1,
                ntpn: "A1B2C3D4E5F6G7H8".into(),
            }),
            inv,
            "INVALID_FIELD_VALUE",
            "jumlah_pnbp",
        ),
        (
            Call::JadwalkanPengukuran(pb::JadwalPengukuran {
                langkah: Some(l.clone()),
                waktu_ms: 0,
                lokasi: "Kel. Padang Jati".into(),
            }),
            inv,
            "MISSING_FIELD",
            "waktu_ms",
        ),
        (Call::MintaKelengkapan(no_documents), inv, "MISSING_FIELD", "dokumen"),
        (
            Call::TerbitkanProduk(pb::ProdukTerbit {
                langkah: Some(l.clone()),
                nomor_produk: "x".repeat(501),
            }),
            inv,
            "FIELD_TOO_LONG",
            "nomor_produk",
        ),
        (
            Call::TolakBerkas(pb::Penolakan {
                langkah: Some(l.clone()),
                kode_alasan: "B1".into(),
                alasan: String::new(),
            }),
            inv,
            "MISSING_FIELD",
            "alasan",
        ),
    ]
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
