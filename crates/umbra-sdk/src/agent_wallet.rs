//! Agent wallets and attested outputs from the client side: the agent's Ethereum address of each key epoch, its
//! recent transfers, and its attested outputs, all read with proofs and each signature checked here again
//! (the contract's ed25519 key of the epoch, the agent's published Ethereum address, the posting worker's
//! registration) so a caller trusts no node and no relay.

use crate::{Client, SdkError};
use umbra_types::agent_wallet::{
    AgentEthAddress, AgentSpend, AttestedOutput, output_signing_bytes, wallet_signing_bytes,
};
use umbra_types::contracts::{ContractId, ContractRecord};
use umbra_types::state_keys::StateKey;
use umbra_types::{Address, Hash, decode};

fn err(reason: impl Into<String>) -> SdkError {
    SdkError::Contract(reason.into())
}

async fn proven<T: borsh::BorshDeserialize + Default>(
    client: &Client,
    key: &StateKey,
    what: &str,
) -> Result<T, SdkError> {
    let (value, _) = client.state_value(key).await?;
    value
        .map(|v| decode(&v, 1 << 24).map_err(|e| err(format!("the proven {what} do not decode: {e}"))))
        .transpose()
        .map(Option::unwrap_or_default)
}

async fn contract(client: &Client, agent: &ContractId) -> Result<ContractRecord, SdkError> {
    client.contract(agent).await?.ok_or_else(|| err(format!("no agent {}", Hash(*agent))))
}

/// Checks that `entry` is signed by the agent's contract key of its epoch.
fn check_eth(chain_id: &str, contract: &ContractRecord, entry: &AgentEthAddress) -> Result<(), SdkError> {
    let public = contract
        .public(entry.key_epoch)
        .ok_or_else(|| err(format!("the agent has no contract key of epoch {}", entry.key_epoch)))?;
    let msg = wallet_signing_bytes(chain_id, &contract.id, entry.key_epoch, &entry.address);
    umbra_crypto::verify(&Address(public.ed25519), &msg, &entry.signature).map_err(|_| {
        err(format!("the Ethereum address of epoch {} is not signed by the agent's contract key", entry.key_epoch))
    })
}

/// The agent's Ethereum address of each key epoch (oldest first), proven and each checked against the
/// contract's ed25519 key of its epoch. The address changes with the master key epoch: trust an address only
/// for the epoch it is listed under.
pub async fn agent_eth_addresses(client: &Client, agent: &ContractId) -> Result<Vec<AgentEthAddress>, SdkError> {
    let chain = client.chain_info().await?;
    let contract = contract(client, agent).await?;
    let list: Vec<AgentEthAddress> = proven(client, &StateKey::AgentWallets(*agent), "Ethereum addresses").await?;
    for entry in &list {
        check_eth(&chain.chain_id, &contract, entry)?;
    }
    Ok(list)
}

/// The agent's transfers of the last rolling day (what its daily spend cap is summed over), proven.
pub async fn agent_spend(client: &Client, agent: &ContractId) -> Result<AgentSpend, SdkError> {
    proven(client, &StateKey::AgentSpend(*agent), "agent transfers").await
}

/// An attested output with what was checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedOutput {
    /// The output as the chain keeps it.
    pub output: AttestedOutput,
    /// The Ethereum address its EIP-191 signature recovers to (the agent's published address of its epoch).
    pub eth_address: [u8; 20],
    /// Whether the posting worker is still registered, attested and active now (it was when the chain took it).
    pub worker_active: bool,
}

/// The agent's latest attested outputs (oldest first), proven; each one's ed25519 signature is checked
/// against the contract's published key of its epoch, its Ethereum signature against the agent's published
/// address of that epoch, and its worker against the registry. A failed check is an error naming the output.
pub async fn agent_outputs(client: &Client, agent: &ContractId) -> Result<Vec<VerifiedOutput>, SdkError> {
    let chain = client.chain_info().await?;
    let contract = contract(client, agent).await?;
    let wallets: Vec<AgentEthAddress> = proven(client, &StateKey::AgentWallets(*agent), "Ethereum addresses").await?;
    let outputs: Vec<AttestedOutput> = proven(client, &StateKey::AgentOutputs(*agent), "attested outputs").await?;
    let mut out = Vec::with_capacity(outputs.len());
    for o in outputs {
        let bad = |why: &str| err(format!("attested output {} of agent {}: {why}", o.index, Hash(*agent)));
        let public = contract.public(o.key_epoch).ok_or_else(|| bad("no contract key of its epoch"))?;
        let msg = output_signing_bytes(&chain.chain_id, agent, o.key_epoch, o.nonce, &o.output);
        umbra_crypto::verify(&Address(public.ed25519), &msg, &o.signature)
            .map_err(|_| bad("the ed25519 signature does not verify against the contract's key"))?;
        let eth = wallets.iter().find(|w| w.key_epoch == o.key_epoch).ok_or_else(|| bad("no Ethereum address"))?;
        check_eth(&chain.chain_id, &contract, eth)?;
        let sig: [u8; 65] =
            o.eth_signature.as_slice().try_into().map_err(|_| bad("the Ethereum signature is not 65 bytes"))?;
        if !umbra_crypto::verify_attested_output(&eth.address, agent, o.nonce, &o.output, &sig) {
            return Err(bad("the Ethereum signature does not recover to the agent's published address"));
        }
        let (worker, at) = client.worker(&o.worker).await?;
        let worker = worker.ok_or_else(|| bad("its worker is not registered on chain"))?;
        let worker_active = worker.is_active(at.header().height) && worker.cluster == Some(contract.cluster);
        out.push(VerifiedOutput { eth_address: eth.address, worker_active, output: o });
    }
    Ok(out)
}
