//! Conversions between `ndarray` arrays and `tch` tensors: the one place where data crosses engines.

use ndarray::{ArrayD, IxDyn};
use scratch::Float;
use tch::Tensor;

/// A float type both engines share (`f32`, `f64`); its libtorch kind is `Element::KIND`.
pub trait TorchFloat: Float + tch::kind::Element {}

impl TorchFloat for f32 {}

impl TorchFloat for f64 {}

/// A CPU tensor with the same shape and values as `array`.
pub fn to_tensor<F: TorchFloat, D: ndarray::Dimension>(array: &ndarray::Array<F, D>) -> Tensor {
    let standard = array.as_standard_layout();
    let shape: Vec<i64> = array.shape().iter().map(|&d| d as i64).collect();
    Tensor::from_slice(standard.as_slice().expect("standard layout")).reshape(shape.as_slice())
}

/// The values of `tensor` (on any device, of any float kind) as an array of `F`.
pub fn to_array<F: TorchFloat>(tensor: &Tensor) -> ArrayD<F> {
    let t = tensor.detach().to_device(tch::Device::Cpu).to_kind(F::KIND).contiguous();
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let n = shape.iter().product::<usize>();
    let mut data = vec![F::zero(); n];
    t.copy_data(&mut data, n);
    ArrayD::from_shape_vec(IxDyn(&shape), data).expect("the tensor has as many values as its shape")
}

#[cfg(test)]
mod tests {
    use ndarray::{array, Array3};

    use tch::Kind;

    use super::*;

    #[test]
    fn arrays_round_trip_through_tensors() {
        let a = array![[1.0f64, 2.0, 3.0], [4.0, 5.0, 6.0]];
        let t = to_tensor(&a);
        assert_eq!(t.size(), vec![2, 3]);
        assert_eq!(t.kind(), Kind::Double);
        assert_eq!(to_array::<f64>(&t), a.clone().into_dyn());
        // A transposed (non-standard) view and f32.
        let b = Array3::<f32>::from_shape_fn((2, 3, 4), |(i, j, k)| (i * 100 + j * 10 + k) as f32);
        let bt = b.clone().permuted_axes([2, 0, 1]);
        assert_eq!(to_array::<f32>(&to_tensor(&bt)), bt.into_dyn());
    }
}
