//! Unit tests: a small GGUF writer for synthetic files (every value type, every malformation), and
//! hand-built quant blocks checked against ggml's formulas.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use half::{bf16, f16};

// =========================================================================================================
// Deterministic PRNG (xorshift64*).

struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    fn range_i32(&mut self, lo: i32, hi_inclusive: i32) -> i32 {
        lo + self.below((hi_inclusive - lo + 1) as u64) as i32
    }
    fn unit(&mut self) -> f32 {
        (self.below(1 << 24) as f32) / ((1u32 << 24) as f32)
    }
    /// A finite f16 in roughly [-2, 2], sometimes subnormal or zero.
    fn f16(&mut self) -> f16 {
        match self.below(10) {
            0 => f16::from_bits(self.below(0x400) as u16), // subnormal / zero
            1 => f16::from_f32(0.0),
            _ => f16::from_f32((self.unit() * 4.0 - 2.0) * if self.below(2) == 0 { 1.0 } else { 1e-3 }),
        }
    }
}

// =========================================================================================================
// A minimal GGUF writer.

fn enc_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
}

/// Payload of a value (no type tag).
fn enc_payload(out: &mut Vec<u8>, v: &GgufValue) {
    match v {
        GgufValue::U8(x) => out.push(*x),
        GgufValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::Bool(x) => out.push(u8::from(*x)),
        GgufValue::String(s) => enc_str(out, s.as_bytes()),
        GgufValue::Array(a) => {
            out.extend_from_slice(&a.elem_type.id().to_le_bytes());
            out.extend_from_slice(&(a.values.len() as u64).to_le_bytes());
            for e in &a.values {
                enc_payload(out, e);
            }
        }
        GgufValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

#[derive(Clone)]
struct TSpec {
    name: Vec<u8>,
    ne: Vec<i64>,
    type_id: u32,
    data: Vec<u8>,
    /// Explicit offset (relative to the data section); `None` = next aligned position.
    offset: Option<u64>,
    /// Whether to write the data bytes (false simulates data missing from the file).
    write_data: bool,
}

fn tensor(name: &str, ne: &[i64], ty: GgmlType, data: Vec<u8>) -> TSpec {
    TSpec {
        name: name.as_bytes().to_vec(),
        ne: ne.to_vec(),
        type_id: ty.id(),
        data,
        offset: None,
        write_data: true,
    }
}

#[derive(Clone)]
struct Builder {
    magic: [u8; 4],
    version: u32,
    /// Raw encoded kvs: key bytes, type id, payload.
    kvs: Vec<(Vec<u8>, u32, Vec<u8>)>,
    tensors: Vec<TSpec>,
    alignment: u64,
    n_tensors_override: Option<u64>,
    n_kv_override: Option<u64>,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            magic: *b"GGUF",
            version: 3,
            kvs: Vec::new(),
            tensors: Vec::new(),
            alignment: 32,
            n_tensors_override: None,
            n_kv_override: None,
        }
    }

    fn kv(mut self, key: &str, v: GgufValue) -> Builder {
        let mut payload = Vec::new();
        enc_payload(&mut payload, &v);
        self.kvs.push((key.as_bytes().to_vec(), v.value_type().id(), payload));
        self
    }

    fn raw_kv(mut self, key: &[u8], type_id: u32, payload: Vec<u8>) -> Builder {
        self.kvs.push((key.to_vec(), type_id, payload));
        self
    }

    fn t(mut self, t: TSpec) -> Builder {
        self.tensors.push(t);
        self
    }

    fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.magic);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.n_tensors_override.unwrap_or(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.n_kv_override.unwrap_or(self.kvs.len() as u64).to_le_bytes());
        for (k, ty, payload) in &self.kvs {
            enc_str(&mut out, k);
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(payload);
        }
        let align = |x: u64| x.div_ceil(self.alignment).wrapping_mul(self.alignment);
        let mut next = 0u64;
        let mut offsets = Vec::new();
        for t in &self.tensors {
            let off = t.offset.unwrap_or(align(next));
            offsets.push(off);
            next = off.wrapping_add(t.data.len() as u64);
            enc_str(&mut out, &t.name);
            out.extend_from_slice(&(t.ne.len() as u32).to_le_bytes());
            for d in &t.ne {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.type_id.to_le_bytes());
            out.extend_from_slice(&off.to_le_bytes());
        }
        let data_start = align(out.len() as u64) as usize;
        out.resize(data_start, 0);
        for (t, off) in self.tensors.iter().zip(&offsets) {
            if !t.write_data {
                continue;
            }
            let at = data_start + *off as usize;
            if out.len() < at + t.data.len() {
                out.resize(at + t.data.len(), 0);
            }
            out[at..at + t.data.len()].copy_from_slice(&t.data);
        }
        out
    }

    fn parse(&self) -> Result<GgufFile, GgufError> {
        GgufFile::from_bytes("synthetic.gguf", self.build())
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn str_array(v: &[&str]) -> GgufValue {
    GgufValue::Array(GgufArray {
        elem_type: GgufValueType::String,
        values: v.iter().map(|s| GgufValue::String((*s).to_owned())).collect(),
    })
}

fn arr(elem_type: GgufValueType, values: Vec<GgufValue>) -> GgufValue {
    GgufValue::Array(GgufArray { elem_type, values })
}

/// A valid file with metadata of every type and a few tensors.
fn sample() -> Builder {
    let mut rng = Rng(7);
    let emb: Vec<f32> = (0..6 * 4).map(|i| i as f32 * 0.25 - 3.0).collect();
    let half_vals: Vec<u8> = (0..8).flat_map(|i| f16::from_f32(i as f32 / 3.0).to_le_bytes()).collect();
    let bf_vals: Vec<u8> = (0..8).flat_map(|i| bf16::from_f32(-(i as f32) / 7.0).to_le_bytes()).collect();
    let q8: Vec<u8> = (0..2 * 34).map(|_| rng.below(256) as u8).collect();
    Builder::new()
        .kv("general.architecture", GgufValue::String("llama".into()))
        .kv("general.name", GgufValue::String("tiny ✓".into()))
        .kv("t.u8", GgufValue::U8(200))
        .kv("t.i8", GgufValue::I8(-5))
        .kv("t.u16", GgufValue::U16(65535))
        .kv("t.i16", GgufValue::I16(-300))
        .kv("t.u32", GgufValue::U32(4_000_000_000))
        .kv("t.i32", GgufValue::I32(-7))
        .kv("t.f32", GgufValue::F32(1e-5))
        .kv("t.bool", GgufValue::Bool(true))
        .kv("t.u64", GgufValue::U64(u64::MAX))
        .kv("t.i64", GgufValue::I64(i64::MIN))
        .kv("t.f64", GgufValue::F64(0.1))
        .kv("t.strs", str_array(&["a", "", "ü"]))
        .kv("t.ints", arr(GgufValueType::I32, vec![GgufValue::I32(1), GgufValue::I32(-2), GgufValue::I32(3)]))
        .kv("t.u8s", arr(GgufValueType::U8, vec![GgufValue::U8(1), GgufValue::U8(255)]))
        .kv("t.f32s", arr(GgufValueType::F32, vec![GgufValue::F32(0.5), GgufValue::F32(-1.25)]))
        .kv("t.bools", arr(GgufValueType::Bool, vec![GgufValue::Bool(true), GgufValue::Bool(false)]))
        .kv("t.empty", arr(GgufValueType::U64, vec![]))
        .kv(
            "t.nested",
            arr(
                GgufValueType::Array,
                vec![
                    arr(GgufValueType::U16, vec![GgufValue::U16(1), GgufValue::U16(2)]),
                    arr(GgufValueType::U16, vec![]),
                ],
            ),
        )
        .t(tensor("emb", &[4, 6], GgmlType::F32, f32_bytes(&emb)))
        .t(tensor("h", &[8], GgmlType::F16, half_vals))
        .t(tensor("b", &[2, 2, 2], GgmlType::BF16, bf_vals))
        .t(tensor("q", &[32, 2], GgmlType::Q8_0, q8))
}

fn err_of(b: &Builder) -> GgufError {
    match b.parse() {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

// =========================================================================================================
// Parsing and metadata.

#[test]
fn parses_every_value_type() {
    let f = sample().parse().unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.data_offset() % 32, 0);
    let m = f.metadata();
    assert_eq!(m.len(), 20);
    assert_eq!(f.metadata_keys().first().map(String::as_str), Some("general.architecture"));
    assert_eq!(f.metadata_keys().last().map(String::as_str), Some("t.nested"));
    assert_eq!(m["t.u8"], GgufValue::U8(200));
    assert_eq!(m["t.i8"], GgufValue::I8(-5));
    assert_eq!(m["t.u16"], GgufValue::U16(65535));
    assert_eq!(m["t.i16"], GgufValue::I16(-300));
    assert_eq!(m["t.u32"], GgufValue::U32(4_000_000_000));
    assert_eq!(m["t.i32"], GgufValue::I32(-7));
    assert_eq!(m["t.f32"], GgufValue::F32(1e-5));
    assert_eq!(m["t.bool"], GgufValue::Bool(true));
    assert_eq!(m["t.u64"], GgufValue::U64(u64::MAX));
    assert_eq!(m["t.i64"], GgufValue::I64(i64::MIN));
    assert_eq!(m["t.f64"], GgufValue::F64(0.1));
    assert_eq!(m["t.nested"].type_description(), "array<array<u16>>");
    let nested = f.get_array("t.nested").unwrap();
    assert_eq!(nested.values.len(), 2);
    assert_eq!(nested.values[0].as_array().unwrap().values, vec![GgufValue::U16(1), GgufValue::U16(2)]);
    assert_eq!(f.get_array("t.empty").unwrap().elem_type, GgufValueType::U64);
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.get_str("general.name").unwrap(), "tiny ✓");
}

#[test]
fn version_2_is_accepted() {
    let mut b = sample();
    b.version = 2;
    let f = b.parse().unwrap();
    assert_eq!(f.version(), 2);
    assert_eq!(f.tensors().len(), 4);
}

#[test]
fn integer_getters_widen_and_check_range() {
    let f = sample().parse().unwrap();
    assert_eq!(f.get_u64("t.u8").unwrap(), 200);
    assert_eq!(f.get_u64("t.u16").unwrap(), 65535);
    assert_eq!(f.get_u64("t.u32").unwrap(), 4_000_000_000);
    assert_eq!(f.get_u64("t.u64").unwrap(), u64::MAX);
    assert_eq!(f.get_i64("t.i8").unwrap(), -5);
    assert_eq!(f.get_i64("t.i16").unwrap(), -300);
    assert_eq!(f.get_i64("t.i32").unwrap(), -7);
    assert_eq!(f.get_i64("t.i64").unwrap(), i64::MIN);
    assert_eq!(f.get_i64("t.u32").unwrap(), 4_000_000_000);
    assert_eq!(f.get_u32("t.u32").unwrap(), 4_000_000_000);
    assert_eq!(f.get_i32("t.i16").unwrap(), -300);
    assert_eq!(f.get_usize("t.u16").unwrap(), 65535);

    let e = f.get_u64("t.i32").unwrap_err();
    assert!(matches!(e, GgufError::OutOfRange { .. }), "{e}");
    assert!(e.to_string().contains("'t.i32'") && e.to_string().contains("-7"), "{e}");
    assert!(matches!(f.get_i64("t.u64").unwrap_err(), GgufError::OutOfRange { .. }));
    assert!(matches!(f.get_i32("t.u32").unwrap_err(), GgufError::OutOfRange { .. }));
    // Floats and bools are not integers.
    let e = f.get_u64("t.f32").unwrap_err();
    assert!(matches!(e, GgufError::WrongType { .. }), "{e}");
    assert!(matches!(f.get_u64("t.bool").unwrap_err(), GgufError::WrongType { .. }));
}

#[test]
fn missing_and_wrong_type_are_distinct() {
    let f = sample().parse().unwrap();
    let e = f.get_u64("nope.key").unwrap_err();
    assert!(e.is_missing_key());
    assert_eq!(e.to_string(), "synthetic.gguf: missing metadata key 'nope.key'");
    let e = f.get_str("t.u32").unwrap_err();
    assert!(!e.is_missing_key());
    assert_eq!(
        e.to_string(),
        "synthetic.gguf: metadata key 't.u32' has the wrong type: expected string, found u32"
    );
    let e = f.get_str_array("t.ints").unwrap_err();
    assert!(e.to_string().contains("expected array<string>, found array<i32>"), "{e}");
    let e = f.get_bool("t.u8").unwrap_err();
    assert!(e.to_string().contains("expected bool, found u8"), "{e}");
    let e = f.get_f32("t.strs").unwrap_err();
    assert!(e.to_string().contains("found array<string>"), "{e}");
    assert!(f.get_array("t.u8").is_err());
    assert!(f.architecture().is_ok());
}

#[test]
fn typed_getters() {
    let f = sample().parse().unwrap();
    assert_eq!(f.get_f32("t.f32").unwrap(), 1e-5);
    assert_eq!(f.get_f64("t.f32").unwrap(), f64::from(1e-5f32));
    assert_eq!(f.get_f64("t.f64").unwrap(), 0.1);
    assert_eq!(f.get_f32("t.f64").unwrap(), 0.1f32);
    assert!(f.get_bool("t.bool").unwrap());
    assert_eq!(f.get_str_array("t.strs").unwrap(), vec!["a", "", "ü"]);
    assert_eq!(f.get_i32_array("t.ints").unwrap(), vec![1, -2, 3]);
    assert_eq!(f.get_i32_array("t.u8s").unwrap(), vec![1, 255]);
    assert_eq!(f.get_u32_array("t.u8s").unwrap(), vec![1, 255]);
    assert!(matches!(f.get_u32_array("t.ints").unwrap_err(), GgufError::OutOfRange { .. }));
    assert_eq!(f.get_f32_array("t.f32s").unwrap(), vec![0.5, -1.25]);
    assert_eq!(f.get_bool_array("t.bools").unwrap(), vec![true, false]);
    assert_eq!(f.get_i32_array("t.empty").unwrap(), Vec::<i32>::new());
    assert!(matches!(f.get_f32_array("t.ints").unwrap_err(), GgufError::WrongType { .. }));
    assert!(matches!(f.get_i32_array("t.nested").unwrap_err(), GgufError::WrongType { .. }));
    assert!(f.get_i32_array("missing").unwrap_err().is_missing_key());
}

#[test]
fn tensor_api() {
    let f = sample().parse().unwrap();
    let names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["emb", "h", "b", "q"]);
    let t = f.tensor_info("emb").unwrap();
    assert_eq!(t.ne, vec![4, 6]);
    assert_eq!(t.shape, vec![6, 4]);
    assert_eq!(t.n_elements, 24);
    assert_eq!(t.n_bytes, 96);
    assert_eq!(t.row_len(), 4);
    assert_eq!(t.n_rows(), 6);
    assert_eq!(t.file_offset, f.data_offset() + t.offset);
    let emb: Vec<f32> = (0..24).map(|i| i as f32 * 0.25 - 3.0).collect();
    assert_eq!(f.dequantize("emb").unwrap(), emb);
    assert_eq!(f.raw_bytes("emb").unwrap(), f32_bytes(&emb).as_slice());
    assert_eq!(f.dequantize_rows("emb", 2..4).unwrap(), emb[8..16].to_vec());
    assert_eq!(f.dequantize_rows("emb", 6..6).unwrap(), Vec::<f32>::new());
    let e = f.dequantize_rows("emb", 5..7).unwrap_err();
    assert!(matches!(e, GgufError::RowRangeOutOfBounds { .. }), "{e}");

    let h = f.dequantize("h").unwrap();
    assert_eq!(h, (0..8).map(|i| f16::from_f32(i as f32 / 3.0).to_f32()).collect::<Vec<_>>());
    let b = f.tensor_info("b").unwrap();
    assert_eq!(b.shape, vec![2, 2, 2]);
    let bv = f.dequantize("b").unwrap();
    assert_eq!(bv, (0..8).map(|i| bf16::from_f32(-(i as f32) / 7.0).to_f32()).collect::<Vec<_>>());

    let q = f.tensor_info("q").unwrap();
    assert_eq!(q.shape, vec![2, 32]);
    assert_eq!(q.n_bytes, 68);
    let raw = f.raw_bytes("q").unwrap().to_vec();
    let qv = f.dequantize("q").unwrap();
    for (blk, out) in raw.chunks(34).zip(qv.chunks(32)) {
        let d = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
        for j in 0..32 {
            let want = f32::from(blk[2 + j] as i8) * d;
            assert_eq!(out[j].to_bits(), want.to_bits());
        }
    }
    assert_eq!(f.dequantize_rows("q", 1..2).unwrap(), qv[32..].to_vec());

    let e = f.dequantize("nope").unwrap_err();
    assert_eq!(e.to_string(), "synthetic.gguf: no tensor named 'nope'");
    assert!(f.raw_bytes("nope").is_err());
    assert!(f.has_tensor("q") && !f.has_tensor("nope"));
}

