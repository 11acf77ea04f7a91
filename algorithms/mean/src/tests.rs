use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use warden_sdk::{Environment, RunState};

use super::*;
use crate::stats::Sum;
use crate::table::{TableError, column_stats, count_rows};

#[track_caller]
fn check(csv: &str, column: &str, expect: (f64, u64, u64)) {
    let s = column_stats(csv.as_bytes(), Path::new("t.csv"), column).unwrap();
    assert_eq!((s.sum, s.count, s.skipped), expect, "{csv:?}");
}

#[track_caller]
fn check_err(csv: &[u8], column: &str, needle: &str) {
    let e = column_stats(csv, Path::new("t.csv"), column).unwrap_err();
    assert!(e.to_string().contains(needle), "{e} lacks {needle:?}");
}

fn org(id: i64, name: &str) -> Organization {
    Organization {
        id,
        name: name.into(),
    }
}

fn done(id: i64, result: &str) -> SubtaskResult {
    SubtaskResult {
        organization_id: id,
        state: RunState::Completed,
        result: Some(result.as_bytes().to_vec()),
        reason: None,
    }
}

fn ended(id: i64, state: RunState, reason: &str) -> SubtaskResult {
    SubtaskResult {
        organization_id: id,
        state,
        result: None,
        reason: Some(reason.into()),
    }
}

#[test]
fn numeric_cells_are_summed_and_the_rest_skipped() {
    check("age\n30\n40\n", "age", (70.0, 2, 0));
    check("id,age\n1,30\n2,\n3,n/a\n4,41.5\n", "age", (71.5, 2, 2));
    check("age\n-2.5e1\n+5\n1E2\n", "age", (80.0, 3, 0));
    check("age\nNaN\ninf\n-infinity\n1\n", "age", (1.0, 1, 3));
    check("a,age\n1, 30 \n2,\t12\n", "age", (42.0, 2, 0));
    check(" a , age \n1,2\n", "age", (2.0, 1, 0));
    check("age\r\n1\r\n2\r\n", "age", (3.0, 2, 0));
    check("age\n1\n\n\n2\n", "age", (3.0, 2, 0));
    check(
        "name,age\n\"Doe, J\",50\n\"x\"\"y\",\"7\"\n",
        "age",
        (57.0, 2, 0),
    );
    check("\u{feff}age\n8\n", "age", (8.0, 1, 0));
    check("age\n", "age", (0.0, 0, 0));
    check("age,b\n", "b", (0.0, 0, 0));
    let s = column_stats(&b"age\n\xff\xfe\n3\n"[..], Path::new("t.csv"), "age").unwrap();
    assert_eq!((s.count, s.skipped), (1, 1));
}

#[test]
fn tables_that_are_not_what_they_claim_are_errors() {
    check_err(b"", "age", "has no header row");
    check_err(b"\n\n", "age", "has no header row");
    check_err(
        b"id,weight\n1,2\n",
        "age",
        r#"t.csv has no column "age"; its columns are: "id", "weight""#,
    );
    check_err(
        b"age,age\n1,2\n",
        "age",
        "has the column \"age\" more than once",
    );
    check_err(b"id,age\n1,2\n3\n", "age", "found record with 1 field");
    check_err(b"id,age\n1,2,3\n", "age", "found record with 3 fields");
    check_err(b"age\n1e308\n1e308\n", "age", "overflows");
    // Column names match exactly.
    check_err(b"Age\n1\n", "age", "no column");
}

#[test]
fn rows_are_counted_without_the_header() {
    let count = |csv: &str| count_rows(csv.as_bytes(), Path::new("t.csv"));
    assert_eq!(count("a,b\n1,2\n3,4\n").unwrap(), 2);
    assert_eq!(count("a\n").unwrap(), 0);
    let e = count("a\n,\n").unwrap_err().to_string();
    assert!(e.contains("found record with 2 fields"), "{e}");
    assert_eq!(count("a\n\n1\n\n").unwrap(), 1);
    assert!(matches!(count(""), Err(TableError::NoHeader { .. })));
}

#[test]
fn a_directory_data_source_holds_data_csv() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("records.csv");
    std::fs::write(&file, "age\n1\n").unwrap();
    assert_eq!(table::table_file(&file).unwrap(), file);
    let e = table::table_file(dir.path()).unwrap_err();
    assert!(e.to_string().contains("without data.csv"), "{e}");
    std::fs::write(dir.path().join("data.csv"), "age\n1\n").unwrap();
    assert_eq!(
        table::table_file(dir.path()).unwrap(),
        dir.path().join("data.csv")
    );
}

#[test]
fn compensated_sums_keep_small_terms() {
    let mut s = Sum::default();
    for v in [1.0, 1e100, 1.0, -1e100] {
        s.add(v);
    }
    assert_eq!(s.value(), 2.0);
    let mut s = Sum::default();
    for _ in 0..10 {
        s.add(0.1);
    }
    assert_eq!(s.value(), 1.0);
}

