//! What `sync` and `add_file` need from a backend ([`Backend`]), implemented by the SQLite
//! [`FeatureStore`] and the PostgreSQL [`PgStore`](crate::PgStore).

use std::time::Duration;

use crate::Result;
use crate::index::VectorIndex;
use crate::pending::{KnownFile, Pending};
use crate::store::{FeatureStore, ModelInfo};
use crate::types::{AddOutcome, ContentHash, ImageId};

/// Whether this process may embed some new bytes now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) enum Claim {
    /// Claimed: embed and commit them (the commit drops the claim).
    Mine,
    /// Another worker holds a live claim: come back later.
    Busy,
    /// Stored meanwhile by another worker: record the path as a duplicate.
    Stored,
}

/// The storage operations of incremental indexing. Every method that writes is one transaction.
pub(crate) trait Backend {
    fn model(&self) -> &ModelInfo;
    /// Checks a vector before anything is written (length, finite, range of the stored type).
    fn validate(&self, item: &str, vector: &[f32]) -> Result<()>;
    fn known_file(&self, path: &str) -> Result<Option<(ImageId, KnownFile)>>;
    fn known_files(&self) -> Result<Vec<(String, KnownFile)>>;
    fn find_hash(&self, hash: &ContentHash) -> Result<Option<ImageId>>;
    /// Records a batch in one transaction. `None` for items whose bytes are new but that carry no
    /// vector (deleted by another writer meanwhile).
    fn commit_batch(&mut self, pending: &[Pending]) -> Result<Vec<Option<AddOutcome>>>;
    /// Forgets paths in one transaction; returns the deleted images.
    fn remove_paths(&mut self, paths: &[String]) -> Result<Vec<ImageId>>;
    /// Claims new bytes for embedding, for `lease`. A single-writer backend owns everything.
    fn claim(&mut self, hashes: &[ContentHash], _lease: Duration) -> Result<Vec<Claim>> {
        Ok(vec![Claim::Mine; hashes.len()])
    }
    /// Gives claims back (their embedding failed).
    fn release(&mut self, _hashes: &[ContentHash]) -> Result<()> {
        Ok(())
    }
}

impl<I: VectorIndex> Backend for FeatureStore<I> {
    fn model(&self) -> &ModelInfo {
        FeatureStore::model(self)
    }
    fn validate(&self, item: &str, vector: &[f32]) -> Result<()> {
        self.index().validate(item, vector)
    }
    fn known_file(&self, path: &str) -> Result<Option<(ImageId, KnownFile)>> {
        FeatureStore::known_file(self, path)
    }
    fn known_files(&self) -> Result<Vec<(String, KnownFile)>> {
        FeatureStore::known_files(self)
    }
    fn find_hash(&self, hash: &ContentHash) -> Result<Option<ImageId>> {
        FeatureStore::find_hash(self, hash)
    }
    fn commit_batch(&mut self, pending: &[Pending]) -> Result<Vec<Option<AddOutcome>>> {
        FeatureStore::commit_batch(self, pending)
    }
    fn remove_paths(&mut self, paths: &[String]) -> Result<Vec<ImageId>> {
        FeatureStore::remove_paths(self, paths)
    }
}
