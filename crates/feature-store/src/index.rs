//! The in-memory vector index: the [`VectorIndex`] trait and its exact implementation [`FlatIndex`].

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use half::f16;
use rayon::prelude::*;

use crate::kernel::Isa;
use crate::{Error, ImageId, Result};

/// Element type of the in-memory matrix of a [`FlatIndex`]. The file always stores f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Precision {
    /// 4 bytes per value; scores are exact f32 dot products.
    #[default]
    F32,
    /// 2 bytes per value: half the memory and half the memory traffic, which bounds search time
    /// on large libraries (top-10 over 1M 512-d vectors: about 50 ms instead of about 100 ms on
    /// a 2-core EPYC). Scores differ from f32 by the rounding of each stored value to f16
    /// (relative error ≤ 2⁻¹¹ per value); values beyond ±65504 are refused.
    F16,
}

/// What a search asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchOptions {
    /// How many results at most.
    pub k: usize,
    /// Leave this image out of the results (the query image of an image → image search).
    pub exclude: Option<ImageId>,
}

impl SearchOptions {
    /// The `k` best results, nothing excluded.
    pub fn top(k: usize) -> Self {
        SearchOptions { k, exclude: None }
    }

    /// Leave `id` out of the results.
    pub fn excluding(mut self, id: ImageId) -> Self {
        self.exclude = Some(id);
        self
    }
}

/// A search result: the image's key and its inner product with the query.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    /// The image.
    pub id: ImageId,
    /// Inner product with the query.
    pub score: f32,
}

impl Scored {
    /// Result order: higher score first; equal scores by smaller id (older image) first.
    fn better(&self, other: &Scored) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.id.cmp(&self.id))
    }
}

/// Ordered so that the *best* result is the greatest.
#[derive(Clone, Copy, Debug)]
struct Ranked(Scored);

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.better(&other.0)
    }
}

/// Reusable memory for searches: keep one per thread on hot paths and searches stop allocating.
#[derive(Debug, Default)]
pub struct SearchBuffer {
    hits: Vec<Scored>,
    chunks: Vec<ChunkScratch>,
}

#[derive(Debug, Default)]
struct ChunkScratch {
    heap: BinaryHeap<Reverse<Ranked>>,
    row: Vec<f32>,
}

impl SearchBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The results of the last search, best first.
    pub fn hits(&self) -> &[Scored] {
        &self.hits
    }

    /// Replace the results (for [`VectorIndex`] implementations other than [`FlatIndex`]).
    pub fn set_hits(&mut self, hits: impl IntoIterator<Item = Scored>) {
        self.hits.clear();
        self.hits.extend(hits);
    }
}

/// A searchable set of vectors keyed by [`ImageId`].
///
/// [`FeatureStore`](crate::FeatureStore) keeps the SQLite file as the source of truth and mirrors
/// every committed change into a `VectorIndex`; searching goes only through this trait. The exact
/// [`FlatIndex`] is the default; an approximate or server-side engine can implement the trait and
/// be handed to [`FeatureStore::open_with_index`](crate::FeatureStore::open_with_index) without
/// changing the callers of the store.
pub trait VectorIndex: Send + Sync {
    /// Length of every vector.
    fn dim(&self) -> usize;
    /// Number of vectors held.
    fn len(&self) -> usize;
    /// Whether no vectors are held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Checks that `vector` can be inserted (length, finite values, range of the element type);
    /// `item` names it in the error. The store calls this before committing anything, so that
    /// the file and the index cannot disagree.
    fn validate(&self, item: &str, vector: &[f32]) -> Result<()> {
        check_vector(&item, vector, self.dim())
    }
    /// Insert the vector of `id`, or replace it if `id` is present. `vector.len()` must be
    /// [`dim`](VectorIndex::dim).
    fn upsert(&mut self, id: ImageId, vector: &[f32]) -> Result<()>;
    /// Remove `id`; returns whether it was present.
    fn remove(&mut self, id: ImageId) -> bool;
    /// The ids held, in no particular order.
    fn ids(&self) -> Vec<ImageId>;
    /// A copy of the vector of `id` (as held, so f16-rounded for an f16 index).
    fn vector(&self, id: ImageId) -> Option<Vec<f32>>;
    /// Top-`k` by inner product; results go to `buf` ([`SearchBuffer::hits`]), best first, equal
    /// scores ordered by smaller id.
    fn search_into(
        &self,
        query: &[f32],
        options: SearchOptions,
        buf: &mut SearchBuffer,
    ) -> Result<()>;
}

