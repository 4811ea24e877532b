//! Prompt files: any bytes through the JSONL \/ plain-text reader.
//! The body is `sinkscope_io::fuzzing::prompts`, shared with the stable mutation test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = sinkscope_io::fuzzing::prompts(data) {
        panic!("invariant broken: {e}");
    }
});
