//! Property tests for the parsers of outside input: manifests, `WWW-Authenticate` challenges
//! and Docker config files never panic, and a manifest's kind survives a round trip.

use proptest::prelude::*;
use warden_registry::DockerConfig;
use warden_registry::manifest::{self, Descriptor, ImageIndex, Manifest, OCI_INDEX};

proptest! {
    #[test]
    fn manifest_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                    ct in proptest::option::of("[a-z./+-]{0,40}")) {
        let _ = manifest::parse(&bytes, ct.as_deref());
        let _ = manifest::effective_media_type(&bytes, ct.as_deref());
    }

    #[test]
    fn json_shaped_manifests_never_panic(s in r#"\{("(schemaVersion|mediaType|manifests|layers|config)":(2|1|"[a-z]*"|\[\]|\{\}|null),?){0,5}\}"#) {
        let _ = manifest::parse(s.as_bytes(), None);
    }

    #[test]
    fn docker_config_parser_never_panics(s in "\\PC{0,200}") {
        let _ = DockerConfig::from_json(&s);
    }

    #[test]
    fn indexes_round_trip(n in 0usize..5, size in any::<u64>()) {
        let d = Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size,
            digest: format!("sha256:{}", "ab".repeat(32)),
            annotations: None,
            platform: None,
            artifact_type: None,
        };
        let index = ImageIndex {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: vec![d; n],
            annotations: None,
        };
        let bytes = serde_json::to_vec(&index).unwrap();
        match manifest::parse(&bytes, None) {
            Ok(Manifest::Index(back)) => prop_assert_eq!(back, index),
            other => prop_assert!(false, "{:?}", other),
        }
    }
}
