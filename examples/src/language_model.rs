//! Chapter 6: a character-level language model on the Shakespeare corpus, trained with both engines
//! from the same initial weights on the same batches. It reports the validation loss in nats per
//! character on held-out text (the last tenth of the corpus), seconds per iteration, samples from
//! each trained model, and a PNG of the loss curves.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ndarray::{s, Array3, ArrayD, Axis};
use scratch::data::text::{self, Vocabulary};
use scratch::network::NeuralNetwork;
use scratch::ops::Mode;
use scratch::optim::{AdamConfig, Clip, WeightDecay};
use scratch::rng::RandomState;
use scratch::rnn::{one_hot, sample_index, CharWindows};
use scratch::spec::{book, CellKind, LossSpec, NetSpec, OptimSpec, StateMode};
use scratch::train::Divergence;
use tch::Tensor;
use torch::convert::{to_array, to_tensor, TorchFloat};

use crate::engine::{Engine, Engines};
use crate::experiments::options::Dtype;
use crate::experiments::{resume, Experiment, Opt, Outputs, Prepared, Ran, Settings};
use crate::network::{Models, Network};
use crate::plot::{line_chart, Chart, Series};
use crate::table::Table;

/// The works the model trains on by default (about 1.1 million characters), in this order; the last
/// tenth of their concatenation is held out for validation.
pub const WORKS: [&str; 8] =
    ["hamlet", "macbeth", "othello", "lear", "romeo_and_juliet", "julius_caesar", "tempest", "twelfth_night"];

/// The validation loss the book printed for its chapter-7 character LSTM (mean cross-entropy in nats
/// per character, one epoch of Adam on its own 100 000-character text).
pub const BOOK_VALIDATION_LOSS: f64 = 2.331;

/// The options the chapter-6 language models take.
pub const OPTIONS: &[Opt] = &[
    Opt::Engine,
    Opt::Dtype,
    Opt::Seed,
    Opt::Device,
    Opt::Resume,
    Opt::Iterations,
    Opt::Hidden,
    Opt::Layers,
    Opt::Lr,
    Opt::BookWindows,
    Opt::Temperature,
    Opt::Prompt,
];

/// The options of chapter 7's language model: those of chapter 6 but `--book-windows` (it always
/// trains on the book's windows).
pub const CHAPTER7_OPTIONS: &[Opt] = &[
    Opt::Engine,
    Opt::Dtype,
    Opt::Seed,
    Opt::Device,
    Opt::Resume,
    Opt::Iterations,
    Opt::Hidden,
    Opt::Layers,
    Opt::Lr,
    Opt::Temperature,
    Opt::Prompt,
];

/// At most this many held-out characters are scored at each evaluation.
const VALIDATION_CHARS: usize = 50_000;

/// Every language model's gradients are clipped to this global norm before each update.
const CLIP: Clip = Clip::Norm(5.0);

/// How the model is trained.
#[derive(Clone, Debug)]
pub struct LmOptions {
    /// Which engines.
    pub engines: Engines,
    /// The recurrent cell.
    pub cell: CellKind,
    /// Hidden units per layer.
    pub hidden: usize,
    /// Stacked recurrent layers.
    pub layers: usize,
    /// Characters per training window.
    pub steps: usize,
    /// Windows per batch.
    pub batch: usize,
    /// Training iterations (batches).
    pub iterations: usize,
    /// Iterations between validations.
    pub eval_every: usize,
    /// The optimizer, its learning rate and its clipping.
    pub optimizer: OptimSpec,
    /// Train on only the first this many characters of the corpus (the book's text had 100 000).
    pub corpus_chars: Option<usize>,
    /// The share of the corpus held out for validation, from its end.
    pub validation_share: f64,
    /// The book's consecutive windows with the state carried between batches, instead of windows at
    /// random places with the state reset.
    pub book_windows: bool,
    /// Seed of the weights, the windows and the samples.
    pub seed: u32,
    /// Sampling temperature.
    pub temperature: f64,
    /// Characters per sample.
    pub sample_length: usize,
    /// The text each sample starts from.
    pub prompt: String,
    /// No progress output.
    pub quiet: bool,
    /// Where the torch engine computes.
    pub device: torch::Device,
    /// A checkpoint (of either engine) to start from instead of fresh weights.
    pub resume: Option<PathBuf>,
}

