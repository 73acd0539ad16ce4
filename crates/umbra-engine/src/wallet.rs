//! An agent's wallets as its handler sees them: `env.wallet` (the agent's Umbra account), `env.eth` (its
//! Ethereum-compatible secp256k1 account) and `env.attest` (a signed result posted on chain).
//!
//! ```js
//! env.wallet.address                       // the agent's Umbra account (bech32m)
//! await env.wallet.transfer(to, "1000")    // { id, status: "pending", to, amount }
//! env.eth.address                          // "0x..." (EIP-55) of the current key epoch
//! await env.eth.signMessage("hello")       // "0x" + 65-byte EIP-191 signature
//! await env.eth.signTransaction({ chainId, nonce, maxPriorityFeePerGas, maxFeePerGas, gas, to, value, data })
//!                                          // { raw: "0x02...", hash: "0x..." } (EIP-1559)
//! await env.attest({ price: "3120.5" })    // { agent, keyEpoch, nonce, signature, ethSignature, status: "pending" }
//! ```
//!
//! The engine checks the shapes (a bad field is a `TypeError` the handler can catch) and hands a typed
//! [`WalletRequest`] to [`Host::wallet`](crate::Host::wallet); the keys live only in the host. Amounts and
//! 256-bit-safe numbers travel as decimal strings (or `0x` hex for Ethereum quantities), never as floats.

use serde_json::{Map, Value};

/// What a handler asks of its wallets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalletRequest {
    /// `env.wallet.address`.
    Address,
    /// `env.wallet.transfer(to, amount)`: `to` as the handler wrote it (bech32m or hex), `amount` in base units.
    Transfer {
        /// The recipient as given.
        to: String,
        /// The amount.
        amount: u128,
    },
    /// `env.eth.address`.
    EthAddress,
    /// `env.eth.signMessage(message)`: the message bytes (a string is signed as its UTF-8).
    EthSignMessage(Vec<u8>),
    /// `env.eth.signTransaction(tx)`.
    EthSignTransaction(umbra_crypto::Eip1559Tx),
    /// `env.attest(output)`: the output bytes (an object is signed as its `JSON.stringify`).
    Attest(Vec<u8>),
}

/// Parses the `(op, json, bytes)` the prelude passes to the host function into a request; the error is the
/// text of the `TypeError` thrown to the handler.
pub(crate) fn parse(op: &str, json: &str, bytes: Vec<u8>) -> Result<WalletRequest, String> {
    match op {
        "address" => Ok(WalletRequest::Address),
        "ethAddress" => Ok(WalletRequest::EthAddress),
        "signMessage" => Ok(WalletRequest::EthSignMessage(bytes)),
        "attest" => Ok(WalletRequest::Attest(bytes)),
        "transfer" => {
            let v: Value = serde_json::from_str(json).map_err(|e| format!("wallet.transfer: {e}"))?;
            let to = v.get("to").and_then(Value::as_str).unwrap_or_default().to_string();
            if to.is_empty() {
                return Err("wallet.transfer(to, amount): to must be an account address".into());
            }
            let amount = v.get("amount").and_then(Value::as_str).unwrap_or_default();
            let amount: u128 = amount.parse().map_err(|_| {
                format!(
                    "wallet.transfer(to, amount): amount must be a whole number of base units as a decimal string or \
                     BigInt, not {amount:?}"
                )
            })?;
            if amount == 0 {
                return Err("wallet.transfer(to, amount): amount must be greater than zero".into());
            }
            Ok(WalletRequest::Transfer { to, amount })
        }
        "signTransaction" => {
            let v: Value = serde_json::from_str(json).map_err(|e| format!("eth.signTransaction: {e}"))?;
            let Value::Object(fields) = v else { return Err("eth.signTransaction(tx): tx must be an object".into()) };
            eth_tx(&fields).map(WalletRequest::EthSignTransaction).map_err(|e| format!("eth.signTransaction: {e}"))
        }
        other => Err(format!("unknown wallet operation {other:?}")),
    }
}

const TX_FIELDS: [&str; 10] =
    ["chainId", "nonce", "maxPriorityFeePerGas", "maxFeePerGas", "gas", "to", "value", "data", "accessList", "type"];

