//! The torch engine reports errors like the from-scratch one: wrong input widths name the layer and both
//! shapes, divergence names the epoch and batch, and an unavailable device says what to do.

use ndarray::{Array2, ArrayD};
use parity_tests::{dense_pair, DenseSpec, LossSpec};
use scratch::ops::Activation;
use scratch::optim::Decay;
use scratch::train::{Dataset, FitOptions};
use torch::convert::to_tensor;

#[test]
fn an_input_of_the_wrong_width_names_the_layer_and_both_shapes() {
    let layers = [DenseSpec::new(5).activation(Activation::Sigmoid), DenseSpec::new(1)];
    let (net, model) = dense_pair::<f64>(13, &layers, LossSpec::MSE, 1);
    let x = Array2::<f64>::zeros((4, 12)).into_dyn();
    let ours = net.predict(&x).unwrap_err().to_string();
    let theirs = model.f_forward_t(&model.input(&to_tensor(&x)), false).unwrap_err().to_string();
    for msg in [&ours, &theirs] {
        assert!(msg.starts_with("shape mismatch in layers.0 Dense(13 -> 5, sigmoid): "), "{msg}");
        assert!(msg.ends_with("input: expected (batch, 13) or (batch, time, 13), got [4, 12]"), "{msg}");
    }
    let mut trainer =
        torch::train::Trainer::new(model, LossSpec::MSE, torch::optim::SGD::new(0.1, Decay::None).unwrap());
    let wrong_target = trainer.forward_loss(
        &to_tensor(&Array2::<f64>::zeros((4, 13))),
        &to_tensor(&Array2::<f64>::zeros((4, 2))),
        false,
    );
    let msg = wrong_target.unwrap_err().to_string();
    assert!(msg.contains("MeanSquaredError") && msg.contains("[4, 2]"), "{msg}");
}

#[test]
fn divergence_names_the_epoch_and_batch() {
    let (_, model) = dense_pair::<f64>(1, &[DenseSpec::new(1)], LossSpec::MSE, 1);
    let x: ArrayD<f64> = Array2::from_shape_fn((8, 1), |(i, _)| i as f64 * 10.0).into_dyn();
    let data = Dataset::new(x.clone(), x * 3.0).unwrap();
    let mut trainer =
        torch::train::Trainer::new(model, LossSpec::MSE, torch::optim::SGD::new(10.0, Decay::None).unwrap());
    let options = FitOptions {
        epochs: 50,
        eval_every: 1,
        batch_size: 4,
        restart: false,
        early_stopping: false,
        ..Default::default()
    };
    let err = trainer.fit(&data, &data, &options, &mut ()).unwrap_err();
    assert!(err.to_string().starts_with("training diverged at epoch"), "{err}");
    assert!(matches!(err, torch::Error::Scratch(scratch::Error::Diverged { .. })), "{err:?}");
}

#[test]
fn asking_for_an_unavailable_gpu_is_a_clear_error() {
    let device: torch::Device = "cuda".parse().unwrap();
    match device.resolve() {
        Ok(d) => assert!(tch::Cuda::is_available() && d.is_cuda()),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("CUDA was requested but is not available") && msg.contains("--cuda"), "{msg}");
        }
    }
    assert!("tpu".parse::<torch::Device>().unwrap_err().to_string().contains("expected `cpu`, `cuda` or `auto`"));
}
