//! Manifest and index documents from a registry (`warden_registry::manifest::parse`): parsing
//! never panics, and a parsed document re-serialised parses back to the same document under the
//! same `Content-Type`, with the same effective media type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_registry::manifest::{self, Manifest};

const CONTENT_TYPES: [Option<&str>; 6] = [
    None,
    Some(manifest::OCI_MANIFEST),
    Some(manifest::OCI_INDEX),
    Some(manifest::DOCKER_MANIFEST),
    Some("application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8"),
    Some("text/plain"),
];

fuzz_target!(|data: &[u8]| {
    // The first byte picks the Content-Type the registry "sent".
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(pick) % CONTENT_TYPES.len()];
    let Ok(parsed) = manifest::parse(bytes, content_type) else {
        return;
    };
    let again = match &parsed {
        Manifest::Image(m) => serde_json::to_vec(m),
        Manifest::Index(i) => serde_json::to_vec(i),
    }
    .expect("a parsed manifest serialises");
    let reparsed = manifest::parse(&again, content_type).expect("a re-serialised manifest parses");
    assert_eq!(parsed, reparsed, "round trip changed the manifest");
    let media = match &parsed {
        Manifest::Image(m) => m.media_type.clone(),
        Manifest::Index(i) => i.media_type.clone(),
    };
    if media.is_some() {
        // The document's own mediaType wins over the header, in both forms.
        assert_eq!(manifest::effective_media_type(bytes, content_type), media);
        assert_eq!(manifest::effective_media_type(&again, content_type), media);
    }
    // Every descriptor digest either parses or is refused; printing a parsed one gives it back.
    let descriptors: Vec<&manifest::Descriptor> = match &parsed {
        Manifest::Image(m) => std::iter::once(&m.config)
            .chain(m.layers.iter())
            .chain(m.subject.iter())
            .collect(),
        Manifest::Index(i) => i.manifests.iter().collect(),
    };
    for d in descriptors {
        if let Ok(digest) = d.parsed_digest() {
            assert_eq!(
                digest.to_string(),
                d.digest,
                "a digest parsed from a non-canonical form"
            );
        }
    }
});
