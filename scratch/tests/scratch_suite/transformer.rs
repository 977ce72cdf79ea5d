//! Every gradient of the GPT building blocks (chapter 8) checked against finite differences, in f64
//! (tight) and f32 (loose), over several shapes: layer normalisation (input, weight, bias), the token
//! embedding (its weight; the indices have none), the position embedding (input, weight) and the
//! causal self-attention core (input), with and without a dropout mask. GELU is checked with the other
//! activations in `gradients.rs`.

use ndarray::{Array2, ArrayD, IxDyn};
use scratch::gradcheck::{check, Differentiable, GradCheckConfig, LayerProbe};
use scratch::layers::Layer;
use scratch::ops::{Dropout, DropoutStyle, Mode};
use scratch::param::Param;
use scratch::rng::RandomState;
use scratch::spec::{AttentionSpec, EmbeddingSpec, LayerNormSpec, PositionEmbeddingSpec};
use scratch::transformer::{CausalSelfAttention, Embedding, LayerNorm, PositionEmbedding};
use scratch::Float;

fn config<F: Float>() -> GradCheckConfig {
    if F::SINGLE {
        GradCheckConfig { step: 1e-2, ..Default::default() }
    } else {
        GradCheckConfig::default()
    }
}

fn tolerance<F: Float>() -> f64 {
    if F::SINGLE {
        2e-2
    } else {
        1e-6
    }
}

/// Checks every gradient of `layer` at `input` and that the tensors checked are `names`.
fn check_layer<F: Float>(layer: &mut dyn Layer<F>, input: &ArrayD<F>, names: &[&str]) {
    let report = check(&mut LayerProbe::new(layer, Mode::Train, 5), input, &config::<F>()).unwrap();
    let checked: Vec<&str> = report.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(checked, names, "{}", layer.describe());
    report.assert_below(tolerance::<F>());
}

fn layer_norm<F: Float>() {
    let mut rng = RandomState::new(1);
    for shape in [vec![1, 3], vec![4, 5], vec![2, 3, 8]] {
        let c = *shape.last().unwrap();
        for (affine, bias, names) in [
            (true, true, &["input", "weight", "bias"][..]),
            (true, false, &["input", "weight"]),
            (false, true, &["input"]),
        ] {
            let mut layer = LayerNorm::<F>::new(LayerNormSpec::new(c).affine(affine).bias(bias)).unwrap();
            // Weights away from 1 and 0, so that their part of the input gradient is tested.
            for (_, p) in layer.params_mut() {
                p.value = rng.randn(p.value.raw_dim());
            }
            let x: ArrayD<F> = rng.normal(0.3, 2.0, IxDyn(&shape));
            check_layer(&mut layer, &x, names);
        }
    }
}

#[test]
fn layer_norm_f64() {
    layer_norm::<f64>();
}

#[test]
fn layer_norm_f32() {
    layer_norm::<f32>();
}

/// A token embedding seen through a random projection of its output, at fixed indices: the checker's
/// input is ignored (indices cannot be perturbed), so its numeric gradient is zero, which the layer's
/// input gradient must be too.
struct EmbeddingProbe<F: Float> {
    layer: Embedding<F>,
    indices: ArrayD<F>,
    weights: Option<ArrayD<F>>,
    rng: RandomState,
}

impl<F: Float> Differentiable<F> for EmbeddingProbe<F> {
    fn loss(&mut self, _input: &ArrayD<F>) -> scratch::Result<F> {
        let y = self.layer.forward(self.indices.clone(), Mode::Train)?;
        let rng = &mut self.rng;
        let g = self.weights.get_or_insert_with(|| rng.randn(y.raw_dim()));
        Ok((g.clone() * y).sum())
    }

    fn backward(&mut self) -> scratch::Result<ArrayD<F>> {
        self.layer.backward(self.weights.clone().expect("loss first"))
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param<F>)> {
        self.layer.params_mut()
    }
}

