//! Token-to-audio alignment from Whisper's cross-attention, after openai-whisper's `timing.find_alignment` (and
//! CTranslate2's `Whisper.align`, which faster-whisper calls): the alignment heads' attention over the window's
//! frames, normalised per frame over the tokens, median-filtered along time, averaged over heads, and a dynamic
//! time warping path through its negative.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use crate::models::{Whisper, WhisperConfig};

/// Width of the median filter along the frames (openai-whisper's `medfilt_width`).
pub const MEDIAN_FILTER_WIDTH: usize = 7;

/// Encoder positions per second (the second convolution halves the 100 mel frames per second).
pub const TOKENS_PER_SECOND: f64 = 50.0;

/// The cross-attention heads whose attention follows the speech, `(decoder layer, head)`, of the OpenAI checkpoint
/// with this architecture (openai-whisper's `_ALIGNMENT_HEADS`, the same as the hub's `generation_config.json` and
/// CTranslate2's `alignment_heads`). A fine-tuned model keeps its base's heads. `None` for architectures shared by
/// several checkpoints with different heads (the large ones) or unknown ones.
pub fn alignment_heads(config: &WhisperConfig) -> Option<Vec<(i64, i64)>> {
    // English-only checkpoints have one token fewer (no `<|translate|>`-era language tokens beyond English).
    let english = config.vocab_size == 51864;
    let heads: &[(i64, i64)] = match (config.d_model, config.decoder_layers, config.decoder_attention_heads, english) {
        (384, 4, 6, true) => &[(1, 0), (2, 0), (2, 5), (3, 0), (3, 1), (3, 2), (3, 3), (3, 4)],
        (384, 4, 6, false) => &[(2, 2), (3, 0), (3, 2), (3, 3), (3, 4), (3, 5)],
        (512, 6, 8, true) => &[(3, 3), (4, 7), (5, 1), (5, 5), (5, 7)],
        (512, 6, 8, false) => &[(3, 1), (4, 2), (4, 3), (4, 7), (5, 1), (5, 2), (5, 4), (5, 6)],
        (768, 12, 12, true) => &[
            (6, 6),
            (7, 0),
            (7, 3),
            (7, 8),
            (8, 2),
            (8, 5),
            (8, 7),
            (9, 0),
            (9, 4),
            (9, 8),
            (9, 10),
            (10, 0),
            (10, 1),
            (10, 2),
            (10, 3),
            (10, 6),
            (10, 11),
            (11, 2),
            (11, 4),
        ],
        (768, 12, 12, false) => &[(5, 3), (5, 9), (8, 0), (8, 4), (8, 7), (8, 8), (9, 0), (9, 7), (9, 9), (10, 5)],
        (1024, 24, 16, true) => &[
            (11, 4),
            (14, 1),
            (14, 12),
            (14, 14),
            (15, 4),
            (16, 0),
            (16, 4),
            (16, 9),
            (17, 12),
            (17, 14),
            (18, 7),
            (18, 10),
            (18, 15),
            (20, 0),
            (20, 3),
            (20, 9),
            (20, 14),
            (21, 12),
        ],
        (1024, 24, 16, false) => &[(13, 15), (15, 4), (15, 15), (16, 1), (20, 0), (23, 4)],
        _ => return None,
    };
    Some(heads.to_vec())
}

/// Median of each window of `width` values along `row`, the edges mirrored without repeating the edge value
/// (`reflect` padding), as openai-whisper's `median_filter` and CTranslate2's `MedianFilter`. A row of at most
/// `width / 2` values is returned as it is (reflection needs more).
pub fn median_filter(row: &[f32], width: usize) -> Vec<f32> {
    let rank = width / 2;
    let n = row.len();
    if n <= rank {
        return row.to_vec();
    }
    let mut window = vec![0f32; 2 * rank + 1];
    (0..n)
        .map(|j| {
            for (slot, k) in window.iter_mut().zip(-(rank as i64)..=rank as i64) {
                let mut read = (j as i64 + k).unsigned_abs() as usize;
                if read >= n {
                    read = 2 * n - read - 2;
                }
                *slot = row[read];
            }
            window.sort_by(|a, b| a.total_cmp(b));
            window[rank]
        })
        .collect()
}

