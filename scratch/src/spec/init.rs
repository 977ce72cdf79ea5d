//! How a layer's weights start.

use ndarray::{Array, IntoDimension};

use crate::rng::RandomState;
use crate::{Error, Result};

/// How a layer draws its initial weights and biases.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WeightInit {
    /// Normal with standard deviation 1: the book's default (`np.random.randn`).
    Standard,
    /// Glorot (Xavier) normal, standard deviation `sqrt(2 / (fan_in + fan_out))`; the book's current
    /// code, which applies the same scale to the bias.
    Glorot,
    /// The book's 2019 "glorot": standard deviation `2 / (fan_in + fan_out)`, without the square root.
    BookGlorot2019,
    /// PyTorch's default for `nn.Linear` and `nn.Conv2d` (Kaiming uniform with `a = √5`): weights and
    /// biases uniform in `±1 / sqrt(fan_in)`. The book's chapter-7 models use it.
    PyTorch,
    /// Normal with standard deviation `std` whatever the fans, biases zero: GPT-2's initialisation
    /// (`std` 0.02, scaled down for the projections into the residual stream).
    Normal {
        /// The weights' standard deviation.
        std: f64,
    },
}

impl WeightInit {
    /// The standard deviation of a normal initialisation, or the bound of a uniform one, for the given
    /// fans.
    pub fn scale(self, fan_in: usize, fan_out: usize) -> f64 {
        let sum = (fan_in + fan_out) as f64;
        match self {
            WeightInit::Standard => 1.0,
            WeightInit::Glorot => (2.0 / sum).sqrt(),
            WeightInit::BookGlorot2019 => 2.0 / sum,
            WeightInit::PyTorch => 1.0 / (fan_in as f64).sqrt(),
            WeightInit::Normal { std } => std,
        }
    }

    /// Checks that a normal initialisation's standard deviation is finite and not negative.
    ///
    /// # Errors
    /// One that is not.
    pub fn validate(self) -> Result<()> {
        match self {
            WeightInit::Normal { std } if !(std.is_finite() && std >= 0.0) => {
                Err(Error::InvalidArgument(format!("initialisation: standard deviation {std} is not valid")))
            }
            _ => Ok(()),
        }
    }

    /// The fans of a `k × k` convolution from `in_channels` to `out_channels`: Glorot and PyTorch count
    /// every kernel element (`C·k²`, as PyTorch's initialisers do); the book's "glorot" for convolutions
    /// is `2 / (in_channels + out_channels)` in every version.
    pub fn conv_fans(self, in_channels: usize, out_channels: usize, k: usize) -> (usize, usize) {
        match self {
            WeightInit::Glorot | WeightInit::PyTorch => {
                (in_channels.saturating_mul(k * k), out_channels.saturating_mul(k * k))
            }
            WeightInit::Standard | WeightInit::BookGlorot2019 | WeightInit::Normal { .. } => {
                (in_channels, out_channels)
            }
        }
    }

    /// Draws an array of `shape` for a layer with the given fans: `N(0, scale²)`, or `U(−scale, scale)`
    /// for [`WeightInit::PyTorch`], in row-major order.
    pub fn sample<Sh: IntoDimension>(
        self,
        rng: &mut RandomState,
        shape: Sh,
        (fan_in, fan_out): (usize, usize),
    ) -> Array<f64, Sh::Dim> {
        let scale = self.scale(fan_in, fan_out);
        match self {
            WeightInit::PyTorch => rng.uniform_array::<f64, _>(shape).mapv(|u| (2.0 * u - 1.0) * scale),
            _ => rng.normal(0.0, scale, shape),
        }
    }

    /// Draws a bias of `shape` as [`WeightInit::sample`] does, except for [`WeightInit::Normal`], whose
    /// biases start at zero without a draw.
    pub fn sample_bias<Sh: IntoDimension>(
        self,
        rng: &mut RandomState,
        shape: Sh,
        fans: (usize, usize),
    ) -> Array<f64, Sh::Dim> {
        match self {
            WeightInit::Normal { .. } => Array::zeros(shape),
            _ => self.sample(rng, shape, fans),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_are_the_documented_formulas() {
        // Glorot has the square root; the book's 2019 "glorot" does not; PyTorch's bound is 1/√fan_in.
        assert_eq!(WeightInit::Standard.scale(784, 89), 1.0);
        assert!((WeightInit::Glorot.scale(784, 89) - (2.0f64 / 873.0).sqrt()).abs() < 1e-16);
        assert!((WeightInit::BookGlorot2019.scale(784, 89) - 2.0 / 873.0).abs() < 1e-16);
        assert!((WeightInit::PyTorch.scale(784, 89) - 1.0 / 28.0).abs() < 1e-16);
        // Convolution fans: Glorot and PyTorch count the kernel's elements, the book's forms the channels.
        assert_eq!(WeightInit::Glorot.conv_fans(1, 16, 5), (25, 400));
        assert_eq!(WeightInit::BookGlorot2019.conv_fans(1, 16, 5), (1, 16));
    }

    #[test]
    fn pytorch_draws_are_uniform_in_the_bound_and_normal_draws_have_the_scale() {
        let mut rng = RandomState::new(0);
        let bound = WeightInit::PyTorch.scale(100, 10);
        let u = WeightInit::PyTorch.sample(&mut rng, (100, 1000), (100, 10));
        assert!(u.iter().all(|v| v.abs() <= bound));
        assert!(u.iter().any(|v| v.abs() > 0.99 * bound), "the draws reach the bound");
        let n = WeightInit::Glorot.sample(&mut rng, (100, 1000), (100, 10));
        let std = (n.iter().map(|v| v * v).sum::<f64>() / n.len() as f64).sqrt();
        assert!((std / WeightInit::Glorot.scale(100, 10) - 1.0).abs() < 0.01, "{std}");
    }
}
