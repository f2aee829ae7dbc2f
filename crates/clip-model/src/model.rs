//! The whole CLIP model: loading, image and text encoding.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;
use candle_nn::var_builder::SimpleBackend;

use crate::config::chinese_clip::{ChineseClipConfig, ChineseClipHints};
use crate::config::{Activation, ClipConfig, ConfigHints, VisionConfig};
use crate::error::{Error, Result, lower, raise};
use crate::family::{ModelFamily, ScoreFunction};
use crate::nn::ImageTower;
use crate::nn::layers::l2_normalize;
use crate::nn::resnet::ModifiedResNet;
use crate::nn::siglip::{SiglipTextTransformer, SiglipVisionTransformer};
use crate::nn::text::TextTransformer;
use crate::nn::text_bert::BertTextTower;
use crate::nn::vit::VisionTransformer;
use crate::preprocess_hints::PreprocessHints;
use crate::weights::{Naming, Weights};

/// The image tower, one variant per backbone family.
///
/// Each variant's type is built from the tensors under `visual` (`new(vb.pp("visual"), …)`) and
/// implements [`ImageTower`], as does this enum: [`ImageTower::encode`] maps
/// `[batch, 3, image_size, image_size]` pixels to `[batch, embed_dim]` embeddings (projection
/// included), with this crate's [`Error`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum VisionTower {
    /// A Vision Transformer (ViT-B/32, ViT-L/14, …).
    Vit(VisionTransformer),
    /// OpenAI's ModifiedResNet (RN50, …, RN50x64).
    ModifiedResNet(ModifiedResNet),
    /// A SigLIP / SigLIP 2 image tower (attention-pooling head, no projection).
    Siglip(SiglipVisionTransformer),
}

impl VisionTower {
    /// Builds the tower `cfg` describes from `vb` pointed at the checkpoint root.
    fn new(vb: VarBuilder, cfg: &ClipConfig) -> Result<Self> {
        let vb = vb.pp("visual");
        Ok(match &cfg.vision {
            VisionConfig::Vit(v) => VisionTower::Vit(
                VisionTransformer::new(vb, v, cfg.embed_dim, cfg.activation).map_err(lower)?,
            ),
            VisionConfig::ModifiedResNet(r) => {
                VisionTower::ModifiedResNet(ModifiedResNet::new(vb, r)?)
            }
            VisionConfig::Siglip(v) => {
                VisionTower::Siglip(SiglipVisionTransformer::new(vb, v).map_err(lower)?)
            }
        })
    }

    /// The tower as the common contract.
    fn tower(&self) -> &dyn ImageTower {
        match self {
            VisionTower::Vit(v) => v,
            VisionTower::ModifiedResNet(r) => r,
            VisionTower::Siglip(v) => v,
        }
    }
}

impl ImageTower for VisionTower {
    fn image_size(&self) -> usize {
        self.tower().image_size()
    }

    fn output_dim(&self) -> usize {
        self.tower().output_dim()
    }

    fn encode(&self, pixels: &Tensor) -> Result<Tensor> {
        self.tower().encode(pixels)
    }
}

/// How much of each token row the text tower runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TextLength {
    /// Up to the batch's longest end-of-text position (exact, because attention is causal).
    #[default]
    UpToLongestEot,
    /// All `context_length` positions, as open_clip does.
    Full,
}

