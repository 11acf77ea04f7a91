//! Air-gapped nodes: `warden image export` writes an image and its evidence to an archive
//! (from the real registry), the registry is then stopped, and a node with `[registry] offline
//! = true` takes the archive with `warden image import` over its local socket, verifies it
//! against its own policy, loads it into the Docker engine by digest and runs it. Attacks: an
//! unsigned image's archive, an archive with one layer byte changed, an archive whose signature
//! was swapped for one over another image, and a run of an image that was never imported.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../node/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::World;
use serde_json::{Value, json};
use warden_api::RunState;

const BIN: &str = env!("CARGO_BIN_EXE_warden");

fn warden(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn export(image: &str, out: &Path) -> Value {
    let o = warden(&[
        "image",
        "export",
        "--json",
        "--output",
        out.to_str().unwrap(),
        image,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn import(config: &Path, archive: &Path) -> Output {
    warden(&[
        "image",
        "import",
        "--config",
        config.to_str().unwrap(),
        archive.to_str().unwrap(),
    ])
}

/// The tar entries of `archive`: name, offset of the content, size.
fn tar_entries(archive: &[u8]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= archive.len() && archive[at] != 0 {
        let h = &archive[at..at + 512];
        let name_end = h[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&h[..name_end]).into_owned();
        let size_text = String::from_utf8_lossy(&h[124..136]);
        let size =
            usize::from_str_radix(size_text.trim_matches(|c: char| c == '\0' || c == ' '), 8)
                .unwrap();
        out.push((name, at + 512, size));
        at += 512 + size.div_ceil(512) * 512;
    }
    out
}

/// A copy of `archive` with one byte of its largest blob (a layer) changed.
fn tamper_layer(archive: &Path, out: &Path) {
    let mut bytes = std::fs::read(archive).unwrap();
    let (_, offset, size) = tar_entries(&bytes)
        .into_iter()
        .filter(|(n, _, _)| n.starts_with("blobs/"))
        .max_by_key(|(_, _, s)| *s)
        .unwrap();
    bytes[offset + size / 2] ^= 0x01;
    std::fs::write(out, bytes).unwrap();
}

/// One layout archive holding both `a`'s and `b`'s files, its index listing the manifests of
/// both (a blob both hold written once).
fn merge_archives(a: &Path, b: &Path, out: &Path) {
    let mut files: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    let mut manifests = Vec::new();
    let mut index = Value::Null;
    for archive in [a, b] {
        let mut t = tar::Archive::new(std::fs::File::open(archive).unwrap());
        for entry in t.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            if name == "index.json" {
                let v: Value = serde_json::from_slice(&bytes).unwrap();
                manifests.extend(v["manifests"].as_array().unwrap().iter().cloned());
                index = v;
            } else {
                files.insert(name, bytes);
            }
        }
    }
    index["manifests"] = Value::Array(manifests);
    files.insert("index.json".into(), serde_json::to_vec(&index).unwrap());
    let mut b = tar::Builder::new(std::fs::File::create(out).unwrap());
    for (name, bytes) in &files {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, bytes.as_slice()).unwrap();
    }
    b.finish().unwrap();
}

fn images_dir(config: &Path) -> PathBuf {
    config.parent().unwrap().join("spool/images")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_node_runs_only_the_images_it_imported_and_verified() {
    common::init_tracing();
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("echo", "airgap", "v1");
    w.sign(&repo, &digest).await;
    let (unsigned, _) = w.push_program("echo", "airgap-unsigned", "v1");
    let (never, never_digest) = w.push_program("echo", "airgap-never", "v1");
    w.sign(&never, &never_digest).await;
    let dir = w.dir.path().to_owned();

    // Export while the registry is up.
    let archive = dir.join("airgap.tar");
    let summary = export(&format!("{repo}:v1"), &archive);
    assert_eq!(summary["digest"], digest.to_string(), "{summary}");
    assert!(
        summary["evidence"].as_u64().unwrap() >= 1,
        "the signature tag is carried: {summary}"
    );
    let unsigned_archive = dir.join("unsigned.tar");
    export(&format!("{unsigned}:v1"), &unsigned_archive);
    // The same export twice gives the same bytes.
    let again = dir.join("again.tar");
    export(&format!("{repo}:v1"), &again);
    assert_eq!(
        std::fs::read(&archive).unwrap(),
        std::fs::read(&again).unwrap()
    );

    // A signature over another image, swapped in: the archive of `repo` carrying the `.sig`
    // manifest of `never` (a valid signature by the pinned key, for the wrong digest).
    let swapped = dir.join("swapped.tar");
    {
        let never_archive = dir.join("never.tar");
        export(&format!("{never}:v1"), &never_archive);
        let good = std::fs::read(&archive).unwrap();
        let other = std::fs::read(&never_archive).unwrap();
        // Unpack both, move never's signature manifest under repo's signature tag.
        let work = dir.join("swap");
        std::fs::create_dir_all(&work).unwrap();
        for (name, bytes) in [("good", &good), ("other", &other)] {
            let d = work.join(name);
            std::fs::create_dir_all(&d).unwrap();
            for (entry, offset, size) in tar_entries(bytes) {
                let p = d.join(&entry);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, &bytes[offset..offset + size]).unwrap();
            }
        }
        let mut index: Value =
            serde_json::from_slice(&std::fs::read(work.join("good/index.json")).unwrap()).unwrap();
        let other_index: Value =
            serde_json::from_slice(&std::fs::read(work.join("other/index.json")).unwrap()).unwrap();
        let sig_of = |i: &Value| {
            i["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| {
                    m["annotations"]["org.opencontainers.image.ref.name"]
                        .as_str()
                        .is_some_and(|n| n.ends_with(".sig"))
                })
                .cloned()
                .unwrap()
        };
        let theirs = sig_of(&other_index);
        for m in index["manifests"].as_array_mut().unwrap() {
            if m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .is_some_and(|n| n.ends_with(".sig"))
            {
                let name = m["annotations"]["org.opencontainers.image.ref.name"].clone();
                *m = theirs.clone();
                m["annotations"]["org.opencontainers.image.ref.name"] = name;
            }
        }
        std::fs::write(
            work.join("good/index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
        for entry in std::fs::read_dir(work.join("other/blobs/sha256")).unwrap() {
            let entry = entry.unwrap();
            let to = work.join("good/blobs/sha256").join(entry.file_name());
            if !to.exists() {
                std::fs::copy(entry.path(), to).unwrap();
            }
        }
        let f = std::fs::File::create(&swapped).unwrap();
        warden_registry::layout::pack(&work.join("good"), f).unwrap();
    }
    let tampered = dir.join("tampered.tar");
    tamper_layer(&archive, &tampered);

    // Cut the node off: the registry is gone (another one takes its place at another port).
    w.registry = warden_testkit::Registry::start().unwrap();

    let policy = format!("{}{}", w.signed_policy(&repo), w.signed_policy(&unsigned));
    let config = w.node_config(&w.a, &policy, "\n[registry]\noffline = true\n");
    let node = w.start_node(&config).await;
    let pinned = format!("{repo}:v1@{digest}");

    // Nothing imported yet: the run is refused, and says why.
    let input = json!({"function": "hello", "args": {"x": 1}});
    let task = w.create_task(&pinned, &input, &[&w.a]).await;
    let run = w.wait_final(task.runs[0].id, Duration::from_secs(60)).await;
    assert_eq!(run.state, RunState::Rejected, "{run:?}");
    let reason = run.reason.clone().unwrap_or_default();
    assert!(reason.contains("warden image import"), "{reason}");

    // The unsigned image's archive: refused, nothing loaded.
    let o = import(&config, &unsigned_archive);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not imported"), "{}", text(&o));
    assert!(
        text(&o).contains("0 of the rule's keys signed"),
        "{}",
        text(&o)
    );
    // One layer byte changed: refused before anything is decided.
    let o = import(&config, &tampered);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not to its name"), "{}", text(&o));
    // A valid signature for another digest: it does not count.
    let o = import(&config, &swapped);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("0 of the rule's keys signed"),
        "{}",
        text(&o)
    );
    let index = std::fs::read_to_string(images_dir(&config).join("index.json")).unwrap();
    assert!(
        !index.contains(&digest.to_string()),
        "nothing refused is kept: {index}"
    );

    // The signed image's archive: verified, loaded, kept.
    let o = import(&config, &archive);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains(&digest.to_string()), "{out}");
    assert!(out.contains("signed by sha256:"), "{out}");

    let task = w.create_task(&pinned, &input, &[&w.a]).await;
    let run = w
        .wait_final(task.runs[0].id, Duration::from_secs(120))
        .await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.reason);
    assert_eq!(run.digest.as_deref(), Some(digest.to_string().as_str()));
    let result = String::from_utf8(w.result(run.id).await).unwrap();
    assert!(result.starts_with("env-ok echo:"), "{result}");

    // The engine's copy removed: the next run loads it again from the node's own layout.
    let image_id = {
        let o = Command::new("docker")
            .args(["images", "-q", "--no-trunc"])
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&o.stdout).into_owned();
        let line = out.lines().next().unwrap();
        let id = line
            .split("engine image ")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap()
            .to_owned();
        assert!(listed.contains(&id), "the image is in the engine: {id}");
        id
    };
    let rm = Command::new("docker")
        .args(["rmi", "-f", &image_id])
        .output()
        .unwrap();
    assert!(rm.status.success(), "{}", text(&rm));
    let task = w.create_task(&pinned, &input, &[&w.a]).await;
    let run = w
        .wait_final(task.runs[0].id, Duration::from_secs(120))
        .await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.reason);

    // A signed image never imported is still refused.
    let task = w
        .create_task(&format!("{never}:v1@{never_digest}"), &input, &[&w.a])
        .await;
    let run = w.wait_final(task.runs[0].id, Duration::from_secs(60)).await;
    assert_eq!(run.state, RunState::Rejected, "{run:?}");

    // Every import is on record: three refusals with their reasons, one done.
    let log = std::fs::read_to_string(config.parent().unwrap().join("audit/audit.log")).unwrap();
    let records: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|l| l.get("record").cloned())
        .collect();
    let imports: Vec<&Value> = records.iter().filter(|r| r["event"] == "import").collect();
    assert_eq!(imports.len(), 4, "{imports:?}");
    assert_eq!(
        imports.iter().filter(|r| r["outcome"] == "denied").count(),
        3,
        "{imports:?}"
    );
    let done = imports.iter().find(|r| r["outcome"] == "done").unwrap();
    assert_eq!(done["digest"], digest.to_string());
    assert!(done["by"]["uid"].is_u64(), "{done}");
    let _ = Command::new("docker")
        .args(["rmi", "-f", &image_id])
        .output();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_node_imports_nothing_and_bad_archives_lose_nothing() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("echo", "airgap-online", "v1");
    w.sign(&repo, &digest).await;
    let archive = w.dir.path().join("online.tar");
    export(&format!("{repo}:v1"), &archive);
    let config = w.node_config(&w.a, &w.signed_policy(&repo), "");
    let node = w.start_node(&config).await;
    let o = import(&config, &archive);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("offline = true"), "{}", text(&o));
    node.stop().await;

    let offline = w.node_config_in(
        &w.a,
        &w.a.api_key,
        "node-offline",
        &w.signed_policy(&repo),
        "\n[registry]\noffline = true\n",
    );
    let node = w.start_node(&offline).await;
    // Not a tar, an empty file, a tar with a link: each refused with its reason.
    let junk = w.dir.path().join("junk.tar");
    std::fs::write(&junk, b"not a tar archive at all, just text").unwrap();
    let o = import(&offline, &junk);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let empty = w.dir.path().join("empty.tar");
    std::fs::write(&empty, b"").unwrap();
    let o = import(&offline, &empty);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("empty"), "{}", text(&o));
    let linked = w.dir.path().join("linked.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&linked).unwrap());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "index.json", "/etc/passwd").unwrap();
        b.finish().unwrap();
    }
    let o = import(&offline, &linked);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("link"), "{}", text(&o));
    // An archive naming two images (two exports merged into one index): refused whole.
    let (repo2, _) = w.push_program("echo", "airgap-second", "v1");
    let second = w.dir.path().join("second.tar");
    export(&format!("{repo2}:v1"), &second);
    let two = w.dir.path().join("two.tar");
    merge_archives(&archive, &second, &two);
    let o = import(&offline, &two);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("more than one image"), "{}", text(&o));
    // Nothing was left behind beside the layout.
    let spool = offline.parent().unwrap().join("spool");
    let staged: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("images-staging")
        })
        .collect();
    assert!(staged.is_empty(), "{staged:?}");
    // The good archive still imports afterwards.
    let o = import(&offline, &archive);
    assert!(o.status.success(), "{}", text(&o));
    node.stop().await;
}
