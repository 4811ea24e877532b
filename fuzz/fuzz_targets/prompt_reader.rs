//! The streaming prompt reader on raw bytes (caps and --limit drawn from the first two bytes).
//! The body is `sinkscope_io::fuzzing::prompt_reader`, shared with the stable mutation test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = sinkscope_io::fuzzing::prompt_reader(data) {
        panic!("invariant broken: {e}");
    }
});