/// Options for [`ClipModel::load_with`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The dtype the model computes in: `F32` (default), `F16` or `BF16`.
    pub dtype: DType,
    /// The device (CPU by default; CUDA / Metal with the `cuda` / `metal` features).
    pub device: Device,
    /// Overrides the activation from the config file / the QuickGELU default.
    pub activation: Option<Activation>,
    /// A config file to use instead of the one found beside the weights.
    pub config_file: Option<PathBuf>,
    /// Look for `open_clip_config.json` (then a transformers `config.json`) beside the weights
    /// when `config_file` is `None` (default: true).
    pub sidecar_config: bool,
    /// A preset the weights must match (e.g. `"ViT-B/32"`); a difference is an error.
    pub expect_preset: Option<String>,
    /// Opt-in reduced precision on the CPU (with `dtype` F32): the linear layers and convolutions
    /// keep their weights in bf16 and multiply bf16 × bf16 with f32 accumulation
    /// (AVX-512-BF16 `vdpbf16ps`); bias, residual, activations, layer norms and attention stay
    /// f32. On a CPU without AVX-512-BF16 the f32 kernels run (said in [`ClipModel::notes`]).
    /// Embeddings differ from f32 by about bf16's precision (cosine ≥ 0.999 is what the tests
    /// require on random models; accuracy on real weights is expected, not measured, to be
    /// unchanged). Default: false.
    pub bf16_products: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            dtype: DType::F32,
            device: Device::Cpu,
            activation: None,
            config_file: None,
            sidecar_config: true,
            expect_preset: None,
            bf16_products: false,
        }
    }
}

/// A `VarBuilder` over tensors in memory, converted to `dtype` (which must be a float type).
fn tensor_builder(
    tensors: HashMap<String, Tensor>,
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    check_dtype(dtype)?;
    Ok(VarBuilder::from_backend(
        Box::new(TensorMap(tensors)),
        dtype,
        device.clone(),
    ))
}

/// Whether `options` ask for bf16 products where they apply (f32 weights on the CPU).
fn bf16_products_on(options: &LoadOptions) -> bool {
    options.bf16_products && options.dtype == DType::F32 && options.device.is_cpu()
}

/// Names of config files looked for beside the weights, in order.
pub const SIDECAR_CONFIGS: [&str; 2] = ["open_clip_config.json", "config.json"];

/// The text tower, one variant per family ([`ClipModel::text`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TextTower {
    /// CLIP's causal text transformer, read at the end-of-text token.
    Clip(TextTransformer),
    /// SigLIP's bidirectional text transformer, pooled at the last position.
    Siglip(SiglipTextTransformer),
    /// Chinese-CLIP's BERT encoder, read at `[CLS]`.
    Bert(BertTextTower),
}

/// A CLIP model: image tower, text tower and the learned logit scale.
#[derive(Debug, Clone)]
pub struct ClipModel {
    config: ClipConfig,
    vision: VisionTower,
    text: TextTower,
    logit_scale: f32,
    logit_bias: Option<f32>,
    /// The architecture of a Chinese-CLIP model (`None` for other families).
    chinese: Option<ChineseClipConfig>,
    preprocess: PreprocessHints,
    notes: Vec<String>,
    dtype: DType,
    device: Device,
}

