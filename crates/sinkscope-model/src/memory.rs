//! The memory guard: before the weights are loaded, estimate what a run will hold at its peak
//! and refuse (unless forced) when that exceeds the memory available.
//!
//! The estimate ([`estimate`]) is, in bytes, with f32 = 4 bytes:
//!
//! - **weights** as they will be held ([`sinkscope_io::weights::WeightPlan`]): where the packed
//!   kernel runs (x86-64 with AVX2 and FMA), matrices stored in a format other than F32 stay in
//!   it (their file size: the memory map's pages); every other tensor takes 4 bytes a value;
//! - **load transient**: 2 x 4 x the largest tensor read as f32 (its f32 copy plus one
//!   transformed copy while it is un-permuted, transposed or split);
//! - **working set** of one forward pass over the longest prompt (T tokens): 8 residual-width
//!   tensors `[T, d]`, q/k/v/z and their rotary copies `3 (H + 2 KVH) T dh + H T dh`, the
//!   keys/values repeated for grouped-query attention `2 H T dh`, 3 attention-sized tensors
//!   `[H, T, T]` (scores, masked scores, probabilities) plus the mask `[T, T]`, 3 MLP-width
//!   tensors `[T, d_mlp]`, and 2 logit tensors `[T, V]` when logits are computed;
//! - **retained**: what the caller keeps per prompt (e.g. captured activations), passed in;
//! - a fixed 64 MiB for the runtime, the tokenizer and the allocator.
//!
//! With layer streaming ([`crate::Layout::Streamed`], [`estimate_streamed`]) the weights term
//! is the tensors read as f32, the largest block's mapped matrices and, when logits are
//! computed, the head's; the residual streams of a chunk (`2 x chunk x d`) are added.
//! [`choose_layout`] picks the layout: streaming when asked, or when only it fits.
//!
//! The memory available ([`available`]) is the smallest of `MemAvailable` in `/proc/meminfo`
//! and the room left under the cgroup limit (v2 `memory.max - memory.current`, v1
//! `memory.limit_in_bytes - memory.usage_in_bytes`) and the room left under the process's
//! address-space limit (`RLIMIT_AS`, `ulimit -v`: the limit minus `VmSize`), or the value of
//! the environment variable
//! `SINKSCOPE_AVAILABLE_MEMORY` (bytes, or with a K/M/G/T suffix, powers of 1024) when set.
//! Where none can be read the guard does not refuse.
//!
//! ```no_run
//! use sinkscope_model::memory::{guard, RunShape};
//! let files = sinkscope_io::ModelFiles::open(std::path::Path::new("model.gguf"))?;
//! let shape = RunShape { max_tokens: 128, logits: false, retained_bytes: 0 };
//! let (estimate, available) = guard(&files, &shape, false)?; // Err(Insufficient) when too big
//! println!("needs about {estimate}; available: {available:?}");
//! let model = sinkscope_model::load_files(&files, &candle_core::Device::Cpu)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use sinkscope_io::ModelFiles;
use sinkscope_spec::{HookSite, ModelConfig, SiteKind};
use std::fmt;
use std::path::{Path, PathBuf};

/// The environment variable that overrides the measured available memory.
pub const AVAILABLE_ENV: &str = "SINKSCOPE_AVAILABLE_MEMORY";

const F32: u64 = 4;
const RUNTIME_OVERHEAD: u64 = 64 << 20;

/// What a run will do, as far as memory goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunShape {
    /// Tokens in the longest prompt.
    pub max_tokens: usize,
    /// Whether logits `[T, V]` are computed.
    pub logits: bool,
    /// Bytes the caller keeps alive per prompt beyond the forward pass (captured activations,
    /// their serialised copies, collectors).
    pub retained_bytes: u64,
}

/// The estimate, by part, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// The weights as they will be held (stored formats where they stay, else f32).
    pub weights: u64,
    /// Extra copies while one tensor is loaded.
    pub load_transient: u64,
    /// One forward pass over the longest prompt.
    pub working_set: u64,
    /// What the caller keeps per prompt.
    pub retained: u64,
    /// Runtime, tokenizer, allocator.
    pub overhead: u64,
    /// Tokens in the longest prompt (for the message).
    pub max_tokens: usize,
    /// Layer streaming: the residual streams `[rows, d]` of the prompts that advance block by
    /// block together (their chunk), held between blocks; `None` with resident weights.
    pub streamed_chunk: Option<StreamedChunk>,
}

