//! Mapping tests of DPMPTSP: each RPC against an in-memory publisher.

use mpp_core::EventBody as E;
use tonic::Code;

use super::*;
use crate::test_support::{in_days, other_region_case};
use crate::test_support::{optional_text, text, Shapes};
use crate::test_support::{Refusal, Step};

mapping_tests! {
    Dpmptsp,
    filing ajukan_permohonan(pb::Permohonan { jenis_izin: pb::JenisIzin }) -> pb::PermohonanDiterima,
    langkah { nomor_berkas, nomor_registrasi },
    dokumen: ["Gambar arsitektur", "Sertipikat tanah"],
    petugas: "ptsp-1" => "ptsp-2",
    services: [pb::JenisIzin::Pbg, pb::JenisIzin::Nib],
}

/// Every step RPC, and the event it must publish.
fn steps(top: &pb::Langkah) -> Vec<Step<Call>> {
    let due = in_days(14);
    let l = || Some(top.clone());
    let struktur = || vec!["Perhitungan struktur".to_owned()];
    let (loket, tenaga_ahli) = ("Loket DPMPTSP, MPP / SIMBG", "Ditandatangani tenaga ahli");
    let (at, lokasi) = (in_days(7), "Jl. Soekarno-Hatta, Kel. Anggut Atas");
    let (skrd, kas, sts) = ("SKRD/PBG/2026/0042", "Bank daerah, kas daerah", "STS-2026-1187");
    vec![
        (
            Call::MintaPerbaikan(pb::PerbaikanDokumen {
                langkah: l(),
                dokumen: struktur(),
                loket: loket.into(),
                catatan: tenaga_ahli.into(),
            }),
            E::DocumentsRequested { documents: struktur(), counter: loket.into(), note: tenaga_ahli.into() },
        ),
        (
            Call::TerimaPerbaikan(pb::DokumenDiperbaiki { langkah: l(), dokumen: struktur() }),
            E::DocumentsReceived { documents: struktur() },
        ),
        (Call::MulaiPemeriksaan(top.clone()), E::ReviewStarted),
        (
            Call::JadwalkanPeninjauan(pb::PeninjauanLapangan {
                langkah: l(),
                waktu_ms: at,
                lokasi: lokasi.into(),
            }),
            E::AppointmentScheduled { kind: "inspection".into(), at_ms: at, place: lokasi.into() },
        ),
        (
            Call::TetapkanRetribusi(pb::Skrd {
                langkah: l(),
                jumlah_retribusi: 2_340_000,
                nomor_skrd: skrd.into(),
                saluran_pembayaran: kas.into(),
                jatuh_tempo_ms: due,
            }),
            E::FeeAssessed {
                amount_idr: 2_340_000,
                billing_code: skrd.into(),
                payment_channel: kas.into(),
                due_at_ms: due,
            },
        ),
        (
            Call::KonfirmasiPembayaran(pb::PembayaranRetribusi {
                langkah: l(),
                jumlah_bayar: 2_340_000,
                nomor_sts: sts.into(),
            }),
            E::PaymentReceived { amount_idr: 2_340_000, payment_reference: sts.into() },
        ),
        (
            Call::TerbitkanIzin(pb::IzinTerbit {
                langkah: l(),
                nomor_izin: "SK-PBG-177101-14012026-0001".into(),
            }),
            E::Issued { document_number: "SK-PBG-177101-14012026-0001".into() },
        ),
        (
            Call::TolakPermohonan(pb::Penolakan {
                langkah: l(),
                kode_alasan: "KKPR".into(),
                alasan: "Tidak sesuai rencana tata ruang".into(),
            }),
            E::Rejected { reason_code: "KKPR".into(), reason: "Tidak sesuai rencana tata ruang".into() },
        ),
        (
            Call::BatalkanPermohonan(pb::Pembatalan { langkah: l(), alasan: "Ditarik pemohon".into() }),
            E::Withdrawn { reason: "Ditarik pemohon".into() },
        ),
    ]
}