impl ClipModel {
    /// Loads a safetensors file (open_clip or Hugging Face naming) with default options:
    /// f32 on the CPU, architecture inferred, `open_clip_config.json` beside it used if present.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_with(path, &LoadOptions::default())
    }

    /// Loads a safetensors file with `options`.
    pub fn load_with(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Self> {
        let path = path.as_ref();
        if options.bf16_products {
            let on = bf16_products_on(options);
            let plain = LoadOptions {
                bf16_products: false,
                ..options.clone()
            };
            let mut model = crate::cpu::with_bf16_weights(on, || Self::load_with(path, &plain))?;
            model.notes.push(if !on {
                format!(
                    "bf16 products apply to f32 weights on the CPU; this model computes in {:?} on {:?}",
                    options.dtype, options.device
                )
            } else if crate::cpu::bf16_supported() {
                "bf16 products: weights in bf16, bf16 × bf16 → f32 (AVX-512-BF16)".to_owned()
            } else {
                "bf16 products asked for, but this CPU lacks AVX-512-BF16: f32 products".to_owned()
            });
            return Ok(model);
        }
        check_dtype(options.dtype)?;
        let weights = Weights::open(path)?;
        let config_file = match &options.config_file {
            Some(p) => Some(p.clone()),
            None if options.sidecar_config => sidecar_config(path, weights.naming()),
            None => None,
        };
        if crate::weights::siglip::is_siglip(&weights) {
            return Self::load_siglip(path, weights, config_file.as_deref(), options);
        }
        if ChineseClipConfig::detect(&weights) {
            return Self::load_chinese_clip(path, weights, options);
        }
        let hints = config_file
            .as_deref()
            .map(ConfigHints::from_file)
            .transpose()?;
        let mut config = ClipConfig::infer(&weights, hints.as_ref())?;
        if let Some(a) = options.activation {
            config.activation = a;
        }
        if let Some(name) = &options.expect_preset {
            let preset = ClipConfig::preset(name)
                .ok_or_else(|| Error::Architecture(format!("unknown preset `{name}`")))?;
            config.check_against(name, &preset)?;
        }
        let mut notes = Vec::new();
        if let VisionConfig::Vit(v) = &config.vision
            && hints.as_ref().and_then(|h| h.vision_heads).is_none()
            && options.expect_preset.is_none()
            && v.width >= crate::config::LARGE_VIT_WIDTH
        {
            notes.push(format!(
                "image tower heads not given by a config file: {} heads of {} by the rule for \
                 widths ≥ {} (every released large open_clip ViT)",
                v.heads,
                v.width / v.heads.max(1),
                crate::config::LARGE_VIT_WIDTH
            ));
        }
        let preprocess = preprocess_hints(
            path,
            config_file.as_deref(),
            PreprocessHints::openai(config.vision.image_size()),
        )?;
        from_file(
            path,
            weights,
            options,
            |vb| Self::new(vb, &config),
            preprocess,
            notes,
        )
    }

    fn load_siglip(
        path: &Path,
        weights: Weights,
        config_file: Option<&Path>,
        options: &LoadOptions,
    ) -> Result<Self> {
        let (mut config, notes) = crate::config::siglip::infer(&weights, config_file)?;
        if let Some(a) = options.activation {
            config.activation = a;
            if let VisionConfig::Siglip(v) = &mut config.vision {
                v.activation = a;
            }
        }
        if let Some(name) = &options.expect_preset {
            return Err(Error::Architecture(format!(
                "`{name}`: presets are CLIP models, this file holds a SigLIP model"
            )));
        }
        let preprocess = preprocess_hints(
            path,
            config_file,
            PreprocessHints::siglip(config.vision.image_size()),
        )?;
        from_file(
            path,
            weights,
            options,
            |vb| Self::new(vb, &config),
            preprocess,
            notes,
        )
    }

    /// Loads a Chinese-CLIP file (cn_clip or transformers naming) that `load_with` recognised.
    fn load_chinese_clip(path: &Path, weights: Weights, options: &LoadOptions) -> Result<Self> {
        if options
            .activation
            .is_some_and(|a| a != Activation::QuickGelu)
        {
            return Err(Error::Architecture(
                "Chinese-CLIP's image tower uses QuickGELU; another activation cannot be chosen"
                    .into(),
            ));
        }
        // Its config is transformers' `config.json` or a cn_clip model config, whatever the naming.
        let config_file = match &options.config_file {
            Some(p) => Some(p.clone()),
            None if options.sidecar_config => path
                .parent()
                .map(|d| d.join("config.json"))
                .filter(|p| p.is_file()),
            None => None,
        };
        let hints = config_file
            .as_deref()
            .map(ChineseClipHints::from_file)
            .transpose()?;
        let config = ChineseClipConfig::infer(&weights, hints.as_ref())?;
        if let Some(name) = &options.expect_preset {
            let preset = ChineseClipConfig::preset(name).ok_or_else(|| {
                Error::Architecture(format!(
                    "the weights are a Chinese-CLIP model, and `{name}` is not a Chinese-CLIP preset"
                ))
            })?;
            config.check_against(name, &preset)?;
        }
        let preprocess = preprocess_hints(
            path,
            None,
            PreprocessHints::chinese_clip(config.vision.image_size()),
        )?;
        let build = |vb: VarBuilder| Self::new_chinese_clip(vb, &config);
        from_file(path, weights, options, build, preprocess, Vec::new())
    }

    /// Builds a Chinese-CLIP model from any `VarBuilder` whose names are cn_clip's.
    pub fn new_chinese_clip(vb: VarBuilder, config: &ChineseClipConfig) -> Result<Self> {
        let clip = config.clip_config();
        let vision = VisionTower::new(vb.clone(), &clip)?;
        let build = || -> candle_core::Result<Self> {
            let text = TextTower::Bert(BertTextTower::new(
                vb.clone(),
                &config.text,
                config.embed_dim,
            )?);
            let logit_scale = vb
                .get((), "logit_scale")?
                .to_dtype(DType::F32)?
                .to_scalar::<f32>()?
                .exp();
            Ok(Self {
                config: clip,
                vision,
                text,
                logit_scale,
                logit_bias: None,
                chinese: Some(*config),
                preprocess: PreprocessHints::chinese_clip(config.vision.image_size()),
                notes: Vec::new(),
                dtype: vb.dtype(),
                device: vb.device().clone(),
            })
        };
        build().map_err(lower)?.finite_scalars()
    }

    /// Builds a Chinese-CLIP model from tensors in memory, named as in cn_clip checkpoints (see
    /// [`ChineseClipConfig::tensor_shapes`]).
    pub fn chinese_clip_from_tensors(
        tensors: HashMap<String, Tensor>,
        config: &ChineseClipConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let vb = tensor_builder(tensors, dtype, device)?;
        Self::new_chinese_clip(vb, config)
    }

    /// [`ClipModel::chinese_clip_from_tensors`] with `options`' dtype, device and
    /// [`LoadOptions::bf16_products`] (the file-related options do not apply).
    pub fn chinese_clip_from_tensors_with(
        tensors: HashMap<String, Tensor>,
        config: &ChineseClipConfig,
        options: &LoadOptions,
    ) -> Result<Self> {
        crate::cpu::with_bf16_weights(bf16_products_on(options), || {
            Self::chinese_clip_from_tensors(tensors, config, options.dtype, &options.device)
        })
    }

    /// Builds a model from tensors in memory, named as in open_clip checkpoints (the doc
    /// example and the tests build tiny models this way). The tensors are converted to `dtype`.
    pub fn from_tensors(
        tensors: HashMap<String, Tensor>,
        config: &ClipConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let vb = tensor_builder(tensors, dtype, device)?;
        Self::new(vb, config)
    }

    /// [`ClipModel::from_tensors`] with `options`' dtype, device and
    /// [`LoadOptions::bf16_products`] (the file-related options do not apply).
    pub fn from_tensors_with(
        tensors: HashMap<String, Tensor>,
        config: &ClipConfig,
        options: &LoadOptions,
    ) -> Result<Self> {
        crate::cpu::with_bf16_weights(bf16_products_on(options), || {
            Self::from_tensors(tensors, config, options.dtype, &options.device)
        })
    }

    /// Builds a model from any `VarBuilder` whose names are open_clip's (for SigLIP, the
    /// internal names of [`crate::siglip`]).
    pub fn new(vb: VarBuilder, config: &ClipConfig) -> Result<Self> {
        let scalar = |name: &str| -> candle_core::Result<f32> {
            // `[]` in open_clip files, `[1]` in transformers' SigLIP files.
            let t = vb.get_unchecked(name)?;
            if t.elem_count() != 1 {
                return Err(raise(Error::ShapeMismatch {
                    name: name.to_string(),
                    expected: vec![],
                    found: t.dims().to_vec(),
                }));
            }
            t.flatten_all()?
                .to_dtype(DType::F32)?
                .get(0)?
                .to_scalar::<f32>()
        };
        let vision = VisionTower::new(vb.clone(), config)?;
        let build = || -> candle_core::Result<Self> {
            let (text, logit_scale, logit_bias, preprocess) = match &config.vision {
                VisionConfig::Siglip(v) => (
                    TextTower::Siglip(SiglipTextTransformer::new(
                        vb.clone(),
                        &config.text,
                        config.embed_dim,
                        config.activation,
                    )?),
                    scalar("logit_scale")?.exp(),
                    Some(scalar("logit_bias")?),
                    PreprocessHints::siglip(v.image_size),
                ),
                _ => (
                    TextTower::Clip(TextTransformer::new(
                        vb.clone(),
                        &config.text,
                        config.embed_dim,
                        config.activation,
                    )?),
                    vb.get((), "logit_scale")?
                        .to_dtype(DType::F32)?
                        .to_scalar::<f32>()?
                        .exp(),
                    None,
                    PreprocessHints::openai(config.vision.image_size()),
                ),
            };
            Ok(Self {
                config: *config,
                vision,
                text,
                logit_scale,
                logit_bias,
                chinese: None,
                preprocess,
                notes: Vec::new(),
                dtype: vb.dtype(),
                device: vb.device().clone(),
            })
        };
        build().map_err(lower)?.finite_scalars()
    }

    /// `self`, unless its logit scale or bias is not finite: a damaged scale or bias would make
    /// every probability NaN, so it is refused here, by name (every family goes through this).
    fn finite_scalars(self) -> Result<Self> {
        let scalars = [
            ("logit_scale", Some(self.logit_scale)),
            ("logit_bias", self.logit_bias),
        ];
        for (name, value) in scalars {
            if let Some(value) = value.filter(|v| !v.is_finite()) {
                return Err(Error::NonFiniteTensor {
                    path: None,
                    name,
                    value,
                });
            }
        }
        Ok(self)
    }

    /// The architecture. For a Chinese-CLIP model the text fields describe its BERT tower and
    /// `text.context_length` is the tokenizer's 52 (see [`ClipModel::chinese_clip_config`]).
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// The preset name (`"ViT-B/32"`, `"CN-CLIP ViT-B/16"`, …) or `"custom"`.
    pub fn name(&self) -> &'static str {
        match &self.chinese {
            Some(c) => c.name(),
            None => self.config.name(),
        }
    }

    /// The full architecture of a Chinese-CLIP model (`None` for other families).
    pub fn chinese_clip_config(&self) -> Option<&ChineseClipConfig> {
        self.chinese.as_ref()
    }

    /// The text tower.
    pub fn text(&self) -> &TextTower {
        &self.text
    }

    /// The image tower.
    pub fn vision(&self) -> &VisionTower {
        &self.vision
    }

    /// The dtype the model computes in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device the model lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The factor applied to cosine similarities to get logits: `exp(logit_scale)` of the
    /// checkpoint (100 for OpenAI's models).
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale
    }

    /// The bias added to the scaled cosine similarities (SigLIP's `logit_bias`); `None` for CLIP.
    pub fn logit_bias(&self) -> Option<f32> {
        self.logit_bias
    }

    /// The model family (CLIP, SigLIP or Chinese-CLIP): it decides the tokenizer, the context
    /// length and the score function.
    pub fn family(&self) -> ModelFamily {
        match self.text {
            TextTower::Siglip(_) => ModelFamily::Siglip,
            TextTower::Bert(_) => ModelFamily::ChineseClip,
            TextTower::Clip(_) => ModelFamily::Clip,
        }
    }

    /// How this model's scores and probabilities are computed from cosine similarities:
    /// softmax over labels of `scale · cos` (CLIP), or a sigmoid per pair of
    /// `scale · cos + bias` (SigLIP).
    pub fn score_function(&self) -> ScoreFunction {
        match self.logit_bias {
            Some(bias) => ScoreFunction::Sigmoid {
                scale: self.logit_scale,
                bias,
            },
            None => ScoreFunction::Softmax {
                scale: self.logit_scale,
            },
        }
    }

    /// The image preprocessing this model expects: from `open_clip_config.json`'s
    /// `preprocess_cfg`, a transformers `preprocessor_config.json` beside the weights, or the
    /// family's default (see [`crate::preprocess_hints`]).
    pub fn preprocess_hints(&self) -> &PreprocessHints {
        &self.preprocess
    }

    /// What loading had to assume because no file said it (e.g. the head count of a large ViT
    /// loaded without its config file). Empty when everything came from the files.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Image embeddings (not normalised), `[batch, embed_dim]` in f32.
    ///
    /// `pixels`: `[batch, 3, image_size, image_size]`, any float dtype, already preprocessed
    /// (resized, cropped, normalised with CLIP's mean and std).
    pub fn encode_image(&self, pixels: &Tensor) -> Result<Tensor> {
        let size = self.config.vision.image_size();
        match pixels.dims() {
            [_, 3, h, w] if *h == size && *w == size => {}
            other => {
                return Err(Error::InvalidInput(format!(
                    "pixels have shape {other:?}, expected [batch, 3, {size}, {size}]"
                )));
            }
        }
        if !pixels.dtype().is_float() {
            return Err(Error::InvalidInput(format!(
                "pixels have dtype {:?}, expected a float dtype",
                pixels.dtype()
            )));
        }
        let x = pixels
            .to_device(&self.device)?
            .to_dtype(self.dtype)?
            .contiguous()?;
        Ok(self.vision.encode(&x)?.to_dtype(DType::F32)?)
    }

    /// L2-normalised image embeddings, `[batch, embed_dim]` in f32.
    pub fn encode_image_normalized(&self, pixels: &Tensor) -> Result<Tensor> {
        Ok(l2_normalize(&self.encode_image(pixels)?)?)
    }

    /// Text embeddings (not normalised), `[batch, embed_dim]` in f32.
    ///
    /// `ids`: `[batch, len]` token ids (`u32` or `i64`), `len <= context_length`, each row
    /// holding an end-of-text token ([`crate::TextConfig::eot_token_id`]); the embedding is read
    /// at its first occurrence. Runs only up to the batch's longest end-of-text position.
    ///
    /// SigLIP ([`ModelFamily::Siglip`]): every row holds exactly `context_length` (64) ids, padded
    /// as its tokenizer pads ([`crate::SentencePieceTokenizer`]); the embedding is read at the
    /// last position, and all positions run (attention is bidirectional).
    ///
    /// Chinese-CLIP ([`ModelFamily::ChineseClip`]): rows as [`crate::Tokenizer::cn_clip`] makes
    /// them (`[CLS]` first, `[PAD]` = 0 masked), `len` up to the position embedding's 512; the
    /// embedding is read at `[CLS]`.
    pub fn encode_text(&self, ids: &Tensor) -> Result<Tensor> {
        self.encode_text_with(ids, TextLength::UpToLongestEot)
    }

    /// [`ClipModel::encode_text`] with a choice of how many positions to run.
    pub fn encode_text_with(&self, ids: &Tensor, length: TextLength) -> Result<Tensor> {
        let (rows, len) = match ids.dims() {
            [b, l] => (*b, *l),
            other => {
                return Err(Error::InvalidInput(format!(
                    "token ids have shape {other:?}, expected [batch, length]"
                )));
            }
        };
        let flat: Vec<u32> = match ids.dtype() {
            DType::U32 => ids.flatten_all()?.to_vec1::<u32>()?,
            DType::I64 => ids
                .flatten_all()?
                .to_vec1::<i64>()?
                .into_iter()
                .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
                .collect(),
            other => {
                return Err(Error::InvalidInput(format!(
                    "token ids have dtype {other:?}, expected u32 or i64"
                )));
            }
        };
        self.encode_tokens_with(&flat, rows, len, length)
    }

    /// Text embeddings from a flat row-major slice of `rows` rows of token ids (the layout of a
    /// tokenizer batch).
    pub fn encode_tokens(&self, ids: &[u32], rows: usize) -> Result<Tensor> {
        let len = ids.len().checked_div(rows).unwrap_or(0);
        if rows * len != ids.len() {
            return Err(Error::InvalidInput(format!(
                "{} token ids do not split into {rows} equal rows",
                ids.len()
            )));
        }
        self.encode_tokens_with(ids, rows, len, TextLength::UpToLongestEot)
    }

    /// L2-normalised text embeddings, `[batch, embed_dim]` in f32 (see [`ClipModel::encode_text`]).
    pub fn encode_text_normalized(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(l2_normalize(&self.encode_text(ids)?)?)
    }

    fn encode_tokens_with(
        &self,
        ids: &[u32],
        rows: usize,
        len: usize,
        length: TextLength,
    ) -> Result<Tensor> {
        let cfg = &self.config.text;
        if rows == 0 {
            return Err(Error::InvalidInput("empty batch of token ids".into()));
        }
        match &self.text {
            TextTower::Siglip(text) => return self.encode_siglip_tokens(text, ids, rows, len),
            TextTower::Bert(bert) => return self.encode_bert_tokens(bert, ids, rows, len, length),
            TextTower::Clip(_) => {}
        }
        let TextTower::Clip(clip_text) = &self.text else {
            return Err(Error::InvalidInput("no text tower".into()));
        };
        if len == 0 || len > cfg.context_length {
            return Err(Error::InvalidInput(format!(
                "token rows have length {len}, expected 1..={}",
                cfg.context_length
            )));
        }
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
            return Err(Error::InvalidInput(format!(
                "token id {bad} is outside the vocabulary (size {})",
                cfg.vocab_size
            )));
        }
        let eot_id = cfg.eot_token_id();
        let eot = ids
            .chunks(len)
            .enumerate()
            .map(|(i, row)| {
                row.iter().position(|&t| t == eot_id).ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "token row {i} has no end-of-text token ({eot_id})"
                    ))
                })
            })
            .collect::<Result<Vec<usize>>>()?;
        let run = match length {
            TextLength::UpToLongestEot => eot.iter().copied().max().unwrap_or(0) + 1,
            TextLength::Full => cfg.context_length,
        };
        // Cut (or zero-pad, as a tokenizer would) every row to `run` tokens.
        let mut cut = vec![0u32; rows * run];
        for (dst, src) in cut.chunks_mut(run).zip(ids.chunks(len)) {
            let n = run.min(len);
            dst[..n].copy_from_slice(&src[..n]);
        }
        let t = Tensor::from_vec(cut, (rows, run), &self.device)?;
        let out = match length {
            // Each row only up to its own end-of-text token (rows packed, no padding computed).
            TextLength::UpToLongestEot => clip_text.forward_to_eot(&t, &eot),
            TextLength::Full => clip_text.forward(&t, &eot),
        }
        .map_err(lower)?;
        Ok(out.to_dtype(DType::F32)?)
    }
}

