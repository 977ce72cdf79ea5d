//! The trainer's behaviour: early stopping restores the best evaluated model, divergence and bad shapes
//! are errors that say where, and the book's initialisation quirk is reproduced only on request.

use ndarray::{array, Array2};
use scratch::prelude::*;
use scratch::train::{Evaluation, Observer};
use scratch::Error;

fn one_weight_net(w: f64, b: f64) -> NeuralNetwork<f64> {
    let layer: Dense<f64> = Dense::new(1, DenseSpec::new(1), &mut RandomState::new(0)).unwrap();
    let mut net = NeuralNetwork::new(vec![Box::new(layer)], MeanSquaredError::new());
    for (name, p) in net.params_mut().iter_mut() {
        p.value.fill(if name.ends_with("weight") { w } else { b });
    }
    net
}

fn weights(net: &NeuralNetwork<f64>) -> Vec<f64> {
    net.params().iter().flat_map(|(_, p)| p.value.iter().copied()).collect()
}

#[derive(Default)]
struct Recorder {
    evals: Vec<(Evaluation, bool)>,
}

impl Observer for Recorder {
    fn on_eval(&mut self, eval: &Evaluation, improved: bool) {
        self.evals.push((*eval, improved));
    }
}

/// Training pulls the prediction from 0 towards 1 while the test target is 0.5: the test loss falls,
/// then rises once the prediction passes 0.5.
fn overshooting_problem() -> (Dataset<f64>, Dataset<f64>) {
    let train = Dataset::new(array![[1.0]].into_dyn(), array![[1.0]].into_dyn()).unwrap();
    let test = Dataset::new(array![[1.0]].into_dyn(), array![[0.5]].into_dyn()).unwrap();
    (train, test)
}

#[test]
fn early_stopping_restores_the_best_evaluated_model() {
    let (train, test) = overshooting_problem();
    let options = FitOptions { epochs: 100, eval_every: 2, batch_size: 1, restart: false, ..Default::default() };
    let mut trainer = Trainer::new(one_weight_net(0.0, 0.0), SGD::new(0.02).unwrap());
    let mut recorder = Recorder::default();
    let report = trainer.fit(&train, &test, &options, &mut recorder).unwrap();

    let stopped = report.stopped_after.expect("the test loss rises, so training stops early");
    let best = report.best.unwrap();
    assert_eq!(best.epoch + 2, stopped, "the best model is the one evaluated just before the rise");
    assert!(recorder.evals.iter().rev().skip(1).all(|(_, improved)| *improved));
    assert!(!recorder.evals.last().unwrap().1);

    // The network now holds the best evaluated model: its test loss is exactly the best loss, not the
    // loss of the snapshot the book restores (taken at the start of the failing epoch, one epoch later).
    let restored = trainer.net.forward_loss(&test.x, &test.y, Mode::Eval).unwrap().1;
    assert_eq!(restored, best.loss);

    let mut replay = Trainer::new(one_weight_net(0.0, 0.0), SGD::new(0.02).unwrap());
    let plain = FitOptions { epochs: best.epoch, eval_every: best.epoch, early_stopping: false, ..options.clone() };
    replay.fit(&train, &test, &plain, &mut ()).unwrap();
    assert_eq!(weights(&trainer.net), weights(&replay.net));
    let book_snapshot = {
        let mut t = Trainer::new(one_weight_net(0.0, 0.0), SGD::new(0.02).unwrap());
        t.fit(&train, &test, &FitOptions { epochs: stopped - 1, eval_every: 1000, ..plain }, &mut ()).unwrap();
        weights(&t.net)
    };
    assert_ne!(weights(&trainer.net), book_snapshot);
}

#[test]
fn without_early_stopping_training_runs_every_epoch() {
    let (train, test) = overshooting_problem();
    let options = FitOptions {
        epochs: 30,
        eval_every: 2,
        batch_size: 1,
        restart: false,
        early_stopping: false,
        ..Default::default()
    };
    let mut trainer = Trainer::new(one_weight_net(0.0, 0.0), SGD::new(0.02).unwrap());
    let report = trainer.fit(&train, &test, &options, &mut ()).unwrap();
    assert_eq!((report.epochs_trained, report.evaluations.len(), report.stopped_after), (30, 15, None));
    assert_eq!(report.batch_losses.len(), 30);
}

