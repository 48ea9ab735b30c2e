//! Disdukcapil's MPP agency service: the `mpp.agency.dukcapil.v1.DukcapilService`
//! RPCs, each translated into the hub's common events (see `MAPPING.md`,
//! mapping v1).
//!
//! The service keeps no case state. It checks the shape of each request,
//! builds the event, hands it to the kit's publisher and answers "accepted"
//! once the publisher accepted it (in the binary: flushed to the durable
//! outbox, from where it reaches JetStream). Whether the step is legal in the application's current
//! state is the hub's decision: an illegal step is recorded there as a
//! rejected log entry the agency can see.
//!
//! Architecture invariant: this crate knows Dukcapil's vocabulary and nothing
//! about NATS; everything below the RPC goes through [`mpp_agency_kit`].

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

use std::future::Future;

use mpp_agency_kit::catalogue::{BuiltinCatalogue, CatalogueError, ServiceStandardSpec};
use mpp_agency_kit::ids::new_application_id;
use mpp_agency_kit::input;
use mpp_agency_kit::{Accepted, Agency, KitError};
use mpp_core::ids::{AgencyId, ApplicationId, OfficerId, ServiceId, TrackingNumber};
use mpp_core::{EventBody, ReasonCode, Rejection};
use mpp_proto::agency::dukcapil::v1 as pb;
use pb::dukcapil_service_server::{DukcapilService, DukcapilServiceServer};
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

/// The agency id on every event and subject.
pub const AGENCY_ID: &str = "dukcapil";

/// First part of every application id this service allocates.
pub const APPLICATION_ID_PREFIX: &str = "DKC";

/// Default gRPC listen address of `mpp-dukcapil`.
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:50061";

/// Version of the RPC → event mapping in `MAPPING.md`.
pub const MAPPING_VERSION: u32 = 1;

/// One Dukcapil service (layanan) and its names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayananInfo {
    /// The proto enum value.
    pub layanan: pb::Layanan,
    /// The hub's service id (subject token).
    pub service_id: &'static str,
    /// The code inside application ids, `DKC-<code>-…`.
    pub code: &'static str,
}

/// Every layanan, explicitly mapped. `LAYANAN_UNSPECIFIED` has no entry.
pub const LAYANAN: &[LayananInfo] = &[
    LayananInfo { layanan: pb::Layanan::Kk, service_id: "kk", code: "KK" },
    LayananInfo { layanan: pb::Layanan::KtpEl, service_id: "ktp-el", code: "KTPEL" },
    LayananInfo { layanan: pb::Layanan::AktaLahir, service_id: "akta-lahir", code: "AKTA" },
];

impl LayananInfo {
    /// The service id as the core's type.
    pub fn service(&self) -> Result<ServiceId, KitError> {
        ServiceId::parse(self.service_id).map_err(KitError::Event)
    }

    /// The prefix of this layanan's application ids, e.g. `DKC-KK`.
    pub fn application_prefix(&self) -> String {
        format!("{APPLICATION_ID_PREFIX}-{}", self.code)
    }
}

/// The layanan of a request (`INVALID_FIELD_VALUE` for
/// `LAYANAN_UNSPECIFIED` or a value this build does not know).
pub fn layanan(field: &'static str, value: i32) -> Result<&'static LayananInfo, KitError> {
    let known = pb::Layanan::try_from(value).ok();
    known.and_then(|l| LAYANAN.iter().find(|i| i.layanan == l)).ok_or_else(|| {
        KitError::input(
            field,
            ReasonCode::InvalidFieldValue,
            format!(
                "layanan {value} is not a Dukcapil service; use LAYANAN_KK, LAYANAN_KTP_EL or LAYANAN_AKTA_LAHIR"
            ),
        )
    })
}

/// The layanan an application id belongs to, read from its `DKC-<code>-`
/// prefix (`MALFORMED_APPLICATION_ID` otherwise).
pub fn layanan_of_application(
    field: &'static str,
    id: &ApplicationId,
) -> Result<&'static LayananInfo, KitError> {
    let code = id
        .as_str()
        .strip_prefix(APPLICATION_ID_PREFIX)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|rest| rest.split_once('-'))
        .filter(|(_, random)| !random.is_empty())
        .map(|(code, _)| code);
    code.and_then(|c| LAYANAN.iter().find(|i| i.code == c)).ok_or_else(|| {
        KitError::input(
            field,
            ReasonCode::MalformedApplicationId,
            format!(
                "{id} is not a Dukcapil application number; use the nomor_permohonan returned by \
                 AjukanPermohonan (DKC-KK-…, DKC-KTPEL-… or DKC-AKTA-…)"
            ),
        )
    })
}

