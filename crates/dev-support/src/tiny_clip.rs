//! A tiny random CLIP for tests and demos without real weights.

use std::path::{Path, PathBuf};

/// Writes a tiny random CLIP (ViT image tower, 32×32 pixels, patch 8, width 64, one block per
/// tower, 32-d embeddings, OpenAI's full vocabulary and 77-token context) as an open_clip-named
/// safetensors file `tiny-clip.safetensors`, and returns its path. Its outputs are meaningless
/// but deterministic. `cargo xtask tiny-model` writes one for trying the programs without real
/// weights.
pub fn write(dir: &Path) -> Result<PathBuf, safetensors::SafeTensorError> {
    use safetensors::tensor::{Dtype, TensorView};
    let (w, p, grid, e, vocab, ctx) = (64usize, 8usize, 4usize, 32usize, 49408usize, 77usize);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut rand = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect()
    };
    let mut t: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut push = |name: &str, shape: Vec<usize>, data: Vec<f32>| {
        t.push((name.to_owned(), shape, data));
    };
    let block = |prefix: &str, rand: &mut dyn FnMut(usize, f32) -> Vec<f32>| {
        let h = 4 * w;
        vec![
            (format!("{prefix}.ln_1.weight"), vec![w], vec![1.0; w]),
            (format!("{prefix}.ln_1.bias"), vec![w], vec![0.0; w]),
            (
                format!("{prefix}.attn.in_proj_weight"),
                vec![3 * w, w],
                rand(3 * w * w, 0.1),
            ),
            (
                format!("{prefix}.attn.in_proj_bias"),
                vec![3 * w],
                rand(3 * w, 0.02),
            ),
            (
                format!("{prefix}.attn.out_proj.weight"),
                vec![w, w],
                rand(w * w, 0.1),
            ),
            (
                format!("{prefix}.attn.out_proj.bias"),
                vec![w],
                rand(w, 0.02),
            ),
            (format!("{prefix}.ln_2.weight"), vec![w], vec![1.0; w]),
            (format!("{prefix}.ln_2.bias"), vec![w], vec![0.0; w]),
            (
                format!("{prefix}.mlp.c_fc.weight"),
                vec![h, w],
                rand(h * w, 0.1),
            ),
            (format!("{prefix}.mlp.c_fc.bias"), vec![h], rand(h, 0.02)),
            (
                format!("{prefix}.mlp.c_proj.weight"),
                vec![w, h],
                rand(w * h, 0.05),
            ),
            (format!("{prefix}.mlp.c_proj.bias"), vec![w], rand(w, 0.02)),
        ]
    };
    push(
        "visual.conv1.weight",
        vec![w, 3, p, p],
        rand(w * 3 * p * p, 0.05),
    );
    push("visual.class_embedding", vec![w], rand(w, 0.1));
    push(
        "visual.positional_embedding",
        vec![grid * grid + 1, w],
        rand((grid * grid + 1) * w, 0.1),
    );
    push("visual.ln_pre.weight", vec![w], vec![1.0; w]);
    push("visual.ln_pre.bias", vec![w], vec![0.0; w]);
    for (n, s, d) in block("visual.transformer.resblocks.0", &mut rand) {
        push(&n, s, d);
    }
    push("visual.ln_post.weight", vec![w], vec![1.0; w]);
    push("visual.ln_post.bias", vec![w], vec![0.0; w]);
    push("visual.proj", vec![w, e], rand(w * e, 0.1));
    push(
        "token_embedding.weight",
        vec![vocab, w],
        rand(vocab * w, 0.1),
    );
    push("positional_embedding", vec![ctx, w], rand(ctx * w, 0.05));
    for (n, s, d) in block("transformer.resblocks.0", &mut rand) {
        push(&n, s, d);
    }
    push("ln_final.weight", vec![w], vec![1.0; w]);
    push("ln_final.bias", vec![w], vec![0.0; w]);
    push("text_projection", vec![w, e], rand(w * e, 0.1));
    push("logit_scale", vec![], vec![100f32.ln()]);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = t
        .into_iter()
        .map(|(n, s, d)| (n, s, d.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| Ok((n.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
        .collect::<Result<Vec<(String, TensorView<'_>)>, safetensors::SafeTensorError>>()?;
    let path = dir.join("tiny-clip.safetensors");
    safetensors::serialize_to_file(views, None, &path)?;
    Ok(path)
}

/// Writes the tiny CLIP of [`write`] into `dir` as `poisoned-<tensor>.safetensors`, with the
/// first value of `tensor` replaced by `value` (NaN, an infinity, an overflowing scale): the
/// damaged weights the programs must refuse to turn into NaN scores. Returns its path.
pub fn write_poisoned(
    dir: &Path,
    tensor: &str,
    value: f32,
) -> Result<PathBuf, safetensors::SafeTensorError> {
    use safetensors::tensor::TensorView;
    let clean = write(dir)?;
    let bytes = std::fs::read(&clean).map_err(safetensors::SafeTensorError::IoError)?;
    let st = safetensors::SafeTensors::deserialize(&bytes)?;
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in st.tensors() {
        let mut data = t.data().to_vec();
        if name == tensor {
            data[..4].copy_from_slice(&value.to_le_bytes());
        }
        owned.push((name, t.dtype(), t.shape().to_vec(), data));
    }
    if !owned.iter().any(|(n, ..)| n == tensor) {
        return Err(safetensors::SafeTensorError::TensorNotFound(
            tensor.to_owned(),
        ));
    }
    let views = owned
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), TensorView::new(*d, s.clone(), b)?)))
        .collect::<Result<Vec<(String, TensorView<'_>)>, safetensors::SafeTensorError>>()?;
    let path = dir.join(format!("poisoned-{tensor}.safetensors"));
    safetensors::serialize_to_file(views, None, &path)?;
    Ok(path)
}
