//! The pieces of a character-level language model: training windows over an encoded text, one-hot
//! encoding, and sampling the next character from the model's scores.

use ndarray::{Array3, ArrayView1};

use crate::rng::RandomState;
use crate::{Error, Float, Result};

/// One-hot encodes character indices: `indices` of shape `(batch, time)`, given row by row, to
/// `(batch, time, vocab)`.
///
/// # Errors
/// If an index is not below `vocab`, or the indices do not fill `batch` rows.
pub fn one_hot<F: Float>(indices: &[usize], batch: usize, vocab: usize) -> Result<Array3<F>> {
    if batch == 0 || indices.len() % batch != 0 {
        return Err(Error::InvalidArgument(format!("{} indices do not make {batch} equal rows", indices.len())));
    }
    let steps = indices.len() / batch;
    let mut out = Array3::zeros((batch, steps, vocab));
    for (k, &i) in indices.iter().enumerate() {
        if i >= vocab {
            return Err(Error::InvalidArgument(format!("character index {i} is outside a vocabulary of {vocab}")));
        }
        out[(k / steps, k % steps, i)] = F::one();
    }
    Ok(out)
}

/// Training windows over an encoded text: a batch holds `batch` windows of `steps` characters, and
/// the targets are the same windows shifted one character on.
///
/// - [`CharWindows::new`], the book's `RNNTrainer` order: the windows of a batch start at consecutive
///   positions `p, p + 1, …`; each batch moves `p` on by `batch`, back to the start when the text runs
///   out. Consecutive batches continue each other's text, which is what a carried state needs.
/// - [`CharWindows::random`]: every window starts at a position drawn uniformly from the whole text,
///   so a batch sees `batch` independent places (for a state reset at every batch).
#[derive(Clone, Debug)]
pub struct CharWindows {
    text: Vec<usize>,
    batch: usize,
    steps: usize,
    position: usize,
    random: Option<RandomState>,
}

impl CharWindows {
    /// The book's consecutive windows over `text` (character indices).
    ///
    /// # Errors
    /// If `batch` or `steps` is zero, or the text is shorter than one batch of windows.
    pub fn new(text: Vec<usize>, batch: usize, steps: usize) -> Result<Self> {
        if batch == 0 || steps == 0 || text.len() < steps + batch + 1 {
            return Err(Error::InvalidArgument(format!(
                "a text of {} characters cannot give {batch} windows of {steps}",
                text.len()
            )));
        }
        Ok(CharWindows { text, batch, steps, position: 0, random: None })
    }

    /// Windows at random positions, drawn from a generator seeded with `seed`.
    ///
    /// # Errors
    /// As [`CharWindows::new`].
    pub fn random(text: Vec<usize>, batch: usize, steps: usize, seed: u32) -> Result<Self> {
        Ok(CharWindows { random: Some(RandomState::new(seed)), ..Self::new(text, batch, steps)? })
    }

    /// Where the windows of the next batch start: `batch` positions in the text. The batch's inputs are
    /// `text[s..s + steps]` and its targets `text[s + 1..s + steps + 1]` for every start `s`.
    pub fn next_starts(&mut self) -> Vec<usize> {
        match &mut self.random {
            Some(rng) => {
                let last = (self.text.len() - self.steps) as i64;
                (0..self.batch).map(|_| rng.randint_below(0, last) as usize).collect()
            }
            None => {
                if self.position + self.steps + self.batch + 1 > self.text.len() {
                    self.position = 0;
                }
                let starts = (self.position..self.position + self.batch).collect();
                self.position += self.batch;
                starts
            }
        }
    }

    /// The next batch: `(inputs, targets)`, each `batch · steps` indices, window by window.
    pub fn next_batch(&mut self) -> (Vec<usize>, Vec<usize>) {
        let starts = self.next_starts();
        Self::at(&self.text, &starts, self.steps).expect("the starts leave room for a window and its target")
    }

