//! `warden image sign` and `warden image verify`, run as the real binary against the real
//! registry with images built FROM scratch and pushed by the real Docker engine.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use warden_reference::{Digest, Repository};
use warden_registry::{Client, ClientOptions};
use warden_testkit::{Registry, push_data_image, remove_images};
use warden_trust::cosign;

const PASSWORD: &str = "correct horse battery staple";

fn warden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .env("WARDEN_PASSWORD", PASSWORD)
        // No credentials from the developer's own docker config.
        .env("DOCKER_CONFIG", "/nonexistent-warden-test")
        .output()
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let prefix = dir.join(name);
    let o = warden(&["keys", "generate", "--out", prefix.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    (prefix.with_extension("key"), prefix.with_extension("pub"))
}

fn sign(key: &Path, image: &str) -> serde_json::Value {
    let o = warden(&["image", "sign", "--key", key.to_str().unwrap(), image]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    json(&o)
}

fn verify(policy: &Path, org: &str, image: &str) -> Output {
    warden(&[
        "image",
        "verify",
        "--policy",
        policy.to_str().unwrap(),
        "--organization",
        org,
        "--json",
        image,
    ])
}

fn push(registry: &Registry, path_tag: &str, content: &str) -> (String, Digest) {
    let reference = format!("{}/{path_tag}", registry.host());
    let digest = push_data_image(&reference, content).unwrap();
    remove_images(&[&reference]);
    (reference, Digest::parse(&digest).unwrap())
}

fn client() -> Client {
    Client::new(ClientOptions::default()).unwrap()
}

#[test]
fn sign_writes_cosign_layout_and_verify_walks_the_trust_chain() {
    let registry = Registry::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (alice_key, _) = keygen(dir.path(), "alice");
    let (bob_key, _) = keygen(dir.path(), "bob");
    let (_carol_key, _) = keygen(dir.path(), "carol");
    let (image, digest) = push(&registry, "team/app:stable", "reviewed algorithm");
    let repository = Repository::parse(&format!("{}/team/app", registry.host())).unwrap();

    // Sign with alice: the signature lands at the .sig tag in cosign's exact layout.
    let out = sign(&alice_key, &image);
    assert_eq!(out["digest"], digest.to_string());
    assert_eq!(out["signature_tag"], digest.signature_tag());
    assert_eq!(out["signatures"], 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = client();
    let raw = rt
        .block_on(c.fetch_manifest(&repository, &digest.signature_tag(), 1 << 20, None))
        .unwrap()
        .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&raw.bytes).unwrap();
    assert_eq!(m["schemaVersion"], 2);
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let layer = &layers[0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let sig = layer["annotations"]["dev.cosignproject.cosign/signature"]
        .as_str()
        .unwrap();
    assert_eq!(layer["annotations"].as_object().unwrap().len(), 1);
    let layer_digest = Digest::parse(layer["digest"].as_str().unwrap()).unwrap();
    let payload = rt
        .block_on(c.fetch_blob(&repository, &layer_digest, None, 1 << 16))
        .unwrap();
    assert_eq!(payload, cosign::payload_for(&repository, &digest, None));
    assert_eq!(
        String::from_utf8(payload.clone()).unwrap(),
        format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"{repository}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
        )
    );
    assert_eq!(layer["size"], payload.len());
    // The signature is base64 DER ECDSA over the payload, by alice's key.
    let alice_pub = warden_trust::PublicKey::from_pem(
        &std::fs::read_to_string(dir.path().join("alice.pub")).unwrap(),
    )
    .unwrap();
    let v = cosign::verify(
        &[warden_trust::SignatureCandidate {
            payload: payload.clone(),
            signature_b64: sig.to_owned(),
            origin: "test".into(),
        }],
        std::slice::from_ref(&alice_pub),
        &repository,
        &digest,
    );
    assert_eq!(v.verified.len(), 1, "{v:?}");
    // The config blob lists the layer, as go-containerregistry writes it for cosign.
    let config_digest = Digest::parse(m["config"]["digest"].as_str().unwrap()).unwrap();
    let config = rt
        .block_on(c.fetch_blob(&repository, &config_digest, None, 1 << 16))
        .unwrap();
    assert_eq!(
        String::from_utf8(config.clone()).unwrap(),
        format!(
            r#"{{"architecture":"","os":"","rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}},"config":{{}}}}"#
        ),
        "cosign's config for a one-layer signature image (153 bytes)"
    );
    assert_eq!(m["config"]["size"], 153);

    // Bob's signature is appended, alice's stays.
    let out = sign(&bob_key, &image);
    assert_eq!(out["signatures"], 2);
    assert_eq!(out["appended"], true);

    // The policy pins three keys and asks for two.
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            r#"version = 1

[[allow]]
repository = "{repository}"
signed_by = {{ keys = ["alice.pub", "bob.pub", "carol.pub"], threshold = 2 }}
organizations = ["hospital-a"]
"#
        ),
    )
    .unwrap();
    let o = verify(&policy, "hospital-a", &image);
    assert_eq!(
        code(&o),
        0,
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let j = json(&o);
    assert_eq!(j["decision"], "allow");
    assert_eq!(j["rule"], "allow[1]");
    assert_eq!(j["digest"], digest.to_string());
    let signers: Vec<&str> = j["signers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["files"][0].as_str().unwrap())
        .collect();
    let mut sorted = signers.clone();
    sorted.sort();
    assert_eq!(sorted, ["alice.pub", "bob.pub"]);

    // Text output names digest, signers and decision.
    let o = warden(&[
        "image",
        "verify",
        "--policy",
        policy.to_str().unwrap(),
        "--organization",
        "hospital-a",
        &image,
    ]);
    assert_eq!(code(&o), 0);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(&format!("digest:     {digest}")), "{text}");
    assert!(
        text.contains("(alice.pub)") && text.contains("(bob.pub)"),
        "{text}"
    );
    assert!(
        text.contains("decision:   allowed by allow[1] (line 3)"),
        "{text}"
    );

    // Another organization is denied by the pre-check, before any registry access.
    let o = verify(&policy, "hospital-b", &image);
    assert_eq!(code(&o), 1);
    let j = json(&o);
    assert_eq!(j["decision"], "deny");
    assert_eq!(j["stage"], "precheck");
    assert!(j["digest"].is_null());

    // The tag moves to an unreviewed image: its digest has no signatures, so denied.
    let (_, moved) = push(&registry, "team/app:stable", "unreviewed algorithm");
    let o = verify(&policy, "hospital-a", &image);
    assert_eq!(code(&o), 1, "{}", String::from_utf8_lossy(&o.stdout));
    let j = json(&o);
    assert_eq!(j["digest"], moved.to_string());
    assert!(j["signers"].as_array().unwrap().is_empty());
    // The reviewed digest still verifies.
    let pinned = format!("{repository}@{digest}");
    let o = verify(&policy, "hospital-a", &pinned);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));

    // One key twice does not meet a threshold of two.
    let (single, single_digest) = push(&registry, "team/app:single", "signed by alice alone");
    sign(&alice_key, &single);
    let alice = warden_trust::SigningKey::from_encrypted_pem(
        &std::fs::read_to_string(&alice_key).unwrap(),
        PASSWORD.as_bytes(),
    )
    .unwrap();
    let mut note = serde_json::Map::new();
    note.insert("again".into(), true.into());
    let again = cosign::sign(&alice, &repository, &single_digest, Some(&note));
    let pushed = rt
        .block_on(c.push_signature(
            &repository,
            &single_digest,
            &again.payload,
            &again.signature_b64,
        ))
        .unwrap();
    assert_eq!(pushed.layers, 2);
    let o = verify(&policy, "hospital-a", &single);
    assert_eq!(code(&o), 1, "{}", String::from_utf8_lossy(&o.stdout));
    let j = json(&o);
    assert_eq!(j["signers"].as_array().unwrap().len(), 1);
    assert!(
        j["reasons"].to_string().contains("signed_by")
            || j["reasons"].to_string().contains("signature"),
        "{j}"
    );
}