/// A non-negative integer from a JSON number (a safe integer), a decimal string or a `0x` hex string.
fn quantity(fields: &Map<String, Value>, name: &str, required: bool) -> Result<u128, String> {
    let Some(v) = fields.get(name).filter(|v| !v.is_null()) else {
        return if required { Err(format!("{name} is required")) } else { Ok(0) };
    };
    let bad = || format!("{name} must be a non-negative integer (number, decimal string, 0x hex string or BigInt)");
    match v {
        Value::Number(n) => {
            let n = n.as_u64().ok_or_else(bad)?;
            if n > (1u64 << 53) {
                return Err(format!("{name} is beyond JavaScript's safe integers: pass it as a string or BigInt"));
            }
            Ok(u128::from(n))
        }
        Value::String(s) => match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(h) if !h.is_empty() && h.len() <= 32 => u128::from_str_radix(h, 16).map_err(|_| bad()),
            Some(_) => Err(bad()),
            None => s.parse().map_err(|_| bad()),
        },
        _ => Err(bad()),
    }
}

fn small(fields: &Map<String, Value>, name: &str) -> Result<u64, String> {
    u64::try_from(quantity(fields, name, true)?).map_err(|_| format!("{name} must fit in 64 bits"))
}

fn hex_field(v: &Value, name: &str) -> Result<Vec<u8>, String> {
    let s = v.as_str().ok_or_else(|| format!("{name} must be a 0x-prefixed hex string"))?;
    let h = s.strip_prefix("0x").ok_or_else(|| format!("{name} must be a 0x-prefixed hex string"))?;
    hex::decode(h).map_err(|_| format!("{name} is not valid hex"))
}

fn address20(v: &Value, name: &str) -> Result<[u8; 20], String> {
    hex_field(v, name)?.try_into().map_err(|_| format!("{name} must be a 20-byte address (0x + 40 hex digits)"))
}

fn eth_tx(fields: &Map<String, Value>) -> Result<umbra_crypto::Eip1559Tx, String> {
    if let Some(unknown) = fields.keys().find(|k| !TX_FIELDS.contains(&k.as_str())) {
        return Err(format!("unknown field {unknown:?} (fields: {})", TX_FIELDS.join(", ")));
    }
    if let Some(t) = fields.get("type").filter(|t| !t.is_null())
        && quantity(fields, "type", true)? != 2
    {
        return Err(format!("only EIP-1559 (type 2) transactions are signed, not type {t}"));
    }
    let to = match fields.get("to") {
        None | Some(Value::Null) => None,
        Some(v) => Some(address20(v, "to")?),
    };
    let data = match fields.get("data") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => hex_field(v, "data")?,
    };
    let mut access_list = Vec::new();
    if let Some(list) = fields.get("accessList").filter(|v| !v.is_null()) {
        let list = list.as_array().ok_or("accessList must be an array of { address, storageKeys }")?;
        for entry in list {
            let address = address20(entry.get("address").unwrap_or(&Value::Null), "accessList address")?;
            let mut keys = Vec::new();
            for k in entry.get("storageKeys").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
                let k: [u8; 32] = hex_field(k, "storage key")?
                    .try_into()
                    .map_err(|_| "a storage key is 32 bytes (0x + 64 hex digits)".to_string())?;
                keys.push(k);
            }
            access_list.push((address, keys));
        }
    }
    let tx = umbra_crypto::Eip1559Tx {
        chain_id: small(fields, "chainId")?,
        nonce: small(fields, "nonce")?,
        max_priority_fee_per_gas: quantity(fields, "maxPriorityFeePerGas", true)?,
        max_fee_per_gas: quantity(fields, "maxFeePerGas", true)?,
        gas_limit: small(fields, "gas")?,
        to,
        value: quantity(fields, "value", false)?,
        data,
        access_list,
    };
    if tx.max_priority_fee_per_gas > tx.max_fee_per_gas {
        return Err("maxPriorityFeePerGas must not exceed maxFeePerGas".into());
    }
    if tx.chain_id == 0 {
        return Err("chainId must be set (EIP-155), e.g. 1 for Ethereum mainnet".into());
    }
    Ok(tx)
}

