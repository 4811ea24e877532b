//! Invariant tests of sinkscope-metrics. Each test names the invariant it checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{assert_close, matmul_f32, Rng};
use sinkscope_metrics::aggregate::{
    corr_bos_entropy, corr_bos_sink, first_differences, mean_curve, pearson, per_layer_summaries, summarize,
};
use sinkscope_metrics::attention::{
    mixing_score, sink_rate, AttentionParams, HeadClass, HeadStats, LayerAttention,
};
use sinkscope_metrics::layer::{LayerMetrics, LAYER_METRIC_NAMES};
use sinkscope_metrics::massive_layers::{detect_massive_layers, mlp_out_norms, MassiveLayerParams};
use sinkscope_metrics::norms::norm_stats;
use sinkscope_metrics::phases::{phases, smooth_median3, PhaseCurves, PhaseParams, Phases};
use sinkscope_metrics::spectrum::{gram_eigenvalues, Spectrum};
use sinkscope_metrics::theorem::{entropy_bound, Bound};
use sinkscope_metrics::{Matrix, MetricsError};

fn layer(data: &[f32], t: usize, d: usize) -> LayerMetrics {
    LayerMetrics::compute(&Matrix::new(data, t, d).unwrap(), 5).unwrap()
}

/// Every named value is finite or None (never NaN/inf), and names match the contract list.
#[track_caller]
fn assert_named_clean(m: &LayerMetrics) {
    let named = m.to_named();
    let names: Vec<&str> = named.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, LAYER_METRIC_NAMES.to_vec());
    for (n, v) in named {
        if let Some(v) = v {
            assert!(v.is_finite(), "{n} = {v}");
        }
    }
}

// ---------------------------------------------------------------- Matrix

/// Invariant: the Matrix constructor rejects wrong lengths, empty shapes and non-finite data.
#[test]
fn matrix_constructor_checks() {
    let d = [1.0_f32; 6];
    assert!(Matrix::new(&d, 2, 3).is_ok());
    assert!(matches!(Matrix::new(&d, 2, 2), Err(MetricsError::ShapeMismatch { .. })));
    assert!(matches!(Matrix::new(&[], 0, 3), Err(MetricsError::Empty { .. })));
    assert!(matches!(Matrix::new(&d, usize::MAX, 2), Err(MetricsError::ShapeMismatch { .. })));
    let bad = [1.0_f32, 2.0, f32::NAN, 4.0];
    assert!(matches!(Matrix::new(&bad, 2, 2), Err(MetricsError::NonFinite { row: 1, col: 0, .. })));
    let inf = [f32::INFINITY];
    assert!(matches!(Matrix::new(&inf, 1, 1), Err(MetricsError::NonFinite { .. })));
    // A matrix large enough to be scanned on several threads (a LogitLens layer's logits):
    // the error still names the first bad value in row-major order, wherever the others are.
    let (rows, cols) = (40, 49_152);
    let mut big = vec![0.5_f32; rows * cols];
    assert!(Matrix::new(&big, rows, cols).is_ok());
    for (first, later) in
        [(37 * cols + 5, 39 * cols), (3 * cols + 4_097, 3 * cols + 4_098), (rows * cols - 1, rows * cols - 1)]
    {
        big.fill(0.5);
        big[later] = f32::NEG_INFINITY;
        big[first] = f32::NAN;
        let e = Matrix::new(&big, rows, cols).err();
        assert!(
            matches!(e, Some(MetricsError::NonFinite { row, col, .. }) if row * cols + col == first),
            "{e:?} for the first bad value at {first}"
        );
    }
    let m = Matrix::new(&d, 2, 3).unwrap();
    assert_eq!(m.row(1), Some(&d[3..6]));
    assert_eq!(m.row(2), None);
    assert_eq!(m.get(1, 2), Some(1.0));
    assert_eq!(m.get(0, 3), None);
}

// ---------------------------------------------------------------- norms

/// Invariant: hand-computed norm statistics (M, R, c, alpha, ratio, median) on a 3x2 matrix.
#[test]
fn norms_hand_example() {
    // x0 = (3,4), x1 = (1,0), x2 = (0,2)
    let data = [3.0_f32, 4.0, 1.0, 0.0, 0.0, 2.0];
    let s = norm_stats(&Matrix::new(&data, 3, 2).unwrap(), 3);
    assert_eq!(s.bos_norm, 5.0);
    assert_eq!(s.m, 25.0);
    assert_eq!(s.r, 5.0);
    assert_eq!(s.c, Some(5.0));
    assert_eq!(s.token_norm_mean, Some(1.5));
    assert_close(s.bos_ratio.unwrap(), 5.0 / 1.5, 1e-15, "bos_ratio");
    // (x1·x̂0)² = 0.36, (x2·x̂0)² = 2.56
    assert_close(s.alpha.unwrap(), (0.36 + 2.56) / 5.0, 1e-15, "alpha");
    assert_close(s.aligned_energy.unwrap(), 2.92, 1e-14, "aligned_energy");
    assert_eq!(s.median_abs_activation, 1.5); // [0,0,1,2,3,4]
    assert_eq!(s.max_abs_activation, 4.0);
    assert!(!s.massive);
    let top: Vec<(f64, usize, usize)> = s.top_activations.iter().map(|t| (t.value, t.token, t.dim)).collect();
    assert_eq!(top, vec![(4.0, 0, 1), (3.0, 0, 0), (2.0, 2, 1)]);
}

/// Invariant: `massive` is Sun et al.'s criterion: top |X| > 100 AND > 1000 x median.
#[test]
fn massive_criterion() {
    let mut data = vec![1.0_f32; 100];
    data[37] = -5000.0;
    let s = norm_stats(&Matrix::new(&data, 10, 10).unwrap(), 1);
    assert!(s.massive);
    assert_eq!(
        (s.top_activations[0].value, s.top_activations[0].token, s.top_activations[0].dim),
        (-5000.0, 3, 7)
    );
    data[37] = 900.0; // > 100 but < 1000 x median (=1)
    assert!(!norm_stats(&Matrix::new(&data, 10, 10).unwrap(), 1).massive);
    let mut small = vec![0.1_f32; 100];
    small[0] = 150.0; // > 100 and > 1000 x 0.1
    assert!(norm_stats(&Matrix::new(&small, 10, 10).unwrap(), 0).massive);
    small[0] = 99.0; // below the absolute threshold
    assert!(!norm_stats(&Matrix::new(&small, 10, 10).unwrap(), 0).massive);
}

