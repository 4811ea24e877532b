//! One schema type per file: every results file a run folder holds is the serialisation of
//! its `sinkscope_schema` type, the type the readers parse. On the fixture Llama (HF folder,
//! 3 blocks, 4 heads) a profile, a lens, a probe, an mc and an ablate run are written; each
//! file is parsed into its type and serialised again, which must give the same JSON value and
//! the same bytes (so the type lost no field the writer wrote, and the writer wrote nothing
//! the type does not declare). `manifest.json` likewise (its free-form blocks are kept by
//! name, see `check_manifest`); each line of `prompts.jsonl` is its kind's line type
//! (`check_prompts`), byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use sinkscope_analysis::ablate::{run_ablate, AblateOptions, Component};
use sinkscope_analysis::datasets::{Example, McItem};
use sinkscope_analysis::mc::{run_mc, McInput};
use sinkscope_analysis::probe::{run_probe, ProbeOptions};
use sinkscope_analysis::profile::{
    run_profile, DataSource, ManifestHeader, NoProgress, ProfileInput, ProfileOptions, Progress,
};
use sinkscope_metrics::probe::{Pool, ProbeParams};
use sinkscope_schema::{
    AblateFile, LensRecord, LensSummary, Manifest, McRecord, McSummary, MetricsFile, ProbeRecord,
    ProbeSummary, PromptLine, PromptRecord, RunKind, RunSummary,
};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn out_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("schema_roundtrip").join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The header the CLI and the Python package build (`sinkscope_analysis::header`).
fn header(files: &sinkscope_io::ModelFiles) -> ManifestHeader {
    use sinkscope_analysis::header::{model_info, tokenizer_info, tool_info};
    ManifestHeader {
        tool: tool_info(),
        model: model_info(files, "0123"),
        tokenizer: tokenizer_info(files, sinkscope_io::tokenizer::BosPolicy::Auto),
        load_s: 0.0,
        extra: Default::default(),
    }
}

const TEXTS: [&str; 4] = [
    "The quiet river carried small boats past the old mill.",
    "A farmer counted twelve sheep and four cows in the field.",
    "Rain fell on the city all night.",
    "Two trains left the station at noon, one going north.",
];

fn examples() -> Vec<Example> {
    TEXTS
        .iter()
        .enumerate()
        .map(|(i, t)| Example { id: format!("p{i}"), text: (*t).to_string(), label: None })
        .collect()
}

fn input<'a>(it: &'a mut dyn Iterator<Item = Example>, n: usize) -> ProfileInput<'a> {
    ProfileInput {
        source: DataSource::File(PathBuf::from("inline").into()),
        limit: None,
        prompts: it,
        total: Some(n),
        workers: 1,
        pack_tokens: sinkscope_analysis::profile::DEFAULT_PACK_TOKENS,
    }
}

/// Whether `value` survives a trip through `T`: parsed into `T` and serialised again, it is
/// the same JSON value.
fn survives<T: DeserializeOwned + Serialize>(value: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(value.clone()).map_err(|e| format!("does not parse: {e}"))?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    if &back == value {
        return Ok(());
    }
    let (a, b) = (value.as_object(), back.as_object());
    let lost: Vec<&String> =
        a.map(|a| a.keys().filter(|k| b.is_none_or(|b| !b.contains_key(*k))).collect()).unwrap_or_default();
    let differ: Vec<&String> = a
        .map(|a| {
            a.iter()
                .filter(|(k, v)| b.and_then(|b| b.get(*k)).is_some_and(|w| w != *v))
                .map(|x| x.0)
                .collect()
        })
        .unwrap_or_default();
    Err(format!("the round trip differs: keys lost {lost:?}, keys that differ {differ:?}"))
}

/// Checks one written file: its value survives `T`, and `T`'s serialisation is the file's
/// bytes (`write_json`: pretty, keys sorted).
fn check_file<T: DeserializeOwned + Serialize>(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: Value = serde_json::from_str(&text).unwrap();
    survives::<T>(&value).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let typed: T = serde_json::from_value(value).unwrap();
    let again = serde_json::to_string_pretty(&serde_json::to_value(&typed).unwrap()).unwrap();
    assert_eq!(again, text, "{}: the typed struct does not give the file's bytes", path.display());
}

