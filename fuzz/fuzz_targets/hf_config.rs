//! Hugging Face config.json: any bytes as JSON into the raw config, then every family
//! declaration's resolution (which must reject, not panic on, absurd dimensions).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sinkscope_io::families::DECLS;
use sinkscope_io::hf_config::HfConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(cfg) = serde_json::from_slice::<HfConfig>(data) else { return };
    for decl in DECLS {
        if let Ok(c) = (decl.from_hf)(&cfg) {
            let _ = c.parameter_count();
            let _ = sinkscope_io::weights::required_roles(&c);
        }
    }
});
