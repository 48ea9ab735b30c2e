//! Mapping tests of the PDAM: each RPC against an in-memory publisher.

use mpp_core::EventBody as E;
use tonic::Code;

use super::*;
use crate::test_support::{digits, optional_text, text, Shapes};
use crate::test_support::{in_days, other_region_case};
use crate::test_support::{Refusal, Step};

mapping_tests! {
    Pdam,
    filing ajukan_pendaftaran(pb::Pendaftaran { layanan: pb::Layanan }) -> pb::PendaftaranDiterima,
    langkah { nomor_berkas, nomor_pendaftaran },
    dokumen: ["KTP-el"],
    petugas: "pdam-4" => "pdam-5",
    services: [pb::Layanan::SambunganBaru, pb::Layanan::BalikNama],
}

/// Every step RPC, and the event it must publish.
fn steps(top: &pb::Langkah) -> Vec<Step<Call>> {
    let due = in_days(14);
    let l = || Some(top.clone());
    let docs = || vec!["Denah lokasi rumah".to_owned()];
    let (alamat, survey, install) = ("Jl. Salak No. 9, Kota Bengkulu", in_days(1), in_days(6));
    let visit = |waktu_ms| pb::Kunjungan { langkah: l(), waktu_ms, alamat: alamat.into() };
    let appointment =
        |kind: &str, at_ms| E::AppointmentScheduled { kind: kind.into(), at_ms, place: alamat.into() };
    vec![
        (
            Call::MintaKelengkapan(pb::KekuranganBerkas {
                langkah: l(),
                dokumen: docs(),
                loket: "Loket PDAM, MPP".into(),
                catatan: String::new(),
            }),
            E::DocumentsRequested {
                documents: docs(),
                counter: "Loket PDAM, MPP".into(),
                note: String::new(),
            },
        ),
        (
            Call::TerimaKelengkapan(pb::BerkasDilengkapi { langkah: l(), dokumen: docs() }),
            E::DocumentsReceived { documents: docs() },
        ),
        (Call::JadwalkanSurvei(visit(survey)), appointment("survey", survey)),
        (
            Call::TerbitkanRab(pb::Rab {
                langkah: l(),
                jumlah_biaya: 1_750_000,
                nomor_rab: "RAB/2026/00123".into(),
                saluran_pembayaran: "Kasir PDAM / Bank daerah".into(),
                batas_bayar_ms: due,
            }),
            E::FeeAssessed {
                amount_idr: 1_750_000,
                billing_code: "RAB/2026/00123".into(),
                payment_channel: "Kasir PDAM / Bank daerah".into(),
                due_at_ms: due,
            },
        ),
        (
            Call::KonfirmasiPembayaran(pb::Pembayaran {
                langkah: l(),
                jumlah_bayar: 1_750_000,
                nomor_kuitansi: "KW-0099".into(),
            }),
            E::PaymentReceived { amount_idr: 1_750_000, payment_reference: "KW-0099".into() },
        ),
        (Call::JadwalkanPemasangan(visit(install)), appointment("installation", install)),
        (
            Call::AktifkanSambungan(pb::SambunganAktif { langkah: l(), nomor_sambungan: "0104512".into() }),
            E::Issued { document_number: "0104512".into() },
        ),
        (
            Call::TolakPendaftaran(pb::Penolakan {
                langkah: l(),
                kode_alasan: "LUAR-JARINGAN".into(),
                alasan: "Lokasi di luar jaringan pipa distribusi".into(),
            }),
            E::Rejected {
                reason_code: "LUAR-JARINGAN".into(),
                reason: "Lokasi di luar jaringan pipa distribusi".into(),
            },
        ),
        (
            Call::BatalkanPendaftaran(pb::Pembatalan { langkah: l(), alasan: "Pindah rumah".into() }),
            E::Withdrawn { reason: "Pindah rumah".into() },
        ),
    ]
}

/// Bad requests: each with the status code, reason code and field it
/// must be refused with.
fn refusals(l: &pb::Langkah) -> Vec<Refusal<Call>> {
    let inv = Code::InvalidArgument;
    let filing = |layanan: pb::Layanan, dokumen: Vec<String>| {
        Call::AjukanPendaftaran(pb::Pendaftaran {
            nomor_berkas: String::new(),
            layanan: layanan as i32,
            dokumen,
            petugas: "pdam-4".into(),
        })
    };
    let survei = |langkah: pb::Langkah| {
        Call::JadwalkanSurvei(pb::Kunjungan {
            langkah: Some(langkah),
            waktu_ms: in_days(1),
            alamat: "x".into(),
        })
    };
    let rab = |jumlah_biaya: i64, nomor_rab: &str| {
        Call::TerbitkanRab(pb::Rab {
            langkah: Some(l.clone()),
            jumlah_biaya,
            nomor_rab: nomor_rab.into(),
            saluran_pembayaran: "Kasir PDAM".into(),
            batas_bayar_ms: 0,
        })
    };
    vec![
        (filing(pb::Layanan::Unspecified, vec![]), inv, "INVALID_FIELD_VALUE", "layanan"),
        (filing(pb::Layanan::SambunganBaru, vec!["x".to_owned(); 33]), inv, "FIELD_TOO_LONG", "dokumen"),
        (
            survei(pb::Langkah { nomor_berkas: other_region_case(), ..l.clone() }),
            Code::FailedPrecondition,
            "REGION_MISMATCH",
            "langkah.nomor_berkas",
        ),
        (
            survei(pb::Langkah { nomor_pendaftaran: "PDAM-SB-".into(), ..l.clone() }),
            inv,
            "MALFORMED_APPLICATION_ID",
            "nomor_pendaftaran",
        ),
        (rab(-1, "RAB/1"), inv, "INVALID_FIELD_VALUE", "jumlah_biaya"),
        (rab(BIAYA_IDR_MAX + 1, "RAB/1"), inv, "INVALID_FIELD_VALUE", "jumlah_biaya"),
        (rab(1_500_000, ""), inv, "MISSING_FIELD", "nomor_rab"),
        (
            Call::KonfirmasiPembayaran(pb::Pembayaran {
                langkah: Some(l.clone()),
                jumlah_bayar: 0,
                nomor_kuitansi: String::new(),
            }),
            inv,
            "MISSING_FIELD",
            "jumlah_bayar",
        ),
        (
            Call::AktifkanSambungan(pb::SambunganAktif {
                langkah: Some(l.clone()),
                nomor_sambungan: "AB-12".into(),
            }),
            inv,
            "INVALID_FIELD_VALUE",
            "nomor_sambungan",
        ),
        (
            Call::BatalkanPendaftaran(pb::Pembatalan {
                langkah: Some(pb::Langkah { petugas: String::new(), ..l.clone() }),
                alasan: String::new(),
            }),
            inv,
            "MISSING_FIELD",
            "langkah.petugas",
        ),
    ]
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
