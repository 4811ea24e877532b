//! The instruction path sinkscope's kernels take on this CPU, decided once per process and
//! shared by every crate that has one (the packed matmul in `sinkscope-model`, GGUF
//! dequantisation in `sinkscope-io`, the log-softmax exp-sums in `sinkscope-metrics`), so that
//! [`ENV`] narrows all of them at once and a manifest's `kernel_path` names what every kernel
//! of the run used.
//!
//! Every path of every kernel gives the same bits (each crate tests its paths against its
//! portable loop); the paths differ only in speed.
//!
//! | path | instructions it needs |
//! |---|---|
//! | [`Path::Avx512`] | AVX-512 F, BW and VL, FMA, F16C (every AVX-512 CPU since Skylake-SP, and AMD Zen 4) |
//! | [`Path::Avx2`] | AVX2, FMA, F16C (Intel since Haswell, AMD since Zen) |
//! | [`Path::Portable`] | none |

use std::sync::OnceLock;

/// An instruction path (see the [crate docs](crate)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// AVX-512 F, BW, VL with FMA and F16C.
    Avx512,
    /// AVX2 with FMA and F16C.
    Avx2,
    /// Plain Rust, any CPU.
    Portable,
}

/// Environment variable that picks a narrower path (`avx512`, `avx2`, `portable`) than the
/// widest this CPU runs, for tests and A/B benchmarks. A path the CPU lacks, or a value not
/// understood, leaves the widest path in place ([`note`] says so).
pub const ENV: &str = "SINKSCOPE_KERNEL";

impl Path {
    /// Every path, widest first.
    pub const ALL: [Path; 3] = [Path::Avx512, Path::Avx2, Path::Portable];

    /// The name used by [`ENV`] and reported in manifests and benchmarks.
    pub fn name(self) -> &'static str {
        match self {
            Path::Avx512 => "avx512",
            Path::Avx2 => "avx2",
            Path::Portable => "portable",
        }
    }

    /// Whether this CPU has the path's instructions.
    pub fn supported(self) -> bool {
        match self {
            Path::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => {
                use std::arch::is_x86_feature_detected as has;
                has!("avx2") && has!("fma") && has!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => {
                use std::arch::is_x86_feature_detected as has;
                has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("fma") && has!("f16c")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The widest path this CPU runs.
    pub fn widest() -> Path {
        Path::ALL.into_iter().find(|p| p.supported()).unwrap_or(Path::Portable)
    }
}

/// The path [`ENV`] asks for, given the widest one the CPU runs, and why it is not what was
/// asked for, if it is not.
fn choose(want: Option<&str>, widest: Path, supported: impl Fn(Path) -> bool) -> (Path, Option<String>) {
    let Some(want) = want else { return (widest, None) };
    match Path::ALL.into_iter().find(|p| p.name() == want) {
        Some(p) if supported(p) => (p, None),
        Some(p) => {
            (widest, Some(format!("{ENV}={want}: this CPU lacks {}, using {}", p.name(), widest.name())))
        }
        None => (
            widest,
            Some(format!("{ENV}={want} is not one of avx512, avx2, portable; using {}", widest.name())),
        ),
    }
}

static CHOSEN: OnceLock<(Path, Option<String>)> = OnceLock::new();

fn chosen() -> &'static (Path, Option<String>) {
    CHOSEN.get_or_init(|| {
        let want = std::env::var(ENV).ok();
        choose(want.as_deref(), Path::widest(), Path::supported)
    })
}

/// The path of this process: the widest the CPU runs, or the narrower one [`ENV`] asks for
/// (read once, at the first call).
pub fn path() -> Path {
    chosen().0
}

/// Why [`path`] is not what [`ENV`] asked for, if it is not.
pub fn note() -> Option<&'static str> {
    chosen().1.as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The widest path is chosen unless a narrower supported one is asked for; a path the
    /// CPU lacks or an unknown name keeps the widest, with a note naming the value.
    #[test]
    fn env_narrows_to_a_supported_path_only() {
        let only_avx2 = |p: Path| p != Path::Avx512;
        assert_eq!(choose(None, Path::Avx2, only_avx2), (Path::Avx2, None));
        assert_eq!(choose(Some("portable"), Path::Avx2, only_avx2), (Path::Portable, None));
        assert_eq!(choose(Some("avx2"), Path::Avx2, only_avx2), (Path::Avx2, None));
        let (p, note) = choose(Some("avx512"), Path::Avx2, only_avx2);
        assert_eq!(p, Path::Avx2);
        assert_eq!(note.as_deref(), Some("SINKSCOPE_KERNEL=avx512: this CPU lacks avx512, using avx2"));
        let (p, note) = choose(Some("AVX2"), Path::Avx512, |_| true);
        assert_eq!(p, Path::Avx512);
        assert!(note.is_some_and(|n| n.contains("AVX2") && n.contains("not one of")));
    }

    /// A path that is supported implies every narrower one is, and the widest is supported.
    #[test]
    fn paths_nest() {
        assert!(Path::widest().supported());
        assert!(Path::Portable.supported());
        if Path::Avx512.supported() {
            assert!(Path::Avx2.supported());
        }
        assert!(path().supported());
    }
}