#[test]
fn divergence_names_the_epoch_and_batch() {
    let x: Array2<f64> = Array2::from_shape_fn((8, 1), |(i, _)| i as f64);
    let train = Dataset::new(x.clone().into_dyn(), (&x * 3.0).into_dyn()).unwrap();
    // No evaluation until the last epoch: the loss itself overflows first.
    let options = FitOptions {
        epochs: 50,
        eval_every: 50,
        batch_size: 4,
        restart: false,
        early_stopping: false,
        ..Default::default()
    };
    let mut trainer = Trainer::new(one_weight_net(0.0, 0.0), SGD::new(10.0).unwrap());
    let err = trainer.fit(&train, &train, &options, &mut ()).unwrap_err();
    match &err {
        Error::Diverged { epoch, batch, what } => {
            assert!(*epoch >= 1 && (1..=2).contains(batch), "{err}");
            assert!(what == "the loss is not finite" || what.contains("gradient"), "{err}");
            assert!(what.ends_with("is not finite"), "{err}");
        }
        other => panic!("expected a divergence error, got {other}"),
    }
    assert!(err.to_string().starts_with("training diverged at epoch"));
}

/// Eight rows of `x = 1, y = 3` in one batch, from `w = b = 0`: at a learning rate of 1 every step
/// multiplies the error by −3, so the loss (the squared error) grows ninefold an epoch and stays
/// finite for hundreds of epochs: 81 after the first, 9⁵ = 59 049 (729 times 81) after the fourth,
/// 9⁶ (6561 times) after the fifth.
#[test]
fn an_evaluation_loss_a_thousand_times_the_first_stops_training() {
    let train = Dataset::new(Array2::ones((8, 1)).into_dyn(), Array2::from_elem((8, 1), 3.0).into_dyn()).unwrap();
    let options = FitOptions {
        epochs: 100,
        eval_every: 1,
        batch_size: 8,
        restart: false,
        early_stopping: false,
        ..Default::default()
    };
    let mut recorder = Recorder::default();
    let mut trainer = Trainer::new(one_weight_net(0.0, 0.0), SGD::new(1.0).unwrap());
    let err = trainer.fit(&train, &train, &options, &mut recorder).unwrap_err();
    let losses: Vec<f64> = recorder.evals.iter().map(|(e, _)| e.loss).collect();
    assert_eq!(losses.len(), 4, "{losses:?}");
    assert!((losses[0] - 81.0).abs() < 1e-9 && (losses[3] - 59_049.0).abs() < 1e-6, "{losses:?}");
    match &err {
        Error::Diverged { epoch: 5, batch: 1, what } => {
            assert!(
                what.contains("531441.0000") && what.contains("1000 times the first evaluation's 81.0000"),
                "{what}"
            );
        }
        other => panic!("expected a divergence at epoch 5, batch 1, got {other}"),
    }
}

#[test]
fn a_test_set_that_is_not_finite_is_refused_before_training() {
    // Built field by field, past `Dataset::new`'s check: `fit` checks both sets before the first step.
    let test = Dataset { x: array![[1.0]].into_dyn(), y: array![[f64::NAN]].into_dyn() };
    let (train, _) = overshooting_problem();
    let options = FitOptions { epochs: 3, eval_every: 1, batch_size: 1, restart: false, ..Default::default() };
    let mut trainer = Trainer::new(one_weight_net(0.0, 0.0), SGD::new(0.1).unwrap());
    let err = trainer.fit(&train, &test, &options, &mut ()).unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid argument: the test set: y (the targets) row 0, column 0 is NaN; every input and target must be finite"
    );
    assert_eq!(trainer.net.named_parameters(), one_weight_net(0.0, 0.0).named_parameters(), "nothing trained");
}

