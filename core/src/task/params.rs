//! Model parameters with an initialisation that depends only on a seed.
//!
//! candle's CPU device cannot be seeded, so `VarMap` initialisation differs from run to run
//! and between CPU and CUDA. This backend draws every initial value from a seeded `StdRng`
//! on the host, in the order the model asks for them, then moves it to the device: the same
//! seed gives the same network on any device, which `--seed` and CPU/CUDA checks rely on.

use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarMap};
use candle_nn::init::NormalOrUniform;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A `VarMap` whose new variables are initialised from a seeded RNG.
pub struct SeededVarMap {
    map: VarMap,
    rng: Mutex<StdRng>,
}

impl SeededVarMap {
    pub fn new(seed: u64) -> Self {
        Self { map: VarMap::new(), rng: Mutex::new(StdRng::seed_from_u64(seed)) }
    }

    pub fn var_map(&self) -> &VarMap {
        &self.map
    }

    /// All variables with their names, sorted by name so that iteration order is stable.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let data = match self.map.data().lock() {
            Ok(d) => d,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut vars: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    fn sample(&self, init: Init, shape: &Shape) -> Vec<f32> {
        let n = shape.elem_count();
        let mut rng = match self.rng.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (uniform, a, b) = match init {
            #[allow(clippy::cast_possible_truncation)]
            Init::Const(v) => return vec![v as f32; n],
            Init::Uniform { lo, up } => (true, lo, up),
            Init::Randn { mean, stdev } => (false, mean, stdev),
            Init::Kaiming { dist, fan, non_linearity } => {
                #[allow(clippy::cast_precision_loss)]
                let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                match dist {
                    NormalOrUniform::Uniform => (true, -(3f64.sqrt()) * std, 3f64.sqrt() * std),
                    NormalOrUniform::Normal => (false, 0.0, std),
                }
            }
        };
        #[allow(clippy::cast_possible_truncation)]
        (0..n)
            .map(|_| {
                if uniform {
                    rng.random_range(a..=b) as f32
                } else {
                    // Box–Muller: two uniforms give one standard normal.
                    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                    let u2: f64 = rng.random();
                    (a + b * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
                }
            })
            .collect()
    }
}

impl SimpleBackend for SeededVarMap {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        if self.map.contains_tensor(name) {
            return self.map.get(s, name, h, dtype, dev);
        }
        let values = self.sample(h, &s);
        let tensor = Tensor::from_vec(values, s, &Device::Cpu)?.to_dtype(dtype)?.to_device(dev)?;
        let var = Var::from_tensor(&tensor)?;
        let out = var.as_tensor().clone();
        match self.map.data().lock() {
            Ok(mut d) => d.insert(name.to_string(), var),
            Err(poisoned) => poisoned.into_inner().insert(name.to_string(), var),
        };
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.map.get_unchecked(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.map.contains_tensor(name)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_nn::VarBuilder;

    use super::*;

    fn init(seed: u64) -> Vec<f32> {
        let map = SeededVarMap::new(seed);
        let vb = VarBuilder::from_backend(Box::new(map), DType::F32, Device::Cpu);
        let t = vb.get_with_hints((64, 16), "w", candle_nn::init::DEFAULT_KAIMING_NORMAL).unwrap();
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn same_seed_same_weights_and_kaiming_std() {
        let a = init(7);
        assert_eq!(a, init(7));
        assert_ne!(a, init(8));
        #[allow(clippy::cast_precision_loss)]
        let var = a.iter().map(|v| v * v).sum::<f32>() / a.len() as f32;
        // Kaiming normal, fan_in 16, ReLU gain: variance 2/16.
        assert!((var - 0.125).abs() < 0.02, "variance {var}");
    }
}
