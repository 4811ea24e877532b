//! The files of a sweep's output folder (`docs/results-schema.md`, "Sweeps"): `OUT/sweep.json`
//! ([`SweepFile`]) and each checkpoint series' `trajectory.json` ([`TrajectoryFile`]).
//!
//! Like every results file they are written with their keys in sorted order (through a
//! `serde_json::Value`); the fields are declared in reading order.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::LayerValue;

/// File name of a sweep's summary inside its output folder.
pub const SWEEP_FILE: &str = "sweep.json";
/// File name of a checkpoint series' trajectory inside `OUT/trajectory/<series>.<data>/`.
pub const TRAJECTORY_FILE: &str = "trajectory.json";

/// `OUT/sweep.json`: every task of a sweep, whether it completed, and what was merged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SweepFile {
    /// The sweep's name (the plan's `name`, else its file stem).
    pub name: String,
    /// The plan file (TOML).
    pub plan: PathBuf,
    /// Every task of the plan, in plan order.
    pub tasks: Vec<SweepTask>,
    /// Group (`<model>.<data>.<command>`) → its merged run folder, for the groups whose every
    /// shard is complete.
    pub runs: BTreeMap<String, PathBuf>,
    /// The `trajectory.html` of each checkpoint series.
    pub trajectories: Vec<PathBuf>,
}

/// One task of [`SweepFile::tasks`]: one `sinkscope <command> --shard i/N` run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SweepTask {
    /// `<model>.<data>.<command>.<i>of<N>`.
    pub id: String,
    /// `<model>.<data>.<command>` (the shards merged together).
    pub group: String,
    /// The model file or folder.
    pub model: PathBuf,
    /// The model's label.
    pub label: String,
    /// The checkpoint's training step, if it has one.
    pub step: Option<u64>,
    /// The checkpoint's revision, if the plan gives one.
    pub revision: Option<String>,
    /// The prompt set's label.
    pub data: String,
    /// The command (`profile`, `lens`, `ablate`, ...).
    pub command: String,
    /// `i/N`.
    pub shard: String,
    /// Whether the task's folder holds a complete run.
    pub complete: bool,
    /// Its log file.
    pub log: PathBuf,
}

/// `trajectory.json`: how the three faces of the phenomenon evolve over a model's training
/// checkpoints, and the first step at which each is present.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrajectoryFile {
    /// Always [`crate::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Always `trajectory`.
    pub kind: String,
    /// One entry per checkpoint, by increasing step.
    pub steps: Vec<TrajectoryStep>,
    /// The rule each crossing follows.
    pub thresholds: Crossings<String>,
    /// The first step at which each phenomenon is present (`null`: never).
    pub crossings: Crossings<Option<u64>>,
    /// Whether all three are present and appear at the same step.
    pub emerge_together: bool,
}

/// One checkpoint of [`TrajectoryFile::steps`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrajectoryStep {
    /// Training step.
    pub step: u64,
    /// The profile run folder.
    pub run: PathBuf,
    /// Largest prompt-mean `bos_ratio` and its layer.
    pub peak_bos_ratio: Option<LayerValue>,
    /// Smallest prompt-mean `entropy_norm` and its layer.
    pub min_entropy_norm: Option<LayerValue>,
    /// Largest prompt-mean `sink_rate` and its layer.
    pub peak_sink_rate: Option<LayerValue>,
    /// Detected massive-activation blocks.
    pub massive_blocks: Vec<usize>,
    /// The compress phase (`null`: none detected).
    pub compress: Option<LayerSpan>,
    /// Number of blocks L.
    pub n_layers: usize,
}

/// A range of layers, both ends included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSpan {
    /// First layer.
    pub first: usize,
    /// Last layer.
    pub last: usize,
}

/// One value per phenomenon of the trajectory (its `thresholds` and `crossings` blocks).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Crossings<T> {
    /// A massive-activation block is detected.
    pub massive_activation: T,
    /// Peak prompt-mean `sink_rate` reaches the compress phase's threshold.
    pub attention_sinks: T,
    /// A compress phase is detected.
    pub compression_valley: T,
}
