//! The direct convolution at stride 1: every output row computed in vector registers from a padded
//! copy of the image, without the im2col matrix, whose construction and reading dominate the
//! im2col product for images of few channels (chapter 7's 14-channel layer spent more time writing
//! its 350 × 784 im2col matrix than multiplying it).
//!
//! For an image padded with zeros, `xp: (C, rows, row)` ([`Padded`]), and a kernel
//! `w: (O, C, kh, kw)`:
//!
//! ```text
//! forward:       out[o][y][x]      = Σ_c Σ_i Σ_j w[o][c][i][j] · xp[c][y + i][x + j]     (O, ho, wo)
//! kernel grad:   ∂L/∂w[o][c][i][j] = Σ_y Σ_x ∂L/∂out[o][y][x] · xp[c][y + i][x + j]
//! ```
//!
//! The input gradient is a forward convolution too: of the output gradient, padded by `k − 1 − p`,
//! with the kernel flipped in both spatial axes and its channel axes exchanged (see
//! [`Geometry::full_correlation`](super::Geometry)).
//!
//! Blocking: one register of neighbouring output columns (a tile: 16 `f32` with AVX-512, 8 with
//! AVX2) for each of up to 16 output channels (a block) is summed over every `(c, i, j)`: one load
//! of the tile's inputs and one broadcast weight per channel for each multiply-add. The kernel
//! gradient keeps one register per weight of a block over an image's rows (one load of the gradient
//! per multiply-add, the input's shared by the block) and adds it to per-lane sums ([`LaneSums`]),
//! reduced once at the end. A row of `wo` outputs is `⌈wo / lanes⌉` tiles: in the forward pass the
//! last one overlaps the one before it (computing a few outputs twice, so that every store is a whole
//! register); in the kernel gradient the lanes past `wo` read zeros (the padded buffers are wide
//! enough).
//!
//! The kernels are written with explicit vectors ([`SimdFloat`]) and compiled for each level of
//! [`crate::simd`]; the block size follows the number of registers.

use crate::simd::{load, registers, store, Arch, Simd, SimdFloat, WithSimd};
use crate::Float;

/// The most values in one register (16 `f32` with AVX-512): padded rows are sized for tiles of this.
pub(super) const TILE: usize = 16;

/// The most output channels in a block.
const MAX_BLOCK: usize = 16;

/// Output channels per block at `arch`: one accumulator register each, leaving registers for the
/// inputs and the broadcast weights.
fn block_size(arch: Arch) -> usize {
    (registers(arch).saturating_sub(4)).clamp(1, MAX_BLOCK)
}

/// `n` channels split into blocks of at most `max`, as equal as possible: `(first, size)`.
fn blocks(n: usize, max: usize) -> Vec<(usize, usize)> {
    let count = n.div_ceil(max.max(1)).max(1);
    let (base, extra) = (n / count, n % count);
    let mut first = 0;
    (0..count)
        .map(|b| {
            let size = base + usize::from(b < extra);
            first += size;
            (first - size, size)
        })
        .filter(|&(_, size)| size > 0)
        .collect()
}

/// Where an image lies in a [`Padded`] buffer.
#[derive(Clone, Copy, Debug)]
struct Frame {
    channels: usize,
    /// Rows per channel and values per row.
    rows: usize,
    row: usize,
    /// The image's first row and column.
    top: usize,
    left: usize,
    /// The image's size.
    size: (usize, usize),
}

impl Frame {
    /// The index of buffer row `r` of channel `c`, column `x`.
    #[inline(always)]
    fn at(&self, c: usize, r: usize, x: usize) -> usize {
        (c * self.rows + r) * self.row + x
    }
}

/// One image with a border of zeros, `(channels, rows, row)`: image row `y`, column `x` of channel `c`
/// at `[c][top + y][left + x]`. The border is written once, when the buffer is made; [`Padded::load`]
/// overwrites the interior only.
pub(super) struct Padded<F> {
    data: Vec<F>,
    frame: Frame,
}

