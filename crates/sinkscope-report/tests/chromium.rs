//! report.html and compare.html open in headless Chromium (Debian's `chromium`) and render
//! with their plots. Skipped, loudly, only when Chromium is not installed
//! (`scripts/test.sh` installs it with apt-get when it can).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use sinkscope_report::synthetic::{SyntheticAblate, SyntheticLens, SyntheticProbe, SyntheticRun};
use sinkscope_report::{render_ablate, render_compare, render_run, render_tasks, TaskDirs};

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SINKSCOPE_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Runs headless Chromium on `page` with `extra` flags; returns stdout. Fails the test after
/// 120 s.
fn run_chromium(bin: &Path, page: &Path, extra: &[String], profile: &Path) -> String {
    let _ = std::fs::remove_dir_all(profile);
    std::fs::create_dir_all(profile).unwrap();
    let out_path = profile.with_extension("stdout");
    let stdout = std::fs::File::create(&out_path).unwrap();
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--mute-audio",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(format!("file://{}", page.canonicalize().unwrap().display()))
    .stdin(Stdio::null())
    .stdout(stdout)
    .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium exited with {status}");
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::read_to_string(&out_path).unwrap()
}

/// Fraction of pixels that are not (near) white, and the number of distinct colours.
fn screenshot_stats(path: &Path) -> (u32, u32, f64, usize) {
    let file = std::fs::File::open(path).unwrap();
    let mut dec = png::Decoder::new(std::io::BufReader::new(file));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let ch = info.color_type.samples();
    let mut inked = 0_usize;
    let mut colours = std::collections::HashSet::new();
    let px = &buf[..info.buffer_size()];
    for p in px.chunks(ch) {
        if p[..3].iter().any(|&c| c < 235) {
            inked += 1;
        }
        colours.insert((p[0], p[1], p[2]));
    }
    (info.width, info.height, inked as f64 / (px.len() / ch) as f64, colours.len())
}

#[test]
fn report_html_renders_in_headless_chromium_with_its_plots() {
    let Some(bin) = chromium() else {
        missing_tool(
            "chromium not installed (apt-get install chromium); report.html was not opened in a browser",
        );
        return;
    };
    let dir = fresh_dir("chromium_report");
    write_fixture(&dir);
    let out = render_run(&dir).unwrap();

    let dom = run_chromium(&bin, &out.report_html, &["--dump-dom".into()], &dir.join("chrome-profile-dom"));
    assert!(dom.contains("</html>"), "Chromium produced a DOM");
    assert_eq!(dom.matches("<svg").count(), 6, "the DOM has the six inline SVG plots");
    assert!(
        dom.matches("<path").count() + dom.matches("<polyline").count() > 20,
        "the plots have drawn lines"
    );
    for id in [
        "id=\"summary\"",
        "id=\"layer-table\"",
        "id=\"prompt-table\"",
        "id=\"plot-fig1\"",
        "id=\"plot-fig3\"",
        "id=\"plot-fig5\"",
        "id=\"plot-fig6\"",
    ] {
        assert!(dom.contains(id), "DOM has {id}");
    }

    let shot = dir.join("screenshot.png");
    run_chromium(
        &bin,
        &out.report_html,
        &[format!("--screenshot={}", shot.display()), "--window-size=1400,2600".into()],
        &dir.join("chrome-profile-shot"),
    );
    let (w, h, inked, colours) = screenshot_stats(&shot);
    assert_eq!((w, h), (1400, 2600));
    // Text, plot lines, phase shading and the viridis heatmap: a blank or unstyled page has
    // neither this much ink nor this many colours.
    assert!(inked > 0.08, "only {:.1} % of the page is not white", inked * 100.0);
    assert!(colours > 500, "only {colours} distinct colours");
    eprintln!("chromium screenshot: {} ({:.0} % inked, {colours} colours)", shot.display(), inked * 100.0);
}

#[test]
fn compare_html_renders_in_headless_chromium() {
    let Some(bin) = chromium() else {
        missing_tool(
            "chromium not installed (apt-get install chromium); compare.html was not opened in a browser",
        );
        return;
    };
    let root = fresh_dir("chromium_compare");
    let a = root.join("a");
    write_fixture(&a);
    let b = root.join("b");
    SyntheticRun { n_layers: 24, model_path: "models/Other-24L.gguf".into(), ..SyntheticRun::default() }
        .write(&b)
        .unwrap();
    let out = render_compare(&[a, b], &root.join("cmp")).unwrap();
    let dom = run_chromium(&bin, &out.compare_html, &["--dump-dom".into()], &root.join("chrome-profile-dom"));
    assert_eq!(dom.matches("<svg").count(), 2, "Figs. 1 and 6");
    assert!(dom.contains("id=\"compare-table\"") && dom.contains("Other-24L"));
    let shot = root.join("screenshot.png");
    run_chromium(
        &bin,
        &out.compare_html,
        &[format!("--screenshot={}", shot.display()), "--window-size=1400,1400".into()],
        &root.join("chrome-profile-shot"),
    );
    let (w, h, inked, colours) = screenshot_stats(&shot);
    assert_eq!((w, h), (1400, 1400));
    assert!(inked > 0.08 && colours > 300, "{:.1} % inked, {colours} colours", inked * 100.0);
}

