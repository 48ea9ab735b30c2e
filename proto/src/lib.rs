//! Generated wire types of MPP Hub. Nothing here but prost/tonic output; the
//! hub's pure core has its own types and converts explicitly at the edges.

#![allow(unreachable_pub, missing_debug_implementations)]
#![allow(clippy::all)]

/// `mpp.v1`: the event envelope, the hub's log entry, case view and services.
pub mod v1 {
    tonic::include_proto!("mpp.v1");
}

/// Agency vocabularies.
pub mod agency {
    /// Disdukcapil.
    pub mod dukcapil {
        /// `mpp.agency.dukcapil.v1`.
        pub mod v1 {
            tonic::include_proto!("mpp.agency.dukcapil.v1");
        }
    }
    /// Kantor Imigrasi (vertikal).
    pub mod imigrasi {
        /// `mpp.agency.imigrasi.v1`.
        pub mod v1 {
            tonic::include_proto!("mpp.agency.imigrasi.v1");
        }
    }
    /// Kantor Pertanahan, ATR/BPN (pusat).
    pub mod bpn {
        /// `mpp.agency.bpn.v1`.
        pub mod v1 {
            tonic::include_proto!("mpp.agency.bpn.v1");
        }
    }
    /// PT PLN (BUMN).
    pub mod pln {
        /// `mpp.agency.pln.v1`.
        pub mod v1 {
            tonic::include_proto!("mpp.agency.pln.v1");
        }
    }
    /// Perumda Air Minum, PDAM (BUMD).
    pub mod pdam {
        /// `mpp.agency.pdam.v1`.
        pub mod v1 {
            tonic::include_proto!("mpp.agency.pdam.v1");
        }
    }
    /// A private bank's MPP desk (swasta).
    pub mod bank {
        /// `mpp.agency.bank.v1`.
        pub mod v1 {
            tonic::include_proto!("mpp.agency.bank.v1");
        }
    }
    /// DPMPTSP, regional licensing (daerah).
    pub mod dpmptsp {
        /// `mpp.agency.dpmptsp.v1`.
        pub mod v1 {
            tonic::include_proto!("mpp.agency.dpmptsp.v1");
        }
    }
}

/// The MPP front office (loket penerimaan), where cases are opened.
pub mod frontoffice {
    /// `mpp.frontoffice.v1`.
    pub mod v1 {
        tonic::include_proto!("mpp.frontoffice.v1");
    }
}

/// Encoded `FileDescriptorSet` of every proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mpp_descriptor");