impl<F: Float> Padded<F> {
    /// A zero buffer for images of `channels × size` at `(top, left)`, with `rows` rows of `row`
    /// values (at least the image's).
    pub(super) fn new(
        channels: usize,
        size: (usize, usize),
        (top, left): (usize, usize),
        (rows, row): (usize, usize),
    ) -> Self {
        assert!(rows >= top + size.0 && row >= left + size.1, "a padded buffer holds its image");
        let frame = Frame { channels, rows, row, top, left, size };
        Padded { data: vec![F::zero(); channels * rows * row], frame }
    }

    /// Copies the image `x: (channels, h, w)`, row-major, into the interior.
    pub(super) fn load(&mut self, x: &[F]) {
        let f = self.frame;
        let (h, w) = f.size;
        assert_eq!(x.len(), f.channels * h * w, "an image of the buffer's shape");
        for (c, plane) in x.chunks_exact(h * w).enumerate() {
            for (y, src) in plane.chunks_exact(w).enumerate() {
                let start = f.at(c, f.top + y, f.left);
                self.data[start..start + w].copy_from_slice(src);
            }
        }
    }
}

/// A kernel `w: (O, C, kh, kw)` packed for [`forward`] at one instruction-set level: block by block of
/// output channels, each block `[c][i][j][o]`, so that the weights of one `(c, i, j)` are adjacent.
pub(super) struct PackedKernel<F> {
    data: Vec<F>,
    /// First output channel and number of channels of every block, laid out in this order.
    blocks: Vec<(usize, usize)>,
    in_channels: usize,
    kernel: (usize, usize),
    arch: Arch,
}

impl<F: Float> PackedKernel<F> {
    /// Packs the kernel whose weight `w[o][c][i][j]` is `weight(o, c, i, j)`, for the forward pass at
    /// `arch`.
    pub(super) fn new(
        arch: Arch,
        (out_channels, in_channels, kh, kw): (usize, usize, usize, usize),
        weight: impl Fn(usize, usize, usize, usize) -> F,
    ) -> Self {
        let blocks = blocks(out_channels, block_size(arch));
        let mut data = Vec::with_capacity(out_channels * in_channels * kh * kw);
        for &(first, size) in &blocks {
            for c in 0..in_channels {
                for i in 0..kh {
                    for j in 0..kw {
                        data.extend((first..first + size).map(|o| weight(o, c, i, j)));
                    }
                }
            }
        }
        PackedKernel { data, blocks, in_channels, kernel: (kh, kw), arch }
    }

    /// The number of output channels.
    fn out_channels(&self) -> usize {
        self.blocks.last().map_or(0, |&(first, size)| first + size)
    }
}

/// The direct convolution of one padded image: `out: (O, ho, wo)`, row-major, every element written.
/// `xp` must hold `ho + kh − 1` rows of at least `⌈wo / TILE⌉·TILE + kw − 1` values.
pub(super) fn forward<F: Float>(xp: &Padded<F>, kernel: &PackedKernel<F>, (ho, wo): (usize, usize), out: &mut [F]) {
    let (kh, kw) = kernel.kernel;
    let f = xp.frame;
    assert_eq!(f.channels, kernel.in_channels, "the image has the kernel's input channels");
    assert!(f.rows >= ho + kh - 1 && f.row >= wo.div_ceil(TILE) * TILE + kw - 1, "the padded image is large enough");
    assert_eq!(out.len(), kernel.out_channels() * ho * wo, "the output has the kernel's output channels");
    let (blocks, size) = (&kernel.blocks[..], (ho, wo));
    if let (Some(x), Some(w), Some(out)) = (F::as_f32s(&xp.data), F::as_f32s(&kernel.data), F::as_f32s_mut(out)) {
        kernel.arch.dispatch(Forward { x, frame: f, w, blocks, kernel: (kh, kw), size, out });
    } else if let (Some(x), Some(w), Some(out)) = (F::as_f64s(&xp.data), F::as_f64s(&kernel.data), F::as_f64s_mut(out))
    {
        kernel.arch.dispatch(Forward { x, frame: f, w, blocks, kernel: (kh, kw), size, out });
    }
}

