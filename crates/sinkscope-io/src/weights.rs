//! Weights by role: the family declarations map file tensor names to [`TensorRole`]s through
//! load-time transforms given as data, and [`load_weights`] does it strictly — a missing tensor,
//! a wrong shape or a tensor nothing used is an error naming the file and the tensor.

use crate::error::{closest_names, IoError};
use crate::source::TensorSource;
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
    let first_index = data.iter().position(|x| !x.is_finite())?;
    let nan = data.iter().filter(|x| x.is_nan()).count();
    let inf = data.iter().filter(|x| x.is_infinite()).count();
    Some(NonFiniteTensor { name: name.to_string(), nan, inf, first_index })
}

/// Every weight of a model, by role.
#[derive(Debug, Default)]
pub struct WeightSet {
    map: BTreeMap<RoleKey, Weight>,
    non_finite: Vec<NonFiniteTensor>,
}

impl WeightSet {
    /// Removes and returns a weight (the model takes ownership without copying).
    pub fn take(&mut self, role: TensorRole, block: Option<usize>) -> Option<Weight> {
        self.map.remove(&RoleKey { role, block })
    }

    /// Borrows a weight.
    pub fn get(&self, role: TensorRole, block: Option<usize>) -> Option<&Weight> {
        self.map.get(&RoleKey { role, block })
    }

    /// Number of weights.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no weights.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
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
            let data = src.read_f32(&name)?;
            if let Some(nf) = scan_non_finite(&name, &data) {
                set.non_finite.push(nf);
            }
            let outputs = apply_transforms(entry.transforms, Weight { shape: meta.shape.clone(), data }, cfg);
            for ((key, w), exp) in keys.iter().zip(outputs).zip(&shapes) {
                if &w.shape != exp {
                    return Err(IoError::WrongShape { path, name, expected: exp.clone(), actual: w.shape });
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
                set.map.insert(*key, w);
            }
            used.insert(name);
        }
    }
    if let Some((key, shape)) = needed.iter().find(|(k, _)| !set.map.contains_key(k)) {
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
                Transform::UnpermuteQ => vec![Weight { data: unpermute(&data, &shape, cfg.n_heads), shape }],
                Transform::UnpermuteK => {
                    vec![Weight { data: unpermute(&data, &shape, cfg.n_kv_heads), shape }]
                }
                Transform::SplitQkv(layout) => split_qkv(&data, &shape, layout, cfg),
                Transform::SplitHalves => split_halves(&data, &shape),
                Transform::Deinterleave => deinterleave(&data, &shape),
            })
            .collect();
    }
    outs
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

/// Rows `[a | b]` -> (a, b), each half the rows.
fn split_halves(data: &[f32], shape: &[usize]) -> Vec<Weight> {
    let rows = shape.first().copied().unwrap_or(0);
    let mut s = shape.to_vec();
    if let Some(r) = s.first_mut() {
        *r = rows / 2;
    }
    let mid = (data.len() / 2).min(data.len());
    vec![
        Weight { shape: s.clone(), data: data[..mid].to_vec() },
        Weight { shape: s, data: data[mid..].to_vec() },
    ]
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

/// Inverse of llama.cpp's `permute(w, n) = w.reshape(n, 2, rows/n/2, in).swapaxes(1, 2)`:
/// file row `(h, i, j)` (j in 0..2) holds original row `(h, j, i)`.
fn unpermute(data: &[f32], shape: &[usize], n: usize) -> Vec<f32> {
    let rows = shape.first().copied().unwrap_or(0);
    let cols: usize = shape.iter().skip(1).product();
    if n == 0 || rows % (2 * n) != 0 {
        return data.to_vec();
    }
    let half = rows / n / 2;
    let mut out = vec![0.0; data.len()];
    for h in 0..n {
        for i in 0..half {
            for j in 0..2 {
                let src = (h * half * 2 + i * 2 + j) * cols;
                let dst = (h * 2 * half + j * half + i) * cols;
                out[dst..dst + cols].copy_from_slice(&data[src..src + cols]);
            }
        }
    }
    out
}

/// Splits fused QKV rows into (q, k, v) weights.
fn split_qkv(data: &[f32], shape: &[usize], layout: QkvLayout, cfg: &ModelConfig) -> Vec<Weight> {
    let cols: usize = shape.iter().skip(1).product();
    let tail: Vec<usize> = shape.iter().skip(1).copied().collect();
    let dh = cfg.d_head;
    let (qh, kvh) = (cfg.n_heads, cfg.n_kv_heads);
    let with_rows = |rows: usize, v: Vec<f32>| {
        let mut s = vec![rows];
        s.extend(&tail);
        Weight { shape: s, data: v }
    };
    match layout {
        QkvLayout::Blocks => {
            let (nq, nk) = (qh * dh * cols, kvh * dh * cols);
            let q = data[..nq.min(data.len())].to_vec();
            let k = data[nq.min(data.len())..(nq + nk).min(data.len())].to_vec();
            let v = data[(nq + nk).min(data.len())..].to_vec();
            vec![with_rows(qh * dh, q), with_rows(kvh * dh, k), with_rows(kvh * dh, v)]
        }
        QkvLayout::PerHead => {
            // Rows are [H, 3, dh]; only defined for n_kv_heads == n_heads.
            let mut parts = [Vec::new(), Vec::new(), Vec::new()];
            for h in 0..qh {
                for (p, part) in parts.iter_mut().enumerate() {
                    let start = ((h * 3 + p) * dh) * cols;
                    if let Some(s) = data.get(start..start + dh * cols) {
                        part.extend_from_slice(s);
                    }
                }
            }
            let [q, k, v] = parts;
            vec![with_rows(qh * dh, q), with_rows(kvh * dh, k), with_rows(kvh * dh, v)]
        }
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
        assert_eq!(unpermute(&p, &[rows, cols], n), w);
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
