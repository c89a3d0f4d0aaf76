//! What a user opens and reads after `dirascope score`: a light OUT/report.html
//! index whose every link and image is a relative file inside OUT (no inlined
//! images, so it stays small for any batch size, and a copied OUT opens offline),
//! one OUT/<id>/report.html per slide with its heatmaps and evidence, and a closing
//! summary on stderr that `--quiet` silences (issue 14, defect 9 and the summary).

mod common;

use std::path::{Path, PathBuf};

use common::dirascope;

/// Every `src="..."` and `href="..."` value of `page`.
fn links(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        let mut rest = page;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').unwrap();
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    out
}

/// Asserts each link of the page at `page` is a relative path to an existing file.
fn assert_links_resolve(page: &Path) -> usize {
    let text = std::fs::read_to_string(page).unwrap();
    assert!(!text.contains("data:"), "{}: inlined data", page.display());
    let dir = page.parent().unwrap();
    let found = links(&text);
    for link in &found {
        assert!(
            !link.contains("://") && !link.starts_with('/'),
            "{}: '{link}' is not relative",
            page.display()
        );
        assert!(
            dir.join(link).is_file(),
            "{}: '{link}' does not resolve",
            page.display()
        );
    }
    found.len()
}

fn run(args: &[&str], slides: &[PathBuf], out: &Path) -> (i32, String) {
    let mut cmd = dirascope(&["score", "--threads", "2"]);
    cmd.args(slides).arg("--out").arg(out).args(args);
    let output = cmd.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn index_links_slide_pages_and_the_summary_closes_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.svs");
    std::fs::write(&notes, "not a slide").unwrap();
    let slides = vec![
        PathBuf::from("fixtures/phantoms/dira-3.tiff"),
        PathBuf::from("fixtures/phantoms/normal-4.tiff"),
        notes,
    ];
    let out = dir.path().join("out");
    let (code, stderr) = run(&[], &slides, &out);
    assert_eq!(code, 3, "{stderr}");
    for line in [
        "dirascope: 2 slides scored, 1 failed (listed in ".to_string(),
        "dirascope: calls: dira-pattern 1, no-pustular-pattern 1\n".to_string(),
        format!("dirascope: report: {}\n", out.join("report.html").display()),
    ] {
        assert!(stderr.contains(&line), "'{line}' not in: {stderr}");
    }

    // The index: small, every link relative and present, one row per slide linking
    // its page and small thumbnail, the failure listed.
    let index = out.join("report.html");
    let text = std::fs::read_to_string(&index).unwrap();
    assert!(
        text.len() < 16 << 10,
        "index of 3 slides is {} bytes",
        text.len()
    );
    assert!(text.contains("href=\"dira-3/report.html\""), "{text}");
    assert!(
        text.contains("src=\"normal-4/thumbnail_small.jpg\""),
        "{text}"
    );
    assert!(text.contains("Slides that failed") && text.contains("notes.svs"));
    assert!(
        text.contains("IL1RN"),
        "a DIRA-pattern call brings the IL1RN note"
    );
    assert_eq!(assert_links_resolve(&index), 2 * 3);
    for id in ["dira-3", "normal-4"] {
        let thumb = out.join(id).join("thumbnail_small.jpg");
        let small = image::open(&thumb).unwrap();
        assert!(small.width().max(small.height()) <= 160);
        assert!(std::fs::metadata(&thumb).unwrap().len() < 32 << 10);
        // The slide page: its heatmaps and evidence crops, all linked, none inlined.
        let page = out.join(id).join("report.html");
        let linked = assert_links_resolve(&page);
        let text = std::fs::read_to_string(&page).unwrap();
        assert!(text.contains("heatmap_psoriasiform.png"), "{id}");
        assert!(text.contains("src=\"evidence/"), "{id}");
        assert!(text.contains("href=\"../report.html\""), "{id}");
        assert!(
            !text.contains("class=\"missing\""),
            "{id}: an image is missing"
        );
        // The back link, the thumbnail, 4 heatmaps and every evidence crop.
        let report = dirascope::report::json::read_report(&out.join(id).join("report.json"));
        let evidence = report.unwrap().result.evidence.len();
        assert!(evidence > 0, "{id}");
        assert_eq!(linked, 1 + 1 + 4 + evidence, "{id}");
    }

    // A copied OUT still opens: every link is relative, so the copy resolves alone.
    let copy = dir.path().join("copied");
    copy_tree(&out, &copy);
    std::fs::remove_dir_all(&out).unwrap();
    assert_links_resolve(&copy.join("report.html"));
    assert_links_resolve(&copy.join("dira-3").join("report.html"));

    // --quiet: no closing summary, the error line still printed; then the reuse count.
    let (code, stderr) = run(&["--quiet"], &slides, &copy);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        !stderr.contains("calls:") && !stderr.contains("report:"),
        "{stderr}"
    );
    assert!(stderr.contains("notes.svs"), "{stderr}");
    let (code, stderr) = run(&[], &slides, &copy);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("2 slides scored (2 reused from an earlier run), 1 failed"),
        "{stderr}"
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
