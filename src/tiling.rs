//! The `tiling` stage: the grid of tiles the model sees, at the model's MPP and tile size.
//!
//! It owns the choice of pyramid level, the level-0 and level-n rectangles of each
//! tile, tissue filtering, and resampling a read region to exactly the model's tile
//! size. It never decides what a tile shows; the model and aggregation do.

use std::path::PathBuf;

use image::RgbImage;

use crate::slide::{Mpp, Rect, SlideError, SlideInfo, SlideReader};
use crate::tissue::TissueMask;

/// Options for [`TileGrid::build`]. `Default`: 224 px tiles at 0.5 µm/px, no overlap,
/// at least half of a tile must be tissue. The model manifest supplies the real values.
#[derive(Debug, Clone, PartialEq)]
pub struct TilingOptions {
    /// Side of the square tile the model takes, in model pixels.
    pub tile_px: u32,
    /// Microns per pixel the model expects.
    pub model_mpp: f64,
    /// Overlap between neighbouring tiles in model pixels (`--overlap`); stride is
    /// `tile_px - overlap_px`.
    pub overlap_px: u32,
    /// Keep tiles whose tissue fraction is at least this (`--min-tissue`).
    pub min_tissue: f64,
    /// Refuse grids of more candidate tiles than this (a guard against absurd MPPs).
    pub max_tiles: u64,
}

impl Default for TilingOptions {
    fn default() -> Self {
        TilingOptions {
            tile_px: 224,
            model_mpp: 0.5,
            overlap_px: 0,
            min_tissue: 0.5,
            max_tiles: 4_000_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TilingError {
    #[error(
        "{path}: the slide's microns per pixel are unknown, so it cannot be tiled at the \
         model's scale; pass --mpp (for example --mpp 0.5 for a 20x scan)"
    )]
    NoMpp { path: PathBuf },
    #[error("bad tiling options: {0}")]
    Options(String),
    #[error("{path}: refused: the grid would have {tiles} tiles, above the limit of {limit} (max_tiles in TilingOptions)")]
    TooManyTiles {
        path: PathBuf,
        tiles: u64,
        limit: u64,
    },
    #[error("{path}: the slide has no pyramid levels")]
    NoLevels { path: PathBuf },
}

/// One tile of the grid.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Tile {
    /// Column and row in the grid (stride steps), used for connectivity.
    pub col: u32,
    pub row: u32,
    /// The tile's area on the slide, in level-0 pixels (may reach past the edge).
    pub level0: Rect,
    /// Tissue fraction of `level0` under the mask.
    pub tissue_fraction: f64,
}

/// The grid of tiles of one slide at the model's scale.
#[derive(Debug, Clone, PartialEq)]
pub struct TileGrid {
    pub tile_px: u32,
    pub model_mpp: f64,
    /// Level read from, and its downsample along x and y relative to level 0.
    pub level: usize,
    pub level_downsample_x: f64,
    pub level_downsample_y: f64,
    /// Level-0 pixels per tile and per stride, along x and y (fractional).
    pub tile_level0_x: f64,
    pub tile_level0_y: f64,
    pub stride_level0_x: f64,
    pub stride_level0_y: f64,
    pub cols: u32,
    pub rows: u32,
    /// Tiles kept (tissue fraction ≥ `min_tissue`), in row-major order.
    pub tiles: Vec<Tile>,
}