/// The chunk of a streamed run ([`MemoryEstimate::streamed_chunk`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamedChunk {
    /// Tokens of the largest chunk.
    pub tokens: usize,
    /// Bytes of its residual streams (two `[tokens, d]` copies: a block's input and output).
    pub residual_bytes: u64,
}

impl MemoryEstimate {
    /// The peak: the weights plus the larger of the load transient and the per-prompt memory.
    pub fn total(&self) -> u64 {
        let chunk = self.streamed_chunk.map_or(0, |c| c.residual_bytes);
        let per_prompt = self.working_set.saturating_add(self.retained).saturating_add(chunk);
        self.weights.saturating_add(self.load_transient.max(per_prompt)).saturating_add(self.overhead)
    }
}

impl fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.streamed_chunk {
            None => write!(
                f,
                "{} (weights {}, load transient {}, forward working set for {} tokens {}, retained per prompt {}, runtime {})",
                human(self.total()),
                human(self.weights),
                human(self.load_transient),
                self.max_tokens,
                human(self.working_set),
                human(self.retained),
                human(self.overhead)
            ),
            Some(c) => write!(
                f,
                "{} streaming layers (weights held: one block, the head when used and the unstreamed tensors {}, load transient {}, forward working set for {} tokens {}, residual streams of a {}-token chunk {}, retained {}, runtime {})",
                human(self.total()),
                human(self.weights),
                human(self.load_transient),
                self.max_tokens,
                human(self.working_set),
                c.tokens,
                human(c.residual_bytes),
                human(self.retained),
                human(self.overhead)
            ),
        }
    }
}

/// Memory available to this process, and where the figure comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Available {
    /// Bytes.
    pub bytes: u64,
    /// `MemAvailable in /proc/meminfo`, `cgroup memory.max`, the environment variable, ...
    pub source: String,
}

/// [`Available::source`] when the address-space limit is the binding one.
const ADDRESS_SPACE_SOURCE: &str = "address-space limit (RLIMIT_AS, ulimit -v) minus VmSize";

impl Available {
    /// Whether the figure is the room under the address-space limit (`ulimit -v`), which
    /// layer streaming does not relieve: it lowers the resident pages, while the whole file
    /// stays mapped.
    pub fn is_address_space(&self) -> bool {
        self.source == ADDRESS_SPACE_SOURCE
    }
}

/// Errors of the guard.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The estimate exceeds the memory available.
    #[error(
        "{}: not enough memory: this run needs about {estimate}, but only {} is available ({}); \
         use --force to run anyway, or set {AVAILABLE_ENV} to override the measured amount",
        .path.display(), human(.available.bytes), .available.source
    )]
    Insufficient {
        /// The model.
        path: PathBuf,
        /// The estimate.
        estimate: Box<MemoryEstimate>,
        /// What is available.
        available: Available,
    },
    /// `SINKSCOPE_AVAILABLE_MEMORY` is not a byte count.
    #[error("{AVAILABLE_ENV}={value}: not a byte count (e.g. 8000000000, 512M, 16G)")]
    BadOverride {
        /// The value found.
        value: String,
    },
    /// The worker threads could not be started (the system refused their stacks).
    #[error(
        "not enough memory: starting {threads} worker threads failed: {reason} (the limits of \
         this process: ulimit -v, ulimit -u or its cgroup); raise them, or set RAYON_NUM_THREADS=1"
    )]
    Threads {
        /// Threads asked for.
        threads: usize,
        /// The system's error.
        reason: String,
    },
}

/// Bytes as `1.23 GiB` / `45.6 MiB` / `789 KiB` / `12 B`.
pub fn human(b: u64) -> String {
    const K: f64 = 1024.0;
    let x = b as f64;
    if x >= K * K * K {
        format!("{:.2} GiB", x / (K * K * K))
    } else if x >= K * K {
        format!("{:.1} MiB", x / (K * K))
    } else if x >= K {
        format!("{:.0} KiB", x / K)
    } else {
        format!("{b} B")
    }
}

