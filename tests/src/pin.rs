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

/// A PIN of the same shape that differs from `pin` in every character: a
/// legacy PIN's digits each plus one (mod 10), a strong PIN's symbols each
/// the next of the alphabet. What is not a PIN comes back unchanged.
pub fn other_pin(pin: &str) -> String {
    let alphabet = mpp_core::pin::PIN_ALPHABET;
    match Pin::parse(pin) {
        Some(p) if p.is_legacy() => pin.bytes().map(|b| char::from(b'0' + (b - b'0' + 1) % 10)).collect(),
        Some(_) => pin
            .bytes()
            .map(|b| {
                let i = alphabet.iter().position(|&c| c == b).unwrap_or(0);
                char::from(alphabet[(i + 1) % alphabet.len()])
            })
            .collect(),
        None => pin.to_owned(),
    }
}

/// Whether `pin` is a strong (nine-character) PIN in canonical form, as
/// every service now hands out.
pub fn is_strong(pin: &str) -> bool {
    Pin::parse(pin).is_some_and(|p| !p.is_legacy())
}
