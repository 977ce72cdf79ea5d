//! Chapter 3 reproduced to the digits the book printed: the three Boston models built from `Operation`s,
//! `Layer`s and a `NeuralNetwork`, trained by the `Trainer` (f64, numpy-compatible generator, the
//! book's per-layer re-seeding switched on explicitly).

use crate::common::{data_dir_or_skip, round};
use scratch::data::boston;
use scratch::metrics::{mae, rmse};
use scratch::prelude::*;

const SEED: u32 = 20_190_501;

/// `neurons` of each layer: sigmoid hidden layers, a linear output.
fn book_network(hidden: &[usize]) -> NeuralNetwork<f64> {
    let mut rng = RandomState::new(SEED);
    let mut layers: Vec<Box<dyn Layer<f64>>> = Vec::new();
    let mut n_in = 13;
    for &h in hidden {
        layers.push(Box::new(Dense::new(n_in, DenseSpec::new(h).activation(Activation::Sigmoid), &mut rng).unwrap()));
        n_in = h;
    }
    layers.push(Box::new(Dense::new(n_in, DenseSpec::new(1), &mut rng).unwrap()));
    NeuralNetwork::new(layers, MeanSquaredError::new())
}

fn fit(hidden: &[usize]) -> Option<(FitReport, f64, f64)> {
    let dir = data_dir_or_skip("boston/boston_house_prices.csv")?;
    let data = boston::load_book_split(&dir).unwrap();
    let train = Dataset::new(data.x_train.into_dyn(), data.y_train.into_dyn()).unwrap();
    let test = Dataset::new(data.x_test.clone().into_dyn(), data.y_test.clone().into_dyn()).unwrap();
    let mut trainer = Trainer::new(book_network(hidden), SGD::new(0.01).unwrap());
    let options = FitOptions {
        epochs: 50,
        eval_every: 10,
        batch_size: 32,
        seed: SEED,
        restart: true,
        init_seeding: InitSeeding::BookReseed(SEED),
        early_stopping: true,
        eval_batches: None,
        drop_last: false,
        checkpoint: None,
    };
    let report = trainer.fit(&train, &test, &options, &mut ()).unwrap();
    let preds = trainer.net.predict(&data.x_test).unwrap();
    Some((report, mae(&preds, &data.y_test.into_dyn()), rmse(&preds, &test.y)))
}

fn check(hidden: &[usize], losses: [f64; 5], mae_rmse: (f64, f64)) {
    let Some((report, mae, rmse)) = fit(hidden) else { return };
    let got: Vec<(usize, f64)> = report.evaluations.iter().map(|e| (e.epoch, round(e.loss, 3))).collect();
    assert_eq!(got, vec![(10, losses[0]), (20, losses[1]), (30, losses[2]), (40, losses[3]), (50, losses[4])]);
    assert_eq!(report.stopped_after, None, "early stopping never triggered in the book");
    assert_eq!((round(mae, 2), round(rmse, 2)), mae_rmse);
}

#[test]
fn linear_regression_matches_the_book() {
    check(&[], [30.293, 28.469, 26.293, 25.541, 25.087], (3.52, 5.01));
}

#[test]
fn one_hidden_layer_matches_the_book() {
    check(&[13], [27.435, 21.839, 18.918, 17.195, 16.215], (2.60, 4.03));
}

#[test]
fn two_hidden_layers_match_the_book() {
    check(&[13, 13], [44.143, 25.278, 22.339, 16.500, 14.655], (2.45, 3.83));
}
