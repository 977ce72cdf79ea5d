//! Training steps of the from-scratch engine alone, without libtorch (quick to build, and a clean
//! process to profile): the networks of `examples/benches/bench.rs`, the median time of a step
//! (forward, backward, update: momentum, or for the GPT AdamW with clipping) in f32 and f64; and,
//! alone, forward and backward of the core of causal self-attention and of GELU in its two forms, in
//! the shapes of chapter 8's GPT (B = 12, T = 64, C = 128, 4 heads; the MLP's hidden layer is 4C
//! wide).
//!
//! ```text
//! cargo bench -p scratch --bench steps -- [NAME] [STEPS]     # book, wide, ch5, ch7, lstm, gpt, attention, gelu, gelu_tanh
//! PROFILE=1 cargo bench -p scratch --bench steps -- [NAME]   # per layer: forward and backward
//! F32ONLY=1 ...                                               # f32 only
//! ```
//!
//! The GPT's profile times every leaf of its tree (summed over the blocks, by name), the residual
//! connections' own additions, and the phases of the step: loss, `params_mut` (merging the tied
//! gradients), clipping and Adam.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ndarray::{ArrayD, IxDyn};
use scratch::layers::{Layer, Residual, Sequential};
use scratch::network::NeuralNetwork;
use scratch::ops::{Activation, GeluApproximation, Mode};
use scratch::optim::{AdamConfig, Clip, Decay, Decayed, Optimizer, WeightDecay};
use scratch::param::Param;
use scratch::rng::RandomState;
use scratch::spec::gpt::{self, GptConfig};
use scratch::spec::module::Builder;
use scratch::spec::{
    book, AttentionSpec, CellKind, LayerSpec, LossSpec, Module, NetSpec, OptimSpec, StateMode, WeightInit,
};
use scratch::transformer::CausalSelfAttention;
use scratch::Float;

/// The networks, by name (see [`network`]), then the single layers (see [`layer`]).
const NAMES: [&str; 9] = ["book", "wide", "ch5", "ch7", "lstm", "gpt", "attention", "gelu", "gelu_tanh"];

/// The names of [`NAMES`] that are single layers rather than networks.
const LAYERS: [&str; 3] = ["attention", "gelu", "gelu_tanh"];

/// CPU time of every thread of this process so far, in seconds (from `/proc/self/task/*/schedstat`;
/// 0 where there is none): unlike wall-clock time, it does not grow when other processes take the
/// cores.
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    let ns: u64 = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 * 1e-9
}

/// The description and batch size of a network of [`NAMES`].
fn network(name: &str) -> (NetSpec, usize) {
    let mlp = |hidden: &[(usize, Activation)]| book::chapter4_mlp(hidden, Activation::Linear, WeightInit::Glorot, None);
    match name {
        "book" => (mlp(&[(89, Activation::Sigmoid)]), 60),
        "wide" => (mlp(&[(512, Activation::ReLU), (512, Activation::ReLU)]), 256),
        "ch5" => (book::chapter5_cnn(), 60),
        "ch7" => (book::chapter7_convnet(), 60),
        "gpt" => (gpt::gpt(&GptConfig::cpu(65)), 12),
        _ => (book::language_model(CellKind::Lstm, 65, 256, 1, StateMode::Reset, 25), 32),
    }
}

/// The layers of `spec` (a network in the book's layout), drawn from `rng`.
fn layers<F: Float>(spec: &NetSpec, rng: &mut RandomState) -> Vec<Box<dyn Layer<F>>> {
    let nodes = spec.walk().unwrap();
    nodes
        .iter()
        .filter_map(|n| match n.module {
            Module::Layer(layer) => Some(scratch::layers::build(layer, &n.input, rng).unwrap()),
            _ => None,
        })
        .collect()
}

