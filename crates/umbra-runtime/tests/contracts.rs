//! Scenario tests of the contracts module: code upload, instantiation on a keyed cluster, sealed commands
//! with gas deposits, reports that land once, refunds, contract transfers and state-root incidents.
#![allow(clippy::result_large_err, dead_code)]

use futures::executor::block_on;
use umbra_crypto::Keypair;
use umbra_runtime::{AdmissionError, BlockError};
use umbra_types::contracts::{
    CodeKind, CommandStatus, ContractPublic, ContractTransfer, code_hash, contract_account, contract_id, gas_escrow,
    storage_escrow,
};
use umbra_types::registry::{ClusterKeys, ClusterPublic, KeyShare};
use umbra_types::{
    Address, AdminCall, Amount, Call, EgressPayload, Hash, MessageBody, Origin, Params, Receipt, Topic, TxError, UNIT,
    sha256,
};

mod common;
use common::*;

/// Uploads the counter and instantiates it with `salt`; returns its id.
fn deploy(s: &mut Setup, salt: &[u8]) -> [u8; 32] {
    let c = &mut s.c;
    c.ok(DEPLOYER, Call::UploadCode { kind: CodeKind::JavaScript, code: COUNTER_JS.to_vec() });
    let hash = code_hash(CodeKind::JavaScript, COUNTER_JS);
    c.ok(DEPLOYER, Call::Instantiate { code_hash: hash, cluster: CLUSTER, salt: salt.to_vec(), args: vec![] });
    let id = contract_id(&c.op(DEPLOYER), &hash, salt, CLUSTER);
    c.extra_holders.push(contract_account(&id));
    id
}

/// The contract's key played by the test, published by the cluster as its `n`-th cluster egress.
fn publish_keys(s: &mut Setup, id: [u8; 32], n: u64) -> Keypair {
    let key = Keypair::from_seed(sha256(&[b"contract key", &id]).0);
    let public = ContractPublic { x25519: [71; 32], ed25519: key.address().0 };
    let payload = EgressPayload::ContractKeys { contract: id, key_epoch: 1, public };
    let tx = s.c.carry(sign_egress(&s.cluster_key, Origin::Cluster(CLUSTER), n, payload));
    assert_eq!(s.c.run(vec![tx]).0[0].error, None);
    key
}

fn command(id: [u8; 32], gas_limit: u64) -> Call {
    Call::ContractCommand { contract: id, key_epoch: 1, gas_limit, sealed: vec![0x5e; 80] }
}

fn report(root: u8, gas_used: u64, transfers: Vec<ContractTransfer>) -> EgressPayload {
    report_stored(root, gas_used, transfers, 0)
}

fn report_stored(root: u8, gas_used: u64, transfers: Vec<ContractTransfer>, stored_bytes: u64) -> EgressPayload {
    EgressPayload::ContractReport {
        status: CommandStatus::Ok,
        gas_used,
        state_root: Hash([root; 32]),
        events_hash: Hash([0; 32]),
        transfers,
        stored_bytes,
    }
}

fn balance(c: &Chain, a: &Address) -> Amount {
    block_on(c.rt.account(&c.state, a)).expect("readable").balance
}

