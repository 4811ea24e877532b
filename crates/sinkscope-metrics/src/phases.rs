//! Mix–Compress–Refine phases (metrics.md, "Phases").
//!
//! Input: per-layer curves of `L + 1` entries (`l = 0..L`) — `bos_norm`, `bos_ratio`,
//! `entropy_norm`, `sink_rate` and `mixing_score` (the last two with entry 0 `null`) — of one
//! prompt or the prompt means. The rule uses the three criteria that define the paper's
//! phases together: the massive activation of the first token, the entropy valley, and
//! attention (sinks and the end of broad mixing).
//!
//! 1. **Smoothing.** Every curve is replaced by its centred running median of three over
//!    layers (`median(f(l−1), f(l), f(l+1))`, missing values skipped; the mean of the two
//!    values when only two are present; layers `0` and `L` keep their own value). A median of
//!    three ignores any single layer, so one dipping or spiking layer can neither start nor
//!    end a phase.
//! 2. **Compressed layer** `l ≥ 1` (smoothed values): the massive activation is present,
//!    `bos_ratio(l) ≥ 3` ([`PhaseParams::massive_ratio_min`]), **and** at least two of
//!    - sinks: `sink_rate(l) ≥ 0.5`,
//!    - valley: `entropy_norm(l) <` the midpoint `(min + max) / 2` of the smoothed curve,
//!    - no broad mixing: `mixing_score(l) < 0.7` (the paper's early-layer "mixing > 0.7").
//!
//!    A missing value counts as "not met".
//! 3. **Compress starts** at the first compressed layer `a`. No compressed layer: `Ok(None)`
//!    (no phases are reported; we do not call the whole depth "mix", which would claim more
//!    than was measured).
//! 4. **Decompressed layer** `l > a`: at least two of
//!    - entropy re-expanded: `entropy_norm(l) ≥ v + 0.15 (max − v)`, `v` the valley floor (the
//!      smallest smoothed `entropy_norm` at layers `≥ a`), `max` the largest over depth,
//!    - first-token norm receded: `bos_norm(l) ≤ ½` of its largest smoothed value,
//!    - sinks gone: `sink_rate(l) < 0.5`.
//! 5. **Refine** is the longest run of decompressed layers that ends at layer `L` (a suffix:
//!    a stretch that decompresses and compresses again — SmolLM2's layers 10–12 between its
//!    two massive-activation stages — stays inside Compress). `compress = a..=r−1` with `r` the
//!    first refine layer (`a..=L` without refine); `mix = 0..=a−1` (`None` when `a = 0`).
//!
//! Refine needs no crossing of a global threshold: a model whose last layers re-expand from a
//! deep valley only part of the way (SmolLM2: `entropy_norm` 0.03 → 0.33 while the global
//! midpoint is 0.36) still gets one, which the previous rule (longest run with sinks and
//! entropy below the midpoint) could not find. Depth fraction of layer `l` is `l / L`.

use serde::{Deserialize, Serialize};

use crate::MetricsError;

/// Minimum `sink_rate` of a layer with sinks (metrics.md).
pub const COMPRESS_MIN_SINK_RATE: f64 = 0.5;

/// Thresholds of the phase rule (module docs); every value is recorded in manifests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PhaseParams {
    /// A layer has sinks when its smoothed `sink_rate` is at least this (0.5).
    pub sink_rate_min: f64,
    /// The massive activation is present when the smoothed `bos_ratio` is at least this (3).
    pub massive_ratio_min: f64,
    /// Broad mixing has stopped when the smoothed `mixing_score` is below this (0.7).
    pub mixing_max: f64,
    /// Entropy has re-expanded when it is this fraction of the way from the valley floor
    /// back to the curve's maximum (0.15).
    pub entropy_rise: f64,
    /// The first-token norm has receded when it is at most this fraction of its peak (0.5).
    pub norm_recede: f64,
}

impl Default for PhaseParams {
    fn default() -> Self {
        PhaseParams {
            sink_rate_min: COMPRESS_MIN_SINK_RATE,
            massive_ratio_min: 3.0,
            mixing_max: 0.7,
            entropy_rise: 0.15,
            norm_recede: 0.5,
        }
    }
}

