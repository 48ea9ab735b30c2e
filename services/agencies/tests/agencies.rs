//! Every agency of `mpp-agencies` over real gRPC against a real nats-server,
//! started the way its binary starts (the kit's `run_with`: durable outbox
//! in a temporary directory, relay to JetStream, no client tokens).
//!
//! One citizen's case (opened at the front office, which is not part of
//! this test) goes through all seven agencies: DPMPTSP files a building
//! approval into it first, the others file into it and walk their
//! documented journey. The stream must then hold each agency's service standards exactly
//! once, and each agency's events in the order of its journey, with the
//! kinds its mapping table names, the event ids the RPCs returned, and
//! `Nats-Msg-Id` = event id.

mod common;

use common::read_stream;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use mpp_agencies::{bank, bpn, cli, dpmptsp, dukcapil, imigrasi, pdam, pln, AgencyInfo, Answer, AGENCIES};
use mpp_agency_kit::testing::grpc_channel;
use mpp_agency_kit::{run_with, standard_event_id, Agency, AgencyService, Listeners, RunError};
use mpp_core::EventKind;
use mpp_proto::v1 as ev;
use mpp_test_support::NatsServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One agency service running in this process.
struct Running {
    info: &'static AgencyInfo,
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), RunError>>,
    _data: tempfile::TempDir,
}

/// Starts `info`'s service as its binary would, on 127.0.0.1:0.
async fn start<S, F>(info: &'static AgencyInfo, make: F, nats: &str) -> Running
where
    F: FnOnce(Agency) -> S + Send + 'static,
    S: AgencyService,
{
    let data = tempfile::tempdir().unwrap();
    let args = cli::try_parse_args_from(
        info,
        [
            info.binary,
            "--nats-url",
            nats,
            "--data-dir",
            data.path().to_str().unwrap(),
            "--insecure-no-auth",
            "--region-code",
            "1771",
        ],
    )
    .unwrap();
    let config = info.config(args).unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = grpc.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run_with(config, make, Listeners { grpc, metrics: None }, async {
        let _ = stopped.await;
    }));
    Running { info, addr, stop, task, _data: data }
}

fn in_days(days: i64) -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    now + days * 24 * 60 * 60 * 1000
}

/// The event ids a journey's call was answered with; a refused call fails
/// the test naming its RPC.
fn answered(rpc: &str, answer: Result<Answer, tonic::Status>) -> Vec<String> {
    answer.unwrap_or_else(|e| panic!("{rpc}: {e}")).event_ids
}

/// What one journey produced: the case and the event ids, in order.
struct Walked {
    case: String,
    event_ids: Vec<String>,
}

