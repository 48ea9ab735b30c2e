//! The lookup PIN of test cases built from raw envelopes: a fixed PIN, its
//! verifier under the harness's test pepper
//! ([`crate::services::TEST_PIN_PEPPER`], which every hub and agency service
//! the harness starts reads unless a test gives another file).

use anyhow::{anyhow, Result};
use mpp_core::pin::{pin_verifier, Pin, PinPepper};
use mpp_core::TrackingNumber;

use crate::services::TEST_PIN_PEPPER;

/// The PIN of cases opened by [`crate::envelope::EventFactory::case_opened`].
pub const TEST_PIN: &str = "314159";

/// The verifier of `pin` for `tracking_number` under [`TEST_PIN_PEPPER`],
/// as an agency publishes it in `case_opened`. A tracking number that does
/// not parse (bad-input tests) gets a fixed dummy verifier.
pub fn verifier(tracking_number: &str, pin: &str) -> Result<Vec<u8>> {
    let pepper = PinPepper::from_bytes(TEST_PIN_PEPPER).map_err(|e| anyhow!("{e}"))?;
    let pin = Pin::parse(pin).ok_or_else(|| anyhow!("{pin:?} is not a PIN (9 characters or 6 digits)"))?;
    Ok(match TrackingNumber::parse(tracking_number) {
        Ok(tn) => pin_verifier(&pepper, &tn, &pin).to_vec(),
        Err(_) => vec![7u8; 32],
    })
}
