//! The [`State`] handle over QMDB and its speculative [`Pending`] batches.

use crate::{
    Key, Root,
    config::{CHUNK_BYTES, MAX_VALUE_LEN, StateConfig, StateFamily, StateHasher, StateTranslator},
    error::StateError,
    proof::{DbKey, StateProof},
};
use commonware_cryptography::sha256::Digest;
use commonware_parallel::Sequential;
use commonware_runtime::{Clock, Metrics, Spawner, Storage};
use commonware_storage::qmdb::{
    Error as QmdbError,
    any::{ordered::Update, value::VariableEncoding},
    current::{batch::MerkleizedBatch, ordered::variable},
    floor::Proportional,
};
use std::{
    collections::BTreeMap,
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};
use tracing::warn;

/// The QMDB database behind a [`State`].
type Db<E> = variable::Db<StateFamily, E, DbKey, Vec<u8>, StateHasher, StateTranslator, CHUNK_BYTES, Sequential>;

/// A merkleized, unapplied QMDB batch.
type Batch = MerkleizedBatch<StateFamily, Digest, Update<DbKey, VariableEncoding<Vec<u8>>>, CHUNK_BYTES, Sequential>;

/// Commits between two prunes of the operation log.
const PRUNE_INTERVAL: u64 = 64;

/// Source of [`State`] instance ids, so a batch is never applied to a database instance other
/// than the one that built it (another [`State`], or this one after a reopen).
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(0);

fn to_root(digest: Digest) -> Root {
    let mut root = [0u8; 32];
    root.copy_from_slice(digest.as_ref());
    root
}

/// A speculative batch of state changes with its predicted root, built by
/// [`State::speculate`] and made durable by [`State::commit`]. Cheap to clone.
///
/// A pending batch keeps its uncommitted ancestors alive, as QMDB requires, until it is
/// committed. It lives in memory only: dropping it (or crashing) loses its changes.
#[derive(Clone)]
pub struct Pending {
    inner: Arc<PendingInner>,
}

struct PendingInner {
    batch: Arc<Batch>,
    root: Root,
    instance: u64,
    /// The batch this one was built on, held until this one is committed (QMDB reads unapplied
    /// ancestors through weak links). Cleared on commit so committed chains are freed.
    parent: Mutex<Option<Pending>>,
}

impl Pending {
    /// The state root after this batch (and its ancestors) are committed.
    pub fn root(&self) -> Root {
        self.inner.root
    }

    fn release_parent(&self) {
        if let Ok(mut parent) = self.inner.parent.lock() {
            *parent = None;
        }
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let root: String = self.inner.root.iter().map(|b| format!("{b:02x}")).collect();
        f.debug_struct("Pending").field("root", &root).finish_non_exhaustive()
    }
}

/// The chain's authenticated key-value state on one storage context (see the crate docs).
///
/// `E` is a `commonware-runtime` context (tokio or deterministic). Reads see the committed
/// state; [`State::speculate`] and [`State::get_pending`] work on pending batches without
/// touching disk; [`State::commit`] is the only write.
pub struct State<E: Storage + Clock + Metrics + Spawner> {
    ctx: E,
    cfg: StateConfig,
    /// `None` only after a failed write whose reopen also failed.
    db: Option<Db<E>>,
    instance: u64,
    /// Root of the last known committed state (kept even while `db` is `None`).
    root: Root,
    commits_since_prune: u64,
}

impl<E: Storage + Clock + Metrics + Spawner> State<E> {
    /// Opens the state in `cfg.partition_prefix` of `ctx`'s storage, creating it if empty and
    /// otherwise recovering to the last durable commit (uncommitted data is discarded).
    pub async fn open(ctx: E, cfg: &StateConfig) -> Result<Self, StateError> {
        cfg.validate()?;
        let db = Self::init_db(&ctx, cfg).await?;
        let root = to_root(db.root());
        Ok(Self {
            ctx,
            cfg: cfg.clone(),
            db: Some(db),
            instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
            root,
            commits_since_prune: 0,
        })
    }

    async fn init_db(ctx: &E, cfg: &StateConfig) -> Result<Db<E>, StateError> {
        let ctx = ctx.child("state").with_attribute("partition", &cfg.partition_prefix);
        Db::init(ctx, cfg.qmdb(), None).await.map_err(|e| StateError::from_qmdb("open", e))
    }

    /// Reopens the database after a failed write consumed it. On failure the state stays
    /// [`StateError::Unavailable`].
    async fn reopen(&mut self) {
        self.instance = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
        match Self::init_db(&self.ctx, &self.cfg).await {
            Ok(db) => {
                self.root = to_root(db.root());
                self.db = Some(db);
            }
            Err(err) => warn!(%err, "reopening the state failed; it must be opened again"),
        }
    }

