//! Opening a model path: a `.gguf` file or a Hugging Face folder. The family is detected from
//! the file; the config, tensor index and tokenizer are read up front, the weights on demand.

use crate::error::IoError;
use crate::families::{self, FamilyDecl};
use crate::gguf::GgufFile;
use crate::gguf_meta::GgufMeta;
use crate::hf_config::HfConfig;
use crate::source::{GgufSource, RenamedSource, SafetensorsSource, TensorSource};
use crate::tokenizer::{GgufVocab, Tokenizer};
use crate::weights::{load_weights, weight_plan, WeightPlan, WeightSet};
use sinkscope_spec::ModelConfig;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Checkpoint file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// A llama.cpp GGUF file.
    Gguf,
    /// A Hugging Face folder with safetensors weights.
    Safetensors,
}

/// A model on disk: its resolved config, its tensors (not yet loaded) and its tokenizer.
pub struct ModelFiles {
    /// The path given.
    pub path: PathBuf,
    /// File format.
    pub format: Format,
    /// The family declaration used.
    pub decl: &'static FamilyDecl,
    /// Resolved config.
    pub config: ModelConfig,
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    source: Box<dyn TensorSource>,
}

impl ModelFiles {
    /// Opens a `.gguf` file or a Hugging Face folder.
    pub fn open(path: &Path) -> Result<Self, IoError> {
        let meta =
            std::fs::metadata(path).map_err(|source| IoError::Os { path: path.to_path_buf(), source })?;
        if meta.is_dir() {
            Self::open_hf(path)
        } else {
            Self::open_gguf(path)
        }
    }

    fn open_hf(dir: &Path) -> Result<Self, IoError> {
        let outer = HfConfig::read(dir)?;
        let outer_type =
            outer.model_type.clone().ok_or_else(|| outer.err("model_type", "missing required field"))?;
        // A multimodal checkpoint: the text tower's config and tensors, the other towers unread.
        let wrapper = families::MULTIMODAL.iter().find(|w| w.model_type == outer_type);
        let raw = match (wrapper, &outer.text_config) {
            (Some(w), Some(text)) => {
                let mut t = (**text).clone();
                t.path = outer.path.clone();
                t.model_type = Some(t.model_type.unwrap_or_else(|| w.text_model_type.to_string()));
                t
            }
            (Some(_), None) => {
                return Err(outer.err("text_config", "a multimodal checkpoint needs its text model's config"))
            }
            (None, _) => outer,
        };
        let model_type = raw.model_type.clone().unwrap_or(outer_type);
        let decl = families::by_hf_model_type(&model_type).ok_or_else(|| IoError::UnknownArchitecture {
            path: raw.path.clone(),
            arch: model_type.clone(),
            supported: families::supported(true),
        })?;
        let config = (decl.from_hf)(&raw)?;
        let tokenizer = Tokenizer::from_hf_folder(dir)?;
        let source: Box<dyn TensorSource> = match wrapper {
            Some(w) => {
                Box::new(RenamedSource::new(Box::new(SafetensorsSource::open(dir)?), w.rewrites, w.skipped))
            }
            None => Box::new(SafetensorsSource::open(dir)?),
        };
        Ok(ModelFiles {
            path: dir.to_path_buf(),
            format: Format::Safetensors,
            decl,
            config,
            tokenizer,
            source,
        })
    }

    fn open_gguf(path: &Path) -> Result<Self, IoError> {
        let file = GgufFile::open(path)?;
        let (decl, config, tokenizer) = {
            let meta = GgufMeta::new(&file, path)?;
            let decl = families::by_gguf_arch(&meta.arch).ok_or_else(|| IoError::UnknownArchitecture {
                path: path.to_path_buf(),
                arch: meta.arch.clone(),
                supported: families::supported(false),
            })?;
            let config = (decl.from_gguf)(&meta)?;
            let vocab = gguf_vocab(&file)?;
            let tokenizer = if vocab.model == "llama" {
                // SentencePiece vocabularies (Gemma, Llama 2) also need the scores.
                let scores = file.get_f32_array("tokenizer.ggml.scores")?;
                let prefix = match file.contains_key("tokenizer.ggml.add_space_prefix") {
                    true => Some(file.get_bool("tokenizer.ggml.add_space_prefix")?),
                    false => None,
                };
                Tokenizer::from_gguf_sentencepiece(&vocab, &scores, prefix)?
            } else {
                Tokenizer::from_gguf_vocab(&vocab)?
            };
            (decl, config, tokenizer)
        };
        Ok(ModelFiles {
            path: path.to_path_buf(),
            format: Format::Gguf,
            decl,
            config,
            tokenizer,
            source: Box::new(GgufSource::new(file, path)),
        })
    }

