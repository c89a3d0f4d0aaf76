//! Turn an RGB8 tile into the model's normalised NCHW f32 tensor.
//! It owns only the pixel arithmetic: x = (pixel / 255 - mean[c]) / std[c],
//! with mean and std on the 0..1 scale as the manifest states them. It must
//! not resample or stain-normalise (tiling and stain do that first).

use image::RgbImage;

use super::manifest::{ChannelOrder, InputSpec};
use super::{values_per_tile, ModelError};

/// Write `tile` into `out` (length 3 * tile_px², channel planes in the
/// manifest's channel order). The tile must already be tile_px square.
pub fn tile_into(tile: &RgbImage, spec: &InputSpec, out: &mut [f32]) -> Result<(), ModelError> {
    let px = spec.tile_px;
    if tile.width() != px || tile.height() != px {
        return Err(ModelError::TileSize {
            width: tile.width(),
            height: tile.height(),
            expected: px,
        });
    }
    let plane = px as usize * px as usize;
    check_one_tile(out.len(), spec)?;
    // The formula for each of a channel's 256 levels, once: the same f32 operations
    // on the same values, so the same bits, without three divisions a value.
    let levels = |c: usize| -> [f32; 256] {
        std::array::from_fn(|v| (v as f32 / 255.0 - spec.mean[c]) / spec.std[c])
    };
    let tables = [levels(0), levels(1), levels(2)];
    let src = source_channels(spec);
    let (first, rest) = out.split_at_mut(plane);
    let (second, third) = rest.split_at_mut(plane);
    for (i, p) in tile.as_raw().chunks_exact(3).enumerate() {
        first[i] = tables[0][p[src[0]] as usize];
        second[i] = tables[1][p[src[1]] as usize];
        third[i] = tables[2][p[src[2]] as usize];
    }
    Ok(())
}

/// The RGB channel feeding each tensor channel.
fn source_channels(spec: &InputSpec) -> [usize; 3] {
    match spec.channel_order {
        ChannelOrder::Rgb => [0, 1, 2],
        ChannelOrder::Bgr => [2, 1, 0],
    }
}

/// Refuses a buffer that is not exactly one tile's values.
fn check_one_tile(len: usize, spec: &InputSpec) -> Result<(), ModelError> {
    if len == values_per_tile(spec) {
        return Ok(());
    }
    Err(ModelError::BatchShape {
        got: len,
        n: 1,
        per_tile: values_per_tile(spec),
        max: 1,
    })
}

/// Preprocess one tile into a fresh vector.
pub fn tile_to_nchw(tile: &RgbImage, spec: &InputSpec) -> Result<Vec<f32>, ModelError> {
    let mut out = vec![0.0; values_per_tile(spec)];
    tile_into(tile, spec, &mut out)?;
    Ok(out)
}

/// The RGB8 tile that [`tile_into`] turns into `values` (rounded to the nearest
/// level): recovers the phantom tiles behind a parity fixture, so benchmarks and
/// tests can feed them through the product's tile stream.
pub fn tile_from_nchw(values: &[f32], spec: &InputSpec) -> Result<RgbImage, ModelError> {
    let px = spec.tile_px;
    let plane = px as usize * px as usize;
    check_one_tile(values.len(), spec)?;
    let mut tile = RgbImage::new(px, px);
    for (c, &src) in source_channels(spec).iter().enumerate() {
        let (mean, std) = (spec.mean[c], spec.std[c]);
        for (v, p) in values[c * plane..(c + 1) * plane]
            .iter()
            .zip(tile.pixels_mut())
        {
            p.0[src] = ((v * std + mean) * 255.0).round().clamp(0.0, 255.0) as u8;
        }
    }
    Ok(tile)
}

/// Preprocess tiles back to back into one batch buffer.
pub fn batch_to_nchw(tiles: &[RgbImage], spec: &InputSpec) -> Result<Vec<f32>, ModelError> {
    let per_tile = values_per_tile(spec);
    let mut out = vec![0.0; per_tile * tiles.len()];
    for (tile, dst) in tiles.iter().zip(out.chunks_mut(per_tile)) {
        tile_into(tile, spec, dst)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::Layout;
    use proptest::prelude::*;

    fn spec(px: u32, order: ChannelOrder) -> InputSpec {
        InputSpec {
            tile_px: px,
            mpp: 1.0,
            layout: Layout::Nchw,
            channel_order: order,
            mean: [0.1, 0.5, 0.9],
            std: [0.5, 0.25, 0.125],
        }
    }

    proptest! {
        #[test]
        fn matches_naive_per_pixel_formula(seed in any::<u64>(), bgr in any::<bool>()) {
            let order = if bgr { ChannelOrder::Bgr } else { ChannelOrder::Rgb };
            let s = spec(5, order);
            let tile = RgbImage::from_fn(5, 5, |x, y| {
                let v = seed.wrapping_mul(31).wrapping_add((x * 7 + y * 13) as u64);
                image::Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
            });
            let out = tile_to_nchw(&tile, &s).unwrap();
            for y in 0..5u32 {
                for x in 0..5u32 {
                    let p = tile.get_pixel(x, y).0;
                    for c in 0..3 {
                        let src = if bgr { 2 - c } else { c };
                        let want = (p[src] as f32 / 255.0 - s.mean[c]) / s.std[c];
                        let got = out[c * 25 + (y * 5 + x) as usize];
                        prop_assert_eq!(got, want);
                    }
                }
            }
        }

        #[test]
        fn tile_from_nchw_inverts_preprocessing(seed in any::<u64>(), bgr in any::<bool>()) {
            let order = if bgr { ChannelOrder::Bgr } else { ChannelOrder::Rgb };
            let s = spec(7, order);
            let tile = RgbImage::from_fn(7, 7, |x, y| {
                let v = seed.wrapping_mul(0x9e37_79b9).wrapping_add((x * 11 + y * 17) as u64);
                image::Rgb([v as u8, (v >> 8) as u8, (v >> 24) as u8])
            });
            let back = tile_from_nchw(&tile_to_nchw(&tile, &s).unwrap(), &s).unwrap();
            prop_assert_eq!(back, tile);
        }
    }

    #[test]
    fn wrong_size_tile_is_refused() {
        let err = tile_to_nchw(&RgbImage::new(4, 5), &spec(5, ChannelOrder::Rgb)).unwrap_err();
        assert!(err.to_string().contains("4x5"), "{err}");
    }

    #[test]
    fn batch_lays_tiles_back_to_back() {
        let s = spec(2, ChannelOrder::Rgb);
        let a = RgbImage::from_pixel(2, 2, image::Rgb([0, 0, 0]));
        let b = RgbImage::from_pixel(2, 2, image::Rgb([255, 255, 255]));
        let out = batch_to_nchw(&[a, b], &s).unwrap();
        assert_eq!(out.len(), 24);
        assert_eq!(out[0], (0.0 - 0.1) / 0.5);
        assert_eq!(out[12], (1.0 - 0.1) / 0.5);
    }
}
