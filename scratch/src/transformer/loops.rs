//! The building blocks of a GPT written as loops over indices, so that every multiply-add can be
//! followed: no buffers, threads or blocking. Each forward pass has its backward pass beside it. The
//! fast layers of [`crate::transformer`] and GELU in [`Activation`](crate::ops::Activation) compute
//! the same things; the tests check them against these.
//!
//! The functions index their arrays directly and expect consistent shapes (they panic otherwise:
//! the layers are the checked interface).

// Loops over indices are the point of this module, even where an iterator would do.
#![allow(clippy::needless_range_loop)]

use ndarray::{Array1, Array2, Array3, Array4, ArrayD};

use crate::ops::GeluApproximation;
use crate::Float;

/// The causal self-attention core, forward: for `x (B, T, 3C)` holding `q`, `k` and `v` side by
/// side and `heads` heads of `hs = C / heads` columns each,
///
/// ```text
/// S[b, h, i, j] = Σ_d q[b, i, h·hs + d] · k[b, j, h·hs + d] / √hs              (j ≤ i)
/// P[b, h, i, j] = exp(S[b, h, i, j] − max_j' S[b, h, i, j']) / Σ_j'' exp(…)   (j ≤ i; 0 for j > i)
/// y[b, i, h·hs + d] = Σ_{j ≤ i} P[b, h, i, j] · D[b, h, i, j] · v[b, j, h·hs + d]
/// ```
///
/// with `D` the dropout factor (`mask / keep`), 1 without. Returns `y (B, T, C)` and `P (B, H, T, T)`.
pub fn attention_forward<F: Float>(x: &Array3<F>, heads: usize, dropout: Option<&Array4<F>>) -> (Array3<F>, Array4<F>) {
    let (batch, time, width3) = x.dim();
    let c = width3 / 3;
    let hs = c / heads;
    let scale = F::one() / F::cast(hs as f64).sqrt();
    let mut y = Array3::zeros((batch, time, c));
    let mut p = Array4::zeros((batch, heads, time, time));
    for b in 0..batch {
        for h in 0..heads {
            for i in 0..time {
                let mut scores = vec![F::zero(); i + 1];
                for j in 0..=i {
                    for d in 0..hs {
                        scores[j] += x[[b, i, h * hs + d]] * x[[b, j, c + h * hs + d]];
                    }
                    scores[j] *= scale;
                }
                let max = scores.iter().fold(F::neg_infinity(), |m, &s| m.max(s));
                let mut total = F::zero();
                for j in 0..=i {
                    total += (scores[j] - max).exp();
                }
                for j in 0..=i {
                    p[[b, h, i, j]] = (scores[j] - max).exp() / total;
                }
                for j in 0..=i {
                    let factor = dropout.map_or(F::one(), |m| m[[b, h, i, j]]);
                    for d in 0..hs {
                        y[[b, i, h * hs + d]] += p[[b, h, i, j]] * factor * x[[b, j, 2 * c + h * hs + d]];
                    }
                }
            }
        }
    }
    (y, p)
}