/// Invariant: degenerate inputs give None (never NaN): T = 1, x_0 = 0, other rows 0, X = 0.
#[test]
fn norms_degenerate() {
    let one = [1.0_f32, 2.0, 2.0];
    let s = norm_stats(&Matrix::new(&one, 1, 3).unwrap(), 5);
    assert_eq!(s.bos_norm, 3.0);
    assert_eq!((s.token_norm_mean, s.bos_ratio, s.c, s.alpha), (None, None, None, None));
    assert_eq!(s.r, 0.0);

    let x0_zero = [0.0_f32, 0.0, 1.0, 1.0];
    let s = norm_stats(&Matrix::new(&x0_zero, 2, 2).unwrap(), 5);
    assert_eq!(s.bos_ratio, Some(0.0));
    assert_eq!((s.alpha, s.aligned_energy), (None, None));
    assert_eq!(s.c, Some(0.0));

    let others_zero = [3.0_f32, 4.0, 0.0, 0.0];
    let s = norm_stats(&Matrix::new(&others_zero, 2, 2).unwrap(), 5);
    assert_eq!((s.bos_ratio, s.c, s.alpha), (None, None, None));
    assert_eq!(s.aligned_energy, Some(0.0));

    for (data, t, d) in [
        (vec![0.0_f32; 12], 3, 4),
        (vec![0.0_f32; 12], 4, 3),
        (vec![2.0_f32], 1, 1),
        (vec![1.0_f32, -2.0, 3.0], 1, 3),
        (vec![1.0_f32, -2.0, 3.0], 3, 1),
        (vec![3.0_f32, 4.0, 0.0, 0.0], 2, 2),
        (vec![0.0_f32, 0.0, 1.0, 1.0], 2, 2),
    ] {
        let m = layer(&data, t, d);
        assert_named_clean(&m);
        assert_eq!(m.theorem.violations(), 0);
    }
    let zero = layer(&[0.0; 12], 3, 4);
    assert_eq!(zero.spectral.entropy, None);
    assert_eq!(zero.spectral.anisotropy, None);
    assert_eq!(zero.spectral.sigma1_sq, 0.0);
    assert_eq!(zero.theorem.sigma1_sq_bound, None);
    let t1 = layer(&[1.0, -2.0, 3.0], 1, 3);
    assert_eq!(t1.spectral.entropy, Some(0.0));
    assert_eq!(t1.spectral.entropy_norm, None); // ln min(T,d) = 0
    assert_eq!(t1.spectral.entropy_norm_log_t, None);
    assert_eq!(t1.spectral.dominance, None);
    assert_close(t1.spectral.sigma1_sq, 14.0, 1e-12, "sigma1_sq T=1");
}

// ---------------------------------------------------------------- spectrum

/// Invariant: a rank-1 X has entropy 0, anisotropy 1, effective rank 1, dominance None.
#[test]
fn rank_one_is_fully_compressed() {
    let mut rng = Rng::new(1);
    for (t, d) in [(5, 8), (8, 5), (6, 6), (2, 30), (40, 3)] {
        let u: Vec<f64> = (0..t).map(|_| rng.normal()).collect();
        let v: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
        let data = matmul_f32(&u, &v, t, 1, d);
        let m = layer(&data, t, d);
        // f32 storage of u v^T makes it rank 1 only up to ~1e-7 relative.
        assert_close(m.spectral.anisotropy.unwrap(), 1.0, 1e-6, "anisotropy");
        assert!(m.spectral.entropy.unwrap() < 1e-5, "entropy {:?}", m.spectral.entropy);
        assert_close(m.spectral.effective_rank.unwrap(), 1.0, 1e-5, "effective rank");
        assert_eq!(m.theorem.violations(), 0);
        assert_named_clean(&m);
    }
    // Exactly representable rank 1: entropy exactly 0, dominance undefined.
    let data = [1.0_f32, 2.0, 0.0, 2.0, 4.0, 0.0, -3.0, -6.0, 0.0];
    let m = layer(&data, 3, 3);
    assert!(m.spectral.entropy.unwrap() < 1e-12);
    assert_close(m.spectral.anisotropy.unwrap(), 1.0, 1e-12, "anisotropy exact");
    assert_eq!(m.norms.alpha, Some(1.0));
    assert_eq!(m.theorem.dominance_bound, None);
}

/// Invariant: T orthogonal rows of equal norm give entropy ln T, entropy_norm 1, anisotropy 1/T.
#[test]
fn orthogonal_equal_rows_have_max_entropy() {
    let mut rng = Rng::new(2);
    for (t, d) in [(4, 4), (5, 9), (16, 64), (32, 33)] {
        let q = rng.orthogonal(d);
        let scale = 3.0;
        let data: Vec<f32> = q[..t * d].iter().map(|&v| (v * scale) as f32).collect();
        let m = layer(&data, t, d);
        let ln_t = (t as f64).ln();
        assert_close(m.spectral.entropy.unwrap(), ln_t, 1e-6, "entropy");
        assert_close(m.spectral.entropy_norm.unwrap(), 1.0, 1e-6, "entropy_norm");
        assert_close(m.spectral.entropy_norm_log_t.unwrap(), 1.0, 1e-6, "entropy_norm_logT");
        assert_close(m.spectral.renyi_entropy_2.unwrap(), ln_t, 1e-6, "renyi2");
        assert_close(m.spectral.effective_rank.unwrap(), t as f64, 1e-5, "effective rank");
        assert_close(m.spectral.anisotropy.unwrap(), 1.0 / t as f64, 1e-6, "anisotropy");
        assert_close(m.spectral.dominance.unwrap(), 1.0 / (t as f64 - 1.0), 1e-6, "dominance");
        assert_eq!(m.theorem.violations(), 0);
    }
}

