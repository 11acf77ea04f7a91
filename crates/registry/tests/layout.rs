//! OCI image layouts and their archives (`warden_registry::layout`): what an air-gapped node
//! unpacks is hostile until proven otherwise. Every archive here is written byte by byte, as an
//! attacker would, so that names the tar crate itself would refuse to write reach the reader.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use warden_reference::{Digest, Reference};
use warden_registry::layout::{
    IMAGE_ANNOTATION, LayoutWriter, OciLayout, UnpackLimits, pack, unpack,
};
use warden_registry::manifest::{Descriptor, OCI_MANIFEST};
use warden_registry::{Client, ClientOptions};

/// One raw tar entry: its name as bytes, its type and its content.
struct Raw<'a> {
    name: &'a [u8],
    kind: tar::EntryType,
    data: &'a [u8],
    link: Option<&'a [u8]>,
}

fn raw_tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..e.name.len()].copy_from_slice(e.name);
            if let Some(link) = e.link {
                gnu.linkname[..link.len()].copy_from_slice(link);
            }
        }
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, e.data).unwrap();
    }
    b.into_inner().unwrap()
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        name: name.as_bytes(),
        kind: tar::EntryType::Regular,
        data,
        link: None,
    }
}

const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const INDEX: &[u8] = br#"{"schemaVersion":2,"manifests":[]}"#;

fn blob_name(data: &[u8]) -> String {
    format!("blobs/sha256/{}", Digest::sha256_of(data).hex())
}

fn refused(archive: &[u8], limits: UnpackLimits) -> String {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out");
    let e = unpack(archive, &target, limits).unwrap_err().to_string();
    // Nothing escaped the target folder.
    let outside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| n != "out")
        .collect();
    assert!(outside.is_empty(), "{outside:?}");
    e
}

#[test]
fn unpack_takes_only_the_layout_files_each_hashed_against_its_name() {
    let blob = b"layer bytes";
    let good_name = blob_name(blob);
    let ok = raw_tar(&[
        file("oci-layout", LAYOUT),
        file("index.json", INDEX),
        file(&good_name, blob),
    ]);
    let dir = tempfile::tempdir().unwrap();
    unpack(
        ok.as_slice(),
        &dir.path().join("l"),
        UnpackLimits::default(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("l").join(&good_name)).unwrap(),
        blob
    );

    let d = UnpackLimits::default();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a blob that is not what its name says",
            raw_tar(&[
                file("oci-layout", LAYOUT),
                file("index.json", INDEX),
                file(&good_name, b"other bytes"),
            ]),
            "not to its name",
        ),
        (
            "a path out of the folder",
            raw_tar(&[file("oci-layout", LAYOUT), file("../escaped", b"x")]),
            "not part of an OCI image layout",
        ),
        (
            "a blob path that climbs",
            raw_tar(&[file("blobs/sha256/../../../escaped", b"x")]),
            "not",
        ),
        (
            "an absolute path",
            raw_tar(&[file("/tmp/escaped", b"x")]),
            "not part of an OCI image layout",
        ),
        (
            "a file the layout has no place for",
            raw_tar(&[
                file("oci-layout", LAYOUT),
                file("index.json", INDEX),
                file("manifest.json", b"[]"),
            ]),
            "not part of an OCI image layout",
        ),
        (
            "a symbolic link",
            raw_tar(&[Raw {
                name: b"index.json",
                kind: tar::EntryType::Symlink,
                data: b"",
                link: Some(b"/etc/passwd"),
            }]),
            "link",
        ),
        (
            "a hard link",
            raw_tar(&[
                file("oci-layout", LAYOUT),
                Raw {
                    name: good_name.as_bytes(),
                    kind: tar::EntryType::Link,
                    data: b"",
                    link: Some(b"oci-layout"),
                },
            ]),
            "link",
        ),
        (
            "a device",
            raw_tar(&[Raw {
                name: b"index.json",
                kind: tar::EntryType::Char,
                data: b"",
                link: None,
            }]),
            "special file",
        ),
        (
            "a name twice",
            raw_tar(&[file("oci-layout", LAYOUT), file("oci-layout", LAYOUT)]),
            "twice",
        ),
        (
            "no index.json",
            raw_tar(&[file("oci-layout", LAYOUT), file(&good_name, blob)]),
            "no `index.json`",
        ),
        (
            "not a tar archive",
            b"just some text that is not a tar archive, long enough to look at".repeat(20),
            "",
        ),
        (
            "a name that would forge a log line",
            raw_tar(&[file("evil\nINFO forged", b"x")]),
            "`evil\\nINFO forged`",
        ),
        (
            "a name that is not UTF-8",
            raw_tar(&[Raw {
                name: b"blobs/sha256/\xff\xfe",
                kind: tar::EntryType::Regular,
                data: b"x",
                link: None,
            }]),
            "UTF-8",
        ),
    ];
    for (what, archive, needle) in cases {
        let e = refused(&archive, d);
        assert!(e.contains(needle), "{what}: {e}");
    }
    // Caps: entries and bytes.
    let data: Vec<Vec<u8>> = (0..5).map(|i| format!("blob {i}").into_bytes()).collect();
    let names: Vec<String> = data.iter().map(|d| blob_name(d)).collect();
    let entries: Vec<Raw<'_>> = names.iter().zip(&data).map(|(n, d)| file(n, d)).collect();
    let e = refused(
        &raw_tar(&entries),
        UnpackLimits {
            max_entries: 3,
            ..d
        },
    );
    assert!(e.contains("more than 3 entries"), "{e}");
    let big = vec![7u8; 4096];
    let big_name = blob_name(&big);
    let e = refused(
        &raw_tar(&[file(&big_name, &big)]),
        UnpackLimits {
            max_bytes: 1000,
            ..d
        },
    );
    assert!(e.contains("more than 1000 bytes"), "{e}");
}

