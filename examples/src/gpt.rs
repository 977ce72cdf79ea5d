//! Chapter 8, beyond the book: a character GPT on the Shakespeare corpus and split of chapter 6,
//! trained as nanoGPT trains its small CPU model, in both engines from the same initial weights on the
//! same batches. It reports the validation loss in nats per character over every full window of the
//! held-out text, beside the chapter-6 LSTM's when that ran, seconds per iteration, and a sample of
//! each engine's model, drawn with its key-value cache.
//!
//! The loop is written once, over `Model`; each engine is one implementation of it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ndarray::{ArrayD, IxDyn};
use scratch::network::NeuralNetwork;
use scratch::ops::Mode;
use scratch::optim::{AdamConfig, Clip, Decay, Decayed, Optimizer as _, WeightDecay};
use scratch::rng::RandomState;
use scratch::rnn::Sampling;
use scratch::spec::gpt::{gpt, GptConfig};
use scratch::spec::{LossSpec, NetSpec, OptimSpec};
use scratch::train::Divergence;
use tch::{Kind, Tensor};
use torch::convert::TorchFloat;
use torch::optim::Optimizer as _;

use crate::engine::{Engine, Engines};
use crate::experiments::options::Dtype;
use crate::experiments::{resume, Experiment, Opt, Outputs, Prepared, Ran, Settings};
use crate::language_model::{check_prompt, corpus, progress_bar, say, Corpus, LmResult, WORKS};
use crate::network::{Models, Network};
use crate::plot::{line_chart, Chart, Series};
use crate::table::Table;

/// The options `ch8-gpt` takes: `--hidden` is the width of the residual stream and `--layers` the
/// number of blocks. nanoGPT's GPU configuration of the same model is `--layers 6 --heads 6 --hidden
/// 384 --context 256 --batch 64 --dropout 0.2`.
pub const OPTIONS: &[Opt] = &[
    Opt::Engine,
    Opt::Dtype,
    Opt::Seed,
    Opt::Device,
    Opt::Resume,
    Opt::Iterations,
    Opt::Hidden,
    Opt::Layers,
    Opt::Heads,
    Opt::Context,
    Opt::Batch,
    Opt::Dropout,
    Opt::Lr,
    Opt::Temperature,
    Opt::TopK,
    Opt::Prompt,
    Opt::MaxSeconds,
];

/// The loss: the mean cross-entropy per character.
const LOSS: LossSpec = LossSpec::CROSS_ENTROPY;

/// How the GPT is trained: nanoGPT's recipe for its small Shakespeare model on a CPU by default.
#[derive(Clone, Debug)]
pub struct GptOptions {
    /// Which engines.
    pub engines: Engines,
    /// The network's sizes; its vocabulary is set from the corpus.
    pub config: GptConfig,
    /// Windows per batch.
    pub batch: usize,
    /// Training iterations (batches).
    pub iterations: usize,
    /// Iterations between validations.
    pub eval_every: usize,
    /// The peak learning rate, after the warm-up.
    pub lr: f64,
    /// The floor the cosine decays the rate to, at the last iteration.
    pub min_lr: f64,
    /// Iterations of linear warm-up.
    pub warmup: usize,
    /// AdamW's β₂.
    pub beta2: f64,
    /// AdamW's decoupled weight decay, on the matrices only.
    pub weight_decay: f64,
    /// The global norm gradients are clipped to.
    pub clip: f64,
    /// Seed of the weights, the batches and the samples.
    pub seed: u32,
    /// How the samples are drawn.
    pub sampling: Sampling,
    /// Characters per sample.
    pub sample_length: usize,
    /// The text the samples start from.
    pub prompt: String,
    /// No progress output.
    pub quiet: bool,
    /// Where the torch engine computes.
    pub device: torch::Device,
    /// A checkpoint (of either engine, or of nanoGPT's `GPT` in safetensors) to start from.
    pub resume: Option<PathBuf>,
    /// Stop training after this long (the schedule stays that of `iterations`).
    pub time_limit: Option<Duration>,
}

impl Default for GptOptions {
    fn default() -> Self {
        GptOptions {
            engines: Engines::Both,
            config: GptConfig::cpu(0),
            batch: 12,
            iterations: 5000,
            eval_every: 500,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup: 100,
            beta2: 0.99,
            weight_decay: 0.1,
            clip: 1.0,
            seed: 1337,
            sampling: Sampling { temperature: 0.8, top_k: Some(200) },
            sample_length: 300,
            prompt: "ROMEO.".into(),
            quiet: false,
            device: torch::Device::Cpu,
            resume: None,
            time_limit: None,
        }
    }
}

