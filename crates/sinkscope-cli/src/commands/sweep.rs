//! `sinkscope sweep PLAN.toml [--executor local|slurm] [--jobs N] [--dry-run] [--only ID]...`:
//! a sweep over models (training checkpoints included), prompt sets, commands and shards.
//!
//! The plan (TOML, README "Running on a cluster") expands into tasks, one per (model, data,
//! command, shard), each with a stable id `<model>.<data>.<command>.<i>of<N>`. A task is one
//! `sinkscope <command> ... --shard i/N --out OUT/tasks/<id>` run; its log is
//! `OUT/logs/<id>.log`. A task whose folder holds a complete run is skipped, one holding an
//! interrupted run continues with `--resume`, others start afresh, so running the sweep again
//! (after a kill, or after some tasks failed) only runs what is left, with the same bytes.
//!
//! - `--executor local`: `--jobs` tasks at a time on this machine (child processes).
//! - `--executor slurm`: one `sbatch --array` script (`OUT/slurm/sweep-<k>.sbatch`, the array
//!   index picks the task; memory per task from the memory guard's estimate for the largest
//!   model and prompt, unless the plan sets it), submitted with `sbatch --parsable` and
//!   followed with `squeue` until the array has left the queue. `--dry-run` prints the script.
//!   Each array task runs `sinkscope sweep PLAN --run-task ID` (the same skip/resume rule).
//!
//! When every shard of a (model, data, command) is complete, they are merged
//! (`sinkscope merge`, byte-identical to an unsharded run) into `OUT/runs/<model>.<data>.<command>/`
//! with its report; a model series whose checkpoints carry steps also gets
//! `OUT/trajectory/<series>.<data>/trajectory.{html,csv,json}` from its profile runs.
//! Failed tasks are listed with their log paths; the exit code is then 1.

use crate::common::claim_out;
use crate::term::{note, say};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use sinkscope_analysis::AnalysisError;
use sinkscope_report::schema::{SweepFile, SweepTask, SWEEP_FILE};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The sweep file (TOML).
    pub plan: PathBuf,
    /// Where tasks run: `local` (this machine) or `slurm` (`sbatch --array`).
    #[arg(long, default_value = "local", value_parser = ["local", "slurm"])]
    pub executor: String,
    /// Local executor: tasks run at the same time.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Slurm: print the batch script (and the tasks) instead of submitting it; local: list
    /// the tasks and what would be done.
    #[arg(long)]
    pub dry_run: bool,
    /// Run only these task ids (repeatable), e.g. to resubmit one failed task.
    #[arg(long)]
    pub only: Vec<String>,
    /// Output root (overrides the plan's `out`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Internal: run one task (what each Slurm array task executes).
    #[arg(long, hide = true)]
    pub run_task: Option<String>,
}

// ---------------------------------------------------------------------------------------
// The plan
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    name: Option<String>,
    out: Option<PathBuf>,
    #[serde(default = "default_commands")]
    commands: Vec<String>,
    #[serde(default = "one")]
    shards: usize,
    limit: Option<usize>,
    max_tokens: Option<usize>,
    bos: Option<String>,
    threads: Option<usize>,
    /// Further arguments for every command, verbatim (e.g. `["--epsilon", "0.3"]`).
    #[serde(default)]
    options: Vec<String>,
    #[serde(default)]
    models: Vec<ModelEntry>,
    #[serde(default)]
    data: Vec<DataEntry>,
    slurm: Option<SlurmConf>,
}

