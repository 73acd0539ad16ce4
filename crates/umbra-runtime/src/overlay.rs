use crate::RuntimeError;
use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::BTreeMap;
use std::future::Future;
use umbra_types::Message;
use umbra_types::state_keys::StateKey;

/// Read access to a version of the authenticated state (committed, or committed plus pending blocks).
pub trait StateRead: Sync {
    /// The value stored under a hashed key.
    fn get(&self, key: &[u8; 32]) -> impl Future<Output = Result<Option<Vec<u8>>, RuntimeError>> + Send;
}

/// The writes a block makes: hashed key to new value (`None` deletes). Ordered, so it is applied and
/// hashed in the same order everywhere.
pub type ChangeSet = BTreeMap<[u8; 32], Option<Vec<u8>>>;

/// Buffered writes over a base state, with a checkpoint stack so a failed call's writes can be undone
/// while its fee stays charged. The chain-to-worker messages a block emits are buffered here too, so
/// a reverted call's messages disappear with its writes.
pub struct Overlay<'a, S> {
    base: &'a S,
    writes: ChangeSet,
    messages: Vec<Message>,
    undo: Vec<UndoFrame>,
}

/// A key's entry in the overlay before a write: `None` if the overlay had not written it.
type PreviousEntry = Option<Option<Vec<u8>>>;

/// What a checkpoint needs to undo: the previous entry (if any) of every key written since, and how
/// many messages had been emitted when it was taken.
struct UndoFrame {
    writes: Vec<([u8; 32], PreviousEntry)>,
    messages: usize,
}

impl<'a, S: StateRead> Overlay<'a, S> {
    /// An empty overlay over `base`.
    pub fn new(base: &'a S) -> Self {
        Overlay { base, writes: ChangeSet::new(), messages: Vec::new(), undo: Vec::new() }
    }

    /// Reads the raw bytes under a hashed key, seeing this overlay's writes first.
    pub async fn get_raw(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, RuntimeError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key).await,
        }
    }

    /// Writes raw bytes (or deletes with `None`).
    pub fn put_raw(&mut self, key: [u8; 32], value: Option<Vec<u8>>) {
        let prev = self.writes.insert(key, value);
        if let Some(frame) = self.undo.last_mut() {
            frame.writes.push((key, prev));
        }
    }

    /// Reads and decodes a typed value.
    pub async fn get<T: BorshDeserialize>(
        &self,
        key: &StateKey,
        what: &'static str,
    ) -> Result<Option<T>, RuntimeError> {
        match self.get_raw(&key.hash()).await? {
            None => Ok(None),
            Some(bytes) => borsh::from_slice(&bytes).map(Some).map_err(|_| RuntimeError::Corrupt(what)),
        }
    }

    /// Encodes and writes a typed value.
    pub fn put<T: BorshSerialize>(&mut self, key: &StateKey, value: &T) {
        self.put_raw(key.hash(), Some(umbra_types::encode(value)));
    }

    /// Starts a nested scope whose writes can be undone with [`Overlay::revert`].
    pub fn checkpoint(&mut self) {
        self.undo.push(UndoFrame { writes: Vec::new(), messages: self.messages.len() });
    }

    /// Keeps the writes since the last checkpoint.
    pub fn commit_checkpoint(&mut self) {
        if let Some(frame) = self.undo.pop()
            && let Some(outer) = self.undo.last_mut()
        {
            outer.writes.extend(frame.writes);
        }
    }

    /// Undoes the writes since the last checkpoint.
    pub fn revert(&mut self) {
        if let Some(frame) = self.undo.pop() {
            self.messages.truncate(frame.messages);
            for (key, prev) in frame.writes.into_iter().rev() {
                match prev {
                    Some(v) => {
                        self.writes.insert(key, v);
                    }
                    None => {
                        self.writes.remove(&key);
                    }
                }
            }
        }
    }

    /// Buffers a chain-to-worker message (its topic sequence already assigned by the caller).
    pub fn emit(&mut self, message: Message) {
        self.messages.push(message);
    }

    /// The messages emitted so far, in order.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The buffered writes.
    pub fn into_changes(self) -> ChangeSet {
        self.writes
    }

    /// The buffered writes and the emitted messages, in emission order.
    pub fn into_parts(self) -> (ChangeSet, Vec<Message>) {
        (self.writes, self.messages)
    }
}