impl ClipModel {
    /// Chinese-CLIP: `[PAD]` (0) masked; rows whose padding is a suffix run over their own tokens
    /// only unless `length` is [`TextLength::Full`].
    fn encode_bert_tokens(
        &self,
        bert: &BertTextTower,
        ids: &[u32],
        rows: usize,
        len: usize,
        length: TextLength,
    ) -> Result<Tensor> {
        let b = bert.config();
        if len == 0 || len > b.max_position_embeddings {
            return Err(Error::InvalidInput(format!(
                "token rows have length {len}, expected 1..={}",
                b.max_position_embeddings
            )));
        }
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= b.vocab_size) {
            return Err(Error::InvalidInput(format!(
                "token id {bad} is outside the vocabulary (size {})",
                b.vocab_size
            )));
        }
        let padded = length == TextLength::Full;
        let out = bert
            .forward(ids, None, rows, len, &self.device, padded)
            .map_err(lower)?;
        Ok(out.to_dtype(DType::F32)?)
    }

    /// SigLIP: every row holds exactly `context_length` ids (the tokenizer pads to 64); the
    /// embedding is read at the last position, so shorter rows would change the result.
    fn encode_siglip_tokens(
        &self,
        text: &SiglipTextTransformer,
        ids: &[u32],
        rows: usize,
        len: usize,
    ) -> Result<Tensor> {
        let cfg = &self.config.text;
        if len != cfg.context_length {
            return Err(Error::InvalidInput(format!(
                "token rows have length {len}; SigLIP takes rows padded to exactly {} tokens",
                cfg.context_length
            )));
        }
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
            return Err(Error::InvalidInput(format!(
                "token id {bad} is outside the vocabulary (size {})",
                cfg.vocab_size
            )));
        }
        let t = Tensor::from_slice(ids, (rows, len), &self.device)?;
        Ok(text.forward(&t).map_err(lower)?.to_dtype(DType::F32)?)
    }
}