/// Dynamic time warping through the cost matrix `x` (`rows × cols`, row-major), as openai-whisper's `dtw_cpu`: the
/// cheapest monotone path from the first to the last cell, moving diagonally, down or right, ties going right;
/// accumulated costs are kept in `f32` as there. Returns the path's row and column indices.
pub fn dtw(x: &[f64], rows: usize, cols: usize) -> (Vec<usize>, Vec<usize>) {
    assert_eq!(x.len(), rows * cols, "dtw: {} values for a {rows}×{cols} matrix", x.len());
    let w = cols + 1;
    let mut cost = vec![f32::INFINITY; (rows + 1) * w];
    let mut trace = vec![-1i8; (rows + 1) * w];
    cost[0] = 0.0;
    for j in 1..=cols {
        for i in 1..=rows {
            let (c0, c1, c2) = (cost[(i - 1) * w + j - 1], cost[(i - 1) * w + j], cost[i * w + j - 1]);
            let (c, t) = if c0 < c1 && c0 < c2 {
                (c0, 0)
            } else if c1 < c0 && c1 < c2 {
                (c1, 1)
            } else {
                (c2, 2)
            };
            cost[i * w + j] = (x[(i - 1) * cols + j - 1] + c as f64) as f32;
            trace[i * w + j] = t;
        }
    }
    // The backtrace: the first row only moves left, the first column only up.
    trace[..w].fill(2);
    for i in 0..=rows {
        trace[i * w] = 1;
    }
    let (mut i, mut j) = (rows, cols);
    let (mut ri, mut rj) = (Vec::new(), Vec::new());
    while i > 0 || j > 0 {
        ri.push(i.wrapping_sub(1));
        rj.push(j.wrapping_sub(1));
        match trace[i * w + j] {
            0 => {
                i -= 1;
                j -= 1;
            }
            1 => i -= 1,
            _ => j -= 1,
        }
    }
    ri.reverse();
    rj.reverse();
    (ri, rj)
}

/// The alignment of a window's text tokens with its audio.
#[derive(Debug, Clone)]
pub struct Alignment {
    /// The filtered, head-averaged attention, one row per position from `<|notimestamps|>` to the last text token
    /// (`text tokens + 1` rows), one column per encoder frame of the window's audio; row-major.
    pub matrix: Vec<f32>,
    /// Rows of `matrix`.
    pub rows: usize,
    /// Columns of `matrix` (encoder frames, 20 ms each).
    pub frames: usize,
    /// The DTW path: row indices…
    pub text_indices: Vec<usize>,
    /// …and frame indices.
    pub time_indices: Vec<usize>,
    /// Probability of each text token where the model read it (softmax over the text vocabulary).
    pub token_probs: Vec<f64>,
}

impl Alignment {
    /// The time (seconds from the window's start) at which each of the `rows` DTW rows is entered: entry `i` is
    /// where text token `i` starts, the last entry where the text ends.
    pub fn jump_times(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.rows);
        for (k, (&i, &t)) in self.text_indices.iter().zip(&self.time_indices).enumerate() {
            if k == 0 || i != self.text_indices[k - 1] {
                out.push(t as f64 / TOKENS_PER_SECOND);
            }
        }
        out
    }
}

