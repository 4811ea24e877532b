//! Weights by role: the family declarations map file tensor names to [`TensorRole`]s through
//! load-time transforms given as data, and [`load_weights`] does it strictly — a missing tensor,
//! a wrong shape or a tensor nothing used is an error naming the file and the tensor.

use crate::error::{closest_names, IoError};
use crate::source::TensorSource;
use crate::stored::{StoredError, StoredMatrix};
use sinkscope_spec::{MlpKind, ModelConfig, NormKind, Positional, QkNorm};
use std::collections::{BTreeMap, BTreeSet};

/// What a weight is for. Per-block roles come with a block index in [`RoleKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TensorRole {
    /// Token embedding `[V, d]`.
    TokEmbed,
    /// Learned positions `[n_ctx, d]`.
    PosEmbed,
    /// Final norm gain `[d]`.
    FinalNormW,
    /// Final norm bias `[d]`.
    FinalNormB,
    /// Unembedding `[V, d]`.
    Unembed,
    /// Attention pre-norm gain.
    AttnNormW,
    /// Attention pre-norm bias.
    AttnNormB,
    /// MLP pre-norm gain.
    MlpNormW,
    /// MLP pre-norm bias.
    MlpNormB,
    /// Query projection `[H·dh, d]`.
    Q,
    /// Query bias.
    QBias,
    /// Key projection `[KVH·dh, d]`.
    K,
    /// Key bias.
    KBias,
    /// Value projection `[KVH·dh, d]`.
    V,
    /// Value bias.
    VBias,
    /// Output projection `[d, H·dh]`.
    O,
    /// Output bias.
    OBias,
    /// Gate projection `[d_mlp, d]`.
    Gate,
    /// Gate bias.
    GateBias,
    /// Up projection `[d_mlp, d]`.
    Up,
    /// Up bias.
    UpBias,
    /// Down projection `[d, d_mlp]`.
    Down,
    /// Down bias.
    DownBias,
    /// Embedding-norm gain `[d]` (BLOOM's `word_embeddings_layernorm`).
    EmbedNormW,
    /// Embedding-norm bias `[d]`.
    EmbedNormB,
    /// Post-attention norm gain `[d]` (sandwich / post-norm placements).
    PostAttnNormW,
    /// Post-MLP norm gain `[d]`.
    PostMlpNormW,
    /// Query-norm gain: `[d_head]` per head, or `[H·dh]` over the whole projection.
    QNormW,
    /// Key-norm gain: `[d_head]`, or `[KVH·dh]`.
    KNormW,
    /// Learned sink logit per query head `[H]`.
    AttnSinks,
    /// Router `[E, d]`.
    RouterW,
    /// Router bias `[E]`.
    RouterB,
    /// Expert gate projections `[E, d_mlp, d]`.
    ExpertGate,
    /// Expert gate biases `[E, d_mlp]`.
    ExpertGateBias,
    /// Expert up projections `[E, d_mlp, d]`.
    ExpertUp,
    /// Expert up biases `[E, d_mlp]`.
    ExpertUpBias,
    /// Expert down projections `[E, d, d_mlp]`.
    ExpertDown,
    /// Expert down biases `[E, d]`.
    ExpertDownBias,
}

impl TensorRole {
    /// Whether the role is a matrix that the model multiplies by (or looks rows up in): the
    /// weights that may stay in their stored format.
    pub fn is_matrix(self) -> bool {
        use TensorRole::*;
        matches!(
            self,
            TokEmbed
                | Unembed
                | Q
                | K
                | V
                | O
                | Gate
                | Up
                | Down
                | RouterW
                | ExpertGate
                | ExpertUp
                | ExpertDown
        )
    }
}

/// A role, with its block index for per-block roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleKey {
    /// The role.
    pub role: TensorRole,
    /// Block index (None for global roles).
    pub block: Option<usize>,
}

/// How the fused rows of a QKV tensor are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkvLayout {
    /// `[q | k | v]` blocks of rows.
    Blocks,
    /// Per head `[H, 3, dh]` (GPT-NeoX, Bloom in HF format).
    PerHead,
}

/// One load-time transformation step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Swap the two axes of a matrix (GPT-2's Conv1D `[in, out]` -> `[out, in]`).
    Transpose,
    /// Undo llama.cpp's Q permutation (`n_heads` groups) for interleaved RoPE.
    UnpermuteQ,
    /// Undo llama.cpp's K permutation (`n_kv_heads` groups).
    UnpermuteK,
    /// Split a fused QKV tensor along its first axis into the Q, K, V roles of the entry.
    SplitQkv(QkvLayout),
    /// Split along the first axis into two equal halves (Phi-3's `gate_up_proj` = `[gate | up]`).
    SplitHalves,
    /// Split the last axis into its even and odd entries (GPT-OSS's interleaved gate/up).
    Deinterleave,
    /// Swap the last two axes of every output (GPT-OSS experts stored `[E, in, out]`).
    TransposeLast2,
}

