//! The from-scratch scalar autodiff (chapter 6) against libtorch's autograd on the same expressions:
//! values and gradients of every input, including nodes reached by several paths, plain numbers on
//! either side of an operator, and gradients accumulated over two backward passes.

use parity_tests::{device, record};
use scratch::autodiff::Var;
use tch::Tensor;

/// `x` on the test device, recording gradients.
fn leaf(x: f64) -> Tensor {
    Tensor::from(x).to_device(device()).set_requires_grad(true)
}

/// `|x − y| ≤ 1e-12 · max(|y|, 1)`, noted for the report as `what`.
fn close(what: &str, x: f64, y: f64) -> bool {
    let limit = 1e-12 * y.abs().max(1.0);
    record(what, (x - y).abs() / limit, (x - y).abs());
    (x - y).abs() <= limit
}

/// Evaluates `ours` on `Var`s and `theirs` on scalar tensors at `inputs`, runs backward in both, and
/// compares the value and every input's gradient.
fn compare(label: &str, inputs: &[f64], ours: impl Fn(&[Var]) -> Var, theirs: impl Fn(&[Tensor]) -> Tensor) {
    let vars: Vec<Var> = inputs.iter().map(|&x| Var::new(x)).collect();
    let tensors: Vec<Tensor> = inputs.iter().map(|&x| leaf(x)).collect();
    let (a, b) = (ours(&vars), theirs(&tensors));
    a.backward();
    b.backward();
    let value = b.double_value(&[]);
    assert!(close(&format!("{label}: value"), a.value(), value), "{label}: value {} vs {value}", a.value());
    for (i, (v, t)) in vars.iter().zip(&tensors).enumerate() {
        let g = t.grad().double_value(&[]);
        assert!(
            close(&format!("{label}: input {i} grad"), v.grad(), g),
            "{label}: input {i}: grad {} vs libtorch {g}",
            v.grad()
        );
    }
}

#[test]
fn the_books_expressions() {
    compare(
        "(4a + 3)(a + 2)",
        &[3.0],
        |v| (&v[0] * 4.0 + 3.0) * (&v[0] + 2.0),
        |t| (&t[0] * 4.0 + 3.0) * (&t[0] + 2.0),
    );
    compare(
        "b = 2a; b + b",
        &[3.0],
        |v| {
            let b = &v[0] * 2.0;
            &b + &b
        },
        |t| {
            let b = &t[0] * 2.0;
            &b + &b
        },
    );
}

#[test]
fn every_operation_and_shared_nodes() {
    compare(
        "exp, powers, tanh, sigmoid, division",
        &[0.7, -1.3],
        |v| {
            let (x, y) = (&v[0], &v[1]);
            (x * y).exp() / (1.0 + y.powf(2.0)) - x.tanh() * 3.0 + (x - y).sigmoid()
        },
        |t| {
            let (x, y) = (&t[0], &t[1]);
            (x * y).exp() / (1.0 + y.pow_tensor_scalar(2.0)) - x.tanh() * 3.0 + (x - y).sigmoid()
        },
    );
    compare(
        "a node used by several paths",
        &[1.1, 0.4],
        |v| {
            let u = &v[0] * &v[1];
            let w = u.tanh();
            &u * &w + &w / &v[0] - (-&u)
        },
        |t| {
            let u = &t[0] * &t[1];
            let w = u.tanh();
            &u * &w + &w / &t[0] - (-&u)
        },
    );
    compare(
        "numbers on the left, fractional powers, logarithms",
        &[1.7, 2.3],
        |v| 2.0 - &v[0] + 3.0 / &v[1] * v[0].powf(3.5) + (&v[0] * &v[1]).ln(),
        |t| 2.0 - &t[0] + 3.0 / &t[1] * t[0].pow_tensor_scalar(3.5) + (&t[0] * &t[1]).log(),
    );
}

/// Two backward passes add up in both (libtorch needs the graph built twice, or retained).
#[test]
fn gradients_accumulate_over_backward_passes() {
    let a = Var::new(1.5);
    let y = (&a * &a).sigmoid() * &a;
    y.backward();
    y.backward();
    let t = leaf(1.5);
    for _ in 0..2 {
        ((&t * &t).sigmoid() * &t).backward();
    }
    let g = t.grad().double_value(&[]);
    record("accumulated gradient", (a.grad() - g).abs() / 1e-12, (a.grad() - g).abs());
    assert!((a.grad() - g).abs() < 1e-12, "{} vs {g}", a.grad());
}