/// [`forward`] for one float type, compiled for each level.
struct Forward<'a, T> {
    x: &'a [T],
    frame: Frame,
    w: &'a [T],
    blocks: &'a [(usize, usize)],
    kernel: (usize, usize),
    size: (usize, usize),
    out: &'a mut [T],
}

/// Calls `$f::<T, S, B>(args)` with the const `B` equal to the runtime block size `$b` (1 to 16).
macro_rules! with_block {
    ($b:expr, $f:ident($($arg:expr),*)) => {
        match $b {
            1 => $f::<T, S, 1>($($arg),*),
            2 => $f::<T, S, 2>($($arg),*),
            3 => $f::<T, S, 3>($($arg),*),
            4 => $f::<T, S, 4>($($arg),*),
            5 => $f::<T, S, 5>($($arg),*),
            6 => $f::<T, S, 6>($($arg),*),
            7 => $f::<T, S, 7>($($arg),*),
            8 => $f::<T, S, 8>($($arg),*),
            9 => $f::<T, S, 9>($($arg),*),
            10 => $f::<T, S, 10>($($arg),*),
            11 => $f::<T, S, 11>($($arg),*),
            12 => $f::<T, S, 12>($($arg),*),
            13 => $f::<T, S, 13>($($arg),*),
            14 => $f::<T, S, 14>($($arg),*),
            15 => $f::<T, S, 15>($($arg),*),
            16 => $f::<T, S, 16>($($arg),*),
            b => unreachable!("blocks have 1 to {MAX_BLOCK} channels, not {b}"),
        }
    };
}

impl<T: SimdFloat> WithSimd for Forward<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let (ho, wo) = self.size;
        let (kh, kw) = self.kernel;
        let mut weights = self.w;
        for &(first, size) in self.blocks {
            let (block, rest) = weights.split_at(self.frame.channels * kh * kw * size);
            weights = rest;
            let out = &mut self.out[first * ho * wo..(first + size) * ho * wo];
            with_block!(size, forward_block(simd, self.x, self.frame, block, self.kernel, self.size, out));
        }
    }
}

/// One block of `B` output channels: `out: (B, ho, wo)`, `w: [c][i][j][B]`. Two tiles of a row are
/// computed together where the registers hold both blocks of accumulators: each broadcast weight then
/// serves two multiply-adds.
#[inline(always)]
fn forward_block<T: SimdFloat, S: Simd, const B: usize>(
    simd: S,
    x: &[T],
    f: Frame,
    w: &[T],
    kernel: (usize, usize),
    (ho, wo): (usize, usize),
    out: &mut [T],
) {
    let lanes = T::lanes::<S>();
    let w = &w[..f.channels * kernel.0 * kernel.1 * B];
    // The last tile ends at the row's end, overlapping the one before it, so that every store is a
    // whole register (a row shorter than a register is the exception).
    let starts: Vec<usize> = (0..wo).step_by(lanes).map(|x0| x0.min(wo.saturating_sub(lanes))).collect();
    let pairs = 2 * B <= S::REGISTER_COUNT.saturating_sub(4);
    for y in 0..ho {
        let mut rest = &starts[..];
        while !rest.is_empty() {
            if pairs && rest.len() >= 2 {
                forward_tiles::<T, S, B, 2>(simd, x, f, w, kernel, (y, [rest[0], rest[1]]), (ho, wo), out);
                rest = &rest[2..];
            } else {
                forward_tiles::<T, S, B, 1>(simd, x, f, w, kernel, (y, [rest[0]]), (ho, wo), out);
                rest = &rest[1..];
            }
        }
    }
}