/// Invariant: Gram-matrix eigenvalues equal the squared singular values from faer's SVD
/// (T < d, T > d and T = d), to 1e-11 of λ_1.
#[test]
fn gram_spectrum_equals_svd_spectrum() {
    let mut rng = Rng::new(3);
    for (t, d) in [(7, 13), (13, 7), (10, 10), (1, 5), (5, 1), (64, 200), (200, 64), (120, 121)] {
        for variant in 0..3 {
            let mut data = rng.gaussian(t, d);
            if variant == 1 {
                for v in &mut data[..d] {
                    *v *= 1e3; // massive first row
                }
            }
            if variant == 2 {
                // low rank 2
                let a: Vec<f64> = (0..t * 2).map(|_| rng.normal()).collect();
                let b: Vec<f64> = (0..2 * d).map(|_| rng.normal()).collect();
                data = matmul_f32(&a, &b, t, 2, d);
            }
            let x = Matrix::new(&data, t, d).unwrap();
            let spec = gram_eigenvalues(&x).unwrap();
            assert_eq!(spec.eigenvalues().len(), t.min(d));
            let xf = faer::Mat::<f64>::from_fn(t, d, |i, j| f64::from(data[i * d + j]));
            let sv = xf.singular_values().unwrap();
            let l1 = spec.sigma1_sq();
            for (j, (&lam, &s)) in spec.eigenvalues().iter().zip(&sv).enumerate() {
                assert!(lam >= 0.0);
                assert_close(lam, s * s, 1e-11 * l1, &format!("λ_{j} for {t}x{d} variant {variant}"));
            }
            // Descending order.
            assert!(spec.eigenvalues().windows(2).all(|w| w[0] >= w[1]));
            // Trace = Frobenius norm².
            let fro: f64 = data.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
            assert_close(spec.total(), fro, 1e-11 * fro, "trace");
        }
    }
}

/// Invariant: entropies from a known spectrum match their closed forms; Rényi(α→1) = Shannon,
/// Rényi is non-increasing in α.
#[test]
fn spectrum_from_known_eigenvalues() {
    let s = Spectrum::from_eigenvalues(vec![1.0, 3.0, -1e-18, 0.0], 4, 6).unwrap();
    assert_eq!(s.eigenvalues(), &[3.0, 1.0, 0.0, 0.0]);
    let st = s.stats();
    let h = -(0.75_f64 * 0.75_f64.ln() + 0.25 * 0.25_f64.ln());
    assert_close(st.entropy.unwrap(), h, 1e-15, "H");
    assert_close(st.entropy_norm.unwrap(), h / 4.0_f64.ln(), 1e-15, "H/ln r");
    assert_close(st.renyi_entropy_2.unwrap(), -(0.5625_f64 + 0.0625).ln(), 1e-15, "renyi2");
    assert_close(st.anisotropy.unwrap(), 0.75, 1e-15, "p1");
    assert_close(st.dominance.unwrap(), 3.0, 1e-15, "dominance");
    assert_close(s.renyi_entropy(1.0).unwrap(), h, 1e-15, "renyi1");
    assert!(s.renyi_entropy(0.5).unwrap() >= h && h >= s.renyi_entropy(3.0).unwrap());
    assert_eq!(s.renyi_entropy(0.0), None);
    assert!(Spectrum::from_eigenvalues(vec![1.0], 4, 6).is_err());
    assert!(Spectrum::from_eigenvalues(vec![f64::NAN], 1, 1).is_err());
    // entropy_norm_logT uses ln T even when d < T.
    let s = Spectrum::from_eigenvalues(vec![1.0, 1.0], 8, 2).unwrap().stats();
    assert_close(s.entropy_norm.unwrap(), 1.0, 1e-15, "ln 2 / ln 2");
    assert_close(s.entropy_norm_log_t.unwrap(), 2.0_f64.ln() / 8.0_f64.ln(), 1e-15, "ln 2 / ln 8");
}

// ---------------------------------------------------------------- theorem

/// Invariant: Theorem 1's bounds are attained (tightness 1) when the rows are orthogonal and
/// the tail rows have equal norms, even after a random rotation of the columns.
#[test]
fn theorem_equality_case() {
    let mut rng = Rng::new(4);
    for (t, d, big) in [(6, 10, 50.0), (10, 10, 1e4), (20, 64, 3.0)] {
        let q = rng.orthogonal(d);
        // Rows: big·q0, q1, ..., q_{t-1}
        let mut coef = vec![0.0; t * d];
        coef[0] = big;
        for i in 1..t {
            coef[i * d + i] = 1.0;
        }
        let data = matmul_f32(&coef, &q, t, d, d);
        let m = layer(&data, t, d);
        let th = &m.theorem;
        assert_eq!(th.violations(), 0, "{th:?}");
        assert_close(th.sigma1_sq_tightness.unwrap(), 1.0, 1e-5, "sigma tightness");
        assert_close(th.anisotropy_tightness.unwrap(), 1.0, 1e-5, "anisotropy tightness");
        assert_close(th.entropy_tightness.unwrap(), 1.0, 1e-4, "entropy tightness");
        assert_close(th.dominance_tightness.unwrap(), 1.0, 1e-4, "dominance tightness");
    }
}

/// Invariant: the entropy bound is the maximum entropy given p_1 = p on r outcomes.
#[test]
fn entropy_bound_closed_form() {
    assert_eq!(entropy_bound(1.0, 10), 0.0);
    assert_close(entropy_bound(0.25, 4), 4.0_f64.ln(), 1e-15, "uniform");
    assert_close(entropy_bound(0.5, 2), 2.0_f64.ln(), 1e-15, "r=2");
    assert_eq!(entropy_bound(1.0, 1), 0.0);
    assert!(entropy_bound(1.0 + 1e-16, 3).is_finite());
}

