//! Disdukcapil (category: daerah): family card, KTP-el and birth certificate
//! applications, `mpp.agency.dukcapil.v1.DukcapilService` → common events
//! (`docs/MAPPING.md`, section Disdukcapil, mapping v1).
//!
//! Dukcapil services are free of charge (UU 24/2013 art. 79A): no fee, no
//! payment and no appointment RPC. The officer verifies the data, prints
//! the document ("issued") and hands it over ("collected").

use std::future::Future;

use mpp_agency_kit::catalogue::{BuiltinCatalogue, CatalogueError, ServiceStandardSpec};
use mpp_agency_kit::{Agency, KitError};
use mpp_core::{EventBody, EventKind};
use mpp_proto::agency::dukcapil::v1 as pb;
use pb::dukcapil_service_client::DukcapilServiceClient;
use pb::dukcapil_service_server::{DukcapilService, DukcapilServiceServer};
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use crate::calls::{Target, Unmapped};
use crate::common::{self, AgencyInfo, Category, RpcMapping, ServiceInfo};

/// The agency id on every event and subject.
pub const AGENCY_ID: &str = "dukcapil";

/// Everything fixed about Disdukcapil.
pub static INFO: AgencyInfo = AgencyInfo {
    agency_id: AGENCY_ID,
    name: "Disdukcapil",
    category: Category::Daerah,
    binary: "mpp-dukcapil",
    default_grpc_addr: "127.0.0.1:50061",
    grpc_service: <DukcapilServiceServer<Dukcapil> as NamedService>::NAME,
    service_field: "layanan",
    application_prefix: "DKC",
    application_field: "nomor_permohonan",
    catalogue: CATALOGUE,
    services: &[
        ServiceInfo { value: pb::Layanan::Kk as i32, enum_name: "LAYANAN_KK", service_id: "kk", code: "KK" },
        ServiceInfo {
            value: pb::Layanan::KtpEl as i32,
            enum_name: "LAYANAN_KTP_EL",
            service_id: "ktp-el",
            code: "KTPEL",
        },
        ServiceInfo {
            value: pb::Layanan::AktaLahir as i32,
            enum_name: "LAYANAN_AKTA_LAHIR",
            service_id: "akta-lahir",
            code: "AKTA",
        },
    ],
    rpcs: &[
        RpcMapping {
            rpc: "AjukanPermohonan",
            event: EventKind::ApplicationFiled,
            fields: "`layanan` → service; `dokumen` → `documents`",
        },
        RpcMapping {
            rpc: "MintaKelengkapan",
            event: EventKind::DocumentsRequested,
            fields: "`dokumen` → `documents` (≥ 1), `loket` → `counter` (required), `catatan` → `note`",
        },
        RpcMapping {
            rpc: "TerimaKelengkapan",
            event: EventKind::DocumentsReceived,
            fields: "`dokumen` → `documents`",
        },
        RpcMapping {
            rpc: "MulaiVerifikasi",
            event: EventKind::ReviewStarted,
            fields: "— (data verification)",
        },
        RpcMapping {
            rpc: "CetakDokumen",
            event: EventKind::Issued,
            fields: "`nomor_register` → `document_number` (may be empty)",
        },
        RpcMapping { rpc: "SerahkanDokumen", event: EventKind::Collected, fields: "—" },
        RpcMapping {
            rpc: "TolakPermohonan",
            event: EventKind::Rejected,
            fields: "`kode_alasan` → `reason_code`, `alasan` → `reason` (required)",
        },
        RpcMapping {
            rpc: "BatalkanPermohonan",
            event: EventKind::Withdrawn,
            fields: "`reason` empty (the request is a bare `Langkah`)",
        },
    ],
    journey: &["AjukanPermohonan", "MulaiVerifikasi", "CetakDokumen", "SerahkanDokumen"],
};

/// Dukcapil's built-in catalogue: `deploy/catalogue/dukcapil.toml` (which
/// explains the completion times), compiled in. `--catalogue-file`
/// replaces it in the binary.
pub const CATALOGUE: BuiltinCatalogue = BuiltinCatalogue {
    path: "deploy/catalogue/dukcapil.toml",
    text: include_str!("../../../deploy/catalogue/dukcapil.toml"),
};