/// A model built by `build` from the tensors of the file at `path`, with what loading found
/// (preprocessing, notes); a non-finite scalar is reported with the file's name.
fn from_file(
    path: &Path,
    weights: Weights,
    options: &LoadOptions,
    build: impl FnOnce(VarBuilder) -> Result<ClipModel>,
    preprocess: PreprocessHints,
    notes: Vec<String>,
) -> Result<ClipModel> {
    let vb = VarBuilder::from_backend(Box::new(weights), options.dtype, options.device.clone());
    let mut model = build(vb).map_err(|e| match e {
        Error::NonFiniteTensor {
            path: None,
            name,
            value,
        } => Error::NonFiniteTensor {
            path: Some(path.to_path_buf()),
            name,
            value,
        },
        e => e,
    })?;
    model.preprocess = preprocess;
    model.notes = notes;
    Ok(model)
}

/// The preprocessing of a model: `open_clip_config.json` (when that is the config file), then
/// a `preprocessor_config.json` beside the weights, else `default`.
fn preprocess_hints(
    weights: &Path,
    config_file: Option<&Path>,
    default: PreprocessHints,
) -> Result<PreprocessHints> {
    if let Some(c) = config_file
        && c.file_name().is_some_and(|n| n == "open_clip_config.json")
    {
        return PreprocessHints::from_open_clip_config(c, default);
    }
    if let Some(p) = weights
        .parent()
        .map(|d| d.join("preprocessor_config.json"))
        .filter(|p| p.is_file())
    {
        return PreprocessHints::from_preprocessor_config(&p, default);
    }
    Ok(default)
}

