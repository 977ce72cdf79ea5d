//! A random generator that draws exactly what numpy's legacy `np.random.RandomState` draws.
//!
//! The book seeds numpy (`np.random.seed(20190501)`) and every number it prints depends on the exact
//! stream. [`RandomState`] reproduces it:
//!
//! * the Mersenne Twister MT19937, seeded with `init_genrand` as `np.random.seed(int)` does;
//! * `random_sample`: 53-bit doubles from two 32-bit draws (`(a >> 5, b >> 6)`);
//! * `standard_normal` / `randn` / `normal`: the legacy polar (Marsaglia) method, which makes two normals
//!   from each accepted pair of uniforms and caches the second for the next call;
//! * `randint`, `permutation`, `shuffle`: bounded integers by masked rejection sampling, and the
//!   Fisher-Yates shuffle running from the last element down.
//!
//! Every constructor in the crate that needs randomness takes a `&mut RandomState`: nothing reads a global
//! generator.
//!
//! ```
//! use scratch::rng::RandomState;
//! assert_eq!(RandomState::new(0).standard_normal(), 1.764052345967664);
//! assert_eq!(RandomState::new(0).permutation(10), vec![2, 8, 4, 9, 1, 6, 7, 3, 0, 5]);
//! ```

use ndarray::{Array, Dimension, IntoDimension};
use rayon::prelude::*;

use crate::simd::{dispatch, Simd, WithSimd};
use crate::Float;

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// numpy's legacy `RandomState`: MT19937 plus the legacy sampling algorithms.
#[derive(Clone)]
pub struct RandomState {
    key: [u32; N],
    pos: usize,
    /// The second normal of the last polar-method pair, returned by the next normal draw.
    cached_gauss: Option<f64>,
}

impl std::fmt::Debug for RandomState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RandomState").field("pos", &self.pos).finish_non_exhaustive()
    }
}

impl RandomState {
    /// The generator `np.random.seed(seed)` (or `np.random.RandomState(seed)`) makes.
    pub fn new(seed: u32) -> Self {
        let mut key = [0u32; N];
        key[0] = seed;
        for i in 1..N {
            key[i] = 1_812_433_253u32.wrapping_mul(key[i - 1] ^ (key[i - 1] >> 30)).wrapping_add(i as u32);
        }
        RandomState { key, pos: N, cached_gauss: None }
    }

    /// Regenerates the 624-word state block.
    fn twist(&mut self) {
        let mag01 = |y: u32| if y & 1 == 1 { MATRIX_A } else { 0 };
        for i in 0..N {
            let y = (self.key[i] & UPPER_MASK) | (self.key[(i + 1) % N] & LOWER_MASK);
            self.key[i] = self.key[(i + M) % N] ^ (y >> 1) ^ mag01(y);
        }
        self.pos = 0;
    }