#[test]
fn a_contract_goes_from_upload_through_published_keys_to_a_reported_command_with_its_gas_refunded() {
    let mut s = setup();
    let id = deploy(&mut s, b"one");
    let hash = code_hash(CodeKind::JavaScript, COUNTER_JS);
    let code = block_on(s.c.rt.contract_code(&s.c.state, &hash)).expect("readable").expect("stored");
    assert_eq!(
        (code.kind, code.size as usize, code.uploader),
        (CodeKind::JavaScript, COUNTER_JS.len(), s.c.op(DEPLOYER))
    );
    let (_, msg) = s.c.last(Topic::Cluster(CLUSTER));
    assert!(
        matches!(&msg, MessageBody::ContractInstantiated { contract, code, deployer, .. }
            if *contract == id && code == COUNTER_JS && *deployer == s.c.op(DEPLOYER)),
        "{msg:?}"
    );
    // No command before the cluster published the contract's keys.
    let e = s.c.fails(1, command(id, 1_000));
    assert!(e.to_string().contains("not published yet"), "{e}");
    let key = publish_keys(&mut s, id, 0);
    let rec = block_on(s.c.rt.contract(&s.c.state, &id)).expect("readable").expect("exists");
    assert_eq!(rec.keys.len(), 1);
    assert_eq!(rec.account, contract_account(&id));

    let price = Params::default().contracts.gas_price;
    let before = balance(&s.c, &s.c.op(1));
    let tx = s.c.tx(1, command(id, 10_000));
    let fee = tx.tx.fee;
    let (r, _) = s.c.run(vec![tx]);
    assert_eq!(r[0].error, None);
    assert_eq!(balance(&s.c, &s.c.op(1)), before - fee - 10_000 * price, "the deposit is held");
    assert_eq!(balance(&s.c, &gas_escrow()), 10_000 * price);
    let (_, msg) = s.c.last(Topic::Cluster(CLUSTER));
    assert!(matches!(msg, MessageBody::ContractCommand { seq: 0, gas_limit: 10_000, .. }), "{msg:?}");
    let cmd = block_on(s.c.rt.contract_command(&s.c.state, &id, 0)).expect("readable").expect("ordered");
    assert_eq!((cmd.sender, cmd.deposit, cmd.result), (s.c.op(1), 10_000 * price, None));

    let treasury_before = balance(&s.c, &Address::module("treasury"));
    let tx = s.c.carry(sign_egress(&key, Origin::Contract(id), 0, report(9, 4_000, vec![])));
    assert_eq!(s.c.run(vec![tx]).0[0].error, None);
    let cmd = block_on(s.c.rt.contract_command(&s.c.state, &id, 0)).expect("readable").expect("ordered");
    let result = cmd.result.expect("reported");
    assert_eq!((result.gas_used, result.refund, result.state_root), (4_000, 6_000 * price, Hash([9; 32])));
    assert_eq!(balance(&s.c, &gas_escrow()), 0);
    assert!(balance(&s.c, &Address::module("treasury")) >= treasury_before + 4_000 * price);
    let rec = block_on(s.c.rt.contract(&s.c.state, &id)).expect("readable").expect("exists");
    assert_eq!((rec.commands, rec.reported, rec.state_root), (1, 1, Some(Hash([9; 32]))));
    assert_eq!(
        s.c.last(Topic::Cluster(CLUSTER)).1,
        MessageBody::ContractResult { contract: id, seq: 0, state_root: Hash([9; 32]) }
    );
}

#[test]
fn oversized_code_empty_code_and_unknown_code_or_cluster_are_refused_with_a_reason() {
    let mut s = setup();
    let max = Params::default().contracts.max_code_bytes as usize;
    let big = vec![b' '; max + 1];
    assert_eq!(
        s.c.fails(1, Call::UploadCode { kind: CodeKind::JavaScript, code: big }),
        TxError::CodeTooLarge { size: max as u64 + 1, max: max as u64 }
    );
    assert!(s.c.fails(1, Call::UploadCode { kind: CodeKind::Wasm, code: vec![] }).to_string().contains("empty"));
    let unknown = Call::Instantiate { code_hash: Hash([1; 32]), cluster: CLUSTER, salt: vec![], args: vec![] };
    assert_eq!(s.c.fails(1, unknown), TxError::UnknownCode);
    s.c.ok(1, Call::UploadCode { kind: CodeKind::JavaScript, code: COUNTER_JS.to_vec() });
    let hash = code_hash(CodeKind::JavaScript, COUNTER_JS);
    let e = s.c.fails(1, Call::Instantiate { code_hash: hash, cluster: 99, salt: vec![], args: vec![] });
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert_eq!(s.c.fails(1, command([9; 32], 1)), TxError::UnknownContract);
}

#[test]
fn the_same_salt_cannot_instantiate_twice_and_another_salt_makes_another_id() {
    let mut s = setup();
    let a = deploy(&mut s, b"x");
    let hash = code_hash(CodeKind::JavaScript, COUNTER_JS);
    let again = Call::Instantiate { code_hash: hash, cluster: CLUSTER, salt: b"x".to_vec(), args: vec![] };
    assert!(s.c.fails(DEPLOYER, again).to_string().contains("already exists"));
    let b = deploy(&mut s, b"y");
    assert_ne!(a, b);
}

