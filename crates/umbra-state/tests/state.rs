//! Scenario tests of `umbra-state` on the deterministic and tokio runtimes.

use commonware_cryptography::{Hasher as _, Sha256};
use commonware_runtime::{
    Clock, Metrics, Runner as _, Spawner, Storage, Supervisor as _, deterministic, tokio as cw_tokio,
};
use commonware_utils::probability;
use proptest::prelude::*;
use std::{collections::BTreeMap, sync::OnceLock, time::Instant};
use umbra_state::{
    Key, MAX_VALUE_LEN, Pending, ProofError, Root, State, StateConfig, StateError, StateProof, verify_proof,
};

type Changes = BTreeMap<Key, Option<Vec<u8>>>;

fn key(i: u64) -> Key {
    let digest = Sha256::hash(&[b"test-key", &i.to_be_bytes()]);
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

fn value(i: u64) -> Vec<u8> {
    format!("value-{i}").into_bytes()
}

fn writes(range: std::ops::Range<u64>, salt: u64) -> Changes {
    range.map(|i| (key(i), Some(value(i + salt)))).collect()
}

fn cfg(prefix: &str) -> StateConfig {
    StateConfig { partition_prefix: prefix.to_owned(), cache_items: 1024 }
}

async fn open<E: Storage + Clock + Metrics + Spawner>(ctx: E, prefix: &str) -> State<E> {
    State::open(ctx, &cfg(prefix)).await.expect("state opens")
}

async fn speculate_commit<E: Storage + Clock + Metrics + Spawner>(state: &mut State<E>, changes: &Changes) -> Root {
    let pending = state.speculate(None, changes).await.expect("speculate");
    let root = state.commit(&pending).await.expect("commit");
    assert_eq!(root, pending.root());
    root
}

fn flip(bytes: &mut [u8], index: usize) {
    bytes[index] ^= 0x01;
}

#[test]
fn values_round_trip_through_a_commit() {
    deterministic::Runner::default().start(|ctx| async move {
        let mut state = open(ctx, "roundtrip").await;
        let mut changes = writes(0..10, 0);
        changes.insert(key(100), Some(Vec::new()));
        changes.insert(key(101), Some(vec![0xab; MAX_VALUE_LEN]));
        speculate_commit(&mut state, &changes).await;

        for (k, v) in &changes {
            assert_eq!(&state.get(k).await.expect("get"), v);
        }
        assert_eq!(state.get(&key(999)).await.expect("get"), None);

        let mut delete = Changes::new();
        delete.insert(key(3), None);
        delete.insert(key(4), Some(b"replaced".to_vec()));
        speculate_commit(&mut state, &delete).await;
        assert_eq!(state.get(&key(3)).await.expect("get"), None);
        assert_eq!(state.get(&key(4)).await.expect("get"), Some(b"replaced".to_vec()));
        assert_eq!(state.get(&key(5)).await.expect("get"), Some(value(5)));
    });
}

#[test]
fn a_value_over_the_limit_is_refused() {
    deterministic::Runner::default().start(|ctx| async move {
        let state = open(ctx, "limit").await;
        let mut changes = Changes::new();
        changes.insert(key(1), Some(vec![0; MAX_VALUE_LEN + 1]));
        let err = state.speculate(None, &changes).await.expect_err("too large");
        assert!(
            matches!(err, StateError::ValueTooLarge { len, max } if len == MAX_VALUE_LEN + 1 && max == MAX_VALUE_LEN)
        );
    });
}

#[test]
fn a_chain_of_pending_batches_commits_to_the_predicted_roots() {
    deterministic::Runner::default().start(|ctx| async move {
        let mut state = open(ctx, "chain").await;
        let genesis = state.root();

        let a = state.speculate(None, &writes(0..20, 0)).await.expect("A");
        let mut b_changes = writes(10..30, 1000);
        b_changes.insert(key(0), None);
        let b = state.speculate(Some(&a), &b_changes).await.expect("B");
        assert_ne!(a.root(), b.root());

        // Nothing is committed yet; B reads through A.
        assert_eq!(state.root(), genesis);
        assert_eq!(state.get(&key(1)).await.expect("get"), None);
        assert_eq!(state.get_pending(&b, &key(1)).await.expect("B read"), Some(value(1)));
        assert_eq!(state.get_pending(&b, &key(0)).await.expect("B read"), None);
        assert_eq!(state.get_pending(&a, &key(0)).await.expect("A read"), Some(value(0)));
        assert_eq!(state.get_pending(&b, &key(15)).await.expect("B read"), Some(value(1015)));

        assert_eq!(state.commit(&a).await.expect("commit A"), a.root());
        assert_eq!(state.root(), a.root());
        // B still reads through its committed parent.
        assert_eq!(state.get_pending(&b, &key(25)).await.expect("B read"), Some(value(1025)));
        assert_eq!(state.commit(&b).await.expect("commit B"), b.root());
        assert_eq!(state.root(), b.root());
        assert_eq!(state.get(&key(0)).await.expect("get"), None);
        assert_eq!(state.get(&key(5)).await.expect("get"), Some(value(5)));
        assert_eq!(state.get(&key(25)).await.expect("get"), Some(value(1025)));
    });
}

#[test]
fn the_same_changes_give_the_same_root_whether_chained_or_committed_one_by_one() {
    deterministic::Runner::default().start(|ctx| async move {
        let mut chained = open(ctx.child("chained"), "chained").await;
        let a = chained.speculate(None, &writes(0..5, 0)).await.expect("A");
        let b = chained.speculate(Some(&a), &writes(3..8, 7)).await.expect("B");
        drop(a); // B keeps its uncommitted parent alive.
        let root_b = chained.commit(&b).await.expect("commit B with A");

        let mut stepwise = open(ctx.child("stepwise"), "stepwise").await;
        speculate_commit(&mut stepwise, &writes(0..5, 0)).await;
        let root = speculate_commit(&mut stepwise, &writes(3..8, 7)).await;
        assert_eq!(root, root_b);
    });
}

#[test]
fn committing_a_sibling_makes_the_other_fork_stale() {
    deterministic::Runner::default().start(|ctx| async move {
        let mut state = open(ctx, "forks").await;
        speculate_commit(&mut state, &writes(0..10, 0)).await;

        let left = state.speculate(None, &writes(0..3, 100)).await.expect("left");
        let right = state.speculate(None, &writes(5..8, 200)).await.expect("right");
        let right_child = state.speculate(Some(&right), &writes(8..9, 300)).await.expect("child");
        assert_ne!(left.root(), right.root());

        let root = state.commit(&left).await.expect("commit left");
        assert!(matches!(state.commit(&right).await, Err(StateError::Stale)));
        assert!(matches!(state.commit(&right_child).await, Err(StateError::Stale)));
        assert!(matches!(state.get_pending(&right, &key(5)).await, Err(StateError::Stale)));
        assert!(matches!(state.speculate(Some(&right), &Changes::new()).await, Err(StateError::Stale)));

        // The state is untouched by the refusals and keeps working.
        assert_eq!(state.root(), root);
        assert_eq!(state.get(&key(5)).await.expect("get"), Some(value(5)));
        let next = state.speculate(Some(&left), &writes(20..21, 0)).await.expect("next");
        assert_eq!(state.commit(&next).await.expect("commit"), next.root());
        // A committed batch cannot be committed twice.
        assert!(matches!(state.commit(&left).await, Err(StateError::Stale)));
    });
}

#[test]
fn a_pending_batch_from_another_state_is_stale() {
    deterministic::Runner::default().start(|ctx| async move {
        let mut one = open(ctx.child("one"), "one").await;
        let two = open(ctx.child("two"), "two").await;
        let foreign = two.speculate(None, &writes(0..2, 0)).await.expect("speculate");
        assert!(matches!(one.commit(&foreign).await, Err(StateError::Stale)));
        assert!(matches!(one.get_pending(&foreign, &key(0)).await, Err(StateError::Stale)));
        assert!(matches!(one.speculate(Some(&foreign), &Changes::new()).await, Err(StateError::Stale)));
    });
}

#[test]
fn an_empty_change_set_commits_to_a_new_valid_root() {
    deterministic::Runner::default().start(|ctx| async move {
        let mut state = open(ctx, "empty").await;
        let genesis = state.root();
        let empty = state.speculate(None, &Changes::new()).await.expect("speculate");
        let root = state.commit(&empty).await.expect("commit");
        assert_eq!(root, empty.root());
        let proof = state.prove(&key(1)).await.expect("prove");
        assert_eq!(verify_proof(&root, &key(1), &proof), Ok(None));
        assert_ne!(root, genesis);
        assert_eq!(verify_proof(&genesis, &key(1), &proof), Err(ProofError::Mismatch));

        speculate_commit(&mut state, &writes(0..3, 0)).await;
        let root = speculate_commit(&mut state, &Changes::new()).await;
        let proof = state.prove(&key(1)).await.expect("prove");
        assert_eq!(verify_proof(&root, &key(1), &proof), Ok(Some(value(1))));
    });
}

#[test]
fn inclusion_and_exclusion_proofs_verify() {
    deterministic::Runner::default().start(|ctx| async move {
        let mut state = open(ctx, "proofs").await;

        // An empty state proves every key absent.
        let root = state.root();
        let proof = state.prove(&key(7)).await.expect("prove");
        assert_eq!(verify_proof(&root, &key(7), &proof), Ok(None));

        let root = speculate_commit(&mut state, &writes(0..50, 0)).await;
        for i in [0, 17, 49] {
            let proof = state.prove(&key(i)).await.expect("prove");
            let decoded = StateProof::from_bytes(&proof.to_bytes()).expect("decode");
            assert_eq!(decoded, proof);
            assert_eq!(verify_proof(&root, &key(i), &decoded), Ok(Some(value(i))));
        }
        for i in [50, 1000] {
            let proof = state.prove(&key(i)).await.expect("prove");
            let decoded = StateProof::from_bytes(&proof.to_bytes()).expect("decode");
            assert_eq!(verify_proof(&root, &key(i), &decoded), Ok(None));
        }
        // The smallest and largest possible keys fall in the wrap-around gap.
        for k in [[0u8; 32], [0xff; 32]] {
            let proof = state.prove(&k).await.expect("prove");
            assert_eq!(verify_proof(&root, &k, &proof), Ok(None));
        }

        // A proof against an older root fails once the key changes.
        let old = state.prove(&key(3)).await.expect("prove");
        let mut change = Changes::new();
        change.insert(key(3), Some(b"new".to_vec()));
        let root2 = speculate_commit(&mut state, &change).await;
        assert_eq!(verify_proof(&root2, &key(3), &old), Err(ProofError::Mismatch));
        let new = state.prove(&key(3)).await.expect("prove");
        assert_eq!(verify_proof(&root2, &key(3), &new), Ok(Some(b"new".to_vec())));

        // Deleting every key leaves a state whose proofs are exclusions again.
        let delete_all: Changes = (0..50).map(|i| (key(i), None)).collect();
        let root3 = speculate_commit(&mut state, &delete_all).await;
        let proof = state.prove(&key(3)).await.expect("prove");
        assert_eq!(verify_proof(&root3, &key(3), &proof), Ok(None));
    });
}

#[test]
fn a_tampered_proof_is_rejected() {
    deterministic::Runner::default().start(|ctx| async move {
        let mut state = open(ctx, "tamper").await;
        let root = speculate_commit(&mut state, &writes(0..300, 0)).await;
        let present = key(42);
        let absent = key(4242);
        let inclusion = state.prove(&present).await.expect("prove");
        let exclusion = state.prove(&absent).await.expect("prove");
        assert_eq!(verify_proof(&root, &present, &inclusion), Ok(Some(value(42))));
        assert_eq!(verify_proof(&root, &absent, &exclusion), Ok(None));

        // Every single flipped bit of either encoding is refused, at decoding or verification
        // (this covers the value carried by the inclusion proof).
        for (proof, k) in [(&inclusion, present), (&exclusion, absent)] {
            let bytes = proof.to_bytes();
            for index in 0..bytes.len() {
                let mut bad = bytes.clone();
                flip(&mut bad, index);
                if let Ok(decoded) = StateProof::from_bytes(&bad) {
                    assert_eq!(
                        verify_proof(&root, &k, &decoded),
                        Err(ProofError::Mismatch),
                        "flipped byte {index} of {} verified",
                        bytes.len()
                    );
                }
            }
            // A flipped root byte is refused.
            for index in [0, 31] {
                let mut bad_root = root;
                flip(&mut bad_root, index);
                assert_eq!(verify_proof(&bad_root, &k, proof), Err(ProofError::Mismatch));
            }
            // Truncations and trailing bytes are refused.
            assert!(StateProof::from_bytes(&bytes[..bytes.len() - 1]).is_err());
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(StateProof::from_bytes(&longer).is_err());
        }

        // A flipped key byte is refused for an inclusion proof...
        for index in [0, 7, 8, 31] {
            let mut bad_key = present;
            flip(&mut bad_key, index);
            assert_eq!(verify_proof(&root, &bad_key, &inclusion), Err(ProofError::Mismatch));
        }
        // ...and an exclusion proof never proves a present key absent, nor the neighbours it
        // is built from.
        for i in 0..300 {
            assert_eq!(
                verify_proof(&root, &key(i), &exclusion),
                Err(ProofError::Mismatch),
                "exclusion proof accepted present key {i}"
            );
        }
        // An inclusion proof for one key does not prove another.
        assert_eq!(verify_proof(&root, &key(43), &inclusion), Err(ProofError::Mismatch));
    });
}

#[test]
fn garbage_bytes_do_not_decode_into_a_proof() {
    for bytes in
        [vec![], vec![0], vec![1], vec![2; 100], vec![0; 1000], vec![0xff; 1000], (0..=255u8).collect::<Vec<_>>()]
    {
        assert!(StateProof::from_bytes(&bytes).is_err(), "{bytes:?} decoded");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(proof) = StateProof::from_bytes(&bytes) {
            // Whatever decodes must re-encode to the same bytes and verify without panicking.
            prop_assert_eq!(proof.to_bytes(), bytes);
            let _ = verify_proof(&[0u8; 32], &[0u8; 32], &proof);
        }
    }

    #[test]
    fn a_tag_followed_by_arbitrary_bytes_never_panics(
        tag in 0u8..2,
        rest in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&rest);
        if let Ok(proof) = StateProof::from_bytes(&bytes) {
            let _ = verify_proof(&[1u8; 32], &[2u8; 32], &proof);
        }
    }
}

