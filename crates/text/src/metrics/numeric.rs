//! numpy's float64 reductions, reproduced bit for bit so that averages equal seqeval's and scikit-learn's exactly
//! rather than to rounding.

/// Below this many elements numpy sums sequentially; up to [`BLOCK`] it uses eight interleaved accumulators.
const UNROLL: usize = 8;
/// numpy's `PW_BLOCKSIZE`: longer arrays are split in two (at a multiple of 8) and summed recursively.
const BLOCK: usize = 128;

/// `np.sum` of a contiguous float64 array: numpy's pairwise summation (`DOUBLE_pairwise_sum`), whose rounding
/// differs from a left-to-right sum once there are 8 or more elements.
pub(crate) fn np_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < UNROLL {
        // numpy starts the reduction from the identity 0.0, which also turns -0.0 into 0.0.
        return a.iter().fold(0.0, |acc, &x| acc + x);
    }
    if n <= BLOCK {
        let mut r = [0.0f64; UNROLL];
        r.copy_from_slice(&a[..UNROLL]);
        let whole = n - n % UNROLL;
        let mut i = UNROLL;
        while i < whole {
            for (j, acc) in r.iter_mut().enumerate() {
                *acc += a[i + j];
            }
            i += UNROLL;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &a[whole..] {
            res += x;
        }
        return 0.0 + res;
    }
    let mut half = n / 2;
    half -= half % UNROLL;
    np_sum(&a[..half]) + np_sum(&a[half..])
}

/// `np.mean`: the pairwise sum divided by the count. `None` for an empty array (numpy returns NaN).
pub(crate) fn np_mean(a: &[f64]) -> Option<f64> {
    (!a.is_empty()).then(|| np_sum(a) / a.len() as f64)
}

/// `np.average(a, weights=w)`: `sum(a * w) / sum(w)`, both sums pairwise. `None` when the weights sum to zero
/// (numpy raises `ZeroDivisionError`).
pub(crate) fn np_weighted_average(a: &[f64], weights: &[f64]) -> Option<f64> {
    debug_assert_eq!(a.len(), weights.len());
    let scale = np_sum(weights);
    if scale == 0.0 {
        return None;
    }
    let products: Vec<f64> = a.iter().zip(weights).map(|(x, w)| x * w).collect();
    Some(np_sum(&products) / scale)
}

/// `numerator / denominator`, or 0 when the denominator is 0: `zero_division=0` in seqeval and scikit-learn.
pub(crate) fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator == 0.0 {
        0.0
    } else {
        numerator / denominator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_sum_differs_from_sequential_where_numpy_does() {
        // 1e16 absorbs every lone 1.0 of a left-to-right sum; numpy's accumulators 1..7 each add two 1.0s first
        // together first.
        let mut a = vec![1e16];
        a.extend(std::iter::repeat_n(1.0, 15));
        let sequential = a.iter().fold(0.0, |s, &x| s + x);
        assert_eq!(sequential, 1e16);
        assert_eq!(np_sum(&a), 1e16 + 14.0, "np.sum gives 1e16 + 14");
        assert_eq!(np_sum(&[]), 0.0);
        assert_eq!(np_mean(&[]), None);
        assert_eq!(np_weighted_average(&[1.0, 2.0], &[0.0, 0.0]), None);
        assert_eq!(np_weighted_average(&[1.0, 2.0], &[1.0, 3.0]), Some(1.75));
    }
}