/// The per-layer curves the rule reads, `L + 1` entries each. A curve may be all `None`
/// (e.g. `mixing_score` of an old record): its criterion is then never met.
#[derive(Debug, Clone, Copy)]
pub struct PhaseCurves<'a> {
    /// `bos_norm(l)`.
    pub bos_norm: &'a [Option<f64>],
    /// `bos_ratio(l)`.
    pub bos_ratio: &'a [Option<f64>],
    /// `entropy_norm(l)`.
    pub entropy_norm: &'a [Option<f64>],
    /// `sink_rate(l)` (entry 0 `null`).
    pub sink_rate: &'a [Option<f64>],
    /// `mixing_score(l)` (entry 0 `null`).
    pub mixing_score: &'a [Option<f64>],
}

/// An inclusive range of layers with their depth fractions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LayerRange {
    /// First layer (inclusive).
    pub first: usize,
    /// Last layer (inclusive).
    pub last: usize,
    /// `first / L`.
    pub first_depth: f64,
    /// `last / L`.
    pub last_depth: f64,
}

impl LayerRange {
    fn new(first: usize, last: usize, n_layers: usize) -> Self {
        let l = n_layers.max(1) as f64;
        Self { first, last, first_depth: first as f64 / l, last_depth: last as f64 / l }
    }

    /// Number of layers in the range.
    pub fn len(&self) -> usize {
        self.last + 1 - self.first
    }

