//! `bench`: speed of the from-scratch engine against libtorch, measured in one process on the same
//! machine. Build with `--release`.
//!
//! * matrix products: GFLOP/s of the `gemm` crate (what `scratch` uses), ndarray's own product
//!   (`matrixmultiply`) and libtorch, at the layer shapes and at 2048³;
//! * training steps (forward, backward, update) of the dense, convolutional and recurrent networks:
//!   from scratch in f32 and f64 and on libtorch in f32 and f64 (with as many threads as cores), and
//!   the ratio scratch / torch. The LSTM is timed against libtorch's fused LSTM kernel (what
//!   `tch::nn::lstm` runs) and, for reference, against the step-by-step cells on libtorch.
//!
//! Every number is the median of repeated runs after a warm-up.

use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use examples::table::Table;
use ndarray::{Array2, ArrayD, IxDyn};
use scratch::layers::WeightInit;
use scratch::losses::{CrossEntropyValue, SoftmaxCrossEntropy};
use scratch::ops::{Activation, Mode};
use scratch::optim::{Decay, Optimizer, SGDMomentum};
use scratch::rng::RandomState;
use scratch::rnn::{CellKind, RecurrentSpec};
use tch::Tensor;
use torch::convert::{to_tensor, TorchFloat};
use torch::losses::Loss;
use torch::optim::Optimizer as _;
use torch::recurrent::Kernel;
use torch::spec::{LayerSpec, NetSpec};

#[derive(Parser)]
#[command(about = "Time the from-scratch engine against libtorch (build with --release)")]
struct Args {
    /// Timed repetitions per measurement (after a warm-up of a tenth as many)
    #[arg(long, default_value_t = 200)]
    reps: usize,
    /// Skip the matrix-product measurements
    #[arg(long)]
    no_gemm: bool,
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

/// The networks timed: name, network, batch size.
fn networks() -> Vec<(&'static str, NetSpec, usize)> {
    let mlp = |widths: &[usize], hidden: Activation| {
        let mut layers: Vec<LayerSpec> =
            widths[1..widths.len() - 1].iter().map(|&n| LayerSpec::dense(n, hidden, WeightInit::Glorot)).collect();
        layers.push(LayerSpec::dense(widths[widths.len() - 1], Activation::Linear, WeightInit::Glorot));
        NetSpec::new(&widths[..1], layers)
    };
    vec![
        ("book 784-89-10 (sigmoid), batch 60", mlp(&[784, 89, 10], Activation::Sigmoid), 60),
        ("wide 784-512-512-10 (relu), batch 256", mlp(&[784, 512, 512, 10], Activation::ReLU), 256),
        ("chapter-5 CNN, batch 60", torch::book::chapter5_cnn(), 60),
        ("chapter-7 ConvNet, batch 60", torch::book::chapter7_convnet(), 60),
        ("LSTM 256, seq 25, vocab 65, batch 32", lstm(Kernel::Builtin), 32),
        ("  same, torch step-by-step cells", lstm(Kernel::Cells), 32),
    ]
}

/// The character-level LSTM of the language-model example: one layer of 256 with an output projection
/// back to the vocabulary, on 25-character windows; `kernel` is the libtorch engine's.
fn lstm(kernel: Kernel) -> NetSpec {
    let (vocab, steps) = (65, 25);
    let cell = RecurrentSpec::new(CellKind::Lstm, vocab, 256).with_output(vocab);
    NetSpec::new(&[steps, vocab], vec![LayerSpec::Recurrent(cell, kernel)])
}

/// Random inputs and random one-hot targets (over the last axis of the network's output).
fn batch<F: TorchFloat>(spec: &NetSpec, batch: usize, rng: &mut RandomState) -> Result<(ArrayD<F>, ArrayD<F>)> {
    let mut shape = vec![batch];
    shape.extend(&spec.input);
    let x = rng.randn(IxDyn(&shape));
    let mut out = vec![batch];
    out.extend(spec.shapes()?.last().expect("a network has layers"));
    let classes = *out.last().expect("an output has features");
    let rows = out.iter().product::<usize>() / classes;
    let labels: Vec<u8> = (0..rows).map(|_| rng.randint(0, classes as i64) as u8).collect();
    let y = scratch::data::mnist::one_hot::<F>(&labels, classes).into_shape_with_order(IxDyn(&out))?;
    Ok((x, y))
}

fn scratch_step<F: TorchFloat>(spec: &NetSpec, batch_size: usize, reps: usize) -> Result<f64> {
    let mut rng = RandomState::new(2);
    let mut net = spec.scratch::<F>(Box::new(SoftmaxCrossEntropy::new()), &mut rng)?;
    let mut optim = SGDMomentum::new(0.01, 0.9, Decay::None)?;
    let (x, y) = batch::<F>(spec, batch_size, &mut rng)?;
    let mut failure = None;
    let t = time(reps, || {
        if failure.is_none() {
            failure = net.train_batch(&x, &y).and_then(|_| optim.step(net.params_mut())).err();
        }
    });
    failure.map_or(Ok(t), |e| Err(e.into()))
}

fn torch_step<F: TorchFloat>(spec: &NetSpec, batch_size: usize, reps: usize) -> Result<f64> {
    let mut rng = RandomState::new(2);
    let loss = Loss::SoftmaxCrossEntropy(CrossEntropyValue::Categorical);
    let mut model = spec.torch::<F>(loss, tch::Device::Cpu, &mut rng)?;
    let mut optim = torch::optim::SGDMomentum::new(0.01, 0.9, Decay::None)?;
    let (x, y) = batch::<F>(spec, batch_size, &mut rng)?;
    let (x, y): (Tensor, Tensor) = (to_tensor(&x), to_tensor(&y));
    let mut failure = None;
    let t = time(reps, || {
        if failure.is_none() {
            model.zero_grad();
            failure = model
                .forward_loss(&x, &y, Mode::Train)
                .and_then(|loss| {
                    loss.backward();
                    optim.step(&model.named_parameters())
                })
                .err();
        }
    });
    failure.map_or(Ok(t), |e| Err(e.into()))
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
    if !args.no_gemm {
        println!("\n{}", gemm_table(args.reps).render());
    }
    let mut t = Table::new(
        "Training step (forward, backward, momentum update), median",
        &["network", "scratch f32", "torch f32", "ratio f32", "scratch f64", "torch f64", "ratio f64"],
    );
    for (name, spec, batch) in networks() {
        if !args.only.as_ref().is_none_or(|only| name.to_lowercase().contains(&only.to_lowercase())) {
            continue;
        }
        let reps = match spec.layers[0] {
            LayerSpec::Dense { .. } if batch <= 100 => args.reps * 2,
            LayerSpec::Recurrent(..) => args.reps / 4,
            _ => args.reps / 8,
        }
        .max(5);
        let (s32, t32) = (scratch_step::<f32>(&spec, batch, reps)?, torch_step::<f32>(&spec, batch, reps)?);
        let (s64, t64) = (scratch_step::<f64>(&spec, batch, reps)?, torch_step::<f64>(&spec, batch, reps)?);
        let ms = |s: f64| format!("{:.3} ms", s * 1e3);
        t.push(vec![
            name.into(),
            ms(s32),
            ms(t32),
            format!("{:.2}", s32 / t32),
            ms(s64),
            ms(t64),
            format!("{:.2}", s64 / t64),
        ]);
    }
    println!("\n{}", t.render());
    Ok(())
}
