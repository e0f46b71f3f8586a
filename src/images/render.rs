//! What an upload is and what it becomes, with no I/O: the check of its bytes (format by
//! magic bytes, header dimensions, a complete file) and the WebP renditions.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, imageops::FilterType};

/// The most pixels an upload may have (40 MP): a decompression bomb is refused before a
/// byte of it is decoded.
pub const MAX_PIXELS: u64 = 40_000_000;

/// The renditions, largest first: each fits in a square of this many pixels (never
/// enlarged).
pub const RENDITIONS: [(&str, u32); 3] = [("original", 2048), ("medium", 800), ("thumb", 200)];

/// What an upload turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inspected {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

/// Why an upload is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not JPEG, PNG, WebP or GIF, whatever its name or declared type.
    Unsupported,
    /// It claims a format but is not a readable image of it (why).
    Unreadable(String),
    /// More pixels than [`MAX_PIXELS`].
    TooManyPixels { width: u32, height: u32 },
}

/// Checks an upload by its bytes alone: the format from its magic bytes, the dimensions
/// from its header (nothing is decoded), and that the file is whole.
pub fn inspect(bytes: &[u8]) -> Result<Inspected, Refusal> {
    let format = match image::guess_format(bytes) {
        Ok(
            format @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP | ImageFormat::Gif),
        ) => format,
        _ => return Err(Refusal::Unsupported),
    };
    let (width, height) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|err| Refusal::Unreadable(format!("its header cannot be read ({err})")))?;
    if width == 0 || height == 0 {
        return Err(Refusal::Unreadable("it has no pixels".into()));
    }
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(Refusal::TooManyPixels { width, height });
    }
    if !whole(format, bytes) {
        return Err(Refusal::Unreadable("the file is cut short".into()));
    }
    Ok(Inspected {
        format,
        width,
        height,
    })
}

/// Whether the file ends the way its format ends, so a truncated upload is refused at once
/// rather than failing in the workers.
fn whole(format: ImageFormat, bytes: &[u8]) -> bool {
    match format {
        // The IEND chunk: zero length, its type, its CRC.
        ImageFormat::Png => {
            bytes.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82])
        }
        // An end-of-image marker after the first start-of-scan (data may follow it, as in
        // motion photos; in the scan itself 0xFF is always escaped).
        ImageFormat::Jpeg => {
            let scan = bytes.windows(2).position(|w| w == [0xFF, 0xDA]);
            scan.is_some_and(|at| bytes[at..].windows(2).any(|w| w == [0xFF, 0xD9]))
        }
        // The trailer byte.
        ImageFormat::Gif => bytes.last() == Some(&0x3B),
        // The RIFF header's size covers the rest of the file.
        ImageFormat::WebP => bytes
            .get(4..8)
            .map(|size| u32::from_le_bytes([size[0], size[1], size[2], size[3]]))
            .is_some_and(|size| bytes.len() as u64 >= u64::from(size) + 8),
        _ => false,
    }
}

/// One rendition, encoded.
pub struct Rendition {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// Decodes an inspected upload (within the pixel limit) and makes its renditions: turned
/// upright by its EXIF orientation, then encoded as WebP, which carries none of the
/// upload's metadata (EXIF, GPS, comments). The first frame of an animation is used.
pub fn render(bytes: &[u8]) -> Result<Vec<Rendition>, String> {
    let inspected = inspect(bytes).map_err(|refusal| format!("{refusal:?}"))?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), inspected.format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(inspected.width);
    limits.max_image_height = Some(inspected.height);
    // RGBA with 16 bits a channel at the pixel limit, and room for the conversion.
    limits.max_alloc = Some(MAX_PIXELS * 8 + (64 << 20));
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|err| format!("the image cannot be read: {err}"))?;
    let orientation = decoder
        .orientation()
        .map_err(|err| format!("the image cannot be read: {err}"))?;
    let mut image = DynamicImage::from_decoder(decoder)
        .map_err(|err| format!("the image cannot be decoded: {err}"))?;
    image.apply_orientation(orientation);
    // Converted in place when it is already 8-bit (no second copy of the pixels).
    let image = if image.color().has_alpha() {
        DynamicImage::ImageRgba8(image.into_rgba8())
    } else {
        DynamicImage::ImageRgb8(image.into_rgb8())
    };
    let mut renditions = Vec::with_capacity(RENDITIONS.len());
    // Each from the one before: smaller, so cheaper to resize.
    let mut source = image;
    for (name, size) in RENDITIONS {
        if source.width() > size || source.height() > size {
            source = source.resize(size, size, FilterType::CatmullRom);
        }
        renditions.push(Rendition {
            name,
            bytes: webp(&source)?,
            width: source.width(),
            height: source.height(),
        });
    }
    Ok(renditions)
}