fn random_case(rng: &mut Rng, kind: usize) -> (Vec<f32>, usize, usize) {
    let t = rng.range(1, 24);
    let d = rng.range(1, 24);
    let mut data = rng.gaussian(t, d);
    match kind {
        // plain Gaussian
        0 => {}
        // first row 1e4 times the others
        1 => data[..d].iter_mut().for_each(|v| *v *= 1e4),
        // all rows aligned with x0 (rank 1, alpha = 1), random signs and scales
        2 => {
            let x0: Vec<f32> = data[..d].to_vec();
            for i in 1..t {
                let a = (rng.normal() * 10.0) as f32;
                for j in 0..d {
                    data[i * d + j] = a * x0[j];
                }
            }
        }
        // negative alignment plus small noise
        3 => {
            let x0: Vec<f32> = data[..d].iter().map(|v| v * 100.0).collect();
            data[..d].copy_from_slice(&x0);
            for i in 1..t {
                for j in 0..d {
                    data[i * d + j] = -0.5 * x0[j] + 0.01 * rng.normal() as f32;
                }
            }
        }
        // nearly aligned (alpha -> 1) with a massive first row
        4 => {
            let x0: Vec<f32> = data[..d].iter().map(|v| v * 1e3).collect();
            data[..d].copy_from_slice(&x0);
            for i in 1..t {
                for j in 0..d {
                    data[i * d + j] = 1e-3 * x0[j] + 1e-4 * rng.normal() as f32;
                }
            }
        }
        // log-uniform row scales over 7 decades
        5 => {
            for i in 0..t {
                let s = 10f64.powf(rng.uniform() * 7.0 - 3.0) as f32;
                data[i * d..(i + 1) * d].iter_mut().for_each(|v| *v *= s);
            }
        }
        // x0 = 0 or other rows zero
        6 => {
            if rng.uniform() < 0.5 {
                data[..d].iter_mut().for_each(|v| *v = 0.0);
            } else {
                data[d..].iter_mut().for_each(|v| *v = 0.0);
            }
        }
        // low rank 2 with a dominant first row
        _ => {
            let a: Vec<f64> = (0..t * 2).map(|_| rng.normal()).collect();
            let b: Vec<f64> = (0..2 * d).map(|_| rng.normal()).collect();
            data = matmul_f32(&a, &b, t, 2, d);
            data[..d].iter_mut().for_each(|v| *v *= 300.0);
        }
    }
    (data, t, d)
}

/// Invariant (property, 4000 random matrices over 8 families incl. adversarial ones):
/// no Theorem-1 bound is ever violated beyond round-off; every named value is finite or None;
/// the three lower-bound tightnesses are >= 1 - 1e-9 and entropy tightness <= 1 + 1e-9;
/// p_j sum to 1; entropy_norm is in [0, 1].
#[test]
fn theorem_never_violated_property() {
    for seed in 0..4000_u64 {
        let mut rng = Rng::new(1000 + seed);
        let kind = (seed % 8) as usize;
        let (data, t, d) = random_case(&mut rng, kind);
        let m = layer(&data, t, d);
        assert_eq!(m.theorem.violations(), 0, "seed {seed} kind {kind} {t}x{d}: {:?}", m.theorem);
        assert_named_clean(&m);
        let th = &m.theorem;
        for (name, v) in [
            ("sigma1_sq_tightness", th.sigma1_sq_tightness),
            ("anisotropy_tightness", th.anisotropy_tightness),
        ] {
            if let Some(v) = v {
                assert!(v >= 1.0 - 1e-9, "seed {seed} kind {kind}: {name} = {v}");
            }
        }
        if let (Some(h), Some(b)) = (m.spectral.entropy, th.entropy_bound) {
            assert!(
                h <= b + 1e-9 * (m.spectrum.rank_bound() as f64).ln().max(1.0),
                "seed {seed}: H {h} > {b}"
            );
        }
        if let Some(e) = m.spectral.entropy_norm {
            assert!((-1e-12..=1.0 + 1e-9).contains(&e), "seed {seed}: entropy_norm {e}");
        }
        if let Some(p) = m.spectrum.probabilities() {
            assert_close(p.iter().sum::<f64>(), 1.0, 1e-12, "sum p");
        }
        if let Some(a) = m.norms.alpha {
            assert!((0.0..=1.0).contains(&a));
        }
    }
}

/// Invariant: a deliberately wrong spectrum is reported as a violation (the check is live).
#[test]
fn violations_are_detected() {
    let data = [10.0_f32, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0];
    let m = layer(&data, 3, 3);
    assert_eq!(m.theorem.violations(), 0);
    // Pretend the spectrum were flat: every bound must fire.
    let fake = Spectrum::from_eigenvalues(vec![34.0, 34.0, 34.0], 3, 3).unwrap().stats();
    let check = sinkscope_metrics::TheoremCheck::new(&m.norms, &fake);
    assert_eq!(check.violated, vec![Bound::Sigma1Sq, Bound::Anisotropy, Bound::Dominance, Bound::Entropy]);
    assert_eq!(check.violations(), 4);
    assert_eq!(Bound::Entropy.name(), "entropy_bound");
}

/// Invariant: LayerMetrics::to_named yields exactly the metrics.md names with the struct's values,
/// and serde uses the same keys (M, R, entropy_norm_logT).
#[test]
fn named_output_and_serde_keys() {
    let mut rng = Rng::new(5);
    let data = rng.gaussian(6, 9);
    let m = layer(&data, 6, 9);
    assert_named_clean(&m);
    let named = m.to_named();
    let get = |k: &str| named.iter().find(|(n, _)| *n == k).unwrap().1;
    assert_eq!(get("M"), Some(m.norms.m));
    assert_eq!(get("entropy_norm_logT"), m.spectral.entropy_norm_log_t);
    assert_eq!(get("dominance_tightness"), m.theorem.dominance_tightness);
    assert_eq!(m.sigma_sq_top(3).len(), 3);
    assert_eq!(m.sigma_sq_top(100).len(), 6);
    let json = serde_json::to_value(&m).unwrap();
    assert!(json["norms"]["M"].is_number());
    assert!(json["norms"]["R"].is_number());
    assert!(json["spectral"]["entropy_norm_logT"].is_number());
    assert!(json["spectral"]["renyi_entropy_2"].is_number());
    let back: LayerMetrics = serde_json::from_value(json).unwrap();
    assert_eq!(back.to_named(), m.to_named());
}

// ---------------------------------------------------------------- attention

fn head(a: &[f32], t: usize) -> HeadStats {
    HeadStats::from_pattern(&Matrix::new(a, t, t).unwrap(), &AttentionParams::default()).unwrap()
}