impl TileGrid {
    /// Builds the grid for a slide. Every candidate tile is tested against the mask;
    /// with `mask = None` every tile is kept (tissue fraction 1).
    pub fn build(
        path: &std::path::Path,
        info: &SlideInfo,
        mask: Option<&TissueMask>,
        options: &TilingOptions,
    ) -> Result<TileGrid, TilingError> {
        let mpp = info.mpp.ok_or_else(|| TilingError::NoMpp {
            path: path.to_path_buf(),
        })?;
        if options.tile_px == 0 || options.overlap_px >= options.tile_px {
            return Err(TilingError::Options(format!(
                "overlap ({} px) must be smaller than the tile ({} px)",
                options.overlap_px, options.tile_px
            )));
        }
        if !(options.model_mpp.is_finite() && options.model_mpp > 0.0) {
            return Err(TilingError::Options(format!(
                "the model's MPP must be positive, got {}",
                options.model_mpp
            )));
        }
        let l0 = *info.levels.first().ok_or_else(|| TilingError::NoLevels {
            path: path.to_path_buf(),
        })?;
        let level = choose_level(info, mpp, options.model_mpp);
        let lv = info.levels[level];
        let (dsx, dsy) = (
            l0.width as f64 / lv.width.max(1) as f64,
            l0.height as f64 / lv.height.max(1) as f64,
        );
        // Counted arithmetically before any loop: an absurd MPP asks for more tiles
        // than there are atoms, and counting them one by one would never end.
        let estimate = Geometry::estimate(l0.width, l0.height, mpp, options);
        if estimate.is_nan() || estimate > options.max_tiles as f64 {
            return Err(TilingError::TooManyTiles {
                path: path.to_path_buf(),
                tiles: if estimate.is_nan() {
                    u64::MAX
                } else {
                    estimate.min(u64::MAX as f64) as u64
                },
                limit: options.max_tiles,
            });
        }
        let geometry = Geometry::new(l0.width, l0.height, mpp, options);
        let candidates = geometry.cols as u64 * geometry.rows as u64;
        if candidates > options.max_tiles {
            return Err(TilingError::TooManyTiles {
                path: path.to_path_buf(),
                tiles: candidates,
                limit: options.max_tiles,
            });
        }
        let mut tiles = Vec::new();
        for row in 0..geometry.rows {
            for col in 0..geometry.cols {
                let level0 = geometry.rect(col, row);
                let tissue_fraction = mask.map_or(1.0, |m| m.fraction_in(level0));
                if mask.is_none() || tissue_fraction >= options.min_tissue {
                    tiles.push(Tile {
                        col,
                        row,
                        level0,
                        tissue_fraction,
                    });
                }
            }
        }
        Ok(TileGrid {
            tile_px: options.tile_px,
            model_mpp: options.model_mpp,
            level,
            level_downsample_x: dsx,
            level_downsample_y: dsy,
            tile_level0_x: geometry.tile_x,
            tile_level0_y: geometry.tile_y,
            stride_level0_x: geometry.stride_x,
            stride_level0_y: geometry.stride_y,
            cols: geometry.cols,
            rows: geometry.rows,
            tiles,
        })
    }

    /// Area one grid step covers in µm² (the stride, so overlapping tiles are not
    /// counted twice), given the slide's MPP.
    pub fn stride_area_um2(&self, mpp: Mpp) -> f64 {
        self.stride_level0_x * mpp.x * self.stride_level0_y * mpp.y
    }

    /// The rectangle to read at `self.level` for `tile`, and the tile's exact
    /// (fractional) window inside that read, in level pixels: `(read, [x, y, w, h])`.
    pub fn read_plan(&self, tile: &Tile) -> (Rect, [f64; 4]) {
        let fx0 = tile.level0.x as f64 / self.level_downsample_x;
        let fy0 = tile.level0.y as f64 / self.level_downsample_y;
        let fx1 = (tile.level0.x + tile.level0.width as i64) as f64 / self.level_downsample_x;
        let fy1 = (tile.level0.y + tile.level0.height as i64) as f64 / self.level_downsample_y;
        let (x0, y0) = (fx0.floor(), fy0.floor());
        let (x1, y1) = (fx1.ceil().max(x0 + 1.0), fy1.ceil().max(y0 + 1.0));
        let read = Rect::new(x0 as i64, y0 as i64, (x1 - x0) as u32, (y1 - y0) as u32);
        (read, [fx0 - x0, fy0 - y0, fx1 - fx0, fy1 - fy0])
    }

    /// Reads `tile` from the chosen level and resamples it to `tile_px` × `tile_px`.
    pub fn read_tile(&self, reader: &dyn SlideReader, tile: &Tile) -> Result<RgbImage, SlideError> {
        let region = self.read_tile_region(reader, tile)?;
        Ok(self.resample_tile(&region, tile))
    }

    /// The first half of [`TileGrid::read_tile`]: the level region `tile` needs, as
    /// the reader decodes it (kept apart so the pipeline can time decoding alone).
    pub fn read_tile_region(
        &self,
        reader: &dyn SlideReader,
        tile: &Tile,
    ) -> Result<RgbImage, SlideError> {
        reader.read_region(self.level, self.read_plan(tile).0)
    }

    /// The second half of [`TileGrid::read_tile`]: `region` from
    /// [`TileGrid::read_tile_region`] resampled to `tile_px` × `tile_px`.
    pub fn resample_tile(&self, region: &RgbImage, tile: &Tile) -> RgbImage {
        resample_area(region, self.read_plan(tile).1, self.tile_px, self.tile_px)
    }
}