    fn db(&self) -> Result<&Db<E>, StateError> {
        self.db.as_ref().ok_or(StateError::Unavailable)
    }

    fn check_instance(&self, pending: &Pending) -> Result<(), StateError> {
        if pending.inner.instance == self.instance { Ok(()) } else { Err(StateError::Stale) }
    }

    /// The root of the committed state: what a block header commits to and what
    /// [`State::prove`] proves against.
    pub fn root(&self) -> Root {
        self.root
    }

    /// The committed value of `key`, if any.
    pub async fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StateError> {
        self.db()?.get(&DbKey::new(*key)).await.map_err(|e| StateError::from_qmdb("get", e))
    }

    /// Builds a merkleized batch applying `changes` (`Some(value)` writes, `None` deletes) on top
    /// of the committed state (`parent` `None`) or on top of `parent`, and returns it with its
    /// predicted root. Touches no disk. An empty change set is valid (it still yields a new
    /// root). Fails with [`StateError::Stale`] if `parent` no longer extends the committed state
    /// and with [`StateError::ValueTooLarge`] if a value exceeds [`MAX_VALUE_LEN`].
    pub async fn speculate(
        &self,
        parent: Option<&Pending>,
        changes: &BTreeMap<Key, Option<Vec<u8>>>,
    ) -> Result<Pending, StateError> {
        let db = self.db()?;
        if let Some(len) = changes.values().flatten().map(Vec::len).find(|len| *len > MAX_VALUE_LEN) {
            return Err(StateError::ValueTooLarge { len, max: MAX_VALUE_LEN });
        }
        let mut batch = match parent {
            None => db.new_batch(),
            Some(parent) => {
                self.check_instance(parent)?;
                parent.inner.batch.new_batch::<StateHasher>()
            }
        };
        for (key, value) in changes {
            batch = batch.write(DbKey::new(*key), value.clone());
        }
        let batch =
            batch.merkleize(db, None, &mut Proportional).await.map_err(|e| StateError::from_qmdb("speculate", e))?;
        Ok(Pending {
            inner: Arc::new(PendingInner {
                root: to_root(batch.root()),
                batch,
                instance: self.instance,
                parent: Mutex::new(parent.cloned()),
            }),
        })
    }

    /// The value of `key` as `pending` sees it: its own writes, then its ancestors', then the
    /// committed state. Fails with [`StateError::Stale`] once the batch is stale.
    pub async fn get_pending(&self, pending: &Pending, key: &Key) -> Result<Option<Vec<u8>>, StateError> {
        let db = self.db()?;
        self.check_instance(pending)?;
        pending.inner.batch.get(&DbKey::new(*key), db).await.map_err(|e| StateError::from_qmdb("get_pending", e))
    }

    /// Applies `pending` and makes it durable with one fsync, returning the new root (always
    /// `pending.root()`). Ancestors are normally committed first; committing a batch whose
    /// ancestors are still pending commits them too, in the same step. Fails with
    /// [`StateError::Stale`] (state unchanged) if the batch no longer extends the committed
    /// state. On a storage failure the state reopens from storage and returns the error; the
    /// recovered state is the previous commit or, if this batch's data reached storage anyway,
    /// this one, so compare [`State::root`]. If the reopen fails too, the state is
    /// [`StateError::Unavailable`] until opened again.
    pub async fn commit(&mut self, pending: &Pending) -> Result<Root, StateError> {
        self.check_instance(pending)?;
        self.db()?.validate_batch(&pending.inner.batch).map_err(|e| StateError::from_qmdb("commit", e))?;
        let db = self.db.take().ok_or(StateError::Unavailable)?;
        let db = match apply_and_commit(db, Arc::clone(&pending.inner.batch)).await {
            Ok(db) => db,
            Err(err) => {
                self.reopen().await;
                return Err(StateError::from_qmdb("commit", err));
            }
        };
        self.root = to_root(db.root());
        debug_assert_eq!(self.root, pending.root());
        pending.release_parent();
        self.db = Some(db);
        self.commits_since_prune += 1;
        if self.commits_since_prune >= PRUNE_INTERVAL {
            self.commits_since_prune = 0;
            self.prune().await;
        }
        Ok(self.root)
    }

    /// Prunes the operation log below QMDB's safe boundary. The commit before it is already
    /// durable, so a failure only logs and reopens.
    async fn prune(&mut self) {
        let Some(db) = self.db.take() else { return };
        let boundary = db.sync_boundary();
        if boundary <= db.bounds().start {
            self.db = Some(db);
            return;
        }
        match db.prune(boundary).await {
            Ok(db) => self.db = Some(db),
            Err(err) => {
                warn!(%err, "pruning the state log failed; reopening");
                self.reopen().await;
            }
        }
    }