/// Invariant: hand-computed statistics of a 3x3 causal pattern.
#[test]
fn attention_3x3_by_hand() {
    #[rustfmt::skip]
    let a = [
        1.0_f32, 0.0, 0.0,
        0.5, 0.5, 0.0,
        0.2, 0.3, 0.5,
    ];
    let h = head(&a, 3);
    let f = |v: f32| f64::from(v);
    assert_close(h.bos_attention, (1.0 + 0.5 + f(0.2)) / 3.0, 1e-12, "bos");
    assert_close(h.bos_attention_excl.unwrap(), (0.5 + f(0.2)) / 2.0, 1e-12, "bos excl");
    let row2 = -(f(0.2) * f(0.2).ln() + f(0.3) * f(0.3).ln() + 0.5 * 0.5_f64.ln());
    assert_close(h.attn_entropy.unwrap(), (1.0 + row2 / 3.0_f64.ln()) / 2.0, 1e-7, "entropy");
    assert_close(h.identity_score, (1.0 + 0.5 + 0.5) / 3.0, 1e-12, "identity");
    assert_close(h.prev_token_score.unwrap(), (0.5 + f(0.3)) / 2.0, 1e-7, "prev");
    assert!(h.sink_head);
    assert_eq!(h.head_class, HeadClass::Sink);
    assert!(h.learned_sink_mass < 1e-7);
}

/// Invariant: identity, previous-token, uniform-mixing and "other" heads are classed as such,
/// with hand-computed scores; sink takes precedence.
#[test]
fn attention_head_classes() {
    // Identity 4x4: bos = 1/4 <= 0.3, identity 1.
    let mut eye = vec![0.0_f32; 16];
    (0..4).for_each(|i| eye[i * 4 + i] = 1.0);
    let h = head(&eye, 4);
    assert_eq!(h.bos_attention, 0.25);
    assert!(!h.sink_head);
    assert_eq!(h.identity_score, 1.0);
    assert_eq!(h.attn_entropy, Some(0.0));
    assert_eq!(h.prev_token_score, Some(0.0));
    assert_eq!(h.head_class, HeadClass::Identity);

    // Previous-token 8x8: bos = 2/8, identity = 1/8, prev = 1.
    let t = 8;
    let mut prev = vec![0.0_f32; t * t];
    prev[0] = 1.0;
    (1..t).for_each(|i| prev[i * t + i - 1] = 1.0);
    let h = head(&prev, t);
    assert_eq!(h.bos_attention, 0.25);
    assert_eq!(h.identity_score, 0.125);
    assert_eq!(h.prev_token_score, Some(1.0));
    assert_eq!(h.head_class, HeadClass::PreviousToken);

    // The same head on 4 tokens: bos = 2/4 > 0.3, so it is a sink (checked first).
    let mut prev4 = vec![0.0_f32; 16];
    prev4[0] = 1.0;
    (1..4).for_each(|i| prev4[i * 4 + i - 1] = 1.0);
    assert_eq!(head(&prev4, 4).head_class, HeadClass::Sink);

    // Uniform causal 16x16: each row entropy is exactly its maximum -> attn_entropy 1.
    let t = 16;
    let mut uni = vec![0.0_f32; t * t];
    for i in 0..t {
        for j in 0..=i {
            uni[i * t + j] = 1.0 / (i + 1) as f32;
        }
    }
    let h = head(&uni, t);
    let harmonic: f64 = (1..=t).map(|k| 1.0 / k as f64).sum();
    assert_close(h.bos_attention, harmonic / t as f64, 1e-7, "bos uniform");
    assert_close(h.attn_entropy.unwrap(), 1.0, 1e-6, "uniform entropy");
    assert_close(h.prev_token_score.unwrap(), (harmonic - 1.0) / (t - 1) as f64, 1e-7, "prev uniform");
    assert_eq!(h.head_class, HeadClass::Mixing);

    // "Other": attends to position 1 for every query >= 1 on 8 tokens.
    let mut other = vec![0.0_f32; 64];
    other[0] = 1.0;
    (1..8).for_each(|i| other[i * 8 + 1] = 1.0);
    let h = head(&other, 8);
    assert_eq!(h.bos_attention, 0.125);
    assert_close(h.identity_score, 2.0 / 8.0, 1e-15, "identity other");
    assert_close(h.prev_token_score.unwrap(), 1.0 / 7.0, 1e-15, "prev other");
    assert_eq!(h.head_class, HeadClass::Other);
    assert_eq!(HeadClass::PreviousToken.as_str(), "previous-token");
    assert_eq!(serde_json::to_string(&HeadClass::PreviousToken).unwrap(), "\"previous-token\"");
}

/// Invariant: the sink threshold is strict (bos_attention = ε exactly is not a sink).
#[test]
fn sink_threshold_is_strict() {
    let params = AttentionParams { sink_epsilon: 0.25, ..AttentionParams::default() };
    let mut eye = vec![0.0_f32; 16];
    (0..4).for_each(|i| eye[i * 4 + i] = 1.0);
    let h = HeadStats::from_pattern(&Matrix::new(&eye, 4, 4).unwrap(), &params).unwrap();
    assert_eq!(h.bos_attention, 0.25);
    assert!(!h.sink_head);
    assert_eq!(sink_rate(&[0.25, 0.3, 0.31, 0.9], 0.3), Some(0.5));
    assert_eq!(sink_rate(&[], 0.3), None);
    assert_eq!(mixing_score(&[Some(0.2), None, Some(0.4)]), Some(0.30000000000000004));
}

/// Invariant: rows summing to 0.8 (learned sink) give learned_sink_mass 0.2, not folded into
/// position 0.
#[test]
fn learned_sink_mass() {
    #[rustfmt::skip]
    let a = [
        0.8_f32, 0.0, 0.0,
        0.4, 0.4, 0.0,
        0.2, 0.2, 0.4,
    ];
    let h = head(&a, 3);
    assert_close(h.learned_sink_mass, 0.2, 1e-7, "learned sink mass");
    assert_close(h.bos_attention, (0.8 + 0.4 + 0.2) / 3.0, 1e-7, "bos unchanged");
}

