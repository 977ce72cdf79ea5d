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
use scratch::network::NeuralNetwork;
use scratch::ops::Activation;
use scratch::optim::{Decay, Optimizer, SGDMomentum};
use scratch::rng::RandomState;
use scratch::spec::{book, CellKind, LayerSpec, LossSpec, NetSpec, StateMode, WeightInit};
use tch::Tensor;
use torch::convert::{to_tensor, TorchFloat};
use torch::layers::Kernel;
use torch::optim::Optimizer as _;

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

/// The networks timed: name, network, batch size, and the kernel of the libtorch engine's recurrent
/// layers.
fn networks() -> Vec<(&'static str, NetSpec, usize, Kernel)> {
    let mlp = |hidden: &[(usize, Activation)]| book::chapter4_mlp(hidden, Activation::Linear, WeightInit::Glorot, None);
    // The character-level LSTM of the language-model example: one layer of 256 and a projection back
    // to the vocabulary, on 25-character windows.
    let lstm = book::language_model(CellKind::Lstm, 65, 256, 1, StateMode::Reset, 25);
    let fused = Kernel::Fused;
    vec![
        ("book 784-89-10 (sigmoid), batch 60", mlp(&[(89, Activation::Sigmoid)]), 60, fused),
        ("wide 784-512-512-10 (relu), batch 256", mlp(&[(512, Activation::ReLU), (512, Activation::ReLU)]), 256, fused),
        ("chapter-5 CNN, batch 60", book::chapter5_cnn(), 60, fused),
        ("chapter-7 ConvNet, batch 60", book::chapter7_convnet(), 60, fused),
        ("LSTM 256, seq 25, vocab 65, batch 32", lstm.clone(), 32, fused),
        ("  same, torch step-by-step cells", lstm, 32, Kernel::Cells),
    ]
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
    let labels = (0..rows).map(|_| Ok(rng.randint(0, classes as i64)? as u8)).collect::<Result<Vec<_>>>()?;
    let y = scratch::data::mnist::one_hot::<F>(&labels, classes)?.into_shape_with_order(IxDyn(&out))?;
    Ok((x, y))
}

fn scratch_step<F: TorchFloat>(spec: &NetSpec, batch_size: usize, reps: usize) -> Result<f64> {
    let mut rng = RandomState::new(2);
    let mut net = NeuralNetwork::<F>::from_spec(spec, LossSpec::CROSS_ENTROPY.build::<F>(), &mut rng)?;
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

/// The project's libtorch engine, as the parity tests and `dlfs` run it: dropout masks from the shared
/// numpy-compatible stream, drawn on the CPU.
fn torch_step<F: TorchFloat>(spec: &NetSpec, batch_size: usize, reps: usize, kernel: Kernel) -> Result<f64> {
    let mut rng = RandomState::new(2);
    let vs = torch::var_store::<F>(tch::Device::Cpu);
    let model = torch::Net::with_options(vs.root(), spec, torch::Options::parity(kernel), &mut rng)?;
    let mut optim = torch::optim::SGDMomentum::new(0.01, 0.9, Decay::None)?;
    let (x, y) = batch::<F>(spec, batch_size, &mut rng)?;
    let (x, y): (Tensor, Tensor) = (to_tensor(&x), to_tensor(&y));
    let mut failure = None;
    let t = time(reps, || {
        if failure.is_none() {
            model.zero_grad();
            failure = model
                .f_forward_t(&x, true)
                .and_then(|out| torch::loss::loss(LossSpec::CROSS_ENTROPY, &out, &y))
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
    for (name, spec, batch, kernel) in networks() {
        if !args.only.as_ref().is_none_or(|only| name.to_lowercase().contains(&only.to_lowercase())) {
            continue;
        }
        let reps = match spec.layers[0] {
            LayerSpec::Dense(_) if batch <= 100 => args.reps * 2,
            LayerSpec::Recurrent(..) => args.reps / 4,
            _ => args.reps / 8,
        }
        .max(5);
        let (s32, t32) = (scratch_step::<f32>(&spec, batch, reps)?, torch_step::<f32>(&spec, batch, reps, kernel)?);
        let (s64, t64) = (scratch_step::<f64>(&spec, batch, reps)?, torch_step::<f64>(&spec, batch, reps, kernel)?);
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