fn write_layout(dir: &Path) -> (Reference, Digest, Digest) {
    let mut w = LayoutWriter::create(dir).unwrap();
    let config_bytes: &[u8] = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer_bytes: &[u8] = b"not really a layer";
    let config = w.put_blob(config_bytes).unwrap();
    let layer = w.put_blob(layer_bytes).unwrap();
    let (cs, ls) = (config_bytes.len(), layer_bytes.len());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":{cs},"digest":"{config}"}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","size":{ls},"digest":"{layer}"}}]}}"#
    );
    let digest = w.put_blob(manifest.as_bytes()).unwrap();
    let reference = Reference::parse("registry.example.org/team/mean:1.0").unwrap();
    let mut a = BTreeMap::new();
    a.insert(IMAGE_ANNOTATION.to_owned(), reference.pinned(&digest));
    w.tag(
        reference.repository(),
        reference.tag(),
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            size: manifest.len() as u64,
            digest: digest.to_string(),
            annotations: None,
            platform: None,
            artifact_type: None,
        },
        a,
    );
    w.finish().unwrap();
    (reference, digest, layer)
}

#[tokio::test]
async fn a_layout_reads_as_a_registry_does_and_an_altered_blob_is_caught_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let (reference, digest, layer) = write_layout(&src);

    // Packing is deterministic, and what it packs unpacks.
    let mut a = Vec::new();
    pack(&src, &mut a).unwrap();
    let mut b = Vec::new();
    pack(&src, &mut b).unwrap();
    assert_eq!(a, b);
    let out = dir.path().join("out");
    unpack(a.as_slice(), &out, UnpackLimits::default()).unwrap();

    let layout = OciLayout::open(&out).unwrap();
    let images = layout.images().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].0.digest(), Some(&digest));
    let client = Client::layout(layout.clone(), ClientOptions::default()).unwrap();
    let resolved = client.resolve(&reference).await.unwrap();
    assert_eq!(resolved.digest, digest);
    // Unsigned: no candidates, and no error (the tag is absent, as at a registry).
    let sigs = client
        .fetch_signatures(reference.repository(), &digest)
        .await
        .unwrap();
    assert!(sigs.candidates.is_empty());
    // Another tag is not found; pushing is refused.
    let other = Reference::parse("registry.example.org/team/mean:2.0").unwrap();
    assert!(client.resolve(&other).await.is_err());
    let e = client
        .upload_blob(reference.repository(), b"x")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("read-only"), "{e}");

    // A blob altered after unpacking is caught whenever it is read.
    let path = out.join("blobs/sha256").join(layer.hex());
    std::fs::write(&path, b"not really a layeR").unwrap();
    let e = layout.verified_blob_path(&layer).unwrap_err().to_string();
    assert!(e.contains("altered"), "{e}");
    let m = layout.image_manifest(&digest).unwrap();
    let e = layout
        .docker_archive(&m, &dir.path().join("docker.tar"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("altered"), "{e}");
    // So is an altered manifest, by resolution.
    std::fs::write(out.join("blobs/sha256").join(digest.hex()), b"{}").unwrap();
    let e = client.resolve(&reference).await.unwrap_err().to_string();
    assert!(e.contains("altered"), "{e}");
}

#[test]
fn an_image_annotation_must_name_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write_layout(&src);
    let index = std::fs::read_to_string(src.join("index.json")).unwrap();
    let lying = index.replacen("@sha256:", &format!("@sha256:{}", "0".repeat(64)), 1);
    // The annotation now names another digest than the entry's (and is no longer a digest).
    std::fs::write(src.join("index.json"), lying).unwrap();
    let e = OciLayout::open(&src)
        .unwrap()
        .images()
        .unwrap_err()
        .to_string();
    assert!(e.contains("image annotation"), "{e}");
}
