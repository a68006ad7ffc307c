//! 2-D convolution (groups = 1) on host slices, forward and all three gradients, as per-image
//! im2col + gemm: the image's patches go into one reused buffer, the product is one gemm, and
//! the batch is split across the cores (one gemm per image on one core, no per-tile
//! allocation). The weight gradient is a gemm against the same patches; the input gradient a
//! gemm with the transposed kernel and a col2im scatter. A 1x1 stride-1 unpadded convolution
//! uses the image itself as its patch matrix.

use std::mem::MaybeUninit;
use std::ops::Range;

use rayon::prelude::*;

use super::linalg::{Dst, Operand, Scratch, matmul_threads, written_by};
use crate::host::vectorized;

/// Geometry of one convolution: input `[n, c, h, w]`, kernel `[o, c, kh, kw]`, output
/// `[n, o, oh, ow]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub oh: usize,
    pub ow: usize,
}

impl ConvShape {
    /// The geometry, or `None` where these kernels do not apply (grouped convolutions, a
    /// kernel that does not fit the padded input, zero sizes).
    pub fn new(
        x: [usize; 4],
        weight: [usize; 4],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        groups: usize,
    ) -> Option<Self> {
        let [n, c, h, w] = x;
        let [o, c_w, kh, kw] = weight;
        if groups != 1 || c_w != c || [n, c, h, w, o, kh, kw].contains(&0) {
            return None;
        }
        if stride.contains(&0) || dilation.contains(&0) {
            return None;
        }
        let out = |size: usize, pad: usize, dil: usize, k: usize, s: usize| {
            (size + 2 * pad)
                .checked_sub(dil * (k - 1) + 1)
                .map(|v| v / s + 1)
        };
        let oh = out(h, padding[0], dilation[0], kh, stride[0])?;
        let ow = out(w, padding[1], dilation[1], kw, stride[1])?;
        Some(Self {
            n,
            c,
            h,
            w,
            o,
            kh,
            kw,
            stride,
            padding,
            dilation,
            oh,
            ow,
        })
    }

    /// Rows of the patch matrix: `c * kh * kw`.
    pub fn patch(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Output pixels per channel: `oh * ow`.
    pub fn pixels(&self) -> usize {
        self.oh * self.ow
    }

    /// Elements of one input image: `c * h * w`.
    pub fn image(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Whether the image itself is the patch matrix (1x1, stride 1, no padding).
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == [1, 1] && self.padding == [0, 0]
    }

    /// For output column `ox` and kernel column `kx`, the input column is
    /// `ox * stride + kx * dilation - padding`; this is the range of `ox` where it is inside
    /// the image, and the offset added to `ox * stride`.
    #[inline]
    fn valid_columns(&self, kx: usize) -> (usize, usize, isize) {
        let offset = (kx * self.dilation[1]) as isize - self.padding[1] as isize;
        let s = self.stride[1] as isize;
        let w = self.w as isize;
        // Smallest ox with ox*s + offset >= 0, and first ox with ox*s + offset >= w.
        let first = if offset >= 0 {
            0
        } else {
            ((-offset + s - 1) / s) as usize
        };
        let end = if w - offset <= 0 {
            0
        } else {
            ((w - offset + s - 1) / s) as usize
        };
        let first = first.min(self.ow);
        (first, end.clamp(first, self.ow), offset)
    }

    /// Whether output pixels map to input pixels by one constant shift per kernel tap
    /// (stride 1, output as wide as the input: "same" padding). Then a tap's whole row of
    /// the patch matrix is one contiguous run of the image, apart from the columns and rows
    /// that fall into the padding.
    fn shifted(&self) -> bool {
        self.stride == [1, 1] && self.ow == self.w
    }

    /// The convolution whose forward pass is this one's input gradient, where that is a
    /// plain convolution: stride 1, no dilation, output the input's size ("same" padding).
    fn transposed(&self) -> Option<ConvShape> {
        let same = self.stride == [1, 1]
            && self.dilation == [1, 1]
            && (self.oh, self.ow) == (self.h, self.w)
            && !self.pointwise();
        same.then(|| ConvShape {
            c: self.o,
            h: self.oh,
            w: self.ow,
            o: self.c,
            padding: [self.kh - 1 - self.padding[0], self.kw - 1 - self.padding[1]],
            oh: self.h,
            ow: self.w,
            ..*self
        })
    }

    /// The kernel of [`ConvShape::transposed`]: `[c, o, kh, kw]`, each tap flipped. Copied
    /// in tiles of 16 output channels, so that reads and writes both run along a few
    /// sequential streams (a 512 x 512 x 3 x 3 kernel is 9.4 MB; written one source piece
    /// after the other, each write landed 18 KB after the last).
    fn flipped_kernel(&self, weight: &[f32]) -> Vec<f32> {
        const TILE: usize = 16;
        let taps = self.kh * self.kw;
        written_by(weight.len(), |flipped| {
            for tile in (0..self.o).step_by(TILE) {
                for c in 0..self.c {
                    for o in tile..(tile + TILE).min(self.o) {
                        let src = &weight[(o * self.c + c) * taps..][..taps];
                        let dst = &mut flipped[(c * self.o + o) * taps..][..taps];
                        for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                            d.write(*s);
                        }
                    }
                }
            }
        })
    }

