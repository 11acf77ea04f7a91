//! The vantage6 4.x container contract (docs/vantage6.md): what a run admitted by a rule with
//! `contract = "vantage6"` finds in its container instead of Warden's. Pure: the node writes the
//! files and passes the environment to the same hardened run as any other.
//!
//! What vantage6-algorithm-tools 4.x reads (`wrap.py`, `decorators.py`, `util.py`):
//! `INPUT_FILE` (JSON `{"method", "args", "kwargs"}`), `OUTPUT_FILE` (the JSON the wrapper
//! writes: the run's result), `TOKEN_FILE` (a JWT whose `sub` claim names the task,
//! organization, collaboration, image and databases; its signature is never checked by the
//! tools), `TEMPORARY_FOLDER`, `HOST`, `PORT`, `API_PATH`, `USER_REQUESTED_DATABASE_LABELS` and
//! per label `<LABEL>_DATABASE_URI` and `<LABEL>_DATABASE_TYPE`. A 4.x node encodes every value
//! as base32 with `=` written `!`; the wrapper decodes them (`_decode_env_vars`), so the node
//! does the same: a plain value that happens to be valid base32 would otherwise be garbled.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// Where the vantage6 files are, inside the container.
pub const INPUT_FILE: &str = "/mnt/input/input";
pub const TOKEN_FILE: &str = "/mnt/input/token";
pub const OUTPUT_FILE: &str = "/mnt/output/output";
pub const TEMPORARY_FOLDER: &str = "/tmp";
/// The token file's name in the run's input directory.
pub const TOKEN_NAME: &str = "token";
/// Where `AlgorithmClient` speaks HTTP: the loopback of the run's network namespace.
pub const HOST: &str = "http://127.0.0.1";
pub const API_PATH: &str = "/api";
/// The port the loopback shim listens on inside the run's network namespace.
pub const PORT: u16 = 7601;

/// The run's input as vantage6 4.x reads it, and the labels of the databases it asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// `{"method", "args", "kwargs"}`, serialised.
    pub file: Vec<u8>,
    pub method: String,
    /// The requested database labels, in order; `None` when the input names none.
    pub databases: Option<Vec<String>>,
}

/// The shape a vantage6-contract input's `args` must have.
pub const ARGS_SHAPE: &str = "the vantage6 contract takes \"args\" as null or {\"args\": [...], \
     \"kwargs\": {...}, \"databases\": [\"label\" | {\"label\": \"...\"}, ...]} (each optional)";

/// Maps Warden's canonical input `{"function": F, "args": A}` onto vantage6's
/// `{"method": F, "args": A.args or [], "kwargs": A.kwargs or {}}`. `A` is null or an object of
/// exactly those optional keys plus `databases`; anything else is refused, naming the shape.
pub fn input(canonical: &[u8]) -> Result<Input, String> {
    let v: Value =
        serde_json::from_slice(canonical).map_err(|e| format!("the input is not JSON: {e}"))?;
    let method = v
        .get("function")
        .and_then(Value::as_str)
        .ok_or("the input names no function")?
        .to_owned();
    let (args, kwargs, databases) = match v.get("args") {
        None | Some(Value::Null) => (Value::Array(vec![]), Value::Object(Map::new()), None),
        Some(Value::Object(o)) => {
            if let Some(k) = o
                .keys()
                .find(|k| !matches!(k.as_str(), "args" | "kwargs" | "databases"))
            {
                return Err(format!("{ARGS_SHAPE}; unknown key {}", json!(k)));
            }
            let args = match o.get("args") {
                None | Some(Value::Null) => Value::Array(vec![]),
                Some(a @ Value::Array(_)) => a.clone(),
                Some(_) => return Err(format!("{ARGS_SHAPE}; \"args\" is not an array")),
            };
            let kwargs = match o.get("kwargs") {
                None | Some(Value::Null) => Value::Object(Map::new()),
                Some(k @ Value::Object(_)) => k.clone(),
                Some(_) => return Err(format!("{ARGS_SHAPE}; \"kwargs\" is not an object")),
            };
            let databases = match o.get("databases") {
                None | Some(Value::Null) => None,
                Some(Value::Array(list)) => Some(database_labels(list)?),
                Some(_) => return Err(format!("{ARGS_SHAPE}; \"databases\" is not an array")),
            };
            (args, kwargs, databases)
        }
        Some(_) => return Err(format!("{ARGS_SHAPE}; \"args\" is not an object")),
    };
    let file = serde_json::to_vec(&json!({"method": method, "args": args, "kwargs": kwargs}))
        .map_err(|e| e.to_string())?;
    Ok(Input {
        file,
        method,
        databases,
    })
}