/// Invariant: a layer's statistics are the head means; sink_rate counts sink heads; input
/// shape errors are reported.
#[test]
fn layer_attention_from_patterns() {
    let mut eye = vec![0.0_f32; 16];
    (0..4).for_each(|i| eye[i * 4 + i] = 1.0);
    let mut sink = vec![0.0_f32; 16];
    (0..4).for_each(|i| sink[i * 4] = 1.0);
    let data: Vec<f32> = [eye.clone(), sink.clone(), eye.clone()].concat();
    let la = LayerAttention::from_patterns(&data, 3, 4, &AttentionParams::default()).unwrap();
    assert_eq!(la.heads.len(), 3);
    assert_close(la.sink_rate.unwrap(), 1.0 / 3.0, 1e-15, "sink rate");
    assert_close(la.bos_attention.unwrap(), (0.25 + 1.0 + 0.25) / 3.0, 1e-15, "bos mean");
    assert_eq!(la.mixing_score, Some(0.0));
    assert_close(la.identity_score.unwrap(), (1.0 + 0.25 + 1.0) / 3.0, 1e-15, "identity mean");
    let counts = la.class_counts();
    assert_eq!(counts[0], (HeadClass::Sink, 1));
    assert_eq!(counts[1], (HeadClass::Identity, 2));
    let names: Vec<&str> = la.to_named().iter().map(|(n, _)| *n).collect();
    assert_eq!(names, sinkscope_metrics::attention::LAYER_ATTENTION_METRIC_NAMES.to_vec());
    assert!(matches!(
        LayerAttention::from_patterns(&data, 2, 4, &AttentionParams::default()),
        Err(MetricsError::HeadShape { .. })
    ));
    let rect = [1.0_f32, 0.0, 0.0, 1.0, 0.0, 0.0];
    assert!(matches!(
        HeadStats::from_pattern(&Matrix::new(&rect, 2, 3).unwrap(), &AttentionParams::default()),
        Err(MetricsError::NotSquare { .. })
    ));
    // T = 1: the t >= 1 means are undefined.
    let h = head(&[1.0], 1);
    assert_eq!((h.bos_attention_excl, h.attn_entropy, h.prev_token_score), (None, None, None));
    assert_eq!(h.bos_attention, 1.0);
}

/// Invariant: AttentionParams serialise with their defaults and round-trip (manifest use).
#[test]
fn attention_params_serde() {
    let p = AttentionParams::default();
    let v = serde_json::to_value(p).unwrap();
    assert_eq!(v, serde_json::json!({"sink_epsilon": 0.3, "class_tau": 0.5, "mixing_threshold": 0.7}));
    let back: AttentionParams = serde_json::from_value(v).unwrap();
    assert_eq!(back, p);
    let m = serde_json::to_value(MassiveLayerParams::default()).unwrap();
    assert_eq!(m, serde_json::json!({"mlp_factor": 10.0, "ratio_factor": 3.0}));
}

// ---------------------------------------------------------------- aggregate

/// Invariant: Pearson r on known data (0.8, ±1), None for constant or n < 2, errors on mismatch/NaN.
#[test]
fn pearson_known_values() {
    let x = [1.0, 2.0, 3.0, 4.0, 5.0];
    assert_close(pearson(&x, &[2.0, 1.0, 4.0, 3.0, 5.0]).unwrap().unwrap(), 0.8, 1e-15, "r");
    assert_close(pearson(&x, &[2.0, 4.0, 6.0, 8.0, 10.0]).unwrap().unwrap(), 1.0, 1e-15, "r=1");
    assert_close(pearson(&x, &[5.0, 4.0, 3.0, 2.0, 1.0]).unwrap().unwrap(), -1.0, 1e-15, "r=-1");
    assert_eq!(pearson(&x, &[1.0; 5]).unwrap(), None);
    assert_eq!(pearson(&[1.0], &[2.0]).unwrap(), None);
    assert!(matches!(pearson(&x, &[1.0]), Err(MetricsError::LengthMismatch { .. })));
    assert!(matches!(pearson(&[1.0, f64::NAN], &[1.0, 2.0]), Err(MetricsError::NonFiniteValue { .. })));
}

/// Invariant: per-layer summaries are mean / sample std (n−1) / min / max, skipping nulls.
#[test]
fn summaries_skip_nulls() {
    let curves =
        vec![vec![Some(1.0), Some(2.0), None], vec![Some(3.0), None, None], vec![Some(5.0), Some(4.0), None]];
    let s = per_layer_summaries(&curves).unwrap();
    let s0 = s[0].unwrap();
    assert_eq!((s0.n, s0.mean, s0.min, s0.max), (3, 3.0, 1.0, 5.0));
    assert_close(s0.std, 2.0, 1e-15, "sample std");
    let s1 = s[1].unwrap();
    assert_eq!((s1.n, s1.mean), (2, 3.0));
    assert!(s[2].is_none());
    assert_eq!(summarize([Some(7.0)]).unwrap().unwrap().std, 0.0);
    assert_eq!(mean_curve(&curves).unwrap(), vec![Some(3.0), Some(3.0), None]);
    assert!(per_layer_summaries(&[vec![Some(1.0)], vec![]]).is_err());
    assert!(summarize([Some(f64::INFINITY)]).is_err());
}

/// Invariant: corr_bos_entropy is r of first differences (Δ log bos_norm vs Δ entropy); an exact
/// linear relation gives −1; null endpoints drop pairs (sink_rate(0) is null).
#[test]
fn corr_first_differences() {
    assert_eq!(first_differences(&[Some(1.0), Some(3.0), None, Some(4.0)]), vec![Some(2.0), None, None]);
    let mut rng = Rng::new(6);
    let l = 12;
    let u: Vec<f64> = (0..l).map(|_| rng.normal()).collect();
    let mut bos = vec![Some(1.0)];
    let mut ent = vec![Some(3.0)];
    let mut sink = vec![None];
    for i in 0..l {
        bos.push(Some(bos[i].unwrap() * u[i].exp()));
        ent.push(Some(ent[i].unwrap() - 0.5 * u[i]));
        // sink(1) = 0.5; sink(l) = sink(l-1) + 0.1 + 0.2 u(l-1) for l >= 2
        let next = if i == 0 { 0.5 } else { sink[i].unwrap() + 0.1 + 0.2 * u[i] };
        sink.push(Some(next));
    }
    assert_close(corr_bos_entropy(&bos, &ent).unwrap().unwrap(), -1.0, 1e-12, "corr_bos_entropy");
    // Δ sink(l) = 0.1 + 0.2 u(l-1) for l >= 2 -> r = +1 over l = 2..L
    assert_close(corr_bos_sink(&bos, &sink).unwrap().unwrap(), 1.0, 1e-12, "corr_bos_sink");
    assert!(corr_bos_entropy(&bos, &ent[1..]).is_err());
    assert!(corr_bos_entropy(&[Some(1.0)], &[Some(1.0)]).is_err());
    // Non-positive bos_norm entries are dropped, not NaN.
    let mut bad = bos.clone();
    bad[5] = Some(0.0);
    assert!(corr_bos_entropy(&bad, &ent).unwrap().unwrap().is_finite());
}

