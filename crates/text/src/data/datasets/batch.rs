//! The batch of classification and NER models, and right-padding of ragged rows.

use tch::{Kind, Tensor};

/// A padded batch for an encoder: all tensors on the CPU, `[b, len]` with `len` the longest item of the batch.
#[derive(Debug)]
pub struct TextBatch {
    /// Token ids, Int64 `[b, len]`, padded with the tokenizer's pad id.
    pub input_ids: Tensor,
    /// Segment ids, Int64 `[b, len]`, padded with 0.
    pub token_type_ids: Tensor,
    /// 1 for tokens, 0 for padding, Int64 `[b, len]`.
    pub attention_mask: Tensor,
    /// Int64 `[b]` (single-label), Float `[b, n_labels]` multi-hot (multi-label), Int64 `[b, len]` with -100 on
    /// ignored and padded positions (NER); an empty Int64 tensor when the dataset is unlabelled.
    pub labels: Tensor,
    /// The dataset indices of the rows.
    pub index: Vec<usize>,
}

/// Label value of positions the loss ignores (PyTorch's `CrossEntropyLoss` default `ignore_index`).
pub(crate) const IGNORE_INDEX: i64 = -100;

/// Rows right-padded with `pad` to the longest row, as Int64 `[rows, longest]`.
pub(crate) fn pad_rows<'a>(rows: impl ExactSizeIterator<Item = &'a [i64]> + Clone, pad: i64) -> Tensor {
    let n = rows.len() as i64;
    let len = rows.clone().map(<[i64]>::len).max().unwrap_or(0);
    let mut flat = Vec::with_capacity(rows.len() * len);
    for row in rows {
        flat.extend_from_slice(row);
        flat.extend(std::iter::repeat_n(pad, len - row.len()));
    }
    Tensor::from_slice(&flat).view([n, len as i64])
}

/// The attention mask of rows of the given lengths, padded to the longest.
pub(crate) fn attention_mask(lengths: impl ExactSizeIterator<Item = usize> + Clone) -> Tensor {
    let n = lengths.len() as i64;
    let len = lengths.clone().max().unwrap_or(0);
    let mut flat = Vec::with_capacity(lengths.len() * len);
    for l in lengths {
        flat.extend(std::iter::repeat_n(1i64, l));
        flat.extend(std::iter::repeat_n(0i64, len - l));
    }
    Tensor::from_slice(&flat).view([n, len as i64])
}

/// The placeholder `labels` of an unlabelled batch.
pub(crate) fn no_labels() -> Tensor {
    Tensor::zeros([0], (Kind::Int64, tch::Device::Cpu))
}

/// `index` checked against a dataset of `len` items (the loader only asks for valid ones; this guards callers).
pub(crate) fn check_index(index: usize, len: usize, what: &str) -> anyhow::Result<usize> {
    anyhow::ensure!(index < len, "{what} index {index} is out of range: the dataset has {len} items");
    Ok(index)
}
