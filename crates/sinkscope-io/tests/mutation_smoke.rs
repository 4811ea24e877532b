//! A fuzzing smoke test that needs no nightly toolchain: seeded random mutations of the
//! fixtures (bit flips, interesting integers written over counts and lengths, truncations,
//! deleted and duplicated chunks), biased towards the headers, through the same entry points
//! as the cargo-fuzz targets (`sinkscope_io::fuzzing`). Deterministic (fixed seeds) and
//! bounded (iterations and seconds per target); a panic or a broken invariant fails the test
//! and saves the input under `target/tmp/mutation_failures/`.
//!
//! `SINKSCOPE_MUTATION_ITERS=N` scales every target's iteration count to N (and lifts the
//! time bound) for a longer run; `SINKSCOPE_MUTATION_SEED=S` changes the seed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// One entry point of `sinkscope_io::fuzzing`.
type Target = fn(&[u8]) -> Result<(), String>;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    3,
    7,
    8,
    31,
    32,
    255,
    256,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    1 << 62,
    i64::MAX as u64,
    1 << 63,
    u64::MAX,
    u64::MAX - 31,
];

/// One to four mutations; positions land in `data[..hot]` four times out of five.
fn mutate(rng: &mut Rng, seed: &[u8], hot: usize) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        if d.is_empty() {
            d.push(rng.next() as u8);
            continue;
        }
        let span = if rng.below(5) == 0 { d.len() } else { hot.clamp(1, d.len()) };
        let pos = rng.below(span);
        match rng.below(9) {
            0 => d[pos] ^= 1 << rng.below(8),
            1 => d[pos] = rng.next() as u8,
            2 => d[pos] = [0u8, 1, 0x7f, 0x80, 0xff, b'{', b'"', b'\n', 0xc3][rng.below(9)],
            3 | 4 => {
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let width = [1usize, 2, 4, 8][rng.below(4)];
                let bytes = v.to_le_bytes();
                for (i, b) in bytes.iter().take(width).enumerate() {
                    if let Some(x) = d.get_mut(pos + i) {
                        *x = *b;
                    }
                }
            }
            5 => d.truncate(pos),
            6 => {
                let end = (pos + 1 + rng.below(64)).min(d.len());
                d.drain(pos..end);
            }
            7 => {
                let end = (pos + 1 + rng.below(64)).min(d.len());
                let chunk = d[pos..end].to_vec();
                let at = rng.below(d.len());
                d.splice(at..at, chunk);
            }
            _ => {
                let n = 1 + rng.below(16);
                let extra: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                d.splice(pos..pos, extra);
            }
        }
    }
    d
}

/// Runs `target` on `iters` mutations of the seeds (or until `budget` runs out).
fn smoke(name: &str, seeds: &[(Vec<u8>, usize)], iters: usize, budget: Duration, target: Target) {
    let base_seed: u64 =
        std::env::var("SINKSCOPE_MUTATION_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let (iters, budget) = match std::env::var("SINKSCOPE_MUTATION_ITERS").ok().and_then(|s| s.parse().ok()) {
        Some(n) => (n, Duration::MAX),
        None => (iters, budget),
    };
    let mut rng = Rng(base_seed
        ^ name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)));
    let start = Instant::now();
    let mut done = 0;
    for i in 0..iters {
        if start.elapsed() > budget {
            break;
        }
        let (seed, hot) = &seeds[i % seeds.len()];
        let input = mutate(&mut rng, seed, *hot);
        let outcome = std::panic::catch_unwind(|| target(&input));
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(p) => Some(
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
            ),
        };
        if let Some(why) = failure {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mutation_failures");
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("{name}-{i}.bin"));
            std::fs::write(&file, &input).unwrap();
            panic!(
                "{name}: iteration {i} (seed {base_seed:#x}) failed: {why}; input saved to {}",
                file.display()
            );
        }
        done += 1;
    }
    eprintln!("{name}: {done} mutated inputs in {:.1}s, no panic", start.elapsed().as_secs_f64());
    assert!(done >= 100.min(iters), "{name}: only {done} iterations ran");
}

/// Where a GGUF's header ends (the data section starts), from the real parser.
fn gguf_header_len(bytes: &[u8]) -> usize {
    let f = sinkscope_io::gguf::GgufFile::from_bytes("seed.gguf", bytes.to_vec()).unwrap();
    f.data_offset() as usize
}