    /// Input row for output row `oy` and kernel row `ky`, if inside the image.
    #[inline]
    fn input_row(&self, oy: usize, ky: usize) -> Option<usize> {
        let y = (oy * self.stride[0] + ky * self.dilation[0]) as isize - self.padding[0] as isize;
        (y >= 0 && (y as usize) < self.h).then_some(y as usize)
    }
}

/// Where one image's block sits in a patch matrix that holds several images side by side:
/// row `r` of the image is `matrix[r * stride + offset..][..pixels]`.
#[derive(Debug, Clone, Copy)]
struct Columns {
    stride: usize,
    offset: usize,
}

impl Columns {
    /// Image `g` of a group of `images`, each `pixels` columns wide.
    fn image(g: usize, images: usize, pixels: usize) -> Self {
        Self {
            stride: images * pixels,
            offset: g * pixels,
        }
    }

    fn row<'a>(&self, matrix: &'a mut [f32], r: usize, pixels: usize) -> &'a mut [f32] {
        &mut matrix[r * self.stride + self.offset..r * self.stride + self.offset + pixels]
    }
}

/// Images per gemm: enough that a product has at least `COLUMNS` columns (a single image of a
/// deep layer has 4 to 64 output pixels, too few for the gemm's microkernels), one where a
/// single image is already that wide.
fn group_size(s: &ConvShape) -> usize {
    const COLUMNS: usize = 256;
    COLUMNS.div_ceil(s.pixels()).clamp(1, s.n)
}

/// Output rows of at most this many pixels have their patch matrices built through
/// [`PixelSources`]. Measured on a 2-core Intel Xeon (the forward convolutions of ResNet-18
/// at 64x64, batch 128): 1.2-2x faster with rows of 2 to 8 pixels (3x3 over 2x2 to 8x8
/// images, strided 3x3 and 1x1 down to them), slower with rows of 16 and 32.
const SHORT_ROWS: usize = 8;

/// For each kernel tap and output pixel, the input pixel it reads in a channel's plane, or
/// [`PixelSources::PADDING`]: the same for every channel and image. For convolutions with
/// short output rows (the deep layers of a ResNet on small images, 2x2 to 8x8 pixels), where
/// im2col's runs and padded pieces are a value or two each (im2col was 40% of the time of
/// the 3x3 512 -> 512 forward convolution on 2x2 images), each patch-matrix value is one
/// lookup in this table instead.
struct PixelSources {
    sources: Vec<u32>,
}

impl PixelSources {
    /// Marks an output pixel whose input pixel lies in the padding.
    const PADDING: u32 = u32::MAX;

    /// The table for `s`, or `None` where its output rows are long enough for im2col's runs.
    fn for_short_rows(s: &ConvShape) -> Option<Self> {
        (s.ow <= SHORT_ROWS).then(|| Self::new(s))
    }

    fn new(s: &ConvShape) -> Self {
        let mut sources = Vec::with_capacity(s.kh * s.kw * s.pixels());
        for ky in 0..s.kh {
            for kx in 0..s.kw {
                let (first, end, offset) = s.valid_columns(kx);
                for oy in 0..s.oh {
                    let y = s.input_row(oy, ky);
                    sources.extend((0..s.ow).map(|ox| match y {
                        Some(y) if (first..end).contains(&ox) => {
                            let x = ((ox * s.stride[1]) as isize + offset) as usize;
                            (y * s.w + x) as u32
                        }
                        _ => Self::PADDING,
                    }));
                }
            }
        }
        Self { sources }
    }
}

/// Writes the patch matrix `[c*kh*kw, oh*ow]` of one image `[c, h, w]` into `col`, through
/// `table` where the convolution has one ([`PixelSources::for_short_rows`]).
#[inline(never)]
fn im2col(s: &ConvShape, x: &[f32], col: &mut [f32], at: Columns, table: Option<&PixelSources>) {
    vectorized(
        #[inline(always)]
        move || match table {
            Some(table) => im2col_through_table(s, x, col, at, table),
            None => im2col_any(s, x, col, at),
        },
    )
}

/// [`im2col`] by table lookups, compiled into each SIMD level's copy.
#[inline(always)]
fn im2col_through_table(
    s: &ConvShape,
    x: &[f32],
    col: &mut [f32],
    at: Columns,
    table: &PixelSources,
) {
    let (pixels, plane, taps) = (s.pixels(), s.h * s.w, s.kh * s.kw);
    for c in 0..s.c {
        let input = &x[c * plane..(c + 1) * plane];
        for (tap, sources) in table.sources.chunks_exact(pixels).enumerate() {
            let row = at.row(col, c * taps + tap, pixels);
            for (value, &source) in row.iter_mut().zip(sources) {
                // `PADDING` is past the end of every plane.
                *value = input.get(source as usize).copied().unwrap_or(0.0);
            }
        }
    }
}

