//! A small network described once, trained from scratch, then run on libtorch from the saved weights.

use scratch::ndarray::{Array2, Axis};
use scratch::prelude::*;
use torch::tch;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1)), learning y = x1 + x2 + x3 + x4.
    let spec = NetSpec::from_module(
        &[4],
        Module::sequential([
            Module::from(DenseSpec::new(16).init(WeightInit::Glorot)),
            Activation::Tanh.into(),
            DenseSpec::new(1).init(WeightInit::Glorot).into(),
        ]),
    );
    let mut rng = RandomState::new(1);
    let x: Array2<f64> = rng.randn((256, 4));
    let y = x.sum_axis(Axis(1)).insert_axis(Axis(1));
    let data = Dataset::new(x.clone().into_dyn(), y.into_dyn())?;

    let net = NeuralNetwork::<f64>::from_spec(&spec, MeanSquaredError::new(), &mut rng)?;
    let mut trainer = Trainer::new(net, SGD::new(0.01)?);
    let options = FitOptions { epochs: 50, eval_every: 10, ..Default::default() };
    let report = trainer.fit(&data, &data, &options, &mut ())?;
    println!("{}", trainer.net.summary());
    println!(
        "from scratch: loss {:.4} after {} epochs",
        report.evaluations.last().map_or(f64::NAN, |e| e.loss),
        report.epochs_trained
    );
    trainer.net.save("mlp.safetensors")?;

    // The same description on libtorch (on a GPU if there is one), from the weights just saved.
    let vs = torch::var_store::<f64>(torch::device::cuda_if_available());
    let model = torch::Net::new(vs.root(), &spec, &mut RandomState::new(0))?;
    model.load("mlp.safetensors")?;
    let theirs = tch::no_grad(|| model.f_forward_t(&model.input(&torch::convert::to_tensor(&x)), false))?;
    let ours = trainer.net.predict(&x)?;
    let gap = (&ours - &torch::convert::to_array::<f64>(&theirs)).iter().fold(0.0f64, |m, d| m.max(d.abs()));
    assert!(gap < 1e-12, "the engines disagree by {gap}");
    let device = if model.device().is_cuda() { "the GPU" } else { "the CPU" };
    println!("libtorch on {device}: predictions within {gap:.1e} of the from-scratch engine's");
    Ok(())
}
