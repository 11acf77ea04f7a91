//! Image archives from across an air gap (`warden_registry::layout::unpack`): unpacking never
//! panics, never writes outside its folder, and whatever it accepts holds only the layout's
//! files, each blob hashing to its name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_registry::layout::{UnpackLimits, unpack};

fuzz_target!(|data: &[u8]| {
    let root = std::env::temp_dir().join(format!("warden-fuzz-unpack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("a scratch folder");
    let out = root.join("out");
    let limits = UnpackLimits {
        max_bytes: 1 << 20,
        max_entries: 64,
    };
    let accepted = unpack(data, &out, limits).is_ok();
    // Nothing beside the target folder, whatever the archive said.
    for entry in std::fs::read_dir(&root).expect("the scratch folder") {
        let name = entry.expect("an entry").file_name();
        assert_eq!(name, "out", "unpack wrote outside its folder");
    }
    if accepted {
        assert!(out.join("oci-layout").is_file() && out.join("index.json").is_file());
        let blobs = out.join("blobs");
        if let Ok(algs) = std::fs::read_dir(&blobs) {
            for alg in algs {
                let alg = alg.expect("an algorithm folder");
                for blob in std::fs::read_dir(alg.path()).expect("blobs") {
                    let blob = blob.expect("a blob");
                    let name = format!(
                        "{}:{}",
                        alg.file_name().to_string_lossy(),
                        blob.file_name().to_string_lossy()
                    );
                    let digest = warden_reference::Digest::parse(&name).expect("a blob name");
                    let bytes = std::fs::read(blob.path()).expect("a blob's bytes");
                    assert!(digest.matches(&bytes), "a blob kept under another name");
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&root);
});
