//! What `mpp-hub audit verify` (local, remote or while rebuilding) saw when
//! the log passed: the report every verifier returns and the witness
//! policy concludes from.

use mpp_core::checkpoint::SignedCheckpoint;
use mpp_core::log::Hash32;

use super::hex32;

/// What a verification that passed saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries verified.
    pub entries: u64,
    /// Hash of the last entry.
    pub head_hash: Hash32,
    /// Merkle root of all entries.
    pub root_hash: Hash32,
    /// Checkpoints that matched the log.
    pub checkpoints: u64,
    /// Whether their signatures were checked (a public key was given).
    pub signatures_checked: bool,
    /// The checkpoint of the largest tree size, if any.
    pub latest_checkpoint: Option<SignedCheckpoint>,
}

impl VerifyReport {
    /// The one-line summary: `OK: N entries, head <hex>, root <hex>, K
    /// checkpoints verified`.
    pub fn summary(&self) -> String {
        let cps = if self.signatures_checked || self.checkpoints == 0 {
            format!("{} checkpoints verified", self.checkpoints)
        } else {
            format!(
                "{} checkpoints match the log (signatures NOT checked: no --public-key)",
                self.checkpoints
            )
        };
        let latest = match &self.latest_checkpoint {
            Some(cp) => format!(
                "; latest signed tree size {} by key {} ({})",
                cp.checkpoint.tree_size, cp.checkpoint.key_id, cp.checkpoint.origin
            ),
            None if self.checkpoints == 0 => "; checkpoints: none".to_owned(),
            None => String::new(),
        };
        format!(
            "OK: {} entries, head {}, root {}, {cps}{latest}",
            self.entries,
            hex32(&self.head_hash),
            hex32(&self.root_hash)
        )
    }
}