enum Matrix {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

/// Exact search over one contiguous row-major matrix, scanned by all rayon threads.
///
/// Row positions are internal: removing an image moves the last row into its place. Keys
/// ([`ImageId`]) map to rows through a hash map and never change.
pub struct FlatIndex {
    dim: usize,
    matrix: Matrix,
    keys: Vec<ImageId>,
    rows: HashMap<ImageId, usize>,
    isa: Isa,
}

/// Rows scored per rayon task; each task keeps its own top-k heap.
const CHUNK_ROWS: usize = 4096;
/// Rows scored per kernel call (their scores fit in a stack array).
const BLOCK_ROWS: usize = 64;

impl FlatIndex {
    /// An empty index of `dim`-d vectors held as `precision`.
    pub fn new(dim: usize, precision: Precision) -> Self {
        let matrix = match precision {
            Precision::F32 => Matrix::F32(Vec::new()),
            Precision::F16 => Matrix::F16(Vec::new()),
        };
        FlatIndex {
            dim,
            matrix,
            keys: Vec::new(),
            rows: HashMap::new(),
            isa: Isa::detect(),
        }
    }

    /// Room for `additional` more vectors without reallocating.
    pub fn reserve(&mut self, additional: usize) {
        let values = additional.saturating_mul(self.dim);
        match &mut self.matrix {
            Matrix::F32(m) => m.reserve(values),
            Matrix::F16(m) => m.reserve(values),
        }
        self.keys.reserve(additional);
        self.rows.reserve(additional);
    }

    /// The element type of the matrix.
    pub fn precision(&self) -> Precision {
        match self.matrix {
            Matrix::F32(_) => Precision::F32,
            Matrix::F16(_) => Precision::F16,
        }
    }

    fn write_row(&mut self, row: usize, vector: &[f32]) {
        let range = row * self.dim..(row + 1) * self.dim;
        match &mut self.matrix {
            Matrix::F32(m) => m[range].copy_from_slice(vector),
            Matrix::F16(m) => {
                for (d, s) in m[range].iter_mut().zip(vector) {
                    *d = f16::from_f32(*s);
                }
            }
        }
    }

    fn push_row(&mut self, vector: &[f32]) {
        match &mut self.matrix {
            Matrix::F32(m) => m.extend_from_slice(vector),
            Matrix::F16(m) => m.extend(vector.iter().map(|&x| f16::from_f32(x))),
        }
    }

    fn validate_as(&self, item: &dyn std::fmt::Display, vector: &[f32]) -> Result<()> {
        check_vector(item, vector, self.dim)?;
        if let Matrix::F16(_) = self.matrix {
            check_f16_range(item, vector)?;
        }
        Ok(())
    }

    fn score_chunk(
        &self,
        query: &[f32],
        first_row: usize,
        nrows: usize,
        opts: SearchOptions,
        s: &mut ChunkScratch,
    ) {
        let dim = self.dim;
        let mut scores = [0.0f32; BLOCK_ROWS];
        let mut row = first_row;
        let end = first_row + nrows;
        while row < end {
            let n = BLOCK_ROWS.min(end - row);
            let values = row * dim..(row + n) * dim;
            match &self.matrix {
                Matrix::F32(m) => self.isa.score_f32(query, &m[values], &mut scores[..n]),
                Matrix::F16(m) => {
                    self.isa
                        .score_f16(query, &m[values], &mut s.row, &mut scores[..n])
                }
            }
            for (i, &score) in scores[..n].iter().enumerate() {
                let id = self.keys[row + i];
                if opts.exclude == Some(id) {
                    continue;
                }
                let cand = Ranked(Scored { id, score });
                if s.heap.len() < opts.k {
                    s.heap.push(Reverse(cand));
                } else if let Some(mut worst) = s.heap.peek_mut()
                    && cand > worst.0
                {
                    *worst = Reverse(cand);
                }
            }
            row += n;
        }
    }
}

/// Names an image in errors without formatting unless an error occurs.
struct ImageLabel(ImageId);

impl std::fmt::Display for ImageLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "image {}", self.0)
    }
}

