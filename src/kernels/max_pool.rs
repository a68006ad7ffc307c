//! 2-D max pooling on host slices, forward (keeping every output's argmax) and backward, on
//! every core. burn-flex pools through its 3-D kernel, with bounds checks per window element
//! and i64 indices, and adds the gradients back on one core (8% of a ResNet-18 step with the
//! ImageNet stem). The semantics are burn's: padding is never a candidate, the first maximum
//! of a window in row-major order wins (a later equal value does not replace it, a NaN met
//! first stays), and the gradients reaching one input value are summed in output order.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::linalg::written_by;

/// Geometry: `n` images of `c` planes `h x w`, pooled by a `kernel` window moved by `stride`
/// over the plane padded by `padding` on each side (dilation 1, floor mode), giving `oh x ow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolShape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub oh: usize,
    pub ow: usize,
}

impl PoolShape {
    /// The pooling of `x` `[n, c, h, w]`; `None` where a window could hold padding only
    /// (`padding > kernel / 2`, which burn and PyTorch reject too), a size is zero or the
    /// window is larger than the padded plane.
    pub fn new(
        [n, c, h, w]: [usize; 4],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Option<Self> {
        let out = |size: usize, i: usize| {
            let fits = kernel[i] >= 1 && stride[i] >= 1 && padding[i] <= kernel[i] / 2;
            (fits && size + 2 * padding[i] >= kernel[i])
                .then(|| (size + 2 * padding[i] - kernel[i]) / stride[i] + 1)
        };
        let (oh, ow) = (out(h, 0)?, out(w, 1)?);
        (n * c * h * w > 0).then_some(Self {
            n,
            c,
            h,
            w,
            kernel,
            stride,
            padding,
            oh,
            ow,
        })
    }

    fn planes(&self) -> usize {
        self.n * self.c
    }

    /// The input rows (`axis` 0) or columns (1) inside the window of output index `o`.
    #[inline]
    fn window(&self, o: usize, axis: usize) -> std::ops::Range<usize> {
        let size = [self.h, self.w][axis];
        let start = (o * self.stride[axis]) as isize - self.padding[axis] as isize;
        let end = (start + self.kernel[axis] as isize).min(size as isize) as usize;
        start.max(0) as usize..end
    }
}

/// The pooled values `[n, c, oh, ow]` of `x` `[n, c, h, w]`, and the index inside its plane
/// of the input value each was taken from.
pub fn forward(s: &PoolShape, x: &[f32]) -> (Vec<f32>, Vec<u32>) {
    let (plane_in, plane_out) = (s.h * s.w, s.oh * s.ow);
    assert_eq!(x.len(), s.planes() * plane_in, "max_pool2d input size");
    assert!(u32::try_from(plane_in).is_ok(), "a plane indexable by u32");
    let mut argmax: Vec<u32> = Vec::with_capacity(s.planes() * plane_out);
    let y = written_by(s.planes() * plane_out, |y| {
        y.par_chunks_mut(plane_out)
            .zip(argmax.spare_capacity_mut()[..s.planes() * plane_out].par_chunks_mut(plane_out))
            .zip(x.par_chunks(plane_in))
            .with_min_len(8)
            .for_each(|((y, argmax), plane)| pool_plane(s, plane, y, argmax));
    });
    // SAFETY: `pool_plane` wrote every index of every plane.
    unsafe { argmax.set_len(s.planes() * plane_out) };
    (y, argmax)
}

/// One plane's maxima and their indices.
fn pool_plane(
    s: &PoolShape,
    plane: &[f32],
    y: &mut [MaybeUninit<f32>],
    argmax: &mut [MaybeUninit<u32>],
) {
    for oy in 0..s.oh {
        let rows = s.window(oy, 0);
        for ox in 0..s.ow {
            let columns = s.window(ox, 1);
            let first = rows.start * s.w + columns.start;
            let (mut best, mut at) = (plane[first], first);
            for iy in rows.clone() {
                let row = &plane[iy * s.w..(iy + 1) * s.w];
                for ix in columns.clone() {
                    if row[ix] > best {
                        (best, at) = (row[ix], iy * s.w + ix);
                    }
                }
            }
            y[oy * s.ow + ox].write(best);
            argmax[oy * s.ow + ox].write(at as u32);
        }
    }
}

/// The input's gradient `[n, c, h, w]` for the output's gradient `dy` `[n, c, oh, ow]`.
pub fn backward(s: &PoolShape, argmax: &[u32], dy: &[f32]) -> Vec<f32> {
    let (plane_in, plane_out) = (s.h * s.w, s.oh * s.ow);
    assert_eq!(
        dy.len(),
        s.planes() * plane_out,
        "max_pool2d output gradient size"
    );
    assert_eq!(argmax.len(), dy.len(), "one index per output");
    written_by(s.planes() * plane_in, |dx| {
        dx.par_chunks_mut(plane_in)
            .zip(dy.par_chunks(plane_out).zip(argmax.par_chunks(plane_out)))
            .with_min_len(8)
            .for_each(|(dx, (dy, argmax))| {
                let dx: &mut [f32] = {
                    dx.fill(MaybeUninit::new(0.0));
                    // SAFETY: every value was just written.
                    unsafe { &mut *(dx as *mut [MaybeUninit<f32>] as *mut [f32]) }
                };
                for (&g, &at) in dy.iter().zip(argmax) {
                    dx[at as usize] += g;
                }
            });
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_clip_the_padding_and_shapes_follow_burns_rule() {
        let s = PoolShape::new([1, 1, 32, 31], [3, 3], [2, 2], [1, 1]).unwrap();
        assert_eq!((s.oh, s.ow), (16, 16));
        assert_eq!(s.window(0, 0), 0..2, "row -1 is padding");
        assert_eq!(s.window(15, 1), 29..31, "the last window ends at the edge");
        assert!(PoolShape::new([1, 1, 8, 8], [3, 3], [2, 2], [2, 2]).is_none());
        assert!(PoolShape::new([1, 1, 2, 2], [3, 3], [1, 1], [0, 0]).is_none());
    }

    #[test]
    fn ties_go_to_the_first_maximum_and_gradients_add_up() {
        // One 3x3 plane of ties, pooled 2x2 with stride 1: every window's first value wins.
        let s = PoolShape::new([1, 1, 3, 3], [2, 2], [1, 1], [0, 0]).unwrap();
        let (y, argmax) = forward(&s, &[1.0; 9]);
        assert_eq!(y, vec![1.0; 4]);
        assert_eq!(argmax, vec![0, 1, 3, 4]);
        let dx = backward(&s, &[4, 4, 4, 4], &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(dx[4], 10.0);
        assert_eq!(dx.iter().sum::<f32>(), 10.0);
    }
}
