//! The momentum teacher: a second backbone and head that follow the student as an
//! exponential moving average (BYOL's target network, DINO's teacher, MoCo's key encoder).
//!
//! It is built from the same task code as the student and starts as an exact copy; after
//! every optimizer step each trained parameter moves by `t ← m·t + (1 − m)·s`. It must never
//! be given to the optimizer or receive a gradient: [`Step::teacher`](super::Step::teacher)
//! detaches what it computes. Batch-norm running statistics are not averaged: the teacher
//! runs in training mode and keeps its own, as the reference code's `parameters()` loops do.

use candle_core::{Tensor, Var};

use super::{Momentum, TaskError};
use crate::model::{Backbone, is_buffer};

pub(crate) struct Teacher<H> {
    pub backbone: Backbone,
    pub head: H,
    /// Same names, in the same order, as the student's parameters.
    vars: Vec<(String, Var)>,
    pub momentum: Momentum,
}

impl<H> Teacher<H> {
    /// A teacher over `vars` (its parameters by name), set to a copy of `student`.
    pub fn new(
        backbone: Backbone,
        head: H,
        vars: Vec<(String, Var)>,
        student: &[(String, Var)],
        momentum: Momentum,
    ) -> Result<Self, TaskError> {
        let same = vars.len() == student.len() && vars.iter().zip(student).all(|((a, _), (b, _))| a == b);
        if !same {
            return Err(TaskError::State("the teacher's parameters differ from the student's".into()));
        }
        for ((_, t), (_, s)) in vars.iter().zip(student) {
            t.set(s.as_tensor())?;
        }
        Ok(Self { backbone, head, vars, momentum })
    }

    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// One EMA step towards `student` with momentum `m`.
    pub fn update(&self, student: &[(String, Var)], m: f64) -> candle_core::Result<()> {
        for ((name, t), (_, s)) in self.vars.iter().zip(student) {
            if !is_buffer(name) {
                ema(t, s.as_tensor(), m)?;
            }
        }
        Ok(())
    }
}

/// `teacher ← m·teacher + (1 − m)·student`; `m = 1` leaves the teacher untouched.
pub fn ema(teacher: &Var, student: &Tensor, m: f64) -> candle_core::Result<()> {
    if m >= 1.0 {
        return Ok(());
    }
    #[cfg(not(target_arch = "wasm32"))]
    if super::inplace::applies(&[teacher.as_tensor(), student]) {
        let blend = super::inplace::Blend { keep: m, take: 1.0 - m, square: false };
        return teacher.as_tensor().inplace_op2(student, &blend);
    }
    teacher.set(&((teacher.as_tensor() * m)? + (student.detach() * (1.0 - m))?)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn ema_follows_its_formula() {
        let t = Var::new(&[1.0f32, -2.0, 4.0], &Device::Cpu).unwrap();
        let s = Tensor::new(&[3.0f32, 2.0, 0.0], &Device::Cpu).unwrap();
        ema(&t, &s, 0.9).unwrap();
        // 0.9·1 + 0.1·3 = 1.2; 0.9·(−2) + 0.1·2 = −1.6; 0.9·4 + 0 = 3.6.
        let got: Vec<f32> = t.as_tensor().to_vec1().unwrap();
        for (g, w) in got.iter().zip([1.2f32, -1.6, 3.6]) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
        ema(&t, &s, 1.0).unwrap();
        assert_eq!(t.as_tensor().to_vec1::<f32>().unwrap(), got);
        ema(&t, &s, 0.0).unwrap();
        assert_eq!(t.as_tensor().to_vec1::<f32>().unwrap(), vec![3.0, 2.0, 0.0]);
    }

    #[test]
    fn in_place_ema_is_bit_identical_to_the_tensor_expression() {
        // 37 values: whole vectors of 8 and 16 lanes and a tail.
        let values = |k: f32| (0..37).map(|i| ((i as f32) * k).sin() * 3.0).collect::<Vec<f32>>();
        let t = Var::new(values(0.7), &Device::Cpu).unwrap();
        let s = Tensor::new(values(1.3), &Device::Cpu).unwrap();
        let m = 0.996;
        let reference: Vec<f32> =
            ((t.as_tensor() * m).unwrap() + (&s * (1.0 - m)).unwrap()).unwrap().to_vec1().unwrap();
        ema(&t, &s, m).unwrap();
        assert_eq!(t.as_tensor().to_vec1::<f32>().unwrap(), reference);
        assert_eq!(s.to_vec1::<f32>().unwrap(), values(1.3), "the student is only read");
    }
}