impl Transform {
    /// Whether the transform only selects and reorders whole rows (first-axis slices), so
    /// that it can be applied to stored-format rows as a row map.
    pub fn moves_rows_only(self) -> bool {
        matches!(
            self,
            Transform::UnpermuteQ | Transform::UnpermuteK | Transform::SplitQkv(_) | Transform::SplitHalves
        )
    }

    /// For a transform that [moves rows only](Self::moves_rows_only): for each output, the
    /// first-axis index of the input that each of its first-axis entries comes from. `None`
    /// for the other transforms.
    fn row_maps(self, rows: usize, cfg: &ModelConfig) -> Option<Vec<Vec<usize>>> {
        let (dh, qh, kvh) = (cfg.d_head, cfg.n_heads, cfg.n_kv_heads);
        Some(match self {
            Transform::UnpermuteQ => vec![unpermute_map(rows, qh)],
            Transform::UnpermuteK => vec![unpermute_map(rows, kvh)],
            Transform::SplitHalves => vec![(0..rows / 2).collect(), (rows / 2..rows / 2 * 2).collect()],
            Transform::SplitQkv(QkvLayout::Blocks) => {
                let (nq, nk) = ((qh * dh).min(rows), (kvh * dh).min(rows));
                let k_end = (nq + nk).min(rows);
                vec![(0..nq).collect(), (nq..k_end).collect(), (k_end..rows).collect()]
            }
            // Rows are [H, 3, dh]; only defined for n_kv_heads == n_heads.
            Transform::SplitQkv(QkvLayout::PerHead) => (0..3)
                .map(|p| {
                    (0..qh)
                        .flat_map(|h| ((h * 3 + p) * dh..(h * 3 + p + 1) * dh).filter(|&r| r < rows))
                        .collect()
                })
                .collect(),
            Transform::Transpose | Transform::TransposeLast2 | Transform::Deinterleave => return None,
        })
    }
}

/// Inverse of llama.cpp's `permute(w, n) = w.reshape(n, 2, rows/n/2, in).swapaxes(1, 2)`:
/// file row `(h, i, j)` (j in 0..2) holds original row `(h, j, i)`. The identity when the rows
/// do not split into `n` heads of two halves.
fn unpermute_map(rows: usize, n: usize) -> Vec<usize> {
    if n == 0 || !rows.is_multiple_of(2 * n) {
        return (0..rows).collect();
    }
    let half = rows / n / 2;
    let mut map = vec![0; rows];
    for h in 0..n {
        for i in 0..half {
            for j in 0..2 {
                map[h * 2 * half + j * half + i] = h * half * 2 + i * 2 + j;
            }
        }
    }
    map
}

/// One row of a family's tensor-name table.
#[derive(Debug, Clone, Copy)]
pub struct TensorEntry {
    /// The name in the file; `{i}` stands for the block index.
    pub name: &'static str,
    /// Transforms applied in order.
    pub transforms: &'static [Transform],
    /// The role(s) produced: one, or three for a split QKV.
    pub roles: &'static [TensorRole],
}

impl TensorEntry {
    /// Whether the entry is per block.
    pub fn per_block(&self) -> bool {
        self.name.contains("{i}")
    }

    /// Whether the entry's tensor stays in its stored format when the file stores it in one
    /// the kernel reads (anything but F32): its roles are matrices and its transforms only
    /// move rows.
    pub fn may_stay_stored(&self) -> bool {
        self.roles.iter().all(|r| r.is_matrix()) && self.transforms.iter().all(|t| t.moves_rows_only())
    }
}

/// What the weights of a checkpoint will take once loaded, worked out from the tensor table
/// and the file's metadata before anything is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WeightPlan {
    /// Bytes held after loading: stored-format matrices at their file size, everything else
    /// at 4 bytes a value.
    pub resident_bytes: u64,
    /// Values of the largest tensor read as f32 (the load transient).
    pub largest_f32_values: u64,
    /// The layout of layer streaming, where every matrix that only moves rows stays in the
    /// file's memory map (F32 ones too) and only one block's are resident at a time.
    pub streamed: StreamedPlan,
}

