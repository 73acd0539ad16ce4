//! Ethereum-compatible wallets for agents: a secp256k1 key derived from the agent's contract key, EIP-55
//! addresses, EIP-191 `personal_sign` messages and signed EIP-1559 transactions.
//!
//! Built on `k256` (RFC 6979 deterministic ECDSA with public-key recovery; signatures are low-S as Ethereum
//! requires), `sha3` for keccak-256 and `alloy-rlp` for the transaction encoding.

use alloy_rlp::{Encodable, Header};
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use sha3::{Digest, Keccak256};
use zeroize::Zeroize;

/// A secp256k1 failure: a seed that is not a valid scalar, or a signature that recovers no key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EthError {
    /// The seed is zero or not below the curve order (probability about 2^-128 for a derived seed).
    #[error("the seed is not a valid secp256k1 secret key")]
    InvalidSeed,
    /// The signature is malformed (bad `v`, `r` or `s`) or recovers no public key.
    #[error("invalid signature: {0}")]
    InvalidSignature(&'static str),
}

/// Keccak-256 of `data`.
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// The seed of an agent's Ethereum key: `kdf(contract_key, "umbra/agent/eth", "")`.
pub fn agent_eth_seed(contract_key: &[u8; 32]) -> [u8; 32] {
    crate::kdf(contract_key, "umbra/agent/eth", b"")
}

/// The seed of an agent's Umbra account key (ed25519, for [`Keypair::from_seed`](crate::Keypair::from_seed)):
/// `kdf(contract_key, "umbra/agent/account", "")`. Distinct from the contract's own signing key.
pub fn agent_account_seed(contract_key: &[u8; 32]) -> [u8; 32] {
    crate::kdf(contract_key, "umbra/agent/account", b"")
}

/// The hash EIP-191 `personal_sign` signs: `keccak256("\x19Ethereum Signed Message:\n" || len || msg)` with the
/// length in decimal ASCII.
pub fn eip191_hash(msg: &[u8]) -> [u8; 32] {
    let mut h = Keccak256::new();
    h.update(b"\x19Ethereum Signed Message:\n");
    h.update(msg.len().to_string().as_bytes());
    h.update(msg);
    h.finalize().into()
}

/// The address of a public key: the last 20 bytes of keccak-256 of the uncompressed point without its prefix.
fn address_of(key: &VerifyingKey) -> [u8; 20] {
    let point = key.to_sec1_point(false);
    let hash = keccak256(&point.as_bytes()[1..]);
    let mut out = [0u8; 20];
    out.copy_from_slice(&hash[12..]);
    out
}

/// The EIP-55 mixed-case checksum form of `address`, with `0x`.
pub fn to_checksum_address(address: &[u8; 20]) -> String {
    let lower: String = address.iter().map(|b| format!("{b:02x}")).collect();
    let hash = keccak256(lower.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f;
        out.push(if c.is_ascii_alphabetic() && nibble >= 8 { c.to_ascii_uppercase() } else { c });
    }
    out
}

/// Recovers the signer address of a 65-byte `r || s || v` signature over `hash`; `v` may be 0/1 or 27/28.
pub fn recover_address(hash: &[u8; 32], signature: &[u8; 65]) -> Result<[u8; 20], EthError> {
    let v = match signature[64] {
        v @ (0 | 1) => v,
        v @ (27 | 28) => v - 27,
        _ => return Err(EthError::InvalidSignature("v must be 27, 28, 0 or 1")),
    };
    let sig = Signature::from_slice(&signature[..64]).map_err(|_| EthError::InvalidSignature("bad r or s"))?;
    if sig.normalize_s() != sig {
        return Err(EthError::InvalidSignature("s is in the upper half of the order (EIP-2)"));
    }
    let recid = RecoveryId::from_byte(v).ok_or(EthError::InvalidSignature("bad recovery id"))?;
    let key = VerifyingKey::recover_from_prehash(hash, &sig, recid)
        .map_err(|_| EthError::InvalidSignature("no public key recovers"))?;
    Ok(address_of(&key))
}

/// Recovers the address that signed `msg` with EIP-191 `personal_sign`.
pub fn recover_message(msg: &[u8], signature: &[u8; 65]) -> Result<[u8; 20], EthError> {
    recover_address(&eip191_hash(msg), signature)
}

