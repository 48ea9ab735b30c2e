//! PT PLN (Persero) (category: BUMN): new connections and power upgrades at
//! the MPP, `mpp.agency.pln.v1.PlnService` → common events (`MAPPING.md`,
//! section PLN, mapping v1).
//!
//! PLN surveys the site, bills the connection cost (biaya penyambungan),
//! schedules the installation of the meter once it is paid, and switches the
//! supply on (penyalaan), which is the "issued" of a connection: there is
//! nothing to collect.
//!
//! # Waiting for the building approval
//!
//! A new connection (`pasang-baru`) needs the building's approval (PBG),
//! issued by DPMPTSP. PLN's service follows DPMPTSP's PBG `issued` events
//! on its cases (the registry grants it that type only; see
//! [`mpp_agency_kit::case_events`]) and reacts ([`reaction`]): a
//! `pasang-baru` application of PLN in the same case that is **paid**
//! (state `paid`: surveyed, billed and paid, the installation is the next
//! step) is what "waiting for the PBG" means here, and for each such
//! application PLN schedules the installation itself
//! (`appointment_scheduled`, kind `installation`, [`INSTALLATION_LEAD_MS`]
//! after the PBG's time of record, at [`INSTALLATION_PLACE`]) under an
//! event id derived from the PBG's ([`reaction_event_id`]), so a PBG
//! delivered twice schedules one installation. An application in any other
//! state is left alone: the back office still schedules by hand
//! (`JadwalkanPemasangan`), e.g. when the payment comes after the PBG.

use mpp_agency_kit::case_events::{reaction_event_id, CaseEventReaction};
use mpp_agency_kit::{Agency, KitError};
use mpp_core::ids::{ApplicationId, OfficerId, ServiceId, TrackingNumber};
use mpp_core::EventBody;
use mpp_proto::agency::pln::v1 as pb;
use mpp_proto::v1 as hub;
use pb::pln_service_client::PlnServiceClient;
use pb::pln_service_server::{PlnService, PlnServiceServer};
use tonic::{Request, Response, Status};

use crate::common::{self, Category, ServiceInfo};

/// Largest bill or payment, in rupiah. The connection cost grows with the
/// power asked for; low-voltage connections (up to 197 kVA, what an MPP
/// counter handles) stay well below it.
pub const TAGIHAN_IDR_MAX: i64 = 500_000_000;

/// Digits of a PLN customer id (ID pelanggan).
pub const ID_PELANGGAN_DIGITS: usize = 12;

/// A PLN payment code: 10 to 16 digits.
fn kode_bayar(field: &'static str, value: &str) -> Result<String, KitError> {
    common::shaped(field, value, "a PLN payment code (10 to 16 digits)", |s| common::is_digits(s, 10..=16))
}

/// A PLN customer id: [`ID_PELANGGAN_DIGITS`] digits.
fn id_pelanggan(field: &'static str, value: &str) -> Result<String, KitError> {
    common::shaped(field, value, "a PLN customer id (12 digits)", |s| {
        common::is_digits(s, ID_PELANGGAN_DIGITS..=ID_PELANGGAN_DIGITS)
    })
}

