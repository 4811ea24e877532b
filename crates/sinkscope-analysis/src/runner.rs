//! The per-prompt loop shared by `profile` (and `ablate`), `lens` and `probe`: check or write
//! the manifest, resume from the finished lines of the result file ([`crate::resume`]),
//! tokenise each remaining prompt, run it (on one or several threads, results in input
//! order), append its record to the JSONL file (flushed), and aggregate every record as parsed
//! back from its line, finished ones first.
//!
//! What differs between the commands is the forward pass (`work`), the record type
//! ([`PromptLine`]) and what is done with each record ([`PromptSink`]: the aggregate, and any
//! side file such as `probe`'s feature file, which must hold exactly the rows of the finished
//! records when a run resumes).

use crate::datasets::Example;
use crate::error::{AnalysisError, Result};
use crate::profile::{prepare, run_ordered, write_json, Prepared, ProfileOptions, Progress};
use crate::resume::{check_manifest, open_lines, read_finished, Finished};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sinkscope_io::ModelFiles;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// One line of a per-prompt result file.
pub trait PromptLine: Serialize + DeserializeOwned {
    /// The prompt id.
    fn id(&self) -> &str;
    /// The token ids run.
    fn token_ids(&self) -> &[u32];
    /// Whether this is the record of `ex` tokenised as `ids` (resume check): by default the
    /// same id and token ids; records that keep the label compare it too.
    fn is_of(&self, ex: &Example, ids: &[u32]) -> bool {
        self.id() == ex.id && self.token_ids() == ids
    }
}

/// Where the records of a run go besides the JSONL file.
pub trait PromptSink<D, R> {
    /// Called once, before any record: `resume_from` is `None` for a fresh run, else the
    /// number of finished records in the result file. Returns how many of those the sink's
    /// side files can continue from (at most `resume_from`; the rest are redone).
    ///
    /// # Errors
    /// A side file that cannot be created or cut.
    fn start(&mut self, resume_from: Option<usize>) -> Result<usize> {
        Ok(resume_from.unwrap_or(0))
    }

    /// Writes (and flushes) whatever a finished prompt produced besides its record, then
    /// returns the record (its line is written after this returns).
    ///
    /// # Errors
    /// A side file that cannot be written.
    fn persist(&mut self, done: D) -> Result<R>;

    /// Aggregates a record as parsed back from its line (finished records first, in order).
    ///
    /// # Errors
    /// Whatever the aggregate rejects.
    fn add(&mut self, record: &R) -> Result<()>;
}

/// An aggregate over records (no side file): what [`Aggregating`] feeds.
pub trait Aggregate<R> {
    /// Adds one record.
    ///
    /// # Errors
    /// Whatever the aggregate rejects.
    fn add(&mut self, record: &R) -> Result<()>;
}

/// The sink of a run whose records only go to an aggregate (lens, multiple choice).
pub struct Aggregating<A>(pub A);

impl<R, A: Aggregate<R>> PromptSink<R, R> for Aggregating<A> {
    fn persist(&mut self, done: R) -> Result<R> {
        Ok(done)
    }

    fn add(&mut self, record: &R) -> Result<()> {
        self.0.add(record)
    }
}

/// The fixed parts of a per-prompt run.
pub struct PromptRun<'a> {
    /// Tokenizer (and config) of the model.
    pub files: &'a ModelFiles,
    /// Tokenisation rules, and `resume`.
    pub opts: &'a ProfileOptions,
    /// `manifest.json` of the run folder.
    pub manifest_path: &'a Path,
    /// The manifest with `"status": "running"` (written before the first prompt; compared
    /// with the folder's when resuming).
    pub manifest: &'a sinkscope_schema::Manifest,
    /// The JSONL result file.
    pub lines_path: &'a Path,
    /// Packs run at the same time (1: on the calling thread).
    pub workers: usize,
    /// Consecutive prompts are grouped into packs of at most this many tokens (a longer
    /// prompt runs alone; 0 or 1: one prompt per pack), each pack one `work` call.
    pub pack_tokens: usize,
}

/// What [`run_prompts`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ran {
    /// Prompts in the result file (resumed ones included).
    pub n_prompts: usize,
    /// Their tokens.
    pub n_tokens: usize,
    /// Prompts kept from an earlier run.
    pub n_resumed: usize,
    /// Time from the first record (replayed or run) to the last.
    pub elapsed: Duration,
}

