//! `cargo bench -p examples`: speed of the from-scratch engine against libtorch, measured in one process
//! on the same machine, in the release profile (options after `--`: `cargo bench -p examples -- --only
//! lstm`). A bench target rather than a program, so that `cargo test` does not build it; Cargo builds
//! the `dlfs` binary beside it, which the epoch timings spawn.
//!
//! * the matrix-product peak: GFLOP/s of the `gemm` crate (what `scratch` uses) and of libtorch at
//!   512³, 1024³ and 2048³ in f32 and f64 on all cores; the best is the peak the training steps are
//!   measured against;
//! * matrix products at the layer shapes: the `gemm` crate, ndarray's own product (`matrixmultiply`)
//!   and libtorch, f32;
//! * training steps (forward, backward, momentum update) of the dense, convolutional and recurrent
//!   networks, f32 and f64: from scratch; on libtorch written the way a `tch` user writes it (the
//!   reference: `nn::linear`, `nn::conv2d`, `nn::lstm`, `Tensor::dropout`, `cross_entropy_for_logits`,
//!   `nn::Sgd` with momentum over a `VarStore`, the same kernels Python PyTorch runs); and on the
//!   project's own libtorch engine (`torch`). Each row gives the step's useful FLOPs
//!   ([`step_flops`]) and the fraction of the peak each engine reaches;
//! * a whole `dlfs` epoch of the chapter-4 network (`ch4-glorot`) and the chapter-7 ConvNet
//!   (`ch7-convnet`) in f32, data loading and evaluation included: what a user waits for. The built
//!   `dlfs` binary is spawned with `run NAME --engine scratch|torch --epochs 1 --quiet` and timed
//!   from start to exit.
//!
//! libtorch runs with as many threads as cores. Every time is the median over `--rounds` rounds
//! (each measurement taken once per round, all of them in turn, so that a change in the machine's
//! load affects all columns alike) of the median of repeated steps after a warm-up.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use clap::Parser;
use examples::table::Table;
use ndarray::{Array2, ArrayD, IxDyn};
use scratch::network::NeuralNetwork;
use scratch::ops::Activation;
use scratch::optim::{AdamConfig, Clip, Decayed, Optimizer, WeightDecay};
use scratch::rng::RandomState;
use scratch::spec::gpt::{self, GptConfig};
use scratch::spec::{book, CellKind, LayerSpec, LossSpec, Module, NetSpec, OptimSpec, StateMode, WeightInit};
use tch::nn::{self, ModuleT, OptimizerConfig, RNN};
use tch::{Device, Kind, Tensor};
use torch::convert::{to_tensor, TorchFloat};
use torch::layers::Kernel;
use torch::optim::Optimizer as _;