/// The causal self-attention core, backward: `∂L/∂x (B, T, 3C)` from `∂L/∂y (B, T, C)`, with `P`
/// computed again by [`attention_forward`] and `P̃ = P ⊙ D`:
///
/// ```text
/// ∂L/∂v[j]    = Σ_{i ≥ j} P̃[i, j] ∂L/∂y[i]
/// ∂L/∂P̃[i, j] = Σ_d ∂L/∂y[i, d] v[j, d],       ∂L/∂P = ∂L/∂P̃ ⊙ D          (j ≤ i)
/// ∂L/∂S[i, j] = P[i, j] (∂L/∂P[i, j] − Σ_{j' ≤ i} ∂L/∂P[i, j'] P[i, j'])
/// ∂L/∂q[i]    = Σ_{j ≤ i} ∂L/∂S[i, j] k[j] / √hs,     ∂L/∂k[j] = Σ_{i ≥ j} ∂L/∂S[i, j] q[i] / √hs
/// ```
///
/// for every sequence `b` and head `h` (the indices `b, h` and the column offsets `h·hs` left out).
pub fn attention_backward<F: Float>(
    x: &Array3<F>,
    heads: usize,
    dropout: Option<&Array4<F>>,
    output_grad: &Array3<F>,
) -> Array3<F> {
    let (batch, time, width3) = x.dim();
    let c = width3 / 3;
    let hs = c / heads;
    let scale = F::one() / F::cast(hs as f64).sqrt();
    let (_, p) = attention_forward(x, heads, dropout);
    let mut dx = Array3::zeros(x.raw_dim());
    for b in 0..batch {
        for h in 0..heads {
            let (q, k, v) = (h * hs, c + h * hs, 2 * c + h * hs);
            for i in 0..time {
                let mut dp = vec![F::zero(); i + 1];
                for j in 0..=i {
                    let factor = dropout.map_or(F::one(), |m| m[[b, h, i, j]]);
                    for d in 0..hs {
                        dx[[b, j, v + d]] += p[[b, h, i, j]] * factor * output_grad[[b, i, h * hs + d]];
                        dp[j] += output_grad[[b, i, h * hs + d]] * x[[b, j, v + d]];
                    }
                    dp[j] *= factor;
                }
                let mut row = F::zero();
                for j in 0..=i {
                    row += dp[j] * p[[b, h, i, j]];
                }
                for j in 0..=i {
                    let ds = p[[b, h, i, j]] * (dp[j] - row) * scale;
                    for d in 0..hs {
                        dx[[b, i, q + d]] += ds * x[[b, j, k + d]];
                        dx[[b, j, k + d]] += ds * x[[b, i, q + d]];
                    }
                }
            }
        }
    }
    dx
}

/// Layer normalisation of every row of `x (N, C)`, forward:
///
/// ```text
/// μ = Σ_c x[n, c] / C,   σ² = Σ_c (x[n, c] − μ)² / C,   y[n, c] = (x[n, c] − μ) / √(σ² + eps) · w[c] + b[c]
/// ```
///
/// with `w = 1` and `b = 0` where they are not given.
pub fn layer_norm_forward<F: Float>(
    x: &Array2<F>,
    weight: Option<&Array1<F>>,
    bias: Option<&Array1<F>>,
    eps: F,
) -> Array2<F> {
    let (rows, c) = x.dim();
    let n = F::cast(c as f64);
    let mut y = Array2::zeros((rows, c));
    for r in 0..rows {
        let mut mean = F::zero();
        for j in 0..c {
            mean += x[[r, j]];
        }
        mean /= n;
        let mut var = F::zero();
        for j in 0..c {
            var += (x[[r, j]] - mean) * (x[[r, j]] - mean);
        }
        var /= n;
        for j in 0..c {
            let w = weight.map_or(F::one(), |w| w[j]);
            let b = bias.map_or(F::zero(), |b| b[j]);
            y[[r, j]] = (x[[r, j]] - mean) / (var + eps).sqrt() * w + b;
        }
    }
    y
}

