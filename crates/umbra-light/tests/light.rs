//! The light client against real ed25519 finality certificates (signed by generated committees
//! exactly as the chain's consensus encodes them) and real state proofs.

use proptest::prelude::*;
use std::collections::BTreeMap;
use umbra_crypto::{merkle_proof, merkle_root};
use umbra_light::testing::TestCommittee;
use umbra_light::{Finality, LightClient, LightError, namespace};
use umbra_types::state_keys::{AccountRecord, StateKey};
use umbra_types::{Address, Hash, Header, ValidatorKey, encode, sha256};

const CHAIN: &str = "umbra-test";

fn genesis(committee: &[ValidatorKey]) -> Header {
    Header {
        height: 0,
        parent: Hash::ZERO,
        timestamp_ms: 1_000,
        proposer: [0; 32],
        epoch: 0,
        tx_root: Hash::ZERO,
        state_root: Hash([7; 32]),
        messages_root: Hash::ZERO,
        next_committee: Some(committee.to_vec()),
    }
}

fn child(parent: &Header, epoch: u64) -> Header {
    Header {
        height: parent.height + 1,
        parent: parent.hash(),
        timestamp_ms: parent.timestamp_ms + 1,
        proposer: [1; 32],
        epoch,
        tx_root: Hash::ZERO,
        state_root: sha256(&[b"root", &parent.height.to_be_bytes()]),
        messages_root: Hash::ZERO,
        next_committee: None,
    }
}

/// A client pinned at the genesis of committee `a`, and block 1 with a certificate by `a`.
fn setup(a: &TestCommittee) -> (LightClient, Header, Vec<u8>) {
    let g = genesis(&a.keys());
    let client = LightClient::from_genesis_header(CHAIN, &g).expect("genesis");
    let b1 = child(&g, 0);
    let cert = a.certify_all(CHAIN, &b1, 1);
    (client, b1, cert)
}

/// A state holding `records`; returns its root and a proof (bytes) for each address in `ask`.
fn prove(records: &[(Address, AccountRecord)], ask: &[Address]) -> (Hash, Vec<Vec<u8>>) {
    use commonware_runtime::{Runner as _, deterministic};
    use umbra_state::{State, StateConfig};
    let records = records.to_vec();
    let ask = ask.to_vec();
    deterministic::Runner::default().start(|ctx| async move {
        let mut state = State::open(ctx, &StateConfig::default()).await.expect("opens");
        let changes: BTreeMap<_, _> =
            records.iter().map(|(a, r)| (StateKey::Account(*a).hash(), Some(encode(r)))).collect();
        let pending = state.speculate(None, &changes).await.expect("speculates");
        let root = state.commit(&pending).await.expect("commits");
        let mut proofs = Vec::new();
        for a in &ask {
            proofs.push(state.prove(&StateKey::Account(*a).hash()).await.expect("proves").to_bytes());
        }
        (Hash(root), proofs)
    })
}

#[test]
fn a_valid_certificate_verifies_the_header_and_advances_the_tip() {
    let a = TestCommittee::new(1, 4);
    let (mut client, b1, cert) = setup(&a);
    assert_eq!(client.tip().map(|t| t.height()), Some(0));
    let v = client.verify_finalized(&b1, &cert).expect("verifies");
    assert_eq!(v.hash(), b1.hash());
    assert_eq!(v.finality(), &Finality::Certificate { epoch: 0, signers: 4, committee: 4 });
    assert_eq!(client.tip().map(|t| t.height()), Some(1));
    // An older header verified later does not move the tip back.
    let b2 = child(&b1, 0);
    client.verify_finalized(&b2, &a.certify_all(CHAIN, &b2, 2)).expect("b2");
    client.verify_finalized(&b1, &cert).expect("b1 again");
    assert_eq!(client.tip().map(|t| t.height()), Some(2));
}

#[test]
fn a_quorum_of_three_of_four_is_enough() {
    let a = TestCommittee::new(1, 4);
    let (mut client, b1, _) = setup(&a);
    let v = client.verify_finalized(&b1, &a.certify(CHAIN, &b1, 1, 3)).expect("3 of 4 is a quorum");
    assert_eq!(v.finality(), &Finality::Certificate { epoch: 0, signers: 3, committee: 4 });
}

#[test]
fn a_flipped_byte_anywhere_in_the_certificate_is_rejected() {
    let a = TestCommittee::new(1, 4);
    let (mut client, b1, cert) = setup(&a);
    for i in 0..cert.len() {
        for bit in [0x01u8, 0x80] {
            let mut forged = cert.clone();
            forged[i] ^= bit;
            let err = client.verify_finalized(&b1, &forged).expect_err("a flipped byte must not verify");
            assert!(!matches!(err, LightError::UnknownEpoch { .. }), "byte {i}: {err}");
        }
    }
    assert_eq!(client.tip().map(|t| t.height()), Some(0), "nothing forged moved the tip");
}

