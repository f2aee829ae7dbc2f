//! Model code: the layers and towers, built from checkpoint tensors (`vb.pp("…")` paths are the
//! open_clip names) and run on candle tensors; the arithmetic's fast paths are in [`crate::cpu`].
//!
//! Every image tower implements [`ImageTower`].

use candle_core::Tensor;

use crate::error::{Error, Result};

pub(crate) mod layers;
pub(crate) mod resnet;
pub mod siglip;
pub mod text;
pub mod text_bert;
pub mod vit;

/// The contract of an image tower: preprocessed pixels in, image embeddings out.
///
/// Adding a tower (SigLIP's, Chinese-CLIP's, …) means: its architecture as a
/// [`crate::VisionConfig`] variant (with inference from tensor shapes in [`crate::config`]), a
/// type built from the checkpoint tensors under `visual` that implements this trait, and a
/// [`crate::VisionTower`] variant that `VisionTower::new` builds for that config.
pub trait ImageTower {
    /// Side of the square input image in pixels; preprocessing must resize and crop to it.
    fn image_size(&self) -> usize;

    /// Dimension of the embeddings [`ImageTower::encode`] returns.
    fn output_dim(&self) -> usize;

    /// Embeds a batch of preprocessed images `[batch, 3, image_size, image_size]` (batch ≥ 1,
    /// CLIP-normalised, in the model's dtype and on its device) into `[batch, output_dim]`
    /// embeddings (projection included, not L2-normalised). A wrong input shape is
    /// [`Error::InvalidInput`].
    fn encode(&self, pixels: &Tensor) -> Result<Tensor>;
}

/// Checks `pixels` against the [`ImageTower::encode`] contract for images of side `size`.
pub(crate) fn check_pixels(pixels: &Tensor, size: usize) -> Result<()> {
    match pixels.dims() {
        [b, 3, h, w] if *b > 0 && *h == size && *w == size => Ok(()),
        dims => Err(Error::InvalidInput(format!(
            "pixels must have shape (batch, 3, {size}, {size}) with batch > 0, found {dims:?}"
        ))),
    }
}