#[test]
fn ablate_report_renders_in_headless_chromium() {
    let Some(bin) = chromium() else {
        missing_tool("chromium not installed (apt-get install chromium); the ablate report was not opened in a browser");
        return;
    };
    let dir = fresh_dir("chromium_ablate");
    let model =
        SyntheticRun { n_layers: 16, model_path: "models/Abl-16L.gguf".into(), ..SyntheticRun::default() };
    SyntheticAblate { model, one_by_one: true, ..SyntheticAblate::default() }.write(&dir).unwrap();
    let out = render_ablate(&dir).unwrap();

    let dom = run_chromium(&bin, &out.report_html, &["--dump-dom".into()], &dir.join("chrome-profile-dom"));
    assert!(dom.contains("</html>"), "Chromium produced a DOM");
    assert_eq!(dom.matches("<svg").count(), 2, "the DOM has Fig. 4 and the dose-response plot inline");
    assert!(
        dom.matches("<path").count() + dom.matches("<polyline").count() > 20,
        "the plots have drawn lines"
    );
    for id in [
        "id=\"summary\"",
        "id=\"plot-ablate_fig4\"",
        "id=\"plot-dose_response\"",
        "id=\"dose-table\"",
        "id=\"evidence-table\"",
        "id=\"mean-ablate-table\"",
        "id=\"one-by-one-table\"",
        "The compression valley disappears",
    ] {
        assert!(dom.contains(id), "DOM has {id}");
    }
    // The sub-run reports it links to open too.
    let sub = run_chromium(
        &bin,
        &dir.join("scale_0/report.html"),
        &["--dump-dom".into()],
        &dir.join("chrome-profile-sub"),
    );
    assert_eq!(sub.matches("<svg").count(), 6, "scale_0/report.html is a full profile report");

    let shot = dir.join("screenshot.png");
    run_chromium(
        &bin,
        &out.report_html,
        &[format!("--screenshot={}", shot.display()), "--window-size=1400,2400".into()],
        &dir.join("chrome-profile-shot"),
    );
    let (w, h, inked, colours) = screenshot_stats(&shot);
    assert_eq!((w, h), (1400, 2400));
    assert!(inked > 0.08, "only {:.1} % of the page is not white", inked * 100.0);
    assert!(colours > 300, "only {colours} distinct colours");
    eprintln!("chromium screenshot: {} ({:.0} % inked, {colours} colours)", shot.display(), inked * 100.0);
}

#[test]
fn lens_probe_and_tasks_pages_render_in_headless_chromium() {
    let Some(bin) = chromium() else {
        missing_tool("chromium not installed (apt-get install chromium); lens/probe/tasks pages were not opened in a browser");
        return;
    };
    let root = fresh_dir("chromium_tasks");
    let model =
        SyntheticRun { n_layers: 12, model_path: "models/T-12L.gguf".into(), ..SyntheticRun::default() };
    model.write(&root.join("p")).unwrap();
    SyntheticLens { model: model.clone() }.write(&root.join("l")).unwrap();
    SyntheticProbe { model, n_samples: 20, not_converged: vec![] }.write(&root.join("q")).unwrap();
    let lens = render_run(&root.join("l")).unwrap();
    let probe = render_run(&root.join("q")).unwrap();
    let tasks = render_tasks(
        &TaskDirs {
            profile: Some(&root.join("p")),
            lens: Some(&root.join("l")),
            probe: Some(&root.join("q")),
            mc: None,
        },
        &root.join("t"),
    )
    .unwrap();
    for (page, id) in [
        (&lens.report_html, "id=\"plot-lens\""),
        (&probe.report_html, "id=\"plot-probe\""),
        (&tasks.tasks_html, "id=\"plot-tasks_fig7\""),
    ] {
        let name = page.parent().and_then(|p| p.file_name()).unwrap().to_string_lossy().into_owned();
        let dom = run_chromium(&bin, page, &["--dump-dom".into()], &root.join(format!("chrome-{name}")));
        assert_eq!(dom.matches("<svg").count(), 1, "{}", page.display());
        assert!(dom.contains(id), "{} has {id}", page.display());
    }
}

/// compare.html with one model on two prompt sets: Figs. 1, 6 and 5 render, with the Fig. 5
/// table naming the input-adaptive heads.
#[test]
fn compare_fig5_renders_in_headless_chromium() {
    let Some(bin) = chromium() else {
        missing_tool(
            "chromium not installed (apt-get install chromium); compare.html was not opened in a browser",
        );
        return;
    };
    let root = fresh_dir("chromium_compare_fig5");
    let run = |name: &str, active: bool| {
        let d = root.join(name);
        SyntheticRun { dataset: Some(name.into()), head0_active: active, ..SyntheticRun::default() }
            .write(&d)
            .unwrap();
        d
    };
    let out =
        render_compare(&[run("gsm8k-like", false), run("wikitext-like", true)], &root.join("cmp")).unwrap();
    let dom = run_chromium(&bin, &out.compare_html, &["--dump-dom".into()], &root.join("chrome-profile-dom"));
    assert_eq!(dom.matches("<svg").count(), 3, "Figs. 1, 6 and 5");
    assert!(dom.contains("Fig. 5: sinks across prompt sets") && dom.contains("Input-adaptive heads"));
    let shot = root.join("screenshot.png");
    run_chromium(
        &bin,
        &out.compare_html,
        &[format!("--screenshot={}", shot.display()), "--window-size=1400,3000".into()],
        &root.join("chrome-profile-shot"),
    );
    let (_, _, inked, colours) = screenshot_stats(&shot);
    assert!(inked > 0.08 && colours > 300, "{:.1} % inked, {colours} colours", inked * 100.0);
}