#[test]
fn unpinned_signers_and_bad_input() {
    let registry = Registry::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_alice_key, _) = keygen(dir.path(), "alice");
    let (mallory_key, _) = keygen(dir.path(), "mallory");
    let (image, _) = push(&registry, "team/tool:v1", "a tool");
    let repository = format!("{}/team/tool", registry.host());
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "version = 1\n[[allow]]\nrepository = \"{repository}\"\nsigned_by = {{ keys = [\"alice.pub\"], threshold = 1 }}\n"
        ),
    )
    .unwrap();

    // Signed, but by a key the policy does not pin.
    sign(&mallory_key, &image);
    let o = verify(&policy, "any", &image);
    assert_eq!(code(&o), 1);
    let j = json(&o);
    assert!(j["signers"].as_array().unwrap().is_empty());
    assert!(
        j["rejected"].to_string().contains("no pinned key verifies"),
        "{j}"
    );

    // Bad input is exit 2 with the error on stderr.
    let o = verify(&policy, "any", "UPPER/Case::bad");
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid image reference"));
    let o = verify(&dir.path().join("missing.toml"), "any", &image);
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read policy"));

    // A registry that is down is exit 2, not a denial or a pass.
    let port = warden_testkit::free_port().unwrap();
    let gone = format!("127.0.0.1:{port}/team/tool:v1");
    std::fs::write(
        &policy,
        format!("version = 1\n[[allow]]\nrepository = \"127.0.0.1:{port}/team/tool\"\n"),
    )
    .unwrap();
    let o = verify(&policy, "any", &gone);
    assert_eq!(code(&o), 2, "{}", String::from_utf8_lossy(&o.stdout));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot reach registry"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // A wrong password is exit 2.
    let o = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "image",
            "sign",
            "--key",
            mallory_key.to_str().unwrap(),
            &image,
        ])
        .env("WARDEN_PASSWORD", "wrong")
        .env("DOCKER_CONFIG", "/nonexistent-warden-test")
        .output()
        .unwrap();
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot open private key"));
}

