//! GGUF: parse any bytes, read every metadata key with every getter, dequantise every tensor,
//! resolve the config through the family declaration, run the strict loader.
//! The body is `sinkscope_io::fuzzing::gguf`, shared with the stable mutation test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = sinkscope_io::fuzzing::gguf(data) {
        panic!("invariant broken: {e}");
    }
});