/// The pyramid level nearest to the model's MPP that is not coarser than it
/// (level 0 when even level 0 is coarser: the tile is then upsampled).
pub fn choose_level(info: &SlideInfo, mpp: Mpp, model_mpp: f64) -> usize {
    let l0 = match info.levels.first() {
        Some(l) => *l,
        None => return 0,
    };
    let mut best = 0;
    for (i, l) in info.levels.iter().enumerate() {
        let level_mpp = mpp.mean() * (l0.width as f64 / l.width.max(1) as f64);
        // A hair of tolerance so a level at exactly the model's MPP still counts.
        if level_mpp <= model_mpp * (1.0 + 1e-6) {
            best = i;
        }
    }
    best
}

/// Grid geometry in level-0 pixels: tile `i` starts at `round(i * stride)` and
/// ends at `round(i * stride + tile)`. With no overlap, consecutive tiles share
/// their edge exactly, so the grid covers the slide once.
struct Geometry {
    tile_x: f64,
    tile_y: f64,
    stride_x: f64,
    stride_y: f64,
    cols: u32,
    rows: u32,
}

impl Geometry {
    /// The number of grid cells, within a cell per axis of [`Geometry::new`]'s
    /// exact count, computed without a loop (infinite or NaN for absurd inputs).
    fn estimate(width: u64, height: u64, mpp: Mpp, o: &TilingOptions) -> f64 {
        let step = (o.tile_px - o.overlap_px) as f64 / o.tile_px as f64;
        let axis = |extent: u64, mpp: f64| -> f64 {
            if extent == 0 {
                return 0.0;
            }
            let tile = o.tile_px as f64 * o.model_mpp / mpp;
            ((extent as f64 - tile).max(0.0) / (tile * step)).ceil() + 1.0
        };
        axis(width, mpp.x) * axis(height, mpp.y)
    }

    fn new(width: u64, height: u64, mpp: Mpp, o: &TilingOptions) -> Geometry {
        let tile_x = o.tile_px as f64 * o.model_mpp / mpp.x;
        let tile_y = o.tile_px as f64 * o.model_mpp / mpp.y;
        let step = (o.tile_px - o.overlap_px) as f64 / o.tile_px as f64;
        let (stride_x, stride_y) = (tile_x * step, tile_y * step);
        // Enough steps that the last tile reaches the far edge.
        let count = |extent: u64, tile: f64, stride: f64| -> u32 {
            if extent == 0 {
                return 0;
            }
            let beyond = (extent as f64 - tile).max(0.0);
            let mut n = (beyond / stride).ceil() as u64 + 1;
            while n > 1 && ((n - 2) as f64 * stride + tile).round() >= extent as f64 {
                n -= 1;
            }
            while ((n - 1) as f64 * stride + tile).round() < extent as f64 {
                n += 1;
            }
            n.min(u32::MAX as u64) as u32
        };
        Geometry {
            tile_x,
            tile_y,
            stride_x,
            stride_y,
            cols: count(width, tile_x, stride_x),
            rows: count(height, tile_y, stride_y),
        }
    }

    fn rect(&self, col: u32, row: u32) -> Rect {
        let x0 = (col as f64 * self.stride_x).round() as i64;
        let y0 = (row as f64 * self.stride_y).round() as i64;
        let x1 = (col as f64 * self.stride_x + self.tile_x).round() as i64;
        let y1 = (row as f64 * self.stride_y + self.tile_y).round() as i64;
        Rect::new(x0, y0, (x1 - x0).max(1) as u32, (y1 - y0).max(1) as u32)
    }
}

