//! Model families and how each turns cosine similarities into scores and probabilities.

/// The family a loaded model belongs to: it decides the tokenizer, the default preprocessing and
/// the score function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ModelFamily {
    /// OpenAI CLIP and the open_clip models of the same layout (LAION, DFN, MetaCLIP): CLIP BPE
    /// tokenizer (embedded), 77 tokens, softmax over labels.
    Clip,
    /// SigLIP and SigLIP 2 (fixed resolution): SentencePiece tokenizer from the repository's
    /// `tokenizer.json`, 64 tokens padded, sigmoid per (image, text) pair with a learned bias.
    Siglip,
    /// OFA-Sys Chinese-CLIP: OpenAI's image towers with a BERT (RoBERTa-wwm-ext) text tower,
    /// cn_clip's WordPiece tokenizer (embedded), 52 tokens, squash preprocessing with OpenAI's
    /// mean and std, softmax over labels.
    ChineseClip,
}

impl ModelFamily {
    /// A short name for reports: `"clip"`, `"siglip"`, `"chinese-clip"`.
    pub fn name(&self) -> &'static str {
        match self {
            ModelFamily::Clip => "clip",
            ModelFamily::Siglip => "siglip",
            ModelFamily::ChineseClip => "chinese-clip",
        }
    }

    /// Tokens per text the family's released models take: 77 (CLIP), 64 (SigLIP), 52
    /// (Chinese-CLIP).
    pub fn context_length(&self) -> usize {
        match self {
            ModelFamily::Clip => crate::tokenizer::DEFAULT_CONTEXT_LENGTH,
            ModelFamily::Siglip => crate::tokenizer::sentencepiece::SIGLIP_CONTEXT_LENGTH,
            ModelFamily::ChineseClip => crate::tokenizer::CN_CONTEXT_LENGTH,
        }
    }
}

impl std::fmt::Display for ModelFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a model scores an (image, text) pair from the cosine similarity of their embeddings, and
/// how scores become probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum ScoreFunction {
    /// CLIP: `logit = scale · cos`; probabilities by a softmax over the candidate texts.
    Softmax {
        /// `exp(logit_scale)` (100 for OpenAI's models).
        scale: f32,
    },
    /// SigLIP: `logit = scale · cos + bias`; probability of each pair by its own sigmoid
    /// (the probabilities of one image over several texts need not sum to 1).
    Sigmoid {
        /// `exp(logit_scale)`.
        scale: f32,
        /// `logit_bias`.
        bias: f32,
    },
}

impl ScoreFunction {
    /// `"softmax"` or `"sigmoid"`, for reports.
    pub fn name(&self) -> &'static str {
        match self {
            ScoreFunction::Softmax { .. } => "softmax",
            ScoreFunction::Sigmoid { .. } => "sigmoid",
        }
    }

    /// The logit of one pair from its cosine similarity.
    pub fn logit(&self, cosine: f32) -> f32 {
        match *self {
            ScoreFunction::Softmax { scale } => scale * cosine,
            ScoreFunction::Sigmoid { scale, bias } => scale * cosine + bias,
        }
    }

    /// Probabilities of one image against `cosines.len()` texts: a softmax over the logits, or
    /// a sigmoid of each. Computed in f64; an empty slice gives an empty result.
    pub fn probabilities(&self, cosines: &[f32]) -> Vec<f32> {
        match self {
            ScoreFunction::Softmax { .. } => {
                let logits: Vec<f64> = cosines.iter().map(|&c| f64::from(self.logit(c))).collect();
                let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = logits.iter().map(|&l| (l - max).exp()).collect();
                let sum: f64 = exps.iter().sum();
                exps.iter().map(|&e| (e / sum) as f32).collect()
            }
            ScoreFunction::Sigmoid { .. } => cosines
                .iter()
                .map(|&c| {
                    let l = f64::from(self.logit(c));
                    (1.0 / (1.0 + (-l).exp())) as f32
                })
                .collect(),
        }
    }
}

impl std::fmt::Display for ScoreFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScoreFunction::Softmax { scale } => write!(f, "softmax over labels of {scale} · cos"),
            ScoreFunction::Sigmoid { scale, bias } => {
                write!(f, "sigmoid per pair of {scale} · cos + {bias}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_sigmoid_is_per_pair() {
        let s = ScoreFunction::Softmax { scale: 100.0 };
        let p = s.probabilities(&[0.3, 0.2, 0.1]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        // e^10 / (1 + e^10 + e^20)... the largest cosine wins by far.
        assert!(p[0] > 0.9999);
        let g = ScoreFunction::Sigmoid {
            scale: 10.0,
            bias: -1.0,
        };
        let p = g.probabilities(&[0.1, 0.0]);
        assert!((p[0] - 0.5).abs() < 1e-7);
        assert!((p[1] - 1.0 / (1.0 + 1f32.exp())).abs() < 1e-7);
    }
}