#[test]
fn the_mean_weighs_organizations_by_their_counts() {
    let p = |sum, count| ColumnStats {
        sum,
        count,
        skipped: 0,
    };
    let m = combine(&[p(10.0, 1), p(0.0, 9)]).unwrap();
    assert_eq!(
        m,
        Mean {
            mean: 1.0,
            count: 10,
            organizations: 2
        }
    );
    let m = combine(&[p(0.0, 0), p(12.0, 4)]).unwrap();
    assert_eq!((m.mean, m.count, m.organizations), (3.0, 4, 2));
    assert_eq!(combine(&[p(0.0, 0)]), Err(CombineError::NoValues));
    assert_eq!(combine(&[]), Err(CombineError::NoValues));
    assert_eq!(
        combine(&[p(1e308, 1), p(1e308, 1)]),
        Err(CombineError::Overflow)
    );
    assert_eq!(
        combine(&[p(1.0, u64::MAX), p(1.0, 1)]),
        Err(CombineError::CountOverflow)
    );
}

#[test]
fn organizations_are_all_or_a_listed_subset_of_the_collaboration() {
    let collab = [org(1, "a"), org(2, "b"), org(3, "c")];
    assert_eq!(select(&collab, None).unwrap(), collab);
    assert_eq!(
        select(&collab, Some(&[3, 1])).unwrap(),
        [org(3, "c"), org(1, "a")]
    );
    assert_eq!(
        select(&collab, Some(&[])),
        Err(CentralError::NoOrganizations)
    );
    assert_eq!(select(&[], None), Err(CentralError::NoOrganizations));
    assert_eq!(
        select(&collab, Some(&[2, 2])),
        Err(CentralError::DuplicateOrganization(2))
    );
    let e = select(&collab, Some(&[1, 9])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "organization 9 is not in the collaboration; its organizations are: 1 (a), 2 (b), 3 (c)"
    );
}

