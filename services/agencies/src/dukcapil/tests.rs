//! Mapping tests of Disdukcapil: each RPC against an in-memory publisher.

use std::sync::Arc;

use mpp_agency_kit::ids::new_application_id;
use mpp_agency_kit::testing::MemoryPublisher;
use mpp_core::ids::{ApplicationId, RegionCode, TrackingNumber};
use mpp_core::ReasonCode;
use mpp_proto::v1::envelope::Body;
use tonic::Code;

use super::*;
use crate::test_support::{agency, optional_text, reason, text, Shapes};

fn service(publisher: Arc<MemoryPublisher>) -> Dukcapil {
    Dukcapil::new(agency(&INFO, publisher))
}

desk_fixture! {
    Dukcapil,
    filing ajukan_permohonan(pb::Permohonan { layanan: pb::Layanan }) -> pb::PermohonanDiterima,
    langkah { nomor_berkas, nomor_permohonan },
    dokumen: ["Formulir F-1.01"],
    petugas: "ptg-07" => "ptg-08",
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
    let cat = catalogue().unwrap();
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

#[tokio::test]
async fn ajukan_permohonan_opens_a_case_and_files_the_application() {
    let publisher = Arc::new(MemoryPublisher::new());
    let svc = service(publisher.clone());
    let r = file(&svc, pb::Layanan::AktaLahir, "").await;
    assert_eq!(r.pin.len(), 6);
    assert!(r.nomor_permohonan.starts_with("DKC-AKTA-"));
    assert!(TrackingNumber::parse(&r.nomor_berkas).is_ok());
    let events = publisher.events();
    assert_eq!(r.event_ids, events.iter().map(|e| e.event_id().to_owned()).collect::<Vec<_>>());
    assert!(matches!(events[0].envelope().body, Some(Body::CaseOpened(_))));
    assert!(
        matches!(&events[1].envelope().body, Some(Body::ApplicationFiled(f)) if f.documents == ["Formulir F-1.01"])
    );
    for e in &events {
        assert_eq!(e.subject(), "mpp.events.dukcapil.akta-lahir");
        assert_eq!(e.envelope().officer, "ptg-07");
    }

    // Into the existing case: only application_filed, no PIN.
    let again = svc
        .ajukan_permohonan(Request::new(pb::Permohonan {
            nomor_berkas: r.nomor_berkas.clone(),
            layanan: pb::Layanan::Kk as i32,
            dokumen: vec![],
            petugas: "ptg-07".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.nomor_berkas, r.nomor_berkas);
    assert!(again.pin.is_empty());
    assert_eq!(again.event_ids.len(), 1);
    assert_eq!(publisher.events()[2].subject(), "mpp.events.dukcapil.kk");
}

#[tokio::test]
async fn every_step_rpc_maps_to_its_common_event() {
    let publisher = Arc::new(MemoryPublisher::new());
    let svc = service(publisher.clone());
    let filed = file(&svc, pb::Layanan::Kk, "").await;
    let l = langkah(&filed);
    let some = Some(l.clone());

    let ids = [
        svc.minta_kelengkapan(Request::new(pb::KekuranganBerkas {
            langkah: some.clone(),
            dokumen: vec!["Buku nikah".into()],
            loket: "Loket 3 Disdukcapil".into(),
            catatan: "Bawa asli".into(),
        }))
        .await,
        svc.terima_kelengkapan(Request::new(pb::BerkasDilengkapi {
            langkah: some.clone(),
            dokumen: vec!["Buku nikah".into()],
        }))
        .await,
        svc.mulai_verifikasi(Request::new(l.clone())).await,
        svc.cetak_dokumen(Request::new(pb::DokumenDicetak {
            langkah: some.clone(),
            nomor_register: "REG-2026-0001".into(),
        }))
        .await,
        svc.serahkan_dokumen(Request::new(l.clone())).await,
        svc.tolak_permohonan(Request::new(pb::Penolakan {
            langkah: some.clone(),
            kode_alasan: "D01".into(),
            alasan: "Data tidak sesuai".into(),
        }))
        .await,
        svc.batalkan_permohonan(Request::new(l.clone())).await,
    ]
    .into_iter()
    .map(|r| r.unwrap().into_inner().event_id)
    .collect::<Vec<_>>();

    let events = publisher.events();
    let steps = &events[2..];
    assert_eq!(steps.len(), ids.len());
    for (e, id) in steps.iter().zip(&ids) {
        assert_eq!(e.event_id(), id);
        assert_eq!(e.subject(), "mpp.events.dukcapil.kk");
        assert_eq!(e.envelope().case_id, filed.nomor_berkas);
        assert_eq!(e.envelope().application_id, filed.nomor_permohonan);
        assert_eq!(e.envelope().officer, "ptg-08");
    }
    let body = |i: usize| steps[i].envelope().body.clone();
    assert!(matches!(body(0), Some(Body::DocumentsRequested(d))
        if d.documents == ["Buku nikah"] && d.counter == "Loket 3 Disdukcapil" && d.note == "Bawa asli"));
    assert!(matches!(body(1), Some(Body::DocumentsReceived(d)) if d.documents == ["Buku nikah"]));
    assert!(matches!(body(2), Some(Body::ReviewStarted(_))));
    assert!(matches!(body(3), Some(Body::Issued(d)) if d.document_number == "REG-2026-0001"));
    assert!(matches!(body(4), Some(Body::Collected(_))));
    assert!(
        matches!(body(5), Some(Body::Rejected(d)) if d.reason_code == "D01" && d.reason == "Data tidak sesuai")
    );
    assert!(matches!(body(6), Some(Body::Withdrawn(_))));
}

#[tokio::test]
async fn bad_requests_are_refused_with_reason_codes_and_publish_nothing() {
    let publisher = Arc::new(MemoryPublisher::new());
    let svc = service(publisher.clone());
    let filed = file(&svc, pb::Layanan::Kk, "").await;
    let before = publisher.events().len();
    let l = langkah(&filed);

    let unspecified = svc
        .ajukan_permohonan(Request::new(pb::Permohonan {
            nomor_berkas: String::new(),
            layanan: pb::Layanan::Unspecified as i32,
            dokumen: vec![],
            petugas: "ptg-07".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!((unspecified.code(), reason(&unspecified)), (Code::InvalidArgument, "INVALID_FIELD_VALUE"));

    let no_langkah = svc
        .minta_kelengkapan(Request::new(pb::KekuranganBerkas {
            langkah: None,
            dokumen: vec!["x".into()],
            loket: "Loket 3".into(),
            catatan: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!((no_langkah.code(), reason(&no_langkah)), (Code::InvalidArgument, "MISSING_FIELD"));
    assert!(no_langkah.message().contains("langkah"), "{}", no_langkah.message());

    let no_loket = svc
        .minta_kelengkapan(Request::new(pb::KekuranganBerkas {
            langkah: Some(l.clone()),
            dokumen: vec!["x".into()],
            loket: String::new(),
            catatan: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(reason(&no_loket), "MISSING_FIELD");
    assert!(no_loket.message().contains("loket"), "{}", no_loket.message());

    let mut typo = l.clone();
    let last = typo.nomor_berkas.pop().unwrap();
    typo.nomor_berkas.push(if last == '0' { '1' } else { '0' });
    let s = svc.mulai_verifikasi(Request::new(typo)).await.unwrap_err();
    assert_eq!((s.code(), reason(&s)), (Code::InvalidArgument, "BAD_CHECK_DIGIT"));
    assert!(s.message().contains("nomor_berkas"), "{}", s.message());

    let other_region = pb::Langkah {
        nomor_berkas: TrackingNumber::new(RegionCode::parse("1707").unwrap(), 5).unwrap().to_string(),
        ..l.clone()
    };
    let s = svc.serahkan_dokumen(Request::new(other_region)).await.unwrap_err();
    assert_eq!((s.code(), reason(&s)), (Code::FailedPrecondition, "REGION_MISMATCH"));

    let foreign_app = pb::Langkah { nomor_permohonan: "IMG-PASPOR-1".into(), ..l.clone() };
    let s = svc.batalkan_permohonan(Request::new(foreign_app)).await.unwrap_err();
    assert_eq!(reason(&s), "MALFORMED_APPLICATION_ID");

    let no_officer = pb::Langkah { petugas: String::new(), ..l.clone() };
    let s = svc.mulai_verifikasi(Request::new(no_officer)).await.unwrap_err();
    assert_eq!(reason(&s), "MISSING_FIELD");

    let s = svc
        .tolak_permohonan(Request::new(pb::Penolakan {
            langkah: Some(l.clone()),
            kode_alasan: String::new(),
            alasan: "x".repeat(501),
        }))
        .await
        .unwrap_err();
    assert_eq!(reason(&s), "FIELD_TOO_LONG");

    assert_eq!(publisher.events().len(), before, "nothing published for a refused request");
}

#[tokio::test]
async fn a_publish_failure_is_unavailable() {
    let svc = service(Arc::new(MemoryPublisher::failing_after(0)));
    let s = svc
        .ajukan_permohonan(Request::new(pb::Permohonan {
            nomor_berkas: String::new(),
            layanan: pb::Layanan::Kk as i32,
            dokumen: vec![],
            petugas: "ptg-07".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!((s.code(), reason(&s)), (Code::Unavailable, "PUBLISH_FAILED"));
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
