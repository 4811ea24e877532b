//! `Tokenizer::from_gguf_vocab` on the vocabularies of the fixture GGUF files
//! (`tests/fixtures/gguf/{llama,qwen2}/*-f32.gguf`), against `transformers`' ids.

mod tokenizer_support;

use sinkscope_io::tokenizer::{
    supported_gguf_pre_tokenizers, BosPolicy, GgufVocab, Tokenizer, TokenizerError,
};
use tokenizer_support::{fixtures, gguf_vocab_from_file, load_cases, TestResult};

const PROMPTS: [(&str, &str); 3] = [
    ("p0", "The quiet river carried small boats past the old mill."),
    ("p1", "def add(a, b):\n    return a + b  # sum\n"),
    ("p2", "x=1234 € café ☕ 2024"),
];

fn fixture_vocab(family: &str) -> TestResult<GgufVocab> {
    gguf_vocab_from_file(&fixtures().join("gguf").join(family).join(format!("{family}-f32.gguf")))
}

/// All cases: `Never` = transformers' `ids`; returns the texts where llama.cpp's ids differ
/// from ours (the fixture records llama.cpp's ids for the same GGUF).
fn check_gguf_cases(family: &str, cases_folder: &str) -> TestResult<Vec<String>> {
    let vocab = fixture_vocab(family)?;
    let tok = Tokenizer::from_gguf_vocab(&vocab)?;
    assert_eq!(tok.bos_id(), Some(0));
    assert_eq!(tok.eos_id(), Some(1));
    assert!(tok.add_bos_default(), "tokenizer.ggml.add_bos_token is true");
    assert_eq!(tok.vocab_size(), 512);
    let cases = load_cases(cases_folder)?;
    assert_eq!(cases.len(), 36);
    let mut failures = Vec::new();
    let mut llamacpp_differs = Vec::new();
    for case in &cases {
        let never = tok.encode(&case.text, BosPolicy::Never)?;
        if never.ids != case.ids {
            failures.push(format!("{:?}: ids {:?} != transformers {:?}", case.text, never.ids, case.ids));
        }
        if never.tokens != case.tokens {
            failures.push(format!("{:?}: tokens {:?} != {:?}", case.text, never.tokens, case.tokens));
        }
        let auto = tok.encode(&case.text, BosPolicy::Auto)?;
        let mut expected = vec![0];
        expected.extend_from_slice(&case.ids);
        if auto.ids != expected || !auto.bos_prepended {
            failures.push(format!("{:?}: Auto ids {:?}", case.text, auto.ids));
        }
        let decoded = tok.decode(&case.ids)?;
        if decoded != case.decoded {
            failures.push(format!("{:?}: decoded {:?} != {:?}", case.text, decoded, case.decoded));
        }
        if case.llamacpp_ids.as_ref() != Some(&never.ids) {
            llamacpp_differs.push(case.text.clone());
        }
    }
    assert!(failures.is_empty(), "{family}: {} failure(s):\n{}", failures.len(), failures.join("\n"));
    Ok(llamacpp_differs)
}

#[test]
fn llama_gguf_vocab_matches_transformers_and_llamacpp_on_all_cases() -> TestResult {
    let llamacpp_differs = check_gguf_cases("llama", "tokenizer")?;
    assert!(llamacpp_differs.is_empty(), "{llamacpp_differs:?}");
    Ok(())
}

#[test]
fn qwen2_gguf_vocab_matches_transformers_on_all_cases() -> TestResult {
    // transformers (Qwen2Tokenizer) applies NFC, llama.cpp does not: the one case with a
    // combining accent is where llama.cpp differs (recorded in the fixture); we follow transformers.
    let llamacpp_differs = check_gguf_cases("qwen2", "tokenizer_qwen2")?;
    assert_eq!(llamacpp_differs, ["cafe\u{301} (combining accent)"]);
    Ok(())
}

/// Every fixture GGUF present under `tests/fixtures/gguf/` (all carry the shared vocabulary,
/// with `tokenizer.ggml.pre` "gpt-2" or "qwen2"): all cases of the matching `tokenizer_cases.json`,
/// and the p0–p2 ids `AutoTokenizer.from_pretrained(dir, gguf_file=...)` produced
/// (`files.<family>-f32.gguf.transformers_gguf_tokenizer.prompts` of reference.json, where
/// transformers could load the file).
#[test]
fn every_fixture_gguf_vocab_reproduces_transformers() -> TestResult {
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(fixtures().join("gguf"))? {
        let dir = entry?.path();
        let Some(family) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        let gguf = dir.join(format!("{family}-f32.gguf"));
        if !gguf.is_file() {
            continue;
        }
        let vocab = gguf_vocab_from_file(&gguf)?;
        let tok = Tokenizer::from_gguf_vocab(&vocab)?;
        let cases_folder = match vocab.pre.as_deref() {
            Some("qwen2") => "tokenizer_qwen2",
            _ => "tokenizer",
        };
        for case in load_cases(cases_folder)? {
            assert_eq!(tok.encode(&case.text, BosPolicy::Never)?.ids, case.ids, "{family}: {:?}", case.text);
        }
        let reference: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json"))?)?;
        let prompts =
            &reference["files"][format!("{family}-f32.gguf")]["transformers_gguf_tokenizer"]["prompts"];
        for (key, text) in PROMPTS {
            let Some(ids) = prompts.get(key).and_then(|p| p.get("ids")) else {
                continue;
            };
            let expected: Vec<u32> = serde_json::from_value(ids.clone())?;
            assert_eq!(tok.encode(text, BosPolicy::Auto)?.ids, expected, "{family} {key}");
        }
        checked.push(family);
    }
    checked.sort();
    assert!(
        checked.iter().any(|f| f == "llama") && checked.iter().any(|f| f == "qwen2"),
        "fixture GGUFs found: {checked:?}"
    );
    Ok(())
}

