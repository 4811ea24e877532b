//! GGUF: parse any bytes, read every metadata key with every getter, resolve the model config
//! through the family declaration, dequantise every tensor, and run the strict loader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sinkscope_io::families;
use sinkscope_io::gguf::GgufFile;
use sinkscope_io::gguf_meta::GgufMeta;
use sinkscope_io::source::GgufSource;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.gguf");
    let Ok(f) = GgufFile::from_bytes(path, data.to_vec()) else { return };
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
        let _ = f.dequantize(&t.name);
        let n = t.n_rows();
        let _ = f.dequantize_rows(&t.name, n / 2..n);
        let _ = f.dequantize_rows(&t.name, n..n + 1);
    }
    let config = GgufMeta::new(&f, path).ok().and_then(|meta| {
        let decl = families::by_gguf_arch(&meta.arch)?;
        Some((decl, (decl.from_gguf)(&meta).ok()?))
    });
    if let Some((decl, config)) = config {
        let src = GgufSource::new(f, path);
        let _ = sinkscope_io::weights::load_weights(&src, &config, decl.gguf_tensors, &[]);
    }
});
