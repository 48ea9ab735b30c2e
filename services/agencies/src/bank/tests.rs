//! Mapping tests of the bank's desk: each RPC against an in-memory publisher.

use mpp_core::EventBody as E;
use tonic::Code;

use super::*;
use crate::test_support::{digits, optional_text, Shapes};
use crate::test_support::{in_days, typo};
use crate::test_support::{Refusal, Step};

mapping_tests! {
    Bank,
    filing ajukan_permohonan(pb::PermohonanNasabah { produk: pb::Produk }) -> pb::PermohonanDiterima,
    langkah { nomor_berkas, nomor_referensi },
    dokumen: ["KTP-el"],
    petugas: "cs-21" => "cs-22",
    services: [pb::Produk::Tabungan, pb::Produk::Kur],
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

/// Every step RPC, and the event it must publish.
fn steps(top: &pb::Langkah) -> Vec<Step<Call>> {
    let due = in_days(14);
    let l = || Some(top.clone());
    let npwp = || vec!["NPWP".to_owned()];
    let (meja, teller) = ("Meja Bank Mitra Swasta, MPP", "Teller Bank Mitra Swasta, MPP");
    let (at, warung) = (in_days(2), "Warung kelontong, Pasar Minggu");
    vec![
        (Call::VerifikasiDataNasabah(top.clone()), E::ReviewStarted),
        (
            Call::MintaDokumen(pb::DokumenKurang {
                langkah: l(),
                dokumen: npwp(),
                meja_layanan: meja.into(),
                catatan: String::new(),
            }),
            E::DocumentsRequested { documents: npwp(), counter: meja.into(), note: String::new() },
        ),
        (
            Call::TerimaDokumen(pb::DokumenDiterima { langkah: l(), dokumen: npwp() }),
            E::DocumentsReceived { documents: npwp() },
        ),
        (
            Call::JadwalkanSurveiUsaha(pb::SurveiUsaha {
                langkah: l(),
                waktu_ms: at,
                lokasi_usaha: warung.into(),
            }),
            E::AppointmentScheduled { kind: "survey".into(), at_ms: at, place: warung.into() },
        ),
        // The deposit has no billing code.
        (
            Call::TagihSetoranAwal(pb::TagihanSetoranAwal {
                langkah: l(),
                jumlah_setoran: 100_000,
                saluran_setoran: teller.into(),
                batas_setor_ms: due,
            }),
            E::FeeAssessed {
                amount_idr: 100_000,
                payment_channel: teller.into(),
                billing_code: String::new(),
                due_at_ms: due,
            },
        ),
        (
            Call::TerimaSetoranAwal(pb::SetoranAwal {
                langkah: l(),
                jumlah_setoran: 100_000,
                nomor_transaksi: "TRX-778812".into(),
            }),
            E::PaymentReceived { amount_idr: 100_000, payment_reference: "TRX-778812".into() },
        ),
        // The account number is published masked.
        (
            Call::AktifkanRekening(pb::RekeningAktif {
                langkah: l(),
                nomor_rekening: "0081234567890".into(),
            }),
            E::Issued { document_number: "*********7890".into() },
        ),
        (Call::SerahkanKartu(top.clone()), E::Collected),
        (
            Call::TolakPermohonan(pb::Penolakan {
                langkah: l(),
                kode_alasan: "CDD-01".into(),
                alasan: "Data nasabah tidak dapat diverifikasi".into(),
            }),
            E::Rejected {
                reason_code: "CDD-01".into(),
                reason: "Data nasabah tidak dapat diverifikasi".into(),
            },
        ),
        (
            Call::BatalkanPermohonan(pb::Pembatalan { langkah: l(), alasan: String::new() }),
            E::Withdrawn { reason: String::new() },
        ),
    ]
}

#[tokio::test]
async fn the_full_account_number_is_never_published() {
    let (rec, svc) = desk();
    let filed = file(&svc, pb::Produk::Tabungan, "").await;
    let published = check_steps(&rec, &svc, &filed, steps(&langkah(&filed))).await;
    assert!(published.iter().all(|e| !e.encode().windows(9).any(|w| w == b"008123456")));
}

/// Bad requests: each with the status code, reason code and field it
/// must be refused with.
fn refusals(l: &pb::Langkah) -> Vec<Refusal<Call>> {
    let inv = Code::InvalidArgument;
    let unspecified = Call::AjukanPermohonan(pb::PermohonanNasabah {
        nomor_berkas: String::new(),
        produk: pb::Produk::Unspecified as i32,
        dokumen: vec![],
        petugas: "cs-21".into(),
    });
    let verifikasi =
        |nomor_berkas: String| Call::VerifikasiDataNasabah(pb::Langkah { nomor_berkas, ..l.clone() });
    let no_meja = pb::DokumenKurang {
        langkah: Some(l.clone()),
        dokumen: vec!["NPWP".into()],
        meja_layanan: String::new(),
        catatan: String::new(),
    };
    let setoran = |jumlah_setoran: i64| pb::TagihanSetoranAwal {
        langkah: Some(l.clone()),
        jumlah_setoran,
        saluran_setoran: "Teller".into(),
        batas_setor_ms: 0,
    };
    let no_teller = pb::TagihanSetoranAwal { saluran_setoran: String::new(), ..setoran(100_000) };
    let negative =
        pb::SetoranAwal { langkah: Some(l.clone()), jumlah_setoran: -5, nomor_transaksi: String::new() };
    let survei = pb::SurveiUsaha { langkah: Some(l.clone()), waktu_ms: 1_000, lokasi_usaha: "Pasar".into() };
    vec![
        (unspecified, inv, "INVALID_FIELD_VALUE", "produk"),
        (verifikasi(typo(&l.nomor_berkas)), inv, "BAD_CHECK_DIGIT", "nomor_berkas"),
        (verifikasi("abc".into()), inv, "MALFORMED_TRACKING_NUMBER", "nomor_berkas"),
        (Call::MintaDokumen(no_meja), inv, "MISSING_FIELD", "meja_layanan"),
        (Call::TagihSetoranAwal(setoran(-100_000)), inv, "INVALID_FIELD_VALUE", "jumlah_setoran"),
        (Call::TagihSetoranAwal(setoran(SETORAN_IDR_MAX + 1)), inv, "INVALID_FIELD_VALUE", "jumlah_setoran"),
        (Call::TagihSetoranAwal(no_teller), inv, "MISSING_FIELD", "saluran_setoran"),
        (Call::TerimaSetoranAwal(negative), inv, "INVALID_FIELD_VALUE", "jumlah_setoran"),
        (
            Call::AktifkanRekening(pb::RekeningAktif {
                langkah: Some(l.clone()),
                nomor_rekening: "12".into(),
            }),
            inv,
            "INVALID_FIELD_VALUE",
            "nomor_rekening",
        ),
        (Call::JadwalkanSurveiUsaha(survei), inv, "INVALID_FIELD_VALUE", "waktu_ms"),
        (
            Call::SerahkanKartu(pb::Langkah { nomor_referensi: "BNK-TAB-ABC DEF".into(), ..l.clone() }),
            inv,
            "MALFORMED_APPLICATION_ID",
            "nomor_referensi",
        ),
    ]
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
            EventBody::FeeAssessed { amount_idr, payment_channel, billing_code: String::new(), due_at_ms: 0 }
        }
        EventBody::Issued { document_number } => {
            EventBody::Issued { document_number: masked_account("x", &document_number).unwrap() }
        }
        other => other,
    }
);
