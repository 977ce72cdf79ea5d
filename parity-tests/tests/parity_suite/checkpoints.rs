//! One checkpoint format for both engines: a model trained in one loads in the other and predicts the
//! same; mismatches are listed whichever engine reads the file.

use ndarray::{ArrayD, IxDyn};
use parity_tests::{assert_close_tensor, dense_pair, targets, DenseSpec, LossSpec, F32, F64};
use scratch::ops::Activation;
use scratch::optim::SGD;
use scratch::rng::RandomState;
use scratch::spec::WeightInit;
use scratch::train::{Dataset, FitOptions, Trainer};
use torch::convert::to_tensor;

/// An empty folder for this test process (under the system's temporary folder, `$TMPDIR`, so that the
/// test binary runs wherever it is copied); the test removes it when it passes.
fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dlfs-parity-checkpoints-{}", std::process::id())).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Removes a folder of [`dir`], and the process's folder if that is then empty.
fn clean(d: &std::path::Path) {
    std::fs::remove_dir_all(d).unwrap();
    if let Some(parent) = d.parent() {
        // Fails, harmlessly, while another test of the process still has its folder there.
        let _ = std::fs::remove_dir(parent);
    }
}

fn layers(init: WeightInit) -> [DenseSpec; 3] {
    [
        DenseSpec::new(12).activation(Activation::Tanh).init(init),
        DenseSpec::new(6).activation(Activation::ReLU).init(init),
        DenseSpec::new(3).init(init),
    ]
}

#[test]
fn a_model_trained_from_scratch_runs_in_torch_and_back() {
    let d = dir("round-trip");
    let mut rng = RandomState::new(9);
    let x: ArrayD<f64> = rng.randn(IxDyn(&[40, 5]));
    let y = targets::<f64>(LossSpec::MSE, 40, 3, &mut rng);
    let (net, _) = dense_pair::<f64>(5, &layers(WeightInit::Glorot), LossSpec::MSE, 1);
    let mut trainer = Trainer::new(net, SGD::new(0.05).unwrap());
    let data = Dataset::new(x.clone(), y).unwrap();
    let options = FitOptions { epochs: 5, eval_every: 5, batch_size: 8, restart: false, ..Default::default() };
    trainer.fit(&data, &data, &options, &mut ()).unwrap();
    trainer.net.save(d.join("scratch.safetensors")).unwrap();

    // Into a torch model with other weights, in f64 and in f32.
    let (_, model) = dense_pair::<f64>(5, &layers(WeightInit::Glorot), LossSpec::MSE, 2);
    model.load(d.join("scratch.safetensors")).unwrap();
    let expected = trainer.net.predict(&x).unwrap();
    let predict = |model: &torch::Net, x: &tch::Tensor| model.f_forward_t(&model.input(x), false).unwrap();
    assert_close_tensor("torch f64 prediction", &expected, &predict(&model, &to_tensor(&x)), F64);
    let (_, model32) = dense_pair::<f32>(5, &layers(WeightInit::Glorot), LossSpec::MSE, 3);
    model32.load(d.join("scratch.safetensors")).unwrap();
    let x32 = x.mapv(|v| v as f32);
    assert_close_tensor(
        "torch f32 prediction",
        &expected.mapv(|v| v as f32),
        &predict(&model32, &to_tensor(&x32)),
        F32,
    );

    // And back: torch saves, a fresh from-scratch network loads.
    model.save(d.join("torch.safetensors")).unwrap();
    let (mut back, _) = dense_pair::<f64>(5, &layers(WeightInit::Standard), LossSpec::MSE, 4);
    back.load(d.join("torch.safetensors")).unwrap();
    assert_eq!(back.predict(&x).unwrap(), expected);
    let file = scratch::checkpoint::load::<f64>(&d.join("torch.safetensors")).unwrap();
    assert_eq!(file.metadata["engine"], "torch");
    clean(&d);
}

#[test]
fn torch_lists_the_mismatches_of_a_scratch_checkpoint() {
    let d = dir("mismatch");
    let (net, _) = dense_pair::<f64>(5, &layers(WeightInit::Glorot), LossSpec::MSE, 1);
    net.save(d.join("a.safetensors")).unwrap();
    let other = [DenseSpec::new(12).activation(Activation::Tanh), DenseSpec::new(4)];
    let (_, model) = dense_pair::<f64>(5, &other, LossSpec::MSE, 1);
    let before = model.named_arrays::<f64>();
    let err = model.load(d.join("a.safetensors")).unwrap_err().to_string();
    for expected in [
        "a.safetensors",
        "layers.1.weight: the model has shape [4, 12], the file [6, 12]",
        "layers.1.bias: the model has shape [4], the file [6]",
        "unexpected tensor layers.2.weight [3, 6]",
    ] {
        assert!(err.contains(expected), "{expected:?} not in:\n{err}");
    }
    assert_eq!(model.named_arrays::<f64>(), before, "a failed load changes nothing");
    clean(&d);
}