/// Domain tag of attested outputs in their EVM form.
pub const ATTESTED_OUTPUT_TAG: &[u8] = b"umbra/attested-output/v1";

/// The digest an agent signs to attest an output in a form EVM contracts can check:
/// `keccak256(abi.encodePacked("umbra/attested-output/v1", bytes32 agent, uint64 seq, keccak256(output)))`.
/// The agent signs it with EIP-191 ([`EthWallet::sign_attested_output`]), so a Solidity verifier does
/// `ecrecover(toEthSignedMessageHash(digest), v, r, s) == agentAddress` with the agent's address as published on
/// the Umbra chain. `seq` is the agent's output counter (it orders outputs and prevents replays).
pub fn attested_output_digest(agent: &[u8; 32], seq: u64, output: &[u8]) -> [u8; 32] {
    let mut h = Keccak256::new();
    h.update(ATTESTED_OUTPUT_TAG);
    h.update(agent);
    h.update(seq.to_be_bytes());
    h.update(keccak256(output));
    h.finalize().into()
}

/// Whether `signature` is `address`'s EIP-191 signature of [`attested_output_digest`]`(agent, seq, output)`.
pub fn verify_attested_output(
    address: &[u8; 20],
    agent: &[u8; 32],
    seq: u64,
    output: &[u8],
    signature: &[u8; 65],
) -> bool {
    recover_message(&attested_output_digest(agent, seq, output), signature).is_ok_and(|a| a == *address)
}

/// An EIP-1559 (type 2) transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Eip1559Tx {
    /// EIP-155 chain id (1 for Ethereum mainnet).
    pub chain_id: u64,
    /// The sender's nonce.
    pub nonce: u64,
    /// Priority fee (tip) per gas, in wei.
    pub max_priority_fee_per_gas: u128,
    /// Maximum total fee per gas, in wei.
    pub max_fee_per_gas: u128,
    /// Gas limit.
    pub gas_limit: u64,
    /// Recipient; `None` creates a contract.
    pub to: Option<[u8; 20]>,
    /// Value in wei. `u128` covers every realistic amount (about 3.4e20 ether); RLP encodes it as the minimal
    /// big-endian integer, as for a 256-bit value.
    pub value: u128,
    /// Call data.
    pub data: Vec<u8>,
    /// EIP-2930 access list: (address, storage keys); empty is allowed.
    pub access_list: Vec<([u8; 20], Vec<[u8; 32]>)>,
}

/// Encodes a list: header then the already-encoded payload.
fn rlp_list(payload: &[u8], out: &mut Vec<u8>) {
    Header { list: true, payload_length: payload.len() }.encode(out);
    out.extend_from_slice(payload);
}

/// A big-endian integer as RLP: leading zeros stripped (zero is the empty string).
fn rlp_uint_be(bytes: &[u8], out: &mut Vec<u8>) {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[first..].encode(out);
}

impl Eip1559Tx {
    /// The RLP payload of the nine unsigned fields (without the list header).
    fn fields(&self) -> Vec<u8> {
        let mut p = Vec::new();
        self.chain_id.encode(&mut p);
        self.nonce.encode(&mut p);
        self.max_priority_fee_per_gas.encode(&mut p);
        self.max_fee_per_gas.encode(&mut p);
        self.gas_limit.encode(&mut p);
        match &self.to {
            Some(to) => to[..].encode(&mut p),
            None => (&[][..] as &[u8]).encode(&mut p),
        }
        self.value.encode(&mut p);
        self.data[..].encode(&mut p);
        let mut entries = Vec::new();
        for (address, keys) in &self.access_list {
            let mut entry = Vec::new();
            address[..].encode(&mut entry);
            let mut key_list = Vec::new();
            for key in keys {
                key[..].encode(&mut key_list);
            }
            rlp_list(&key_list, &mut entry);
            rlp_list(&entry, &mut entries);
        }
        rlp_list(&entries, &mut p);
        p
    }

    /// The hash the sender signs: `keccak256(0x02 || rlp([chain_id, nonce, ..., access_list]))`.
    pub fn signing_hash(&self) -> [u8; 32] {
        let mut out = vec![0x02];
        rlp_list(&self.fields(), &mut out);
        keccak256(&out)
    }

