//! Progress bars for training loops, with the running loss.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use scratch::train::{Evaluation, FitReport, Observer};

/// A [`Observer`] drawing a progress bar over all batches of a fit, and printing each evaluation.
pub struct ProgressObserver {
    label: String,
    quiet: bool,
    bar: Option<ProgressBar>,
    epochs: usize,
    smoothed: Option<f64>,
}

impl ProgressObserver {
    /// A progress bar labelled `label`; `quiet` draws and prints nothing.
    pub fn new(label: impl Into<String>, quiet: bool) -> Self {
        ProgressObserver { label: label.into(), quiet, bar: None, epochs: 0, smoothed: None }
    }

    /// Prints a line above the bar (nothing when quiet).
    pub fn println(&self, line: impl AsRef<str>) {
        match (&self.bar, self.quiet) {
            (_, true) => {}
            (Some(bar), false) if !bar.is_hidden() => bar.println(line.as_ref()),
            (_, false) => eprintln!("{}", line.as_ref()),
        }
    }
}

impl Observer for ProgressObserver {
    fn on_start(&mut self, epochs: usize, batches: usize) {
        self.epochs = epochs;
        self.smoothed = None;
        if self.quiet {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some((epochs * batches) as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos}/{len} batches {elapsed} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(self.label.clone());
        bar.enable_steady_tick(Duration::from_millis(200));
        self.bar = Some(bar);
    }

    fn on_batch(&mut self, epoch: usize, _batch: usize, loss: f64) {
        let s = self.smoothed.map_or(loss, |s| 0.95 * s + 0.05 * loss);
        self.smoothed = Some(s);
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!("epoch {epoch}/{} loss {s:.4}", self.epochs));
        }
    }

    fn on_eval(&mut self, eval: &Evaluation, improved: bool) {
        let at = match eval.batch {
            Some(b) => format!("epoch {}, batch {b}", eval.epoch),
            None => format!("after epoch {}", eval.epoch),
        };
        let accuracy = eval.accuracy.map(|a| format!(", accuracy {:.2} %", a * 100.0)).unwrap_or_default();
        let note = if improved || eval.batch.is_some() { "" } else { " (no improvement)" };
        self.println(format!("{:>24} validation {at}: loss {:.4}{accuracy}{note}", self.label, eval.loss));
    }

    fn on_end(&mut self, _report: &FitReport) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