    /// Always false (a range holds at least one layer); provided for symmetry with
    /// [`Self::len`].
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The three phases of one model or prompt (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Phases {
    /// `L`, the number of blocks.
    pub n_layers: usize,
    /// The midpoint `(min + max) / 2` of the smoothed `entropy_norm` curve.
    pub entropy_norm_midpoint: f64,
    /// The valley floor: the smallest smoothed `entropy_norm` at layers ≥ the compress start.
    pub valley_floor: f64,
    /// The layer of the valley floor (the earliest on ties).
    pub valley_layer: usize,
    /// Layers before the compress phase; `None` if it starts at layer 0.
    pub mix: Option<LayerRange>,
    /// The compress phase.
    pub compress: LayerRange,
    /// The decompressed layers that end the model; `None` if there are none.
    pub refine: Option<LayerRange>,
}

impl Phases {
    /// The first layer of the compress phase (the Mix → Compress boundary).
    pub fn compress_start(&self) -> usize {
        self.compress.first
    }

    /// The first layer of the refine phase (the Compress → Refine boundary), if any.
    pub fn refine_start(&self) -> Option<usize> {
        self.refine.map(|r| r.first)
    }
}

/// The centred running median of three (module docs, step 1); `None` where the layer and
/// both neighbours are missing.
pub fn smooth_median3(curve: &[Option<f64>]) -> Vec<Option<f64>> {
    let n = curve.len();
    (0..n)
        .map(|l| {
            if l == 0 || l + 1 == n {
                return curve.get(l).copied().flatten();
            }
            let mut w: Vec<f64> = curve[l - 1..=l + 1].iter().flatten().copied().collect();
            w.sort_by(f64::total_cmp);
            match w.as_slice() {
                [_, b, _] => Some(*b),
                [a, b] => Some(0.5 * (a + b)),
                [a] => Some(*a),
                _ => None,
            }
        })
        .collect()
}

fn validate(curves: &PhaseCurves<'_>) -> Result<usize, MetricsError> {
    let named: [(&'static str, &[Option<f64>]); 5] = [
        ("bos_norm", curves.bos_norm),
        ("bos_ratio", curves.bos_ratio),
        ("entropy_norm", curves.entropy_norm),
        ("sink_rate", curves.sink_rate),
        ("mixing_score", curves.mixing_score),
    ];
    let len = curves.entropy_norm.len();
    for (what, c) in named {
        if c.len() != len {
            return Err(MetricsError::LengthMismatch { what, left: c.len(), right: len });
        }
        if let Some((index, value)) =
            c.iter().enumerate().find_map(|(i, v)| v.filter(|v| !v.is_finite()).map(|v| (i, v)))
        {
            return Err(MetricsError::NonFiniteValue { what, index, value });
        }
    }
    if len < 2 {
        return Err(MetricsError::TooShort { what: "phases curves", min: 2, len });
    }
    Ok(len - 1)
}

/// Finds the Mix–Compress–Refine phases (module docs); `Ok(None)` when no layer is
/// compressed.
///
/// # Errors
/// [`MetricsError::LengthMismatch`] for curves of different lengths,
/// [`MetricsError::TooShort`] for fewer than 2 entries, [`MetricsError::NonFiniteValue`]
/// for non-finite values.
///
/// ```
/// use sinkscope_metrics::phases::{phases, PhaseCurves, PhaseParams};
/// let some = |v: &[f64]| v.iter().map(|&x| Some(x)).collect::<Vec<_>>();
/// let attn = |v: &[f64]| std::iter::once(None).chain(v.iter().map(|&x| Some(x))).collect::<Vec<_>>();
/// let bos_norm = some(&[1.0, 1.0, 1.0, 90.0, 95.0, 100.0, 100.0, 30.0, 20.0]);
/// let bos_ratio = some(&[1.0, 1.0, 1.0, 50.0, 60.0, 60.0, 50.0, 8.0, 4.0]);
/// let entropy_norm = some(&[0.8, 0.8, 0.7, 0.05, 0.02, 0.02, 0.03, 0.3, 0.5]);
/// let sink_rate = attn(&[0.0, 0.1, 0.8, 0.9, 0.9, 0.9, 0.4, 0.3]);
/// let mixing_score = attn(&[0.9, 0.9, 0.4, 0.3, 0.3, 0.3, 0.5, 0.6]);
/// let c = PhaseCurves { bos_norm: &bos_norm, bos_ratio: &bos_ratio, entropy_norm: &entropy_norm,
///     sink_rate: &sink_rate, mixing_score: &mixing_score };
/// let Some(p) = phases(&c, &PhaseParams::default())? else { return Err("no phases".into()) };
/// assert_eq!(p.mix.map(|r| (r.first, r.last)), Some((0, 2)));
/// assert_eq!((p.compress.first, p.compress.last), (3, 6));
/// assert_eq!(p.refine.map(|r| (r.first, r.last)), Some((7, 8)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn phases(curves: &PhaseCurves<'_>, params: &PhaseParams) -> Result<Option<Phases>, MetricsError> {
    let n_layers = validate(curves)?;
    let norm = smooth_median3(curves.bos_norm);
    let ratio = smooth_median3(curves.bos_ratio);
    let ent = smooth_median3(curves.entropy_norm);
    let sink = smooth_median3(curves.sink_rate);
    let mix = smooth_median3(curves.mixing_score);
    let at = |c: &[Option<f64>], l: usize| c.get(l).copied().flatten();
    let (e_min, e_max) =
        ent.iter().flatten().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if e_min > e_max {
        return Ok(None); // every entropy_norm missing
    }
    let midpoint = 0.5 * (e_min + e_max);
    let compressed = |l: usize| -> bool {
        let massive = at(&ratio, l).is_some_and(|r| r >= params.massive_ratio_min);
        let votes = [
            at(&sink, l).is_some_and(|s| s >= params.sink_rate_min),
            at(&ent, l).is_some_and(|e| e < midpoint),
            at(&mix, l).is_some_and(|m| m < params.mixing_max),
        ];
        massive && votes.iter().filter(|v| **v).count() >= 2
    };
    let Some(a) = (1..=n_layers).find(|&l| compressed(l)) else { return Ok(None) };
    let (valley_layer, valley_floor) = (a..=n_layers)
        .filter_map(|l| at(&ent, l).map(|e| (l, e)))
        .fold((a, f64::INFINITY), |best, (l, e)| if e < best.1 { (l, e) } else { best });
    let valley_floor = if valley_floor.is_finite() { valley_floor } else { e_min };
    let norm_peak = norm.iter().flatten().copied().fold(f64::NEG_INFINITY, f64::max);
    let decompressed = |l: usize| -> bool {
        let votes = [
            at(&ent, l).is_some_and(|e| e >= valley_floor + params.entropy_rise * (e_max - valley_floor)),
            at(&norm, l).is_some_and(|n| norm_peak > 0.0 && n <= params.norm_recede * norm_peak),
            at(&sink, l).is_some_and(|s| s < params.sink_rate_min),
        ];
        votes.iter().filter(|v| **v).count() >= 2
    };
    let mut r = n_layers + 1;
    while r > a + 1 && decompressed(r - 1) {
        r -= 1;
    }
    Ok(Some(Phases {
        n_layers,
        entropy_norm_midpoint: midpoint,
        valley_floor,
        valley_layer,
        mix: (a > 0).then(|| LayerRange::new(0, a - 1, n_layers)),
        compress: LayerRange::new(a, r - 1, n_layers),
        refine: (r <= n_layers).then(|| LayerRange::new(r, n_layers, n_layers)),
    }))
}