    /// The raw transaction with `signature` (`r || s || y_parity`, y_parity 0/1 or 27/28):
    /// `0x02 || rlp([..., y_parity, r, s])`, ready for `eth_sendRawTransaction`.
    pub fn encode_signed(&self, signature: &[u8; 65]) -> Vec<u8> {
        let mut p = self.fields();
        let parity = if signature[64] >= 27 { signature[64] - 27 } else { signature[64] };
        parity.encode(&mut p);
        rlp_uint_be(&signature[..32], &mut p);
        rlp_uint_be(&signature[32..64], &mut p);
        let mut out = vec![0x02];
        rlp_list(&p, &mut out);
        out
    }
}

/// A transaction signed by [`EthWallet::sign_transaction`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedTx {
    /// `0x02 || rlp(...)`, ready for `eth_sendRawTransaction`.
    pub raw: Vec<u8>,
    /// The transaction hash, `keccak256(raw)`.
    pub hash: [u8; 32],
    /// `r || s || y_parity` (0/1).
    pub signature: [u8; 65],
}

/// A secp256k1 key pair with its Ethereum address.
pub struct EthWallet {
    key: SigningKey,
    address: [u8; 20],
}

impl std::fmt::Debug for EthWallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EthWallet({})", to_checksum_address(&self.address))
    }
}

impl EthWallet {
    /// The wallet whose secret key is `seed` (use [`agent_eth_seed`] for an agent). Fails only for a seed that
    /// is zero or not below the curve order.
    pub fn from_seed(seed: [u8; 32]) -> Result<EthWallet, EthError> {
        let mut seed = seed;
        let key = SigningKey::from_slice(&seed).map_err(|_| EthError::InvalidSeed);
        seed.zeroize();
        let key = key?;
        let address = address_of(key.verifying_key());
        Ok(EthWallet { key, address })
    }

    /// The 20-byte address.
    pub fn address(&self) -> [u8; 20] {
        self.address
    }

    /// The EIP-55 checksummed address, `0x...`.
    pub fn address_checksum(&self) -> String {
        to_checksum_address(&self.address)
    }

    /// The 65-byte uncompressed public key (`0x04 || x || y`).
    pub fn public_key(&self) -> [u8; 65] {
        let mut out = [0u8; 65];
        out.copy_from_slice(self.key.verifying_key().to_sec1_point(false).as_bytes());
        out
    }

