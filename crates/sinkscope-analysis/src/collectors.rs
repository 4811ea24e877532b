//! Streaming metric collectors: each is a [`Hook`] that reduces the activation it sees to
//! its metrics as the layer runs and keeps only the reduction, so a forward pass never
//! holds more than one layer's activation or attention pattern at a time.
//!
//! - [`ResidualCollector`]: `hook_embed` (= `X(0)`) and every `blocks.{i}.hook_resid_post`
//!   (= `X(i+1)`) → [`LayerMetrics`] (norms, Gram spectrum, Theorem-1 check).
//! - [`AttentionCollector`]: every `blocks.{i}.attn.hook_pattern` (`[H, T, T]`) →
//!   [`LayerAttention`] (per-head statistics and their layer summaries).
//! - [`SinkValueCollector`]: every `blocks.{i}.attn.hook_v` (`[T, KVH, d_head]`, kept until
//!   the same block's pattern arrives) and `attn.hook_pattern` → each head's
//!   [`SinkValueStats`] (the sink token's value norm and its share of the head's output).
//! - [`MlpCollector`]: every `blocks.{i}.hook_mlp_out` → the position-0 norm and the median
//!   norm of the other positions ([`MlpOutNorms`], for massive-layer detection).
//!
//! None of them wants `logits` or `ln_final.hook_normalized`, so the LM head is skipped.
//!
//! A collector that cannot reduce an activation (a shape it does not expect) records the
//! typed error, and stops the forward pass with a [`ModelError::Hook`]; the caller then
//! takes the typed error with `take_error`. A NaN or Inf becomes [`ModelError::NonFinite`]
//! naming the site.

use candle_core::Tensor;
use sinkscope_metrics::massive_layers::{mlp_out_norms, MlpOutNorms};
use sinkscope_metrics::values::{layer_sink_values, SinkValueStats};
use sinkscope_metrics::{AttentionParams, LayerAttention, LayerMetrics, Matrix, MetricsError};
use sinkscope_model::{Hook, ModelError, Result as ModelResult};
use sinkscope_spec::{HookSite, SiteKind};

/// Copies a tensor to host `f32` values (row-major) with its shape.
fn to_host(act: &Tensor) -> ModelResult<(Vec<f32>, Vec<usize>)> {
    let dims = act.dims().to_vec();
    let data: Vec<f32> = act.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1()?;
    Ok((data, dims))
}

/// Maps a metrics error to the error that stops the forward pass; a non-finite value is
/// reported as such (exit code 5), anything else is kept by the collector.
fn stop(site: HookSite, e: &MetricsError) -> ModelError {
    match e {
        MetricsError::NonFinite { .. } => ModelError::NonFinite { site },
        other => ModelError::Hook { site, reason: other.to_string() },
    }
}

fn shape_error(site: HookSite, dims: &[usize], want: &str) -> ModelError {
    ModelError::Hook { site, reason: format!("expected a {want} tensor, got shape {dims:?}") }
}

/// Residual-stream metrics at `X(0)..X(L)`: one [`LayerMetrics`] per layer.
pub struct ResidualCollector {
    top_k: usize,
    layers: Vec<Option<LayerMetrics>>,
    error: Option<(HookSite, MetricsError)>,
}

impl ResidualCollector {
    /// A collector for a model with `n_layers` blocks, keeping the `top_k` largest
    /// activations of each layer.
    pub fn new(n_layers: usize, top_k: usize) -> Self {
        ResidualCollector { top_k, layers: vec![None; n_layers + 1], error: None }
    }

    /// The metrics of `X(l)`, `l = 0..L` (`None` for a layer not seen).
    pub fn into_layers(self) -> Vec<Option<LayerMetrics>> {
        self.layers
    }

    /// The first typed error met (with its site), if any.
    pub fn take_error(&mut self) -> Option<(HookSite, MetricsError)> {
        self.error.take()
    }
}

impl Hook for ResidualCollector {
    fn wants(&self, site: HookSite) -> bool {
        matches!(site.kind, SiteKind::Embed | SiteKind::ResidPost)
    }

    fn on(&mut self, site: HookSite, act: &Tensor) -> ModelResult<Option<Tensor>> {
        let Some(l) = site.metric_layer() else { return Ok(None) };
        let (data, dims) = to_host(act)?;
        let &[t, d] = dims.as_slice() else { return Err(shape_error(site, &dims, "[T, d]")) };
        let computed = Matrix::new(&data, t, d).and_then(|x| LayerMetrics::compute(&x, self.top_k));
        match computed {
            Ok(m) => {
                if let Some(slot) = self.layers.get_mut(l) {
                    *slot = Some(m);
                }
                Ok(None)
            }
            Err(e) => {
                let err = stop(site, &e);
                self.error = Some((site, e));
                Err(err)
            }
        }
    }
}

/// Attention statistics of every block, reduced head by head from the pattern as the
/// layer runs; the pattern itself is dropped.
pub struct AttentionCollector {
    params: AttentionParams,
    blocks: Vec<Option<LayerAttention>>,
    error: Option<(HookSite, MetricsError)>,
}

impl AttentionCollector {
    /// A collector for `n_layers` blocks with these thresholds.
    pub fn new(n_layers: usize, params: AttentionParams) -> Self {
        AttentionCollector { params, blocks: vec![None; n_layers], error: None }
    }