#[test]
fn zero_dim_and_empty_tensors() {
    let f = Builder::new()
        .t(tensor("scalar", &[], GgmlType::F32, f32_bytes(&[2.5])))
        .t(tensor("empty", &[0, 5], GgmlType::F32, vec![]))
        .t(tensor("empty2", &[64, 0], GgmlType::Q4_0, vec![]))
        .t(tensor("after", &[2], GgmlType::F32, f32_bytes(&[1.0, 2.0])))
        .parse()
        .unwrap();
    let s = f.tensor_info("scalar").unwrap();
    assert_eq!((s.n_elements, s.shape.len()), (1, 0));
    assert_eq!(f.dequantize("scalar").unwrap(), vec![2.5]);
    assert_eq!(f.dequantize("empty").unwrap(), Vec::<f32>::new());
    assert_eq!(f.tensor_info("empty").unwrap().shape, vec![5, 0]);
    assert_eq!(f.dequantize("empty2").unwrap(), Vec::<f32>::new());
    assert_eq!(f.dequantize("after").unwrap(), vec![1.0, 2.0]);
}

#[test]
fn unsupported_type_dequant_error_names_tensor() {
    // Q8_K is ggml's intermediate (activation) type: storable, but never a weight format.
    let f = Builder::new().t(tensor("q8k", &[256], GgmlType::Q8_K, vec![0u8; 292])).parse().unwrap();
    assert_eq!(f.raw_bytes("q8k").unwrap().len(), 292);
    let e = f.dequantize("q8k").unwrap_err();
    assert!(matches!(e, GgufError::Dequant { source: DequantError::Unsupported(GgmlType::Q8_K), .. }));
    assert_eq!(
        e.to_string(),
        "synthetic.gguf: tensor 'q8k': dequantisation of ggml type Q8_K is not supported"
    );
}