fn check_dtype(dtype: DType) -> Result<()> {
    match dtype {
        DType::F32 | DType::F16 | DType::BF16 => Ok(()),
        other => Err(Error::UnsupportedDtype {
            name: "model dtype".into(),
            dtype: format!("{other:?}"),
            supported: "F32, F16, BF16",
        }),
    }
}

/// The config file beside the weights, if any.
fn sidecar_config(weights: &Path, naming: Naming) -> Option<PathBuf> {
    let dir = weights.parent()?;
    SIDECAR_CONFIGS
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.is_file())
        .find(|p| {
            // A transformers `config.json` only describes transformers-named weights.
            naming == Naming::HuggingFace || p.file_name().is_some_and(|n| n != "config.json")
        })
}

/// Tensors in memory as a `VarBuilder` backend with this crate's typed errors.
struct TensorMap(HashMap<String, Tensor>);

impl TensorMap {
    fn find(&self, name: &str) -> candle_core::Result<&Tensor> {
        self.0.get(name).ok_or_else(|| {
            raise(Error::MissingTensor {
                name: name.to_string(),
                path: None,
            })
        })
    }
}

impl SimpleBackend for TensorMap {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.find(name)?;
        if t.dims() != s.dims() {
            return Err(raise(Error::ShapeMismatch {
                name: name.to_string(),
                expected: s.dims().to_vec(),
                found: t.dims().to_vec(),
            }));
        }
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.find(name)?.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}
