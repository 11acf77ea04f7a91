//! Notary Project signatures at the node's admission (`Gate`), against the real
//! `docker-registry` 2.8 (no referrers endpoint: the referrers tag schema is the path). The
//! envelopes are made by the independent Python signer for the pushed manifest; the node
//! verifies them against the trust store its own policy pins, and every refusal says why.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use warden_node::admission::{Gate, Stage};
use warden_policy::Requester;
use warden_reference::{Reference, Repository};
use warden_registry::manifest::{Descriptor, ImageManifest, OCI_CONFIG, OCI_MANIFEST};
use warden_registry::{Client, ClientOptions, ResolvedImage};
use warden_testkit::{NotaryCase, Registry, notary_peer_cases};

const TRUSTED: &str = "x509.subject: CN=Reviewers,O=Hospital A";

/// The same FROM-nothing image (a config, no layers) in `path`: the same digest in every
/// repository, so one set of peer envelopes serves every scenario.
async fn push_image(client: &Client, registry: &Registry, path: &str) -> ResolvedImage {
    let repository = Repository::parse(&format!("{}/{path}", registry.host())).unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = client.upload_blob(&repository, config).await.unwrap();
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor {
            media_type: OCI_CONFIG.into(),
            size: config.len() as u64,
            digest: config_digest.to_string(),
            annotations: None,
            platform: None,
            artifact_type: None,
        },
        layers: Vec::new(),
        subject: None,
        annotations: None,
    };
    let bytes = serde_json::to_vec(&manifest).unwrap();
    client
        .put_manifest(&repository, "v1", OCI_MANIFEST, &bytes)
        .await
        .unwrap();
    client
        .resolve(&Reference::parse(&format!("{repository}:v1")).unwrap())
        .await
        .unwrap()
}

async fn attach(client: &Client, image: &ResolvedImage, case: &NotaryCase) {
    let subject = Descriptor {
        media_type: image.media_type.clone(),
        size: image.size,
        digest: image.digest.to_string(),
        annotations: None,
        platform: None,
        artifact_type: None,
    };
    client
        .push_notary_signature(&image.repository, &subject, case.envelope.as_bytes(), None)
        .await
        .unwrap();
}

