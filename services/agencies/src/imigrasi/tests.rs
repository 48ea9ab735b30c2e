//! Mapping tests of Kantor Imigrasi: each RPC against an in-memory publisher.

use mpp_core::EventBody as E;
use tonic::Code;

use super::*;
use crate::test_support::{digits, ntpn, Shapes};
use crate::test_support::{in_days, other_region_case, typo};
use crate::test_support::{Refusal, Step};

mapping_tests! {
    Imigrasi,
    filing ajukan_permohonan(pb::Permohonan { jenis_paspor: pb::JenisPaspor }) -> pb::PermohonanDiterima,
    langkah { nomor_berkas, nomor_permohonan },
    dokumen: ["KTP-el", "Kartu Keluarga"],
    petugas: "img-07" => "img-08",
    services: [pb::JenisPaspor::Biasa, pb::JenisPaspor::Elektronik],
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

/// Every step RPC, and the event it must publish.
fn steps(top: &pb::Langkah) -> Vec<Step<Call>> {
    let due = in_days(14);
    let l = || Some(top.clone());
    let akta = || vec!["Akta kelahiran".to_owned()];
    let (at, ruang) = (in_days(3), "Ruang wawancara Imigrasi");
    let (kode, simponi, ntpn) =
        ("820260114000123", "Bank persepsi / Kantor Pos (SIMPONI)", "0A1B2C3D4E5F6G7H");
    vec![
        (
            Call::MintaKelengkapan(pb::KekuranganBerkas {
                langkah: l(),
                dokumen: akta(),
                loket: "Loket Imigrasi, MPP lantai 2".into(),
                catatan: "Bawa asli".into(),
            }),
            E::DocumentsRequested {
                documents: akta(),
                counter: "Loket Imigrasi, MPP lantai 2".into(),
                note: "Bawa asli".into(),
            },
        ),
        (
            Call::TerimaKelengkapan(pb::BerkasDilengkapi { langkah: l(), dokumen: akta() }),
            E::DocumentsReceived { documents: akta() },
        ),
        (
            Call::JadwalkanWawancara(pb::JadwalWawancara {
                langkah: l(),
                waktu_ms: at,
                tempat: ruang.into(),
            }),
            E::AppointmentScheduled { kind: "interview".into(), at_ms: at, place: ruang.into() },
        ),
        (Call::MulaiWawancara(top.clone()), E::ReviewStarted),
        (
            Call::TerbitkanKodeBilling(pb::KodeBilling {
                langkah: l(),
                jumlah_pnbp: 350_000,
                kode_billing: kode.into(),
                saluran_pembayaran: simponi.into(),
                berlaku_sampai_ms: due,
            }),
            E::FeeAssessed {
                amount_idr: 350_000,
                billing_code: kode.into(),
                payment_channel: simponi.into(),
                due_at_ms: due,
            },
        ),
        (
            Call::KonfirmasiPembayaran(pb::PembayaranPnbp {
                langkah: l(),
                jumlah_pnbp: 350_000,
                ntpn: ntpn.into(),
            }),
            E::PaymentReceived { amount_idr: 350_000, payment_reference: ntpn.into() },
        ),
        (
            Call::CetakPaspor(pb::PasporDicetak { langkah: l(), nomor_paspor: "X1234567".into() }),
            E::Issued { document_number: "X1234567".into() },
        ),
        (Call::SerahkanPaspor(top.clone()), E::Collected),
        (
            Call::TolakPermohonan(pb::Penolakan {
                langkah: l(),
                kode_alasan: "TL-03".into(),
                alasan: "Data tidak sesuai".into(),
            }),
            E::Rejected { reason_code: "TL-03".into(), reason: "Data tidak sesuai".into() },
        ),
        (
            Call::BatalkanPermohonan(pb::Pembatalan {
                langkah: l(),
                alasan: "Pemohon tidak hadir wawancara".into(),
            }),
            E::Withdrawn { reason: "Pemohon tidak hadir wawancara".into() },
        ),
    ]
}

/// Bad requests: each with the status code, reason code and field it
/// must be refused with.
fn refusals(l: &pb::Langkah) -> Vec<Refusal<Call>> {
    let inv = Code::InvalidArgument;
    let filing = |nomor_berkas: String, jenis_paspor: i32| {
        Call::AjukanPermohonan(pb::Permohonan {
            nomor_berkas,
            jenis_paspor,
            dokumen: vec![],
            petugas: "img-07".into(),
        })
    };
    let biasa = pb::JenisPaspor::Biasa as i32;
    let billing = |jumlah_pnbp: i64, kode_billing: &str| pb::KodeBilling {
        langkah: Some(l.clone()),
        jumlah_pnbp,
        kode_billing: kode_billing.into(),
        saluran_pembayaran: "SIMPONI".into(),
        berlaku_sampai_ms: 0,
    };
    let kode = "820260114000123";
    let no_channel = pb::KodeBilling { saluran_pembayaran: String::new(), ..billing(350_000, kode) };
    let wawancara = |waktu_ms: i64, tempat: &str| {
        Call::JadwalkanWawancara(pb::JadwalWawancara {
            langkah: Some(l.clone()),
            waktu_ms,
            tempat: tempat.into(),
        })
    };
    let no_langkah = pb::KekuranganBerkas {
        langkah: None,
        dokumen: vec!["x".into()],
        loket: "Loket".into(),
        catatan: String::new(),
    };
    let (typo_case, other_region) = (typo(&l.nomor_berkas), other_region_case());
    vec![
        (
            filing(String::new(), pb::JenisPaspor::Unspecified as i32),
            inv,
            "INVALID_FIELD_VALUE",
            "jenis_paspor",
        ),
        (filing(String::new(), 99), inv, "INVALID_FIELD_VALUE", "jenis_paspor"),
        (filing(typo(&l.nomor_berkas), biasa), inv, "BAD_CHECK_DIGIT", "nomor_berkas"),
        (Call::MintaKelengkapan(no_langkah), inv, "MISSING_FIELD", "langkah"),
        (
            Call::MulaiWawancara(pb::Langkah { nomor_berkas: typo_case, ..l.clone() }),
            inv,
            "BAD_CHECK_DIGIT",
            "nomor_berkas",
        ),
        (
            Call::MulaiWawancara(pb::Langkah { nomor_berkas: other_region, ..l.clone() }),
            Code::FailedPrecondition,
            "REGION_MISMATCH",
            "nomor_berkas",
        ),
        (
            Call::SerahkanPaspor(pb::Langkah { nomor_permohonan: "DKC-KK-ABC".into(), ..l.clone() }),
            inv,
            "MALFORMED_APPLICATION_ID",
            "nomor_permohonan",
        ),
        (
            Call::SerahkanPaspor(pb::Langkah { petugas: "Budi Santoso".into(), ..l.clone() }),
            inv,
            "MALFORMED_OFFICER",
            "petugas",
        ),
        (Call::TerbitkanKodeBilling(billing(-350_000, kode)), inv, "INVALID_FIELD_VALUE", "jumlah_pnbp"),
        (
            Call::TerbitkanKodeBilling(billing(PNBP_IDR_MAX + 1, kode)),
            inv,
            "INVALID_FIELD_VALUE",
            "jumlah_pnbp",
        ),
        (Call::TerbitkanKodeBilling(billing(0, kode)), inv, "MISSING_FIELD", "jumlah_pnbp"),
        (Call::TerbitkanKodeBilling(billing(350_000, "KB-123")), inv, "INVALID_FIELD_VALUE", "kode_billing"),
        (Call::TerbitkanKodeBilling(no_channel), inv, "MISSING_FIELD", "saluran_pembayaran"),
        (
            Call::KonfirmasiPembayaran(pb::PembayaranPnbp {
                langkah: Some(l.clone()),
                jumlah_pnbp: 350_000,
                ntpn: "lunas".into(),
            }),
            inv,
            "INVALID_FIELD_VALUE",
            "ntpn",
        ),
        (wawancara(in_days(3 * 366), "Ruang wawancara"), inv, "INVALID_FIELD_VALUE", "waktu_ms"),
        (wawancara(in_days(1), ""), inv, "MISSING_FIELD", "tempat"),
        (
            Call::CetakPaspor(pb::PasporDicetak { langkah: Some(l.clone()), nomor_paspor: "12345".into() }),
            inv,
            "INVALID_FIELD_VALUE",
            "nomor_paspor",
        ),
        (
            Call::TolakPermohonan(pb::Penolakan {
                langkah: Some(l.clone()),
                kode_alasan: String::new(),
                alasan: "x".repeat(501),
            }),
            inv,
            "FIELD_TOO_LONG",
            "alasan",
        ),
        (
            Call::BatalkanPermohonan(pb::Pembatalan { langkah: Some(l.clone()), alasan: "a\nb".into() }),
            inv,
            "INVALID_FIELD_VALUE",
            "alasan",
        ),
    ]
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