#[test]
fn gguf_vocab_without_add_bos_flag_uses_llamacpp_default() -> TestResult {
    let mut vocab = fixture_vocab("llama")?;
    vocab.add_bos = None;
    let tok = Tokenizer::from_gguf_vocab(&vocab)?;
    assert!(!tok.add_bos_default(), "gpt-2 pre: llama.cpp default is no BOS");
    assert_eq!(tok.encode("hello", BosPolicy::Auto)?.ids, [260, 78, 383]);
    assert_eq!(tok.encode("hello", BosPolicy::Always)?.ids, [0, 260, 78, 383]);

    vocab.pre = Some("llama-bpe".to_string());
    assert!(Tokenizer::from_gguf_vocab(&vocab)?.add_bos_default());

    vocab.bos_id = None;
    let message = Tokenizer::from_gguf_vocab(&vocab).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("tokenizer.ggml.add_bos_token"), "{message}");

    vocab.add_bos = Some(false);
    let tok = Tokenizer::from_gguf_vocab(&vocab)?;
    assert!(matches!(tok.encode("hello", BosPolicy::Always), Err(TokenizerError::NoBosToken { .. })));
    Ok(())
}

#[test]
fn every_supported_pre_tokenizer_builds_and_encodes() -> TestResult {
    let mut vocab = fixture_vocab("llama")?;
    let cases = load_cases("tokenizer")?;
    // The Qwen pipelines normalise to NFC first; their expected round trip is transformers'
    // decode of the qwen2 fixture (same texts, same order).
    let nfc_cases = load_cases("tokenizer_qwen2")?;
    let names = supported_gguf_pre_tokenizers();
    assert!(names.len() >= 40, "{names:?}");
    for pre in names {
        vocab.pre = Some(pre.to_string());
        let tok = Tokenizer::from_gguf_vocab(&vocab).map_err(|e| format!("{pre}: {e}"))?;
        let nfc = matches!(pre, "qwen2" | "qwen35");
        for (case, nfc_case) in cases.iter().zip(&nfc_cases) {
            let enc = tok.encode(&case.text, BosPolicy::Never).map_err(|e| format!("{pre}: {e}"))?;
            // Whatever the split, byte-level BPE must round-trip the text.
            let expected = if nfc { &nfc_case.decoded } else { &case.text };
            assert_eq!(&tok.decode(&enc.ids)?, expected, "pre {pre}");
        }
    }
    Ok(())
}

#[test]
fn smollm_pre_splits_digits_one_by_one() -> TestResult {
    let mut vocab = fixture_vocab("llama")?;
    // "12" is a token of the tiny vocabulary (merge "1 2").
    let gpt2 = Tokenizer::from_gguf_vocab(&vocab)?;
    assert_eq!(gpt2.encode("x=1234", BosPolicy::Never)?.ids, [90, 31, 372, 21, 22]);
    vocab.pre = Some("smollm".to_string());
    let smollm = Tokenizer::from_gguf_vocab(&vocab)?;
    assert_eq!(smollm.encode("x=1234", BosPolicy::Never)?.ids, [90, 31, 19, 20, 21, 22]);
    Ok(())
}

#[test]
fn unknown_pre_tokenizer_is_an_error_listing_the_supported_ones() -> TestResult {
    let mut vocab = fixture_vocab("llama")?;
    vocab.pre = Some("no-such-pre".to_string());
    let err = Tokenizer::from_gguf_vocab(&vocab).err();
    assert!(
        matches!(&err, Some(TokenizerError::UnsupportedGgufPre { pre, .. }) if pre == "no-such-pre"),
        "{err:?}"
    );
    let message = err.map(|e| e.to_string()).unwrap_or_default();
    for needle in ["tokenizer.ggml.pre", "no-such-pre", "gpt-2", "smollm", "qwen2", "llama-bpe"] {
        assert!(message.contains(needle), "{needle} not in: {message}");
    }
    Ok(())
}

