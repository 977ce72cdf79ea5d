//! Generated descriptions: thousands of random networks (every layer kind, sizes from 0 to 2^63,
//! kernels, strides, paddings, layer counts, nested containers, repetitions, residuals), each either
//! refused with an error or built and run through one forward and backward pass, with no panic, no
//! abort, and memory bounded by a limit of 16 MiB (see `scratch::memory`) that every check applies.

use ndarray::{ArrayD, Dimension, IxDyn};
use scratch::memory;
use scratch::network::NeuralNetwork;
use scratch::ops::Mode;
use scratch::rng::RandomState;
use scratch::spec::{
    Activation, AttentionSpec, Biases, CellKind, ConvSpec, DenseSpec, DropoutSpec, EmbeddingSpec, GruForm,
    LayerNormSpec, LayerSpec, Module, NetSpec, PoolSpec, PositionEmbeddingSpec, RecurrentSpec,
};

/// The memory every generated network may take: small enough that the ones accepted run in moments.
const LIMIT: u128 = 16 << 20;

/// How many descriptions the test tries.
const CASES: usize = 20_000;

/// A generator of random descriptions.
struct Gen(RandomState);

impl Gen {
    fn below(&mut self, n: u32) -> u32 {
        self.0.next_u32() % n
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < percent
    }

    /// A size: mostly small, sometimes zero, sometimes a power of two up to 2^63 or the largest size.
    fn size(&mut self) -> usize {
        match self.below(20) {
            0 => 0,
            1 => 1usize << (10 + self.below(54)),
            2 => usize::MAX - self.below(2) as usize,
            3 => 64 + self.below(4000) as usize,
            _ => 1 + self.below(8) as usize,
        }
    }

    /// A size that is usually valid for a dimension the network already has.
    fn near(&mut self, known: usize) -> usize {
        if self.chance(80) {
            known
        } else {
            self.size()
        }
    }

    fn activation(&mut self) -> Activation {
        Activation::EACH[self.below(Activation::EACH.len() as u32) as usize]
    }

    fn keep(&mut self) -> f64 {
        [0.5, 0.8, 1.0, 0.0, -0.1, 1.5, f64::NAN][self.below(7) as usize]
    }

    /// A layer for inputs whose last axis is `width` (a guess: the shapes are not tracked, so many
    /// descriptions do not fit, which the checks must say).
    fn layer(&mut self, width: usize) -> LayerSpec {
        match self.below(13) {
            0 | 1 => {
                let mut dense = DenseSpec::new(self.size()).activation(self.activation()).bias(self.chance(80));
                if self.chance(20) {
                    dense = dense.dropout(self.keep());
                }
                LayerSpec::Dense(dense)
            }
            2 => {
                let conv = ConvSpec::new(self.near(width), self.size(), self.size())
                    .stride(self.size())
                    .padding(self.size() % 4)
                    .activation(self.activation())
                    .transposed(self.chance(30))
                    .output_padding(self.below(3) as usize)
                    .flatten(self.chance(30));
                LayerSpec::Conv(conv)
            }
            3 => {
                let (size, stride) = (self.size(), self.size());
                if self.chance(50) {
                    PoolSpec::max(size, stride).into()
                } else {
                    PoolSpec::average(size, stride).into()
                }
            }
            4 => LayerSpec::Flatten,
            5 => LayerSpec::Reshape((0..1 + self.below(3)).map(|_| self.size()).collect()),
            6 => {
                let cell =
                    [CellKind::Rnn, CellKind::Lstm, CellKind::Gru(GruForm::PyTorch), CellKind::Gru(GruForm::Book)]
                        [self.below(4) as usize];
                let layers = if self.chance(90) { 1 + self.below(3) as usize } else { self.size() };
                let biases = if self.chance(50) { Biases::One } else { Biases::Two };
                LayerSpec::Recurrent(
                    RecurrentSpec::new(cell, self.near(width), self.size()).layers(layers).biases(biases),
                )
            }
            7 => LayerSpec::Activation(self.activation()),
            8 => LayerSpec::Dropout(DropoutSpec::keep(self.keep())),
            9 => LayerSpec::Embedding(EmbeddingSpec::new(self.size(), self.size())),
            10 => LayerSpec::PositionEmbedding(PositionEmbeddingSpec::new(self.size(), self.near(width))),
            11 => LayerSpec::LayerNorm(LayerNormSpec::new(self.near(width)).bias(self.chance(50))),
            _ => LayerSpec::Attention(AttentionSpec::new(1 + self.below(4) as usize)),
        }
    }

    /// A module `depth` levels from the bottom: a layer, or a container of smaller modules.
    fn module(&mut self, width: usize, depth: u32) -> Module {
        if depth == 0 || self.chance(50) {
            return self.layer(width).into();
        }
        let children = 1 + self.below(4);
        match self.below(4) {
            0 => Module::sequential((0..children).map(|_| self.module(width, depth - 1)).collect::<Vec<_>>()),
            1 => {
                let mut block = Module::block();
                for i in 0..children {
                    let child = self.module(width, depth - 1);
                    block = if self.chance(70) { block.child(format!("c{i}"), child) } else { block.inline(child) };
                }
                block
            }
            2 => {
                let count = if self.chance(90) { self.below(4) as usize } else { self.size() };
                Module::repeat(count, self.module(width, depth - 1))
            }
            _ => Module::residual(self.module(width, depth - 1)),
        }
    }

    fn description(&mut self) -> NetSpec {
        let input: Vec<usize> = (0..1 + self.below(3)).map(|_| self.size()).collect();
        let width = *input.last().expect("one axis at least");
        let depth = self.below(4);
        NetSpec::from_module(&input, self.module(width, depth))
    }
}

/// Builds `spec` and runs one forward and backward pass on a batch of two inputs of small integers
/// (valid token indices for an embedding of any vocabulary above 2).
fn build_and_step(spec: &NetSpec) -> scratch::Result<()> {
    spec.check_step(2, 8)?;
    let mut net = NeuralNetwork::<f64>::build(spec, &mut RandomState::new(1))?;
    let shape: Vec<usize> = [2].iter().chain(&spec.input).copied().collect();
    let x = ArrayD::from_shape_fn(IxDyn(&shape), |i| (i.slice().iter().sum::<usize>() % 2) as f64);
    let y = net.forward(&x, Mode::Train)?;
    net.backward(ArrayD::ones(y.raw_dim()))?;
    Ok(())
}

#[test]
fn every_generated_description_is_refused_with_an_error_or_builds_and_runs_one_step() {
    let mut gen = Gen(RandomState::new(2026));
    let (mut built, mut refused) = (0, 0);
    for case in 0..CASES {
        let spec = gen.description();
        let outcome = memory::with_limit(LIMIT, || std::panic::catch_unwind(|| build_and_step(&spec)));
        match outcome {
            Ok(Ok(())) => built += 1,
            Ok(Err(e)) => {
                crate::common::assert_readable(&e.to_string());
                refused += 1;
            }
            Err(_) => panic!("case {case} panicked: {spec:?}"),
        }
    }
    eprintln!("{CASES} generated descriptions: {built} built and stepped, {refused} refused");
    // Both outcomes are common, or the generator tests too little.
    assert!(built > CASES / 20 && refused > CASES / 4, "{built} built, {refused} refused");
}