#[test]
fn a_command_sealed_to_an_epoch_without_keys_or_with_too_much_gas_is_refused() {
    let mut s = setup();
    let id = deploy(&mut s, b"e");
    publish_keys(&mut s, id, 0);
    let wrong = Call::ContractCommand { contract: id, key_epoch: 2, gas_limit: 10, sealed: vec![1; 80] };
    let e = s.c.fails(1, wrong);
    assert!(e.to_string().contains("no key of epoch 2"), "{e}");
    let max = Params::default().contracts.max_gas_per_command;
    assert!(s.c.fails(1, command(id, max + 1)).to_string().contains("gas limit"));
    let rec = block_on(s.c.rt.contract(&s.c.state, &id)).expect("readable").expect("exists");
    assert_eq!(rec.commands, 0, "refused commands are not ordered");
}

#[test]
fn identical_reports_land_once_and_a_member_with_another_root_records_an_incident() {
    let mut s = setup();
    let id = deploy(&mut s, b"i");
    let key = publish_keys(&mut s, id, 0);
    s.c.ok(1, command(id, 1_000));
    let signed = sign_egress(&key, Origin::Contract(id), 0, report(5, 10, vec![]));
    let (a, b) = (s.c.carry(signed.clone()), s.c.carry(signed));
    let (receipts, rejected) = s.c.run(vec![a, b]);
    assert_eq!(receipts.len(), 1, "the second copy is left out");
    assert!(matches!(rejected[0].1, AdmissionError::EgressStale { .. }), "{rejected:?}");
    s.c.unspend(RELAYER);
    // A different report for the same command is stale too: the first one decided.
    let other = s.c.carry(sign_egress(&key, Origin::Contract(id), 0, report(6, 10, vec![])));
    let e = s.c.execute(&[other]);
    assert!(
        matches!(e, Err(BlockError::InvalidTransaction { error: AdmissionError::EgressStale { .. }, .. })),
        "{e:?}"
    );
    s.c.unspend(RELAYER);
    // A report signed by another key never gets in.
    s.c.ok(1, command(id, 1_000));
    let forged = s.c.carry(sign_egress(&Keypair::from_seed([1; 32]), Origin::Contract(id), 1, report(5, 1, vec![])));
    let (_, rejected) = s.c.run(vec![forged]);
    assert!(matches!(rejected[0].1, AdmissionError::BadEgressSignature { .. }), "{rejected:?}");
    s.c.unspend(RELAYER);

    let m = &s.ws[3];
    let incident = EgressPayload::ContractIncident { contract: id, seq: 0, state_root: Hash([6; 32]) };
    let tx = s.c.carry(m.egress(0, incident));
    assert_eq!(s.c.run(vec![tx]).0[0].error, None);
    let list = block_on(s.c.rt.contract_incidents(&s.c.state, &id)).expect("readable");
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].worker, list[0].recorded, list[0].reported), (m.id(), Hash([5; 32]), Hash([6; 32])));
    // A worker outside the cluster cannot.
    let outsider = EgressPayload::ContractIncident { contract: id, seq: 0, state_root: Hash([6; 32]) };
    let tx = s.c.carry(s.ws[1].egress(0, outsider));
    assert!(s.c.run(vec![tx]).0[0].error.is_some());
}

#[test]
fn a_reported_transfer_moves_the_contracts_tokens_all_or_none() {
    let mut s = setup();
    let id = deploy(&mut s, b"t");
    let key = publish_keys(&mut s, id, 0);
    s.c.ok(1, Call::Transfer { to: contract_account(&id), amount: 10 * UNIT });
    s.c.ok(1, command(id, 1_000));
    s.c.ok(1, command(id, 1_000));
    let to = s.c.op(4);
    let before = balance(&s.c, &to);
    let ok = vec![ContractTransfer { to, amount: 3 * UNIT }];
    let tx = s.c.carry(sign_egress(&key, Origin::Contract(id), 0, report(1, 1, ok)));
    assert_eq!(s.c.run(vec![tx]).0[0].error, None);
    assert_eq!(balance(&s.c, &to), before + 3 * UNIT);
    let too_much = vec![ContractTransfer { to, amount: 5 * UNIT }, ContractTransfer { to, amount: 5 * UNIT }];
    let tx = s.c.carry(sign_egress(&key, Origin::Contract(id), 1, report(2, 1, too_much)));
    assert_eq!(s.c.run(vec![tx]).0[0].error, None);
    assert_eq!(balance(&s.c, &to), before + 3 * UNIT, "none of the transfers was made");
    let r = block_on(s.c.rt.contract_command(&s.c.state, &id, 1)).expect("readable").expect("ordered").result;
    let r = r.expect("reported");
    assert!(r.transfers.is_empty() && r.transfer_error.is_some_and(|e| e.contains("holds")));
}

