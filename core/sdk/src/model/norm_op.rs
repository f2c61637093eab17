//! Training-mode batch normalisation (optionally followed by ReLU) as fused CPU custom ops.
//!
//! candle-nn's batch norm is a dozen whole-tensor elementwise ops forward and about twice
//! that backward, each allocating a fresh activation-sized buffer; on the CPU those
//! allocations and passes cost more than the convolutions. Here the forward is one pass for
//! the statistics plus one for the output, and the backward is one reduction pass plus one
//! pass for the input gradient, using the closed-form gradient of batch norm. These ops are
//! CPU- and f32-only and used in training mode only: `norm.rs` must route everything else
//! to candle-nn. They must not update running statistics; `norm.rs` does that.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::kernels::{LANES, lanes_total, sum_in, sum_sq_dev_in, vectorized, zeroed};

/// A contiguous (N, C, H·W) view of a 4-D storage, or an error for anything else; `norm.rs`
/// makes inputs contiguous first.
fn planes<'a>(s: &'a CpuStorage, l: &Layout) -> Result<(&'a [f32], usize, usize, usize)> {
    let (n, c, h, w) = match *l.dims() {
        [n, c, h, w] => (n, c, h, w),
        ref d => candle_core::bail!("batch norm takes (N, C, H, W) tensors, got {d:?}"),
    };
    let data = s.as_slice::<f32>()?;
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("batch norm op needs a contiguous tensor");
    };
    let data =
        data.get(a..b).ok_or_else(|| candle_core::Error::Msg("batch norm: layout overruns its storage".into()))?;
    Ok((data, n, c, h * w))
}

fn same_dims(a: &Layout, b: &Layout, what: &str) -> Result<()> {
    if a.dims() != b.dims() {
        candle_core::bail!("batch norm: {what} has shape {:?}, the input {:?}", b.dims(), a.dims());
    }
    Ok(())
}

/// The (x, dy, y) planes a reduction reads, all (N, C, H·W); a reduction of `x` alone
/// passes it three times.
type Inputs<'a> = [&'a [f32]; 3];

/// Per channel, Σ over the batch and pixels of two sums of the `inputs` and the channel's
/// `coef` (its mean). Large planes go through `plane(x, dy, y, coef)`, which gives both
/// for one plane (summed in f32: at most a feature map), accumulated in f64 across planes.
/// Planes under [`ROW_PLANE`] pixels, one-pixel ones included ((N, C) rows: batch norm over
/// features, as in the projection heads), go through `value` instead, the same for one
/// value, summed per value down the rows of C·H·W values in a loop along each row, then
/// per channel; one call per plane there was one call per value, or a loop too short for
/// the vectors.
///
/// Either runs inside one [`vectorized`] call per rayon task, so `plane` and `value` must be
/// `#[inline(always)]` (closures or functions) over the `_in` kernels: dispatching per plane
/// cost more than the sums on small maps.
fn channel_sums<P, V>(
    (n, c, hw): (usize, usize, usize),
    inputs: Inputs<'_>,
    coef: &[f32],
    plane: P,
    value: V,
) -> Vec<[f64; 2]>
where
    P: Fn(&[f32], &[f32], &[f32], f32) -> [f32; 2] + Sync,
    V: Fn(f32, f32, f32, f32) -> [f32; 2] + Sync,
{
    if as_rows(hw) {
        let sums = row_sums(n, c * hw, inputs, &per_value(coef, hw), &value);
        return sums.chunks_exact(hw).map(|ch| ch.iter().fold([0.0; 2], |a, v| [a[0] + v[0], a[1] + v[1]])).collect();
    }
    let [x, g, y] = inputs;
    in_blocks(c, |channels| {
        vectorized(
            #[inline(always)]
            || {
                let mut acc = vec![[0f64; 2]; channels.len()];
                for img in 0..n {
                    for (a, ch) in acc.iter_mut().zip(channels.clone()) {
                        let r = (img * c + ch) * hw..(img * c + ch + 1) * hw;
                        let [s0, s1] = plane(&x[r.clone()], &g[r.clone()], &y[r], coef[ch]);
                        a[0] += f64::from(s0);
                        a[1] += f64::from(s1);
                    }
                }
                acc
            },
        )
    })
}

