//! The convolutional layer on libtorch.

use std::borrow::Borrow;

use scratch::param::Layout;
use scratch::rng::RandomState;
use scratch::spec::ConvSpec;
use tch::{nn, Tensor};

use super::{activate, module_by_checked_forward, parameter, set_values, Dropout, Layer};
use crate::Result;

/// A convolutional layer on libtorch, the book's chapter-7 `ConvLayer` (or, transposed, its
/// `DeconvLayer`): `conv2d` (padding `k/2` by default), optional bias, activation, optional flatten,
/// optional dropout.
///
/// Parameters `weight: (O, C, k, k)` (`(C, O, k, k)` transposed; PyTorch's layouts) and, with a bias,
/// `bias: (O,)`.
#[derive(Debug)]
pub struct Conv2D {
    spec: ConvSpec,
    weight: Tensor,
    bias: Option<Tensor>,
    dropout: Option<Dropout>,
}

/// The convolution `spec` describes, its parameters under `path` (of the path's kind and device),
/// drawn from `rng` as the from-scratch `Conv2D` draws them; the counterpart of `tch::nn::conv2d`.
///
/// # Errors
/// Invalid settings (see [`ConvSpec::validate`]).
pub fn conv2d<'a>(path: impl Borrow<nn::Path<'a>>, spec: ConvSpec, rng: &mut RandomState) -> Result<Conv2D> {
    spec.validate()?;
    let path = path.borrow();
    let (o, c, k) = (spec.out_channels, spec.in_channels, spec.kernel);
    let shape = if spec.transposed { [c, o, k, k] } else { [o, c, k, k] };
    let weight = parameter(path, "weight", &shape);
    let bias = spec.bias.then(|| parameter(path, "bias", &[o]));
    let dropout = spec.dropout.map(|(keep, style)| Dropout::new(keep, style, 0));
    let layer = Conv2D { spec, weight, bias, dropout };
    layer.reinitialize(rng);
    Ok(layer)
}

impl Layer for Conv2D {
    fn describe(&self) -> String {
        self.spec.describe()
    }

    fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let size = xs.size();
        let g = self.spec.geometry();
        let fits = match size[..] {
            [_, c, h, w] => c == g.in_channels as i64 && self.spec.output_size((h as usize, w as usize)).is_some(),
            _ => false,
        };
        if !fits {
            let want = format!("(batch, {}, height, width) with images the kernel fits", g.in_channels);
            return Err(scratch::Error::shape("input", want, size).into());
        }
        let (s, p) = (g.stride.0 as i64, g.padding.0 as i64);
        let y = if self.spec.transposed {
            let q = self.spec.output_padding as i64;
            xs.conv_transpose2d(&self.weight, self.bias.as_ref(), [s, s], [p, p], [q, q], 1, [1, 1])
        } else {
            xs.conv2d(&self.weight, self.bias.as_ref(), [s, s], [p, p], [1, 1], 1)
        };
        let mut y = activate(&y, self.spec.activation);
        if self.spec.flatten {
            y = y.flatten(1, -1);
        }
        match &self.dropout {
            Some(d) => d.apply(&y, train),
            None => Ok(y),
        }
    }

    /// Draws as [`ConvSpec::draw`] says, then turns the book's `(C, O, k, k)` kernel into PyTorch's
    /// layout with the from-scratch engine's own conversion ([`Layout`]).
    fn reinitialize(&self, rng: &mut RandomState) {
        let draw = self.spec.draw(rng);
        // The draw is `(C, O, k, k)`: a transposed convolution's own layout, a convolution's swapped.
        let layout = if self.spec.transposed { Layout::Canonical } else { Layout::SwapAxes01 };
        set_values(&self.weight, &layout.to_canonical(&draw.kernel.into_dyn()));
        if let (Some(b), Some(values)) = (&self.bias, draw.bias) {
            set_values(b, &values.into_dyn());
        }
        if let (Some(d), Some(seed)) = (&self.dropout, draw.dropout_seed) {
            d.reseed(seed);
        }
    }

    fn dropouts(&self) -> Vec<(String, &Dropout)> {
        self.dropout.iter().map(|d| (String::new(), d)).collect()
    }
}

module_by_checked_forward!(Conv2D);