/// bcrypt of `wonderland` (cost 4), as an htpasswd entry for the real registry.
const HTPASSWD: &str = "alice:$2b$04$8wD5IJtyLJS4FrjzYfjoPeIT22TxbH.6t6C0fADBdI/lISGPZErqe\n";
/// base64 of `alice:wonderland`, as `docker login` writes it.
const AUTH: &str = "YWxpY2U6d29uZGVybGFuZA==";

fn warden_with_docker_config(docker_config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .env("WARDEN_PASSWORD", PASSWORD)
        .env("DOCKER_CONFIG", docker_config)
        .output()
        .unwrap()
}

#[test]
fn credentials_come_from_the_docker_config_file() {
    let registry = Registry::start_with(warden_testkit::RegistryOptions {
        htpasswd: Some(HTPASSWD.into()),
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (alice_key, _) = keygen(dir.path(), "alice");
    let host = registry.host();
    let repository = Repository::parse(&format!("{host}/team/private")).unwrap();

    // A small OCI image, uploaded with credentials (the Docker engine would need a login).
    let creds = warden_registry::DockerConfig::anonymous().with_credentials(
        &host,
        warden_registry::RegistryCredentials {
            username: "alice".into(),
            password: "wonderland".into(),
        },
    );
    let c = Client::new(ClientOptions {
        credentials: creds,
        ..ClientOptions::default()
    })
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let layer = b"not really a tar, the registry does not care".to_vec();
    let layer_digest = rt.block_on(c.upload_blob(&repository, &layer)).unwrap();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}},"config":{{}}}}"#
    );
    let config_digest = rt
        .block_on(c.upload_blob(&repository, config.as_bytes()))
        .unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":{},"digest":"{config_digest}"}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","size":{},"digest":"{layer_digest}"}}]}}"#,
        config.len(),
        layer.len()
    );
    let digest = rt
        .block_on(c.put_manifest(
            &repository,
            "v1",
            "application/vnd.oci.image.manifest.v1+json",
            manifest.as_bytes(),
        ))
        .unwrap();
    let image = format!("{repository}:v1");

    // With the credentials in the docker config file: signed.
    let with = dir.path().join("with");
    std::fs::create_dir(&with).unwrap();
    std::fs::write(
        with.join("config.json"),
        format!(r#"{{"auths":{{"{host}":{{"auth":"{AUTH}"}}}}}}"#),
    )
    .unwrap();
    let o = warden_with_docker_config(
        &with,
        &[
            "image",
            "sign",
            "--key",
            alice_key.to_str().unwrap(),
            &image,
        ],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["digest"], digest.to_string());

    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "version = 1\n[[allow]]\nrepository = \"{repository}\"\nsigned_by = {{ keys = [\"alice.pub\"], threshold = 1 }}\n"
        ),
    )
    .unwrap();
    let verify_args = [
        "image",
        "verify",
        "--policy",
        policy.to_str().unwrap(),
        "--json",
        &image,
    ];
    let o = warden_with_docker_config(&with, &verify_args);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));

    // Without credentials: a registry failure (exit 2) that says where credentials go.
    let none = dir.path().join("none");
    let o = warden_with_docker_config(&none, &verify_args);
    assert_eq!(code(&o), 2);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("docker login"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // A credential helper that is not installed is a clear error.
    let helper = dir.path().join("helper");
    std::fs::create_dir(&helper).unwrap();
    std::fs::write(
        helper.join("config.json"),
        format!(r#"{{"auths":{{"{host}":{{}}}},"credsStore":"desktop"}}"#),
    )
    .unwrap();
    let o = warden_with_docker_config(&helper, &verify_args);
    assert_eq!(code(&o), 2);
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("the credential helper `docker-credential-desktop` is not installed"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