/// A policy folder: `policy.toml` allowing `repository` under `signed_by.notary`, and
/// `notary/ca.pem` holding `pem` (none when `pem` is `None`).
fn policy(dir: &Path, repository: &Repository, pem: Option<&str>, identity: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("notary")).unwrap();
    if let Some(pem) = pem {
        std::fs::write(dir.join("notary/ca.pem"), pem).unwrap();
    }
    let path = dir.join("policy.toml");
    std::fs::write(
        &path,
        format!(
            "version = 1\n\n[[allow]]\nrepository = \"{repository}\"\nsigned_by = {{ notary = {{ trust_store = \"notary/ca.pem\", identities = [\"{identity}\"] }}, threshold = 1 }}\n"
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notary_signatures_admit_and_refuse_with_reasons() {
    let registry = Registry::start().unwrap();
    let client = Client::new(ClientOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = push_image(&client, &registry, "hospital/good").await;
    let cases =
        notary_peer_cases(&first.media_type, &first.digest.to_string(), first.size).unwrap();
    let root = cases["es256-two"].trust_store.clone();
    let rsa_root = cases["ps256-two"].trust_store.clone();

    // Admitted: a good signature from the trusted identity, chained to the pinned root.
    attach(&client, &first, &cases["es256-two"]).await;
    let gate = Gate::load(&policy(
        &dir.path().join("good"),
        &first.repository,
        Some(&root),
        TRUSTED,
    ))
    .unwrap();
    let admitted = gate
        .check(
            &client,
            &format!("{}:v1", first.repository),
            &Requester::default(),
        )
        .await
        .unwrap_or_else(|r| panic!("refused: {r}"));
    assert_eq!(admitted.digest(), &first.digest);
    let ev = admitted.evidence();
    assert_eq!(ev.notary.len(), 1);
    assert!(ev.notary[0].outcome.is_ok(), "{:?}", ev.notary);
    assert!(
        ev.notary[0].origin.starts_with("referrers tag sha256-"),
        "{:?}",
        ev.notary
    );

    // Refused, each with its reason.
    for (path, case, why) in [
        (
            "hospital/other-digest",
            "other-digest",
            "found 1 signature: refused (the signature is for sha256:cdcd",
        ),
        (
            "hospital/tampered",
            "tampered-chain",
            "not validly signed by x5c[1]",
        ),
        (
            "hospital/expired",
            "expired-leaf",
            "x5c[0] (leaf): not valid now",
        ),
        (
            "hospital/key-usage",
            "wrong-key-usage",
            "key usage lacks digitalSignature",
        ),
        ("hospital/other-size", "other-size", "the signed size"),
    ] {
        let image = push_image(&client, &registry, path).await;
        assert_eq!(image.digest, first.digest);
        attach(&client, &image, &cases[case]).await;
        let gate = Gate::load(&policy(
            &dir.path().join(case),
            &image.repository,
            Some(&root),
            TRUSTED,
        ))
        .unwrap();
        let r = gate
            .check(
                &client,
                &format!("{}:v1", image.repository),
                &Requester::default(),
            )
            .await
            .err()
            .unwrap_or_else(|| panic!("{case} admitted"));
        assert_eq!(r.stage, Stage::Decision, "{case}: {r}");
        assert!(
            r.reason
                .contains("no Notary signature from an identity the rule trusts"),
            "{case}: {r}"
        );
        assert!(r.reason.contains(why), "{case}: {r}");
    }

    // No signature at all.
    let bare = push_image(&client, &registry, "hospital/unsigned").await;
    let gate = Gate::load(&policy(
        &dir.path().join("bare"),
        &bare.repository,
        Some(&root),
        TRUSTED,
    ))
    .unwrap();
    let r = gate
        .check(
            &client,
            &format!("{}:v1", bare.repository),
            &Requester::default(),
        )
        .await
        .err()
        .unwrap();
    assert!(r.reason.contains("found no Notary signature"), "{r}");

    // A good signature, but from an identity the rule does not trust.
    let gate = Gate::load(&policy(
        &dir.path().join("auditors"),
        &first.repository,
        Some(&root),
        "x509.subject: CN=Auditors,O=Hospital A",
    ))
    .unwrap();
    let r = gate
        .check(
            &client,
            &format!("{}:v1", first.repository),
            &Requester::default(),
        )
        .await
        .err()
        .unwrap();
    assert!(r.reason.contains("verified, signed by"), "{r}");
    assert!(r.reason.contains("not trusted by the rule"), "{r}");

    // A trust store that does not hold the signature's root (the node's store, not the
    // envelope's chain, decides): refused.
    let gate = Gate::load(&policy(
        &dir.path().join("rsa"),
        &first.repository,
        Some(&rsa_root),
        TRUSTED,
    ))
    .unwrap();
    let r = gate
        .check(
            &client,
            &format!("{}:v1", first.repository),
            &Requester::default(),
        )
        .await
        .err()
        .unwrap();
    assert!(
        r.reason.contains("verified, signed by") && r.reason.contains("not trusted by the rule"),
        "{r}"
    );

    // A trust store missing: the policy is refused at load, naming file, line and key.
    let path = policy(
        &dir.path().join("missing"),
        &first.repository,
        None,
        TRUSTED,
    );
    let e = Gate::load(&path).unwrap_err().to_string();
    assert!(e.contains("policy.toml:5:"), "{e}");
    assert!(e.contains("`allow[1].signed_by.notary.trust_store`"), "{e}");
    assert!(e.contains("cannot read trust store file"), "{e}");
}

/// An image archive of `image` (`warden image export`'s layout, packed and unpacked as it
/// crosses an air gap), read by the client an offline node uses.
async fn archived(client: &Client, image: &ResolvedImage, dir: &Path) -> Client {
    use warden_registry::layout::{self, LayoutWriter, OciLayout, UnpackLimits};
    let reference = Reference::parse(&format!("{}:v1", image.repository)).unwrap();
    let mut w = LayoutWriter::create(&dir.join("layout")).unwrap();
    let out = layout::export(client, &reference, &mut w).await.unwrap();
    assert!(out.evidence >= 1, "the referrer is carried: {out:?}");
    let folder = w.finish().unwrap();
    let mut tar = Vec::new();
    layout::pack(&folder, &mut tar).unwrap();
    let unpacked = dir.join("unpacked");
    layout::unpack(tar.as_slice(), &unpacked, UnpackLimits::default()).unwrap();
    Client::layout(
        OciLayout::open(&unpacked).unwrap(),
        ClientOptions::default(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notary_signatures_travel_in_an_image_archive() {
    let registry = Registry::start().unwrap();
    let client = Client::new(ClientOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = push_image(&client, &registry, "airgap/good").await;
    let cases = notary_peer_cases(&good.media_type, &good.digest.to_string(), good.size).unwrap();
    let root = cases["es256-two"].trust_store.clone();
    attach(&client, &good, &cases["es256-two"]).await;
    let bad = push_image(&client, &registry, "airgap/other-digest").await;
    attach(&client, &bad, &cases["other-digest"]).await;
    let good_archive = archived(&client, &good, &dir.path().join("a")).await;
    let bad_archive = archived(&client, &bad, &dir.path().join("b")).await;
    drop(registry);

    // Verified at the node from the archive alone (the registry is gone).
    let gate = Gate::load(&policy(
        &dir.path().join("good"),
        &good.repository,
        Some(&root),
        TRUSTED,
    ))
    .unwrap()
    .offline(true);
    let admitted = gate
        .check(
            &good_archive,
            &format!("{}:v1", good.repository),
            &Requester::default(),
        )
        .await
        .unwrap_or_else(|r| panic!("refused: {r}"));
    let ev = admitted.evidence();
    assert_eq!(ev.notary.len(), 1);
    assert!(ev.notary[0].outcome.is_ok(), "{:?}", ev.notary);
    // A signature for another digest refuses as it does from the registry.
    let gate = Gate::load(&policy(
        &dir.path().join("bad"),
        &bad.repository,
        Some(&root),
        TRUSTED,
    ))
    .unwrap()
    .offline(true);
    let r = gate
        .check(
            &bad_archive,
            &format!("{}:v1", bad.repository),
            &Requester::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(r.stage, Stage::Decision, "{r}");
    assert!(
        r.reason
            .contains("found 1 signature: refused (the signature is for sha256:cdcd"),
        "{r}"
    );
    // A rule of Notary identities only says so (not "of the rule's keys").
    assert!(
        r.reason
            .contains("0 Notary signer(s) the rule trusts signed"),
        "{r}"
    );
}
