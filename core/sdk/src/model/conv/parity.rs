//! Checks the custom convolution against candle's stock `conv2d`: output, input gradient
//! and kernel gradient, on random shapes and on non-contiguous views.

#![allow(clippy::unwrap_used)]

use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn random(rng: &mut StdRng, dims: &[usize]) -> Tensor {
    let len = dims.iter().product::<usize>();
    let data: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
}

/// max |a − b| / max |b|: relative to the tensor's scale, so sums that cancel to near zero
/// are not held to an impossible per-element precision.
fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    diff / scale.max(1e-12)
}

/// Output, dx and dw of one implementation for a loss `Σ y ⊙ r`, so every output element
/// gets a different upstream gradient.
fn run(which: ConvImpl, x: &Tensor, w: &Tensor, r: &Tensor, stride: usize, pad: usize) -> (Tensor, Tensor, Tensor) {
    let xv = Var::from_tensor(x).unwrap();
    let wv = Var::from_tensor(w).unwrap();
    let y = match which {
        ConvImpl::Stock => xv.as_tensor().conv2d(wv.as_tensor(), pad, stride, 1, 1).unwrap(),
        ConvImpl::Fast | ConvImpl::Lowered => {
            let op = op::Conv2dOp { stride, padding: pad, winograd: which == ConvImpl::Fast };
            xv.as_tensor().apply_op2(wv.as_tensor(), op).unwrap()
        }
    };
    let grads = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let dx = grads.get(xv.as_tensor()).unwrap().clone();
    let dw = grads.get(wv.as_tensor()).unwrap().clone();
    (y, dx, dw)
}