#[test]
fn the_cluster_origin_signs_with_the_clusters_published_key_only() {
    let mut s = setup();
    let id = deploy(&mut s, b"k");
    let public = ContractPublic { x25519: [1; 32], ed25519: [2; 32] };
    let payload = EgressPayload::ContractKeys { contract: id, key_epoch: 1, public };
    let forged = s.c.carry(sign_egress(&Keypair::from_seed([9; 32]), Origin::Cluster(CLUSTER), 0, payload.clone()));
    let (_, rejected) = s.c.run(vec![forged]);
    assert!(matches!(rejected[0].1, AdmissionError::BadEgressSignature { .. }), "{rejected:?}");
    s.c.unspend(RELAYER);
    let unknown = s.c.carry(sign_egress(&s.cluster_key, Origin::Cluster(99), 0, payload));
    let (_, rejected) = s.c.run(vec![unknown]);
    assert!(matches!(rejected[0].1, AdmissionError::EgressUnknownOrigin { .. }), "{rejected:?}");
}

#[test]
fn a_clusters_own_gas_price_sets_the_deposit_and_its_code_limit_refuses_larger_instances() {
    let mut s = setup();
    let e = s.c.fails(
        SUDO,
        Call::Admin { call: AdminCall::SetClusterContracts { cluster: 99, gas_price: Some(3), max_code_bytes: None } },
    );
    assert!(e.to_string().contains("does not exist"), "{e}");
    s.c.admin(AdminCall::SetClusterContracts { cluster: CLUSTER, gas_price: Some(3), max_code_bytes: None });
    let id = deploy(&mut s, b"priced");
    let key = publish_keys(&mut s, id, 0);
    let escrow_before = balance(&s.c, &gas_escrow());
    s.c.ok(1, command(id, 10_000));
    assert_eq!(balance(&s.c, &gas_escrow()) - escrow_before, 30_000, "gas_limit * the cluster's price");
    // A later price change does not change what the held deposit is settled at.
    s.c.admin(AdminCall::SetClusterContracts { cluster: CLUSTER, gas_price: Some(5), max_code_bytes: None });
    let tx = s.c.carry(sign_egress(&key, Origin::Contract(id), 0, report(9, 4_000, vec![])));
    assert_eq!(s.c.run(vec![tx]).0[0].error, None);
    let result = block_on(s.c.rt.contract_command(&s.c.state, &id, 0)).expect("readable").expect("ordered");
    assert_eq!(result.result.expect("reported").refund, 6_000 * 3);
    s.c.ok(1, command(id, 10));
    let cmd = block_on(s.c.rt.contract_command(&s.c.state, &id, 1)).expect("readable").expect("ordered");
    assert_eq!(cmd.deposit, 50);
    // Without its own price a cluster uses the chain's.
    s.c.admin(AdminCall::SetClusterContracts { cluster: CLUSTER, gas_price: None, max_code_bytes: Some(16) });
    s.c.ok(1, command(id, 10));
    let cmd = block_on(s.c.rt.contract_command(&s.c.state, &id, 2)).expect("readable").expect("ordered");
    assert_eq!(cmd.deposit, 10 * Params::default().contracts.gas_price);
    // The code limit: the counter is larger than 16 bytes.
    let hash = code_hash(CodeKind::JavaScript, COUNTER_JS);
    let e = s
        .c
        .fails(DEPLOYER, Call::Instantiate { code_hash: hash, cluster: CLUSTER, salt: b"big".to_vec(), args: vec![] });
    assert_eq!(e, TxError::CodeTooLarge { size: COUNTER_JS.len() as u64, max: 16 });
    let too_big = Params::default().contracts.max_code_bytes + 1;
    let e = s.c.fails(
        SUDO,
        Call::Admin {
            call: AdminCall::SetClusterContracts { cluster: CLUSTER, gas_price: None, max_code_bytes: Some(too_big) },
        },
    );
    assert!(e.to_string().contains("between 1 and"), "{e}");
}

