//! Against the real `docker-registry` (CNCF distribution 2.8) with images built FROM scratch and
//! pushed by the real Docker engine: resolution, cosign signatures, the attacks of issue 3.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use common::{candidates, client, new_key};
use warden_reference::{Digest, Reference, Repository};
use warden_registry::manifest::{
    COSIGN_SIGNATURE_ARTIFACT, Descriptor, ImageIndex, ImageManifest, OCI_CONFIG, OCI_INDEX,
    OCI_MANIFEST, SIGNATURE_ANNOTATION, SIMPLESIGNING,
};
use warden_registry::{Client, RegistryError};
use warden_testkit::{Registry, push_data_image, remove_images};
use warden_trust::cosign;

struct Pushed {
    reference: String,
    digest: Digest,
}

fn push(registry: &Registry, path_tag: &str, content: &str) -> Pushed {
    let reference = format!("{}/{path_tag}", registry.host());
    let digest = push_data_image(&reference, content).unwrap();
    remove_images(&[&reference]);
    Pushed {
        reference,
        digest: Digest::parse(&digest).unwrap(),
    }
}

fn repo(registry: &Registry, path: &str) -> Repository {
    Repository::parse(&format!("{}/{path}", registry.host())).unwrap()
}

async fn sign(
    client: &Client,
    key: &warden_trust::SigningKey,
    repository: &Repository,
    digest: &Digest,
) -> warden_registry::PushedSignature {
    let signed = cosign::sign(key, repository, digest, None);
    client
        .push_signature(repository, digest, &signed.payload, &signed.signature_b64)
        .await
        .unwrap()
}

fn note(v: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("note".into(), v.into());
    m
}

async fn verified(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
    keys: &[warden_trust::PublicKey],
) -> warden_trust::Verification {
    let set = client.fetch_signatures(repository, digest).await.unwrap();
    cosign::verify(&candidates(&set), keys, repository, digest)
}