impl LmOptions {
    /// The book's chapter-7 `NextCharacterModel` run: one LSTM whose hidden size is the vocabulary's,
    /// 50-character windows in the book's order with the state carried (detached) between batches,
    /// Adam (0.001, weight decay 1e-5), one epoch over the first 80 000 of 100 000 characters.
    pub fn chapter7() -> Self {
        LmOptions {
            hidden: 0,
            steps: 50,
            optimizer: OptimSpec::adam(0.001, AdamConfig { weight_decay: WeightDecay::L2(1e-5), ..Default::default() })
                .clip(CLIP),
            book_windows: true,
            corpus_chars: Some(100_000),
            validation_share: 0.2,
            iterations: 0,
            eval_every: 500,
            ..Self::default()
        }
    }
}

impl Default for LmOptions {
    fn default() -> Self {
        LmOptions {
            engines: Engines::Both,
            cell: CellKind::Lstm,
            hidden: 256,
            layers: 1,
            steps: 25,
            batch: 32,
            iterations: 2000,
            eval_every: 250,
            optimizer: OptimSpec::adagrad(0.05).clip(CLIP),
            corpus_chars: None,
            validation_share: 0.1,
            book_windows: false,
            seed: 20_190_825,
            temperature: 0.7,
            sample_length: 300,
            prompt: "ROMEO.".into(),
            quiet: false,
            device: torch::Device::Cpu,
            resume: None,
        }
    }
}

/// The encoded corpus: its vocabulary, the training text and the held-out text.
pub struct Corpus {
    /// The sorted character vocabulary.
    pub vocab: Vocabulary,
    /// The first nine tenths.
    pub train: Vec<usize>,
    /// The last tenth.
    pub validation: Vec<usize>,
}

/// Loads `works` from the Shakespeare corpus under `data_dir` (its first `chars` characters, if given)
/// and holds out its last `validation_share`.
///
/// # Errors
/// A missing or unreadable work (with the command that fetches the corpus).
pub fn corpus(data_dir: &Path, works: &[&str], chars: Option<usize>, validation_share: f64) -> Result<Corpus> {
    let mut text = text::shakespeare(data_dir, works)?;
    if let Some(n) = chars {
        text = text.chars().take(n).collect();
    }
    let vocab = Vocabulary::new(&text);
    let encoded = vocab.encode(&text)?;
    let split = (encoded.len() as f64 * (1.0 - validation_share)) as usize;
    Ok(Corpus { vocab, validation: encoded[split..].to_vec(), train: encoded[..split].to_vec() })
}

/// The network: `layers` stacked recurrent cells and a projection back onto the vocabulary
/// ([`book::language_model`]).
pub fn network(opts: &LmOptions, vocab: usize) -> NetSpec {
    let state = if opts.book_windows { StateMode::CarryMean } else { StateMode::Reset };
    network_with_state(opts, vocab, state)
}

fn network_with_state(opts: &LmOptions, vocab: usize, state: StateMode) -> NetSpec {
    book::language_model(opts.cell, vocab, opts.hidden, opts.layers, state, opts.steps)
}

/// The loss of the language models: the mean cross-entropy per character.
const LOSS: LossSpec = LossSpec::CROSS_ENTROPY;

/// What one engine's language model (the recurrent ones', the GPT's) reached.
#[derive(Clone, Debug)]
pub struct LmResult {
    /// The engine.
    pub engine: Engine,
    /// The validation loss of the model before training (the reference of the divergence rule).
    pub initial_validation: f64,
    /// Training loss of every iteration (nats per character).
    pub train_losses: Vec<f64>,
    /// `(iteration, validation loss)` (the GPT's begin with the one before training, at iteration 0).
    pub validations: Vec<(usize, f64)>,
    /// Time spent in training steps.
    pub train_time: Duration,
    /// A sample of the trained model.
    pub sample: String,
}

