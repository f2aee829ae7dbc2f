//! The model behind a bounded queue: one dedicated thread runs every embedding job, so the web
//! server never runs two forward passes at once and never queues more than it can answer.
//!
//! [`Worker::submit`] fails at once with [`WorkerError::Busy`] when the queue is full (the server
//! answers 503), instead of letting requests pile up.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use tokio::sync::oneshot;

use crate::{EmbedError, Embedder};

/// A job for the model thread.
#[derive(Debug)]
pub enum Job {
    /// Embed one encoded image file.
    Image(Vec<u8>),
    /// Embed texts.
    Texts(Vec<String>),
    /// Embed one image and some texts (zero-shot classification of an upload).
    ImageAndTexts(Vec<u8>, Vec<String>),
}

/// The embeddings a [`Job`] produced, in the job's order.
#[derive(Debug)]
pub struct Output {
    /// The image's embedding, for jobs with an image.
    pub image: Option<Vec<f32>>,
    /// One embedding per text.
    pub texts: Vec<Vec<f32>>,
}

/// Why a job was not done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The queue is full: try again later.
    #[error("the model is busy ({0} jobs queued); try again shortly")]
    Busy(usize),
    /// The model thread has stopped.
    #[error("the model worker has stopped")]
    Stopped,
    /// The model rejected the input or failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
}

type Reply = oneshot::Sender<Result<Output, EmbedError>>;

/// Most waiting jobs a worker holds (`gallery serve --queue` allows as many).
pub const MAX_QUEUE: usize = crate::args::MAX_QUEUE as usize;

/// Handle to the model thread; cheap to clone.
#[derive(Clone)]
pub struct Worker {
    tx: SyncSender<(Job, Reply)>,
    capacity: usize,
    embedder: Arc<dyn Embedder>,
}

impl Worker {
    /// Starts the model thread with room for `capacity` waiting jobs (1 to [`MAX_QUEUE`]; the
    /// channel allocates its room up front).
    pub fn start(embedder: Arc<dyn Embedder>, capacity: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_QUEUE);
        let (tx, rx) = sync_channel::<(Job, Reply)>(capacity);
        let model = Arc::clone(&embedder);
        std::thread::Builder::new()
            .name("clip-model".into())
            .spawn(move || {
                for (job, reply) in rx {
                    // A panic in the model must not take the server down: report it as an error.
                    let out =
                        std::panic::catch_unwind(AssertUnwindSafe(|| run(model.as_ref(), job)))
                            .unwrap_or_else(|_| {
                                Err(EmbedError::Model("the model panicked".into()))
                            });
                    // The requester may have gone away (client closed): nothing to do then.
                    let _ = reply.send(out);
                }
            })
            .map(drop)
            .unwrap_or_else(|e| eprintln!("cannot start the model thread: {e}"));
        Self {
            tx,
            capacity,
            embedder,
        }
    }

    /// The model in use.
    pub fn embedder(&self) -> &dyn Embedder {
        self.embedder.as_ref()
    }

    /// Queues a job and waits for its result; fails at once when the queue is full.
    pub async fn submit(&self, job: Job) -> Result<Output, WorkerError> {
        let (reply, answer) = oneshot::channel();
        match self.tx.try_send((job, reply)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(WorkerError::Busy(self.capacity)),
            Err(TrySendError::Disconnected(_)) => return Err(WorkerError::Stopped),
        }
        Ok(answer.await.map_err(|_| WorkerError::Stopped)??)
    }
}

fn run(model: &dyn Embedder, job: Job) -> Result<Output, EmbedError> {
    let (image, texts) = match job {
        Job::Image(b) => (Some(b), Vec::new()),
        Job::Texts(t) => (None, t),
        Job::ImageAndTexts(b, t) => (Some(b), t),
    };
    let image = match image {
        Some(b) => Some(
            model
                .embed_images(&[&b])?
                .pop()
                .ok_or_else(|| EmbedError::Model("no image embedding returned".into()))?,
        ),
        None => None,
    };
    let texts = if texts.is_empty() {
        Vec::new()
    } else {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        model.embed_texts(&refs)?
    };
    Ok(Output { image, texts })
}
