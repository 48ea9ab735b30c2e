//! Disdukcapil (category: daerah): family card, KTP-el and birth certificate
//! applications, `mpp.agency.dukcapil.v1.DukcapilService` → common events
//! (`docs/MAPPING.md`, section Disdukcapil, mapping v1).
//!
//! Dukcapil services are free of charge (UU 24/2013 art. 79A): no fee, no
//! payment and no appointment RPC. The officer verifies the data, prints
//! the document ("issued") and hands it over ("collected").

use std::future::Future;

use mpp_agency_kit::catalogue::CatalogueError;
use mpp_agency_kit::{Agency, KitError};
use mpp_proto::agency::dukcapil::v1 as pb;
use pb::dukcapil_service_client::DukcapilServiceClient;
use pb::dukcapil_service_server::{DukcapilService, DukcapilServiceServer};
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use crate::common::{self, Category, ServiceInfo};

/// The names reported SERVING by gRPC health.
pub const SERVING: &[&str] = &[<DukcapilServiceServer<Dukcapil> as NamedService>::NAME];

/// Why [`run`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The built-in catalogue is invalid.
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    /// Publishing the service standards failed.
    #[error("cannot publish the service standards: {0}")]
    Standards(#[from] KitError),
    /// The gRPC server failed.
    #[error(transparent)]
    Serve(#[from] mpp_agency_kit::server::ServeError),
}

/// Publishes the built-in catalogue, then serves the Dukcapil service on
/// `listener` until `shutdown` resolves: the service without the kit's
/// outbox, authentication or metrics (the binary uses
/// [`mpp_agency_kit::run`]).
pub async fn run(
    agency: Agency,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    agency.publish_standards(&INFO.builtin_standards()?).await?;
    let routes = tonic::service::Routes::new(Dukcapil::server(agency));
    mpp_agency_kit::serve(routes, SERVING, listener, shutdown).await?;
    Ok(())
}

agency_service! {
    /// The RPC implementation.
    pub struct Dukcapil: DukcapilService, DukcapilServiceServer, DukcapilServiceClient;
    /// Everything fixed about Disdukcapil.
    info "dukcapil" {
        name: "Disdukcapil",
        category: Category::Daerah,
        default_grpc_addr: "127.0.0.1:50061",
        application_prefix: "DKC",
        services: &[
            ServiceInfo::new(pb::Layanan::Kk as i32, "LAYANAN_KK", "kk", "KK"),
            ServiceInfo::new(pb::Layanan::KtpEl as i32, "LAYANAN_KTP_EL", "ktp-el", "KTPEL"),
            ServiceInfo::new(pb::Layanan::AktaLahir as i32, "LAYANAN_AKTA_LAHIR", "akta-lahir", "AKTA"),
        ],
        journey: &["AjukanPermohonan", "MulaiVerifikasi", "CetakDokumen", "SerahkanDokumen"],
    }
    langkah { nomor_berkas, nomor_permohonan, petugas }
    filing AjukanPermohonan: ajukan_permohonan(pb::Permohonan) -> PermohonanDiterima { layanan, dokumen }
        "`layanan` → service; `dokumen` → `documents`",
    steps {
        MintaKelengkapan: minta_kelengkapan(pb::KekuranganBerkas) => documents_requested {
            dokumen, loket, catatan
        } "`dokumen` → `documents` (≥ 1), `loket` → `counter` (required), `catatan` → `note`",
        TerimaKelengkapan: terima_kelengkapan(pb::BerkasDilengkapi) => documents_received { dokumen }
            "`dokumen` → `documents`",
        MulaiVerifikasi: mulai_verifikasi(pb::Langkah) => top { ReviewStarted }
            "— (data verification)",
        CetakDokumen: cetak_dokumen(pb::DokumenDicetak) => issued { nomor_register: common::optional_text }
            "`nomor_register` → `document_number` (may be empty)",
        SerahkanDokumen: serahkan_dokumen(pb::Langkah) => top { Collected }
            "—",
        TolakPermohonan: tolak_permohonan(pb::Penolakan) => rejected { kode_alasan, alasan }
            "`kode_alasan` → `reason_code`, `alasan` → `reason` (required)",
        // Dukcapil's withdrawal carries no reason (mapping v1).
        BatalkanPermohonan: batalkan_permohonan(pb::Langkah) => top { Withdrawn }
            "`reason` empty (the request is a bare `Langkah`)",
    }
}

#[cfg(test)]
mod tests;
