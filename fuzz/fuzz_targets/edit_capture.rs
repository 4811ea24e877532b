//! `--edit` and `--capture` specs: parsing and the hook plan's JSON round trip.
//! The body is `sinkscope_io::fuzzing::edit_capture`, shared with the stable mutation test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = sinkscope_io::fuzzing::edit_capture(data) {
        panic!("invariant broken: {e}");
    }
});