/// Planes smaller than this go through the row kernels as rows of C·H·W values, each
/// channel's coefficients repeated over its pixels. One loop per plane of a 7×7, 4×4 or 2×2
/// map (Jigsaw's tiles, a ConvNet's last layers) is a few dozen values: too short for
/// sixteen-wide vectors unrolled four times, so the compiler ran it as scalar code.
const ROW_PLANE: usize = 64;

/// Whether planes of `hw` pixels go through the row kernels (see [`ROW_PLANE`]).
fn as_rows(hw: usize) -> bool {
    hw < ROW_PLANE
}

/// Each channel's value repeated for its `hw` pixels: one coefficient per value of a row.
fn per_value<T: Copy>(per_channel: &[T], hw: usize) -> Vec<T> {
    per_channel.iter().flat_map(|&v| std::iter::repeat_n(v, hw)).collect()
}

/// Rows [`row_sums`] adds in f32 before adding them to its f64 totals: as many values as a
/// plane of 64 pixels, which the plane kernels sum in f32; converting every value to f64
/// cost twice the additions.
const ROW_BLOCK: usize = 64;

/// Per column of `n` rows of `cols` values ((N, C) data), the two sums of
/// `value(x, dy, y, coef)` down the rows; blocks of columns run as rayon tasks, each row's
/// block as one loop over slices.
fn row_sums<V>(n: usize, cols: usize, inputs: Inputs<'_>, coef: &[f32], value: &V) -> Vec<[f64; 2]>
where
    V: Fn(f32, f32, f32, f32) -> [f32; 2] + Sync,
{
    let [x, g, y] = inputs;
    in_blocks(cols, |span| {
        vectorized(
            #[inline(always)]
            || {
                let (mut s0, mut s1) = (vec![0f64; span.len()], vec![0f64; span.len()]);
                let (mut t0, mut t1) = (vec![0f32; span.len()], vec![0f32; span.len()]);
                let m = &coef[span.clone()];
                for block in (0..n).step_by(ROW_BLOCK) {
                    for row in block..(block + ROW_BLOCK).min(n) {
                        let r = row * cols + span.start..row * cols + span.end;
                        let (x, g, y) = (&x[r.clone()], &g[r.clone()], &y[r]);
                        let sums = t0.iter_mut().zip(t1.iter_mut());
                        for ((((a0, a1), &xv), (&gv, &yv)), &mv) in sums.zip(x).zip(g.iter().zip(y)).zip(m) {
                            let [v0, v1] = value(xv, gv, yv, mv);
                            *a0 += v0;
                            *a1 += v1;
                        }
                    }
                    for ((a0, a1), (b0, b1)) in s0.iter_mut().zip(s1.iter_mut()).zip(t0.iter_mut().zip(t1.iter_mut())) {
                        *a0 += f64::from(std::mem::take(b0));
                        *a1 += f64::from(std::mem::take(b1));
                    }
                }
                s0.into_iter().zip(s1).map(|(a, b)| [a, b]).collect::<Vec<_>>()
            },
        )
    })
}

/// `sums(range)` over about four ranges per rayon thread that cover `0..len` (channels or
/// columns), run as rayon tasks; their results concatenated in order.
fn in_blocks<F>(len: usize, sums: F) -> Vec<[f64; 2]>
where
    F: Fn(std::ops::Range<usize>) -> Vec<[f64; 2]> + Sync,
{
    let block = (len / (4 * rayon::current_num_threads().max(1))).max(1);
    let blocks: Vec<Vec<[f64; 2]>> =
        (0..len.div_ceil(block)).into_par_iter().map(|b| sums(b * block..((b + 1) * block).min(len))).collect();
    blocks.concat()
}

/// `g` where the ReLU passed its input (`y > 0`), else zero; the identity without ReLU.
#[inline(always)]
fn gate<const RELU: bool>(g: f32, y: f32) -> f32 {
    if RELU && y <= 0.0 { 0.0 } else { g }
}

/// One value's terms of [`grad_sums`].
#[inline(always)]
fn grad_value<const RELU: bool>(x: f32, dy: f32, y: f32, m: f32) -> [f32; 2] {
    let g = gate::<RELU>(dy, y);
    [g, g * (x - m)]
}

/// (Σ g, Σ g·(x − m)) with g = dy, zeroed where y ≤ 0 under ReLU (`RELU`), for a caller
/// inside [`vectorized`].
///
/// The gated gradient goes through a small buffer first: folded into the sums, the
/// compiler turned the gate into a conditional load per value (scalar code, a fifth of a
/// ConvNet training step); as a map of its own it is a vector blend.
#[inline(always)]
fn grad_sums_in<const RELU: bool>(x: &[f32], dy: &[f32], y: &[f32], m: f32) -> [f32; 2] {
    // Small: the buffer is zeroed on every call, and planes can be a few values (2×2 maps).
    const BLOCK: usize = 64;
    let (mut s0, mut s1) = ([0f32; LANES], [0f32; LANES]);
    let mut gated = [0f32; BLOCK];
    let (mut t0, mut t1) = (0f32, 0f32);
    for ((xb, gb), yb) in x.chunks(BLOCK).zip(dy.chunks(BLOCK)).zip(y.chunks(BLOCK)) {
        let gated = &mut gated[..xb.len()];
        for ((o, &g), &yv) in gated.iter_mut().zip(gb).zip(yb) {
            *o = gate::<RELU>(g, yv);
        }
        let ((xc, xt), (gc, gt)) = (xb.as_chunks::<LANES>(), gated.as_chunks::<LANES>());
        for (xs, gs) in xc.iter().zip(gc) {
            for i in 0..LANES {
                s0[i] += gs[i];
                s1[i] += gs[i] * (xs[i] - m);
            }
        }
        for (&xv, &g) in xt.iter().zip(gt) {
            t0 += g;
            t1 += g * (xv - m);
        }
    }
    [lanes_total(s0) + t0, lanes_total(s1) + t1]
}

/// x → (2, C): the batch mean and the biased batch variance of each channel.
#[derive(Clone, Copy, Debug)]
pub struct ChannelStats;

impl CustomOp1 for ChannelStats {
    fn name(&self) -> &'static str {
        "pretext-bn-stats"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, n, c, hw) = planes(s, l)?;
        let count = (n * hw) as f64;
        let zeros = vec![0f32; c];
        let sums = channel_sums(
            (n, c, hw),
            [x; 3],
            &zeros,
            #[inline(always)]
            |x, _, _, _| [sum_in(x), 0.0],
            #[inline(always)]
            |x, _, _, _| [x, 0.0],
        );
        let mean: Vec<f64> = sums.iter().map(|s| s[0] / count).collect();
        // Two passes: subtracting the mean before squaring keeps the variance accurate when
        // the mean is large against the spread.
        let mean32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        let sq = channel_sums(
            (n, c, hw),
            [x; 3],
            &mean32,
            #[inline(always)]
            |x, _, _, m| [sum_sq_dev_in(x, m), 0.0],
            #[inline(always)]
            |x, _, _, m| [(x - m) * (x - m), 0.0],
        );
        let mut out = mean32;
        out.extend(sq.iter().map(|s| (s[0] / count) as f32));
        Ok((CpuStorage::F32(out), Shape::from((2, c))))
    }
}