/// A random batch for `spec`: inputs and one-hot targets over the output's last axis; for a network
/// that starts with an embedding, token indices and class-index targets.
fn batch<F: Float>(spec: &NetSpec, batch: usize, rng: &mut RandomState) -> (ArrayD<F>, ArrayD<F>) {
    let mut shape = vec![batch];
    shape.extend(&spec.input);
    let mut out = vec![batch];
    out.extend(spec.output_shape().unwrap());
    let classes = *out.last().unwrap();
    if let Some(vocab) = vocabulary(spec) {
        let mut tokens = |shape: &[usize]| -> ArrayD<F> {
            ArrayD::from_shape_fn(IxDyn(shape), |_| F::cast(rng.randint(0, vocab as i64).unwrap() as f64))
        };
        return (tokens(&shape), tokens(&out[..out.len() - 1]));
    }
    let x = rng.randn(IxDyn(&shape));
    let rows = out.iter().product::<usize>() / classes;
    let labels: Vec<u8> = (0..rows).map(|_| rng.randint(0, classes as i64).unwrap() as u8).collect();
    let y = scratch::data::mnist::one_hot::<F>(&labels, classes).unwrap().into_shape_with_order(IxDyn(&out)).unwrap();
    (x, y)
}

/// The vocabulary of the token embedding `spec` starts with, if it has one.
fn vocabulary(spec: &NetSpec) -> Option<usize> {
    spec.walk().unwrap().iter().find_map(|n| match n.module {
        Module::Layer(LayerSpec::Embedding(e)) => Some(e.vocab),
        _ => None,
    })
}

/// The optimizer of `examples/benches/bench.rs` for network `name`: SGD with momentum, or for the GPT
/// nanoGPT's AdamW (β₂ 0.99, decoupled weight decay 0.1 on matrices) with gradients clipped to norm 1.
fn optimizer(name: &str) -> OptimSpec {
    if name != "gpt" {
        return OptimSpec::momentum(0.01, 0.9);
    }
    OptimSpec::adam(1e-3, adamw()).clip(Clip::Norm(1.0))
}

/// nanoGPT's AdamW constants.
fn adamw() -> AdamConfig {
    AdamConfig {
        beta2: 0.99,
        weight_decay: WeightDecay::Decoupled(0.1),
        decayed: Decayed::Matrices,
        ..Default::default()
    }
}

/// The median wall-clock time of a step and the mean CPU time of all threads per step, in seconds.
fn run<F: Float>(name: &str, steps: usize) -> (f64, f64) {
    let mut rng = RandomState::new(2);
    let (spec, size) = network(name);
    let mut net = NeuralNetwork::<F>::from_spec(&spec, LossSpec::CROSS_ENTROPY.build::<F>(), &mut rng).unwrap();
    let mut optim = scratch::optim::build::<F>(&optimizer(name)).unwrap();
    let (x, y) = batch::<F>(&spec, size, &mut rng);
    let mut times = Vec::new();
    let cpu = cpu_seconds();
    for _ in 0..steps {
        let t = Instant::now();
        net.train_batch(&x, &y).unwrap();
        optim.step(&mut net.params_mut()).unwrap();
        times.push(t.elapsed().as_secs_f64());
    }
    let cpu = (cpu_seconds() - cpu) / steps as f64;
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], cpu)
}