impl LmResult {
    /// Seconds per training iteration.
    pub fn seconds_per_iteration(&self) -> f64 {
        self.train_time.as_secs_f64() / self.train_losses.len().max(1) as f64
    }

    /// The last validation loss.
    pub fn final_validation(&self) -> f64 {
        self.validations.last().map_or(f64::NAN, |v| v.1)
    }
}

/// Scores `(1, time, vocabulary)` of the next character after each position of a `(1, time,
/// vocabulary)` input, the state carried from call to call.
type NextScores = Box<dyn FnMut(&Array3<f32>) -> Result<ArrayD<f32>>>;

/// One training batch: the training text (character indices) and where each of its `batch` windows
/// of `steps` characters (and one more, the last target) starts. The starts are drawn as training goes,
/// one batch at a time, so memory does not grow with the number of iterations.
struct Batch<'a> {
    text: &'a [usize],
    starts: &'a [usize],
    steps: usize,
    vocab: usize,
}

/// One engine's model, as the training loop drives it.
trait LanguageModel {
    /// Training starts on `text` (the libtorch engine copies it to its device once).
    fn start(&mut self, text: &[usize]) -> Result<()>;
    /// One update on `batch`, the batch of `iteration` (from 1); the training loss.
    fn step(&mut self, batch: &Batch<'_>, iteration: usize) -> Result<f64>;
    /// The mean loss over `(x, y)`, in evaluation mode, the state reset before and after.
    fn loss(&mut self, x: &Array3<f32>, y: &Array3<f32>) -> Result<f64>;
    /// Scores of the next character after each of `x`'s positions, the state carried from call to
    /// call (a copy of the model with its state carried, as the book's sampler deep-copies it).
    fn sampler(&self, opts: &LmOptions, vocab: usize) -> Result<NextScores>;
    /// Saves the parameters.
    fn save(&self, path: &Path) -> Result<()>;
}

struct ScratchLm<F: TorchFloat> {
    trainer: scratch::train::Trainer<F, Box<dyn scratch::optim::Optimizer<F>>>,
}

impl<F: TorchFloat> LanguageModel for ScratchLm<F> {
    fn start(&mut self, _text: &[usize]) -> Result<()> {
        Ok(())
    }

    /// One-hot inputs `(batch, steps, vocab)` and class-index targets `(batch, steps)`.
    fn step(&mut self, batch: &Batch<'_>, iteration: usize) -> Result<f64> {
        let (rows, steps) = (batch.starts.len(), batch.steps);
        let (inputs, targets) = CharWindows::at(batch.text, batch.starts, steps)?;
        let x = one_hot::<F>(&inputs, rows, batch.vocab)?;
        let y = ndarray::Array2::from_shape_fn((rows, steps), |(b, t)| F::cast(targets[b * steps + t] as f64));
        Ok(self.trainer.train_batch(&x, &y, (1, iteration))?)
    }

    fn loss(&mut self, x: &Array3<f32>, y: &Array3<f32>) -> Result<f64> {
        let net = &mut self.trainer.net;
        net.reset_state();
        let prediction = net.forward(&x.mapv(|v| F::cast(f64::from(v))), Mode::Eval)?;
        let loss = net.loss_on(&prediction, &y.mapv(|v| F::cast(f64::from(v))))?.as_f64();
        net.reset_state();
        Ok(loss)
    }

    fn sampler(&self, opts: &LmOptions, vocab: usize) -> Result<NextScores> {
        let spec = network_with_state(opts, vocab, StateMode::Carry);
        let mut net = NeuralNetwork::<F>::from_spec(&spec, LOSS.build::<F>(), &mut RandomState::new(opts.seed))?;
        net.load_named(&self.trainer.net.named_parameters())?;
        Ok(Box::new(move |x| {
            Ok(net.forward(&x.mapv(|v| F::cast(f64::from(v))), Mode::Eval)?.mapv(|v| v.as_f64() as f32))
        }))
    }

