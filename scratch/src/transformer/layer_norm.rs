//! Layer normalisation over the last axis.

use ndarray::{Array1, ArrayD};
use rayon::prelude::*;

use super::{dot, rows_per_piece, standard, sum};
use crate::layers::Layer;
use crate::ops::{no_forward, Mode};
use crate::param::{Layout, Param};
use crate::rng::RandomState;
use crate::spec::LayerNormSpec;
use crate::{Error, Float, Result};

/// Layer normalisation over the last axis (PyTorch's `nn.LayerNorm(C)`; nanoGPT's `LayerNorm`, whose
/// bias is optional). Each row `x` of `C` values (every position of every sequence) is normalised on
/// its own:
///
/// ```text
/// input (…, C)  ->  output (…, C)
///
/// forward:   μ = Σ x / C,   σ² = Σ (x − μ)² / C   (biased, as PyTorch),   r = 1 / √(σ² + eps)
///            x̂ = (x − μ) r,   y = x̂ ⊙ w + b
/// backward:  ∂L/∂b = Σ_rows ∂L/∂y,   ∂L/∂w = Σ_rows ∂L/∂y ⊙ x̂,   g = ∂L/∂y ⊙ w
///            ∂L/∂x = r (g − mean(g) − x̂ · mean(g ⊙ x̂))
/// ```
///
/// Without `affine` there is neither `w` nor `b` (`g = ∂L/∂y`); without `bias` there is no `b`.
/// Parameters: `weight (C,)`, starting at 1, and `bias (C,)`, starting at 0.
///
/// Rows are processed in pieces, on all cores for large inputs; the forward pass normalises the
/// input in its own buffer (keeping `x̂` for the backward pass), which computes `∂L/∂x` in the
/// gradient's buffer.
///
/// ```
/// use scratch::ops::Mode;
/// use scratch::spec::LayerNormSpec;
/// use scratch::transformer::LayerNorm;
/// use scratch::layers::Layer;
///
/// let mut ln = LayerNorm::<f64>::new(LayerNormSpec::new(4))?;
/// let y = ln.forward(ndarray::array![[1.0, 2.0, 3.0, 4.0]].into_dyn(), Mode::Train)?;
/// assert!(y.sum().abs() < 1e-12);
/// # Ok::<(), scratch::Error>(())
/// ```
pub struct LayerNorm<F: Float> {
    spec: LayerNormSpec,
    /// `w (C,)`, with `affine`.
    weight: Option<Param<F>>,
    /// `b (C,)`, with `affine` and `bias`.
    bias: Option<Param<F>>,
    cache: Option<Cache<F>>,
}

/// What the backward pass needs from the forward pass.
struct Cache<F> {
    /// `x̂`, shaped as the input (in the input's buffer).
    normalized: ArrayD<F>,
    /// `r = 1 / √(σ² + eps)` of every row.
    rstd: Vec<F>,
}

impl<F: Float> LayerNorm<F> {
    /// The layer `spec` describes, its weight at 1 and its bias at 0.
    ///
    /// # Errors
    /// As [`LayerNormSpec::validate`].
    pub fn new(spec: LayerNormSpec) -> Result<Self> {
        spec.validate()?;
        let mut layer = LayerNorm { spec, weight: None, bias: None, cache: None };
        layer.reset();
        Ok(layer)
    }

    /// What the layer is.
    pub fn spec(&self) -> &LayerNormSpec {
        &self.spec
    }

    /// Sets the weight to 1 and the bias to 0.
    fn reset(&mut self) {
        let draw = self.spec.draw();
        let param = |v: Array1<f64>| Param::new(v.mapv(F::cast).into_dyn(), Layout::Canonical);
        self.weight = draw.weight.map(param);
        self.bias = draw.bias.map(param);
        self.cache = None;
    }