/// A root with encoded proofs (key, proof bytes) against it.
type Sample = (Root, Vec<(Key, Vec<u8>)>);

/// A valid state with one inclusion and one exclusion proof, built once for the property tests.
fn sample_proofs() -> &'static Sample {
    static SAMPLE: OnceLock<Sample> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        deterministic::Runner::default().start(|ctx| async move {
            let mut state = open(ctx, "sample").await;
            let root = speculate_commit(&mut state, &writes(0..500, 0)).await;
            let mut proofs = Vec::new();
            for k in [key(7), key(7777)] {
                proofs.push((k, state.prove(&k).await.expect("prove").to_bytes()));
            }
            (root, proofs)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn a_randomly_mutated_proof_never_verifies(
        which in 0usize..2,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let (root, proofs) = sample_proofs();
        let (k, bytes) = &proofs[which];
        let mut bad = bytes.clone();
        for (index, xor) in &edits {
            let i = index.index(bad.len());
            bad[i] ^= xor;
        }
        if let Some(cut) = cut {
            bad.truncate(cut.index(bad.len()));
        }
        if bad != *bytes
            && let Ok(proof) = StateProof::from_bytes(&bad)
        {
            prop_assert_eq!(verify_proof(root, k, &proof), Err(ProofError::Mismatch));
        }
    }
}

#[test]
fn a_failed_commit_whose_reopen_also_fails_makes_the_state_unavailable() {
    deterministic::Runner::default().start(|ctx| async move {
        let faults = ctx.storage_fault_config();
        let mut state = open(ctx.child("first"), "faults").await;
        let root = speculate_commit(&mut state, &writes(0..10, 0)).await;
        let pending = state.speculate(None, &writes(10..20, 0)).await.expect("speculate");

        // Every fsync fails: the commit fails and so does the reopen behind it.
        faults.write().sync_rate = Some(probability!(1.0));
        let err = state.commit(&pending).await.expect_err("sync fails");
        faults.write().sync_rate = None;
        assert!(matches!(err, StateError::Storage { op: "commit", .. }), "{err:?}");
        assert!(matches!(state.get(&key(5)).await, Err(StateError::Unavailable)));
        assert!(matches!(state.speculate(None, &Changes::new()).await, Err(StateError::Unavailable)));
        assert!(matches!(state.prove(&key(5)).await, Err(StateError::Unavailable)));
        assert_eq!(state.root(), root);
        drop(state);

        // Opening again recovers a consistent state: the last commit, or the failed one if
        // its data reached storage anyway.
        let mut state = open(ctx.child("second"), "faults").await;
        assert!(state.root() == root || state.root() == pending.root());
        let expect_15 = (state.root() == pending.root()).then(|| value(15));
        assert_eq!(state.get(&key(15)).await.expect("get"), expect_15);
        assert!(matches!(state.commit(&pending).await, Err(StateError::Stale)));
        speculate_commit(&mut state, &writes(20..30, 0)).await;
    });
}

#[test]
fn random_storage_faults_never_leave_an_inconsistent_state() {
    let mut failures = 0;
    let mut reopened_in_place = 0;
    for seed in 0..24 {
        let (failed, reopened) = deterministic::Runner::seeded(seed).start(|ctx| async move {
            let faults = ctx.storage_fault_config();
            let mut state = open(ctx.child("first"), "random-faults").await;
            let mut root = state.root();
            faults.write().sync_rate = Some(probability!(0.3));
            let mut outcome = (0, 0);
            for round in 0..6u64 {
                let changes = writes(round * 10..round * 10 + 10, round);
                let Ok(pending) = state.speculate(None, &changes).await else {
                    break;
                };
                match state.commit(&pending).await {
                    Ok(new_root) => root = new_root,
                    Err(StateError::Storage { .. }) => {
                        outcome.0 += 1;
                        assert!(state.root() == root || state.root() == pending.root());
                        if state.get(&key(0)).await.is_ok() {
                            outcome.1 += 1;
                            root = state.root();
                            continue;
                        }
                        break;
                    }
                    Err(other) => panic!("unexpected error {other:?}"),
                }
            }
            faults.write().sync_rate = None;
            let available = state.get(&key(0)).await.is_ok();
            let last_root = state.root();
            drop(state);
            let state = open(ctx.child("second"), "random-faults").await;
            if available {
                assert_eq!(state.root(), last_root, "seed {seed}");
            }
            // Values agree with the recovered root: every round's first key is present iff
            // its round is included, and the proof verifies against the recovered root.
            let proof = state.prove(&key(0)).await.expect("prove");
            let got = state.get(&key(0)).await.expect("get");
            assert_eq!(verify_proof(&state.root(), &key(0), &proof), Ok(got));
            outcome
        });
        failures += failed;
        reopened_in_place += reopened;
    }
    println!("{failures} failed commits, {reopened_in_place} reopened in place");
    assert!(failures > 0, "the fault rate never hit a commit");
    assert!(reopened_in_place > 0, "no failed commit reopened in place");
}

#[test]
fn reopening_after_a_commit_restores_the_root_and_values() {
    deterministic::Runner::default().start(|ctx| async move {
        let (root, changes) = {
            let mut state = open(ctx.child("first"), "reopen").await;
            speculate_commit(&mut state, &writes(0..100, 0)).await;
            let changes = writes(50..150, 9);
            (speculate_commit(&mut state, &changes).await, changes)
        };
        let state = open(ctx.child("second"), "reopen").await;
        assert_eq!(state.root(), root);
        for (k, v) in &changes {
            assert_eq!(&state.get(k).await.expect("get"), v);
        }
        assert_eq!(state.get(&key(10)).await.expect("get"), Some(value(10)));
        let proof = state.prove(&key(10)).await.expect("prove");
        assert_eq!(verify_proof(&root, &key(10), &proof), Ok(Some(value(10))));
    });
}

#[test]
fn a_crash_loses_only_the_uncommitted_batch() {
    let (committed_root, checkpoint) = deterministic::Runner::default().start_and_recover(|ctx| async move {
        let mut state = open(ctx.child("before"), "crash").await;
        let root = speculate_commit(&mut state, &writes(0..40, 0)).await;
        let pending = state.speculate(None, &writes(30..60, 500)).await.expect("speculate");
        assert_ne!(pending.root(), root);
        // Crash with `pending` built but never committed.
        root
    });
    deterministic::Runner::from(checkpoint).start(|ctx| async move {
        let mut state = open(ctx.child("after"), "crash").await;
        assert_eq!(state.root(), committed_root);
        assert_eq!(state.get(&key(35)).await.expect("get"), Some(value(35)));
        assert_eq!(state.get(&key(50)).await.expect("get"), None);
        // The recovered state accepts new work.
        let root = speculate_commit(&mut state, &writes(30..60, 500)).await;
        assert_ne!(root, committed_root);
        assert_eq!(state.get(&key(50)).await.expect("get"), Some(value(550)));
    });
}

#[test]
fn dropping_a_pending_batch_and_reopening_keeps_only_committed_data() {
    deterministic::Runner::default().start(|ctx| async move {
        let committed = {
            let mut state = open(ctx.child("first"), "drop").await;
            let root = speculate_commit(&mut state, &writes(0..10, 0)).await;
            let a = state.speculate(None, &writes(10..20, 0)).await.expect("A");
            let b = state.speculate(Some(&a), &writes(20..30, 0)).await.expect("B");
            drop((a, b));
            root
        };
        let state = open(ctx.child("second"), "drop").await;
        assert_eq!(state.root(), committed);
        assert_eq!(state.get(&key(5)).await.expect("get"), Some(value(5)));
        assert_eq!(state.get(&key(15)).await.expect("get"), None);
        assert_eq!(state.get(&key(25)).await.expect("get"), None);
    });
}

#[test]
fn many_commits_prune_the_log_and_stay_recoverable() {
    deterministic::Runner::default().start(|ctx| async move {
        let mut root = [0u8; 32];
        {
            let mut state = open(ctx.child("first"), "prune").await;
            // 200 commits of 100 overwrites over 300 keys: the inactivity floor moves many log
            // sections forward, so the periodic prune removes some.
            for round in 0..200u64 {
                let start = (round * 100) % 300;
                root = speculate_commit(&mut state, &writes(start..start + 100, round)).await;
            }
        }
        let state = open(ctx.child("second"), "prune").await;
        assert_eq!(state.root(), root);
        for i in [0u64, 150, 299] {
            let got = state.get(&key(i)).await.expect("get").expect("present");
            let proof = state.prove(&key(i)).await.expect("prove");
            assert_eq!(verify_proof(&root, &key(i), &proof), Ok(Some(got)));
        }
    });
}

/// The same operations on any runtime; returns every root along the way.
async fn scripted_roots<E: Storage + Clock + Metrics + Spawner>(ctx: E) -> Vec<Root> {
    let mut state = open(ctx, "script").await;
    let mut roots = vec![state.root()];
    roots.push(speculate_commit(&mut state, &writes(0..64, 0)).await);
    let a = state.speculate(None, &writes(32..96, 1)).await.expect("A");
    let mut b_changes: Changes = (0..16).map(|i| (key(i), None)).collect();
    b_changes.insert(key(500), Some(vec![7; 4096]));
    let b = state.speculate(Some(&a), &b_changes).await.expect("B");
    roots.push(a.root());
    roots.push(b.root());
    roots.push(state.commit(&a).await.expect("commit A"));
    roots.push(state.commit(&b).await.expect("commit B"));
    roots.push(speculate_commit(&mut state, &Changes::new()).await);
    roots
}

#[test]
fn roots_are_identical_on_the_tokio_and_deterministic_runtimes() {
    let deterministic_roots = deterministic::Runner::seeded(7).start(scripted_roots);
    let dir = tempfile::tempdir().expect("tempdir");
    let tokio_roots =
        cw_tokio::Runner::new(cw_tokio::Config::new().with_storage_directory(dir.path()).with_worker_threads(2))
            .start(scripted_roots);
    assert_eq!(deterministic_roots, tokio_roots);
    let other_seed = deterministic::Runner::seeded(8).start(scripted_roots);
    assert_eq!(deterministic_roots, other_seed);
}

#[test]
fn the_tokio_runtime_reopens_from_its_storage_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runner = || cw_tokio::Runner::new(cw_tokio::Config::new().with_storage_directory(dir.path()));
    let root = runner().start(|ctx| async move {
        let mut state = open(ctx, "tokio").await;
        speculate_commit(&mut state, &writes(0..100, 0)).await
    });
    runner().start(|ctx| async move {
        let state = open(ctx, "tokio").await;
        assert_eq!(state.root(), root);
        assert_eq!(state.get(&key(99)).await.expect("get"), Some(value(99)));
    });
}

