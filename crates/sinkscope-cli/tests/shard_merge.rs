//! Sharded runs merge exactly: `profile` and `lens` run over all prompts at once, and again as
//! shards (`--shard I/N`, different thread settings), then `sinkscope merge`. Every file of
//! the merged folder except `manifest.json` and `report.html` (which record timings and the
//! command line, and differ between two identical runs too) must equal the unsharded run's
//! byte for byte (metrics.json, prompts.jsonl, layers.csv, every plot); the manifests must have
//! the same identity and counts. Merges of shards that do not belong together are refused
//! with exit 3, naming what differs or is missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gguf/llama/llama-f32.gguf")
}

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("shard-merge").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn prompt_file(d: &Path, n: usize) -> PathBuf {
    let words = ["river", "boats", "mill", "quiet", "small", "old", "the", "past", "carried", "children"];
    let mut s = String::new();
    for i in 0..n {
        let text: Vec<&str> = (0..4 + (i * 5) % 23).map(|j| words[(i * 7 + j * 3) % words.len()]).collect();
        s.push_str(&serde_json::json!({"id": format!("p{i}"), "text": text.join(" ")}).to_string());
        s.push('\n');
    }
    let p = d.join("prompts.jsonl");
    std::fs::write(&p, s).unwrap();
    p
}