fn default_commands() -> Vec<String> {
    vec!["profile".into()]
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelEntry {
    /// A model file or folder; a `*` in the last component expands to every match (e.g.
    /// `pythia-160m/step*`), each a checkpoint.
    path: PathBuf,
    label: Option<String>,
    step: Option<u64>,
    revision: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataEntry {
    prompts: Option<PathBuf>,
    dataset: Option<String>,
    label: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlurmConf {
    partition: Option<String>,
    account: Option<String>,
    /// Wall time per task (`--time`), default 01:00:00.
    time: Option<String>,
    /// Memory per task (`--mem`, e.g. `16G`); default: the memory guard's estimate + 25 %.
    mem: Option<String>,
    cpus_per_task: Option<usize>,
    /// At most this many array tasks at once (`--array=...%N`).
    max_parallel: Option<usize>,
    /// Further `#SBATCH` options, e.g. `["--qos=normal"]`.
    #[serde(default)]
    sbatch: Vec<String>,
    /// Shell lines run before each task (e.g. `module load ...`).
    #[serde(default)]
    setup: Vec<String>,
}

/// One model of the expanded plan.
#[derive(Debug, Clone)]
struct Model {
    path: PathBuf,
    label: String,
    /// The checkpoint series (models with a step).
    series: Option<String>,
    step: Option<u64>,
    revision: Option<String>,
}

/// One task.
#[derive(Debug, Clone)]
struct Task {
    id: String,
    group: String,
    model: usize,
    data: usize,
    command: String,
    shard: usize,
}

#[derive(Debug, Clone)]
struct Plan {
    file: PathBuf,
    name: String,
    out: PathBuf,
    p: PlanFile,
    models: Vec<Model>,
    data: Vec<(String, DataEntry)>,
    tasks: Vec<Task>,
}

fn plan_error(file: &Path, msg: impl Into<String>) -> anyhow::Error {
    AnalysisError::ResultFile { path: file.to_path_buf(), reason: msg.into() }.into()
}

/// A label usable in a file name.
fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect()
}

/// The training step in a checkpoint's name: a path component `step<N>` (Pythia's folders),
/// or `step<N>` / `step-<N>` / `step_<N>` inside a file name (`model-step1000.gguf`).
fn step_in(path: &Path) -> Option<u64> {
    for comp in path.components().rev() {
        let s = comp.as_os_str().to_string_lossy().to_lowercase();
        if let Some(i) = s.find("step") {
            let rest = s[i + 4..].trim_start_matches(['-', '_']);
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(n) = digits.parse() {
                return Some(n);
            }
        }
    }
    None
}

/// Expands a `*` in the last path component.
fn expand(file: &Path, path: &Path) -> Result<Vec<PathBuf>> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let Some((pre, post)) = name.split_once('*') else {
        return Ok(vec![path.to_path_buf()]);
    };
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| plan_error(file, format!("models.path '{}': {e}", path.display())))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            n.len() >= pre.len() + post.len() && n.starts_with(pre) && n.ends_with(post)
        })
        .collect();
    out.sort_by_key(|p| (step_in(p), p.clone()));
    if out.is_empty() {
        return Err(plan_error(file, format!("models.path '{}' matches nothing", path.display())));
    }
    Ok(out)
}

