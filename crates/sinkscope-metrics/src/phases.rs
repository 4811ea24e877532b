//! Mix–Compress–Refine phases (metrics.md, "Aggregates over a prompt set").
//!
//! Input: per-layer curves of `L + 1` entries (`l = 0..L`), normally the prompt-mean
//! `sink_rate` (entry 0 `null`) and `entropy_norm` curves.
//!
//! - `compress` is the longest contiguous run of layers `l` with
//!   `sink_rate(l) ≥ 0.5` and `entropy_norm(l) < (min + max) / 2`, where `min` and `max`
//!   are taken over every non-missing entry of the `entropy_norm` curve (`l = 0..L`).
//!   A layer with either value missing is not in the run; the earliest of equally long
//!   runs wins; the comparison with the midpoint is strict (a flat curve has no compress
//!   phase).
//! - `mix` is every layer before it (`0..first`), `refine` every layer after it
//!   (`last+1..=L`); either may be empty (`None`).
//! - Depth fraction of layer `l` is `l / L`; a range reports the fractions of its first
//!   and last layer.
//! - No qualifying layer: [`phases`] returns `Ok(None)` and no phase is reported. We do
//!   **not** call the whole depth "mix": without a compressed stretch the three-phase
//!   picture does not apply, and labelling layers would claim more than was measured.

use serde::{Deserialize, Serialize};

use crate::MetricsError;

/// Minimum `sink_rate` of a compress layer (metrics.md).
pub const COMPRESS_MIN_SINK_RATE: f64 = 0.5;

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
        let l = n_layers as f64;
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

/// The three phases of one model (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Phases {
    /// `L`, the number of blocks.
    pub n_layers: usize,
    /// The midpoint `(min + max) / 2` of the `entropy_norm` curve.
    pub entropy_norm_midpoint: f64,
    /// Layers before the compress run; `None` if it starts at layer 0.
    pub mix: Option<LayerRange>,
    /// The compress run.
    pub compress: LayerRange,
    /// Layers after the compress run; `None` if it ends at layer `L`.
    pub refine: Option<LayerRange>,
}

/// Finds the Mix–Compress–Refine phases from `sink_rate` and `entropy_norm` curves of
/// `L + 1` entries each; `Ok(None)` when no layer qualifies as compressed.
///
/// # Errors
/// [`MetricsError::LengthMismatch`] for curves of different lengths,
/// [`MetricsError::TooShort`] for fewer than 2 entries, [`MetricsError::NonFiniteValue`]
/// for non-finite values.
///
/// ```
/// use sinkscope_metrics::phases::phases;
/// let sink = [None, Some(0.1), Some(0.9), Some(0.95), Some(0.2)];
/// let ent = [Some(0.9), Some(0.8), Some(0.1), Some(0.05), Some(0.6)];
/// let Some(p) = phases(&sink, &ent)? else { return Err("no compression phase".into()) };
/// assert_eq!((p.compress.first, p.compress.last), (2, 3));
/// assert_eq!(p.mix.map(|r| (r.first, r.last)), Some((0, 1)));
/// assert_eq!(p.refine.map(|r| (r.first, r.last)), Some((4, 4)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn phases(
    sink_rate: &[Option<f64>],
    entropy_norm: &[Option<f64>],
) -> Result<Option<Phases>, MetricsError> {
    if sink_rate.len() != entropy_norm.len() {
        return Err(MetricsError::LengthMismatch {
            what: "phases: sink_rate vs entropy_norm",
            left: sink_rate.len(),
            right: entropy_norm.len(),
        });
    }
    if sink_rate.len() < 2 {
        return Err(MetricsError::TooShort { what: "phases curves", min: 2, len: sink_rate.len() });
    }
    for (what, curve) in [("sink_rate", sink_rate), ("entropy_norm", entropy_norm)] {
        if let Some((index, value)) =
            curve.iter().enumerate().find_map(|(i, v)| v.filter(|v| !v.is_finite()).map(|v| (i, v)))
        {
            return Err(MetricsError::NonFiniteValue { what, index, value });
        }
    }
    let n_layers = sink_rate.len() - 1;
    let (min, max) = entropy_norm
        .iter()
        .flatten()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if min > max {
        return Ok(None); // every entropy_norm missing
    }
    let midpoint = 0.5 * (min + max);
    let qualifies = |l: usize| -> bool {
        let s = sink_rate.get(l).copied().flatten();
        let e = entropy_norm.get(l).copied().flatten();
        matches!((s, e), (Some(s), Some(e)) if s >= COMPRESS_MIN_SINK_RATE && e < midpoint)
    };
    // Longest run, earliest on ties.
    let mut best: Option<(usize, usize)> = None;
    let mut start: Option<usize> = None;
    for l in 0..=n_layers + 1 {
        let q = l <= n_layers && qualifies(l);
        match (q, start) {
            (true, None) => start = Some(l),
            (false, Some(s)) => {
                let run = (s, l - 1);
                if best.is_none_or(|(bs, be)| run.1 - run.0 > be - bs) {
                    best = Some(run);
                }
                start = None;
            }
            _ => {}
        }
    }
    Ok(best.map(|(first, last)| Phases {
        n_layers,
        entropy_norm_midpoint: midpoint,
        mix: (first > 0).then(|| LayerRange::new(0, first - 1, n_layers)),
        compress: LayerRange::new(first, last, n_layers),
        refine: (last < n_layers).then(|| LayerRange::new(last + 1, n_layers, n_layers)),
    }))
}
