//! The decoder: embeddings, the blocks, the final norm and the LM head, built from a
//! [`ModelConfig`] and a [`WeightSet`].

use crate::block::{ensure_finite, Block};
use crate::error::{ModelError, Result};
use crate::hooks::ForwardCtx;
use crate::layers::{
    attention::causal_mask,
    attention::Attention,
    linear::{Linear, Weight as LinearWeight},
    mlp::{Dense, Expert, Mlp, Moe},
    norm::Norm,
    rope::RopeTables,
    scores::{alibi_slopes, ScoreSpec},
};
use crate::pack::Pack;
use candle_core::{Device, Tensor};
use sinkscope_io::stored::PageAdvice;
use sinkscope_io::weights::MatrixWeight;
use sinkscope_io::{TensorRole as R, WeightSet};
use sinkscope_spec::{HookSite, MlpKind, ModelConfig, NormKind, Positional, QkNorm, RopeSpec, SiteKind};

/// How a model holds its blocks' weights during a forward call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Every block's weights stay resident (a memory map's pages stay once touched).
    Resident,
    /// Layer streaming (`--stream-layers`): a call runs block-major over passes of at most
    /// `pack_tokens` tokens (every prompt's residual stream advances block by block); a block's
    /// weights left in the file's memory map are prefetched before it runs and their pages
    /// dropped after it, so only one block's weights are resident at a time. The results are
    /// the same bits as [`Layout::Resident`] (weights must be loaded with
    /// `ModelFiles::load_weights_for(true)` for F32 matrices to be streamed too).
    Streamed {
        /// Tokens per pass (the memory of one pass's working set).
        pack_tokens: usize,
        /// Tokens of the prompts that callers hand to one call (a chunk: their residual
        /// streams advance block by block together, so each block is read once per chunk).
        /// Bounds the memory of the residual streams, flat in the number of prompts.
        chunk_tokens: usize,
    },
}

/// A loaded, immutable decoder.
pub struct Model {
    /// The config it was built from.
    pub config: ModelConfig,
    device: Device,
    tok_embed: LinearWeight,
    pos_embed: Option<Tensor>,
    embed_norm: Option<Norm>,
    blocks: Vec<Block>,
    ln_final: Norm,
    unembed: Linear,
    /// Whether every block's weights stay resident or are streamed block by block.
    layout: Layout,
    /// Checkpoint tensors holding NaN/Inf, cited when an activation turns non-finite.
    non_finite_weights: Vec<String>,
    /// The head packed in f32 for LogitLens, built on its first use when the head is kept in
    /// a stored format (see [`unembed`](Model::unembed)).
    lens_head: std::sync::OnceLock<Linear>,
}

struct Loader<'a> {
    w: &'a mut WeightSet,
    device: &'a Device,
}

