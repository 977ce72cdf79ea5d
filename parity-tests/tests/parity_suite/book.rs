//! The book's chapter 2 and 3 models in both engines: the torch versions reach the same weights (and so
//! the book's printed numbers) as the from-scratch ones.

use ndarray::Array2;
use parity_tests::{assert_close, assert_same_parameters, data_dir_or_skip, device, F64};
use scratch::data::boston;
use scratch::rng::RandomState;
use scratch::step_by_step::{self, BiasGradient, TrainConfig};
use torch::convert::to_array;

fn split() -> Option<boston::Split<f64>> {
    let dir = data_dir_or_skip("boston/boston_house_prices.csv")?;
    Some(boston::load_book_split(&dir).unwrap())
}

fn matrix(t: &tch::Tensor) -> Array2<f64> {
    to_array::<f64>(t).into_dimensionality().unwrap()
}

#[test]
fn chapter2_linear_regression_and_least_squares() {
    let Some(data) = split() else { return };
    let config = TrainConfig { iterations: 1000, learning_rate: 0.001, batch_size: 23 };
    let (mut ra, mut rb) = (RandomState::new(180_708), RandomState::new(180_708));
    let mut ours = step_by_step::LinearRegression::init(13, &mut ra);
    let mut theirs = torch::step_by_step::LinearRegression::init(13, &mut rb).to_device(device());
    let la = step_by_step::train(&mut ours, &data.x_train, &data.y_train, &config, &mut ra).unwrap();
    let lb = step_by_step::train(&mut theirs, &data.x_train, &data.y_train, &config, &mut rb).unwrap();
    assert_close("linear regression losses", &ndarray::arr1(&la).into_dyn(), &ndarray::arr1(&lb).into_dyn(), F64);
    assert_close("W", &ours.w.clone().into_dyn(), &matrix(&theirs.w).into_dyn(), F64);
    assert_close("B", &ours.b.clone().into_dyn(), &matrix(&theirs.b).into_dyn(), F64);

    let a = step_by_step::least_squares(&data.x_train, &data.y_train).unwrap();
    let b = torch::step_by_step::least_squares(&data.x_train, &data.y_train);
    // Two different solvers (normal equations, SVD): equal to the conditioning of the problem. (On the
    // CPU: libtorch's SVD-based `gelsd` driver has no CUDA kernel.)
    let tol = parity_tests::Tolerance { abs: 1e-9, rel: 1e-9 };
    assert_close("least squares W", &a.w.into_dyn(), &matrix(&b.w).into_dyn(), tol);
}

#[test]
fn chapter2_network_with_and_without_the_books_bias_bug() {
    let Some(data) = split() else { return };
    let config = TrainConfig { iterations: 2000, learning_rate: 0.001, batch_size: 23 };
    for quirk in [BiasGradient::BookCollapsed, BiasGradient::Correct] {
        let (mut ra, mut rb) = (RandomState::new(180_807), RandomState::new(180_807));
        let mut ours = step_by_step::TwoLayerNet::init(13, 13, quirk, &mut ra);
        let mut theirs = torch::step_by_step::TwoLayerNet::init(13, 13, quirk, &mut rb).to_device(device());
        step_by_step::train(&mut ours, &data.x_train, &data.y_train, &config, &mut ra).unwrap();
        step_by_step::train(&mut theirs, &data.x_train, &data.y_train, &config, &mut rb).unwrap();
        // 2000 training steps: the trajectory criterion, 1e-8 relative to each tensor's magnitude.
        let named = |w: [&Array2<f64>; 4]| -> Vec<(String, ndarray::ArrayD<f64>)> {
            ["W1", "B1", "W2", "B2"].iter().zip(w).map(|(n, a)| (n.to_string(), a.clone().into_dyn())).collect()
        };
        let theirs = [matrix(&theirs.w1), matrix(&theirs.b1), matrix(&theirs.w2), matrix(&theirs.b2)];
        assert_same_parameters(
            &format!("{quirk:?}"),
            &named([&ours.w1, &ours.b1, &ours.w2, &ours.b2]),
            &named([&theirs[0], &theirs[1], &theirs[2], &theirs[3]]),
            1e-8,
        );
    }
}