#[derive(Parser)]
#[command(about = "Time the from-scratch engine against libtorch (cargo bench -p examples -- OPTIONS)")]
struct Args {
    /// Passed by `cargo bench`; nothing to choose.
    #[arg(long = "bench", hide = true)]
    _bench: bool,
    /// Timed repetitions per measurement (after a warm-up of a tenth as many)
    #[arg(long, default_value_t = 200)]
    reps: usize,
    /// Rounds: every measurement is repeated this many times, in turn with the others, and the median
    /// reported
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Skip the matrix products at the layer shapes (the peak is always measured)
    #[arg(long)]
    no_gemm: bool,
    /// Skip the `dlfs` epochs
    #[arg(long)]
    no_epochs: bool,
    /// Only the networks whose name contains this (case-insensitive), e.g. `lstm`
    #[arg(long)]
    only: Option<String>,
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The median time of `f`, in seconds.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    // libtorch's OpenMP threads spin for a while after their last task and would steal a core from
    // whatever is measured next: let them go to sleep first.
    std::thread::sleep(std::time::Duration::from_millis(300));
    for _ in 0..reps.div_ceil(10) {
        f();
    }
    median(
        (0..reps)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// Runs every measurement `rounds` times, the measurements in turn within each round, and returns the
/// median of each.
fn rounds<T>(
    rounds: usize,
    measurements: &mut [T],
    mut measure: impl FnMut(&mut T) -> Result<f64>,
) -> Result<Vec<f64>> {
    let mut all = vec![Vec::new(); measurements.len()];
    for _ in 0..rounds.max(1) {
        for (m, times) in measurements.iter_mut().zip(&mut all) {
            times.push(measure(m)?);
        }
    }
    Ok(all.into_iter().map(median).collect())
}

/// The square sizes at which the matrix-product peak is measured: the largest is not always the
/// fastest on a shared machine, where its 16 MiB operands compete for the cache.
const PEAK_SIZES: [usize; 3] = [512, 1024, 2048];

/// The matrix-product peak in GFLOP/s for one float type: the best of the `gemm` crate and libtorch
/// over square products of [`PEAK_SIZES`], all on all cores (the median of each).
struct Peak {
    /// GFLOP/s of the `gemm` crate and of libtorch at each size.
    gemm: Vec<f64>,
    libtorch: Vec<f64>,
}

impl Peak {
    fn best(&self) -> f64 {
        self.gemm.iter().chain(&self.libtorch).copied().fold(0.0, f64::max)
    }

    fn describe(&self) -> String {
        let at = |v: &[f64]| {
            let i = (0..v.len()).max_by(|&i, &j| v[i].total_cmp(&v[j])).expect("sizes");
            (v[i], PEAK_SIZES[i])
        };
        let ((g, gn), (l, ln)) = (at(&self.gemm), at(&self.libtorch));
        let who = if g >= l { format!("gemm crate at {gn}³") } else { format!("libtorch at {ln}³") };
        let all = |v: &[f64]| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(" / ");
        format!(
            "{:.0} GFLOP/s ({who}; gemm crate {}, libtorch {} at {}³)",
            self.best(),
            all(&self.gemm),
            all(&self.libtorch),
            PEAK_SIZES.map(|n| n.to_string()).join(" / ")
        )
    }
}

fn peak<F: TorchFloat>(rounds_: usize) -> Result<Peak> {
    let mut rng = RandomState::new(1);
    let mut peak = Peak { gemm: Vec::new(), libtorch: Vec::new() };
    for n in PEAK_SIZES {
        let a: Array2<F> = rng.randn((n, n));
        let b: Array2<F> = rng.randn((n, n));
        let (at, bt) = (to_tensor(&a), to_tensor(&b));
        let flops = 2.0 * (n * n * n) as f64;
        let reps = (5 * (2048 / n).pow(3)).min(200);
        let mut which = [0, 1];
        let t = rounds(rounds_, &mut which, |w| {
            Ok(if *w == 0 {
                time(reps, || drop(scratch::linalg::matmul(&a.view(), &b.view())))
            } else {
                time(reps, || drop(at.matmul(&bt)))
            })
        })?;
        peak.gemm.push(flops / t[0] / 1e9);
        peak.libtorch.push(flops / t[1] / 1e9);
    }
    Ok(peak)
}

fn gemm_table(reps: usize) -> Table {
    let mut t = Table::new(
        "Matrix product, f32, GFLOP/s (median)",
        &["shape m x k x n", "gemm crate (scratch)", "ndarray dot", "libtorch"],
    );
    let mut rng = RandomState::new(1);
    for (m, k, n, r) in [
        (60, 784, 89, reps * 10),
        (784, 60, 89, reps * 10),
        (256, 784, 512, reps),
        (256, 512, 512, reps),
        (2048, 2048, 2048, 5),
    ] {
        let a: Array2<f32> = rng.randn((m, k));
        let b: Array2<f32> = rng.randn((k, n));
        let (at, bt) = (to_tensor(&a), to_tensor(&b));
        let flops = 2.0 * (m * k * n) as f64;
        let g = time(r, || drop(scratch::linalg::matmul(&a.view(), &b.view())));
        let d = time(r, || drop(a.dot(&b)));
        let l = time(r, || drop(at.matmul(&bt)));
        t.push(vec![
            format!("{m} x {k} x {n}"),
            format!("{:.1}", flops / g / 1e9),
            format!("{:.1}", flops / d / 1e9),
            format!("{:.1}", flops / l / 1e9),
        ]);
    }
    t
}

/// The idiomatic libtorch version of a benchmarked network.
#[derive(Clone, Copy)]
enum Reference {
    /// `nn::linear` layers of these widths, the activation between them.
    Mlp(&'static [i64], fn(&Tensor) -> Tensor),
    /// Chapter 5's CNN: `conv2d(1, 16, 5)` without bias, tanh, flatten, dropout 0.2, `linear(12544, 10)`.
    Chapter5Cnn,
    /// Chapter 7's ConvNet: `conv2d(1, 14, 5)`, tanh, dropout; `conv2d(14, 7, 5)`, tanh, flatten,
    /// dropout; `linear(5488, 32)`, tanh, dropout; `linear(32, 10)`.
    Chapter7ConvNet,
    /// `nn::lstm(65, 256)` over 25 steps, `nn::linear(256, 65)` on every step's output.
    Lstm,
    /// Chapter 8's GPT in nanoGPT's small CPU configuration ([`GptConfig::cpu`]), written with tch's
    /// `nn::embedding`, `nn::layer_norm`, `nn::linear` and `scaled_dot_product_attention`.
    Gpt,
}

/// The LSTM row's sizes.
const VOCAB: i64 = 65;
const STEPS: i64 = 25;
const HIDDEN: i64 = 256;

/// A model's logits, one row per prediction, in training mode.
type Logits = Box<dyn Fn(&Tensor) -> Tensor>;

/// The GPT row's configuration: nanoGPT's small CPU recipe on a 65-character vocabulary.
fn gpt_config() -> GptConfig {
    GptConfig::cpu(VOCAB as usize)
}

/// The GPT of [`gpt_config`] as a tch user writes it: `nn::embedding` for the tokens and positions,
/// pre-norm blocks of `nn::layer_norm`, `nn::linear` (no biases) and libtorch's
/// `scaled_dot_product_attention`, the output layer tied to the token embedding.
fn tch_gpt(vs: &nn::Path) -> Logits {
    let GptConfig { vocab, context, layers, heads, width, .. } = gpt_config();
    let (v, t, c, h) = (vocab as i64, context as i64, width as i64, heads as i64);
    let linear = |p: nn::Path, i, o| nn::linear(p, i, o, nn::LinearConfig { bias: false, ..Default::default() });
    let norm = |p: nn::Path| nn::layer_norm(p, vec![c], Default::default());
    let wte = nn::embedding(vs / "wte", v, c, Default::default());
    let wpe = nn::embedding(vs / "wpe", t, c, Default::default());
    let blocks: Vec<_> = (0..layers)
        .map(|i| {
            let b = vs / "h" / i;
            let (ln_1, ln_2) = (norm(&b / "ln_1"), norm(&b / "ln_2"));
            let (c_attn, attn_proj) = (linear(&b / "c_attn", c, 3 * c), linear(&b / "attn_proj", c, c));
            let (c_fc, mlp_proj) = (linear(&b / "c_fc", c, 4 * c), linear(&b / "mlp_proj", 4 * c, c));
            move |x: &Tensor| {
                let (b, t) = (x.size()[0], x.size()[1]);
                let qkv = x.apply(&ln_1).apply(&c_attn).split(c, 2);
                let heads = |m: &Tensor| m.view([b, t, h, c / h]).transpose(1, 2);
                let (q, k, v) = (heads(&qkv[0]), heads(&qkv[1]), heads(&qkv[2]));
                let y = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, true, None, false);
                let x = x + y.transpose(1, 2).reshape([b, t, c]).apply(&attn_proj);
                &x + x.apply(&ln_2).apply(&c_fc).gelu("none").apply(&mlp_proj)
            }
        })
        .collect();
    let ln_f = norm(vs / "ln_f");
    Box::new(move |idx| {
        let positions = Tensor::arange(idx.size()[1], (Kind::Int64, idx.device()));
        let mut x = idx.apply(&wte) + positions.apply(&wpe);
        for block in &blocks {
            x = block(&x);
        }
        x.apply(&ln_f).matmul(&wte.ws.tr()).view([-1, v])
    })
}

impl Reference {
    /// Builds the model in `vs`.
    fn build(self, vs: &nn::Path) -> Logits {
        // "Same" padding for the 5×5 kernels, as the book's layers.
        let conv = |bias| nn::ConvConfig { padding: 2, bias, ..Default::default() };
        let dropout = |x: &Tensor, train: bool| x.dropout(0.2, train);
        let net = match self {
            Reference::Mlp(widths, activation) => {
                let mut net = nn::seq_t();
                for (i, w) in widths.windows(2).enumerate() {
                    if i > 0 {
                        net = net.add_fn(activation);
                    }
                    net = net.add(nn::linear(vs / i, w[0], w[1], Default::default()));
                }
                net
            }
            Reference::Chapter5Cnn => nn::seq_t()
                .add(nn::conv2d(vs / "conv", 1, 16, 5, conv(false)))
                .add_fn(|x| x.tanh().flatten(1, -1))
                .add_fn_t(dropout)
                .add(nn::linear(vs / "out", 16 * 28 * 28, 10, Default::default())),
            Reference::Chapter7ConvNet => nn::seq_t()
                .add(nn::conv2d(vs / "conv1", 1, 14, 5, conv(true)))
                .add_fn(Tensor::tanh)
                .add_fn_t(dropout)
                .add(nn::conv2d(vs / "conv2", 14, 7, 5, conv(true)))
                .add_fn(|x| x.tanh().flatten(1, -1))
                .add_fn_t(dropout)
                .add(nn::linear(vs / "dense", 7 * 28 * 28, 32, Default::default()))
                .add_fn(Tensor::tanh)
                .add_fn_t(dropout)
                .add(nn::linear(vs / "out", 32, 10, Default::default())),
            Reference::Lstm => {
                let lstm = nn::lstm(vs / "lstm", VOCAB, HIDDEN, Default::default());
                let out = nn::linear(vs / "out", HIDDEN, VOCAB, Default::default());
                return Box::new(move |x| lstm.seq(x).0.apply(&out).view([-1, VOCAB]));
            }
            Reference::Gpt => return tch_gpt(vs),
        };
        Box::new(move |x| net.forward_t(x, true))
    }

    /// A random batch: the inputs and the class of every row of the logits.
    fn batch(self, batch: i64, kind: Kind) -> (Tensor, Tensor) {
        let (shape, classes, rows) = match self {
            Reference::Mlp(widths, _) => (vec![batch, widths[0]], widths[widths.len() - 1], batch),
            Reference::Chapter5Cnn | Reference::Chapter7ConvNet => (vec![batch, 1, 28, 28], 10, batch),
            Reference::Lstm => (vec![batch, STEPS, VOCAB], VOCAB, batch * STEPS),
            Reference::Gpt => {
                let t = gpt_config().context as i64;
                let tokens = Tensor::randint(VOCAB, [batch, t], (Kind::Int64, Device::Cpu));
                return (tokens, Tensor::randint(VOCAB, [batch * t], (Kind::Int64, Device::Cpu)));
            }
        };
        (
            Tensor::randn(shape.as_slice(), (kind, Device::Cpu)),
            Tensor::randint(classes, [rows], (Kind::Int64, Device::Cpu)),
        )
    }
}

/// The idiomatic libtorch training step: forward, `cross_entropy_for_logits`, `backward_step` of an
/// `nn::Sgd` with momentum 0.9 (the GPT: of nanoGPT's `nn::AdamW`, gradients clipped to norm 1).
fn reference_step<F: TorchFloat>(reference: Reference, batch_size: usize, reps: usize) -> Result<f64> {
    tch::manual_seed(2);
    let mut vs = nn::VarStore::new(Device::Cpu);
    vs.set_kind(F::KIND);
    let model = reference.build(&vs.root());
    if let Reference::Gpt = reference {
        let mut opt = nn::AdamW { beta1: 0.9, beta2: 0.99, wd: 0.1, ..Default::default() }.build(&vs, 1e-3)?;
        let (x, labels) = reference.batch(batch_size as i64, F::KIND);
        return Ok(time(reps, || {
            let loss = model(&x).cross_entropy_for_logits(&labels);
            opt.zero_grad();
            loss.backward();
            opt.clip_grad_norm(1.0);
            opt.step();
        }));
    }
    let mut opt = nn::Sgd { momentum: 0.9, ..Default::default() }.build(&vs, 0.01)?;
    let (x, labels) = reference.batch(batch_size as i64, F::KIND);
    Ok(time(reps, || {
        let loss = model(&x).cross_entropy_for_logits(&labels);
        opt.backward_step(&loss);
    }))
}

/// A benchmarked network.
struct Row {
    name: &'static str,
    /// The network both of the project's engines build.
    spec: NetSpec,
    /// The optimizer both of the project's engines build.
    optim: OptimSpec,
    batch: usize,
    /// The idiomatic libtorch version.
    reference: Option<Reference>,
    /// How the project's libtorch engine runs its recurrent layers.
    kernel: Kernel,
}

/// The networks timed.
fn networks() -> Vec<Row> {
    let mlp = |hidden: &[(usize, Activation)]| book::chapter4_mlp(hidden, Activation::Linear, WeightInit::Glorot, None);
    // The character-level LSTM of the language-model example: one layer of 256 and a projection back
    // to the vocabulary, on 25-character windows.
    let lstm =
        book::language_model(CellKind::Lstm, VOCAB as usize, HIDDEN as usize, 1, StateMode::Reset, STEPS as usize);
    let momentum = OptimSpec::momentum(0.01, 0.9);
    let row =
        |name, spec, batch, reference| Row { name, spec, optim: momentum, batch, reference, kernel: Kernel::Fused };
    let adamw = AdamConfig {
        beta2: 0.99,
        weight_decay: WeightDecay::Decoupled(0.1),
        decayed: Decayed::Matrices,
        ..Default::default()
    };
    vec![
        row(
            "book 784-89-10 (sigmoid), batch 60",
            mlp(&[(89, Activation::Sigmoid)]),
            60,
            Some(Reference::Mlp(&[784, 89, 10], Tensor::sigmoid)),
        ),
        row(
            "wide 784-512-512-10 (relu), batch 256",
            mlp(&[(512, Activation::ReLU), (512, Activation::ReLU)]),
            256,
            Some(Reference::Mlp(&[784, 512, 512, 10], Tensor::relu)),
        ),
        row("chapter-5 CNN, batch 60", book::chapter5_cnn(), 60, Some(Reference::Chapter5Cnn)),
        row("chapter-7 ConvNet, batch 60", book::chapter7_convnet(), 60, Some(Reference::Chapter7ConvNet)),
        row("LSTM 256, seq 25, vocab 65, batch 32", lstm.clone(), 32, Some(Reference::Lstm)),
        Row { kernel: Kernel::Cells, ..row("  same, torch engine's step-by-step cells", lstm, 32, None) },
        Row {
            optim: OptimSpec::adam(1e-3, adamw).clip(Clip::Norm(1.0)),
            ..row(
                "GPT 4x128, 4 heads, context 64, vocab 65, batch 12",
                gpt::gpt(&gpt_config()),
                12,
                Some(Reference::Gpt),
            )
        },
    ]
}

/// The useful floating-point operations of one training step: those of its matrix products, counted
/// from the shapes (element-wise work, the loss and the update are not counted).
///
/// A product of `(m, k)` by `(k, n)` is `2·m·k·n` operations. A layer's forward product `X W` has two
/// more of the same size in the backward pass, `∂L/∂X = ∂L/∂Y Wᵀ` and `∂L/∂W = Xᵀ ∂L/∂Y`: 3 products,
/// except for the network's first layer, whose input is data and gets no gradient (2).
///
/// * dense, `n_in → n` at batch `B` (over the last axis: `B` counts every row, `B·T` over a sequence):
///   `2·B·n_in·n` per product;
/// * convolution `C → O`, `k × k` kernel, output `Ho × Wo`: as the im2col product
///   `(O, C·k²)·(C·k², Ho·Wo)` per image, `2·B·O·C·k²·Ho·Wo` per product;
/// * recurrent layer with `G` gate blocks of `H` units over `T` steps, per stacked layer of `V` inputs
///   (the data's width, then `H`): the input product `(B·T, V)·(V, G·H)` (2 products for the network's
///   first input) and the recurrent products `(B, H)·(H, G·H)` at each of the `T` steps (3 each:
///   forward, the gradient reaching the previous state, the weight gradient).
fn step_flops(spec: &NetSpec, batch: usize) -> Result<f64> {
    let b = batch as f64;
    let mut total = 0.0;
    let nodes = spec.walk()?;
    let layers = nodes.iter().filter_map(|n| match n.module {
        Module::Layer(layer) => Some((layer, &n.input)),
        _ => None,
    });
    for (i, (layer, input)) in layers.enumerate() {
        let first = if i == 0 { 2.0 } else { 3.0 };
        total += match layer {
            LayerSpec::Dense(d) => first * 2.0 * b * input.iter().product::<usize>() as f64 * d.neurons as f64,
            LayerSpec::Conv(c) => {
                ensure!(!c.transposed, "transposed convolutions are not counted");
                let (ho, wo) = c.output_size((input[1], input[2])).context("the kernel fits")?;
                let per_image = 2.0 * (c.out_channels * c.in_channels * c.kernel * c.kernel * ho * wo) as f64;
                first * b * per_image
            }
            LayerSpec::Recurrent(r) => {
                let (t, gh, h) = (input[0] as f64, (r.cell.gates() * r.hidden) as f64, r.hidden as f64);
                (0..r.layers)
                    .map(|l| {
                        let products = if l == 0 { first } else { 3.0 };
                        products * 2.0 * b * t * r.input_of(l) as f64 * gh + 3.0 * 2.0 * b * t * h * gh
                    })
                    .sum::<f64>()
            }
            LayerSpec::Attention(_) => {
                // Per head, q kᵀ and the weights times v forward, four products of the same size backward
                // (the gradients of the weights, v, q and k): 6 products of T·T·hs, the whole square
                // counted although the causal mask leaves half of it out.
                let (t, width) = (input[0] as f64, (input[1] / 3) as f64);
                6.0 * 2.0 * b * t * t * width
            }
            LayerSpec::Pool(..)
            | LayerSpec::Flatten
            | LayerSpec::Reshape(_)
            | LayerSpec::Activation(_)
            | LayerSpec::Dropout(_)
            | LayerSpec::Embedding(_)
            | LayerSpec::PositionEmbedding(_)
            | LayerSpec::LayerNorm(_) => 0.0,
        };
    }
    Ok(total)
}

/// The vocabulary of the network's embedding, if it starts from class indices.
fn embedding_vocab(spec: &NetSpec) -> Result<Option<usize>> {
    Ok(spec.walk()?.iter().find_map(|n| match n.module {
        Module::Layer(LayerSpec::Embedding(e)) => Some(e.vocab),
        _ => None,
    }))
}

/// Random inputs (token indices for a network that starts with an embedding) and random one-hot
/// targets (over the last axis of the network's output; class indices after an embedding).
fn batch<F: TorchFloat>(spec: &NetSpec, batch: usize, rng: &mut RandomState) -> Result<(ArrayD<F>, ArrayD<F>)> {
    let mut shape = vec![batch];
    shape.extend(&spec.input);
    let mut out = vec![batch];
    out.extend(spec.output_shape()?);
    let classes = *out.last().expect("an output has features");
    if let Some(vocab) = embedding_vocab(spec)? {
        let mut tokens = |shape: &[usize]| -> Result<ArrayD<F>> {
            let n = shape.iter().product();
            let values =
                (0..n).map(|_| Ok(F::cast(rng.randint(0, vocab as i64)? as f64))).collect::<Result<Vec<_>>>()?;
            Ok(ArrayD::from_shape_vec(IxDyn(shape), values)?)
        };
        return Ok((tokens(&shape)?, tokens(&out[..out.len() - 1])?));
    }
    let x = rng.randn(IxDyn(&shape));
    let rows = out.iter().product::<usize>() / classes;
    let labels = (0..rows).map(|_| Ok(rng.randint(0, classes as i64)? as u8)).collect::<Result<Vec<_>>>()?;
    let y = scratch::data::mnist::one_hot::<F>(&labels, classes)?.into_shape_with_order(IxDyn(&out))?;
    Ok((x, y))
}

fn scratch_step<F: TorchFloat>(row: &Row, reps: usize) -> Result<f64> {
    let (spec, batch_size) = (&row.spec, row.batch);
    let mut rng = RandomState::new(2);
    let mut net = NeuralNetwork::<F>::from_spec(spec, LossSpec::CROSS_ENTROPY.build::<F>(), &mut rng)?;
    let mut optim = scratch::optim::build::<F>(&row.optim)?;
    let (x, y) = batch::<F>(spec, batch_size, &mut rng)?;
    let mut failure = None;
    let t = time(reps, || {
        if failure.is_none() {
            failure = net.train_batch(&x, &y).and_then(|_| optim.step(&mut net.params_mut())).err();
        }
    });
    failure.map_or(Ok(t), |e| Err(e.into()))
}

/// The project's libtorch engine, as the parity tests and `dlfs` run it: dropout masks from the shared
/// numpy-compatible stream, drawn on the CPU.
fn torch_step<F: TorchFloat>(row: &Row, reps: usize) -> Result<f64> {
    let (spec, batch_size) = (&row.spec, row.batch);
    let mut rng = RandomState::new(2);
    let vs = torch::var_store::<F>(Device::Cpu);
    let model = torch::Net::with_options(vs.root(), spec, torch::BuildOptions::parity(row.kernel), &mut rng)?;
    let mut optim = torch::optim::build(&row.optim)?;
    let (x, y) = batch::<F>(spec, batch_size, &mut rng)?;
    let (x, y): (Tensor, Tensor) = (to_tensor(&x), to_tensor(&y));
    // Class indices (after an embedding) as libtorch takes them.
    let (x, y) =
        if embedding_vocab(spec)?.is_some() { (x.to_kind(Kind::Int64), y.to_kind(Kind::Int64)) } else { (x, y) };
    let mut failure = None;
    let t = time(reps, || {
        if failure.is_none() {
            model.zero_grad();
            failure = model
                .f_forward_t(&x, true)
                .and_then(|out| torch::loss::loss(LossSpec::CROSS_ENTROPY, &out, &y))
                .and_then(|loss| {
                    loss.backward();
                    optim.step(&model.trainable_parameters())
                })
                .err();
        }
    });
    failure.map_or(Ok(t), |e| Err(e.into()))
}

/// What one column of the training-step table measures.
#[derive(Clone, Copy, PartialEq)]
enum Engine {
    Scratch,
    Reference,
    Project,
}

fn step<F: TorchFloat>(engine: Engine, row: &Row, reps: usize) -> Result<f64> {
    match (engine, row.reference) {
        (Engine::Scratch, _) => scratch_step::<F>(row, reps),
        (Engine::Reference, Some(reference)) => reference_step::<F>(reference, row.batch, reps),
        (Engine::Reference, None) => Ok(f64::NAN),
        (Engine::Project, _) => torch_step::<F>(row, reps),
    }
}

/// Wall-clock seconds of `dlfs run EXPERIMENT --engine ENGINE --epochs 1 --quiet`.
fn dlfs_epoch(dlfs: &PathBuf, experiment: &str, engine: &str) -> Result<f64> {
    let out = std::env::temp_dir().join("dlfs-bench");
    let start = Instant::now();
    let status = Command::new(dlfs)
        .args(["run", experiment, "--engine", engine, "--epochs", "1", "--quiet", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running {}", dlfs.display()))?;
    ensure!(status.success(), "dlfs run {experiment} --engine {engine} failed: {status}");
    Ok(start.elapsed().as_secs_f64())
}

fn epochs_table(rounds_: usize) -> Result<Option<Table>> {
    let dlfs = PathBuf::from(env!("CARGO_BIN_EXE_dlfs"));
    if !dlfs.exists() {
        println!("\n(no {}: build it with `cargo build --release -p examples` to time epochs)", dlfs.display());
        return Ok(None);
    }
    let mut runs: Vec<(&str, &str)> =
        ["ch4-glorot", "ch7-convnet"].into_iter().flat_map(|e| [(e, "scratch"), (e, "torch")]).collect();
    let t = rounds(rounds_, &mut runs, |(experiment, engine)| dlfs_epoch(&dlfs, experiment, engine))?;
    let mut table = Table::new(
        "One dlfs epoch, f32, data loading and evaluation included, wall-clock seconds (median)",
        &["experiment", "scratch", "torch engine", "ratio"],
    );
    for (pair, experiment) in t.chunks(2).zip(["ch4-glorot", "ch7-convnet"]) {
        table.push(vec![
            experiment.into(),
            format!("{:.2} s", pair[0]),
            format!("{:.2} s", pair[1]),
            format!("{:.2}", pair[0] / pair[1]),
        ]);
    }
    Ok(Some(table))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    tch::set_num_threads(cores as i32);
    println!(
        "{cores} cores; libtorch with {} threads; release build: {}",
        tch::get_num_threads(),
        !cfg!(debug_assertions)
    );
    let (p32, p64) = (peak::<f32>(args.rounds)?, peak::<f64>(args.rounds)?);
    println!("\nMatrix-product peak, all cores, median:");
    println!("  f32: {}", p32.describe());
    println!("  f64: {}", p64.describe());
    if !args.no_gemm {
        println!("\n{}", gemm_table(args.reps).render());
    }

    let rows: Vec<Row> = networks()
        .into_iter()
        .filter(|r| args.only.as_ref().is_none_or(|only| r.name.to_lowercase().contains(&only.to_lowercase())))
        .collect();
    let engines = [Engine::Scratch, Engine::Reference, Engine::Project];
    let mut cells: Vec<(usize, Engine, bool)> = (0..rows.len())
        .flat_map(|r| [false, true].into_iter().flat_map(move |f64_| engines.map(|e| (r, e, f64_))))
        .collect();
    let times = rounds(args.rounds, &mut cells, |&mut (r, engine, f64_)| {
        let row = &rows[r];
        let first = row.spec.book_layers().and_then(|layers| layers.first().copied().cloned());
        let reps = match first.unwrap_or(LayerSpec::Flatten) {
            LayerSpec::Dense(_) if row.batch <= 100 => args.reps * 2,
            LayerSpec::Recurrent(..) => args.reps / 4,
            _ => args.reps / 8,
        }
        .max(5);
        if f64_ {
            step::<f64>(engine, row, reps)
        } else {
            step::<f32>(engine, row, reps)
        }
    })?;

    let mut steps = Table::new(
        format!("Training step (forward, backward, momentum update), median of {} rounds", args.rounds),
        &[
            "network",
            "MFLOP",
            "scratch f32",
            "libtorch f32",
            "engine f32",
            "scratch/libtorch",
            "scratch f64",
            "libtorch f64",
            "engine f64",
            "scratch/libtorch",
        ],
    );
    let mut fractions = Table::new(
        format!("Fraction of the matrix-product peak (f32 {:.0}, f64 {:.0} GFLOP/s)", p32.best(), p64.best()),
        &["network", "scratch f32", "libtorch f32", "engine f32", "scratch f64", "libtorch f64", "engine f64"],
    );
    let ms = |s: f64| if s.is_nan() { "-".into() } else { format!("{:.3} ms", s * 1e3) };
    let ratio = |a: f64, b: f64| if b.is_nan() { "-".into() } else { format!("{:.2}", a / b) };
    for (r, row) in rows.iter().enumerate() {
        let t = &times[r * 6..r * 6 + 6];
        let flops = step_flops(&row.spec, row.batch)?;
        steps.push(vec![
            row.name.into(),
            format!("{:.1}", flops / 1e6),
            ms(t[0]),
            ms(t[1]),
            ms(t[2]),
            ratio(t[0], t[1]),
            ms(t[3]),
            ms(t[4]),
            ms(t[5]),
            ratio(t[3], t[4]),
        ]);
        let share = |s: f64, peak: &Peak| {
            if s.is_nan() {
                "-".into()
            } else {
                format!("{:.0} %", 100.0 * flops / s / 1e9 / peak.best())
            }
        };
        let mut cells = vec![row.name.to_string()];
        cells.extend(t[..3].iter().map(|&s| share(s, &p32)));
        cells.extend(t[3..].iter().map(|&s| share(s, &p64)));
        fractions.push(cells);
    }
    println!("\n{}", steps.render());
    println!("\n{}", fractions.render());

    if !args.no_epochs {
        if let Some(table) = epochs_table(args.rounds)? {
            println!("\n{}", table.render());
        }
    }
    Ok(())
}