#[test]
fn after_a_rotation_commands_to_the_erased_epoch_are_refused_and_the_new_epochs_keys_take_commands() {
    let mut s = setup();
    let id = deploy(&mut s, b"rotated");
    let key1 = publish_keys(&mut s, id, 0);
    s.c.ok(1, command(id, 1_000));
    // Rotate: the leader publishes epoch 2 with a new cluster key; everyone pending acknowledges.
    s.c.admin(AdminCall::StartRotation);
    let gk = Keypair::from_seed([41; 32]);
    let gk2 = Keypair::from_seed([42; 32]);
    let cluster2 = Keypair::from_seed([64; 32]);
    let public2 = ClusterPublic { x25519: [62; 32], ed25519: cluster2.address().0 };
    let next = block_on(s.c.rt.egress_next(&s.c.state, &Origin::Gatekeeper)).expect("readable");
    let shares =
        vec![KeyShare { to: s.ws[2].id(), sealed: vec![7; 48] }, KeyShare { to: s.ws[3].id(), sealed: vec![7; 48] }];
    let master = EgressPayload::MasterKey {
        key_epoch: 2,
        master_public: [52; 32],
        gatekeeper_key: gk2.address().0,
        shares: vec![],
        clusters: vec![ClusterKeys { cluster: CLUSTER, public: public2, shares }],
    };
    let mut txs = vec![s.c.carry(sign_egress(&gk, Origin::Gatekeeper, next, master))];
    for w in [0, 2, 3] {
        let seq = block_on(s.c.rt.egress_next(&s.c.state, &Origin::Worker(s.ws[w].id()))).expect("readable");
        txs.push(s.c.carry(s.ws[w].egress(seq, EgressPayload::KeyAck { key_epoch: 2 })));
    }
    let (r, _) = s.c.run(txs);
    assert!(r.iter().all(Receipt::is_success), "{r:?}");
    assert_eq!(block_on(s.c.rt.keys(&s.c.state)).expect("readable").key_epoch, 2);

    let e = s.c.fails(1, command(id, 1_000));
    assert!(e.to_string().contains("retired by a key rotation"), "{e}");
    let epoch2 = Call::ContractCommand { contract: id, key_epoch: 2, gas_limit: 1_000, sealed: vec![0x5e; 80] };
    let e = s.c.fails(1, epoch2.clone());
    assert!(e.to_string().contains("no key of epoch 2"), "{e}");
    // The members publish the contract's keys of epoch 2, signed with the new cluster key.
    let key2 = Keypair::from_seed([72; 32]);
    let payload = EgressPayload::ContractKeys {
        contract: id,
        key_epoch: 2,
        public: ContractPublic { x25519: [73; 32], ed25519: key2.address().0 },
    };
    let next = block_on(s.c.rt.egress_next(&s.c.state, &Origin::Cluster(CLUSTER))).expect("readable");
    let tx = s.c.carry(sign_egress(&cluster2, Origin::Cluster(CLUSTER), next, payload));
    assert_eq!(s.c.run(vec![tx]).0[0].error, None);
    s.c.ok(1, epoch2);
    // The command sealed to epoch 1 before the rotation is still reported under the epoch-1 key; the new
    // one under the epoch-2 key.
    let tx = s.c.carry(sign_egress(&key2, Origin::Contract(id), 0, report(8, 10, vec![])));
    let (r, rejected) = s.c.run(vec![tx]);
    assert!(r.is_empty(), "a report signed with another epoch's key than its command's is not admitted");
    assert!(matches!(rejected[0].1, AdmissionError::BadEgressSignature { .. }), "{rejected:?}");
    s.c.unspend(RELAYER);
    let tx = s.c.carry(sign_egress(&key1, Origin::Contract(id), 0, report(8, 10, vec![])));
    assert_eq!(s.c.run(vec![tx]).0[0].error, None);
    let tx = s.c.carry(sign_egress(&key2, Origin::Contract(id), 1, report(9, 10, vec![])));
    assert_eq!(s.c.run(vec![tx]).0[0].error, None);
    let rec = block_on(s.c.rt.contract(&s.c.state, &id)).expect("readable").expect("exists");
    assert_eq!((rec.reported, rec.state_root), (2, Some(Hash([9; 32]))));
}