/// `N` tiles of output row `y` starting at columns `x0s`, for a block of `B` channels.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_tiles<T: SimdFloat, S: Simd, const B: usize, const N: usize>(
    simd: S,
    x: &[T],
    f: Frame,
    w: &[T],
    (kh, kw): (usize, usize),
    (y, x0s): (usize, [usize; N]),
    (ho, wo): (usize, usize),
    out: &mut [T],
) {
    let lanes = T::lanes::<S>();
    let mut acc = [[T::splat(simd, T::default()); B]; N];
    for (ci, wr) in w.chunks_exact(kw * B).enumerate() {
        let (c, i) = (ci / kh, ci % kh);
        let src: [&[T]; N] = std::array::from_fn(|n| &x[f.at(c, y + i, x0s[n])..][..kw - 1 + lanes]);
        for (j, wj) in wr.chunks_exact(B).enumerate() {
            let xv: [T::V<S>; N] = std::array::from_fn(|n| load::<T, S>(&src[n][j..j + lanes]));
            for (b, &wv) in wj.iter().enumerate() {
                let wv = T::splat(simd, wv);
                for n in 0..N {
                    acc[n][b] = T::mul_add(simd, wv, xv[n], acc[n][b]);
                }
            }
        }
    }
    for (acc, &x0) in acc.iter().zip(&x0s) {
        let n = lanes.min(wo - x0);
        for (o, a) in acc.iter().enumerate() {
            let dst = &mut out[(o * ho + y) * wo + x0..][..n];
            if n == lanes {
                store::<T, S>(dst, *a);
            } else {
                let mut tile = [T::default(); TILE];
                store::<T, S>(&mut tile[..lanes], *a);
                dst.copy_from_slice(&tile[..n]);
            }
        }
    }
}

/// Per-lane partial sums of a kernel gradient `(O, C, kh, kw)`, [`TILE`] lanes per weight, added to
/// image after image by [`kernel_grad`] and reduced once by [`LaneSums::reduce_into`]; and the output
/// gradient of the current image repacked tile by tile (see [`KernelGrad`]).
pub(super) struct LaneSums<F> {
    lanes: Vec<F>,
    shape: (usize, usize, usize, usize),
    packed: Vec<F>,
}

impl<F: Float> LaneSums<F> {
    /// Zero sums for a kernel of `(O, C, kh, kw)`.
    pub(super) fn new(shape: (usize, usize, usize, usize)) -> Self {
        let (o, c, kh, kw) = shape;
        LaneSums { lanes: vec![F::zero(); o * c * kh * kw * TILE], shape, packed: Vec::new() }
    }

    /// Sets every sum back to zero.
    pub(super) fn clear(&mut self) {
        self.lanes.fill(F::zero());
    }

    /// Adds every weight's lane sum, lanes in order, to `dw: (O, C, kh, kw)`.
    pub(super) fn reduce_into(&self, dw: &mut [F]) {
        assert_eq!(dw.len() * TILE, self.lanes.len(), "a gradient of the kernel's shape");
        for (d, lanes) in dw.iter_mut().zip(self.lanes.chunks_exact(TILE)) {
            *d += lanes.iter().fold(F::zero(), |s, &v| s + v);
        }
    }
}

