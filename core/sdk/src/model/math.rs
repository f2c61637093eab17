//! `exp` and `erf` for f32 activation kernels, branch-free so that a loop of them compiles to
//! vector instructions under [`super::kernels::vectorized`].
//!
//! libm's `expf` and `erff` (what `f32::exp` and candle's `erf_f32` call) are one value per
//! call with branches on the argument's range: GELU's forward and backward, one `erf` and
//! one `exp` per activation, were a fifth of a ViT-Tiny training step. These are within a
//! few units in the last place of the exact values (tested against libm's f64 functions
//! over the whole range an activation sees). This module holds the approximations only.

use std::f32::consts::LOG2_E;

/// `ln 2` split in two so that `x − n·ln 2` stays exact for the `n` an f32 `exp` meets
/// (Cody and Waite's range reduction).
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;

/// `eˣ` within about 2 ulp for `x` in [−87, 88]; below, a value of at most `e⁻⁸⁷` (as good
/// as zero next to the 1 it is added to or the row it is normalised by); above, `e⁸⁸`.
/// NaN stays NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // x = n·ln 2 + r with |r| ≤ ln 2 / 2; eˣ = 2ⁿ·eʳ.
    let n = (x * LOG2_E + 0.5).floor();
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Taylor to degree 7: the first term left out is under 6e-9 relative for |r| ≤ 0.35.
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // 2ⁿ built from its exponent bits: n is in [−126, 127] after the clamp.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

/// The error function with an absolute error under 4e-7 (a few ulp of the values near ±1,
/// where it is largest): `x·P(x²)/Q(x²)`, the rational approximation XLA and Eigen use for
/// f32, and ±1 from ±3.85 on, where the exact value rounds to ±1.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = horner(
        x2,
        [-2.726_142_3e-10, 2.770_681_4e-8, -2.101_024e-6, -5.692_506_4e-5, -7.349_906e-4, -2.954_6e-3, -1.609_603_3e-2],
    );
    let q = horner(x2, [-1.456_607_2e-5, -2.133_740_6e-4, -1.682_827e-3, -7.373_329e-3, -1.426_474e-2]);
    // Past ±3.85 the exact value rounds to ±1 in f32, and the ratio drifts from it.
    if x.abs() >= 3.85 { 1f32.copysign(x) } else { x * p / q }
}

/// The polynomial with `coefs` (highest degree first) at `x`, by Horner's rule with fused
/// multiply-adds; an array, so that the loop unrolls into straight-line vector code.
#[inline(always)]
fn horner<const N: usize>(x: f32, coefs: [f32; N]) -> f32 {
    // The first step, 0·x + c, is exactly c.
    coefs.iter().fold(0.0, |acc, &c| acc.mul_add(x, c))
}

#[cfg(test)]
mod tests {
    use candle_core::cpu::erf::erf_f64;

    use super::*;

    /// Units in the last place between an f32 and the exact (f64) value, at the f32's scale.
    fn ulps(got: f32, exact: f64) -> f64 {
        let spacing = f64::from(f32::EPSILON) * exact.abs().max(f64::from(f32::MIN_POSITIVE));
        (f64::from(got) - exact).abs() / spacing
    }

    #[test]
    fn exp_is_within_two_ulp_of_the_exact_value() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 175.0 * f64::from(i) / 200_000.0;
            #[allow(clippy::cast_possible_truncation)]
            let x = x as f32;
            worst = worst.max(ulps(exp(x), f64::from(x).exp()));
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-200.0) < 1e-37 && exp(-200.0) >= 0.0);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn erf_is_within_4e7_of_the_exact_value() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -6.0 + 12.0 * f64::from(i) / 200_000.0;
            #[allow(clippy::cast_possible_truncation)]
            let x = x as f32;
            worst = worst.max((f64::from(erf(x)) - erf_f64(f64::from(x))).abs());
        }
        assert!(worst < 4e-7, "worst absolute error {worst}");
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(erf(9.0), 1.0);
        assert_eq!(erf(-9.0), -1.0);
    }
}