/// Dukcapil's built-in service standards, parsed and validated.
pub fn catalogue() -> Result<Vec<ServiceStandardSpec>, CatalogueError> {
    INFO.builtin_standards()
}

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
    agency.publish_standards(&catalogue()?).await?;
    let routes = tonic::service::Routes::new(Dukcapil::server(agency));
    mpp_agency_kit::serve(routes, SERVING, listener, shutdown).await?;
    Ok(())
}

agency_service! {
    /// The RPC implementation.
    pub struct Dukcapil: DukcapilService, DukcapilServiceServer;
    langkah { nomor_berkas, nomor_permohonan, petugas }
    filing ajukan_permohonan(pb::Permohonan) -> PermohonanDiterima { layanan, dokumen }
    steps {
        minta_kelengkapan(pb::KekuranganBerkas) => documents_requested { dokumen, loket, catatan },
        terima_kelengkapan(pb::BerkasDilengkapi) => documents_received { dokumen },
        mulai_verifikasi(pb::Langkah) => top { EventBody::ReviewStarted },
        cetak_dokumen(pb::DokumenDicetak) => issued { nomor_register: common::optional_text },
        serahkan_dokumen(pb::Langkah) => top { EventBody::Collected },
        tolak_permohonan(pb::Penolakan) => rejected { kode_alasan, alasan },
        // Dukcapil's withdrawal carries no reason (mapping v1).
        batalkan_permohonan(pb::Langkah) => top { EventBody::Withdrawn { reason: String::new() } },
    }
}

agency_calls! {
    server: DukcapilService,
    client: DukcapilServiceClient,
    filing: AjukanPermohonan(pb::Permohonan) => ajukan_permohonan { nomor_berkas, nomor_permohonan },
    steps: {
        MintaKelengkapan(pb::KekuranganBerkas) => minta_kelengkapan,
        TerimaKelengkapan(pb::BerkasDilengkapi) => terima_kelengkapan,
        MulaiVerifikasi(pb::Langkah) => mulai_verifikasi,
        CetakDokumen(pb::DokumenDicetak) => cetak_dokumen,
        SerahkanDokumen(pb::Langkah) => serahkan_dokumen,
        TolakPermohonan(pb::Penolakan) => tolak_permohonan,
        BatalkanPermohonan(pb::Langkah) => batalkan_permohonan,
    }
}

/// The inverse of [`INFO`]'s mapping table: the request that makes
/// Disdukcapil publish `body` about `t`'s application (an `application_filed`
/// files one into `t.case`, or into a new case when it is empty).
pub fn request(t: &Target<'_>, body: &EventBody) -> Result<Call, Unmapped> {
    use EventBody as E;
    let top = || pb::Langkah {
        nomor_berkas: t.case.to_owned(),
        nomor_permohonan: t.application.to_owned(),
        petugas: t.officer.to_owned(),
    };
    let langkah = || Some(top());
    Ok(match body.clone() {
        E::ApplicationFiled { documents } => Call::AjukanPermohonan(pb::Permohonan {
            nomor_berkas: t.case.to_owned(),
            layanan: INFO.service_value(t.service_id)?,
            dokumen: documents,
            petugas: t.officer.to_owned(),
        }),
        E::DocumentsRequested { documents, counter, note } => Call::MintaKelengkapan(pb::KekuranganBerkas {
            langkah: langkah(),
            dokumen: documents,
            loket: counter,
            catatan: note,
        }),
        E::DocumentsReceived { documents } => {
            Call::TerimaKelengkapan(pb::BerkasDilengkapi { langkah: langkah(), dokumen: documents })
        }
        E::ReviewStarted => Call::MulaiVerifikasi(top()),
        E::Issued { document_number } => {
            Call::CetakDokumen(pb::DokumenDicetak { langkah: langkah(), nomor_register: document_number })
        }
        E::Collected => Call::SerahkanDokumen(top()),
        E::Rejected { reason_code, reason } => Call::TolakPermohonan(pb::Penolakan {
            langkah: langkah(),
            kode_alasan: reason_code,
            alasan: reason,
        }),
        // The withdrawal carries no reason: the event's is dropped (mapping v1).
        E::Withdrawn { .. } => Call::BatalkanPermohonan(top()),
        other => return Err(Unmapped::no_rpc(AGENCY_ID, other.kind())),
    })
}

#[cfg(test)]
mod tests;