/// The bytes of one captured activation at `site` for a `t`-token prompt (f32, no batch).
pub fn site_bytes(cfg: &ModelConfig, site: HookSite, t: usize) -> u64 {
    let (t, d, h, kvh, dh) =
        (t as u128, cfg.d_model as u128, cfg.n_heads as u128, cfg.n_kv_heads as u128, cfg.d_head as u128);
    let values = match site.kind {
        SiteKind::AttnPattern | SiteKind::AttnScores => h * t * t,
        SiteKind::AttnSinkProb => h * t,
        SiteKind::AttnQ | SiteKind::AttnQNorm | SiteKind::AttnRotQ | SiteKind::AttnZ => t * h * dh,
        SiteKind::AttnK | SiteKind::AttnKNorm | SiteKind::AttnRotK | SiteKind::AttnV => t * kvh * dh,
        SiteKind::RouterLogits => match cfg.mlp {
            sinkscope_spec::MlpKind::Moe { n_experts, .. } => t * n_experts as u128,
            _ => 0,
        },
        SiteKind::RouterIndices => match cfg.mlp {
            sinkscope_spec::MlpKind::Moe { top_k, .. } => t * top_k as u128,
            _ => 0,
        },
        SiteKind::Logits => t * cfg.d_vocab as u128,
        _ => t * d,
    };
    u64::try_from(values * F32 as u128).unwrap_or(u64::MAX)
}

/// The estimate from a config and the checkpoint's sizes (see the module docs for the formula):
/// `weight_bytes` as they will be held, `largest_f32_values` of the largest tensor read as f32.
pub fn estimate_for(
    cfg: &ModelConfig,
    weight_bytes: u64,
    largest_f32_values: u64,
    shape: &RunShape,
) -> MemoryEstimate {
    // u128: T^2 x heads can pass u64 for absurd (but validated) dimensions.
    let (t, d, h, kvh, dh, m, v) = (
        shape.max_tokens as u128,
        cfg.d_model as u128,
        cfg.n_heads as u128,
        cfg.n_kv_heads as u128,
        cfg.d_head as u128,
        cfg.d_mlp as u128,
        cfg.d_vocab as u128,
    );
    let values = 8 * t * d
        + 3 * (h + 2 * kvh) * t * dh
        + h * t * dh
        + 2 * h * t * dh
        + 3 * h * t * t
        + t * t
        + 3 * t * m
        + if shape.logits { 2 * t * v } else { 0 };
    let values = u64::try_from(values).unwrap_or(u64::MAX);
    MemoryEstimate {
        weights: weight_bytes,
        load_transient: largest_f32_values.saturating_mul(2 * F32),
        working_set: values.saturating_mul(F32),
        retained: shape.retained_bytes,
        overhead: RUNTIME_OVERHEAD,
        max_tokens: shape.max_tokens,
        streamed_chunk: None,
    }
}

/// The estimate of a layer-streamed run ([`crate::Layout::Streamed`]) from the streamed
/// weight plan: the weights held are the tensors read as f32 (norms, biases, matrices whose
/// transform moves values), the largest block's mapped matrices and, when logits are computed,
/// the head's; the working set is one pass of `shape.max_tokens` tokens plus the residual
/// streams of a chunk of `chunk_tokens` tokens; `shape.retained_bytes` is what the chunk's
/// prompts keep.
pub fn estimate_streamed_for(
    cfg: &ModelConfig,
    plan: &sinkscope_io::weights::StreamedPlan,
    shape: &RunShape,
    chunk_tokens: usize,
) -> MemoryEstimate {
    let head = if shape.logits { plan.head_bytes } else { 0 };
    let weights = plan.owned_bytes.saturating_add(plan.largest_block_bytes).saturating_add(head);
    let residual = (chunk_tokens as u64).saturating_mul(cfg.d_model as u64).saturating_mul(2 * F32);
    MemoryEstimate {
        streamed_chunk: Some(StreamedChunk { tokens: chunk_tokens, residual_bytes: residual }),
        ..estimate_for(cfg, weights, plan.largest_f32_values, shape)
    }
}

/// [`estimate_streamed_for`] for a checkpoint opened with [`ModelFiles::open`].
pub fn estimate_streamed(files: &ModelFiles, shape: &RunShape, chunk_tokens: usize) -> MemoryEstimate {
    let plan = files.weight_plan(crate::layers::linear::keep_stored());
    estimate_streamed_for(&files.config, &plan.streamed, shape, chunk_tokens)
}

/// How a run holds its weights, as the guard decided ([`choose_layout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutChoice {
    /// Every block resident.
    Resident,
    /// Layer streaming, asked for with `--stream-layers`.
    Streamed,
    /// Layer streaming chosen by the guard: the model as stored does not fit, streamed it does.
    StreamedAuto,
}

impl LayoutChoice {
    /// Whether the weights are streamed.
    pub fn streamed(self) -> bool {
        self != LayoutChoice::Resident
    }
}

