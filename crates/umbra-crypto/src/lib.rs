//! Umbra's cryptography: account keys and transaction signatures (ed25519), Merkle roots and proofs, HPKE key envelopes with HKDF key derivation, and Ethereum-compatible agent wallets (secp256k1).
//!
//! Everything here wraps well-kept crates (`ed25519-dalek` for signatures, `sha2` for hashing); this
//! crate only fixes how Umbra uses them (strict verification, batch verification for blocks, RFC 6962
//! Merkle trees with leaf/node domain separation) so every node and client makes the same choices.

mod envelope;
mod eth;
mod keys;
mod merkle;

pub use envelope::{
    ENC_LEN, EnvelopeError, HPKE_INFO_PREFIX, Secret32, TAG_LEN, kdf, open as open_envelope, seal as seal_envelope,
    x25519_public,
};
pub use eth::{
    ATTESTED_OUTPUT_TAG, Eip1559Tx, EthError, EthWallet, SignedTx, agent_account_seed, agent_eth_seed,
    attested_output_digest, eip191_hash, keccak256, recover_address, recover_message, to_checksum_address,
    verify_attested_output,
};
pub use keys::{
    CryptoError, Keypair, sign_transaction, sign_with_min_fee, verify, verify_batch, verify_transaction,
    verify_transactions,
};
pub use merkle::{MerkleProof, merkle_proof, merkle_proofs, merkle_root, verify_merkle_proof};