/// Dukcapil's built-in catalogue: `deploy/catalogue/dukcapil.toml`, compiled
/// in. `--catalogue-file` replaces it in the binary.
pub const CATALOGUE: BuiltinCatalogue = BuiltinCatalogue {
    path: "deploy/catalogue/dukcapil.toml",
    text: include_str!("../../../deploy/catalogue/dukcapil.toml"),
};

/// The ids of every layanan: the services the RPCs can file, each of which
/// needs a standard in the catalogue.
pub fn service_ids() -> Result<Vec<ServiceId>, Rejection> {
    LAYANAN.iter().map(|l| ServiceId::parse(l.service_id)).collect()
}

/// Dukcapil's built-in service standards, parsed and validated. Dukcapil
/// services are free of charge (UU 24/2013 art. 79A); the file explains the
/// completion times.
pub fn catalogue() -> Result<Vec<ServiceStandardSpec>, CatalogueError> {
    let agency = AgencyId::parse(AGENCY_ID).map_err(CatalogueError::Binary)?;
    CATALOGUE.parse(&agency, &service_ids().map_err(CatalogueError::Binary)?)
}

/// The names reported SERVING by gRPC health.
pub const SERVING: &[&str] = &[<DukcapilServiceServer<Dukcapil> as NamedService>::NAME];

/// Why the service stopped.
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

/// Publishes the catalogue, then serves the Dukcapil service on `listener`
/// until `shutdown` resolves.
pub async fn run(
    agency: Agency,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    agency.publish_standards(&catalogue()?).await?;
    let routes = tonic::service::Routes::new(Dukcapil::new(agency).into_server());
    mpp_agency_kit::serve(routes, SERVING, listener, shutdown).await?;
    Ok(())
}

/// The RPC implementation.
#[derive(Debug, Clone)]
pub struct Dukcapil {
    agency: Agency,
}

/// Field names of a `Langkah`, top-level or nested in another request.
struct LangkahFields {
    message: &'static str,
    nomor_berkas: &'static str,
    nomor_permohonan: &'static str,
    petugas: &'static str,
}

const TOP: LangkahFields = LangkahFields {
    message: "langkah",
    nomor_berkas: "nomor_berkas",
    nomor_permohonan: "nomor_permohonan",
    petugas: "petugas",
};

const NESTED: LangkahFields = LangkahFields {
    message: "langkah",
    nomor_berkas: "langkah.nomor_berkas",
    nomor_permohonan: "langkah.nomor_permohonan",
    petugas: "langkah.petugas",
};

/// A parsed `Langkah`: which application, whose step.
struct Step {
    service: ServiceId,
    case: TrackingNumber,
    application: ApplicationId,
    officer: OfficerId,
}

impl Dukcapil {
    /// The service over `agency`.
    pub fn new(agency: Agency) -> Self {
        Self { agency }
    }

    /// The tonic server wrapper.
    pub fn into_server(self) -> DukcapilServiceServer<Self> {
        DukcapilServiceServer::new(self)
    }

    fn langkah(&self, l: Option<&pb::Langkah>, f: &LangkahFields) -> Result<Step, KitError> {
        let l = input::message(f.message, l)?;
        let case = input::tracking_number(f.nomor_berkas, &l.nomor_berkas, self.agency.region())?;
        let application = input::application_id(f.nomor_permohonan, &l.nomor_permohonan)?;
        let service = layanan_of_application(f.nomor_permohonan, &application)?.service()?;
        let officer = input::officer(f.petugas, &l.petugas)?;
        Ok(Step { service, case, application, officer })
    }

