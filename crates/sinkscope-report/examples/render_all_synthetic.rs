//! Writes synthetic profile, lens, probe and ablate folders and renders all of them, plus
//! the tasks-vs-depth page and a comparison:
//! `cargo run -p sinkscope-report --example render_all_synthetic -- OUT_DIR`.

use std::path::PathBuf;

use sinkscope_report::synthetic::{SyntheticAblate, SyntheticLens, SyntheticProbe, SyntheticRun};
use sinkscope_report::{render_ablate, render_compare, render_run, render_tasks, TaskDirs};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "synthetic-all".into()));
    let model = SyntheticRun {
        n_layers: 24,
        model_path: "models/Synthetic-24L.gguf".into(),
        ..SyntheticRun::default()
    };
    let other =
        SyntheticRun { n_layers: 12, model_path: "models/Other-12L.gguf".into(), ..SyntheticRun::default() };
    model.write(&out.join("profile"))?;
    SyntheticLens { model: model.clone() }.write(&out.join("lens"))?;
    SyntheticProbe { model: model.clone(), n_samples: 200, not_converged: vec![3] }
        .write(&out.join("probe"))?;
    SyntheticAblate { model: model.clone(), one_by_one: true, ..SyntheticAblate::default() }
        .write(&out.join("ablate"))?;
    other.write(&out.join("other-profile"))?;
    SyntheticProbe { model: other, n_samples: 100, not_converged: vec![] }.write(&out.join("other-probe"))?;
    for d in ["profile", "lens", "probe", "ablate"] {
        println!("{}", render_run(&out.join(d))?.report_html.display());
    }
    println!("{}", render_ablate(&out.join("ablate"))?.report_html.display());
    let t = render_tasks(
        &TaskDirs {
            profile: Some(&out.join("profile")),
            lens: Some(&out.join("lens")),
            probe: Some(&out.join("probe")),
            mc: None,
        },
        &out.join("tasks"),
    )?;
    println!("{}", t.tasks_html.display());
    let dirs: Vec<PathBuf> =
        ["profile", "lens", "probe", "other-profile", "other-probe"].iter().map(|d| out.join(d)).collect();
    println!("{}", render_compare(&dirs, &out.join("compare"))?.compare_html.display());
    Ok(())
}
