//! Chapter 1, Foundations: functions, their derivatives, and the chain rule, on arrays.
//!
//! Everything here is the chapter's pencil-and-paper math made executable: a derivative is computed by
//! the central difference
//!
//! ```text
//! df/dx (x) ≈ (f(x + Δ) − f(x − Δ)) / 2Δ
//! ```
//!
//! and a composite function's derivative by multiplying the derivatives of its pieces (the chain rule).
//! The last functions take the step from scalars to matrices: for `N = X W`, `S = σ(N)` and
//! `L = Σ S`,
//!
//! ```text
//! dL/dX = σ'(N) Wᵀ          (rows of X: batch, columns: features)
//! dL/dW = Xᵀ σ'(N)
//! ```

use ndarray::{Array, Array2, ArrayView2, Dimension};

use crate::{Error, Float, Result};

/// An elementwise function of one number, applied to every element of an array.
pub type ElementFn<'a, F> = &'a dyn Fn(F) -> F;

/// `x²`.
pub fn square<F: Float>(x: F) -> F {
    x * x
}

/// The logistic function `σ(x) = 1 / (1 + e⁻ˣ)`.
pub fn sigmoid<F: Float>(x: F) -> F {
    F::one() / (F::one() + (-x).exp())
}

/// The book's leaky ReLU, `max(0.2 x, x)`.
pub fn leaky_relu<F: Float>(x: F) -> F {
    x.max(F::cast(0.2) * x)
}

/// The central-difference derivative of `f` at every element of `x`: `(f(x + Δ) − f(x − Δ)) / 2Δ`.
pub fn deriv<F: Float, D: Dimension>(f: ElementFn<F>, x: &Array<F, D>, delta: F) -> Array<F, D> {
    x.mapv(|v| (f(v + delta) - f(v - delta)) / (delta + delta))
}

/// The book's default step for [`deriv`], `Δ = 0.001`.
pub fn default_delta<F: Float>() -> F {
    F::cast(0.001)
}

/// Applies a chain of functions in order: `f_n(… f_2(f_1(x)))`.
pub fn chain<F: Float, D: Dimension>(functions: &[ElementFn<F>], x: &Array<F, D>) -> Array<F, D> {
    functions.iter().fold(x.clone(), |u, f| u.mapv(f))
}

/// The derivative of a chain by the chain rule:
///
/// ```text
/// d/dx f_n(… f_1(x)) = f_n'(u_{n-1}) · … · f_2'(u_1) · f_1'(x),   u_k = f_k(u_{k-1}), u_0 = x
/// ```
///
/// with each `f_k'` computed by [`deriv`]. The book writes this out for chains of length 2 and 3; it holds
/// for any length.
pub fn chain_deriv<F: Float, D: Dimension>(functions: &[ElementFn<F>], x: &Array<F, D>) -> Array<F, D> {
    let mut u = x.clone();
    let mut total = Array::from_elem(x.raw_dim(), F::one());
    for f in functions {
        total = total * deriv(*f, &u, default_delta());
        u = u.mapv(f);
    }
    total
}

/// A function of two inputs, `s = σ(x + y)`.
pub fn multiple_inputs_add<F: Float, D: Dimension>(
    x: &Array<F, D>,
    y: &Array<F, D>,
    sigma: ElementFn<F>,
) -> Array<F, D> {
    (x + y).mapv(sigma)
}

/// The gradients of `s = σ(a)`, `a = x + y`: `ds/dx = σ'(a) · 1` and `ds/dy = σ'(a) · 1`.
pub fn multiple_inputs_add_backward<F: Float, D: Dimension>(
    x: &Array<F, D>,
    y: &Array<F, D>,
    sigma: ElementFn<F>,
) -> (Array<F, D>, Array<F, D>) {
    let ds_da = deriv(sigma, &(x + y), default_delta());
    (ds_da.clone(), ds_da)
}

fn check_matmul_shapes<F>(x: &ArrayView2<F>, w: &ArrayView2<F>) -> Result<()> {
    if x.ncols() != w.nrows() {
        return Err(Error::shape(
            "matrix product X W",
            format!("W with {} rows (the columns of X)", x.ncols()),
            w.shape(),
        ));
    }
    Ok(())
}