/// Layer normalisation, backward: `(∂L/∂x, ∂L/∂w, ∂L/∂b)` from `∂L/∂y`, with `x̂ = (x − μ) / √(σ² + eps)`
/// and `g = ∂L/∂y ⊙ w` for each row:
///
/// ```text
/// ∂L/∂w[c] = Σ_n ∂L/∂y[n, c] x̂[n, c],     ∂L/∂b[c] = Σ_n ∂L/∂y[n, c]
/// ∂L/∂x[n, c] = (g[n, c] − Σ_c' g[n, c'] / C − x̂[n, c] Σ_c' g[n, c'] x̂[n, c'] / C) / √(σ² + eps)
/// ```
pub fn layer_norm_backward<F: Float>(
    x: &Array2<F>,
    weight: Option<&Array1<F>>,
    eps: F,
    output_grad: &Array2<F>,
) -> (Array2<F>, Array1<F>, Array1<F>) {
    let (rows, c) = x.dim();
    let n = F::cast(c as f64);
    let xhat = layer_norm_forward(x, None, None, eps);
    let mut dx = Array2::zeros((rows, c));
    let (mut dw, mut db) = (Array1::zeros(c), Array1::zeros(c));
    for r in 0..rows {
        let mut mean = F::zero();
        for j in 0..c {
            mean += x[[r, j]];
        }
        mean /= n;
        let mut var = F::zero();
        for j in 0..c {
            var += (x[[r, j]] - mean) * (x[[r, j]] - mean);
        }
        var /= n;
        let (mut sum_g, mut sum_gx) = (F::zero(), F::zero());
        for j in 0..c {
            let g = output_grad[[r, j]] * weight.map_or(F::one(), |w| w[j]);
            sum_g += g;
            sum_gx += g * xhat[[r, j]];
            dw[j] += output_grad[[r, j]] * xhat[[r, j]];
            db[j] += output_grad[[r, j]];
        }
        for j in 0..c {
            let g = output_grad[[r, j]] * weight.map_or(F::one(), |w| w[j]);
            dx[[r, j]] = (g - sum_g / n - xhat[[r, j]] * sum_gx / n) / (var + eps).sqrt();
        }
    }
    (dx, dw, db)
}

/// `√(2/π)`.
const BETA: f64 = 0.797_884_560_802_865_4;
/// The tanh approximation's cubic coefficient.
const KAPPA: f64 = 0.044715;

/// GELU of every element:
///
/// ```text
/// exact:  y = x/2 · (1 + erf(x / √2))
/// tanh:   y = x/2 · (1 + tanh(√(2/π) (x + 0.044715 x³)))
/// ```
pub fn gelu_forward<F: Float>(x: &ArrayD<F>, approximation: GeluApproximation) -> ArrayD<F> {
    let half = F::cast(0.5);
    x.mapv(|x| match approximation {
        GeluApproximation::Exact => half * x * (F::one() + (x / F::cast(2.0).sqrt()).erf_fast()),
        GeluApproximation::Tanh => half * x * (F::one() + (F::cast(BETA) * (x + F::cast(KAPPA) * x * x * x)).tanh()),
    })
}

/// GELU, backward: `∂L/∂x = ∂L/∂y ⊙ y'(x)` with
///
/// ```text
/// exact:  y'(x) = Φ(x) + x φ(x) = (1 + erf(x / √2)) / 2 + x e^{−x²/2} / √(2π)
/// tanh:   y'(x) = (1 + t) / 2 + x/2 · (1 − t²) · √(2/π) (1 + 3 · 0.044715 x²),   t = tanh(√(2/π) (x + 0.044715 x³))
/// ```
pub fn gelu_backward<F: Float>(x: &ArrayD<F>, approximation: GeluApproximation, output_grad: &ArrayD<F>) -> ArrayD<F> {
    let (half, one) = (F::cast(0.5), F::one());
    let mut dx = output_grad.clone();
    for (g, &x) in dx.iter_mut().zip(x) {
        let derivative = match approximation {
            GeluApproximation::Exact => {
                let cdf = half * (one + (x / F::cast(2.0).sqrt()).erf_fast());
                let density = (-half * x * x).exp() / F::cast(2.0 * std::f64::consts::PI).sqrt();
                cdf + x * density
            }
            GeluApproximation::Tanh => {
                let t = (F::cast(BETA) * (x + F::cast(KAPPA) * x * x * x)).tanh();
                half * (one + t) + half * x * (one - t * t) * F::cast(BETA) * (one + F::cast(3.0 * KAPPA) * x * x)
            }
        };
        *g *= derivative;
    }
    dx
}

/// The token embedding, forward: `y[b, t, c] = W[indices[b, t], c]`.
pub fn embedding_forward<F: Float>(indices: &Array2<usize>, weight: &Array2<F>) -> Array3<F> {
    let (batch, time) = indices.dim();
    let c = weight.ncols();
    let mut y = Array3::zeros((batch, time, c));
    for b in 0..batch {
        for t in 0..time {
            for j in 0..c {
                y[[b, t, j]] = weight[[indices[[b, t]], j]];
            }
        }
    }
    y
}

