//! `dirascope score` on the committed phantom fixtures and the real normal slide, with
//! the bundled model: the calls each class must get, golden reports (timings and
//! paths masked, floats rounded), and outputs independent of the thread count.
//! Re-bless the goldens after a deliberate change with `DIRASCOPE_BLESS=1 cargo test`.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn score(inputs: &[PathBuf], out: &Path, threads: usize) {
    let mut cmd = Command::cargo_bin("dirascope").unwrap();
    cmd.arg("score")
        .args(inputs)
        .arg("--out")
        .arg(out)
        .args(["--threads", &threads.to_string()]);
    let output = cmd.output().unwrap();
    assert!(
        output.status.success(),
        "score failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn call(out: &Path, id: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(id).join("report.json")).unwrap())
            .unwrap();
    v["result"]["call"].as_str().unwrap().to_string()
}

/// report.json without timings and audit times, with paths reduced to file names and
/// floats rounded to 1e-4, so the golden survives a different checkout folder and libm.
fn masked(out: &Path, id: &str) -> serde_json::Value {
    let report = dirascope::report::json::read_report(&out.join(id).join("report.json")).unwrap();
    let mut v: serde_json::Value =
        serde_json::from_str(&dirascope::report::json::to_json_without_times(&report).unwrap())
            .unwrap();
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Number(n) if n.is_f64() => {
                let x = (n.as_f64().unwrap() * 1e4).round() / 1e4;
                *v = serde_json::json!(x);
            }
            serde_json::Value::String(s) if s.contains('/') => {
                *s = s.rsplit('/').next().unwrap_or("").to_string();
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            serde_json::Value::Object(o) => o.values_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    // The list of output files holds their sha256 (pinned by the snapshot tests), which
    // the float rounding above cannot mask; the golden pins the report's content.
    if let Some(map) = v.as_object_mut() {
        map.remove("files");
    }
    // The tool version changes with every release; the golden pins behaviour.
    v["tool"] = serde_json::json!("masked");
    v["audit"]["tool_version"] = serde_json::json!("masked");
    v
}

#[test]
fn phantoms_get_their_calls_and_match_the_golden_reports() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    score(&[root().join("fixtures/phantoms")], &out, 2);
    let expected = [
        ("dira-3", "dira-pattern"),
        ("pustular-psoriasis-2", "psoriasiform-pattern"),
        ("psoriasis-3", "psoriasiform-pattern"),
        ("normal-4", "no-pustular-pattern"),
    ];
    let mut wrong = Vec::new();
    for (id, want) in expected {
        let got = call(&out, id);
        if got != want {
            wrong.push(format!("{id}: {got}, expected {want}"));
        }
    }
    assert!(wrong.is_empty(), "wrong calls: {wrong:?}");
    for (id, _) in expected {
        let golden_path = root()
            .join("fixtures/golden")
            .join(format!("{id}.report.json"));
        let got = masked(&out, id);
        if std::env::var_os("DIRASCOPE_BLESS").is_some() {
            std::fs::create_dir_all(golden_path.parent().unwrap()).unwrap();
            std::fs::write(
                &golden_path,
                serde_json::to_string_pretty(&got).unwrap() + "\n",
            )
            .unwrap();
            continue;
        }
        let golden: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&golden_path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (bless with DIRASCOPE_BLESS=1)",
                    golden_path.display()
                )
            }))
            .unwrap();
        assert!(
            got == golden,
            "{id}: report differs from {}",
            golden_path.display()
        );
    }
    for file in ["summary.csv", "report.html"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("IL1RN") && html.to_lowercase().contains("research use only"));
}

#[test]
fn one_and_two_threads_give_identical_reports_and_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let slide = root().join("fixtures/phantoms/dira-3.tiff");
    let (a, b) = (dir.path().join("t1"), dir.path().join("t2"));
    score(std::slice::from_ref(&slide), &a, 1);
    score(std::slice::from_ref(&slide), &b, 2);
    let strip = |p: &Path| {
        let report = dirascope::report::json::read_report(p).unwrap();
        dirascope::report::json::to_json_without_times(&report).unwrap()
    };
    assert_eq!(
        strip(&a.join("dira-3/report.json")),
        strip(&b.join("dira-3/report.json"))
    );
    assert_eq!(
        std::fs::read(a.join("dira-3/tiles.csv")).unwrap(),
        std::fs::read(b.join("dira-3/tiles.csv")).unwrap()
    );
}

#[test]
fn real_normal_skin_is_not_called_pustular() {
    let real = root().join("../shared/fixtures/real/CMU-1-Small-Region.svs");
    if !real.is_file() {
        eprintln!("skipped: {} is absent", real.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    score(std::slice::from_ref(&real), dir.path(), 2);
    assert_eq!(
        call(dir.path(), "CMU-1-Small-Region"),
        "no-pustular-pattern"
    );
}

#[test]
fn a_slide_without_tissue_is_insufficient_tissue_not_an_error() {
    use dirascope::slide::writer::{PyramidWriter, TileCompression, WriterOptions};
    let dir = tempfile::tempdir().unwrap();
    let glass = dir.path().join("glass.tif");
    let options = WriterOptions {
        compression: TileCompression::Deflate,
        mpp: dirascope::slide::Mpp::square(0.5),
        ..WriterOptions::default()
    };
    let mut w = PyramidWriter::create(&glass, 2000, 1500, options).unwrap();
    w.push_rows(&vec![244u8; 2000 * 3 * 1500]).unwrap();
    w.finish().unwrap();
    let out = dir.path().join("out");
    score(&[glass], &out, 2);
    assert_eq!(call(&out, "glass"), "insufficient-tissue");
}