    /// The next raw 32-bit output of MT19937.
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= N {
            self.twist();
        }
        let mut y = self.key[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// The next raw 64-bit output (two 32-bit outputs, high word first), as numpy's `next_uint64`.
    fn next_u64(&mut self) -> u64 {
        (u64::from(self.next_u32()) << 32) | u64::from(self.next_u32())
    }

    /// A uniform double in `[0, 1)` with 53 random bits: `np.random.random_sample()`.
    pub fn random_sample(&mut self) -> f64 {
        let a = f64::from(self.next_u32() >> 5);
        let b = f64::from(self.next_u32() >> 6);
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    /// One standard normal draw, `np.random.standard_normal()`, by the legacy polar method.
    pub fn standard_normal(&mut self) -> f64 {
        if let Some(g) = self.cached_gauss.take() {
            return g;
        }
        loop {
            let x1 = 2.0 * self.random_sample() - 1.0;
            let x2 = 2.0 * self.random_sample() - 1.0;
            let r2 = x1 * x1 + x2 * x2;
            if r2 < 1.0 && r2 != 0.0 {
                let f = (-2.0 * r2.ln() / r2).sqrt();
                self.cached_gauss = Some(f * x1);
                return f * x2;
            }
        }
    }

    /// An array of standard normals in row-major order: `np.random.randn(*shape)`.
    pub fn randn<F: Float, Sh: IntoDimension>(&mut self, shape: Sh) -> Array<F, Sh::Dim> {
        self.normal(0.0, 1.0, shape)
    }

    /// An array of `loc + scale * z` draws in row-major order: `np.random.normal(loc, scale, shape)`.
    pub fn normal<F: Float, Sh: IntoDimension>(&mut self, loc: f64, scale: f64, shape: Sh) -> Array<F, Sh::Dim> {
        let dim = shape.into_dimension();
        let values = (0..dim.size()).map(|_| F::cast(loc + scale * self.standard_normal())).collect();
        Array::from_shape_vec(dim, values).expect("the number of values equals the shape's size")
    }

    /// An array of uniforms in `[0, 1)`: `np.random.random_sample(shape)`.
    pub fn uniform_array<F: Float, Sh: IntoDimension>(&mut self, shape: Sh) -> Array<F, Sh::Dim> {
        let dim = shape.into_dimension();
        let values = (0..dim.size()).map(|_| F::cast(self.random_sample())).collect();
        Array::from_shape_vec(dim, values).expect("the number of values equals the shape's size")
    }

    /// A uniform integer in `[0, max]` (inclusive) by masked rejection: numpy's `random_interval`, used by
    /// `shuffle` and `permutation`.
    fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mask = u64::MAX >> max.leading_zeros();
        if max <= u64::from(u32::MAX) {
            loop {
                let v = u64::from(self.next_u32()) & mask;
                if v <= max {
                    return v;
                }
            }
        }
        loop {
            let v = self.next_u64() & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// A uniform integer in `[low, high)`: `np.random.randint(low, high)` with the default `int64` dtype.
    ///
    /// # Errors
    /// If `low >= high` (numpy raises `ValueError`).
    pub fn randint(&mut self, low: i64, high: i64) -> crate::Result<i64> {
        if low >= high {
            return Err(crate::Error::InvalidArgument(format!("randint: low ({low}) must be below high ({high})")));
        }
        Ok(self.randint_below(low, high))
    }

    /// [`RandomState::randint`] for bounds the caller has checked: `low < high`.
    pub(crate) fn randint_below(&mut self, low: i64, high: i64) -> i64 {
        debug_assert!(low < high);
        let range = (high - 1).wrapping_sub(low) as u64;
        if range == 0 {
            return low;
        }
        let mask = u64::MAX >> range.leading_zeros();
        let draw = if range <= u64::from(u32::MAX) {
            if range == u64::from(u32::MAX) {
                u64::from(self.next_u32())
            } else {
                loop {
                    let v = u64::from(self.next_u32()) & mask;
                    if v <= range {
                        break v;
                    }
                }
            }
        } else if range == u64::MAX {
            self.next_u64()
        } else {
            loop {
                let v = self.next_u64() & mask;
                if v <= range {
                    break v;
                }
            }
        };
        low.wrapping_add(draw as i64)
    }

    /// Shuffles a slice in place: `np.random.shuffle(x)` for a 1-D array (Fisher-Yates from the end).
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        for i in (1..x.len()).rev() {
            let j = self.interval(i as u64) as usize;
            x.swap(i, j);
        }
    }

    /// A random permutation of `0..n`: `np.random.permutation(n)`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        self.shuffle(&mut p);
        p
    }

    /// A 0/1 mask with `P(1) = p`, for dropout: [`RandomState::bernoulli`]'s mask written out.
    pub fn bernoulli_mask<F: Float, D: Dimension>(&mut self, p: f64, shape: D) -> Array<F, D> {
        let mask = self.bernoulli(p);
        let mut out = Array::zeros(shape);
        let values = out.as_slice_mut().expect("a new array is contiguous");
        values.par_chunks_mut(BernoulliMask::CHUNK).enumerate().for_each(|(i, chunk)| {
            mask.fill(i * BernoulliMask::CHUNK, chunk);
        });
        out
    }

    /// A Bernoulli mask with `P(1) = p` over any number of elements, from one draw of this generator
    /// (see [`BernoulliMask`]).
    pub fn bernoulli(&mut self, p: f64) -> BernoulliMask {
        let seed = self.next_u32();
        BernoulliMask { seed, threshold: (p * 4_294_967_296.0).min(4_294_967_295.0) as u32, always: p >= 1.0 }
    }
}

/// A 0/1 mask with `P(1) = p`, defined by one seed for any number of elements: element `i` (in
/// row-major order) is 1 when a 32-bit hash of `i` and the seed falls below `p · 2³²`,
///
/// ```text
/// m[i] = [ fmix32((i · 0x9e3779b9) ⊕ seed) < p · 2³² ]     (always 1 when p ≥ 1)
/// ```
///
/// with `fmix32` MurmurHash3's finaliser (a bijection in which every input bit affects every output
/// bit). Elements are independent of each other's order, so a mask is computed in parallel, with SIMD,
/// for any range of elements, and never has to be stored: dropout recomputes it in its backward pass.
/// This is not numpy's `binomial` algorithm: dropout masks only need the distribution, and both
/// engines draw theirs this way (through [`RandomState::bernoulli_mask`] or
/// [`RandomState::bernoulli`]), so that they drop the same units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BernoulliMask {
    seed: u32,
    threshold: u32,
    always: bool,
}