/// [`WeightPlan`] for layer streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamedPlan {
    /// Bytes always held: the tensors read as f32 (norms, biases, and matrices whose
    /// load-time transform moves values within rows).
    pub owned_bytes: u64,
    /// Stored bytes of the largest block's memory-mapped matrices (resident while it runs).
    pub largest_block_bytes: u64,
    /// Stored bytes of the LM head (the embedding for a tied head), resident while the head
    /// runs; the embedding itself is gathered row by row.
    pub head_bytes: u64,
    /// Values of the largest tensor read as f32 (the load transient).
    pub largest_f32_values: u64,
    /// Whether any matrix stays memory-mapped (else streaming releases nothing).
    pub any_mapped: bool,
}

/// The [`WeightPlan`] of loading `src` through `table`; `keep_stored` says whether matrices may
/// stay in their stored format (the model's kernel runs on this machine). Tensors no entry
/// names (they fail strict loading) count as f32.
pub fn weight_plan(
    src: &dyn TensorSource,
    cfg: &ModelConfig,
    table: &[TensorEntry],
    keep_stored: bool,
) -> WeightPlan {
    // Tensor name -> (block, whether it is the head's weight), for tensors that may stay stored.
    let mut stays: BTreeMap<String, (Option<usize>, bool)> = BTreeMap::new();
    if keep_stored {
        let head_role = if cfg.tied_unembed { TensorRole::TokEmbed } else { TensorRole::Unembed };
        for entry in table.iter().filter(|e| e.may_stay_stored()) {
            let is_head = entry.roles.contains(&head_role);
            match entry.per_block() {
                true => stays.extend(
                    (0..cfg.n_layers).map(|i| (entry.name.replace("{i}", &i.to_string()), (Some(i), false))),
                ),
                false => {
                    stays.insert(entry.name.to_string(), (None, is_head));
                }
            }
        }
    }
    let mut plan = WeightPlan::default();
    let mut blocks: BTreeMap<usize, u64> = BTreeMap::new();
    for (name, meta) in src.tensors() {
        let values = meta.shape.iter().product::<usize>() as u64;
        let f32_bytes = values.saturating_mul(4);
        let place = stays.get(name).copied();
        if meta.dtype != "F32" && place.is_some() {
            plan.resident_bytes = plan.resident_bytes.saturating_add(meta.bytes);
        } else {
            plan.resident_bytes = plan.resident_bytes.saturating_add(f32_bytes);
            plan.largest_f32_values = plan.largest_f32_values.max(values);
        }
        let st = &mut plan.streamed;
        match place {
            // Streaming keeps F32 matrices mapped too (file size = 4 bytes a value).
            Some((Some(b), _)) => {
                let e = blocks.entry(b).or_default();
                *e = e.saturating_add(meta.bytes);
                st.any_mapped = true;
            }
            Some((None, head)) => {
                if head {
                    st.head_bytes = st.head_bytes.saturating_add(meta.bytes);
                }
                st.any_mapped = true;
            }
            None => {
                st.owned_bytes = st.owned_bytes.saturating_add(f32_bytes);
                st.largest_f32_values = st.largest_f32_values.max(values);
            }
        }
    }
    plan.streamed.largest_block_bytes = blocks.values().copied().max().unwrap_or(0);
    plan
}

/// A loaded weight: row-major f32 values and their shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Weight {
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Values.
    pub data: Vec<f32>,
}

/// A checkpoint tensor holding NaN or infinite values. Loading does not fail on it: the model
/// fails at the first non-finite activation (naming the hook site) and cites these tensors, so a
/// broken value that no prompt reaches does not stop a run, and one that does is reported where
/// it bites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonFiniteTensor {
    /// The tensor's name in the file.
    pub name: String,
    /// How many values are NaN.
    pub nan: usize,
    /// How many values are +/-infinity.
    pub inf: usize,
    /// Row-major index of the first non-finite value.
    pub first_index: usize,
}

impl std::fmt::Display for NonFiniteTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if self.nan > 0 {
            parts.push(format!("{} NaN", self.nan));
        }
        if self.inf > 0 {
            parts.push(format!("{} Inf", self.inf));
        }
        write!(f, "{} ({}, first at flat index {})", self.name, parts.join(" + "), self.first_index)
    }
}

/// Counts the non-finite values of one tensor.
pub fn scan_non_finite(name: &str, data: &[f32]) -> Option<NonFiniteTensor> {
    let mut scan = NonFiniteScan::new(name);
    scan.push(0, data);
    scan.finish()
}

/// [`scan_non_finite`] over a tensor read in pieces (stored-format rows dequantised one at a
/// time), with the same result.
struct NonFiniteScan {
    found: NonFiniteTensor,
}

