//! The key hierarchy of the protocol (`docs/worker-protocol.md`, "Keys"): what a master key and a
//! cluster key derive to, the AAD of key envelopes, and egress signing. Pure functions, no state.

use rand::SeedableRng as _;
use rand_chacha::ChaCha20Rng;
use umbra_crypto::{Keypair, kdf, x25519_public};
use umbra_types::contracts::{ContractId, ContractPublic};
use umbra_types::registry::{ClusterId, ClusterPublic, Egress, KeyEpoch, SignedEgress, WorkerId};

/// Envelope label of a master key share.
pub const LABEL_MASTER_SHARE: &str = "master-share";
/// Envelope label of a cluster key share.
pub const LABEL_CLUSTER_SHARE: &str = "cluster-share";

/// The AAD of a key envelope: `len(chain_id) (u64 LE) || chain_id || recipient (32) || key epoch (u64 LE)`.
pub fn share_aad(chain_id: &str, recipient: &WorkerId, key_epoch: KeyEpoch) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + chain_id.len() + 32 + 8);
    out.extend_from_slice(&(chain_id.len() as u64).to_le_bytes());
    out.extend_from_slice(chain_id.as_bytes());
    out.extend_from_slice(recipient);
    out.extend_from_slice(&key_epoch.to_le_bytes());
    out
}

/// The master HPKE secret of master key `m`: `KDF(M, "master-x25519", "")`.
pub fn master_x25519_secret(m: &[u8; 32]) -> [u8; 32] {
    kdf(m, "master-x25519", b"")
}

/// The gatekeeper signing key of master key `m` (seed `KDF(M, "gatekeeper-ed25519", "")`).
pub fn gatekeeper_keypair(m: &[u8; 32]) -> Keypair {
    Keypair::from_seed(kdf(m, "gatekeeper-ed25519", b""))
}

/// The public halves a master key must derive to: (master X25519 public key, gatekeeper ed25519 key).
pub fn master_public(m: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
    (x25519_public(&master_x25519_secret(m)), gatekeeper_keypair(m).address().0)
}

/// The key of `cluster` under master key `m`: `KDF(M, "cluster", cluster_id_le)`.
pub fn cluster_key(m: &[u8; 32], cluster: ClusterId) -> [u8; 32] {
    kdf(m, "cluster", &cluster.to_le_bytes())
}

/// The public halves of cluster key `c`: X25519 of `KDF(C, "x25519", "")`, ed25519 of seed `KDF(C, "ed25519", "")`.
pub fn cluster_public(c: &[u8; 32]) -> ClusterPublic {
    ClusterPublic { x25519: x25519_public(&kdf(c, "x25519", b"")), ed25519: cluster_signer(c).address().0 }
}

/// The envelope randomness of a gatekeeper answer: ChaCha20 seeded with `KDF(secret, "share-rng", context)`,
/// so every gatekeeper holding the same key seals byte-identical envelopes. For a master share the context
/// is `recipient || epoch (u64 LE)` as the protocol says; a cluster share appends the cluster id (u32 LE)
/// so two envelopes to one recipient never share an ephemeral key.
pub fn share_rng(
    secret: &[u8; 32],
    recipient: &WorkerId,
    key_epoch: KeyEpoch,
    cluster: Option<ClusterId>,
) -> ChaCha20Rng {
    let mut context = recipient.to_vec();
    context.extend_from_slice(&key_epoch.to_le_bytes());
    if let Some(c) = cluster {
        context.extend_from_slice(&c.to_le_bytes());
    }
    ChaCha20Rng::from_seed(kdf(secret, "share-rng", &context))
}

/// The signing key of cluster key `c` (seed `KDF(C, "ed25519", "")`): signs `Origin::Cluster` egress.
pub fn cluster_signer(c: &[u8; 32]) -> Keypair {
    Keypair::from_seed(kdf(c, "ed25519", b""))
}

/// The key of contract `id` under cluster key `c`: `KDF(C, "contract", id)`.
pub fn contract_key(c: &[u8; 32], id: &ContractId) -> [u8; 32] {
    kdf(c, "contract", id)
}

/// The public halves of contract key `k`: X25519 of `KDF(K, "x25519", "")` and the engine's contract signer.
pub fn contract_public(k: &[u8; 32]) -> ContractPublic {
    ContractPublic {
        x25519: x25519_public(&kdf(k, "x25519", b"")),
        ed25519: umbra_engine::contract_signer(k).address().0,
    }
}

/// Signs `egress` for `chain_id` with `key`.
pub fn sign_egress(key: &Keypair, chain_id: &str, egress: Egress) -> SignedEgress {
    let signature = key.sign(&egress.signing_bytes(chain_id));
    SignedEgress { egress, signature }
}