#[test]
fn custom_alignment() {
    let mut b = sample().kv("general.alignment", GgufValue::U32(64));
    b.alignment = 64;
    let f = b.parse().unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_offset() % 64, 0);
    for t in f.tensors() {
        assert_eq!(t.offset % 64, 0);
    }
    assert_eq!(f.dequantize("emb").unwrap()[1], -2.75);
    // Files written with 32-byte alignment but declaring 64 have misaligned offsets.
    let e = err_of(&sample().kv("general.alignment", GgufValue::U32(64)));
    assert!(matches!(e, GgufError::MisalignedOffset { .. } | GgufError::TensorOutOfBounds { .. }), "{e}");
}

#[test]
fn bad_alignment_values() {
    for v in [
        GgufValue::U32(0),
        GgufValue::U32(3),
        GgufValue::U32(48),
        GgufValue::String("32".into()),
        GgufValue::I32(-32),
        GgufValue::U64(1 << 40),
    ] {
        let e = err_of(&sample().kv("general.alignment", v.clone()));
        assert!(matches!(e, GgufError::BadAlignment { .. }), "{v:?}: {e}");
        assert!(e.to_string().contains("general.alignment"), "{e}");
    }
}

// =========================================================================================================
// Malformed input.

#[test]
fn bad_magic() {
    let mut b = sample();
    b.magic = *b"GGML";
    let e = err_of(&b);
    assert!(matches!(e, GgufError::BadMagic { found, .. } if &found == b"GGML"), "{e}");
    assert!(e.to_string().starts_with("synthetic.gguf: bad magic"), "{e}");
}