    async fn publish(&self, step: Step, body: EventBody) -> Result<Response<pb::Diterima>, Status> {
        let Accepted { event_id, .. } =
            self.agency.step(&step.service, step.case, step.application, &step.officer, body).await?;
        Ok(Response::new(pb::Diterima { event_id }))
    }
}

#[tonic::async_trait]
impl DukcapilService for Dukcapil {
    async fn ajukan_permohonan(
        &self,
        request: Request<pb::Permohonan>,
    ) -> Result<Response<pb::PermohonanDiterima>, Status> {
        let p = request.into_inner();
        let info = layanan("layanan", p.layanan)?;
        let officer = input::officer("petugas", &p.petugas)?;
        let case = input::optional_tracking_number("nomor_berkas", &p.nomor_berkas, self.agency.region())?;
        let documents = input::list("dokumen", &p.dokumen, false)?;
        let application = new_application_id(&info.application_prefix()).map_err(KitError::Event)?;
        let filed =
            self.agency.file_application(&info.service()?, case, application, &officer, documents).await?;
        Ok(Response::new(pb::PermohonanDiterima {
            nomor_berkas: filed.tracking_number.to_string(),
            nomor_permohonan: filed.application_id.to_string(),
            event_ids: filed.accepted.into_iter().map(|a| a.event_id).collect(),
            pin: filed.pin.map(|p| p.expose().to_owned()).unwrap_or_default(),
        }))
    }

    async fn minta_kelengkapan(
        &self,
        request: Request<pb::KekuranganBerkas>,
    ) -> Result<Response<pb::Diterima>, Status> {
        let r = request.into_inner();
        let step = self.langkah(r.langkah.as_ref(), &NESTED)?;
        let documents = input::list("dokumen", &r.dokumen, true)?;
        let counter = input::text("loket", &r.loket, true)?;
        let note = input::text("catatan", &r.catatan, false)?;
        self.publish(step, EventBody::DocumentsRequested { documents, counter, note }).await
    }

    async fn terima_kelengkapan(
        &self,
        request: Request<pb::BerkasDilengkapi>,
    ) -> Result<Response<pb::Diterima>, Status> {
        let r = request.into_inner();
        let step = self.langkah(r.langkah.as_ref(), &NESTED)?;
        let documents = input::list("dokumen", &r.dokumen, false)?;
        self.publish(step, EventBody::DocumentsReceived { documents }).await
    }

    async fn mulai_verifikasi(
        &self,
        request: Request<pb::Langkah>,
    ) -> Result<Response<pb::Diterima>, Status> {
        let step = self.langkah(Some(request.get_ref()), &TOP)?;
        self.publish(step, EventBody::ReviewStarted).await
    }

    async fn cetak_dokumen(
        &self,
        request: Request<pb::DokumenDicetak>,
    ) -> Result<Response<pb::Diterima>, Status> {
        let r = request.into_inner();
        let step = self.langkah(r.langkah.as_ref(), &NESTED)?;
        let document_number = input::text("nomor_register", &r.nomor_register, false)?;
        self.publish(step, EventBody::Issued { document_number }).await
    }

    async fn serahkan_dokumen(
        &self,
        request: Request<pb::Langkah>,
    ) -> Result<Response<pb::Diterima>, Status> {
        let step = self.langkah(Some(request.get_ref()), &TOP)?;
        self.publish(step, EventBody::Collected).await
    }

    async fn tolak_permohonan(
        &self,
        request: Request<pb::Penolakan>,
    ) -> Result<Response<pb::Diterima>, Status> {
        let r = request.into_inner();
        let step = self.langkah(r.langkah.as_ref(), &NESTED)?;
        let reason_code = input::text("kode_alasan", &r.kode_alasan, false)?;
        let reason = input::text("alasan", &r.alasan, true)?;
        self.publish(step, EventBody::Rejected { reason_code, reason }).await
    }

    async fn batalkan_permohonan(
        &self,
        request: Request<pb::Langkah>,
    ) -> Result<Response<pb::Diterima>, Status> {
        let step = self.langkah(Some(request.get_ref()), &TOP)?;
        self.publish(step, EventBody::Withdrawn { reason: String::new() }).await
    }
}

#[cfg(test)]
mod tests;