agency_service! {
    /// The RPC implementation.
    pub struct Pln: PlnService, PlnServiceServer, PlnServiceClient;
    /// Everything fixed about PLN.
    info "pln" {
        name: "PT PLN (Persero)",
        category: Category::Bumn,
        default_grpc_addr: "127.0.0.1:50064",
        application_prefix: "PLN",
        services: &[
            ServiceInfo::new(
                pb::JenisLayanan::PasangBaru as i32,
                "JENIS_LAYANAN_PASANG_BARU",
                "pasang-baru",
                "PB",
            ),
            ServiceInfo::new(
                pb::JenisLayanan::TambahDaya as i32,
                "JENIS_LAYANAN_TAMBAH_DAYA",
                "tambah-daya",
                "TD",
            ),
        ],
        journey: &[
            "DaftarPermohonan",
            "JadwalkanSurvei",
            "TerbitkanTagihan",
            "KonfirmasiPembayaran",
            "JadwalkanPemasangan",
            "NyalakanSambungan",
        ],
    }
    langkah { nomor_berkas, nomor_agenda, petugas }
    filing DaftarPermohonan: daftar_permohonan(pb::Permohonan) -> PermohonanTerdaftar { jenis_layanan, dokumen }
        "`jenis_layanan` → service; `dokumen` → `documents`",
    steps {
        MintaKelengkapan: minta_kelengkapan(pb::KekuranganData) => documents_requested {
            dokumen, loket, catatan
        } "`dokumen` → `documents` (≥ 1), `loket` → `counter`, `catatan` → `note`",
        TerimaKelengkapan: terima_kelengkapan(pb::DataDilengkapi) => documents_received { dokumen }
            "`dokumen` → `documents`",
        JadwalkanSurvei: jadwalkan_survei(pb::Kunjungan) => appointment { Survey, waktu_ms, alamat }
            "kind `survey`; `waktu_ms` → `at_ms`, `alamat` → `place`",
        TerbitkanTagihan: terbitkan_tagihan(pb::Tagihan) => fee {
            jumlah_tagihan <= TAGIHAN_IDR_MAX, saluran_pembayaran, kode_bayar: kode_bayar, jatuh_tempo_ms
        } "`jumlah_tagihan` → `amount_idr` (1..=500 000 000), `kode_bayar` (10–16 digits) → `billing_code`, `saluran_pembayaran` → `payment_channel`, `jatuh_tempo_ms` → `due_at_ms` (0: none; from now to a year ahead)",
        KonfirmasiPembayaran: konfirmasi_pembayaran(pb::Pembayaran) => payment {
            jumlah_bayar <= TAGIHAN_IDR_MAX, nomor_referensi: common::optional_text
        } "`jumlah_bayar` → `amount_idr`, `nomor_referensi` → `payment_reference` (may be empty)",
        JadwalkanPemasangan: jadwalkan_pemasangan(pb::Kunjungan) => appointment {
            Installation, waktu_ms, alamat
        } "kind `installation`; `waktu_ms` → `at_ms`, `alamat` → `place`",
        NyalakanSambungan: nyalakan_sambungan(pb::Penyalaan) => issued { id_pelanggan: id_pelanggan }
            "`id_pelanggan` (12 digits) → `document_number`",
        TolakPermohonan: tolak_permohonan(pb::Penolakan) => rejected { kode_alasan, alasan }
            "`kode_alasan` → `reason_code`, `alasan` → `reason`",
        BatalkanPermohonan: batalkan_permohonan(pb::Pembatalan) => withdrawn { alasan }
            "`alasan` → `reason`",
    }
}

/// The agency whose event PLN waits on: DPMPTSP.
pub const PBG_AGENCY: &str = "dpmptsp";

/// DPMPTSP's building approval service.
pub const PBG_SERVICE: &str = "pbg";

/// PLN's service that waits on the PBG.
pub const WAITING_SERVICE: &str = "pasang-baru";

/// The state in which a `pasang-baru` application waits on the PBG.
pub const WAITING_STATE: &str = "paid";

/// How long after the PBG's time of record the installation is scheduled:
/// three days, for the installation team's round.
pub const INSTALLATION_LEAD_MS: i64 = 3 * 86_400_000;

/// Where the installation takes place (PLN knows the address from the
/// application; the hub never holds it).
pub const INSTALLATION_PLACE: &str =
    "Alamat bangunan sesuai permohonan (dijadwalkan otomatis setelah PBG terbit)";

/// The pseudonymous officer of the steps PLN's service takes by itself.
pub const REACTION_OFFICER: &str = "sistem-pln";

/// PLN's applications `event` finds waiting: when it is DPMPTSP's PBG
/// issued, each own `pasang-baru` application in state [`WAITING_STATE`].
pub fn waiting_applications(event: &hub::CaseEvent) -> Vec<String> {
    if (event.agency_id.as_str(), event.service_id.as_str(), event.event_type.as_str())
        != (PBG_AGENCY, PBG_SERVICE, "issued")
    {
        return Vec::new();
    }
    event
        .own_applications
        .iter()
        .filter(|a| a.service_id == WAITING_SERVICE && a.state == WAITING_STATE)
        .map(|a| a.application_id.clone())
        .collect()
}

/// PLN's reaction to other agencies' events on its cases (see the module
/// docs).
pub fn reaction() -> CaseEventReaction {
    CaseEventReaction::new(|agency: Agency, event: hub::CaseEvent| {
        Box::pin(async move { schedule_installations(&agency, &event).await })
    })
}

async fn schedule_installations(agency: &Agency, event: &hub::CaseEvent) -> Result<(), KitError> {
    let waiting = waiting_applications(event);
    if waiting.is_empty() {
        return Ok(());
    }
    let input = |field: &'static str| move |rejection| KitError::Input { field, rejection };
    let case = TrackingNumber::parse(&event.case_id).map_err(input("case_id"))?;
    let service = ServiceId::parse(WAITING_SERVICE).map_err(input("service_id"))?;
    let officer = OfficerId::parse(REACTION_OFFICER).map_err(input("officer"))?;
    for app in waiting {
        let application = ApplicationId::parse(&app).map_err(input("application_id"))?;
        let body = EventBody::AppointmentScheduled {
            kind: "installation".to_owned(),
            at_ms: event.recorded_at_ms.saturating_add(INSTALLATION_LEAD_MS),
            place: INSTALLATION_PLACE.to_owned(),
        };
        let id = reaction_event_id(event, &app);
        agency.step_with_id(id, &service, case, application, &officer, body).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
