//! Kantor Pertanahan, ATR/BPN (category: pusat): land services at the MPP,
//! `mpp.agency.bpn.v1.BpnService` → common events (`MAPPING.md`, section
//! BPN, mapping v1).
//!
//! The land office registers a berkas, checks it, issues a deposit order
//! (SPS) for the PNBP, and for a measurement sends a surveyor after payment;
//! the product (certificate, check note, parcel map) is then collected.

use mpp_proto::agency::bpn::v1 as pb;
use pb::bpn_service_client::BpnServiceClient;
use pb::bpn_service_server::{BpnService, BpnServiceServer};
use tonic::{Request, Response, Status};

use crate::common::{self, Category, ServiceInfo};

/// Largest PNBP one deposit order or payment may carry, in rupiah. Land
/// PNBP grows with the land's value (transfer: 1‰ of it) and area
/// (measurement), so the ceiling is high; beyond it an amount is a typo.
pub const PNBP_IDR_MAX: i64 = 1_000_000_000;

agency_service! {
    /// The RPC implementation.
    pub struct Bpn: BpnService, BpnServiceServer, BpnServiceClient;
    /// Everything fixed about the land office.
    info "bpn" {
        name: "Kantor Pertanahan (ATR/BPN)",
        category: Category::Pusat,
        default_grpc_addr: "127.0.0.1:50063",
        application_prefix: "BPN",
        services: &[
            ServiceInfo::new(
                pb::LayananPertanahan::Pengecekan as i32,
                "LAYANAN_PERTANAHAN_PENGECEKAN",
                "pengecekan",
                "CEK",
            ),
            ServiceInfo::new(
                pb::LayananPertanahan::PeralihanHak as i32,
                "LAYANAN_PERTANAHAN_PERALIHAN_HAK",
                "peralihan-hak",
                "PHAK",
            ),
            ServiceInfo::new(
                pb::LayananPertanahan::Pengukuran as i32,
                "LAYANAN_PERTANAHAN_PENGUKURAN",
                "pengukuran",
                "UKUR",
            ),
        ],
        journey: &[
            "DaftarkanBerkas",
            "MintaKelengkapan",
            "TerimaKelengkapan",
            "MulaiPemeriksaan",
            "TerbitkanSps",
            "KonfirmasiPembayaran",
            "JadwalkanPengukuran",
            "TerbitkanProduk",
            "SerahkanProduk",
        ],
    }
    langkah { nomor_berkas_mpp, nomor_permohonan, petugas }
    filing DaftarkanBerkas: daftarkan_berkas(pb::PendaftaranBerkas) -> BerkasTerdaftar { layanan, dokumen }
        "`layanan` → service; `dokumen` → `documents`",
    steps {
        MintaKelengkapan: minta_kelengkapan(pb::KekuranganBerkas) => documents_requested {
            dokumen, loket, catatan
        } "`dokumen` → `documents` (≥ 1), `loket` → `counter`, `catatan` → `note`",
        TerimaKelengkapan: terima_kelengkapan(pb::BerkasDilengkapi) => documents_received { dokumen }
            "`dokumen` → `documents`",
        MulaiPemeriksaan: mulai_pemeriksaan(pb::Langkah) => top { ReviewStarted }
            "—",
        TerbitkanSps: terbitkan_sps(pb::SuratPerintahSetor) => fee {
            jumlah_pnbp <= PNBP_IDR_MAX, saluran_pembayaran, kode_billing: common::simponi_billing_code, batas_bayar_ms
        } "`jumlah_pnbp` → `amount_idr` (1..=1 000 000 000), `kode_billing` (SIMPONI, 15 digits) → `billing_code`, `saluran_pembayaran` → `payment_channel`, `batas_bayar_ms` → `due_at_ms` (0: none; from now to a year ahead)",
        KonfirmasiPembayaran: konfirmasi_pembayaran(pb::PembayaranPnbp) => payment {
            jumlah_pnbp <= PNBP_IDR_MAX, ntpn: common::ntpn
        } "`jumlah_pnbp` → `amount_idr`, `ntpn` → `payment_reference`",
        JadwalkanPengukuran: jadwalkan_pengukuran(pb::JadwalPengukuran) => appointment {
            Survey, waktu_ms, lokasi
        } "kind `survey`; `waktu_ms` → `at_ms`, `lokasi` → `place`",
        TerbitkanProduk: terbitkan_produk(pb::ProdukTerbit) => issued { nomor_produk: common::optional_text }
            "`nomor_produk` → `document_number` (may be empty: a check note)",
        SerahkanProduk: serahkan_produk(pb::Langkah) => top { Collected }
            "—",
        TolakBerkas: tolak_berkas(pb::Penolakan) => rejected { kode_alasan, alasan }
            "`kode_alasan` → `reason_code`, `alasan` → `reason`",
        BatalkanBerkas: batalkan_berkas(pb::Pembatalan) => withdrawn { alasan }
            "`alasan` → `reason`",
    }
}

#[cfg(test)]
mod tests;