    fn save(&self, path: &Path) -> Result<()> {
        Ok(self.trainer.net.save(path)?)
    }
}

struct TorchLm {
    trainer: torch::train::Trainer<Box<dyn torch::optim::Optimizer>>,
    /// The training text, on the network's device.
    text: Option<Tensor>,
}

/// Character indices as a tensor of `int64`.
fn indices(v: &[usize]) -> Tensor {
    Tensor::from_slice(&v.iter().map(|&i| i as i64).collect::<Vec<_>>())
}

impl LanguageModel for TorchLm {
    fn start(&mut self, text: &[usize]) -> Result<()> {
        self.text = Some(torch::sync::upload(&indices(text), self.trainer.net.device())?);
        Ok(())
    }

    /// The batch's windows gathered from the text on the device (only the window starts are copied
    /// from the host), one-hot inputs and class-index targets.
    fn step(&mut self, batch: &Batch<'_>, iteration: usize) -> Result<f64> {
        let text = self.text.as_ref().ok_or_else(|| anyhow::anyhow!("step before start"))?;
        let (rows, steps) = (batch.starts.len() as i64, batch.steps as i64);
        let device = text.device();
        let starts = torch::sync::upload(&indices(batch.starts), device)?;
        let positions = starts.unsqueeze(1) + Tensor::arange(steps + 1, (tch::Kind::Int64, device));
        let windows = text.index_select(0, &positions.flatten(0, -1)).reshape([rows, steps + 1]);
        let classes = Tensor::arange(batch.vocab as i64, (tch::Kind::Int64, device));
        let x = windows.narrow(1, 0, steps).unsqueeze(-1).eq_tensor(&classes).to_kind(self.trainer.net.kind());
        Ok(self.trainer.train_batch(&x, &windows.narrow(1, 1, steps), (1, iteration))?)
    }

    fn loss(&mut self, x: &Array3<f32>, y: &Array3<f32>) -> Result<f64> {
        let trainer = &mut self.trainer;
        trainer.reset_state();
        let (x, y) = (to_tensor(&x.clone().into_dyn()), to_tensor(&y.clone().into_dyn()));
        let (_, loss) = tch::no_grad(|| trainer.forward_loss(&x, &y, false))?;
        trainer.reset_state();
        Ok(loss.double_value(&[]))
    }

    fn sampler(&self, opts: &LmOptions, vocab: usize) -> Result<NextScores> {
        let spec = network_with_state(opts, vocab, StateMode::Carry);
        let net = &self.trainer.net;
        let mut vs = tch::nn::VarStore::new(net.device());
        vs.set_kind(net.kind());
        let copy = torch::Net::new(vs.root(), &spec, &mut RandomState::new(opts.seed))?;
        copy.load_named::<f64>(&net.named_arrays::<f64>())?;
        let mut state = torch::state::NetState::new();
        Ok(Box::new(move |x| {
            let x = copy.input(&to_tensor(&x.clone().into_dyn()));
            let (scores, next) = tch::no_grad(|| copy.f_forward_state(&x, &state, false))?;
            state = next;
            Ok(to_array::<f32>(&scores))
        }))
    }

