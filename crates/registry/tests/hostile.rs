//! Against small fake registries on loopback that lie, stall, stream forever, or speak the parts
//! of the protocol docker-registry 2.8 lacks (the referrers endpoint, bearer tokens).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{FakeServer, Reply, Req, candidates, client, new_key, sync_handler};
use warden_reference::{Digest, Reference, Repository};
use warden_registry::manifest::{
    COSIGN_SIGNATURE_ARTIFACT, Descriptor, ImageIndex, ImageManifest, OCI_CONFIG, OCI_INDEX,
    OCI_MANIFEST, SIGNATURE_ANNOTATION, SIMPLESIGNING,
};
use warden_registry::{ClientOptions, RegistryError};
use warden_trust::cosign;

/// A route table filled after the server knows its port.
#[derive(Clone, Default)]
struct Routes(Arc<Mutex<HashMap<String, Reply>>>);

impl Routes {
    fn set(&self, path: &str, reply: Reply) {
        self.0.lock().unwrap().insert(path.to_owned(), reply);
    }

    async fn start(&self) -> FakeServer {
        let routes = self.clone();
        FakeServer::start(sync_handler(move |req: &Req| {
            let path = req.path.split('?').next().unwrap_or("");
            if path == "/v2/" {
                return Reply::ok("application/json", "{}");
            }
            routes
                .0
                .lock()
                .unwrap()
                .get(path)
                .cloned()
                .unwrap_or_else(|| Reply::status(404))
        }))
        .await
    }
}

fn desc(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        size: bytes.len() as u64,
        digest: Digest::sha256_of(bytes).to_string(),
        annotations: None,
        platform: None,
        artifact_type: None,
    }
}

fn sig_layer(payload: &[u8], signature_b64: &str) -> Descriptor {
    let mut d = desc(SIMPLESIGNING, payload);
    d.annotations = Some(BTreeMap::from([(
        SIGNATURE_ANNOTATION.to_owned(),
        signature_b64.to_owned(),
    )]));
    d
}

fn manifest_json(layers: Vec<Descriptor>, subject: Option<Descriptor>, artifact: bool) -> Vec<u8> {
    serde_json::to_vec(&ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        artifact_type: artifact.then(|| COSIGN_SIGNATURE_ARTIFACT.to_owned()),
        config: desc(OCI_CONFIG, b"{}"),
        layers,
        subject,
        annotations: None,
    })
    .unwrap()
}

fn image_manifest() -> Vec<u8> {
    manifest_json(
        vec![desc("application/vnd.oci.image.layer.v1.tar", b"layer")],
        None,
        false,
    )
}

/// A referrers endpoint that fails does not hide the signatures at the legacy tag; when no
/// source finds anything, the failure is the answer, never "unsigned".
#[tokio::test]
async fn a_failing_signature_source_is_skipped_while_the_other_answers() {
    let routes = Routes::default();
    let server = routes.start().await;
    let repository = Repository::parse(&format!("{}/team/app", server.host())).unwrap();
    let digest = Digest::sha256_of(&image_manifest());
    let alice = new_key();
    let signed = cosign::sign(&alice, &repository, &digest, None);
    let base = "/v2/team/app";
    routes.set(&format!("{base}/referrers/{digest}"), Reply::status(500));

    // Nothing at the legacy tag either: the referrers failure is the error.
    let e = client()
        .fetch_signatures(&repository, &digest)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("500"), "{e}");

    let legacy = manifest_json(
        vec![sig_layer(&signed.payload, &signed.signature_b64)],
        None,
        false,
    );
    routes.set(
        &format!("{base}/manifests/{}", digest.signature_tag()),
        Reply::ok(OCI_MANIFEST, legacy),
    );
    routes.set(
        &format!("{base}/blobs/{}", Digest::sha256_of(&signed.payload)),
        Reply::ok("application/octet-stream", signed.payload.clone()),
    );
    let set = client()
        .fetch_signatures(&repository, &digest)
        .await
        .unwrap();
    assert_eq!(set.candidates.len(), 1, "{set:?}");
    assert!(
        set.skipped
            .iter()
            .any(|s| s.origin.contains("referrers") && s.reason.contains("500")),
        "{set:?}"
    );
    let v = cosign::verify(
        &candidates(&set),
        &[alice.public_key()],
        &repository,
        &digest,
    );
    assert_eq!(v.verified.len(), 1, "{v:?}");
}