    /// The output and, with `keep`, what the backward pass needs (else the output is computed in the
    /// input's buffer).
    fn compute(&self, input: ArrayD<F>, keep: bool) -> Result<(ArrayD<F>, Option<Cache<F>>)> {
        let c = self.spec.dim;
        if input.shape().last() != Some(&c) {
            return Err(Error::shape("LayerNorm input", format!("(…, {c})"), input.shape()));
        }
        let mut x = standard(input);
        let eps = F::cast(self.spec.eps);
        let weight = self.weight.as_ref().map(|w| w.value.as_slice().expect("a parameter is contiguous"));
        let bias = self.bias.as_ref().map(|b| b.value.as_slice().expect("a parameter is contiguous"));
        let rows = x.len() / c;
        let piece = rows_per_piece(c);
        let mut y = if keep { Some(ArrayD::zeros(x.raw_dim())) } else { None };
        let xs = x.as_slice_mut().expect("standard layout");
        // y = x̂ ⊙ w + b on one row (in place).
        let affine = |y: &mut [F]| {
            if let Some(w) = weight {
                y.iter_mut().zip(w).for_each(|(v, &w)| *v *= w);
            }
            if let Some(b) = bias {
                y.iter_mut().zip(b).for_each(|(v, &b)| *v += b);
            }
        };
        let Some(mut y) = y.take() else {
            xs.par_chunks_mut(piece * c).for_each(|rows| {
                for row in rows.chunks_exact_mut(c) {
                    normalize(row, eps);
                    affine(row);
                }
            });
            return Ok((x, None));
        };
        let mut rstd = vec![F::zero(); rows];
        let ys = y.as_slice_mut().expect("a new array");
        xs.par_chunks_mut(piece * c).zip(ys.par_chunks_mut(piece * c)).zip(rstd.par_chunks_mut(piece)).for_each(
            |((xs, ys), rstd)| {
                for ((x, y), r) in xs.chunks_exact_mut(c).zip(ys.chunks_exact_mut(c)).zip(rstd) {
                    *r = normalize(x, eps);
                    y.copy_from_slice(x);
                    affine(y);
                }
            },
        );
        Ok((y, Some(Cache { normalized: x, rstd })))
    }

    /// Stores the parameter gradients and, with `input_grad`, turns `∂L/∂y` into `∂L/∂x` in place.
    fn gradients(&mut self, output_grad: ArrayD<F>, input_grad: bool) -> Result<ArrayD<F>> {
        let cache = self.cache.as_ref().ok_or_else(|| no_forward("LayerNorm"))?;
        if output_grad.shape() != cache.normalized.shape() {
            return Err(Error::shape(
                "LayerNorm backward",
                format!("gradient {:?}", cache.normalized.shape()),
                output_grad.shape(),
            ));
        }
        let c = self.spec.dim;
        let piece = rows_per_piece(c);
        let mut g = standard(output_grad);
        let weight = self.weight.as_ref().map(|w| w.value.as_slice().expect("a parameter is contiguous"));
        let normalized = cache.normalized.as_slice().expect("standard layout");
        // Per piece of rows: its share of ∂L/∂w and ∂L/∂b, and ∂L/∂x in place of ∂L/∂y.
        let partial: Vec<(Vec<F>, Vec<F>)> = g
            .as_slice_mut()
            .expect("standard layout")
            .par_chunks_mut(piece * c)
            .zip(normalized.par_chunks(piece * c))
            .zip(cache.rstd.par_chunks(piece))
            .map(|((gs, xhats), rstd)| {
                let (mut dw, mut db) = (vec![F::zero(); c], vec![F::zero(); c]);
                for ((g, xhat), &r) in gs.chunks_exact_mut(c).zip(xhats.chunks_exact(c)).zip(rstd) {
                    for (((dw, db), &g), &xhat) in dw.iter_mut().zip(db.iter_mut()).zip(g.iter()).zip(xhat) {
                        *dw += g * xhat;
                        *db += g;
                    }
                    if input_grad {
                        input_gradient(g, xhat, weight, r);
                    }
                }
                (dw, db)
            })
            .collect();
        // The pieces' shares summed in order.
        let (mut dw, mut db) = (Array1::zeros(c), Array1::zeros(c));
        for (pw, pb) in &partial {
            dw.iter_mut().zip(pw).for_each(|(t, &v)| *t += v);
            db.iter_mut().zip(pb).for_each(|(t, &v)| *t += v);
        }
        if let Some(w) = &mut self.weight {
            w.grad = dw.into_dyn();
        }
        if let Some(b) = &mut self.bias {
            b.grad = db.into_dyn();
        }
        Ok(g)
    }
}