#[test]
fn unsupported_models_are_errors_naming_the_field() -> TestResult {
    let mut vocab = fixture_vocab("llama")?;
    vocab.model = "llama".to_string();
    let message = Tokenizer::from_gguf_vocab(&vocab).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.starts_with("unsupported tokenizer model 'llama' in GGUF (field tokenizer.ggml.model)"),
        "{message}"
    );
    vocab.model = "bert".to_string();
    let message = Tokenizer::from_gguf_vocab(&vocab).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("'bert'"), "{message}");
    Ok(())
}

#[test]
fn inconsistent_metadata_is_rejected() -> TestResult {
    let good = fixture_vocab("llama")?;

    let mut v = good.clone();
    v.bos_id = Some(512);
    let message = Tokenizer::from_gguf_vocab(&v).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("tokenizer.ggml.bos_token_id") && message.contains("512"), "{message}");

    let mut v = good.clone();
    v.token_types.pop();
    let message = Tokenizer::from_gguf_vocab(&v).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("tokenizer.ggml.token_type"), "{message}");

    let mut v = good.clone();
    v.merges.push("nospace".to_string());
    let message = Tokenizer::from_gguf_vocab(&v).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("tokenizer.ggml.merges"), "{message}");

    let mut v = good.clone();
    v.tokens[5] = v.tokens[6].clone();
    let message = Tokenizer::from_gguf_vocab(&v).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("tokenizer.ggml.tokens") && message.contains("duplicate"), "{message}");

    let mut v = good;
    v.merges.clear();
    let message = Tokenizer::from_gguf_vocab(&v).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("tokenizer.ggml.merges"), "{message}");
    Ok(())
}

/// A small hand-made SentencePiece vocabulary: `<unk>`, `<s>`, `</s>`, the 256 byte tokens,
/// then pieces whose scores make "▁hello" and "▁world" reachable.
fn toy_sentencepiece() -> (GgufVocab, Vec<f32>) {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0, 0.0, 0.0];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    let pieces = [
        ("▁", -1.0),
        ("h", -2.0),
        ("e", -2.0),
        ("l", -2.0),
        ("o", -2.0),
        ("w", -2.0),
        ("r", -2.0),
        ("d", -2.0),
        ("ll", -3.0),
        ("he", -4.0),
        ("hell", -5.0),
        ("hello", -6.0),
        ("▁hello", -7.0),
        ("or", -8.0),
        ("wor", -9.0),
        ("▁wor", -10.0),
        ("▁world", -11.0),
        ("ld", -12.0),
    ];
    for (piece, score) in pieces {
        tokens.push(piece.to_string());
        types.push(1);
        scores.push(score);
    }
    let vocab = GgufVocab {
        model: "llama".to_string(),
        pre: None,
        tokens,
        merges: Vec::new(),
        token_types: types,
        bos_id: Some(1),
        eos_id: Some(2),
        unk_id: Some(0),
        pad_id: None,
        add_bos: None,
        add_eos: None,
    };
    (vocab, scores)
}

#[test]
fn sentencepiece_vocab_with_scores() -> TestResult {
    let (vocab, scores) = toy_sentencepiece();
    let tok = Tokenizer::from_gguf_sentencepiece(&vocab, &scores, None)?;
    assert!(tok.add_bos_default(), "SentencePiece default: add BOS");
    assert_eq!(tok.bos_token(), Some("<s>"));
    let id = |t: &str| tok.token_to_id(t).unwrap_or(u32::MAX);

    let enc = tok.encode("hello world", BosPolicy::Auto)?;
    assert_eq!(enc.tokens, ["<s>", "▁hello", "▁world"]);
    assert_eq!(enc.ids, [1, id("▁hello"), id("▁world")]);
    assert_eq!(tok.decode(&enc.ids[1..])?, "hello world");

    // Unknown characters fall back to their UTF-8 bytes; "é" = C3 A9.
    let enc = tok.encode("hé", BosPolicy::Never)?;
    assert_eq!(enc.tokens, ["▁", "h", "<0xC3>", "<0xA9>"]);
    assert_eq!(tok.decode(&enc.ids)?, "hé");

    // Special-token text is one token, and the text after it gets its own "▁" prefix.
    let enc = tok.encode("hello</s>world", BosPolicy::Never)?;
    assert_eq!(enc.tokens, ["▁hello", "</s>", "▁world"]);

    let tok = Tokenizer::from_gguf_sentencepiece(&vocab, &scores, Some(false))?;
    let enc = tok.encode("hello world", BosPolicy::Never)?;
    assert_eq!(enc.tokens, ["hello", "▁world"]);
    assert_eq!(tok.decode(&enc.ids)?, "hello world");
    assert_eq!(tok.encode("", BosPolicy::Never)?.ids, Vec::<u32>::new());

    let message = Tokenizer::from_gguf_sentencepiece(&vocab, &scores[1..], None)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("tokenizer.ggml.scores"), "{message}");
    Ok(())
}