#[test]
fn bad_versions() {
    for (v, hint) in
        [(1u32, "v1"), (0, ""), (4, ""), (99, ""), (3u32.swap_bytes(), "big-endian"), (u32::MAX, "")]
    {
        let mut b = sample();
        b.version = v;
        let e = err_of(&b);
        assert!(matches!(e, GgufError::UnsupportedVersion { version, .. } if version == v), "{e}");
        assert!(e.to_string().contains(&format!("version {v}")), "{e}");
        assert!(e.to_string().contains(hint), "{e}");
    }
}

#[test]
fn absurd_counts() {
    let mut b = sample();
    b.n_kv_override = Some(u64::MAX);
    let e = err_of(&b);
    assert!(matches!(e, GgufError::AbsurdCount { count: u64::MAX, .. }), "{e}");
    assert!(e.to_string().contains("metadata kv count"), "{e}");

    let mut b = sample();
    b.n_tensors_override = Some(1 << 40);
    let e = err_of(&b);
    assert!(matches!(e, GgufError::AbsurdCount { .. }), "{e}");
    assert!(e.to_string().contains("tensor count"), "{e}");

    // More kvs claimed than present, but plausible for the size: runs into the tensor infos, then fails.
    let mut b = sample();
    b.n_kv_override = Some(b.kvs.len() as u64 + 3);
    assert!(b.parse().is_err());
    // More tensors claimed than present.
    let mut b = sample();
    b.n_tensors_override = Some(b.tensors.len() as u64 + 1);
    assert!(b.parse().is_err());

    // Array with an absurd length.
    let mut payload = GgufValueType::U32.id().to_le_bytes().to_vec();
    payload.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
    let e = err_of(&sample().raw_kv(b"big.array", 9, payload));
    assert!(matches!(e, GgufError::AbsurdCount { .. }), "{e}");
    assert!(e.to_string().contains("'big.array'"), "{e}");

    // String with an absurd length.
    let payload = (u64::MAX - 3).to_le_bytes().to_vec();
    let e = err_of(&sample().raw_kv(b"big.string", 8, payload));
    assert!(matches!(e, GgufError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("'big.string'"), "{e}");

    // Key with an absurd length.
    let mut raw = sample().build();
    let key_len_at = 24; // first kv's key length
    raw[key_len_at..key_len_at + 8].copy_from_slice(&(1u64 << 62).to_le_bytes());
    let e = GgufFile::from_bytes("x.gguf", raw).unwrap_err();
    assert!(matches!(e, GgufError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("metadata key #0"), "{e}");
}

#[test]
fn invalid_utf8() {
    let e = err_of(&sample().raw_kv(b"bad\xff", 4, 1u32.to_le_bytes().to_vec()));
    assert!(matches!(e, GgufError::InvalidUtf8 { .. }), "{e}");
    let mut payload = Vec::new();
    enc_str(&mut payload, b"\xc3\x28");
    let e = err_of(&sample().raw_kv(b"bad.value", 8, payload));
    assert!(matches!(e, GgufError::InvalidUtf8 { .. }), "{e}");
    assert!(e.to_string().contains("'bad.value'"), "{e}");
    let mut t = tensor("x", &[1], GgmlType::F32, f32_bytes(&[1.0]));
    t.name = b"bad\x80name".to_vec();
    let e = err_of(&sample().t(t));
    assert!(matches!(e, GgufError::InvalidUtf8 { .. }), "{e}");
    assert!(e.to_string().contains("tensor #4 name"), "{e}");
}

#[test]
fn bad_value_types() {
    let e = err_of(&sample().raw_kv(b"k.x", 13, vec![0; 8]));
    assert!(matches!(e, GgufError::UnknownValueType { type_id: 13, .. }), "{e}");
    assert!(e.to_string().contains("'k.x'"), "{e}");
    let mut payload = 77u32.to_le_bytes().to_vec();
    payload.extend_from_slice(&1u64.to_le_bytes());
    let e = err_of(&sample().raw_kv(b"k.arr", 9, payload));
    assert!(matches!(e, GgufError::UnknownValueType { type_id: 77, .. }), "{e}");
    let e = err_of(&sample().raw_kv(b"k.bool", 7, vec![2]));
    assert!(matches!(e, GgufError::InvalidValue { .. }), "{e}");
    assert!(e.to_string().contains("'k.bool'"), "{e}");
}

#[test]
fn duplicates() {
    let e = err_of(&sample().kv("t.u8", GgufValue::U8(1)));
    assert!(matches!(e, GgufError::DuplicateKey { ref key, .. } if key == "t.u8"), "{e}");
    let e = err_of(&sample().t(tensor("emb", &[1], GgmlType::F32, f32_bytes(&[1.0]))));
    assert!(matches!(e, GgufError::DuplicateTensor { ref tensor, .. } if tensor == "emb"), "{e}");
}

fn nested_array_payload(depth: usize) -> Vec<u8> {
    // depth levels of array-of-array, innermost an empty array of u8.
    let mut out = Vec::new();
    for _ in 0..depth.saturating_sub(1) {
        out.extend_from_slice(&9u32.to_le_bytes());
        out.extend_from_slice(&1u64.to_le_bytes());
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out
}

#[test]
fn nesting_depth() {
    let ok = sample().raw_kv(b"deep.ok", 9, nested_array_payload(MAX_ARRAY_DEPTH));
    let f = ok.parse().unwrap();
    assert!(f.get("deep.ok").unwrap().type_description().starts_with("array<array<"));
    let e = err_of(&sample().raw_kv(b"deep.bad", 9, nested_array_payload(MAX_ARRAY_DEPTH + 1)));
    assert!(matches!(e, GgufError::NestingTooDeep { .. }), "{e}");
    // Very deep nesting must not overflow the stack.
    let e = err_of(&sample().raw_kv(b"deep.huge", 9, nested_array_payload(200_000)));
    assert!(matches!(e, GgufError::NestingTooDeep { .. }), "{e}");
}

#[test]
fn bad_tensor_infos() {
    let e = err_of(&sample().t(TSpec { type_id: 4, ..tensor("t4", &[32], GgmlType::Q4_0, vec![0; 18]) }));
    assert!(matches!(e, GgufError::UnknownGgmlType { type_id: 4, .. }), "{e}");
    assert_eq!(e.to_string(), "synthetic.gguf: tensor 't4': unknown ggml type id 4");
    for id in [5u32, 31, 32, 33, 36, 37, 38, 40, 1000, u32::MAX] {
        let e =
            err_of(&sample().t(TSpec { type_id: id, ..tensor("tx", &[32], GgmlType::Q4_0, vec![0; 18]) }));
        assert!(matches!(e, GgufError::UnknownGgmlType { .. }), "{id}: {e}");
    }
    let e = err_of(&sample().t(tensor("d5", &[1, 1, 1, 1, 1], GgmlType::F32, f32_bytes(&[1.0]))));
    assert!(matches!(e, GgufError::InvalidShape { .. }), "{e}");
    assert!(e.to_string().contains("'d5'") && e.to_string().contains("n_dims = 5"), "{e}");
    let e = err_of(&sample().t(tensor("neg", &[4, -1], GgmlType::F32, vec![])));
    assert!(matches!(e, GgufError::InvalidShape { .. }), "{e}");
    assert!(e.to_string().contains("ne[1] = -1"), "{e}");
    let e = err_of(&sample().t(tensor("huge", &[i64::MAX, 2], GgmlType::F32, vec![])));
    assert!(matches!(e, GgufError::InvalidShape { .. }), "{e}");
    let e = err_of(&sample().t(tensor("huge2", &[1 << 40, 1 << 22], GgmlType::F32, vec![])));
    assert!(matches!(e, GgufError::InvalidShape { .. }), "{e}");
    // Element count 2^62 fits i64 but the byte size 2^64 overflows.
    let e = err_of(&sample().t(tensor("bytes", &[1 << 31, 1 << 31], GgmlType::F32, vec![])));
    assert!(matches!(e, GgufError::InvalidShape { .. } | GgufError::TensorOutOfBounds { .. }), "{e}");
    let e = err_of(&sample().t(tensor("rows", &[48, 2], GgmlType::Q8_0, vec![0; 34 * 3])));
    assert!(matches!(e, GgufError::RowNotBlockMultiple { row_len: 48, block_size: 32, .. }), "{e}");
    assert!(e.to_string().contains("'rows'") && e.to_string().contains("Q8_0"), "{e}");
    let e = err_of(&sample().t(tensor("k", &[128], GgmlType::Q4_K, vec![0; 72])));
    assert!(matches!(e, GgufError::RowNotBlockMultiple { block_size: 256, .. }), "{e}");
}

#[test]
fn tensor_placement_errors() {
    // Data missing at the end of the file.
    let mut raw = sample().build();
    let full = raw.len();
    raw.truncate(full - 1);
    let e = GgufFile::from_bytes("model.gguf", raw).unwrap_err();
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }), "{e}");
    let start = full - 68;
    assert_eq!(
        e.to_string(),
        format!("model.gguf: tensor 'q': data [{start}..{full}] runs past end of file (size {})", full - 1)
    );

    // Offset far past the end, and offsets that overflow.
    let mut b = sample();
    b.tensors[3].offset = Some(1 << 20);
    b.tensors[3].write_data = false;
    assert!(matches!(err_of(&b), GgufError::TensorOutOfBounds { .. }));
    let mut b = sample();
    b.tensors[3].offset = Some(u64::MAX - 31);
    b.tensors[3].write_data = false;
    let e = err_of(&b);
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }), "{e}");

    // Misaligned.
    let mut b = sample();
    b.tensors[1].offset = Some(100);
    let e = err_of(&b);
    assert!(matches!(e, GgufError::MisalignedOffset { offset: 100, alignment: 32, .. }), "{e}");
    assert!(e.to_string().contains("'h'"), "{e}");

    // Overlapping (second tensor placed inside the first).
    let mut b = sample();
    b.tensors[1].offset = Some(32);
    let e = err_of(&b);
    assert!(matches!(e, GgufError::OverlappingTensors { .. }), "{e}");
    assert!(e.to_string().contains("'emb'") && e.to_string().contains("'h'"), "{e}");
    // Same start.
    let mut b = sample();
    b.tensors[3].offset = Some(0);
    assert!(matches!(err_of(&b), GgufError::OverlappingTensors { .. }));
    // Zero-sized tensors may share an offset with anything.
    let f = sample().t(TSpec { offset: Some(0), ..tensor("z", &[0], GgmlType::F32, vec![]) }).parse();
    assert!(f.is_ok());
}