/// The storage price the tests set on the cluster, per byte.
const PER_BYTE: u64 = 7;

fn record(s: &Setup, id: &[u8; 32]) -> umbra_types::contracts::ContractRecord {
    block_on(s.c.rt.contract(&s.c.state, id)).expect("readable").expect("exists")
}

#[test]
fn instantiating_on_a_cluster_with_a_storage_price_reserves_the_code_bytes_from_the_deployer() {
    let mut s = setup();
    s.c.admin(AdminCall::SetClusterStorageDeposit { cluster: CLUSTER, per_byte: Some(PER_BYTE) });
    let code_deposit = COUNTER_JS.len() as Amount * Amount::from(PER_BYTE);
    let deployer = s.c.op(DEPLOYER);
    s.c.ok(DEPLOYER, Call::UploadCode { kind: CodeKind::JavaScript, code: COUNTER_JS.to_vec() });
    let before = balance(&s.c, &deployer);
    let hash = code_hash(CodeKind::JavaScript, COUNTER_JS);
    let tx =
        s.c.tx(DEPLOYER, Call::Instantiate { code_hash: hash, cluster: CLUSTER, salt: b"s".to_vec(), args: vec![] });
    let fee = tx.tx.fee;
    assert_eq!(s.c.run(vec![tx]).0[0].error, None);
    let id = contract_id(&deployer, &hash, b"s", CLUSTER);
    s.c.extra_holders.push(contract_account(&id));
    assert_eq!(balance(&s.c, &deployer), before - fee - code_deposit, "the deployer paid the code's deposit");
    assert_eq!(balance(&s.c, &storage_escrow()), code_deposit);
    let rec = record(&s, &id);
    assert_eq!((rec.storage_deposit, rec.stored_bytes, rec.storage_debt), (code_deposit, 0, 0));
    // Another cluster setting leaves the storage price in place.
    s.c.admin(AdminCall::SetClusterContracts { cluster: CLUSTER, gas_price: Some(3), max_code_bytes: None });
    let id2 = {
        let tx = s
            .c
            .tx(DEPLOYER, Call::Instantiate { code_hash: hash, cluster: CLUSTER, salt: b"t".to_vec(), args: vec![] });
        assert_eq!(s.c.run(vec![tx]).0[0].error, None);
        contract_id(&deployer, &hash, b"t", CLUSTER)
    };
    s.c.extra_holders.push(contract_account(&id2));
    assert_eq!(record(&s, &id2).storage_deposit, code_deposit);
    s.c.assert_supply_unchanged();
}

#[test]
fn a_deployer_who_cannot_pay_the_code_deposit_cannot_instantiate() {
    let mut s = setup();
    s.c.admin(AdminCall::SetClusterStorageDeposit { cluster: CLUSTER, per_byte: Some(u64::MAX) });
    s.c.ok(DEPLOYER, Call::UploadCode { kind: CodeKind::JavaScript, code: COUNTER_JS.to_vec() });
    let hash = code_hash(CodeKind::JavaScript, COUNTER_JS);
    let e = s.c.fails(DEPLOYER, Call::Instantiate { code_hash: hash, cluster: CLUSTER, salt: vec![], args: vec![] });
    assert!(matches!(e, TxError::InsufficientBalance { .. }), "{e:?}");
    let id = contract_id(&s.c.op(DEPLOYER), &hash, &[], CLUSTER);
    assert!(block_on(s.c.rt.contract(&s.c.state, &id)).expect("readable").is_none(), "nothing was created");
    assert_eq!(balance(&s.c, &storage_escrow()), 0);
}

