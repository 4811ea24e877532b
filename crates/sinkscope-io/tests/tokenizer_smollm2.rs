//! The real SmolLM2-135M-Instruct Q4_1 GGUF tokenizer (`tokenizer.ggml.pre = "smollm"`, vocab
//! 49152) against `transformers`' ids in `tests/fixtures/tokenizer_smollm2/tokenizer_cases.json`
//! (transformers and llama.cpp agree on all 36 cases).
//!
//! The GGUF is not in the repository: it is `<workspace>/models/SmolLM2-135M-Instruct.Q4_1.gguf`
//! after the setup step (or the path in `SINKSCOPE_SMOLLM2_GGUF`). Without it the test fails
//! with instructions: `scripts/test.sh` fetches it first.

mod tokenizer_support;

use std::path::PathBuf;

use sinkscope_io::tokenizer::{BosPolicy, GgufVocab, Tokenizer};
use tokenizer_support::{gguf_vocab_from_file, load_cases, workspace_root, TestResult};

const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn model_path() -> PathBuf {
    std::env::var_os("SINKSCOPE_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("models").join(MODEL_FILE))
}

/// Checks a SmolLM2 vocabulary, however it was read, against every case.
fn check_smollm2(vocab: &GgufVocab) -> TestResult {
    assert_eq!(vocab.model, "gpt2");
    assert_eq!(vocab.pre.as_deref(), Some("smollm"));
    let tok = Tokenizer::from_gguf_vocab(vocab)?;
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.bos_token(), Some("<|im_start|>"));
    assert_eq!(tok.eos_id(), Some(2));
    assert_eq!(tok.eos_token(), Some("<|im_end|>"));
    assert!(!tok.add_bos_default(), "tokenizer.ggml.add_bos_token is false");

    let cases = load_cases("tokenizer_smollm2")?;
    assert_eq!(cases.len(), 36);
    let mut failures = Vec::new();
    for case in &cases {
        let never = tok.encode(&case.text, BosPolicy::Never)?;
        let auto = tok.encode(&case.text, BosPolicy::Auto)?;
        if never.ids != case.ids {
            failures.push(format!("{:?}: ids {:?} != {:?}", case.text, never.ids, case.ids));
        }
        if auto.ids != case.ids_with_special_tokens || auto.bos_prepended {
            failures.push(format!(
                "{:?}: Auto ids {:?} != {:?}",
                case.text, auto.ids, case.ids_with_special_tokens
            ));
        }
        if case.llamacpp_ids.as_ref() != Some(&never.ids) {
            failures.push(format!("{:?}: llama.cpp ids {:?}", case.text, case.llamacpp_ids));
        }
        if never.tokens != case.tokens {
            failures.push(format!("{:?}: tokens {:?} != {:?}", case.text, never.tokens, case.tokens));
        }
        let decoded = tok.decode(&case.ids)?;
        if decoded != case.decoded {
            failures.push(format!("{:?}: decoded {:?} != {:?}", case.text, decoded, case.decoded));
        }
    }
    assert!(failures.is_empty(), "{} failure(s):\n{}", failures.len(), failures.join("\n"));

    let always = tok.encode("<|im_start|>user\nHi<|im_end|>", BosPolicy::Always)?;
    assert_eq!(always.ids[..2], [1, 1], "BOS prepended, then the literal <|im_start|>");
    assert_eq!(always.ids.last(), Some(&2));
    // `--bos eos` (Gu et al.): SmolLM2's EOS <|im_end|> (id 2) in BOS's place, then the text.
    let eos = tok.encode("Hi there", BosPolicy::Eos)?;
    let never = tok.encode("Hi there", BosPolicy::Never)?;
    assert_eq!(eos.ids[0], 2);
    assert_eq!(eos.ids[1..], never.ids[..]);
    assert_eq!(eos.tokens[0], "<|im_end|>");
    assert!(eos.bos_prepended);
    assert_eq!("eos".parse::<BosPolicy>(), Ok(BosPolicy::Eos));
    Ok(())
}

#[test]
fn smollm2_gguf_tokenizer_matches_transformers() -> TestResult {
    let path = model_path();
    if !path.is_file() {
        return Err(format!(
            "{} not found: run `cargo run -p sinkscope-cli -- fetch smollm2` (scripts/test.sh does), \
             or set SINKSCOPE_SMOLLM2_GGUF",
            path.display()
        )
        .into());
    }
    let vocab = gguf_vocab_from_file(&path)?;
    check_smollm2(&vocab)
}