/// `["a", {"label": "b"}]` -> `["a", "b"]`; an object with another key, or an empty or repeated
/// label, is refused.
pub fn database_labels(list: &[Value]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for d in list {
        let label = match d {
            Value::String(s) => s.clone(),
            Value::Object(o) => {
                if let Some(k) = o.keys().find(|k| k.as_str() != "label") {
                    return Err(format!(
                        "a database is named by its label only; this node does not apply {} \
                         (vantage6 preprocessing, queries and sheets are not supported)",
                        json!(k)
                    ));
                }
                match o.get("label") {
                    Some(Value::String(s)) => s.clone(),
                    _ => return Err(format!("{ARGS_SHAPE}; a database has no string label")),
                }
            }
            _ => return Err(format!("{ARGS_SHAPE}; a database is not a label")),
        };
        if label.is_empty() {
            return Err("a database label is empty".into());
        }
        if out.contains(&label) {
            return Err(format!("the database {} is requested twice", json!(label)));
        }
        out.push(label);
    }
    Ok(out)
}

/// The vantage6 type of a data source, from its file name: `parquet`, `excel` (`.xlsx`,
/// `.xls`), else `csv` (the tools' own default).
pub fn database_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("parquet") => "parquet",
        Some("xlsx" | "xls") => "excel",
        _ => "csv",
    }
}