impl NonFiniteScan {
    fn new(name: &str) -> Self {
        NonFiniteScan {
            found: NonFiniteTensor { name: name.to_string(), nan: 0, inf: 0, first_index: usize::MAX },
        }
    }

    /// The values starting at flat index `at`.
    fn push(&mut self, at: usize, data: &[f32]) {
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            self.found.first_index = self.found.first_index.min(at + i);
            self.found.nan += data.iter().filter(|x| x.is_nan()).count();
            self.found.inf += data.iter().filter(|x| x.is_infinite()).count();
        }
    }

    fn finish(self) -> Option<NonFiniteTensor> {
        (self.found.first_index != usize::MAX).then_some(self.found)
    }
}

/// A matrix weight kept in its file's storage format (see [`crate::stored`]).
#[derive(Debug, Clone)]
pub struct StoredWeight {
    /// Row-major shape (`[out, in]`, or `[E, out, in]` for experts).
    pub shape: Vec<usize>,
    /// The rows, `shape[..-1]` flattened, each of `shape[-1]` values.
    pub matrix: StoredMatrix,
}

/// A matrix weight as loaded: f32 values, or rows in the file's storage format.
#[derive(Debug, Clone)]
pub enum MatrixWeight {
    /// f32 values.
    F32(Weight),
    /// Stored-format rows.
    Stored(StoredWeight),
}

impl MatrixWeight {
    /// Row-major shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            MatrixWeight::F32(w) => &w.shape,
            MatrixWeight::Stored(s) => &s.shape,
        }
    }
}

/// Every weight of a model, by role.
#[derive(Debug, Default)]
pub struct WeightSet {
    map: BTreeMap<RoleKey, Weight>,
    stored: BTreeMap<RoleKey, StoredWeight>,
    non_finite: Vec<NonFiniteTensor>,
}

impl WeightSet {
    /// Removes and returns a weight as f32 values (the model takes ownership without copying;
    /// a stored-format matrix is dequantised).
    ///
    /// # Errors
    /// When a stored matrix cannot be dequantised.
    pub fn take(&mut self, role: TensorRole, block: Option<usize>) -> Result<Option<Weight>, IoError> {
        match self.take_matrix(role, block) {
            None => Ok(None),
            Some(MatrixWeight::F32(w)) => Ok(Some(w)),
            Some(MatrixWeight::Stored(s)) => {
                let data = s.matrix.to_f32().map_err(|e| IoError::BadTensor {
                    path: std::path::PathBuf::new(),
                    name: format!("{role:?}"),
                    reason: e.to_string(),
                })?;
                Ok(Some(Weight { shape: s.shape, data }))
            }
        }
    }

    /// Removes and returns a matrix weight as loaded: stored-format rows where the file's
    /// format allows it, else f32.
    pub fn take_matrix(&mut self, role: TensorRole, block: Option<usize>) -> Option<MatrixWeight> {
        let key = RoleKey { role, block };
        match self.map.remove(&key) {
            Some(w) => Some(MatrixWeight::F32(w)),
            None => self.stored.remove(&key).map(MatrixWeight::Stored),
        }
    }

    /// Whether the set holds a weight for the role.
    pub fn contains(&self, role: TensorRole, block: Option<usize>) -> bool {
        let key = RoleKey { role, block };
        self.map.contains_key(&key) || self.stored.contains_key(&key)
    }

    /// Number of weights.
    pub fn len(&self) -> usize {
        self.map.len() + self.stored.len()
    }

    /// Whether there are no weights.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty() && self.stored.is_empty()
    }

    /// Bytes held in stored format (the rest is f32).
    pub fn stored_bytes(&self) -> usize {
        self.stored.values().map(|s| s.matrix.bytes_used()).sum()
    }

    /// The checkpoint tensors that hold NaN or infinite values (empty for a sound checkpoint).
    pub fn non_finite(&self) -> &[NonFiniteTensor] {
        &self.non_finite
    }
}