#[tokio::test]
async fn resolves_tags_and_digests_from_raw_bytes() {
    let registry = Registry::start().unwrap();
    let image = push(&registry, "team/resolve:v1", "resolve me");
    let client = client();

    let by_tag = client
        .resolve(&Reference::parse(&image.reference).unwrap())
        .await
        .unwrap();
    assert_eq!(
        by_tag.digest, image.digest,
        "the digest docker push reported"
    );
    assert!(by_tag.platform.is_none());
    assert_eq!(by_tag.signed_digests(), vec![image.digest.clone()]);

    let pinned = format!("{}@{}", image.reference, image.digest);
    let by_digest = client
        .resolve(&Reference::parse(&pinned).unwrap())
        .await
        .unwrap();
    assert_eq!(by_digest.digest, image.digest);

    let raw = client
        .fetch_manifest(&by_tag.repository, &image.digest.to_string(), 1 << 20, None)
        .await
        .unwrap()
        .unwrap();
    assert!(image.digest.matches(&raw.bytes));

    // An unknown tag and an unknown digest are clear errors.
    let missing = format!("{}/team/resolve:nope", registry.host());
    let err = client
        .resolve(&Reference::parse(&missing).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");
    let other = Digest::sha256_of(b"not an image");
    let err = client
        .resolve(&Reference::parse(&format!("{}@{other}", image.reference)).unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}

#[tokio::test]
async fn sign_appends_and_verify_counts_distinct_keys() {
    let registry = Registry::start().unwrap();
    let image = push(&registry, "team/avg:v1", "average v1");
    let repository = repo(&registry, "team/avg");
    let client = client();
    let (alice, bob, carol) = (new_key(), new_key(), new_key());

    let first = sign(&client, &alice, &repository, &image.digest).await;
    assert!(first.appended);
    assert_eq!(first.layers, 1);
    let second = sign(&client, &bob, &repository, &image.digest).await;
    assert_eq!(
        second.layers, 2,
        "the second signature is appended, not a replacement"
    );
    // Alice signing again with other annotations is a new layer (P-256 signing here is
    // deterministic, RFC 6979, so the same payload gives the same signature)...
    let signed = cosign::sign(&alice, &repository, &image.digest, Some(&note("again")));
    let third = client
        .push_signature(
            &repository,
            &image.digest,
            &signed.payload,
            &signed.signature_b64,
        )
        .await
        .unwrap();
    assert!(third.appended);
    assert_eq!(third.layers, 3);
    // ...but the same payload and signature again is not.
    let again = client
        .push_signature(
            &repository,
            &image.digest,
            &signed.payload,
            &signed.signature_b64,
        )
        .await
        .unwrap();
    assert!(!again.appended);
    assert_eq!(again.layers, 3);
    assert_eq!(again.manifest_digest, third.manifest_digest);

    let pinned = [alice.public_key(), bob.public_key(), carol.public_key()];
    let v = verified(&client, &repository, &image.digest, &pinned).await;
    assert_eq!(
        v.verified,
        [alice.public_key().id(), bob.public_key().id()]
            .into_iter()
            .collect(),
        "{v:?}"
    );
    assert!(v.meets(2));
    assert!(!v.meets(3));
}

#[tokio::test]
async fn threshold_is_not_met_by_one_key_signing_twice() {
    let registry = Registry::start().unwrap();
    let image = push(&registry, "team/twice:v1", "twice");
    let repository = repo(&registry, "team/twice");
    let client = client();
    let alice = new_key();
    sign(&client, &alice, &repository, &image.digest).await;
    let twice = cosign::sign(&alice, &repository, &image.digest, Some(&note("twice")));
    client
        .push_signature(
            &repository,
            &image.digest,
            &twice.payload,
            &twice.signature_b64,
        )
        .await
        .unwrap();
    let set = client
        .fetch_signatures(&repository, &image.digest)
        .await
        .unwrap();
    assert_eq!(set.candidates.len(), 2, "two layers, both by alice");
    let pinned = [
        alice.public_key(),
        new_key().public_key(),
        new_key().public_key(),
    ];
    let v = cosign::verify(&candidates(&set), &pinned, &repository, &image.digest);
    assert_eq!(v.verified.len(), 1);
    assert!(!v.meets(2), "2-of-3 must not be met by the same key twice");
}

#[tokio::test]
async fn moved_tag_does_not_carry_the_old_signature() {
    let registry = Registry::start().unwrap();
    let old = push(&registry, "team/moving:stable", "reviewed version");
    let repository = repo(&registry, "team/moving");
    let client = client();
    let alice = new_key();
    sign(&client, &alice, &repository, &old.digest).await;
    let pinned = [alice.public_key()];

    // The tag moves to an unreviewed image.
    let new = push(&registry, "team/moving:stable", "unreviewed version");
    assert_ne!(old.digest, new.digest);
    let resolved = client
        .resolve(&Reference::parse(&new.reference).unwrap())
        .await
        .unwrap();
    assert_eq!(resolved.digest, new.digest);
    let v = verified(&client, &repository, &resolved.digest, &pinned).await;
    assert!(
        v.verified.is_empty(),
        "the old signature must not verify the new image: {v:?}"
    );

    // The old digest still verifies.
    let pinned_old = format!("{}@{}", repository, old.digest);
    let resolved_old = client
        .resolve(&Reference::parse(&pinned_old).unwrap())
        .await
        .unwrap();
    let v = verified(&client, &repository, &resolved_old.digest, &pinned).await;
    assert_eq!(v.verified.len(), 1);
}

#[tokio::test]
async fn forged_and_misplaced_signatures_do_not_count() {
    let registry = Registry::start().unwrap();
    let image = push(&registry, "team/target:v1", "target");
    let other = push(&registry, "team/other:v1", "another image");
    let repository = repo(&registry, "team/target");
    let other_repo = repo(&registry, "team/other");
    let client = client();
    let (alice, mallory) = (new_key(), new_key());
    let pinned = [alice.public_key()];

    // 1. Signed by a key that is not pinned.
    sign(&client, &mallory, &repository, &image.digest).await;
    // 2. A valid signature by alice for another repository, copied under this digest's tag.
    let copied = cosign::sign(&alice, &other_repo, &image.digest, None);
    client
        .push_signature(
            &repository,
            &image.digest,
            &copied.payload,
            &copied.signature_b64,
        )
        .await
        .unwrap();
    // 3. A valid signature by alice whose payload names another image's digest.
    let wrong_digest = cosign::sign(&alice, &repository, &other.digest, None);
    client
        .push_signature(
            &repository,
            &image.digest,
            &wrong_digest.payload,
            &wrong_digest.signature_b64,
        )
        .await
        .unwrap();
    // 4. Garbage and truncated signatures.
    let good = cosign::sign(&alice, &repository, &image.digest, None);
    let truncated_sig = &good.signature_b64[..good.signature_b64.len() / 2];
    client
        .push_signature(&repository, &image.digest, &good.payload, truncated_sig)
        .await
        .unwrap();
    client
        .push_signature(&repository, &image.digest, &good.payload, "!!not base64!!")
        .await
        .unwrap();
    let truncated_payload = &good.payload[..good.payload.len() - 5];
    client
        .push_signature(
            &repository,
            &image.digest,
            truncated_payload,
            &good.signature_b64,
        )
        .await
        .unwrap();

    let set = client
        .fetch_signatures(&repository, &image.digest)
        .await
        .unwrap();
    assert_eq!(set.candidates.len(), 6);
    let v = cosign::verify(&candidates(&set), &pinned, &repository, &image.digest);
    assert!(v.verified.is_empty(), "{v:?}");
    assert_eq!(v.rejected.len(), 6);
    let reasons: Vec<String> = v.rejected.iter().map(|r| r.reason.to_string()).collect();
    assert!(reasons[0].contains("no pinned key verifies"), "{reasons:?}");
    assert!(reasons[1].contains("names repository"), "{reasons:?}");
    assert!(reasons[2].contains("signs digest"), "{reasons:?}");

    // The same alice signature, in the right place, is what makes it pass.
    client
        .push_signature(
            &repository,
            &image.digest,
            &good.payload,
            &good.signature_b64,
        )
        .await
        .unwrap();
    let v = verified(&client, &repository, &image.digest, &pinned).await;
    assert_eq!(v.verified.len(), 1);
}

#[tokio::test]
async fn malformed_layers_are_skipped_with_reasons() {
    let registry = Registry::start().unwrap();
    let image = push(&registry, "team/malformed:v1", "malformed");
    let repository = repo(&registry, "team/malformed");
    let client = client();
    let alice = new_key();
    let good = cosign::sign(&alice, &repository, &image.digest, None);
    let payload_digest = client
        .upload_blob(&repository, &good.payload)
        .await
        .unwrap();
    let config =
        br#"{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;
    let config_digest = client.upload_blob(&repository, config).await.unwrap();
    let layer = |media: &str, size: u64, sig: Option<&str>| Descriptor {
        media_type: media.into(),
        size,
        digest: payload_digest.to_string(),
        annotations: sig.map(|s| BTreeMap::from([(SIGNATURE_ANNOTATION.to_owned(), s.to_owned())])),
        platform: None,
        artifact_type: None,
    };
    let n = good.payload.len() as u64;
    let m = ImageManifest {
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
        layers: vec![
            layer(
                "application/vnd.oci.image.layer.v1.tar",
                n,
                Some(&good.signature_b64),
            ),
            layer(SIMPLESIGNING, n, None),
            layer(SIMPLESIGNING, n + 1, Some(&good.signature_b64)),
            layer(SIMPLESIGNING, n, Some(&good.signature_b64)),
        ],
        subject: None,
        annotations: None,
    };
    client
        .put_manifest(
            &repository,
            &image.digest.signature_tag(),
            OCI_MANIFEST,
            &serde_json::to_vec(&m).unwrap(),
        )
        .await
        .unwrap();
    let set = client
        .fetch_signatures(&repository, &image.digest)
        .await
        .unwrap();
    assert_eq!(set.candidates.len(), 1, "{set:?}");
    assert_eq!(set.skipped.len(), 3, "{set:?}");
    assert!(set.skipped[0].reason.contains("not cosign simple signing"));
    assert!(set.skipped[1].reason.contains("annotation"));
    assert!(
        set.skipped[2].reason.contains("descriptor says"),
        "{:?}",
        set.skipped[2]
    );
    assert!(set.candidates[0].origin.ends_with("layer 3"));
    let v = cosign::verify(
        &candidates(&set),
        &[alice.public_key()],
        &repository,
        &image.digest,
    );
    assert_eq!(v.verified.len(), 1);
}

#[tokio::test]
async fn unsigned_image_has_no_candidates() {
    let registry = Registry::start().unwrap();
    let image = push(&registry, "team/unsigned:v1", "unsigned");
    let set = client()
        .fetch_signatures(&repo(&registry, "team/unsigned"), &image.digest)
        .await
        .unwrap();
    assert!(
        set.candidates.is_empty() && set.skipped.is_empty(),
        "{set:?}"
    );
}

/// An OCI index over the pushed image: the signer may have signed the index digest or the
/// platform digest; both verify, each against its own digest.
#[tokio::test]
async fn image_index_resolves_to_both_digests() {
    let registry = Registry::start().unwrap();
    let image = push(&registry, "team/multi:single", "multi-platform");
    let repository = repo(&registry, "team/multi");
    let client = client();
    let raw = client
        .fetch_manifest(
            &repository,
            &image.digest.to_string(),
            1 << 20,
            Some(&image.digest),
        )
        .await
        .unwrap()
        .unwrap();
    let entry = |arch: &str, digest: &Digest| Descriptor {
        media_type: raw.media_type.clone().unwrap(),
        size: raw.bytes.len() as u64,
        digest: digest.to_string(),
        annotations: None,
        platform: Some(warden_registry::manifest::PlatformSpec {
            architecture: arch.into(),
            os: "linux".into(),
            variant: None,
        }),
        artifact_type: None,
    };
    let index = ImageIndex {
        schema_version: 2,
        media_type: Some(OCI_INDEX.into()),
        manifests: vec![entry("arm64", &image.digest), entry("amd64", &image.digest)],
        annotations: None,
    };
    let index_bytes = serde_json::to_vec(&index).unwrap();
    let index_digest = client
        .put_manifest(&repository, "multi", OCI_INDEX, &index_bytes)
        .await
        .unwrap();

    let resolved = client
        .resolve(&Reference::parse(&format!("{repository}:multi")).unwrap())
        .await
        .unwrap();
    assert_eq!(resolved.digest, index_digest);
    assert_eq!(resolved.media_type, OCI_INDEX);
    let platform = resolved.platform.clone().unwrap();
    assert_eq!(platform.digest, image.digest);
    assert_eq!(
        resolved.signed_digests(),
        vec![index_digest.clone(), image.digest.clone()]
    );

    // Signed over the platform digest only: verification over the union of both finds it.
    let alice = new_key();
    sign(&client, &alice, &repository, &image.digest).await;
    let mut signers = std::collections::BTreeSet::new();
    for d in resolved.signed_digests() {
        signers.extend(
            verified(&client, &repository, &d, &[alice.public_key()])
                .await
                .verified,
        );
    }
    assert_eq!(signers.len(), 1);
    // And a signature over the platform digest does not verify as one over the index.
    let v = verified(&client, &repository, &index_digest, &[alice.public_key()]).await;
    assert!(v.verified.is_empty());

    // A platform the index lacks is a clear error.
    let arm_only = Client::new(warden_registry::ClientOptions {
        limits: common::test_limits(),
        platform: warden_registry::Platform {
            os: "linux".into(),
            architecture: "s390x".into(),
            variant: None,
        },
        ..Default::default()
    })
    .unwrap();
    let err = arm_only
        .resolve(&Reference::parse(&format!("{repository}:multi")).unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("linux/s390x"), "{err}");
}

/// docker-registry 2.8 has no referrers endpoint: the tag schema fallback is what it exercises.
#[tokio::test]
async fn referrers_tag_fallback_finds_oci_1_1_signatures() {
    let registry = Registry::start().unwrap();
    let image = push(&registry, "team/referred:v1", "referred");
    let repository = repo(&registry, "team/referred");
    let client = client();
    let alice = new_key();
    let signed = cosign::sign(&alice, &repository, &image.digest, None);
    let payload_digest = client
        .upload_blob(&repository, &signed.payload)
        .await
        .unwrap();
    let empty = b"{}";
    let empty_digest = client.upload_blob(&repository, empty).await.unwrap();
    let subject_size = client
        .fetch_manifest(&repository, &image.digest.to_string(), 1 << 20, None)
        .await
        .unwrap()
        .unwrap()
        .bytes
        .len() as u64;
    let referrer = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        artifact_type: Some(COSIGN_SIGNATURE_ARTIFACT.into()),
        config: Descriptor {
            media_type: "application/vnd.oci.empty.v1+json".into(),
            size: 2,
            digest: empty_digest.to_string(),
            annotations: None,
            platform: None,
            artifact_type: None,
        },
        layers: vec![Descriptor {
            media_type: SIMPLESIGNING.into(),
            size: signed.payload.len() as u64,
            digest: payload_digest.to_string(),
            annotations: Some(BTreeMap::from([(
                SIGNATURE_ANNOTATION.to_owned(),
                signed.signature_b64.clone(),
            )])),
            platform: None,
            artifact_type: None,
        }],
        subject: Some(Descriptor {
            media_type: OCI_MANIFEST.into(),
            size: subject_size,
            digest: image.digest.to_string(),
            annotations: None,
            platform: None,
            artifact_type: None,
        }),
        annotations: None,
    };
    let referrer_bytes = serde_json::to_vec(&referrer).unwrap();
    let referrer_digest = client
        .put_manifest(
            &repository,
            &Digest::sha256_of(&referrer_bytes).to_string(),
            OCI_MANIFEST,
            &referrer_bytes,
        )
        .await
        .unwrap();
    let index = ImageIndex {
        schema_version: 2,
        media_type: Some(OCI_INDEX.into()),
        manifests: vec![Descriptor {
            media_type: OCI_MANIFEST.into(),
            size: referrer_bytes.len() as u64,
            digest: referrer_digest.to_string(),
            annotations: None,
            platform: None,
            artifact_type: Some(COSIGN_SIGNATURE_ARTIFACT.into()),
        }],
        annotations: None,
    };
    let fallback_tag = format!("sha256-{}", image.digest.hex());
    client
        .put_manifest(
            &repository,
            &fallback_tag,
            OCI_INDEX,
            &serde_json::to_vec(&index).unwrap(),
        )
        .await
        .unwrap();

    let set = client
        .fetch_signatures(&repository, &image.digest)
        .await
        .unwrap();
    assert_eq!(set.candidates.len(), 1, "{set:?}");
    assert!(
        set.candidates[0]
            .origin
            .starts_with("referrers tag sha256-"),
        "{set:?}"
    );
    let v = cosign::verify(
        &candidates(&set),
        &[alice.public_key()],
        &repository,
        &image.digest,
    );
    assert_eq!(v.verified.len(), 1);
}

fn htpasswd(user: &str, password: &str) -> String {
    format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap())
}

