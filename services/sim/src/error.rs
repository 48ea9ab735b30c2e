//! Why a simulation step failed.

use crate::plan::{Agency, Service};

/// Why the simulator could not go on.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A service's address is not a usable URI.
    #[error("bad address {addr:?} of {agency}: {detail}")]
    BadAddress {
        /// The service.
        agency: Agency,
        /// The address given.
        addr: String,
        /// What is wrong.
        detail: String,
    },
    /// A token cannot be sent as gRPC metadata (not printable ASCII).
    #[error("the token of {agency} is not printable ASCII")]
    BadToken {
        /// The service.
        agency: Agency,
    },
    /// A service did not accept connections in time.
    #[error("cannot reach {agency} at {addr} after {waited_ms} ms: {detail}")]
    Unreachable {
        /// The service.
        agency: Agency,
        /// Its address.
        addr: String,
        /// How long the simulator tried.
        waited_ms: u64,
        /// The last connection error.
        detail: String,
    },
    /// A service refused or failed a call.
    #[error("{agency} {rpc} failed: {code:?}: {message} (reason {reason})")]
    Rpc {
        /// The service.
        agency: Agency,
        /// The RPC, e.g. `TerbitkanRab`.
        rpc: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
        /// The `mpp-reason-code` metadata entry, `-` when absent.
        reason: String,
    },
    /// A service answered without something it must return.
    #[error("{agency} {rpc} answered without {what}")]
    BadAnswer {
        /// The service.
        agency: Agency,
        /// The RPC.
        rpc: &'static str,
        /// What was missing or wrong.
        what: &'static str,
    },
    /// A plan asked an agency for a step it has no RPC for (a bug of the plan).
    #[error("{service:?} has no RPC for {action}")]
    Unsupported {
        /// The service.
        service: Service,
        /// The action's name.
        action: &'static str,
    },
    /// A step came before the step that gives it its case or application
    /// (a bug of the plan).
    #[error("step {index} ({action}) has no {what} yet")]
    OutOfOrder {
        /// The step's index in the plan.
        index: usize,
        /// The action's name.
        action: &'static str,
        /// What it lacks: the tracking number or the application id.
        what: &'static str,
    },
    /// `--rate` is not a usable rate: the rate given, and the highest one.
    #[error("rate {0} events/s is not usable: give 0 (unpaced) or a rate up to {1}")]
    BadRate(f64, f64),
}