#[test]
fn truncation_at_every_offset_of_a_synthetic_file() {
    let raw = sample().build();
    for len in 0..raw.len() {
        let r = GgufFile::from_bytes("t.gguf", raw[..len].to_vec());
        assert!(r.is_err(), "truncated at {len} parsed");
    }
    assert!(GgufFile::from_bytes("t.gguf", raw).is_ok());
}

#[test]
fn random_corruption_never_panics() {
    let raw = sample().build();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut n_ok = 0;
    for _ in 0..4000 {
        let mut m = raw.clone();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(m.len() as u64) as usize;
            m[i] = match rng.below(4) {
                0 => 0xFF,
                1 => 0,
                2 => m[i] ^ (1 << rng.below(8)),
                _ => rng.below(256) as u8,
            };
        }
        if let Ok(f) = GgufFile::from_bytes("c.gguf", m) {
            n_ok += 1;
            for t in f.tensors() {
                let _ = f.dequantize(&t.name);
            }
            let _ = f.get_str_array("t.strs");
        }
    }
    assert!(n_ok > 0);
}

// =========================================================================================================
// Dequantisation: hand-built blocks.
//
// Each test builds blocks from *logical* values (quants, sub-block scales/mins) using the packing code of
// ggml's `quantize_row_*_ref` (the writer side), and computes the expected values with the documented formula
// of the format. The dequantiser under test uses the reader-side unpacking of `dequantize_row_*`, so the two
// only agree if both the layout and the arithmetic match.

fn h(x: f16) -> [u8; 2] {
    x.to_le_bytes()
}

fn check_bits(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "element {i}: got {g}, want {w}");
    }
}

#[test]
fn plain_float_types() {
    let vals = [0.0f32, -0.0, 1.5, -3.25e-8, f32::MAX, f32::MIN_POSITIVE, 1e-45, f32::INFINITY];
    check_bits(&dequantize(GgmlType::F32, &f32_bytes(&vals), vals.len()).unwrap(), &vals);
    let hb: Vec<u16> = vec![0x0000, 0x8000, 0x3C00, 0x0001, 0x03FF, 0x7BFF, 0xFBFF, 0x7C00, 0x3555];
    let bytes: Vec<u8> = hb.iter().flat_map(|b| b.to_le_bytes()).collect();
    let want: Vec<f32> = hb.iter().map(|&b| f16::from_bits(b).to_f32()).collect();
    check_bits(&dequantize(GgmlType::F16, &bytes, hb.len()).unwrap(), &want);
    assert_eq!(want[3], 2f32.powi(-24)); // smallest f16 subnormal widened exactly
    let want: Vec<f32> = hb.iter().map(|&b| f32::from_bits(u32::from(b) << 16)).collect();
    check_bits(&dequantize(GgmlType::BF16, &bytes, hb.len()).unwrap(), &want);
    assert_eq!(want[2], 0.0078125); // 0x3C00 as bf16 = 2^-7
}

