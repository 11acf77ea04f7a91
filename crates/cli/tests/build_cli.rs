//! `warden algorithm build` and `warden algorithm rebuild`, run as the real binary with real git
//! and cc against the real `docker-registry`: the same commit from two directories gives one
//! digest, a one-byte change another, the pushed provenance verifies against the builder's key,
//! and an image of a patched binary pushed under the same tag fails `rebuild` (exit 1, naming the
//! layer and the file). Bad input is exit 2 with a clear error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use warden_build::image::{self, File, ImageSpec};
use warden_build::{provenance, publish};
use warden_reference::{Digest, Repository};
use warden_registry::{Client, ClientOptions};
use warden_testkit::Registry;
use warden_trust::PublicKey;

const PASSWORD: &str = "correct horse battery staple";
const HELLO: &str =
    "#include <stdio.h>\nint main(void) { puts(\"hello from warden\"); return 0; }\n";
const URI: &str = "https://git.example.org/algorithms";

fn warden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .env("WARDEN_PASSWORD", PASSWORD)
        .env("DOCKER_CONFIG", "/nonexistent-warden-test")
        .output()
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", text(o)))
}

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

fn c_repo(dir: &Path, source: &str) -> String {
    std::fs::create_dir_all(dir.join("algo/hello")).unwrap();
    std::fs::write(dir.join("algo/hello/hello.c"), source).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "hello"]);
    git(dir, &["rev-parse", "HEAD"])
}

fn build(source: &Path, commit: &str, image: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "algorithm",
        "build",
        "--source",
        source.to_str().unwrap(),
        "--commit",
        commit,
        "--path",
        "algo/hello",
        "--image",
        image,
        "--source-uri",
        URI,
    ];
    args.extend_from_slice(extra);
    warden(&args)
}

fn rebuild(source: &Path, commit: &str, image: &str) -> Output {
    warden(&[
        "algorithm",
        "rebuild",
        "--image",
        image,
        "--source",
        source.to_str().unwrap(),
        "--commit",
        commit,
        "--path",
        "algo/hello",
        "--json",
    ])
}

fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let prefix = dir.join(name);
    let o = warden(&["keys", "generate", "--out", prefix.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    (prefix.with_extension("key"), prefix.with_extension("pub"))
}

#[tokio::test]
async fn build_push_rebuild_and_a_patched_image_under_the_same_tag() {
    let registry = Registry::start().unwrap();
    let image_ref = format!("{}/team/hello:v1", registry.host());
    let work = tempfile::tempdir().unwrap();
    let (one, two) = (work.path().join("one"), work.path().join("two"));
    let commit = c_repo(&one, HELLO);
    // Another directory: a clone, at a later time.
    let o = Command::new("git")
        .args(["clone", "-q", one.to_str().unwrap(), two.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success());

    let a = build(&one, &commit, &image_ref, &["--json"]);
    assert_eq!(code(&a), 0, "{:?}", text(&a));
    let a = json(&a);
    assert_eq!(a["commit"], commit.as_str());
    assert_eq!(a["image"], image_ref.as_str());
    // Uncommitted changes are named and not built.
    std::fs::write(
        two.join("algo/hello/hello.c"),
        "int main(void){return 1;}\n",
    )
    .unwrap();
    let b = build(&two, &commit[..10], &image_ref, &[]);
    assert_eq!(code(&b), 0, "{:?}", text(&b));
    let (stdout, stderr) = text(&b);
    assert_eq!(
        stdout.trim(),
        a["digest"].as_str().unwrap(),
        "same commit, other directory"
    );
    assert!(stderr.contains("uncommitted changes"), "{stderr}");
    git(&two, &["checkout", "-q", "--", "."]);

    // A one-byte change is another digest.
    std::fs::write(
        one.join("algo/hello/hello.c"),
        HELLO.replace("warden", "wardeN"),
    )
    .unwrap();
    git(&one, &["commit", "-q", "-am", "one byte"]);
    let changed = git(&one, &["rev-parse", "HEAD"]);
    let c = build(&one, &changed, &image_ref, &["--json"]);
    assert_eq!(code(&c), 0, "{:?}", text(&c));
    assert_ne!(json(&c)["digest"], a["digest"]);

    // Push with the builder's signed provenance.
    let (key, public) = keygen(work.path(), "builder");
    let cache = work.path().join("cache");
    let p = build(
        &one,
        &commit,
        &image_ref,
        &[
            "--push",
            "--key",
            key.to_str().unwrap(),
            "--json",
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&p), 0, "{:?}", text(&p));
    let p = json(&p);
    assert_eq!(p["digest"], a["digest"]);
    let digest = Digest::parse(p["digest"].as_str().unwrap()).unwrap();
    let repository = Repository::parse(&format!("{}/team/hello", registry.host())).unwrap();
    let client = Client::new(ClientOptions::default()).unwrap();
    let envelopes = publish::fetch_attestations(&client, &repository, &digest)
        .await
        .unwrap();
    assert_eq!(envelopes.len(), 1);
    let pinned = PublicKey::from_pem(&std::fs::read_to_string(&public).unwrap()).unwrap();
    let attested = provenance::verify(&envelopes[0], &[pinned], &digest).unwrap();
    assert_eq!(
        (attested.commit.as_str(), attested.path.as_str()),
        (commit.as_str(), "algo/hello")
    );
    assert_eq!(attested.source_uri, URI);

    // The rebuild from the other directory matches (the source URI read from the image).
    let pinned_ref = format!("{}/team/hello@{digest}", registry.host());
    let r = rebuild(&two, &commit, &pinned_ref);
    assert_eq!(code(&r), 0, "{:?}", text(&r));
    assert_eq!(json(&r)["match"], true);

    // A patched binary pushed under the same tag: rebuild names layer 0 and the file.
    let mut patched = std::fs::read(cache.join("target/c/hello")).unwrap();
    let at = patched.len() / 2;
    patched[at] ^= 1;
    let epoch: i64 = git(&two, &["show", "-s", "--format=%ct", &commit])
        .parse()
        .unwrap();
    let evil = image::assemble(&ImageSpec {
        files: vec![File {
            path: "hello".into(),
            bytes: patched,
            mode: 0o755,
        }],
        entrypoint: vec!["/hello".into()],
        epoch,
        source_uri: URI.into(),
        revision: commit.clone(),
        path: "algo/hello".into(),
    });
    let evil_digest = publish::push(&client, &repository, "v1", &evil)
        .await
        .unwrap();
    let r = rebuild(
        &two,
        &commit,
        &format!("{}/team/hello:v1@{evil_digest}", registry.host()),
    );
    assert_eq!(code(&r), 1, "{:?}", text(&r));
    let r = json(&r);
    assert_eq!(r["match"], false);
    assert_eq!(
        (r["layer"].as_u64(), r["file"].as_str()),
        (Some(0), Some("hello")),
        "{r}"
    );
    assert_eq!(r["rebuilt"], p["digest"]);
    let t = warden(&[
        "algorithm",
        "rebuild",
        "--image",
        &format!("{}/team/hello@{evil_digest}", registry.host()),
        "--source",
        two.to_str().unwrap(),
        "--commit",
        &commit,
        "--path",
        "algo/hello",
    ]);
    let (stdout, _) = text(&t);
    assert_eq!(code(&t), 1);
    assert!(stdout.contains("layer 0, file hello"), "{stdout}");

    // Bad input: exit 2, with the reason.
    let repo = one.to_str().unwrap();
    for (args, why) in [
        (
            vec![
                "--commit",
                "main",
                "--path",
                "algo/hello",
                "--image",
                "r.example/x:1",
            ],
            "must be a commit id in hex",
        ),
        (
            vec![
                "--commit",
                "0000000",
                "--path",
                "algo/hello",
                "--image",
                "r.example/x:1",
            ],
            "is not in",
        ),
        (
            vec![
                "--commit",
                &commit,
                "--path",
                "algo/missing",
                "--image",
                "r.example/x:1",
            ],
            "has no directory algo/missing",
        ),
        (
            vec![
                "--commit",
                &commit,
                "--path",
                "../up",
                "--image",
                "r.example/x:1",
            ],
            "relative directory",
        ),
        (
            vec![
                "--commit",
                &commit,
                "--path",
                "algo/hello",
                "--image",
                "r.example/x",
            ],
            "has no tag",
        ),
    ] {
        let mut full = vec!["algorithm", "build", "--source", repo];
        full.extend(args);
        let o = warden(&full);
        assert_eq!(code(&o), 2, "{full:?}: {:?}", text(&o));
        assert!(text(&o).1.contains(why), "{full:?}: {:?}", text(&o));
    }
    let o = warden(&[
        "algorithm",
        "rebuild",
        "--image",
        &image_ref,
        "--source",
        repo,
        "--commit",
        &commit,
        "--path",
        "algo/hello",
    ]);
    assert_eq!(code(&o), 2);
    assert!(text(&o).1.contains("names no digest"), "{:?}", text(&o));
    let o = warden(&[
        "algorithm",
        "build",
        "--source",
        repo,
        "--commit",
        &commit,
        "--path",
        "algo/hello",
        "--image",
        "r.example/x:1",
        "--key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2, "--key without --push: {:?}", text(&o));
}

fn verify(policy: &Path, image: &str) -> Output {
    warden(&[
        "image",
        "verify",
        "--policy",
        policy.to_str().unwrap(),
        "--json",
        image,
    ])
}

fn reasons(o: &Output) -> String {
    let v = json(o);
    v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn signing_key(path: &Path) -> warden_trust::SigningKey {
    warden_trust::SigningKey::from_encrypted_pem(
        &std::fs::read_to_string(path).unwrap(),
        PASSWORD.as_bytes(),
    )
    .unwrap()
}

/// `reproduced_by` as the node checks it (`warden image verify` walks the node's admission),
/// attacked through the registry: the same key twice, a forged envelope, a key not pinned,
/// provenance of another digest, another commit; then a second pinned builder admits it.
#[tokio::test]
async fn reproduced_by_counts_distinct_pinned_builders_of_this_digest_and_commit() {
    let registry = Registry::start().unwrap();
    let image_ref = format!("{}/team/hello:v1", registry.host());
    let repository = Repository::parse(&format!("{}/team/hello", registry.host())).unwrap();
    let client = Client::new(ClientOptions::default()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let commit = c_repo(&src, HELLO);
    let policy_dir = work.path().join("policy");
    std::fs::create_dir_all(policy_dir.join("builders")).unwrap();
    let (a_key, _) = keygen(&policy_dir.join("builders"), "a");
    let (b_key, _) = keygen(&policy_dir.join("builders"), "b");
    let (c_key, _) = keygen(work.path(), "stranger");
    for k in [&a_key, &b_key] {
        // Private keys do not belong in a policy folder; only the .pub files are globbed.
        std::fs::rename(k, work.path().join(k.file_name().unwrap())).unwrap();
    }
    let a_key = work.path().join("a.key");
    let b_key = work.path().join("b.key");
    let policy = policy_dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "version = 1\n[[allow]]\nrepository = \"{}/team/hello\"\nreproduced_by = {{ keys = [\"builders/*.pub\"], min = 2 }}\n",
            registry.host()
        ),
    )
    .unwrap();
    let lint = warden(&["policy", "lint", policy.to_str().unwrap()]);
    assert_eq!(code(&lint), 0, "{:?}", text(&lint));
    assert!(
        text(&lint)
            .0
            .contains("reproduced_by: 2 of 2 distinct builder keys (builders/*.pub)"),
        "{:?}",
        text(&lint)
    );

    // Nothing attested yet.
    let pushed = build(&src, &commit, &image_ref, &["--push", "--json"]);
    assert_eq!(code(&pushed), 0, "{:?}", text(&pushed));
    let digest = Digest::parse(json(&pushed)["digest"].as_str().unwrap()).unwrap();
    let v = verify(&policy, &image_ref);
    assert_eq!(code(&v), 1);
    assert!(
        reasons(&v).contains("reproduced_by needs 2 distinct builders; 0 attest this digest"),
        "{}",
        reasons(&v)
    );

    // Builder a, twice (two envelopes, one key): one builder.
    for id in ["urn:builder:a", "urn:builder:a-again"] {
        let o = build(
            &src,
            &commit,
            &image_ref,
            &[
                "--push",
                "--key",
                a_key.to_str().unwrap(),
                "--builder-id",
                id,
            ],
        );
        assert_eq!(code(&o), 0, "{:?}", text(&o));
    }
    assert_eq!(
        publish::fetch_attestations(&client, &repository, &digest)
            .await
            .unwrap()
            .len(),
        2
    );
    let v = verify(&policy, &image_ref);
    assert_eq!(code(&v), 1);
    assert!(
        reasons(&v).contains(
            "reproduced_by needs 2 distinct builders; 1 attests this digest (builders/a.pub)"
        ),
        "{}",
        reasons(&v)
    );

    // Attacks, each attached to this digest's .att tag.
    let request = warden_build::BuildRequest {
        source: src.display().to_string(),
        source_uri: Some(URI.into()),
        commit: commit.clone(),
        path: "algo/hello".into(),
        cache_dir: None,
    };
    let built = warden_build::build(&request).unwrap();
    assert_eq!(built.image.digest, digest);
    let b = signing_key(&b_key);
    // A forged envelope: b's signature over a payload changed afterwards.
    let mut forged: serde_json::Value =
        serde_json::from_slice(&provenance::sign(&built, &repository, "b", &b)).unwrap();
    let mut other_commit = built.clone();
    other_commit.commit = "f".repeat(40);
    use base64::Engine as _;
    forged["payload"] = base64::engine::general_purpose::STANDARD
        .encode(
            serde_json::to_vec(&provenance::statement(&other_commit, &repository, "b")).unwrap(),
        )
        .into();
    // A key not pinned.
    let stranger = provenance::sign(&built, &repository, "stranger", &signing_key(&c_key));
    // Provenance of another digest (a one-byte change), by pinned b.
    std::fs::write(
        src.join("algo/hello/hello.c"),
        HELLO.replace("warden", "wardeN"),
    )
    .unwrap();
    git(&src, &["commit", "-q", "-am", "one byte"]);
    let changed = git(&src, &["rev-parse", "HEAD"]);
    let other = warden_build::build(&warden_build::BuildRequest {
        commit: changed,
        ..request.clone()
    })
    .unwrap();
    assert_ne!(other.image.digest, digest);
    let another_digest = provenance::sign(&other, &repository, "b", &b);
    for env in [
        serde_json::to_vec(&forged).unwrap(),
        stranger,
        another_digest,
    ] {
        publish::attach(&client, &repository, &digest, &env)
            .await
            .unwrap();
    }
    let v = verify(&policy, &image_ref);
    assert_eq!(code(&v), 1);
    let r = reasons(&v);
    assert!(
        r.contains("1 attests this digest (builders/a.pub), 3 attestations did not verify"),
        "{r}"
    );
    let not_counted = json(&v)["rejected"].to_string();
    assert!(not_counted.contains("build attestation"), "{not_counted}");

    // Pinned b attests this digest from another commit: does not add up.
    let wrong_commit = provenance::sign(&other_commit, &repository, "b", &b);
    publish::attach(&client, &repository, &digest, &wrong_commit)
        .await
        .unwrap();
    let v = verify(&policy, &image_ref);
    assert_eq!(code(&v), 1);
    assert!(
        reasons(&v)
            .contains("1 attests this digest (builders/a.pub), 1 attestation names another commit"),
        "{}",
        reasons(&v)
    );

    // b rebuilds the real commit in its own directory and attests: admitted.
    let b_src = work.path().join("b-src");
    let o = Command::new("git")
        .args([
            "clone",
            "-q",
            src.to_str().unwrap(),
            b_src.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = build(
        &b_src,
        &commit,
        &image_ref,
        &["--push", "--key", b_key.to_str().unwrap(), "--json"],
    );
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    assert_eq!(json(&o)["digest"], digest.to_string().as_str());
    let v = verify(&policy, &image_ref);
    assert_eq!(code(&v), 0, "{}", reasons(&v));
    let builders = json(&v)["builders"].to_string();
    assert!(
        builders.contains("builders/a.pub") && builders.contains("builders/b.pub"),
        "{builders}"
    );
    let t = warden(&[
        "image",
        "verify",
        "--policy",
        policy.to_str().unwrap(),
        &image_ref,
    ]);
    assert_eq!(code(&t), 0);
    assert!(text(&t).0.contains("builder:"), "{:?}", text(&t));

    // The attestations travel in an image archive: an offline node's gate counts the same
    // two builders from the archive alone, the registry gone.
    let archive = work.path().join("hello.tar");
    let e = warden(&[
        "image",
        "export",
        "--output",
        archive.to_str().unwrap(),
        &image_ref,
    ]);
    assert_eq!(code(&e), 0, "{:?}", text(&e));
    drop(registry);
    use warden_registry::layout::{OciLayout, UnpackLimits, unpack};
    let unpacked = work.path().join("unpacked");
    unpack(
        std::fs::File::open(&archive).unwrap(),
        &unpacked,
        UnpackLimits::default(),
    )
    .unwrap();
    let source = Client::layout(
        OciLayout::open(&unpacked).unwrap(),
        ClientOptions::default(),
    )
    .unwrap();
    let gate = warden_node::admission::Gate::load(&policy)
        .unwrap()
        .offline(true);
    let admitted = gate
        .check(&source, &image_ref, &warden_policy::Requester::default())
        .await
        .unwrap_or_else(|r| panic!("refused offline: {r}"));
    assert_eq!(admitted.digest(), &digest);
    let keys: std::collections::BTreeSet<_> =
        admitted.evidence().builds.iter().map(|b| b.key).collect();
    assert_eq!(keys.len(), 2, "{:?}", admitted.evidence().builds);
}