impl BernoulliMask {
    /// Elements per task when a mask is spread over the cores.
    pub const CHUNK: usize = 1 << 14;

    /// Whether element `index` is 1.
    #[inline(always)]
    pub fn keeps(&self, index: usize) -> bool {
        let bits = fmix32((index as u32).wrapping_mul(0x9e37_79b9) ^ self.seed);
        self.always || bits < self.threshold
    }

    /// Writes elements `offset..offset + out.len()` of the mask, as 0 and 1, into `out`.
    pub fn fill<F: Float>(&self, offset: usize, out: &mut [F]) {
        dispatch(Fill { mask: *self, offset, out });
    }

    /// Multiplies `values`, elements `offset..` of an array, by `scale` where the mask is 1 and by 0
    /// where it is 0: `v ← v · (m ? scale : 0)` (so a dropped NaN stays NaN, as a product with the
    /// mask would).
    pub fn scale<F: Float>(&self, offset: usize, values: &mut [F], scale: F) {
        dispatch(Scale { mask: *self, offset, values, scale });
    }
}

/// [`BernoulliMask::fill`], compiled for each instruction-set level.
struct Fill<'a, F> {
    mask: BernoulliMask,
    offset: usize,
    out: &'a mut [F],
}

impl<F: Float> WithSimd for Fill<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        for (k, m) in self.out.iter_mut().enumerate() {
            *m = if self.mask.keeps(self.offset + k) { F::one() } else { F::zero() };
        }
    }
}

/// [`BernoulliMask::scale`], compiled for each instruction-set level.
struct Scale<'a, F> {
    mask: BernoulliMask,
    offset: usize,
    values: &'a mut [F],
    scale: F,
}

impl<F: Float> WithSimd for Scale<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        for (k, v) in self.values.iter_mut().enumerate() {
            *v *= if self.mask.keeps(self.offset + k) { self.scale } else { F::zero() };
        }
    }
}