/// [`im2col`]'s loops, compiled into each SIMD level's copy.
#[inline(always)]
fn im2col_any(s: &ConvShape, x: &[f32], col: &mut [f32], at: Columns) {
    let pixels = s.pixels();
    let plane = s.h * s.w;
    for c in 0..s.c {
        let input = &x[c * plane..(c + 1) * plane];
        for ky in 0..s.kh {
            for kx in 0..s.kw {
                let row_index = (c * s.kh + ky) * s.kw + kx;
                let row = at.row(col, row_index, pixels);
                if s.shifted() {
                    shifted_rows(
                        s,
                        ky,
                        kx,
                        #[inline(always)]
                        |piece| match piece {
                            Piece::Run(range, shift) => row[range.clone()].copy_from_slice(
                                &input[(range.start as isize + shift) as usize
                                    ..(range.end as isize + shift) as usize],
                            ),
                            padding => padding.zero(row, s.ow),
                        },
                    );
                    continue;
                }
                let (first, end, offset) = s.valid_columns(kx);
                for oy in 0..s.oh {
                    let out = &mut row[oy * s.ow..(oy + 1) * s.ow];
                    let Some(y) = s.input_row(oy, ky) else {
                        out.fill(0.0);
                        continue;
                    };
                    let src = &input[y * s.w..(y + 1) * s.w];
                    let start = ((first * s.stride[1]) as isize + offset) as usize;
                    gather_strided(&mut out[first..end], &src[start..], s.stride[1]);
                }
                // The padded columns, the same in every row.
                for columns in [0..first, end..s.ow] {
                    Piece::ZeroColumns {
                        columns,
                        rows: 0..s.oh,
                    }
                    .zero(row, s.ow);
                }
            }
        }
    }
}

/// `out[i] = src[i * stride]` for every `i` of `out`. Stride 2 (the downsampling layers and
/// the 7x7 stem) reads pairs and keeps the first of each: no bounds check per element, and
/// the compiler turns it into vector shuffles, where the indexed loop it replaces gathered one
/// float at a time.
#[inline]
fn gather_strided(out: &mut [f32], src: &[f32], stride: usize) {
    let Some(last) = out.len().checked_sub(1) else {
        return;
    };
    match stride {
        1 => out.copy_from_slice(&src[..out.len()]),
        2 => {
            let (body, tail) = out.split_at_mut(last);
            for (o, pair) in body.iter_mut().zip(src[..2 * last].chunks_exact(2)) {
                *o = pair[0];
            }
            tail[0] = src[2 * last];
        }
        _ => {
            for (o, v) in out
                .iter_mut()
                .zip(src[..stride * last + 1].iter().step_by(stride))
            {
                *o = *v;
            }
        }
    }
}

/// `dst[i * stride] += src[i]` for every `i` of `src` (the adjoint of [`gather_strided`]).
#[inline]
fn scatter_add_strided(dst: &mut [f32], src: &[f32], stride: usize) {
    let Some(last) = src.len().checked_sub(1) else {
        return;
    };
    match stride {
        1 => {
            for (d, g) in dst[..src.len()].iter_mut().zip(src) {
                *d += g;
            }
        }
        2 => {
            let (body, tail) = src.split_at(last);
            for (pair, g) in dst[..2 * last].chunks_exact_mut(2).zip(body) {
                pair[0] += g;
            }
            dst[2 * last] += tail[0];
        }
        _ => {
            for (d, g) in dst[..stride * last + 1].iter_mut().step_by(stride).zip(src) {
                *d += g;
            }
        }
    }
}

/// Writes the image `[c, h*w]` channels-last, as `[h*w, c]`: 8x8 blocks transposed in AVX
/// registers where the CPU has AVX (a scalar loop moved one float per load and store: 5.6% of
/// a ResNet-20 step), the ragged edges (fewer than 8 channels or pixels left) one by one.
#[inline(never)]
fn channels_last(s: &ConvShape, x: &[f32], out: &mut [f32]) {
    let (c, plane) = (s.c, s.h * s.w);
    assert!(
        x.len() >= c * plane && out.len() >= c * plane,
        "channels_last sizes"
    );
    let blocks = if block_transpose_available() {
        (c / 8 * 8, plane / 8 * 8)
    } else {
        (0, 0)
    };
    for c0 in (0..blocks.0).step_by(8) {
        for p0 in (0..blocks.1).step_by(8) {
            // SAFETY: AVX is available (checked above); the block's rows `c0..c0 + 8` of
            // `x` and `p0..p0 + 8` of `out` are inside the slices (asserted sizes, and
            // `c0 + 8 <= c`, `p0 + 8 <= plane`).
            unsafe {
                transpose_8x8(
                    x.as_ptr().add(c0 * plane + p0),
                    plane,
                    out.as_mut_ptr().add(p0 * c + c0),
                    c,
                )
            };
        }
    }
    // The edges: channels from `blocks.0` for every pixel, pixels from `blocks.1` for the
    // channels below it.
    for ch in 0..c {
        let first = if ch < blocks.0 { blocks.1 } else { 0 };
        let src = &x[ch * plane..(ch + 1) * plane];
        for p in first..plane {
            out[p * c + ch] = src[p];
        }
    }
}

