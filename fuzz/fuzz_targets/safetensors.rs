//! safetensors: validate any bytes as a header + data image and read every tensor as f32.
//! The body is `sinkscope_io::fuzzing::safetensors`, shared with the stable mutation test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = sinkscope_io::fuzzing::safetensors(data) {
        panic!("invariant broken: {e}");
    }
});