/// MurmurHash3's 32-bit finaliser: a bijective mix in which every input bit affects every output bit.
#[inline(always)]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values printed by numpy 1.26 and 2.x (legacy RandomState).

    #[test]
    fn raw_mt19937_stream_matches_the_reference_implementation() {
        // Matsumoto and Nishimura's mt19937ar.c with init_genrand(5489) starts 3499211612, 581869302.
        let mut rng = RandomState::new(5489);
        assert_eq!(rng.next_u32(), 3_499_211_612);
        assert_eq!(rng.next_u32(), 581_869_302);
        // and its 10000th output is 4123659995 (C++11 std::mt19937 requirement).
        let mut rng = RandomState::new(5489);
        let last = (0..10_000).map(|_| rng.next_u32()).last();
        assert_eq!(last, Some(4_123_659_995));
    }

    #[test]
    fn randn_matches_numpy_seed_0() {
        let mut rng = RandomState::new(0);
        let x = rng.randn::<f64, _>(3);
        assert_eq!(x.to_vec(), vec![1.764052345967664, 0.4001572083672233, 0.9787379841057392]);
    }

    #[test]
    fn permutation_matches_numpy_seed_0() {
        let mut rng = RandomState::new(0);
        assert_eq!(rng.permutation(10), vec![2, 8, 4, 9, 1, 6, 7, 3, 0, 5]);
    }

    #[test]
    fn randint_matches_numpy_seed_0() {
        let mut rng = RandomState::new(0);
        let draws: Vec<i64> = (0..5).map(|_| rng.randint(0, 10).unwrap()).collect();
        assert_eq!(draws, vec![5, 0, 3, 3, 7]);
    }

    #[test]
    fn random_sample_matches_numpy_seed_0() {
        let mut rng = RandomState::new(0);
        let x: Vec<f64> = (0..3).map(|_| rng.random_sample()).collect();
        approx::assert_abs_diff_eq!(x[0], 0.5488135039273248, epsilon = 0.0);
        approx::assert_abs_diff_eq!(x[1], 0.7151893663724195, epsilon = 0.0);
        approx::assert_abs_diff_eq!(x[2], 0.6027633760716439, epsilon = 0.0);
    }

    #[test]
    fn chapter_5_randint_draws_match_the_notebook() {
        // np.random.seed(190220); randint(0, 5), randint(0, 3) print 4 and 0; the stream continues with
        // randint(0, 2), randint(0, 7) -> 0, 2 and randint(0, 3) -> 2 (chapter 5 notebook).
        let mut rng = RandomState::new(190_220);
        assert_eq!((rng.randint(0, 5).unwrap(), rng.randint(0, 3).unwrap()), (4, 0));
        assert_eq!((rng.randint(0, 2).unwrap(), rng.randint(0, 7).unwrap()), (0, 2));
        assert_eq!(rng.randint(0, 3).unwrap(), 2);
    }

    #[test]
    fn chapter_5_math_notebook_pooling_grid() {
        // np.random.seed(20190420); np.random.randint(0, 10, (4, 4))
        let mut rng = RandomState::new(20_190_420);
        let grid: Vec<i64> = (0..16).map(|_| rng.randint(0, 10).unwrap()).collect();
        assert_eq!(grid, vec![5, 1, 0, 6, 3, 5, 5, 6, 9, 0, 3, 2, 4, 7, 0, 7]);
    }

    #[test]
    fn normal_caches_the_second_value_of_each_pair() {
        let mut a = RandomState::new(7);
        let mut b = RandomState::new(7);
        let first: Vec<f64> = (0..5).map(|_| a.standard_normal()).collect();
        let arr = b.normal::<f64, _>(2.0, 3.0, 5);
        for (x, y) in first.iter().zip(arr.iter()) {
            assert_eq!(2.0 + 3.0 * x, *y);
        }
    }

    #[test]
    fn bernoulli_masks_have_the_right_rate_and_depend_only_on_the_generator() {
        let mut a = RandomState::new(3);
        let m: ndarray::Array1<f64> = a.bernoulli_mask(0.8, ndarray::Ix1(200_000));
        let rate = m.sum() / 200_000.0;
        assert!((rate - 0.8).abs() < 0.005, "{rate}");
        let mut b = RandomState::new(3);
        assert_eq!(m, b.bernoulli_mask::<f64, _>(0.8, ndarray::Ix1(200_000)));
        assert_eq!(a.next_u32(), b.next_u32(), "one mask takes one draw");
        let ones: ndarray::Array1<f32> = a.bernoulli_mask(1.0, ndarray::Ix1(1000));
        assert_eq!(ones.sum(), 1000.0);
    }

    #[test]
    fn large_ranges_use_64_bit_draws() {
        let mut rng = RandomState::new(1);
        let v = rng.randint(0, 1 << 40).unwrap();
        assert!((0..1 << 40).contains(&v));
        assert_eq!(rng.randint(3, 4).unwrap(), 3);
    }
}
