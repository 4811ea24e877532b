//! probe shards merge before the cross-validation: a probe over all sentences, and the same
//! sentences as 3 shards (features only) merged by [`merge_runs`], must write the same
//! metrics.json, prompts.jsonl and features.f32 byte for byte (tiny llama fixture, synthetic
//! labelled sentences).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use sinkscope_analysis::datasets::Example;
use sinkscope_analysis::probe::{run_probe, ProbeOptions};
use sinkscope_analysis::profile::{DataSource, ManifestHeader, NoProgress, ProfileInput, ProfileOptions};
use sinkscope_analysis::shard::{merge_runs, MergeOptions, Shard, SHARD_KEY};
use sinkscope_metrics::probe::{Pool, ProbeParams};
use std::path::{Path, PathBuf};

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("shard-probe").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn examples(n: usize) -> Vec<Example> {
    let pos = ["river", "boats", "quiet", "mill", "small"];
    let neg = ["def", "return", "sum", "add", "1234"];
    (0..n)
        .map(|i| {
            let label = i % 3 != 0;
            let w = if label { pos[i % 5] } else { neg[(i / 2) % 5] };
            let filler: Vec<&str> = (0..i % 7).map(|j| pos[(i + j) % 5]).collect();
            Example {
                id: format!("s{i}"),
                text: format!("{w} {} the {w}", filler.join(" ")),
                label: Some(label),
            }
        })
        .collect()
}

#[test]
fn probe_shards_merge_before_cross_validation() {
    let (files, model) = sinkscope_model::load(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gguf/llama/llama-f32.gguf"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let c = &files.config;
    let opts = ProbeOptions {
        prompt: ProfileOptions::default(),
        pool: Pool::Mean,
        params: ProbeParams { folds: 3, ..ProbeParams::default() },
        keep_features: true,
    };
    let header = |shard: Option<serde_json::Value>| {
        let mut extra = serde_json::Map::new();
        if let Some(s) = shard {
            extra.insert(SHARD_KEY.into(), s);
        }
        ManifestHeader {
            tool: json!({"name": "test"}),
            model: json!({"sha256": "fixture", "config": {"n_layers": c.n_layers, "n_heads": c.n_heads, "d_model": c.d_model}}),
            tokenizer: json!({}),
            load_s: 0.0,
            extra,
        }
    };
    let n = 40;
    let run = |out: &Path, ex: Vec<Example>, h: &ManifestHeader| {
        let total = ex.len();
        let mut iter = ex.into_iter();
        let input = ProfileInput {
            source: DataSource::File(PathBuf::from("synthetic").into()),
            limit: None,
            prompts: &mut iter,
            total: Some(total),
            workers: 1,
            pack_tokens: sinkscope_analysis::profile::DEFAULT_PACK_TOKENS,
        };
        run_probe(&model, &files, &opts, h, input, out, &mut NoProgress).unwrap()
    };
    let d = dir("probe");
    let full = d.join("full");
    let s = run(&full, examples(n), &header(None));
    assert_eq!(s.layers.len(), c.n_layers + 1);
    let mut shards = Vec::new();
    for i in 0..3 {
        let mut ex = examples(n);
        let shard = Shard { index: i, count: 3 };
        let block = serde_json::to_value(shard.select(&mut ex).unwrap()).unwrap();
        let out = d.join(format!("shard{i}"));
        let s = run(&out, ex, &header(Some(block)));
        assert!(s.layers.is_empty(), "a shard fits no probe");
        assert!(!out.join("metrics.json").exists());
        shards.push(out);
    }
    let merged = d.join("merged");
    let m =
        merge_runs(&shards, &merged, &MergeOptions { tool: json!({"name": "test"}), keep_features: true })
            .unwrap();
    assert_eq!((m.kind.as_str(), m.n_prompts), ("probe", n));
    for f in ["metrics.json", "prompts.jsonl", "features.f32"] {
        let (a, b) = (std::fs::read(full.join(f)).unwrap(), std::fs::read(merged.join(f)).unwrap());
        assert!(a == b, "{f} of the merged probe differs from the unsharded probe's");
    }
}