/// The roles (with expected row-major shapes) that a model with this config needs.
pub fn required_roles(cfg: &ModelConfig) -> BTreeMap<RoleKey, Vec<usize>> {
    use TensorRole::*;
    let norm_bias = matches!(cfg.norm, NormKind::LayerNorm { bias: true, .. });
    let mut global = vec![TokEmbed, FinalNormW];
    if matches!(cfg.positional, Positional::Learned) {
        global.push(PosEmbed);
    }
    if norm_bias {
        global.push(FinalNormB);
    }
    if cfg.embed_norm {
        global.push(EmbedNormW);
        if norm_bias {
            global.push(EmbedNormB);
        }
    }
    if !cfg.tied_unembed {
        global.push(Unembed);
    }
    let mut block = vec![Q, K, V, O];
    if cfg.norm_placement.has_pre() {
        block.extend([AttnNormW, MlpNormW]);
        if norm_bias {
            block.extend([AttnNormB, MlpNormB]);
        }
    }
    if cfg.norm_placement.has_post() {
        block.extend([PostAttnNormW, PostMlpNormW]);
    }
    if cfg.attn.qkv_bias {
        block.extend([QBias, KBias, VBias]);
    }
    if cfg.attn.o_bias {
        block.push(OBias);
    }
    if cfg.attn.qk_norm != QkNorm::None {
        block.extend([QNormW, KNormW]);
    }
    if cfg.attn.sinks {
        block.push(AttnSinks);
    }
    match cfg.mlp {
        MlpKind::Plain { bias, .. } => {
            block.extend([Up, Down]);
            if bias {
                block.extend([UpBias, DownBias]);
            }
        }
        MlpKind::Gated { bias, .. } => {
            block.extend([Gate, Up, Down]);
            if bias {
                block.extend([GateBias, UpBias, DownBias]);
            }
        }
        MlpKind::Moe { .. } => block.extend([
            RouterW,
            RouterB,
            ExpertGate,
            ExpertGateBias,
            ExpertUp,
            ExpertUpBias,
            ExpertDown,
            ExpertDownBias,
        ]),
    }
    let globals = global.into_iter().map(|role| RoleKey { role, block: None });
    let blocks =
        (0..cfg.n_layers).flat_map(|b| block.iter().map(move |&role| RoleKey { role, block: Some(b) }));
    globals.chain(blocks).map(|k| (k, role_shape(cfg, k))).collect()
}

/// Loads every weight the config needs through the table, strictly: each needed role must come
/// from exactly one file tensor of the right shape, and every file tensor must be used unless
/// it matches one of `ignored` (suffix patterns of tensors known to be redundant, such as
/// cached rotary frequencies).
pub fn load_weights(
    src: &dyn TensorSource,
    cfg: &ModelConfig,
    table: &[TensorEntry],
    ignored: &[&str],
) -> Result<WeightSet, IoError> {
    load_weights_with(src, cfg, table, ignored, false)
}