/// The median wall-clock time of the forward and backward pass of one layer of [`LAYERS`] on a batch
/// of chapter 8's GPT, and the mean CPU time of all threads, in seconds: [`CausalSelfAttention`] on
/// `(B, T, 3C)`, GELU on the MLP's hidden layer `(B·T, 4C)`.
fn layer<F: Float>(name: &str, steps: usize) -> (f64, f64) {
    let (batch, time, width, heads) = (12, 64, 128, 4);
    let mut rng = RandomState::new(2);
    let (mut layer, shape): (Box<dyn Layer<F>>, _) = match name {
        "attention" => {
            let attention = CausalSelfAttention::<F>::new(AttentionSpec::new(heads), &mut rng).unwrap();
            (Box::new(attention), vec![batch, time, 3 * width])
        }
        _ => {
            let form = if name == "gelu" { GeluApproximation::Exact } else { GeluApproximation::Tanh };
            let gelu = LayerSpec::Activation(Activation::Gelu(form));
            (scratch::layers::build(&gelu, &[4 * width], &mut rng).unwrap(), vec![batch * time, 4 * width])
        }
    };
    let x: ArrayD<F> = rng.randn(IxDyn(&shape));
    let y = layer.forward(x.clone(), Mode::Train).unwrap();
    let g: ArrayD<F> = rng.randn(y.raw_dim());
    let mut times = Vec::new();
    let cpu = cpu_seconds();
    for _ in 0..steps {
        // The layer takes its input and gradient by value: the copies are made outside the timing.
        let (x, g) = (x.clone(), g.clone());
        let t = Instant::now();
        layer.forward(x, Mode::Train).unwrap();
        layer.backward(g).unwrap();
        times.push(t.elapsed().as_secs_f64());
    }
    let cpu = (cpu_seconds() - cpu) / steps as f64;
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], cpu)
}

/// Per-layer forward and backward times (median), the loss and the update.
fn profile<F: Float>(name: &str, steps: usize) {
    let mut rng = RandomState::new(2);
    let (spec, size) = network(name);
    let mut layers = layers::<F>(&spec, &mut rng);
    let mut loss = LossSpec::CROSS_ENTROPY.build::<F>();
    let (x, y) = batch::<F>(&spec, size, &mut rng);
    let n = layers.len();
    let mut t = vec![Vec::new(); 2 * n + 2];
    let mut net_params = scratch::optim::build::<F>(&optimizer(name)).unwrap();
    for _ in 0..steps {
        let mut a = x.clone();
        for (i, l) in layers.iter_mut().enumerate() {
            let s = Instant::now();
            a = l.forward(a, scratch::ops::Mode::Train).unwrap();
            t[i].push(s.elapsed().as_secs_f64());
        }
        let s = Instant::now();
        loss.forward(&a, &y).unwrap();
        let mut g = loss.backward().unwrap();
        t[2 * n].push(s.elapsed().as_secs_f64());
        for i in (0..n).rev() {
            let s = Instant::now();
            if i == 0 {
                layers[0].backward_params(g.clone()).unwrap();
            } else {
                g = layers[i].backward(g).unwrap();
            }
            t[n + i].push(s.elapsed().as_secs_f64());
        }
        let s = Instant::now();
        let mut params: Vec<_> = layers
            .iter_mut()
            .enumerate()
            .flat_map(|(i, l)| l.params_mut().into_iter().map(move |(p, v)| (format!("{i}.{p}"), v)))
            .collect();
        net_params.step(&mut params).unwrap();
        t[2 * n + 1].push(s.elapsed().as_secs_f64());
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2] * 1e3
    };
    let mut total = 0.0;
    for i in 0..n {
        let (f, b) = (med(&mut t[i].clone()), med(&mut t[n + i].clone()));
        total += f + b;
        println!("  {:50} fwd {f:8.3} ms  bwd {b:8.3} ms", layers[i].describe());
    }
    let (l, o) = (med(&mut t[2 * n].clone()), med(&mut t[2 * n + 1].clone()));
    println!("  loss {l:.3} ms, update {o:.3} ms, sum {:.3} ms", total + l + o);
}

/// The time of every forward and backward pass of one step, by label (summed over the layers that
/// share it).
type Times = Arc<Mutex<BTreeMap<String, [f64; 2]>>>;

/// A layer of a tree that adds the time of its forward and backward passes to `times` under `label`.
/// A container stays transparent: its children and parameters are the wrapped layer's.
struct Timed<F: Float> {
    label: String,
    inner: Box<dyn Layer<F>>,
    times: Times,
}

