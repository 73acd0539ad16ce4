//! `env.wallet`, `env.eth` and `env.attest` through the engine's public API: the shapes a handler sees, the
//! typed requests the host gets, and clear errors (catchable by the handler) for bad arguments and refusals.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use umbra_crypto::{EthWallet, recover_address, recover_message};
use umbra_engine::{
    AgentRequest, CallOutput, Code, Engine, EngineError, Failure, Host, HostError, Invocation, Limits, Mode,
    WalletRequest,
};

/// A host with a real secp256k1 key that records every wallet request.
struct WalletHost {
    eth: EthWallet,
    seen: RefCell<Vec<WalletRequest>>,
}

impl Host for WalletHost {
    fn storage_get(&self, _: &[u8; 32], _: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
        Ok(None)
    }
    fn derive_key(&self, _: &[u8; 32], _: &[u8]) -> Result<[u8; 32], HostError> {
        Ok([0; 32])
    }
    fn sign(&self, _: &[u8; 32], _: &[u8]) -> Result<[u8; 64], HostError> {
        Ok([0; 64])
    }
    fn call(&self, _: &Invocation) -> Result<CallOutput, Failure> {
        Err(Failure { error: EngineError::Host("no calls".into()), gas_used: 0 })
    }
    fn wallet(&self, request: &WalletRequest) -> Result<Value, HostError> {
        self.seen.borrow_mut().push(request.clone());
        let hex = |b: &[u8]| format!("0x{}", hex::encode(b));
        Ok(match request {
            WalletRequest::Address => json!("umb1agentaccount"),
            WalletRequest::Transfer { amount, .. } if *amount > 100 => {
                return Err(HostError("wallet.transfer: the owner's spend cap is 100 per day".into()));
            }
            WalletRequest::Transfer { to, amount } => {
                json!({ "id": "00ff", "status": "pending", "to": to, "amount": amount.to_string() })
            }
            WalletRequest::EthAddress => json!(self.eth.address_checksum()),
            WalletRequest::EthSignMessage(m) => json!(hex(&self.eth.sign_message(m))),
            WalletRequest::EthSignTransaction(tx) => {
                let s = self.eth.sign_transaction(tx);
                json!({ "raw": hex(&s.raw), "hash": hex(&s.hash) })
            }
            WalletRequest::Attest(out) => json!({ "nonce": "5", "status": "pending", "bytes": out.len() }),
        })
    }
}

fn run(src: &str) -> (Result<(u16, String), EngineError>, Vec<WalletRequest>) {
    let engine = Engine::new(Limits::default()).expect("engine");
    let host = Rc::new(WalletHost { eth: EthWallet::from_seed([7; 32]).expect("seed"), seen: RefCell::default() });
    let dyn_host: Rc<dyn Host> = host.clone();
    let code = engine.load(&Code::JavaScript(src.as_bytes().to_vec())).expect("loads");
    let inv = Invocation {
        contract: [1; 32],
        mode: Mode::Query,
        method: "fetch".into(),
        args: vec![],
        caller: None,
        height: 1,
        time_ms: 0,
        seed: [3; 32],
        budget: 1_000_000_000,
        depth: 0,
    };
    let req =
        AgentRequest { method: "GET".into(), url: "http://x/".into(), path: "/".into(), headers: vec![], body: vec![] };
    let out = engine
        .handle(&code, &inv, &req, "{}", Instant::now() + Duration::from_secs(5), &dyn_host)
        .map(|o| (o.status, String::from_utf8_lossy(&o.body).into_owned()))
        .map_err(|f| f.failure.error);
    let seen = host.seen.borrow().clone();
    (out, seen)
}

fn body(src: &str) -> Value {
    let (out, _) = run(src);
    let (status, body) = out.expect("the handler answers");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("json body")
}

#[test]
fn the_handler_sees_its_accounts_and_gets_signatures_that_recover_to_its_ethereum_address() {
    let v = body(
        r#"export default { async fetch(request, env) {
            const sig = await env.eth.signMessage("hello agent");
            const tx = await env.eth.signTransaction({ chainId: 1, nonce: 0, maxPriorityFeePerGas: 1000000000n,
              maxFeePerGas: "30000000000", gas: 21000, to: "0x000000000000000000000000000000000000dEaD",
              value: "0x0de0b6b3a7640000", data: "0x" });
            return Response.json({ umbra: env.wallet.address, eth: env.eth.address, sig, tx });
        } };"#,
    );
    let wallet = EthWallet::from_seed([7; 32]).expect("seed");
    assert_eq!(v["umbra"], "umb1agentaccount");
    assert_eq!(v["eth"], wallet.address_checksum());
    let sig: [u8; 65] = hex::decode(v["sig"].as_str().expect("hex").trim_start_matches("0x"))
        .expect("hex")
        .try_into()
        .expect("65 bytes");
    assert_eq!(recover_message(b"hello agent", &sig), Ok(wallet.address()));
    let raw = hex::decode(v["tx"]["raw"].as_str().expect("raw").trim_start_matches("0x")).expect("hex");
    assert_eq!(raw[0], 0x02, "an EIP-1559 envelope");
    let hash = hex::decode(v["tx"]["hash"].as_str().expect("hash").trim_start_matches("0x")).expect("hex");
    assert_eq!(hash, umbra_crypto::keccak256(&raw).to_vec());
    // The signature inside the raw transaction recovers to the wallet too.
    let tx = umbra_crypto::Eip1559Tx {
        chain_id: 1,
        nonce: 0,
        max_priority_fee_per_gas: 1_000_000_000,
        max_fee_per_gas: 30_000_000_000,
        gas_limit: 21_000,
        to: Some(hex::decode("000000000000000000000000000000000000dEaD").expect("hex").try_into().expect("20")),
        value: 1_000_000_000_000_000_000,
        data: vec![],
        access_list: vec![],
    };
    let signed = wallet.sign_transaction(&tx);
    assert_eq!(raw, signed.raw, "the engine passed every field through unchanged");
    assert_eq!(recover_address(&tx.signing_hash(), &signed.signature), Ok(wallet.address()));
}