fn sinkscope(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sinkscope"))
        .args(args)
        .env_remove("SINKSCOPE_AVAILABLE_MEMORY")
        .output()
        .unwrap()
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[path = "support/compare.rs"]
mod compare;
use compare::{assert_same_run, manifest};

/// profile: 3 uneven shards (one with 2 threads and no packing) merge to the unsharded run.
#[test]
fn profile_shards_merge_byte_for_byte() {
    let d = dir("profile");
    let prompts = prompt_file(&d, 11);
    let p = prompts.to_str().unwrap();
    let m = fixture_model();
    let m = m.to_str().unwrap();
    let full = d.join("full");
    ok(&sinkscope(&[
        "profile",
        m,
        "--prompts",
        p,
        "--quiet",
        "--threads",
        "1",
        "--out",
        full.to_str().unwrap(),
    ]));
    let mut shards = Vec::new();
    for (i, extra) in
        [(0, vec!["--threads", "1"]), (1, vec!["--threads", "2", "--pack-tokens", "1"]), (2, vec![])]
    {
        let out = d.join(format!("shard{i}"));
        let shard = format!("{i}/3");
        let mut args = vec![
            "profile",
            m,
            "--prompts",
            p,
            "--quiet",
            "--no-report",
            "--shard",
            &shard,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        ok(&sinkscope(&args));
        assert_eq!(manifest(&out)["shard"]["count"], 3);
        shards.push(out);
    }
    // Merge in any order.
    let merged = d.join("merged");
    let s: Vec<&str> = shards.iter().rev().map(|x| x.to_str().unwrap()).collect();
    let mut args = vec!["merge"];
    args.extend(&s);
    args.extend(["--out", merged.to_str().unwrap()]);
    ok(&sinkscope(&args));
    assert_same_run(&full, &merged);

    // A missing shard, a shard given twice, and a shard of another run are refused (exit 3).
    let e = sinkscope(&["merge", s[0], s[1], "--out", d.join("m2").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&e.stderr);
    assert_eq!(e.status.code(), Some(3), "{err}");
    assert!(err.contains("missing shard(s) 0/3"), "{err}");
    let e = sinkscope(&["merge", s[0], s[1], s[2], s[0], "--out", d.join("m3").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&e.stderr);
    assert_eq!(e.status.code(), Some(3), "{err}");
    assert!(err.contains("given twice"), "{err}");
    let other = d.join("other");
    ok(&sinkscope(&[
        "profile",
        m,
        "--prompts",
        p,
        "--quiet",
        "--no-report",
        "--epsilon",
        "0.5",
        "--shard",
        "0/3",
        "--out",
        other.to_str().unwrap(),
    ]));
    let e =
        sinkscope(&["merge", other.to_str().unwrap(), s[1], s[0], "--out", d.join("m4").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&e.stderr);
    assert_eq!(e.status.code(), Some(3), "{err}");
    assert!(err.contains("'options.epsilon'") && err.contains("not a shard of the same run"), "{err}");
    let e = sinkscope(&["merge", full.to_str().unwrap(), "--out", d.join("m5").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&e.stderr);
    assert_eq!(e.status.code(), Some(3), "{err}");
    assert!(err.contains("not a shard run"), "{err}");
    // An unfinished shard is refused.
    let mut mf = manifest(&shards[1]);
    mf["status"] = "running".into();
    std::fs::write(shards[1].join("manifest.json"), mf.to_string()).unwrap();
    let e = sinkscope(&["merge", s[0], s[1], s[2], "--out", d.join("m6").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&e.stderr);
    assert_eq!(e.status.code(), Some(3), "{err}");
    assert!(err.contains("not complete"), "{err}");
    // More shards than prompts, and a bad spec.
    let e = sinkscope(&[
        "profile",
        m,
        "--prompts",
        p,
        "--quiet",
        "--shard",
        "0/12",
        "--limit",
        "3",
        "--out",
        d.join("e").to_str().unwrap(),
    ]);
    assert_eq!(e.status.code(), Some(2), "{}", String::from_utf8_lossy(&e.stderr));
    let e =
        sinkscope(&["profile", m, "--prompts", p, "--shard", "3/3", "--out", d.join("e2").to_str().unwrap()]);
    assert_eq!(e.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&e.stderr).contains("--shard"));
}

/// lens: 2 shards merge to the unsharded run, report included.
#[test]
fn lens_shards_merge_byte_for_byte() {
    let d = dir("lens");
    let prompts = prompt_file(&d, 7);
    let p = prompts.to_str().unwrap();
    let m = fixture_model();
    let m = m.to_str().unwrap();
    let full = d.join("full");
    ok(&sinkscope(&["lens", m, "--prompts", p, "--quiet", "--out", full.to_str().unwrap()]));
    let mut shards = Vec::new();
    for i in 0..2 {
        let out = d.join(format!("shard{i}"));
        let shard = format!("{i}/2");
        ok(&sinkscope(&[
            "lens",
            m,
            "--prompts",
            p,
            "--quiet",
            "--no-report",
            "--shard",
            &shard,
            "--out",
            out.to_str().unwrap(),
        ]));
        shards.push(out);
    }
    let merged = d.join("merged");
    ok(&sinkscope(&[
        "merge",
        shards[0].to_str().unwrap(),
        shards[1].to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]));
    assert_same_run(&full, &merged);
}

/// ablate: 2 shards (each with the baseline over all prompts) merge to the unsharded study:
/// ablate.json, the CSVs, the plots and every sub-run's files byte for byte (manifests and
/// report pages aside, as above).
#[test]
fn ablate_shards_merge_byte_for_byte() {
    let d = dir("ablate");
    let prompts = prompt_file(&d, 5);
    let p = prompts.to_str().unwrap();
    let m = fixture_model();
    let m = m.to_str().unwrap();
    let study = ["--layers", "1", "--scales", "0.5,0", "--one-by-one", "--mean-ablate"];
    let full = d.join("full");
    let mut args = vec!["ablate", m, "--prompts", p, "--quiet", "--out", full.to_str().unwrap()];
    args.extend(study);
    ok(&sinkscope(&args));
    let mut shards = Vec::new();
    for i in 0..2 {
        let out = d.join(format!("shard{i}"));
        let shard = format!("{i}/2");
        let mut args = vec![
            "ablate",
            m,
            "--prompts",
            p,
            "--quiet",
            "--no-report",
            "--shard",
            &shard,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(study);
        ok(&sinkscope(&args));
        shards.push(out);
    }
    let merged = d.join("merged");
    let s: Vec<&str> = shards.iter().rev().map(|x| x.to_str().unwrap()).collect();
    let mut args = vec!["merge"];
    args.extend(&s);
    args.extend(["--out", merged.to_str().unwrap()]);
    ok(&sinkscope(&args));
    let names: Vec<String> = std::fs::read_dir(&full)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir() && e.path().join("manifest.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.len() >= 6, "{names:?}"); // baseline, scale_0.5, scale_0, only_1, sun_mean, zero_dims, mean_ablate
    for f in compare::files(&full) {
        let name = f.file_name().unwrap();
        if name == "manifest.json" || name == "report.html" {
            continue;
        }
        assert!(
            std::fs::read(full.join(&f)).unwrap() == std::fs::read(merged.join(&f)).unwrap(),
            "{} of the merged study differs from the unsharded one's",
            f.display()
        );
    }
    assert_eq!(compare::files(&full), compare::files(&merged));
    for n in &names {
        if n == "baseline" {
            assert_eq!(manifest(&full.join(n))["options"], manifest(&merged.join(n))["options"]);
        } else {
            assert_same_run(&full.join(n), &merged.join(n));
        }
    }

    // Shards of two different studies are refused, naming the file.
    let other = d.join("other");
    let mut args = vec![
        "ablate",
        m,
        "--prompts",
        p,
        "--quiet",
        "--no-report",
        "--scales",
        "0",
        "--layers",
        "1",
        "--shard",
        "1/2",
        "--out",
        other.to_str().unwrap(),
    ];
    args.extend(["--one-by-one"]);
    ok(&sinkscope(&args));
    let e = sinkscope(&[
        "merge",
        shards[0].to_str().unwrap(),
        other.to_str().unwrap(),
        "--out",
        d.join("m2").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&e.stderr);
    assert_eq!(e.status.code(), Some(3), "{err}");
    assert!(err.contains("not a shard of the same study") && err.contains("ablate.json"), "{err}");
    let e = sinkscope(&["merge", full.to_str().unwrap(), "--out", d.join("m3").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&e.stderr);
    assert_eq!(e.status.code(), Some(3), "{err}");
    assert!(err.contains("no 'shard' block"), "{err}");
}