    /// Signs a 32-byte hash: `r || s || recovery_id` with recovery id 0/1 and low S.
    pub fn sign_hash(&self, hash: &[u8; 32]) -> [u8; 65] {
        let (sig, recid) = self.key.sign_prehash_recoverable(hash);
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.to_bytes());
        out[64] = recid.to_byte();
        out
    }

    /// EIP-191 `personal_sign`: `r || s || v` with `v` = 27 or 28.
    pub fn sign_message(&self, msg: &[u8]) -> [u8; 65] {
        let mut sig = self.sign_hash(&eip191_hash(msg));
        sig[64] += 27;
        sig
    }

    /// EIP-191 signature of [`attested_output_digest`]`(agent, seq, output)` (the 32-byte digest is the message).
    pub fn sign_attested_output(&self, agent: &[u8; 32], seq: u64, output: &[u8]) -> [u8; 65] {
        self.sign_message(&attested_output_digest(agent, seq, output))
    }

    /// Signs an EIP-1559 transaction.
    pub fn sign_transaction(&self, tx: &Eip1559Tx) -> SignedTx {
        let signature = self.sign_hash(&tx.signing_hash());
        let raw = tx.encode_signed(&signature);
        SignedTx { hash: keccak256(&raw), raw, signature }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex_bytes(s: &str) -> Vec<u8> {
        let s = s.trim_start_matches("0x");
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    fn hex32(s: &str) -> [u8; 32] {
        hex_bytes(s).try_into().expect("32 bytes")
    }

    fn to_hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key of the web3.js `accounts` documentation examples.
    const WEB3_KEY: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

    #[test]
    fn the_web3_documentation_key_has_its_published_address() {
        let w = EthWallet::from_seed(hex32(WEB3_KEY)).expect("valid key");
        assert_eq!(w.address_checksum(), "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23");
    }

    #[test]
    fn personal_sign_matches_the_published_web3_signature_and_recovers() {
        let w = EthWallet::from_seed(hex32(WEB3_KEY)).expect("valid key");
        assert_eq!(
            to_hex(&eip191_hash(b"Some data")),
            "1da44b586eb0729ff70a73c326926f6ed5a25f5b056e7f47fbc6e58d86871655"
        );
        let sig = w.sign_message(b"Some data");
        assert_eq!(
            to_hex(&sig),
            "b91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd\
             6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a029\
             1c"
        );
        assert_eq!(recover_message(b"Some data", &sig), Ok(w.address()));
        assert_ne!(recover_message(b"Some datb", &sig), Ok(w.address()));
    }

    /// Vectors produced by Python `eth-account` (a second implementation) with [`WEB3_KEY`]: transfer, call with
    /// an access list on Sepolia, contract creation.
    #[test]
    fn eip1559_transactions_match_an_independent_implementation() {
        let w = EthWallet::from_seed(hex32(WEB3_KEY)).expect("valid key");
        let to = Some([0x35u8; 20]);
        let cases = [
            (
                Eip1559Tx {
                    chain_id: 1,
                    nonce: 7,
                    max_priority_fee_per_gas: 2_000_000_000,
                    max_fee_per_gas: 100_000_000_000,
                    gas_limit: 21_000,
                    to,
                    value: 1_000_000_000_000_000_000,
                    ..Default::default()
                },
                "02f8730107847735940085174876e800825208943535353535353535353535353535353535353535880de0b6b3a764000080c0\
                 80a0b97093485661284e2ef8e52cb8a1bfa0da000164da70eb183a33bd3bda22bc8aa04df39bf5055c65ef9d1d22e701b541\
                 257353c82123ffaf6f10865574c1bb4cd6",
                "92e8e97a0f2b67dbddb9a67f0bee7ca9cad64759735f831d8ebcc6ee6c1c8b56",
            ),
            (
                Eip1559Tx {
                    chain_id: 11_155_111,
                    nonce: 0,
                    max_priority_fee_per_gas: 1,
                    max_fee_per_gas: 2,
                    gas_limit: 100_000,
                    to,
                    value: 0,
                    data: vec![0xde, 0xad, 0xbe, 0xef],
                    access_list: vec![(
                        {
                            let mut a = [0u8; 20];
                            a[19] = 1;
                            a
                        },
                        vec![{
                            let mut k = [0u8; 32];
                            k[31] = 7;
                            k
                        }],
                    )],
                },
                "02f8a383aa36a7800102830186a09435353535353535353535353535353535353535358084deadbeeff838f794000000000000\
                 0000000000000000000000000001e1a000000000000000000000000000000000000000000000000000000000000000078\
                 0a0d148104d166afaf9722d0dbdb0c36c2535d2c8b673824a7af1fa62d1f38be28ba023e1c97e703869258f6699afc14886\
                 70096c275085e021fb1f8201ba871288ae",
                "7d91223697a1d327c3bb98416a440ce4c67ae08059cf8a3aa65985583b7c3d22",
            ),
            (
                Eip1559Tx {
                    chain_id: 1,
                    nonce: 1,
                    max_priority_fee_per_gas: 0,
                    max_fee_per_gas: 1,
                    gas_limit: 53_000,
                    to: None,
                    data: vec![0x60, 0x00],
                    ..Default::default()
                },
                "02f8500101800182cf088080826000c001a0ef4cb94079c0f9cda047de760dd23cc8d4aec9eb15fb05c0cce683f894eae99e\
                 a05954e503b881772770e0fcbbde7f23433d15200dc9b735552798e4b80ed45c31",
                "c0ac2e121cd8ee2e292284b9654e3267554ee2bb60bd070dd6862697c99914d6",
            ),
        ];
        for (tx, raw, hash) in cases {
            let signed = w.sign_transaction(&tx);
            assert_eq!(to_hex(&signed.raw), raw);
            assert_eq!(to_hex(&signed.hash), hash);
            assert_eq!(recover_address(&tx.signing_hash(), &signed.signature), Ok(w.address()));
        }
    }

    /// Digest and signature cross-checked with Python `eth-utils`/`eth-account` (`keccak` of the packed fields,
    /// `encode_defunct(primitive=digest)`).
    #[test]
    fn an_attested_output_matches_the_evm_packing_and_verifies_only_for_its_fields() {
        let w = EthWallet::from_seed(hex32(WEB3_KEY)).expect("valid key");
        let (agent, out) = ([7u8; 32], br#"{"price":"65000.00"}"#);
        assert_eq!(
            to_hex(&attested_output_digest(&agent, 42, out)),
            "6082513962ad1d37035d73dceb839e6383d08457a71a35d88abab38c47d1d180"
        );
        let sig = w.sign_attested_output(&agent, 42, out);
        assert_eq!(
            to_hex(&sig),
            "33d9179530e12950e8925701a4713fb1c7d5b4d63540a0199511f9b72f40b713\
             249a46930bbf3d2b85ed386abc7d3da0e77218008dd3e0868d1fee0781411ac3\
             1c"
        );
        assert!(verify_attested_output(&w.address(), &agent, 42, out, &sig));
        assert!(!verify_attested_output(&w.address(), &agent, 43, out, &sig), "another seq");
        assert!(!verify_attested_output(&w.address(), &[8u8; 32], 42, out, &sig), "another agent");
        assert!(!verify_attested_output(&w.address(), &agent, 42, b"{}", &sig), "another output");
        assert!(!verify_attested_output(&[0u8; 20], &agent, 42, out, &sig), "another address");
    }

    #[test]
    fn eip55_checksums_match_the_eip_examples() {
        for a in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            let bytes: [u8; 20] = hex_bytes(a).try_into().expect("20 bytes");
            assert_eq!(to_checksum_address(&bytes), a);
        }
    }

    #[test]
    fn a_high_s_signature_or_a_bad_v_is_refused() {
        let w = EthWallet::from_seed(hex32(WEB3_KEY)).expect("valid key");
        let mut sig = w.sign_message(b"x");
        sig[64] = 29;
        assert!(recover_message(b"x", &sig).is_err());
        // s' = n - s is the malleable twin of the same signature.
        let sig = w.sign_message(b"x");
        let n = hex32("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");
        let mut s = [0u8; 32];
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let d = n[i] as i16 - sig[32 + i] as i16 - borrow;
            (s[i], borrow) = if d < 0 { ((d + 256) as u8, 1) } else { (d as u8, 0) };
        }
        let mut twin = sig;
        twin[32..64].copy_from_slice(&s);
        twin[64] = if sig[64] == 27 { 28 } else { 27 };
        assert!(matches!(recover_message(b"x", &twin), Err(EthError::InvalidSignature(_))));
    }

    #[test]
    fn a_zero_seed_is_refused() {
        assert_eq!(EthWallet::from_seed([0u8; 32]).err(), Some(EthError::InvalidSeed));
    }

    #[test]
    fn agent_seeds_are_distinct_and_stable() {
        let k = [9u8; 32];
        assert_ne!(agent_eth_seed(&k), agent_account_seed(&k));
        assert_eq!(agent_eth_seed(&k), agent_eth_seed(&k));
        assert_ne!(agent_eth_seed(&k), agent_eth_seed(&[8u8; 32]));
    }

    proptest! {
        #[test]
        fn sign_then_recover_returns_the_address(seed in any::<[u8; 32]>(), msg in proptest::collection::vec(any::<u8>(), 0..200)) {
            let Ok(w) = EthWallet::from_seed(seed) else { return Ok(()) };
            let sig = w.sign_message(&msg);
            prop_assert!(sig[64] == 27 || sig[64] == 28);
            prop_assert_eq!(recover_message(&msg, &sig), Ok(w.address()));
            let tx = Eip1559Tx { chain_id: 1, nonce: msg.len() as u64, data: msg.clone(), ..Default::default() };
            let signed = w.sign_transaction(&tx);
            prop_assert_eq!(recover_address(&tx.signing_hash(), &signed.signature), Ok(w.address()));
            prop_assert_eq!(signed.hash, keccak256(&signed.raw));
        }
    }
}