/// `N = X W` for `X: (batch, features)` and `W: (features, outputs)`.
pub fn matmul_forward<F: Float>(x: &Array2<F>, w: &Array2<F>) -> Result<Array2<F>> {
    check_matmul_shapes(&x.view(), &w.view())?;
    Ok(x.dot(w))
}

/// `∂N/∂X` for `N = X W` and a single row `X: (1, features)`: it is `Wᵀ`, shape `(1, features)` when `W` has
/// one column.
pub fn matmul_backward_first<F: Float>(x: &Array2<F>, w: &Array2<F>) -> Result<Array2<F>> {
    check_matmul_shapes(&x.view(), &w.view())?;
    Ok(w.t().to_owned())
}

/// `S = σ(X W)`.
pub fn matrix_forward_extra<F: Float>(x: &Array2<F>, w: &Array2<F>, sigma: ElementFn<F>) -> Result<Array2<F>> {
    Ok(matmul_forward(x, w)?.mapv(sigma))
}

/// `∂S/∂X = σ'(N) Wᵀ` for `S = σ(X W)`, with `σ'` by central difference: shape `(batch, features)`.
pub fn matrix_function_backward_1<F: Float>(x: &Array2<F>, w: &Array2<F>, sigma: ElementFn<F>) -> Result<Array2<F>> {
    let n = matmul_forward(x, w)?;
    Ok(deriv(sigma, &n, default_delta()).dot(&w.t()))
}

/// `L = Σ σ(X W)`, summed over every element.
pub fn matrix_function_forward_sum<F: Float>(x: &Array2<F>, w: &Array2<F>, sigma: ElementFn<F>) -> Result<F> {
    Ok(matrix_forward_extra(x, w, sigma)?.sum())
}

/// The gradients of `L = Σ σ(X W)`:
///
/// ```text
/// dL/dS = 1,   dL/dN = σ'(N) ⊙ 1,   dL/dX = dL/dN Wᵀ,   dL/dW = Xᵀ dL/dN
/// ```
///
/// Returns `(dL/dX, dL/dW)`, shaped like `X` and `W`.
pub fn matrix_function_backward_sum<F: Float>(
    x: &Array2<F>,
    w: &Array2<F>,
    sigma: ElementFn<F>,
) -> Result<(Array2<F>, Array2<F>)> {
    let n = matmul_forward(x, w)?;
    let dl_dn = deriv(sigma, &n, default_delta());
    Ok((dl_dn.dot(&w.t()), x.t().dot(&dl_dn)))
}

#[cfg(test)]
mod tests {
    use approx::assert_abs_diff_eq;
    use ndarray::{array, Array1};

    use super::*;
    use crate::rng::RandomState;

    fn round4(a: &Array2<f64>) -> Array2<f64> {
        a.mapv(|v| (v * 1e4).round() / 1e4)
    }

    #[test]
    fn derivative_of_square_is_two_x() {
        let x = Array1::linspace(-3.0, 3.0, 13);
        let d = deriv(&square, &x, 1e-3);
        assert_abs_diff_eq!(d, x.mapv(|v| 2.0 * v), epsilon = 1e-9);
    }

    #[test]
    fn chain_rule_matches_the_analytic_derivative() {
        // d/dx σ(x²) = σ'(x²) · 2x  and  d/dx σ(x)² = 2σ(x) σ'(x)
        let x = Array1::linspace(-3.0, 3.0, 61);
        let s = |v: f64| sigmoid(v);
        let ds = |v: f64| s(v) * (1.0 - s(v));
        let got = chain_deriv(&[&square, &sigmoid], &x);
        assert_abs_diff_eq!(got, x.mapv(|v| ds(v * v) * 2.0 * v), epsilon = 1e-6);
        let got = chain_deriv(&[&sigmoid, &square], &x);
        assert_abs_diff_eq!(got, x.mapv(|v| 2.0 * s(v) * ds(v)), epsilon = 1e-6);
        assert_abs_diff_eq!(chain(&[&sigmoid, &square], &x), x.mapv(|v| s(v) * s(v)), epsilon = 1e-15);
        // length three: leaky_relu(square(sigmoid(x)))
        let got = chain_deriv(&[&leaky_relu, &square, &sigmoid], &x);
        let expected = x.mapv(|v| {
            let u = leaky_relu(v);
            let dl = if v > 0.0 { 1.0 } else { 0.2 };
            ds(u * u) * 2.0 * u * dl
        });
        assert_abs_diff_eq!(got, expected, epsilon = 1e-5);
    }

