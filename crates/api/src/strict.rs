//! Strict JSON for what a policy decides on: an input is parsed once, refusing anything two
//! parsers could read differently (duplicate keys at any depth, a byte-order mark, trailing
//! bytes, invalid UTF-8), and the algorithm is handed a canonical re-serialisation of exactly
//! what was parsed (keys sorted, no insignificant white space). The function the policy tests,
//! the audit records and the algorithm calls are therefore the same.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Longest function name.
pub const MAX_FUNCTION_LEN: usize = 128;
/// Deepest nesting accepted (serde_json's own limit is 128).
const MAX_DEPTH: usize = 64;

/// A strictly parsed input `{"function": "<name>", "args": <any JSON>}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub function: String,
    /// The canonical bytes of the whole input, to hand to the algorithm.
    pub canonical: Vec<u8>,
}

/// A JSON value whose objects have no duplicate keys.
struct Strict(Value);

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Strict, E> {
        serde_json::Number::from_f64(v)
            .map(|n| Strict(Value::Number(n)))
            .ok_or_else(|| E::custom("a number that is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element::<Strict>()? {
            out.push(v);
        }
        Ok(Strict(Value::Array(out)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "the key {:?} appears twice in one object",
                    key
                )));
            }
            let Strict(v) = map.next_value::<Strict>()?;
            out.insert(key, v);
        }
        Ok(Strict(Value::Object(out)))
    }
}

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Parses any JSON document strictly (see the module documentation).
pub fn parse_value(bytes: &[u8]) -> Result<Value, String> {
    if bytes.starts_with(&[0xef, 0xbb, 0xbf]) {
        return Err("it starts with a byte-order mark".into());
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("it is not UTF-8 (byte {})", e.valid_up_to()))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let Strict(v) = serde::Deserialize::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end()
        .map_err(|_| "there are bytes after the JSON document".to_owned())?;
    if depth(&v) > MAX_DEPTH {
        return Err(format!("it nests deeper than {MAX_DEPTH} levels"));
    }
    Ok(v)
}

/// Parses an algorithm input strictly: an object with a `function` string of 1 to
/// [`MAX_FUNCTION_LEN`] bytes without control characters and optionally `args`, nothing else.
pub fn parse_input(bytes: &[u8]) -> Result<Input, String> {
    let v = parse_value(bytes).map_err(|e| format!("the input is not strict JSON: {e}"))?;
    let Value::Object(map) = &v else {
        return Err("the input must be a JSON object {\"function\": ..., \"args\": ...}".into());
    };
    if let Some(k) = map.keys().find(|k| *k != "function" && *k != "args") {
        return Err(format!(
            "the input has the key {k:?}; only \"function\" and \"args\" are allowed"
        ));
    }
    let function = match map.get("function") {
        Some(Value::String(f)) => f.clone(),
        Some(_) => return Err("the input's \"function\" must be a string".into()),
        None => return Err("the input names no \"function\"".into()),
    };
    if function.is_empty()
        || function.len() > MAX_FUNCTION_LEN
        || function.chars().any(char::is_control)
    {
        return Err(format!(
            "the input's \"function\" must be 1 to {MAX_FUNCTION_LEN} bytes without control characters"
        ));
    }
    // serde_json's map is ordered by key: this is the canonical form.
    let canonical = serde_json::to_vec(&v).map_err(|e| e.to_string())?;
    Ok(Input {
        function,
        canonical,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_input_is_canonicalised() {
        let i = parse_input(br#" {"args": {"b": 1, "a": [true, null, 1.5]}, "function": "mean"} "#)
            .unwrap();
        assert_eq!(i.function, "mean");
        assert_eq!(
            i.canonical,
            br#"{"args":{"a":[true,null,1.5],"b":1},"function":"mean"}"#
        );
        assert_eq!(parse_input(&i.canonical).unwrap(), i);
        assert_eq!(
            parse_input(br#"{"function":"f"}"#).unwrap().canonical,
            br#"{"function":"f"}"#
        );
    }

    /// Found by the `api_strict_input` fuzz target: a 100-digit integer is read as the nearest
    /// f64, whose shortest form must read back as the same f64 (serde_json's `float_roundtrip`).
    #[test]
    fn the_canonical_form_of_a_huge_number_is_a_fixed_point() {
        let huge = format!(
            "{{\"function\":\"f\",\"args\":{{\"a\":[0,55{}50]}}}}",
            "1".repeat(79)
        );
        let once = parse_input(huge.as_bytes()).unwrap();
        assert_eq!(parse_input(&once.canonical).unwrap(), once);
    }

    #[test]
    fn anything_two_parsers_could_read_differently_is_refused() {
        for (bad, why) in [
            (&br#"{"function":"leak","function":"noop"}"#[..], "twice"),
            (br#"{"function":"f","args":{"a":1,"a":2}}"#, "twice"),
            (br#"{"function":"f","args":[{"x":1,"x":1}]}"#, "twice"),
            (b"\xef\xbb\xbf{\"function\":\"f\"}", "byte-order mark"),
            (br#"{"function":"f"} {"function":"g"}"#, "after the JSON"),
            (br#"{"function":"f"}x"#, "after the JSON"),
            (b"{\"function\":\"f\xff\"}", "not UTF-8"),
            (br#"{"function":"f","extra":1}"#, "only"),
            (br#"{"function":1}"#, "must be a string"),
            (br#"{"args":{}}"#, "no \"function\""),
            (br#"{"function":"a\nb"}"#, "control"),
            (br#"{"function":""}"#, "1 to"),
            (br#"[{"function":"f"}]"#, "object"),
        ] {
            let e = parse_input(bad).unwrap_err();
            assert!(e.contains(why), "{}: {e}", String::from_utf8_lossy(bad));
        }
        let deep = format!(
            "{{\"function\":\"f\",\"args\":{}{}}}",
            "[".repeat(70),
            "]".repeat(70)
        );
        assert!(parse_input(deep.as_bytes()).unwrap_err().contains("deeper"));
    }
}