/// Prints durable updates per second on the tokio runtime:
/// `cargo test -p umbra-state --release --test state -- --ignored --nocapture measure_commit_throughput`
#[test]
#[ignore = "benchmark; run explicitly"]
fn measure_commit_throughput() {
    const KEYS: u64 = 100_000;
    const PER_BLOCK: u64 = 5_000;
    const BLOCKS: u64 = 40;
    let dir = tempfile::tempdir().expect("tempdir");
    cw_tokio::Runner::new(cw_tokio::Config::new().with_storage_directory(dir.path()).with_worker_threads(2)).start(
        |ctx| async move {
            let mut state =
                State::open(ctx, &StateConfig { partition_prefix: "bench".to_owned(), cache_items: KEYS as usize })
                    .await
                    .expect("open");

            // Load the key set.
            let started = Instant::now();
            for chunk in 0..KEYS / 10_000 {
                let changes = writes(chunk * 10_000..(chunk + 1) * 10_000, 0);
                speculate_commit(&mut state, &changes).await;
            }
            let load = started.elapsed();
            println!("load: {KEYS} new keys in {:.2?} = {:.0} inserts/s", load, KEYS as f64 / load.as_secs_f64());

            // Blocks of updates to pseudo-random existing keys, 32-byte values, one fsync per block.
            let mut speculate_time = std::time::Duration::ZERO;
            let started = Instant::now();
            let mut pending: Option<Pending> = None;
            for block in 0..BLOCKS {
                let changes: Changes = (0..PER_BLOCK)
                    .map(|i| {
                        let k = (i * 7919 + block * 104_729) % KEYS;
                        (key(k), Some(vec![(block % 251) as u8; 32]))
                    })
                    .collect();
                let t = Instant::now();
                let next = state.speculate(None, &changes).await.expect("speculate");
                speculate_time += t.elapsed();
                state.commit(&next).await.expect("commit");
                pending = Some(next);
            }
            let elapsed = started.elapsed();
            let updates = (PER_BLOCK * BLOCKS) as f64;
            println!(
                "updates: {BLOCKS} blocks x {PER_BLOCK} over {KEYS} keys in {:.2?} = {:.0} durable updates/s \
             (speculate {:.2?}, commit {:.2?})",
                elapsed,
                updates / elapsed.as_secs_f64(),
                speculate_time,
                elapsed - speculate_time
            );
            drop(pending);

            let started = Instant::now();
            let mut bytes = 0;
            for i in 0..1000 {
                bytes += state.prove(&key(i * 97)).await.expect("prove").to_bytes().len();
            }
            println!("prove: {:.1} us each, {} bytes average", started.elapsed().as_secs_f64() * 1e3, bytes / 1000);
            let proof = state.prove(&key(1)).await.expect("prove");
            let root = state.root();
            let started = Instant::now();
            for _ in 0..1000 {
                verify_proof(&root, &key(1), &proof).expect("verifies");
            }
            println!("verify: {:.1} us each", started.elapsed().as_secs_f64() * 1e3);
        },
    );
}
