//! CLIP image and text encoders (ViT, ModifiedResNet, text transformer), tokenizer and weight loading.
//!
//! - [`ClipModel`] loads OpenAI CLIP weights from a safetensors file (memory-mapped) in either the
//!   open_clip / OpenAI naming (`open_clip_model.safetensors`) or the Hugging Face transformers
//!   naming (`model.safetensors` of `openai/clip-vit-base-patch32`), and computes image and text
//!   embeddings ([`ClipModel::encode_image`], [`ClipModel::encode_text`], normalised variants,
//!   [`ClipModel::logit_scale`]).
//! - [`ClipConfig`] describes the architecture. It is inferred from the tensor shapes (an
//!   `open_clip_config.json` beside the weights is read and checked when present) and named after
//!   the matching preset (`ViT-B/32`, `ViT-B/16`, `ViT-L/14`, `ViT-L/14@336`, `RN50`, `RN101`,
//!   `RN50x4`, `RN50x16`, `RN50x64`) or `custom`. The image backbone is a [`VisionTower`]: a
//!   [`VisionTransformer`] or a [`ModifiedResNet`] with attention pooling.
//! - SigLIP and SigLIP 2 (fixed resolution) load through the same [`ClipModel`]: transformers'
//!   `SiglipModel` files (`google/siglip-*`, `google/siglip2-*`) and open_clip's
//!   (`timm/ViT-B-16-SigLIP2`, …, image tower under `visual.trunk.*`); see [`siglip`].
//!   [`ClipModel::family`] says which family a model is, [`ClipModel::score_function`] how its
//!   scores and probabilities are made (softmax over labels of `scale · cos` for CLIP, a sigmoid
//!   per pair of `scale · cos + bias` for SigLIP), [`ClipModel::preprocess_hints`] the image
//!   preprocessing its files ask for (`open_clip_config.json`'s `preprocess_cfg`, a transformers
//!   `preprocessor_config.json`, or the family default) and [`ClipModel::notes`] what loading had
//!   to assume (e.g. 16 heads for a ViT of width ≥ 1280 without its config file).
//! - Chinese-CLIP (OFA-Sys) loads through the same [`ClipModel`]: cn_clip's checkpoints converted
//!   to safetensors (`tools/reference/cn_clip_parity.py convert`) or transformers'
//!   `ChineseCLIPModel` files (`OFA-Sys/chinese-clip-vit-*`), recognised by the BERT text tower
//!   ([`BertTextTower`], [`ChineseClipConfig`]; presets `CN-CLIP RN50` … `CN-CLIP ViT-H/14`).
//! - [`Tokenizer`] turns text into the token ids a text tower takes: OpenAI's BPE
//!   ([`Tokenizer::openai`], embedded), Chinese-CLIP's WordPiece ([`Tokenizer::cn_clip`], cn_clip's
//!   vocabulary embedded, 52 tokens) or SigLIP's SentencePiece from the repository's
//!   `tokenizer.json` ([`Tokenizer::sentencepiece`] over a [`SentencePieceTokenizer`],
//!   lower-cased, padded to 64); [`Tokenizer::for_family`] picks the embedded one of a family.
//! - [`Error`] is the crate's error type: missing tensors, wrong shapes, unsupported dtypes and
//!   damaged files are typed errors naming the tensor or file.
//!
//! ## Where things are
//!
//! Two rooms, with imports pointing one way: the model code uses the CPU compute layer, which
//! knows nothing of CLIP (it imports only [`error`]). Module imports form no cycle:
//! `cpu/ → error`; `weights/ → error`; `tokenizer/ → error`; `config/ → weights, tokenizer,
//! error`; `nn/ → config, weights, cpu, error`; `model.rs → all of these`.
//!
//! | path | what is there |
//! | --- | --- |
//! | `config/` | architectures: [`ClipConfig`], [`VitConfig`], [`TextConfig`], [`ResNetConfig`] and their presets (`mod.rs`, `resnet.rs`), Chinese-CLIP's [`ChineseClipConfig`], [`BertConfig`] and config files ([`ChineseClipHints`], `chinese_clip.rs`), SigLIP's [`SiglipVisionConfig`], its config files and inference (`siglip.rs`); inference from tensor shapes (`infer.rs`); config files beside the weights, [`ConfigHints`] (`hints.rs`); the image preprocessing they ask for, [`PreprocessHints`] (`preprocess_hints.rs`, public as [`preprocess_hints`]) |
//! | `weights/` | safetensors files, memory-mapped ([`SafetensorsFile`]); every naming seen through open_clip's names ([`Weights`], [`Naming`]; SigLIP's transformers and timm names in `siglip.rs`) |
//! | `nn/` | model code only: the [`ImageTower`] contract every image tower implements (`mod.rs`); the transformer blocks and the one linear layer type (`layers.rs`); the towers (`vit.rs`, `text.rs`, `resnet.rs`, Chinese-CLIP's BERT text tower `text_bert.rs`; SigLIP's image and text towers in `siglip.rs`) |
//! | `model.rs` | [`ClipModel`]: loading, the [`VisionTower`] choice, encoding |
//! | `family.rs` | [`ModelFamily`] (CLIP, SigLIP or Chinese-CLIP) and its [`ScoreFunction`] (softmax or sigmoid + bias) |
//! | `cpu/` | the compute layer: packed matrix products (`packed.rs`, x86 micro-kernels in `x86.rs`), attention, bias/residual/activation epilogues (`elementwise.rs`, `epilogue.rs`), convolution (`conv.rs`); each entry point has its candle fallback behind it |
//! | `tokenizer/` | CLIP's BPE tokenizer, [`Tokenizer`]; SigLIP's [`SentencePieceTokenizer`] (`sentencepiece.rs`) |
//! | `device.rs` | [`device_from_name`]: `cpu`, `cuda[:N]`, `metal[:N]` with typed errors, never a silent CPU fallback |
//! | `hub_id.rs` | hub model ids, [`HubId`] (fetching them is the `clip` facade's job) |
//! | `error.rs` | the crate's [`Error`] |
//!
//! Computation runs on candle (re-exported as [`candle_core`]), f32 on the CPU by default; see
//! [`LoadOptions`] for f16 / bf16 and devices (cargo features `cuda`, `metal`;
//! [`device_from_name`] opens one from a name such as `cuda:0`). Hub ids are parsed by
//! [`HubId`]; downloading them is the `clip` facade crate's job.
//!
//! On an x86-64 CPU with AVX2 + FMA or AVX-512 and f32 weights, the linear layers and convolutions
//! are packed once at load into the layout of this crate's own matrix kernels (runtime-dispatched;
//! bias, residual and activation applied in the kernels' stores); the ResNet trunk runs
//! channels-last with f32 weights on any CPU (its convolutions through `gemm` where the packed
//! kernels do not run); elsewhere candle's ops run. Environment switches, read once per process,
//! for A/B timing: `CLIP_MODEL_UNPACKED=1` (candle's matmul / `gemm` instead of the packed kernels),
//! `CLIP_MODEL_UNFUSED=1` (plain candle ops throughout), `CLIP_MODEL_KERNEL=avx2`. Every path is
//! checked against open_clip by the tests.
//!
//! The text tower runs each batch only up to its longest end-of-text position: attention is
//! causal, so the result equals open_clip's full 77-token run. The embedding is read at the
//! first end-of-text token of each row (id `vocab_size - 1`, 49407); open_clip and transformers
//! (for OpenAI's weights) read it at the largest id of the row, the same position for any
//! tokenizer output.
//!
//! ```
//! use std::collections::HashMap;
//! use clip_model::candle_core::{DType, Device, Tensor};
//! use clip_model::{Activation, ClipConfig, ClipModel, Error, TextConfig, VisionConfig, VitConfig};
//!
//! // A tiny random model built in memory (real weights come from `ClipModel::load(path)`).
//! let config = ClipConfig {
//!     embed_dim: 16,
//!     vision: VisionConfig::Vit(VitConfig {
//!         image_size: 32, patch_size: 16, width: 64, layers: 1, heads: 2, mlp_width: 128,
//!     }),
//!     text: TextConfig { context_length: 8, vocab_size: 100, width: 32, layers: 1, heads: 2, mlp_width: 64 },
//!     activation: Activation::QuickGelu,
//! };
//! let device = Device::Cpu;
//! let mut tensors = HashMap::new();
//! for (name, shape) in config.tensor_shapes() {
//!     tensors.insert(name, Tensor::randn(0f32, 0.1, shape, &device)?);
//! }
//! let model = ClipModel::from_tensors(tensors, &config, DType::F32, &device)?;
//! assert_eq!(model.name(), "custom");
//!
//! let pixels = Tensor::zeros((2, 3, 32, 32), DType::F32, &device)?; // preprocessed images
//! let images = model.encode_image_normalized(&pixels)?; // [2, 16]
//! // Start-of-text 98, end-of-text 99 (the last id of this 100-token vocabulary), zero padding.
//! let ids = Tensor::new(&[[98u32, 5, 7, 99, 0, 0, 0, 0]], &device)?;
//! let texts = model.encode_text_normalized(&ids)?; // [1, 16]
//! let logits = (images.matmul(&texts.t()?)? * f64::from(model.logit_scale()))?;
//! assert_eq!(logits.dims(), &[2, 1]);
//! # Ok::<(), Error>(())
//! ```
#![deny(missing_docs)]