#[test]
fn q8_0_blocks() {
    let mut rng = Rng(1);
    let mut bytes = Vec::new();
    let mut want = Vec::new();
    for b in 0..4 {
        let d = if b == 0 { f16::from_f32(0.5) } else { rng.f16() };
        bytes.extend_from_slice(&h(d));
        for j in 0..32 {
            let q: i8 = if b == 0 { (j * 8 - 128) as i8 } else { rng.range_i32(-128, 127) as i8 };
            bytes.push(q as u8);
            want.push(f32::from(q) * d.to_f32());
        }
    }
    assert_eq!(want[0], -64.0);
    check_bits(&dequantize(GgmlType::Q8_0, &bytes, 128).unwrap(), &want);
}

#[test]
fn q4_0_blocks() {
    let mut rng = Rng(2);
    let mut bytes = Vec::new();
    let mut want = Vec::new();
    for _ in 0..4 {
        let d = rng.f16();
        let q: Vec<u8> = (0..32).map(|_| rng.below(16) as u8).collect();
        bytes.extend_from_slice(&h(d));
        // quantize_row_q4_0_ref: qs[j] = xi0 | (xi1 << 4) with xi0 = element j, xi1 = element j + 16.
        for j in 0..16 {
            bytes.push(q[j] | (q[j + 16] << 4));
        }
        want.extend(q.iter().map(|&x| (i32::from(x) - 8) as f32 * d.to_f32()));
    }
    check_bits(&dequantize(GgmlType::Q4_0, &bytes, 128).unwrap(), &want);
    // A fully known block: d = 1, qs[j] = 0x0F → first half 15-8 = 7, second half 0-8 = -8.
    let mut blk = h(f16::from_f32(1.0)).to_vec();
    blk.extend_from_slice(&[0x0F; 16]);
    let got = dequantize(GgmlType::Q4_0, &blk, 32).unwrap();
    assert_eq!(&got[..16], &[7.0; 16]);
    assert_eq!(&got[16..], &[-8.0; 16]);
}

#[test]
fn q4_1_blocks() {
    let mut rng = Rng(3);
    let mut bytes = Vec::new();
    let mut want = Vec::new();
    for _ in 0..4 {
        let (d, m) = (rng.f16(), rng.f16());
        let q: Vec<u8> = (0..32).map(|_| rng.below(16) as u8).collect();
        bytes.extend_from_slice(&h(d));
        bytes.extend_from_slice(&h(m));
        for j in 0..16 {
            bytes.push(q[j] | (q[j + 16] << 4));
        }
        want.extend(q.iter().map(|&x| f32::from(x) * d.to_f32() + m.to_f32()));
    }
    check_bits(&dequantize(GgmlType::Q4_1, &bytes, 128).unwrap(), &want);
    let mut blk = h(f16::from_f32(0.5)).to_vec();
    blk.extend_from_slice(&h(f16::from_f32(-1.0)));
    blk.extend_from_slice(&[0xF0; 16]);
    let got = dequantize(GgmlType::Q4_1, &blk, 32).unwrap();
    assert_eq!(&got[..16], &[-1.0; 16]);
    assert_eq!(&got[16..], &[6.5; 16]);
}

/// quantize_row_q5_*_ref packing: low nibbles like Q4, 5th bits of element j / j+16 in qh bit j / j+16.
fn pack_q5(q: &[u8]) -> ([u8; 4], [u8; 16]) {
    let mut qh = 0u32;
    let mut qs = [0u8; 16];
    for j in 0..16 {
        qs[j] = (q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4);
        qh |= u32::from((q[j] & 0x10) >> 4) << j;
        qh |= u32::from((q[j + 16] & 0x10) >> 4) << (j + 16);
    }
    (qh.to_le_bytes(), qs)
}

#[test]
fn q5_0_and_q5_1_blocks() {
    let mut rng = Rng(4);
    let (mut b0, mut w0, mut b1, mut w1) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..4 {
        let (d, m) = (rng.f16(), rng.f16());
        let q: Vec<u8> = (0..32).map(|_| rng.below(32) as u8).collect();
        let (qh, qs) = pack_q5(&q);
        b0.extend_from_slice(&h(d));
        b0.extend_from_slice(&qh);
        b0.extend_from_slice(&qs);
        w0.extend(q.iter().map(|&x| (i32::from(x) - 16) as f32 * d.to_f32()));
        b1.extend_from_slice(&h(d));
        b1.extend_from_slice(&h(m));
        b1.extend_from_slice(&qh);
        b1.extend_from_slice(&qs);
        w1.extend(q.iter().map(|&x| f32::from(x) * d.to_f32() + m.to_f32()));
    }
    check_bits(&dequantize(GgmlType::Q5_0, &b0, 128).unwrap(), &w0);
    check_bits(&dequantize(GgmlType::Q5_1, &b1, 128).unwrap(), &w1);
}

/// quantize_row_q2_K_ref / q3_K packing of 256 2-bit values: qs[32·h + l] holds elements 128·h + l + 32·k
/// in bits 2k..2k+1.
fn pack_2bit(l: &[u8]) -> [u8; 64] {
    let mut qs = [0u8; 64];
    for j in (0..256).step_by(128) {
        for i in 0..32 {
            qs[j / 4 + i] = l[j + i] | (l[j + i + 32] << 2) | (l[j + i + 64] << 4) | (l[j + i + 96] << 6);
        }
    }
    qs
}

#[test]
fn q2_k_blocks() {
    let mut rng = Rng(5);
    let mut bytes = Vec::new();
    let mut want = Vec::new();
    for _ in 0..3 {
        let (d, dmin) = (rng.f16(), rng.f16());
        let sc: Vec<u8> = (0..16).map(|_| rng.below(16) as u8).collect();
        let mn: Vec<u8> = (0..16).map(|_| rng.below(16) as u8).collect();
        let l: Vec<u8> = (0..256).map(|_| rng.below(4) as u8).collect();
        // block_q2_K { scales[16] (scale | min << 4), qs[64], d, dmin }
        bytes.extend((0..16).map(|j| sc[j] | (mn[j] << 4)));
        bytes.extend_from_slice(&pack_2bit(&l));
        bytes.extend_from_slice(&h(d));
        bytes.extend_from_slice(&h(dmin));
        for (i, &q) in l.iter().enumerate() {
            let s = i / 16;
            let dl = d.to_f32() * f32::from(sc[s]);
            let ml = dmin.to_f32() * f32::from(mn[s]);
            want.push(dl * f32::from(q) - ml);
        }
    }
    check_bits(&dequantize(GgmlType::Q2_K, &bytes, 768).unwrap(), &want);
}

