//! `sinkscope compare`: end to end on synthetic run folders (no model needed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use sinkscope_report::synthetic::SyntheticRun;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sinkscope")
}

fn fresh(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compare_cli").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn compare_writes_a_self_contained_page_and_prints_its_path() {
    let root = fresh("ok");
    let a = root.join("small");
    let b = root.join("deep");
    SyntheticRun { n_layers: 8, model_path: "models/Small-8L.gguf".into(), ..Default::default() }
        .write(&a)
        .unwrap();
    SyntheticRun {
        n_layers: 30,
        n_heads: 9,
        model_path: "models/Deep-30L.gguf".into(),
        ..Default::default()
    }
    .write(&b)
    .unwrap();
    let out = root.join("cmp");
    let o = Command::new(bin()).arg("compare").arg(&a).arg(&b).arg("--out").arg(&out).output().unwrap();
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stdout.trim(), out.join("compare.html").display().to_string());
    for f in ["compare.html", "compare.csv", "plots/compare_fig1.svg", "plots/compare_fig1.png"] {
        assert!(out.join(f).is_file(), "{f} written");
    }
    let html = std::fs::read_to_string(out.join("compare.html")).unwrap();
    assert!(html.contains("Small-8L") && html.contains("Deep-30L"));
    assert!(!html.contains("http://") && !html.contains("https://"), "no external references");
}

#[test]
fn compare_errors_have_documented_exit_codes() {
    let root = fresh("errors");
    // A folder that is not a run: bad input file, exit 3, naming the file.
    let o = Command::new(bin())
        .arg("compare")
        .arg(root.join("missing"))
        .arg("--out")
        .arg(root.join("o"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("manifest.json"));
    // A run of another schema version: exit 3, the message says which file and version.
    let a = root.join("v2");
    SyntheticRun::default().write(&a).unwrap();
    let m = std::fs::read_to_string(a.join("metrics.json")).unwrap().replacen(
        "\"schema_version\": 1",
        "\"schema_version\": 2",
        1,
    );
    std::fs::write(a.join("metrics.json"), m).unwrap();
    let o = Command::new(bin()).arg("compare").arg(&a).arg("--out").arg(root.join("o")).output().unwrap();
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("metrics.json") && err.contains("schema_version 2"), "{err}");
    // No run at all: a usage error from clap.
    let o = Command::new(bin()).arg("compare").arg("--out").arg(root.join("o")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}