pub use candle_core;

pub mod config;
mod cpu;
mod device;
pub mod error;
pub mod family;
mod hub_id;
pub mod model;
mod nn;
pub mod tokenizer;
pub mod weights;

pub use config::preprocess_hints;
pub use nn::{siglip, text, text_bert, vit};

/// CLIP's ModifiedResNet image tower: the model ([`ModifiedResNet`]) and its architecture
/// ([`ResNetConfig`], which lives in [`config`] beside the other towers' configs).
pub mod resnet {
    pub use crate::config::{HEAD_WIDTH as POOL_HEAD_WIDTH, ResNetConfig};
    pub use crate::nn::resnet::{BATCH_NORM_EPS, ModifiedResNet};
}

pub use config::{
    Activation, BertConfig, ChineseClipConfig, ChineseClipHints, ClipConfig, ConfigHints,
    TextConfig, VisionConfig, VitConfig,
};
pub use device::device_from_name;
pub use error::{Error, Result};
pub use family::{ModelFamily, ScoreFunction};
pub use hub_id::HubId;
pub use model::{ClipModel, LoadOptions, TextLength, TextTower, VisionTower};
pub use nn::ImageTower;
pub use preprocess_hints::{PreprocessHints, ResampleFilter, ResizeKind};
pub use resnet::{ModifiedResNet, ResNetConfig};
pub use siglip::{SiglipTextTransformer, SiglipVisionConfig, SiglipVisionTransformer};
pub use text::TextTransformer;
pub use text_bert::BertTextTower;
pub use tokenizer::sentencepiece::{SentencePieceOptions, SentencePieceTokenizer, TextCleaning};
pub use tokenizer::{TokenBatch, Tokenizer, Truncation};
pub use vit::VisionTransformer;
pub use weights::{Naming, SafetensorsFile, Weights};