/// [`load_weights`] for layer streaming when `stream`: F32 matrices also stay in the file's
/// memory map (so that a block's pages can be released after use), and each stored tensor's
/// pages are released again after the load-time scan for non-finite values.
pub fn load_weights_with(
    src: &dyn TensorSource,
    cfg: &ModelConfig,
    table: &[TensorEntry],
    ignored: &[&str],
    stream: bool,
) -> Result<WeightSet, IoError> {
    let files = src.tensors();
    let path = src.path().to_path_buf();
    // Every block needs at least one tensor of its own: a block count the file cannot back is
    // rejected before any per-block table is built (found by fuzzing: block_count = 65536 in
    // a 10 KB file spent seconds building the table of required roles).
    if files.len() < cfg.n_layers {
        return Err(IoError::Config {
            path,
            field: "(n_layers)".into(),
            reason: format!(
                "the config has {} blocks but the checkpoint holds only {} tensors",
                cfg.n_layers,
                files.len()
            ),
        });
    }
    let needed = required_roles(cfg);
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut first_candidate: BTreeMap<RoleKey, (String, Vec<usize>)> = BTreeMap::new();
    let mut source_of: BTreeMap<RoleKey, String> = BTreeMap::new();
    let mut set = WeightSet::default();
    let blocks: Vec<Option<usize>> = std::iter::once(None).chain((0..cfg.n_layers).map(Some)).collect();
    for entry in table {
        for &block in &blocks {
            if entry.per_block() != block.is_some() {
                continue;
            }
            let keys: Vec<RoleKey> = entry.roles.iter().map(|&role| RoleKey { role, block }).collect();
            let wanted: Vec<bool> = keys.iter().map(|k| needed.contains_key(k)).collect();
            if !wanted.iter().any(|w| *w) {
                continue;
            }
            let name = match block {
                Some(i) => entry.name.replace("{i}", &i.to_string()),
                None => entry.name.to_string(),
            };
            // Shapes of the roles this entry produces (known for every role when any is needed).
            let shapes: Vec<Vec<usize>> = keys.iter().map(|k| role_shape(cfg, *k)).collect();
            let expected_file_shape = file_shape(entry, &shapes);
            let Some(meta) = files.get(&name) else {
                // Another entry may provide these roles (Phi-3's fused `qkv_proj` or the
                // separate projections): a role still missing at the end names this tensor.
                for k in keys.iter().filter(|k| needed.contains_key(k)) {
                    first_candidate.entry(*k).or_insert_with(|| (name.clone(), expected_file_shape.clone()));
                }
                continue;
            };
            if meta.shape != expected_file_shape {
                return Err(IoError::WrongShape {
                    path,
                    name,
                    expected: expected_file_shape,
                    actual: meta.shape.clone(),
                });
            }
            // Matrices the kernel multiplies stay in their stored format when every transform
            // only moves rows; everything else is read as f32.
            let stored = match (entry.may_stay_stored(), stream) {
                (true, false) => src.read_stored(&name)?,
                (true, true) => match src.read_stored(&name)? {
                    Some(m) => Some(m),
                    None => src.read_mapped_f32(&name)?,
                },
                (false, _) => None,
            };
            let outputs: Vec<MatrixWeight> = match stored {
                Some(matrix) => {
                    // Where the blocks' scales decide it and all are finite, every value is:
                    // the tensor need not be dequantised (a 70B model's load would otherwise
                    // dequantise every weight once). Otherwise every value is scanned, which
                    // gives the counts and the first index that a broken tensor is cited with.
                    let after = stream.then_some(crate::stored::PageAdvice::DontNeed);
                    if matrix.finite_by_scales_then(after) != Some(true) {
                        let mut scan = NonFiniteScan::new(&name);
                        matrix.for_each_stored_row_then(after, |at, row| scan.push(at, row)).map_err(
                            |e| IoError::BadTensor {
                                path: path.clone(),
                                name: name.clone(),
                                reason: e.to_string(),
                            },
                        )?;
                        if let Some(nf) = scan.finish() {
                            set.non_finite.push(nf);
                        }
                    }
                    if stream {
                        matrix.advise(crate::stored::PageAdvice::DontNeed);
                    }
                    stored_transforms(
                        entry.transforms,
                        StoredWeight { shape: meta.shape.clone(), matrix },
                        cfg,
                    )
                    .map_err(|e| IoError::BadTensor {
                        path: path.clone(),
                        name: name.clone(),
                        reason: e.to_string(),
                    })?
                    .into_iter()
                    .map(MatrixWeight::Stored)
                    .collect()
                }
                None => {
                    let data = src.read_f32(&name)?;
                    if let Some(nf) = scan_non_finite(&name, &data) {
                        set.non_finite.push(nf);
                    }
                    apply_transforms(entry.transforms, Weight { shape: meta.shape.clone(), data }, cfg)
                        .into_iter()
                        .map(MatrixWeight::F32)
                        .collect()
                }
            };
            for ((key, w), exp) in keys.iter().zip(outputs).zip(&shapes) {
                if w.shape() != &exp[..] {
                    return Err(IoError::WrongShape {
                        path,
                        name,
                        expected: exp.clone(),
                        actual: w.shape().to_vec(),
                    });
                }
                if let Some(other) = source_of.insert(*key, name.clone()) {
                    return Err(IoError::Config {
                        path,
                        field: name.clone(),
                        reason: format!(
                            "holds the same weight as '{other}' ({:?}); the checkpoint has both",
                            key.role
                        ),
                    });
                }
                match w {
                    MatrixWeight::F32(w) => set.map.insert(*key, w).map(|_| ()),
                    MatrixWeight::Stored(w) => set.stored.insert(*key, w).map(|_| ()),
                };
            }
            used.insert(name);
        }
    }
    if let Some((key, shape)) = needed.iter().find(|(k, _)| !set.contains(k.role, k.block)) {
        if let Some((name, expected)) = first_candidate.remove(key) {
            return Err(IoError::MissingTensor {
                nearest: closest_names(&name, files.keys().map(String::as_str)),
                path,
                name,
                expected,
            });
        }
        return Err(IoError::MissingTensor {
            path,
            name: format!(
                "{:?}{}",
                key.role,
                key.block.map(|b| format!(" of block {b}")).unwrap_or_default()
            ),
            expected: shape.clone(),
            nearest: vec![],
        });
    }
    let unused: Vec<(&String, &Vec<usize>)> = files
        .iter()
        .filter(|(n, _)| !used.contains(*n) && !ignored.iter().any(|s| n.ends_with(s)))
        .map(|(n, m)| (n, &m.shape))
        .collect();
    if !unused.is_empty() {
        return Err(IoError::UnusedTensors {
            path,
            names: unused.iter().map(|(n, _)| (*n).clone()).collect(),
            shapes: unused.iter().map(|(_, s)| (*s).clone()).collect(),
        });
    }
    Ok(set)
}