/// (x, stats, wb) → y = act((x − mean) / √(var + eps) · weight + bias), `stats` = (mean, var)
/// and `wb` = (weight, bias), each (2, C); `act` is ReLU or the identity. The gradient flows
/// to `x` (through the batch statistics too, which `stats` was computed from) and to `wb`.
#[derive(Clone, Copy, Debug)]
pub struct BatchNormTrain {
    pub eps: f64,
    pub relu: bool,
}

impl BatchNormTrain {
    /// Per channel (scale, shift) with y = act(x·scale + shift).
    fn affine(&self, stats: &[f32], wb: &[f32], c: usize) -> Vec<(f32, f32, f32)> {
        (0..c)
            .map(|ch| {
                let invstd = 1.0 / (f64::from(stats[c + ch]) + self.eps).sqrt();
                let scale = f64::from(wb[ch]) * invstd;
                let shift = f64::from(wb[c + ch]) - f64::from(stats[ch]) * scale;
                (scale as f32, shift as f32, invstd as f32)
            })
            .collect()
    }
}

fn vec2(s: &CpuStorage, l: &Layout, c: usize, what: &str) -> Result<Vec<f32>> {
    if l.dims() != [2, c] {
        candle_core::bail!("batch norm: {what} has shape {:?}, expected [2, {c}]", l.dims());
    }
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets().and_then(|(a, b)| data.get(a..b)) {
        Some(v) => Ok(v.to_vec()),
        None => candle_core::bail!("batch norm: {what} must be contiguous"),
    }
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "pretext-bn-train"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ss: &CpuStorage,
        sl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, _, c, hw) = planes(xs, xl)?;
        let coef = self.affine(&vec2(ss, sl, c, "stats")?, &vec2(ws, wl, c, "weight and bias")?, c);
        let mut y = zeroed(x.len());
        let relu = self.relu;
        let act = |t: f32| if relu { t.max(0.0) } else { t };
        if as_rows(hw) {
            // (N, C·H·W) rows: one loop along each row, over per-value coefficients.
            let (scale, shift): (Vec<f32>, Vec<f32>) = per_value(&coef, hw).iter().map(|&(a, b, _)| (a, b)).unzip();
            y.par_chunks_mut(c * hw).zip(x.par_chunks(c * hw)).for_each(|(yi, xi)| {
                vectorized(
                    #[inline(always)]
                    || {
                        for ((o, &v), (&a, &b)) in yi.iter_mut().zip(xi).zip(scale.iter().zip(&shift)) {
                            *o = act(v * a + b);
                        }
                    },
                );
            });
        } else {
            y.par_chunks_mut(c * hw).zip(x.par_chunks(c * hw)).for_each(|(yi, xi)| {
                vectorized(
                    #[inline(always)]
                    || {
                        for ((yp, xp), &(scale, shift, _)) in yi.chunks_mut(hw).zip(xi.chunks(hw)).zip(&coef) {
                            for (o, &v) in yp.iter_mut().zip(xp) {
                                *o = act(v * scale + shift);
                            }
                        }
                    },
                );
            });
        }
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        stats: &Tensor,
        wb: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = x.dim(1)?;
        let st = stats.flatten_all()?.to_vec1::<f32>()?;
        let wbv = wb.flatten_all()?.to_vec1::<f32>()?;
        let coef = self.affine(&st, &wbv, c);
        let dy = dy.contiguous()?;
        // (Σ g, Σ g·(x − mean)) per channel, g the gradient behind the ReLU.
        let sums = x.apply_op3_no_bwd(&dy, y, &GradSums { mean: st[..c].to_vec(), relu: self.relu })?;
        let sums = sums.flatten_all()?.to_vec1::<f32>()?;
        let count = (x.elem_count() / c) as f32;
        let mut dwb = vec![0f32; 2 * c];
        let mut k = Vec::with_capacity(c);
        for ch in 0..c {
            let (scale, _, invstd) = coef[ch];
            let (sg, sgx) = (sums[ch], sums[c + ch]);
            dwb[ch] = sgx * invstd;
            dwb[c + ch] = sg;
            // dx = scale·(g − Σg/M − x̂·Σ(g·x̂)/M) with x̂ = (x − mean)·invstd, folded into
            // dx = scale·g − kx·(x − mean) + k0 so the pass over the data is a short chain.
            let kx = scale * invstd * invstd * sgx / count;
            let k0 = -scale * sg / count;
            k.push((scale, kx, k0, st[ch]));
        }
        let dx = if x.track_op() { Some(x.apply_op3_no_bwd(&dy, y, &InputGrad { k, relu: self.relu })?) } else { None };
        let dwb = if wb.track_op() { Some(Tensor::from_vec(dwb, (2, c), x.device())?) } else { None };
        Ok((dx, None, dwb))
    }
}