impl Loader<'_> {
    fn missing(role: R, block: Option<usize>) -> ModelError {
        ModelError::MissingWeight {
            role: format!("{role:?}"),
            block: block.map_or("the model".into(), |b| format!("block {b}")),
        }
    }

    fn take_raw(&mut self, role: R, block: Option<usize>) -> Result<sinkscope_io::Weight> {
        self.w
            .take(role, block)
            .map_err(|e| ModelError::Input(e.to_string()))?
            .ok_or_else(|| Self::missing(role, block))
    }

    /// A matrix as loaded (stored format where the file allows it).
    fn take_matrix(&mut self, role: R, block: Option<usize>) -> Result<MatrixWeight> {
        self.w.take_matrix(role, block).ok_or_else(|| Self::missing(role, block))
    }

    fn take(&mut self, role: R, block: Option<usize>) -> Result<Tensor> {
        let w = self.take_raw(role, block)?;
        Ok(Tensor::from_vec(w.data, w.shape, self.device)?)
    }

    fn opt(&mut self, role: R, block: Option<usize>) -> Result<Option<Tensor>> {
        match self.w.contains(role, block) {
            true => self.take(role, block).map(Some),
            false => Ok(None),
        }
    }

    fn linear(&mut self, w: R, b: R, block: usize, bias: bool) -> Result<Linear> {
        let bias = if bias { Some(self.take(b, Some(block))?) } else { None };
        let weight = self.take_matrix(w, Some(block))?;
        Linear::from_matrix(weight, bias, self.device)
            .map_err(|e| ModelError::Input(format!("{w:?} of block {block}: {e}")))
    }

    /// The values of a weight (vectors such as sink logits).
    fn values(&mut self, role: R, block: usize) -> Result<Vec<f32>> {
        Ok(self.take_raw(role, Some(block))?.data)
    }

    /// The experts of a mixture: `[E, rows, cols]` weights split into one linear map each.
    fn experts(&mut self, block: usize) -> Result<Vec<Expert>> {
        let mut parts = |w: R, b: R| -> Result<Vec<Linear>> {
            let (weight, bias) = (self.take_matrix(w, Some(block))?, self.take_raw(b, Some(block))?);
            let [e, out, inp] = weight.shape()[..] else {
                return Err(ModelError::Input(format!(
                    "{w:?} of block {block} has shape {:?}",
                    weight.shape()
                )));
            };
            (0..e)
                .map(|i| {
                    let one = match &weight {
                        MatrixWeight::F32(f) => MatrixWeight::F32(sinkscope_io::Weight {
                            shape: vec![out, inp],
                            data: f.data[i * out * inp..(i + 1) * out * inp].to_vec(),
                        }),
                        MatrixWeight::Stored(s) => {
                            let rows: Vec<usize> = (i * out..(i + 1) * out).collect();
                            let matrix =
                                s.matrix.select_rows(&rows).map_err(|e| ModelError::Input(e.to_string()))?;
                            MatrixWeight::Stored(sinkscope_io::weights::StoredWeight {
                                shape: vec![out, inp],
                                matrix,
                            })
                        }
                    };
                    let bias =
                        Tensor::from_vec(bias.data[i * out..(i + 1) * out].to_vec(), out, self.device)?;
                    Linear::from_matrix(one, Some(bias), self.device)
                })
                .collect()
        };
        let gate = parts(R::ExpertGate, R::ExpertGateBias)?;
        let up = parts(R::ExpertUp, R::ExpertUpBias)?;
        let down = parts(R::ExpertDown, R::ExpertDownBias)?;
        Ok(gate.into_iter().zip(up).zip(down).map(|((gate, up), down)| Expert { gate, up, down }).collect())
    }

    fn norm(&mut self, kind: NormKind, w: R, b: R, block: Option<usize>) -> Result<Norm> {
        let mut weight = self.take(w, block)?;
        let bias = match kind {
            NormKind::LayerNorm { bias: true, .. } => Some(self.take(b, block)?),
            NormKind::LayerNorm { .. } => None,
            NormKind::RmsNorm { weight_offset, .. } => {
                if weight_offset != 0.0 {
                    weight = (weight + f64::from(weight_offset))?;
                }
                None
            }
        };
        Ok(Norm { kind, weight, bias })
    }
}

