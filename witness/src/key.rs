//! The witness's Ed25519 cosigning key: a file holding the 32-byte seed as
//! 64 hex digits, created on first start with mode 0600 (refused when its
//! group or others may read it), and the key name it cosigns under.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{bail, Context};
use mpp_core::note::{Cosignature, CosignerKey, ED25519_SIGNATURE_BYTES};
use ring::rand::SecureRandom as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _};

/// Largest key file read, in bytes (a key file is 65).
pub const KEY_FILE_BYTES_MAX: u64 = 1024;

/// The witness's signing key and its name.
pub struct WitnessKey {
    pair: Ed25519KeyPair,
    public: CosignerKey,
}

impl std::fmt::Debug for WitnessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("WitnessKey").field("vkey", &self.public.to_vkey()).finish()
    }
}

impl WitnessKey {
    /// Loads the seed in `path`, creating it (0600, fsynced) when missing.
    pub fn load_or_create(path: &Path, name: &str) -> anyhow::Result<WitnessKey> {
        if !mpp_core::note::valid_key_name(name) {
            bail!("--name {name:?} is not a key name (non-empty, no spaces, no '+')");
        }
        if !path.exists() {
            let mut seed = [0u8; 32];
            ring::rand::SystemRandom::new().fill(&mut seed).map_err(|_| anyhow::anyhow!("no randomness"))?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(format!("{}\n", hex::encode(seed)).as_bytes())?;
            f.sync_all()?;
            tracing::info!(path = %path.display(), "Witness key created");
        }
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            bail!("{} has mode {mode:04o}: a private key must be readable by its owner only", path.display());
        }
        let mut text = String::new();
        std::fs::File::open(path)?.take(KEY_FILE_BYTES_MAX).read_to_string(&mut text)?;
        let seed: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .with_context(|| format!("{} does not hold 64 hex digits", path.display()))?;
        WitnessKey::from_seed(&seed, name)
    }

    /// A key from a seed (tests).
    pub fn from_seed(seed: &[u8; 32], name: &str) -> anyhow::Result<WitnessKey> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| anyhow::anyhow!("unusable seed"))?;
        let public_key: [u8; 32] = pair.public_key().as_ref().try_into().context("public key length")?;
        Ok(WitnessKey { pair, public: CosignerKey { name: name.to_owned(), public_key } })
    }

    /// The public half, as verifiers configure it.
    pub fn public(&self) -> &CosignerKey {
        &self.public
    }

    /// Cosigns a checkpoint body at `timestamp_s`.
    pub fn cosign(&self, body: &str, timestamp_s: u64) -> Cosignature {
        Cosignature::sign(&self.public.name, &self.public.public_key, timestamp_s, body, |msg| {
            let mut out = [0u8; ED25519_SIGNATURE_BYTES];
            out.copy_from_slice(self.pair.sign(msg).as_ref());
            out
        })
    }
}