/// (x, dy, y) → (2, C): Σ g and Σ g·(x − mean), where g = dy masked by y > 0 under ReLU.
struct GradSums {
    mean: Vec<f32>,
    relu: bool,
}

impl CustomOp3 for GradSums {
    fn name(&self) -> &'static str {
        "pretext-bn-grad-sums"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_dims(xl, gl, "the output gradient")?;
        same_dims(xl, yl, "the output")?;
        let (x, n, c, hw) = planes(xs, xl)?;
        let (g, ..) = planes(gs, gl)?;
        let (y, ..) = planes(ys, yl)?;
        let (dims, inputs, mean) = ((n, c, hw), [x, g, y], &self.mean);
        let sums = if self.relu {
            channel_sums(dims, inputs, mean, grad_sums_in::<true>, grad_value::<true>)
        } else {
            channel_sums(dims, inputs, mean, grad_sums_in::<false>, grad_value::<false>)
        };
        let mut out: Vec<f32> = sums.iter().map(|s| s[0] as f32).collect();
        out.extend(sums.iter().map(|s| s[1] as f32));
        Ok((CpuStorage::F32(out), Shape::from((2, c))))
    }
}

/// One plane of [`InputGrad`], with the ReLU gate fixed at compile time (see [`gate`]), for
/// a caller inside [`vectorized`].
#[inline(always)]
fn input_grad_plane_in<const RELU: bool>(dx: &mut [f32], x: &[f32], g: &[f32], y: &[f32], k: (f32, f32, f32, f32)) {
    let (scale, kx, k0, mean) = k;
    for (((o, &xv), &gv), &yv) in dx.iter_mut().zip(x).zip(g).zip(y) {
        *o = scale * gate::<RELU>(gv, yv) - kx * (xv - mean) + k0;
    }
}

