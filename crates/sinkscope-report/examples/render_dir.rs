//! Re-renders the report of an existing run folder (no model needed):
//! `cargo run -p sinkscope-report --example render_dir -- RUN_DIR`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: render_dir RUN_DIR")?);
    for f in sinkscope_report::render_run(&dir)?.files() {
        println!("{}", f.display());
    }
    Ok(())
}
