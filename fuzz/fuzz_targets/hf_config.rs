//! Hugging Face config.json: any bytes as the raw config, then every family's resolution.
//! The body is `sinkscope_io::fuzzing::hf_config`, shared with the stable mutation test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = sinkscope_io::fuzzing::hf_config(data) {
        panic!("invariant broken: {e}");
    }
});
