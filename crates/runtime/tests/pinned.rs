//! Issue 3: the runtime runs exactly the verified digest, never what a tag points to now.

// Test support code (helpers outside #[test] functions) may unwrap and panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::World;
use warden_reference::Digest;
use warden_runtime::{Outcome, PinError, pull_pinned, run_pinned};

#[tokio::test]
async fn the_pinned_digest_runs_even_after_the_tag_moves() {
    let mut w = World::new().await;
    let (repository, d1) =
        w.push_program("identify", "identify", &[("/id.txt", b"version one")], &[]);
    // Move the tag to another image with other content.
    let (repository2, d2) =
        w.push_program("identify", "identify", &[("/id.txt", b"version two")], &[]);
    assert_eq!(repository, repository2);
    assert_ne!(d1, d2);
    // Nothing local: the pull must go to the registry.
    let tag = format!("{repository}:latest");
    warden_testkit::remove_images(&[&tag]);

    let v1 = pull_pinned(&w.engine, &repository, &d1).await.unwrap();
    w.cleanup.images.push(v1.image_id().to_string());
    assert_eq!(v1.digest(), &d1);
    assert_eq!(v1.reference(), format!("{repository}@{d1}"));

    let report = run_pinned(&w.engine, &v1, &w.spec("pinned-v1")).await;
    assert_eq!(
        report.outcome,
        Outcome::Completed {
            output: b"version one".to_vec()
        },
        "{}",
        report.logs_text()
    );
    assert_eq!(report.logs_text(), "version one");
    assert!(report.removed);

    // The moved tag's image is another image ID, and pinning its digest runs its content.
    let v2 = pull_pinned(&w.engine, &repository, &d2).await.unwrap();
    w.cleanup.images.push(v2.image_id().to_string());
    assert_ne!(v1.image_id(), v2.image_id());
    let report = run_pinned(&w.engine, &v2, &w.spec("pinned-v2")).await;
    assert_eq!(
        report.outcome,
        Outcome::Completed {
            output: b"version two".to_vec()
        }
    );

    // The first pin still runs version one, tag or no tag.
    let report = run_pinned(&w.engine, &v1, &w.spec("pinned-v1-again")).await;
    assert_eq!(
        report.outcome,
        Outcome::Completed {
            output: b"version one".to_vec()
        }
    );
    w.assert_no_containers_left().await;
}

#[tokio::test]
async fn a_digest_the_registry_does_not_have_is_refused() {
    let mut w = World::new().await;
    let (repository, _) = w.push_program("identify", "identify", &[("/id.txt", b"x")], &[]);
    let unknown = Digest::sha256_of(b"not a manifest");
    let err = pull_pinned(&w.engine, &repository, &unknown)
        .await
        .unwrap_err();
    assert!(matches!(err, PinError::Pull { .. }), "{err}");
}
