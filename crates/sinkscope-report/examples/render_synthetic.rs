//! Writes a synthetic run folder and renders its report:
//! `cargo run -p sinkscope-report --example render_synthetic -- OUT_DIR [N_LAYERS]`.

use std::path::PathBuf;

use sinkscope_report::{render_run, synthetic::SyntheticRun};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "synthetic-run".into()));
    let n_layers = args.next().map(|s| s.parse()).transpose()?.unwrap_or(12);
    SyntheticRun { n_layers, ..SyntheticRun::default() }.write(&out)?;
    let summary = render_run(&out)?;
    for f in summary.files() {
        println!("{}", f.display());
    }
    Ok(())
}