    /// The windows of `steps` characters of `text` starting at `starts`: `(inputs, targets)`, the
    /// targets one character on.
    ///
    /// # Errors
    /// A start too close to the end of the text for a window and its target.
    pub fn at(text: &[usize], starts: &[usize], steps: usize) -> Result<(Vec<usize>, Vec<usize>)> {
        let mut inputs = Vec::with_capacity(starts.len() * steps);
        let mut targets = Vec::with_capacity(starts.len() * steps);
        for &start in starts {
            let window = start.checked_add(steps + 1).and_then(|end| text.get(start..end)).ok_or_else(|| {
                Error::InvalidArgument(format!("a window of {steps} from {start} runs past a text of {}", text.len()))
            })?;
            inputs.extend_from_slice(&window[..steps]);
            targets.extend_from_slice(&window[1..]);
        }
        Ok((inputs, targets))
    }

    /// Non-overlapping windows covering `text` once, for evaluation: `(inputs, targets, windows)`.
    pub fn evaluation(text: &[usize], steps: usize) -> (Vec<usize>, Vec<usize>, usize) {
        let windows = text.len().saturating_sub(1) / steps.max(1);
        let inputs = text[..windows * steps].to_vec();
        let targets = text[1..windows * steps + 1].to_vec();
        (inputs, targets, windows)
    }
}

/// How a language model's next character is drawn from its scores (logits).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// The scores are divided by it before the softmax: low temperatures give safer, more repetitive
    /// text; zero takes the most likely character (greedy).
    pub temperature: f64,
    /// Only the `k` highest scores compete (nanoGPT's `top_k`); `None`: all.
    pub top_k: Option<usize>,
}

impl Sampling {
    /// At `temperature`, over every score.
    pub fn temperature(temperature: f64) -> Self {
        Sampling { temperature, top_k: None }
    }

    /// Checks the temperature and `k`.
    ///
    /// # Errors
    /// A temperature that is negative or not finite, or a `k` of zero.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::InvalidArgument(format!(
                "sampling temperature {} must be finite and not negative (0 takes the most likely character)",
                self.temperature
            )));
        }
        if self.top_k == Some(0) {
            return Err(Error::InvalidArgument("sampling from the top 0 scores: k must be at least 1".into()));
        }
        Ok(())
    }

    /// Draws a class from `scores`: from `softmax(scores / temperature)` over the top `k` scores (those
    /// at least the `k`-th largest, ties included), or the arg-max (the first) at temperature zero.
    ///
    /// # Errors
    /// Invalid settings (see [`Sampling::validate`]), no scores, or a score that is NaN.
    pub fn sample<F: Float>(&self, scores: ArrayView1<'_, F>, rng: &mut RandomState) -> Result<usize> {
        self.validate()?;
        let scores: Vec<f64> = scores.iter().map(|s| s.as_f64()).collect();
        if scores.is_empty() || scores.iter().any(|s| s.is_nan()) {
            return Err(Error::InvalidArgument(format!(
                "sampling needs at least one score and no NaN, got {} scores",
                scores.len()
            )));
        }
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let best = scores.iter().position(|&s| s == max).unwrap_or(0);
        if self.temperature == 0.0 {
            return Ok(best);
        }
        let floor = match self.top_k {
            Some(k) if k < scores.len() => {
                let mut sorted = scores.clone();
                sorted.sort_by(|a, b| b.total_cmp(a));
                sorted[k - 1]
            }
            _ => f64::NEG_INFINITY,
        };
        let weights: Vec<f64> =
            scores.iter().map(|&s| if s >= floor { ((s - max) / self.temperature).exp() } else { 0.0 }).collect();
        let mut u = rng.random_sample() * weights.iter().sum::<f64>();
        for (i, w) in weights.iter().enumerate() {
            if u < *w {
                return Ok(i);
            }
            u -= w;
        }
        Ok(best)
    }
}

