//! Turning image bytes and tensors into egui textures: PNGs from `samples/` and the
//! embedding atlas (decoded with the `image` crate), and the first layer's kernels (a
//! CNN's first convolution, a ViT's patch embedding) read from a checkpoint's safetensors.

use egui::{ColorImage, TextureHandle, TextureOptions};
use pretext_core::model::BackboneKind;

/// Decodes a PNG (or JPEG) into an egui texture. Pixel art is shown with nearest filtering.
pub fn load_texture(ctx: &egui::Context, name: &str, bytes: &[u8]) -> Result<TextureHandle, String> {
    let image = image::load_from_memory(bytes).map_err(|e| format!("not an image the viewer can read ({e})"))?;
    Ok(ctx.load_texture(name, color_image(&image), TextureOptions::NEAREST))
}

/// Decodes a greyscale attention atlas into a heat overlay: transparent where a map is 0,
/// through red to opaque yellow at its peak, to be painted over the image it belongs to.
pub fn load_attention_overlay(ctx: &egui::Context, name: &str, bytes: &[u8]) -> Result<TextureHandle, String> {
    let image = image::load_from_memory(bytes).map_err(|e| format!("not an image the viewer can read ({e})"))?;
    let grey = image.to_luma8();
    let size = [grey.width() as usize, grey.height() as usize];
    let pixels = grey.pixels().map(|p| heat(p.0[0])).collect();
    Ok(ctx.load_texture(name, ColorImage::new(size, pixels), TextureOptions::NEAREST))
}

/// A level of 0..=255 as a translucent red-to-yellow colour; at most 70% opaque so the
/// image shows through.
fn heat(level: u8) -> egui::Color32 {
    let t = f32::from(level) / 255.0;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let (g, a) = ((30.0 + 210.0 * t * t) as u8, (180.0 * t) as u8);
    egui::Color32::from_rgba_unmultiplied(255, g, 0, a)
}

/// An image as egui's pixels.
pub fn color_image(image: &image::DynamicImage) -> ColorImage {
    let rgba = image.to_rgba8();
    let size = [rgba.width() as usize, rgba.height() as usize];
    ColorImage::from_rgba_unmultiplied(size, rgba.as_raw())
}

/// The kernels of a checkpoint's first layer, laid out as a grid in one texture.
pub struct Filters {
    pub texture: TextureHandle,
    /// (out channels, in channels, kernel height, kernel width).
    pub shape: [usize; 4],
    pub tensor: String,
}

/// The names the first layer's weight can have in a checkpoint, one per backbone family: a
/// CNN's first convolution (torchvision names) or a ViT's patch embedding (timm names).
fn first_layers() -> Vec<String> {
    let mut names: Vec<String> = BackboneKind::ALL.iter().map(|k| format!("backbone.{}", k.first_layer())).collect();
    names.sort();
    names.dedup();
    names
}

/// Reads the first layer's weight (O, I, kh, kw) from safetensors bytes and paints each
/// output channel as one tile: RGB when the input has three channels, else the mean over
/// input channels in grey. Each kernel is scaled to its own min..max.
pub fn filters_from_safetensors(ctx: &egui::Context, name: &str, bytes: &[u8]) -> Result<Filters, String> {
    let tensors = safetensors::SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file ({e})"))?;
    let wanted = first_layers();
    let Some((first, view)) = wanted.iter().find_map(|n| tensors.tensor(n).ok().map(|v| (n.as_str(), v))) else {
        let mut present = tensors.names();
        present.sort();
        let some: Vec<&str> = present.iter().take(4).copied().collect();
        return Err(format!(
            "has no tensor `{}` (it has {} tensors, e.g. {})",
            wanted.join("` or `"),
            present.len(),
            some.join(", ")
        ));
    };
    let shape: [usize; 4] = view
        .shape()
        .try_into()
        .map_err(|_| format!("`{first}` has shape {:?}, not (out, in, kh, kw)", view.shape()))?;
    if view.dtype() != safetensors::Dtype::F32 {
        return Err(format!("`{first}` is {:?}; the viewer reads F32 weights", view.dtype()));
    }
    let weights: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let [o, i, kh, kw] = shape;
    if o == 0 || i == 0 || kh == 0 || kw == 0 || weights.len() != o * i * kh * kw {
        return Err(format!("`{first}` has shape {shape:?} but {} values", weights.len()));
    }
    let (image, _columns) = filter_grid(&weights, shape);
    let texture = ctx.load_texture(name, image, TextureOptions::NEAREST);
    Ok(Filters { texture, shape, tensor: first.to_string() })
}

/// Tiles `o` kernels of `kh`×`kw` pixels with a one-pixel gap, `ceil(sqrt(o))` per row.
pub fn filter_grid(weights: &[f32], [o, i, kh, kw]: [usize; 4]) -> (ColorImage, usize) {
    let columns = (1..=o).find(|c| c * c >= o).unwrap_or(1);
    let rows = o.div_ceil(columns);
    let (width, height) = (columns * (kw + 1) + 1, rows * (kh + 1) + 1);
    let mut image = ColorImage::filled([width, height], egui::Color32::from_gray(40));
    let plane = kh * kw;
    for k in 0..o {
        let kernel = &weights[k * i * plane..(k + 1) * i * plane];
        let (lo, hi) = kernel.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
        let to_u8 = |v: f32| ((v - lo) * scale).clamp(0.0, 255.0) as u8;
        let (x0, y0) = ((k % columns) * (kw + 1) + 1, (k / columns) * (kh + 1) + 1);
        for y in 0..kh {
            for x in 0..kw {
                let at = y * kw + x;
                let color = if i == 3 {
                    egui::Color32::from_rgb(to_u8(kernel[at]), to_u8(kernel[plane + at]), to_u8(kernel[2 * plane + at]))
                } else {
                    #[allow(clippy::cast_precision_loss)]
                    let mean = (0..i).map(|c| kernel[c * plane + at]).sum::<f32>() / i as f32;
                    egui::Color32::from_gray(to_u8(mean))
                };
                image[(x0 + x, y0 + y)] = color;
            }
        }
    }
    (image, columns)
}
