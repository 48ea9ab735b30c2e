//! Perumda Air Minum, "PDAM" (category: BUMD): water connections at the
//! MPP, `mpp.agency.pdam.v1.PdamService` → common events (`MAPPING.md`,
//! section PDAM, mapping v1).
//!
//! A new house connection goes through a site survey, a cost estimate (RAB)
//! to pay, and the installation of pipe and meter; the active connection
//! (water flows) is the "issued". A change of customer (balik nama) is
//! checked, billed and recorded on the same connection number.

use mpp_agency_kit::KitError;
use mpp_proto::agency::pdam::v1 as pb;
use pb::pdam_service_client::PdamServiceClient;
use pb::pdam_service_server::{PdamService, PdamServiceServer};
use tonic::{Request, Response, Status};

use crate::common::{self, Category, ServiceInfo};

/// Largest cost estimate or payment, in rupiah. A house connection costs a
/// few million; a long service pipe or a commercial connection more, but
/// not this.
pub const BIAYA_IDR_MAX: i64 = 50_000_000;

/// A connection number: 6 to 12 digits.
fn nomor_sambungan(field: &'static str, value: &str) -> Result<String, KitError> {
    common::shaped(field, value, "a connection number (6 to 12 digits)", |s| common::is_digits(s, 6..=12))
}

agency_service! {
    /// The RPC implementation.
    pub struct Pdam: PdamService, PdamServiceServer, PdamServiceClient;
    /// Everything fixed about the PDAM.
    info "pdam" {
        name: "Perumda Air Minum (PDAM)",
        category: Category::Bumd,
        default_grpc_addr: "127.0.0.1:50065",
        application_prefix: "PDAM",
        services: &[
            ServiceInfo::new(pb::Layanan::SambunganBaru as i32, "LAYANAN_SAMBUNGAN_BARU", "sambungan", "SB"),
            ServiceInfo::new(pb::Layanan::BalikNama as i32, "LAYANAN_BALIK_NAMA", "balik-nama", "BN"),
        ],
        journey: &[
            "AjukanPendaftaran",
            "JadwalkanSurvei",
            "TerbitkanRab",
            "KonfirmasiPembayaran",
            "JadwalkanPemasangan",
            "AktifkanSambungan",
        ],
    }
    langkah { nomor_berkas, nomor_pendaftaran, petugas }
    filing AjukanPendaftaran: ajukan_pendaftaran(pb::Pendaftaran) -> PendaftaranDiterima { layanan, dokumen }
        "`layanan` → service; `dokumen` → `documents`",
    steps {
        MintaKelengkapan: minta_kelengkapan(pb::KekuranganBerkas) => documents_requested {
            dokumen, loket, catatan
        } "`dokumen` → `documents` (≥ 1), `loket` → `counter`, `catatan` → `note`",
        TerimaKelengkapan: terima_kelengkapan(pb::BerkasDilengkapi) => documents_received { dokumen }
            "`dokumen` → `documents`",
        JadwalkanSurvei: jadwalkan_survei(pb::Kunjungan) => appointment { Survey, waktu_ms, alamat }
            "kind `survey`; `waktu_ms` → `at_ms`, `alamat` → `place`",
        TerbitkanRab: terbitkan_rab(pb::Rab) => fee {
            jumlah_biaya <= BIAYA_IDR_MAX, saluran_pembayaran, nomor_rab: common::required_text, batas_bayar_ms
        } "`jumlah_biaya` → `amount_idr` (1..=50 000 000), `nomor_rab` (required) → `billing_code`, `saluran_pembayaran` → `payment_channel`, `batas_bayar_ms` → `due_at_ms` (0: none; from now to a year ahead)",
        KonfirmasiPembayaran: konfirmasi_pembayaran(pb::Pembayaran) => payment {
            jumlah_bayar <= BIAYA_IDR_MAX, nomor_kuitansi: common::optional_text
        } "`jumlah_bayar` → `amount_idr`, `nomor_kuitansi` → `payment_reference` (may be empty)",
        JadwalkanPemasangan: jadwalkan_pemasangan(pb::Kunjungan) => appointment {
            Installation, waktu_ms, alamat
        } "kind `installation`; `waktu_ms` → `at_ms`, `alamat` → `place`",
        AktifkanSambungan: aktifkan_sambungan(pb::SambunganAktif) => issued { nomor_sambungan: nomor_sambungan }
            "`nomor_sambungan` (6–12 digits) → `document_number`",
        TolakPendaftaran: tolak_pendaftaran(pb::Penolakan) => rejected { kode_alasan, alasan }
            "`kode_alasan` → `reason_code`, `alasan` → `reason`",
        BatalkanPendaftaran: batalkan_pendaftaran(pb::Pembatalan) => withdrawn { alasan }
            "`alasan` → `reason`",
    }
}

#[cfg(test)]
mod tests;