/// Runs every prompt of `prompts` as described in the module doc. `job` turns a tokenised
/// prompt into the work unit (on the calling thread); `work` runs a pack of them (on
/// `run.workers` threads; see [`one_by_one`]) and returns one result per job, in order;
/// `sink` persists and aggregates the results.
///
/// # Errors
/// A manifest or result file that does not match this run (with `resume`), a finished record
/// that is not the corresponding prompt of the input, any error of `job`, `work` or `sink`
/// (the first in input order, after every earlier record was written), or an unwritable
/// output.
pub fn run_prompts<J: Send, D: Send, R: PromptLine>(
    run: &PromptRun<'_>,
    prompts: &mut dyn Iterator<Item = Example>,
    job: &dyn Fn(Example, Prepared) -> Result<J>,
    work: &(dyn Fn(Vec<J>) -> Vec<Result<D>> + Sync),
    sink: &mut dyn PromptSink<D, R>,
    progress: &mut dyn Progress,
) -> Result<Ran> {
    let lines_path = run.lines_path;
    let resumable =
        run.opts.resume && check_manifest(run.manifest_path, &serde_json::to_value(run.manifest)?)?;
    let mut done: Finished<R> = match resumable {
        true => read_finished(lines_path)?,
        false => Finished::none(),
    };
    let keep = sink.start(resumable.then_some(done.records.len()))?;
    done.keep(keep);
    write_json(run.manifest_path, run.manifest)?;
    let file = open_lines(lines_path, resumable.then_some(done.valid_len))?;
    let mut lines = std::io::BufWriter::new(file);
    let t0 = Instant::now();
    let (mut n_prompts, mut n_tokens) = (0usize, 0usize);
    // Finished prompts must be the first of the input, unchanged; they count as just run.
    for (i, r) in done.records.iter().enumerate() {
        let same = prompts.next().and_then(|ex| {
            let ids = prepare(run.files, &ex.id, &ex.text, run.opts).ok()?.ids;
            Some(r.is_of(&ex, &ids))
        });
        if same != Some(true) {
            return Err(AnalysisError::ResultFile {
                path: lines_path.to_path_buf(),
                reason: format!(
                    "line {}: cannot resume: prompt '{}' is not prompt {} of this run's data (or its tokens differ)",
                    i + 1,
                    r.id(),
                    i + 1
                ),
            });
        }
        sink.add(r)?;
        n_prompts += 1;
        n_tokens += r.token_ids().len();
    }
    let n_resumed = n_prompts;
    let mut write = |output: D| -> Result<()> {
        let record = sink.persist(output)?;
        let line = serde_json::to_string(&record)?;
        let io = |source| AnalysisError::Output { path: lines_path.to_path_buf(), source };
        lines.write_all(line.as_bytes()).map_err(io)?;
        lines.write_all(b"\n").map_err(io)?;
        lines.flush().map_err(io)?;
        // Aggregate the record as the file holds it, so that a resumed run (which reads
        // finished records back) aggregates exactly the same numbers.
        let record: R = serde_json::from_str(&line)?;
        sink.add(&record)?;
        n_prompts += 1;
        n_tokens += record.token_ids().len();
        progress.prompt_done(n_prompts, n_tokens, t0.elapsed());
        Ok(())
    };
    // Tokenisation (which needs the tokenizer) stays on this thread; the packs run on
    // `workers` threads; records are written in input order.
    let jobs = prompts.map(|ex| -> Result<(usize, J)> {
        let prepared = prepare(run.files, &ex.id, &ex.text, run.opts)?;
        let n = prepared.ids.len();
        Ok((n, job(ex, prepared)?))
    });
    let mut packs = Packs { jobs, budget: run.pack_tokens, held: None };
    let mut write_pack = |outputs: Vec<Result<D>>| -> Result<()> {
        for output in outputs {
            write(output?)?;
        }
        Ok(())
    };
    if run.workers <= 1 {
        for p in packs {
            write_pack(work(p?))?;
        }
    } else {
        run_ordered(run.workers, &mut packs, &|p: Vec<J>| Ok(work(p)), &mut write_pack)?;
    }
    Ok(Ran { n_prompts, n_tokens, n_resumed, elapsed: t0.elapsed() })
}

