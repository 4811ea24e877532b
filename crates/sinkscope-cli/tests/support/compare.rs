//! Comparing a merged run folder with an unsharded one (shared by the shard, sweep and Slurm
//! tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::{Path, PathBuf};

/// Every file under `dir`, relative, sorted (sinkscope's lock and marker excluded).
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                if !rel.to_string_lossy().starts_with(".sinkscope") {
                    out.push(rel);
                }
            }
        }
    }
    out.sort();
    out
}

pub fn manifest(d: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(d.join("manifest.json")).unwrap()).unwrap()
}

/// The merged folder holds the same files as the unsharded one, byte-identical except the
/// manifest and the report page (both record timings and the command line, which differ
/// between two identical runs too); the manifests agree on everything else that describes
/// the run, and the merged one records its shards.
pub fn assert_same_run(full: &Path, merged: &Path) {
    let (a, b) = (files(full), files(merged));
    assert_eq!(
        a,
        b,
        "the merged folder {} does not hold the same files as {}",
        merged.display(),
        full.display()
    );
    assert!(a.iter().any(|f| f.ends_with("metrics.json")) && a.iter().any(|f| f.ends_with("prompts.jsonl")));
    for f in &a {
        if f == Path::new("manifest.json") || f == Path::new("report.html") {
            continue;
        }
        let (x, y) = (std::fs::read(full.join(f)).unwrap(), std::fs::read(merged.join(f)).unwrap());
        assert!(
            x == y,
            "{} of the merged run {} differs from the unsharded run's",
            f.display(),
            merged.display()
        );
    }
    let (m, n) = (manifest(full), manifest(merged));
    for k in [
        "schema_version",
        "kind",
        "status",
        "model",
        "tokenizer",
        "data",
        "options",
        "conventions",
        "n_prompts",
        "n_tokens",
        "first_token",
        "n_truncated",
        "features",
    ] {
        assert_eq!(m.get(k), n.get(k), "manifest field '{k}' differs");
    }
    assert!(n.get("shard").is_none());
    assert!(n["merged_from"].as_array().is_some_and(|v| !v.is_empty()));
}

/// `path` parses into its schema type `T`, which serialises back (keys sorted, as the writers
/// do) to the file's bytes: the file has exactly the type's keys and values.
pub fn roundtrip<T: serde::Serialize + serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap();
    let typed: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let back = serde_json::to_string_pretty(&serde_json::to_value(&typed).unwrap()).unwrap();
    assert_eq!(back, text, "{} does not round-trip through its schema type", path.display());
    typed
}