/// The memory guard's choice between the resident and the streamed layout: `requested`
/// (`--stream-layers`) streams; otherwise the resident layout when it fits (or availability is
/// unknown), else streaming when that fits and the binding limit is not the address space
/// ([`Available::is_address_space`]: the whole file stays mapped), else — unless `force`, which keeps the resident
/// layout — [`MemoryError::Insufficient`] with the streamed estimate (it does not fit even
/// streamed). Returns the layout and the estimate that applies to it.
///
/// # Errors
/// [`MemoryError::Insufficient`] as above.
pub fn choose_layout(
    model: &Path,
    resident: &MemoryEstimate,
    streamed: &MemoryEstimate,
    available: Option<&Available>,
    requested: bool,
    force: bool,
) -> Result<(LayoutChoice, MemoryEstimate), MemoryError> {
    if requested {
        check(model, streamed, available, force)?;
        return Ok((LayoutChoice::Streamed, *streamed));
    }
    if check(model, resident, available, false).is_ok() {
        return Ok((LayoutChoice::Resident, *resident));
    }
    if available.is_some_and(Available::is_address_space) {
        check(model, resident, available, force)?;
        return Ok((LayoutChoice::Resident, *resident));
    }
    if check(model, streamed, available, false).is_ok() {
        return Ok((LayoutChoice::StreamedAuto, *streamed));
    }
    match force {
        true => Ok((LayoutChoice::Resident, *resident)),
        false => {
            check(model, streamed, available, false)?;
            Ok((LayoutChoice::StreamedAuto, *streamed))
        }
    }
}

/// The estimate for a checkpoint opened with [`ModelFiles::open`] (nothing loaded yet): the
/// weight terms from the tensors in the file, the working set from the config.
pub fn estimate(files: &ModelFiles, shape: &RunShape) -> MemoryEstimate {
    let plan = files.weight_plan(crate::layers::linear::keep_stored());
    estimate_for(&files.config, plan.resident_bytes, plan.largest_f32_values, shape)
}

/// Parses a byte count: digits with an optional K/M/G/T suffix (powers of 1024; `KiB`, `MB`
/// and the like are accepted too, all binary).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// `MemAvailable` from the text of `/proc/meminfo`, in bytes.
pub fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The room under a cgroup limit from the texts of its limit and usage files (`max` means none).
pub fn cgroup_room(limit: &str, usage: Option<&str>) -> Option<u64> {
    let limit: u64 = limit.trim().parse().ok()?;
    // cgroup v1 writes a huge number (close to i64::MAX) for "no limit".
    if limit >= 1 << 60 {
        return None;
    }
    let used: u64 = usage.and_then(|u| u.trim().parse().ok()).unwrap_or(0);
    Some(limit.saturating_sub(used))
}

/// The cgroup folders to look in: this process's own (from `/proc/self/cgroup`), then the root.
fn cgroup_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/proc/self/cgroup") {
        for line in text.lines() {
            // v2: "0::/path"; v1: "N:memory:/path".
            let mut parts = line.splitn(3, ':');
            let (_, ctrl, rel) = (parts.next(), parts.next(), parts.next());
            let Some(rel) = rel else { continue };
            let rel = rel.trim_start_matches('/');
            match ctrl {
                Some("") => dirs.push(Path::new("/sys/fs/cgroup").join(rel)),
                Some(c) if c.split(',').any(|x| x == "memory") => {
                    dirs.push(Path::new("/sys/fs/cgroup/memory").join(rel))
                }
                _ => {}
            }
        }
    }
    dirs.push(PathBuf::from("/sys/fs/cgroup"));
    dirs.push(PathBuf::from("/sys/fs/cgroup/memory"));
    dirs
}

