//! Inverted dropout, with a mask that is cheaper to draw on CPUs where libtorch's Bernoulli sampler is serial.
//!
//! libtorch's CPU `bernoulli_(p)` takes MKL's vectorised generator only on Intel processors; on others (this
//! project's AMD EPYC) it draws a 53-bit double per element from the global mt19937, one element at a time. In
//! `suite bench minilm-step` (`--profile`) that was 190 ms of a 1240 ms step — the largest cost after the matrix
//! products, on both sides. A dropout mask needs far fewer random bits: one 32-bit draw of the same generator
//! (`random_` on int32 gives 31 uniform bits) decides two elements with 15 bits each, and everything after the
//! draw is parallel tensor arithmetic. The keep probability is quantised to 1/32768 (p = 0.1 drops with
//! probability 0.100006), the kept values are scaled by exactly 1 / (1 − p) as in PyTorch, and the draws come from
//! the seeded torch generator, so runs stay reproducible. Other devices keep libtorch's own fused dropout.

use tch::{Device, Kind, Tensor};

/// Random bits that decide one element.
const BITS: i64 = 15;

/// `x` with each element zeroed with probability `p` and the others scaled by `1 / (1 - p)` in training; `x`
/// itself (no copy) otherwise. Gradients flow through the kept elements, as through `torch.nn.functional.dropout`.
pub fn dropout(x: Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 {
        return x;
    }
    if p >= 1.0 || x.device() != Device::Cpu || x.numel() == 0 {
        return x.dropout(p, true);
    }
    let keep = keep_mask(&x.size(), p);
    // One pass for the scale, one for the select: fewer passes over memory than multiplying by a float mask.
    (x * (1.0 / (1.0 - p))).where_scalarother(&keep, 0.0)
}

/// A boolean tensor of `shape` whose elements are true with probability `1 - p` (quantised to 2^-15).
pub fn keep_mask(shape: &[i64], p: f64) -> Tensor {
    let n: i64 = shape.iter().product();
    let threshold = (p * (1 << BITS) as f64).round() as i64;
    let mut words = Tensor::empty([(n + 1) / 2], (Kind::Int, Device::Cpu));
    // Each 31-bit draw seen as two int16: the low half holds 16 random bits, the high half 15 (its sign bit is
    // always 0); 15 bits of each decide one element.
    let halves = words.random_().view_dtype(Kind::Int16);
    halves.bitwise_and((1 << BITS) - 1).narrow(0, 0, n).ge(threshold).view(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_at_rate_p_and_scales_the_rest() {
        let _rng = crate::device::torch_rng_lock();
        tch::manual_seed(3);
        let n = 1 << 21;
        for p in [0.1, 0.5, 0.9] {
            let x = Tensor::ones([n], (Kind::Float, Device::Cpu));
            let y = dropout(x, p, true);
            let zeros = y.eq(0.0).sum(Kind::Int64).int64_value(&[]) as f64;
            // Four standard deviations of a binomial count.
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            assert!((zeros - n as f64 * p).abs() < 4.0 * sd + 1.0, "p {p}: {zeros} zeros of {n}");
            let kept = y.ne(0.0);
            let scale = y.masked_select(&kept);
            let want = 1.0 / (1.0 - p);
            assert!(
                (scale.max().double_value(&[]) - want).abs() < 1e-6
                    && (scale.min().double_value(&[]) - want).abs() < 1e-6
            );
            // The expected value is kept: the mean of the output stays 1.
            assert!((y.mean(Kind::Double).double_value(&[]) - 1.0).abs() < 8.0 * sd / n as f64 * want + 1e-3);
        }
    }

    #[test]
    fn both_halves_of_each_draw_are_independent_and_uniform() {
        // Elements 2i and 2i + 1 share a draw (its low and high halves).
        let _rng = crate::device::torch_rng_lock();
        tch::manual_seed(11);
        let n = 1 << 20;
        let m = keep_mask(&[n / 2, 2], 0.5).to_kind(Kind::Float);
        let (a, b) = (m.select(1, 0), m.select(1, 1));
        let both = (&a * &b).mean(Kind::Double).double_value(&[]);
        // P(both kept) = 1/4 for independent halves; 3 sd of a mean of n/2 Bernoulli(1/4) is ~0.0018.
        assert!((both - 0.25).abs() < 0.002, "P(both kept) {both}");
        assert!((a.mean(Kind::Double).double_value(&[]) - 0.5).abs() < 0.003);
        assert!((b.mean(Kind::Double).double_value(&[]) - 0.5).abs() < 0.003);
    }

    #[test]
    fn gradient_is_the_scaled_mask_and_seeds_repeat() {
        let _rng = crate::device::torch_rng_lock();
        let x = Tensor::randn([4, 33, 7], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        tch::manual_seed(5);
        let y = dropout(x.shallow_clone(), 0.25, true);
        y.sum(Kind::Float).backward();
        let grad = x.grad();
        let mask = y.ne(0.0).to_kind(Kind::Float) / 0.75;
        assert!(grad.allclose(&mask, 1e-6, 1e-6, false));
        tch::manual_seed(5);
        let again = dropout(x.detach(), 0.25, true);
        assert!(again.equal(&y.detach()), "the same seed gives the same mask");
    }

    #[test]
    fn evaluation_and_p_zero_are_the_identity() {
        let x = Tensor::randn([5, 6], (Kind::Float, Device::Cpu));
        assert!(dropout(x.shallow_clone(), 0.3, false).equal(&x));
        assert!(dropout(x.shallow_clone(), 0.0, true).equal(&x));
        assert!(dropout(x.shallow_clone(), 1.0, true).eq(0.0).all().int64_value(&[]) == 1);
    }
}
