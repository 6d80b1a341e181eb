use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The terminal view of a run: one bar over all optimizer steps with loss, learning rate, rate and ETA.
/// It draws only on a terminal, so logs and tests stay clean.
pub struct ProgressView {
    bar: ProgressBar,
}

impl ProgressView {
    /// A bar over `total_steps` optimizer steps, starting at `done`.
    pub fn new(total_steps: usize, done: usize) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total_steps as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>9} [{bar:30.cyan/blue}] {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_position(done as u64);
        bar.enable_steady_tick(Duration::from_millis(250));
        Self { bar }
    }

    /// Updates the bar after an optimizer step.
    pub fn step(&self, step: usize, epoch: usize, loss: f64, lr: f64, samples_per_sec: f64) {
        self.bar.set_prefix(format!("epoch {}", epoch + 1));
        self.bar.set_position(step as u64);
        self.bar.set_message(format!("loss {loss:.4}  lr {lr:.2e}  {samples_per_sec:.1} samples/s"));
    }

    /// Prints a line above the bar (evaluation results, checkpoints).
    pub fn println(&self, line: impl AsRef<str>) {
        if self.bar.is_hidden() {
            eprintln!("{}", line.as_ref());
        } else {
            self.bar.println(line.as_ref());
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