#[test]
fn q3_k_blocks() {
    let mut rng = Rng(6);
    let mut bytes = Vec::new();
    let mut want = Vec::new();
    for _ in 0..3 {
        let d = rng.f16();
        let sc: Vec<u8> = (0..16).map(|_| rng.below(64) as u8).collect(); // 6-bit, used as sc - 32
        let q: Vec<i32> = (0..256).map(|_| rng.range_i32(-4, 3)).collect();
        // quantize_row_q3_K_ref: scales packing.
        let mut scales = [0u8; 12];
        for (j, &s) in sc.iter().enumerate() {
            let mut l = s;
            if j < 8 {
                scales[j] = l & 0xF;
            } else {
                scales[j - 8] |= (l & 0xF) << 4;
            }
            l >>= 4;
            scales[j % 4 + 8] |= l << (2 * (j / 4));
        }
        // Quants stored as L = q + 4 in 0..8; high bit in hmask[j % 32] bit j / 32, low 2 bits in qs.
        let mut lq: Vec<u8> = q.iter().map(|&x| (x + 4) as u8).collect();
        let mut hmask = [0u8; 32];
        for (j, v) in lq.iter_mut().enumerate() {
            if *v > 3 {
                hmask[j % 32] |= 1 << (j / 32);
                *v -= 4;
            }
        }
        bytes.extend_from_slice(&hmask);
        bytes.extend_from_slice(&pack_2bit(&lq));
        bytes.extend_from_slice(&scales);
        bytes.extend_from_slice(&h(d));
        for (i, &x) in q.iter().enumerate() {
            let dl = d.to_f32() * (i32::from(sc[i / 16]) - 32) as f32;
            want.push(dl * x as f32);
        }
    }
    check_bits(&dequantize(GgmlType::Q3_K, &bytes, 768).unwrap(), &want);
}