async fn dpmptsp_journey(addr: SocketAddr, case: &str) -> Walked {
    use dpmptsp::Call;
    use dpmptsp::INFO;
    use mpp_proto::agency::dpmptsp::v1 as pb;
    let mut c = pb::dpmptsp_service_client::DpmptspServiceClient::new(grpc_channel(addr).await);
    let filed = c
        .ajukan_permohonan(pb::Permohonan {
            nomor_berkas: case.to_owned(),
            jenis_izin: pb::JenisIzin::Pbg as i32,
            dokumen: vec!["Gambar arsitektur".into()],
            petugas: "ptsp-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(filed.pin.is_empty(), "an agency opens no case");
    let l = Some(pb::Langkah {
        nomor_berkas: filed.nomor_berkas.clone(),
        nomor_registrasi: filed.nomor_registrasi.clone(),
        petugas: "ptsp-2".into(),
    });
    let steps = [
        Call::MulaiPemeriksaan(l.clone().unwrap()),
        Call::JadwalkanPeninjauan(pb::PeninjauanLapangan {
            langkah: l.clone(),
            waktu_ms: in_days(3),
            lokasi: "Kel. Anggut Atas".into(),
        }),
        Call::TetapkanRetribusi(pb::Skrd {
            langkah: l.clone(),
            jumlah_retribusi: 2_340_000,
            nomor_skrd: "SKRD/PBG/2026/0042".into(),
            saluran_pembayaran: "Bank daerah".into(),
            jatuh_tempo_ms: in_days(30),
        }),
        Call::KonfirmasiPembayaran(pb::PembayaranRetribusi {
            langkah: l.clone(),
            jumlah_bayar: 2_340_000,
            nomor_sts: "STS-1187".into(),
        }),
        Call::TerbitkanIzin(pb::IzinTerbit { langkah: l.clone(), nomor_izin: "SK-PBG-177101-0001".into() }),
    ];
    let mut ids = filed.event_ids;
    for call in steps {
        let rpc = call.rpc();
        ids.extend(answered(rpc, call.call(&mut c).await));
    }
    assert_eq!(INFO.journey.len(), ids.len());
    Walked { case: filed.nomor_berkas, event_ids: ids }
}

async fn pln_journey(addr: SocketAddr, case: &str) -> Walked {
    use mpp_proto::agency::pln::v1 as pb;
    use pln::Call;
    let mut c = pb::pln_service_client::PlnServiceClient::new(grpc_channel(addr).await);
    let filed = c
        .daftar_permohonan(pb::Permohonan {
            nomor_berkas: case.to_owned(),
            jenis_layanan: pb::JenisLayanan::PasangBaru as i32,
            dokumen: vec!["KTP-el".into(), "SLO instalasi".into()],
            petugas: "pln-11".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let l = Some(pb::Langkah {
        nomor_berkas: filed.nomor_berkas.clone(),
        nomor_agenda: filed.nomor_agenda.clone(),
        petugas: "pln-12".into(),
    });
    let visit =
        |days| pb::Kunjungan { langkah: l.clone(), waktu_ms: in_days(days), alamat: "Jl. Merapi 5".into() };
    let steps = [
        Call::JadwalkanSurvei(visit(1)),
        Call::TerbitkanTagihan(pb::Tagihan {
            langkah: l.clone(),
            jumlah_tagihan: 1_259_700,
            kode_bayar: "521100123456".into(),
            saluran_pembayaran: "PLN Mobile".into(),
            jatuh_tempo_ms: in_days(7),
        }),
        Call::KonfirmasiPembayaran(pb::Pembayaran {
            langkah: l.clone(),
            jumlah_bayar: 1_259_700,
            nomor_referensi: "BANK-REF-1".into(),
        }),
        Call::JadwalkanPemasangan(visit(4)),
        Call::NyalakanSambungan(pb::Penyalaan { langkah: l.clone(), id_pelanggan: "172010012345".into() }),
    ];
    let mut ids = filed.event_ids;
    for call in steps {
        let rpc = call.rpc();
        ids.extend(answered(rpc, call.call(&mut c).await));
    }
    Walked { case: filed.nomor_berkas, event_ids: ids }
}

async fn pdam_journey(addr: SocketAddr, case: &str) -> Walked {
    use mpp_proto::agency::pdam::v1 as pb;
    use pdam::Call;
    let mut c = pb::pdam_service_client::PdamServiceClient::new(grpc_channel(addr).await);
    let filed = c
        .ajukan_pendaftaran(pb::Pendaftaran {
            nomor_berkas: case.to_owned(),
            layanan: pb::Layanan::SambunganBaru as i32,
            dokumen: vec!["KTP-el".into()],
            petugas: "pdam-4".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let l = Some(pb::Langkah {
        nomor_berkas: filed.nomor_berkas.clone(),
        nomor_pendaftaran: filed.nomor_pendaftaran.clone(),
        petugas: "pdam-5".into(),
    });
    let visit =
        |days| pb::Kunjungan { langkah: l.clone(), waktu_ms: in_days(days), alamat: "Jl. Salak 9".into() };
    let steps = [
        Call::JadwalkanSurvei(visit(1)),
        Call::TerbitkanRab(pb::Rab {
            langkah: l.clone(),
            jumlah_biaya: 1_750_000,
            nomor_rab: "RAB/2026/00123".into(),
            saluran_pembayaran: "Kasir PDAM".into(),
            batas_bayar_ms: in_days(14),
        }),
        Call::KonfirmasiPembayaran(pb::Pembayaran {
            langkah: l.clone(),
            jumlah_bayar: 1_750_000,
            nomor_kuitansi: "KW-0099".into(),
        }),
        Call::JadwalkanPemasangan(visit(6)),
        Call::AktifkanSambungan(pb::SambunganAktif { langkah: l.clone(), nomor_sambungan: "0104512".into() }),
    ];
    let mut ids = filed.event_ids;
    for call in steps {
        let rpc = call.rpc();
        ids.extend(answered(rpc, call.call(&mut c).await));
    }
    Walked { case: filed.nomor_berkas, event_ids: ids }
}

async fn bpn_journey(addr: SocketAddr, case: &str) -> Walked {
    use bpn::Call;
    use mpp_proto::agency::bpn::v1 as pb;
    let mut c = pb::bpn_service_client::BpnServiceClient::new(grpc_channel(addr).await);
    let filed = c
        .daftarkan_berkas(pb::PendaftaranBerkas {
            nomor_berkas_mpp: case.to_owned(),
            layanan: pb::LayananPertanahan::Pengukuran as i32,
            dokumen: vec!["Formulir permohonan".into()],
            petugas: "bpn-02".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let top = pb::Langkah {
        nomor_berkas_mpp: filed.nomor_berkas_mpp.clone(),
        nomor_permohonan: filed.nomor_permohonan.clone(),
        petugas: "bpn-03".into(),
    };
    let l = Some(top.clone());
    let steps = [
        Call::MintaKelengkapan(pb::KekuranganBerkas {
            langkah: l.clone(),
            dokumen: vec!["Surat pernyataan tanda batas".into()],
            loket: "Loket BPN".into(),
            catatan: String::new(),
        }),
        Call::TerimaKelengkapan(pb::BerkasDilengkapi {
            langkah: l.clone(),
            dokumen: vec!["Surat pernyataan tanda batas".into()],
        }),
        Call::MulaiPemeriksaan(top.clone()),
        Call::TerbitkanSps(pb::SuratPerintahSetor {
            langkah: l.clone(),
            jumlah_pnbp: 1_250_000,
            kode_billing: "820260115000777".into(),
            saluran_pembayaran: "SIMPONI".into(),
            batas_bayar_ms: in_days(7),
        }),
        Call::KonfirmasiPembayaran(pb::PembayaranPnbp {
            langkah: l.clone(),
            jumlah_pnbp: 1_250_000,
            ntpn: "A1B2C3D4E5F6G7H8".into(),
        }),
        Call::JadwalkanPengukuran(pb::JadwalPengukuran {
            langkah: l.clone(),
            waktu_ms: in_days(5),
            lokasi: "Kel. Padang Jati".into(),
        }),
        Call::TerbitkanProduk(pb::ProdukTerbit { langkah: l.clone(), nomor_produk: "PBT 00123/2026".into() }),
        Call::SerahkanProduk(top),
    ];
    let mut ids = filed.event_ids;
    for call in steps {
        let rpc = call.rpc();
        ids.extend(answered(rpc, call.call(&mut c).await));
    }
    Walked { case: filed.nomor_berkas_mpp, event_ids: ids }
}

async fn imigrasi_journey(addr: SocketAddr, case: &str) -> Walked {
    use imigrasi::Call;
    use mpp_proto::agency::imigrasi::v1 as pb;
    let mut c = pb::imigrasi_service_client::ImigrasiServiceClient::new(grpc_channel(addr).await);
    let filed = c
        .ajukan_permohonan(pb::Permohonan {
            nomor_berkas: case.to_owned(),
            jenis_paspor: pb::JenisPaspor::Elektronik as i32,
            dokumen: vec!["KTP-el".into(), "Kartu Keluarga".into()],
            petugas: "img-07".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let top = pb::Langkah {
        nomor_berkas: filed.nomor_berkas.clone(),
        nomor_permohonan: filed.nomor_permohonan.clone(),
        petugas: "img-08".into(),
    };
    let l = Some(top.clone());
    let steps = [
        Call::MulaiWawancara(top.clone()),
        Call::TerbitkanKodeBilling(pb::KodeBilling {
            langkah: l.clone(),
            jumlah_pnbp: 650_000,
            kode_billing: "820260114000123".into(),
            saluran_pembayaran: "SIMPONI".into(),
            berlaku_sampai_ms: 0,
        }),
        Call::KonfirmasiPembayaran(pb::PembayaranPnbp {
            langkah: l.clone(),
            jumlah_pnbp: 650_000,
            ntpn: "0A1B2C3D4E5F6G7H".into(),
        }),
        Call::CetakPaspor(pb::PasporDicetak { langkah: l.clone(), nomor_paspor: "E1234567".into() }),
        Call::SerahkanPaspor(top),
    ];
    let mut ids = filed.event_ids;
    for call in steps {
        let rpc = call.rpc();
        ids.extend(answered(rpc, call.call(&mut c).await));
    }
    Walked { case: filed.nomor_berkas, event_ids: ids }
}

async fn dukcapil_journey(addr: SocketAddr, case: &str) -> Walked {
    use dukcapil::Call;
    use mpp_proto::agency::dukcapil::v1 as pb;
    let mut c = pb::dukcapil_service_client::DukcapilServiceClient::new(grpc_channel(addr).await);
    let filed = c
        .ajukan_permohonan(pb::Permohonan {
            nomor_berkas: case.to_owned(),
            layanan: pb::Layanan::AktaLahir as i32,
            dokumen: vec!["Surat keterangan lahir".into()],
            petugas: "dkc-07".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let top = pb::Langkah {
        nomor_berkas: filed.nomor_berkas.clone(),
        nomor_permohonan: filed.nomor_permohonan.clone(),
        petugas: "dkc-08".into(),
    };
    let steps = [
        Call::MulaiVerifikasi(top.clone()),
        Call::CetakDokumen(pb::DokumenDicetak {
            langkah: Some(top.clone()),
            nomor_register: "AL.1771.0001".into(),
        }),
        Call::SerahkanDokumen(top),
    ];
    let mut ids = filed.event_ids;
    for call in steps {
        let rpc = call.rpc();
        ids.extend(answered(rpc, call.call(&mut c).await));
    }
    Walked { case: filed.nomor_berkas, event_ids: ids }
}

async fn bank_journey(addr: SocketAddr, case: &str) -> Walked {
    use bank::Call;
    use mpp_proto::agency::bank::v1 as pb;
    let mut c = pb::bank_service_client::BankServiceClient::new(grpc_channel(addr).await);
    let filed = c
        .ajukan_permohonan(pb::PermohonanNasabah {
            nomor_berkas: case.to_owned(),
            produk: pb::Produk::Tabungan as i32,
            dokumen: vec!["KTP-el".into()],
            petugas: "cs-21".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let top = pb::Langkah {
        nomor_berkas: filed.nomor_berkas.clone(),
        nomor_referensi: filed.nomor_referensi.clone(),
        petugas: "cs-22".into(),
    };
    let l = Some(top.clone());
    let steps = [
        Call::VerifikasiDataNasabah(top.clone()),
        Call::MintaDokumen(pb::DokumenKurang {
            langkah: l.clone(),
            dokumen: vec!["NPWP".into()],
            meja_layanan: "Meja Bank Mitra Swasta".into(),
            catatan: String::new(),
        }),
        Call::TerimaDokumen(pb::DokumenDiterima { langkah: l.clone(), dokumen: vec!["NPWP".into()] }),
        Call::TagihSetoranAwal(pb::TagihanSetoranAwal {
            langkah: l.clone(),
            jumlah_setoran: 100_000,
            saluran_setoran: "Teller".into(),
            batas_setor_ms: in_days(3),
        }),
        Call::TerimaSetoranAwal(pb::SetoranAwal {
            langkah: l.clone(),
            jumlah_setoran: 100_000,
            nomor_transaksi: "TRX-1".into(),
        }),
        Call::AktifkanRekening(pb::RekeningAktif {
            langkah: l.clone(),
            nomor_rekening: "0081234567890".into(),
        }),
        Call::SerahkanKartu(top),
    ];
    let mut ids = filed.event_ids;
    for call in steps {
        let rpc = call.rpc();
        ids.extend(answered(rpc, call.call(&mut c).await));
    }
    Walked { case: filed.nomor_berkas, event_ids: ids }
}

fn kind(body: &ev::envelope::Body) -> EventKind {
    mpp_wire::body_to_core(body).kind()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_case_walks_every_agency_and_the_stream_holds_each_journey_in_order() {
    let nats = NatsServer::start().await.expect("start nats-server (is it on PATH?)");
    let client = nats.connect().await.unwrap();
    let url = nats.url();

    let running = vec![
        start(&dpmptsp::INFO, dpmptsp::Dpmptsp::server, &url).await,
        start(&pln::INFO, pln::Pln::server, &url).await,
        start(&pdam::INFO, pdam::Pdam::server, &url).await,
        start(&bpn::INFO, bpn::Bpn::server, &url).await,
        start(&imigrasi::INFO, imigrasi::Imigrasi::server, &url).await,
        start(&bank::INFO, bank::Bank::server, &url).await,
        start(&dukcapil::INFO, dukcapil::Dukcapil::server, &url).await,
    ];
    assert_eq!(running.len(), AGENCIES.len(), "every agency is started");
    let addr = |id: &str| running.iter().find(|r| r.info.agency_id == id).unwrap().addr;

    // The front office opened the case; every agency files into it.
    let region = mpp_core::ids::RegionCode::parse("1771").unwrap();
    let case = mpp_core::ids::TrackingNumber::new(region, 42).unwrap().to_string();
    let mut walked: BTreeMap<&str, Walked> = BTreeMap::new();
    let first = dpmptsp_journey(addr("dpmptsp"), &case).await;
    walked.insert("dpmptsp", first);
    walked.insert("pln", pln_journey(addr("pln"), &case).await);
    walked.insert("pdam", pdam_journey(addr("pdam"), &case).await);
    walked.insert("bpn", bpn_journey(addr("bpn"), &case).await);
    walked.insert("imigrasi", imigrasi_journey(addr("imigrasi"), &case).await);
    walked.insert("bank", bank_journey(addr("bank"), &case).await);
    walked.insert("dukcapil", dukcapil_journey(addr("dukcapil"), &case).await);

    let standards: usize = AGENCIES.iter().map(|a| a.services.len()).sum();
    let events: usize = walked.values().map(|w| w.event_ids.len()).sum();
    let stored = read_stream(&async_nats::jetstream::new(client), (standards + events) as u64).await;

    for s in &stored {
        let e = &s.envelope;
        assert_eq!(s.msg_id.as_deref(), Some(e.event_id.as_str()), "Nats-Msg-Id = event id");
        assert_eq!(s.subject, format!("mpp.events.{}.{}", e.agency_id, e.service_id));
        assert_eq!(e.region_code, "1771");
    }

    for info in AGENCIES {
        let mine: Vec<&ev::Envelope> =
            stored.iter().map(|s| &s.envelope).filter(|e| e.agency_id == info.agency_id).collect();

        // Each service's standard exactly once, with its deterministic id.
        let published: Vec<&ev::Envelope> = mine
            .iter()
            .copied()
            .filter(|e| matches!(e.body, Some(ev::envelope::Body::ServiceStandardPublished(_))))
            .collect();
        assert_eq!(published.len(), info.services.len(), "{}: one standard per service", info.agency_id);
        let standards = info.builtin_standards().unwrap();
        for svc in info.services {
            let one: Vec<_> = published.iter().filter(|e| e.service_id == svc.service_id).collect();
            assert_eq!(one.len(), 1, "{}/{}", info.agency_id, svc.service_id);
            let version = standards.iter().find(|s| s.service.as_str() == svc.service_id).unwrap().version;
            let id = standard_event_id(&info.agency_id().unwrap(), &svc.service().unwrap(), version);
            assert_eq!(one[0].event_id, id.hyphenated().to_string());
        }

        // The journey: the returned ids, in order, with the table's kinds.
        let journey: Vec<&ev::Envelope> = mine
            .iter()
            .copied()
            .filter(|e| !matches!(e.body, Some(ev::envelope::Body::ServiceStandardPublished(_))))
            .collect();
        let w = &walked[info.agency_id];
        let ids: Vec<&str> = journey.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, w.event_ids.iter().map(String::as_str).collect::<Vec<_>>(), "{}", info.agency_id);
        let expected: Vec<EventKind> = info.journey.iter().map(|rpc| info.event_of(rpc).unwrap()).collect();
        let kinds: Vec<EventKind> = journey.iter().map(|e| kind(e.body.as_ref().unwrap())).collect();
        assert_eq!(kinds, expected, "{}", info.agency_id);
        assert!(journey.iter().all(|e| e.case_id == case), "{}: one case for every agency", info.agency_id);
        assert_eq!(w.case, case);
        let apps: std::collections::BTreeSet<&str> = journey
            .iter()
            .filter(|e| !e.application_id.is_empty())
            .map(|e| e.application_id.as_str())
            .collect();
        assert_eq!(apps.len(), 1, "{}: one application", info.agency_id);
        // Each fee carries the due date its RPC gave (Imigrasi's journey
        // gives none: 0), days ahead of now.
        for e in &journey {
            if let Some(ev::envelope::Body::FeeAssessed(fee)) = &e.body {
                if info.agency_id == "imigrasi" {
                    assert_eq!(fee.due_at_ms, 0, "imigrasi: no due date given");
                } else {
                    assert!(fee.due_at_ms > in_days(1), "{}: due date {}", info.agency_id, fee.due_at_ms);
                }
            }
        }
        assert!(
            apps.iter().all(|a| a.starts_with(&format!("{}-", info.application_prefix))),
            "{}: {apps:?}",
            info.agency_id
        );
    }

    // The bank published only the masked account number.
    let issued_bank = stored
        .iter()
        .filter(|s| s.envelope.agency_id == "bank")
        .find_map(|s| match &s.envelope.body {
            Some(ev::envelope::Body::Issued(i)) => Some(i.document_number.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(issued_bank, "*********7890");

    for r in running {
        let _ = r.stop.send(());
        r.task.await.unwrap().unwrap();
    }
}
