//! Optimizers whose state can be saved with the model: AdamW, SGD with momentum, and LARS.
//!
//! candle-nn's optimizers keep their moments private and its SGD has no momentum, so a
//! resumed run could not continue exactly; these keep every buffer as a named tensor.
//! Variables without a gradient (BatchNorm running statistics) are left alone, and
//! one-dimensional parameters (biases, norm scales) get no weight decay or LARS scaling,
//! as in SimCLR's reference code.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

#[cfg(not(target_arch = "wasm32"))]
use super::inplace;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    #[default]
    Adamw,
    Sgd,
    Lars,
}

impl std::str::FromStr for OptimizerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "adamw" => Ok(Self::Adamw),
            "sgd" => Ok(Self::Sgd),
            "lars" => Ok(Self::Lars),
            other => Err(format!("unknown optimizer `{other}` (expected adamw, sgd or lars)")),
        }
    }
}

/// What the rate does after the warmup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrDecay {
    /// A half cosine from the peak to zero at the last step (the SimCLR paper's, solo-learn's).
    #[default]
    Cosine,
    /// The peak held to the end (the seed listing's constant Adam rate).
    Constant,
}

impl std::str::FromStr for LrDecay {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "cosine" => Ok(Self::Cosine),
            "constant" => Ok(Self::Constant),
            other => Err(format!("unknown learning-rate schedule `{other}` (expected cosine or constant)")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    /// `None` picks the kind's usual value: AdamW 1e-4, SGD 5e-4, LARS 1e-6.
    pub weight_decay: Option<f64>,
    pub momentum: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// LARS trust coefficient.
    pub eta: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Adamw,
            weight_decay: None,
            momentum: 0.9,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            eta: 0.001,
        }
    }
}

impl OptimizerConfig {
    pub fn weight_decay(&self) -> f64 {
        self.weight_decay.unwrap_or(match self.kind {
            OptimizerKind::Adamw => 1e-4,
            OptimizerKind::Sgd => 5e-4,
            OptimizerKind::Lars => 1e-6,
        })
    }
}

/// Every variable of `map` with its name, sorted by name so that optimizer and checkpoint
/// order do not depend on hash-map iteration.
pub fn named_vars(map: &candle_nn::VarMap) -> candle_core::Result<Vec<(String, Var)>> {
    let data = map.data().lock().map_err(|_| candle_core::Error::Msg("the parameter store is poisoned".into()))?;
    let mut vars: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(vars)
}

struct Param {
    name: String,
    var: Var,
    /// Decay and LARS apply to weight matrices and kernels only.
    decays: bool,
    /// First buffer: AdamW's first moment, or the momentum buffer.
    m: Option<Tensor>,
    /// AdamW's second moment.
    v: Option<Tensor>,
}

pub struct Optimizer {
    config: OptimizerConfig,
    params: Vec<Param>,
    steps: u64,
}