    #[test]
    fn two_input_function_gradients() {
        let x = array![0.5, -1.0];
        let y = array![0.25, 2.0];
        let (dx, dy) = multiple_inputs_add_backward(&x, &y, &sigmoid);
        let a = &x + &y;
        let expected = a.mapv(|v| sigmoid(v) * (1.0 - sigmoid(v)));
        assert_abs_diff_eq!(dx, expected, epsilon = 1e-7);
        assert_abs_diff_eq!(dy, expected, epsilon = 1e-7);
        assert_abs_diff_eq!(multiple_inputs_add(&x, &y, &sigmoid), a.mapv(sigmoid), epsilon = 0.0);
    }

    #[test]
    fn vector_function_numbers_match_the_book() {
        // np.random.seed(190203); X = randn(1, 3); W = randn(3, 1)
        let mut rng = RandomState::new(190_203);
        let x: Array2<f64> = rng.randn((1, 3));
        let w: Array2<f64> = rng.randn((3, 1));
        assert_eq!(round4(&x), array![[0.4723, 0.6151, -1.7262]]);
        let d = matmul_backward_first(&x, &w).unwrap();
        assert_eq!(round4(&d), array![[0.9282, -0.6075, -1.2214]]);
        let d = matrix_function_backward_1(&x, &w, &sigmoid).unwrap();
        assert_eq!(round4(&d), array![[0.0852, -0.0557, -0.1121]]);
        // The book's check: bump X[0, 2] by 0.01 and compare the change in σ(XW) per unit, to 2 decimals.
        let mut x2 = x.clone();
        x2[[0, 2]] += 0.01;
        let s1 = matrix_forward_extra(&x, &w, &sigmoid).unwrap()[[0, 0]];
        let s2 = matrix_forward_extra(&x2, &w, &sigmoid).unwrap()[[0, 0]];
        assert_eq!(((s2 - s1) / 0.01 * 100.0).round() / 100.0, -0.11);
        assert_eq!((d[[0, 2]] * 100.0).round() / 100.0, -0.11);
    }

    #[test]
    fn matrix_sum_numbers_match_the_book() {
        // np.random.seed(190204); X = randn(3, 3); W = randn(3, 2)
        let mut rng = RandomState::new(190_204);
        let x: Array2<f64> = rng.randn((3, 3));
        let w: Array2<f64> = rng.randn((3, 2));
        assert_eq!(
            round4(&x),
            array![[-1.5775, -0.6664, 0.6391], [-0.5615, 0.7373, -1.4231], [-1.4435, -0.3913, 0.1539]]
        );
        let l = matrix_function_forward_sum(&x, &w, &sigmoid).unwrap();
        assert_eq!((l * 1e4).round() / 1e4, 2.3755);
        let (dl_dx, dl_dw) = matrix_function_backward_sum(&x, &w, &sigmoid).unwrap();
        assert_eq!(
            round4(&dl_dx),
            array![[0.2489, -0.3748, 0.0112], [0.126, -0.2781, -0.1395], [0.2299, -0.3662, -0.0225]]
        );
        // The book's check of dL/dX[0, 0] by a forward difference of 0.001.
        let mut x2 = x.clone();
        x2[[0, 0]] += 0.001;
        let l2 = matrix_function_forward_sum(&x2, &w, &sigmoid).unwrap();
        assert_eq!(((l2 - l) / 0.001 * 1e4).round() / 1e4, 0.2489);
        // dL/dW against a central difference of L in each weight.
        for i in 0..3 {
            for j in 0..2 {
                let (mut wp, mut wm) = (w.clone(), w.clone());
                wp[[i, j]] += 1e-6;
                wm[[i, j]] -= 1e-6;
                let num = (matrix_function_forward_sum(&x, &wp, &sigmoid).unwrap()
                    - matrix_function_forward_sum(&x, &wm, &sigmoid).unwrap())
                    / 2e-6;
                assert_abs_diff_eq!(dl_dw[[i, j]], num, epsilon = 1e-6);
            }
        }
    }

    #[test]
    fn mismatched_matrices_are_an_error() {
        let x = Array2::<f64>::zeros((2, 3));
        let w = Array2::<f64>::zeros((4, 1));
        let err = matmul_forward(&x, &w).unwrap_err().to_string();
        assert!(err.contains("W with 3 rows") && err.contains("[4, 1]"), "{err}");
    }
}