/// quantize_row_q4_K_ref / q5_K packing of eight 6-bit scales and mins into 12 bytes.
fn pack_scales_k4(ls: &[u8], lm: &[u8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    s
}

#[test]
fn q4_k_blocks() {
    let mut rng = Rng(7);
    let mut bytes = Vec::new();
    let mut want = Vec::new();
    for _ in 0..3 {
        let (d, dmin) = (rng.f16(), rng.f16());
        let ls: Vec<u8> = (0..8).map(|_| rng.below(64) as u8).collect();
        let lm: Vec<u8> = (0..8).map(|_| rng.below(64) as u8).collect();
        let l: Vec<u8> = (0..256).map(|_| rng.below(16) as u8).collect();
        bytes.extend_from_slice(&h(d));
        bytes.extend_from_slice(&h(dmin));
        bytes.extend_from_slice(&pack_scales_k4(&ls, &lm));
        for j in (0..256).step_by(64) {
            bytes.extend((0..32).map(|i| l[j + i] | (l[j + i + 32] << 4)));
        }
        for (i, &q) in l.iter().enumerate() {
            let s = i / 32;
            want.push(d.to_f32() * f32::from(ls[s]) * f32::from(q) - dmin.to_f32() * f32::from(lm[s]));
        }
    }
    check_bits(&dequantize(GgmlType::Q4_K, &bytes, 768).unwrap(), &want);
}

#[test]
fn q5_k_blocks() {
    let mut rng = Rng(8);
    let mut bytes = Vec::new();
    let mut want = Vec::new();
    for _ in 0..3 {
        let (d, dmin) = (rng.f16(), rng.f16());
        let ls: Vec<u8> = (0..8).map(|_| rng.below(64) as u8).collect();
        let lm: Vec<u8> = (0..8).map(|_| rng.below(64) as u8).collect();
        let l: Vec<u8> = (0..256).map(|_| rng.below(32) as u8).collect();
        // quantize_row_q5_K_ref: high bits in qh[j] with masks (1,2), (4,8), ... per 64 elements.
        let mut qh = [0u8; 32];
        let mut ql = [0u8; 128];
        let (mut m1, mut m2) = (1u8, 2u8);
        for n in (0..256).step_by(64) {
            for j in 0..32 {
                let mut l1 = l[n + j];
                if l1 > 15 {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                let mut l2 = l[n + j + 32];
                if l2 > 15 {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                ql[n / 2 + j] = l1 | (l2 << 4);
            }
            m1 = m1.wrapping_shl(2);
            m2 = m2.wrapping_shl(2);
        }
        bytes.extend_from_slice(&h(d));
        bytes.extend_from_slice(&h(dmin));
        bytes.extend_from_slice(&pack_scales_k4(&ls, &lm));
        bytes.extend_from_slice(&qh);
        bytes.extend_from_slice(&ql);
        for (i, &q) in l.iter().enumerate() {
            let s = i / 32;
            want.push(d.to_f32() * f32::from(ls[s]) * f32::from(q) - dmin.to_f32() * f32::from(lm[s]));
        }
    }
    check_bits(&dequantize(GgmlType::Q5_K, &bytes, 768).unwrap(), &want);
}

#[test]
fn q6_k_blocks() {
    let mut rng = Rng(9);
    let mut bytes = Vec::new();
    let mut want = Vec::new();
    for _ in 0..3 {
        let d = rng.f16();
        let sc: Vec<i8> = (0..16).map(|_| rng.range_i32(-128, 127) as i8).collect();
        let q: Vec<i32> = (0..256).map(|_| rng.range_i32(-32, 31)).collect();
        let l: Vec<u8> = q.iter().map(|&x| (x + 32) as u8).collect();
        // quantize_row_q6_K_ref packing.
        let mut ql = [0u8; 128];
        let mut qh = [0u8; 64];
        for (half, j) in (0..256).step_by(128).enumerate() {
            for i in 0..32 {
                let q1 = l[j + i] & 0xF;
                let q2 = l[j + i + 32] & 0xF;
                let q3 = l[j + i + 64] & 0xF;
                let q4 = l[j + i + 96] & 0xF;
                ql[64 * half + i] = q1 | (q3 << 4);
                ql[64 * half + i + 32] = q2 | (q4 << 4);
                qh[32 * half + i] = (l[j + i] >> 4)
                    | ((l[j + i + 32] >> 4) << 2)
                    | ((l[j + i + 64] >> 4) << 4)
                    | ((l[j + i + 96] >> 4) << 6);
            }
        }
        bytes.extend_from_slice(&ql);
        bytes.extend_from_slice(&qh);
        bytes.extend(sc.iter().map(|&s| s as u8));
        bytes.extend_from_slice(&h(d));
        for (i, &x) in q.iter().enumerate() {
            want.push(d.to_f32() * f32::from(sc[i / 16]) * x as f32);
        }
    }
    check_bits(&dequantize(GgmlType::Q6_K, &bytes, 768).unwrap(), &want);
}

#[test]
fn dequant_size_errors() {
    assert_eq!(
        dequantize(GgmlType::Q8_0, &[0; 34], 16).unwrap_err(),
        DequantError::NotBlockMultiple { ggml_type: GgmlType::Q8_0, n_elements: 16, block_size: 32 }
    );
    assert!(matches!(dequantize(GgmlType::Q8_0, &[0; 33], 32), Err(DequantError::SizeMismatch { .. })));
    assert!(matches!(dequantize(GgmlType::Q6_K, &[0; 210], 512), Err(DequantError::SizeMismatch { .. })));
    assert_eq!(
        dequantize(GgmlType::Q8_1, &[0; 36], 32).unwrap_err(),
        DequantError::Unsupported(GgmlType::Q8_1)
    );
    assert!(matches!(dequantize(GgmlType::MXFP4, &[0; 17], 64), Err(DequantError::SizeMismatch { .. })));
    assert!(matches!(dequantize(GgmlType::IQ1_M, &[0; 56], 128), Err(DequantError::NotBlockMultiple { .. })));
    for t in GgmlType::ALL {
        let unsupported = matches!(
            t,
            GgmlType::Q8_1
                | GgmlType::Q8_K
                | GgmlType::I8
                | GgmlType::I16
                | GgmlType::I32
                | GgmlType::I64
                | GgmlType::F64
        );
        assert_eq!(t.can_dequantize(), !unsupported, "{t}");
        let n = t.block_size() as usize;
        let r = dequantize(t, &vec![0u8; t.type_size() as usize], n);
        assert_eq!(r.is_ok(), t.can_dequantize(), "{t}");
    }
    let mut out = [0f32; 32];
    assert!(dequantize_into(GgmlType::Q4_0, &[0; 18], &mut out).is_ok());
    assert_eq!(out, [-8.0 * 0.0; 32]);
    assert_eq!(byte_size(GgmlType::Q4_K, 512).unwrap(), 288);
}

#[test]
fn type_table() {
    for t in GgmlType::ALL {
        assert_eq!(GgmlType::from_id(t.id()), Some(t));
    }
    assert_eq!(GgmlType::from_id(4), None);
    assert_eq!(GgmlType::from_id(39), Some(GgmlType::MXFP4));
    assert_eq!(GgmlType::Q4_K.to_string(), "Q4_K");
    // ggml-common.h static_asserts.
    assert_eq!(GgmlType::Q2_K.type_size(), 2 * 2 + 256 / 16 + 256 / 4);
    assert_eq!(GgmlType::Q3_K.type_size(), 2 + 256 / 4 + 256 / 8 + 12);
    assert_eq!(GgmlType::Q4_K.type_size(), 2 * 2 + 12 + 256 / 2);
    assert_eq!(GgmlType::Q5_K.type_size(), 2 * 2 + 12 + 256 / 2 + 256 / 8);
    assert_eq!(GgmlType::Q6_K.type_size(), 2 + 256 / 16 + 3 * 256 / 4);
    assert_eq!(GgmlType::IQ2_XXS.type_size(), 2 + 256 / 8 * 2);
    assert_eq!(GgmlType::IQ2_XS.type_size(), 2 + 256 / 8 * 2 + 256 / 32);
    assert_eq!(GgmlType::IQ2_S.type_size(), 2 + 256 / 4 + 256 / 16);
    assert_eq!(GgmlType::IQ3_XXS.type_size(), 2 + 3 * (256 / 8));
    assert_eq!(GgmlType::IQ3_S.type_size(), 2 + 13 * (256 / 32) + 256 / 64);
    assert_eq!(GgmlType::IQ1_S.type_size(), 2 + 256 / 8 + 256 / 16);
    assert_eq!(GgmlType::IQ1_M.type_size(), 256 / 8 + 256 / 16 + 256 / 32);
    assert_eq!(GgmlType::IQ4_NL.type_size(), 2 + 32 / 2);
    assert_eq!(GgmlType::IQ4_XS.type_size(), 2 + 2 + 256 / 64 + 256 / 2);
    assert_eq!(GgmlType::MXFP4.type_size(), 1 + 32 / 2);
    assert_eq!(GgmlType::TQ1_0.type_size(), 2 + 256 / 64 + (256 - 4 * 256 / 64) / 5);
    assert_eq!(GgmlType::TQ2_0.type_size(), 2 + 256 / 4);
    for t in [GgmlType::IQ4_NL, GgmlType::MXFP4] {
        assert_eq!(t.block_size(), 32, "{t}");
    }
    for t in [
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ2_S,
        GgmlType::IQ3_XXS,
        GgmlType::IQ3_S,
        GgmlType::IQ1_S,
        GgmlType::IQ1_M,
        GgmlType::IQ4_XS,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
    ] {
        assert_eq!(t.block_size(), 256, "{t}");
    }
    for id in 0..13 {
        assert_eq!(GgufValueType::from_id(id).map(GgufValueType::id), Some(id));
    }
    assert_eq!(GgufValueType::from_id(13), None);
}

#[test]
fn open_reports_io_errors_with_path() {
    let e = GgufFile::open(std::path::Path::new("/nonexistent/dir/model.gguf")).unwrap_err();
    assert!(matches!(e, GgufError::Io { .. }));
    assert!(e.to_string().starts_with("/nonexistent/dir/model.gguf: "), "{e}");
}

// =========================================================================================================
// i-quants / MXFP4 / ternary tensors through the normal loading path, with gguf-py's reference values
// (tests/data/dequant, see PROVENANCE.md there; the block-level comparison is tests/dequant_vectors.rs).

#[test]
fn iquant_tensors_load_through_gguf_file_and_source() {
    use crate::source::{GgufSource, TensorSource};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dequant");
    let types = [
        GgmlType::IQ4_NL,
        GgmlType::IQ4_XS,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ2_S,
        GgmlType::IQ3_XXS,
        GgmlType::IQ3_S,
        GgmlType::IQ1_S,
        GgmlType::IQ1_M,
        GgmlType::MXFP4,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
    ];
    let mut b = Builder::new();
    let mut want = Vec::new();
    for t in types {
        let stem = t.name().to_lowercase();
        let raw = std::fs::read(dir.join(format!("{stem}.bin"))).unwrap();
        let f32s: Vec<f32> = std::fs::read(dir.join(format!("{stem}.f32")))
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        // Rows of two blocks each.
        let row = 2 * t.block_size() as i64;
        let n_rows = f32s.len() as i64 / row;
        assert_eq!(n_rows * row, f32s.len() as i64);
        b = b.t(tensor(&stem, &[row, n_rows], t, raw));
        want.push((stem, t, row as usize, n_rows as u64, f32s));
    }
    let bytes = b.build();
    let f = GgufFile::from_bytes("iq.gguf", bytes.clone()).unwrap();
    let path = std::env::temp_dir().join(format!("sinkscope-iq-{}.gguf", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let src = GgufSource::new(GgufFile::open(&path).unwrap(), &path);
    for (name, t, row, n_rows, w) in &want {
        let info = f.tensor_info(name).unwrap();
        assert_eq!(info.ggml_type, *t);
        assert_eq!(info.shape, vec![*n_rows as usize, *row]);
        check_bits(&f.dequantize(name).unwrap(), w);
        check_bits(&f.dequantize_rows(name, 1..3).unwrap(), &w[*row..3 * *row]);
        check_bits(&src.read_f32(name).unwrap(), w);
        assert_eq!(src.tensors()[name.as_str()].dtype, format!("{t:?}"));
    }
    std::fs::remove_file(&path).unwrap();
}