/// The quality of the renditions (libwebp's 0 to 100): photos look as uploaded at a
/// fraction of the bytes.
const QUALITY: f32 = 82.0;

/// Lossy WebP, by libwebp (built from its vendored sources).
fn webp(image: &DynamicImage) -> Result<Vec<u8>, String> {
    let encoder = match image {
        DynamicImage::ImageRgba8(rgba) => {
            webp::Encoder::from_rgba(rgba.as_raw(), image.width(), image.height())
        }
        DynamicImage::ImageRgb8(rgb) => {
            webp::Encoder::from_rgb(rgb.as_raw(), image.width(), image.height())
        }
        _ => return Err("unexpected pixel layout".into()),
    };
    let encoded = encoder
        .encode_simple(false, QUALITY)
        .map_err(|err| format!("cannot encode WebP: {err:?}"))?;
    Ok(encoded.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = RgbImage::from_fn(width, height, |x, y| Rgb([x as u8, y as u8, 128]));
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn encoded(format: ImageFormat) -> Vec<u8> {
        let image = RgbImage::from_fn(40, 30, |x, y| Rgb([x as u8, y as u8, 7]));
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(image)
            .write_to(&mut out, format)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn every_supported_format_passes_whole_and_fails_cut() {
        for format in [
            ImageFormat::Png,
            ImageFormat::Jpeg,
            ImageFormat::Gif,
            ImageFormat::WebP,
        ] {
            let bytes = encoded(format);
            let inspected = inspect(&bytes).unwrap_or_else(|r| panic!("{format:?}: {r:?}"));
            assert_eq!(
                (inspected.format, inspected.width, inspected.height),
                (format, 40, 30)
            );
            let cut = &bytes[..bytes.len() * 2 / 3];
            assert!(
                matches!(inspect(cut), Err(Refusal::Unreadable(_))),
                "{format:?} cut short: {:?}",
                inspect(cut)
            );
        }
    }

    #[test]
    fn text_and_other_formats_are_unsupported() {
        assert_eq!(
            inspect(b"just some text, named photo.jpg"),
            Err(Refusal::Unsupported)
        );
        assert_eq!(inspect(b""), Err(Refusal::Unsupported));
        // Formats the image crate knows, but that are not taken: BMP and TIFF headers.
        let mut bmp = b"BM".to_vec();
        bmp.extend_from_slice(&[0; 64]);
        assert_eq!(inspect(&bmp), Err(Refusal::Unsupported));
        let mut tiff = b"II*\0".to_vec();
        tiff.extend_from_slice(&[8, 0, 0, 0, 0, 0]);
        assert_eq!(inspect(&tiff), Err(Refusal::Unsupported));
    }

    #[test]
    fn a_huge_canvas_is_refused_from_its_header() {
        // A valid PNG header claiming 20,000 x 20,000 pixels, and nothing behind it.
        let mut bytes = png(1, 1);
        bytes[16..20].copy_from_slice(&20_000u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&20_000u32.to_be_bytes());
        let crc = crc32(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            inspect(&bytes),
            Err(Refusal::TooManyPixels {
                width: 20_000,
                height: 20_000
            })
        );
    }

    /// The CRC-32 of PNG chunks.
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for byte in data {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn renditions_fit_their_boxes_and_are_webp() {
        let renditions = render(&png(900, 300)).unwrap();
        let sizes: Vec<(&str, u32, u32)> = renditions
            .iter()
            .map(|r| (r.name, r.width, r.height))
            .collect();
        assert_eq!(
            sizes,
            [
                ("original", 900, 300),
                ("medium", 800, 267),
                ("thumb", 200, 67)
            ]
        );
        for rendition in &renditions {
            assert_eq!(
                image::guess_format(&rendition.bytes).unwrap(),
                ImageFormat::WebP
            );
            let decoded = image::load_from_memory(&rendition.bytes).unwrap();
            assert_eq!(
                (decoded.width(), decoded.height()),
                (rendition.width, rendition.height)
            );
        }
    }
}
