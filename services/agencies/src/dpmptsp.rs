//! DPMPTSP, the regional investment and one-stop licensing office
//! (category: daerah): building approvals (PBG) and NIB guidance at the
//! MPP, `mpp.agency.dpmptsp.v1.DpmptspService` → common events
//! (`MAPPING.md`, section DPMPTSP, mapping v1).
//!
//! For a PBG the technical team checks the documents, inspects the site,
//! the office sets the regional retribution (SKRD), and the approval is
//! issued once it is paid. PBG carries fiktif positif: the projection shows
//! it as granted when the deadline passes without a decision. NIB guidance
//! is free: checked, then issued with the 13-digit NIB.

use mpp_agency_kit::KitError;
use mpp_proto::agency::dpmptsp::v1 as pb;
use pb::dpmptsp_service_client::DpmptspServiceClient;
use pb::dpmptsp_service_server::{DpmptspService, DpmptspServiceServer};
use tonic::{Request, Response, Status};

use crate::common::{self, Category, ServiceInfo};

/// Largest retribution one SKRD or payment may carry, in rupiah. The PBG
/// retribution grows with floor area and building class; even a large
/// commercial building stays below it.
pub const RETRIBUSI_IDR_MAX: i64 = 10_000_000_000;

/// Digits of a NIB (Nomor Induk Berusaha).
pub const NIB_DIGITS: usize = 13;

/// The service id of NIB guidance, whose issued number is a NIB.
const NIB_SERVICE: &str = "nib";

/// A permit number: a NIB has [`NIB_DIGITS`] digits; the numbers of the
/// other permits are the office's own (required).
fn nomor_izin(service: &ServiceInfo, field: &'static str, value: &str) -> Result<String, KitError> {
    if service.service_id == NIB_SERVICE {
        common::shaped(field, value, "a NIB (13 digits)", |s| common::is_digits(s, NIB_DIGITS..=NIB_DIGITS))
    } else {
        common::required_text(field, value)
    }
}

agency_service! {
    /// The RPC implementation.
    pub struct Dpmptsp: DpmptspService, DpmptspServiceServer, DpmptspServiceClient;
    /// Everything fixed about DPMPTSP.
    info "dpmptsp" {
        name: "DPMPTSP",
        category: Category::Daerah,
        default_grpc_addr: "127.0.0.1:50067",
        application_prefix: "DPM",
        services: &[
            ServiceInfo::new(pb::JenisIzin::Pbg as i32, "JENIS_IZIN_PBG", "pbg", "PBG"),
            ServiceInfo::new(pb::JenisIzin::Nib as i32, "JENIS_IZIN_NIB", NIB_SERVICE, "NIB"),
        ],
        journey: &[
            "AjukanPermohonan",
            "MulaiPemeriksaan",
            "JadwalkanPeninjauan",
            "TetapkanRetribusi",
            "KonfirmasiPembayaran",
            "TerbitkanIzin",
        ],
    }
    langkah { nomor_berkas, nomor_registrasi, petugas }
    filing AjukanPermohonan: ajukan_permohonan(pb::Permohonan) -> PermohonanDiterima { jenis_izin, dokumen }
        "`jenis_izin` → service; `dokumen` → `documents`",
    steps {
        MintaPerbaikan: minta_perbaikan(pb::PerbaikanDokumen) => documents_requested { dokumen, loket, catatan }
            "`dokumen` → `documents` (≥ 1), `loket` → `counter`, `catatan` → `note`",
        TerimaPerbaikan: terima_perbaikan(pb::DokumenDiperbaiki) => documents_received { dokumen }
            "`dokumen` → `documents`",
        MulaiPemeriksaan: mulai_pemeriksaan(pb::Langkah) => top { ReviewStarted }
            "— (technical check / consultation)",
        JadwalkanPeninjauan: jadwalkan_peninjauan(pb::PeninjauanLapangan) => appointment {
            Inspection, waktu_ms, lokasi
        } "kind `inspection`; `waktu_ms` → `at_ms`, `lokasi` → `place`",
        TetapkanRetribusi: tetapkan_retribusi(pb::Skrd) => fee {
            jumlah_retribusi <= RETRIBUSI_IDR_MAX, saluran_pembayaran, nomor_skrd: common::required_text, jatuh_tempo_ms
        } "`jumlah_retribusi` → `amount_idr` (1..=10 000 000 000), `nomor_skrd` (required) → `billing_code`, `saluran_pembayaran` → `payment_channel`, `jatuh_tempo_ms` → `due_at_ms` (0: none; from now to a year ahead)",
        KonfirmasiPembayaran: konfirmasi_pembayaran(pb::PembayaranRetribusi) => payment {
            jumlah_bayar <= RETRIBUSI_IDR_MAX, nomor_sts: common::optional_text
        } "`jumlah_bayar` → `amount_idr`, `nomor_sts` → `payment_reference` (may be empty)",
        TerbitkanIzin: terbitkan_izin(pb::IzinTerbit) => issued_by_service { nomor_izin: nomor_izin }
            "`nomor_izin` (required; for `nib` exactly 13 digits) → `document_number`",
        TolakPermohonan: tolak_permohonan(pb::Penolakan) => rejected { kode_alasan, alasan }
            "`kode_alasan` → `reason_code`, `alasan` → `reason`",
        BatalkanPermohonan: batalkan_permohonan(pb::Pembatalan) => withdrawn { alasan }
            "`alasan` → `reason`",
    }
}

#[cfg(test)]
mod tests;
