//! A tile cache bounded in bytes, shared by the threads reading one slide.
//!
//! It keeps neighbouring regions from decoding the same tile again; it never grows
//! past its budget and knows nothing of file formats.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// (page, chunk index) of a decoded tile or strip.
pub type ChunkKey = (usize, usize);

/// Least-recently-used cache of decoded RGB8 chunks, bounded by total bytes.
pub struct ChunkCache {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<ChunkKey, (Arc<Vec<u8>>, u64)>,
    bytes: usize,
    tick: u64,
}

impl ChunkCache {
    pub fn new(budget: usize) -> ChunkCache {
        ChunkCache {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn get(&self, key: ChunkKey) -> Option<Arc<Vec<u8>>> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.tick += 1;
        let tick = inner.tick;
        inner.entries.get_mut(&key).map(|entry| {
            entry.1 = tick;
            Arc::clone(&entry.0)
        })
    }

    /// The cached chunk for `key`, or `decode()`'s result, cached for next time.
    /// Decoding runs outside the lock, so threads decode different chunks at once.
    pub fn get_or_decode<E>(
        &self,
        key: ChunkKey,
        decode: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Arc<Vec<u8>>, E> {
        if let Some(hit) = self.get(key) {
            return Ok(hit);
        }
        let decoded = Arc::new(decode()?);
        self.insert(key, Arc::clone(&decoded));
        Ok(decoded)
    }

    pub fn insert(&self, key: ChunkKey, value: Arc<Vec<u8>>) {
        if value.len() > self.budget {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.tick += 1;
        let tick = inner.tick;
        if let Some(old) = inner.entries.insert(key, (Arc::clone(&value), tick)) {
            inner.bytes -= old.0.len();
        }
        inner.bytes += value.len();
        while inner.bytes > self.budget {
            let oldest = inner
                .entries
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k);
            match oldest.and_then(|k| inner.entries.remove(&k)) {
                Some((v, _)) => inner.bytes -= v.len(),
                None => break,
            }
        }
    }

    /// Bytes currently held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_to_stay_within_budget() {
        let cache = ChunkCache::new(250);
        cache.insert((0, 0), Arc::new(vec![0; 100]));
        cache.insert((0, 1), Arc::new(vec![0; 100]));
        assert!(cache.get((0, 0)).is_some());
        cache.insert((0, 2), Arc::new(vec![0; 100]));
        assert!(cache.bytes() <= 250);
        assert!(cache.get((0, 0)).is_some(), "recently used entry kept");
        assert!(
            cache.get((0, 1)).is_none(),
            "least recently used entry evicted"
        );
    }
}