#[tokio::test]
async fn referrers_endpoint_is_used_when_the_registry_has_it() {
    let routes = Routes::default();
    let server = routes.start().await;
    let repository = Repository::parse(&format!("{}/team/app", server.host())).unwrap();
    let image = image_manifest();
    let digest = Digest::sha256_of(&image);
    let other_digest = Digest::sha256_of(b"another image");
    let alice = new_key();
    let signed = cosign::sign(&alice, &repository, &digest, None);

    let good = manifest_json(
        vec![sig_layer(&signed.payload, &signed.signature_b64)],
        Some(desc(OCI_MANIFEST, &image)),
        true,
    );
    // A referrer that claims another subject: must be skipped even though the list names it.
    let mut other_subject = desc(OCI_MANIFEST, b"another image");
    other_subject.digest = other_digest.to_string();
    let stray = manifest_json(
        vec![sig_layer(&signed.payload, &signed.signature_b64)],
        Some(other_subject),
        true,
    );
    let mut entries = Vec::new();
    for m in [&good, &stray] {
        let mut d = desc(OCI_MANIFEST, m);
        d.artifact_type = Some(COSIGN_SIGNATURE_ARTIFACT.into());
        entries.push(d);
    }
    let mut sbom = desc(OCI_MANIFEST, b"sbom");
    sbom.artifact_type = Some("application/spdx+json".into());
    entries.push(sbom);
    let list = serde_json::to_vec(&ImageIndex {
        schema_version: 2,
        media_type: Some(OCI_INDEX.into()),
        manifests: entries,
        annotations: None,
    })
    .unwrap();
    let base = "/v2/team/app";
    routes.set(
        &format!("{base}/referrers/{digest}"),
        Reply::ok(OCI_INDEX, list),
    );
    for m in [&good, &stray] {
        routes.set(
            &format!("{base}/manifests/{}", Digest::sha256_of(m)),
            Reply::ok(OCI_MANIFEST, m.clone()),
        );
    }
    routes.set(
        &format!("{base}/blobs/{}", Digest::sha256_of(&signed.payload)),
        Reply::ok("application/octet-stream", signed.payload.clone()),
    );

    let set = client()
        .fetch_signatures(&repository, &digest)
        .await
        .unwrap();
    assert_eq!(set.candidates.len(), 1, "{set:?}");
    assert!(
        set.candidates[0]
            .origin
            .starts_with("referrers endpoint referrer sha256:")
    );
    assert_eq!(set.skipped.len(), 1, "{set:?}");
    assert!(set.skipped[0].reason.contains("subject"), "{set:?}");
    let v = cosign::verify(
        &candidates(&set),
        &[alice.public_key()],
        &repository,
        &digest,
    );
    assert_eq!(v.verified.len(), 1);
}

#[tokio::test]
async fn a_manifest_that_does_not_hash_to_its_claimed_digest_is_an_error() {
    let routes = Routes::default();
    let server = routes.start().await;
    let image = image_manifest();
    let claimed = Digest::sha256_of(b"the reviewed image");
    routes.set(
        "/v2/team/app/manifests/v1",
        Reply::ok(OCI_MANIFEST, image.clone())
            .with_header("Docker-Content-Digest", &claimed.to_string()),
    );
    // Asked by digest, the registry serves other bytes (and no header).
    routes.set(
        &format!("/v2/team/app/manifests/{claimed}"),
        Reply::ok(OCI_MANIFEST, image.clone()),
    );
    let c = client();
    for reference in [
        format!("{}/team/app:v1", server.host()),
        format!("{}/team/app@{claimed}", server.host()),
        format!("{}/team/app:v1@{claimed}", server.host()),
    ] {
        let err = c
            .resolve(&Reference::parse(&reference).unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::DigestMismatch { .. }),
            "{reference}: {err}"
        );
        assert!(err.to_string().contains(&claimed.to_string()), "{err}");
    }
    // A malformed digest header is refused too.
    routes.set(
        "/v2/team/app/manifests/v2",
        Reply::ok(OCI_MANIFEST, image).with_header("Docker-Content-Digest", "sha256:xyz"),
    );
    let err = c
        .resolve(&Reference::parse(&format!("{}/team/app:v2", server.host())).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Malformed { .. }), "{err}");
}