#[test]
fn datasets_refuse_values_that_are_not_finite_naming_the_array_row_and_column() {
    let mut x = Array2::<f64>::zeros((3, 2));
    x[[1, 1]] = f64::NAN;
    let err = Dataset::new(x.into_dyn(), Array2::<f64>::zeros((3, 1)).into_dyn()).unwrap_err().to_string();
    assert!(err.contains("x (the inputs) row 1, column 1 is NaN"), "{err}");
    let mut y = Array2::<f32>::zeros((3, 1));
    y[[2, 0]] = f32::INFINITY;
    let err = Dataset::new(Array2::<f32>::zeros((3, 2)).into_dyn(), y.into_dyn()).unwrap_err().to_string();
    assert!(err.contains("y (the targets) row 2, column 0 is inf"), "{err}");
    // Images: the column counts the row's values in row-major order.
    let mut images = ndarray::Array4::<f64>::zeros((2, 1, 2, 2));
    images[[1, 0, 1, 0]] = f64::NEG_INFINITY;
    let err = Dataset::new(images.into_dyn(), Array2::<f64>::zeros((2, 1)).into_dyn()).unwrap_err().to_string();
    assert!(err.contains("x (the inputs) row 1, column 2 is -inf"), "{err}");
}

#[test]
fn an_input_of_the_wrong_width_names_the_layer_and_both_shapes() {
    let mut rng = RandomState::new(1);
    let layers: Vec<Box<dyn Layer<f64>>> = vec![
        Box::new(Dense::new(13, DenseSpec::new(5).activation(Activation::Sigmoid), &mut rng).unwrap()),
        Box::new(Dense::new(5, DenseSpec::new(1), &mut rng).unwrap()),
    ];
    let mut net = NeuralNetwork::new(layers, MeanSquaredError::new());
    let err = net.predict(&Array2::<f64>::zeros((4, 12))).unwrap_err().to_string();
    assert!(err.contains("layers.0 Dense(13 -> 5, sigmoid)"), "{err}");
    assert!(err.contains("(batch, 13)") && err.contains("[4, 12]"), "{err}");
    let err = net.train_batch(&Array2::<f64>::zeros((4, 13)), &Array2::<f64>::zeros((4, 2))).unwrap_err().to_string();
    assert!(err.contains("MeanSquaredError") && err.contains("[4, 2]"), "{err}");
}

#[test]
fn invalid_options_are_rejected() {
    let (train, test) = overshooting_problem();
    let mut trainer = Trainer::new(one_weight_net(0.0, 0.0), SGD::new(0.1).unwrap());
    let err = trainer.fit(&train, &test, &FitOptions { batch_size: 0, ..Default::default() }, &mut ()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)));
}

fn two_hidden_layers() -> NeuralNetwork<f64> {
    let mut rng = RandomState::new(0);
    let layers: Vec<Box<dyn Layer<f64>>> = vec![
        Box::new(Dense::new(13, DenseSpec::new(13).activation(Activation::Sigmoid), &mut rng).unwrap()),
        Box::new(Dense::new(13, DenseSpec::new(13).activation(Activation::Sigmoid), &mut rng).unwrap()),
        Box::new(Dense::new(13, DenseSpec::new(1), &mut rng).unwrap()),
    ];
    NeuralNetwork::new(layers, MeanSquaredError::new())
}

#[test]
fn book_reseeding_gives_identical_layers_only_on_request() {
    let mut net = two_hidden_layers();
    net.reinitialize(&mut RandomState::new(5), InitSeeding::BookReseed(5));
    let p = net.params();
    assert_eq!(p[0].1.value, p[2].1.value, "the book's quirk: layer 1's weights equal layer 0's");
    let first_row = p[0].1.value.index_axis(ndarray::Axis(0), 0).to_owned();
    assert_eq!(p[4].1.value.iter().copied().collect::<Vec<_>>(), first_row.iter().copied().collect::<Vec<_>>());

    net.reinitialize(&mut RandomState::new(5), InitSeeding::Stream);
    let p = net.params();
    assert_ne!(p[0].1.value, p[2].1.value);
}

