//! Reproducible parameter initialisation.
//!
//! candle's CPU device cannot be seeded (`Device::Cpu.set_seed` returns an error and its
//! random tensors come from the thread RNG), so a `VarMap`-backed `VarBuilder` gives new
//! weights on every run. [`seeded_var_builder`] draws the initial values from a seeded RNG
//! instead, honouring the same `Init` hints, and stores them in the caller's `VarMap` as
//! trainable variables. It must produce exactly what a plain `VarBuilder::from_varmap` would
//! store, except for where the random numbers come from.

use std::sync::Mutex;

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::NormalOrUniform;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

struct SeededBackend {
    map: VarMap,
    rng: Mutex<StdRng>,
}

fn lock_error() -> candle_core::Error {
    candle_core::Error::Msg("a thread panicked while holding the seeded initialiser".to_string())
}

/// A standard normal sample by Box–Muller (rand 0.9 has no normal distribution of its own).
fn std_normal(rng: &mut StdRng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn sample(init: Init, shape: &Shape, rng: &mut StdRng) -> Vec<f64> {
    let n = shape.elem_count();
    let normal = |rng: &mut StdRng, mean: f64, std: f64| (0..n).map(|_| mean + std * std_normal(rng)).collect();
    let uniform = |rng: &mut StdRng, lo: f64, up: f64| (0..n).map(|_| lo + (up - lo) * rng.random::<f64>()).collect();
    match init {
        Init::Const(v) => vec![v; n],
        Init::Uniform { lo, up } => uniform(rng, lo, up),
        Init::Randn { mean, stdev } => normal(rng, mean, stdev),
        Init::Kaiming { dist, fan, non_linearity } => {
            let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
            match dist {
                NormalOrUniform::Normal => normal(rng, 0.0, std),
                NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    uniform(rng, -bound, bound)
                }
            }
        }
    }
}

impl SimpleBackend for SeededBackend {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut data = self.map.data().lock().map_err(|_| lock_error())?;
        if let Some(var) = data.get(name) {
            if var.shape() != &s {
                candle_core::bail!("shape mismatch on {name}: {s:?} <> {:?}", var.shape());
            }
            return Ok(var.as_tensor().clone());
        }
        let values = {
            let mut rng = self.rng.lock().map_err(|_| lock_error())?;
            sample(h, &s, &mut rng)
        };
        let tensor = Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&tensor)?;
        let out = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, _name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle_core::bail!("the seeded initialiser needs shapes; use `get` rather than `get_unchecked`")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.map.data().lock().is_ok_and(|d| d.contains_key(name))
    }
}

/// A `VarBuilder` that creates missing variables in `map` from an RNG seeded with `seed`
/// (existing ones are returned as they are). Building the same modules in the same order
/// with the same seed gives identical weights.
pub fn seeded_var_builder(map: &VarMap, seed: u64, dtype: DType, device: &Device) -> VarBuilder<'static> {
    let backend = SeededBackend { map: map.clone(), rng: Mutex::new(StdRng::seed_from_u64(seed)) };
    VarBuilder::from_backend(Box::new(backend), dtype, device.clone())
}