#[tokio::test]
async fn endless_and_oversize_bodies_stop_at_the_cap() {
    let routes = Routes::default();
    let server = routes.start().await;
    routes.set(
        "/v2/team/app/manifests/endless",
        Reply::Endless {
            headers: vec![("Content-Type".into(), OCI_MANIFEST.into())],
        },
    );
    routes.set(
        "/v2/team/app/manifests/huge",
        Reply::ok(OCI_MANIFEST, b"{}".to_vec()).with_header("Content-Length", "999999999999"),
    );
    let c = client();
    let cap = c.limits().manifest_max_bytes;
    for tag in ["endless", "huge"] {
        let started = Instant::now();
        let err = c
            .resolve(&Reference::parse(&format!("{}/team/app:{tag}", server.host())).unwrap())
            .await
            .unwrap_err();
        match &err {
            RegistryError::TooLarge { cap: c, .. } => assert_eq!(*c, cap),
            other => panic!("{tag}: expected TooLarge, got {other}"),
        }
        assert!(
            err.to_string()
                .contains("larger than the cap of 4194304 bytes"),
            "{err}"
        );
        // Not a timed assertion of performance: only that it did not wait for a timeout.
        assert!(
            started.elapsed() < c.limits().request_timeout,
            "{tag} took {:?}",
            started.elapsed()
        );
    }

    // An endless signature manifest is an error too, not a hang.
    let digest = Digest::sha256_of(b"x");
    routes.set(
        &format!("/v2/team/app/manifests/{}", digest.signature_tag()),
        Reply::Endless { headers: vec![] },
    );
    let repository = Repository::parse(&format!("{}/team/app", server.host())).unwrap();
    let err = c.fetch_signatures(&repository, &digest).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::TooLarge { cap: 262144, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_stalling_registry_times_out() {
    let routes = Routes::default();
    let server = routes.start().await;
    routes.set(
        "/v2/team/app/manifests/slow",
        Reply::Drip {
            headers: vec![("Content-Type".into(), OCI_MANIFEST.into())],
        },
    );
    let c = client();
    let err = c
        .resolve(&Reference::parse(&format!("{}/team/app:slow", server.host())).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("did not finish"), "{err}");

    // The whole-operation deadline holds even when every single request is within its own.
    let tight = common::client_with(ClientOptions {
        limits: warden_registry::Limits {
            request_timeout: Duration::from_secs(30),
            operation_timeout: Duration::from_secs(1),
            ..common::test_limits()
        },
        ..Default::default()
    });
    let err = tight
        .resolve(&Reference::parse(&format!("{}/team/app:slow", server.host())).unwrap())
        .await
        .unwrap_err();
    match err {
        RegistryError::Timeout { timeout, .. } => assert_eq!(timeout, Duration::from_secs(1)),
        other => panic!("expected the operation timeout, got {other}"),
    }
}

#[tokio::test]
async fn bad_signature_blobs_are_skipped_and_the_count_is_capped() {
    let routes = Routes::default();
    let server = routes.start().await;
    let repository = Repository::parse(&format!("{}/team/app", server.host())).unwrap();
    let digest = Digest::sha256_of(&image_manifest());
    let alice = new_key();
    let base = "/v2/team/app";

    // Layer 0: blob whose bytes do not hash to the descriptor; layer 1: endless blob within
    // the declared size; layer 2: declared over the payload cap; then 70 good ones.
    let signed = cosign::sign(&alice, &repository, &digest, None);
    let mut layers = Vec::new();
    let liar = sig_layer(b"lying payload", &signed.signature_b64);
    routes.set(
        &format!("{base}/blobs/{}", liar.digest),
        Reply::ok("application/octet-stream", b"other payload".to_vec()),
    );
    layers.push(liar);
    let endless = sig_layer(b"endless payload", &signed.signature_b64);
    routes.set(
        &format!("{base}/blobs/{}", endless.digest),
        Reply::Endless { headers: vec![] },
    );
    layers.push(endless);
    let mut big = sig_layer(b"big", &signed.signature_b64);
    big.size = 1 << 20;
    layers.push(big);
    for i in 0..70 {
        let mut note = serde_json::Map::new();
        note.insert("n".into(), i.into());
        let s = cosign::sign(&alice, &repository, &digest, Some(&note));
        routes.set(
            &format!("{base}/blobs/{}", Digest::sha256_of(&s.payload)),
            Reply::ok("application/octet-stream", s.payload.clone()),
        );
        layers.push(sig_layer(&s.payload, &s.signature_b64));
    }
    routes.set(
        &format!("{base}/manifests/{}", digest.signature_tag()),
        Reply::ok(OCI_MANIFEST, manifest_json(layers, None, false)),
    );

    let set = client()
        .fetch_signatures(&repository, &digest)
        .await
        .unwrap();
    // 64 considered: 3 bad ones and 61 good ones; 9 over the cap.
    assert_eq!(set.candidates.len(), 61, "{:?}", set.skipped);
    let reasons: Vec<&str> = set.skipped.iter().map(|s| s.reason.as_str()).collect();
    assert_eq!(reasons.len(), 12, "{reasons:?}");
    assert!(reasons[0].contains("hashes to"), "{reasons:?}");
    assert!(
        reasons[1].contains("larger than the cap of 65536"),
        "{reasons:?}"
    );
    assert!(reasons[2].contains("declared size"), "{reasons:?}");
    assert!(
        reasons[3..]
            .iter()
            .all(|r| r.contains("over the cap of 64 signatures")),
        "{reasons:?}"
    );
    let v = cosign::verify(
        &candidates(&set),
        &[alice.public_key()],
        &repository,
        &digest,
    );
    assert_eq!(v.verified.len(), 1, "61 signatures by one key count once");
}

#[tokio::test]
async fn plain_http_is_refused_outside_loopback() {
    // The registry is on loopback, but its token realm points at a plain-http outside host:
    // the client must refuse before sending anything there.
    let server = FakeServer::start(sync_handler(|_req| {
        Reply::status(401).with_header(
            "WWW-Authenticate",
            r#"Bearer realm="http://token.example.invalid/token",service="x""#,
        )
    }))
    .await;
    let err = client()
        .resolve(&Reference::parse(&format!("{}/team/app:v1", server.host())).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Insecure { .. }), "{err}");
    assert!(err.to_string().contains("token.example.invalid"), "{err}");
}

/// The bearer-token flow: a token server and a proxy in front of the real registry.
#[tokio::test]
async fn bearer_tokens_from_a_token_server() {
    let registry = warden_testkit::Registry::start().unwrap();
    let real = format!("http://{}", registry.host());
    let token_requests = Arc::new(AtomicUsize::new(0));
    let port = Arc::new(Mutex::new(0u16));
    let http = reqwest::Client::new();
    let handler: common::Handler = {
        let token_requests = token_requests.clone();
        let port = port.clone();
        Arc::new(move |req: Req| {
            let token_requests = token_requests.clone();
            let port = *port.lock().unwrap();
            let http = http.clone();
            let real = real.clone();
            Box::pin(async move {
                if req.path.starts_with("/token") {
                    token_requests.fetch_add(1, Ordering::SeqCst);
                    let expected = format!("Basic {}", b64("alice:wonderland"));
                    if req.header("authorization") != Some(expected.as_str()) {
                        return Reply::status(401);
                    }
                    if !req.path.contains("scope=repository%3Ateam%2Fapp%3Apull") {
                        return Reply::status(400);
                    }
                    return Reply::ok(
                        "application/json",
                        r#"{"token":"tok-123","expires_in":300}"#,
                    );
                }
                if req.header("authorization") != Some("Bearer tok-123") {
                    return Reply::status(401).with_header(
                        "WWW-Authenticate",
                        &format!(
                            r#"Bearer realm="http://127.0.0.1:{port}/token",service="warden-test",scope="repository:team/app:pull""#
                        ),
                    );
                }
                let mut fwd = http.get(format!("{real}{}", req.path));
                if let Some(a) = req.header("accept") {
                    fwd = fwd.header("accept", a);
                }
                let resp = fwd.send().await.unwrap();
                let mut headers = Vec::new();
                for h in ["content-type", "docker-content-digest"] {
                    if let Some(v) = resp.headers().get(h) {
                        headers.push((h.to_owned(), v.to_str().unwrap().to_owned()));
                    }
                }
                let status = resp.status().as_u16();
                Reply::Full {
                    status,
                    headers,
                    body: resp.bytes().await.unwrap().to_vec(),
                }
            })
        })
    };
    let proxy = FakeServer::start(handler).await;
    *port.lock().unwrap() = proxy.addr.port();

    // An image in the real registry, signed for the name it has behind the proxy.
    let reference = format!("{}/team/app:v1", registry.host());
    let pushed = warden_testkit::push_data_image(&reference, "behind a token server").unwrap();
    warden_testkit::remove_images(&[&reference]);
    let digest = Digest::parse(&pushed).unwrap();
    let proxied = Repository::parse(&format!("{}/team/app", proxy.host())).unwrap();
    let direct = Repository::parse(&format!("{}/team/app", registry.host())).unwrap();
    let alice = new_key();
    let signed = cosign::sign(&alice, &proxied, &digest, None);
    client()
        .push_signature(&direct, &digest, &signed.payload, &signed.signature_b64)
        .await
        .unwrap();

    let creds = warden_registry::DockerConfig::anonymous().with_credentials(
        &proxy.host(),
        warden_registry::RegistryCredentials {
            username: "alice".into(),
            password: "wonderland".into(),
        },
    );
    let c = common::client_with(ClientOptions {
        limits: common::test_limits(),
        credentials: creds,
        ..Default::default()
    });
    let resolved = c
        .resolve(&Reference::parse(&format!("{}/team/app:v1", proxy.host())).unwrap())
        .await
        .unwrap();
    assert_eq!(resolved.digest, digest);
    let set = c.fetch_signatures(&proxied, &digest).await.unwrap();
    let v = cosign::verify(&candidates(&set), &[alice.public_key()], &proxied, &digest);
    assert_eq!(v.verified.len(), 1, "{set:?}");
    assert_eq!(
        token_requests.load(Ordering::SeqCst),
        1,
        "the token is cached per scope"
    );

    // Without credentials the token server refuses, and the error says what to do.
    let err = client()
        .resolve(&Reference::parse(&format!("{}/team/app:v1", proxy.host())).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("token service refused"), "{err}");
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A registry without the referrers endpoint answers 404 there (the spec forbids a 404 from one
/// that has it): the client remembers and goes straight to the tag fallback afterwards.
#[tokio::test]
async fn a_missing_referrers_endpoint_is_asked_once() {
    let referrer_calls = Arc::new(AtomicUsize::new(0));
    let fallback_calls = Arc::new(AtomicUsize::new(0));
    let (r, f) = (referrer_calls.clone(), fallback_calls.clone());
    let server = FakeServer::start(sync_handler(move |req: &Req| {
        if req.path.contains("/referrers/") {
            r.fetch_add(1, Ordering::SeqCst);
        } else if req.path.contains("/manifests/sha256-") && !req.path.ends_with(".sig") {
            f.fetch_add(1, Ordering::SeqCst);
        }
        Reply::status(404)
    }))
    .await;
    let repository = Repository::parse(&format!("{}/team/app", server.host())).unwrap();
    let c = client();
    for i in 0..3 {
        let digest = Digest::sha256_of(format!("image {i}").as_bytes());
        let set = c.fetch_signatures(&repository, &digest).await.unwrap();
        assert!(set.candidates.is_empty() && set.skipped.is_empty());
    }
    assert_eq!(referrer_calls.load(Ordering::SeqCst), 1);
    assert_eq!(fallback_calls.load(Ordering::SeqCst), 3);
}
