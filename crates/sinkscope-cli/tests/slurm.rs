//! A sweep on a real Slurm cluster: starts munged, slurmctld and slurmd for one node on this
//! machine (Debian's packages; its own slurm.conf in a temp folder; every daemon started in
//! the foreground and stopped by its PID when the test ends, whatever happens), runs a sweep
//! of SmolLM2 over 4 shards and of the 3-step synthetic checkpoint series through
//! `--executor slurm`, and checks every merged run against an unsharded local `profile`
//! byte for byte (and the trajectory of the series).
//!
//! Runs under `scripts/test.sh` (which installs the packages and sets SINKSCOPE_SLURM_TEST=1)
//! as root; otherwise it is skipped, loudly. Under CI=true a missing Slurm, root or model
//! fails it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/checkpoints.rs"]
mod checkpoints;
#[path = "support/compare.rs"]
mod compare;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skips (loudly) or, under CI=true, fails.
fn unavailable(why: &str) {
    if ci() {
        panic!("CI=true: the Slurm sweep test cannot run: {why}");
    }
    eprintln!("SKIPPED: the Slurm sweep test: {why}");
}

/// The daemons of a one-node cluster, stopped by PID on drop.
struct Cluster {
    dir: PathBuf,
    /// (name, child) in start order: munged, slurmctld, slurmd.
    daemons: Vec<(&'static str, Child)>,
    created_run_munge: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Stop in reverse order: slurmd, slurmctld, munged; TERM, then KILL after 10 s.
        while let Some((name, mut child)) = self.daemons.pop() {
            let pid = child.id() as libc::pid_t;
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            let start = Instant::now();
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if start.elapsed() < Duration::from_secs(10) => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {
                        eprintln!("{name} (pid {pid}) did not stop on SIGTERM: SIGKILL");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        if self.created_run_munge {
            let _ = std::fs::remove_dir_all("/run/munge");
        }
        let _ = &self.dir; // the temp folder stays under CARGO_TARGET_TMPDIR for the logs
    }
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn start(name: &'static str, cmd: &mut Command, log: &Path) -> (&'static str, Child) {
    use std::os::unix::process::CommandExt;
    let f = std::fs::File::create(log).unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name}: {e}"));
    (name, child)
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(secs), "{what} did not happen within {secs} s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_cluster(dir: &Path) -> Cluster {
    let host = run(Command::new("hostname").arg("-s")).trim().to_string();
    let node = run(Command::new("/usr/sbin/slurmd").arg("-C")).lines().next().unwrap().to_string();
    // RealMemory a bit below what slurmd measured.
    let node: String = node
        .split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some(("RealMemory", v)) => format!("RealMemory={}", v.parse::<u64>().unwrap() * 9 / 10),
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    for sub in ["state", "spool", "log", "out"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let d = dir.display();
    let conf = format!(
        "ClusterName=ci\nSlurmctldHost={host}\nSlurmUser=root\nAuthType=auth/munge\nStateSaveLocation={d}/state\n\
         SlurmdSpoolDir={d}/spool\nSlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
         SlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd.log\nProctrackType=proctrack/linuxproc\n\
         TaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n\
         MpiDefault=none\nMailProg=/bin/true\nSelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n\
         ReturnToService=2\nKillWait=5\n{node} State=UNKNOWN\nPartitionName=debug Nodes=ALL Default=YES MaxTime=10 State=UP\n"
    );
    std::fs::write(dir.join("slurm.conf"), conf).unwrap();
    let mut cluster = Cluster { dir: dir.to_path_buf(), daemons: Vec::new(), created_run_munge: false };
    if !Path::new("/run/munge").exists() {
        cluster.created_run_munge = true;
    }
    run(Command::new("install").args(["-d", "-o", "munge", "-g", "munge", "-m0755", "/run/munge"]));
    let socket = Path::new("/run/munge/munge.socket.2");
    // A munged that the system already runs (e.g. started by the package install) is used as
    // it is, and left running; otherwise ours is started and stopped by its PID.
    let munge_works = || {
        Command::new("sh")
            .args(["-c", "munge -n | unmunge"])
            .output()
            .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Success"))
    };
    if socket.exists() && munge_works() {
        eprintln!("using the munged already running on this machine");
    } else {
        assert!(!socket.exists(), "a stale munge socket (/run/munge/munge.socket.2) is in the way");
        cluster.daemons.push(start(
            "munged",
            Command::new("setpriv").args([
                "--reuid=munge",
                "--regid=munge",
                "--init-groups",
                "/usr/sbin/munged",
                "-F",
            ]),
            &dir.join("log/munged.out"),
        ));
        wait_for("munged's socket", 30, || socket.exists());
        assert!(munge_works(), "munge -n | unmunge fails with the munged just started");
    }
    let conf = dir.join("slurm.conf");
    cluster.daemons.push(start(
        "slurmctld",
        Command::new("/usr/sbin/slurmctld").args(["-D", "-i"]).env("SLURM_CONF", &conf),
        &dir.join("log/slurmctld.out"),
    ));
    cluster.daemons.push(start(
        "slurmd",
        Command::new("/usr/sbin/slurmd").arg("-D").env("SLURM_CONF", &conf),
        &dir.join("log/slurmd.out"),
    ));
    wait_for("the node to become idle", 60, || {
        Command::new("sinfo")
            .args(["-h", "-N", "-o", "%T"])
            .env("SLURM_CONF", &conf)
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle")
    });
    cluster
}

fn sinkscope(args: &[&str], conf: Option<&Path>) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sinkscope"));
    c.args(args).env_remove("SINKSCOPE_AVAILABLE_MEMORY");
    if let Some(conf) = conf {
        c.env("SLURM_CONF", conf);
    }
    c.output().unwrap()
}

fn ok(o: &std::process::Output) {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn sweep_on_a_real_slurm_cluster() {
    if std::env::var("SINKSCOPE_SLURM_TEST").as_deref() != Ok("1") && !ci() {
        eprintln!("SKIPPED: the Slurm sweep test runs under scripts/test.sh (SINKSCOPE_SLURM_TEST=1)");
        return;
    }
    for bin in [
        "/usr/sbin/slurmctld",
        "/usr/sbin/slurmd",
        "/usr/sbin/munged",
        "/usr/bin/sbatch",
        "/usr/bin/squeue",
        "/usr/bin/sinfo",
    ] {
        if !Path::new(bin).exists() {
            return unavailable(&format!(
                "{bin} is missing (apt-get install slurmctld slurmd slurm-client munge)"
            ));
        }
    }
    if unsafe { libc::geteuid() } != 0 {
        return unavailable("it must run as root (it starts munged as the munge user)");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let smollm2 = root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !smollm2.is_file() {
        return unavailable(
            "models/SmolLM2-135M-Instruct.Q4_1.gguf is missing (sinkscope fetch smollm2 --dir models)",
        );
    }
    let t0 = Instant::now();
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("slurm-sweep");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let cluster = start_cluster(&d.join("cluster"));
    let conf = cluster.dir.join("slurm.conf");
    eprintln!("cluster up in {:.1}s", t0.elapsed().as_secs_f64());

    checkpoints::write_series(&d.join("ckpt"));
    let prompts = "The cat sat on the mat.\nRivers carry boats past old mills.\nTwo plus two is four.\nQuiet children read.\n";
    std::fs::write(d.join("prompts.txt"), prompts).unwrap();
    let plan = d.join("plan.toml");
    std::fs::write(
        &plan,
        format!(
            "name = \"ci\"\nout = \"out\"\nshards = 4\ncommands = [\"profile\"]\n\
             [[models]]\npath = \"{}\"\nlabel = \"smollm2\"\n[[models]]\npath = \"ckpt/step*\"\n\
             [[data]]\nprompts = \"prompts.txt\"\nlabel = \"p\"\n[slurm]\npartition = \"debug\"\ntime = \"00:05:00\"\n",
            smollm2.display()
        ),
    )
    .unwrap();
    let o = sinkscope(&["sweep", plan.to_str().unwrap(), "--executor", "slurm"], Some(&conf));
    let logs = d.join("out/logs");
    if !o.status.success() {
        for e in std::fs::read_dir(&logs).into_iter().flatten().flatten() {
            eprintln!(
                "--- {}\n{}",
                e.path().display(),
                std::fs::read_to_string(e.path()).unwrap_or_default()
            );
        }
    }
    ok(&o);
    let script = std::fs::read_to_string(d.join("out/slurm/sweep-0.sbatch")).unwrap();
    assert!(
        script.contains("#SBATCH --array=0-15\n") && script.contains("#SBATCH --partition=debug\n"),
        "{script}"
    );
    eprintln!("sweep on Slurm done at {:.1}s", t0.elapsed().as_secs_f64());

    // A task killed mid-way (prompts.jsonl cut with a torn last line, status running) is
    // resubmitted alone (`--only`) and resumes: the merged run keeps the same bytes.
    let id = "smollm2.p.profile.2of4";
    let task = d.join("out/tasks").join(id);
    let merged = d.join("out/runs/smollm2.p.profile");
    let before = std::fs::read(merged.join("metrics.json")).unwrap();
    std::fs::write(task.join("prompts.jsonl"), "{\"id\": \"3").unwrap();
    std::fs::remove_file(task.join("metrics.json")).unwrap();
    let mut m = compare::manifest(&task);
    m["status"] = "running".into();
    std::fs::write(task.join("manifest.json"), m.to_string()).unwrap();
    let o = sinkscope(&["sweep", plan.to_str().unwrap(), "--executor", "slurm", "--only", id], Some(&conf));
    ok(&o);
    let script = std::fs::read_to_string(d.join("out/slurm/sweep-1.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-0\n") && script.contains(id), "{script}");
    assert_eq!(compare::manifest(&task)["status"], "complete");
    assert_eq!(
        std::fs::read(merged.join("metrics.json")).unwrap(),
        before,
        "the resubmitted task changed the result"
    );
    eprintln!("resubmission done at {:.1}s", t0.elapsed().as_secs_f64());
    drop(cluster);

    // Every merged run equals a local unsharded profile, byte for byte.
    let mut models = vec![("smollm2".to_string(), smollm2.clone())];
    for (step, _) in checkpoints::SERIES {
        models.push((format!("ckpt-step{step}"), d.join(format!("ckpt/step{step}"))));
    }
    for (label, path) in &models {
        let full = d.join(format!("full-{label}"));
        ok(&sinkscope(
            &[
                "profile",
                path.to_str().unwrap(),
                "--prompts",
                d.join("prompts.txt").to_str().unwrap(),
                "--quiet",
                "--out",
                full.to_str().unwrap(),
            ],
            None,
        ));
        compare::assert_same_run(&full, &d.join("out/runs").join(format!("{label}.p.profile")));
    }
    compare::roundtrip::<sinkscope_report::schema::SweepFile>(&d.join("out/sweep.json"));
    compare::roundtrip::<sinkscope_report::schema::TrajectoryFile>(
        &d.join("out/trajectory/ckpt.p/trajectory.json"),
    );
    let t: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("out/trajectory/ckpt.p/trajectory.json")).unwrap())
            .unwrap();
    assert_eq!(t["crossings"]["massive_activation"], 1000, "{t}");
    eprintln!("Slurm sweep test done in {:.1}s", t0.elapsed().as_secs_f64());
}