    /// Loads and checks every weight (strict: missing, misshapen or unused tensors are errors).
    /// Matrices stored in a format other than F32 stay in it (see [`crate::stored`]).
    pub fn load_weights(&self) -> Result<WeightSet, IoError> {
        let (table, ignored) = self.table();
        load_weights(self.source.as_ref(), &self.config, &table, ignored)
    }

    /// [`load_weights`](Self::load_weights) for layer streaming when `stream`: every matrix
    /// that only moves rows stays in the file's memory map, F32 included, with its pages
    /// released after loading (see [`crate::weights::load_weights_with`]).
    pub fn load_weights_for(&self, stream: bool) -> Result<WeightSet, IoError> {
        let (table, ignored) = self.table();
        crate::weights::load_weights_with(self.source.as_ref(), &self.config, &table, ignored, stream)
    }

    /// What the weights will take once loaded ([`WeightPlan`]), before anything is read;
    /// `keep_stored`: whether matrices stay in their stored format (the kernel runs here).
    pub fn weight_plan(&self, keep_stored: bool) -> WeightPlan {
        weight_plan(self.source.as_ref(), &self.config, &self.table().0, keep_stored)
    }

    fn table(&self) -> (Vec<crate::weights::TensorEntry>, &'static [&'static str]) {
        match self.format {
            Format::Gguf => (self.decl.gguf_tensors(), &[][..]),
            Format::Safetensors => (self.decl.hf_tensors(), self.decl.hf_ignored),
        }
    }

    /// How many tensors of each storage type the checkpoint has (the quantisation mix).
    pub fn dtype_mix(&self) -> BTreeMap<String, usize> {
        let mut mix = BTreeMap::new();
        for m in self.source.tensors().values() {
            *mix.entry(m.dtype.clone()).or_insert(0) += 1;
        }
        mix
    }

    /// Number of values of the checkpoint's largest tensor (the memory guard's load transient).
    pub fn largest_tensor_values(&self) -> u64 {
        self.source.tensors().values().map(|m| m.shape.iter().product::<usize>() as u64).max().unwrap_or(0)
    }

    /// Number of values stored in the checkpoint.
    pub fn stored_parameters(&self) -> u64 {
        self.source.tensors().values().map(|m| m.shape.iter().product::<usize>() as u64).sum()
    }
}

/// The GGUF-embedded vocabulary (`tokenizer.ggml.*`).
fn gguf_vocab(f: &GgufFile) -> Result<GgufVocab, IoError> {
    let has = |k: &str| f.metadata().contains_key(k);
    let opt_u32 = |k: &str| -> Result<Option<u32>, IoError> {
        if has(k) {
            let v = f.get_u64(k)?;
            Ok(u32::try_from(v).ok())
        } else {
            Ok(None)
        }
    };
    let opt_bool = |k: &str| -> Result<Option<bool>, IoError> {
        if has(k) {
            Ok(Some(f.get_bool(k)?))
        } else {
            Ok(None)
        }
    };
    Ok(GgufVocab {
        model: f.get_str("tokenizer.ggml.model")?.to_string(),
        pre: if has("tokenizer.ggml.pre") {
            Some(f.get_str("tokenizer.ggml.pre")?.to_string())
        } else {
            None
        },
        tokens: strings(f.get_str_array("tokenizer.ggml.tokens")?),
        merges: if has("tokenizer.ggml.merges") {
            strings(f.get_str_array("tokenizer.ggml.merges")?)
        } else {
            Vec::new()
        },
        token_types: if has("tokenizer.ggml.token_type") {
            f.get_i32_array("tokenizer.ggml.token_type")?
        } else {
            Vec::new()
        },
        bos_id: opt_u32("tokenizer.ggml.bos_token_id")?,
        eos_id: opt_u32("tokenizer.ggml.eos_token_id")?,
        unk_id: opt_u32("tokenizer.ggml.unknown_token_id")?,
        pad_id: opt_u32("tokenizer.ggml.padding_token_id")?,
        add_bos: opt_bool("tokenizer.ggml.add_bos_token")?,
        add_eos: opt_bool("tokenizer.ggml.add_eos_token")?,
    })
}

fn strings(v: Vec<&str>) -> Vec<String> {
    v.into_iter().map(str::to_string).collect()
}