/// GGUF: the header of every fixture family's f32 file plus a quantised one.
#[test]
fn gguf_mutations_never_panic() {
    let mut seeds = Vec::new();
    for f in [
        "llama/llama-q4_0.gguf",
        "gpt2/gpt2-q8_0.gguf",
        "gpt_neox/gpt_neox-q8_0.gguf",
        "qwen2/qwen2-q8_0.gguf",
    ] {
        let p = fixtures().join("gguf").join(f);
        if let Ok(b) = std::fs::read(&p) {
            let hot = gguf_header_len(&b);
            seeds.push((b, hot));
        }
    }
    assert!(!seeds.is_empty());
    smoke("gguf", &seeds, 20_000, Duration::from_secs(15), sinkscope_io::fuzzing::gguf);
}

/// safetensors: the llama fixture's weights, mutations mostly in the JSON header.
#[test]
fn safetensors_mutations_never_panic() {
    let b = std::fs::read(fixtures().join("models/llama/model.safetensors")).unwrap();
    let hot = 8 + u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    smoke("safetensors", &[(b, hot)], 20_000, Duration::from_secs(10), sinkscope_io::fuzzing::safetensors);
}

/// Prompt files in both formats.
#[test]
fn prompt_mutations_never_panic() {
    let seeds: Vec<(Vec<u8>, usize)> = [
        &b"{\"id\": \"a\", \"text\": \"hello world\"}\n{\"text\": \"second\"}\n\n{\"id\": 7, \"text\": \"x\"}\n"[..],
        b"one prompt\r\nanother one\n",
        "{\"id\": \"\u{e9}\", \"text\": \"caf\u{e9} \u{2615} \\u00e9\"}\n".as_bytes(),
    ]
    .iter()
    .map(|s| (s.to_vec(), s.len()))
    .collect();
    smoke("prompts", &seeds, 100_000, Duration::from_secs(5), sinkscope_io::fuzzing::prompts);
}

/// The streaming prompt reader with small caps and limits (drawn from the first two bytes).
#[test]
fn prompt_reader_mutations_never_panic() {
    let seeds: Vec<(Vec<u8>, usize)> = [
        &b"\x41\xff{\"id\": \"a\", \"text\": \"hello\"}\n{\"text\": \"two\"}\n"[..],
        b"\x40\xff\xef\xbb\xbf{\"text\": \"x\"}\n",
        b"\x03\x10abcdefgh\r\nok\n",
    ]
    .iter()
    .map(|s| (s.to_vec(), s.len()))
    .collect();
    smoke("prompt_reader", &seeds, 50_000, Duration::from_secs(5), sinkscope_io::fuzzing::prompt_reader);
}

/// `--edit` and `--capture` specs.
#[test]
fn edit_capture_mutations_never_panic() {
    let seeds: Vec<(Vec<u8>, usize)> = [
        &b"blocks.11.hook_mlp_out:pos=0:zero"[..],
        b"blocks.3.attn.hook_z:head=1,2:pos=0..4:scale=0.5",
        b"hook_embed:pos=0:dim=17:set=0",
        b"hook_embed,blocks.*.hook_resid_post,blocks.0.attn.hook_pattern",
    ]
    .iter()
    .map(|s| (s.to_vec(), s.len()))
    .collect();
    smoke("edit_capture", &seeds, 50_000, Duration::from_secs(5), sinkscope_io::fuzzing::edit_capture);
}

/// config.json of every fixture family.
#[test]
fn hf_config_mutations_never_panic() {
    let seeds: Vec<(Vec<u8>, usize)> = ["llama", "qwen2", "gpt2", "gpt_neox"]
        .iter()
        .filter_map(|f| std::fs::read(fixtures().join("models").join(f).join("config.json")).ok())
        .map(|b| {
            let n = b.len();
            (b, n)
        })
        .collect();
    assert_eq!(seeds.len(), 4);
    smoke("hf_config", &seeds, 50_000, Duration::from_secs(5), sinkscope_io::fuzzing::hf_config);
}

/// Every input the fuzzers ever broke on (`fuzz/regressions/<target>/`) runs cleanly and fast.
#[test]
fn fuzz_regressions_stay_fixed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions");
    let targets: [(&str, Target); 6] = [
        ("gguf", sinkscope_io::fuzzing::gguf),
        ("safetensors", sinkscope_io::fuzzing::safetensors),
        ("prompts", sinkscope_io::fuzzing::prompts),
        ("hf_config", sinkscope_io::fuzzing::hf_config),
        ("prompt_reader", sinkscope_io::fuzzing::prompt_reader),
        ("edit_capture", sinkscope_io::fuzzing::edit_capture),
    ];
    let mut n = 0;
    for (name, target) in targets {
        let Ok(entries) = std::fs::read_dir(root.join(name)) else { continue };
        for e in entries {
            let path = e.unwrap().path();
            let input = std::fs::read(&path).unwrap();
            let start = Instant::now();
            target(&input).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{} took {:?}",
                path.display(),
                start.elapsed()
            );
            n += 1;
        }
    }
    assert!(n >= 2, "the regression inputs are missing ({n})");
}