impl<F: Float> Timed<F> {
    fn record(&self, pass: usize, start: Instant) {
        let mut times = self.times.lock().unwrap();
        times.entry(self.label.clone()).or_default()[pass] += start.elapsed().as_secs_f64();
    }
}

impl<F: Float> Layer<F> for Timed<F> {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn forward(&mut self, input: ArrayD<F>, mode: Mode) -> scratch::Result<ArrayD<F>> {
        let start = Instant::now();
        let y = self.inner.forward(input, mode);
        self.record(0, start);
        y
    }

    fn infer(&self, input: ArrayD<F>) -> scratch::Result<ArrayD<F>> {
        self.inner.infer(input)
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> scratch::Result<ArrayD<F>> {
        let start = Instant::now();
        let g = self.inner.backward(output_grad);
        self.record(1, start);
        g
    }

    fn backward_params(&mut self, output_grad: ArrayD<F>) -> scratch::Result<()> {
        let start = Instant::now();
        let r = self.inner.backward_params(output_grad);
        self.record(1, start);
        r
    }

    fn children(&self) -> Vec<(Option<&str>, &dyn Layer<F>)> {
        self.inner.children()
    }

    fn children_mut(&mut self) -> Vec<(Option<&str>, &mut dyn Layer<F>)> {
        self.inner.children_mut()
    }

    fn params(&self) -> Vec<(String, &Param<F>)> {
        self.inner.params()
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param<F>)> {
        self.inner.params_mut()
    }
}

/// Builds a network whose leaves and residual connections are [`Timed`]: a leaf under its path with
/// the block number left out (`transformer.h.*.attn.c_attn`), a residual connection twice, around
/// itself and around its body, so that its own addition is the difference.
struct TimedBuild<'a, F> {
    rng: &'a mut RandomState,
    times: Times,
    _float: std::marker::PhantomData<F>,
}

/// `path` with every block number replaced by `*`.
fn label(path: &str) -> String {
    path.split('.').map(|p| if p.parse::<usize>().is_ok() { "*" } else { p }).collect::<Vec<_>>().join(".")
}

impl<F: Float> TimedBuild<'_, F> {
    fn timed(&self, label: String, inner: Box<dyn Layer<F>>) -> Box<dyn Layer<F>> {
        Box::new(Timed { label, inner, times: self.times.clone() })
    }
}

impl<F: Float> Builder for TimedBuild<'_, F> {
    type Output = Box<dyn Layer<F>>;

    fn layer(&mut self, path: &str, layer: &LayerSpec, input: &[usize]) -> scratch::Result<Self::Output> {
        let built = scratch::layers::build(layer, input, self.rng)?;
        let name = format!("{} {}", label(path), layer.describe(input));
        Ok(self.timed(name, built))
    }

    fn sequence(&mut self, path: &str, children: Vec<(Option<String>, Self::Output)>) -> scratch::Result<Self::Output> {
        Ok(Box::new(Sequential::new(path, children)))
    }

    fn residual(&mut self, path: &str, body: Self::Output) -> scratch::Result<Self::Output> {
        let body = self.timed(" body".into(), body);
        Ok(self.timed(" residual".into(), Box::new(Residual::new(path, body))))
    }
}

