//! Notary Project signatures in the real `docker-registry` 2.8 (no referrers endpoint, so the
//! referrers tag schema is the path): envelopes made by the independent Python signer for the
//! pushed image, pushed as referrers, found, and judged by `warden_trust::notary`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::client;
use warden_reference::{Reference, Repository};
use warden_registry::manifest::{Descriptor, ImageIndex, OCI_INDEX, OCI_MANIFEST};
use warden_registry::notary::{NOTARY_JWS, NOTARY_SIGNATURE_ARTIFACT};
use warden_testkit::{Registry, notary_peer_cases, push_data_image, remove_images};
use warden_trust::notary::{TargetDescriptor, TrustStore};

#[tokio::test]
async fn notary_signatures_are_found_by_the_referrers_tag_and_judged() {
    let registry = Registry::start().unwrap();
    let reference = format!("{}/team/notary:v1", registry.host());
    push_data_image(&reference, "notary").unwrap();
    remove_images(&[&reference]);
    let repository = Repository::parse(&format!("{}/team/notary", registry.host())).unwrap();
    let client = client();
    let image = client
        .resolve(&Reference::parse(&reference).unwrap())
        .await
        .unwrap();
    let raw = client
        .fetch_manifest(&repository, &image.digest.to_string(), 1 << 20, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(image.size, raw.bytes.len() as u64, "the resolved size");

    // Nothing yet: no referrers tag is an empty set, not an error.
    let none = client
        .fetch_notary_signatures(&repository, &image.digest)
        .await
        .unwrap();
    assert!(none.envelopes.is_empty(), "{none:?}");

    let cases =
        notary_peer_cases(&image.media_type, &image.digest.to_string(), image.size).unwrap();
    let subject = Descriptor {
        media_type: image.media_type.clone(),
        size: image.size,
        digest: image.digest.to_string(),
        annotations: None,
        platform: None,
        artifact_type: None,
    };
    for name in ["es256-two", "other-digest", "tampered-chain"] {
        client
            .push_notary_signature(&repository, &subject, cases[name].envelope.as_bytes(), None)
            .await
            .unwrap();
    }
    // A signature manifest whose subject is another image, listed in this image's index by a
    // hostile pusher: skipped with its reason.
    let other = Descriptor {
        digest: format!("sha256:{}", "ef".repeat(32)),
        ..subject.clone()
    };
    let stray = client
        .push_notary_signature(
            &repository,
            &other,
            cases["es256-two"].envelope.as_bytes(),
            None,
        )
        .await
        .unwrap();
    let tag = format!("sha256-{}", image.digest.hex());
    let index_raw = client
        .fetch_manifest(&repository, &tag, 1 << 20, None)
        .await
        .unwrap()
        .unwrap();
    let mut index: ImageIndex = serde_json::from_slice(&index_raw.bytes).unwrap();
    assert_eq!(index.manifests.len(), 3);
    let stray_bytes = client
        .fetch_manifest(&repository, &stray.to_string(), 1 << 20, None)
        .await
        .unwrap()
        .unwrap()
        .bytes;
    index.manifests.push(Descriptor {
        media_type: OCI_MANIFEST.into(),
        size: stray_bytes.len() as u64,
        digest: stray.to_string(),
        annotations: None,
        platform: None,
        artifact_type: Some(NOTARY_SIGNATURE_ARTIFACT.into()),
    });
    client
        .put_manifest(
            &repository,
            &tag,
            OCI_INDEX,
            &serde_json::to_vec(&index).unwrap(),
        )
        .await
        .unwrap();

    let set = client
        .fetch_notary_signatures(&repository, &image.digest)
        .await
        .unwrap();
    assert_eq!(set.envelopes.len(), 3, "{set:?}");
    assert!(
        set.envelopes
            .iter()
            .all(|e| e.origin.starts_with("referrers tag sha256-") && e.media_type == NOTARY_JWS),
        "{set:?}"
    );
    assert!(
        set.skipped
            .iter()
            .any(|s| s.reason.contains("its subject is sha256:efef")),
        "{:?}",
        set.skipped
    );
    // Pushing the same signature again does not list it twice.
    client
        .push_notary_signature(
            &repository,
            &subject,
            cases["es256-two"].envelope.as_bytes(),
            None,
        )
        .await
        .unwrap();
    let again = client
        .fetch_notary_signatures(&repository, &image.digest)
        .await
        .unwrap();
    assert_eq!(again.envelopes.len(), 3);

    let store = TrustStore::from_pem(&cases["es256-two"].trust_store).unwrap();
    let target = TargetDescriptor {
        media_type: image.media_type.clone(),
        digest: image.digest.to_string(),
        size: image.size,
    };
    let now = time::OffsetDateTime::now_utc();
    let mut verified = 0;
    let mut reasons = Vec::new();
    for e in &set.envelopes {
        match store.verify_envelope(&e.envelope, &target, now) {
            Ok(v) => {
                assert!(store.anchors(&v));
                verified += 1;
            }
            Err(err) => reasons.push(err.0),
        }
    }
    assert_eq!(verified, 1, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("the signature is for sha256:cdcd")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not validly signed by x5c[1]")),
        "{reasons:?}"
    );
}