#[test]
fn gathering_names_every_organization_that_let_the_mean_down() {
    let targets = [org(1, "a"), org(2, "b"), org(3, "c")];
    let ok = r#"{"sum": 6.0, "count": 3, "skipped": 1}"#;
    let m = gather(
        &targets,
        &[
            done(1, ok),
            done(2, ok),
            done(3, r#"{"sum": 0, "count": 0, "skipped": 0}"#),
        ],
    )
    .unwrap();
    assert_eq!(
        m,
        Mean {
            mean: 2.0,
            count: 6,
            organizations: 3
        }
    );

    let e = gather(
        &targets,
        &[
            done(1, ok),
            ended(2, RunState::Rejected, "policy: no rule allows this image"),
            ended(3, RunState::Failed, "exit status 1: no column age"),
        ],
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the partial means did not all arrive: organization 2 (b): rejected: policy: no rule \
         allows this image; organization 3 (c): failed: exit status 1: no column age"
    );

    let e = gather(&targets[..2], &[done(1, ok), done(1, ok), done(7, ok)]).unwrap_err();
    let text = e.to_string();
    for needle in [
        "organization 1 (a): 2 runs were reported, expected one",
        "organization 2 (b): no run was reported",
        "organization 7: a run was reported but the subtask was not sent there",
    ] {
        assert!(text.contains(needle), "{text} lacks {needle:?}");
    }

    let e = gather(&targets[..1], &[done(1, r#"{"mean": 3}"#)]).unwrap_err();
    assert!(
        e.to_string()
            .contains("organization 1 (a): its result is not a partial mean"),
        "{e}"
    );
    let e = gather(
        &targets[..1],
        &[done(1, r#"{"sum": 0, "count": 0, "skipped": 2}"#)],
    )
    .unwrap_err();
    assert_eq!(e, CentralError::Combine(CombineError::NoValues));
}

/// Input, data and output of one run in a temporary directory.
struct Sandbox {
    _dir: tempfile::TempDir,
    env: Environment,
}

impl Sandbox {
    fn new(input: Value) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        for d in ["input", "data", "output"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("input/input"), input.to_string()).unwrap();
        let env = Environment {
            input_dir: dir.path().join("input"),
            data_dir: dir.path().join("data"),
            output: dir.path().join("output/output"),
            ..Environment::default()
        };
        Sandbox { _dir: dir, env }
    }

    fn data(&self, name: &str, content: &str) -> &Self {
        std::fs::write(self.env.data_dir.join(name), content).unwrap();
        self
    }

    fn run(&self) -> Result<Value, String> {
        algorithm()
            .run_in(&Context::new(self.env.clone()))
            .map_err(|e| warden_sdk::report(&e))?;
        Ok(serde_json::from_slice(&std::fs::read(&self.env.output).unwrap()).unwrap())
    }
}

#[test]
fn partial_mean_and_count_run_on_the_data_mount() {
    let s = Sandbox::new(
        json!({"function": "partial_mean", "args": {"column": "age", "data": "records"}}),
    );
    s.data("records", "id,age\n1,30\n2,\n3,50\n");
    assert_eq!(
        s.run().unwrap(),
        json!({"sum": 80.0, "count": 2, "skipped": 1})
    );

    let s = Sandbox::new(json!({"function": "count", "args": {"data": "cohort"}}));
    std::fs::create_dir(s.env.data_dir.join("cohort")).unwrap();
    std::fs::write(s.env.data_dir.join("cohort/data.csv"), "a\n1\n2\n3\n").unwrap();
    assert_eq!(s.run().unwrap(), json!({"count": 3}));

    let s = Sandbox::new(
        json!({"function": "partial_mean", "args": {"column": "age", "data": "nope"}}),
    );
    s.data("records", "age\n1\n");
    let e = s.run().unwrap_err();
    assert!(
        e.contains("data source \"nope\" is not mounted") && e.contains("offers: records"),
        "{e}"
    );

    let s = Sandbox::new(json!({"function": "partial_mean", "args": {"column": "age"}}));
    assert!(s.run().unwrap_err().contains("missing field `data`"));
}

/// A stand-in for the node's proxy speaking the contract over a Unix socket: two organizations,
/// partial results computed with this crate's own `partial_mean` on per-organization data.
struct FakeProxy {
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
}

impl FakeProxy {
    fn start(results: Value) -> FakeProxy {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("proxy.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut len = 0;
                let mut auth = String::new();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (n, v) = h.split_once(':').unwrap();
                    match n.to_ascii_lowercase().as_str() {
                        "content-length" => len = v.trim().parse().unwrap(),
                        "authorization" => auth = v.trim().to_owned(),
                        _ => {}
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let target = line.split(' ').take(2).collect::<Vec<_>>().join(" ");
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                log.lock().unwrap().push((target.clone(), body));
                let (status, answer) = if auth != "Bearer t0k" {
                    (
                        403,
                        json!({"error": {"code": "forbidden", "message": "bad token"}}),
                    )
                } else if target == "GET /v1/organizations" {
                    (
                        200,
                        json!({"organizations": [{"id": 1, "name": "hospital-a"}, {"id": 2, "name": "hospital-b"}]}),
                    )
                } else if target == "POST /v1/subtasks" {
                    (201, json!({"task_id": 41}))
                } else if target.starts_with("GET /v1/subtasks/41/results?wait=") {
                    (200, results.clone())
                } else {
                    (
                        404,
                        json!({"error": {"code": "not_found", "message": "no such route"}}),
                    )
                };
                let answer = answer.to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        FakeProxy {
            _dir: dir,
            socket,
            seen,
        }
    }
}

fn partial_b64(csv: &str) -> String {
    use base64::Engine as _;
    let stats = column_stats(csv.as_bytes(), Path::new("x"), "age").unwrap();
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&stats).unwrap())
}

fn central(args: Value, results: Value) -> (Result<Value, String>, Vec<(String, Value)>) {
    let proxy = FakeProxy::start(results);
    let mut s = Sandbox::new(json!({"function": "central_mean", "args": args}));
    s.env.proxy_socket = proxy.socket.clone();
    s.env.token = Some("t0k".into());
    let out = s.run();
    let seen = proxy.seen.lock().unwrap().clone();
    (out, seen)
}

#[test]
fn central_mean_asks_every_organization_and_combines_their_partials() {
    let results = json!({"complete": true, "runs": [
        {"organization_id": 1, "state": "completed", "result": partial_b64("age\n20\n30\n"), "reason": null},
        {"organization_id": 2, "state": "completed", "result": partial_b64("age\n70\nx\n"), "reason": null}
    ]});
    let (out, seen) = central(json!({"column": "age", "data": "records"}), results);
    assert_eq!(
        out.unwrap(),
        json!({"mean": 40.0, "count": 3, "organizations": 2})
    );
    let targets: Vec<&str> = seen.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        targets,
        [
            "GET /v1/organizations",
            "POST /v1/subtasks",
            "GET /v1/subtasks/41/results?wait=60"
        ]
    );
    assert_eq!(
        seen[1].1,
        json!({"function": "partial_mean", "args": {"column": "age", "data": "records"}, "organizations": [1, 2]})
    );
}

#[test]
fn central_mean_fails_naming_the_organization_that_refused() {
    let results = json!({"complete": true, "runs": [
        {"organization_id": 2, "state": "rejected", "reason": "policy: image not signed by a pinned key"}
    ]});
    let (out, seen) = central(
        json!({"column": "age", "data": "records", "organizations": [2], "timeout_seconds": 5}),
        results,
    );
    assert_eq!(
        out.unwrap_err(),
        "central_mean failed: the partial means did not all arrive: organization 2 (hospital-b): \
         rejected: policy: image not signed by a pinned key"
    );
    assert_eq!(seen[1].1["organizations"], json!([2]));
    assert_eq!(seen[2].0, "GET /v1/subtasks/41/results?wait=5");

    let (out, seen) = central(
        json!({"column": "age", "data": "records", "organizations": [3]}),
        json!(null),
    );
    assert!(
        out.unwrap_err()
            .contains("organization 3 is not in the collaboration")
    );
    assert_eq!(
        seen.len(),
        1,
        "no subtask is created for an unknown organization"
    );
}