#[test]
fn restart_makes_training_independent_of_the_starting_weights() {
    let x: Array2<f64> = RandomState::new(3).randn((40, 13));
    let y = x.sum_axis(ndarray::Axis(1)).insert_axis(ndarray::Axis(1));
    let data = Dataset::new(x.into_dyn(), y.into_dyn()).unwrap();
    let options = FitOptions { epochs: 3, eval_every: 1, batch_size: 8, seed: 9, restart: true, ..Default::default() };
    let mut a = Trainer::new(two_hidden_layers(), SGD::new(0.01).unwrap());
    let mut other = two_hidden_layers();
    other.reinitialize(&mut RandomState::new(99), InitSeeding::Stream);
    let mut b = Trainer::new(other, SGD::new(0.01).unwrap());
    let ra = a.fit(&data, &data, &options, &mut ()).unwrap();
    let rb = b.fit(&data, &data, &options, &mut ()).unwrap();
    assert_eq!(ra.batch_losses, rb.batch_losses);
    assert_eq!(weights(&a.net), weights(&b.net));
}

/// `fit` trains the model it is given: a model loaded from a checkpoint is fine-tuned, its first
/// training loss the loaded model's own loss (the whole set is one batch), far below a fresh model's.
#[test]
fn fit_fine_tunes_a_loaded_model_without_reinitialising_it() {
    let x: Array2<f64> = RandomState::new(3).randn((40, 13));
    let y = x.sum_axis(ndarray::Axis(1)).insert_axis(ndarray::Axis(1));
    let data = Dataset::new(x.into_dyn(), y.into_dyn()).unwrap();
    let options =
        FitOptions { epochs: 200, eval_every: 50, batch_size: 40, early_stopping: false, ..Default::default() };
    let mut pretrained = Trainer::new(two_hidden_layers(), SGD::new(0.05).unwrap());
    pretrained.fit(&data, &data, &options, &mut ()).unwrap();
    let path = std::env::temp_dir().join(format!("dlfs-fine-tune-{}.safetensors", std::process::id()));
    pretrained.net.save(&path).unwrap();

    let mut loaded = two_hidden_layers();
    let fresh_loss = loaded.forward_loss(&data.x, &data.y, Mode::Eval).unwrap().1;
    loaded.load(&path).unwrap();
    std::fs::remove_file(&path).ok();
    let loaded_loss = loaded.forward_loss(&data.x, &data.y, Mode::Eval).unwrap().1;
    let mut tuning = Trainer::new(loaded, SGD::new(0.01).unwrap());
    let report = tuning.fit(&data, &data, &FitOptions { epochs: 1, eval_every: 1, ..options }, &mut ()).unwrap();
    let first = report.batch_losses[0];
    assert!((first - loaded_loss).abs() <= 1e-12 * loaded_loss, "first loss {first}, the loaded model's {loaded_loss}");
    assert!(loaded_loss < fresh_loss / 2.0, "the loaded model {loaded_loss} beats a fresh one {fresh_loss}");
}

#[test]
fn drop_last_leaves_out_the_partial_batch() {
    let x = Array2::from_shape_fn((10, 1), |(i, _)| i as f64 / 10.0).into_dyn();
    let data = Dataset::new(x.clone(), x).unwrap();
    let options = FitOptions { epochs: 2, eval_every: 1, batch_size: 4, early_stopping: false, ..Default::default() };
    for (drop_last, per_epoch) in [(false, 3), (true, 2)] {
        let mut trainer = Trainer::new(one_weight_net(0.5, 0.0), SGD::new(0.01).unwrap());
        let report = trainer.fit(&data, &data, &FitOptions { drop_last, ..options.clone() }, &mut ()).unwrap();
        assert_eq!(report.batch_losses.len(), 2 * per_epoch, "drop_last {drop_last}");
    }
    let small = Dataset::new(Array2::<f64>::zeros((3, 1)).into_dyn(), Array2::<f64>::zeros((3, 1)).into_dyn()).unwrap();
    let mut trainer = Trainer::new(one_weight_net(0.5, 0.0), SGD::new(0.01).unwrap());
    let err = trainer.fit(&small, &small, &FitOptions { drop_last: true, ..options.clone() }, &mut ()).unwrap_err();
    assert!(err.to_string().contains("no full batch"), "{err}");
}