/// The memory available to this process (see the module docs), or `None` when it cannot be
/// measured. An unparsable `SINKSCOPE_AVAILABLE_MEMORY` is an error.
pub fn available() -> Result<Option<Available>, MemoryError> {
    if let Ok(value) = std::env::var(AVAILABLE_ENV) {
        let bytes = parse_bytes(&value).ok_or(MemoryError::BadOverride { value: value.clone() })?;
        return Ok(Some(Available { bytes, source: format!("{AVAILABLE_ENV}={value}") }));
    }
    let mut best: Option<Available> = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| mem_available(&t))
        .map(|bytes| Available { bytes, source: "MemAvailable in /proc/meminfo".into() });
    for dir in cgroup_dirs() {
        let candidates =
            [("memory.max", "memory.current"), ("memory.limit_in_bytes", "memory.usage_in_bytes")];
        for (limit_file, usage_file) in candidates {
            let Ok(limit) = std::fs::read_to_string(dir.join(limit_file)) else { continue };
            let usage = std::fs::read_to_string(dir.join(usage_file)).ok();
            if let Some(room) = cgroup_room(&limit, usage.as_deref()) {
                if best.as_ref().is_none_or(|b| room < b.bytes) {
                    best = Some(Available {
                        bytes: room,
                        source: format!("cgroup limit {} minus usage", dir.join(limit_file).display()),
                    });
                }
            }
        }
    }
    let limits = std::fs::read_to_string("/proc/self/limits").ok();
    let status = std::fs::read_to_string("/proc/self/status").ok();
    if let Some(room) = address_space_room(limits.as_deref().unwrap_or(""), status.as_deref().unwrap_or("")) {
        if best.as_ref().is_none_or(|b| room < b.bytes) {
            let source = ADDRESS_SPACE_SOURCE.into();
            best = Some(Available { bytes: room, source });
        }
    }
    Ok(best)
}

