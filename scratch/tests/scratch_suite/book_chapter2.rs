//! Chapter 2 reproduced to the digits the book printed: linear regression and the two-layer network,
//! written out step by step and trained on the Boston housing data (f64, numpy-compatible generator).

use crate::common::{data_dir_or_skip, round};
use ndarray::Array1;
use scratch::data::boston;
use scratch::fundamentals::{train, BiasGradient, LinearRegression, TrainConfig, TwoLayerNet};
use scratch::metrics::{mae, rmse};
use scratch::rng::RandomState;

const BOSTON: &str = "boston/boston_house_prices.csv";

fn rounded(a: &Array1<f64>, digits: i32) -> Vec<f64> {
    a.iter().map(|&v| round(v, digits)).collect()
}

#[test]
fn linear_regression_matches_the_book() {
    let Some(dir) = data_dir_or_skip(BOSTON) else { return };
    let data = boston::load_book_split(&dir).unwrap();
    assert_eq!(round(data.y_test.mean().unwrap(), 4), 22.0776);

    let mut rng = RandomState::new(180_708);
    let mut model = LinearRegression::init(13, &mut rng);
    let config = TrainConfig { iterations: 1000, learning_rate: 0.001, batch_size: 23 };
    let losses = train(&mut model, &data.x_train, &data.y_train, &config, &mut rng).unwrap();
    assert_eq!(losses.len(), 1000);

    let preds = model.predict(&data.x_test.view());
    assert_eq!(round(mae(&preds, &data.y_test), 4), 3.5644);
    assert_eq!(round(rmse(&preds, &data.y_test), 4), 5.0497);
    assert_eq!(round(rmse(&preds, &data.y_test) / data.y_test.mean().unwrap(), 4), 0.2287);
    let w = model.w.column(0).to_owned();
    assert_eq!(
        rounded(&w, 4),
        vec![
            -1.0954, 0.7353, 0.1977, 0.7475, -2.2849, 2.2006, 0.7195, -2.6384, 2.5358, -1.6892, -2.3162, 0.8435,
            -4.2553
        ]
    );
    assert_eq!(round(model.b[[0, 0]], 4), 22.6312);
}

#[test]
fn closed_form_least_squares_matches_scikit_learn() {
    let Some(dir) = data_dir_or_skip(BOSTON) else { return };
    let data = boston::load_book_split(&dir).unwrap();
    let model = scratch::fundamentals::least_squares(&data.x_train, &data.y_train).unwrap();
    let preds = model.predict(&data.x_test.view());
    assert_eq!(round(mae(&preds, &data.y_test), 4), 3.5671);
    assert_eq!(round(rmse(&preds, &data.y_test), 4), 5.0476);
    assert_eq!(
        rounded(&model.w.column(0).to_owned(), 4),
        vec![
            -1.0148, 0.7065, 0.276, 0.7092, -2.206, 2.3793, 0.7133, -2.6625, 2.6325, -1.8172, -2.3266, 0.8465, -4.1889
        ]
    );
    assert_eq!(round(model.b[[0, 0]], 4), 22.6195);
}

fn train_network(bias_gradient: BiasGradient) -> Option<(TwoLayerNet<f64>, f64, f64, f64)> {
    let dir = data_dir_or_skip(BOSTON)?;
    let data = boston::load_book_split(&dir).unwrap();
    let mut rng = RandomState::new(180_807);
    let mut model = TwoLayerNet::init(13, 13, bias_gradient, &mut rng);
    let config = TrainConfig { iterations: 10_000, learning_rate: 0.001, batch_size: 23 };
    train(&mut model, &data.x_train, &data.y_train, &config, &mut rng).unwrap();
    let preds = model.predict(&data.x_test.view());
    let mse = rmse(&preds, &data.y_test).powi(2);
    Some((model, mae(&preds, &data.y_test), rmse(&preds, &data.y_test), mse))
}

#[test]
fn two_layer_network_with_the_books_bias_quirk_matches_the_book() {
    let Some((model, mae, rmse, mse)) = train_network(BiasGradient::BookCollapsed) else { return };
    assert_eq!((round(mae, 4), round(rmse, 4)), (2.5951, 3.8851));
    assert_eq!(round(mse, 4), 15.0943);
    assert_eq!(
        rounded(&model.w2.column(0).to_owned(), 4),
        vec![6.8818, 7.3908, 5.632, 7.2358, 7.6253, 6.754, 3.3251, 9.7287, 5.6011, -10.2469, 5.5645, 5.6762, -4.4088]
    );
    assert_eq!(
        rounded(&model.w1.row(9).to_owned(), 4),
        vec![
            -2.6785, 3.9213, 2.2398, -3.6323, -0.2241, 3.1889, 0.3231, 0.4316, -1.9733, 0.2403, -1.4463, -0.5084,
            1.5561
        ]
    );
    // numpy prints this row in scientific notation with 5 significant digits
    let w1_7: Vec<f64> = model.w1.row(7).iter().map(|v| format!("{v:.4e}").parse().unwrap()).collect();
    assert_eq!(
        w1_7,
        vec![
            -3.3532, -0.46775, 0.54810, -0.088043, 1.7536, -5.3111, -0.94313, -0.58730, -0.0012341, 1.1375, -0.52801,
            1.1592, 1.6007
        ]
    );
}

#[test]
fn two_layer_network_with_correct_math() {
    let Some((_, mae, rmse, _)) = train_network(BiasGradient::Correct) else { return };
    assert_eq!((round(mae, 4), round(rmse, 4)), (2.5409, 3.9517));
}