/// Adds the kernel gradient of one image to `sums`, computed at `arch`: `xp` is the padded input of
/// [`forward`], `gp` the output gradient `(O, ho, wo)` in a padded buffer (at its `top`, `left`) whose
/// rows reach at least `⌈wo / TILE⌉·TILE` columns past `left`, zeros beyond `wo`.
pub(super) fn kernel_grad<F: Float>(arch: Arch, xp: &Padded<F>, gp: &Padded<F>, sums: &mut LaneSums<F>) {
    let (o, c, kh, kw) = sums.shape;
    let (xf, gf) = (xp.frame, gp.frame);
    let (ho, wo) = gf.size;
    assert!(xf.channels == c && gf.channels == o, "the image and the gradient have the kernel's channels");
    assert!(xf.rows >= ho + kh - 1 && xf.row >= wo.div_ceil(TILE) * TILE + kw - 1, "the padded image is large enough");
    assert!(gf.row >= gf.left + wo.div_ceil(TILE) * TILE, "the gradient's rows are padded to whole tiles");
    let shape = sums.shape;
    sums.packed.resize(o * ho * wo.div_ceil(TILE) * TILE, F::zero());
    let LaneSums { lanes, packed, .. } = sums;
    if let (Some(x), Some(g), Some(sums), Some(packed)) =
        (F::as_f32s(&xp.data), F::as_f32s(&gp.data), F::as_f32s_mut(lanes), F::as_f32s_mut(packed))
    {
        arch.dispatch(KernelGrad { x, xf, g, gf, shape, sums, packed });
    } else if let (Some(x), Some(g), Some(sums), Some(packed)) =
        (F::as_f64s(&xp.data), F::as_f64s(&gp.data), F::as_f64s_mut(lanes), F::as_f64s_mut(packed))
    {
        arch.dispatch(KernelGrad { x, xf, g, gf, shape, sums, packed });
    }
}

/// [`kernel_grad`] for one float type, compiled for each level. The gradient is first repacked tile
/// by tile, `packed[y][t][o]` a register of lanes (zeros past `wo`), so that the registers of a block's
/// channels at one tile are adjacent.
struct KernelGrad<'a, T> {
    x: &'a [T],
    xf: Frame,
    g: &'a [T],
    gf: Frame,
    shape: (usize, usize, usize, usize),
    sums: &'a mut [T],
    packed: &'a mut [T],
}

impl<T: SimdFloat> WithSimd for KernelGrad<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let KernelGrad { x, xf, g, gf, shape, sums, packed } = self;
        let lanes = T::lanes::<S>();
        let (ho, wo) = gf.size;
        let (o, tiles) = (shape.0, wo.div_ceil(lanes));
        for (yt, tile) in packed.chunks_exact_mut(o * lanes).take(ho * tiles).enumerate() {
            let (y, t) = (yt / tiles, yt % tiles);
            for (c, v) in tile.chunks_exact_mut(lanes).enumerate() {
                let src = &g[gf.at(c, gf.top + y, gf.left + t * lanes)..][..lanes];
                store::<T, S>(v, load::<T, S>(src));
            }
        }
        let max = (S::REGISTER_COUNT.saturating_sub(4)).clamp(1, MAX_BLOCK);
        for (first, size) in blocks(o, max) {
            with_block!(size, kernel_grad_block(simd, (x, xf), packed, shape, (ho, tiles), first, &mut *sums));
        }
    }
}

/// The lane sums of output channels `first..first + B`, from the padded input `x` and the repacked
/// gradient. Two neighbouring kernel columns are summed together where the registers hold both blocks
/// of accumulators: each gradient load then serves two multiply-adds.
#[inline(always)]
fn kernel_grad_block<T: SimdFloat, S: Simd, const B: usize>(
    simd: S,
    x: (&[T], Frame),
    packed: &[T],
    shape: (usize, usize, usize, usize),
    size: (usize, usize),
    first: usize,
    sums: &mut [T],
) {
    let (_, channels, kh, kw) = shape;
    let pairs = 2 * B <= S::REGISTER_COUNT.saturating_sub(4);
    for c in 0..channels {
        for i in 0..kh {
            let mut j = 0;
            while j < kw {
                if pairs && j + 1 < kw {
                    kernel_grad_taps::<T, S, B, 2>(simd, x, packed, shape, size, (first, c, i, j), sums);
                    j += 2;
                } else {
                    kernel_grad_taps::<T, S, B, 1>(simd, x, packed, shape, size, (first, c, i, j), sums);
                    j += 1;
                }
            }
        }
    }
}

