//! Multiple-choice LogitLens accuracy (metrics.md, "Task probes": `mc_accuracy`).
//!
//! Each choice `c` of an item is scored at every layer `l` by its LogitLens log-likelihood: the
//! item's context followed by the choice's tokens is run once, and
//! `loglik(l, c) = −Σ_{t ∈ choice} nll_l(t)`, the sum over the choice's token positions of
//! the next-token NLL that LogitLens at layer `l` gives them. The layer's prediction is the
//! choice with the largest `loglik` (`mc_accuracy`), or the largest `loglik / bytes(choice)`
//! (`mc_accuracy_norm`, the choice's length in UTF-8 bytes: lm-evaluation-harness's
//! `acc_norm`). Ties go to the lowest choice index, so a tie never counts as correct unless
//! the gold choice comes first.

/// One choice's LogitLens log-likelihood at every layer (defined in the result schema).
pub use sinkscope_schema::ChoiceScores;

/// The sum of `nll[p − 1]` over the choice positions `p ∈ span` of a sequence, negated:
/// `per_position[i]` is the NLL of token `i + 1` (as [`crate::lens::LensStats`]), `span` the
/// token positions of the choice (`start ≥ 1`). `None` when the span is empty or out of range.
pub fn span_loglik(per_position: &[f64], span: std::ops::Range<usize>) -> Option<f64> {
    if span.is_empty() || span.start == 0 {
        return None;
    }
    let nll = per_position.get(span.start - 1..span.end - 1)?;
    Some(-nll.iter().sum::<f64>())
}

/// The predicted choice at layer `l` (`normalised`: by bytes); `None` with no choice or a
/// layer out of range. Ties: the lowest index.
pub fn predict(choices: &[ChoiceScores], l: usize, normalised: bool) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, c) in choices.iter().enumerate() {
        let v = *c.loglik.get(l)?;
        let v = if normalised { v / c.bytes.max(1) as f64 } else { v };
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

/// Per layer, whether the item is answered correctly: `(plain, normalised)`, `L + 1` entries.
pub fn item_correct(choices: &[ChoiceScores], gold: usize, n_layers: usize) -> Vec<(bool, bool)> {
    (0..=n_layers)
        .map(|l| (predict(choices, l, false) == Some(gold), predict(choices, l, true) == Some(gold)))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// Known answer: positions 3..5 of a sequence score tokens 3 and 4, i.e. NLL entries 2 and 3.
    #[test]
    fn span_sums_the_choice_tokens() {
        let nll = [0.5, 1.0, 2.0, 4.0, 8.0];
        assert_eq!(span_loglik(&nll, 3..5), Some(-6.0));
        assert_eq!(span_loglik(&nll, 5..6), Some(-8.0));
        assert_eq!(span_loglik(&nll, 0..2), None);
        assert_eq!(span_loglik(&nll, 5..7), None);
    }

    /// Known answer: at layer 0 choice 1 has the largest sum, but per byte choice 0 (−4 / 8
    /// = −0.5 beats −3 / 2 = −1.5); at layer 1 choice 0 wins both ways; equal scores go to the
    /// lowest index.
    #[test]
    fn plain_and_normalised_predictions() {
        let c = vec![
            ChoiceScores { loglik: vec![-4.0, -1.0, -2.0], bytes: 8 },
            ChoiceScores { loglik: vec![-3.0, -5.0, -2.0], bytes: 2 },
        ];
        assert_eq!(predict(&c, 0, false), Some(1));
        assert_eq!(predict(&c, 0, true), Some(0));
        assert_eq!(predict(&c, 1, false), Some(0));
        assert_eq!(predict(&c, 2, false), Some(0));
        assert_eq!(item_correct(&c, 1, 2), vec![(true, false), (false, false), (false, false)]);
        assert_eq!(predict(&c, 3, false), None);
    }
}
