//! Rebuilding a tokenizer from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! The target is the tokenizer the vocabulary was converted from (what `transformers` and
//! llama.cpp reproduce): for byte-level BPE the split regexes per `tokenizer.ggml.pre` are those of
//! llama.cpp's `src/llama-vocab.cpp` (`llm_tokenizer_bpe`), written in the original `tokenizer.json`
//! spelling where llama.cpp documents it (e.g. `(?i:'s|...)` rather than llama.cpp's `'[sS]|...`),
//! and run by the `tokenizers` library as a sequence of `Split(..., Isolated)` followed by
//! `ByteLevel(use_regex = false)`.

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::normalizers::{Prepend, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior,
};

use super::{Tokenizer, TokenizerError};

/// The tokenizer metadata of a GGUF file (`tokenizer.ggml.*` keys), as plain data.
///
/// Fill it from any GGUF reader; keys that are absent stay `None` / empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: `"gpt2"` (byte-level BPE) or `"llama"` (SentencePiece).
    pub model: String,
    /// `tokenizer.ggml.pre`: the BPE pre-tokenizer name (absent: llama.cpp's `"default"`).
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`, indexed by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.merges` (`"left right"`), best first. Required for `"gpt2"`.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
    /// 6 byte); empty = all normal.
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_id: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk_id: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token` (recorded only: sinkscope never appends EOS).
    pub add_eos: Option<bool>,
}

const TOKEN_TYPE_UNKNOWN: i32 = 2;
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// GPT-2's regex, as the `ByteLevel` pre-tokenizer of `tokenizers` spells it (`use_regex = true`).
const GPT2_REGEX: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// GPT-2's regex as llama.cpp writes it (no trailing `|\s+`; with `Isolated` splitting the
/// unmatched whitespace becomes its own piece anyway).
const GPT2_REGEX_LLAMACPP: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN_REGEX: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O_REGEX: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const DEEPSEEK_LLM_LETTERS: &str = r"\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+";
const DEEPSEEK_V3_MAIN: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;

/// How a byte-level BPE vocabulary splits text before BPE.
struct PreSpec {
    /// `tokenizer.ggml.pre` values that select this spec.
    names: &'static [&'static str],
    /// Regexes applied in sequence (`Split`, `Isolated`); empty = GPT-2's built-in `ByteLevel` regex.
    splits: &'static [&'static str],
    /// Unicode NFC before splitting (the original Qwen tokenizers have it; llama.cpp does not).
    nfc: bool,
    /// BPE `ignore_merges` (whole pieces that are tokens are not re-merged), as llama.cpp sets it.
    ignore_merges: bool,
    /// llama.cpp's default for `add_bos` when `tokenizer.ggml.add_bos_token` is absent.
    add_bos: bool,
}

const PRE_SPECS: &[PreSpec] = &[
    PreSpec {
        names: &[
            "gpt-2",
            "phi-2",
            "mpt",
            "olmo",
            "jais",
            "trillion",
            "exaone4",
            "mellum",
            "a.x-4.0",
            "gigachat",
            "granite-docling",
        ],
        splits: &[],
        nfc: false,
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["default"],
        splits: &[r"[\p{P}\$\+<=>\^~\|]+", GPT2_REGEX_LLAMACPP, r"\p{N}+", r"[0-9][0-9][0-9]"],
        nfc: false,
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"],
        splits: &[LLAMA3_REGEX],
        nfc: false,
        ignore_merges: true,
        add_bos: true,
    },
    PreSpec {
        names: &["dbrx", "smaug-bpe"],
        splits: &[LLAMA3_REGEX],
        nfc: false,
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &[
            "smollm",
            "starcoder",
            "refact",
            "command-r",
            "codeshell",
            "exaone",
            "minerva-7b",
            "mellum2",
        ],
        splits: &[r"\p{N}", GPT2_REGEX],
        nfc: false,
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec { names: &["qwen2"], splits: &[QWEN2_REGEX], nfc: true, ignore_merges: false, add_bos: false },
    PreSpec {
        names: &["deepseek-r1-qwen", "stablelm2", "megrez", "kormo", "hunyuan"],
        splits: &[QWEN2_REGEX],
        nfc: false,
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec { names: &["qwen35"], splits: &[QWEN35_REGEX], nfc: true, ignore_merges: false, add_bos: false },
    PreSpec { names: &["tekken"], splits: &[TEKKEN_REGEX], nfc: false, ignore_merges: true, add_bos: true },
    PreSpec {
        names: &["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"],
        splits: &[GPT4O_REGEX],
        nfc: false,
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["falcon"],
        splits: &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2_REGEX_LLAMACPP, r"[0-9][0-9][0-9]"],
        nfc: false,
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["deepseek-llm"],
        splits: &[
            "[\r\n]",
            DEEPSEEK_LLM_LETTERS,
            r"\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+",
            r"\s+$",
            r"[\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+",
            r"\p{N}+",
        ],
        nfc: false,
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["deepseek-coder"],
        splits: &[
            "[\r\n]",
            r"\s?\p{L}+",
            r"\s?\p{P}+",
            r"[\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+",
            r"\p{N}",
        ],
        nfc: false,
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["deepseek-v3"],
        splits: &[r"\p{N}{1,3}", r"[\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+", DEEPSEEK_V3_MAIN],
        nfc: false,
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["bloom", "poro-chat", "gpt3-finnish"],
        splits: &[r" ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{964}\x{6D4}\x{60C})]+"],
        nfc: false,
        ignore_merges: false,
        add_bos: false,
    },
];

/// Every `tokenizer.ggml.pre` value [`Tokenizer::from_gguf_vocab`] accepts for byte-level BPE.
pub fn supported_gguf_pre_tokenizers() -> Vec<&'static str> {
    PRE_SPECS.iter().flat_map(|spec| spec.names.iter().copied()).collect()
}

fn find_pre_spec(name: &str) -> Option<&'static PreSpec> {
    PRE_SPECS.iter().find(|spec| spec.names.contains(&name))
}

fn invalid(field: &str, message: impl Into<String>) -> TokenizerError {
    TokenizerError::InvalidGguf { field: field.to_string(), message: message.into() }
}

impl Tokenizer {
    /// Builds a tokenizer from GGUF tokenizer metadata.
    ///
    /// * `model = "gpt2"`: byte-level BPE from `tokens` + `merges`, pre-tokenizer chosen by `pre`
    ///   (see [`supported_gguf_pre_tokenizers`]; absent = `"default"`, as llama.cpp does; an
    ///   unknown name is an error), NFC first for the Qwen pre-tokenizers (as their
    ///   `tokenizer.json` and `transformers` do; llama.cpp has no NFC step), `ByteLevel` decoder.
    /// * `model = "llama"` (SentencePiece) needs `tokenizer.ggml.scores`, which [`GgufVocab`] does
    ///   not carry: this returns [`TokenizerError::UnsupportedGgufModel`]; use
    ///   [`Tokenizer::from_gguf_sentencepiece`].
    /// * any other model is [`TokenizerError::UnsupportedGgufModel`].
    ///
    /// Tokens of type CONTROL (3) and UNKNOWN (2), plus the BOS/EOS/UNK/PAD tokens, become special
    /// added tokens and USER_DEFINED (4) tokens plain added tokens, all matched on the raw text, so
    /// literal special-token text is one token (llama.cpp `special = true`, transformers' default).
    ///
    /// `add_bos_default` is `add_bos` when present, else llama.cpp's default (true for the
    /// llama3/tekken pre-tokenizers and for SentencePiece, false otherwise).
    pub fn from_gguf_vocab(v: &GgufVocab) -> Result<Tokenizer, TokenizerError> {
        from_gguf(v, None)
    }

    /// Builds a SentencePiece tokenizer (`tokenizer.ggml.model = "llama"`, e.g. Llama 2, Gemma)
    /// from GGUF metadata plus `tokenizer.ggml.scores` and `tokenizer.ggml.add_space_prefix`.
    ///
    /// SentencePiece-style BPE with byte fallback (`<0xNN>` tokens) and `unk_id` as unknown token;
    /// merges are derived from `scores` the way `transformers` does it (a merge for every split of
    /// a token into two tokens, ranked by the merged token's score); `" "` becomes `"▁"` and, when
    /// `add_space_prefix` (absent = true, as in llama.cpp), a `"▁"` is put in front of every text
    /// run (start of text and after each special token, as llama.cpp does). `scores` may be empty
    /// (all 0). Other models are handled as by [`Tokenizer::from_gguf_vocab`].
    pub fn from_gguf_sentencepiece(
        v: &GgufVocab,
        scores: &[f32],
        add_space_prefix: Option<bool>,
    ) -> Result<Tokenizer, TokenizerError> {
        from_gguf(v, Some(SentencePieceExtras { scores, add_space_prefix: add_space_prefix.unwrap_or(true) }))
    }
}

/// The SentencePiece-only GGUF fields.
struct SentencePieceExtras<'a> {
    scores: &'a [f32],
    add_space_prefix: bool,
}

fn from_gguf(
    v: &GgufVocab,
    sentencepiece: Option<SentencePieceExtras<'_>>,
) -> Result<Tokenizer, TokenizerError> {
    let n = v.tokens.len();
    if n == 0 {
        return Err(invalid("tokenizer.ggml.tokens", "the token list is empty"));
    }
    if !v.token_types.is_empty() && v.token_types.len() != n {
        return Err(invalid(
            "tokenizer.ggml.token_type",
            format!("{} entries for {n} tokens", v.token_types.len()),
        ));
    }
    for (field, id) in [
        ("tokenizer.ggml.bos_token_id", v.bos_id),
        ("tokenizer.ggml.eos_token_id", v.eos_id),
        ("tokenizer.ggml.unknown_token_id", v.unk_id),
        ("tokenizer.ggml.padding_token_id", v.pad_id),
    ] {
        if let Some(id) = id {
            if id as usize >= n {
                return Err(invalid(field, format!("id {id} is out of range for {n} tokens")));
            }
        }
    }

    let tokens = spelled_tokens(&v.tokens);
    let vocab = vocab_map(&tokens)?;

    let (mut inner, default_add_bos, kind) = match v.model.as_str() {
        "gpt2" => {
            let pre_name = v.pre.as_deref().unwrap_or("default");
            let spec = find_pre_spec(pre_name).ok_or_else(|| TokenizerError::UnsupportedGgufPre {
                pre: pre_name.to_string(),
                supported: supported_gguf_pre_tokenizers().join(", "),
            })?;
            let inner = build_byte_level_bpe(vocab, &v.merges, spec)?;
            (inner, spec.add_bos, format!("gpt2, tokenizer.ggml.pre = {pre_name}"))
        }
        "llama" => {
            let Some(sp) = sentencepiece else {
                return Err(TokenizerError::UnsupportedGgufModel {
                    model: v.model.clone(),
                    hint: "a SentencePiece vocabulary needs tokenizer.ggml.scores; build it with \
                           Tokenizer::from_gguf_sentencepiece"
                        .to_string(),
                });
            };
            let inner = build_sentencepiece(v, &tokens, vocab, &sp)?;
            (inner, true, format!("llama (SentencePiece), add_space_prefix = {}", sp.add_space_prefix))
        }
        other => {
            return Err(TokenizerError::UnsupportedGgufModel {
                model: other.to_string(),
                hint: "supported: gpt2 (byte-level BPE), llama (SentencePiece)".to_string(),
            })
        }
    };

    add_gguf_special_tokens(&mut inner, v, &tokens)?;

    let add_bos_default = v.add_bos.unwrap_or(default_add_bos);
    if add_bos_default && v.bos_id.is_none() {
        return Err(invalid(
            "tokenizer.ggml.add_bos_token",
            "BOS is to be added but tokenizer.ggml.bos_token_id is not set",
        ));
    }
    let token_of = |id: Option<u32>| id.and_then(|i| tokens.get(i as usize).cloned());

    Ok(Tokenizer {
        bos_id: v.bos_id,
        bos_token: token_of(v.bos_id),
        eos_id: v.eos_id,
        eos_token: token_of(v.eos_id),
        add_bos_default,
        source: format!("GGUF vocabulary (tokenizer.ggml.model = {kind}, {n} tokens)"),
        inner,
    })
}

/// Token texts as llama.cpp stores them: an empty token becomes `[EMPTY_<id>]`.
fn spelled_tokens(tokens: &[String]) -> Vec<String> {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| if t.is_empty() { format!("[EMPTY_{i}]") } else { t.clone() })
        .collect()
}

fn vocab_map(tokens: &[String]) -> Result<Vocab, TokenizerError> {
    let mut vocab = Vocab::with_capacity(tokens.len());
    for (i, token) in tokens.iter().enumerate() {
        let id = u32::try_from(i).map_err(|_| invalid("tokenizer.ggml.tokens", "more than 2^32 tokens"))?;
        if let Some(previous) = vocab.insert(token.clone(), id) {
            return Err(invalid(
                "tokenizer.ggml.tokens",
                format!("duplicate token '{token}' (ids {previous} and {id})"),
            ));
        }
    }
    Ok(vocab)
}

/// Splits `"left right"` at the first space after the first byte (llama.cpp's rule).
fn parse_merges(merges: &[String]) -> Result<Vec<(String, String)>, TokenizerError> {
    merges
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let pos = m.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1).ok_or_else(|| {
                invalid(
                    "tokenizer.ggml.merges",
                    format!("merge {i} ('{m}') has no space separating its two parts"),
                )
            })?;
            let (left, right) = m.split_at(pos);
            Ok((left.to_string(), right[1..].to_string()))
        })
        .collect()
}

fn split_isolated(regex: &str) -> Result<PreTokenizerWrapper, TokenizerError> {
    Split::new(SplitPattern::Regex(regex.to_string()), SplitDelimiterBehavior::Isolated, false)
        .map(PreTokenizerWrapper::Split)
        .map_err(|e| invalid("tokenizer.ggml.pre", format!("cannot compile split regex {regex:?}: {e}")))
}

fn build_byte_level_bpe(
    vocab: Vocab,
    merges: &[String],
    spec: &PreSpec,
) -> Result<tokenizers::Tokenizer, TokenizerError> {
    if merges.is_empty() {
        return Err(invalid("tokenizer.ggml.merges", "a byte-level BPE (gpt2) vocabulary needs merges"));
    }
    let merges = parse_merges(merges)?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(spec.ignore_merges)
        .build()
        .map_err(|e| invalid("tokenizer.ggml.merges", e.to_string()))?;
    let mut inner = tokenizers::Tokenizer::new(bpe);
    if spec.nfc {
        inner
            .with_normalizer(Some(NormalizerWrapper::NFC(NFC)))
            .map_err(|e| invalid("tokenizer.ggml.pre", e.to_string()))?;
    }
    let pre_tokenizer = if spec.splits.is_empty() {
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true))
    } else {
        let mut steps = spec.splits.iter().map(|r| split_isolated(r)).collect::<Result<Vec<_>, _>>()?;
        steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)));
        PreTokenizerWrapper::Sequence(PreTokenizerSequence::new(steps))
    };
    inner.with_pre_tokenizer(Some(pre_tokenizer));
    inner.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
    Ok(inner)
}

/// `transformers`' `generate_merges(vocab, vocab_scores)`: every split of a token into two
/// tokens is a merge; merges are ordered by the merged token's score (descending), then by the
/// lengths (in characters) of the left and right parts (descending), then by vocabulary order.
fn merges_from_scores(tokens: &[String], scores: &[f32], vocab: &Vocab) -> Vec<(String, String)> {
    struct Candidate<'a> {
        score: f32,
        left_chars: usize,
        right_chars: usize,
        left: &'a str,
        right: &'a str,
    }
    let mut candidates: Vec<Candidate<'_>> = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let score = scores.get(i).copied().unwrap_or(0.0);
        let mut local: Vec<(u32, u32, Candidate<'_>)> = Vec::new();
        for (chars, (pos, _)) in token.char_indices().enumerate().skip(1) {
            let (left, right) = token.split_at(pos);
            if let (Some(&l), Some(&r)) = (vocab.get(left), vocab.get(right)) {
                local.push((
                    l,
                    r,
                    Candidate {
                        score,
                        left_chars: chars,
                        right_chars: token.chars().count() - chars,
                        left,
                        right,
                    },
                ));
            }
        }
        local.sort_by_key(|(l, r, _)| (*l, *r));
        candidates.extend(local.into_iter().map(|(_, _, c)| c));
    }
    // Stable sort, descending on (score, left length, right length): Python's
    // `sorted(..., reverse=True)` keeps equal keys in their original order too.
    candidates.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.left_chars.cmp(&a.left_chars))
            .then(b.right_chars.cmp(&a.right_chars))
    });
    candidates.into_iter().map(|c| (c.left.to_string(), c.right.to_string())).collect()
}

fn build_sentencepiece(
    v: &GgufVocab,
    tokens: &[String],
    vocab: Vocab,
    sp: &SentencePieceExtras<'_>,
) -> Result<tokenizers::Tokenizer, TokenizerError> {
    if !sp.scores.is_empty() && sp.scores.len() != tokens.len() {
        return Err(invalid(
            "tokenizer.ggml.scores",
            format!("{} entries for {} tokens", sp.scores.len(), tokens.len()),
        ));
    }
    let add_space_prefix = sp.add_space_prefix;
    let merges = merges_from_scores(tokens, sp.scores, &vocab);
    let mut builder = BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true).fuse_unk(true);
    if let Some(unk) = v.unk_id.and_then(|id| tokens.get(id as usize)) {
        builder = builder.unk_token(unk.clone());
    }
    let bpe = builder.build().map_err(|e| invalid("tokenizer.ggml.tokens", e.to_string()))?;
    let mut inner = tokenizers::Tokenizer::new(bpe);

    let escape = Replace::new(" ", "\u{2581}").map_err(|e| invalid("tokenizer.ggml.model", e.to_string()))?;
    let normalizer = if add_space_prefix {
        NormalizerWrapper::Sequence(NormalizerSequence::new(vec![
            NormalizerWrapper::Prepend(Prepend::new("\u{2581}".to_string())),
            NormalizerWrapper::Replace(escape),
        ]))
    } else {
        NormalizerWrapper::Replace(escape)
    };
    inner.with_normalizer(Some(normalizer)).map_err(|e| invalid("tokenizer.ggml.model", e.to_string()))?;

    let unescape =
        Replace::new("\u{2581}", " ").map_err(|e| invalid("tokenizer.ggml.model", e.to_string()))?;
    let mut decoders = vec![
        DecoderWrapper::Replace(unescape),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ];
    if add_space_prefix {
        decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
    }
    inner.with_decoder(Some(DecoderWrapper::Sequence(DecoderSequence::new(decoders))));
    Ok(inner)
}

fn add_gguf_special_tokens(
    inner: &mut tokenizers::Tokenizer,
    v: &GgufVocab,
    tokens: &[String],
) -> Result<(), TokenizerError> {
    let mut is_special = vec![false; tokens.len()];
    let mut is_user = vec![false; tokens.len()];
    for (i, t) in v.token_types.iter().enumerate() {
        match *t {
            TOKEN_TYPE_CONTROL | TOKEN_TYPE_UNKNOWN => is_special[i] = true,
            TOKEN_TYPE_USER_DEFINED => is_user[i] = true,
            _ => {}
        }
    }
    for id in [v.bos_id, v.eos_id, v.unk_id, v.pad_id].into_iter().flatten() {
        if let Some(flag) = is_special.get_mut(id as usize) {
            *flag = true;
        }
    }
    let added = |flags: &[bool], special: bool| -> Vec<AddedToken> {
        tokens
            .iter()
            .zip(flags)
            .filter(|(_, &flag)| flag)
            .map(|(t, _)| AddedToken::from(t.clone(), special).normalized(false))
            .collect()
    };
    let special = added(&is_special, true);
    if !special.is_empty() {
        inner.add_special_tokens(special).map_err(|e| invalid("tokenizer.ggml.token_type", e.to_string()))?;
    }
    let user = added(&is_user, false);
    if !user.is_empty() {
        inner.add_tokens(user).map_err(|e| invalid("tokenizer.ggml.token_type", e.to_string()))?;
    }
    Ok(())
}
