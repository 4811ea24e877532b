//! Prompt files: any bytes through the JSONL / plain-text reader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(prompts) = sinkscope_io::prompts::parse_prompts(Path::new("fuzz.jsonl"), data) {
        assert!(!prompts.is_empty());
        for p in &prompts {
            assert!(!p.text.trim().is_empty() && !p.id.is_empty());
        }
    }
});