/// One (N, C) row of [`InputGrad`]: value j is channel j's, with its coefficients.
type Coefs<'a> = (&'a [f32], &'a [f32], &'a [f32], &'a [f32]);

fn input_grad_row<const RELU: bool>(dx: &mut [f32], (x, g, y): (&[f32], &[f32], &[f32]), k: Coefs<'_>) {
    let (scale, kx, k0, mean) = k;
    vectorized(
        #[inline(always)]
        || {
            for (j, o) in dx.iter_mut().enumerate() {
                *o = scale[j] * gate::<RELU>(g[j], y[j]) - kx[j] * (x[j] - mean[j]) + k0[j];
            }
        },
    );
}

/// (x, dy, y) → dx = scale·g − kx·(x − mean) + k0 per channel: (scale, kx, k0, mean).
struct InputGrad {
    k: Vec<(f32, f32, f32, f32)>,
    relu: bool,
}

impl CustomOp3 for InputGrad {
    fn name(&self) -> &'static str {
        "pretext-bn-input-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_dims(xl, gl, "the output gradient")?;
        same_dims(xl, yl, "the output")?;
        let (x, _, c, hw) = planes(xs, xl)?;
        let (g, ..) = planes(gs, gl)?;
        let (y, ..) = planes(ys, yl)?;
        let mut dx = zeroed(x.len());
        if as_rows(hw) {
            // (N, C·H·W) rows: the plane kernel run along each row, with per-value coefficients.
            let k = per_value(&self.k, hw);
            let column = |f: fn(&(f32, f32, f32, f32)) -> f32| k.iter().map(f).collect::<Vec<f32>>();
            let (scale, kx, k0, mean) = (column(|t| t.0), column(|t| t.1), column(|t| t.2), column(|t| t.3));
            let len = c * hw;
            dx.par_chunks_mut(len).enumerate().for_each(|(row, di)| {
                let r = row * len..(row + 1) * len;
                let (x, g, y) = (&x[r.clone()], &g[r.clone()], &y[r]);
                if self.relu {
                    input_grad_row::<true>(di, (x, g, y), (&scale, &kx, &k0, &mean));
                } else {
                    input_grad_row::<false>(di, (x, g, y), (&scale, &kx, &k0, &mean));
                }
            });
            return Ok((CpuStorage::F32(dx), xl.shape().clone()));
        }
        // One dispatch per image, not per plane (see `channel_sums`).
        dx.par_chunks_mut(c * hw).enumerate().for_each(|(img, di)| {
            vectorized(
                #[inline(always)]
                || {
                    let base = img * c * hw;
                    for (ch, dp) in di.chunks_mut(hw).enumerate() {
                        let r = base + ch * hw..base + (ch + 1) * hw;
                        let (x, g, y) = (&x[r.clone()], &g[r.clone()], &y[r]);
                        if self.relu {
                            input_grad_plane_in::<true>(dp, x, g, y, self.k[ch]);
                        } else {
                            input_grad_plane_in::<false>(dp, x, g, y, self.k[ch]);
                        }
                    }
                },
            );
        });
        Ok((CpuStorage::F32(dx), xl.shape().clone()))
    }
}