/// The room under the address-space limit (`Max address space` of `/proc/self/limits`, soft
/// limit) given this process's `VmSize` (`/proc/self/status`); `None` when unlimited or
/// unreadable.
pub fn address_space_room(limits: &str, status: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max address space"))?;
    let soft: u64 = line.trim_start_matches("Max address space").split_whitespace().next()?.parse().ok()?;
    let kb: u64 =
        status.lines().find(|l| l.starts_with("VmSize:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(soft.saturating_sub(kb.saturating_mul(1024)))
}

/// Refuses when the estimate exceeds what is available, unless `force`. Unknown availability
/// never refuses.
pub fn check(
    model: &Path,
    estimate: &MemoryEstimate,
    available: Option<&Available>,
    force: bool,
) -> Result<(), MemoryError> {
    match available {
        Some(a) if !force && estimate.total() > a.bytes => Err(MemoryError::Insufficient {
            path: model.to_path_buf(),
            estimate: Box::new(*estimate),
            available: a.clone(),
        }),
        _ => Ok(()),
    }
}

/// The whole guard in one call, for commands: estimate, measure, check. Returns the estimate
/// and the availability (for the manifest) when the run may go ahead.
pub fn guard(
    files: &ModelFiles,
    shape: &RunShape,
    force: bool,
) -> Result<(MemoryEstimate, Option<Available>), MemoryError> {
    let est = estimate(files, shape);
    let avail = available()?;
    check(&files.path, &est, avail.as_ref(), force)?;
    Ok((est, avail))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// RLIMIT_AS: the room is the soft limit minus VmSize; "unlimited" is no limit.
    #[test]
    fn address_space_limit() {
        let status = "Name:\tx\nVmSize:\t  102400 kB\n";
        let limited = "Max cpu time  unlimited unlimited seconds\nMax address space         1073741824           unlimited            bytes\n";
        assert_eq!(address_space_room(limited, status), Some((1 << 30) - 100 * (1 << 20)));
        let unlimited = "Max address space         unlimited            unlimited            bytes\n";
        assert_eq!(address_space_room(unlimited, status), None);
        assert_eq!(address_space_room("", status), None);
    }

    fn cfg() -> ModelConfig {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gguf/llama/llama-f32.gguf");
        ModelFiles::open(&p).unwrap().config
    }

    /// Byte counts parse with binary suffixes; garbage does not.
    #[test]
    fn parse_bytes_units() {
        assert_eq!(parse_bytes("123"), Some(123));
        assert_eq!(parse_bytes("2K"), Some(2048));
        assert_eq!(parse_bytes("3 MiB"), Some(3 << 20));
        assert_eq!(parse_bytes("1g"), Some(1 << 30));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("99999999999999T"), None);
    }

    /// MemAvailable is read in KiB; cgroup "max" and v1's huge sentinel mean no limit.
    #[test]
    fn sources_parse() {
        let meminfo = "MemTotal:       16000000 kB\nMemFree:  1 kB\nMemAvailable:    8000000 kB\n";
        assert_eq!(mem_available(meminfo), Some(8_000_000 * 1024));
        assert_eq!(cgroup_room("max\n", Some("5")), None);
        assert_eq!(cgroup_room("9223372036854771712", None), None);
        assert_eq!(cgroup_room("1000\n", Some("400\n")), Some(600));
    }

    /// An injected small availability refuses with a message naming the model, the estimate and
    /// the source; force and unknown availability let the run go.
    #[test]
    fn refuses_when_too_small() {
        let cfg = cfg();
        let shape = RunShape { max_tokens: 64, logits: true, retained_bytes: 1000 };
        let est = estimate_for(&cfg, 40_000_000, 1_000_000, &shape);
        assert!(est.total() > 40_000_000);
        let small = Available { bytes: 1 << 20, source: "injected".into() };
        let e = check(Path::new("m.gguf"), &est, Some(&small), false).unwrap_err().to_string();
        assert!(e.contains("m.gguf") && e.contains("needs about") && e.contains("injected"), "{e}");
        assert!(e.contains("--force"), "{e}");
        assert!(check(Path::new("m.gguf"), &est, Some(&small), true).is_ok());
        assert!(check(Path::new("m.gguf"), &est, None, false).is_ok());
        let big = Available { bytes: 1 << 40, source: "injected".into() };
        assert!(check(Path::new("m.gguf"), &est, Some(&big), false).is_ok());
    }

    /// A Llama-3-8B-shaped Q4_K_M checkpoint (token embedding and attention/MLP matrices in
    /// Q4_K, V, down and the head in Q6_K, norms F32: ~4.9 GB, llama.cpp's mix) is admitted on a
    /// 24 GiB machine with weights as stored (estimate within the file size + 1.5 GiB for 512
    /// tokens), and refused when every weight is counted as f32 (~32 GB).
    #[test]
    fn an_8b_q4_model_fits_24_gib_as_stored_but_not_as_f32() {
        use sinkscope_io::source::{TensorMeta, TensorSource};
        use std::collections::BTreeMap;
        struct Header(BTreeMap<String, TensorMeta>);
        impl TensorSource for Header {
            fn path(&self) -> &Path {
                Path::new("llama-3-8b.Q4_K_M.gguf")
            }
            fn tensors(&self) -> &BTreeMap<String, TensorMeta> {
                &self.0
            }
            fn read_f32(&self, _: &str) -> Result<Vec<f32>, sinkscope_io::IoError> {
                Ok(Vec::new())
            }
        }
        let mut cfg = cfg();
        let layer = cfg.layers[0];
        (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.d_head) = (4096, 32, 32, 8, 128);
        (cfg.d_mlp, cfg.d_vocab, cfg.context_length, cfg.tied_unembed) = (14336, 128256, 8192, false);
        cfg.layers = vec![layer; 32];
        let meta = |shape: Vec<usize>, dtype: &str| {
            let values = shape.iter().product::<usize>() as u64;
            let bytes = match dtype {
                "Q4_K" => values / 256 * 144,
                "Q6_K" => values / 256 * 210,
                _ => values * 4,
            };
            TensorMeta { shape, dtype: dtype.into(), bytes }
        };
        let (d, m, v, kv) = (4096, 14336, 128256, 1024);
        let mut t = BTreeMap::new();
        t.insert("token_embd.weight".to_string(), meta(vec![v, d], "Q4_K"));
        t.insert("output.weight".to_string(), meta(vec![v, d], "Q6_K"));
        t.insert("output_norm.weight".to_string(), meta(vec![d], "F32"));
        for i in 0..32 {
            for (name, shape, ty) in [
                ("attn_q", vec![d, d], "Q4_K"),
                ("attn_k", vec![kv, d], "Q4_K"),
                ("attn_v", vec![kv, d], "Q6_K"),
                ("attn_output", vec![d, d], "Q4_K"),
                ("ffn_gate", vec![m, d], "Q4_K"),
                ("ffn_up", vec![m, d], "Q4_K"),
                ("ffn_down", vec![d, m], "Q6_K"),
                ("attn_norm", vec![d], "F32"),
                ("ffn_norm", vec![d], "F32"),
            ] {
                t.insert(format!("blk.{i}.{name}.weight"), meta(shape, ty));
            }
        }
        let file: u64 = t.values().map(|m| m.bytes).sum();
        assert!((4_500_000_000..5_200_000_000).contains(&file), "{file}");
        let src = Header(t);
        let table = sinkscope_io::families::by_gguf_arch("llama").unwrap().gguf_tensors();
        let shape = RunShape { max_tokens: 512, logits: false, retained_bytes: 0 };
        let gib24 = Available { bytes: 24 << 30, source: "injected 24 GiB".into() };
        let stored = sinkscope_io::weights::weight_plan(&src, &cfg, &table, true);
        assert!(stored.resident_bytes >= file - (1 << 20) && stored.resident_bytes <= file + (1 << 20));
        let est = estimate_for(&cfg, stored.resident_bytes, stored.largest_f32_values, &shape);
        assert!(est.total() <= file + (3 << 29), "{est}");
        assert!(check(Path::new("m.gguf"), &est, Some(&gib24), false).is_ok());
        let f32 = sinkscope_io::weights::weight_plan(&src, &cfg, &table, false);
        let est = estimate_for(&cfg, f32.resident_bytes, f32.largest_f32_values, &shape);
        assert!(est.total() > 30_000_000_000, "{est}");
        assert!(check(Path::new("m.gguf"), &est, Some(&gib24), false).is_err());
    }

    /// A header-only checkpoint (nothing is read: the plans work from shapes and types).
    struct Header(std::collections::BTreeMap<String, sinkscope_io::source::TensorMeta>);
    impl sinkscope_io::source::TensorSource for Header {
        fn path(&self) -> &Path {
            Path::new("header-only.gguf")
        }
        fn tensors(&self) -> &std::collections::BTreeMap<String, sinkscope_io::source::TensorMeta> {
            &self.0
        }
        fn read_f32(&self, _: &str) -> Result<Vec<f32>, sinkscope_io::IoError> {
            Ok(Vec::new())
        }
    }

    /// A Llama-3-70B-shaped GGUF in llama.cpp's Q2_K mix (Q2_K matrices, V in Q4_K, down in
    /// Q3_K, head Q6_K, norms F32), its config and tensor table.
    fn llama70b_q2k() -> (ModelConfig, Header, Vec<sinkscope_io::weights::TensorEntry>) {
        use sinkscope_io::source::TensorMeta;
        let mut cfg = cfg();
        let layer = cfg.layers[0];
        (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.d_head) = (8192, 80, 64, 8, 128);
        (cfg.d_mlp, cfg.d_vocab, cfg.context_length, cfg.tied_unembed) = (28672, 128256, 8192, false);
        cfg.layers = vec![layer; 80];
        let meta = |shape: Vec<usize>, dtype: &str| {
            let values = shape.iter().product::<usize>() as u64;
            let bytes = match dtype {
                "Q2_K" => values / 256 * 84,
                "Q3_K" => values / 256 * 110,
                "Q4_K" => values / 256 * 144,
                "Q6_K" => values / 256 * 210,
                _ => values * 4,
            };
            TensorMeta { shape, dtype: dtype.into(), bytes }
        };
        let (d, m, v, kv) = (8192, 28672, 128256, 1024);
        let mut t = std::collections::BTreeMap::new();
        t.insert("token_embd.weight".to_string(), meta(vec![v, d], "Q2_K"));
        t.insert("output.weight".to_string(), meta(vec![v, d], "Q6_K"));
        t.insert("output_norm.weight".to_string(), meta(vec![d], "F32"));
        for i in 0..80 {
            for (name, shape, ty) in [
                ("attn_q", vec![d, d], "Q2_K"),
                ("attn_k", vec![kv, d], "Q2_K"),
                ("attn_v", vec![kv, d], "Q4_K"),
                ("attn_output", vec![d, d], "Q2_K"),
                ("ffn_gate", vec![m, d], "Q2_K"),
                ("ffn_up", vec![m, d], "Q2_K"),
                ("ffn_down", vec![d, m], "Q3_K"),
                ("attn_norm", vec![d], "F32"),
                ("ffn_norm", vec![d], "F32"),
            ] {
                t.insert(format!("blk.{i}.{name}.weight"), meta(shape, ty));
            }
        }
        let table = sinkscope_io::families::by_gguf_arch("llama").unwrap().gguf_tensors();
        (cfg, Header(t), table)
    }

    /// Layer streaming on a 24 GiB machine: a Llama-3-70B-shaped Q2_K GGUF (~27 GB) is refused
    /// with its weights resident and admitted streamed, with an estimate of one block (~300 MB
    /// of Q2_K/Q3_K/Q4_K rows) plus the unstreamed norms, the head when logits are computed,
    /// one pass and a chunk's residual streams: under 2 GiB for 512 tokens per pass and 4096 per
    /// chunk (the figures are sums of the tensors' sizes, checked here against the formula).
    #[test]
    fn a_70b_q2k_model_is_refused_resident_and_admitted_streamed_on_24_gib() {
        let (cfg, src, table) = llama70b_q2k();
        let file: u64 = src.0.values().map(|m| m.bytes).sum();
        assert!((25_000_000_000..28_000_000_000).contains(&file), "{file}");
        let plan = sinkscope_io::weights::weight_plan(&src, &cfg, &table, true);
        let shape = RunShape { max_tokens: 512, logits: false, retained_bytes: 0 };
        let gib24 = Available { bytes: 24 << 30, source: "injected 24 GiB".into() };
        let resident = estimate_for(&cfg, plan.resident_bytes, plan.largest_f32_values, &shape);
        assert!(resident.total() > 24 << 30, "{resident}");
        let streamed = estimate_streamed_for(&cfg, &plan.streamed, &shape, 4096);
        // One block: q, o and gate, up (Q2_K), k (Q2_K), v (Q4_K), down (Q3_K).
        let (d, m, kv) = (8192u64, 28672u64, 1024u64);
        let block = (2 * d * d + 2 * m * d + kv * d) / 256 * 84 + kv * d / 256 * 144 + d * m / 256 * 110;
        assert_eq!(plan.streamed.largest_block_bytes, block);
        assert_eq!(plan.streamed.owned_bytes, (80 * 2 + 1) * d * 4, "norms only");
        assert_eq!(plan.streamed.head_bytes, 128256 * d / 256 * 210);
        assert_eq!(streamed.weights, block + (80 * 2 + 1) * d * 4, "no head without logits");
        assert!(streamed.total() < 2 << 30, "{streamed}");
        let with_logits = RunShape { logits: true, ..shape };
        let s2 = estimate_streamed_for(&cfg, &plan.streamed, &with_logits, 4096);
        assert_eq!(s2.weights, streamed.weights + plan.streamed.head_bytes);
        let m = Path::new("llama-3-70b.Q2_K.gguf");
        let (choice, est) = choose_layout(m, &resident, &streamed, Some(&gib24), false, false).unwrap();
        assert_eq!((choice, est), (LayoutChoice::StreamedAuto, streamed));
        assert!(est.to_string().contains("streaming layers"), "{est}");
        // Asked for, streaming is used even where the resident layout fits.
        let big = Available { bytes: 1 << 40, source: "injected".into() };
        let (choice, _) = choose_layout(m, &resident, &streamed, Some(&big), true, false).unwrap();
        assert_eq!(choice, LayoutChoice::Streamed);
        let (choice, _) = choose_layout(m, &resident, &streamed, Some(&big), false, false).unwrap();
        assert_eq!(choice, LayoutChoice::Resident);
        // Under an address-space limit streaming is not chosen by itself (the file stays mapped).
        let vm = Available { bytes: 24 << 30, source: ADDRESS_SPACE_SOURCE.into() };
        assert!(choose_layout(m, &resident, &streamed, Some(&vm), false, false).is_err());
    }

    /// What does not fit even streamed is refused (the message gives the streamed estimate):
    /// the same 70B model on 256 MiB, where a single block (~300 MB) does not fit; `--force`
    /// runs anyway (resident, as without streaming).
    #[test]
    fn a_model_whose_single_block_does_not_fit_is_refused() {
        let (cfg, src, table) = llama70b_q2k();
        let plan = sinkscope_io::weights::weight_plan(&src, &cfg, &table, true);
        let shape = RunShape { max_tokens: 128, logits: false, retained_bytes: 0 };
        let resident = estimate_for(&cfg, plan.resident_bytes, plan.largest_f32_values, &shape);
        let streamed = estimate_streamed_for(&cfg, &plan.streamed, &shape, 1024);
        let small = Available { bytes: 256 << 20, source: "injected 256 MiB".into() };
        assert!(plan.streamed.largest_block_bytes > 256 << 20);
        let m = Path::new("llama-3-70b.Q2_K.gguf");
        for requested in [false, true] {
            let e = choose_layout(m, &resident, &streamed, Some(&small), requested, false).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, MemoryError::Insufficient { .. }), "{msg}");
            assert!(msg.contains("streaming layers") && msg.contains("256 MiB"), "{msg}");
        }
        let (choice, _) = choose_layout(m, &resident, &streamed, Some(&small), false, true).unwrap();
        assert_eq!(choice, LayoutChoice::Resident);
    }

    /// The working set grows with T^2 through the attention patterns.
    #[test]
    fn working_set_is_quadratic_in_tokens() {
        let cfg = cfg();
        let ws = |t| {
            estimate_for(&cfg, 0, 0, &RunShape { max_tokens: t, logits: false, retained_bytes: 0 })
                .working_set
        };
        let (a, b) = (ws(1000), ws(2000));
        assert!(b > 3 * a, "{a} {b}");
    }
}
