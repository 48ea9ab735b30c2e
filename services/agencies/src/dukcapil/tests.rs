//! Mapping tests of Disdukcapil: each RPC against an in-memory publisher.

use mpp_agency_kit::ids::new_application_id;
use mpp_core::ids::ApplicationId;
use mpp_core::{EventBody as E, ReasonCode};
use tonic::Code;

use super::*;
use crate::test_support::{optional_text, other_region_case, reason, text, typo, Shapes};
use crate::test_support::{Refusal, Step};

mapping_tests! {
    Dukcapil,
    filing ajukan_permohonan(pb::Permohonan { layanan: pb::Layanan }) -> pb::PermohonanDiterima,
    langkah { nomor_berkas, nomor_permohonan },
    dokumen: ["Formulir F-1.01"],
    petugas: "ptg-07" => "ptg-08",
    services: [pb::Layanan::Kk, pb::Layanan::AktaLahir],
}

#[test]
fn every_layanan_is_mapped_and_unspecified_is_refused() {
    assert_eq!(INFO.service_by_value(pb::Layanan::Kk as i32).unwrap().service_id, "kk");
    assert_eq!(INFO.service_by_value(pb::Layanan::KtpEl as i32).unwrap().service_id, "ktp-el");
    assert_eq!(INFO.service_by_value(pb::Layanan::AktaLahir as i32).unwrap().service_id, "akta-lahir");
    for bad in [pb::Layanan::Unspecified as i32, 99] {
        let s = Status::from(INFO.service_by_value(bad).unwrap_err());
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(reason(&s), "INVALID_FIELD_VALUE");
    }
    // Every catalogue entry has a layanan and vice versa.
    let cat = INFO.builtin_standards().unwrap();
    assert_eq!(cat.len(), INFO.services.len());
    for info in INFO.services {
        assert!(cat.iter().any(|s| s.service.as_str() == info.service_id), "{info:?}");
    }
}

#[test]
fn application_ids_name_their_layanan() {
    for info in INFO.services {
        let id = new_application_id(&INFO.application_prefix(info)).unwrap();
        assert_eq!(INFO.service_of_application("nomor_permohonan", &id).unwrap(), info);
    }
    for bad in ["DKC-KK-", "DKC-XX-ABC", "KK-ABC", "DKC-KK", "IMG-KK-ABC"] {
        let id = ApplicationId::parse(bad).unwrap();
        let err = INFO.service_of_application("nomor_permohonan", &id).unwrap_err();
        assert_eq!(err.reason_code(), ReasonCode::MalformedApplicationId, "{bad}");
    }
}

/// Every step RPC, and the event it must publish.
fn steps(top: &pb::Langkah) -> Vec<Step<Call>> {
    let l = || Some(top.clone());
    let buku_nikah = || vec!["Buku nikah".to_owned()];
    vec![
        (
            Call::MintaKelengkapan(pb::KekuranganBerkas {
                langkah: l(),
                dokumen: buku_nikah(),
                loket: "Loket 3 Disdukcapil".into(),
                catatan: "Bawa asli".into(),
            }),
            E::DocumentsRequested {
                documents: buku_nikah(),
                counter: "Loket 3 Disdukcapil".into(),
                note: "Bawa asli".into(),
            },
        ),
        (
            Call::TerimaKelengkapan(pb::BerkasDilengkapi { langkah: l(), dokumen: buku_nikah() }),
            E::DocumentsReceived { documents: buku_nikah() },
        ),
        (Call::MulaiVerifikasi(top.clone()), E::ReviewStarted),
        (
            Call::CetakDokumen(pb::DokumenDicetak { langkah: l(), nomor_register: "REG-2026-0001".into() }),
            E::Issued { document_number: "REG-2026-0001".into() },
        ),
        (Call::SerahkanDokumen(top.clone()), E::Collected),
        (
            Call::TolakPermohonan(pb::Penolakan {
                langkah: l(),
                kode_alasan: "D01".into(),
                alasan: "Data tidak sesuai".into(),
            }),
            E::Rejected { reason_code: "D01".into(), reason: "Data tidak sesuai".into() },
        ),
        // The withdrawal is a bare `Langkah`: no reason (mapping v1).
        (Call::BatalkanPermohonan(top.clone()), E::Withdrawn { reason: String::new() }),
    ]
}

/// Bad requests: each with the status code, reason code and field it
/// must be refused with.
fn refusals(l: &pb::Langkah) -> Vec<Refusal<Call>> {
    let inv = Code::InvalidArgument;
    let unspecified = Call::AjukanPermohonan(pb::Permohonan {
        nomor_berkas: String::new(),
        layanan: pb::Layanan::Unspecified as i32,
        dokumen: vec![],
        petugas: "ptg-07".into(),
    });
    let kekurangan = |langkah: Option<pb::Langkah>, loket: &str| {
        Call::MintaKelengkapan(pb::KekuranganBerkas {
            langkah,
            dokumen: vec!["x".into()],
            loket: loket.into(),
            catatan: String::new(),
        })
    };
    let other_region = pb::Langkah { nomor_berkas: other_region_case(), ..l.clone() };
    let too_long =
        pb::Penolakan { langkah: Some(l.clone()), kode_alasan: String::new(), alasan: "x".repeat(501) };
    vec![
        (unspecified, inv, "INVALID_FIELD_VALUE", "layanan"),
        (kekurangan(None, "Loket 3"), inv, "MISSING_FIELD", "langkah"),
        (kekurangan(Some(l.clone()), ""), inv, "MISSING_FIELD", "loket"),
        (
            Call::MulaiVerifikasi(pb::Langkah { nomor_berkas: typo(&l.nomor_berkas), ..l.clone() }),
            inv,
            "BAD_CHECK_DIGIT",
            "nomor_berkas",
        ),
        (Call::SerahkanDokumen(other_region), Code::FailedPrecondition, "REGION_MISMATCH", "nomor_berkas"),
        (
            Call::BatalkanPermohonan(pb::Langkah { nomor_permohonan: "IMG-PASPOR-1".into(), ..l.clone() }),
            inv,
            "MALFORMED_APPLICATION_ID",
            "nomor_permohonan",
        ),
        (
            Call::MulaiVerifikasi(pb::Langkah { petugas: String::new(), ..l.clone() }),
            inv,
            "MISSING_FIELD",
            "petugas",
        ),
        (Call::TolakPermohonan(too_long), inv, "FIELD_TOO_LONG", "alasan"),
    ]
}

round_trip_test!(
    Dukcapil,
    Shapes {
        service_id: "kk",
        amount_max_idr: 1,
        billing_code: text(),
        payment_reference: text(),
        document_number: optional_text(),
    },
    |e| match e {
        // The withdrawal carries no reason (mapping v1).
        EventBody::Withdrawn { .. } => EventBody::Withdrawn { reason: String::new() },
        other => other,
    }
);