/// Aligns `text_tokens` (no timestamps, no specials) with one window: `encoder_states` `[1, 1500, d]` of the
/// window, `sot_sequence` its `<|startoftranscript|><|lang|><|task|>`, `num_frames` its mel frames of audio (3000
/// for a full window). Runs the decoder once over `sot_sequence <|notimestamps|> text <|endoftext|>`.
#[allow(clippy::too_many_arguments)]
pub fn find_alignment(
    model: &Whisper,
    heads: &[(i64, i64)],
    encoder_states: &Tensor,
    sot_sequence: &[i64],
    no_timestamps: i64,
    eot: i64,
    text_tokens: &[i64],
    num_frames: i64,
) -> Result<Alignment> {
    let frames = (num_frames / 2).min(encoder_states.size()[1]);
    if frames < 1 || text_tokens.is_empty() {
        bail!("nothing to align: {} text tokens over {frames} frames", text_tokens.len());
    }
    let mut seq = sot_sequence.to_vec();
    seq.push(no_timestamps);
    seq.extend_from_slice(text_tokens);
    seq.push(eot);
    let max = model.config.max_target_positions as usize;
    if seq.len() > max {
        bail!("{} tokens to align, the decoder has {max} positions", seq.len());
    }
    let device = model.device();
    let tokens = Tensor::from_slice(&seq).unsqueeze(0).to_device(device);
    let (logits, scores) =
        tch::no_grad(|| model.decode_with_alignment_scores(&tokens, &encoder_states.to_device(device), heads))?;
    let offset = sot_sequence.len() as i64;
    let n_text = text_tokens.len() as i64;
    // Probabilities over the text vocabulary (below `<|endoftext|>`) where each text token was read.
    let probs = logits
        .get(0)
        .narrow(0, offset, n_text)
        .narrow(1, 0, eot)
        .to_kind(Kind::Float)
        .softmax(-1, Kind::Float)
        .gather(1, &Tensor::from_slice(text_tokens).to_device(device).unsqueeze(1), false)
        .squeeze_dim(1)
        .to_device(tch::Device::Cpu);
    let token_probs: Vec<f64> = Vec::<f32>::try_from(&probs)?.into_iter().map(f64::from).collect();
    // heads × tokens × frames: softmax over the audio frames, then standardised per frame across the tokens.
    let w = scores.get(0).narrow(2, 0, frames).to_kind(Kind::Float).softmax(-1, Kind::Float);
    let (std, mean) = w.std_mean_dim(-2, false, true);
    let w = ((w - mean) / std).to_device(tch::Device::Cpu).contiguous();
    let (n_heads, n_tok, n_frames) = w.size3()?;
    let values = Vec::<f32>::try_from(&w.view([-1]))?;
    let (n_heads, n_tok, n_frames) = (n_heads as usize, n_tok as usize, n_frames as usize);
    let mut mean = vec![0f32; n_tok * n_frames];
    for h in 0..n_heads {
        for t in 0..n_tok {
            let at = (h * n_tok + t) * n_frames;
            let filtered = median_filter(&values[at..at + n_frames], MEDIAN_FILTER_WIDTH);
            for (m, f) in mean[t * n_frames..(t + 1) * n_frames].iter_mut().zip(filtered) {
                *m += f;
            }
        }
    }
    for m in &mut mean {
        *m /= n_heads as f32;
    }
    // Rows from `<|notimestamps|>` to the last text token; `<|endoftext|>`'s row is left out.
    let first = offset as usize;
    let rows = n_text as usize + 1;
    let matrix = mean[first * n_frames..(first + rows) * n_frames].to_vec();
    let negative: Vec<f64> = matrix.iter().map(|&v| -(v as f64)).collect();
    let (text_indices, time_indices) = dtw(&negative, rows, n_frames);
    Ok(Alignment { matrix, rows, frames: n_frames, text_indices, time_indices, token_probs })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs openai-whisper's `dtw_cpu` and `median_filter` on the matrices of the JSON in argv[1]
    /// (`[{"rows", "cols", "x"}]`); prints `[{"path": [[rows…], [cols…]], "median": [[row…]…]}]`.
    const ORACLE: &str = r#"
import json, sys
import numpy as np, torch
from whisper.timing import dtw_cpu, median_filter
out = []
for m in json.loads(sys.argv[1]):
    x = np.array(m["x"], dtype=np.float64).reshape(m["rows"], m["cols"])
    path = dtw_cpu(x)
    med = median_filter(torch.tensor(x, dtype=torch.float32), 7)
    out.append({"path": [path[0].tolist(), path[1].tolist()], "median": med.tolist()})
print(json.dumps(out))
"#;

    /// Deterministic pseudo-random values in [0, 1) (a 64-bit LCG's high bits).
    fn uniform(state: &mut u64) -> f64 {
        *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (*state >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn dtw_and_median_filter_match_openai_whisper() -> Result<()> {
        let mut state = 7u64;
        // Shapes as in alignment (fewer rows than columns), square, tall, tiny, and one with ties (small integers).
        let shapes: [(usize, usize, bool); 7] = [
            (12, 150, false),
            (30, 30, false),
            (40, 9, false),
            (1, 1, false),
            (3, 2, false),
            (8, 25, true),
            (5, 3, false),
        ];
        let mut mats = Vec::new();
        for &(rows, cols, ties) in &shapes {
            let x: Vec<f64> = (0..rows * cols)
                .map(|_| if ties { (uniform(&mut state) * 3.0).floor() } else { uniform(&mut state) * 4.0 - 2.0 })
                .map(|v| v as f32 as f64)
                .collect();
            mats.push(serde_json::json!({"rows": rows, "cols": cols, "x": x}));
        }
        let arg = serde_json::Value::Array(mats.clone()).to_string();
        let out: Vec<serde_json::Value> = serde_json::from_str(&suite_core::python::run_python(ORACLE, &[&arg])?)?;
        for ((m, want), &(rows, cols, _)) in mats.iter().zip(&out).zip(&shapes) {
            let x: Vec<f64> = m["x"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let (ri, ci) = dtw(&x, rows, cols);
            let to_vec = |v: &serde_json::Value| -> Vec<usize> {
                v.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as usize).collect()
            };
            assert_eq!(ri, to_vec(&want["path"][0]), "{rows}×{cols}: DTW row indices");
            assert_eq!(ci, to_vec(&want["path"][1]), "{rows}×{cols}: DTW column indices");
            for r in 0..rows {
                let row: Vec<f32> = x[r * cols..(r + 1) * cols].iter().map(|&v| v as f32).collect();
                let got = median_filter(&row, MEDIAN_FILTER_WIDTH);
                let want_row = want["median"][r].as_array().unwrap();
                assert_eq!(got.len(), want_row.len(), "{rows}×{cols}: row {r} length");
                for (c, (g, w)) in got.iter().zip(want_row).enumerate() {
                    let w = w.as_f64().unwrap();
                    assert!((*g as f64 - w).abs() <= 1e-6, "{rows}×{cols}: median at ({r}, {c}): {g} vs {w}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn jump_times_are_where_each_row_is_entered() {
        let a = Alignment {
            matrix: vec![0.0; 6],
            rows: 2,
            frames: 3,
            text_indices: vec![0, 0, 1],
            time_indices: vec![0, 1, 2],
            token_probs: vec![0.5],
        };
        assert_eq!(a.jump_times(), vec![0.0, 2.0 / TOKENS_PER_SECOND]);
    }
}
