//! The book's named networks as [`NetSpec`]s, one definition that the examples train and the parity
//! tests compare in both engines.

use scratch::layers::{ConvSpec, WeightInit};
use scratch::ops::{Activation, DropoutStyle};

use crate::spec::{LayerSpec, NetSpec};

/// Chapter 5's CNN: `Conv2D(1 -> 16, 5x5, tanh, flatten, dropout 0.8)` with the book's convolution
/// "glorot" (`2 / (1 + 16)`), then `Dense(10)`.
pub fn chapter5_cnn() -> NetSpec {
    let conv = ConvSpec {
        activation: Activation::Tanh,
        init: WeightInit::BookGlorot2019,
        flatten: true,
        dropout: Some((0.8, DropoutStyle::Inverted)),
        ..ConvSpec::new(1, 16, 5)
    };
    NetSpec::new(
        &[1, 28, 28],
        vec![LayerSpec::Conv(conv), LayerSpec::dense(10, Activation::Linear, WeightInit::Glorot)],
    )
}

/// A 5×5 tanh convolution with a bias and PyTorch's initialisation, as the book's chapter-7 `ConvLayer`
/// (or, `transposed`, its `DeconvLayer`).
fn chapter7_conv(c_in: usize, c_out: usize, flatten: bool, transposed: bool, dropout: Option<f64>) -> LayerSpec {
    LayerSpec::Conv(ConvSpec {
        bias: true,
        activation: Activation::Tanh,
        init: WeightInit::PyTorch,
        flatten,
        transposed,
        dropout: dropout.map(|keep| (keep, DropoutStyle::Inverted)),
        ..ConvSpec::new(c_in, c_out, 5)
    })
}

/// Chapter 7's `MNIST_ConvNet`: `ConvLayer(1, 14, 5, tanh, dropout 0.8)`, `ConvLayer(14, 7, 5, tanh,
/// flatten, dropout 0.8)`, `DenseLayer(5488, 32, tanh, dropout 0.8)`, `DenseLayer(32, 10)`, with
/// PyTorch's default initialisation and biases, as the book's PyTorch model has.
pub fn chapter7_convnet() -> NetSpec {
    let (init, dropout) = (WeightInit::PyTorch, Some((0.8, DropoutStyle::Inverted)));
    NetSpec::new(
        &[1, 28, 28],
        vec![
            chapter7_conv(1, 14, false, false, Some(0.8)),
            chapter7_conv(14, 7, true, false, Some(0.8)),
            LayerSpec::Dense { neurons: 32, activation: Activation::Tanh, init, dropout },
            LayerSpec::dense(10, Activation::Linear, init),
        ],
    )
}

/// Chapter 7's `BostonModel`: 13 tanh units with inverted dropout (keep 0.8), then one linear output,
/// PyTorch's initialisation, on the 13 Boston housing features.
pub fn boston_model() -> NetSpec {
    let init = WeightInit::PyTorch;
    NetSpec::new(
        &[13],
        vec![
            LayerSpec::Dense {
                neurons: 13,
                activation: Activation::Tanh,
                init,
                dropout: Some((0.8, DropoutStyle::Inverted)),
            },
            LayerSpec::dense(1, Activation::Linear, init),
        ],
    )
}

/// The size of [`autoencoder`]'s code.
pub const AUTOENCODER_CODE: usize = 28;

/// How many of [`autoencoder`]'s layers make the code: the encoder.
pub const AUTOENCODER_ENCODER_LAYERS: usize = 3;

/// Chapter 7's `Autoencoder(hidden_dim=28)`, its decoder made of transposed convolutions:
///
/// ```text
/// encoder: Conv(1 → 14, 5×5, tanh) → Conv(14 → 7, 5×5, tanh, flatten) → Dense(5488 → 28, tanh)
/// decoder: Dense(28 → 5488, tanh) → reshape (7, 28, 28) → ConvT(7 → 14, 5×5, tanh) → ConvT(14 → 1, 5×5, tanh)
/// ```
pub fn autoencoder() -> NetSpec {
    let init = WeightInit::PyTorch;
    NetSpec::new(
        &[1, 28, 28],
        vec![
            chapter7_conv(1, 14, false, false, None),
            chapter7_conv(14, 7, true, false, None),
            LayerSpec::dense(AUTOENCODER_CODE, Activation::Tanh, init),
            LayerSpec::dense(7 * 28 * 28, Activation::Tanh, init),
            LayerSpec::Reshape(vec![7, 28, 28]),
            chapter7_conv(7, 14, false, true, None),
            chapter7_conv(14, 1, false, true, None),
        ],
    )
}
