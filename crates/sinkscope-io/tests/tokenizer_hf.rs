//! `Tokenizer::from_hf_folder` against the `transformers` reference ids of
//! `tests/fixtures/tokenizer*/tokenizer_cases.json`, plus BOS rules and error messages.

mod tokenizer_support;

use std::path::{Path, PathBuf};

use sinkscope_io::tokenizer::{BosPolicy, Tokenizer, TokenizerError};
use tokenizer_support::{fixtures, load_cases, TestResult};

/// Every case: `Never` = `ids`, `Auto` = `ids_with_special_tokens`, tokens, decode.
fn check_folder_cases(folder: &str) -> TestResult {
    let tok = Tokenizer::from_hf_folder(&fixtures().join(folder))?;
    let cases = load_cases(folder)?;
    assert_eq!(cases.len(), 36, "{folder}: expected 36 cases");
    let mut failures = Vec::new();
    for case in &cases {
        let never = tok.encode(&case.text, BosPolicy::Never)?;
        let auto = tok.encode(&case.text, BosPolicy::Auto)?;
        let always = tok.encode(&case.text, BosPolicy::Always)?;
        if never.ids != case.ids {
            failures.push(format!("{:?}: Never ids {:?} != {:?}", case.text, never.ids, case.ids));
        }
        if auto.ids != case.ids_with_special_tokens {
            failures.push(format!(
                "{:?}: Auto ids {:?} != {:?}",
                case.text, auto.ids, case.ids_with_special_tokens
            ));
        }
        if always.ids != case.ids_with_special_tokens {
            failures.push(format!("{:?}: Always ids {:?}", case.text, always.ids));
        }
        if never.tokens != case.tokens {
            failures.push(format!("{:?}: tokens {:?} != {:?}", case.text, never.tokens, case.tokens));
        }
        assert!(!never.bos_prepended && auto.bos_prepended && always.bos_prepended);
        assert_eq!(auto.tokens.first().map(String::as_str), Some("<|bos|>"));
        let decoded = tok.decode(&case.ids)?;
        if decoded != case.decoded {
            failures.push(format!("{:?}: decoded {:?} != {:?}", case.text, decoded, case.decoded));
        }
    }
    assert!(failures.is_empty(), "{folder}: {} failure(s):\n{}", failures.len(), failures.join("\n"));
    Ok(())
}

#[test]
fn tiny_tokenizer_matches_transformers_on_all_cases() -> TestResult {
    check_folder_cases("tokenizer")
}

#[test]
fn qwen2_tokenizer_matches_transformers_on_all_cases() -> TestResult {
    check_folder_cases("tokenizer_qwen2")
}

#[test]
fn tiny_tokenizer_special_token_facts() -> TestResult {
    let tok = Tokenizer::from_hf_folder(&fixtures().join("tokenizer"))?;
    assert_eq!(tok.bos_id(), Some(0));
    assert_eq!(tok.bos_token(), Some("<|bos|>"));
    assert_eq!(tok.eos_id(), Some(1));
    assert_eq!(tok.eos_token(), Some("<|eos|>"));
    assert!(tok.add_bos_default());
    assert_eq!(tok.vocab_size(), 512);
    assert_eq!(tok.id_to_token(2).as_deref(), Some("<|pad|>"));
    assert_eq!(tok.id_to_token(223).as_deref(), Some("Ġ"));
    assert_eq!(tok.id_to_token(512), None);
    assert_eq!(tok.token_to_id("<|eos|>"), Some(1));
    assert!(tok.source().contains("tokenizer.json"));
    Ok(())
}

#[test]
fn readme_prompt_p0() -> TestResult {
    let tok = Tokenizer::from_hf_folder(&fixtures().join("tokenizer"))?;
    let enc = tok.encode("The quiet river carried small boats past the old mill.", BosPolicy::Auto)?;
    assert_eq!(enc.ids, [0, 374, 492, 413, 500, 415, 499, 311, 476, 263, 463, 310, 489, 16]);
    assert_eq!(enc.tokens[..3], ["<|bos|>", "The", "Ġquiet"]);
    Ok(())
}

/// A scratch folder holding the fixture `tokenizer.json` plus the given extra files.
struct ScratchFolder(PathBuf);