/// `x ← (x − μ) r` for one row; returns `r = 1 / √(σ² + eps)`.
#[inline(always)]
fn normalize<F: Float>(x: &mut [F], eps: F) -> F {
    let n = F::cast(x.len() as f64);
    let mean = sum(x) / n;
    x.iter_mut().for_each(|v| *v -= mean);
    let var = dot(x, x) / n;
    let r = F::one() / (var + eps).sqrt();
    x.iter_mut().for_each(|v| *v *= r);
    r
}

/// `g ← r (g ⊙ w − mean(g ⊙ w) − x̂ · mean(g ⊙ w ⊙ x̂))` for one row, `g` holding `∂L/∂y`.
#[inline(always)]
fn input_gradient<F: Float>(g: &mut [F], xhat: &[F], weight: Option<&[F]>, r: F) {
    if let Some(w) = weight {
        g.iter_mut().zip(w).for_each(|(g, &w)| *g *= w);
    }
    let n = F::cast(g.len() as f64);
    let mean_g = sum(g) / n;
    let mean_gx = dot(g, xhat) / n;
    g.iter_mut().zip(xhat).for_each(|(g, &xhat)| *g = r * (*g - mean_g - xhat * mean_gx));
}

impl<F: Float> Layer<F> for LayerNorm<F> {
    fn describe(&self) -> String {
        self.spec.describe()
    }

    fn forward(&mut self, input: ArrayD<F>, _mode: Mode) -> Result<ArrayD<F>> {
        // A failed pass leaves no cache behind.
        self.cache = None;
        let (y, cache) = self.compute(input, true)?;
        self.cache = cache;
        Ok(y)
    }

