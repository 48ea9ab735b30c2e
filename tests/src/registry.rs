//! The e2e tests' participant registry: a test registrar (a fixed, public
//! seed: never a real key), whose public key every hub the harness starts
//! trusts (`--registrar-key-file`), and participants' signing keys.
//!
//! A hub started by the harness therefore runs the secure path: until a
//! test publishes a registry statement the registry is not in force and
//! events are judged as before; from the first accepted statement on, every
//! event must be signed by a registered participant.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use mpp_agency_kit::signing::generate_key_file;
use mpp_ledger::trust::Trust;
use mpp_registrar::Registrar;

/// The participant id of the front office of the tests' MPP (region 1771).
pub const FRONT_OFFICE: &str = "mpp-1771";

/// The test registrar's private key seed (public: tests only).
pub const TEST_REGISTRAR_SEED: [u8; 32] = [0x7e; 32];

/// The test registrar.
pub fn test_registrar() -> Registrar {
    Registrar::from_seed(&TEST_REGISTRAR_SEED)
}

/// What a hub started by the harness trusts, for checkers that replay its log.
pub fn test_trust() -> Trust {
    Trust::new(vec![test_registrar().public_key()])
}

/// Writes the test registrar's public key file into `dir`.
pub fn write_registrar_key_file(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("registrar.pub");
    std::fs::write(&path, format!("{}\n", hex::encode(test_registrar().public_key())))
        .context("cannot write the registrar key file")?;
    Ok(path)
}

/// Creates a participant signing key in `dir`: `(private key file, public key)`.
pub fn participant_key(dir: &Path, name: &str) -> Result<(PathBuf, [u8; 32])> {
    let path = dir.join(format!("{name}.key"));
    let pk = generate_key_file(&path).with_context(|| format!("creating {}", path.display()))?;
    Ok((path, pk))
}

/// The registry file's entry of the agency `id` (of `category`, serving
/// `region`) whose services are those of its catalogue in the repository,
/// `deploy/catalogue/<id>.toml`.
pub fn agency_entry(id: &str, category: &str, region: &str) -> String {
    let catalogue =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/catalogue").join(format!("{id}.toml"));
    format!(
        "[[participant]]\nid = \"{id}\"\nkind = \"agency\"\ncategory = \"{category}\"\nregions = [\"{region}\"]\n\
         services_from_catalogue = {:?}\n",
        catalogue.display().to_string()
    )
}