/// The token embedding, backward: `∂L/∂W[v, c] = Σ_{(b, t): indices[b, t] = v} ∂L/∂y[b, t, c]` for a
/// table of `vocab` rows (the indices themselves have no gradient).
pub fn embedding_backward<F: Float>(indices: &Array2<usize>, vocab: usize, output_grad: &Array3<F>) -> Array2<F> {
    let (batch, time, c) = output_grad.dim();
    let mut dw = Array2::zeros((vocab, c));
    for b in 0..batch {
        for t in 0..time {
            for j in 0..c {
                dw[[indices[[b, t]], j]] += output_grad[[b, t, j]];
            }
        }
    }
    dw
}

/// The position embedding, forward: `y[b, t, c] = x[b, t, c] + W[t, c]`.
pub fn position_embedding_forward<F: Float>(x: &Array3<F>, weight: &Array2<F>) -> Array3<F> {
    let (batch, time, c) = x.dim();
    let mut y = Array3::zeros((batch, time, c));
    for b in 0..batch {
        for t in 0..time {
            for j in 0..c {
                y[[b, t, j]] = x[[b, t, j]] + weight[[t, j]];
            }
        }
    }
    y
}

/// The position embedding, backward: `∂L/∂x = ∂L/∂y` and `∂L/∂W[t, c] = Σ_b ∂L/∂y[b, t, c]` for
/// `t < T` (0 for the rows up to `max_len` beyond).
pub fn position_embedding_backward<F: Float>(max_len: usize, output_grad: &Array3<F>) -> (Array3<F>, Array2<F>) {
    let (batch, time, c) = output_grad.dim();
    let mut dw = Array2::zeros((max_len, c));
    for b in 0..batch {
        for t in 0..time {
            for j in 0..c {
                dw[[t, j]] += output_grad[[b, t, j]];
            }
        }
    }
    (output_grad.clone(), dw)
}

#[cfg(test)]
mod tests {
    use ndarray::IxDyn;

    use super::*;
    use crate::ops::{Activation, Mode};
    use crate::rng::RandomState;

    /// GELU as the activation computes it (with SIMD, in parallel for large arrays) against the
    /// loops, in both forms, on arrays from one element to more than one piece of work, with
    /// arguments out to ±12.
    fn gelu_matches_the_loops<F: Float>(tolerance: f64) {
        let mut rng = RandomState::new(12);
        for shape in [vec![1], vec![3, 7], vec![5, 64, 129]] {
            for form in [GeluApproximation::Exact, GeluApproximation::Tanh] {
                let x: ArrayD<F> = rng.normal(0.0, 4.0, IxDyn(&shape));
                let g: ArrayD<F> = rng.randn(IxDyn(&shape));
                let mut op = Activation::Gelu(form).operation::<F>();
                let y = op.forward(x.clone(), Mode::Train).unwrap();
                let dx = op.backward(g.clone()).unwrap();
                let x64 = x.mapv(F::as_f64);
                let y_ref = gelu_forward(&x64, form);
                let dx_ref = gelu_backward(&x64, form, &g.mapv(F::as_f64));
                for (got, want, what) in [(&y, &y_ref, "output"), (&dx, &dx_ref, "input gradient")] {
                    let worst = got
                        .iter()
                        .zip(want)
                        .map(|(&a, &b)| (a.as_f64() - b).abs() / b.abs().max(1.0))
                        .fold(0.0, f64::max);
                    assert!(worst < tolerance, "{} {form:?} {shape:?} {what}: {worst:e}", F::NAME);
                }
            }
        }
    }

    #[test]
    fn gelu_matches_the_loops_f64() {
        gelu_matches_the_loops::<f64>(1e-13);
    }

    #[test]
    fn gelu_matches_the_loops_f32() {
        gelu_matches_the_loops::<f32>(1e-6);
    }
}