/// Whether [`transpose_8x8`] can run on this CPU.
fn block_transpose_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Transposes the 8x8 block whose rows start at `src + i * src_stride` into the rows
/// `dst + j * dst_stride` (the classic unpack / shuffle / lane-permute sequence).
///
/// # Safety
/// AVX must be available, and the 8 rows of 8 floats at both places must be valid.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_8x8(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
    use std::arch::x86_64::*;
    // SAFETY: the caller guarantees 8 valid rows of 8 floats at `src` and at `dst`.
    unsafe {
        let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * src_stride)));
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let rows = [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ];
        for (j, row) in rows.into_iter().enumerate() {
            _mm256_storeu_ps(dst.add(j * dst_stride), row);
        }
    }
}

/// Never called: [`block_transpose_available`] is false off x86-64.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn transpose_8x8(_: *const f32, _: usize, _: *mut f32, _: usize) {
    unreachable!("no block transpose off x86-64")
}

/// Writes the transposed patch matrix `[oh*ow, kh*kw*c]` of one channels-last image
/// `[h*w, c]` into `col_t`: one contiguous patch per output pixel, ordered (ky, kx, c) so that
/// each of its `kh*kw` pieces is one copy of `c` floats. The weight gradient's gemm runs
/// 1.5-4x faster against this layout than against [`im2col`]'s (measured with the gemm crate
/// on the ResNet-20 shapes: a small `o x patch` output with a long reduction over pixels).
#[inline(never)]
fn im2col_transposed(s: &ConvShape, x_last: &[f32], col_t: &mut [f32]) {
    vectorized(
        #[inline(always)]
        move || im2col_transposed_any(s, x_last, col_t),
    )
}

