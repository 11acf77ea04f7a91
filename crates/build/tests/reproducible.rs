//! Reproducible builds against real tools (git, cc, cargo) and the real `docker-registry`:
//! the same commit gives the same digest from different directories and at different times,
//! a one-byte change gives another, a patched image under the same tag fails `rebuild` and
//! `reproduced_by`, and forged, replayed and mismatched provenance does not count.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use warden_build::image::{self, File, ImageSpec};
use warden_build::{BuildRequest, provenance, publish};
use warden_reference::{Digest, Repository};
use warden_registry::{Client, ClientOptions};
use warden_testkit::Registry;
use warden_trust::{KeyAlgorithm, SigningKey};

const HELLO: &str =
    "#include <stdio.h>\nint main(void) { puts(\"hello from warden\"); return 0; }\n";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "a")
        .env("GIT_AUTHOR_EMAIL", "a@example.org")
        .env("GIT_COMMITTER_NAME", "a")
        .env("GIT_COMMITTER_EMAIL", "a@example.org")
        .env("GIT_AUTHOR_DATE", "2026-01-02T03:04:05Z")
        .env("GIT_COMMITTER_DATE", "2026-01-02T03:04:05Z")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A repository with `algo/hello/hello.c`; returns (dir, commit).
fn c_repo(source: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("algo/hello")).unwrap();
    std::fs::write(dir.path().join("algo/hello/hello.c"), source).unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-m", "hello"]);
    let commit = git(dir.path(), &["rev-parse", "HEAD"]);
    (dir, commit)
}

fn request(source: &Path, commit: &str, path: &str, cache: &Path) -> BuildRequest {
    BuildRequest {
        source: source.display().to_string(),
        source_uri: Some("https://git.example.org/algorithms".into()),
        commit: commit.to_owned(),
        path: path.to_owned(),
        cache_dir: Some(cache.to_path_buf()),
    }
}

#[test]
fn c_builds_reproduce_from_the_commit_and_a_byte_changes_the_digest() {
    let (repo, commit) = c_repo(HELLO);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first =
        warden_build::build(&request(repo.path(), &commit, "algo/hello", a.path())).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    // A dirty work tree does not reach the build: it exports the commit.
    std::fs::write(
        repo.path().join("algo/hello/hello.c"),
        HELLO.replace("hello", "HELLO"),
    )
    .unwrap();
    let second =
        warden_build::build(&request(repo.path(), &commit[..12], "algo/hello", b.path())).unwrap();
    assert_eq!(
        first.image.digest, second.image.digest,
        "same commit, other dir and time"
    );
    assert_eq!(
        second.commit, commit,
        "the short id resolves to the full commit"
    );
    let layer = image::entries(image::LAYER_TAR, &first.image.layers[0]).unwrap();
    assert_eq!(layer.len(), 1);
    assert_eq!((layer[0].path.as_str(), layer[0].mode), ("hello", 0o755));
    assert_eq!(layer[0].mtime, 1_767_323_045, "mtime is the commit time");
    assert!(first.toolchain.cc.contains("gcc") || first.toolchain.cc.contains("cc"));

    git(repo.path(), &["checkout", "-q", "--", "."]);
    std::fs::write(
        repo.path().join("algo/hello/hello.c"),
        HELLO.replace("warden", "wardeN"),
    )
    .unwrap();
    git(repo.path(), &["commit", "-q", "-am", "one byte"]);
    let changed = git(repo.path(), &["rev-parse", "HEAD"]);
    let third =
        warden_build::build(&request(repo.path(), &changed, "algo/hello", a.path())).unwrap();
    assert_ne!(third.image.digest, first.image.digest, "a one-byte change");

    // Bad input is refused before anything runs.
    for (commit, path) in [
        ("main", "algo/hello"),
        (commit.as_str(), "../etc"),
        ("0000000", "algo/hello"),
    ] {
        let err = warden_build::build(&request(repo.path(), commit, path, a.path())).unwrap_err();
        assert!(matches!(err, warden_build::BuildError::Input(_)), "{err}");
    }
}

fn client() -> Client {
    Client::new(ClientOptions::default()).unwrap()
}

