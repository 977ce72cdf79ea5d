//! Every operation and activation: the from-scratch forward and backward passes against libtorch's
//! forward and autograd, over a grid of shapes, in f64 and f32.

use ndarray::{ArrayD, IxDyn};
use parity_tests::{assert_close, assert_close_tensor, device, leaf, tolerance};
use scratch::ops::{Activation, BiasAdd, Dropout, DropoutStyle, Mode, Operation, WeightMultiply};
use scratch::rng::RandomState;
use tch::Tensor;
use torch::convert::{to_tensor, TorchFloat};

/// (batch, inputs, outputs): batch 1, narrow, wide, the book's shapes, and odd sizes.
const SHAPES: [(usize, usize, usize); 9] = [
    (1, 1, 1),
    (1, 784, 10),
    (2, 3, 5),
    (7, 1, 300),
    (13, 13, 1),
    (32, 13, 13),
    (60, 784, 89),
    (60, 89, 10),
    (256, 64, 130),
];

/// Every activation, and the leaky ReLU with PyTorch's default slope too.
const ACTIVATIONS: [Activation; 8] = {
    let e = Activation::EACH;
    [e[0], e[1], e[2], e[3], e[4], e[5], e[6], Activation::LeakyReLU { slope: 0.01 }]
};

fn randn<F: TorchFloat>(rng: &mut RandomState, shape: &[usize]) -> ArrayD<F> {
    rng.randn(IxDyn(shape))
}

/// `(f(x), ∂(Σ G ⊙ f(x))/∂x)` by libtorch's autograd.
fn torch_forward_backward<F: TorchFloat>(x: &Tensor, mut f: impl FnMut(&Tensor) -> Tensor, g: &ArrayD<F>) -> Tensor {
    let y = f(x);
    (&y * to_tensor(g).to_device(y.device())).sum(y.kind()).backward();
    y
}

fn check_weight_multiply_and_bias<F: TorchFloat>() {
    let tol = tolerance::<F>();
    let mut rng = RandomState::new(1);
    for (batch, n_in, n_out) in SHAPES {
        let x = randn::<F>(&mut rng, &[batch, n_in]);
        // Weights scaled as initialisers scale them (variance 1/n_in), so that outputs are O(1): the f32
        // tolerance (1e-5 absolute) is about rounding relative to O(1) values, and the rounding error of
        // a dot product grows with the size of its terms.
        let w = randn::<F>(&mut rng, &[n_in, n_out]).mapv(|v| v / F::cast((n_in as f64).sqrt()));
        let g = randn::<F>(&mut rng, &[batch, n_out]);
        let label = format!("{} {batch}x{n_in}x{n_out}", F::NAME);

        let mut op = WeightMultiply::new(w.clone().into_dimensionality().unwrap());
        let y = op.forward(x.clone(), Mode::Train).unwrap();
        let dx = op.backward(g.clone()).unwrap();
        let (_, param) = op.param().unwrap();
        let (xt, wt) = (leaf(&x), leaf(&param.to_canonical()));
        let yt = torch_forward_backward(&xt, |x| x.linear(&wt, None::<Tensor>), &g);
        assert_close_tensor(&format!("WeightMultiply output {label}"), &y, &yt, tol);
        assert_close_tensor(&format!("WeightMultiply input grad {label}"), &dx, &xt.grad(), tol);
        assert_close_tensor(&format!("WeightMultiply weight grad {label}"), &param.grad_canonical(), &wt.grad(), tol);

        let b = randn::<F>(&mut rng, &[1, n_out]);
        let mut op = BiasAdd::new(b.clone().into_dimensionality().unwrap());
        let x = randn::<F>(&mut rng, &[batch, n_out]);
        let y = op.forward(x.clone(), Mode::Train).unwrap();
        let dx = op.backward(g.clone()).unwrap();
        let (_, param) = op.param().unwrap();
        let (xt, bt) = (leaf(&x), leaf(&param.to_canonical()));
        let yt = torch_forward_backward(&xt, |x| x + &bt, &g);
        assert_close_tensor(&format!("BiasAdd output {label}"), &y, &yt, tol);
        assert_close_tensor(&format!("BiasAdd input grad {label}"), &dx, &xt.grad(), tol);
        assert_close_tensor(&format!("BiasAdd bias grad {label}"), &param.grad_canonical(), &bt.grad(), tol);
    }
}

#[test]
fn weight_multiply_and_bias_add_f64() {
    check_weight_multiply_and_bias::<f64>();
}

#[test]
fn weight_multiply_and_bias_add_f32() {
    check_weight_multiply_and_bias::<f32>();
}

fn check_activations<F: TorchFloat>() {
    let tol = tolerance::<F>();
    let mut rng = RandomState::new(2);
    for (batch, _, n) in SHAPES {
        for activation in ACTIVATIONS {
            // Scaled inputs reach the saturated tails of sigmoid and tanh too.
            let x = randn::<F>(&mut rng, &[batch, n]).mapv(|v| v * F::cast(4.0));
            let g = randn::<F>(&mut rng, &[batch, n]);
            let mut op = activation.operation::<F>();
            let y = op.forward(x.clone(), Mode::Train).unwrap();
            let dx = op.backward(g.clone()).unwrap();
            let xt = leaf(&x);
            let yt = torch_forward_backward(&xt, |x| torch::layers::activate(x, activation), &g);
            let label = format!("{activation:?} {} {batch}x{n}", F::NAME);
            assert_close_tensor(&format!("{label} output"), &y, &yt, tol);
            assert_close_tensor(&format!("{label} input grad"), &dx, &xt.grad(), tol);
        }
    }
}

#[test]
fn activations_f64() {
    check_activations::<f64>();
}

#[test]
fn activations_f32() {
    check_activations::<f32>();
}

#[test]
fn dropout_with_an_injected_shared_mask() {
    let mut rng = RandomState::new(3);
    for (batch, _, n) in SHAPES {
        for keep in [0.5, 0.8, 1.0] {
            for style in [DropoutStyle::Inverted, DropoutStyle::Book] {
                for mode in [Mode::Train, Mode::Eval] {
                    let x = randn::<f64>(&mut rng, &[batch, n]);
                    let g = randn::<f64>(&mut rng, &[batch, n]);
                    let mask: ArrayD<f64> = rng.bernoulli_mask(keep, IxDyn(&[batch, n]));
                    let mut op = Dropout::new(keep, style, RandomState::new(0)).unwrap();
                    op.inject_mask(mask.clone());
                    let y = op.forward(x.clone(), mode).unwrap();
                    let dx = op.backward(g.clone()).unwrap();

                    let torch_op = torch::layers::Dropout::new(keep, style, 0);
                    torch_op.inject_mask(to_tensor(&mask).to_device(device()));
                    let xt = leaf(&x);
                    let yt = torch_forward_backward(&xt, |x| torch_op.apply(x, mode == Mode::Train).unwrap(), &g);
                    let label = format!("Dropout keep {keep} {style:?} {mode:?} {batch}x{n}");
                    assert_close(&format!("{label} output"), &y, &torch::convert::to_array(&yt), parity_tests::F64);
                    assert_close_tensor(&format!("{label} input grad"), &dx, &xt.grad(), parity_tests::F64);
                }
            }
        }
    }
}
