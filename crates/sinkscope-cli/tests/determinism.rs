//! Determinism: the same inputs give byte-identical outputs across runs and across thread
//! counts. `run`: every activations file; `profile`: metrics.json and prompts.jsonl, and the
//! manifest with its timing/host fields removed. candle's CPU matmul (the `gemm` crate) splits
//! work over output blocks, never over the reduction axis, so no tolerance is needed: the
//! tests demand equality of bytes (RELIABILITY.md).
//!
//! The thread-count checks use the demo model (SmolLM2-135M, `sinkscope fetch smollm2`;
//! scripts/test.sh fetches it), whose matrices are large enough for the matmul to split.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn smollm2() -> PathBuf {
    let p = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run `cargo run -p sinkscope-cli -- fetch smollm2` (scripts/test.sh does) first",
        p.display()
    );
    p
}

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("determinism").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn prompts(d: &Path) -> PathBuf {
    let p = d.join("prompts.jsonl");
    let texts = [
        "The quiet river carried small boats past the old mill, and the children watched them from the bridge.",
        "def add(a, b):\n    return a + b  # sum of two numbers",
        "In 1969 the first humans walked on the Moon; Apollo 11 returned after eight days.",
    ];
    let lines: String = texts
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"id": format!("p{i}"), "text": t}).to_string() + "\n")
        .collect();
    std::fs::write(&p, lines).unwrap();
    p
}

fn sinkscope(args: &[&std::ffi::OsStr], threads: Option<&str>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sinkscope"));
    cmd.args(args);
    cmd.env_remove("RAYON_NUM_THREADS").env_remove("CANDLE_NUM_THREADS");
    if let Some(t) = threads {
        cmd.env("RAYON_NUM_THREADS", t);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// `run` with many capture sites into `out`.
fn run(model: &Path, prompts: &Path, out: &Path, threads: Option<&str>) {
    let capture = "hook_embed,blocks.*.hook_resid_post,blocks.*.attn.hook_pattern,blocks.*.attn.hook_q,\
                   blocks.*.hook_attn_out,blocks.*.hook_mlp_out,ln_final.hook_normalized,logits";
    sinkscope(
        &[
            "run".as_ref(),
            model.as_os_str(),
            "--prompts".as_ref(),
            prompts.as_os_str(),
            "--capture".as_ref(),
            capture.as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ],
        threads,
    );
}

#[track_caller]
fn same_files(a: &Path, b: &Path, names: &[&str]) {
    for n in names {
        let (x, y) = (std::fs::read(a.join(n)).unwrap(), std::fs::read(b.join(n)).unwrap());
        assert!(x == y, "{n} differs between {} and {}", a.display(), b.display());
    }
}

const ACTIVATIONS: &[&str] =
    &["activations/p0.safetensors", "activations/p1.safetensors", "activations/p2.safetensors"];

/// Two runs of the same fixture model (GGUF and safetensors) write the same bytes.
#[test]
fn run_is_deterministic_across_runs() {
    let fx = root().join("tests/fixtures");
    for (name, model) in [("gguf", fx.join("gguf/llama/llama-q8_0.gguf")), ("hf", fx.join("models/gpt_neox"))]
    {
        let d = dir(&format!("runs_{name}"));
        let p = prompts(&d);
        run(&model, &p, &d.join("a"), None);
        run(&model, &p, &d.join("b"), None);
        same_files(&d.join("a"), &d.join("b"), ACTIVATIONS);
    }
}

/// The demo model gives the same bytes with 1 and 2 matmul threads.
#[test]
fn run_is_deterministic_across_thread_counts() {
    let model = smollm2();
    let d = dir("threads_run");
    let p = prompts(&d);
    run(&model, &p, &d.join("t1"), Some("1"));
    run(&model, &p, &d.join("t2"), Some("2"));
    same_files(&d.join("t1"), &d.join("t2"), ACTIVATIONS);
}

/// The manifest without what legitimately changes between runs (timings, the command line,
/// the thread settings, the memory measured).
fn stable_manifest(path: &Path) -> serde_json::Value {
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let o = m.as_object_mut().unwrap();
    for k in ["timings", "execution", "memory"] {
        o.remove(k);
    }
    if let Some(t) = o.get_mut("tool").and_then(|t| t.as_object_mut()) {
        t.remove("command_line");
    }
    m
}

/// `profile` on the demo model: metrics.json and prompts.jsonl are byte-identical across two
/// runs, between one prompt worker (multi-threaded matmul) and two (single-threaded
/// matmuls), and with packing off (one forward pass per prompt) or on (the default packs, and
/// packs of 100 tokens); the manifests agree but for timings and execution settings.
#[test]
fn profile_is_deterministic_across_runs_and_threads() {
    let model = smollm2();
    let d = dir("profile");
    let p = prompts(&d);
    let profile = |out: &str, threads: &str, pack: &str| {
        let out = d.join(out);
        sinkscope(
            &[
                "profile".as_ref(),
                model.as_os_str(),
                "--prompts".as_ref(),
                p.as_os_str(),
                "--out".as_ref(),
                out.as_os_str(),
                "--no-report".as_ref(),
                "--quiet".as_ref(),
                "--threads".as_ref(),
                threads.as_ref(),
                "--pack-tokens".as_ref(),
                pack.as_ref(),
            ],
            None,
        );
        out
    };
    let a = profile("a", "1", "128");
    let b = profile("b", "1", "128");
    let c = profile("c", "2", "128");
    let unpacked = profile("unpacked", "2", "1");
    let small_packs = profile("small-packs", "1", "100");
    for other in [&b, &c, &unpacked, &small_packs] {
        same_files(&a, other, &["metrics.json", "prompts.jsonl"]);
        let (ma, mo) =
            (stable_manifest(&a.join("manifest.json")), stable_manifest(&other.join("manifest.json")));
        let (pa, po) = (ma.get("prompts").cloned(), mo.get("prompts").cloned());
        assert_eq!(pa, po);
        let mut ma = ma;
        let mut mo = mo;
        // The output folder differs by construction.
        for m in [&mut ma, &mut mo] {
            if let Some(o) = m.as_object_mut() {
                o.remove("out");
            }
        }
        if ma != mo {
            let keys: Vec<String> = ma
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, v)| mo.get(k.as_str()) != Some(v))
                .map(|(k, v)| {
                    format!("{k}: {v} vs {}", mo.get(k.as_str()).unwrap_or(&serde_json::Value::Null))
                })
                .collect();
            panic!("manifests differ beyond timings: {keys:?}");
        }
    }
}