/// The expected row-major shape of one role (also for roles not needed, e.g. an unused bias).
fn role_shape(cfg: &ModelConfig, key: RoleKey) -> Vec<usize> {
    use TensorRole::*;
    let (d, m) = (cfg.d_model, cfg.d_mlp);
    let (q, kv) = (cfg.n_heads * cfg.d_head, cfg.n_kv_heads * cfg.d_head);
    let e = match cfg.mlp {
        MlpKind::Moe { n_experts, .. } => n_experts,
        _ => 0,
    };
    let (qn, kn) = match cfg.attn.qk_norm {
        QkNorm::Whole => (q, kv),
        QkNorm::PerHead | QkNorm::None => (cfg.d_head, cfg.d_head),
    };
    match key.role {
        TokEmbed | Unembed => vec![cfg.d_vocab, d],
        PosEmbed => vec![cfg.context_length, d],
        FinalNormW | FinalNormB | AttnNormW | AttnNormB | MlpNormW | MlpNormB | OBias | DownBias
        | EmbedNormW | EmbedNormB | PostAttnNormW | PostMlpNormW => vec![d],
        Q => vec![q, d],
        K | V => vec![kv, d],
        QBias => vec![q],
        KBias | VBias => vec![kv],
        O => vec![d, q],
        Gate | Up => vec![m, d],
        GateBias | UpBias => vec![m],
        Down => vec![d, m],
        QNormW => vec![qn],
        KNormW => vec![kn],
        AttnSinks => vec![cfg.n_heads],
        RouterW => vec![e, d],
        RouterB => vec![e],
        ExpertGate | ExpertUp => vec![e, m, d],
        ExpertGateBias | ExpertUpBias => vec![e, m],
        ExpertDown => vec![e, d, m],
        ExpertDownBias => vec![e, d],
    }
}

/// Runs an entry's transforms on the file tensor, giving one weight per role of the entry.
fn apply_transforms(transforms: &[Transform], w: Weight, cfg: &ModelConfig) -> Vec<Weight> {
    let mut outs = vec![w];
    for t in transforms {
        outs = outs
            .into_iter()
            .flat_map(|Weight { shape, data }| match *t {
                Transform::Transpose => {
                    let (data, shape) = transpose(&data, &shape);
                    vec![Weight { shape, data }]
                }
                Transform::TransposeLast2 => vec![transpose_last2(&data, &shape)],
                Transform::Deinterleave => deinterleave(&data, &shape),
                rows_only => {
                    let rows = shape.first().copied().unwrap_or(0);
                    let cols: usize = shape.iter().skip(1).product();
                    let maps = rows_only.row_maps(rows, cfg).unwrap_or_else(|| vec![(0..rows).collect()]);
                    maps.into_iter()
                        .map(|map| {
                            let mut s = shape.clone();
                            if let Some(r) = s.first_mut() {
                                *r = map.len();
                            }
                            let data =
                                map.iter().flat_map(|&r| &data[r * cols..(r + 1) * cols]).copied().collect();
                            Weight { shape: s, data }
                        })
                        .collect()
                }
            })
            .collect();
    }
    outs
}

/// [`apply_transforms`] for stored-format rows: every transform moves rows only (checked by the
/// caller with [`Transform::moves_rows_only`]), so each output is a row map over the same
/// bytes, with exactly the values the f32 path gives.
fn stored_transforms(
    transforms: &[Transform],
    w: StoredWeight,
    cfg: &ModelConfig,
) -> Result<Vec<StoredWeight>, StoredError> {
    let mut outs = vec![w];
    for t in transforms {
        let mut next = Vec::new();
        for StoredWeight { shape, matrix } in outs {
            let rows = shape.first().copied().unwrap_or(0);
            // A first-axis entry is `sub` stored rows (experts: `[E, out, in]` has `out`).
            let sub: usize = shape.iter().skip(1).rev().skip(1).product();
            let maps = t
                .row_maps(rows, cfg)
                .ok_or_else(|| StoredError::Layout { what: format!("{t:?} does not only move rows") })?;
            for map in maps {
                let stored_rows: Vec<usize> = map.iter().flat_map(|&r| r * sub..(r + 1) * sub).collect();
                let mut s = shape.clone();
                if let Some(r) = s.first_mut() {
                    *r = map.len();
                }
                next.push(StoredWeight { shape: s, matrix: matrix.select_rows(&stored_rows)? });
            }
        }
        outs = next;
    }
    Ok(outs)
}

