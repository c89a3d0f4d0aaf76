//! Coverage-guided fuzzing of `slide::open` and `read_region` on arbitrary bytes.
//! Any crash found here becomes a file in fixtures/regressions/slide/, replayed by
//! tests/slide_mutants.rs forever.
#![no_main]

use dirascope::slide::{self, OpenOptions, Rect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("input");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(reader) = slide::open(&path, &OpenOptions::default()) else { return };
    let levels = reader.info().levels.clone();
    for (level, l) in levels.iter().enumerate() {
        let _ = reader.read_region(level, Rect::new(-1, -1, l.width.min(300) as u32 + 2, l.height.min(300) as u32 + 2));
    }
});
