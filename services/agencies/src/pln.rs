//! PT PLN (Persero) (category: BUMN): new connections and power upgrades at
//! the MPP, `mpp.agency.pln.v1.PlnService` → common events (`MAPPING.md`,
//! section PLN, mapping v1).
//!
//! PLN surveys the site, bills the connection cost (biaya penyambungan),
//! schedules the installation of the meter once it is paid, and switches the
//! supply on (penyalaan), which is the "issued" of a connection: there is
//! nothing to collect.

use mpp_agency_kit::KitError;
use mpp_proto::agency::pln::v1 as pb;
use pb::pln_service_client::PlnServiceClient;
use pb::pln_service_server::{PlnService, PlnServiceServer};
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use crate::common::{self, AgencyInfo, Category, ServiceInfo};

/// The agency id on every event and subject.
pub const AGENCY_ID: &str = "pln";

/// Largest bill or payment, in rupiah. The connection cost grows with the
/// power asked for; low-voltage connections (up to 197 kVA, what an MPP
/// counter handles) stay well below it.
pub const TAGIHAN_IDR_MAX: i64 = 500_000_000;

/// Digits of a PLN customer id (ID pelanggan).
pub const ID_PELANGGAN_DIGITS: usize = 12;

/// Everything fixed about PLN.
pub static INFO: AgencyInfo = AgencyInfo {
    agency_id: AGENCY_ID,
    name: "PT PLN (Persero)",
    category: Category::Bumn,
    binary: "mpp-pln",
    default_grpc_addr: "127.0.0.1:50064",
    grpc_service: <PlnServiceServer<Pln> as NamedService>::NAME,
    service_field: "jenis_layanan",
    application_prefix: "PLN",
    application_field: "nomor_agenda",
    catalogue: builtin_catalogue!("pln"),
    services: &[
        ServiceInfo {
            value: pb::JenisLayanan::PasangBaru as i32,
            enum_name: "JENIS_LAYANAN_PASANG_BARU",
            service_id: "pasang-baru",
            code: "PB",
        },
        ServiceInfo {
            value: pb::JenisLayanan::TambahDaya as i32,
            enum_name: "JENIS_LAYANAN_TAMBAH_DAYA",
            service_id: "tambah-daya",
            code: "TD",
        },
    ],
    rpcs: RPCS,
    journey: &[
        "DaftarPermohonan",
        "JadwalkanSurvei",
        "TerbitkanTagihan",
        "KonfirmasiPembayaran",
        "JadwalkanPemasangan",
        "NyalakanSambungan",
    ],
};

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
            jumlah_tagihan <= TAGIHAN_IDR_MAX, saluran_pembayaran, kode_bayar: kode_bayar
        } "`jumlah_tagihan` → `amount_idr` (1..=500 000 000), `kode_bayar` (10–16 digits) → `billing_code`, `saluran_pembayaran` → `payment_channel`",
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

#[cfg(test)]
mod tests;
