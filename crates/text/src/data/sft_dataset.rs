//! Tokenized SFT examples as rows for the core data loader: packed (several examples per row of `max_len`
//! tokens, positions restarting at 0 and attention kept inside each example through segment ids) or one example
//! per row, right padded.

use std::sync::Arc;

use anyhow::Result;
use suite_core::data::{Dataset, SampleRng};
use tch::Tensor;

use super::datasets::IGNORE_INDEX;
use super::sft_tokenize::SftTokens;
use crate::models::BatchLayout;

/// The segment id of the padding at the end of a packed row: no example has it, so padding attends only to
/// padding.
const PAD_SEGMENT: i64 = -1;

/// One training row: one example, or several packed ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftRow {
    /// Token ids.
    pub ids: Vec<i64>,
    /// Labels ([`IGNORE_INDEX`] where the loss does not apply).
    pub labels: Vec<i64>,
    /// Which example of the row each token belongs to (0, 1, …).
    pub segments: Vec<i64>,
    /// Each token's position inside its example.
    pub positions: Vec<i64>,
    /// How many examples the row holds.
    pub examples: usize,
}

/// What tokenization and packing did to the data, for the run report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SftStats {
    /// Examples read.
    pub examples: usize,
    /// Examples cut to `max_len`.
    pub truncated: usize,
    /// Tokens cut off by truncation.
    pub tokens_dropped: usize,
    /// Tokens kept.
    pub tokens: usize,
    /// Tokens that carry a label.
    pub label_tokens: usize,
    /// Rows the examples fill.
    pub rows: usize,
    /// Real tokens over the row capacity (`rows * max_len`) when packed, over the padded batch shape otherwise
    /// (measured on the rows as they are, before batching).
    pub packing_efficiency: f64,
}

impl std::fmt::Display for SftStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} examples, {} tokens ({} with loss) in {} rows, packing efficiency {:.1}%; {} examples truncated \
             ({} tokens dropped)",
            self.examples,
            self.tokens,
            self.label_tokens,
            self.rows,
            100.0 * self.packing_efficiency,
            self.truncated,
            self.tokens_dropped
        )
    }
}

/// Rows of tokenized examples: packed into `max_len` rows, or one per row.
pub fn build_rows(examples: &[SftTokens], max_len: usize, packing: bool) -> (Vec<SftRow>, SftStats) {
    let mut rows: Vec<SftRow> = Vec::new();
    let mut stats = SftStats { examples: examples.len(), ..SftStats::default() };
    for ex in examples {
        stats.tokens += ex.ids.len();
        stats.label_tokens += ex.label_count();
        if ex.dropped > 0 {
            stats.truncated += 1;
            stats.tokens_dropped += ex.dropped;
        }
        let fits = rows.last().is_some_and(|r| packing && r.ids.len() + ex.ids.len() <= max_len);
        if !fits {
            rows.push(SftRow {
                ids: Vec::new(),
                labels: Vec::new(),
                segments: Vec::new(),
                positions: Vec::new(),
                examples: 0,
            });
        }
        let row = rows.last_mut().expect("pushed");
        row.ids.extend_from_slice(&ex.ids);
        row.labels.extend_from_slice(&ex.labels);
        row.segments.extend(std::iter::repeat_n(row.examples as i64, ex.ids.len()));
        row.positions.extend(0..ex.ids.len() as i64);
        row.examples += 1;
    }
    stats.rows = rows.len();
    let capacity =
        if packing { rows.len() * max_len } else { rows.len() * rows.iter().map(|r| r.ids.len()).max().unwrap_or(0) };
    stats.packing_efficiency = if capacity == 0 { 0.0 } else { stats.tokens as f64 / capacity as f64 };
    (rows, stats)
}

/// A batch of SFT rows, on the CPU.
#[derive(Debug)]
pub struct SftBatch {
    /// Int64 `[b, len]`, right padded with the pad id.
    pub input_ids: Tensor,
    /// Int64 `[b, len]`, [`IGNORE_INDEX`] where the loss does not apply (padding included).
    pub labels: Tensor,
    /// Packed rows: Int64 `[b, len]` positions restarting at each example.
    pub position_ids: Option<Tensor>,
    /// Packed rows: Int64 `[b, len]` example index of each token (padding has its own).
    pub segment_ids: Option<Tensor>,
    /// Rows of the dataset in the batch.
    pub index: Vec<usize>,
    /// Examples in the batch.
    pub examples: usize,
}

impl SftBatch {
    /// The layout the model needs for these rows: plain for one example per row (right padding is never attended
    /// by a real token under the causal mask), positions and segments for packed rows.
    pub fn layout(&self, device: tch::Device) -> BatchLayout {
        BatchLayout {
            attention_mask: None,
            position_ids: self.position_ids.as_ref().map(|t| t.to_device(device)),
            segment_ids: self.segment_ids.as_ref().map(|t| t.to_device(device)),
        }
    }
}

/// SFT rows for the core data loader.
pub struct SftDataset {
    rows: Arc<Vec<SftRow>>,
    pad_id: i64,
    packed: bool,
}

impl SftDataset {
    /// A dataset over `rows` (from [`build_rows`]); `pad_id` fills short rows.
    pub fn new(rows: Vec<SftRow>, pad_id: i64, packed: bool) -> Self {
        Self { rows: Arc::new(rows), pad_id, packed }
    }

    /// The rows.
    pub fn rows(&self) -> &[SftRow] {
        &self.rows
    }
}

fn padded(rows: &[&SftRow], len: usize, pad: i64, field: impl Fn(&SftRow) -> &[i64]) -> Tensor {
    let mut flat = Vec::with_capacity(rows.len() * len);
    for r in rows {
        let v = field(r);
        flat.extend_from_slice(v);
        flat.extend(std::iter::repeat_n(pad, len - v.len()));
    }
    Tensor::from_slice(&flat).view([rows.len() as i64, len as i64])
}

impl Dataset for SftDataset {
    type Item = usize;
    type Batch = SftBatch;

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn get(&self, index: usize, _rng: &mut SampleRng) -> Result<usize> {
        anyhow::ensure!(index < self.rows.len(), "SFT row {index} is out of range ({} rows)", self.rows.len());
        Ok(index)
    }

    fn collate(&self, items: Vec<usize>) -> Result<SftBatch> {
        let rows: Vec<&SftRow> = items.iter().map(|&i| &self.rows[i]).collect();
        let len = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
        let input_ids = padded(&rows, len, self.pad_id, |r| &r.ids);
        let labels = padded(&rows, len, IGNORE_INDEX, |r| &r.labels);
        let (position_ids, segment_ids) = if self.packed {
            let mut pos = Vec::with_capacity(rows.len() * len);
            for r in &rows {
                pos.extend_from_slice(&r.positions);
                pos.extend(0..(len - r.positions.len()) as i64);
            }
            let pos = Tensor::from_slice(&pos).view([rows.len() as i64, len as i64]);
            (Some(pos), Some(padded(&rows, len, PAD_SEGMENT, |r| &r.segments)))
        } else {
            (None, None)
        };
        let examples = rows.iter().map(|r| r.examples).sum();
        Ok(SftBatch { input_ids, labels, position_ids, segment_ids, index: items, examples })
    }
}