impl ScratchFolder {
    fn new(name: &str, files: &[(&str, &str)]) -> TestResult<Self> {
        let dir =
            std::env::temp_dir().join(format!("sinkscope-tokenizer-test-{}-{name}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        std::fs::copy(fixtures().join("tokenizer/tokenizer.json"), dir.join("tokenizer.json"))?;
        for (file, content) in files {
            std::fs::write(dir.join(file), content)?;
        }
        Ok(ScratchFolder(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn tokenizer_json_alone_takes_bos_from_the_post_processor() -> TestResult {
    let dir = ScratchFolder::new("alone", &[])?;
    let tok = Tokenizer::from_hf_folder(dir.path())?;
    assert_eq!(tok.bos_id(), Some(0));
    assert_eq!(tok.bos_token(), Some("<|bos|>"));
    assert_eq!(tok.eos_id(), None);
    assert!(tok.add_bos_default());
    assert_eq!(tok.encode("hello", BosPolicy::Auto)?.ids, [0, 260, 78, 383]);
    Ok(())
}

#[test]
fn add_bos_token_in_config_overrides_the_post_processor() -> TestResult {
    let dir = ScratchFolder::new(
        "nobos",
        &[(
            "tokenizer_config.json",
            r#"{"add_bos_token": false, "bos_token": {"content": "<|bos|>", "special": true}, "eos_token": "<|eos|>"}"#,
        )],
    )?;
    let tok = Tokenizer::from_hf_folder(dir.path())?;
    assert_eq!(tok.bos_id(), Some(0));
    assert!(!tok.add_bos_default());
    let auto = tok.encode("hello", BosPolicy::Auto)?;
    assert_eq!(auto.ids, [260, 78, 383]);
    assert!(!auto.bos_prepended);
    let always = tok.encode("hello", BosPolicy::Always)?;
    assert_eq!(always.ids, [0, 260, 78, 383]);
    assert!(always.bos_prepended);
    Ok(())
}

#[test]
fn special_tokens_map_is_used_when_config_is_silent() -> TestResult {
    let dir = ScratchFolder::new(
        "map",
        &[
            ("tokenizer_config.json", r#"{"model_max_length": 128}"#),
            ("special_tokens_map.json", r#"{"bos_token": "<|bos|>", "eos_token": {"content": "<|pad|>"}}"#),
        ],
    )?;
    let tok = Tokenizer::from_hf_folder(dir.path())?;
    assert_eq!(tok.bos_id(), Some(0));
    assert_eq!(tok.eos_id(), Some(2));
    assert!(tok.add_bos_default());
    Ok(())
}

#[test]
fn null_bos_means_no_bos() -> TestResult {
    let dir = ScratchFolder::new("nullbos", &[("tokenizer_config.json", r#"{"bos_token": null}"#)])?;
    let tok = Tokenizer::from_hf_folder(dir.path())?;
    assert_eq!(tok.bos_id(), None);
    assert!(!tok.add_bos_default());
    assert_eq!(tok.encode("hello", BosPolicy::Auto)?.ids, [260, 78, 383]);
    let err = tok.encode("hello", BosPolicy::Always).err();
    assert!(matches!(err, Some(TokenizerError::NoBosToken { .. })), "{err:?}");
    let message = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("always"), "{message}");
    Ok(())
}

#[test]
fn missing_tokenizer_json_names_the_path() {
    let dir = fixtures().join("no-such-tokenizer-folder");
    let err = Tokenizer::from_hf_folder(&dir).err();
    assert!(
        matches!(&err, Some(TokenizerError::NotFound { path }) if path.ends_with("tokenizer.json")),
        "{err:?}"
    );
    let message = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("no-such-tokenizer-folder") && message.contains("tokenizer.json"), "{message}");
}

#[test]
fn invalid_files_are_errors_naming_the_file() -> TestResult {
    let dir = ScratchFolder::new("badjson", &[])?;
    std::fs::write(dir.path().join("tokenizer.json"), "{not json")?;
    let message = Tokenizer::from_hf_folder(dir.path()).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("invalid tokenizer file") && message.contains("tokenizer.json"), "{message}");

    let dir = ScratchFolder::new("badconfig", &[("tokenizer_config.json", "[1,")])?;
    let message = Tokenizer::from_hf_folder(dir.path()).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("tokenizer_config.json"), "{message}");

    let dir = ScratchFolder::new("badfield", &[("tokenizer_config.json", r#"{"add_bos_token": "yes"}"#)])?;
    let message = Tokenizer::from_hf_folder(dir.path()).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("add_bos_token") && message.contains("tokenizer_config.json"), "{message}");

    let dir = ScratchFolder::new("unknownbos", &[("tokenizer_config.json", r#"{"bos_token": "<s>"}"#)])?;
    let message = Tokenizer::from_hf_folder(dir.path()).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("bos_token") && message.contains("<s>"), "{message}");
    Ok(())
}

#[test]
fn bos_policy_parses_and_serialises_lowercase() -> TestResult {
    for (text, policy) in [
        ("auto", BosPolicy::Auto),
        ("always", BosPolicy::Always),
        ("never", BosPolicy::Never),
        ("Always", BosPolicy::Always),
    ] {
        assert_eq!(text.parse::<BosPolicy>()?, policy);
    }
    assert!("sometimes".parse::<BosPolicy>().is_err());
    assert_eq!(BosPolicy::default(), BosPolicy::Auto);
    assert_eq!(BosPolicy::Never.to_string(), "never");
    assert_eq!(serde_json::to_string(&BosPolicy::Always)?, "\"always\"");
    assert_eq!(serde_json::from_str::<BosPolicy>("\"never\"")?, BosPolicy::Never);
    Ok(())
}

/// Every model folder present under `tests/fixtures/models/`: `Auto` reproduces the prompt ids
/// of its `reference.json` (BOS included), which are what the HF forward-pass references used.
#[test]
fn every_fixture_model_folder_reproduces_reference_prompt_ids() -> TestResult {
    let mut checked = Vec::new();
    let models = fixtures().join("models");
    if !models.is_dir() {
        return Err(format!("{} is missing", models.display()).into());
    }
    for entry in std::fs::read_dir(&models)? {
        let dir = entry?.path();
        if !dir.join("tokenizer.json").is_file() || !dir.join("reference.json").is_file() {
            continue;
        }
        let tok = Tokenizer::from_hf_folder(&dir)?;
        let reference: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json"))?)?;
        let prompts = reference["prompts"].as_array().cloned().unwrap_or_default();
        assert!(!prompts.is_empty(), "{}: no prompts", dir.display());
        for prompt in prompts {
            let text = prompt["text"].as_str().unwrap_or_default();
            let expected: Vec<u32> = serde_json::from_value(prompt["token_ids"].clone())?;
            let expected_tokens: Vec<String> = serde_json::from_value(prompt["tokens"].clone())?;
            let enc = tok.encode(text, BosPolicy::Auto)?;
            assert_eq!(enc.ids, expected, "{}: {text:?}", dir.display());
            assert_eq!(enc.tokens, expected_tokens, "{}: {text:?}", dir.display());
        }
        checked.push(dir);
    }
    assert!(!checked.is_empty(), "no model folder under {}", models.display());
    Ok(())
}
