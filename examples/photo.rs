//! Writes a photo-like JPEG for `bench/images.sh`: `photo <width> <height> <path>`.
//! Smooth light, a few soft shapes and fine grain, so it compresses (and decodes) the way
//! a camera's picture does rather than like a flat fill or pure noise.

use image::{Rgb, RgbImage, codecs::jpeg::JpegEncoder};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, width, height, path] = args.as_slice() else {
        anyhow::bail!("usage: photo <width> <height> <path>");
    };
    let (width, height): (u32, u32) = (width.parse()?, height.parse()?);
    let (w, h) = (f64::from(width), f64::from(height));
    let image = RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (f64::from(x) / w, f64::from(y) / h);
        // Grain: a cheap hash of the position, a few levels either way.
        let mut n = u64::from(x).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ u64::from(y).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        n ^= n >> 29;
        let grain = (n % 17) as f64 - 8.0;
        let light = 0.55 + 0.45 * (1.0 - ((fx - 0.3).powi(2) + (fy - 0.25).powi(2)).sqrt());
        let shape = (fx * 9.0).sin() * (fy * 7.0).cos() * 40.0;
        let channel =
            |base: f64, tilt: f64| (base * light + shape * tilt + grain).clamp(0.0, 255.0) as u8;
        Rgb([
            channel(200.0 - 60.0 * fy, 1.0),
            channel(150.0 + 50.0 * fx, 0.6),
            channel(110.0 + 90.0 * fy, -0.8),
        ])
    });
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    JpegEncoder::new_with_quality(file, 90).encode_image(&image)?;
    Ok(())
}