/// [`im2col_transposed`]'s loops, compiled into each SIMD level's copy.
#[inline(always)]
fn im2col_transposed_any(s: &ConvShape, x_last: &[f32], col_t: &mut [f32]) {
    let (patch, c) = (s.patch(), s.c);
    for oy in 0..s.oh {
        for ox in 0..s.ow {
            let row = &mut col_t[(oy * s.ow + ox) * patch..(oy * s.ow + ox + 1) * patch];
            let x0 = (ox * s.stride[1]) as isize - s.padding[1] as isize;
            // Whether every kernel column of this pixel is inside the image and adjacent
            // (then a kernel row is one run of `kw * c` values).
            let inside = s.dilation[1] == 1 && x0 >= 0 && x0 as usize + s.kw <= s.w;
            for ky in 0..s.kh {
                let y = s.input_row(oy, ky);
                if let (true, Some(y)) = (inside, y) {
                    let at = (y * s.w + x0 as usize) * c;
                    copy_piece(
                        &mut row[ky * s.kw * c..(ky + 1) * s.kw * c],
                        &x_last[at..at + s.kw * c],
                    );
                    continue;
                }
                for kx in 0..s.kw {
                    let piece = &mut row[(ky * s.kw + kx) * c..(ky * s.kw + kx + 1) * c];
                    let ix = x0 + (kx * s.dilation[1]) as isize;
                    match y {
                        Some(y) if ix >= 0 && (ix as usize) < s.w => {
                            let at = (y * s.w + ix as usize) * c;
                            copy_piece(piece, &x_last[at..at + c]);
                        }
                        _ => piece.fill(0.0),
                    }
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)`. The pieces of a transposed patch are short (`c` or `kw * c`
/// floats, 48 for a 3x3 kernel over 16 channels): the common lengths are copied with a
/// constant size, which the compiler writes as a few vector moves, where a `memmove` call per
/// piece cost more than the copy itself.
#[inline(always)]
fn copy_piece(dst: &mut [f32], src: &[f32]) {
    #[inline(always)]
    fn fixed<const N: usize>(dst: &mut [f32], src: &[f32]) {
        let dst: &mut [f32; N] = dst.try_into().expect("a piece of N floats");
        *dst = *<&[f32; N]>::try_from(src).expect("a piece of N floats");
    }
    match dst.len() {
        16 => fixed::<16>(dst, src),
        32 => fixed::<32>(dst, src),
        48 => fixed::<48>(dst, src),
        64 => fixed::<64>(dst, src),
        96 => fixed::<96>(dst, src),
        128 => fixed::<128>(dst, src),
        192 => fixed::<192>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}

/// One piece of a shifted patch row, in the order [`shifted_rows`] visits them.
enum Piece {
    /// Output pixels `range` read input pixels `range + shift`.
    Run(Range<usize>, isize),
    /// Output pixels `range` fall into the padding (whole rows above or below the image).
    Zeros(Range<usize>),
    /// Columns `columns` of output rows `rows` fall into the padding.
    ZeroColumns {
        columns: Range<usize>,
        rows: Range<usize>,
    },
}

impl Piece {
    /// Zeroes the padding this piece names in the patch row `row` (nothing for a run). A
    /// padded column is one or two values per output row: they are written column by column,
    /// one store each, where a fill per row and column was a `memset` call for one float
    /// (4-5% of a ResNet-20 step).
    #[inline(always)]
    fn zero(&self, row: &mut [f32], ow: usize) {
        match self {
            Piece::Run(..) => {}
            Piece::Zeros(range) => row[range.clone()].fill(0.0),
            Piece::ZeroColumns { columns, rows } => {
                for x in columns.clone() {
                    for oy in rows.clone() {
                        row[oy * ow + x] = 0.0;
                    }
                }
            }
        }
    }
}

/// For a [`ConvShape::shifted`] convolution and kernel tap (`ky`, `kx`), visits
/// the run of output pixels whose input pixel is `pixel + shift` (the image rows inside it),
/// then every piece of output pixels that falls into the padding: rows outside the image, and
/// the columns `[0, first)` and `[end, ow)` of the rows inside it (the run was visited first,
/// so these overwrite the values it wrapped around from neighbouring rows).
#[inline(always)]
fn shifted_rows(s: &ConvShape, ky: usize, kx: usize, mut visit: impl FnMut(Piece)) {
    let (first, end, offset) = s.valid_columns(kx);
    // Output rows whose input row `oy + ky * dilation - padding` is inside the image.
    let reach = (ky * s.dilation[0]) as isize - s.padding[0] as isize;
    let top = (-reach).max(0) as usize;
    let bottom = (s.h as isize - 1 - reach).min(s.oh as isize - 1);
    if bottom < top as isize {
        visit(Piece::Zeros(0..s.oh * s.ow));
        return;
    }
    let rows = top..bottom as usize + 1;
    let shift = reach * s.w as isize + offset;
    // Clip the run to input indices inside the image (the wrapped columns at its two ends
    // can point just outside it).
    let lo = (top * s.ow).max((-shift).max(0) as usize);
    let hi = (rows.end * s.ow).min(((s.h * s.w) as isize - shift).max(0) as usize);
    if lo < hi {
        visit(Piece::Run(lo..hi, shift));
    }
    visit(Piece::Zeros(0..lo));
    visit(Piece::Zeros(hi..s.oh * s.ow));
    visit(Piece::ZeroColumns {
        columns: 0..first,
        rows: rows.clone(),
    });
    visit(Piece::ZeroColumns {
        columns: end..s.ow,
        rows,
    });
}

/// Adds the patch-matrix gradient `col` of one image into its input gradient `dx`.
#[inline(never)]
fn col2im(s: &ConvShape, col: &mut [f32], at: Columns, dx: &mut [f32]) {
    vectorized(
        #[inline(always)]
        move || col2im_any(s, col, at, dx),
    )
}

/// [`col2im`]'s loops, compiled into each SIMD level's copy.
#[inline(always)]
fn col2im_any(s: &ConvShape, col: &mut [f32], at: Columns, dx: &mut [f32]) {
    let pixels = s.pixels();
    let plane = s.h * s.w;
    for c in 0..s.c {
        let grad = &mut dx[c * plane..(c + 1) * plane];
        for ky in 0..s.kh {
            for kx in 0..s.kw {
                let row_index = (c * s.kh + ky) * s.kw + kx;
                if s.shifted() {
                    // Padding entries first (they must not wrap into neighbouring rows),
                    // then the run as one vector add.
                    let row = at.row(col, row_index, pixels);
                    let mut run = None;
                    shifted_rows(
                        s,
                        ky,
                        kx,
                        #[inline(always)]
                        |piece| match piece {
                            Piece::Run(range, shift) => run = Some((range, shift)),
                            padding => padding.zero(row, s.ow),
                        },
                    );
                    if let Some((range, shift)) = run {
                        let start = (range.start as isize + shift) as usize;
                        let dst = &mut grad[start..start + range.len()];
                        for (d, g) in dst.iter_mut().zip(&row[range]) {
                            *d += g;
                        }
                    }
                    continue;
                }
                let row = &*at.row(col, row_index, pixels);
                let (first, end, offset) = s.valid_columns(kx);
                for oy in 0..s.oh {
                    let Some(y) = s.input_row(oy, ky) else {
                        continue;
                    };
                    let src = &row[oy * s.ow..(oy + 1) * s.ow];
                    let dst = &mut grad[y * s.w..(y + 1) * s.w];
                    let start = ((first * s.stride[1]) as isize + offset) as usize;
                    scatter_add_strided(&mut dst[start..], &src[first..end], s.stride[1]);
                }
            }
        }
    }
}

/// Threads for one gemm: the images already keep every core busy unless there are fewer
/// images than cores.
fn gemm_threads(images: usize) -> gemm::Parallelism {
    if images >= rayon::current_num_threads() {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(0)
    }
}

/// The output `[n, o, oh, ow]` of `x` `[n, c, h, w]` with `weight` `[o, c, kh, kw]` and an
/// optional `bias` `[o]`.
pub fn forward(s: &ConvShape, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (pixels, patch) = (s.pixels(), s.patch());
    assert_eq!(x.len(), s.n * s.image(), "conv2d input size");
    assert_eq!(weight.len(), s.o * patch, "conv2d kernel size");
    let group = group_size(s);
    let threads = gemm_threads(s.n.div_ceil(group));
    let direct = group == 1 && s.pointwise();
    // A direct image is its own patch matrix: no table to build.
    let table = if direct {
        None
    } else {
        PixelSources::for_short_rows(s)
    };
    written_by(s.n * s.o * pixels, |out| {
        out.par_chunks_mut(group * s.o * pixels)
            .zip(x.par_chunks(group * s.image()))
            .for_each_init(
                || {
                    let col = Scratch::new(if direct { 0 } else { patch * group * pixels });
                    let wide = Scratch::new(if group > 1 { s.o * group * pixels } else { 0 });
                    (col, wide)
                },
                |(col, wide), (y, images)| {
                    let count = images.len() / s.image();
                    let columns = count * pixels;
                    let patches = if direct {
                        images
                    } else {
                        for (g, image) in images.chunks(s.image()).enumerate() {
                            im2col(
                                s,
                                image,
                                col,
                                Columns::image(g, count, pixels),
                                table.as_ref(),
                            );
                        }
                        &col[..patch * columns]
                    };
                    let lhs = Operand::rows(weight, patch);
                    let rhs = Operand::rows(patches, columns);
                    let y: &mut [f32] = if group == 1 {
                        matmul_threads([s.o, columns, patch], Dst::Write(y), lhs, rhs, threads);
                        // SAFETY: the gemm above wrote all `o * pixels` values of `y`.
                        unsafe { &mut *(y as *mut [MaybeUninit<f32>] as *mut [f32]) }
                    } else {
                        // One product for the group, `[o, images * pixels]`, then each image's
                        // block to its place in `[images, o, pixels]`.
                        let wide = &mut wide[..s.o * columns];
                        matmul_threads(
                            [s.o, columns, patch],
                            Dst::Overwrite(wide),
                            lhs,
                            rhs,
                            threads,
                        );
                        for (g, image_out) in y.chunks_mut(s.o * pixels).enumerate() {
                            for (o, row) in image_out.chunks_mut(pixels).enumerate() {
                                let src =
                                    &wide[o * columns + g * pixels..o * columns + (g + 1) * pixels];
                                for (d, v) in row.iter_mut().zip(src) {
                                    d.write(*v);
                                }
                            }
                        }
                        // SAFETY: the loop above wrote every value of `y`.
                        unsafe { &mut *(y as *mut [MaybeUninit<f32>] as *mut [f32]) }
                    };
                    if let Some(bias) = bias {
                        for image_out in y.chunks_mut(s.o * pixels) {
                            for (row, b) in image_out.chunks_mut(pixels).zip(bias) {
                                row.iter_mut().for_each(|v| *v += b);
                            }
                        }
                    }
                },
            );
    })
}

/// Which gradients to compute.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    pub input: bool,
    pub weight: bool,
    pub bias: bool,
}

/// Gradients of a convolution: input `[n, c, h, w]`, kernel `[o, c, kh, kw]`, bias `[o]`.
#[derive(Debug, Default)]
pub struct ConvGrads {
    pub input: Option<Vec<f32>>,
    pub weight: Option<Vec<f32>>,
    pub bias: Option<Vec<f32>>,
}

/// The gradients of the convolution of `x` with `weight` given the output's gradient `dy`
/// `[n, o, oh, ow]`. Images are split into one contiguous group per core; each group
/// accumulates its own kernel gradient, summed in group order (deterministic for a given
/// thread count).
pub fn backward(s: &ConvShape, x: &[f32], weight: &[f32], dy: &[f32], wanted: Wanted) -> ConvGrads {
    let (pixels, patch) = (s.pixels(), s.patch());
    assert_eq!(dy.len(), s.n * s.o * pixels, "conv2d output gradient size");
    // A "same" stride-1 convolution's input gradient is the forward convolution of `dy` with
    // the flipped, transposed kernel: patches copied in shifted runs and one gemm per image,
    // instead of a gemm into a patch-matrix gradient and its col2im scatter.
    let flipped_input_grad = match s.transposed() {
        Some(t) if wanted.input => Some(forward(&t, dy, &s.flipped_kernel(weight), None)),
        _ => None,
    };
    let wanted = Wanted {
        input: wanted.input && flipped_input_grad.is_none(),
        ..wanted
    };
    let threads = gemm_threads(s.n);
    let per_group = s.n.div_ceil(rayon::current_num_threads().clamp(1, s.n));
    let mut dx = wanted.input.then(|| vec![0.0f32; s.n * s.image()]);
    let groups: Vec<(usize, Option<&mut [f32]>)> = match dx.as_mut() {
        Some(dx) => dx
            .chunks_mut(per_group * s.image())
            .enumerate()
            .map(|(g, chunk)| (g * per_group, Some(chunk)))
            .collect(),
        None => (0..s.n)
            .step_by(per_group)
            .map(|first| (first, None))
            .collect(),
    };
    let partial_weights: Vec<Vec<f32>> = groups
        .into_par_iter()
        .map(|(first, mut dx_group)| {
            let last = (first + per_group).min(s.n);
            let group = group_size(s).min(last - first);
            // One image whose own buffers are the gemm operands (no copies).
            let direct = group == 1 && s.pointwise();
            // This group's kernel gradient: written by its first product, then added to.
            let mut dw: Option<Vec<f32>> = None;
            // Patch matrices of the input (weight gradient) and of its gradient (input gradient).
            let (patches, patch_grads) = (wanted.weight && !direct, wanted.input && !direct);
            let mut col = Scratch::new(if patches { group * pixels * patch } else { 0 });
            let mut x_last = Scratch::new(if patches { s.image() } else { 0 });
            let mut dcol = Scratch::new(if patch_grads {
                patch * group * pixels
            } else {
                0
            });
            let mut dy_wide = Scratch::new(if group > 1 { s.o * group * pixels } else { 0 });
            let mut start = first;
            while start < last {
                let count = group.min(last - start);
                let columns = count * pixels;
                let dy_block = &dy[start * s.o * pixels..(start + count) * s.o * pixels];
                // The group's output gradient as one `[o, count * pixels]` matrix.
                let dy_op = if count == 1 {
                    Operand::rows(dy_block, pixels)
                } else {
                    for (g, image) in dy_block.chunks(s.o * pixels).enumerate() {
                        for (o, row) in image.chunks(pixels).enumerate() {
                            dy_wide[o * columns + g * pixels..o * columns + (g + 1) * pixels]
                                .copy_from_slice(row);
                        }
                    }
                    Operand::rows(&dy_wide[..s.o * columns], columns)
                };
                if wanted.weight {
                    // dw += dy [o, columns] x patches^T [columns, patch], with the patch in
                    // (ky, kx, c) order (reordered after the sum).
                    let patches_t = if direct {
                        Operand::transposed(&x[start * s.image()..(start + 1) * s.image()], pixels)
                    } else {
                        for g in 0..count {
                            let image = &x[(start + g) * s.image()..(start + g + 1) * s.image()];
                            channels_last(s, image, &mut x_last);
                            im2col_transposed(
                                s,
                                &x_last,
                                &mut col[g * pixels * patch..(g + 1) * pixels * patch],
                            );
                        }
                        Operand::rows(&col[..columns * patch], patch)
                    };
                    let dims = [s.o, patch, columns];
                    match dw.as_mut() {
                        Some(dw) => matmul_threads(dims, Dst::Add(dw), dy_op, patches_t, threads),
                        None => {
                            dw = Some(written_by(s.o * patch, |dst| {
                                matmul_threads(dims, Dst::Write(dst), dy_op, patches_t, threads)
                            }))
                        }
                    }
                }
                if let Some(dx_group) = dx_group.as_deref_mut() {
                    let local = start - first;
                    let dx_block = &mut dx_group[local * s.image()..(local + count) * s.image()];
                    let w_t = Operand::transposed(weight, patch);
                    // A direct image's patch-matrix gradient is its input gradient.
                    let target = if direct {
                        &mut *dx_block
                    } else {
                        &mut dcol[..patch * columns]
                    };
                    let dst = Dst::Overwrite(target);
                    matmul_threads([patch, columns, s.o], dst, w_t, dy_op, threads);
                    if !direct {
                        let dcol = &mut dcol[..patch * columns];
                        for (g, dx_g) in dx_block.chunks_mut(s.image()).enumerate() {
                            col2im(s, dcol, Columns::image(g, count, pixels), dx_g);
                        }
                    }
                }
                start += count;
            }
            dw.unwrap_or_default()
        })
        .collect();
    let weight_grad = wanted.weight.then(|| {
        // The first group's sum is the accumulator (every group holds at least one image).
        let mut partials = partial_weights.into_iter();
        let mut total = partials.next().expect("at least one image");
        for partial in partials {
            total.iter_mut().zip(&partial).for_each(|(t, p)| *t += p);
        }
        // [o, kh, kw, c] -> [o, c, kh, kw] (the same order for 1x1 kernels), written in order.
        let taps = s.kh * s.kw;
        if taps == 1 {
            return total;
        }
        written_by(total.len(), |ordered| {
            for (dst, src) in ordered.chunks_mut(patch).zip(total.chunks(patch)) {
                for (c, out) in dst.chunks_exact_mut(taps).enumerate() {
                    for (tap, d) in out.iter_mut().enumerate() {
                        d.write(src[tap * s.c + c]);
                    }
                }
            }
        })
    });
    let bias_grad = wanted.bias.then(|| {
        let mut total = vec![0.0f32; s.o];
        for image in dy.chunks(s.o * pixels) {
            for (t, row) in total.iter_mut().zip(image.chunks(pixels)) {
                *t += row.iter().sum::<f32>();
            }
        }
        total
    });
    ConvGrads {
        input: flipped_input_grad.or(dx),
        weight: weight_grad,
        bias: bias_grad,
    }
}

#[cfg(test)]
mod tests {
    use super::{
        Columns, ConvShape, PixelSources, channels_last, gather_strided, im2col_any,
        im2col_through_table, scatter_add_strided,
    };

    #[test]
    fn patch_matrix_through_the_table_is_im2cols_bit_for_bit() {
        // (input [c, h, w], kernel side [kh, kw], stride, padding, dilation): the short rows
        // of a ResNet's deep layers, the stem's 7x7, rectangles, dilation, a kernel as large
        // as the padded input, and rows longer than `SHORT_ROWS`.
        for (input, kernel, stride, padding, dilation) in [
            ([3, 2, 2], [3, 3], [1, 1], [1, 1], [1, 1]),
            ([2, 4, 4], [3, 3], [2, 2], [1, 1], [1, 1]),
            ([2, 8, 8], [1, 1], [2, 2], [0, 0], [1, 1]),
            ([1, 7, 5], [7, 7], [2, 2], [3, 3], [1, 1]),
            ([2, 5, 3], [3, 2], [1, 2], [0, 1], [1, 1]),
            ([2, 6, 6], [3, 3], [1, 1], [2, 2], [2, 2]),
            ([1, 3, 3], [5, 5], [1, 1], [1, 1], [1, 1]),
            ([2, 17, 19], [3, 3], [1, 1], [1, 1], [1, 1]),
        ] {
            let [c, h, w] = input;
            let s = ConvShape::new(
                [1, c, h, w],
                [1, c, kernel[0], kernel[1]],
                stride,
                padding,
                dilation,
                1,
            )
            .expect("a valid shape");
            let x: Vec<f32> = (0..c * h * w).map(|i| i as f32 - 7.5).collect();
            let at = Columns::image(0, 1, s.pixels());
            let mut runs = vec![f32::NAN; s.patch() * s.pixels()];
            let mut looked_up = vec![f32::NAN; s.patch() * s.pixels()];
            im2col_any(&s, &x, &mut runs, at);
            im2col_through_table(&s, &x, &mut looked_up, at, &PixelSources::new(&s));
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&looked_up), bits(&runs), "{s:?}");
        }
    }

    #[test]
    fn channels_last_matches_the_indexed_transpose() {
        // Channel and pixel counts on both sides of the 8x8 blocks (3 is the stem's input,
        // 49 a 7x7 plane), every value distinct.
        for (c, h, w) in [
            (3, 7, 7),
            (8, 2, 4),
            (16, 4, 4),
            (13, 5, 3),
            (24, 9, 9),
            (1, 1, 1),
        ] {
            let s = ConvShape::new([1, c, h, w], [1, c, 1, 1], [1, 1], [0, 0], [1, 1], 1)
                .expect("a valid shape");
            let plane = h * w;
            let x: Vec<f32> = (0..c * plane).map(|i| i as f32 + 0.25).collect();
            let mut out = vec![f32::NAN; c * plane];
            channels_last(&s, &x, &mut out);
            for ch in 0..c {
                for p in 0..plane {
                    assert_eq!(
                        out[p * c + ch],
                        x[ch * plane + p],
                        "{c}x{h}x{w} at {ch}, {p}"
                    );
                }
            }
        }
    }

    #[test]
    fn strided_gather_and_scatter_match_the_indexed_loops() {
        for stride in 1..=3 {
            for len in 0..6 {
                // The shortest source the row reads: its last element is `(len - 1) * stride`.
                let src_len = (len.max(1) - 1) * stride + 1 + stride / 2;
                let src: Vec<f32> = (0..src_len).map(|i| i as f32 * 0.5 - 1.0).collect();
                let mut out = vec![f32::NAN; len];
                gather_strided(&mut out, &src, stride);
                let expected: Vec<f32> = (0..len).map(|i| src[i * stride]).collect();
                assert_eq!(out, expected, "gather, stride {stride}, {len} outputs");

                let grads: Vec<f32> = (0..len).map(|i| 1.0 + i as f32).collect();
                let mut dst = vec![0.25_f32; src_len];
                scatter_add_strided(&mut dst, &grads, stride);
                let mut expected = vec![0.25_f32; src_len];
                for (i, g) in grads.iter().enumerate() {
                    expected[i * stride] += g;
                }
                assert_eq!(dst, expected, "scatter, stride {stride}, {len} gradients");
            }
        }
    }

    /// Times the stride-2 gather against the indexed loop it replaced, interleaved in one
    /// process (`cargo test --release --lib strided_gather_speed -- --ignored --nocapture`).
    #[test]
    #[ignore = "a timing, not a check"]
    fn strided_gather_speed() {
        let (w, ow, rows) = (64usize, 32usize, 147 * 32 * 64);
        let src: Vec<f32> = (0..w).map(|i| i as f32).collect();
        let mut out = vec![0.0f32; ow];
        let time = |f: &mut dyn FnMut()| {
            let start = std::time::Instant::now();
            for _ in 0..rows {
                f();
            }
            start.elapsed().as_secs_f64()
        };
        let (mut old, mut new) = (Vec::new(), Vec::new());
        for _ in 0..7 {
            old.push(time(&mut || {
                let src = std::hint::black_box(&src[..]);
                for (ox, o) in out.iter_mut().enumerate().take(ow - 1).skip(1) {
                    *o = src[((ox * 2) as isize - 1) as usize];
                }
                std::hint::black_box(&out);
            }));
            new.push(time(&mut || {
                let src = std::hint::black_box(&src[..]);
                gather_strided(&mut out[1..ow - 1], &src[1..], 2);
                std::hint::black_box(&out);
            }));
        }
        old.sort_by(f64::total_cmp);
        new.sort_by(f64::total_cmp);
        println!(
            "stride-2 rows of {ow}: indexed {:.2} ms, pairs {:.2} ms (median of 7), ratio {:.2}",
            old[3] * 1e3,
            new[3] * 1e3,
            old[3] / new[3]
        );
    }
}