#[test]
fn storage_growth_is_charged_to_the_contract_account_and_shrinking_is_refunded_to_it() {
    let mut s = setup();
    s.c.admin(AdminCall::SetClusterStorageDeposit { cluster: CLUSTER, per_byte: Some(PER_BYTE) });
    let id = deploy(&mut s, b"grow");
    let key = publish_keys(&mut s, id, 0);
    let account = contract_account(&id);
    let code_deposit = COUNTER_JS.len() as Amount * Amount::from(PER_BYTE);
    s.c.ok(1, Call::Transfer { to: account, amount: 10 * UNIT });

    // Growth to 1,000 bytes: 7,000 moved from the contract's account to the deposit.
    s.c.ok(1, command(id, 1_000));
    let tx = s.c.carry(sign_egress(&key, Origin::Contract(id), 0, report_stored(1, 10, vec![], 1_000)));
    assert_eq!(s.c.run(vec![tx]).0[0].error, None);
    let rec = record(&s, &id);
    assert_eq!((rec.stored_bytes, rec.storage_deposit, rec.storage_debt), (1_000, code_deposit + 7_000, 0));
    assert_eq!(balance(&s.c, &account), 10 * UNIT - 7_000);
    assert_eq!(balance(&s.c, &storage_escrow()), code_deposit + 7_000);

    // Shrinking to 200 bytes: 5,600 refunded to the contract's account.
    s.c.ok(1, command(id, 1_000));
    let tx = s.c.carry(sign_egress(&key, Origin::Contract(id), 1, report_stored(2, 10, vec![], 200)));
    assert_eq!(s.c.run(vec![tx]).0[0].error, None);
    let rec = record(&s, &id);
    assert_eq!((rec.stored_bytes, rec.storage_deposit), (200, code_deposit + 1_400));
    assert_eq!(balance(&s.c, &account), 10 * UNIT - 1_400);
    assert_eq!(balance(&s.c, &storage_escrow()), code_deposit + 1_400);
    s.c.assert_supply_unchanged();
}

#[test]
fn commands_to_a_contract_whose_storage_is_not_covered_are_refused_until_its_account_is_funded() {
    let mut s = setup();
    s.c.admin(AdminCall::SetClusterStorageDeposit { cluster: CLUSTER, per_byte: Some(PER_BYTE) });
    let id = deploy(&mut s, b"debt");
    let key = publish_keys(&mut s, id, 0);
    let account = contract_account(&id);
    let code_deposit = COUNTER_JS.len() as Amount * Amount::from(PER_BYTE);

    // The contract's (empty) account cannot pay for 500 new bytes: the report lands, the growth becomes a debt.
    s.c.ok(1, command(id, 1_000));
    let tx = s.c.carry(sign_egress(&key, Origin::Contract(id), 0, report_stored(1, 10, vec![], 500)));
    assert_eq!(s.c.run(vec![tx]).0[0].error, None);
    let rec = record(&s, &id);
    assert_eq!((rec.reported, rec.stored_bytes, rec.storage_deposit, rec.storage_debt), (1, 500, code_deposit, 3_500));

    // Further commands are refused with the reason, and nothing is ordered or held for them.
    let sender_before = balance(&s.c, &s.c.op(1));
    let e = s.c.fails(1, command(id, 1_000));
    assert_eq!(e, TxError::StorageUnfunded { needed: 3_500, account, balance: 0 });
    assert!(e.to_string().contains("transfer at least 3500"), "{e}");
    assert_eq!(record(&s, &id).commands, 1, "the refused command was not ordered");
    assert_eq!(balance(&s.c, &gas_escrow()), 0, "no gas is held for it");
    assert!(balance(&s.c, &s.c.op(1)) < sender_before, "the fee is paid");

    // Partly funded: still refused.
    s.c.ok(1, Call::Transfer { to: account, amount: 3_000 });
    let e = s.c.fails(1, command(id, 1_000));
    assert_eq!(e, TxError::StorageUnfunded { needed: 3_500, account, balance: 3_000 });

    // Funded: the next command settles the debt and is ordered.
    s.c.ok(1, Call::Transfer { to: account, amount: 1_000 });
    s.c.ok(1, command(id, 1_000));
    let rec = record(&s, &id);
    assert_eq!((rec.commands, rec.storage_deposit, rec.storage_debt), (2, code_deposit + 3_500, 0));
    assert_eq!(balance(&s.c, &account), 500);
    assert_eq!(balance(&s.c, &storage_escrow()), code_deposit + 3_500);
    s.c.assert_supply_unchanged();
}
