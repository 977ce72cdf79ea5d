//! The book's named networks, each one [`NetSpec`] that both engines build, the examples train and
//! the tests check. The PyTorch module each one corresponds to (the same parameter names and shapes)
//! is in the repository's `parity-tests/fixtures/book_networks.py`.

use super::{
    Activation, CellKind, ConvSpec, DenseSpec, DropoutStyle, LayerSpec, NetSpec, RecurrentSpec, StateMode, WeightInit,
};

/// Chapter 4's networks on the 784 MNIST pixels: dense hidden layers `(neurons, activation)`, each
/// with inverted dropout keeping `dropout` of the units if given, then 10 outputs with `output`; every
/// layer initialised with `init`.
///
/// ```
/// use scratch::ops::Activation;
/// use scratch::spec::{book, WeightInit};
///
/// let glorot = book::chapter4_mlp(&[(89, Activation::Tanh)], Activation::Linear, WeightInit::Glorot, None);
/// assert_eq!(glorot.output_shape()?, vec![10]);
/// assert_eq!(glorot.num_parameters()?, 784 * 89 + 89 + 89 * 10 + 10);
/// # Ok::<(), scratch::Error>(())
/// ```
pub fn chapter4_mlp(
    hidden: &[(usize, Activation)],
    output: Activation,
    init: WeightInit,
    dropout: Option<f64>,
) -> NetSpec {
    let layer = |neurons, activation| DenseSpec::new(neurons).activation(activation).init(init);
    let mut layers: Vec<LayerSpec> = hidden
        .iter()
        .map(|&(neurons, activation)| {
            let d = layer(neurons, activation);
            LayerSpec::Dense(match dropout {
                Some(keep) => d.dropout(keep),
                None => d,
            })
        })
        .collect();
    layers.push(LayerSpec::Dense(layer(10, output)));
    NetSpec::new(&[784], layers)
}

/// Chapter 5's CNN: `Conv2D(1 -> 16, 5x5, tanh, flatten, dropout 0.8)` with the book's convolution
/// "glorot" (`2 / (1 + 16)`), then `Dense(10)` (Glorot).
pub fn chapter5_cnn() -> NetSpec {
    let conv = ConvSpec::new(1, 16, 5)
        .activation(Activation::Tanh)
        .init(WeightInit::BookGlorot2019)
        .flatten(true)
        .dropout(0.8);
    NetSpec::new(
        &[1, 28, 28],
        vec![LayerSpec::Conv(conv), LayerSpec::Dense(DenseSpec::new(10).init(WeightInit::Glorot))],
    )
}

/// A 5×5 tanh convolution with a bias and PyTorch's initialisation, as the book's chapter-7 `ConvLayer`
/// (or, `transposed`, its `DeconvLayer`).
fn chapter7_conv(c_in: usize, c_out: usize) -> ConvSpec {
    ConvSpec::new(c_in, c_out, 5).bias(true).activation(Activation::Tanh).init(WeightInit::PyTorch)
}

/// Chapter 7's `MNIST_ConvNet`: `ConvLayer(1, 14, 5, tanh, dropout 0.8)`, `ConvLayer(14, 7, 5, tanh,
/// flatten, dropout 0.8)`, `DenseLayer(5488, 32, tanh, dropout 0.8)`, `DenseLayer(32, 10)`, with
/// PyTorch's default initialisation and biases, as the book's PyTorch model has.
pub fn chapter7_convnet() -> NetSpec {
    let dense = |n| DenseSpec::new(n).init(WeightInit::PyTorch);
    NetSpec::new(
        &[1, 28, 28],
        vec![
            LayerSpec::Conv(chapter7_conv(1, 14).dropout(0.8)),
            LayerSpec::Conv(chapter7_conv(14, 7).flatten(true).dropout(0.8)),
            LayerSpec::Dense(dense(32).activation(Activation::Tanh).dropout(0.8)),
            LayerSpec::Dense(dense(10)),
        ],
    )
}

/// Chapter 7's `BostonModel`: 13 tanh units with inverted dropout (keep 0.8), then one linear output,
/// PyTorch's initialisation, on the 13 Boston housing features.
pub fn boston_model() -> NetSpec {
    let dense = |n| DenseSpec::new(n).init(WeightInit::PyTorch);
    NetSpec::new(
        &[13],
        vec![
            LayerSpec::Dense(dense(13).activation(Activation::Tanh).dropout_with(0.8, DropoutStyle::Inverted)),
            LayerSpec::Dense(dense(1)),
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
    let dense = |n| DenseSpec::new(n).init(WeightInit::PyTorch).activation(Activation::Tanh);
    NetSpec::new(
        &[1, 28, 28],
        vec![
            LayerSpec::Conv(chapter7_conv(1, 14)),
            LayerSpec::Conv(chapter7_conv(14, 7).flatten(true)),
            LayerSpec::Dense(dense(AUTOENCODER_CODE)),
            LayerSpec::Dense(dense(7 * 28 * 28)),
            LayerSpec::Reshape(vec![7, 28, 28]),
            LayerSpec::Conv(chapter7_conv(7, 14).transposed(true)),
            LayerSpec::Conv(chapter7_conv(14, 1).transposed(true)),
        ],
    )
}

/// The character language models of chapters 6 and 7 (`RNNModel`, `NextCharacterModel`): `layers`
/// stacked recurrent cells of `hidden` units over one-hot characters of a `vocab`-letter vocabulary
/// in windows of `steps`, then a dense projection back onto the vocabulary over the last axis (the
/// book's `W_v`, PyTorch's `nn.Linear`), whose logits a softmax cross-entropy scores.
///
/// ```
/// use scratch::spec::{book, CellKind, StateMode};
///
/// let lstm = book::language_model(CellKind::Lstm, 76, 256, 2, StateMode::Reset, 25);
/// assert_eq!(lstm.output_shape()?, vec![25, 76]);
/// # Ok::<(), scratch::Error>(())
/// ```
pub fn language_model(
    cell: CellKind,
    vocab: usize,
    hidden: usize,
    layers: usize,
    state: StateMode,
    steps: usize,
) -> NetSpec {
    NetSpec::new(
        &[steps, vocab],
        vec![
            LayerSpec::Recurrent(RecurrentSpec::new(cell, vocab, hidden).layers(layers).state(state)),
            LayerSpec::Dense(DenseSpec::new(vocab).init(WeightInit::PyTorch)),
        ],
    )
}