impl GptOptions {
    /// The optimizer: AdamW over two groups (weight decay on the matrices), the rate warmed up then
    /// decayed by a cosine to its floor at the last iteration, gradients clipped.
    pub fn optimizer(&self) -> OptimSpec {
        let adam = AdamConfig {
            beta2: self.beta2,
            weight_decay: WeightDecay::Decoupled(self.weight_decay),
            decayed: Decayed::Matrices,
            ..Default::default()
        };
        let decay_steps = self.iterations.max(self.warmup);
        OptimSpec::adam(self.lr, adam)
            .decay(Decay::WarmupCosine { warmup: self.warmup, decay_steps, final_lr: self.min_lr })
            .clip(Clip::Norm(self.clip))
    }

    /// The network.
    pub fn network(&self) -> NetSpec {
        gpt(&self.config)
    }
}

/// A batch of windows of the text: `batch` rows of `context` token indices and their targets, each
/// the next token.
struct Windows {
    x: Vec<usize>,
    y: Vec<usize>,
    rows: usize,
}

/// `batch` windows of `context` characters at random places in `text`, from `rng`.
fn random_windows(text: &[usize], batch: usize, context: usize, rng: &mut RandomState) -> Result<Windows> {
    let last = (text.len() - context - 1) as i64;
    let (mut x, mut y) = (Vec::with_capacity(batch * context), Vec::with_capacity(batch * context));
    for _ in 0..batch {
        let start = rng.randint(0, last + 1)? as usize;
        x.extend_from_slice(&text[start..start + context]);
        y.extend_from_slice(&text[start + 1..start + context + 1]);
    }
    Ok(Windows { x, y, rows: batch })
}

/// Every full window of `context` characters of `text`, one after the other, and their targets.
fn all_windows(text: &[usize], context: usize) -> Windows {
    let rows = (text.len() - 1) / context;
    let n = rows * context;
    Windows { x: text[..n].to_vec(), y: text[1..=n].to_vec(), rows }
}

/// One engine's GPT and optimizer, as the training loop drives it.
trait Model {
    /// One update on `windows`; the training loss.
    fn step(&mut self, windows: &Windows) -> Result<f64>;
    /// The mean loss over `windows` in evaluation mode.
    fn loss(&mut self, windows: &Windows) -> Result<f64>;
    /// `count` characters after `prompt`, drawn with the model's key-value cache.
    fn generate(&self, prompt: &[usize], count: usize, opts: &GptOptions) -> Result<Vec<usize>>;
    /// Saves the parameters.
    fn save(&self, path: &Path) -> Result<()>;
}

/// Windows at a time the evaluation computes: bounds its memory.
const EVAL_ROWS: usize = 64;

/// The from-scratch engine's GPT.
struct ScratchGpt<F: TorchFloat> {
    net: NeuralNetwork<F>,
    optim: Box<dyn scratch::optim::Optimizer<F>>,
    config: GptConfig,
}

/// Token indices `(rows, context)` as the from-scratch engine reads them: whole numbers in `F`.
fn indices<F: TorchFloat>(tokens: &[usize], rows: usize) -> Result<ArrayD<F>> {
    let values = tokens.iter().map(|&t| F::cast(t as f64)).collect();
    Ok(ArrayD::from_shape_vec(IxDyn(&[rows, tokens.len() / rows]), values)?)
}

impl<F: TorchFloat> Model for ScratchGpt<F> {
    fn step(&mut self, w: &Windows) -> Result<f64> {
        let loss = self.net.train_batch(&indices::<F>(&w.x, w.rows)?, &indices::<F>(&w.y, w.rows)?)?.as_f64();
        self.optim.step(&mut self.net.params_mut())?;
        self.optim.end_step();
        Ok(loss)
    }

    fn loss(&mut self, w: &Windows) -> Result<f64> {
        let per_row = w.x.len() / w.rows;
        let mut total = 0.0;
        for (x, y) in w.x.chunks(EVAL_ROWS * per_row).zip(w.y.chunks(EVAL_ROWS * per_row)) {
            let rows = x.len() / per_row;
            let (_, loss) = self.net.forward_loss(&indices::<F>(x, rows)?, &indices::<F>(y, rows)?, Mode::Eval)?;
            total += loss.as_f64() * rows as f64;
        }
        Ok(total / w.rows as f64)
    }