    fn save(&self, path: &Path) -> Result<()> {
        Ok(self.trainer.net.save(path)?)
    }
}

/// The mean validation loss over (at most [`VALIDATION_CHARS`] of) the held-out text, in chunks.
fn validate(model: &mut dyn LanguageModel, corpus: &Corpus, steps: usize) -> Result<f64> {
    let text = &corpus.validation[..corpus.validation.len().min(VALIDATION_CHARS)];
    let (inputs, targets, windows) = CharWindows::evaluation(text, steps);
    let vocab = corpus.vocab.len();
    let x = one_hot::<f32>(&inputs, windows, vocab)?;
    let y = one_hot::<f32>(&targets, windows, vocab)?;
    let (mut total, chunk) = (0.0, 250);
    for start in (0..windows).step_by(chunk) {
        let end = (start + chunk).min(windows);
        let range = s![start..end, .., ..];
        total += model.loss(&x.slice(range).to_owned(), &y.slice(range).to_owned())? * (end - start) as f64;
    }
    Ok(total / windows as f64)
}

/// Generates `opts.sample_length` characters after `opts.prompt`, one at a time.
fn sample(model: &dyn LanguageModel, corpus: &Corpus, opts: &LmOptions) -> Result<String> {
    let vocab = corpus.vocab.len();
    let mut next_scores = model.sampler(opts, vocab)?;
    let mut rng = RandomState::new(opts.seed);
    let mut out = opts.prompt.clone();
    let mut scores = next_scores(&one_hot::<f32>(&corpus.vocab.encode(&opts.prompt)?, 1, vocab)?)?;
    for _ in 0..opts.sample_length {
        let last = scores.index_axis(Axis(0), 0);
        let last = last.index_axis(Axis(0), last.shape()[0] - 1);
        let c = sample_index(last.view().into_dimensionality()?, opts.temperature, &mut rng)?;
        out.push(corpus.vocab.char(c)?);
        scores = next_scores(&one_hot::<f32>(&[c], 1, vocab)?)?;
    }
    Ok(out)
}

/// A progress bar over `iterations` training iterations (hidden when `quiet`).
pub(crate) fn progress_bar(label: &str, iterations: usize, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(iterations as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} iterations {elapsed} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}

/// Prints `line` above the progress bar (nothing when `quiet`).
pub(crate) fn say(bar: &ProgressBar, quiet: bool, line: String) {
    if quiet {
    } else if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// Trains one engine's model and samples from it. Training stops with [`scratch::Error::Diverged`] by
/// the rule of [`scratch::train::divergence`], the model's validation loss before training being the
/// first evaluation (so that a run of a few iterations is judged too).
fn train(
    engine: Engine,
    model: &mut dyn LanguageModel,
    corpus: &Corpus,
    opts: &LmOptions,
    outputs: &Outputs,
) -> Result<LmResult> {
    let vocab = corpus.vocab.len();
    let mut windows = if opts.book_windows {
        CharWindows::new(corpus.train.clone(), opts.batch, opts.steps)?
    } else {
        CharWindows::random(corpus.train.clone(), opts.batch, opts.steps, opts.seed)?
    };
    let bar = progress_bar(engine.name(), opts.iterations, opts.quiet);
    let mut divergence = Divergence::default();
    let initial_validation = validate(model, corpus, opts.steps)?;
    divergence.evaluation(initial_validation, 1, 0)?;
    say(&bar, opts.quiet, format!("{engine:>16} before training: validation loss {initial_validation:.4} nats/char"));
    let mut result = LmResult {
        engine,
        initial_validation,
        train_losses: Vec::new(),
        validations: Vec::new(),
        train_time: Duration::ZERO,
        sample: String::new(),
    };
    model.start(&corpus.train)?;
    let mut smoothed = None;
    for iteration in 1..=opts.iterations {
        let starts = windows.next_starts();
        let batch = Batch { text: &corpus.train, starts: &starts, steps: opts.steps, vocab };
        let start = Instant::now();
        let loss = model.step(&batch, iteration)?;
        result.train_time += start.elapsed();
        divergence.batch(loss, 1, iteration)?;
        result.train_losses.push(loss);
        let s = smoothed.map_or(loss, |s: f64| 0.98 * s + 0.02 * loss);
        smoothed = Some(s);
        bar.inc(1);
        bar.set_message(format!("loss {s:.3}"));
        if iteration % opts.eval_every == 0 || iteration == opts.iterations {
            let v = validate(model, corpus, opts.steps)?;
            divergence.evaluation(v, 1, iteration)?;
            result.validations.push((iteration, v));
            say(&bar, opts.quiet, format!("{engine:>16} iteration {iteration}: validation loss {v:.4} nats/char"));
        }
    }
    bar.finish_and_clear();
    result.sample = sample(model, corpus, opts)?;
    model.save(&outputs.checkpoint(engine))?;
    Ok(result)
}

/// Trains one engine's copy of the network.
fn train_engine<F: TorchFloat>(
    engine: Engine,
    corpus: &Corpus,
    opts: &LmOptions,
    outputs: &Outputs,
) -> Result<LmResult> {
    let spec = network(opts, corpus.vocab.len());
    let mut net = Network::<F>::new(engine, (&spec, LOSS), opts.seed, opts.device, outputs.experiment())?;
    if let Some(path) = &opts.resume {
        net.load(path)?;
    }
    let mut model = net.into_model(&LanguageModels, &opts.optimizer)?;
    train(engine, model.as_mut(), corpus, opts, outputs)
}

/// The language model in each engine.
struct LanguageModels;

impl<F: TorchFloat> Models<F> for LanguageModels {
    type Model = dyn LanguageModel;

    fn scratch(&self, net: NeuralNetwork<F>, optim: Box<dyn scratch::optim::Optimizer<F>>) -> Box<dyn LanguageModel> {
        Box::new(ScratchLm { trainer: scratch::train::Trainer::new(net, optim) })
    }

    fn torch(
        &self,
        net: torch::Net,
        loss: LossSpec,
        optim: Box<dyn torch::optim::Optimizer>,
    ) -> Box<dyn LanguageModel> {
        Box::new(TorchLm { trainer: torch::train::Trainer::new(net, loss, optim), text: None })
    }
}

/// Trains the language model with the selected engines in `F` on `corpus` (options already fitted to it
/// by [`fit_to`]), saving each engine's final model; returns each engine's result.
///
/// # Errors
/// An unavailable device, a checkpoint that does not fit, a divergence, or a file that cannot be
/// written.
pub fn train_all<F: TorchFloat>(corpus: &Corpus, opts: &LmOptions, outputs: &Outputs) -> Result<Vec<LmResult>> {
    outputs.create_dir()?;
    let mut results = Vec::new();
    for engine in opts.engines.iter() {
        let result = train_engine::<F>(engine, corpus, opts, outputs);
        results.push(result.with_context(|| format!("{}: the {engine} engine", outputs.experiment()))?);
    }
    Ok(results)
}

/// `text` as a person reads it: control characters escaped (`\n`), every other character as it is.
fn visible(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// Checks that every character of `prompt` is in `vocab`.
///
/// # Errors
/// Naming each missing character once, in order, and the vocabulary to choose from.
pub(crate) fn check_prompt(prompt: &str, vocab: &Vocabulary) -> Result<()> {
    let mut missing: Vec<char> = Vec::new();
    for c in prompt.chars().filter(|&c| vocab.index(c).is_none()) {
        if !missing.contains(&c) {
            missing.push(c);
        }
    }
    if !missing.is_empty() {
        let missing: Vec<String> = missing.iter().map(|&c| format!("'{}'", visible(&c.to_string()))).collect();
        let vocabulary = visible(&vocab.chars().iter().collect::<String>());
        bail!(
            "--prompt \"{}\": {} not in the vocabulary of the training text; use only its {} characters, \"{vocabulary}\"",
            visible(prompt),
            missing.join(", "),
            vocab.len()
        );
    }
    Ok(())
}

/// `opts` fitted to `corpus`: a hidden size of 0 becomes the vocabulary's size, and 0 iterations one
/// epoch of the book's windows.
///
/// # Errors
/// A corpus too short for one batch of training windows or for one validation window, or a prompt
/// with a character outside the corpus's vocabulary: each found before anything trains, with what to
/// change.
pub fn fit_to(opts: &LmOptions, corpus: &Corpus) -> Result<LmOptions> {
    let need = opts.batch + opts.steps + 1;
    if corpus.train.len() < need {
        bail!(
            "the corpus is too short: its training part has {} characters, and one batch of {} windows of {} \
             characters needs {need}; point --data at a folder holding the Shakespeare corpus \
             (text/shakespeare, which `make setup` downloads)",
            corpus.train.len(),
            opts.batch,
            opts.steps
        );
    }
    if corpus.validation.len() <= opts.steps {
        bail!(
            "the corpus is too short: its held-out part (the last {} %) has {} characters, and one validation \
             window of {} characters needs {}; point --data at a folder holding the Shakespeare corpus \
             (text/shakespeare, which `make setup` downloads)",
            opts.validation_share * 100.0,
            corpus.validation.len(),
            opts.steps,
            opts.steps + 1
        );
    }
    check_prompt(&opts.prompt, &corpus.vocab)?;
    let mut opts = opts.clone();
    if opts.hidden == 0 {
        opts.hidden = corpus.vocab.len();
    }
    if opts.iterations == 0 {
        // One epoch: the book's windows move on by a batch per iteration.
        opts.iterations = (corpus.train.len() - opts.steps - 1) / opts.batch;
    }
    Ok(opts)
}

/// The results as a table, with the book's number when it printed one for this experiment.
pub fn table(opts: &LmOptions, corpus: &Corpus, results: &[LmResult], book: Option<f64>) -> Table {
    let mut headers = vec!["engine", "validation nats/char", "best"];
    headers.extend(book.map(|_| "book"));
    headers.push("s/iteration");
    let mut t = Table::new(
        format!(
            "Character language model: {} x {} {} on {} training characters (vocabulary {}), {} iterations of {} x {}",
            opts.layers,
            opts.hidden,
            opts.cell.name(),
            corpus.train.len(),
            corpus.vocab.len(),
            opts.iterations,
            opts.batch,
            opts.steps
        ),
        &headers,
    );
    for r in results {
        let best = r.validations.iter().map(|v| v.1).fold(f64::INFINITY, f64::min);
        let mut row = vec![r.engine.to_string(), format!("{:.4}", r.final_validation()), format!("{best:.4}")];
        row.extend(book.map(|b| format!("{b}")));
        row.push(format!("{:.4}", r.seconds_per_iteration()));
        t.push(row);
    }
    t
}

/// Plots the training loss (averaged over the evaluation interval) and the validation loss of each
/// engine against the iteration, into the experiment's `<experiment>-loss.png`.
///
/// # Errors
/// If the file cannot be written.
pub fn plot(out: &Outputs, opts: &LmOptions, results: &[LmResult]) -> Result<PathBuf> {
    let path = out.loss_chart();
    let mut series = Vec::new();
    for r in results {
        series.push(Series::smoothed(
            format!("{} training", r.engine),
            &r.train_losses,
            opts.eval_every.max(1) / 5 + 1,
        ));
        series.push(Series::new(
            format!("{} validation", r.engine),
            r.validations.iter().map(|&(i, v)| (i as f64, v)).collect(),
        ));
    }
    line_chart(
        &path,
        &Chart {
            title: format!("{}: character {} on Shakespeare (nats per character)", out.experiment(), opts.cell.name()),
            x_label: "iteration".into(),
            y_label: "loss".into(),
            series,
            log_y: false,
        },
    )?;
    Ok(path)
}

/// The metrics of a run: each engine's validation curve, its training loss averaged over each
/// evaluation interval, and its final numbers.
pub fn metrics(name: &str, opts: &LmOptions, dtype: &str, results: &[LmResult]) -> crate::metrics::Metrics {
    let mut m = crate::metrics::Metrics::new(name, dtype, "iteration");
    for r in results {
        for (i, chunk) in r.train_losses.chunks(opts.eval_every.max(1)).enumerate() {
            m.curves.push(crate::metrics::Point {
                engine: r.engine.to_string(),
                split: "train",
                at: (i * opts.eval_every.max(1) + chunk.len()) as f64,
                loss: chunk.iter().sum::<f64>() / chunk.len() as f64,
                accuracy: None,
            });
        }
        for &(at, loss) in &r.validations {
            m.curves.push(crate::metrics::Point {
                engine: r.engine.to_string(),
                split: "validation",
                at: at as f64,
                loss,
                accuracy: None,
            });
        }
        let best = r.validations.iter().map(|v| v.1).fold(f64::INFINITY, f64::min);
        m.summary(
            r.engine.name(),
            &[
                ("initial_validation_nats_per_char", r.initial_validation),
                ("final_validation_nats_per_char", r.final_validation()),
                ("best_validation_nats_per_char", best),
                ("iterations", r.train_losses.len() as f64),
                ("seconds_per_iteration", r.seconds_per_iteration()),
            ],
        );
    }
    m
}

/// The files a language model writes: its loss curves, its metrics, and each engine's final model.
pub fn files(out: &Outputs, engines: Engines) -> Vec<PathBuf> {
    let mut files = vec![out.loss_chart()];
    files.extend(out.metrics());
    files.extend(engines.iter().map(|engine| out.checkpoint(engine)));
    files
}

/// A language model with its corpus loaded and its options checked against it.
struct LmRun<F> {
    experiment: &'static Experiment,
    corpus: Corpus,
    opts: LmOptions,
    outputs: Outputs,
    dtype: std::marker::PhantomData<F>,
}

impl<F: TorchFloat> Prepared for LmRun<F> {
    fn run(self: Box<Self>) -> Result<Ran> {
        let (corpus, opts, outputs) = (&self.corpus, &self.opts, &self.outputs);
        let results = train_all::<F>(corpus, opts, outputs)?;
        for r in &results {
            println!("--- {} sample (temperature {}) ---\n{}\n", r.engine, opts.temperature, r.sample);
        }
        let book = self.experiment.book.and_then(|b| b.printed.value());
        println!("{}", table(opts, corpus, &results, book).render());
        let mut files = vec![plot(outputs, opts, &results)?];
        files.extend(metrics(self.experiment.name, opts, F::NAME, &results).write(outputs)?);
        files.extend(opts.engines.iter().map(|engine| outputs.checkpoint(engine)));
        Ok(Ran { files, checks: Vec::new() })
    }
}

/// Loads the corpus and checks the options against it (its length, the prompt's characters, a
/// checkpoint to resume from), from the experiment's `defaults` and the options given.
///
/// # Errors
/// A missing or unreadable corpus, or an option that does not fit it.
pub fn prepare(e: &'static Experiment, defaults: LmOptions, settings: Settings) -> Result<Box<dyn Prepared>> {
    match settings.options.dtype() {
        Dtype::F32 => prepare_typed::<f32>(e, defaults, settings),
        Dtype::F64 => prepare_typed::<f64>(e, defaults, settings),
    }
}

fn prepare_typed<F: TorchFloat>(
    e: &'static Experiment,
    defaults: LmOptions,
    settings: Settings,
) -> Result<Box<dyn Prepared>> {
    let o = &settings.options;
    let opts = LmOptions {
        engines: o.engines(),
        hidden: o.count(Opt::Hidden).unwrap_or(defaults.hidden),
        layers: o.count(Opt::Layers).unwrap_or(defaults.layers),
        iterations: o.count(Opt::Iterations).unwrap_or(defaults.iterations),
        optimizer: OptimSpec { lr: o.number(Opt::Lr).unwrap_or(defaults.optimizer.lr), ..defaults.optimizer },
        book_windows: o.flag(Opt::BookWindows) || defaults.book_windows,
        seed: o.seed().unwrap_or(defaults.seed),
        temperature: o.number(Opt::Temperature).unwrap_or(defaults.temperature),
        prompt: o.prompt().map_or_else(|| defaults.prompt.clone(), str::to_string),
        quiet: settings.quiet,
        device: o.device(),
        resume: o.resume().map(std::path::Path::to_path_buf),
        ..defaults
    };
    let corpus = corpus(&settings.data, &WORKS, opts.corpus_chars, opts.validation_share)
        .context("loading the Shakespeare corpus")?;
    let opts = fit_to(&opts, &corpus)?;
    opts.optimizer.validate().context("the optimizer")?;
    let spec = network(&opts, corpus.vocab.len());
    spec.check_memory().context("the network")?;
    spec.check_step(opts.batch, std::mem::size_of::<F>()).context("the network")?;
    if let Some(path) = &opts.resume {
        resume::check::<F>(path, &network(&opts, corpus.vocab.len()), LOSS, e.name)?;
    }
    let outputs = settings.outputs;
    Ok(Box::new(LmRun::<F> { experiment: e, corpus, opts, outputs, dtype: std::marker::PhantomData }))
}