/// Per-leaf forward and backward times (medians over the steps, summed over the blocks) of a network
/// built from a tree description, the residual connections' own additions, and the phases of the step
/// on the network itself: loss, `params_mut`, clipping, Adam.
fn profile_tree<F: Float>(name: &str, steps: usize) {
    let (spec, size) = network(name);
    let times: Times = Arc::default();
    let mut builder =
        TimedBuild::<F> { rng: &mut RandomState::new(2), times: times.clone(), _float: Default::default() };
    let mut root = spec.module.build(&spec.input, &mut builder).unwrap();
    let mut loss = LossSpec::CROSS_ENTROPY.build::<F>();
    let (x, y) = batch::<F>(&spec, size, &mut RandomState::new(3));
    let mut rows: BTreeMap<String, [Vec<f64>; 2]> = BTreeMap::new();
    let mut phases: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut phase = |name, start: Instant| phases.entry(name).or_default().push(start.elapsed().as_secs_f64());
    for _ in 0..steps {
        times.lock().unwrap().clear();
        // On a thread of the pool, as `NeuralNetwork::train_batch` runs.
        rayon::scope(|_| {
            let start = Instant::now();
            let a = root.forward(x.clone(), Mode::Train).unwrap();
            phase("forward", start);
            let start = Instant::now();
            loss.forward(&a, &y).unwrap();
            let g = loss.backward().unwrap();
            phase("loss", start);
            let start = Instant::now();
            root.backward_params(g).unwrap();
            phase("backward", start);
        });
        for (label, [f, b]) in times.lock().unwrap().iter() {
            let row = rows.entry(label.clone()).or_default();
            row[0].push(*f);
            row[1].push(*b);
        }
    }
    // The update's phases, on the network itself (its tied parameters merged).
    let mut net =
        NeuralNetwork::<F>::from_spec(&spec, LossSpec::CROSS_ENTROPY.build::<F>(), &mut RandomState::new(2)).unwrap();
    let mut adam = scratch::optim::Adam::<F>::with_config(1e-3, Decay::None, adamw()).unwrap();
    for _ in 0..steps {
        net.train_batch(&x, &y).unwrap();
        let start = Instant::now();
        let mut params = net.params_mut();
        phase("params_mut", start);
        let start = Instant::now();
        Clip::Norm(1.0).apply(&mut params).unwrap();
        phase("clip", start);
        let start = Instant::now();
        adam.step(&mut params).unwrap();
        phase("adam", start);
        let start = Instant::now();
        drop(params);
        phase("params_mut drop (ties)", start);
    }
    let med = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2] * 1e3
    };
    let own = |f: usize| {
        let pick = |l: &str| rows.get(l).map_or(0.0, |r| med(&r[f]));
        pick(" residual") - pick(" body")
    };
    for (label, [f, b]) in &rows {
        if !label.starts_with(' ') {
            println!("  {label:70} fwd {:8.3} ms  bwd {:8.3} ms", med(f), med(b));
        }
    }
    println!("  {:70} fwd {:8.3} ms  bwd {:8.3} ms", "residual connections' own work", own(0), own(1));
    for (name, t) in &phases {
        println!("  {name:22} {:8.3} ms", med(t));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let filter = args.first().cloned().unwrap_or_default();
    let steps: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let only32 = std::env::var("F32ONLY").is_ok();
    if std::env::var("PROFILE").is_ok() {
        for name in NAMES.into_iter().filter(|n| n.contains(&filter) && !LAYERS.contains(n)) {
            let tree = name == "gpt";
            println!("{name} f32");
            if tree {
                profile_tree::<f32>(name, steps)
            } else {
                profile::<f32>(name, steps)
            }
            if !only32 {
                println!("{name} f64");
                if tree {
                    profile_tree::<f64>(name, steps)
                } else {
                    profile::<f64>(name, steps)
                }
            }
        }
        return;
    }
    for name in NAMES {
        if !name.contains(&filter) {
            continue;
        }
        let (a, b) = if LAYERS.contains(&name) {
            (layer::<f32>(name, steps), if only32 { (0.0, 0.0) } else { layer::<f64>(name, steps) })
        } else {
            (run::<f32>(name, steps), if only32 { (0.0, 0.0) } else { run::<f64>(name, steps) })
        };
        println!(
            "{name:9} f32 {:8.3} ms (cpu {:8.3} ms)   f64 {:8.3} ms (cpu {:8.3} ms)",
            a.0 * 1e3,
            a.1 * 1e3,
            b.0 * 1e3,
            b.1 * 1e3
        );
    }
}
