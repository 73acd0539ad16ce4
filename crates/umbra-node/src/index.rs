//! The node's query index: finalized blocks by height and hash, transactions by hash, receipts.
//!
//! This is derived data for RPC, not consensus state: it is written (in one durable `redb`
//! transaction per block) before the block's state is committed, so after a crash it is never behind
//! the state, and re-writing a block is idempotent.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use umbra_types::{Block, Hash, Message, Receipt, decode, encode};

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const RECEIPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("receipts");
const BLOCK_HASHES: TableDefinition<&[u8], u64> = TableDefinition::new("block_hashes");
const TXS: TableDefinition<&[u8], (u64, u32)> = TableDefinition::new("txs");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");

const MAX_BLOCK: usize = 256 * 1024 * 1024;

/// Why the index failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The database could not be opened or used.
    #[error("block index at {path}: {reason}")]
    Storage {
        /// Its file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A stored record does not decode.
    #[error("block index is corrupt: {0}")]
    Corrupt(String),
}

pub(crate) struct Index {
    db: Database,
    path: String,
}

impl Index {
    pub(crate) fn open(path: &Path) -> Result<Index, IndexError> {
        let p = path.display().to_string();
        let db = Database::create(path).map_err(|e| IndexError::Storage { path: p.clone(), reason: e.to_string() })?;
        let index = Index { db, path: p };
        // Create the tables so reads on a fresh index find them.
        index.write(|w| {
            w.open_table(BLOCKS)?;
            w.open_table(RECEIPTS)?;
            w.open_table(BLOCK_HASHES)?;
            w.open_table(TXS)?;
            w.open_table(META)?;
            w.open_table(MESSAGES)?;
            Ok(())
        })?;
        Ok(index)
    }

    fn err(&self, e: impl std::fmt::Display) -> IndexError {
        IndexError::Storage { path: self.path.clone(), reason: e.to_string() }
    }

    fn write(&self, f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>) -> Result<(), IndexError> {
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        f(&w).map_err(|e| self.err(e))?;
        w.commit().map_err(|e| self.err(e))
    }

    /// Records a finalized block, its receipts and the messages it emitted (idempotent).
    pub(crate) fn put_block(
        &self,
        block: &Block,
        receipts: &[Receipt],
        messages: &[Message],
    ) -> Result<(), IndexError> {
        let h = block.height();
        let hash = block.hash();
        self.write(|w| {
            w.open_table(BLOCKS)?.insert(h, encode(block).as_slice())?;
            w.open_table(RECEIPTS)?.insert(h, encode(&receipts.to_vec()).as_slice())?;
            if !messages.is_empty() {
                w.open_table(MESSAGES)?.insert(h, encode(&messages.to_vec()).as_slice())?;
            }
            w.open_table(BLOCK_HASHES)?.insert(hash.as_bytes().as_slice(), h)?;
            let mut txs = w.open_table(TXS)?;
            for (i, t) in block.txs.iter().enumerate() {
                txs.insert(t.hash().as_bytes().as_slice(), (h, i as u32))?;
            }
            let mut meta = w.open_table(META)?;
            let head = meta.get("head")?.map(|g| g.value()).unwrap_or(0);
            meta.insert("head", head.max(h))?;
            Ok(())
        })
    }

    /// The highest indexed height.
    pub(crate) fn head(&self) -> Result<Option<u64>, IndexError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(META).map_err(|e| self.err(e))?;
        Ok(t.get("head").map_err(|e| self.err(e))?.map(|g| g.value()))
    }

    pub(crate) fn block(&self, height: u64) -> Result<Option<(Block, Vec<Receipt>)>, IndexError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let blocks = r.open_table(BLOCKS).map_err(|e| self.err(e))?;
        let Some(raw) = blocks.get(height).map_err(|e| self.err(e))? else { return Ok(None) };
        let block: Block = decode(raw.value(), MAX_BLOCK).map_err(|e| IndexError::Corrupt(e.to_string()))?;
        let receipts_t = r.open_table(RECEIPTS).map_err(|e| self.err(e))?;
        let receipts = match receipts_t.get(height).map_err(|e| self.err(e))? {
            Some(raw) => decode(raw.value(), MAX_BLOCK).map_err(|e| IndexError::Corrupt(e.to_string()))?,
            None => vec![],
        };
        Ok(Some((block, receipts)))
    }

    /// The chain-to-worker messages block `height` emitted, in order (empty if none).
    pub(crate) fn messages(&self, height: u64) -> Result<Vec<Message>, IndexError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(MESSAGES).map_err(|e| self.err(e))?;
        match t.get(height).map_err(|e| self.err(e))? {
            Some(raw) => decode(raw.value(), MAX_BLOCK).map_err(|e| IndexError::Corrupt(e.to_string())),
            None => Ok(vec![]),
        }
    }

    pub(crate) fn height_of(&self, hash: &Hash) -> Result<Option<u64>, IndexError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(BLOCK_HASHES).map_err(|e| self.err(e))?;
        Ok(t.get(hash.as_bytes().as_slice()).map_err(|e| self.err(e))?.map(|g| g.value()))
    }

    pub(crate) fn tx_location(&self, hash: &Hash) -> Result<Option<(u64, u32)>, IndexError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(TXS).map_err(|e| self.err(e))?;
        Ok(t.get(hash.as_bytes().as_slice()).map_err(|e| self.err(e))?.map(|g| g.value()))
    }
}
