//! Training-step timer behind `bench/speed/run.sh`: one supervised step (forward,
//! cross-entropy, backward, AdamW) of issue 7's ConvNet or the CIFAR ResNet-18, with
//! candle's stock convolution or ours, printing one JSON line per measurement.
//!
//! It only measures; the table and ratios are made by `bench/speed/table.py`. It must build
//! the same networks as `bench/speed/torch_step.py`, or the comparison means nothing.
//!
//! `cargo run --release -p pretext-core --example step_speed -- [convnet|tiles|resnet18|vit-tiny] [stock|lowered|fast] [steps]`

use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use pretext_core::model::{
    BatchNorm, Conv2d, ConvImpl, Linear, ResNet18, Vit, VitShape, linear, seeded_var_builder, set_conv_impl,
};
use pretext_core::task::{Optimizer, OptimizerConfig, named_vars};

/// The ConvNet: four 3×3 convolutions of 32 channels (strides 1, 2, 2, 2), each with
/// BatchNorm and ReLU, global average pool, linear classifier.
struct SmallConvNet {
    blocks: Vec<(Conv2d, BatchNorm)>,
}

impl SmallConvNet {
    fn new(vb: &VarBuilder) -> Result<Self> {
        let mut blocks = Vec::new();
        let mut in_c = 1;
        for (i, stride) in [1, 2, 2, 2].into_iter().enumerate() {
            let conv = Conv2d::new(in_c, 32, 3, stride, 1, false, vb.pp(format!("conv{i}")))?;
            blocks.push((conv, BatchNorm::new(32, vb.pp(format!("bn{i}")))?));
            in_c = 32;
        }
        Ok(Self { blocks })
    }

    fn features(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for (conv, bn) in &self.blocks {
            h = bn.forward_relu_t(&conv.forward(&h)?, true)?;
        }
        h.mean((2, 3))
    }
}

enum Net {
    Small(SmallConvNet),
    Resnet(ResNet18),
    Vit(Vit),
}

struct Setup {
    net: Net,
    head: Linear,
    map: VarMap,
    x: Tensor,
    y: Tensor,
}

fn setup(model: &str, dev: &Device) -> Result<Setup> {
    let map = VarMap::new();
    let vb = seeded_var_builder(&map, 0, DType::F32, dev);
    let (net, batch, shape, feat) = match model {
        "convnet" => (Net::Small(SmallConvNet::new(&vb.pp("net"))?), 256, (1, 28, 28), 32),
        // The same network on Jigsaw's puzzle pieces: 256 images × 9 tiles of 7×7 pixels,
        // where every map is small and per-call overhead weighs more than arithmetic.
        "tiles" => (Net::Small(SmallConvNet::new(&vb.pp("net"))?), 256 * 9, (1, 7, 7), 32),
        "resnet18" => (Net::Resnet(ResNet18::new(3, 64, vb.pp("net"))?), 64, (3, 32, 32), 512),
        "vit-tiny" => {
            let shape = VitShape { dim: 192, depth: 12, heads: 3, patch: 4, image: 28 };
            (Net::Vit(Vit::new(1, shape, vb.pp("net"))?), 64, (1, 28, 28), 192)
        }
        other => candle_core::bail!("unknown model `{other}` (convnet, tiles, resnet18 or vit-tiny)"),
    };
    let head = linear(feat, 10, &vb.pp("head"))?;
    let x = Tensor::randn(0f32, 1.0, (batch, shape.0, shape.1, shape.2), dev)?;
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
    let y = Tensor::new(labels, dev)?;
    Ok(Setup { net, head, map, x, y })
}

/// Seconds spent in forward (with the loss), backward and the optimizer update.
fn step(s: &Setup, opt: &mut Optimizer) -> Result<[f64; 3]> {
    let t0 = Instant::now();
    let f = match &s.net {
        Net::Small(n) => n.features(&s.x)?,
        Net::Resnet(n) => n.forward_t(&s.x, true)?,
        Net::Vit(n) => n.forward(&s.x)?,
    };
    let loss = candle_nn::loss::cross_entropy(&s.head.forward(&f)?, &s.y)?;
    // Reading the loss forces the (lazy-free, but possibly asynchronous on GPUs) forward.
    let _ = loss.to_scalar::<f32>()?;
    let t1 = Instant::now();
    let grads = loss.backward()?;
    let t2 = Instant::now();
    opt.step(&grads, 1e-3)?;
    let t3 = Instant::now();
    Ok([(t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64(), (t3 - t2).as_secs_f64()])
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    pretext_core::host::tune_for_training();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args.first().map_or("convnet", String::as_str);
    let which = args.get(1).map_or("fast", String::as_str);
    let steps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    set_conv_impl(match which {
        "stock" => ConvImpl::Stock,
        "lowered" => ConvImpl::Lowered,
        _ => ConvImpl::Fast,
    });
    let dev = Device::Cpu;
    let s = setup(model, &dev)?;
    let mut opt = Optimizer::new(OptimizerConfig::default(), named_vars(&s.map)?);
    // Two warm-up steps: the first allocates the optimizer's moments and warms the caches.
    for _ in 0..2 {
        step(&s, &mut opt)?;
    }
    let mut parts = [Vec::new(), Vec::new(), Vec::new()];
    let mut totals = Vec::new();
    for _ in 0..steps {
        let t = step(&s, &mut opt)?;
        for (p, v) in parts.iter_mut().zip(t) {
            p.push(v);
        }
        totals.push(t.iter().sum());
    }
    let [fwd, bwd, optim] = parts.map(median);
    println!(
        "{{\"model\": \"{model}\", \"impl\": \"candle-{which}\", \"threads\": {}, \"steps\": {steps}, \"step_s\": {:.5}, \"forward_s\": {fwd:.5}, \"backward_s\": {bwd:.5}, \"optimizer_s\": {optim:.5}}}",
        rayon::current_num_threads(),
        median(totals)
    );
    Ok(())
}
