//! One batch holding every kind of bad file beside good slides: the bad ones
//! become rows of errors.csv naming the file, stage and reason, a blank slide is
//! `insufficient-tissue` (not an error), the good ones are scored, and the exit
//! code is 3. The bad files are made at test time; none is committed.

mod common;

use std::path::{Path, PathBuf};

use common::{dirascope, hidden, ids, root, run_json};

/// A PNG whose header declares 100000 × 100000 RGB pixels (30 GB decoded) in a
/// few dozen bytes: the reader must refuse it before allocating anything.
fn png_bomb(path: &Path) {
    fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        c.extend_from_slice(&crc.sum().to_be_bytes());
        c
    }
    let mut header = Vec::new();
    header.extend_from_slice(&100_000u32.to_be_bytes());
    header.extend_from_slice(&100_000u32.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &header));
    png.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend(chunk(b"IEND", &[]));
    std::fs::write(path, png).unwrap();
}

/// Half of the real SVS when ../shared is there, else half of a phantom TIFF.
fn truncated_slide(dir: &Path) -> PathBuf {
    let real = root().join("../shared/fixtures/real/CMU-1-Small-Region.svs");
    let (source, name) = if real.is_file() {
        (real, "truncated.svs")
    } else {
        eprintln!(
            "note: {} is absent; truncating a phantom TIFF instead",
            real.display()
        );
        (
            root().join("fixtures/phantoms/dira-3.tiff"),
            "truncated.tif",
        )
    };
    let bytes = std::fs::read(source).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    path
}

/// A 2000 × 1500 slide of empty glass at 0.5 µm/px.
fn blank_glass(path: &Path) {
    use dirascope::slide::writer::{PyramidWriter, TileCompression, WriterOptions};
    let options = WriterOptions {
        compression: TileCompression::Deflate,
        mpp: dirascope::slide::Mpp::square(0.5),
        ..WriterOptions::default()
    };
    let mut w = PyramidWriter::create(path, 2000, 1500, options).unwrap();
    w.push_rows(&vec![244u8; 2000 * 3 * 1500]).unwrap();
    w.finish().unwrap();
}

#[test]
fn bad_files_become_error_rows_and_the_rest_is_scored() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    let truncated = truncated_slide(&bad);
    std::fs::write(bad.join("notes.svs"), "Patient notes, not a slide.\n").unwrap();
    std::fs::write(bad.join("empty.svs"), b"").unwrap();
    png_bomb(&bad.join("bomb.png"));
    blank_glass(&bad.join("glass.tif"));
    let out = dir.path().join("out");

    let mut cmd = dirascope(&["score", "fixtures/phantoms"]);
    cmd.arg(&bad).arg("--out").arg(&out);
    let (code, json, stderr) = run_json(cmd);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(
        ids(&json, "errors"),
        ["bomb", "empty", "notes", "truncated"]
    );

    let errors = std::fs::read_to_string(out.join("errors.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(errors.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        vec!["slide_id", "path", "stage", "kind", "message"]
    );
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    let expected = [
        ("bomb", "bomb.png", "limits", "max_whole_image_pixels"),
        ("empty", "empty.svs", "unsupported", "empty"),
        (
            "notes",
            "notes.svs",
            "unsupported",
            "unknown file signature",
        ),
        (
            "truncated",
            truncated.to_str().unwrap(),
            "format",
            "truncated",
        ),
    ];
    assert_eq!(rows.len(), expected.len(), "{errors}");
    for (row, (id, file, kind, reason)) in rows.iter().zip(expected) {
        assert_eq!(row[0], id, "{errors}");
        assert!(row[1].ends_with(file), "{row:?}");
        assert_eq!(
            (row[2].as_str(), row[3].as_str()),
            ("open", kind),
            "{row:?}"
        );
        assert!(row[4].contains(file) && row[4].contains(reason), "{row:?}");
    }

    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let calls: Vec<(String, String)> = summary
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split(',');
            (f.next().unwrap().into(), f.next().unwrap().into())
        })
        .collect();
    let scored: Vec<&str> = calls.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        scored,
        [
            "dira-3",
            "glass",
            "normal-4",
            "psoriasis-3",
            "pustular-psoriasis-2"
        ]
    );
    assert_eq!(calls[1].1, "insufficient-tissue");
    for (id, _) in &calls {
        assert!(out.join(id).join("report.json").is_file(), "{id}");
    }
    for (id, ..) in expected {
        assert!(!out.join(id).exists(), "{id}: a failed slide left a folder");
    }
    assert!(hidden(&out).is_empty(), "left over: {:?}", hidden(&out));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Slides that failed") && html.contains("notes.svs"));
}