// ---------------------------------------------------------------- phases

fn phase_curves_owned(
    bos_norm: &[f64],
    bos_ratio: &[f64],
    entropy_norm: &[f64],
    sink_rate: &[f64],
    mixing: &[f64],
) -> [Vec<Option<f64>>; 5] {
    let some = |v: &[f64]| v.iter().map(|&x| Some(x)).collect::<Vec<_>>();
    let attn = |v: &[f64]| std::iter::once(None).chain(v.iter().map(|&x| Some(x))).collect::<Vec<_>>();
    [some(bos_norm), some(bos_ratio), some(entropy_norm), attn(sink_rate), attn(mixing)]
}

fn run_phases(c: &[Vec<Option<f64>>; 5]) -> Option<Phases> {
    let curves = PhaseCurves {
        bos_norm: &c[0],
        bos_ratio: &c[1],
        entropy_norm: &c[2],
        sink_rate: &c[3],
        mixing_score: &c[4],
    };
    phases(&curves, &PhaseParams::default()).unwrap()
}

type Span = (usize, usize);

fn bounds(p: &Phases) -> (Option<Span>, Span, Option<Span>) {
    (
        p.mix.map(|r| (r.first, r.last)),
        (p.compress.first, p.compress.last),
        p.refine.map(|r| (r.first, r.last)),
    )
}

/// Known answer: synthetic curves (L = 20) built with Mix = 0–4, Compress = 5–16, Refine =
/// 17–20 (first-token norm halving per layer, sinks 0.4, entropy rising 0.10 → 0.34) give
/// exactly those boundaries — also when one compress layer (10) dips on every
/// signal at once (sinks 0.1, entropy 0.6, ratio 1.2, mixing 0.9), and when the refine
/// layers' entropy stays below the global midpoint (the case the previous rule missed).
#[test]
fn phases_synthetic_known_boundaries() {
    let l_max = 20;
    let mut norm = vec![0.0; l_max + 1];
    let mut ratio = vec![0.0; l_max + 1];
    let mut ent = vec![0.0; l_max + 1];
    let mut sink = vec![0.0; l_max];
    let mut mix = vec![0.0; l_max];
    for l in 0..=l_max {
        let (n, r, e, s, m) = match l {
            0..=4 => (2.0, 1.0, 0.8 - 0.02 * l as f64, 0.05, 0.85),
            5..=16 => (500.0, 80.0, 0.02, 0.95, 0.3),
            _ => (500.0 / (1 << (l - 15)) as f64, 10.0, 0.02 + 0.08 * (l - 16) as f64, 0.4, 0.4),
        };
        norm[l] = n;
        ratio[l] = r;
        ent[l] = e;
        if l >= 1 {
            sink[l - 1] = s;
            mix[l - 1] = m;
        }
    }
    // Refine entropy 0.10..0.34 stays below the midpoint (0.02 + 0.8) / 2 = 0.41.
    let c = phase_curves_owned(&norm, &ratio, &ent, &sink, &mix);
    let p = run_phases(&c).unwrap();
    assert_eq!(bounds(&p), (Some((0, 4)), (5, 16), Some((17, 20))));
    assert_close(p.compress.first_depth, 0.25, 1e-15, "compress depth");
    assert_close(p.refine.unwrap().first_depth, 0.85, 1e-15, "refine depth");
    assert_eq!(p.compress_start(), 5);
    assert_eq!(p.refine_start(), Some(17));
    assert!(p.entropy_norm_midpoint > 0.4, "refine stays below the midpoint");
    // One layer dipping on every signal does not split or end the compress phase.
    let (mut norm2, mut ratio2, mut ent2, mut sink2, mut mix2) =
        (norm.clone(), ratio.clone(), ent.clone(), sink.clone(), mix.clone());
    norm2[10] = 3.0;
    ratio2[10] = 1.2;
    ent2[10] = 0.6;
    sink2[9] = 0.1;
    mix2[9] = 0.9;
    let p = run_phases(&phase_curves_owned(&norm2, &ratio2, &ent2, &sink2, &mix2)).unwrap();
    assert_eq!(bounds(&p), (Some((0, 4)), (5, 16), Some((17, 20))));
    // A single spiking layer in Mix (layer 2) does not start Compress early.
    let (mut ratio3, mut ent3, mut sink3) = (ratio.clone(), ent.clone(), sink.clone());
    ratio3[2] = 90.0;
    ent3[2] = 0.01;
    sink3[1] = 0.99;
    let p = run_phases(&phase_curves_owned(&norm, &ratio3, &ent3, &sink3, &mix)).unwrap();
    assert_eq!(bounds(&p), (Some((0, 4)), (5, 16), Some((17, 20))));
    // Mixing score missing (all null): compress then needs sinks and the valley together.
    let none = vec![None; l_max + 1];
    let curves = PhaseCurves {
        bos_norm: &c[0],
        bos_ratio: &c[1],
        entropy_norm: &c[2],
        sink_rate: &c[3],
        mixing_score: &none,
    };
    let p = phases(&curves, &PhaseParams::default()).unwrap().unwrap();
    assert_eq!(bounds(&p), (Some((0, 4)), (5, 16), Some((17, 20))));
}

