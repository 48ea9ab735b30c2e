//! The RPCs against an in-memory publisher and a real counter and key vault
//! in a temporary directory.

use std::sync::Arc;

use mpp_agency_kit::testing::MemoryPublisher;
use mpp_agency_kit::{pin_verifier, EventBuilder, Pin, PinPepper, SystemClock, REASON_CODE_METADATA_KEY};
use mpp_proto::v1::envelope::Body;
use prost::Message as _;

use super::*;
use crate::nik_key::hmac_sha256;

const NIK: &str = "1771014501900001";
const NAMA: &str = "Siti Nurhaliza Zulkarnain";
const TELEPON: &str = "0812-7788-9911";
/// [`TELEPON`] as the front office keeps it (E.164).
const TELEPON_E164: &str = "+6281277889911";
const SUREL: &str = "siti.nurhaliza@contoh.id";
const PEPPER: &[u8] = b"unit-test-pepper-000";
const KEY: &[u8] = b"unit-test-nik-key-0123456789abcdef";

struct Fixture {
    svc: FrontOffice,
    publisher: Arc<MemoryPublisher>,
    counter: SerialCounter,
    vault: Vault,
    _dir: tempfile::TempDir,
}

fn fixture_with(publisher: Arc<MemoryPublisher>, range: SerialRange) -> Fixture {
    fixture_ordered(publisher, range, SerialOrder::Sequential)
}

fn fixture_ordered(publisher: Arc<MemoryPublisher>, range: SerialRange, order: SerialOrder) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let region = RegionCode::parse("1771").unwrap();
    let builder = EventBuilder::new(region, agency_id(region).unwrap(), Arc::new(SystemClock));
    let agency = Agency::new(builder, publisher.clone());
    let counter = SerialCounter::open(&dir.path().join(COUNTER_DIR), range, order).unwrap();
    let receipt = ReceiptConfig {
        mpp_name: "MPP Kota Bengkulu".into(),
        lookup: LookupUrl::parse("http://127.0.0.1:8080/lacak").unwrap(),
    };
    let vault = Vault::open(&dir.path().join(VAULT_DIR), VaultKey::from_bytes([5; 32]), 0).unwrap();
    let svc = FrontOffice::new(
        agency,
        PinPepper::from_bytes(PEPPER).unwrap(),
        counter.clone(),
        vault.clone(),
        NikKey::from_bytes(KEY).unwrap(),
        receipt,
    );
    Fixture { svc, publisher, counter, vault, _dir: dir }
}

#[tokio::test]
async fn with_a_serial_key_tracking_numbers_are_permuted_and_keep_their_check_digit() {
    let key = crate::serial_key::SerialKey::from_bytes(&[9; 32]).unwrap();
    let range = SerialRange::default();
    let order = SerialOrder::Permuted(key.clone());
    let f = fixture_ordered(Arc::new(MemoryPublisher::new()), range, order);
    let p = crate::serial_key::Permutation::new(key, range.start(), range.end());
    for counter in 1..=3 {
        let r = f.svc.buka_berkas(&request()).await.unwrap();
        let tracking = TrackingNumber::parse(&r.nomor_berkas).expect("format and Damm check digit");
        assert_eq!(tracking.serial(), p.apply(counter));
        assert_ne!(tracking.serial(), counter);
    }
    assert_eq!(f.counter.last().unwrap(), Some(3));
}

fn fixture() -> Fixture {
    fixture_with(Arc::new(MemoryPublisher::new()), SerialRange::default())
}

/// The authenticated client system of the calls.
fn client() -> ClientId {
    ClientId::parse("loket-desk-3").unwrap()
}

fn request() -> pb::PembukaanBerkas {
    pb::PembukaanBerkas {
        nik: NIK.into(),
        nama: NAMA.into(),
        telepon: TELEPON.into(),
        petugas: "ptg-07".into(),
        surel: SUREL.into(),
        bahasa: String::new(),
        tanpa_notifikasi: false,
    }
}