/// `run` with the kernel path forced by `SINKSCOPE_KERNEL`.
fn run_on_path(model: &Path, prompts: &Path, out: &Path, path: &str) {
    let capture =
        "hook_embed,blocks.*.hook_resid_post,blocks.*.attn.hook_pattern,blocks.*.hook_mlp_out,logits";
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sinkscope"));
    cmd.args(["run".as_ref(), model.as_os_str(), "--prompts".as_ref(), prompts.as_os_str()]);
    cmd.args(["--capture".as_ref(), capture.as_ref(), "--out".as_ref(), out.as_os_str()]);
    cmd.env("SINKSCOPE_KERNEL", path);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{path}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Every kernel path this CPU runs (AVX-512, AVX2, portable) writes the same activation bytes:
/// the demo model (stored Q4_1 weights) on the AVX paths, a fixture (f32 and q8_0) on all three
/// (the portable path is slow). A path the CPU lacks is reported and left out.
#[test]
fn run_is_identical_on_every_kernel_path() {
    use sinkscope_model::layers::gemm::KernelPath;
    let paths: Vec<&str> = [KernelPath::Avx512, KernelPath::Avx2, KernelPath::Portable]
        .into_iter()
        .filter(|p| {
            let ok = p.supported();
            if !ok {
                eprintln!("note: this CPU cannot run the {} kernel; not compared", p.name());
            }
            ok
        })
        .map(|p| p.name())
        .collect();
    let fx = root().join("tests/fixtures");
    for (name, model, fast_only) in [
        ("smollm2", smollm2(), true),
        ("llama_f32", fx.join("gguf/llama/llama-f32.gguf"), false),
        ("llama_q8", fx.join("gguf/llama/llama-q8_0.gguf"), false),
    ] {
        let d = dir(&format!("paths_{name}"));
        let p = prompts(&d);
        let used: Vec<&str> = paths.iter().copied().filter(|p| !(fast_only && *p == "portable")).collect();
        for path in &used {
            run_on_path(&model, &p, &d.join(path), path);
        }
        for path in used.iter().skip(1) {
            same_files(&d.join(used[0]), &d.join(path), ACTIVATIONS);
        }
    }
}
