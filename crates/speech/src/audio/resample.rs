//! Sample-rate conversion with rubato's synchronous FFT resampler: a Blackman–Harris²-windowed sinc low-pass as
//! long as the FFT (at least 4096 input taps, cut-off ≥ 0.99 of the lower Nyquist frequency), applied by overlap-add.
//!
//! Any two integer rates have a rational ratio, so the synchronous resampler always applies. It is chosen over
//! rubato's asynchronous `SincFixedIn` because that one's reported `output_delay` misses about half its filter
//! length (measured: 128 input samples with 256 taps), which would shift every transcript's timing; here the FFT
//! sizes are kept even so the filter's delay is a whole number of output samples and is removed exactly.

use anyhow::{bail, ensure, Context, Result};
use rubato::{FftFixedIn, Resampler};

/// Largest sample magnitude resampled: a million times full scale, far above any real recording and far below
/// where the FFT's sums overflow.
const MAX_AMPLITUDE: f32 = 1e6;

/// Least number of input samples per FFT block (the filter length).
const MIN_FFT: usize = 4096;

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Resamples mono samples from `from_hz` to `to_hz`. The output has `round(n · to_hz / from_hz)` samples and is
/// aligned with the input (the filter's delay is removed), so a 30-s file stays 30 s and sample k of the output is
/// the signal at time k / to_hz.
pub fn resample(samples: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>> {
    ensure!(from_hz > 0 && to_hz > 0, "cannot resample from {from_hz} Hz to {to_hz} Hz: rates must be positive");
    // A float WAV can hold NaN, infinity or values near f32's limit, which no real signal has (full scale is 1):
    // rubato's FFT panics on them, the huge ones overflowing to infinity inside it (found by fuzzing).
    if let Some(i) = samples.iter().position(|s| s.is_nan() || s.abs() > MAX_AMPLITUDE) {
        bail!("sample {i} is {:e}: not audio (a float file with non-finite or absurdly large values)", samples[i]);
    }
    if from_hz == to_hz || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let (from, to) = (from_hz as usize, to_hz as usize);
    let expected = (samples.len() as f64 * to as f64 / from as f64).round() as usize;
    // The FFT holds a whole, even number of the smallest block (from/gcd input → to/gcd output samples): with both
    // FFT sizes even, the delay rubato reports is exact.
    let min_in = from / gcd(from, to);
    let blocks = 2 * MIN_FFT.div_ceil(2 * min_in);
    let resampler = FftFixedIn::<f32>::new(from, to, min_in * blocks, 1, 1).context("creating the resampler")?;
    run(resampler, samples, expected)
}

/// Streams `samples` through `resampler`, drops its delay and returns exactly `expected` samples.
fn run<R: Resampler<f32>>(mut resampler: R, samples: &[f32], expected: usize) -> Result<Vec<f32>> {
    let delay = resampler.output_delay();
    let mut out: Vec<f32> = Vec::with_capacity(expected + delay + resampler.output_frames_max());
    let mut pos = 0;
    while samples.len() - pos >= resampler.input_frames_next() {
        let n = resampler.input_frames_next();
        let chunk = resampler.process(&[&samples[pos..pos + n]], None).context("resampling")?;
        out.extend_from_slice(&chunk[0]);
        pos += n;
    }
    if pos < samples.len() {
        let chunk = resampler.process_partial(Some(&[&samples[pos..]]), None).context("resampling the last chunk")?;
        out.extend_from_slice(&chunk[0]);
    }
    // Zero input flushes the filter's tail.
    let mut flushes = 0;
    while out.len() < delay + expected {
        let chunk = resampler.process_partial::<&[f32]>(None, None).context("flushing the resampler")?;
        if chunk[0].is_empty() || flushes > 4 + (delay + expected) / resampler.output_frames_max().max(1) {
            bail!("resampler stopped producing output ({} of {} samples)", out.len(), delay + expected);
        }
        out.extend_from_slice(&chunk[0]);
        flushes += 1;
    }
    out.drain(..delay);
    out.truncate(expected);
    Ok(out)
}