/// The shape the file tensor must have so that the entry's transforms give `outs` (the
/// transforms undone in reverse order).
fn file_shape(entry: &TensorEntry, outs: &[Vec<usize>]) -> Vec<usize> {
    let mut shapes: Vec<Vec<usize>> = outs.to_vec();
    for t in entry.transforms.iter().rev() {
        shapes = match t {
            Transform::Transpose => shapes
                .into_iter()
                .map(|mut s| {
                    if s.len() == 2 {
                        s.reverse();
                    }
                    s
                })
                .collect(),
            Transform::TransposeLast2 => shapes
                .into_iter()
                .map(|mut s| {
                    let n = s.len();
                    if n >= 2 {
                        s.swap(n - 1, n - 2);
                    }
                    s
                })
                .collect(),
            Transform::UnpermuteQ | Transform::UnpermuteK => shapes,
            // A split along axis 0: rows add up, trailing axes equal.
            Transform::SplitQkv(_) | Transform::SplitHalves => {
                let rows: usize = shapes.iter().filter_map(|s| s.first()).sum();
                let mut s = shapes.first().cloned().unwrap_or_default();
                if let Some(r) = s.first_mut() {
                    *r = rows;
                }
                vec![s]
            }
            // Interleaved along the last axis: last axes add up.
            Transform::Deinterleave => {
                let cols: usize = shapes.iter().filter_map(|s| s.last()).sum();
                let mut s = shapes.first().cloned().unwrap_or_default();
                if let Some(c) = s.last_mut() {
                    *c = cols;
                }
                vec![s]
            }
        };
    }
    shapes.into_iter().next().unwrap_or_default()
}

/// `[.., r, c]` -> `[.., c, r]`.
fn transpose_last2(data: &[f32], shape: &[usize]) -> Weight {
    let n = shape.len();
    if n < 2 {
        return Weight { shape: shape.to_vec(), data: data.to_vec() };
    }
    let (r, c) = (shape[n - 2], shape[n - 1]);
    let mut out = Vec::with_capacity(data.len());
    for m in data.chunks(r * c.max(1)) {
        out.extend(transpose(m, &[r, c]).0);
    }
    let mut s = shape.to_vec();
    s.swap(n - 1, n - 2);
    Weight { shape: s, data: out }
}

/// The last axis's even entries and odd entries.
fn deinterleave(data: &[f32], shape: &[usize]) -> Vec<Weight> {
    let cols = shape.last().copied().unwrap_or(0).max(1);
    let even: Vec<f32> =
        data.iter().enumerate().filter(|(i, _)| (i % cols) % 2 == 0).map(|(_, x)| *x).collect();
    let odd: Vec<f32> =
        data.iter().enumerate().filter(|(i, _)| (i % cols) % 2 == 1).map(|(_, x)| *x).collect();
    let mut s = shape.to_vec();
    if let Some(c) = s.last_mut() {
        *c /= 2;
    }
    vec![Weight { shape: s.clone(), data: even }, Weight { shape: s, data: odd }]
}

fn transpose(data: &[f32], shape: &[usize]) -> (Vec<f32>, Vec<usize>) {
    match *shape {
        [r, c] => {
            let mut out = vec![0.0; data.len()];
            for i in 0..r {
                for j in 0..c {
                    out[j * r + i] = data[i * c + j];
                }
            }
            (out, vec![c, r])
        }
        _ => (data.to_vec(), shape.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's permutation followed by ours is the identity.
    #[test]
    fn unpermute_inverts_llamacpp_permute() {
        let (n, rows, cols) = (2usize, 8usize, 3usize);
        let w: Vec<f32> = (0..rows * cols).map(|x| x as f32).collect();
        // permute: reshape(n, 2, half, cols).swapaxes(1, 2)
        let half = rows / n / 2;
        let mut p = vec![0.0; w.len()];
        for h in 0..n {
            for j in 0..2 {
                for i in 0..half {
                    let src = (h * 2 * half + j * half + i) * cols;
                    let dst = (h * half * 2 + i * 2 + j) * cols;
                    p[dst..dst + cols].copy_from_slice(&w[src..src + cols]);
                }
            }
        }
        assert_ne!(p, w);
        let map = unpermute_map(rows, n);
        let got: Vec<f32> = map.iter().flat_map(|&r| p[r * cols..(r + 1) * cols].to_vec()).collect();
        assert_eq!(got, w);
    }

    /// Transposing twice is the identity and swaps the shape.
    #[test]
    fn transpose_roundtrip() {
        let w: Vec<f32> = (0..6).map(|x| x as f32).collect();
        let (t, s) = transpose(&w, &[2, 3]);
        assert_eq!(s, vec![3, 2]);
        assert_eq!(t, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(transpose(&t, &s).0, w);
    }
}
