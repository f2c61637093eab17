//! Sixteen channels at a time: the lane type every Winograd transform works on, its
//! loads and stores, and the 1-D transforms of `variant.rs` applied across a whole tile
//! (or a kernel row) of lanes. Written so that the compiler turns each lane operation into
//! whole-register instructions when inlined into a [`vectorized`](crate::model::kernels::vectorized)
//! loop; this file must not know about images, tilings or buffers of tiles.

// The lane loops index several arrays in step (`out[k][i] = f(a[i], b[i])`); iterator chains
// over zipped arrays would hide the arithmetic they spell out.
#![allow(clippy::needless_range_loop)]

use super::variant::{Line, MAX_PATCH, Variant};

/// Positions of the largest transformed tile: the length of a [`Tile`].
pub(super) const MAX_XI: usize = MAX_PATCH * MAX_PATCH;

/// Channels per vector step of the tile transforms: one AVX-512 register.
pub(super) const L: usize = 16;

/// Up to [`L`] channels of one pixel or transformed tile position.
pub(super) type Lane = [f32; L];

/// `dst[..len] = src[..len]` for `len` ≤ [`L`]: one vector move when whole. The partial
/// copy stays out of line: inlined, the compiler folds both branches into one call to
/// `memcpy` with a variable length, which took a tenth of a Winograd layer's time.
#[inline(always)]
pub(super) fn copy_lane(dst: &mut [f32], src: &[f32], len: usize) {
    if len == L {
        dst[..L].copy_from_slice(&src[..L]);
    } else {
        copy_partial_lane(dst, src, len);
    }
}

#[cold]
#[inline(never)]
fn copy_partial_lane(dst: &mut [f32], src: &[f32], len: usize) {
    dst[..len].copy_from_slice(&src[..len]);
}

#[inline(always)]
pub(super) fn load_into(lane: &mut Lane, src: &[f32], at: usize, len: usize) {
    copy_lane(lane, &src[at..], len);
}

#[inline(always)]
pub(super) fn store(dst: &mut [f32], at: usize, len: usize, lane: &Lane) {
    copy_lane(&mut dst[at..], lane, len);
}

#[inline(always)]
pub(super) fn add_to(dst: &mut [f32], at: usize, len: usize, lane: &Lane) {
    for (d, v) in dst[at..at + len].iter_mut().zip(lane) {
        *d += *v;
    }
}

/// The lanes of one tile: `[PATCH·y + x]` for patch position (y, x) or transformed
/// position ξ; a variant uses the first `XI`.
pub(super) type Tile = [Lane; MAX_XI];

/// `dst[line] = f(src[line])` for each line of lane indices, channel by channel. Source and
/// destination are different arrays so that the compiler can see that no write feeds a
/// later read: that is what lets it make each output lane a few vector operations.
#[inline(always)]
fn pass<V: Variant>(src: &Tile, dst: &mut Tile, lines: &[[usize; MAX_PATCH]], f: impl Fn(Line) -> Line) {
    for idx in lines {
        for i in 0..L {
            let r = f(std::array::from_fn(|k| if k < V::PATCH { src[idx[k]][i] } else { 0.0 }));
            for k in 0..V::PATCH {
                dst[idx[k]][i] = r[k];
            }
        }
    }
}

/// `Bᵀ d B` of a patch `d[PATCH·y + x]`, into `d` as `[PATCH·b + a]`; `e` is scratch.
#[inline(always)]
pub(super) fn input_tile<V: Variant>(d: &mut Tile, e: &mut Tile) {
    pass::<V>(d, e, &V::ROWS[..V::PATCH], V::bt);
    pass::<V>(e, d, &V::COLS[..V::PATCH], V::bt);
}

/// `Aᵀ M A` of a transformed tile `m[PATCH·b + a]`, into `m`: output (r, s) at `[PATCH·r + s]`.
#[inline(always)]
pub(super) fn output_tile<V: Variant>(m: &mut Tile, e: &mut Tile) {
    pass::<V>(m, e, &V::COLS[..V::PATCH], V::at);
    pass::<V>(e, m, &V::ROWS[..V::TILE], V::at);
}

/// `A dY Aᵀ` of a TILE×TILE block placed at `[PATCH·r + s]` (the rest unread), into `d` as
/// `[PATCH·b + a]`.
#[inline(always)]
pub(super) fn output_grad_tile<V: Variant>(d: &mut Tile, e: &mut Tile) {
    pass::<V>(d, e, &V::ROWS[..V::TILE], V::a);
    pass::<V>(e, d, &V::COLS[..V::PATCH], V::a);
}

/// `B dV Bᵀ` of a transformed tile gradient `dv[PATCH·b + a]`, into `dv` as `[PATCH·y + x]`.
#[inline(always)]
pub(super) fn input_grad_tile<V: Variant>(dv: &mut Tile, e: &mut Tile) {
    pass::<V>(dv, e, &V::ROWS[..V::PATCH], V::b);
    pass::<V>(e, dv, &V::COLS[..V::PATCH], V::b);
}

/// `G v` for the three taps of a kernel row or column, lane by lane.
#[inline(always)]
pub(super) fn g_lanes<V: Variant>(v0: &Lane, v1: &Lane, v2: &Lane) -> [Lane; MAX_PATCH] {
    let mut out = [[0f32; L]; MAX_PATCH];
    for i in 0..L {
        let r = V::g([v0[i], v1[i], v2[i]]);
        for k in 0..V::PATCH {
            out[k][i] = r[k];
        }
    }
    out
}

/// `Gᵀ v` for a patch row or column of lanes.
#[inline(always)]
pub(super) fn gt_lanes<V: Variant>(v: [&Lane; MAX_PATCH]) -> [Lane; 3] {
    let mut out = [[0f32; L]; 3];
    for i in 0..L {
        let r = V::gt(std::array::from_fn(|k| if k < V::PATCH { v[k][i] } else { 0.0 }));
        for k in 0..3 {
            out[k][i] = r[k];
        }
    }
    out
}
