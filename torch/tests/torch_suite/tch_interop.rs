//! The torch engine used as a tch user would: its layers inside `nn::seq_t()` beside tch's own, a whole
//! network trained by tch's `nn::Adam` over its `VarStore`, and `vs.save` files (of a project network,
//! and of a `seq_t()` with the user's own path names) read by the from-scratch engine.

use scratch::network::NeuralNetwork;
use scratch::ops::{Activation, Mode};
use scratch::rng::RandomState;
use scratch::spec::{book, ConvSpec, CrossEntropyValue, DenseSpec, Module, NetSpec, Reduction};
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("tch-interop");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Ten points of each of two classes in the plane, as `(20, 2)` inputs and class indices.
fn two_blobs() -> (Tensor, Tensor) {
    let mut rng = RandomState::new(7);
    let x: ndarray::Array2<f32> = rng.randn((20, 2));
    let x = Tensor::from_slice(x.as_slice().unwrap()).reshape([20, 2]);
    let labels: Vec<i64> = (0..20).map(|i| i % 2).collect();
    let y = Tensor::from_slice(&labels);
    let shift = (y.to_kind(Kind::Float) * 4.0 - 2.0).unsqueeze(1);
    (x + shift, y)
}

#[test]
fn a_project_layer_runs_inside_seq_t_with_tchs_own_layers() {
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let hidden = DenseSpec::new(8).activation(Activation::Tanh);
    let net = nn::seq_t()
        .add(torch::layers::dense(&root / "0", 2, hidden, &mut RandomState::new(1)).unwrap())
        .add(nn::linear(&root / "1", 8, 2, Default::default()));
    let (x, y) = two_blobs();
    assert_eq!(net.forward_t(&x, true).size(), [20, 2]);
    // Both layers' parameters are in the one VarStore, under tch's path names.
    let mut names: Vec<String> = vs.variables().into_keys().collect();
    names.sort();
    assert_eq!(names, ["0.bias", "0.weight", "1.bias", "1.weight"]);
    // And tch's optimizer trains the mixed stack.
    let mut sgd = nn::Sgd::default().build(&vs, 0.5).unwrap();
    let loss = |net: &nn::SequentialT| net.forward_t(&x, true).cross_entropy_for_logits(&y).double_value(&[]);
    let before = loss(&net);
    for _ in 0..50 {
        sgd.backward_step(&net.forward_t(&x, true).cross_entropy_for_logits(&y));
    }
    assert!(loss(&net) < 0.5 * before, "{before} -> {}", loss(&net));
}

#[test]
fn tchs_adam_trains_a_project_network_and_the_from_scratch_engine_reads_its_var_store() {
    let vs = nn::VarStore::new(Device::Cpu);
    let spec =
        book::chapter4_mlp(&[(16, Activation::Tanh)], Activation::Linear, scratch::spec::WeightInit::Glorot, None);
    let layers = spec.book_layers().expect("the book's layout").into_iter().cloned().collect();
    let spec = scratch::spec::NetSpec::new(&[2], layers);
    let net = torch::Net::new(vs.root(), &spec, &mut RandomState::new(2)).unwrap();
    let mut adam = nn::Adam::default().build(&vs, 0.05).unwrap();
    let (x, y) = two_blobs();
    let ce = |logits: &Tensor| torch::loss::cross_entropy(logits, &y, Reduction::Mean, CrossEntropyValue::Categorical);
    let before = ce(&net.forward_t(&x, true)).unwrap().double_value(&[]);
    for _ in 0..60 {
        adam.backward_step(&ce(&net.forward_t(&x, true)).unwrap());
    }
    let after = ce(&net.forward_t(&x, true)).unwrap().double_value(&[]);
    assert!(after < 0.2 * before, "{before} -> {after}");

    // `vs.save` writes safetensors under the network's own names; the from-scratch engine loads it and
    // predicts what libtorch predicts.
    let path = tmp("adam.safetensors");
    vs.save(&path).unwrap();
    let mut ours =
        NeuralNetwork::<f32>::from_spec(&spec, scratch::losses::SoftmaxCrossEntropy::new(), &mut RandomState::new(9))
            .unwrap();
    ours.load(&path).unwrap();
    let x_array = torch::convert::to_array::<f32>(&x);
    let expected = torch::convert::to_array::<f32>(&net.forward_t(&x, false));
    let got = ours.forward(&x_array, Mode::Eval).unwrap();
    let worst = (&got - &expected).iter().fold(0.0f32, |m, d| m.max(d.abs()));
    assert!(worst < 1e-5, "scratch and libtorch predictions differ by {worst}");
}

/// A tch user's `nn::seq_t()` with path names of their own (`conv`, `hidden`, `out`, tch's `nn::linear`
/// among the project's layers), saved with `vs.save`, loads into the from-scratch engine built from the
/// description that names its children the same way, and predicts what libtorch predicts.
#[test]
fn a_seq_t_with_its_own_path_names_loads_into_the_from_scratch_engine() {
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let mut rng = RandomState::new(4);
    let conv = ConvSpec::new(1, 3, 3).activation(Activation::ReLU).flatten(true);
    let hidden = DenseSpec::new(16).activation(Activation::Tanh).dropout(0.8);
    let model = nn::seq_t()
        .add(torch::layers::conv2d(&root / "conv", conv, &mut rng).unwrap())
        .add(torch::layers::dense(&root / "hidden", 3 * 6 * 6, hidden, &mut rng).unwrap())
        .add(nn::linear(&root / "out", 16, 4, Default::default()));
    let path = tmp("seq-t.safetensors");
    vs.save(&path).unwrap();

    let spec = NetSpec::from_module(
        &[1, 6, 6],
        Module::block().child("conv", conv).child("hidden", hidden).child("out", DenseSpec::new(4)),
    );
    let mut ours = NeuralNetwork::<f32>::build(&spec, &mut RandomState::new(0)).unwrap();
    ours.load(&path).unwrap();
    let x = Tensor::randn([5, 1, 6, 6], (Kind::Float, Device::Cpu));
    let expected = torch::convert::to_array::<f32>(&model.forward_t(&x, false));
    let got = ours.predict(&torch::convert::to_array::<f32>(&x)).unwrap();
    let worst = (&got - &expected).iter().fold(0.0f32, |m, d| m.max(d.abs()));
    assert!(worst < 1e-5, "scratch and libtorch predictions differ by {worst}");
}