    fn generate(&self, prompt: &[usize], count: usize, opts: &GptOptions) -> Result<Vec<usize>> {
        let mut generator = scratch::transformer::Generator::new(&self.net, &self.config)?;
        Ok(generator.generate(prompt, count, &opts.sampling, &mut RandomState::new(opts.seed))?)
    }

    fn save(&self, path: &Path) -> Result<()> {
        Ok(self.net.save(path)?)
    }
}

/// The libtorch engine's GPT: the batch's token indices uploaded once per step, one read (the loss).
struct TorchGpt {
    net: torch::Net,
    optim: Box<dyn torch::optim::Optimizer>,
    config: GptConfig,
}

impl TorchGpt {
    fn tokens(&self, tokens: &[usize], rows: usize) -> Result<Tensor> {
        let values: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
        let host = Tensor::from_slice(&values).view([rows as i64, -1]);
        Ok(torch::sync::upload(&host, self.net.device())?)
    }
}

impl Model for TorchGpt {
    fn step(&mut self, w: &Windows) -> Result<f64> {
        let (x, y) = (self.tokens(&w.x, w.rows)?, self.tokens(&w.y, w.rows)?);
        self.net.zero_grad();
        let loss = torch::loss::loss(LOSS, &self.net.f_forward_t(&x, true)?, &y)?;
        loss.backward();
        self.optim.step(&self.net.trainable_parameters())?;
        self.optim.end_step();
        Ok(torch::sync::read(&loss)?[0])
    }

    fn loss(&mut self, w: &Windows) -> Result<f64> {
        let per_row = w.x.len() / w.rows;
        let mut total = Tensor::zeros([], (Kind::Double, self.net.device()));
        for (x, y) in w.x.chunks(EVAL_ROWS * per_row).zip(w.y.chunks(EVAL_ROWS * per_row)) {
            let rows = x.len() / per_row;
            let (x, y) = (self.tokens(x, rows)?, self.tokens(y, rows)?);
            let loss = tch::no_grad(|| -> Result<Tensor> {
                Ok(torch::loss::loss(LOSS, &self.net.f_forward_t(&x, false)?, &y)?)
            })?;
            total += loss.to_kind(Kind::Double) * rows as f64;
        }
        Ok(torch::sync::read(&total)?[0] / w.rows as f64)
    }

    fn generate(&self, prompt: &[usize], count: usize, opts: &GptOptions) -> Result<Vec<usize>> {
        let mut generator = torch::generate::Generator::new(&self.net, &self.config)?;
        Ok(generator.generate(prompt, count, &opts.sampling, &mut RandomState::new(opts.seed))?)
    }

    fn save(&self, path: &Path) -> Result<()> {
        Ok(self.net.save(path)?)
    }
}

