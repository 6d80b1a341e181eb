use tch::{nn, Kind, Tensor};

/// Batch normalisation over `[N, C, H, W]` with torch's names: `weight`, `bias`, `running_mean`, `running_var`
/// and `num_batches_tracked`, so torchvision checkpoints load and export with no renaming.
#[derive(Debug)]
pub struct BatchNorm2d {
    /// Checkpoint name of this layer.
    pub name: String,
    /// Scale (gamma).
    pub weight: Tensor,
    /// Shift (beta).
    pub bias: Tensor,
    /// Running mean, updated in training mode.
    pub running_mean: Tensor,
    /// Running variance, updated in training mode.
    pub running_var: Tensor,
    /// Count of training batches seen (kept for checkpoint compatibility).
    pub num_batches_tracked: Tensor,
    /// Epsilon added to the variance.
    pub eps: f64,
    /// Running-statistics momentum.
    pub momentum: f64,
    /// When set, the layer always normalises with its running statistics and never updates them, as a frozen
    /// backbone in transfer learning needs.
    pub frozen: bool,
}

impl BatchNorm2d {
    /// Registers a batch norm over `channels` under `p` (gamma 1, beta 0, mean 0, var 1).
    pub fn new(p: nn::Path, channels: i64, eps: f64) -> Self {
        let weight = p.var("weight", &[channels], nn::Init::Const(1.0));
        let bias = p.var("bias", &[channels], nn::Init::Const(0.0));
        let running_mean = p.zeros_no_train("running_mean", &[channels]);
        let running_var = p.ones_no_train("running_var", &[channels]);
        let num_batches_tracked = p.add("num_batches_tracked", Tensor::zeros([], (Kind::Int64, p.device())), false);
        Self {
            name: super::path_name(&p),
            weight,
            bias,
            running_mean,
            running_var,
            num_batches_tracked,
            eps,
            momentum: 0.1,
            frozen: false,
        }
    }

    /// Normalises `x`; in training mode (and not frozen) with batch statistics, updating the running ones.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let train = train && !self.frozen;
        if train {
            tch::no_grad(|| {
                let _ = self.num_batches_tracked.shallow_clone().g_add_scalar_(1);
            });
        }
        Tensor::batch_norm(
            x,
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            self.momentum,
            self.eps,
            false,
        )
    }
}

impl nn::ModuleT for BatchNorm2d {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        BatchNorm2d::forward_t(self, xs, train)
    }
}