impl Optimizer {
    /// `vars` are (name, variable) pairs; names key the saved state.
    pub fn new(config: OptimizerConfig, vars: Vec<(String, Var)>) -> Self {
        let params = vars
            .into_iter()
            .map(|(name, var)| {
                let decays = var.rank() > 1;
                Param { name, var, decays, m: None, v: None }
            })
            .collect();
        Self { config, params, steps: 0 }
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    pub fn step(&mut self, grads: &GradStore, lr: f64) -> candle_core::Result<()> {
        self.step_with(grads, lr, true)
    }

    /// `inplace: false` forces the tensor expressions, which the in-place kernels must match.
    #[cfg_attr(target_arch = "wasm32", allow(unused_variables))]
    fn step_with(&mut self, grads: &GradStore, lr: f64, inplace: bool) -> candle_core::Result<()> {
        self.steps += 1;
        let c = &self.config;
        let wd = c.weight_decay();
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
        let t = self.steps.min(i32::MAX as u64) as i32;
        for p in &mut self.params {
            let Some(g) = grads.get(p.var.as_tensor()) else { continue };
            // A gradient still carries the backward graph it came from, and through it the
            // step's activations; the moments below outlive the step, so they must be built
            // from a detached copy or every step's graph stays alive (gigabytes per step).
            let g = &g.detach();
            let w = &p.var.as_tensor().detach();
            match c.kind {
                #[cfg(not(target_arch = "wasm32"))]
                OptimizerKind::Adamw if inplace && inplace::applies(&[w, g]) => {
                    let m = match p.m.take() {
                        Some(m) => m,
                        None => w.zeros_like()?,
                    };
                    let v = match p.v.take() {
                        Some(v) => v,
                        None => w.zeros_like()?,
                    };
                    m.inplace_op2(g, &inplace::Blend { keep: c.beta1, take: 1.0 - c.beta1, square: false })?;
                    v.inplace_op2(g, &inplace::Blend { keep: c.beta2, take: 1.0 - c.beta2, square: true })?;
                    let weights = inplace::AdamwWeights {
                        decay: p.decays.then_some(1.0 - lr * wd),
                        lr,
                        c1: 1.0 / (1.0 - c.beta1.powi(t)),
                        c2: 1.0 / (1.0 - c.beta2.powi(t)),
                        eps: c.eps,
                    };
                    p.var.as_tensor().inplace_op3(&m, &v, &weights)?;
                    p.m = Some(m);
                    p.v = Some(v);
                }
                OptimizerKind::Adamw => {
                    let m = match &p.m {
                        Some(m) => ((m * c.beta1)? + (g * (1.0 - c.beta1))?)?,
                        None => (g * (1.0 - c.beta1))?,
                    };
                    let v = match &p.v {
                        Some(v) => ((v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?,
                        None => (g.sqr()? * (1.0 - c.beta2))?,
                    };
                    let m_hat = (&m / (1.0 - c.beta1.powi(t)))?;
                    let v_hat = (&v / (1.0 - c.beta2.powi(t)))?;
                    let decayed = if p.decays { (w * (1.0 - lr * wd))? } else { w.clone() };
                    let update = (m_hat / (v_hat.sqrt()? + c.eps)?)?;
                    p.var.set(&(decayed - (update * lr)?)?)?;
                    p.m = Some(m);
                    p.v = Some(v);
                }
                OptimizerKind::Sgd | OptimizerKind::Lars => {
                    let mut d = if p.decays && wd > 0.0 { (g + (w * wd)?)? } else { g.clone() };
                    if c.kind == OptimizerKind::Lars && p.decays {
                        let w_norm = w.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
                        let d_norm = d.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
                        if w_norm > 0.0 && d_norm > 0.0 {
                            d = (d * (c.eta * f64::from(w_norm) / f64::from(d_norm)))?;
                        }
                    }
                    let buf = match &p.m {
                        Some(b) => ((b * c.momentum)? + &d)?,
                        None => d,
                    };
                    p.var.set(&(w - (&buf * lr)?)?)?;
                    p.m = Some(buf);
                }
            }
        }
        Ok(())
    }

    /// The optimizer's buffers as named tensors, prefixed `optim.`: copies, since the CPU
    /// path updates the buffers in place at the next step.
    pub fn state(&self) -> candle_core::Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for p in &self.params {
            if let Some(m) = &p.m {
                out.push((format!("optim.m.{}", p.name), m.copy()?));
            }
            if let Some(v) = &p.v {
                out.push((format!("optim.v.{}", p.name), v.copy()?));
            }
        }
        Ok(out)
    }

    /// Restores buffers saved by [`Optimizer::state`] and the step count.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, steps: u64) -> candle_core::Result<()> {
        for p in &mut self.params {
            let device = p.var.device().clone();
            // Own copies: the CPU path writes into these buffers.
            p.m = tensors.get(&format!("optim.m.{}", p.name)).map(|t| t.to_device(&device)?.copy()).transpose()?;
            p.v = tensors.get(&format!("optim.v.{}", p.name)).map(|t| t.to_device(&device)?.copy()).transpose()?;
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    fn one_step(kind: OptimizerKind) -> Vec<f32> {
        let w = Var::new(&[[1.0f32, -2.0], [3.0, 0.5]], &Device::Cpu).unwrap();
        // loss = sum(w^2) / 2, so the gradient is w.
        let loss = (w.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
        let grads = loss.backward().unwrap();
        let config = OptimizerConfig { kind, weight_decay: Some(0.1), ..Default::default() };
        let mut opt = Optimizer::new(config, vec![("w".into(), w.clone())]);
        opt.step(&grads, 0.1).unwrap();
        w.as_tensor().flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn moments_do_not_keep_the_step_graph_alive() {
        // A moment built from a gradient that still carries its backward graph reaches the
        // weights through it (and holds every activation of the step): backpropagating from
        // the saved moment must find no path to the variable.
        for kind in [OptimizerKind::Adamw, OptimizerKind::Sgd, OptimizerKind::Lars] {
            let w = Var::new(&[[1.0f32, -2.0], [3.0, 0.5]], &Device::Cpu).unwrap();
            let loss = w.as_tensor().sqr().unwrap().sqr().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let mut opt = Optimizer::new(OptimizerConfig { kind, ..Default::default() }, vec![("w".into(), w.clone())]);
            opt.step(&grads, 0.1).unwrap();
            for (name, moment) in opt.state().unwrap() {
                let back = moment.sum_all().unwrap().backward().unwrap();
                assert!(back.get(w.as_tensor()).is_none(), "{kind:?}: {name} still reaches the weights");
            }
        }
    }

    #[test]
    fn in_place_adamw_is_bit_identical_to_the_tensor_expressions() {
        let run = |inplace: bool| {
            let w = Var::new(&[[0.3f32, -1.7, 2.2], [0.01, -0.5, 4.0]], &Device::Cpu).unwrap();
            let b = Var::new(&[0.25f32, -3.0, 1e-3], &Device::Cpu).unwrap();
            // 37 values: whole vectors of 8 and 16 lanes and a tail.
            let c = Var::new((0..37).map(|i| (i as f32 * 0.7).sin()).collect::<Vec<f32>>(), &Device::Cpu).unwrap();
            let vars = vec![("b".to_string(), b.clone()), ("c".to_string(), c.clone()), ("w".to_string(), w.clone())];
            let mut opt = Optimizer::new(OptimizerConfig::default(), vars);
            for step in 0..4 {
                // Gradients that change each step: d/dw of sum(w³)·(step + 1) + sum(b·w) + sum(c⁴).
                let loss = ((w.as_tensor().powf(3.0).unwrap().sum_all().unwrap() * f64::from(step + 1)).unwrap()
                    + w.as_tensor().broadcast_mul(b.as_tensor()).unwrap().sum_all().unwrap()
                    + c.as_tensor().powf(4.0).unwrap().sum_all().unwrap())
                .unwrap();
                opt.step_with(&loss.backward().unwrap(), 0.05, inplace).unwrap();
            }
            let mut out: Vec<f32> = w.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            out.extend(b.as_tensor().to_vec1::<f32>().unwrap());
            out.extend(c.as_tensor().to_vec1::<f32>().unwrap());
            for (_, t) in opt.state().unwrap() {
                out.extend(t.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            }
            out
        };
        let (fused, reference) = (run(true), run(false));
        assert_eq!(fused.len(), 6 + 3 + 37 + 2 * (6 + 3 + 37));
        assert_eq!(fused, reference);
    }

    #[test]
    fn adamw_first_step_moves_each_weight_by_lr() {
        // Bias-corrected first step: m̂/√v̂ = sign(g); decoupled decay multiplies by 1 - lr·wd.
        let got = one_step(OptimizerKind::Adamw);
        let want: Vec<f32> = [1.0f32, -2.0, 3.0, 0.5].iter().map(|w| w * (1.0 - 0.01) - 0.1 * w.signum()).collect();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn sgd_first_step_is_plain_gradient_descent_with_decay() {
        // d = g + wd·w = 1.1·w; w - lr·d = w·(1 - 0.11).
        let got = one_step(OptimizerKind::Sgd);
        for (g, w) in got.iter().zip([1.0f32, -2.0, 3.0, 0.5]) {
            assert!((g - w * 0.89).abs() < 1e-6);
        }
    }

    #[test]
    fn lars_scales_the_step_by_the_trust_ratio() {
        // d = 1.1·w, ‖w‖/‖d‖ = 1/1.1, so the step is lr·eta·w.
        let got = one_step(OptimizerKind::Lars);
        for (g, w) in got.iter().zip([1.0f32, -2.0, 3.0, 0.5]) {
            assert!((g - w * (1.0 - 0.1 * 0.001)).abs() < 1e-6);
        }
    }
}