fn reason(s: &Status) -> &str {
    s.metadata().get(REASON_CODE_METADATA_KEY).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn ids_are_the_documented_ones() {
    let region = RegionCode::parse("1771").unwrap();
    assert_eq!(agency_id(region).unwrap().as_str(), "mpp-1771");
    assert_eq!(service_id().as_str(), "loket");
    assert_eq!(
        mpp_core::validate::subject_for(&agency_id(region).unwrap(), &service_id()),
        "mpp.events.mpp-1771.loket"
    );
}

#[tokio::test]
async fn a_case_is_opened_with_a_counter_serial_and_one_case_opened_event() {
    let f = fixture();
    let r = f.svc.buka_berkas(&request()).await.unwrap();
    let tracking = TrackingNumber::parse(&r.nomor_berkas).unwrap();
    assert_eq!(tracking, TrackingNumber::new(RegionCode::parse("1771").unwrap(), 1).unwrap());
    assert_eq!(r.nomor_berkas, "1771-0000000001-".to_owned() + &r.nomor_berkas[16..]);
    let pin = Pin::parse(&r.pin).expect("a strong PIN in canonical form");
    assert_eq!(r.pin.len(), mpp_agency_kit::ids::STRONG_PIN_CHARS);

    let events = f.publisher.events();
    assert_eq!(events.len(), 2, "case_opened, then personal_data_sealed");
    let ev = &events[0];
    assert_eq!(ev.event_id(), r.event_id);
    assert_eq!(ev.subject(), "mpp.events.mpp-1771.loket");
    let env = ev.envelope();
    assert_eq!((env.agency_id.as_str(), env.service_id.as_str()), ("mpp-1771", "loket"));
    assert_eq!(env.case_id, r.nomor_berkas);
    assert_eq!(env.officer, "ptg-07");
    match &env.body {
        Some(Body::CaseOpened(o)) => {
            let pepper = PinPepper::from_bytes(PEPPER).unwrap();
            assert_eq!(o.pin_verifier, pin_verifier(&pepper, &tracking, &pin).to_vec());
            assert_eq!(o.nik_keyed_hash, hmac_sha256(KEY, NIK.as_bytes()).to_vec());
        }
        other => panic!("{other:?}"),
    }
    let sealed = events[1].envelope();
    assert_eq!((sealed.case_id.as_str(), sealed.officer.as_str()), (r.nomor_berkas.as_str(), "ptg-07"));
    assert!(sealed.application_id.is_empty());
    let key = f.vault.key_for(&hmac_sha256(KEY, NIK.as_bytes())).unwrap();
    match &sealed.body {
        Some(Body::PersonalDataSealed(p)) => {
            assert_eq!(p.key_id, key.id().to_vec());
            // It opens with the citizen's key, bound to this case and this event.
            let s = vault::Sealed {
                key_id: key.id(),
                event_id: *uuid::Uuid::parse_str(&sealed.event_id).unwrap().as_bytes(),
                nonce: p.nonce.clone().try_into().unwrap(),
                ciphertext: p.ciphertext.clone(),
            };
            let d = PersonalData::decode(&s.open(&key, &tracking).unwrap()).unwrap();
            assert_eq!((d.nama.as_str(), d.telepon.as_str(), d.surel.as_str()), (NAMA, TELEPON_E164, SUREL));
        }
        other => panic!("{other:?}"),
    }

    // The next case gets the next serial, under the same citizen's key.
    let r2 = f.svc.buka_berkas(&request()).await.unwrap();
    assert_eq!(TrackingNumber::parse(&r2.nomor_berkas).unwrap().serial(), 2);
    assert_eq!(f.counter.last().unwrap(), Some(2));
    match &f.publisher.events()[3].envelope().body {
        Some(Body::PersonalDataSealed(p)) => assert_eq!(p.key_id, key.id().to_vec()),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn personal_data_is_read_back_then_erased_for_every_case_of_the_citizen() {
    let f = fixture();
    let r1 = f.svc.buka_berkas(&request()).await.unwrap();
    let r2 = f.svc.buka_berkas(&pb::PembukaanBerkas { telepon: String::new(), ..request() }).await.unwrap();
    let other = f
        .svc
        .buka_berkas(&pb::PembukaanBerkas {
            nik: "1771010501900002".into(),
            nama: "Budi Hartono".into(),
            surel: String::new(),
            ..request()
        })
        .await
        .unwrap();
    let ask =
        |nomor: &str| pb::PermintaanDataPribadi { nomor_berkas: nomor.into(), petugas: "ptg-09".into() };
    let opened = f.publisher.events().len();
    let d = f.svc.lihat_data_pribadi(&ask(&r1.nomor_berkas), &client()).await.unwrap();
    assert_eq!((d.nama.as_str(), d.telepon.as_str(), d.surel.as_str()), (NAMA, TELEPON_E164, SUREL));
    // The read is recorded: one personal_data_read naming the authenticated
    // client (the request's petugas is the envelope's officer).
    let published = f.publisher.events();
    assert_eq!(published.len(), opened + 1);
    let read = published[opened].envelope();
    assert_eq!((read.case_id.as_str(), read.officer.as_str()), (r1.nomor_berkas.as_str(), "ptg-09"));
    match &read.body {
        Some(Body::PersonalDataRead(p)) => assert_eq!(p.client_id, client().as_str()),
        other => panic!("{other:?}"),
    }
    let d = f.svc.lihat_data_pribadi(&ask(&r2.nomor_berkas), &client()).await.unwrap();
    assert_eq!((d.nama.as_str(), d.telepon.as_str()), (NAMA, ""));
    let d = f.svc.lihat_data_pribadi(&ask(&other.nomor_berkas), &client()).await.unwrap();
    assert_eq!((d.nama.as_str(), d.surel.as_str()), ("Budi Hartono", ""));

    assert_eq!(f.publisher.events().len(), opened + 3, "one record per read");

    // Unknown and malformed cases: refused, and nothing recorded.
    let unknown = TrackingNumber::new(RegionCode::parse("1771").unwrap(), 999).unwrap().to_string();
    let s = Status::from(f.svc.lihat_data_pribadi(&ask(&unknown), &client()).await.unwrap_err());
    assert_eq!((s.code(), reason(&s)), (Code::NotFound, "UNKNOWN_CASE"));
    let s = Status::from(f.svc.lihat_data_pribadi(&ask("1771-0000000001-0"), &client()).await.unwrap_err());
    assert_eq!(s.code(), Code::InvalidArgument);
    let foreign = TrackingNumber::new(RegionCode::parse("1707").unwrap(), 1).unwrap().to_string();
    let s = Status::from(f.svc.lihat_data_pribadi(&ask(&foreign), &client()).await.unwrap_err());
    assert_eq!((s.code(), reason(&s)), (Code::FailedPrecondition, "REGION_MISMATCH"));
    let s = Status::from(
        f.svc
            .lihat_data_pribadi(
                &pb::PermintaanDataPribadi { petugas: String::new(), ..ask(&r1.nomor_berkas) },
                &client(),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(reason(&s), "MISSING_FIELD");
    assert_eq!(f.publisher.events().len(), opened + 3, "refused reads record nothing");

    // Erasing by one case erases both cases of the citizen.
    let before = f.publisher.events().len();
    let sealed_key = match &f.publisher.events()[1].envelope().body {
        Some(Body::PersonalDataSealed(p)) => p.key_id.clone(),
        other => panic!("{other:?}"),
    };
    let erase =
        |nomor: &str| pb::PenghapusanDataPribadi { nomor_berkas: nomor.into(), petugas: "ptg-09".into() };
    let e = f.svc.hapus_data_pribadi(&erase(&r2.nomor_berkas), &client()).await.unwrap();
    assert_eq!(e.nomor_berkas, vec![r1.nomor_berkas.clone(), r2.nomor_berkas.clone()]);
    let published = f.publisher.events();
    assert_eq!(published.len(), before + 2);
    for (ev, nomor) in published[before..].iter().zip([&r1.nomor_berkas, &r2.nomor_berkas]) {
        assert_eq!(&ev.envelope().case_id, nomor);
        assert!(e.event_ids.contains(&ev.event_id().to_owned()));
        match &ev.envelope().body {
            Some(Body::PersonalDataErased(p)) => assert_eq!(p.key_id, sealed_key, "the key the cases used"),
            other => panic!("{other:?}"),
        }
    }
    // The citizen's next visit gets a fresh key.
    assert_ne!(f.vault.key_for(&hmac_sha256(KEY, NIK.as_bytes())).unwrap().id().to_vec(), sealed_key);
    for nomor in [&r1.nomor_berkas, &r2.nomor_berkas] {
        let s = Status::from(f.svc.lihat_data_pribadi(&ask(nomor), &client()).await.unwrap_err());
        assert_eq!((s.code(), reason(&s)), (Code::FailedPrecondition, "PERSONAL_DATA_ERASED"));
        assert!(!s.message().contains("Siti"), "{}", s.message());
    }
    // The other citizen keeps theirs.
    assert_eq!(
        f.svc.lihat_data_pribadi(&ask(&other.nomor_berkas), &client()).await.unwrap().nama,
        "Budi Hartono"
    );
    // Repeating publishes the events again and answers the same cases (the
    // read of the other citizen's case above recorded one more).
    let again = f.svc.hapus_data_pribadi(&erase(&r1.nomor_berkas), &client()).await.unwrap();
    assert_eq!(again.nomor_berkas, e.nomor_berkas);
    assert_eq!(f.publisher.events().len(), before + 5);
    let s = Status::from(f.svc.hapus_data_pribadi(&erase(&unknown), &client()).await.unwrap_err());
    assert_eq!((s.code(), reason(&s)), (Code::NotFound, "UNKNOWN_CASE"));
}

#[tokio::test]
async fn notifications_are_declined_and_taken_back_after_the_opening_until_erasure() {
    let f = fixture();
    let r = f.svc.buka_berkas(&request()).await.unwrap();
    let tn = TrackingNumber::parse(&r.nomor_berkas).unwrap();
    let declined = |f: &Fixture| {
        let Some(CaseRecord::Sealed(key, sealed)) = f.vault.case(&tn).unwrap() else { panic!("sealed") };
        PersonalData::decode(&sealed.open(&key, &tn).unwrap()).unwrap().tanpa_notifikasi
    };
    let set = |nomor: &str, off: bool| pb::PengaturanNotifikasi {
        nomor_berkas: nomor.into(),
        tanpa_notifikasi: off,
        petugas: "ptg-09".into(),
    };
    let published = f.publisher.events().len();
    assert!(!declined(&f));
    let a = f.svc.atur_notifikasi(&set(&r.nomor_berkas, true), &client()).await.unwrap();
    assert_eq!((a.tanpa_notifikasi, a.berubah), (true, true));
    assert!(declined(&f));
    // The rest of the record is unchanged, and still opens for LihatDataPribadi.
    let ask = pb::PermintaanDataPribadi { nomor_berkas: r.nomor_berkas.clone(), petugas: "ptg-09".into() };
    let d = f.svc.lihat_data_pribadi(&ask, &client()).await.unwrap();
    assert_eq!((d.nama.as_str(), d.telepon.as_str(), d.surel.as_str()), (NAMA, TELEPON_E164, SUREL));
    // The same choice again changes nothing; back in.
    let a = f.svc.atur_notifikasi(&set(&r.nomor_berkas, true), &client()).await.unwrap();
    assert!(!a.berubah);
    let a = f.svc.atur_notifikasi(&set(&r.nomor_berkas, false), &client()).await.unwrap();
    assert_eq!((a.tanpa_notifikasi, a.berubah), (false, true));
    assert!(!declined(&f));
    assert_eq!(f.publisher.events().len(), published + 1, "only the read is published");

    // Refused with reasons: bad input, an unknown case, an erased one.
    let s =
        Status::from(f.svc.atur_notifikasi(&set("1771-0000000001-0", true), &client()).await.unwrap_err());
    assert_eq!(s.code(), Code::InvalidArgument);
    let s = Status::from(
        f.svc
            .atur_notifikasi(
                &pb::PengaturanNotifikasi { petugas: String::new(), ..set(&r.nomor_berkas, true) },
                &client(),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(s.code(), Code::InvalidArgument);
    let unknown = TrackingNumber::new(RegionCode::parse("1771").unwrap(), 999).unwrap().to_string();
    let s = Status::from(f.svc.atur_notifikasi(&set(&unknown, true), &client()).await.unwrap_err());
    assert_eq!((s.code(), reason(&s)), (Code::NotFound, "UNKNOWN_CASE"));
    let erase = pb::PenghapusanDataPribadi { nomor_berkas: r.nomor_berkas.clone(), petugas: "ptg-09".into() };
    f.svc.hapus_data_pribadi(&erase, &client()).await.unwrap();
    let s = Status::from(f.svc.atur_notifikasi(&set(&r.nomor_berkas, true), &client()).await.unwrap_err());
    assert_eq!((s.code(), reason(&s)), (Code::FailedPrecondition, "PERSONAL_DATA_ERASED"));
}

#[test]
fn the_notification_setting_needs_the_counters_scope() {
    let scope = RPC_SCOPES.0.iter().find(|(rpc, _)| rpc.ends_with("/AturNotifikasi")).map(|(_, s)| *s);
    assert_eq!(scope, Some(SCOPE_CASES_OPEN));
}

#[tokio::test]
async fn a_read_that_cannot_be_recorded_hands_out_no_data() {
    // Opening publishes two events; the third publish (the read's record)
    // fails.
    let f = fixture_with(Arc::new(MemoryPublisher::failing_after(2)), SerialRange::default());
    let r = f.svc.buka_berkas(&request()).await.unwrap();
    let ask = pb::PermintaanDataPribadi { nomor_berkas: r.nomor_berkas.clone(), petugas: "ptg-09".into() };
    let s = Status::from(f.svc.lihat_data_pribadi(&ask, &client()).await.unwrap_err());
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    assert!(!s.message().contains(NAMA), "{}", s.message());
    assert_eq!(f.publisher.events().len(), 2, "nothing but the opening");
}

#[tokio::test]
async fn erasure_survives_a_restart_of_the_vault() {
    let f = fixture();
    let r = f.svc.buka_berkas(&request()).await.unwrap();
    let tracking = TrackingNumber::parse(&r.nomor_berkas).unwrap();
    let erase = pb::PenghapusanDataPribadi { nomor_berkas: r.nomor_berkas.clone(), petugas: "ptg-09".into() };
    f.svc.hapus_data_pribadi(&erase, &client()).await.unwrap();
    f.vault.close().unwrap();
    let reopened = Vault::open(&f._dir.path().join(VAULT_DIR), VaultKey::from_bytes([5; 32]), 0).unwrap();
    assert!(matches!(reopened.case(&tracking).unwrap(), Some(vault::CaseRecord::Erased(_))));
}

#[tokio::test]
async fn the_envelope_carries_no_personal_data() {
    let f = fixture();
    let r = f.svc.buka_berkas(&request()).await.unwrap();
    let bytes = f.publisher.events()[0].encode();
    let phone_digits: String = TELEPON.chars().filter(char::is_ascii_digit).collect();
    for needle in [NIK, NAMA, "Siti", "Zulkarnain", TELEPON, TELEPON_E164, &phone_digits, "7788", &r.pin] {
        assert!(!contains(&bytes, needle.as_bytes()), "{needle:?} is in the published envelope");
    }
    // Nor in the envelope's debug rendering (what a careless log line would print).
    let debug = format!("{:?}", f.publisher.events()[0].envelope());
    assert!(!debug.contains(NIK) && !debug.contains("Siti") && !debug.contains(&phone_digits));
    // The receipt, which is the only place they go, has them.
    let receipt = r.tanda_terima.join("\n");
    let grouped = Pin::parse(&r.pin).unwrap().grouped();
    assert!(receipt.contains(NAMA) && receipt.contains(TELEPON_E164) && receipt.contains(&grouped));
    assert!(receipt.contains(&r.nomor_berkas));
    assert!(!receipt.contains(NIK), "the NIK is not printed either");
    assert!(receipt.contains(&format!("http://127.0.0.1:8080/api/v1/cases/{}", r.nomor_berkas)));
    let decoded = mpp_proto::v1::Envelope::decode(bytes.as_slice()).unwrap();
    assert_eq!(&decoded, f.publisher.events()[0].envelope());
}

#[tokio::test]
async fn bad_requests_are_refused_with_reason_codes_and_use_no_serial() {
    let f = fixture();
    let cases: Vec<(pb::PembukaanBerkas, Code, &str, &str)> = vec![
        (
            pb::PembukaanBerkas { nik: "1771013201900001".into(), ..request() },
            Code::InvalidArgument,
            "MALFORMED_NIK",
            "birth day",
        ),
        (
            pb::PembukaanBerkas { nik: "12345".into(), ..request() },
            Code::InvalidArgument,
            "MALFORMED_NIK",
            "16 digits",
        ),
        (
            pb::PembukaanBerkas { nik: String::new(), ..request() },
            Code::InvalidArgument,
            "MISSING_FIELD",
            "nik: ",
        ),
        (
            pb::PembukaanBerkas { nama: " ".into(), ..request() },
            Code::InvalidArgument,
            "MISSING_FIELD",
            "nama: ",
        ),
        (
            pb::PembukaanBerkas { nama: "Siti\nX".into(), ..request() },
            Code::InvalidArgument,
            "INVALID_FIELD_VALUE",
            "nama: ",
        ),
        (
            pb::PembukaanBerkas { telepon: "12ab".into(), ..request() },
            Code::InvalidArgument,
            "INVALID_PHONE_NUMBER",
            "telepon: ",
        ),
        (
            pb::PembukaanBerkas { telepon: "812 3456 7890".into(), ..request() },
            Code::InvalidArgument,
            "INVALID_PHONE_NUMBER",
            "telepon: ",
        ),
        (
            pb::PembukaanBerkas { surel: "siti at contoh.id".into(), ..request() },
            Code::InvalidArgument,
            "INVALID_FIELD_VALUE",
            "surel: ",
        ),
        (
            pb::PembukaanBerkas { petugas: "Budi Santoso".into(), ..request() },
            Code::InvalidArgument,
            "MALFORMED_OFFICER",
            "petugas: ",
        ),
        (
            pb::PembukaanBerkas { petugas: String::new(), ..request() },
            Code::InvalidArgument,
            "MISSING_FIELD",
            "petugas: ",
        ),
    ];
    for (req, code, want_reason, want_text) in cases {
        let s = Status::from(f.svc.buka_berkas(&req).await.unwrap_err());
        assert_eq!(s.code(), code, "{s:?}");
        assert_eq!(reason(&s), want_reason, "{s:?}");
        assert!(s.message().contains(want_text), "{want_text:?} not in {:?}", s.message());
        assert!(!s.message().contains(&req.nik) || req.nik.is_empty(), "NIK echoed: {}", s.message());
    }
    // The MALFORMED_NIK message says what a NIK is.
    let s = Status::from(
        f.svc.buka_berkas(&pb::PembukaanBerkas { nik: "9".repeat(16), ..request() }).await.unwrap_err(),
    );
    assert!(s.message().contains("day + 40 for women"), "{}", s.message());
    assert!(f.publisher.events().is_empty());
    assert_eq!(f.counter.last().unwrap(), None, "no serial used");
    assert_eq!(
        f.vault.case(&TrackingNumber::new(RegionCode::parse("1771").unwrap(), 1).unwrap()).unwrap(),
        None
    );
    // A phone number is optional.
    let r = f.svc.buka_berkas(&pb::PembukaanBerkas { telepon: String::new(), ..request() }).await.unwrap();
    assert!(r.tanda_terima.iter().all(|l| !l.starts_with("Telepon")));
    assert_eq!(f.counter.last().unwrap(), Some(1));
}

#[tokio::test]
async fn a_used_up_range_and_a_closed_counter_are_refused_with_reasons() {
    let f = fixture_with(Arc::new(MemoryPublisher::new()), SerialRange::new(7, 8).unwrap());
    let r = f.svc.buka_berkas(&request()).await.unwrap();
    assert_eq!(TrackingNumber::parse(&r.nomor_berkas).unwrap().serial(), 7);
    let s = Status::from(f.svc.buka_berkas(&request()).await.unwrap_err());
    assert_eq!(s.code(), Code::FailedPrecondition);
    assert_eq!(reason(&s), "UNAVAILABLE");
    assert!(s.message().contains("--serial-range-start"), "{}", s.message());
    f.counter.close().unwrap();
    let s = Status::from(f.svc.buka_berkas(&request()).await.unwrap_err());
    assert_eq!(s.code(), Code::Unavailable);
    assert_eq!(f.publisher.events().len(), 2);
}

#[tokio::test]
async fn a_publish_failure_burns_the_serial_and_never_reuses_it() {
    // Each case publishes two events (case_opened, personal_data_sealed).
    let f = fixture_with(Arc::new(MemoryPublisher::failing_after(2)), SerialRange::default());
    assert!(f.svc.buka_berkas(&request()).await.is_ok());
    let s = Status::from(f.svc.buka_berkas(&request()).await.unwrap_err());
    assert_eq!(s.code(), Code::Unavailable);
    assert_eq!(reason(&s), "PUBLISH_FAILED");
    assert_eq!(f.counter.last().unwrap(), Some(2), "serial 2 was taken and stays taken");
}

#[tokio::test]
async fn nothing_personal_is_logged_even_at_trace_level() {
    mpp_test_support::log::capture(tracing::Level::TRACE);
    let f = fixture();
    let r = f.svc.buka_berkas(&request()).await.unwrap();
    // A refused request too: its error must not carry the values either.
    let _ = f.svc.buka_berkas(&pb::PembukaanBerkas { nik: "1771013201900001".into(), ..request() }).await;
    let _ = f.svc.buka_berkas(&pb::PembukaanBerkas { surel: format!("{SUREL} x"), ..request() }).await;
    // Reading and erasing log the case and the officer, not the data.
    let ask = pb::PermintaanDataPribadi { nomor_berkas: r.nomor_berkas.clone(), petugas: "ptg-09".into() };
    assert_eq!(f.svc.lihat_data_pribadi(&ask, &client()).await.unwrap().nama, NAMA);
    let erase = pb::PenghapusanDataPribadi { nomor_berkas: r.nomor_berkas.clone(), petugas: "ptg-09".into() };
    f.svc.hapus_data_pribadi(&erase, &client()).await.unwrap();
    let _ = f.svc.lihat_data_pribadi(&ask, &client()).await.unwrap_err();
    let log = mpp_test_support::log::captured_text();
    assert!(
        log.lines().any(|l| l.contains("Case opened") && l.contains(&r.event_id)),
        "the test sees the log:\n{log}"
    );
    let phone_digits: String = TELEPON.chars().filter(char::is_ascii_digit).collect();
    assert!(log.contains("Personal data read") && log.contains("Personal data erased"), "{log}");
    for needle in
        [NIK, "1771013201900001", NAMA, "Siti", TELEPON, TELEPON_E164, &phone_digits, SUREL, "nurhaliza"]
    {
        assert!(!log.contains(needle), "{needle:?} was logged:\n{log}");
    }
    assert!(!log.contains(&format!("PIN: {}", r.pin)) && !log.contains(&format!("pin={}", r.pin)), "{log}");
}

#[derive(Debug, clap::Parser)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    front: FrontOfficeArgs,
}

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    use clap::FromArgMatches as _;
    Cli::from_arg_matches(&command().try_get_matches_from(args)?)
}

fn command() -> clap::Command {
    use clap::CommandFactory as _;
    hide_agency_flags(mpp_agency_kit::cli::with_grpc_addr_default(Cli::command(), DEFAULT_GRPC_ADDR))
}

#[test]
fn the_help_shows_the_pepper_and_no_agency_only_flag() {
    let help = command().render_long_help().to_string();
    assert!(help.contains("--pin-pepper-file") && help.contains("--insecure-dev-keys"), "{help}");
    assert!(!help.contains("--front-office-url") && !help.contains("--front-office-token-file"), "{help}");
}

#[test]
fn flags_have_safe_defaults_and_are_validated() {
    let cli = parse(&["mpp-frontoffice"]).unwrap();
    assert_eq!(cli.common.grpc_addr.to_string(), DEFAULT_GRPC_ADDR);
    assert_eq!(cli.front.nik_key_file, None);
    assert!(!cli.front.insecure_dev_keys);
    assert_eq!(cli.front.pin_pepper_file, None);
    assert_eq!((cli.front.walk_ins_per_minute, cli.front.walk_ins_burst), (60, 30));
    assert_eq!(cli.front.lookup_base_url.page(), "http://127.0.0.1:8080/lacak");
    assert_eq!(cli.front.mpp_name, None);
    assert_eq!((cli.front.serial_range_start, cli.front.serial_range_end), (1, 5_000_000_000));
    let cli = parse(&[
        "mpp-frontoffice",
        "--nik-key-file",
        "/k",
        "--insecure-dev-keys",
        "--lookup-base-url",
        "https://mpp.example.go.id/lacak",
        "--mpp-name",
        "MPP Kota Bengkulu",
        "--serial-range-start",
        "2500000000",
    ])
    .unwrap();
    assert_eq!(cli.front.nik_key_file.as_deref(), Some(std::path::Path::new("/k")));
    assert!(cli.front.insecure_dev_keys);
    assert_eq!(cli.front.mpp_name.as_deref(), Some("MPP Kota Bengkulu"));
    assert_eq!(cli.front.serial_range_start, 2_500_000_000);
    assert!(parse(&["x", "--lookup-base-url", "mpp.example.go.id"]).is_err());
    assert!(parse(&["x", "--mpp-name", ""]).is_err());
    assert!(parse(&["x", "--serial-range-start", "-1"]).is_err());
}

#[tokio::test]
async fn reads_and_erasures_are_rate_limited_per_authenticated_client() {
    let limits = PersonalDataLimits {
        reads: Limit { per_minute: 1, burst: 2 },
        erasures: Limit { per_minute: 1, burst: 1 },
        walk_ins: Limit { per_minute: 1, burst: 1 },
    };
    let f = fixture();
    let svc = f.svc.clone().with_limits(limits, Arc::new(SystemClock));
    let r = svc.buka_berkas(&request()).await.unwrap();
    let other =
        svc.buka_berkas(&pb::PembukaanBerkas { nik: "1771010501900002".into(), ..request() }).await.unwrap();
    // The officer field is the caller's to choose; the bucket is not.
    let ask = |petugas: &str| pb::PermintaanDataPribadi {
        nomor_berkas: r.nomor_berkas.clone(),
        petugas: petugas.into(),
    };
    svc.lihat_data_pribadi(&ask("ptg-1"), &client()).await.unwrap();
    svc.lihat_data_pribadi(&ask("ptg-2"), &client()).await.unwrap();
    let s = Status::from(svc.lihat_data_pribadi(&ask("ptg-3"), &client()).await.unwrap_err());
    assert_eq!((s.code(), reason(&s)), (Code::ResourceExhausted, "RATE_LIMITED"));
    let wait = s.metadata().get(RETRY_AFTER_METADATA_KEY).and_then(|v| v.to_str().ok());
    assert!(wait.and_then(|w| w.parse::<u64>().ok()).is_some_and(|w| (1..=60).contains(&w)), "{wait:?}");
    // Another client system has its own bucket.
    let desk = ClientId::parse("loket-desk-4").unwrap();
    svc.lihat_data_pribadi(&ask("ptg-1"), &desk).await.unwrap();

    let erase =
        |nomor: &str| pb::PenghapusanDataPribadi { nomor_berkas: nomor.into(), petugas: "ptg-1".into() };
    let before = f.publisher.events().len();
    svc.hapus_data_pribadi(&erase(&r.nomor_berkas), &client()).await.unwrap();
    let s = Status::from(svc.hapus_data_pribadi(&erase(&other.nomor_berkas), &client()).await.unwrap_err());
    assert_eq!((s.code(), reason(&s)), (Code::ResourceExhausted, "RATE_LIMITED"));
    assert_eq!(f.publisher.events().len(), before + 1, "a refused erasure publishes nothing");
    assert!(
        !matches!(
            f.vault.case(&TrackingNumber::parse(&other.nomor_berkas).unwrap()).unwrap(),
            Some(vault::CaseRecord::Erased(_))
        ),
        "and destroys no key"
    );
    svc.hapus_data_pribadi(&erase(&other.nomor_berkas), &desk).await.unwrap();
}

#[tokio::test]
async fn reads_and_erasures_log_the_authenticated_client_as_the_officer() {
    mpp_test_support::log::capture(tracing::Level::TRACE);
    let f = fixture();
    let r = f.svc.buka_berkas(&request()).await.unwrap();
    let who = ClientId::parse("officer-7f3a").unwrap();
    let ask =
        pb::PermintaanDataPribadi { nomor_berkas: r.nomor_berkas.clone(), petugas: "claimed-x1".into() };
    f.svc.lihat_data_pribadi(&ask, &who).await.unwrap();
    let erase =
        pb::PenghapusanDataPribadi { nomor_berkas: r.nomor_berkas.clone(), petugas: "claimed-x2".into() };
    f.svc.hapus_data_pribadi(&erase, &who).await.unwrap();
    let log = mpp_test_support::log::captured_text();
    for (message, claimed) in [("Personal data read", "claimed-x1"), ("Personal data erased", "claimed-x2")] {
        // Other tests' fixtures number their cases alike: find this test's
        // line by the officer id it claimed.
        let line = log.lines().find(|l| l.contains(message) && l.contains(&format!("petugas={claimed}")));
        let line = line.unwrap_or_else(|| panic!("no {message:?} line:\n{log}"));
        assert!(line.contains("officer=officer-7f3a"), "{line}");
    }
    // Published events keep the pseudonymous officer of the request.
    let events = f.publisher.events();
    let erased = events.last().unwrap().envelope();
    assert!(matches!(erased.body, Some(Body::PersonalDataErased(_))));
    assert_eq!(erased.officer, "claimed-x2");
}

#[test]
fn the_scope_table_names_every_rpc_of_the_service() {
    assert_eq!(
        RPC_SCOPES.scopes(),
        vec!["cases:open", "personal-data:read", "personal-data:erase", "pins:reissue", "cases:open-walk-in"]
    );
    for (path, _) in RPC_SCOPES.0 {
        let method = path.rsplit('/').next().unwrap();
        assert_eq!(*path, format!("/{}/{method}", pb::front_office_service_server::SERVICE_NAME));
    }
}

#[tokio::test]
async fn a_pin_is_reissued_for_a_case_of_this_front_office_only() {
    let f = fixture();
    let r = f.svc.buka_berkas(&request()).await.unwrap();
    let ask = |tn: &str| pb::PenerbitanUlangPin { nomor_berkas: tn.to_owned(), petugas: "ptg-07".to_owned() };
    let new = f.svc.terbitkan_ulang_pin(&ask(&r.nomor_berkas), &client()).await.unwrap();
    assert_ne!(new.pin, r.pin, "a new PIN");
    let pin = Pin::parse(&new.pin).expect("a strong PIN in canonical form");
    let tracking = TrackingNumber::parse(&r.nomor_berkas).unwrap();
    let events = f.publisher.events();
    let ev = events.last().unwrap();
    assert_eq!(ev.event_id(), new.event_id);
    let env = ev.envelope();
    assert_eq!((env.case_id.as_str(), env.application_id.as_str()), (r.nomor_berkas.as_str(), ""));
    match &env.body {
        Some(Body::PinReissued(p)) => {
            let pepper = PinPepper::from_bytes(PEPPER).unwrap();
            assert_eq!(p.pin_verifier, pin_verifier(&pepper, &tracking, &pin).to_vec());
        }
        other => panic!("{other:?}"),
    }
    let receipt = new.tanda_terima.join("\n");
    assert!(receipt.contains(&pin.grouped()) && receipt.contains(&r.nomor_berkas));
    assert!(
        !receipt.contains(NAMA) && !receipt.contains("Nama"),
        "no personal data on a re-issue: {receipt}"
    );
    // Not a case of this front office: refused, nothing published.
    let unknown = TrackingNumber::new(RegionCode::parse("1771").unwrap(), 4_000_000).unwrap().to_string();
    let before = f.publisher.events().len();
    let s = Status::from(f.svc.terbitkan_ulang_pin(&ask(&unknown), &client()).await.unwrap_err());
    assert_eq!(s.code(), Code::NotFound);
    assert_eq!(f.publisher.events().len(), before);
}

#[tokio::test]
async fn an_agencys_walk_in_gets_a_counter_case_and_pin_with_no_personal_data() {
    mpp_test_support::log::capture(tracing::Level::TRACE);
    let f = fixture();
    let agency = ClientId::parse("walk-in-dukcapil").unwrap();
    let ask = pb::PembukaanBerkasInstansi { petugas: "dkc-ptg-9".into() };
    let first = f.svc.buka_berkas(&request()).await.unwrap();
    let r = f.svc.buka_berkas_instansi(&ask, &agency).await.unwrap();
    // The same counter as the desk's openings: the next serial.
    let tracking = TrackingNumber::parse(&r.nomor_berkas).unwrap();
    assert_eq!(tracking.serial(), TrackingNumber::parse(&first.nomor_berkas).unwrap().serial() + 1);
    let pin = Pin::parse(&r.pin).expect("a strong PIN in canonical form");
    let events = f.publisher.events();
    assert_eq!(events.len(), 3, "the desk's two events, then one case_opened and nothing sealed");
    let env = events[2].envelope();
    assert_eq!((env.event_id.as_str(), env.case_id.as_str()), (r.event_id.as_str(), r.nomor_berkas.as_str()));
    assert_eq!((env.agency_id.as_str(), env.officer.as_str()), ("mpp-1771", "dkc-ptg-9"));
    match &env.body {
        Some(Body::CaseOpened(o)) => {
            let pepper = PinPepper::from_bytes(PEPPER).unwrap();
            assert_eq!(o.pin_verifier, pin_verifier(&pepper, &tracking, &pin).to_vec());
            assert!(o.nik_keyed_hash.is_empty(), "no NIK was given");
        }
        other => panic!("{other:?}"),
    }
    let receipt = r.tanda_terima.join("\n");
    assert!(receipt.contains(&pin.grouped()) && receipt.contains(&r.nomor_berkas), "{receipt}");
    assert!(f.vault.case(&tracking).unwrap().is_none(), "no personal data kept for a walk-in");
    // Logged with the authenticated client, never the PIN.
    let log = mpp_test_support::log::captured_text();
    let line = log
        .lines()
        .find(|l| l.contains("walk-in citizen") && l.contains(&r.nomor_berkas))
        .unwrap_or_else(|| panic!("no walk-in line:\n{log}"));
    assert!(line.contains("client=walk-in-dukcapil") && line.contains("petugas=dkc-ptg-9"), "{line}");
    assert!(!log.contains(&r.pin), "the PIN is never logged");
    // A bad officer id opens nothing.
    let before = f.counter.last().unwrap();
    let bad = pb::PembukaanBerkasInstansi { petugas: "bad officer".into() };
    let s = Status::from(f.svc.buka_berkas_instansi(&bad, &agency).await.unwrap_err());
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(f.counter.last().unwrap(), before, "no serial used");
}

#[tokio::test]
async fn walk_in_openings_are_rate_limited_per_agency_token() {
    let limits =
        PersonalDataLimits { walk_ins: Limit { per_minute: 1, burst: 2 }, ..PersonalDataLimits::DEFAULT };
    let f = fixture();
    let svc = f.svc.clone().with_limits(limits, Arc::new(SystemClock));
    let agency = ClientId::parse("walk-in-dukcapil").unwrap();
    let ask = |petugas: &str| pb::PembukaanBerkasInstansi { petugas: petugas.into() };
    svc.buka_berkas_instansi(&ask("a-1"), &agency).await.unwrap();
    svc.buka_berkas_instansi(&ask("a-2"), &agency).await.unwrap();
    let before = (f.publisher.events().len(), f.counter.last().unwrap());
    let s = Status::from(svc.buka_berkas_instansi(&ask("a-3"), &agency).await.unwrap_err());
    assert_eq!((s.code(), reason(&s)), (Code::ResourceExhausted, "RATE_LIMITED"));
    assert!(s.metadata().get(RETRY_AFTER_METADATA_KEY).is_some());
    assert_eq!((f.publisher.events().len(), f.counter.last().unwrap()), before, "nothing published or used");
    // Another agency's token has its own bucket; the desk's openings are not limited by it.
    svc.buka_berkas_instansi(&ask("b-1"), &ClientId::parse("walk-in-pln").unwrap()).await.unwrap();
    svc.buka_berkas(&request()).await.unwrap();
}