    /// A proof of `key`'s committed value (inclusion, carrying the value) or of its absence
    /// (exclusion), against [`State::root`]. Check it with [`crate::verify_proof`].
    pub async fn prove(&self, key: &Key) -> Result<StateProof, StateError> {
        let db = self.db()?;
        let db_key = DbKey::new(*key);
        match db.key_value_proof(db_key.clone()).await {
            Ok(proof) => {
                // The proof is of the key's current operation; read the value it carries.
                let value = db.get(&db_key).await.map_err(|e| StateError::from_qmdb("prove", e))?.ok_or_else(|| {
                    StateError::Storage { op: "prove", source: "key vanished between proof and read".into() }
                })?;
                Ok(StateProof::inclusion(value, proof))
            }
            Err(QmdbError::KeyNotFound) => db
                .exclusion_proof(&db_key)
                .await
                .map(StateProof::exclusion)
                .map_err(|e| StateError::from_qmdb("prove", e)),
            Err(err) => Err(StateError::from_qmdb("prove", err)),
        }
    }
}

/// Applies `batch` to `db` and commits it durably; on error the database handle is gone.
async fn apply_and_commit<E: Storage + Clock + Metrics + Spawner>(
    db: Db<E>,
    batch: Arc<Batch>,
) -> Result<Db<E>, QmdbError<StateFamily>> {
    db.apply_batch(batch).await?.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_runtime::{Runner as _, Supervisor as _, deterministic};

    fn assert_send<T: Send>(_: &T) {}

    /// Node code awaits the state from spawned tasks, so every future must be `Send`.
    async fn futures_are_send<E: Storage + Clock + Metrics + Spawner>(ctx: E) {
        let cfg = StateConfig::default();
        let open = State::open(ctx, &cfg);
        assert_send(&open);
        let mut state = open.await.expect("opens");
        let changes = BTreeMap::new();
        let speculate = state.speculate(None, &changes);
        assert_send(&speculate);
        let pending = speculate.await.expect("speculates");
        let get_pending = state.get_pending(&pending, &[0; 32]);
        assert_send(&get_pending);
        drop(get_pending);
        let get = state.get(&[0; 32]);
        assert_send(&get);
        drop(get);
        let prove = state.prove(&[0; 32]);
        assert_send(&prove);
        drop(prove);
        let commit = state.commit(&pending);
        assert_send(&commit);
        commit.await.expect("commits");
        assert_send(&pending);
        assert_send(&state);
    }

    #[test]
    fn every_state_future_is_send() {
        deterministic::Runner::default().start(futures_are_send);
    }

    #[test]
    fn a_committed_batch_releases_its_parent() {
        deterministic::Runner::default().start(|ctx| async move {
            let mut state = State::open(ctx, &StateConfig::default()).await.expect("opens");
            let changes = BTreeMap::from([([1u8; 32], Some(vec![1]))]);
            let a = state.speculate(None, &changes).await.expect("A");
            let b = state.speculate(Some(&a), &changes).await.expect("B");
            assert_eq!(Arc::strong_count(&a.inner), 2);
            state.commit(&a).await.expect("commit A");
            state.commit(&b).await.expect("commit B");
            assert_eq!(Arc::strong_count(&a.inner), 1);
        });
    }

    #[test]
    fn every_fresh_state_has_the_same_root() {
        deterministic::Runner::default().start(|ctx| async move {
            let one = StateConfig { partition_prefix: "one".to_owned(), ..StateConfig::default() };
            let two = StateConfig { partition_prefix: "two".to_owned(), ..StateConfig::default() };
            let a = State::open(ctx.child("a"), &one).await.expect("opens");
            let b = State::open(ctx.child("b"), &two).await.expect("opens");
            assert_eq!(a.root(), b.root());
            assert_ne!(a.root(), [0; 32]);
        });
    }

    #[test]
    fn periodic_pruning_trims_the_log() {
        deterministic::Runner::default().start(|ctx| async move {
            let mut state = State::open(ctx, &StateConfig::default()).await.expect("opens");
            for round in 0..(3 * PRUNE_INTERVAL) {
                let changes: BTreeMap<Key, Option<Vec<u8>>> = (0..100u64)
                    .map(|i| {
                        let mut key = [0u8; 32];
                        key[..8].copy_from_slice(&((i * 7919) % 64).to_be_bytes());
                        key[8..16].copy_from_slice(&i.to_be_bytes());
                        (key, Some(round.to_be_bytes().to_vec()))
                    })
                    .collect();
                let pending = state.speculate(None, &changes).await.expect("speculates");
                state.commit(&pending).await.expect("commits");
            }
            let db = state.db().expect("available");
            assert!(*db.bounds().start > 0, "nothing was pruned: {:?}", db.bounds());
        });
    }
}