/// The databases a run gets: the requested labels (each must be one of the node's data
/// sources), or all of the node's data sources by name when the input names none. Each is
/// `(label, path inside the container, type)`.
pub fn databases(
    requested: Option<&[String]>,
    data: &BTreeMap<String, std::path::PathBuf>,
) -> Result<Vec<(String, String, &'static str)>, String> {
    let labels: Vec<String> = match requested {
        Some(r) => r.to_vec(),
        None => data.keys().cloned().collect(),
    };
    let mut out = Vec::with_capacity(labels.len());
    for label in labels {
        let Some(path) = data.get(&label) else {
            let known = if data.is_empty() {
                "none".to_owned()
            } else {
                data.keys()
                    .map(|k| json!(k).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(format!(
                "the input asks for the database {}, which this node does not have (its data \
                 sources: {known})",
                json!(label)
            ));
        };
        let inside = format!("{}/{label}", warden_runtime::DATA_MOUNT);
        out.push((label, inside, database_type(path)));
    }
    Ok(out)
}

/// What the token's `sub` claim says (read by `AlgorithmClient` and `@metadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub task_id: i64,
    pub node_id: i64,
    pub organization_id: i64,
    pub collaboration_id: i64,
    /// The admitted image, `repository@digest`.
    pub image: String,
    pub databases: Vec<(String, &'static str)>,
}

/// The run's token: JWT-shaped (`header.payload.signature`, base64url) so that the tools can
/// read their claims, with the node's per-run random `secret` as its signature part. The proxy
/// accepts the whole string and nothing else; the claims give the container no power (the
/// proxy's scope is the node's, never the token's).
pub fn token(claims: &Claims, secret: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let databases: Vec<Value> = claims
        .databases
        .iter()
        // Labels only: `AlgorithmClient` sends these back with each subtask it creates.
        .map(|(label, _)| json!({"label": label}))
        .collect();
    let payload = json!({"sub": {
        "client_type": "container",
        "task_id": claims.task_id,
        "node_id": claims.node_id,
        "organization_id": claims.organization_id,
        "collaboration_id": claims.collaboration_id,
        "image": claims.image,
        "databases": databases,
    }});
    let payload = b64.encode(payload.to_string().as_bytes());
    let signature = b64.encode(secret.as_bytes());
    format!("{header}.{payload}.{signature}")
}

/// The environment of a vantage6-contract run, every value encoded as a 4.x node does.
pub fn environment(databases: &[(String, String, &'static str)]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut put = |k: String, v: &str| {
        env.insert(k, encode_env(v));
    };
    put("INPUT_FILE".into(), INPUT_FILE);
    put("OUTPUT_FILE".into(), OUTPUT_FILE);
    put("TOKEN_FILE".into(), TOKEN_FILE);
    put("TEMPORARY_FOLDER".into(), TEMPORARY_FOLDER);
    put("HOST".into(), HOST);
    put("PORT".into(), &PORT.to_string());
    put("API_PATH".into(), API_PATH);
    let labels: Vec<&str> = databases.iter().map(|(l, _, _)| l.as_str()).collect();
    put("USER_REQUESTED_DATABASE_LABELS".into(), &labels.join(","));
    for (label, uri, kind) in databases {
        let prefix = label.to_uppercase();
        put(format!("{prefix}_DATABASE_URI"), uri);
        put(format!("{prefix}_DATABASE_TYPE"), kind);
    }
    env
}

/// A 4.x node's encoding of an environment value: RFC 4648 base32, `=` written `!`.
pub fn encode_env(value: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    for chunk in bytes.chunks(5) {
        let mut block = [0u8; 5];
        block[..chunk.len()].copy_from_slice(chunk);
        let n = block.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let symbols = (chunk.len() * 8).div_ceil(5);
        for i in 0..8 {
            if i < symbols {
                let index = usize::try_from((n >> (35 - 5 * i)) & 31).unwrap_or(0);
                out.push(char::from(ALPHABET[index]));
            } else {
                out.push('!');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_encoded_as_python_b32encode_with_bangs() {
        // Expected values from Python: base64.b32encode(v.encode()).decode().replace("=", "!")
        for (plain, encoded) in [
            ("", ""),
            ("a", "ME!!!!!!"),
            ("ab", "MFRA!!!!"),
            ("abc", "MFRGG!!!"),
            ("abcd", "MFRGGZA!"),
            ("abcde", "MFRGGZDF"),
            ("7601", "G43DAMI!"),
            ("/mnt/input/input", "F5WW45BPNFXHA5LUF5UW44DVOQ!!!!!!"),
            ("http://127.0.0.1", "NB2HI4B2F4XTCMRXFYYC4MBOGE!!!!!!"),
        ] {
            assert_eq!(encode_env(plain), encoded, "{plain}");
        }
    }

    #[test]
    fn the_input_maps_onto_method_args_kwargs() {
        let i = input(br#"{"function":"central","args":{"kwargs":{"column":"age"}}}"#).unwrap();
        assert_eq!(i.method, "central");
        let v: Value = serde_json::from_slice(&i.file).unwrap();
        assert_eq!(
            v,
            json!({"method": "central", "args": [], "kwargs": {"column": "age"}})
        );
        assert_eq!(i.databases, None);
        let i = input(br#"{"function":"p","args":{"args":[1,2],"databases":["a",{"label":"b"}]}}"#)
            .unwrap();
        let v: Value = serde_json::from_slice(&i.file).unwrap();
        assert_eq!(v, json!({"method": "p", "args": [1, 2], "kwargs": {}}));
        assert_eq!(i.databases, Some(vec!["a".into(), "b".into()]));
        let i = input(br#"{"function":"p","args":null}"#).unwrap();
        let v: Value = serde_json::from_slice(&i.file).unwrap();
        assert_eq!(v, json!({"method": "p", "args": [], "kwargs": {}}));
    }

    #[test]
    fn other_shapes_are_refused_with_the_shape_named() {
        for bad in [
            r#"{"function":"p","args":[1]}"#,
            r#"{"function":"p","args":"x"}"#,
            r#"{"function":"p","args":{"column":"age"}}"#,
            r#"{"function":"p","args":{"args":{}}}"#,
            r#"{"function":"p","args":{"kwargs":[]}}"#,
            r#"{"function":"p","args":{"databases":"a"}}"#,
            r#"{"function":"p","args":{"databases":[1]}}"#,
        ] {
            let e = input(bad.as_bytes()).unwrap_err();
            assert!(e.contains("the vantage6 contract takes"), "{bad}: {e}");
        }
        let e = input(br#"{"function":"p","args":{"databases":[{"label":"a","query":"x"}]}}"#)
            .unwrap_err();
        assert!(e.contains("\"query\""), "{e}");
        let e = input(br#"{"function":"p","args":{"databases":["a","a"]}}"#).unwrap_err();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn databases_are_the_nodes_data_sources() {
        let data = BTreeMap::from([
            ("records".to_owned(), "/srv/records.csv".into()),
            ("visits".to_owned(), "/srv/v.parquet".into()),
        ]);
        let all = databases(None, &data).unwrap();
        assert_eq!(
            all,
            vec![
                ("records".into(), "/mnt/data/records".into(), "csv"),
                ("visits".into(), "/mnt/data/visits".into(), "parquet"),
            ]
        );
        let one = databases(Some(&["visits".to_owned()]), &data).unwrap();
        assert_eq!(one.len(), 1);
        let e = databases(Some(&["default".to_owned()]), &data).unwrap_err();
        assert!(
            e.contains("\"default\"") && e.contains("\"records\", \"visits\""),
            "{e}"
        );
    }

    #[test]
    fn the_token_reads_as_a_jwt_with_the_secret_as_signature() {
        let claims = Claims {
            task_id: 3,
            node_id: 4,
            organization_id: 5,
            collaboration_id: 6,
            image: "r/x@sha256:00".into(),
            databases: vec![("records".into(), "csv")],
        };
        let t = token(&claims, "s3cret");
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(payload["sub"]["task_id"], 3);
        assert_eq!(payload["sub"]["organization_id"], 5);
        assert_eq!(payload["sub"]["databases"][0]["label"], "records");
        assert_eq!(b64.decode(parts[2]).unwrap(), b"s3cret");
    }

    #[test]
    fn the_environment_names_every_file_and_database() {
        let env = environment(&[("records".into(), "/mnt/data/records".into(), "csv")]);
        assert_eq!(env["INPUT_FILE"], encode_env(INPUT_FILE));
        assert_eq!(env["RECORDS_DATABASE_URI"], encode_env("/mnt/data/records"));
        assert_eq!(env["RECORDS_DATABASE_TYPE"], encode_env("csv"));
        assert_eq!(env["USER_REQUESTED_DATABASE_LABELS"], encode_env("records"));
        assert_eq!(env["PORT"], encode_env("7601"));
        assert!(!env.keys().any(|k| k.starts_with("WARDEN_")));
    }
}
