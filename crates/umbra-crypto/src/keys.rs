use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use umbra_types::{Address, SignedTransaction, Transaction};

/// Why a signature or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The 32 bytes are not a valid ed25519 public key.
    #[error("{0} is not a valid ed25519 public key")]
    BadPublicKey(Address),
    /// The signature does not verify.
    #[error("bad signature by {0}")]
    BadSignature(Address),
    /// At least one signature in a batch does not verify.
    #[error("a signature in the batch does not verify")]
    BadBatch,
}

/// An ed25519 signing key for an account.
#[derive(Clone)]
pub struct Keypair(SigningKey);

impl Keypair {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Keypair {
        Keypair(SigningKey::from_bytes(&rand::random::<[u8; 32]>()))
    }

    /// The key whose secret seed is `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        Keypair(SigningKey::from_bytes(&seed))
    }

    /// The secret seed (keep it secret).
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The account this key controls.
    pub fn address(&self) -> Address {
        Address(self.0.verifying_key().to_bytes())
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({})", self.address())
    }
}

fn public_key(a: &Address) -> Result<VerifyingKey, CryptoError> {
    VerifyingKey::from_bytes(a.as_bytes()).map_err(|_| CryptoError::BadPublicKey(*a))
}

/// Verifies `sig` over `msg` by `signer` (strict: rejects small-order keys and malleable signatures).
pub fn verify(signer: &Address, msg: &[u8], sig: &[u8; 64]) -> Result<(), CryptoError> {
    let key = public_key(signer)?;
    key.verify_strict(msg, &Signature::from_bytes(sig)).map_err(|_| CryptoError::BadSignature(*signer))
}

/// Verifies many signatures at once (about 2.5-3x faster than one by one). On failure it does not
/// say which one failed; fall back to [`verify`] to find it.
pub fn verify_batch(items: &[(Address, &[u8], [u8; 64])]) -> Result<(), CryptoError> {
    if items.is_empty() {
        return Ok(());
    }
    let mut keys = Vec::with_capacity(items.len());
    for (a, _, _) in items {
        let k = public_key(a)?;
        // Batch verification is not strict about small-order keys; refuse them up front.
        if k.is_weak() {
            return Err(CryptoError::BadPublicKey(*a));
        }
        keys.push(k);
    }
    let msgs: Vec<&[u8]> = items.iter().map(|(_, m, _)| *m).collect();
    let sigs: Vec<Signature> = items.iter().map(|(_, _, s)| Signature::from_bytes(s)).collect();
    ed25519_dalek::verify_batch(&msgs, &sigs, &keys).map_err(|_| CryptoError::BadBatch)
}

/// Signs a transaction with `key` (which must be the transaction's signer).
pub fn sign_transaction(key: &Keypair, tx: Transaction) -> SignedTransaction {
    let signature = key.sign(&tx.signing_bytes());
    SignedTransaction { tx, signature }
}

/// Signs `tx` paying exactly the chain's minimum fee for it under `fees`. The encoded size does not
/// depend on the fee (a fixed-width integer), so the size is measured with the fee at zero.
pub fn sign_with_min_fee(key: &Keypair, mut tx: Transaction, fees: &umbra_types::FeeParams) -> SignedTransaction {
    tx.fee = 0;
    let size = SignedTransaction { tx: tx.clone(), signature: [0; 64] }.to_bytes().len();
    tx.fee = fees.min_fee(size, &tx.call);
    sign_transaction(key, tx)
}

/// Verifies one transaction's signature.
pub fn verify_transaction(stx: &SignedTransaction) -> Result<(), CryptoError> {
    verify(&stx.tx.signer, &stx.tx.signing_bytes(), &stx.signature)
}

/// Verifies all transactions' signatures, in one batch when possible; names the first bad one.
pub fn verify_transactions(txs: &[SignedTransaction]) -> Result<(), (usize, CryptoError)> {
    let bytes: Vec<Vec<u8>> = txs.iter().map(|t| t.tx.signing_bytes()).collect();
    let items: Vec<(Address, &[u8], [u8; 64])> =
        txs.iter().zip(&bytes).map(|(t, b)| (t.tx.signer, b.as_slice(), t.signature)).collect();
    if verify_batch(&items).is_ok() {
        return Ok(());
    }
    for (i, (a, m, s)) in items.iter().enumerate() {
        verify(a, m, s).map_err(|e| (i, e))?;
    }
    // The batch failed but every single verification passed: only possible through a key that batch
    // and strict verification judge differently, which `verify_batch` already refuses.
    Err((0, CryptoError::BadBatch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use umbra_types::Call;

    fn tx(k: &Keypair, nonce: u64) -> SignedTransaction {
        sign_transaction(
            k,
            Transaction {
                signer: k.address(),
                nonce,
                chain_id: "t".into(),
                fee: 1,
                call: Call::Transfer { to: Address([2; 32]), amount: 1 },
            },
        )
    }

    #[test]
    fn a_signed_transaction_verifies() {
        let k = Keypair::generate();
        assert_eq!(verify_transaction(&tx(&k, 0)), Ok(()));
    }

    #[test]
    fn a_tampered_transaction_does_not_verify() {
        let k = Keypair::generate();
        let mut t = tx(&k, 0);
        t.tx.nonce = 1;
        assert_eq!(verify_transaction(&t), Err(CryptoError::BadSignature(k.address())));
    }

    #[test]
    fn a_batch_names_the_first_bad_signature() {
        let k = Keypair::generate();
        let mut txs: Vec<_> = (0..5).map(|n| tx(&k, n)).collect();
        assert_eq!(verify_transactions(&txs), Ok(()));
        txs[3].signature[0] ^= 1;
        assert_eq!(verify_transactions(&txs).map_err(|(i, _)| i), Err(3));
    }

    #[test]
    fn a_transaction_signed_with_the_minimum_fee_pays_exactly_the_minimum_for_its_size() {
        let k = Keypair::generate();
        let fees = umbra_types::FeeParams::default();
        let stx = sign_with_min_fee(&k, tx(&k, 0).tx, &fees);
        assert_eq!(stx.tx.fee, fees.min_fee(stx.to_bytes().len(), &stx.tx.call));
        assert_eq!(verify_transaction(&stx), Ok(()));
    }

    #[test]
    fn a_key_round_trips_through_its_seed() {
        let k = Keypair::generate();
        assert_eq!(Keypair::from_seed(k.seed()).address(), k.address());
    }
}
