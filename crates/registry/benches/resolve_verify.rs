//! Resolve a tag, fetch its signatures and verify them, against the real registry on loopback
//! with a warm connection (the client is reused, as a node does). Target: under 10 ms.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use warden_reference::{Digest, Reference, Repository};
use warden_registry::{Client, ClientOptions};
use warden_trust::{KeyAlgorithm, SignatureCandidate, SigningKey, cosign};

fn bench(c: &mut Criterion) {
    let registry = warden_testkit::Registry::start().unwrap();
    let image = format!("{}/bench/app:v1", registry.host());
    let digest = warden_testkit::push_data_image(&image, "bench image").unwrap();
    warden_testkit::remove_images(&[&image]);
    let digest = Digest::parse(&digest).unwrap();
    let repository = Repository::parse(&format!("{}/bench/app", registry.host())).unwrap();
    let reference = Reference::parse(&image).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = Client::new(ClientOptions::default()).unwrap();
    let keys: Vec<SigningKey> = (0..3)
        .map(|_| SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap())
        .collect();
    for k in &keys[..2] {
        let s = cosign::sign(k, &repository, &digest, None);
        rt.block_on(client.push_signature(&repository, &digest, &s.payload, &s.signature_b64))
            .unwrap();
    }
    let pinned: Vec<_> = keys.iter().map(SigningKey::public_key).collect();

    let run = || async {
        let resolved = client.resolve(&reference).await.unwrap();
        let set = client
            .fetch_signatures(&repository, &resolved.digest)
            .await
            .unwrap();
        let candidates: Vec<SignatureCandidate> = set
            .candidates
            .into_iter()
            .map(|c| SignatureCandidate {
                payload: c.payload,
                signature_b64: c.signature_b64,
                origin: c.origin,
            })
            .collect();
        let v = cosign::verify(&candidates, &pinned, &repository, &resolved.digest);
        assert_eq!(v.verified.len(), 2);
    };
    // Warm the connection pool once.
    rt.block_on(run());
    c.bench_function(
        "resolve + fetch 2 signatures + verify (loopback registry)",
        |b| b.to_async(&rt).iter(run),
    );
    c.bench_function("fetch signatures only (loopback registry)", |b| {
        b.to_async(&rt)
            .iter(|| async { client.fetch_signatures(&repository, &digest).await.unwrap() })
    });
    let sig_tag = digest.signature_tag();
    c.bench_function("signature manifest GET (loopback registry)", |b| {
        b.to_async(&rt).iter(|| async {
            client
                .fetch_manifest(&repository, &sig_tag, 1 << 20, None)
                .await
                .unwrap()
        })
    });
    let missing = format!("sha256-{}", digest.hex());
    c.bench_function("missing tag GET (loopback registry)", |b| {
        b.to_async(&rt).iter(|| async {
            client
                .fetch_manifest(&repository, &missing, 1 << 20, None)
                .await
                .unwrap()
        })
    });
    c.bench_function("resolve only (loopback registry)", |b| {
        b.to_async(&rt)
            .iter(|| async { client.resolve(&reference).await.unwrap() })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