fn load_plan(file: &Path, out_override: Option<&Path>) -> Result<Plan> {
    let text = std::fs::read_to_string(file).map_err(|e| plan_error(file, format!("cannot read: {e}")))?;
    let p: PlanFile =
        toml::from_str(&text).map_err(|e| plan_error(file, format!("not a valid sweep file: {e}")))?;
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |q: &Path| if q.is_absolute() { q.to_path_buf() } else { base.join(q) };
    let out = match (out_override, &p.out) {
        (Some(o), _) => o.to_path_buf(),
        (None, Some(o)) => resolve(o),
        (None, None) => return Err(plan_error(file, "no 'out' folder (set out = \"...\" or pass --out)")),
    };
    if p.shards == 0 {
        return Err(plan_error(file, "shards must be at least 1"));
    }
    for c in &p.commands {
        if !["profile", "lens", "probe", "ablate"].contains(&c.as_str()) {
            return Err(plan_error(
                file,
                format!("commands: '{c}' cannot be swept (profile, lens, probe, ablate)"),
            ));
        }
    }
    if p.models.is_empty() || p.data.is_empty() {
        return Err(plan_error(file, "needs at least one [[models]] and one [[data]] entry"));
    }
    let mut models = Vec::new();
    for (i, m) in p.models.iter().enumerate() {
        let paths = expand(file, &resolve(&m.path))?;
        let many = paths.len() > 1;
        for path in paths {
            let step = if many { step_in(&path) } else { m.step.or_else(|| step_in(&path)) };
            let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
            let series = step.map(|_| {
                m.label.clone().unwrap_or_else(|| {
                    let parent =
                        path.parent().and_then(|p| p.file_name()).map(|s| s.to_string_lossy().to_string());
                    if path.is_dir() || many {
                        parent.unwrap_or_else(|| format!("model{i}"))
                    } else {
                        stem.replace(&format!("step{}", step.unwrap_or(0)), "")
                            .trim_matches(['-', '_', '.'])
                            .to_string()
                    }
                })
            });
            let label = match (&series, step, &m.label) {
                (Some(s), Some(n), _) => format!("{s}-step{n}"),
                (_, _, Some(l)) => l.clone(),
                _ => stem.clone(),
            };
            if step.is_none() && many {
                return Err(plan_error(
                    file,
                    format!("models.path '{}': no step in its name", path.display()),
                ));
            }
            models.push(Model {
                path,
                label: clean(&label),
                series: series.map(|s| clean(&s)),
                step,
                revision: m.revision.clone(),
            });
        }
    }
    let mut data = Vec::new();
    for (i, d) in p.data.iter().enumerate() {
        let label = match (&d.label, &d.prompts, &d.dataset) {
            (Some(l), _, _) => l.clone(),
            (None, Some(f), None) => {
                f.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or(format!("data{i}"))
            }
            (None, None, Some(n)) => n.clone(),
            _ => {
                return Err(plan_error(
                    file,
                    format!("data entry {}: give exactly one of prompts and dataset", i + 1),
                ))
            }
        };
        if d.prompts.is_some() == d.dataset.is_some() {
            return Err(plan_error(
                file,
                format!("data entry {}: give exactly one of prompts and dataset", i + 1),
            ));
        }
        let mut d = d.clone();
        d.prompts = d.prompts.map(|f| resolve(&f));
        data.push((clean(&label), d));
    }
    let mut tasks = Vec::new();
    for (mi, m) in models.iter().enumerate() {
        for (di, (dl, _)) in data.iter().enumerate() {
            for c in &p.commands {
                let group = format!("{}.{}.{}", m.label, dl, c);
                for s in 0..p.shards {
                    tasks.push(Task {
                        id: format!("{group}.{s}of{}", p.shards),
                        group: group.clone(),
                        model: mi,
                        data: di,
                        command: c.clone(),
                        shard: s,
                    });
                }
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in &tasks {
        if !seen.insert(t.id.clone()) {
            return Err(plan_error(
                file,
                format!("two tasks get the id '{}': give the models or data distinct labels", t.id),
            ));
        }
    }
    let name = p
        .name
        .clone()
        .unwrap_or_else(|| file.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default());
    Ok(Plan { file: file.to_path_buf(), name, out, p, models, data, tasks })
}

impl Plan {
    fn task_dir(&self, t: &Task) -> PathBuf {
        self.out.join("tasks").join(&t.id)
    }
    fn log(&self, t: &Task) -> PathBuf {
        self.out.join("logs").join(format!("{}.log", t.id))
    }
    fn run_dir(&self, group: &str) -> PathBuf {
        self.out.join("runs").join(group)
    }

    /// The command line of a task (without the program), `--resume` when its folder holds an
    /// interrupted run.
    fn argv(&self, t: &Task, resume: bool) -> Vec<String> {
        let m = &self.models[t.model];
        let (_, d) = &self.data[t.data];
        let mut a = vec![t.command.clone(), m.path.display().to_string()];
        if let Some(f) = &d.prompts {
            a.extend(["--prompts".into(), f.display().to_string()]);
        }
        if let Some(n) = &d.dataset {
            a.extend(["--dataset".into(), n.clone()]);
        }
        if let Some(n) = self.p.limit {
            a.extend(["--limit".into(), n.to_string()]);
        }
        if let Some(n) = self.p.max_tokens {
            a.extend(["--max-tokens".into(), n.to_string()]);
        }
        if let Some(b) = &self.p.bos {
            a.extend(["--bos".into(), b.clone()]);
        }
        if let (Some(n), "profile") = (self.p.threads, t.command.as_str()) {
            a.extend(["--threads".into(), n.to_string()]);
        }
        a.extend(["--shard".into(), format!("{}/{}", t.shard, self.p.shards)]);
        a.extend([
            "--out".into(),
            self.task_dir(t).display().to_string(),
            "--no-report".into(),
            "--quiet".into(),
        ]);
        a.extend(self.p.options.iter().cloned());
        if resume {
            a.push("--resume".into());
        }
        a
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Done,
    Interrupted,
    New,
}

fn state(dir: &Path) -> State {
    // An ablate study writes its ablate.json last; its sub-runs start with the baseline.
    if dir.join(sinkscope_report::schema::ABLATE_FILE).is_file() {
        return State::Done;
    }
    if dir.join("baseline").is_dir() {
        return State::Interrupted;
    }
    let m = std::fs::read_to_string(dir.join("manifest.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    match m {
        Some(m) if m["status"] == "complete" => State::Done,
        Some(_) => State::Interrupted,
        None => State::New,
    }
}

/// Starts one task as a child process (output to its log).
fn spawn(plan: &Plan, t: &Task) -> Result<std::process::Child> {
    let exe = std::env::current_exe().context("locating the sinkscope binary")?;
    let resume = state(&plan.task_dir(t)) == State::Interrupted;
    let log_path = plan.log(t);
    let log = sinkscope_output::create_fresh(&log_path).with_context(|| log_path.display().to_string())?;
    let err = log.try_clone().with_context(|| log_path.display().to_string())?;
    Command::new(exe)
        .args(plan.argv(t, resume))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting task {}", t.id))
}

/// `--run-task ID`: what one Slurm array task runs.
fn run_task(plan: &Plan, id: &str) -> Result<()> {
    let t = plan
        .tasks
        .iter()
        .find(|t| t.id == id)
        .ok_or_else(|| AnalysisError::Options(format!("no task '{id}' in {}", plan.file.display())))?;
    let dir = plan.task_dir(t);
    let st = state(&dir);
    if st == State::Done {
        say!("task {id}: already complete ({})", dir.display());
        return Ok(());
    }
    let exe = std::env::current_exe().context("locating the sinkscope binary")?;
    let status = Command::new(exe)
        .args(plan.argv(t, st == State::Interrupted))
        .status()
        .with_context(|| format!("starting task {id}"))?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Executors
// ---------------------------------------------------------------------------------------

fn run_local(plan: &Plan, pending: &[&Task], jobs: usize) -> Result<()> {
    let mut queue = pending.iter();
    let mut running: Vec<(&Task, std::process::Child)> = Vec::new();
    let total = pending.len();
    let mut finished = 0usize;
    loop {
        while running.len() < jobs.max(1) {
            let Some(t) = queue.next() else { break };
            running.push((t, spawn(plan, t)?));
        }
        if running.is_empty() {
            return Ok(());
        }
        let mut i = 0;
        while i < running.len() {
            if let Some(status) = running[i].1.try_wait().context("waiting for a task")? {
                let (t, _) = running.remove(i);
                finished += 1;
                let what = if status.success() { "done".to_string() } else { format!("FAILED ({status})") };
                note!("[{finished}/{total}] {}: {what}", t.id);
            } else {
                i += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Shell-quotes a word.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Memory per task: the memory guard's estimate for each pending task's model and longest
/// prompt (lens: with logits), the largest, plus 25 % and 512 MiB, in MiB.
fn estimate_mem_mib(plan: &Plan, pending: &[&Task]) -> Result<u64> {
    let mut worst = 0u64;
    let mut done = std::collections::BTreeSet::new();
    for t in pending {
        let lens = t.command == "lens";
        if !done.insert((t.model, t.data, lens)) {
            continue;
        }
        let m = &plan.models[t.model];
        let (_, d) = &plan.data[t.data];
        let files = sinkscope_io::ModelFiles::open(&m.path)?;
        let data_dir =
            std::env::var_os("SINKSCOPE_DATA").map_or_else(|| PathBuf::from("data/cache"), PathBuf::from);
        let (examples, _) = super::profile::load_examples(
            d.prompts.as_deref(),
            d.dataset.as_deref(),
            plan.p.limit,
            &data_dir,
            "python3",
        )?;
        let opts = sinkscope_analysis::profile::ProfileOptions {
            max_tokens: plan.p.max_tokens,
            truncate: plan.p.options.iter().any(|o| o == "--truncate"),
            bos: plan
                .p
                .bos
                .as_deref()
                .unwrap_or("auto")
                .parse()
                .unwrap_or(sinkscope_io::tokenizer::BosPolicy::Auto),
            ..Default::default()
        };
        let mut lengths = Vec::new();
        for ex in &examples {
            lengths.push(sinkscope_analysis::profile::prepare(&files, &ex.id, &ex.text, &opts)?.ids.len());
        }
        let pack = if lens { 0 } else { sinkscope_analysis::profile::DEFAULT_PACK_TOKENS };
        let max_t = sinkscope_analysis::runner::largest_pack(&lengths, pack);
        let est = sinkscope_model::memory::estimate(
            &files,
            &sinkscope_model::memory::RunShape { max_tokens: max_t, logits: lens, retained_bytes: 0 },
        );
        worst = worst.max(est.total());
    }
    Ok((worst + worst / 4) / (1 << 20) + 512)
}

/// The batch script of an array over `tasks`.
fn sbatch_script(plan: &Plan, tasks: &[&Task], mem: &str) -> Result<String> {
    let s = plan.p.slurm.clone().unwrap_or_default();
    let exe = std::env::current_exe().context("locating the sinkscope binary")?;
    let plan_abs = std::path::absolute(&plan.file).unwrap_or_else(|_| plan.file.clone());
    let out_abs = std::path::absolute(&plan.out).unwrap_or_else(|_| plan.out.clone());
    let logs = out_abs.join("logs");
    let cpus = s.cpus_per_task.or(plan.p.threads).unwrap_or(1);
    let mut b = String::from("#!/bin/bash\n");
    b.push_str(&format!("#SBATCH --job-name=sinkscope-{}\n", clean(&plan.name)));
    let limit = s.max_parallel.map(|n| format!("%{n}")).unwrap_or_default();
    b.push_str(&format!("#SBATCH --array=0-{}{limit}\n", tasks.len().saturating_sub(1)));
    b.push_str(&format!("#SBATCH --output={}/slurm-%A_%a.out\n", logs.display()));
    b.push_str(&format!("#SBATCH --cpus-per-task={cpus}\n"));
    b.push_str(&format!("#SBATCH --mem={mem}\n"));
    b.push_str(&format!("#SBATCH --time={}\n", s.time.as_deref().unwrap_or("01:00:00")));
    if let Some(p) = &s.partition {
        b.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    if let Some(a) = &s.account {
        b.push_str(&format!("#SBATCH --account={a}\n"));
    }
    for x in &s.sbatch {
        b.push_str(&format!("#SBATCH {x}\n"));
    }
    b.push_str("# One array task per sinkscope task (index -> id below); each skips a complete task and\n");
    b.push_str("# resumes an interrupted one, so resubmitting the script is safe.\nset -eu\n");
    for line in &s.setup {
        b.push_str(line);
        b.push('\n');
    }
    b.push_str("TASKS=(\n");
    for t in tasks {
        b.push_str(&format!("  {}\n", q(&t.id)));
    }
    b.push_str(")\nTASK=\"${TASKS[$SLURM_ARRAY_TASK_ID]}\"\n");
    b.push_str(&format!(
        "exec {} sweep {} --out {} --run-task \"$TASK\" >{}/\"$TASK\".log 2>&1\n",
        q(&exe.display().to_string()),
        q(&plan_abs.display().to_string()),
        q(&out_abs.display().to_string()),
        q(&logs.display().to_string()),
    ));
    Ok(b)
}

fn run_slurm(plan: &Plan, pending: &[&Task], dry_run: bool) -> Result<()> {
    if pending.is_empty() {
        say!("# nothing to submit: every task of {} is complete", plan.file.display());
        return Ok(());
    }
    let mem = match plan.p.slurm.as_ref().and_then(|s| s.mem.clone()) {
        Some(m) if m != "auto" => m,
        _ => format!("{}M", estimate_mem_mib(plan, pending)?),
    };
    let script = sbatch_script(plan, pending, &mem)?;
    if dry_run {
        print!("{script}");
        return Ok(());
    }
    let dir = plan.out.join("slurm");
    sinkscope_output::create_dir(&dir)?;
    let k = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    let path = dir.join(format!("sweep-{k}.sbatch"));
    sinkscope_output::write_atomic(&path, script.as_bytes())?;
    let o = Command::new("sbatch")
        .arg("--parsable")
        .arg(&path)
        .output()
        .context("running sbatch (is Slurm installed and SLURM_CONF set?)")?;
    if !o.status.success() {
        bail!(
            "sbatch {} failed ({}): {}",
            path.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    let out = String::from_utf8_lossy(&o.stdout);
    let job = out.trim().split(';').next().unwrap_or_default().to_string();
    if job.is_empty() {
        bail!("sbatch printed no job id");
    }
    note!("submitted {} task(s) as Slurm job {job} ({})", pending.len(), path.display());
    let mut last = usize::MAX;
    let mut failures = 0usize;
    loop {
        let o = Command::new("squeue")
            .args(["-h", "-j", &job, "-o", "%i %T"])
            .output()
            .context("running squeue")?;
        let err = String::from_utf8_lossy(&o.stderr);
        if !o.status.success() && !err.contains("Invalid job id") {
            // The controller did not answer: keep asking for a while rather than declare the
            // tasks gone (an unknown id, on the other hand, is a job that left the queue).
            failures += 1;
            if failures > 120 {
                bail!("squeue keeps failing for job {job}: {}", err.trim());
            }
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        failures = 0;
        let text = String::from_utf8_lossy(&o.stdout);
        let n = text.lines().filter(|l| !l.trim().is_empty()).count();
        if n == 0 {
            break;
        }
        if n != last {
            note!("Slurm job {job}: {n} array task(s) queued or running");
            last = n;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Merge and trajectories
// ---------------------------------------------------------------------------------------

fn merge_group(plan: &Plan, group: &str, shards: &[PathBuf]) -> Result<PathBuf> {
    let out = plan.run_dir(group);
    super::merge::merge_folders(shards, &out, true, false).with_context(|| format!("merging {group}"))?;
    sinkscope_report::render_run(&out).with_context(|| format!("{}: rendering the report", out.display()))?;
    Ok(out)
}

/// Runs the command.
pub fn run(a: Args) -> Result<()> {
    let plan = load_plan(&a.plan, a.out.as_deref())?;
    if let Some(id) = &a.run_task {
        return run_task(&plan, id);
    }
    for id in &a.only {
        if !plan.tasks.iter().any(|t| &t.id == id) {
            return Err(AnalysisError::Options(format!(
                "--only {id}: no such task in {}",
                plan.file.display()
            ))
            .into());
        }
    }
    let selected: Vec<&Task> =
        plan.tasks.iter().filter(|t| a.only.is_empty() || a.only.contains(&t.id)).collect();
    let pending: Vec<&Task> =
        selected.iter().copied().filter(|t| state(&plan.task_dir(t)) != State::Done).collect();
    if a.dry_run && a.executor == "local" {
        for t in &selected {
            let st = state(&plan.task_dir(t));
            say!("{}  {:?}  sinkscope {}", t.id, st, plan.argv(t, st == State::Interrupted).join(" "));
        }
        return Ok(());
    }
    if a.dry_run {
        return run_slurm(&plan, &pending, true);
    }
    let _root = claim_out(
        &plan.out,
        "sweep",
        &["tasks", "logs", "runs", "slurm", "trajectory", SWEEP_FILE],
        &[],
        &[plan.file.as_path()],
        false,
        true,
    )?;
    for sub in ["tasks", "logs", "runs"] {
        sinkscope_output::create_dir(&plan.out.join(sub))?;
    }
    note!(
        "sweep '{}': {} task(s), {} to run, {} already complete",
        plan.name,
        selected.len(),
        pending.len(),
        selected.len() - pending.len()
    );
    if !pending.is_empty() {
        match a.executor.as_str() {
            "slurm" => run_slurm(&plan, &pending, false)?,
            _ => run_local(&plan, &pending, a.jobs)?,
        }
    }
    // Which tasks are complete now.
    let failed: Vec<&Task> =
        selected.iter().copied().filter(|t| state(&plan.task_dir(t)) != State::Done).collect();
    let mut groups: BTreeMap<&str, Vec<&Task>> = BTreeMap::new();
    for t in &plan.tasks {
        groups.entry(t.group.as_str()).or_default().push(t);
    }
    let mut merged: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (g, ts) in &groups {
        if ts.iter().all(|t| state(&plan.task_dir(t)) == State::Done) {
            let dirs: Vec<PathBuf> = ts.iter().map(|t| plan.task_dir(t)).collect();
            merged.insert((*g).to_string(), merge_group(&plan, g, &dirs)?);
        }
    }
    // Trajectories: profile runs of models with a step, per (series, data).
    let mut series: BTreeMap<(String, String), Vec<(u64, PathBuf)>> = BTreeMap::new();
    for m in &plan.models {
        let (Some(s), Some(step)) = (&m.series, m.step) else { continue };
        for (dl, _) in &plan.data {
            let g = format!("{}.{}.profile", m.label, dl);
            if let Some(dir) = merged.get(&g) {
                series.entry((s.clone(), dl.clone())).or_default().push((step, dir.clone()));
            }
        }
    }
    let mut trajectories = Vec::new();
    for ((s, dl), runs) in &series {
        let out = plan.out.join("trajectory").join(format!("{s}.{dl}"));
        sinkscope_output::create_dir(&plan.out.join("trajectory"))?;
        let t = sinkscope_report::render_trajectory(&format!("{s} on {dl}"), runs, &out)?;
        say!(
            "trajectory {s} on {dl}: {} step(s); massive activation from step {}, sinks from {}, valley from {}",
            t.rows.len(),
            fmt_step(t.crossings[0]),
            fmt_step(t.crossings[1]),
            fmt_step(t.crossings[2])
        );
        trajectories.push(out.join(sinkscope_report::TRAJECTORY_HTML));
    }
    let summary = SweepFile {
        name: plan.name.clone(),
        plan: plan.file.clone(),
        tasks: plan
            .tasks
            .iter()
            .map(|t| {
                let m = &plan.models[t.model];
                SweepTask {
                    id: t.id.clone(),
                    group: t.group.clone(),
                    model: m.path.clone(),
                    label: m.label.clone(),
                    step: m.step,
                    revision: m.revision.clone(),
                    data: plan.data[t.data].0.clone(),
                    command: t.command.clone(),
                    shard: format!("{}/{}", t.shard, plan.p.shards),
                    complete: state(&plan.task_dir(t)) == State::Done,
                    log: plan.log(t),
                }
            })
            .collect(),
        runs: merged,
        trajectories,
    };
    // Keys sorted, as in every results file (the type declares its fields in reading order).
    sinkscope_output::write_atomic(
        &plan.out.join(SWEEP_FILE),
        serde_json::to_string_pretty(&serde_json::to_value(&summary)?)?.as_bytes(),
    )?;
    for dir in summary.runs.values() {
        say!("{}", dir.display());
    }
    for t in &summary.trajectories {
        say!("{}", t.display());
    }
    if !failed.is_empty() {
        for t in &failed {
            note!("failed: {} (log: {})", t.id, plan.log(t).display());
        }
        bail!(
            "{} task(s) did not complete; run the sweep again to retry them (or one alone: --only ID)",
            failed.len()
        );
    }
    Ok(())
}

fn fmt_step(s: Option<u64>) -> String {
    s.map_or("never".into(), |s| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_found_in_checkpoint_names() {
        assert_eq!(step_in(Path::new("pythia-160m/step1000")), Some(1000));
        assert_eq!(step_in(Path::new("x/model-step-250.gguf")), Some(250));
        assert_eq!(step_in(Path::new("x/ckpt_step_3/model.safetensors")), Some(3));
        assert_eq!(step_in(Path::new("x/SmolLM2.gguf")), None);
    }
}