/// Invariant: no massive activation, or a massive activation with neither sinks nor a valley
/// nor stopped mixing, gives None; compression to the last layer has no refine; a
/// decompress-and-recompress stretch inside the model stays in Compress; length and
/// finiteness errors are reported.
#[test]
fn phases_edge_cases() {
    let flat = [1.0; 6];
    // No massive activation: None.
    let c = phase_curves_owned(&flat, &flat, &[0.9, 0.1, 0.1, 0.1, 0.1, 0.1], &[0.9; 5], &[0.1; 5]);
    assert!(run_phases(&c).is_none());
    // Massive, but sinks, valley and mixing all fail: None.
    let c = phase_curves_owned(&flat, &[50.0; 6], &[0.5; 6], &[0.1; 5], &[0.9; 5]);
    assert!(run_phases(&c).is_none());
    // Compressed to the end: no refine; starts at layer 1 (entry 0 of attention is null, and
    // layer 1's smoothed ratio is the median of 1, 50, 50).
    let c = phase_curves_owned(
        &[1.0, 50.0, 50.0, 50.0, 50.0, 50.0],
        &[1.0, 50.0, 50.0, 50.0, 50.0, 50.0],
        &[0.9, 0.02, 0.02, 0.02, 0.02, 0.02],
        &[0.9; 5],
        &[0.2; 5],
    );
    let p = run_phases(&c).unwrap();
    assert_eq!(bounds(&p), (Some((0, 0)), (1, 5), None));
    // Layers 4–6 decompress (norm and ratio drop, entropy up, sinks gone), then 7–9
    // compress again and 10 decompresses: Compress = 2..9, Refine = 10.
    let norm = [1.0, 1.0, 90.0, 90.0, 5.0, 5.0, 5.0, 900.0, 900.0, 900.0, 100.0];
    let ratio = [1.0, 1.0, 10.0, 10.0, 1.0, 1.0, 1.0, 100.0, 100.0, 100.0, 10.0];
    let ent = [0.8, 0.8, 0.2, 0.2, 0.6, 0.6, 0.6, 0.01, 0.01, 0.01, 0.5];
    let sink = [0.0, 0.9, 0.9, 0.0, 0.0, 0.0, 0.9, 0.9, 0.9, 0.2];
    let mix = [0.9, 0.5, 0.5, 0.9, 0.9, 0.9, 0.3, 0.3, 0.3, 0.6];
    let p = run_phases(&phase_curves_owned(&norm, &ratio, &ent, &sink, &mix)).unwrap();
    assert_eq!(bounds(&p), (Some((0, 1)), (2, 9), Some((10, 10))));
    assert_eq!(p.valley_layer, 7);
    // Errors.
    let one = vec![Some(1.0)];
    let c1 = PhaseCurves {
        bos_norm: &one,
        bos_ratio: &one,
        entropy_norm: &one,
        sink_rate: &one,
        mixing_score: &one,
    };
    assert!(phases(&c1, &PhaseParams::default()).is_err());
    let two = vec![Some(1.0), Some(2.0)];
    let c2 = PhaseCurves {
        bos_norm: &one,
        bos_ratio: &two,
        entropy_norm: &two,
        sink_rate: &two,
        mixing_score: &two,
    };
    assert!(matches!(phases(&c2, &PhaseParams::default()), Err(MetricsError::LengthMismatch { .. })));
    let nan = vec![Some(1.0), Some(f64::NAN)];
    let c3 = PhaseCurves {
        bos_norm: &two,
        bos_ratio: &two,
        entropy_norm: &nan,
        sink_rate: &two,
        mixing_score: &two,
    };
    assert!(matches!(phases(&c3, &PhaseParams::default()), Err(MetricsError::NonFiniteValue { .. })));
}

/// Invariant: the running median of three ignores one outlier, keeps the end points, and
/// averages two values where a neighbour is missing.
#[test]
fn smoothing_median3() {
    let c = [Some(1.0), Some(9.0), Some(1.0), Some(1.0), None, Some(4.0)];
    assert_eq!(smooth_median3(&c), vec![Some(1.0), Some(1.0), Some(1.0), Some(1.0), Some(2.5), Some(4.0)]);
    assert_eq!(smooth_median3(&[None, None, None]), vec![None, None, None]);
}

// ---------------------------------------------------------------- massive layers

/// Invariant: mlp_out_norms gives ‖row 0‖ and the median of the other rows' norms.
#[test]
fn mlp_out_norms_by_hand() {
    // row norms: 10, 1, 3, 2
    let data = [6.0_f32, 8.0, 1.0, 0.0, 0.0, 3.0, 2.0, 0.0];
    let n = mlp_out_norms(&Matrix::new(&data, 4, 2).unwrap());
    assert_eq!(n.bos_norm, 10.0);
    assert_eq!(n.other_median, Some(2.0));
    let n = mlp_out_norms(&Matrix::new(&data[..6], 3, 2).unwrap());
    assert_eq!(n.other_median, Some(2.0)); // median of {1, 3}
    assert_eq!(mlp_out_norms(&Matrix::new(&data[..2], 1, 2).unwrap()).other_median, None);
}

/// Invariant: a block is detected iff MLP bos norm >= 10x the others' median AND bos_ratio rises
/// >= 3x; multi-stage models give several layers; thresholds are inclusive; nulls never detect.
#[test]
fn massive_layer_detection() {
    let p = MassiveLayerParams::default();
    // L = 6. Stage 1 at block 2 (ratio 1 -> 4), stage 2 at block 4 (ratio 4 -> 40).
    let mlp_bos = [None, Some(1.0), Some(10.0), Some(50.0), Some(200.0), Some(1.0), None];
    let mlp_med = [None, Some(1.0), Some(1.0), Some(1.0), Some(1.0), Some(1.0), Some(1.0)];
    let ratio = [Some(1.0), Some(1.0), Some(3.0), Some(4.0), Some(40.0), Some(200.0), Some(900.0)];
    let found = detect_massive_layers(&mlp_bos, &mlp_med, &ratio, &p).unwrap();
    // block 2: 10 >= 10 and 3 >= 3 (inclusive); block 3: ratio 3 -> 4 (no); block 4: yes;
    // block 5: mlp 1 < 10 (no); block 6: mlp null (no).
    assert_eq!(found.iter().map(|m| m.layer).collect::<Vec<_>>(), vec![2, 4]);
    let m4 = found[1];
    assert_eq!((m4.bos_ratio_before, m4.bos_ratio_after), (4.0, 40.0));
    assert_eq!(m4.mlp_ratio(), Some(200.0));
    assert_eq!(m4.bos_ratio_gain(), Some(10.0));
    assert!(detect_massive_layers(&mlp_bos[1..], &mlp_med, &ratio, &p).is_err());
    let mut nan = ratio;
    nan[3] = Some(f64::NAN);
    assert!(detect_massive_layers(&mlp_bos, &mlp_med, &nan, &p).is_err());
}