    /// The output for `input` without keeping anything for a backward pass (evaluation).
    ///
    /// # Errors
    /// An input whose last axis is not `C`.
    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        Ok(self.compute(input, false)?.0)
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        self.gradients(output_grad, true)
    }

    fn backward_params(&mut self, output_grad: ArrayD<F>) -> Result<()> {
        self.gradients(output_grad, false).map(drop)
    }

    fn params(&self) -> Vec<(String, &Param<F>)> {
        let weight = self.weight.iter().map(|w| ("weight".to_string(), w));
        weight.chain(self.bias.iter().map(|b| ("bias".to_string(), b))).collect()
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param<F>)> {
        let weight = self.weight.iter_mut().map(|w| ("weight".to_string(), w));
        weight.chain(self.bias.iter_mut().map(|b| ("bias".to_string(), b))).collect()
    }

    /// Sets the weight back to 1 and the bias to 0 (nothing is drawn).
    fn reinitialize(&mut self, _rng: &mut RandomState) {
        self.reset();
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, Array2, ArrayD, IxDyn};

    use super::*;
    use crate::transformer::loops;

    /// The largest `|a − b| / max(1, |b|)`.
    fn difference<F: Float>(a: &ArrayD<F>, b: &ArrayD<f64>) -> f64 {
        assert_eq!(a.shape(), b.shape());
        a.iter().zip(b).map(|(&a, &b)| (a.as_f64() - b).abs() / b.abs().max(1.0)).fold(0.0, f64::max)
    }

    /// Forward, backward and inference against the loops, for single values, odd widths, three axes
    /// and an input large enough to be split over the cores; with both parameters, the weight only,
    /// and neither.
    fn matches_the_loops<F: Float>(tolerance: f64) {
        let mut rng = RandomState::new(6);
        for shape in [vec![1, 1], vec![5, 7], vec![3, 4, 128], vec![70, 600]] {
            let c = *shape.last().unwrap();
            for (affine, bias) in [(true, true), (true, false), (false, false)] {
                let spec = LayerNormSpec::new(c).affine(affine).bias(bias).eps(1e-3);
                let mut layer = LayerNorm::<F>::new(spec).unwrap();
                for (_, p) in layer.params_mut() {
                    p.value = rng.randn(p.value.raw_dim());
                }
                let x: ArrayD<F> = rng.normal(0.5, 3.0, IxDyn(&shape));
                let g: ArrayD<F> = rng.randn(IxDyn(&shape));
                let y = layer.forward(x.clone(), Mode::Train).unwrap();
                let inferred = layer.infer(x.clone()).unwrap();
                let dx = layer.backward(g.clone()).unwrap();
                let rows = |a: &ArrayD<F>| a.mapv(F::as_f64).into_shape_with_order((a.len() / c, c)).unwrap();
                let param = |name: &str| {
                    let p = layer.params().into_iter().find(|(n, _)| n == name).map(|(_, p)| p.clone());
                    p.map(|p| (p.value.mapv(F::as_f64), p.grad.mapv(F::as_f64)))
                };
                let (w, b) = (param("weight"), param("bias"));
                let as1 = |a: &ArrayD<f64>| a.clone().into_shape_with_order(c).unwrap();
                let (w1, b1) = (w.as_ref().map(|w| as1(&w.0)), b.as_ref().map(|b| as1(&b.0)));
                let y_ref = loops::layer_norm_forward(&rows(&x), w1.as_ref(), b1.as_ref(), 1e-3);
                let (dx_ref, dw_ref, db_ref): (Array2<f64>, Array1<f64>, Array1<f64>) =
                    loops::layer_norm_backward(&rows(&x), w1.as_ref(), 1e-3, &rows(&g));
                let case = format!("{} {shape:?} affine {affine} bias {bias}", F::NAME);
                let y_ref = y_ref.into_shape_with_order(IxDyn(&shape)).unwrap();
                assert!(difference(&y, &y_ref) < tolerance, "{case}: output");
                assert!(difference(&inferred, &y_ref) < tolerance, "{case}: inference");
                assert!(difference(&dx, &dx_ref.into_shape_with_order(IxDyn(&shape)).unwrap()) < tolerance, "{case}");
                if let Some((_, dw)) = w {
                    assert!(difference(&dw.mapv(F::cast), &dw_ref.into_dyn()) < tolerance, "{case}: weight gradient");
                }
                if let Some((_, db)) = b {
                    assert!(difference(&db.mapv(F::cast), &db_ref.into_dyn()) < tolerance, "{case}: bias gradient");
                }
                let names: Vec<String> = layer.params().into_iter().map(|(n, _)| n).collect();
                assert_eq!(names.len(), usize::from(affine) + usize::from(affine && bias), "{case}");
            }
        }
    }

    #[test]
    fn matches_the_loops_f64() {
        matches_the_loops::<f64>(1e-12);
    }

    #[test]
    fn matches_the_loops_f32() {
        matches_the_loops::<f32>(2e-5);
    }

    #[test]
    fn starts_as_the_identity_affine_map_and_refuses_bad_shapes() {
        let mut layer = LayerNorm::<f64>::new(LayerNormSpec::new(3)).unwrap();
        let params = layer.params();
        assert_eq!(params[0].0, "weight");
        assert_eq!(params[0].1.value, ndarray::arr1(&[1.0, 1.0, 1.0]).into_dyn());
        assert_eq!(params[1].1.value, ndarray::arr1(&[0.0, 0.0, 0.0]).into_dyn());
        assert!(layer.backward(ArrayD::zeros(IxDyn(&[2, 3]))).unwrap_err().to_string().contains("before forward"));
        let err = layer.forward(ArrayD::zeros(IxDyn(&[2, 4])), Mode::Train).unwrap_err().to_string();
        assert!(err.contains("LayerNorm input") && err.contains("[2, 4]"), "{err}");
        assert!(layer.forward(ArrayD::zeros(IxDyn(&[])), Mode::Train).is_err());
        layer.forward(ArrayD::zeros(IxDyn(&[2, 3])), Mode::Train).unwrap();
        assert!(layer.backward(ArrayD::zeros(IxDyn(&[3, 3]))).is_err());
        // A transposed (non-standard) input is read in its logical order.
        let x = ndarray::array![[1.0, 4.0], [2.0, 5.0], [3.0, 9.0]];
        let y = layer.forward(x.t().to_owned().into_dyn(), Mode::Eval).unwrap();
        let y_t = layer.forward(x.t().as_standard_layout().into_owned().into_dyn(), Mode::Eval).unwrap();
        assert_eq!(y, y_t);
    }
}
