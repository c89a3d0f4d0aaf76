//! `dirascope tiles`: a group's slides and QuPath annotations -> labelled training
//! tiles at the model's MPP and tile size, with `labels.csv` in the layout
//! `synth --tiles` writes (so training/train.py reads both).
//!
//! Pixels come through the product's own path: `slide::open`, the detected tissue
//! mask, `TileGrid` at the model's scale and its resampler, exactly as `score` reads
//! them. A tile is written only where the annotations say what every finding is
//! (see [`SlideLabels::label`]). Everything is written into a temporary folder
//! beside `out` and renamed into place at the end, so an error leaves nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::geojson::{self, AnnotationFile, ReadOptions};
use super::mapping::Mapping;
use super::raster::SlideLabels;
use super::AnnotationError;
use crate::batch::SlideJob;
use crate::slide::{self, OpenOptions, SlideError};
use crate::tiling::{TileGrid, TilingError, TilingOptions};
use crate::tissue::{self, TissueOptions};

/// Options of [`export`]. Tile size, MPP and minimum tissue come from the model.
#[derive(Debug, Clone)]
pub struct TilesOptions {
    pub slides: Vec<SlideJob>,
    /// Folder of `<slide_id>.geojson` files.
    pub annotations: PathBuf,
    pub mapping: Mapping,
    pub out: PathBuf,
    pub tile_px: u32,
    pub model_mpp: f64,
    pub min_tissue: f64,
    pub open: OpenOptions,
    pub tissue: TissueOptions,
    /// Worker threads (resolved by the caller; at least 1).
    pub threads: usize,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct TilesSummary {
    pub slides: usize,
    pub tiles: usize,
    /// Tiles of each finding with any coverage, in `Finding::ALL` order.
    pub with_finding: [usize; 4],
    /// Tissue tiles left out because the annotations do not say what they show.
    pub left_out: usize,
    /// Non-annotation objects, unclassified annotations and points/lines skipped.
    pub skipped_objects: usize,
    pub skipped_unclassified: usize,
    pub skipped_not_areas: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TilesError {
    #[error(transparent)]
    Annotation(#[from] AnnotationError),
    #[error(transparent)]
    Slide(#[from] SlideError),
    #[error(transparent)]
    Tiling(#[from] TilingError),
    /// Inputs that do not fit together (an annotation file without a slide, ...).
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot encode the tile: {reason}")]
    Encode { path: PathBuf, reason: String },
}

impl TilesError {
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            TilesError::Usage(_)
                | TilesError::Annotation(AnnotationError::UnknownClasses { .. })
                | TilesError::Annotation(AnnotationError::Mapping { .. })
        )
    }
}

fn io<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> TilesError + 'a {
    move |source| TilesError::Io {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// The `<slide_id>.geojson` files of a folder, by slide id.
pub fn annotation_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>, AnnotationError> {
    let entries = std::fs::read_dir(dir).map_err(|source| AnnotationError::Io {
        path: dir.to_path_buf(),
        what: "cannot list the annotations folder",
        source,
    })?;
    let mut files = BTreeMap::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(id) = name.strip_suffix(".geojson") {
            if !id.is_empty() && !name.starts_with('.') {
                files.insert(id.to_string(), path);
            }
        }
    }
    Ok(files)
}

/// Class names of the files that the mapping does not know, all at once.
pub fn check_classes(
    mapping: &Mapping,
    files: &[(&Path, &AnnotationFile)],
) -> Result<(), AnnotationError> {
    let mut names = BTreeSet::new();
    let mut seen_in = BTreeSet::new();
    for (path, file) in files {
        for a in &file.annotations {
            if mapping.target(&a.class).is_none() {
                names.insert(format!("\"{}\"", a.class));
                seen_in.insert(format!("{} {}", path.display(), a.label()));
            }
        }
    }
    if names.is_empty() {
        return Ok(());
    }
    Err(AnnotationError::UnknownClasses {
        mapping: mapping.path.clone(),
        names: names.into_iter().collect(),
        files: seen_in.into_iter().take(5).collect(),
    })
}

/// The `seed` column: a phantom's seed for a phantom slide id (`<class>-<seed>`),
/// otherwise a stable 48-bit number from the slide id, so that train.py's check
/// that held-out slides are not training slides works for both kinds of export.
pub fn seed_for(slide_id: &str) -> u64 {
    if let Some((class, seed)) = slide_id.rsplit_once('-') {
        if class.parse::<crate::synth::SlideClass>().is_ok() {
            if let Ok(s) = seed.parse::<u64>() {
                return s;
            }
        }
    }
    let d = Sha256::digest(slide_id.as_bytes());
    d[..6].iter().fold(0u64, |acc, b| (acc << 8) | *b as u64)
}

/// One slide opened with its checked annotations.
struct Prepared {
    job: SlideJob,
    reader: Box<dyn slide::SlideReader>,
    file: Option<(PathBuf, AnnotationFile)>,
    exhaustive: bool,
}

/// Opens every slide and reads and checks every annotation file before any tile is
/// written: one bad input refuses the whole export.
fn prepare(options: &TilesOptions) -> Result<Vec<Prepared>, TilesError> {
    let mapping = &options.mapping;
    let mut files = annotation_files(&options.annotations)?;
    let ids: Vec<String> = options.slides.iter().map(|j| j.slide_id.clone()).collect();
    if let Some((id, path)) = files.iter().find(|(id, _)| !ids.contains(id)) {
        return Err(TilesError::Usage(format!(
            "{}: no slide has the id '{id}' (slides given: {}); pass its slide or move the file away",
            path.display(),
            ids.join(", ")
        )));
    }
    let unknown = mapping.unknown_exhaustive(&ids);
    if !unknown.is_empty() {
        return Err(TilesError::Usage(format!(
            "{}: exhaustive names slides that were not given: {}",
            mapping.path.display(),
            unknown.join(", ")
        )));
    }
    let mut prepared = Vec::new();
    for job in &options.slides {
        let exhaustive = mapping.is_exhaustive(&job.slide_id);
        let geojson_path = files.remove(&job.slide_id);
        if geojson_path.is_none() && !exhaustive {
            return Err(TilesError::Usage(format!(
                "{}: slide '{}' has no annotations ({}/{}.geojson) and is not declared exhaustive in {}",
                job.path.display(),
                job.slide_id,
                options.annotations.display(),
                job.slide_id,
                mapping.path.display()
            )));
        }
        let reader = slide::open(&job.path, &options.open)?;
        let info = reader.info();
        let read = ReadOptions {
            slide_size: Some((info.width(), info.height())),
            ..ReadOptions::default()
        };
        let file = match geojson_path {
            Some(p) => {
                let f = geojson::read(&p, &read)?;
                Some((p, f))
            }
            None => None,
        };
        prepared.push(Prepared {
            job: job.clone(),
            reader,
            file,
            exhaustive,
        });
    }
    let all: Vec<(&Path, &AnnotationFile)> = prepared
        .iter()
        .filter_map(|p| p.file.as_ref().map(|(path, f)| (path.as_path(), f)))
        .collect();
    check_classes(mapping, &all)?;
    Ok(prepared)
}

/// Writes the labelled tiles of every slide and `labels.csv` into `options.out`.
pub fn export(options: &TilesOptions) -> Result<TilesSummary, TilesError> {
    if options.threads == 0 {
        return Err(TilesError::Usage("--threads must be at least 1".into()));
    }
    if options.out.exists()
        && std::fs::read_dir(&options.out)
            .map_err(io(&options.out, "cannot read the output folder"))?
            .next()
            .is_some()
    {
        return Err(TilesError::Usage(format!(
            "{}: the output folder exists and is not empty; choose a new one",
            options.out.display()
        )));
    }
    let prepared = prepare(options)?;
    let parent = match options.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io(&parent, "cannot create the folder"))?;
    let staging = tempfile::Builder::new()
        .prefix(".dirascope-tiles-")
        .tempdir_in(&parent)
        .map_err(io(&parent, "cannot create a temporary folder"))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.threads)
        .build()
        .map_err(|e| TilesError::Usage(format!("cannot start {} threads: {e}", options.threads)))?;
    let mut summary = TilesSummary {
        slides: prepared.len(),
        tiles: 0,
        with_finding: [0; 4],
        left_out: 0,
        skipped_objects: 0,
        skipped_unclassified: 0,
        skipped_not_areas: 0,
    };
    let mut text = crate::synth::LABEL_COLUMNS.join(",");
    text.push('\n');
    let mut manifest = String::from("slide_id,path,class\n");
    for p in &prepared {
        let rows = pool.install(|| slide_tiles(p, options, staging.path(), &mut summary))?;
        for r in rows {
            text.push_str(&r);
            text.push('\n');
        }
        manifest.push_str(&format!(
            "{},tiles/{},annotated\n",
            p.job.slide_id, p.job.slide_id
        ));
    }
    let write = |name: &str, body: &str| {
        let path = staging.path().join(name);
        std::fs::write(&path, body).map_err(io(&path, "cannot write"))
    };
    write("labels.csv", &text)?;
    write("manifest.csv", &manifest)?;
    if options.out.exists() {
        std::fs::remove_dir(&options.out)
            .map_err(io(&options.out, "cannot replace the empty output folder"))?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, &options.out).map_err(|source| {
        let _ = std::fs::remove_dir_all(&staged);
        TilesError::Io {
            path: options.out.clone(),
            what: "cannot move the finished export into place",
            source,
        }
    })?;
    Ok(summary)
}

/// A written tile's `labels.csv` row and its coverage per finding.
type LabelledTile = (String, [f64; 4]);

/// Labels, reads and writes the tiles of one slide; returns its `labels.csv` rows
/// in grid order (whatever the thread count).
fn slide_tiles(
    p: &Prepared,
    options: &TilesOptions,
    staging: &Path,
    summary: &mut TilesSummary,
) -> Result<Vec<String>, TilesError> {
    let (job, reader) = (&p.job, p.reader.as_ref());
    let info = reader.info();
    let thumb = reader.thumbnail(tissue::mask_side(info, &options.tissue))?;
    let mask = tissue::detect(
        &thumb,
        info.width(),
        info.height(),
        info.mpp,
        &options.tissue,
    );
    let tiling = TilingOptions {
        tile_px: options.tile_px,
        model_mpp: options.model_mpp,
        min_tissue: options.min_tissue,
        ..TilingOptions::default()
    };
    let grid = TileGrid::build(&job.path, info, Some(&mask), &tiling)?;
    let mpp = info.mpp.ok_or_else(|| TilingError::NoMpp {
        path: job.path.clone(),
    })?;
    let annotations = p.file.as_ref().map_or(&[][..], |(_, f)| &f.annotations[..]);
    if let Some((_, f)) = &p.file {
        summary.skipped_objects += f.skipped_objects;
        summary.skipped_unclassified += f.skipped_unclassified;
        summary.skipped_not_areas += f.skipped_not_areas;
    }
    let labels = SlideLabels::new(annotations, &options.mapping, p.exhaustive);
    let sub = format!("tiles/{}", job.slide_id);
    let dir = staging.join(&sub);
    std::fs::create_dir_all(&dir).map_err(io(&dir, "cannot create the tile folder"))?;
    let seed = seed_for(&job.slide_id);
    let made: Vec<Result<Option<LabelledTile>, TilesError>> = grid
        .tiles
        .par_iter()
        .map(|tile| {
            let r = tile.level0;
            let rect = [r.x as f64, r.y as f64, r.width as f64, r.height as f64];
            let Some(cover) = labels.label(rect) else {
                return Ok(None);
            };
            let rgb = grid.read_tile(reader, tile)?;
            let name = format!("{}_x{}_y{}.png", job.slide_id, r.x, r.y);
            let rel = format!("{sub}/{name}");
            let path = staging.join(&rel);
            let mut png = Vec::new();
            rgb.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .map_err(|e| TilesError::Encode {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            std::fs::write(&path, png).map_err(io(&path, "cannot write"))?;
            Ok(Some((
                format!(
                    "{rel},{},annotated,{seed},{:.1},{:.1},{},{},{:.4},{:.4},{:.4},{:.4},{:.4}",
                    job.slide_id,
                    r.x as f64 * mpp.x,
                    r.y as f64 * mpp.y,
                    options.tile_px,
                    options.model_mpp,
                    tile.tissue_fraction,
                    cover[0],
                    cover[1],
                    cover[2],
                    cover[3]
                ),
                cover,
            )))
        })
        .collect();
    let mut rows = Vec::new();
    for m in made {
        match m? {
            Some((row, cover)) => {
                for (k, c) in cover.iter().enumerate() {
                    if *c > 0.0 {
                        summary.with_finding[k] += 1;
                    }
                }
                rows.push(row);
            }
            None => summary.left_out += 1,
        }
    }
    summary.tiles += rows.len();
    Ok(rows)
}