/// Training tokens (characters) per second of a run: every window's positions of every iteration.
fn tokens_per_second(result: &LmResult, opts: &GptOptions) -> f64 {
    let tokens = result.train_losses.len() * opts.batch * opts.config.context;
    tokens as f64 / result.train_time.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// Trains one engine's model: the batches drawn from the options' seed, the same in every engine;
/// validations before training and every `eval_every` iterations; then a sample. Training stops with
/// a divergence by the rule of [`scratch::train::divergence`].
fn train(engine: Engine, model: &mut dyn Model, corpus: &Corpus, opts: &GptOptions, out: &Outputs) -> Result<LmResult> {
    let context = opts.config.context;
    let validation = all_windows(&corpus.validation, context);
    let bar = progress_bar(engine.name(), opts.iterations, opts.quiet);
    let mut divergence = Divergence::default();
    let initial = model.loss(&validation)?;
    divergence.evaluation(initial, 1, 0)?;
    say(&bar, opts.quiet, format!("{engine:>16} before training: validation loss {initial:.4} nats/char"));
    let mut result = LmResult {
        engine,
        initial_validation: initial,
        train_losses: Vec::with_capacity(opts.iterations),
        validations: vec![(0, initial)],
        train_time: Duration::ZERO,
        sample: String::new(),
    };
    let mut rng = RandomState::new(opts.seed);
    for iteration in 1..=opts.iterations {
        let windows = random_windows(&corpus.train, opts.batch, context, &mut rng)?;
        let start = Instant::now();
        let loss = model.step(&windows)?;
        result.train_time += start.elapsed();
        divergence.batch(loss, 1, iteration)?;
        result.train_losses.push(loss);
        bar.inc(1);
        bar.set_message(format!("loss {loss:.3}"));
        let out_of_time = opts.time_limit.is_some_and(|limit| result.train_time >= limit);
        if iteration % opts.eval_every == 0 || iteration == opts.iterations || out_of_time {
            let v = model.loss(&validation)?;
            divergence.evaluation(v, 1, iteration)?;
            result.validations.push((iteration, v));
            say(&bar, opts.quiet, format!("{engine:>16} iteration {iteration}: validation loss {v:.4} nats/char"));
        }
        if out_of_time {
            say(&bar, opts.quiet, format!("{engine:>16} stopped after {iteration} iterations: --max-seconds"));
            break;
        }
    }
    bar.finish_and_clear();
    let prompt = corpus.vocab.encode(&opts.prompt)?;
    let drawn = model.generate(&prompt, opts.sample_length, opts)?;
    result.sample = opts.prompt.clone() + &corpus.vocab.decode(&drawn)?;
    model.save(&out.checkpoint(engine))?;
    Ok(result)
}

/// Builds and trains one engine's GPT in `F`.
fn train_engine<F: TorchFloat>(engine: Engine, corpus: &Corpus, opts: &GptOptions, out: &Outputs) -> Result<LmResult> {
    let spec = opts.network();
    let mut net = Network::<F>::new(engine, (&spec, LOSS), opts.seed, opts.device, out.experiment())?;
    if let Some(path) = &opts.resume {
        net.load(path)?;
    }
    let mut model = net.into_model(&Gpts(opts.config), &opts.optimizer())?;
    train(engine, model.as_mut(), corpus, opts, out)
}

/// The GPT of a configuration in each engine.
struct Gpts(GptConfig);

impl<F: TorchFloat> Models<F> for Gpts {
    type Model = dyn Model;

    fn scratch(&self, net: NeuralNetwork<F>, optim: Box<dyn scratch::optim::Optimizer<F>>) -> Box<dyn Model> {
        Box::new(ScratchGpt { net, optim, config: self.0 })
    }

    /// The loss is the experiment's own ([`LOSS`]).
    fn torch(&self, net: torch::Net, _loss: LossSpec, optim: Box<dyn torch::optim::Optimizer>) -> Box<dyn Model> {
        Box::new(TorchGpt { net, optim, config: self.0 })
    }
}

/// The chapter-6 LSTM's last validation loss, if `dlfs run ch6-lstm` wrote its metrics beside ours.
fn lstm_validation(out: &Outputs) -> Option<f64> {
    let path = out.file("").with_file_name("ch6-lstm-metrics.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["summaries"].as_array()?.iter().find_map(|s| s["values"]["final_validation_nats_per_char"].as_f64())
}

/// The results as a table.
fn table(opts: &GptOptions, corpus: &Corpus, results: &[LmResult], lstm: Option<f64>) -> Table {
    let c = &opts.config;
    let mut t = Table::new(
        format!(
            "Character GPT: {} blocks of {} heads, width {}, context {}, on {} training characters (vocabulary {}), \
             {} iterations of {} windows; validation over every {}-character window of the {} held-out characters",
            c.layers,
            c.heads,
            c.width,
            c.context,
            corpus.train.len(),
            c.vocab,
            opts.iterations,
            opts.batch,
            c.context,
            corpus.validation.len()
        ),
        &["engine", "validation nats/char", "ch6-lstm", "iterations", "s/iteration", "tokens/s", "training time"],
    );
    for r in results {
        t.push(vec![
            r.engine.to_string(),
            format!("{:.4}", r.final_validation()),
            lstm.map_or_else(|| "(run ch6-lstm)".into(), |v| format!("{v:.4}")),
            r.train_losses.len().to_string(),
            format!("{:.4}", r.seconds_per_iteration()),
            format!("{:.0}", tokens_per_second(r, opts)),
            format!("{:.0} s", r.train_time.as_secs_f64()),
        ]);
    }
    t
}

/// The training loss (smoothed) and validation loss of each engine against the iteration.
fn plot(out: &Outputs, opts: &GptOptions, results: &[LmResult]) -> Result<PathBuf> {
    let path = out.loss_chart();
    let mut series = Vec::new();
    for r in results {
        series.push(Series::smoothed(format!("{} training", r.engine), &r.train_losses, opts.eval_every / 5 + 1));
        series.push(Series::new(
            format!("{} validation", r.engine),
            r.validations.iter().map(|&(i, v)| (i as f64, v)).collect(),
        ));
    }
    line_chart(
        &path,
        &Chart {
            title: format!("{}: character GPT on Shakespeare (nats per character)", out.experiment()),
            x_label: "iteration".into(),
            y_label: "loss".into(),
            series,
            log_y: false,
        },
    )?;
    Ok(path)
}

/// The metrics of a run: each engine's curves and final numbers.
fn metrics(name: &str, opts: &GptOptions, dtype: &str, results: &[LmResult]) -> crate::metrics::Metrics {
    let mut m = crate::metrics::Metrics::new(name, dtype, "iteration");
    let every = opts.eval_every.max(1);
    for r in results {
        for (i, chunk) in r.train_losses.chunks(every).enumerate() {
            m.curves.push(crate::metrics::Point {
                engine: r.engine.to_string(),
                split: "train",
                at: (i * every + chunk.len()) as f64,
                loss: chunk.iter().sum::<f64>() / chunk.len() as f64,
                accuracy: None,
            });
        }
        for &(at, loss) in &r.validations {
            let engine = r.engine.to_string();
            m.curves.push(crate::metrics::Point { engine, split: "validation", at: at as f64, loss, accuracy: None });
        }
        m.summary(
            r.engine.name(),
            &[
                ("final_validation_nats_per_char", r.final_validation()),
                ("iterations", r.train_losses.len() as f64),
                ("seconds_per_iteration", r.seconds_per_iteration()),
                ("tokens_per_second", tokens_per_second(r, opts)),
            ],
        );
    }
    m
}

/// The files `ch8-gpt` writes: its loss curves, its metrics, and each engine's final model.
pub fn files(out: &Outputs, engines: Engines) -> Vec<PathBuf> {
    let mut files = vec![out.loss_chart()];
    files.extend(out.metrics());
    files.extend(engines.iter().map(|engine| out.checkpoint(engine)));
    files
}

/// The GPT with its corpus loaded and its options checked against it.
struct GptRun<F> {
    experiment: &'static Experiment,
    corpus: Corpus,
    opts: GptOptions,
    outputs: Outputs,
    dtype: std::marker::PhantomData<F>,
}

impl<F: TorchFloat> Prepared for GptRun<F> {
    fn run(self: Box<Self>) -> Result<Ran> {
        let (corpus, opts, outputs) = (&self.corpus, &self.opts, &self.outputs);
        outputs.create_dir()?;
        let mut results = Vec::new();
        for engine in opts.engines.iter() {
            let result = train_engine::<F>(engine, corpus, opts, outputs)
                .with_context(|| format!("{}: the {engine} engine", outputs.experiment()))?;
            results.push(result);
        }
        for r in &results {
            let s = &opts.sampling;
            let top = s.top_k.map_or_else(|| "every character".into(), |k| format!("the top {k}"));
            println!("--- {} sample (temperature {}, from {top}) ---\n{}\n", r.engine, s.temperature, r.sample);
        }
        println!("{}", table(opts, corpus, &results, lstm_validation(outputs)).render());
        let mut files = vec![plot(outputs, opts, &results)?];
        files.extend(metrics(self.experiment.name, opts, F::NAME, &results).write(outputs)?);
        files.extend(opts.engines.iter().map(|engine| outputs.checkpoint(engine)));
        Ok(Ran { files, checks: Vec::new() })
    }
}

/// Loads the corpus and checks the options against it (its length, the prompt's characters, a
/// checkpoint to resume from).
///
/// # Errors
/// A missing or unreadable corpus, or an option that does not fit it.
pub fn prepare(e: &'static Experiment, settings: Settings) -> Result<Box<dyn Prepared>> {
    match settings.options.dtype() {
        Dtype::F32 => prepare_typed::<f32>(e, settings),
        Dtype::F64 => prepare_typed::<f64>(e, settings),
    }
}

fn prepare_typed<F: TorchFloat>(e: &'static Experiment, settings: Settings) -> Result<Box<dyn Prepared>> {
    let o = &settings.options;
    let defaults = GptOptions::default();
    let corpus = corpus(&settings.data, &WORKS, None, 0.1).context("loading the Shakespeare corpus")?;
    let config = GptConfig {
        vocab: corpus.vocab.len(),
        width: o.count(Opt::Hidden).unwrap_or(defaults.config.width),
        layers: o.count(Opt::Layers).unwrap_or(defaults.config.layers),
        heads: o.count(Opt::Heads).unwrap_or(defaults.config.heads),
        context: o.count(Opt::Context).unwrap_or(defaults.config.context),
        dropout: o.number(Opt::Dropout).unwrap_or(defaults.config.dropout),
        ..defaults.config
    };
    let opts = GptOptions {
        engines: o.engines(),
        config,
        iterations: o.count(Opt::Iterations).unwrap_or(defaults.iterations),
        lr: o.number(Opt::Lr).unwrap_or(defaults.lr),
        seed: o.seed().unwrap_or(defaults.seed),
        batch: o.count(Opt::Batch).unwrap_or(defaults.batch),
        sampling: Sampling {
            temperature: o.number(Opt::Temperature).unwrap_or(defaults.sampling.temperature),
            top_k: o.count(Opt::TopK).or(defaults.sampling.top_k),
        },
        time_limit: o.number(Opt::MaxSeconds).map(Duration::from_secs_f64),
        prompt: o.prompt().map_or_else(|| defaults.prompt.clone(), str::to_string),
        quiet: settings.quiet,
        device: o.device(),
        resume: o.resume().map(std::path::Path::to_path_buf),
        ..defaults
    };
    if config.width % config.heads != 0 {
        bail!("--hidden {}: the width must be a multiple of the {} attention heads", config.width, config.heads);
    }
    let network = opts.network();
    network.check_memory().context("the network")?;
    network.check_step(opts.batch, std::mem::size_of::<F>()).context("the network")?;
    opts.optimizer().validate().context("the optimizer")?;
    let need = config.context + 1;
    if corpus.train.len() < need || corpus.validation.len() < need {
        bail!(
            "the corpus is too short for windows of {need} characters; point --data at a folder holding the \
             Shakespeare corpus (text/shakespeare, which `make setup` downloads)"
        );
    }
    check_prompt(&opts.prompt, &corpus.vocab)?;
    if let Some(path) = &opts.resume {
        resume::check::<F>(path, &opts.network(), LOSS, e.name)?;
    }
    let outputs = settings.outputs;
    Ok(Box::new(GptRun::<F> { experiment: e, corpus, opts, outputs, dtype: std::marker::PhantomData }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_runs_of_the_text_and_their_targets_the_next_characters() {
        let text: Vec<usize> = (0..100).collect();
        let w = random_windows(&text, 3, 8, &mut RandomState::new(1)).unwrap();
        assert_eq!((w.x.len(), w.rows), (24, 3));
        for row in 0..3 {
            let x = &w.x[row * 8..(row + 1) * 8];
            assert!(x.windows(2).all(|p| p[1] == p[0] + 1));
            assert_eq!(&w.y[row * 8..(row + 1) * 8], &x.iter().map(|t| t + 1).collect::<Vec<_>>()[..]);
        }
        let all = all_windows(&text, 8);
        assert_eq!(all.rows, 12, "(100 - 1) / 8 full windows");
        assert_eq!((all.x[95], all.y[95]), (95, 96));
    }

    #[test]
    fn the_lstms_validation_loss_is_read_from_its_metrics() {
        let dir = std::env::temp_dir().join(format!("dlfs-gpt-lstm-{}", std::process::id()));
        let mut lstm = crate::metrics::Metrics::new("ch6-lstm", "f32", "iteration");
        lstm.summary("scratch", &[("final_validation_nats_per_char", 2.0195)]);
        lstm.write(&Outputs::new(&dir, "ch6-lstm")).unwrap();
        assert_eq!(lstm_validation(&Outputs::new(&dir, "ch8-gpt")), Some(2.0195));
        assert_eq!(lstm_validation(&Outputs::new(dir.join("elsewhere"), "ch8-gpt")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_recipe_is_nanogpts() {
        let opts = GptOptions::default();
        let decay = Decay::WarmupCosine { warmup: 100, decay_steps: 5000, final_lr: 1e-4 };
        assert_eq!(opts.optimizer().decay, decay);
        assert_eq!(opts.optimizer().clip, Some(Clip::Norm(1.0)));
        assert_eq!((opts.config.layers, opts.config.heads, opts.config.width, opts.config.context), (4, 4, 128, 64));
    }
}