#[tokio::test]
async fn published_provenance_counts_distinct_builders_and_a_patched_image_fails() {
    let registry = Registry::start().unwrap();
    let client = client();
    let repository = Repository::parse(&format!("{}/team/hello", registry.host())).unwrap();
    let (repo, commit) = c_repo(HELLO);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = warden_build::build(&request(repo.path(), &commit, "algo/hello", a.path())).unwrap();
    let two = warden_build::build(&request(repo.path(), &commit, "algo/hello", b.path())).unwrap();
    let pushed = publish::push(&client, &repository, "v1", &one.image)
        .await
        .unwrap();
    assert_eq!(pushed, one.image.digest);
    let digest = pushed;

    let k1 = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let k2 = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let k3 = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let e1 = provenance::sign(&one, &repository, "https://builders.example/1", &k1);
    let e2 = provenance::sign(&two, &repository, "https://builders.example/2", &k2);
    publish::attach(&client, &repository, &digest, &e1)
        .await
        .unwrap();
    publish::attach(&client, &repository, &digest, &e2)
        .await
        .unwrap();
    publish::attach(&client, &repository, &digest, &e2)
        .await
        .unwrap();
    let fetched = publish::fetch_attestations(&client, &repository, &digest)
        .await
        .unwrap();
    assert_eq!(fetched.len(), 2, "the same envelope is attached once");
    let pinned = [k1.public_key(), k2.public_key()];
    let r = provenance::check_reproduced(&fetched, &pinned, &digest, Some(&commit), 2);
    assert!(r.met(), "{r:?}");
    assert_eq!(r.commit.as_deref(), Some(commit.as_str()));
    let statement: serde_json::Value = serde_json::from_slice(
        &provenance::statement(&one, &repository, "b")
            .predicate
            .to_string()
            .into_bytes(),
    )
    .unwrap();
    assert_eq!(
        statement["buildDefinition"]["buildType"],
        provenance::BUILD_TYPE
    );
    assert_eq!(
        statement["buildDefinition"]["externalParameters"]["source"]["path"],
        "algo/hello"
    );

    // The independent rebuild matches.
    assert_eq!(
        publish::compare(&client, &repository, &digest, &two.image)
            .await
            .unwrap(),
        None
    );

    // A patched binary under the same tag: rebuild names layer 0 and the file; no builder
    // attests the new digest, and the old provenance does not transfer to it.
    let mut patched = std::fs::read(a.path().join("target/c/hello")).unwrap();
    let at = patched.len() / 2;
    patched[at] ^= 1;
    let evil = image::assemble(&ImageSpec {
        files: vec![File {
            path: "hello".into(),
            bytes: patched,
            mode: 0o755,
        }],
        entrypoint: vec!["/hello".into()],
        epoch: one.epoch,
        source_uri: one.source_uri.clone(),
        revision: commit.clone(),
        path: "algo/hello".into(),
    });
    let evil_digest = publish::push(&client, &repository, "v1", &evil)
        .await
        .unwrap();
    let diff = publish::compare(&client, &repository, &evil_digest, &two.image)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (diff.layer, diff.file.as_deref()),
        (Some(0), Some("hello")),
        "{diff:?}"
    );
    assert!(diff.detail.contains("content differs"), "{}", diff.detail);
    let evil_atts = publish::fetch_attestations(&client, &repository, &evil_digest)
        .await
        .unwrap();
    assert!(evil_atts.is_empty());
    let r = provenance::check_reproduced(&fetched, &pinned, &evil_digest, Some(&commit), 1);
    assert!(
        !r.met() && r.rejected.len() == 2,
        "provenance for another digest: {r:?}"
    );

    // The same key twice is one builder.
    let again = provenance::sign(&two, &repository, "https://builders.example/1-again", &k1);
    let r = provenance::check_reproduced(&[e1.clone(), again], &pinned, &digest, Some(&commit), 2);
    assert!(!r.met() && r.builders.len() == 1, "{r:?}");

    // A forged signature (the payload changed under k2's signature; an unpinned key).
    let mut env: serde_json::Value = serde_json::from_slice(&e2).unwrap();
    let forged_stmt = provenance::statement(&one, &repository, "https://builders.example/forged");
    let forged_payload = serde_json::to_vec(&forged_stmt).unwrap();
    use base64::Engine as _;
    env["payload"] = base64::engine::general_purpose::STANDARD
        .encode(forged_payload)
        .into();
    let forged = serde_json::to_vec(&env).unwrap();
    let stranger = provenance::sign(&one, &repository, "https://stranger", &k3);
    let r = provenance::check_reproduced(
        &[e1.clone(), forged, stranger],
        &pinned,
        &digest,
        Some(&commit),
        2,
    );
    assert!(
        !r.met() && r.builders.len() == 1 && r.rejected.len() == 2,
        "{r:?}"
    );

    // Different commits across builders do not add up.
    let mut other = two.clone();
    other.commit = "f".repeat(40);
    let e_other = provenance::sign(&other, &repository, "https://builders.example/2", &k2);
    let r = provenance::check_reproduced(&[e1.clone(), e_other.clone()], &pinned, &digest, None, 2);
    assert!(!r.met() && r.builders.len() == 1, "{r:?}");
    let r = provenance::check_reproduced(&[e1, e_other], &pinned, &digest, Some(&commit), 2);
    assert!(!r.met() && r.rejected.len() == 1, "{r:?}");
}