/// Samples a class from `scores` (logits) at `temperature` over every score (see [`Sampling`]).
///
/// # Errors
/// As [`Sampling::sample`].
pub fn sample_index<F: Float>(scores: ArrayView1<'_, F>, temperature: f64, rng: &mut RandomState) -> Result<usize> {
    Sampling::temperature(temperature).sample(scores, rng)
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn windows_overlap_and_targets_are_shifted_by_one() {
        let mut w = CharWindows::new((0..10).collect(), 2, 3).unwrap();
        let (x, y) = w.next_batch();
        assert_eq!(x, vec![0, 1, 2, 1, 2, 3]);
        assert_eq!(y, vec![1, 2, 3, 2, 3, 4]);
        let (x, _) = w.next_batch();
        assert_eq!(x[0], 2);
        assert_eq!(w.next_batch().0[0], 4, "the last start whose windows and targets fit");
        assert_eq!(w.next_batch().0[0], 0, "wraps around when the text runs out");
        assert!(CharWindows::new(vec![0; 4], 2, 3).is_err());
        let mut r = CharWindows::random((0..100).collect(), 4, 5, 1).unwrap();
        let (x, y) = r.next_batch();
        for w in 0..4 {
            let window = &x[w * 5..(w + 1) * 5];
            assert!(window.windows(2).all(|p| p[1] == p[0] + 1), "a window is a run of the text");
            assert_eq!(y[w * 5], x[w * 5] + 1);
        }
        assert_ne!(r.next_batch().0, x, "each batch draws new places");
    }

    #[test]
    fn one_hot_places_each_index() {
        let x = one_hot::<f32>(&[2, 0, 1, 1], 2, 3).unwrap();
        assert_eq!(x.shape(), &[2, 2, 3]);
        assert_eq!(x[(0, 0, 2)], 1.0);
        assert_eq!(x[(1, 1, 1)], 1.0);
        assert_eq!(x.sum(), 4.0);
        assert!(one_hot::<f32>(&[3], 1, 3).is_err());
    }

    #[test]
    fn sampling_follows_the_softmax_and_temperature_zero_is_greedy() {
        let scores = array![0.0f64, 2.0f64.ln(), 1.0f64.ln()];
        let mut rng = RandomState::new(3);
        let mut counts = [0usize; 3];
        for _ in 0..40_000 {
            counts[sample_index(scores.view(), 1.0, &mut rng).unwrap()] += 1;
        }
        // Probabilities 1/4, 1/2, 1/4.
        assert!((counts[1] as f64 / 40_000.0 - 0.5).abs() < 0.01, "{counts:?}");
        assert_eq!(sample_index(scores.view(), 0.0, &mut rng).unwrap(), 1);
        assert!(sample_index(scores.view(), -1.0, &mut rng).is_err());
        assert!(sample_index(array![f64::NAN, f64::NAN].view(), 1.0, &mut rng).is_err());
    }

    #[test]
    fn top_k_keeps_only_the_k_highest_scores() {
        let scores = array![3.0f64, 1.0, 2.0, 0.5];
        let top2 = Sampling { temperature: 1.0, top_k: Some(2) };
        let mut rng = RandomState::new(4);
        let mut counts = [0usize; 4];
        for _ in 0..20_000 {
            counts[top2.sample(scores.view(), &mut rng).unwrap()] += 1;
        }
        assert_eq!((counts[1], counts[3]), (0, 0), "{counts:?}");
        // e³ / (e³ + e²) of the draws go to the first.
        let p = 1.0 / (1.0 + (-1.0f64).exp());
        assert!((counts[0] as f64 / 20_000.0 - p).abs() < 0.01, "{counts:?}");
        assert!(Sampling { temperature: 1.0, top_k: Some(0) }.sample(scores.view(), &mut rng).is_err());
        assert_eq!(Sampling { temperature: 1.0, top_k: Some(1) }.sample(scores.view(), &mut rng).unwrap(), 0);
    }
}
