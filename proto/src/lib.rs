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
}

/// Encoded `FileDescriptorSet` of every proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mpp_descriptor");