#[tokio::test]
async fn a_nib_is_issued_with_its_13_digits() {
    let (rec, svc) = desk();
    let filed = file(&svc, pb::JenisIzin::Nib, "").await;
    let izin = |nomor_izin: &str| {
        Call::TerbitkanIzin(pb::IzinTerbit { langkah: Some(langkah(&filed)), nomor_izin: nomor_izin.into() })
    };
    let not_a_nib = vec![(izin("SK-PBG-1"), Code::InvalidArgument, "INVALID_FIELD_VALUE", "nomor_izin")];
    check_refusals(&rec, &svc, not_a_nib).await;
    let nib = vec![(izin("9120001234567"), E::Issued { document_number: "9120001234567".into() })];
    check_steps(&rec, &svc, &filed, nib).await;
}

/// Bad requests: each with the status code, reason code and field it
/// must be refused with.
fn refusals(l: &pb::Langkah) -> Vec<Refusal<Call>> {
    let inv = Code::InvalidArgument;
    let unknown_izin = Call::AjukanPermohonan(pb::Permohonan {
        nomor_berkas: String::new(),
        jenis_izin: -3,
        dokumen: vec![],
        petugas: "ptsp-1".into(),
    });
    let skrd = |jumlah_retribusi: i64| pb::Skrd {
        langkah: Some(l.clone()),
        jumlah_retribusi,
        nomor_skrd: "SKRD/1".into(),
        saluran_pembayaran: "Bank daerah".into(),
        jatuh_tempo_ms: 0,
    };
    let bayar = pb::PembayaranRetribusi {
        langkah: Some(l.clone()),
        jumlah_bayar: RETRIBUSI_IDR_MAX * 10,
        nomor_sts: String::new(),
    };
    let peninjauan =
        pb::PeninjauanLapangan { langkah: Some(l.clone()), waktu_ms: in_days(1000), lokasi: "Lokasi".into() };
    // U+202E (a bidirectional override) is refused by the hub's validation
    // gate, which the kit runs before anything is published.
    let bidi = pb::PerbaikanDokumen {
        langkah: Some(l.clone()),
        dokumen: vec!["ok".into(), "bad\u{202e}name".into()],
        loket: "Loket".into(),
        catatan: String::new(),
    };
    vec![
        (unknown_izin, inv, "INVALID_FIELD_VALUE", "jenis_izin"),
        (
            Call::MulaiPemeriksaan(pb::Langkah { nomor_berkas: other_region_case(), ..l.clone() }),
            Code::FailedPrecondition,
            "REGION_MISMATCH",
            "nomor_berkas",
        ),
        (
            Call::MulaiPemeriksaan(pb::Langkah { nomor_registrasi: String::new(), ..l.clone() }),
            inv,
            "MISSING_FIELD",
            "nomor_registrasi",
        ),
        (Call::TetapkanRetribusi(skrd(-2_340_000)), inv, "INVALID_FIELD_VALUE", "jumlah_retribusi"),
        (
            Call::TetapkanRetribusi(skrd(RETRIBUSI_IDR_MAX + 1)),
            inv,
            "INVALID_FIELD_VALUE",
            "jumlah_retribusi",
        ),
        (
            Call::TetapkanRetribusi(pb::Skrd { nomor_skrd: " ".into(), ..skrd(1) }),
            inv,
            "MISSING_FIELD",
            "nomor_skrd",
        ),
        (Call::KonfirmasiPembayaran(bayar), inv, "INVALID_FIELD_VALUE", "jumlah_bayar"),
        (Call::JadwalkanPeninjauan(peninjauan), inv, "INVALID_FIELD_VALUE", "waktu_ms"),
        (
            Call::TerbitkanIzin(pb::IzinTerbit { langkah: Some(l.clone()), nomor_izin: String::new() }),
            inv,
            "MISSING_FIELD",
            "nomor_izin",
        ),
        (Call::MintaPerbaikan(bidi), inv, "INVALID_FIELD_VALUE", "documents"),
    ]
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