/// The JavaScript side: a factory taking the host function `wallet(op, json, bytes) -> json` and returning
/// `{ wallet, eth, attest }` for the agent prelude to put on `env`.
pub(crate) const WALLET_FACTORY: &str = r#"
(function (wallet) {
  "use strict";
  const wcall = (op, arg, bytes) => JSON.parse(wallet(op, arg === undefined ? "" : JSON.stringify(arg, (k, v) => typeof v === "bigint" ? v.toString() : v), bytes === undefined ? "" : bytes));
  const asBytes = (what, m) => {
    if (typeof m === "string" || m instanceof Uint8Array) return m;
    if (m instanceof ArrayBuffer) return new Uint8Array(m);
    throw new TypeError(what + ": expected a string or Uint8Array");
  };
  const walletApi = Object.freeze({
    get address() { return wcall("address"); },
    transfer: async (to, amount) => {
      if (typeof amount === "number" && !Number.isSafeInteger(amount)) throw new TypeError("wallet.transfer(to, amount): amount must be a whole number; pass large amounts as a string or BigInt");
      return wcall("transfer", { to: String(to), amount: typeof amount === "bigint" ? amount.toString() : String(amount) });
    },
  });
  const ethApi = Object.freeze({
    get address() { return wcall("ethAddress"); },
    signMessage: async (message) => wcall("signMessage", undefined, asBytes("eth.signMessage(message)", message)),
    signTransaction: async (tx) => {
      if (!tx || typeof tx !== "object") throw new TypeError("eth.signTransaction(tx): tx must be an object");
      return wcall("signTransaction", tx);
    },
  });
  const attest = async (output) => {
    if (output === undefined || typeof output === "function") throw new TypeError("attest(output): output must be a string or a JSON-serialisable value");
    const text = typeof output === "string" ? output : JSON.stringify(output, (k, v) => typeof v === "bigint" ? v.toString() : v);
    return wcall("attest", undefined, text);
  };
  return Object.freeze({ wallet: walletApi, eth: ethApi, attest });
})
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_parses_from_numbers_decimal_and_hex_strings() {
        let json = r#"{"chainId":1,"nonce":"7","maxPriorityFeePerGas":"0x3b9aca00","maxFeePerGas":"30000000000",
            "gas":21000,"to":"0x000000000000000000000000000000000000dEaD","value":"1000000000000000000","data":"0x"}"#;
        let WalletRequest::EthSignTransaction(tx) = parse("signTransaction", json, vec![]).expect("parses") else {
            panic!("a transaction")
        };
        assert_eq!((tx.chain_id, tx.nonce, tx.max_priority_fee_per_gas, tx.gas_limit), (1, 7, 1_000_000_000, 21_000));
        assert_eq!((tx.max_fee_per_gas, tx.value), (30_000_000_000, 1_000_000_000_000_000_000));
        assert_eq!(tx.to.map(|t| t[19]), Some(0xad));
    }

    #[test]
    fn bad_transaction_fields_are_named_in_the_error() {
        let cases = [
            (r#"{"nonce":0,"maxPriorityFeePerGas":1,"maxFeePerGas":1,"gas":1}"#, "chainId is required"),
            (r#"{"chainId":1,"nonce":-1,"maxPriorityFeePerGas":1,"maxFeePerGas":1,"gas":1}"#, "nonce must be"),
            (r#"{"chainId":1,"nonce":0,"maxPriorityFeePerGas":1,"maxFeePerGas":1,"gas":1,"to":"0x12"}"#, "20-byte"),
            (
                r#"{"chainId":1,"nonce":0,"maxPriorityFeePerGas":1,"maxFeePerGas":1,"gas":1,"gasPrice":1}"#,
                "unknown field",
            ),
            (r#"{"chainId":1,"nonce":0,"maxPriorityFeePerGas":2,"maxFeePerGas":1,"gas":1}"#, "must not exceed"),
            (r#"{"chainId":1,"nonce":0,"maxPriorityFeePerGas":1,"maxFeePerGas":1,"gas":1.5}"#, "gas must be"),
            (r#"{"chainId":1,"nonce":0,"maxPriorityFeePerGas":1,"maxFeePerGas":1,"gas":1,"data":"zz"}"#, "0x-prefixed"),
        ];
        for (json, want) in cases {
            let e = parse("signTransaction", json, vec![]).expect_err(json);
            assert!(e.contains(want), "{json}: {e}");
        }
    }

    #[test]
    fn transfers_need_a_recipient_and_a_positive_whole_amount() {
        assert_eq!(
            parse("transfer", r#"{"to":"umb1x","amount":"12"}"#, vec![]),
            Ok(WalletRequest::Transfer { to: "umb1x".into(), amount: 12 })
        );
        assert!(parse("transfer", r#"{"to":"umb1x","amount":"1.5"}"#, vec![]).is_err());
        assert!(parse("transfer", r#"{"to":"umb1x","amount":"0"}"#, vec![]).is_err());
        assert!(parse("transfer", r#"{"to":"","amount":"1"}"#, vec![]).is_err());
        assert!(parse("nope", "", vec![]).is_err());
    }
}