    /// The statistics of block `i` (0-based) at index `i` (`None` for a block not seen).
    pub fn into_blocks(self) -> Vec<Option<LayerAttention>> {
        self.blocks
    }

    /// The first typed error met (with its site), if any.
    pub fn take_error(&mut self) -> Option<(HookSite, MetricsError)> {
        self.error.take()
    }
}

impl Hook for AttentionCollector {
    fn wants(&self, site: HookSite) -> bool {
        site.kind == SiteKind::AttnPattern
    }

    fn on(&mut self, site: HookSite, act: &Tensor) -> ModelResult<Option<Tensor>> {
        let (data, dims) = to_host(act)?; // [H, T, T]
        let &[h, t, t2] = dims.as_slice() else { return Err(shape_error(site, &dims, "[H, T, T]")) };
        if t != t2 {
            return Err(shape_error(site, &dims, "[H, T, T]"));
        }
        match LayerAttention::from_patterns(&data, h, t, &self.params) {
            Ok(a) => {
                if let Some(slot) = self.blocks.get_mut(site.block) {
                    *slot = Some(a);
                }
                Ok(None)
            }
            Err(e) => {
                let err = stop(site, &e);
                self.error = Some((site, e));
                Err(err)
            }
        }
    }
}

/// The MLP output norms of every block: position 0 vs the median of the other positions.
pub struct MlpCollector {
    blocks: Vec<Option<MlpOutNorms>>,
    error: Option<(HookSite, MetricsError)>,
}

impl MlpCollector {
    /// A collector for `n_layers` blocks.
    pub fn new(n_layers: usize) -> Self {
        MlpCollector { blocks: vec![None; n_layers], error: None }
    }

    /// The norms of block `i` (0-based) at index `i` (`None` for a block not seen).
    pub fn into_blocks(self) -> Vec<Option<MlpOutNorms>> {
        self.blocks
    }

    /// The first typed error met (with its site), if any.
    pub fn take_error(&mut self) -> Option<(HookSite, MetricsError)> {
        self.error.take()
    }
}

impl Hook for MlpCollector {
    fn wants(&self, site: HookSite) -> bool {
        site.kind == SiteKind::MlpOut
    }

    fn on(&mut self, site: HookSite, act: &Tensor) -> ModelResult<Option<Tensor>> {
        let (data, dims) = to_host(act)?; // [T, d]
        let &[t, d] = dims.as_slice() else { return Err(shape_error(site, &dims, "[T, d]")) };
        match Matrix::new(&data, t, d) {
            Ok(x) => {
                if let Some(slot) = self.blocks.get_mut(site.block) {
                    *slot = Some(mlp_out_norms(&x));
                }
                Ok(None)
            }
            Err(e) => {
                let err = stop(site, &e);
                self.error = Some((site, e));
                Err(err)
            }
        }
    }
}

/// The sink token's value norm and its share of every head's output, per block: the
/// block's `attn.hook_v` is kept until its `attn.hook_pattern` arrives, then both are
/// reduced and dropped.
pub struct SinkValueCollector {
    /// The current block's values: (block, data `[T, KVH, d_head]`, KVH, d_head).
    pending: Option<(usize, Vec<f32>, usize, usize)>,
    blocks: Vec<Option<Vec<SinkValueStats>>>,
    error: Option<(HookSite, MetricsError)>,
}

impl SinkValueCollector {
    /// A collector for `n_layers` blocks.
    pub fn new(n_layers: usize) -> Self {
        SinkValueCollector { pending: None, blocks: vec![None; n_layers], error: None }
    }

    /// The per-head statistics of block `i` (0-based) at index `i` (`None` for a block not
    /// seen).
    pub fn into_blocks(self) -> Vec<Option<Vec<SinkValueStats>>> {
        self.blocks
    }

    /// The first typed error met (with its site), if any.
    pub fn take_error(&mut self) -> Option<(HookSite, MetricsError)> {
        self.error.take()
    }
}

impl Hook for SinkValueCollector {
    fn wants(&self, site: HookSite) -> bool {
        matches!(site.kind, SiteKind::AttnV | SiteKind::AttnPattern)
    }

    fn on(&mut self, site: HookSite, act: &Tensor) -> ModelResult<Option<Tensor>> {
        let (data, dims) = to_host(act)?;
        if site.kind == SiteKind::AttnV {
            let &[_, kvh, dh] = dims.as_slice() else {
                return Err(shape_error(site, &dims, "[T, KVH, d_head]"));
            };
            self.pending = Some((site.block, data, kvh, dh));
            return Ok(None);
        }
        let &[h, t, t2] = dims.as_slice() else { return Err(shape_error(site, &dims, "[H, T, T]")) };
        if t != t2 {
            return Err(shape_error(site, &dims, "[H, T, T]"));
        }
        let Some((block, values, kvh, dh)) = self.pending.take().filter(|p| p.0 == site.block) else {
            return Err(ModelError::Hook { site, reason: "no attn.hook_v seen for this block".into() });
        };
        match layer_sink_values(&data, h, t, &values, kvh, dh) {
            Ok(stats) => {
                if let Some(slot) = self.blocks.get_mut(block) {
                    *slot = Some(stats);
                }
                Ok(None)
            }
            Err(e) => {
                let err = stop(site, &e);
                self.error = Some((site, e));
                Err(err)
            }
        }
    }
}
