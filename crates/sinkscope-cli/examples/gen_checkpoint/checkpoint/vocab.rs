//! A small valid byte-level BPE vocabulary padded to the model's vocabulary size: the 256
//! byte tokens (GPT-2's byte-to-unicode spelling) at ids 0–255, a few merges, then reserved
//! tokens; BOS `<|begin_of_text|>` and EOS `<|end_of_text|>` at the Llama 3 positions
//! ([`Shape::bos_id`]). Text tokenises to bytes (and the merged pairs), so every id a prompt
//! can produce is below 270; the reserved ids only pad the embedding and head.

use super::model::Shape;
use serde_json::{json, Map, Value};

/// The merges, best first; each merged token is appended after the bytes.
const MERGES: [(&str, &str); 8] =
    [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("e", "r"), ("Ġ", "a"), ("o", "n"), ("r", "e")];

/// GPT-2's `bytes_to_unicode`: the character spelling byte `b`.
fn byte_char(b: u8) -> char {
    let printable =
        |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    if printable(b) {
        char::from(b)
    } else {
        let n = (0..b).filter(|&c| !printable(c)).count() as u32;
        char::from_u32(256 + n).unwrap_or('?')
    }
}

/// Token text per id, and ggml token types (1 normal, 3 control, 5 unused).
pub fn tokens(s: &Shape) -> (Vec<String>, Vec<i32>) {
    let mut toks: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    let mut types = vec![1; 256];
    for (a, b) in MERGES {
        toks.push(format!("{a}{b}"));
        types.push(1);
    }
    while toks.len() < s.vocab {
        let id = toks.len();
        if id == s.bos_id() {
            toks.push("<|begin_of_text|>".into());
            types.push(3);
        } else if id == s.eos_id() {
            toks.push("<|end_of_text|>".into());
            types.push(3);
        } else {
            toks.push(format!("<|reserved_special_token_{id}|>"));
            types.push(5);
        }
    }
    (toks, types)
}

/// `"left right"` merges, as GGUF stores them.
pub fn merges() -> Vec<String> {
    MERGES.iter().map(|(a, b)| format!("{a} {b}")).collect()
}

/// A Hugging Face `tokenizer.json` for the same vocabulary (BOS prepended by the
/// post-processor).
pub fn tokenizer_json(s: &Shape) -> Value {
    let (toks, _) = tokens(s);
    let vocab: Map<String, Value> = toks.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
    let special = |id: usize| {
        json!({"id": id, "content": toks[id], "single_word": false, "lstrip": false, "rstrip": false,
               "normalized": false, "special": true})
    };
    let bos = &toks[s.bos_id()];
    let byte_level =
        json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(s.bos_id()), special(s.eos_id())],
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}}],
            "special_tokens": {bos.clone(): {"id": bos, "ids": [s.bos_id()], "tokens": [bos]}},
        },
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab,
            "merges": MERGES.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
        },
    })
}

/// `tokenizer_config.json`.
pub fn tokenizer_config(s: &Shape) -> Value {
    let (toks, _) = tokens(s);
    json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": toks[s.bos_id()],
        "eos_token": toks[s.eos_id()],
        "add_bos_token": true,
        "add_eos_token": false,
        "model_max_length": s.context,
    })
}