#[test]
fn truncated_or_extended_certificates_are_rejected() {
    let a = TestCommittee::new(1, 4);
    let (mut client, b1, cert) = setup(&a);
    for len in 0..cert.len() {
        assert!(client.verify_finalized(&b1, &cert[..len]).is_err(), "truncated to {len}");
    }
    let mut longer = cert.clone();
    longer.push(0);
    assert!(client.verify_finalized(&b1, &longer).is_err());
    let huge = vec![0u8; 1 << 20];
    assert!(matches!(client.verify_finalized(&b1, &huge), Err(LightError::CertificateTooLarge { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn garbage_certificates_are_rejected_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
        let a = TestCommittee::new(1, 4);
        let (mut client, b1, _) = setup(&a);
        prop_assert!(client.verify_finalized(&b1, &bytes).is_err());
    }

    #[test]
    fn a_valid_certificate_with_random_bytes_overwritten_is_rejected(
        at in any::<prop::sample::Index>(),
        with in proptest::collection::vec(any::<u8>(), 1..16),
    ) {
        let a = TestCommittee::new(1, 4);
        let (mut client, b1, cert) = setup(&a);
        let mut forged = cert.clone();
        let start = at.index(forged.len());
        for (i, b) in with.iter().enumerate() {
            if let Some(x) = forged.get_mut(start + i) {
                *x = *b;
            }
        }
        prop_assume!(forged != cert);
        prop_assert!(client.verify_finalized(&b1, &forged).is_err());
    }
}

#[test]
fn a_certificate_by_a_non_committee_signer_set_is_rejected() {
    let a = TestCommittee::new(1, 4);
    let outsiders = TestCommittee::new(2, 4);
    let (mut client, b1, _) = setup(&a);
    let err = client.verify_finalized(&b1, &outsiders.certify_all(CHAIN, &b1, 1)).expect_err("outsiders");
    assert!(matches!(err, LightError::InvalidCertificate { .. }), "{err}");
    assert!(err.to_string().contains("forged"), "{err}");
}

#[test]
fn a_certificate_mixing_members_and_an_outsider_is_rejected() {
    // Three members and one outsider, as a committee of four: the outsider sits at a member's
    // index, so the certificate decodes but its signatures cannot all verify.
    let a = TestCommittee::new(1, 4);
    let (mut client, b1, _) = setup(&a);
    let mixed = TestCommittee::new(1, 3).with_member(&TestCommittee::new(9, 1));
    let cert = mixed.certify_all(CHAIN, &b1, 1);
    let err = client.verify_finalized(&b1, &cert).expect_err("mixed");
    assert!(matches!(err, LightError::InvalidCertificate { .. }), "{err}");
}

#[test]
fn a_certificate_for_another_header_is_rejected() {
    let a = TestCommittee::new(1, 4);
    let (mut client, b1, cert) = setup(&a);
    let mut other = b1.clone();
    other.state_root = Hash([0xee; 32]);
    let err = client.verify_finalized(&other, &cert).expect_err("another header");
    assert!(matches!(err, LightError::WrongBlock { .. }), "{err}");
}

#[test]
fn a_certificate_under_another_namespace_is_rejected() {
    let a = TestCommittee::new(1, 4);
    let (mut client, b1, _) = setup(&a);
    let cert = a.certify("another-chain", &b1, 1, 4);
    let err = client.verify_finalized(&b1, &cert).expect_err("wrong namespace");
    assert!(matches!(err, LightError::InvalidCertificate { .. }), "{err}");
    assert_eq!(client.namespace(), namespace(CHAIN).as_slice());
}

#[test]
fn a_certificate_for_another_epoch_than_the_header_is_rejected() {
    let a = TestCommittee::new(1, 4);
    let (mut client, b1, _) = setup(&a);
    let cert = a.certify_digest(&namespace(CHAIN), 1, b1.hash(), 1, 4);
    let err = client.verify_finalized(&b1, &cert).expect_err("epoch");
    assert!(matches!(err, LightError::EpochMismatch { certificate: 1, header: 0 }), "{err}");
}

#[test]
fn a_committee_change_is_adopted_at_the_boundary_and_the_old_committee_is_then_refused() {
    let a = TestCommittee::new(1, 4);
    let b = TestCommittee::new(2, 4);
    let (mut client, b1, cert) = setup(&a);
    client.verify_finalized(&b1, &cert).expect("b1");
    // The last block of epoch 0 announces committee B.
    let mut boundary = child(&b1, 0);
    boundary.next_committee = Some(b.keys());
    client.verify_finalized(&boundary, &a.certify_all(CHAIN, &boundary, 2)).expect("boundary");
    assert_eq!(client.epoch(), 0);
    let mut sorted_b = b.keys();
    sorted_b.sort();
    assert_eq!(client.next_committee(), Some((1, sorted_b.as_slice())));

    // The first block of epoch 1: the old committee cannot finalize it, the new one can.
    let e1 = child(&boundary, 1);
    let err = client.verify_finalized(&e1, &a.certify_all(CHAIN, &e1, 3)).expect_err("old committee");
    assert!(matches!(err, LightError::InvalidCertificate { epoch: 1, .. }), "{err}");
    assert_eq!(client.epoch(), 0, "a refused certificate changes nothing");
    client.verify_finalized(&e1, &b.certify_all(CHAIN, &e1, 3)).expect("new committee");
    assert_eq!(client.epoch(), 1);
    assert_eq!(client.committee(), sorted_b.as_slice());

    // Later blocks of epoch 1: still only B.
    let e1b = child(&e1, 1);
    assert!(client.verify_finalized(&e1b, &a.certify_all(CHAIN, &e1b, 4)).is_err());
    client.verify_finalized(&e1b, &b.certify_all(CHAIN, &e1b, 4)).expect("B again");
    // Epoch 0 is behind the client now.
    let err = client.verify_finalized(&b1, &cert).expect_err("old epoch");
    assert!(matches!(err, LightError::UnknownEpoch { epoch: 0, tracked: 1, .. }), "{err}");
}

#[test]
fn a_header_in_an_epoch_with_no_announced_committee_is_refused() {
    let a = TestCommittee::new(1, 4);
    let (mut client, b1, _) = setup(&a);
    let mut skip = child(&b1, 1);
    let err = client.verify_finalized(&skip, &a.certify_all(CHAIN, &skip, 2)).expect_err("no boundary seen");
    assert!(matches!(err, LightError::UnknownEpoch { epoch: 1, tracked: 0, next: None }), "{err}");
    skip.epoch = 2;
    assert!(client.verify_finalized(&skip, &a.certify_all(CHAIN, &skip, 2)).is_err());
}

#[test]
fn a_checkpoint_at_an_epoch_boundary_starts_with_both_committees() {
    let a = TestCommittee::new(1, 4);
    let b = TestCommittee::new(2, 3);
    let mut boundary = child(&genesis(&a.keys()), 0);
    boundary.height = 99;
    boundary.next_committee = Some(b.keys());
    let mut client = LightClient::from_checkpoint(CHAIN, &boundary, &a.keys()).expect("checkpoint");
    assert_eq!(client.tip().map(|t| t.hash()), Some(boundary.hash()));
    let next = child(&boundary, 1);
    let v = client.verify_finalized(&next, &b.certify_all(CHAIN, &next, 100)).expect("epoch 1 by B");
    assert_eq!(v.finality(), &Finality::Certificate { epoch: 1, signers: 3, committee: 3 });
}

#[test]
fn the_genesis_header_is_trusted_only_exactly_as_pinned() {
    let a = TestCommittee::new(1, 4);
    let g = genesis(&a.keys());
    let client = LightClient::from_genesis_header(CHAIN, &g).expect("genesis");
    assert_eq!(client.trusted(&g).map(|v| v.finality().clone()), Some(Finality::Trusted));
    let mut other = g.clone();
    other.state_root = Hash([1; 32]);
    assert!(client.trusted(&other).is_none());
    let mut not_genesis = g.clone();
    not_genesis.height = 3;
    assert!(matches!(LightClient::from_genesis_header(CHAIN, &not_genesis), Err(LightError::InvalidCheckpoint(_))));
    let mut no_committee = g;
    no_committee.next_committee = None;
    assert!(LightClient::from_genesis_header(CHAIN, &no_committee).is_err());
}

#[test]
fn a_genesis_file_pins_its_validators() {
    let a = TestCommittee::new(1, 4);
    let g = umbra_types::Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 0,
        token: Default::default(),
        allocations: vec![],
        validators: a
            .keys()
            .into_iter()
            .enumerate()
            .map(|(i, key)| umbra_types::GenesisValidator { name: format!("v{i}"), key })
            .collect(),
        params: Default::default(),
        registry: Default::default(),
        governance: Default::default(),
    };
    let mut client = LightClient::from_genesis(&g).expect("genesis");
    assert!(client.tip().is_none());
    let b1 = child(&genesis(&a.keys()), 0);
    client.verify_finalized(&b1, &a.certify_all(CHAIN, &b1, 1)).expect("verifies");
}

#[test]
fn an_unusable_committee_is_refused() {
    let a = TestCommittee::new(1, 4);
    let g = genesis(&a.keys());
    assert!(matches!(LightClient::from_checkpoint(CHAIN, &g, &[]), Err(LightError::InvalidCommittee(_))));
    let mut dup = a.keys();
    dup[1] = dup[0];
    let err = LightClient::from_checkpoint(CHAIN, &g, &dup).expect_err("duplicate");
    assert!(err.to_string().contains("twice"), "{err}");
    // Some 32-byte strings are not points on the curve.
    let not_point = (0u8..=255).map(|b| [b; 32]).find(|k| LightClient::from_checkpoint(CHAIN, &g, &[*k]).is_err());
    assert!(not_point.is_some(), "expected some byte pattern that is not an ed25519 point");
}

#[test]
fn a_block_without_its_own_certificate_is_verified_through_its_child() {
    let a = TestCommittee::new(1, 4);
    let (mut client, b1, _) = setup(&a);
    let b2 = child(&b1, 0);
    let b3 = child(&b2, 0);
    let v3 = client.verify_finalized(&b3, &a.certify_all(CHAIN, &b3, 3)).expect("b3");
    let v2 = client.verify_ancestor(&v3, &b2).expect("parent");
    let v1 = client.verify_ancestor(&v2, &b1).expect("grandparent");
    assert_eq!(v1.finality(), &Finality::Ancestor { height: 3 });
    let mut fake = b2.clone();
    fake.state_root = Hash([3; 32]);
    assert!(matches!(client.verify_ancestor(&v3, &fake), Err(LightError::NotParent { .. })));
    assert!(client.verify_ancestor(&v3, &b1).is_err(), "a grandparent is not a parent");
}

#[test]
fn state_proofs_verify_only_against_the_verified_headers_state_root() {
    let a = TestCommittee::new(1, 4);
    let alice = Address([1; 32]);
    let bob = Address([2; 32]);
    let record = AccountRecord { balance: 500, nonce: 3 };
    let (root, proofs) = prove(&[(alice, record.clone())], &[alice, bob]);
    let (mut client, b1, _) = setup(&a);
    let mut b2 = child(&b1, 0);
    b2.state_root = root;
    let v2 = client.verify_finalized(&b2, &a.certify_all(CHAIN, &b2, 2)).expect("b2");
    assert_eq!(client.verify_account(&v2, &alice, &proofs[0]), Ok(Some(record.clone())));
    assert_eq!(client.verify_account(&v2, &bob, &proofs[1]), Ok(None), "bob is proven absent");
    assert_eq!(client.verify_state(&v2, &StateKey::Account(alice), &proofs[0]), Ok(Some(encode(&record))));
    // The proof of alice does not speak for bob, nor against another verified root.
    assert!(matches!(client.verify_account(&v2, &bob, &proofs[0]), Err(LightError::StateProof { .. })));
    let b3 = child(&b2, 0);
    let v3 = client.verify_finalized(&b3, &a.certify_all(CHAIN, &b3, 3)).expect("b3");
    let err = client.verify_account(&v3, &alice, &proofs[0]).expect_err("another root");
    assert!(err.to_string().contains("state root"), "{err}");
    assert!(client.verify_account(&v2, &alice, &[0, 1, 2]).is_err());
}

#[test]
fn a_verified_header_of_another_chain_is_refused() {
    let a = TestCommittee::new(1, 4);
    let (mut client, b1, cert) = setup(&a);
    let v1 = client.verify_finalized(&b1, &cert).expect("b1");
    let mut other = LightClient::from_genesis_header("umbra-other", &genesis(&a.keys())).expect("other");
    let b1o = child(other.tip().expect("tip").header(), 0);
    let v1o = other.verify_finalized(&b1o, &a.certify_all("umbra-other", &b1o, 1)).expect("other chain");
    assert!(matches!(client.verify_state(&v1o, &StateKey::TotalIssued, &[]), Err(LightError::OtherChain { .. })));
    assert!(other.verify_ancestor(&v1, &genesis(&a.keys())).is_err());
}

#[test]
fn message_proofs_verify_against_the_verified_messages_root() {
    let a = TestCommittee::new(1, 4);
    let leaves: Vec<Hash> = (0..5u8).map(|i| sha256(&[b"message", &[i]])).collect();
    let (mut client, b1, _) = setup(&a);
    let mut b2 = child(&b1, 0);
    b2.messages_root = merkle_root(&leaves);
    let v2 = client.verify_finalized(&b2, &a.certify_all(CHAIN, &b2, 2)).expect("b2");
    let proof = merkle_proof(&leaves, 3).expect("in range");
    client.verify_message(&v2, &leaves[3], &proof).expect("leaf 3");
    assert!(matches!(client.verify_message(&v2, &leaves[2], &proof), Err(LightError::MessageProof { .. })));
    let v1 = client.verify_finalized(&b1, &a.certify_all(CHAIN, &b1, 1)).expect("b1");
    assert!(client.verify_message(&v1, &leaves[3], &proof).is_err(), "b1 emitted no messages");
}
