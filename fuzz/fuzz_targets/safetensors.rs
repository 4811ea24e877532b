//! safetensors: validate any bytes as a header + data image and read every tensor as f32.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sinkscope_io::source::{SafetensorsSource, TensorSource};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = SafetensorsSource::from_bytes(Path::new("fuzz.safetensors"), data.to_vec()) else { return };
    let names: Vec<String> = src.tensors().keys().cloned().collect();
    for name in names {
        if let Ok(values) = src.read_f32(&name) {
            let meta = &src.tensors()[&name];
            assert_eq!(values.len(), meta.shape.iter().product::<usize>(), "{name}");
        }
    }
});