impl Model {
    /// Builds the model, taking ownership of the weights (no copy).
    pub fn new(config: ModelConfig, mut weights: WeightSet, device: &Device) -> Result<Self> {
        let cfg = &config;
        let non_finite_weights = weights.non_finite().iter().map(|t| t.to_string()).collect();
        let mut l = Loader { w: &mut weights, device };
        let tok_embed = LinearWeight::from_matrix(l.take_matrix(R::TokEmbed, None)?, device)?;
        let pos_embed = l.opt(R::PosEmbed, None)?;
        let embed_norm =
            if cfg.embed_norm { Some(l.norm(cfg.norm, R::EmbedNormW, R::EmbedNormB, None)?) } else { None };
        let (pre, post) = (cfg.norm_placement.has_pre(), cfg.norm_placement.has_post());
        // QK-norm gains are plain RMSNorm gains with the model's weight offset (Gemma 3: 1 + w).
        let qk_kind = match cfg.norm {
            NormKind::LayerNorm { eps, .. } => NormKind::RmsNorm { eps, weight_offset: 0.0 },
            rms => rms,
        };
        let alibi = matches!(cfg.positional, Positional::Alibi).then(|| alibi_slopes(cfg.n_heads));
        let mut blocks = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let qk_norm = match cfg.attn.qk_norm {
                QkNorm::None => None,
                kind => Some((
                    kind,
                    l.norm(qk_kind, R::QNormW, R::QNormW, Some(i))?,
                    l.norm(qk_kind, R::KNormW, R::KNormW, Some(i))?,
                )),
            };
            let mlp = match cfg.mlp {
                MlpKind::Plain { act, bias } => Mlp::Dense(Dense {
                    gate: None,
                    up: l.linear(R::Up, R::UpBias, i, bias)?,
                    down: l.linear(R::Down, R::DownBias, i, bias)?,
                    act,
                }),
                MlpKind::Gated { act, bias } => Mlp::Dense(Dense {
                    gate: Some(l.linear(R::Gate, R::GateBias, i, bias)?),
                    up: l.linear(R::Up, R::UpBias, i, bias)?,
                    down: l.linear(R::Down, R::DownBias, i, bias)?,
                    act,
                }),
                MlpKind::Moe { top_k, alpha, limit, .. } => Mlp::Moe(Moe {
                    router: l.linear(R::RouterW, R::RouterB, i, true)?,
                    experts: l.experts(i)?,
                    top_k,
                    alpha: alpha as f32,
                    limit: limit as f32,
                }),
            };
            blocks.push(Block {
                index: i,
                ln1: if pre { Some(l.norm(cfg.norm, R::AttnNormW, R::AttnNormB, Some(i))?) } else { None },
                attn: Attention {
                    q: l.linear(R::Q, R::QBias, i, cfg.attn.qkv_bias)?,
                    k: l.linear(R::K, R::KBias, i, cfg.attn.qkv_bias)?,
                    v: l.linear(R::V, R::VBias, i, cfg.attn.qkv_bias)?,
                    o: l.linear(R::O, R::OBias, i, cfg.attn.o_bias)?,
                    qk_norm,
                    n_heads: cfg.n_heads,
                    n_kv_heads: cfg.n_kv_heads,
                    d_head: cfg.d_head,
                    scores: ScoreSpec {
                        scale: cfg.attn.scale as f32,
                        softcap: cfg.attn.softcap.map(|c| c as f32),
                        alibi: alibi.clone(),
                        sinks: if cfg.attn.sinks { Some(l.values(R::AttnSinks, i)?) } else { None },
                    },
                    window: cfg.layers.get(i).and_then(|s| s.sliding_window),
                },
                ln1_post: if post {
                    Some(l.norm(cfg.norm, R::PostAttnNormW, R::PostAttnNormW, Some(i))?)
                } else {
                    None
                },
                ln2: if pre { Some(l.norm(cfg.norm, R::MlpNormW, R::MlpNormB, Some(i))?) } else { None },
                mlp,
                ln2_post: if post {
                    Some(l.norm(cfg.norm, R::PostMlpNormW, R::PostMlpNormW, Some(i))?)
                } else {
                    None
                },
                layout: cfg.block_layout,
            });
        }
        let ln_final = l.norm(cfg.norm, R::FinalNormW, R::FinalNormB, None)?;
        // A tied head shares the embedding's weight (one copy, packed or stored).
        let unembed = match cfg.tied_unembed {
            true => Linear { weight: tok_embed.clone(), bias: None },
            false => Linear::from_matrix(l.take_matrix(R::Unembed, None)?, None, device)?,
        };
        Ok(Model {
            config,
            device: device.clone(),
            tok_embed,
            pos_embed,
            embed_norm,
            blocks,
            ln_final,
            unembed,
            non_finite_weights,
            lens_head: std::sync::OnceLock::new(),
            layout: Layout::Resident,
        })
    }

    /// The model with its blocks held as `layout` says.
    pub fn with_layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// How the model holds its blocks' weights.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The checkpoint tensors that hold NaN or infinite values, described (empty for a sound
    /// checkpoint). Loading accepts them; [`forward`](Self::forward) fails at the first
    /// non-finite activation and cites them.
    pub fn non_finite_weights(&self) -> &[String] {
        &self.non_finite_weights
    }

    /// Runs the model on one prompt. Hooks in `ctx` see (and may edit) every site they want.
    /// Returns the logits `[T, V]` when `ctx.want_logits` is set; the LM head is skipped when
    /// neither the caller nor a hook needs it.
    ///
    /// The residual stream is checked for NaN/Inf at `hook_embed`, each block's `attn_out`,
    /// `mlp_out` and `resid_post`, and at `ln_final` / `logits` when computed: the first
    /// non-finite one fails with [`ModelError::NonFinite`] naming the site, or with
    /// [`ModelError::NonFiniteWeights`] (which also names the tensors) when the checkpoint holds
    /// non-finite weights.
    pub fn forward(&self, tokens: &[u32], ctx: &mut ForwardCtx) -> Result<Option<Tensor>> {
        let mut logits = self.forward_packed(&[tokens], std::slice::from_mut(ctx))?;
        Ok(logits.pop().flatten())
    }

    /// Runs several prompts in one pass ([`Pack`]), prompt `i` with hooks `ctxs[i]`: the
    /// same results, bit for bit, as [`forward`](Self::forward) on each prompt, in less time
    /// for short prompts (bigger matrix products). Returns each prompt's logits `[T_i, V]`
    /// when its context asks for them.
    ///
    /// # Errors
    /// As [`forward`](Self::forward); a NaN/Inf fails the whole pack (run the prompts one by
    /// one to learn which one it is).
    pub fn forward_packed(&self, prompts: &[&[u32]], ctxs: &mut [ForwardCtx]) -> Result<Vec<Option<Tensor>>> {
        if prompts.len() != ctxs.len() || prompts.is_empty() {
            return Err(ModelError::Input(format!(
                "{} prompt(s) and {} hook context(s): need one context per prompt, at least one",
                prompts.len(),
                ctxs.len()
            )));
        }
        let lens: Vec<usize> = prompts.iter().map(|p| p.len()).collect();
        let mut packs = Vec::new();
        let mut rest = ctxs;
        for g in self.groups(&lens) {
            let (these, others) = rest.split_at_mut(g.len());
            packs.push(Pack::new(&lens[g], these));
            rest = others;
        }
        self.forward_inner(prompts, &mut packs).map_err(|e| match e {
            ModelError::NonFinite { site } if !self.non_finite_weights.is_empty() => {
                ModelError::NonFiniteWeights { site, tensors: self.non_finite_weights.clone() }
            }
            other => other,
        })
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        let cfg = &self.config;
        let t = tokens.len();
        if t == 0 {
            return Err(ModelError::Input("empty token sequence".into()));
        }
        if t > cfg.context_length {
            return Err(ModelError::Input(format!(
                "{t} tokens exceed the model's context length {}",
                cfg.context_length
            )));
        }
        if let Some(bad) = tokens.iter().find(|&&id| id as usize >= cfg.d_vocab) {
            return Err(ModelError::Input(format!(
                "token id {bad} is outside the vocabulary (size {})",
                cfg.d_vocab
            )));
        }
        Ok(())
    }

    /// The passes of one call: the whole pack when the blocks are resident; consecutive
    /// prompts of at most `pack_tokens` tokens each when streaming (how the prompts are
    /// grouped never changes a result: see [`crate::pack`]). Returns each group's prompt range.
    fn groups(&self, lens: &[usize]) -> Vec<std::ops::Range<usize>> {
        let budget = match self.layout {
            Layout::Resident => return std::iter::once(0..lens.len()).collect(),
            Layout::Streamed { pack_tokens, .. } => pack_tokens,
        };
        let mut out: Vec<std::ops::Range<usize>> = Vec::new();
        let mut tokens = 0usize;
        for (i, &n) in lens.iter().enumerate() {
            match out.last_mut() {
                Some(g) if tokens + n <= budget => {
                    g.end = i + 1;
                    tokens += n;
                }
                _ => {
                    out.push(i..i + 1);
                    tokens = n;
                }
            }
        }
        out
    }

    /// The embedding stage of one pass: `hook_tok_embed` .. `hook_embed`, giving X(0) `[rows, d]`.
    fn embed(&self, prompts: &[&[u32]], pack: &mut Pack) -> Result<Tensor> {
        let cfg = &self.config;
        let tok = self.tok_embed.rows(&prompts.concat(), &self.device)?;
        let tok = pack.apply(HookSite::global(SiteKind::TokEmbed), tok)?; // [rows, d]
        let mut x = match cfg.embed_scale {
            Some(s) => (tok * f64::from(s))?,
            None => tok,
        };
        if let Some(pe) = &self.pos_embed {
            // Positions restart at 0 for each prompt.
            let parts = pack
                .spans()
                .iter()
                .map(|&(_, l)| pe.narrow(0, 0, l))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let pos = if parts.len() == 1 { parts[0].clone() } else { Tensor::cat(&parts, 0)? };
            let pos = pack.apply(HookSite::global(SiteKind::PosEmbed), pos)?; // [rows, d]
            x = (x + pos)?;
        }
        if let Some(n) = &self.embed_norm {
            x = n.forward(&x)?;
        }
        let x0 = pack.apply(HookSite::global(SiteKind::Embed), x)?;
        ensure_finite(&x0, HookSite::global(SiteKind::Embed))?;
        Ok(x0)
    }

    /// The head stage of one pass on the last residual `x: [rows, d]`: the final norm and, per
    /// prompt, the LM head, when a prompt or a hook needs them; each prompt's logits `[T, V]`
    /// when its context asks for them.
    fn finish(&self, x: &Tensor, pack: &mut Pack, out: &mut [Option<Tensor>]) -> Result<()> {
        let ln_site = HookSite::global(SiteKind::LnFinal);
        let logit_site = HookSite::global(SiteKind::Logits);
        if !(pack.want_logits() || pack.wants(ln_site) || pack.wants(logit_site)) {
            return Ok(());
        }
        let normed = pack.apply(ln_site, self.ln_final.forward(x)?)?;
        ensure_finite(&normed, ln_site)?;
        // The LM head runs per prompt (candle's GEMM may block the sum differently for a
        // different number of rows; per prompt it gives exactly an unpacked pass's logits).
        pack.for_each_prompt(&[&normed], |i, ctx, rows| {
            let logits = ctx.apply(logit_site, self.head(&rows[0])?)?; // [T, V]
            ensure_finite(&logits, logit_site)?;
            if ctx.want_logits {
                out[i] = Some(logits);
            }
            Ok(())
        })
    }

    /// One call: the embedding of every pass, then block by block — each block runs on every
    /// pass before the next block starts — then the head of every pass. With resident weights
    /// there is one pass; when streaming, a block's mapped weights are prefetched before it
    /// runs and their pages dropped after its last pass, so one block is resident at a time.
    /// The per-block step is [`Block::forward`] in both layouts.
    fn forward_inner(&self, prompts: &[&[u32]], packs: &mut [Pack]) -> Result<Vec<Option<Tensor>>> {
        let cfg = &self.config;
        for p in prompts {
            self.check_tokens(p)?;
        }
        let streamed = matches!(self.layout, Layout::Streamed { .. });
        let t_max = packs.iter().map(|p| p.max_len()).max().unwrap_or(0);
        let mut xs = Vec::with_capacity(packs.len());
        let mut first = 0;
        for pack in packs.iter_mut() {
            let n = pack.spans().len();
            xs.push(self.embed(&prompts[first..first + n], pack)?);
            first += n;
        }
        if streamed {
            // The embedding's rows were gathered; its pages are not needed until the head.
            self.tok_embed.advise(PageAdvice::DontNeed);
        }
        // One table per distinct RoPE (Gemma 3: local and global layers) and one mask per
        // distinct window, each covering the longest prompt.
        let mut ropes: Vec<(RopeSpec, RopeTables)> = Vec::new();
        let mut masks: Vec<(Option<usize>, Tensor)> = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            let rope = match cfg.layer_rope(i) {
                Some(spec) => match ropes.iter().position(|(s, _)| *s == spec) {
                    Some(j) => Some(j),
                    None => {
                        ropes.push((spec, RopeTables::new(&spec, t_max, &self.device)?));
                        Some(ropes.len() - 1)
                    }
                },
                None => None,
            };
            let m = match masks.iter().position(|(w, _)| *w == b.attn.window) {
                Some(j) => j,
                None => {
                    masks.push((b.attn.window, causal_mask(t_max, b.attn.window, &self.device)?));
                    masks.len() - 1
                }
            };
            if streamed {
                b.advise(PageAdvice::WillNeed);
            }
            let step = xs.iter_mut().zip(packs.iter_mut()).try_for_each(|(x, pack)| -> Result<()> {
                let input = std::mem::replace(x, Tensor::zeros(0, candle_core::DType::F32, &self.device)?);
                *x = b.forward(input, rope.map(|j| &ropes[j].1), &masks[m].1, pack)?;
                Ok(())
            });
            if streamed {
                b.advise(PageAdvice::DontNeed);
            }
            step?;
        }
        let mut out = vec![None; prompts.len()];
        let mut first = 0;
        let mut result = Ok(());
        for (x, pack) in xs.iter().zip(packs.iter_mut()) {
            let n = pack.spans().len();
            result = self.finish(x, pack, &mut out[first..first + n]);
            if result.is_err() {
                break;
            }
            first += n;
        }
        if streamed {
            self.unembed.weight.advise(PageAdvice::DontNeed);
        }
        result.map(|()| out)
    }

    /// Applies the final norm and the unembedding to any residual `x: [T, d]` (LogitLens).
    ///
    /// LogitLens multiplies by the head L+1 times per prompt, so a head kept in a stored
    /// format is packed once in f32 on the first call (`V x d x 4` bytes) rather than
    /// dequantised on every call: the same values in the same FMA order, so the same bits as
    /// [`forward`](Self::forward)'s logits.
    pub fn unembed(&self, x: &Tensor) -> Result<Tensor> {
        let normed = self.ln_final.forward(x)?;
        let head = match self.lens_head.get() {
            Some(h) => h,
            // Streaming keeps the head in its stored format (the f32 copy of a large model's
            // head would outweigh a block): the same bits, dequantised on every call.
            None if self.layout != Layout::Resident => &self.unembed,
            None => match self.unembed.weight.densified() {
                None => &self.unembed,
                Some(dense) => {
                    let dense = dense.map_err(ModelError::Input)?;
                    self.lens_head.get_or_init(|| Linear { weight: dense, bias: self.unembed.bias.clone() })
                }
            },
        };
        self.head_with(head, &normed)
    }

    /// The LM head on normalised rows `[T, d]`: the unembedding, then the final soft-cap
    /// `c·tanh(x/c)` where the model has one (Gemma 2).
    fn head(&self, normed: &Tensor) -> Result<Tensor> {
        self.head_with(&self.unembed, normed)
    }

    fn head_with(&self, unembed: &Linear, normed: &Tensor) -> Result<Tensor> {
        let logits = unembed.forward(normed)?; // [T, V]
        Ok(match self.config.final_logit_softcap {
            Some(c) => ((logits / c)?.tanh()? * c)?,
            None => logits,
        })
    }
}
