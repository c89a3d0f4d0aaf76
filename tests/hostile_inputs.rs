//! Issue 14, defects 2, 4, 6 and 7: inputs that hung a run, overwrote a slide's
//! folder or let a model reach outside its folder.
//!
//! - Anything that is not a regular file (a FIFO, a socket, a device) is refused
//!   before it is opened, wherever a slide path enters, as an error row; the good
//!   slides beside it are scored. Every run here has a time limit, so a hang fails.
//! - Slide ids that map to one folder, or to a file the run writes itself, are refused
//!   before any work with exit 2.
//! - A model folder's ONNX file must resolve inside the folder (exit 4 otherwise).
//! - A manifest with implausible values (an MPP of 1e-300) is refused at load with
//!   exit 4, promptly, by `score` and `model check` alike.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{dirascope, output_within, root};

const SLIDE: &str = "fixtures/phantoms/normal-4.tiff";
const TINY_MODEL: &str = "fixtures/model/tiny-random-64";
const LIMIT: Duration = Duration::from_secs(60);

fn run(cmd: Command) -> (i32, String, String) {
    let o: Output = output_within(cmd, LIMIT);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

fn score(inputs: &[&Path], out: &Path, extra: &[&str]) -> Command {
    let mut cmd = dirascope(&["score", "--model", TINY_MODEL, "--out"]);
    cmd.arg(out).args(inputs).args(extra);
    cmd
}

fn errors_csv(out: &Path) -> String {
    std::fs::read_to_string(out.join("errors.csv")).unwrap()
}

#[test]
fn a_fifo_or_socket_is_refused_before_it_is_opened_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.svs");
    mkfifo(&fifo);

    let (code, _, err) = run(dirascope(&["inspect", fifo.to_str().unwrap()]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("pipe.svs") && err.contains("not a regular file"),
        "{err}"
    );

    // One slide given alone: an error row, exit 3.
    let out = dir.path().join("single");
    let (code, _, err) = run(score(&[&fifo], &out, &[]));
    assert_eq!(code, 3, "{err}");
    assert!(
        errors_csv(&out).contains("not a regular file"),
        "{}",
        errors_csv(&out)
    );

    // In a manifest, before a good slide: the good one is scored.
    let manifest = dir.path().join("m.csv");
    let good = root().join(SLIDE);
    std::fs::write(
        &manifest,
        format!(
            "slide_id,path\nfifo,{}\ngood,{}\n",
            fifo.display(),
            good.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("manifest");
    let (code, _, err) = run(score(&[&manifest], &out, &[]));
    assert_eq!(code, 3, "{err}");
    assert!(out.join("good/report.json").is_file(), "{err}");
    assert!(errors_csv(&out).contains("\nfifo,"), "{}", errors_csv(&out));
    assert!(!out.join("fifo").exists());

    // In a scanned folder, beside a socket and a good slide.
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    mkfifo(&folder.join("a-pipe.tif"));
    mkfifo(&folder.join("unnamed"));
    let _socket = std::os::unix::net::UnixListener::bind(folder.join("b-socket.svs")).unwrap();
    std::fs::copy(&good, folder.join("c-good.tiff")).unwrap();
    let list = score(&[&folder], &dir.path().join("unused"), &["--list"]);
    let (code, listed, err) = run(list);
    assert_eq!(code, 0, "{err}");
    for id in ["a-pipe", "b-socket", "c-good", "unnamed"] {
        assert!(
            listed.contains(&format!("\n{id},")),
            "{id} not listed:\n{listed}"
        );
    }
    let out = dir.path().join("scanned");
    let (code, _, err) = run(score(&[&folder], &out, &[]));
    assert_eq!(code, 3, "{err}");
    assert!(out.join("c-good/report.json").is_file(), "{err}");
    let errors = errors_csv(&out);
    for id in ["a-pipe", "b-socket", "unnamed"] {
        assert!(errors.contains(&format!("\n{id},")), "{id}:\n{errors}");
    }

    // A character device is no slide either.
    let (code, _, err) = run(dirascope(&["inspect", "/dev/null"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a regular file"), "{err}");
}

fn manifest_with_ids(dir: &Path, ids: &[&str]) -> PathBuf {
    let slide = root().join(SLIDE);
    let mut text = "slide_id,path\n".to_string();
    for id in ids {
        text.push_str(&format!("\"{id}\",{}\n", slide.display()));
    }
    let path = dir.join(format!("ids-{}.csv", ids.len()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn ids_that_share_a_folder_or_name_a_run_file_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    for pair in [["日本", "中国"], ["a;b", "a:b"], ["Case", "case"]] {
        let manifest = manifest_with_ids(dir.path(), &pair);
        let (code, _, err) = run(score(&[&manifest], &out, &[]));
        assert_eq!(code, 2, "{pair:?}: {err}");
        for id in pair {
            assert!(err.contains(&format!("'{id}'")), "{id} not named: {err}");
        }
        assert!(!out.exists(), "{pair:?}: work started");
    }
    for id in [
        "summary.csv",
        "Errors.csv",
        "report.html",
        ".dirascope.lock",
    ] {
        let manifest = manifest_with_ids(dir.path(), &[id, "fine"]);
        let (code, _, err) = run(score(&[&manifest], &out, &[]));
        assert_eq!(code, 2, "{id}: {err}");
        assert!(err.contains(&format!("'{id}'")), "{id} not named: {err}");
        assert!(!out.exists(), "{id}: work started");
    }
}

/// A copy of the tiny model in `dir`, its manifest passed through `edit`.
fn model_copy(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    let src = root().join(TINY_MODEL);
    std::fs::copy(src.join("model.onnx"), model.join("model.onnx")).unwrap();
    let text = std::fs::read_to_string(src.join("model.toml")).unwrap();
    std::fs::write(model.join("model.toml"), edit(text)).unwrap();
    model
}

#[test]
fn a_model_onnx_that_links_outside_its_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_copy(dir.path(), |t| t);
    let outside = dir.path().join("elsewhere.onnx");
    std::fs::rename(model.join("model.onnx"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, model.join("model.onnx")).unwrap();
    let (code, _, err) = run(dirascope(&["model", "check", model.to_str().unwrap()]));
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("model.onnx") && err.contains("outside the model folder"),
        "{err}"
    );
    let mut cmd = dirascope(&["score", SLIDE, "--model", model.to_str().unwrap(), "--out"]);
    cmd.arg(dir.path().join("out"));
    let (code, _, err) = run(cmd);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("model.onnx"), "{err}");

    // A link that stays inside the folder is fine.
    std::fs::remove_file(model.join("model.onnx")).unwrap();
    std::fs::rename(&outside, model.join("weights.onnx")).unwrap();
    std::os::unix::fs::symlink("weights.onnx", model.join("model.onnx")).unwrap();
    let (code, _, err) = run(dirascope(&["model", "check", model.to_str().unwrap()]));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_model_that_tract_runs_off_its_parity_fixture_fails_the_check_with_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_copy(dir.path(), |t| t);
    let parity = model.join("parity");
    std::fs::create_dir_all(&parity).unwrap();
    let src = root().join(TINY_MODEL).join("parity");
    for file in ["parity.toml", "inputs.f32.gz", "outputs.f32"] {
        std::fs::copy(src.join(file), parity.join(file)).unwrap();
    }
    let (code, out, err) = run(dirascope(&["model", "check", model.to_str().unwrap()]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("tolerance 1e-4) ok"), "{out}");

    // onnxruntime's first output moved by 0.01: tract no longer matches it.
    let mut outputs = std::fs::read(parity.join("outputs.f32")).unwrap();
    let first = f32::from_le_bytes(outputs[..4].try_into().unwrap()) + 0.01;
    outputs[..4].copy_from_slice(&first.to_le_bytes());
    std::fs::write(parity.join("outputs.f32"), outputs).unwrap();
    let (code, out, err) = run(dirascope(&["model", "check", model.to_str().unwrap()]));
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(out.contains("TOO LARGE"), "{out}");
    assert!(
        err.contains(model.to_str().unwrap())
            && err.contains("parity tiles")
            && err.contains("1e-4"),
        "{err}"
    );
}

#[test]
fn implausible_manifest_values_are_refused_promptly_with_exit_4() {
    for (field, from, to) in [
        ("input.mpp", "mpp = 4.0", "mpp = 1e-300"),
        ("input.mpp", "mpp = 4.0", "mpp = 0.001"),
        ("input.mean", "mean = [0.8000,", "mean = [80.0,"),
        ("input.std", "std = [0.1600,", "std = [1e-9,"),
        (
            "aggregation.top_k_min",
            "top_k_min = 5",
            "top_k_min = 4000000000",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let model = model_copy(dir.path(), |t| {
            assert!(t.contains(from), "{from}");
            t.replace(from, to)
        });
        let (code, _, err) = run(dirascope(&["model", "check", model.to_str().unwrap()]));
        assert_eq!(code, 4, "{to}: {err}");
        assert!(err.contains(field), "{to}: {err}");
        let mut cmd = dirascope(&["score", SLIDE, "--model", model.to_str().unwrap(), "--out"]);
        cmd.arg(dir.path().join("out"));
        let (code, _, err) = run(cmd);
        assert_eq!(code, 4, "{to}: {err}");
        assert!(err.contains(field), "{to}: {err}");
    }
}

#[test]
fn a_grid_above_the_tile_limit_is_refused_before_it_is_built() {
    // A slide MPP that makes each model tile a hair of a level-0 pixel.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (code, _, err) = run(score(&[Path::new(SLIDE)], &out, &["--mpp", "1e300"]));
    assert_eq!(code, 3, "{err}");
    let errors = errors_csv(&out);
    assert!(
        errors.contains(",tiling,") && errors.contains("max_tiles"),
        "{errors}"
    );
}