/// Area-weighted ("box") resampling of the window `[x, y, w, h]` (fractional, in
/// `src` pixels) to `out_w` × `out_h`. Each output pixel is the mean of the source
/// area it covers, each source pixel weighted by its overlap. Upsampling degrades
/// gracefully to nearest-with-blended-edges. Source pixels outside `src` are
/// clamped to the nearest edge pixel.
pub fn resample_area(src: &RgbImage, window: [f64; 4], out_w: u32, out_h: u32) -> RgbImage {
    let [wx, wy, ww, wh] = window;
    let (sw, sh) = src.dimensions();
    let xs = weights(wx, ww, out_w, sw);
    let ys = weights(wy, wh, out_h, sh);
    let row_len = out_w as usize * 3;
    let raw = src.as_raw();
    if let (Some(x0), Some(y0)) = (whole_pixel_crop(&xs), whole_pixel_crop(&ys)) {
        // Every output pixel is one source pixel at weight 1 (a level at the model's
        // MPP on whole-pixel offsets): the sums below would return it unchanged.
        let mut out = Vec::with_capacity(out_h as usize * row_len);
        for y in y0..y0 + out_h as usize {
            let start = (y * sw as usize + x0) * 3;
            out.extend_from_slice(&raw[start..start + row_len]);
        }
        return RgbImage::from_raw(out_w, out_h, out).expect("buffer sized out_w * out_h * 3");
    }
    // Horizontal pass into f32 rows of out_w pixels, for the band of source rows the
    // vertical pass reads (area taps cover a contiguous band, edges clamped into it).
    let first = ys.iter().flatten().map(|&(i, _)| i as usize).min();
    let last = ys.iter().flatten().map(|&(i, _)| i as usize).max();
    let (first, band) = match (first, last) {
        (Some(first), Some(last)) => (first, first..last + 1),
        _ => (0, 0..0), // no output rows
    };
    let mut rows = vec![0f32; band.len() * row_len];
    // The horizontal taps in one flat list; output o's taps end at `x_ends[o]` and
    // start where output o - 1's end.
    let x_taps: Vec<(u32, f32)> = xs.iter().flatten().copied().collect();
    let x_ends: Vec<usize> = xs
        .iter()
        .scan(0, |end, t| {
            *end += t.len();
            Some(*end)
        })
        .collect();
    for (y, row) in band.zip(rows.chunks_exact_mut(row_len)) {
        let line = &raw[y * sw as usize * 3..(y + 1) * sw as usize * 3];
        let mut begin = 0;
        for (&end, acc) in x_ends.iter().zip(row.chunks_exact_mut(3)) {
            // Summed in registers from 0.0, tap by tap, then stored once.
            let mut a = [0f32; 3];
            for &(i, w) in &x_taps[begin..end] {
                let p = &line[i as usize * 3..i as usize * 3 + 3];
                a[0] += p[0] as f32 * w;
                a[1] += p[1] as f32 * w;
                a[2] += p[2] as f32 * w;
            }
            acc.copy_from_slice(&a);
            begin = end;
        }
    }
    // Vertical pass, a whole output row at a time: the row is the weighted sum of
    // its source rows, tap by tap in order (so each value is summed in the same order
    // as a per-pixel loop, and the loop over the row vectorises).
    let mut out = vec![0u8; out_h as usize * row_len];
    let mut acc = vec![0f32; row_len];
    for (taps, out_row) in ys.iter().zip(out.chunks_exact_mut(row_len)) {
        acc.fill(0.0);
        for &(i, w) in taps {
            let at = i as usize - first;
            let row = &rows[at * row_len..(at + 1) * row_len];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v * w;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = round_to_u8(a);
        }
    }
    RgbImage::from_raw(out_w, out_h, out).expect("buffer sized out_w * out_h * 3")
}

/// `v.round().clamp(0.0, 255.0) as u8` without a call to libm's `roundf` (the
/// baseline x86-64 target has no rounding instruction): for v >= 0, round half away
/// from zero is floor(v + 0.5), computed exactly in f64 and floored by truncation.
/// Branch-free so the loop over a row vectorises: for v <= 0, v + 0.5 <= 0.5
/// truncates (or clamps) to 0 as well (NaN cannot occur: weights and pixels are
/// finite).
fn round_to_u8(v: f32) -> u8 {
    (v as f64 + 0.5).clamp(0.0, 255.0) as u8
}

/// Where every output pixel takes exactly one source pixel at weight 1 and
/// consecutive outputs take consecutive sources: the first source index.
fn whole_pixel_crop(taps: &[Vec<(u32, f32)>]) -> Option<usize> {
    let first = taps.first()?.first()?.0;
    taps.iter()
        .zip(first..)
        .all(|(t, i)| t.as_slice() == [(i, 1.0)])
        .then_some(first as usize)
}