#[test]
fn transfers_and_attestations_reach_the_host_as_typed_requests() {
    let (out, seen) = run(r#"export default { async fetch(request, env) {
            const t = await env.wallet.transfer("umb1recipient", 42n);
            const a = await env.attest({ pair: "ETH/USD", price: "3120.5" });
            const s = await env.attest("plain text");
            return Response.json({ t, a, s });
        } };"#);
    let (status, text) = out.expect("answers");
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!((v["t"]["status"].as_str(), v["t"]["amount"].as_str()), (Some("pending"), Some("42")));
    assert_eq!(
        seen,
        [
            WalletRequest::Transfer { to: "umb1recipient".into(), amount: 42 },
            WalletRequest::Attest(br#"{"pair":"ETH/USD","price":"3120.5"}"#.to_vec()),
            WalletRequest::Attest(b"plain text".to_vec()),
        ]
    );
}

#[test]
fn bad_arguments_and_refusals_are_clear_errors_the_handler_can_catch() {
    let v = body(
        r#"export default { async fetch(request, env) {
            const errors = {};
            const t = async (name, f) => { try { await f(); errors[name] = "no error"; } catch (e) { errors[name] = e.name + ": " + e.message; } };
            await t("badField", () => env.eth.signTransaction({ chainId: 1, nonce: 0, maxPriorityFeePerGas: 1, maxFeePerGas: 1, gas: 1, gasPrice: 5 }));
            await t("badTo", () => env.eth.signTransaction({ chainId: 1, nonce: 0, maxPriorityFeePerGas: 1, maxFeePerGas: 1, gas: 1, to: "0x12" }));
            await t("notObject", () => env.eth.signTransaction("tx"));
            await t("floatAmount", () => env.wallet.transfer("umb1x", 1.5));
            await t("hugeNumber", () => env.wallet.transfer("umb1x", 1e300));
            await t("overCap", () => env.wallet.transfer("umb1x", "1000"));
            await t("noOutput", () => env.attest(undefined));
            await t("badMessage", () => env.eth.signMessage(42));
            return Response.json(errors);
        } };"#,
    );
    let want = [
        ("badField", "TypeError", "unknown field \"gasPrice\""),
        ("badTo", "TypeError", "to must be a 20-byte address"),
        ("notObject", "TypeError", "tx must be an object"),
        ("floatAmount", "TypeError", "whole number"),
        ("hugeNumber", "TypeError", "whole number"),
        ("overCap", "Error", "spend cap is 100 per day"),
        ("noOutput", "TypeError", "JSON-serialisable"),
        ("badMessage", "TypeError", "string or Uint8Array"),
    ];
    for (name, kind, text) in want {
        let got = v[name].as_str().unwrap_or_default();
        assert!(got.starts_with(kind) && got.contains(text), "{name}: {got}");
    }
}

#[test]
fn a_host_without_wallets_refuses_and_the_handler_fails_clearly() {
    struct Bare;
    impl Host for Bare {
        fn storage_get(&self, _: &[u8; 32], _: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
            Ok(None)
        }
        fn derive_key(&self, _: &[u8; 32], _: &[u8]) -> Result<[u8; 32], HostError> {
            Ok([0; 32])
        }
        fn sign(&self, _: &[u8; 32], _: &[u8]) -> Result<[u8; 64], HostError> {
            Ok([0; 64])
        }
        fn call(&self, _: &Invocation) -> Result<CallOutput, Failure> {
            Err(Failure { error: EngineError::Host("no".into()), gas_used: 0 })
        }
    }
    let engine = Engine::new(Limits::default()).expect("engine");
    let code = engine
        .load(&Code::JavaScript(
            b"export default { async fetch(r, env) { return new Response(env.eth.address); } };".to_vec(),
        ))
        .expect("loads");
    let host: Rc<dyn Host> = Rc::new(Bare);
    let inv = Invocation {
        contract: [1; 32],
        mode: Mode::Query,
        method: "fetch".into(),
        args: vec![],
        caller: None,
        height: 1,
        time_ms: 0,
        seed: [3; 32],
        budget: 1_000_000_000,
        depth: 0,
    };
    let req =
        AgentRequest { method: "GET".into(), url: "http://x/".into(), path: "/".into(), headers: vec![], body: vec![] };
    let err = engine
        .handle(&code, &inv, &req, "{}", Instant::now() + Duration::from_secs(5), &host)
        .expect_err("no wallet on this host")
        .failure
        .error;
    assert!(err.to_string().contains("agent wallets are not available"), "{err}");
}