/// The lane sums of kernel columns `j..j + N` of row `i`, input channel `c`, for output channels
/// `first..first + B`.
#[inline(always)]
fn kernel_grad_taps<T: SimdFloat, S: Simd, const B: usize, const N: usize>(
    simd: S,
    (x, xf): (&[T], Frame),
    packed: &[T],
    (o, channels, kh, kw): (usize, usize, usize, usize),
    (ho, tiles): (usize, usize),
    (first, c, i, j): (usize, usize, usize, usize),
    sums: &mut [T],
) {
    let lanes = T::lanes::<S>();
    let x = &x[xf.at(c, i, j)..][..(ho - 1) * xf.row + tiles * lanes + N - 1];
    let mut acc = [[T::splat(simd, T::default()); B]; N];
    for y in 0..ho {
        for t in 0..tiles {
            let at = y * xf.row + t * lanes;
            let xv: [T::V<S>; N] = std::array::from_fn(|n| load::<T, S>(&x[at + n..at + n + lanes]));
            let gs = &packed[((y * tiles + t) * o + first) * lanes..][..B * lanes];
            for (b, gv) in gs.chunks_exact(lanes).enumerate() {
                let gv = load::<T, S>(gv);
                for n in 0..N {
                    acc[n][b] = T::mul_add(simd, gv, xv[n], acc[n][b]);
                }
            }
        }
    }
    for (n, acc) in acc.iter().enumerate() {
        for (b, a) in acc.iter().enumerate() {
            let at = ((((first + b) * channels + c) * kh + i) * kw + j + n) * TILE;
            let slot = &mut sums[at..at + lanes];
            let sum = T::add(simd, load::<T, S>(slot), *a);
            store::<T, S>(slot, sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{s, Array3, Array4};

    use super::*;
    use crate::conv::loops::{conv_2d_multi, param_grad_2d_multi};
    use crate::rng::RandomState;
    use crate::simd::levels;

    /// The loops' "same" convolution of one image at stride 1: `x: (C, h, w)`, book kernel `(C, O, k, k)`.
    fn reference(x: &Array3<f64>, kernel: &Array4<f64>) -> Array3<f64> {
        conv_2d_multi(&x.clone().insert_axis(ndarray::Axis(0)), kernel).index_axis_move(ndarray::Axis(0), 0)
    }

    fn padded<F: Float>(x: &Array3<F>, k: usize, wo: usize) -> Padded<F> {
        let (c, h, w) = x.dim();
        let p = k / 2;
        let mut xp = Padded::new(c, (h, w), (p, p), (h + 2 * p, (wo.div_ceil(TILE) * TILE + k - 1).max(w + 2 * p)));
        xp.load(x.as_standard_layout().as_slice().expect("standard"));
        xp
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn blocks_split_channels_evenly() {
        assert_eq!(blocks(7, 16), vec![(0, 7)]);
        assert_eq!(blocks(7, 6), vec![(0, 4), (4, 3)]);
        assert_eq!(blocks(16, 6), vec![(0, 6), (6, 5), (11, 5)]);
        assert_eq!(blocks(1, 1), vec![(0, 1)]);
        for arch in levels() {
            assert!((1..=MAX_BLOCK).contains(&block_size(arch)));
        }
    }

    /// The forward pass and the kernel gradient against the loops, at every level this processor has,
    /// in f64 and f32, for channel counts that fill one block, several, and a partial one, and widths
    /// on both sides of a tile.
    #[test]
    fn forward_and_kernel_gradient_match_the_loops() {
        let mut rng = RandomState::new(3);
        for arch in levels() {
            for (c, o, k, h, w) in
                [(1, 16, 5, 28, 28), (3, 7, 3, 5, 17), (14, 7, 5, 9, 16), (2, 20, 1, 4, 33), (5, 3, 3, 1, 2)]
            {
                let x: Array3<f64> = rng.randn((c, h, w));
                let kernel: Array4<f64> = rng.randn((c, o, k, k));
                let g: Array3<f64> = rng.randn((o, h, w));
                let expected = reference(&x, &kernel);
                let expected_dw = param_grad_2d_multi(
                    &x.clone().insert_axis(ndarray::Axis(0)),
                    &kernel,
                    &g.clone().insert_axis(ndarray::Axis(0)),
                );
                let label = format!("{arch:?} {c} -> {o}, {k}x{k}, {h}x{w}");

                let packed = PackedKernel::new(arch, (o, c, k, k), |o, c, i, j| kernel[[c, o, i, j]]);
                let mut out = vec![0.0; o * h * w];
                forward(&padded(&x, k, w), &packed, (h, w), &mut out);
                for (got, want) in out.iter().zip(expected.iter()) {
                    assert!(close(*got, *want, 1e-12), "{label}: {got} vs {want}");
                }

                let mut gp = Padded::new(o, (h, w), (0, 0), (h, w.div_ceil(TILE) * TILE));
                gp.load(g.as_slice().expect("standard"));
                let mut sums = LaneSums::new((o, c, k, k));
                kernel_grad(arch, &padded(&x, k, w), &gp, &mut sums);
                let mut dw = vec![0.0; o * c * k * k];
                sums.reduce_into(&mut dw);
                let dw = Array4::from_shape_vec((o, c, k, k), dw).expect("sizes agree");
                for ((o_, c_, i, j), got) in dw.indexed_iter() {
                    let want = expected_dw[[c_, o_, i, j]];
                    assert!(close(*got, want, 1e-12), "{label}, kernel gradient: {got} vs {want}");
                }

                let (x32, k32, g32) = (x.mapv(|v| v as f32), kernel.mapv(|v| v as f32), g.mapv(|v| v as f32));
                let packed = PackedKernel::new(arch, (o, c, k, k), |o, c, i, j| k32[[c, o, i, j]]);
                let mut out = vec![0.0f32; o * h * w];
                forward(&padded(&x32, k, w), &packed, (h, w), &mut out);
                for (got, want) in out.iter().zip(expected.iter()) {
                    assert!(close(f64::from(*got), *want, 1e-4), "{label}, f32: {got} vs {want}");
                }
                let mut gp = Padded::new(o, (h, w), (0, 0), (h, w.div_ceil(TILE) * TILE));
                gp.load(g32.as_slice().expect("standard"));
                let mut sums = LaneSums::new((o, c, k, k));
                kernel_grad(arch, &padded(&x32, k, w), &gp, &mut sums);
                let mut dw = vec![0.0f32; o * c * k * k];
                sums.reduce_into(&mut dw);
                for (n, got) in dw.iter().enumerate() {
                    let (o_, c_, i, j) = (n / (c * k * k), n / (k * k) % c, n / k % k, n % k);
                    let want = expected_dw[[c_, o_, i, j]];
                    assert!(close(f64::from(*got), want, 1e-4), "{label}, f32 kernel gradient: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn padding_a_second_image_leaves_the_border_zero() {
        let mut xp = Padded::new(2, (2, 3), (1, 2), (4, 8));
        let a: Vec<f64> = (1..=12).map(f64::from).collect();
        xp.load(&a);
        xp.load(&a.iter().map(|v| -v).collect::<Vec<_>>());
        let data = Array3::from_shape_vec((2, 4, 8), xp.data.clone()).expect("sizes agree");
        assert_eq!(data.slice(s![0, 1, 2..5]).to_vec(), vec![-1.0, -2.0, -3.0]);
        assert_eq!(data.iter().filter(|v| **v != 0.0).count(), 12);
        assert_eq!(data.slice(s![.., 0, ..]).sum() + data.slice(s![.., 3, ..]).sum(), 0.0);
    }
}