/// The check can fail: a field the type does not declare, at any depth, is reported.
fn check_can_fail<T: DeserializeOwned + Serialize>(path: &Path, pointer: &str) {
    let mut value: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let target = value.pointer_mut(pointer).unwrap_or_else(|| panic!("{}: no {pointer}", path.display()));
    target.as_object_mut().unwrap().insert("not_in_the_schema".into(), json!(1));
    assert!(
        survives::<T>(&value).is_err(),
        "{}: an undeclared field at {pointer} went unnoticed",
        path.display()
    );
}

/// `manifest.json` is its type too. Its free-form blocks (data source, options, conventions,
/// timings, execution, and blocks a caller adds such as `memory`) are kept by name; the
/// typed blocks (`tool`, `model`, `tokenizer`, `first_token`) catch an undeclared field.
fn check_manifest(dir: &Path) {
    let path = dir.join("manifest.json");
    check_file::<Manifest>(&path);
    check_can_fail::<Manifest>(&path, "/tool");
    check_can_fail::<Manifest>(&path, "/tokenizer");
    let m: Manifest = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(m.status.as_deref(), Some("complete"), "{}", path.display());
    if m.first_token.is_some() {
        check_can_fail::<Manifest>(&path, "/first_token");
    }
}

/// `prompts.jsonl`: each line is the serialisation of its kind's schema type `T` (written
/// field by field in declaration order, not sorted). Every line parses into `T`, survives it
/// as a value (no field lost or undeclared), and `T` serialised again gives the line's bytes;
/// the reader's [`PromptLine::load_all`] parses the file as the folder's kind; an undeclared
/// field is caught, and a line stripped to its id still parses (old folders still render).
fn check_prompts<T: DeserializeOwned + Serialize>(dir: &Path, kind: RunKind) {
    let path = dir.join("prompts.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(text.lines().count() > 0, "{}: empty", path.display());
    for (i, line) in text.lines().enumerate() {
        let at = || format!("{} line {}", path.display(), i + 1);
        let v: Value = serde_json::from_str(line).unwrap();
        survives::<T>(&v).unwrap_or_else(|e| panic!("{}: {e}", at()));
        let rec: T = serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: does not parse: {e}", at()));
        assert_eq!(
            serde_json::to_string(&rec).unwrap(),
            line,
            "{}: the typed line does not give its bytes",
            at()
        );
        let mut extra = v.clone();
        extra.as_object_mut().unwrap().insert("not_in_the_schema".into(), json!(1));
        assert!(survives::<T>(&extra).is_err(), "{}: an undeclared field went unnoticed", at());
        let old = json!({"id": v["id"].clone()});
        serde_json::from_value::<T>(old).unwrap_or_else(|e| panic!("{}: a line with only an id: {e}", at()));
    }
    let lines = PromptLine::load_all(&path, kind).unwrap();
    assert_eq!(lines.len(), text.lines().count(), "{}", path.display());
    for l in &lines {
        assert!(
            !l.id().is_empty() && l.n_tokens().is_some() && l.first_token().is_some(),
            "{}",
            path.display()
        );
    }
}

#[test]
fn every_written_file_is_its_schema_type() {
    let (files, model) =
        sinkscope_model::load(&root().join("tests/fixtures/models/llama"), &candle_core::Device::Cpu)
            .unwrap();
    let opts = ProfileOptions { nll: true, ..ProfileOptions::default() };

    // profile
    let out = out_dir("profile");
    let mut it = examples().into_iter();
    run_profile(&model, &files, &opts, &header(&files), input(&mut it, TEXTS.len()), &out, &mut NoProgress)
        .unwrap();
    let metrics = out.join("metrics.json");
    check_file::<MetricsFile<RunSummary>>(&metrics);
    check_manifest(&out);
    check_prompts::<PromptRecord>(&out, RunKind::Profile);
    check_can_fail::<MetricsFile<RunSummary>>(&metrics, "");
    check_can_fail::<MetricsFile<RunSummary>>(&metrics, "/summary/correlations/bos_sink/lag1/per_prompt");
    check_can_fail::<MetricsFile<RunSummary>>(&metrics, "/heads");
    check_can_fail::<MetricsFile<RunSummary>>(&metrics, "/metrics/bos_norm");

    // lens
    let out = out_dir("lens");
    let mut it = examples().into_iter();
    sinkscope_analysis::lens::run_lens(
        &model,
        &files,
        &ProfileOptions::default(),
        &header(&files),
        input(&mut it, TEXTS.len()),
        &out,
        &mut NoProgress,
    )
    .unwrap();
    check_file::<MetricsFile<LensSummary>>(&out.join("metrics.json"));
    check_manifest(&out);
    check_prompts::<LensRecord>(&out, RunKind::Lens);
    check_can_fail::<MetricsFile<LensSummary>>(&out.join("metrics.json"), "/summary");

    // probe
    let out = out_dir("probe");
    let labelled: Vec<Example> = (0..12)
        .map(|i| {
            let w = if i % 2 == 0 { "river" } else { "return" };
            Example { id: format!("s{i}"), text: format!("{w} {w} the {w}"), label: Some(i % 2 == 0) }
        })
        .collect();
    let popts = ProbeOptions {
        prompt: ProfileOptions::default(),
        pool: Pool::Mean,
        params: ProbeParams { folds: 3, ..ProbeParams::default() },
        keep_features: false,
    };
    let mut it = labelled.into_iter();
    run_probe(&model, &files, &popts, &header(&files), input(&mut it, 12), &out, &mut NoProgress).unwrap();
    check_file::<MetricsFile<ProbeSummary>>(&out.join("metrics.json"));
    check_manifest(&out);
    check_prompts::<ProbeRecord>(&out, RunKind::Probe);
    check_can_fail::<MetricsFile<ProbeSummary>>(&out.join("metrics.json"), "/summary/per_layer/0");

    // mc
    let out = out_dir("mc");
    let items: Vec<McItem> = (0..3)
        .map(|i| McItem {
            id: format!("mc-{i}"),
            context: "The river carried the".into(),
            choices: vec!["boats".into(), "sheep".into(), "trains".into()],
            gold: i % 3,
        })
        .collect();
    let mc_input =
        McInput { source: DataSource::File(PathBuf::from("inline").into()), limit: None, items: &items };
    run_mc(&model, &files, &ProfileOptions::default(), &header(&files), mc_input, &out, &mut NoProgress)
        .unwrap();
    check_file::<MetricsFile<McSummary>>(&out.join("metrics.json"));
    check_manifest(&out);
    check_prompts::<McRecord>(&out, RunKind::Mc);
    check_can_fail::<MetricsFile<McSummary>>(&out.join("metrics.json"), "/summary/bootstrap");

    // ablate: every kind of entry (dose-response, one by one, the three dimension ablations)
    let out = out_dir("ablate");
    let aopts = AblateOptions {
        profile: ProfileOptions::default(),
        blocks: Some(vec![1, 2]),
        scales: vec![0.0, 0.5],
        component: Component::Mlp,
        one_by_one: true,
        mean_ablate: true,
        shard: None,
    };
    let mut progress = |_: &str| -> Box<dyn Progress> { Box::new(NoProgress) };
    let source = DataSource::File(PathBuf::from("inline").into());
    run_ablate(&model, &files, &aopts, &header(&files), &examples(), &source, None, &out, &mut progress)
        .unwrap();
    let ablate = out.join("ablate.json");
    check_file::<AblateFile>(&ablate);
    check_can_fail::<AblateFile>(&ablate, "/sun_mean_ablate/summary");
    check_can_fail::<AblateFile>(&ablate, "/evidence/0");
    let doc: AblateFile = serde_json::from_str(&std::fs::read_to_string(&ablate).unwrap()).unwrap();
    let runs: Vec<String> = doc
        .dose_response
        .iter()
        .chain(&doc.one_by_one)
        .chain(doc.mean_ablate.as_ref())
        .chain(doc.sun_mean_ablate.as_ref())
        .chain(doc.zero_dims.as_ref())
        .map(|e| e.run.clone().unwrap())
        .collect();
    assert_eq!(runs.len(), 3 + 2 + 3, "{runs:?}");
    for r in runs {
        check_file::<MetricsFile<RunSummary>>(&out.join(&r).join("metrics.json"));
        check_manifest(&out.join(&r));
        check_prompts::<PromptRecord>(&out.join(&r), RunKind::Profile);
    }
}