/// Runs the jobs of a pack one at a time through `f` (for work that does not pack).
pub fn one_by_one<J, D>(f: impl Fn(J) -> Result<D> + Sync) -> impl Fn(Vec<J>) -> Vec<Result<D>> + Sync {
    move |jobs: Vec<J>| {
        let mut out = Vec::with_capacity(jobs.len());
        for j in jobs {
            let r = f(j);
            let failed = r.is_err();
            out.push(r);
            if failed {
                break; // the run stops at the first error; skip the rest of the pack
            }
        }
        out
    }
}

/// The tokens of the largest pack that prompts of these lengths form with `budget` (the rule of
/// [`run_prompts`]): what one forward pass must hold (the memory guard's `T`).
pub fn largest_pack(lengths: &[usize], budget: usize) -> usize {
    let jobs = lengths.iter().map(|&n| Ok((n, n)));
    Packs { jobs, budget, held: None }.filter_map(|p| p.ok()).map(|p| p.iter().sum()).max().unwrap_or(0)
}

/// The packs that prompts of these lengths form with `budget` (the rule of [`run_prompts`]),
/// as index ranges.
pub fn pack_ranges(lengths: &[usize], budget: usize) -> Vec<std::ops::Range<usize>> {
    let jobs = lengths.iter().enumerate().map(|(i, &n)| Ok((n, i)));
    Packs { jobs, budget, held: None }
        .filter_map(|p| p.ok())
        .filter_map(|p| Some(*p.first()?..*p.last()? + 1))
        .collect()
}

/// Groups consecutive `(tokens, job)` items into packs of at most `budget` tokens (at least
/// one job each). An item that failed ends the pack before it and comes out on its own.
struct Packs<I, J> {
    jobs: I,
    budget: usize,
    held: Option<Result<(usize, J)>>,
}

impl<I: Iterator<Item = Result<(usize, J)>>, J> Iterator for Packs<I, J> {
    type Item = Result<Vec<J>>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut pack = Vec::new();
        let mut tokens = 0usize;
        loop {
            let item = match self.held.take() {
                Some(item) => item,
                None => match self.jobs.next() {
                    Some(item) => item,
                    None => break,
                },
            };
            match item {
                Ok((n, job)) if pack.is_empty() || tokens + n <= self.budget => {
                    tokens += n;
                    pack.push(job);
                }
                Err(e) if pack.is_empty() => return Some(Err(e)),
                other => {
                    self.held = Some(other);
                    break;
                }
            }
        }
        (!pack.is_empty()).then_some(Ok(pack))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn packs(items: Vec<Result<(usize, u32)>>, budget: usize) -> Vec<std::result::Result<Vec<u32>, String>> {
        Packs { jobs: items.into_iter(), budget, held: None }.map(|p| p.map_err(|e| e.to_string())).collect()
    }

    #[test]
    fn packs_fill_up_to_the_budget_in_order() {
        let items =
            [(30, 0), (30, 1), (50, 2), (200, 3), (10, 4), (10, 5)].into_iter().map(Ok).collect::<Vec<_>>();
        assert_eq!(packs(items, 100), vec![Ok(vec![0, 1]), Ok(vec![2]), Ok(vec![3]), Ok(vec![4, 5])]);
        let items = || [(30, 0), (30, 1)].into_iter().map(Ok).collect::<Vec<_>>();
        assert_eq!(packs(items(), 0), vec![Ok(vec![0]), Ok(vec![1])]);
        assert_eq!(packs(items(), 1), vec![Ok(vec![0]), Ok(vec![1])]);
    }

    /// The largest pack is what the prompts form, never more than needed.
    #[test]
    fn largest_pack_follows_the_packing_rule() {
        assert_eq!(largest_pack(&[30, 30, 50, 200, 10], 100), 200);
        assert_eq!(largest_pack(&[30, 30, 50, 10], 100), 60);
        assert_eq!(largest_pack(&[8], 128), 8);
        assert_eq!(largest_pack(&[], 128), 0);
        assert_eq!(largest_pack(&[5, 7], 1), 7);
    }

    #[test]
    fn a_failed_item_ends_the_pack_and_comes_alone() {
        let items = vec![Ok((5, 0)), Ok((5, 1)), Err(AnalysisError::NoPrompts), Ok((5, 3))];
        let got = packs(items, 100);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], Ok(vec![0, 1]));
        assert!(got[1].is_err());
        assert_eq!(got[2], Ok(vec![3]));
    }
}