fn token_embedding<F: Float>() {
    let mut rng = RandomState::new(2);
    for (batch, time, vocab, dim) in [(1, 1, 1, 2), (2, 6, 5, 3), (3, 4, 20, 4)] {
        let layer = Embedding::<F>::new(EmbeddingSpec::new(vocab, dim), &mut rng).unwrap();
        // Repeated indices, so that rows of the weight gradient gather several positions.
        let indices = Array2::from_shape_fn((batch, time), |_| F::cast(rng.randint(0, vocab as i64).unwrap() as f64));
        let indices = indices.into_dyn();
        let mut probe = EmbeddingProbe { layer, indices: indices.clone(), weights: None, rng: RandomState::new(3) };
        let report = check(&mut probe, &indices, &config::<F>()).unwrap();
        let names: Vec<&str> = report.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["input", "weight"]);
        report.assert_below(tolerance::<F>());
        assert_eq!(report.tensors[0].analytic, 0.0);
    }
}

#[test]
fn token_embedding_f64() {
    token_embedding::<f64>();
}

#[test]
fn token_embedding_f32() {
    token_embedding::<f32>();
}

fn position_embedding<F: Float>() {
    let mut rng = RandomState::new(4);
    for (batch, time, max_len, dim) in [(1, 1, 1, 1), (2, 5, 8, 3), (3, 6, 6, 4)] {
        let mut layer = PositionEmbedding::<F>::new(PositionEmbeddingSpec::new(max_len, dim), &mut rng).unwrap();
        let x: ArrayD<F> = rng.randn(IxDyn(&[batch, time, dim]));
        check_layer(&mut layer, &x, &["input", "weight"]);
    }
}

#[test]
fn position_embedding_f64() {
    position_embedding::<f64>();
}

#[test]
fn position_embedding_f32() {
    position_embedding::<f32>();
}

/// The attention core with the same dropout mask injected before every forward pass, so that the
/// finite differences see one function.
struct FixedMask<F: Float> {
    inner: CausalSelfAttention<F>,
    mask: ArrayD<F>,
}

impl<F: Float> Layer<F> for FixedMask<F> {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn forward(&mut self, input: ArrayD<F>, mode: Mode) -> scratch::Result<ArrayD<F>> {
        let mut dropouts = self.inner.dropouts_mut();
        let dropout: &mut Dropout<F> = dropouts.pop().expect("the layer has dropout").1;
        dropout.inject_mask(self.mask.clone());
        self.inner.forward(input, mode)
    }

    fn infer(&self, input: ArrayD<F>) -> scratch::Result<ArrayD<F>> {
        self.inner.infer(input)
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> scratch::Result<ArrayD<F>> {
        self.inner.backward(output_grad)
    }

    fn params(&self) -> Vec<(String, &Param<F>)> {
        self.inner.params()
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param<F>)> {
        self.inner.params_mut()
    }

    fn reinitialize(&mut self, rng: &mut RandomState) {
        self.inner.reinitialize(rng);
    }
}

fn attention<F: Float>() {
    let mut rng = RandomState::new(5);
    for (batch, time, width, heads) in [(1, 1, 4, 1), (2, 5, 12, 3), (1, 7, 6, 2), (2, 18, 8, 2)] {
        let x: ArrayD<F> = rng.randn(IxDyn(&[batch, time, 3 * width]));
        let mut plain = CausalSelfAttention::<F>::new(AttentionSpec::new(heads), &mut rng).unwrap();
        check_layer(&mut plain, &x, &["input"]);
        for style in [DropoutStyle::Inverted, DropoutStyle::Book] {
            let spec = AttentionSpec::new(heads).dropout_with(0.7, style);
            let inner = CausalSelfAttention::<F>::new(spec, &mut rng).unwrap();
            let mask = rng.bernoulli_mask::<F, _>(0.7, IxDyn(&[batch, heads, time, time]));
            check_layer(&mut FixedMask { inner, mask }, &x, &["input"]);
        }
    }
}

#[test]
fn attention_f64() {
    attention::<f64>();
}

#[test]
fn attention_f32() {
    attention::<f32>();
}
