//! An air-gapped node's images (`[registry] offline = true`): the OCI image layout under
//! `<spool>/images` that `warden image import` fills, and the only image source such a node
//! admits from.
//!
//! An import ([`Images::import`]) takes an archive from the outside world, untrusted:
//! 1. it is unpacked into a staging folder (`warden_registry::layout::unpack`: layout files
//!    only, every blob hashed against its name, caps);
//! 2. the one image it names is admitted by the node's own gate from the staging layout, as a
//!    run is from a registry: resolution from raw bytes, cosign and Notary signatures,
//!    build attestations and store evidence (its checkpoint must extend the one this node
//!    saved), all verified here against what the node pins;
//! 3. on a permit, the platform manifest's config and layers are loaded into the engine as a
//!    docker-archive and the engine's image ID must be the config digest;
//! 4. the staging layout is merged into `<spool>/images` (blobs by digest, `index.json`
//!    entries replaced by name) and the image source reloaded.
//!
//! Every run admits again from `<spool>/images` with its own requester; nothing imported is
//! trusted for having been imported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use warden_registry::layout::{
    IMAGE_ANNOTATION, LayoutWriter, OciLayout, REF_NAME, UnpackLimits, unpack,
};
use warden_registry::manifest::Descriptor;
use warden_registry::{Client, ClientOptions, RegistryError};

/// The node's imported images and the source that reads them.
pub struct Images {
    dir: PathBuf,
    opts: ClientOptions,
    source: RwLock<Arc<Client>>,
    /// One import at a time.
    pub(crate) lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Images {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Images").field("dir", &self.dir).finish()
    }
}

impl Images {
    /// Opens (or creates, empty) the layout at `dir`.
    pub fn open(dir: &Path, opts: ClientOptions) -> Result<Images, RegistryError> {
        // What an import or a load interrupted by a crash left beside the layout.
        if let Some(parent) = dir.parent()
            && let Ok(entries) = std::fs::read_dir(parent)
        {
            for e in entries.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with("images-staging-")
                {
                    let p = e.path();
                    let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
                }
            }
        }
        if !dir.join("index.json").exists() {
            let tmp = dir.with_extension("new");
            let _ = std::fs::remove_dir_all(&tmp);
            LayoutWriter::create(&tmp)?.finish()?;
            std::fs::rename(&tmp, dir).map_err(|e| RegistryError::Layout {
                dir: dir.display().to_string(),
                why: e.to_string(),
            })?;
        }
        let layout = OciLayout::open(dir)?;
        let source = Client::layout(layout, opts.clone())?;
        Ok(Images {
            dir: dir.to_owned(),
            opts,
            source: RwLock::new(Arc::new(source)),
            lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The source that reads the imported images.
    pub fn source(&self) -> Arc<Client> {
        self.source
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh staging folder beside the layout.
    pub fn staging(&self) -> PathBuf {
        use rand_core::RngCore as _;
        let n = rand_core::OsRng.next_u64();
        self.dir.with_file_name(format!("images-staging-{n:016x}"))
    }

    /// A fresh scratch file for a docker-archive beside the layout.
    pub fn scratch(&self) -> PathBuf {
        self.staging().with_extension("docker.tar")
    }

    /// Unpacks `archive` into `staging` and opens it: the image it names and a source over it.
    pub fn stage(
        &self,
        archive: &Path,
        staging: &Path,
    ) -> Result<(OciLayout, Client, warden_reference::Reference), String> {
        let file =
            std::fs::File::open(archive).map_err(|e| format!("cannot read the upload: {e}"))?;
        unpack(
            std::io::BufReader::new(file),
            staging,
            UnpackLimits::default(),
        )
        .map_err(|e| e.to_string())?;
        let layout = OciLayout::open(staging).map_err(|e| e.to_string())?;
        let images = layout.images().map_err(|e| e.to_string())?;
        let (pinned, entry) = match images.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(format!(
                    "the archive names no image (no index.json entry with the {IMAGE_ANNOTATION} annotation); make it with `warden image export`"
                ));
            }
            _ => return Err("the archive names more than one image; import one at a time".into()),
        };
        // The reference as a task names it: the tag's when the archive has one.
        let reference = entry
            .annotations
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .and_then(|n| warden_reference::Reference::parse(n).ok())
            .filter(|r| r.repository() == pinned.repository())
            .unwrap_or(pinned);
        let client =
            Client::layout(layout.clone(), self.opts.clone()).map_err(|e| e.to_string())?;
        Ok((layout, client, reference))
    }

    /// Merges the staging layout into the node's: blobs by digest, `index.json` entries
    /// replacing those of the same name (the newer archive's evidence wins), written
    /// atomically; then reloads the source.
    pub fn merge(&self, staged: &OciLayout) -> Result<(), String> {
        let blobs = staged.dir().join("blobs");
        for alg in std::fs::read_dir(&blobs).map_err(|e| e.to_string())? {
            let alg = alg.map_err(|e| e.to_string())?;
            let target = self.dir.join("blobs").join(alg.file_name());
            std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
            for blob in std::fs::read_dir(alg.path()).map_err(|e| e.to_string())? {
                let blob = blob.map_err(|e| e.to_string())?;
                let to = target.join(blob.file_name());
                if !to.exists() {
                    std::fs::rename(blob.path(), &to)
                        .or_else(|_| std::fs::copy(blob.path(), &to).map(|_| ()))
                        .map_err(|e| format!("cannot keep blob {}: {e}", to.display()))?;
                }
            }
        }
        let current = OciLayout::open(&self.dir).map_err(|e| e.to_string())?;
        let key = |d: &Descriptor| -> Option<String> {
            let a = d.annotations.as_ref()?;
            a.get(REF_NAME)
                .cloned()
                .or_else(|| a.get(IMAGE_ANNOTATION).map(|i| format!("image {i}")))
        };
        let mut merged: BTreeMap<String, Descriptor> = BTreeMap::new();
        let mut unnamed = Vec::new();
        for d in current.entries().iter().chain(staged.entries()) {
            match key(d) {
                Some(k) => {
                    merged.insert(k, d.clone());
                }
                None => unnamed.push(d.clone()),
            }
        }
        let index = warden_registry::manifest::ImageIndex {
            schema_version: 2,
            media_type: Some(warden_registry::manifest::OCI_INDEX.into()),
            manifests: merged.into_values().chain(unnamed).collect(),
            annotations: None,
        };
        let bytes = serde_json::to_vec_pretty(&index).map_err(|e| e.to_string())?;
        crate::stores::write_atomic(&self.dir.join("index.json"), &bytes)
            .map_err(|e| format!("cannot write the image index: {e}"))?;
        let layout = OciLayout::open(&self.dir).map_err(|e| e.to_string())?;
        let source = Client::layout(layout, self.opts.clone()).map_err(|e| e.to_string())?;
        *self.source.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(source);
        Ok(())
    }
}