impl std::fmt::Debug for FlatIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatIndex")
            .field("dim", &self.dim)
            .field("len", &self.keys.len())
            .field("precision", &self.precision())
            .finish()
    }
}

/// Checks that `vector` has `dim` finite values.
/// Checks that every value fits in an f16 (at most ±65504 in magnitude).
pub(crate) fn check_f16_range(item: &dyn std::fmt::Display, vector: &[f32]) -> Result<()> {
    let max = f16::MAX.to_f32();
    if let Some((index, &value)) = vector.iter().enumerate().find(|(_, v)| v.abs() > max) {
        return Err(Error::OutOfRange {
            item: item.to_string(),
            index,
            value,
            max,
        });
    }
    Ok(())
}

pub(crate) fn check_vector(item: &dyn std::fmt::Display, vector: &[f32], dim: usize) -> Result<()> {
    if vector.len() != dim {
        return Err(Error::VectorDim {
            item: item.to_string(),
            expected: dim,
            found: vector.len(),
        });
    }
    if let Some((index, &value)) = vector.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::NonFiniteVector {
            item: item.to_string(),
            index,
            value,
        });
    }
    Ok(())
}

impl VectorIndex for FlatIndex {
    fn dim(&self) -> usize {
        self.dim
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn validate(&self, item: &str, vector: &[f32]) -> Result<()> {
        self.validate_as(&item, vector)
    }

    fn upsert(&mut self, id: ImageId, vector: &[f32]) -> Result<()> {
        self.validate_as(&ImageLabel(id), vector)?;
        match self.rows.get(&id) {
            Some(&row) => self.write_row(row, vector),
            None => {
                self.push_row(vector);
                self.rows.insert(id, self.keys.len());
                self.keys.push(id);
            }
        }
        Ok(())
    }

    fn remove(&mut self, id: ImageId) -> bool {
        let Some(row) = self.rows.remove(&id) else {
            return false;
        };
        let last = self.keys.len() - 1;
        let dim = self.dim;
        if row != last {
            match &mut self.matrix {
                Matrix::F32(m) => m.copy_within(last * dim..(last + 1) * dim, row * dim),
                Matrix::F16(m) => m.copy_within(last * dim..(last + 1) * dim, row * dim),
            }
            let moved = self.keys[last];
            self.keys[row] = moved;
            self.rows.insert(moved, row);
        }
        self.keys.truncate(last);
        match &mut self.matrix {
            Matrix::F32(m) => m.truncate(last * dim),
            Matrix::F16(m) => m.truncate(last * dim),
        }
        true
    }

    fn ids(&self) -> Vec<ImageId> {
        self.keys.clone()
    }

    fn vector(&self, id: ImageId) -> Option<Vec<f32>> {
        let row = *self.rows.get(&id)?;
        let range = row * self.dim..(row + 1) * self.dim;
        Some(match &self.matrix {
            Matrix::F32(m) => m[range].to_vec(),
            Matrix::F16(m) => m[range].iter().map(|x| x.to_f32()).collect(),
        })
    }

    fn search_into(
        &self,
        query: &[f32],
        opts: SearchOptions,
        buf: &mut SearchBuffer,
    ) -> Result<()> {
        check_vector(&"query", query, self.dim)?;
        buf.hits.clear();
        let n = self.keys.len();
        if opts.k == 0 || n == 0 {
            return Ok(());
        }
        let nchunks = n.div_ceil(CHUNK_ROWS);
        if buf.chunks.len() < nchunks {
            buf.chunks.resize_with(nchunks, ChunkScratch::default);
        }
        let chunks = &mut buf.chunks[..nchunks];
        chunks.par_iter_mut().enumerate().for_each(|(c, scratch)| {
            scratch.heap.clear();
            if matches!(self.matrix, Matrix::F16(_)) {
                scratch.row.resize(self.dim, 0.0);
            }
            let first = c * CHUNK_ROWS;
            self.score_chunk(query, first, CHUNK_ROWS.min(n - first), opts, scratch);
        });
        for scratch in chunks.iter_mut() {
            buf.hits
                .extend(scratch.heap.drain().map(|Reverse(Ranked(s))| s));
        }
        // Best first; the order is total (score, then id), so the result does not depend on how
        // rows were split between threads.
        buf.hits.sort_unstable_by(|a, b| b.better(a));
        buf.hits.truncate(opts.k);
        Ok(())
    }
}