#[test]
fn the_mean_algorithm_rebuilds_to_the_same_digest_from_another_directory() {
    let root = warden_testkit::workspace_root();
    let head = git(&root, &["rev-parse", "HEAD"]);
    let cache = root.join("target").join("warden-build-cache");
    let first = warden_build::build(&request(&root, &head, "algorithms/mean", &cache)).unwrap();
    let second = warden_build::build(&request(&root, &head, "algorithms/mean", &cache)).unwrap();
    assert_eq!(first.image.digest, second.image.digest);
    assert!(
        first.lock_digest.is_some(),
        "the Cargo.lock digest is recorded"
    );
    assert!(
        first
            .toolchain
            .rustc
            .as_deref()
            .unwrap_or("")
            .contains("release:")
    );
    let binary = &image::entries(image::LAYER_TAR, &first.image.layers[0]).unwrap()[0];
    assert_eq!(binary.path, "mean");
    let bytes = &first.image.layers[0];
    for leak in [
        b"warden-build-".as_slice(),
        b"/.cargo/registry",
        root.to_string_lossy().as_bytes(),
    ] {
        assert!(
            !bytes.windows(leak.len()).any(|w| w == leak),
            "the binary names a build path: {}",
            String::from_utf8_lossy(leak)
        );
    }
    let _ = Digest::sha256_of(bytes);
}

/// A warm cache never serves stale code: building a newer commit and then an older one (whose
/// files would look older than the cached artifacts) in one cache gives the older commit's
/// digest as a fresh build does.
#[test]
fn a_warm_cache_builds_an_older_commit_as_a_fresh_build_does() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let pkg = root.join("algo/tiny");
    std::fs::create_dir_all(pkg.join("src")).unwrap();
    std::fs::write(
        pkg.join("Cargo.toml"),
        "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    let commit_at = |msg: &str, date: &str| {
        for args in [vec!["add", "."], vec!["commit", "-q", "-m", msg]] {
            let o = Command::new("git")
                .arg("-C")
                .arg(root)
                .args(&args)
                .env("GIT_AUTHOR_NAME", "a")
                .env("GIT_AUTHOR_EMAIL", "a@example.org")
                .env("GIT_COMMITTER_NAME", "a")
                .env("GIT_COMMITTER_EMAIL", "a@example.org")
                .env("GIT_AUTHOR_DATE", date)
                .env("GIT_COMMITTER_DATE", date)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        git(root, &["rev-parse", "HEAD"])
    };
    git(root, &["init", "-q", "-b", "main"]);
    std::fs::write(
        pkg.join("src/main.rs"),
        "fn main() { println!(\"old\"); }\n",
    )
    .unwrap();
    let o = Command::new("cargo")
        .args(["generate-lockfile", "--offline", "--manifest-path"])
        .arg(pkg.join("Cargo.toml"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let old = commit_at("old", "2026-01-01T00:00:00Z");
    std::fs::write(
        pkg.join("src/main.rs"),
        "fn main() { println!(\"new\"); }\n",
    )
    .unwrap();
    let new = commit_at("new", "2026-06-01T00:00:00Z");
    let (warm, fresh) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let newer = warden_build::build(&request(root, &new, "algo/tiny", warm.path())).unwrap();
    let older_warm = warden_build::build(&request(root, &old, "algo/tiny", warm.path())).unwrap();
    let older_fresh = warden_build::build(&request(root, &old, "algo/tiny", fresh.path())).unwrap();
    assert_ne!(newer.image.digest, older_warm.image.digest);
    assert_eq!(
        older_warm.image.digest, older_fresh.image.digest,
        "the warm cache served the newer commit's code"
    );
    assert_ne!(
        newer.image.layers, older_warm.image.layers,
        "the binary differs, not only the metadata"
    );
}
