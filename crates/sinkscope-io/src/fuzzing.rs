//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the stable-toolchain mutation
//! test (`tests/mutation_smoke.rs`): each takes arbitrary bytes, drives one parser as far as
//! it goes, and returns `Err` only when an invariant breaks (a panic is the other failure).
//! Parse errors are the expected outcome for most inputs and count as success.

use crate::families::{self, DECLS};
use crate::gguf::GgufFile;
use crate::gguf_meta::GgufMeta;
use crate::hf_config::HfConfig;
use crate::source::{GgufSource, SafetensorsSource, TensorSource};
use std::path::Path;

/// GGUF: parse, read every metadata key with every getter, dequantise every tensor (whole and
/// by rows), resolve the config through the family declaration, run the strict loader.
pub fn gguf(data: &[u8]) -> Result<(), String> {
    let path = Path::new("fuzz.gguf");
    let Ok(f) = GgufFile::from_bytes(path, data.to_vec()) else { return Ok(()) };
    for key in f.metadata_keys() {
        let _ = f.get_u64(key);
        let _ = f.get_i64(key);
        let _ = f.get_u32(key);
        let _ = f.get_i32(key);
        let _ = f.get_usize(key);
        let _ = f.get_f32(key);
        let _ = f.get_f64(key);
        let _ = f.get_str(key);
        let _ = f.get_bool(key);
        let _ = f.get_str_array(key);
        let _ = f.get_i32_array(key);
        let _ = f.get_u32_array(key);
        let _ = f.get_f32_array(key);
        let _ = f.get_bool_array(key);
        if let Some(v) = f.get(key) {
            let _ = v.type_description();
        }
    }
    let _ = f.architecture();
    for t in f.tensors() {
        if let Ok(v) = f.dequantize(&t.name) {
            if v.len() as u64 != t.n_elements {
                return Err(format!("{}: {} values for {} elements", t.name, v.len(), t.n_elements));
            }
        }
        let n = t.n_rows();
        let _ = f.dequantize_rows(&t.name, n / 2..n);
        let _ = f.dequantize_rows(&t.name, n..n.saturating_add(1));
    }
    let resolved = GgufMeta::new(&f, path).ok().and_then(|meta| {
        let decl = families::by_gguf_arch(&meta.arch)?;
        Some((decl, (decl.from_gguf)(&meta).ok()?))
    });
    if let Some((decl, config)) = resolved {
        let src = GgufSource::new(f, path);
        let _ = crate::weights::load_weights(&src, &config, &decl.gguf_tensors(), &[]);
    }
    Ok(())
}

/// safetensors: validate the image and read every tensor as f32.
pub fn safetensors(data: &[u8]) -> Result<(), String> {
    let Ok(src) = SafetensorsSource::from_bytes(Path::new("fuzz.safetensors"), data.to_vec()) else {
        return Ok(());
    };
    for (name, meta) in src.tensors() {
        if let Ok(values) = src.read_f32(name) {
            let n: usize = meta.shape.iter().product();
            if values.len() != n {
                return Err(format!("{name}: {} values for shape {:?}", values.len(), meta.shape));
            }
        }
    }
    Ok(())
}

/// Prompt files: every accepted prompt has a non-empty id and text, ids are unique.
pub fn prompts(data: &[u8]) -> Result<(), String> {
    let Ok(prompts) = crate::prompts::parse_prompts(Path::new("fuzz.jsonl"), data) else { return Ok(()) };
    if prompts.is_empty() {
        return Err("Ok with no prompts".into());
    }
    let mut ids = std::collections::BTreeSet::new();
    for p in &prompts {
        if p.text.trim().is_empty() || p.id.is_empty() || !ids.insert(p.id.as_str()) {
            return Err(format!("bad prompt accepted: {p:?}"));
        }
    }
    Ok(())
}

/// Hugging Face `config.json`: the raw config, then every family's resolution; an accepted
/// config must pass `ModelConfig::validate`.
pub fn hf_config(data: &[u8]) -> Result<(), String> {
    let Ok(cfg) = serde_json::from_slice::<HfConfig>(data) else { return Ok(()) };
    for decl in DECLS {
        if let Ok(c) = (decl.from_hf)(&cfg) {
            c.validate().map_err(|e| format!("{:?} accepted an invalid config: {e}", decl.family))?;
            let _ = c.parameter_count();
            let _ = crate::weights::required_roles(&c);
        }
    }
    Ok(())
}

/// The streaming prompt reader on raw bytes, with caps and `--limit` taken from the first two
/// bytes (so the fuzzer reaches the cap and limit paths): an accepted file respects the caps
/// and the limit, its prompts are valid (non-empty, unique ids), its sha256 is that of all the
/// bytes, the BOM flag is right, and a limited read is a prefix of the unlimited one.
pub fn prompt_reader(data: &[u8]) -> Result<(), String> {
    use crate::prompts::{read_prompts_from, Caps};
    use sha2::{Digest, Sha256};
    let (Some(&a), Some(&b)) = (data.first(), data.get(1)) else { return Ok(()) };
    let body = data.get(2..).unwrap_or_default();
    let caps = Caps { max_line_bytes: 1 + usize::from(a), max_file_bytes: 1 + 16 * u64::from(b) };
    let limit = match a % 4 {
        0 => None,
        k => Some(usize::from(k)),
    };
    let path = Path::new("fuzz.jsonl");
    let Ok(f) = read_prompts_from(path, body, limit, caps) else { return Ok(()) };
    if body.len() as u64 > caps.max_file_bytes {
        return Err(format!("{} bytes accepted over the {} cap", body.len(), caps.max_file_bytes));
    }
    if f.prompts.is_empty() || limit.is_some_and(|l| f.prompts.len() > l) {
        return Err(format!("{} prompts for limit {limit:?}", f.prompts.len()));
    }
    let mut ids = std::collections::BTreeSet::new();
    for p in &f.prompts {
        if p.text.trim().is_empty() || p.id.is_empty() || !ids.insert(p.id.as_str()) {
            return Err(format!("bad prompt accepted: {p:?}"));
        }
    }
    let sha: String = Sha256::digest(body).iter().map(|x| format!("{x:02x}")).collect();
    if f.sha256 != sha {
        return Err("sha256 is not that of the whole input".into());
    }
    if f.bom != body.starts_with(b"\xEF\xBB\xBF") {
        return Err(format!("bom flag {} is wrong", f.bom));
    }
    if let Ok(all) = read_prompts_from(path, body, None, caps) {
        if all.prompts.get(..f.prompts.len()) != Some(&f.prompts[..]) {
            return Err("the limited read is not a prefix of the whole read".into());
        }
    }
    Ok(())
}

/// `--edit` and `--capture` specs: the bytes (as text) parsed as one edit and as a capture
/// list; whatever is accepted survives the JSON round trip of the hook plan it goes into.
pub fn edit_capture(data: &[u8]) -> Result<(), String> {
    use sinkscope_spec::{Edit, HookPlan, SitePattern};
    let text = String::from_utf8_lossy(data);
    let edits: Vec<Edit> = text.parse::<Edit>().into_iter().collect();
    let capture = SitePattern::parse_list(&text).unwrap_or_default();
    let plan = HookPlan { capture, edits };
    let json = serde_json::to_string(&plan).map_err(|e| format!("plan does not serialise: {e}"))?;
    let back: HookPlan =
        serde_json::from_str(&json).map_err(|e| format!("plan does not parse back: {e}: {json}"))?;
    if back != plan {
        return Err(format!("plan changed in the round trip: {json}"));
    }
    Ok(())
}