#[test]
fn the_checkpoint_holds_the_best_evaluated_model() {
    let x = Array2::from_shape_fn((40, 1), |(i, _)| i as f64 / 40.0 - 0.5).into_dyn();
    let data = Dataset::new(x.clone(), x.mapv(|v| 3.0 * v + 1.0)).unwrap();
    // Test targets halfway between the start (0) and the training targets: the test loss falls, then
    // rises again as training goes on, so the last model is not the best.
    let test = Dataset::new(x.clone(), x.mapv(|v| 1.5 * v + 0.5)).unwrap();
    let path = std::env::temp_dir().join(format!("dlfs-best-{}.safetensors", std::process::id()));
    let options = FitOptions {
        epochs: 12,
        eval_every: 1,
        batch_size: 8,
        early_stopping: false,
        checkpoint: Some(path.clone()),
        ..Default::default()
    };
    let mut trainer = Trainer::new(one_weight_net(0.0, 0.0), SGD::new(0.05).unwrap());
    let report = trainer.fit(&data, &test, &options, &mut ()).unwrap();
    let best = report.best.unwrap();
    assert!(report.evaluations.last().unwrap().loss > best.loss, "{:?}", report.evaluations);
    let mut loaded = one_weight_net(0.0, 0.0);
    loaded.load(&path).unwrap();
    let loss = loaded.forward_loss(&test.x, &test.y, Mode::Eval).unwrap().1;
    assert_eq!(loss, best.loss, "the file holds the model of epoch {}", best.epoch);
    std::fs::remove_file(&path).unwrap();
}

/// `fit_loader` trains on exactly the loader's batches: the same updates as a hand-written loop over an
/// identical loader, its batch size and `drop_last` taking the place of the options'; and it evaluates
/// and stops early like `fit`.
#[test]
fn fit_loader_trains_on_the_loaders_batches() {
    use scratch::data::DataLoader;
    let x = Array2::from_shape_fn((10, 1), |(i, _)| i as f64 / 10.0 - 0.3).into_dyn();
    let data = Dataset::new(x.clone(), x.mapv(|v| 2.0 * v + 0.5)).unwrap();
    // batch_size and drop_last here are overridden by the loader's 4 and true.
    let options = FitOptions {
        epochs: 3,
        eval_every: 1,
        batch_size: 100,
        restart: false,
        early_stopping: false,
        ..Default::default()
    };
    let mut fitted = Trainer::new(one_weight_net(0.1, 0.0), SGD::new(0.1).unwrap());
    let mut loader = DataLoader::new(&data, 4).unwrap().shuffle(5).drop_last(true);
    let report = fitted.fit_loader(&mut loader, &data, &options, &mut ()).unwrap();
    assert_eq!(report.batch_losses.len(), 3 * 2);
    assert_eq!(report.evaluations.len(), 3);

    let mut by_hand = Trainer::new(one_weight_net(0.1, 0.0), SGD::new(0.1).unwrap());
    let mut loader = DataLoader::new(&data, 4).unwrap().shuffle(5).drop_last(true);
    let losses: Vec<f64> = (1..=3).flat_map(|epoch| by_hand.train_epoch(&mut loader, epoch).unwrap()).collect();
    assert_eq!(report.batch_losses, losses);
    assert_eq!(weights(&fitted.net), weights(&by_hand.net));

    let (train, test) = overshooting_problem();
    let options = FitOptions { epochs: 100, eval_every: 2, restart: false, ..Default::default() };
    let mut trainer = Trainer::new(one_weight_net(0.0, 0.0), SGD::new(0.02).unwrap());
    let report = trainer.fit_loader(&mut DataLoader::new(&train, 1).unwrap(), &test, &options, &mut ()).unwrap();
    assert!(report.stopped_after.is_some(), "the test loss rises, so training stops early");
    let restored = trainer.net.forward_loss(&test.x, &test.y, Mode::Eval).unwrap().1;
    assert_eq!(restored, report.best.unwrap().loss, "the best evaluated model is restored");
}