/// For each of `n` output pixels over `[start, start + len)`, the source pixels it
/// covers and their normalised overlap weights (indices clamped into `0..src_n`).
fn weights(start: f64, len: f64, n: u32, src_n: u32) -> Vec<Vec<(u32, f32)>> {
    let scale = len / n as f64;
    let last = src_n.saturating_sub(1) as i64;
    (0..n)
        .map(|o| {
            let a = start + o as f64 * scale;
            let b = a + scale;
            let mut taps: Vec<(u32, f32)> = Vec::new();
            let mut total = 0.0;
            let mut i = a.floor() as i64;
            while (i as f64) < b {
                let w = (b.min(i as f64 + 1.0) - a.max(i as f64)).max(0.0);
                if w > 0.0 {
                    let idx = i.clamp(0, last) as u32;
                    match taps.last_mut() {
                        Some(t) if t.0 == idx => t.1 += w as f32,
                        _ => taps.push((idx, w as f32)),
                    }
                    total += w;
                }
                i += 1;
            }
            if taps.is_empty() {
                taps.push((a.floor().clamp(0.0, last as f64) as u32, 1.0));
                total = 1.0;
            }
            for t in &mut taps {
                t.1 /= total as f32;
            }
            taps
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slide::{LevelInfo, MppSource, SlideFormat};
    use proptest::prelude::*;

    /// The per-pixel loops resample_area had before its vertical pass went row by
    /// row; the rewrite must give the same bytes (goldens depend on them).
    fn resample_area_per_pixel(
        src: &RgbImage,
        window: [f64; 4],
        out_w: u32,
        out_h: u32,
    ) -> RgbImage {
        let [wx, wy, ww, wh] = window;
        let (sw, sh) = src.dimensions();
        let xs = weights(wx, ww, out_w, sw);
        let ys = weights(wy, wh, out_h, sh);
        // Horizontal pass into f32 rows, then vertical.
        let mut rows = vec![0f32; sh as usize * out_w as usize * 3];
        let raw = src.as_raw();
        let needed_rows: Vec<bool> = {
            let mut n = vec![false; sh as usize];
            for taps in &ys {
                for &(i, _) in taps {
                    n[i as usize] = true;
                }
            }
            n
        };
        for y in 0..sh as usize {
            if !needed_rows[y] {
                continue;
            }
            let line = &raw[y * sw as usize * 3..(y + 1) * sw as usize * 3];
            for (ox, taps) in xs.iter().enumerate() {
                let mut acc = [0f32; 3];
                for &(i, w) in taps {
                    let p = &line[i as usize * 3..i as usize * 3 + 3];
                    for c in 0..3 {
                        acc[c] += p[c] as f32 * w;
                    }
                }
                let at = (y * out_w as usize + ox) * 3;
                rows[at..at + 3].copy_from_slice(&acc);
            }
        }
        let mut out = RgbImage::new(out_w, out_h);
        for (oy, taps) in ys.iter().enumerate() {
            for ox in 0..out_w as usize {
                let mut acc = [0f32; 3];
                for &(i, w) in taps {
                    let at = (i as usize * out_w as usize + ox) * 3;
                    for c in 0..3 {
                        acc[c] += rows[at + c] * w;
                    }
                }
                let px = acc.map(|v| v.round().clamp(0.0, 255.0) as u8);
                out.put_pixel(ox as u32, oy as u32, image::Rgb(px));
            }
        }
        out
    }

    fn info(w: u64, h: u64, mpp: Option<f64>, levels: u32) -> SlideInfo {
        SlideInfo {
            format: SlideFormat::Tiff,
            vendor: None,
            levels: (0..levels)
                .map(|i| LevelInfo {
                    width: w.div_ceil(1 << i),
                    height: h.div_ceil(1 << i),
                    downsample: (1u64 << i) as f64,
                })
                .collect(),
            mpp: mpp.and_then(Mpp::square),
            mpp_source: MppSource::TiffResolution,
            objective_power: None,
            associated: vec![],
            background: [255; 3],
        }
    }

    fn path() -> &'static std::path::Path {
        std::path::Path::new("slide.tif")
    }

    #[test]
    fn no_mpp_is_refused_with_advice() {
        let err = TileGrid::build(
            path(),
            &info(1000, 1000, None, 1),
            None,
            &TilingOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, TilingError::NoMpp { .. }));
        assert!(err.to_string().contains("--mpp"), "{err}");
    }

    /// Issue 14, defect 7: a model MPP of 1e-300 hung the grid's counting loop.
    #[test]
    fn an_absurd_grid_is_refused_before_any_loop() {
        let slide = info(100_000, 80_000, Some(0.25), 1);
        for (model_mpp, slide_mpp) in [(1e-300, 0.25), (0.5, 1e300), (1e-3, 0.25)] {
            let options = TilingOptions {
                model_mpp,
                ..TilingOptions::default()
            };
            let mut slide = slide.clone();
            slide.mpp = Mpp::square(slide_mpp);
            let err = TileGrid::build(path(), &slide, None, &options).unwrap_err();
            assert!(matches!(err, TilingError::TooManyTiles { .. }), "{err}");
            assert!(err.to_string().contains("max_tiles"), "{err}");
        }
        // Just under the limit is still built.
        let options = TilingOptions {
            max_tiles: 4,
            ..TilingOptions::default()
        };
        let small = info(448, 448, Some(0.5), 1);
        assert_eq!(
            TileGrid::build(path(), &small, None, &options)
                .unwrap()
                .tiles
                .len(),
            4
        );
    }

    #[test]
    fn level_is_nearest_not_coarser() {
        // 0.25 µm/px with levels at 0.25, 0.5, 1.0, 2.0.
        let i = info(8000, 8000, Some(0.25), 4);
        let mpp = Mpp::square(0.25).unwrap();
        assert_eq!(choose_level(&i, mpp, 0.5), 1);
        assert_eq!(choose_level(&i, mpp, 0.9), 1);
        assert_eq!(choose_level(&i, mpp, 1.0), 2);
        assert_eq!(choose_level(&i, mpp, 0.1), 0);
        assert_eq!(choose_level(&i, mpp, 10.0), 3);
    }

    #[test]
    fn grid_at_twice_the_slide_mpp_reads_level_one() {
        // 0.25 µm/px slide, 0.5 µm/px model, 100 px tiles: 200 level-0 px per tile.
        let options = TilingOptions {
            tile_px: 100,
            model_mpp: 0.5,
            ..TilingOptions::default()
        };
        let g = TileGrid::build(path(), &info(1000, 500, Some(0.25), 3), None, &options).unwrap();
        assert_eq!(g.level, 1);
        assert_eq!((g.cols, g.rows), (5, 3));
        assert_eq!(g.tiles.len(), 15);
        assert_eq!(g.tiles[6].level0, Rect::new(200, 200, 200, 200));
        let (read, window) = g.read_plan(&g.tiles[6]);
        assert_eq!(read, Rect::new(100, 100, 100, 100));
        assert_eq!(window, [0.0, 0.0, 100.0, 100.0]);
        // 200 x 200 level-0 px at 0.25 µm = 50 x 50 µm.
        assert!((g.stride_area_um2(Mpp::square(0.25).unwrap()) - 2500.0).abs() < 1e-9);
    }

    #[test]
    fn overlap_shortens_the_stride() {
        let options = TilingOptions {
            tile_px: 100,
            model_mpp: 1.0,
            overlap_px: 50,
            ..TilingOptions::default()
        };
        let g = TileGrid::build(path(), &info(300, 100, Some(1.0), 1), None, &options).unwrap();
        let xs: Vec<i64> = g.tiles.iter().map(|t| t.level0.x).collect();
        assert_eq!(xs, vec![0, 50, 100, 150, 200]);
        assert!(g.tiles.iter().all(|t| t.level0.width == 100));
    }

    #[test]
    fn tissue_filter_keeps_tissue_tiles() {
        let mut thumb = RgbImage::from_pixel(10, 10, image::Rgb([245, 245, 245]));
        for y in 0..10 {
            for x in 0..5 {
                thumb.put_pixel(x, y, image::Rgb([220, 140, 190]));
            }
        }
        let to = crate::tissue::TissueOptions {
            min_component_mm2: 0.0,
            ..crate::tissue::TissueOptions::default()
        };
        let mask = crate::tissue::detect(&thumb, 1000, 1000, Mpp::square(1.0), &to);
        let options = TilingOptions {
            tile_px: 250,
            model_mpp: 1.0,
            min_tissue: 0.5,
            ..TilingOptions::default()
        };
        let g = TileGrid::build(
            path(),
            &info(1000, 1000, Some(1.0), 1),
            Some(&mask),
            &options,
        )
        .unwrap();
        assert_eq!(g.tiles.len(), 8);
        assert!(g
            .tiles
            .iter()
            .all(|t| t.col < 2 && t.tissue_fraction == 1.0));
    }

    /// Slow reference: each output pixel is the overlap-weighted mean of source pixels.
    fn reference(src: &RgbImage, window: [f64; 4], ow: u32, oh: u32) -> Vec<f64> {
        let [wx, wy, ww, wh] = window;
        let (sx, sy) = (ww / ow as f64, wh / oh as f64);
        let mut out = Vec::new();
        for oy in 0..oh {
            for ox in 0..ow {
                let (ax, bx) = (wx + ox as f64 * sx, wx + (ox + 1) as f64 * sx);
                let (ay, by) = (wy + oy as f64 * sy, wy + (oy + 1) as f64 * sy);
                let mut acc = [0.0; 3];
                let mut total = 0.0;
                for y in 0..src.height() {
                    let wyv = (by.min(y as f64 + 1.0) - ay.max(y as f64)).max(0.0);
                    for x in 0..src.width() {
                        let wxv = (bx.min(x as f64 + 1.0) - ax.max(x as f64)).max(0.0);
                        let w = wxv * wyv;
                        if w > 0.0 {
                            let p = src.get_pixel(x, y).0;
                            for c in 0..3 {
                                acc[c] += p[c] as f64 * w;
                            }
                            total += w;
                        }
                    }
                }
                out.extend(acc.iter().map(|a| a / total));
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn grid_covers_the_slide_exactly_once(
            w in 1u64..3000, h in 1u64..3000,
            mpp in 0.1f64..2.0, model_mpp in 0.2f64..4.0, tile_px in 64u32..300,
        ) {
            let options = TilingOptions { tile_px, model_mpp, ..TilingOptions::default() };
            let g = TileGrid::build(path(), &info(w, h, Some(mpp), 1), None, &options).unwrap();
            prop_assert_eq!(g.tiles.len() as u64, g.cols as u64 * g.rows as u64);
            // Column intervals tile [0, w) with no gap or overlap and no wasted column.
            let xs: Vec<(i64, i64)> = g.tiles.iter().filter(|t| t.row == 0)
                .map(|t| (t.level0.x, t.level0.x + t.level0.width as i64)).collect();
            let ys: Vec<(i64, i64)> = g.tiles.iter().filter(|t| t.col == 0)
                .map(|t| (t.level0.y, t.level0.y + t.level0.height as i64)).collect();
            for (spans, extent) in [(xs, w as i64), (ys, h as i64)] {
                prop_assert_eq!(spans[0].0, 0);
                for pair in spans.windows(2) {
                    prop_assert_eq!(pair[0].1, pair[1].0);
                }
                let last = spans[spans.len() - 1];
                prop_assert!(last.1 >= extent, "grid stops at {} before {}", last.1, extent);
                prop_assert!(last.0 < extent, "a column starts beyond the slide");
            }
            // Every tile in a column has the same x span, in a row the same y span.
            for t in &g.tiles {
                let first = g.tiles[t.col as usize];
                prop_assert_eq!((t.level0.x, t.level0.width), (first.level0.x, first.level0.width));
            }
        }

        #[test]
        fn pixel_sampling_hits_each_slide_pixel_once(
            w in 1u64..400, h in 1u64..400, mpp in 0.1f64..2.0, tile_px in 8u32..64,
        ) {
            let options = TilingOptions { tile_px, model_mpp: 0.7, ..TilingOptions::default() };
            let g = TileGrid::build(path(), &info(w, h, Some(mpp), 1), None, &options).unwrap();
            let mut hits = vec![0u8; (w * h) as usize];
            for t in &g.tiles {
                let r = t.level0;
                for y in r.y.max(0)..(r.y + r.height as i64).min(h as i64) {
                    for x in r.x.max(0)..(r.x + r.width as i64).min(w as i64) {
                        hits[(y as u64 * w + x as u64) as usize] += 1;
                    }
                }
            }
            prop_assert!(hits.iter().all(|&n| n == 1));
        }

        #[test]
        fn resampling_matches_the_slow_reference(
            sw in 1u32..40, sh in 1u32..40, ow in 1u32..24, oh in 1u32..24,
            fx in 0.0f64..1.0, fy in 0.0f64..1.0, seed in any::<u64>(),
        ) {
            let mut state = seed;
            let src = RgbImage::from_fn(sw, sh, |_, _| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let b = (state >> 33).to_le_bytes();
                image::Rgb([b[0], b[1], b[2]])
            });
            // A window inside the source, starting at a fractional offset.
            let wx = fx * (sw as f64 - 0.5).max(0.0) * 0.5;
            let wy = fy * (sh as f64 - 0.5).max(0.0) * 0.5;
            let window = [wx, wy, sw as f64 - wx, sh as f64 - wy];
            let fast = resample_area(&src, window, ow, oh);
            let before = resample_area_per_pixel(&src, window, ow, oh);
            prop_assert_eq!(fast.as_raw(), before.as_raw());
            let slow = reference(&src, window, ow, oh);
            for (a, b) in fast.as_raw().iter().zip(&slow) {
                prop_assert!((*a as f64 - b).abs() <= 1.0, "{} vs {}", a, b);
            }
        }
    }

    /// Whole-pixel windows at scale 1 are copied as crops; windows that reach past
    /// the source (edge pixels repeated) or sit at a fractional offset are not.
    #[test]
    fn whole_pixel_windows_copy_the_same_bytes_the_sums_give() {
        let src = RgbImage::from_fn(37, 29, |x, y| {
            image::Rgb([(x * 7 + y) as u8, (x * y) as u8, (x ^ (3 * y)) as u8])
        });
        for window in [
            [0.0, 0.0, 37.0, 29.0],
            [5.0, 3.0, 20.0, 17.0],
            [17.0, 12.0, 20.0, 17.0], // ends exactly at the source's edge
            [20.0, 15.0, 20.0, 17.0], // reaches past it: clamped
            [5.25, 3.0, 20.0, 17.0],  // fractional offset
            [-2.0, 0.0, 20.0, 17.0],  // starts before it
        ] {
            let (ow, oh) = (window[2] as u32, window[3] as u32);
            let fast = resample_area(&src, window, ow, oh);
            let before = resample_area_per_pixel(&src, window, ow, oh);
            assert_eq!(fast.as_raw(), before.as_raw(), "{window:?}");
        }
        let xs = weights(5.0, 20.0, 20, 37);
        assert_eq!(whole_pixel_crop(&xs), Some(5));
        assert_eq!(whole_pixel_crop(&weights(20.0, 20.0, 20, 37)), None);
        assert_eq!(whole_pixel_crop(&weights(5.0, 40.0, 20, 37)), None);
    }

    #[test]
    fn rounding_to_u8_matches_round_then_clamp() {
        let mut values: Vec<f32> = (0..=300 * 1024).map(|k| k as f32 / 1024.0).collect();
        // Each half-way point and the floats on either side of it.
        for k in 0..300 {
            let half = k as f32 + 0.5;
            values.extend([
                half,
                f32::from_bits(half.to_bits() - 1),
                f32::from_bits(half.to_bits() + 1),
            ]);
        }
        values.extend([-0.0, -0.4, -3.0, 0.49999997, 254.5, 255.49998, 1e9]);
        for v in values {
            assert_eq!(round_to_u8(v), v.round().clamp(0.0, 255.0) as u8, "{v}");
        }
    }

    #[test]
    fn resampling_halves_by_averaging() {
        let src = RgbImage::from_fn(4, 2, |x, _| image::Rgb([x as u8 * 10, 0, 100]));
        let out = resample_area(&src, [0.0, 0.0, 4.0, 2.0], 2, 1);
        assert_eq!(out.get_pixel(0, 0).0, [5, 0, 100]);
        assert_eq!(out.get_pixel(1, 0).0, [25, 0, 100]);
    }

    #[test]
    fn tile_is_read_from_a_real_pyramid() {
        use crate::slide::writer::{PyramidWriter, TileCompression, WriterOptions};
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("grad.tif");
        let (w, h) = (512u32, 256u32);
        let mut writer = PyramidWriter::create(
            &file,
            w,
            h,
            WriterOptions {
                compression: TileCompression::Deflate,
                mpp: Mpp::square(0.25),
                min_level_side: 64,
                ..WriterOptions::default()
            },
        )
        .unwrap();
        let mut rows = Vec::new();
        for _y in 0..h {
            for x in 0..w {
                rows.extend_from_slice(&[(x / 2) as u8, 100, 200]);
            }
        }
        writer.push_rows(&rows).unwrap();
        writer.finish().unwrap();
        let reader = crate::slide::open(&file, &crate::slide::OpenOptions::default()).unwrap();
        let options = TilingOptions {
            tile_px: 64,
            model_mpp: 1.0,
            ..TilingOptions::default()
        };
        let g = TileGrid::build(&file, reader.info(), None, &options).unwrap();
        assert_eq!(g.level, 2);
        assert_eq!((g.cols, g.rows), (2, 1));
        let tile = g.read_tile(reader.as_ref(), &g.tiles[1]).unwrap();
        assert_eq!(tile.dimensions(), (64, 64));
        // Level-0 x of output column c in tile 1: 256 + 4c .. +4; red = x/2 averaged.
        let red = tile.get_pixel(10, 5).0[0] as f64;
        let expected = (256.0 + 40.0 + 1.5) / 2.0;
        assert!((red - expected).abs() <= 1.5, "{red} vs {expected}");
    }
}
