//! Score functions: how a model turns the cosine similarity of an (image, text) pair into a
//! logit, and logits into probabilities.
//!
//! CLIP scores `scale · cos` and normalises with a softmax over the candidate labels; SigLIP
//! scores `scale · cos + bias` and gives each pair its own sigmoid probability (the
//! probabilities of one image over several labels need not sum to 1). The classifier
//! ([`crate::ZeroShot::with_score_function`]) and the evaluation report ([`Scoring`]) say which
//! one was used.

use serde::{Deserialize, Serialize};

use crate::classifier::softmax_in_place;

/// How scores and probabilities are computed from cosine similarities.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[non_exhaustive]
pub enum ScoreFunction {
    /// `scale · cos`, softmax over the labels (CLIP).
    Softmax {
        /// `exp(logit_scale)`: 100 for OpenAI's models.
        scale: f32,
    },
    /// `scale · cos + bias`, sigmoid per (image, label) pair (SigLIP).
    Sigmoid {
        /// `exp(logit_scale)`.
        scale: f32,
        /// `logit_bias`.
        bias: f32,
    },
}

impl ScoreFunction {
    /// `"softmax"` or `"sigmoid"`.
    pub fn name(&self) -> &'static str {
        match self {
            ScoreFunction::Softmax { .. } => "softmax",
            ScoreFunction::Sigmoid { .. } => "sigmoid",
        }
    }

    /// The logit of one pair.
    pub fn logit(&self, cosine: f32) -> f32 {
        match *self {
            ScoreFunction::Softmax { scale } => scale * cosine,
            ScoreFunction::Sigmoid { scale, bias } => scale * cosine + bias,
        }
    }

    /// Turns one image's row of cosine similarities (one per label) into probabilities, in place.
    pub fn probabilities_in_place(&self, row: &mut [f32]) {
        for v in row.iter_mut() {
            *v = self.logit(*v);
        }
        match self {
            ScoreFunction::Softmax { .. } => softmax_in_place(row),
            ScoreFunction::Sigmoid { .. } => {
                for v in row.iter_mut() {
                    *v = (1.0 / (1.0 + (-f64::from(*v)).exp())) as f32;
                }
            }
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

/// What a report records about how an evaluation scored: the model family, its score function
/// and its preprocessing (for `summary.json` next to [`crate::Summary`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scoring {
    /// The model family (`clip`, `siglip`, …).
    pub model_family: String,
    /// The score function used for probabilities.
    pub score_function: ScoreFunction,
    /// A description of the image preprocessing (size, resize mode, filter, mean / std).
    pub preprocessing: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_and_sigmoid() {
        let mut row = [0.3f32, 0.1];
        ScoreFunction::Softmax { scale: 10.0 }.probabilities_in_place(&mut row);
        let want = 1.0 / (1.0 + (-2.0f64).exp());
        assert!((f64::from(row[0]) - want).abs() < 1e-7);
        assert!((row[0] + row[1] - 1.0).abs() < 1e-6);
        let mut row = [0.3f32, 0.1];
        ScoreFunction::Sigmoid {
            scale: 10.0,
            bias: -2.0,
        }
        .probabilities_in_place(&mut row);
        assert!((row[0] - 0.731_058_6).abs() < 1e-6, "{}", row[0]); // sigmoid(1)
        assert!((row[1] - 0.268_941_42).abs() < 1e-6, "{}", row[1]); // sigmoid(-1)
        let s = Scoring {
            model_family: "siglip".into(),
            score_function: ScoreFunction::Sigmoid {
                scale: 10.0,
                bias: -2.0,
            },
            preprocessing: "squash".into(),
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""kind":"sigmoid""#), "{json}");
        assert_eq!(serde_json::from_str::<Scoring>(&json).unwrap(), s);
    }
}