/// Candle's stock backward derives the input gradient's output padding from the height alone,
/// so it fails when height and width leave different remainders under the stride.
fn stock_backward_works(x: &Tensor, k: usize, stride: usize, pad: usize) -> bool {
    let (_, _, h, w) = x.dims4().unwrap();
    let rem = |size: usize| (size + 2 * pad - k) % stride;
    rem(h) == rem(w)
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    (a * b).unwrap().sum_all().unwrap().to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

/// The convolution is linear in each argument, so its gradients are its adjoints:
/// ⟨r, conv(δx, w)⟩ = ⟨dx, δx⟩ and ⟨r, conv(x, δw)⟩ = ⟨dw, δw⟩ for any δ. This checks our
/// gradients where candle's backward cannot serve as the reference.
fn check_adjoints(
    x: &Tensor,
    w: &Tensor,
    r: &Tensor,
    (dx, dw): (&Tensor, &Tensor),
    (stride, pad): (usize, usize),
    rng: &mut StdRng,
) {
    let dxp = random(rng, x.dims());
    let dwp = random(rng, w.dims());
    let (conv_x, conv_w) = (x_conv(&dxp, w, stride, pad), x_conv(x, &dwp, stride, pad));
    let norm = |t: &Tensor| dot(t, t).sqrt();
    for (lhs, rhs, name, conv) in
        [(dot(r, &conv_x), dot(dx, &dxp), "input", &conv_x), (dot(r, &conv_w), dot(dw, &dwp), "kernel", &conv_w)]
    {
        // Relative to the Cauchy–Schwarz bound ‖r‖·‖conv‖ rather than to the dot product
        // itself, which random data can put arbitrarily close to zero (a 7×7 stride-2 case
        // came to 0.002 from terms of order 100, beyond f32's reach at 1e-4 relative).
        let e = (lhs - rhs).abs() / (norm(r) * norm(conv)).max(1e-3);
        assert!(e < 1e-4, "{name} gradient is not the adjoint: {lhs} vs {rhs} for x {:?} w {:?}", x.dims(), w.dims());
    }
}

fn x_conv(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Tensor {
    x.conv2d(w, pad, stride, 1, 1).unwrap()
}

fn compare(x: &Tensor, w: &Tensor, stride: usize, pad: usize, rng: &mut StdRng) {
    let y_dims = x_conv(x, w, stride, pad).dims().to_vec();
    let r = random(rng, &y_dims);
    let (y1, dx1, dw1) = run(ConvImpl::Fast, x, w, &r, stride, pad);
    check_adjoints(x, w, &r, (&dx1, &dw1), (stride, pad), rng);
    let what = format!("x {:?} w {:?} stride {stride} pad {pad}", x.dims(), w.dims());
    if !stock_backward_works(x, w.dim(2).unwrap(), stride, pad) {
        let e = rel_err(&y1, &x_conv(x, w, stride, pad));
        assert!(e < 1e-4, "output differs by {e:e} for {what}");
        return;
    }
    let (y0, dx0, dw0) = run(ConvImpl::Stock, x, w, &r, stride, pad);
    for (name, ours, stock) in [("output", &y1, &y0), ("input grad", &dx1, &dx0), ("kernel grad", &dw1, &dw0)] {
        let e = rel_err(ours, stock);
        assert!(e < 1e-4, "{name} differs by {e:e} for {what}");
    }
}

/// Layers wide enough for Winograd's method (both channel counts ≥ 128), on even and odd
/// maps, against candle's convolution.
#[test]
fn the_winograd_layers_match_stock_conv() {
    let mut rng = StdRng::seed_from_u64(11);
    for (n, c, o, h, wd) in [(2, 128, 128, 4, 4), (1, 130, 144, 5, 7), (3, 128, 256, 2, 2)] {
        let x = random(&mut rng, &[n, c, h, wd]);
        let w = random(&mut rng, &[o, c, 3, 3]);
        compare(&x, &w, 1, 1, &mut rng);
    }
}

#[test]
fn matches_stock_conv_on_random_shapes() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut cases = 0;
    for &k in &[1usize, 3, 7] {
        for &stride in &[1usize, 2] {
            for &pad in &[0usize, 1] {
                for _ in 0..3 {
                    let n = rng.random_range(1..=5);
                    let c = rng.random_range(1..=6);
                    let o = rng.random_range(1..=7);
                    let h = rng.random_range(k.saturating_sub(2 * pad).max(1)..=k + 9);
                    let wd = rng.random_range(k.saturating_sub(2 * pad).max(1)..=k + 9);
                    let x = random(&mut rng, &[n, c, h, wd]);
                    let w = random(&mut rng, &[o, c, k, k]);
                    compare(&x, &w, stride, pad, &mut rng);
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 36);
    // Most random shapes above are non-square; make sure some went through the stock
    // comparison too.
    let mut stock_cases = 0;
    for &k in &[1usize, 3, 7] {
        for &stride in &[1usize, 2] {
            for &pad in &[0usize, 1] {
                let n = rng.random_range(1..=4);
                let c = rng.random_range(1..=5);
                let h = rng.random_range(k..=k + 8);
                let x = random(&mut rng, &[n, c, h, h + stride]);
                assert!(stock_backward_works(&x, k, stride, pad));
                compare(&x, &random(&mut rng, &[3, c, k, k]), stride, pad, &mut rng);
                stock_cases += 1;
            }
        }
    }
    assert_eq!(stock_cases, 12);
}

#[test]
fn matches_stock_conv_on_backbone_shapes() {
    // Shapes the backbones run: many images with small maps (grouped lowering), a 1×1
    // strided shortcut, and a single image (parallel GEMM instead of parallel images).
    let mut rng = StdRng::seed_from_u64(11);
    for &(n, c, h, o, k, stride, pad) in &[
        (33, 8, 4, 16, 3, 1, 1),
        (17, 16, 8, 8, 1, 2, 0),
        (1, 3, 32, 16, 3, 1, 1),
        (9, 1, 28, 8, 3, 2, 1),
        (6, 4, 12, 5, 7, 2, 1),
    ] {
        let x = random(&mut rng, &[n, c, h, h]);
        let w = random(&mut rng, &[o, c, k, k]);
        compare(&x, &w, stride, pad, &mut rng);
    }
}

#[test]
fn matches_stock_conv_through_phase_planes() {
    // Same padding on maps over 64 output pixels lowers through phase planes: odd and
    // non-square sizes (a phase plane shorter than the output at the far edge), a strided
    // 1×1 shortcut (one phase used), a 7×7 stem, stride 3, and a 5×5 at stride 1.
    let mut rng = StdRng::seed_from_u64(13);
    for &(n, c, (h, w), o, k, stride, pad) in &[
        (3, 5, (29, 23), 6, 3, 2, 1),
        (2, 4, (20, 18), 7, 1, 2, 0),
        (2, 3, (33, 31), 4, 7, 2, 3),
        (2, 2, (26, 25), 3, 5, 3, 2),
        (2, 3, (17, 15), 4, 5, 1, 2),
    ] {
        let x = random(&mut rng, &[n, c, h, w]);
        let wt = random(&mut rng, &[o, c, k, k]);
        compare(&x, &wt, stride, pad, &mut rng);
    }
}

#[test]
fn matches_stock_conv_row_by_row() {
    // Maps over 64 output pixels without same padding lower row by row: strided (and so
    // not covered by the random shapes, whose strided maps all go through the table) and not.
    let mut rng = StdRng::seed_from_u64(17);
    for &(n, c, (h, w), o, k, stride, pad) in
        &[(2, 3, (27, 25), 4, 3, 2, 0), (2, 2, (30, 22), 3, 5, 2, 1), (2, 3, (14, 12), 4, 3, 1, 0)]
    {
        let x = random(&mut rng, &[n, c, h, w]);
        let wt = random(&mut rng, &[o, c, k, k]);
        compare(&x, &wt, stride, pad, &mut rng);
    }
}

#[test]
fn non_contiguous_inputs_match() {
    let mut rng = StdRng::seed_from_u64(3);
    // Channels-first storage viewed as NCHW, a narrowed batch and a transposed kernel.
    let x = random(&mut rng, &[4, 3, 9, 10]).transpose(0, 1).unwrap();
    assert!(!x.is_contiguous());
    let w = random(&mut rng, &[4, 5, 3, 3]).transpose(0, 1).unwrap();
    assert!(!w.is_contiguous());
    compare(&x, &w, 2, 1, &mut rng);
    let x = random(&mut rng, &[6, 2, 11, 11]).narrow(0, 1, 4).unwrap().narrow(3, 2, 8).unwrap();
    assert!(!x.is_contiguous());
    let w = random(&mut rng, &[4, 2, 3, 3]);
    compare(&x, &w, 1, 1, &mut rng);
}

#[test]
fn frozen_images_get_no_gradient_and_kernel_still_does() {
    let mut rng = StdRng::seed_from_u64(5);
    let x = random(&mut rng, &[2, 3, 6, 6]);
    let w = Var::from_tensor(&random(&mut rng, &[4, 3, 3, 3])).unwrap();
    let y = x.apply_op2(w.as_tensor(), op::Conv2dOp { stride: 1, padding: 1, winograd: true }).unwrap();
    let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&x).is_none());
    assert_eq!(grads.get(w.as_tensor()).unwrap().dims(), &[4, 3, 3, 3]);
}

#[test]
fn dispatch_falls_back_for_other_dtypes_and_rejects_bad_shapes() {
    let x = Tensor::ones((2, 3, 5, 5), DType::F64, &Device::Cpu).unwrap();
    let w = Tensor::ones((4, 3, 3, 3), DType::F64, &Device::Cpu).unwrap();
    assert_eq!(conv2d(&x, &w, 1, 1).unwrap().dims(), &[2, 4, 5, 5]);
    let x = Tensor::ones((2, 3, 5, 5), DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::ones((4, 2, 3, 3), DType::F32, &Device::Cpu).unwrap();
    assert!(x.apply_op2(&w, op::Conv2dOp { stride: 1, padding: 1, winograd: true }).is_err());
    let w = Tensor::ones((4, 3, 9, 9), DType::F32, &Device::Cpu).unwrap();
    assert!(x.apply_op2(&w, op::Conv2dOp { stride: 1, padding: 1, winograd: true }).is_err());
}