#[tokio::test]
async fn basic_auth_with_docker_config_credentials() {
    let registry = Registry::start_with(warden_testkit::RegistryOptions {
        htpasswd: Some(htpasswd("alice", "wonderland")),
    })
    .unwrap();
    let repository = repo(&registry, "team/private");
    // Push a signature manifest with our own client (docker would need `docker login`).
    let dir = tempfile::tempdir().unwrap();
    let auth = base64_encode("alice:wonderland");
    std::fs::write(
        dir.path().join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    let creds = warden_registry::DockerConfig::load(&dir.path().join("config.json")).unwrap();
    let authed = Client::new(warden_registry::ClientOptions {
        limits: common::test_limits(),
        credentials: creds,
        ..Default::default()
    })
    .unwrap();
    let digest = Digest::sha256_of(b"some image manifest");
    let alice = new_key();
    let pushed = sign(&authed, &alice, &repository, &digest).await;
    assert!(pushed.appended);
    let resolved = authed
        .resolve(&Reference::parse(&format!("{repository}:{}", digest.signature_tag())).unwrap())
        .await
        .unwrap();
    assert_eq!(resolved.digest, pushed.manifest_digest);
    let v = verified(&authed, &repository, &digest, &[alice.public_key()]).await;
    assert_eq!(v.verified.len(), 1);

    // The same credentials kept by a credential helper (Docker's protocol, as a shell script).
    let helper_dir = tempfile::tempdir().unwrap();
    let helper = helper_dir.path().join("docker-credential-vault");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] && [ \"$(cat)\" = \"{host}\" ] && \
             echo '{{\"ServerURL\":\"{host}\",\"Username\":\"alice\",\"Secret\":\"wonderland\"}}' \
             && exit 0\necho 'credentials not found in native keychain'; exit 1\n",
            host = registry.host()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(
        helper_dir.path().join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"vault"}}}}"#, registry.host()),
    )
    .unwrap();
    let from_helper = warden_registry::DockerConfig::load_with_helpers(
        &helper_dir.path().join("config.json"),
        Some(helper_dir.path().as_os_str()),
    )
    .unwrap();
    let v = verified(
        &common::client_with(warden_registry::ClientOptions {
            limits: common::test_limits(),
            credentials: from_helper,
            ..Default::default()
        }),
        &repository,
        &digest,
        &[alice.public_key()],
    )
    .await;
    assert_eq!(v.verified.len(), 1);

    // Anonymous: refused, and the error says where credentials go.
    let err = client()
        .fetch_signatures(&repository, &digest)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("docker login"), "{err}");

    // Wrong password: refused.
    let wrong = warden_registry::DockerConfig::anonymous().with_credentials(
        &registry.host(),
        warden_registry::RegistryCredentials {
            username: "alice".into(),
            password: "looking-glass".into(),
        },
    );
    let err = common::client_with(warden_registry::ClientOptions {
        limits: common::test_limits(),
        credentials: wrong,
        ..Default::default()
    })
    .fetch_signatures(&repository, &digest)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("were refused"), "{err}");
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
