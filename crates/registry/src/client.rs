//! The registry client: resolution, signature gathering and signature push.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use futures_util::StreamExt as _;
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, LOCATION, WWW_AUTHENTICATE,
};
use warden_reference::{Digest, Reference, Repository};

use crate::RegistryError;
use crate::auth::{Challenge, DockerConfig, parse_challenge};
use crate::manifest::{
    self, COSIGN_SIGNATURE_ARTIFACT, Descriptor, ImageManifest, MANIFEST_ACCEPT, Manifest,
    OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, SIGNATURE_ANNOTATION, SIMPLESIGNING,
};
use crate::transport::{base_url, check_url, map_reqwest, read_capped};

/// Signature manifests found, and what was skipped on the way.
type Found = (Vec<(String, ImageManifest)>, Vec<SkippedSignature>);

/// Payload blobs and referrer manifests fetched at once.
const BLOB_CONCURRENCY: usize = 8;
/// Longest signature annotation read.
const SIGNATURE_ANNOTATION_MAX: usize = 16 * 1024;

/// Size, count and time caps. The defaults suit a node; tests shorten the times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest image manifest, index or referrers list read (default 4 MiB).
    pub manifest_max_bytes: u64,
    /// Largest signature manifest read (default 256 KiB: 64 layers take about 40 KiB).
    pub signature_manifest_max_bytes: u64,
    /// Most signature layers considered for one digest across all sources (default 64); the
    /// rest are reported as skipped.
    pub max_signatures: usize,
    /// Largest signature payload blob read (default 64 KiB; cosign's are under 1 KiB).
    pub payload_max_bytes: u64,
    /// Largest token response or error body read (default 64 KiB).
    pub small_body_max_bytes: u64,
    /// TCP (and TLS) connect timeout (default 5 s).
    pub connect_timeout: Duration,
    /// One request, from connecting until the last body byte (default 30 s).
    pub request_timeout: Duration,
    /// A whole operation such as resolve or fetch_signatures (default 120 s).
    pub operation_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            manifest_max_bytes: 4 * 1024 * 1024,
            signature_manifest_max_bytes: 256 * 1024,
            max_signatures: 64,
            payload_max_bytes: 64 * 1024,
            small_body_max_bytes: 64 * 1024,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            operation_timeout: Duration::from_secs(120),
        }
    }
}

/// The platform picked from an image index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// How to build a [`Client`].
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    pub limits: Limits,
    /// Credentials (see [`DockerConfig::load_default`]); anonymous by default.
    pub credentials: DockerConfig,
    /// Registries (`host` or `host:port`) that may be reached over plain HTTP besides loopback.
    pub insecure_registries: Vec<String>,
    /// Platform picked from image indexes (linux/amd64 by default).
    pub platform: Platform,
}

/// A manifest as served, with the digest of its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawManifest {
    pub bytes: Vec<u8>,
    /// The document's own `mediaType`, else the `Content-Type` header.
    pub media_type: Option<String>,
    /// Digest of `bytes` (in the algorithm of the expected digest, sha256 otherwise).
    pub digest: Digest,
}

/// The platform manifest chosen from an image index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformManifest {
    pub platform: Platform,
    pub digest: Digest,
    pub media_type: String,
    /// Length in bytes of the platform manifest.
    pub size: u64,
}

/// The outcome of resolving a reference, done once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    pub repository: Repository,
    /// Digest of the manifest the reference names (an image manifest or an image index).
    pub digest: Digest,
    pub media_type: String,
    /// Length in bytes of that manifest (a Notary Project payload names it).
    pub size: u64,
    /// For an index: the manifest of the chosen platform.
    pub platform: Option<PlatformManifest>,
}

impl ResolvedImage {
    /// The digests a signature may cover, as cosign accepts them: the resolved digest first,
    /// then, for an index, the platform manifest's digest.
    pub fn signed_digests(&self) -> Vec<Digest> {
        let mut out = vec![self.digest.clone()];
        if let Some(p) = &self.platform {
            out.push(p.digest.clone());
        }
        out
    }

    /// `registry/path@digest`, what to pull.
    pub fn pinned(&self) -> String {
        format!("{}@{}", self.repository, self.digest)
    }
}

/// One signature found in a registry: the exact payload bytes of the layer blob, the base64
/// signature from the layer annotation, and where it was found. Convert it to
/// `warden_trust`'s candidate type to verify it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedSignature {
    pub payload: Vec<u8>,
    pub signature_b64: String,
    pub origin: String,
}

/// A layer or referrer that was not made a candidate, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedSignature {
    pub origin: String,
    pub reason: String,
}

/// Every signature candidate found for one digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureSet {
    pub digest: Digest,
    pub candidates: Vec<FetchedSignature>,
    pub skipped: Vec<SkippedSignature>,
}

/// What [`Client::push_signature`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedSignature {
    /// The `sha256-<hex>.sig` tag.
    pub tag: String,
    /// Digest of the signature manifest now at that tag.
    pub manifest_digest: Digest,
    /// Number of signature layers in it.
    pub layers: usize,
    /// False when the same payload and signature were already there (nothing was pushed).
    pub appended: bool,
}

/// What the node's trust chain needs from a registry, so the chain can be tested without one.
#[async_trait::async_trait]
pub trait ImageSource: Send + Sync {
    /// Resolves a reference to its manifest digest (once).
    async fn resolve(&self, reference: &Reference) -> Result<ResolvedImage, RegistryError>;
    /// Gathers signature candidates for `digest`.
    async fn fetch_signatures(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<SignatureSet, RegistryError>;
    /// Gathers Notary Project signature envelopes for `digest` (OCI referrers). A source that
    /// cannot answers with an error, never an empty set.
    async fn fetch_notary_signatures(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<crate::NotarySignatureSet, RegistryError> {
        let _ = digest;
        Err(RegistryError::Malformed {
            registry: repository.registry().to_owned(),
            what: "Notary signatures".into(),
            why: "this image source does not fetch Notary Project signatures".into(),
        })
    }

    /// The DSSE envelopes attached to `digest` at cosign's attestation tag
    /// (`sha256-<hex>.att`), unverified. A source that cannot show them fails: a
    /// `reproduced_by` rule then fails closed.
    async fn fetch_attestations(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Vec<Vec<u8>>, RegistryError> {
        let _ = digest;
        Err(RegistryError::Client(format!(
            "this image source cannot fetch build attestations of {repository}"
        )))
    }

    /// The algorithm store evidence carried with `digest` (an imported image's, see
    /// [`crate::layout`]), unverified. A source that carries none fails: an offline node's
    /// `approved_by` rule then fails closed.
    async fn fetch_store_evidence(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Vec<Vec<u8>>, RegistryError> {
        let _ = digest;
        Err(RegistryError::Client(format!(
            "this image source carries no store evidence for {repository}"
        )))
    }
}

/// Media type of a DSSE envelope layer (cosign's attestation layers).
pub const DSSE_LAYER: &str = "application/vnd.dsse.envelope.v1+json";
/// Largest attestation manifest and envelope read.
pub const MAX_ATTESTATION: u64 = 1024 * 1024;
/// Most attestation layers read for one digest.
pub const MAX_ATTESTATIONS: usize = 64;

/// The cosign attestation tag of `digest`: `sha256-<hex>.att`.
pub fn attestation_tag(digest: &Digest) -> String {
    format!("{}-{}.att", digest.algorithm().name(), digest.hex())
}

impl Client {
    /// The image manifest at `digest`'s attestation tag, if there is one.
    pub async fn attestation_manifest(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Option<ImageManifest>, RegistryError> {
        let tag = attestation_tag(digest);
        let Some(raw) = self
            .fetch_manifest(repository, &tag, MAX_ATTESTATION, None)
            .await?
        else {
            return Ok(None);
        };
        match manifest::parse(&raw.bytes, raw.media_type.as_deref()) {
            Ok(Manifest::Image(m)) => Ok(Some(*m)),
            _ => Err(RegistryError::Malformed {
                registry: repository.registry().to_owned(),
                what: format!("attestation manifest {repository}:{tag}"),
                why: "not an image manifest".into(),
            }),
        }
    }

    /// The DSSE envelope layers attached to `digest` (at most [`MAX_ATTESTATIONS`], each at
    /// most [`MAX_ATTESTATION`] bytes and checked against its descriptor's digest), unverified.
    pub async fn fetch_attestation_envelopes(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Vec<Vec<u8>>, RegistryError> {
        let Some(m) = self.attestation_manifest(repository, digest).await? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for l in m
            .layers
            .iter()
            .filter(|l| l.media_type == DSSE_LAYER)
            .take(MAX_ATTESTATIONS)
        {
            let Ok(d) = l.parsed_digest() else { continue };
            out.push(
                self.fetch_blob(repository, &d, Some(l.size), MAX_ATTESTATION)
                    .await?,
            );
        }
        Ok(out)
    }
}

/// An OCI distribution client with caps. Cheap to share: hold one per process; it keeps
/// connections warm and caches bearer tokens per registry and scope.
pub struct Client {
    http: reqwest::Client,
    opts: ClientOptions,
    auth_cache: Mutex<HashMap<String, HeaderValue>>,
    /// Registries whose referrers endpoint answered 404 (or 400/405). The distribution spec
    /// forbids a 404 from a registry that has the endpoint, so the client goes straight to the
    /// tag fallback for them from then on (until the process restarts).
    no_referrers_api: Mutex<HashSet<String>>,
    /// Set for a client that reads an OCI image layout instead of a registry.
    layout: Option<crate::layout::OciLayout>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("limits", &self.opts.limits)
            .field("insecure_registries", &self.opts.insecure_registries)
            .field("platform", &self.opts.platform)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Pull,
    Push,
}

impl Client {
    pub fn new(opts: ClientOptions) -> Result<Self, RegistryError> {
        let insecure = opts.insecure_registries.clone();
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                return attempt.error("more than 5 redirects");
            }
            if check_url(attempt.url(), &insecure).is_err() {
                return attempt.error("redirect to plain http refused");
            }
            attempt.follow()
        });
        let http = reqwest::Client::builder()
            .connect_timeout(opts.limits.connect_timeout)
            .timeout(opts.limits.request_timeout)
            .redirect(redirect)
            .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RegistryError::Client(e.to_string()))?;
        Ok(Client {
            http,
            opts,
            auth_cache: Mutex::new(HashMap::new()),
            no_referrers_api: Mutex::new(HashSet::new()),
            layout: None,
        })
    }

    pub(crate) fn set_layout(&mut self, layout: crate::layout::OciLayout) {
        self.layout = Some(layout);
    }

    /// The image layout this client reads, when it reads one instead of a registry.
    pub fn layout_source(&self) -> Option<&crate::layout::OciLayout> {
        self.layout.as_ref()
    }

    fn refuse_push_to_layout(&self) -> Result<(), RegistryError> {
        match &self.layout {
            Some(l) => Err(RegistryError::Layout {
                dir: l.dir().display().to_string(),
                why: "an image layout is read-only here; push to a registry".into(),
            }),
            None => Ok(()),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.opts.limits
    }

    /// Resolves `reference` to the digest of its manifest, from the raw bytes, once. See the
    /// crate documentation for what is checked.
    pub async fn resolve(&self, reference: &Reference) -> Result<ResolvedImage, RegistryError> {
        let registry = reference.repository().registry().to_owned();
        self.deadline(
            &registry,
            "resolving the image",
            self.resolve_inner(reference),
        )
        .await
    }

    /// Gathers cosign signature candidates for `digest` from the legacy `.sig` tag and from
    /// OCI 1.1 referrers (endpoint or tag fallback).
    pub async fn fetch_signatures(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<SignatureSet, RegistryError> {
        self.deadline(
            repository.registry(),
            "fetching signatures",
            self.fetch_signatures_inner(repository, digest),
        )
        .await
    }

    /// Appends a cosign signature layer for `digest` to the manifest at its `.sig` tag,
    /// creating it when absent, as `cosign sign` does.
    pub async fn push_signature(
        &self,
        repository: &Repository,
        digest: &Digest,
        payload: &[u8],
        signature_b64: &str,
    ) -> Result<PushedSignature, RegistryError> {
        self.deadline(
            repository.registry(),
            "pushing the signature",
            self.push_signature_inner(repository, digest, payload, signature_b64),
        )
        .await
    }

    /// Fetches a manifest by tag or digest with a cap, checking its bytes against `expected`
    /// and against `Docker-Content-Digest`. `None` when the registry answers 404.
    pub async fn fetch_manifest(
        &self,
        repository: &Repository,
        reference: &str,
        cap: u64,
        expected: Option<&Digest>,
    ) -> Result<Option<RawManifest>, RegistryError> {
        if let Some(layout) = &self.layout {
            return layout.manifest(repository, reference, cap, expected);
        }
        let registry = repository.registry();
        let what = format!("manifest {}:{reference}", repository);
        let url = format!("{}/manifests/{reference}", self.repo_url(repository));
        let resp = self
            .send(repository, Access::Pull, &what, || {
                self.http.get(&url).header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self
            .expect_status(resp, &[StatusCode::OK], registry, &what)
            .await?;
        let header_digest = header_str(&resp, "docker-content-digest");
        let content_type = header_str(&resp, CONTENT_TYPE.as_str());
        let bytes =
            read_capped(resp, cap, registry, &what, self.opts.limits.request_timeout).await?;
        let digest = match expected {
            Some(want) => {
                if !want.matches(&bytes) {
                    return Err(mismatch(registry, &what, want, &bytes));
                }
                want.clone()
            }
            None => Digest::sha256_of(&bytes),
        };
        if let Some(h) = header_digest {
            let claimed = Digest::parse(&h).map_err(|e| RegistryError::Malformed {
                registry: registry.to_owned(),
                what: format!("Docker-Content-Digest header of {what}"),
                why: e.to_string(),
            })?;
            if !claimed.matches(&bytes) {
                return Err(mismatch(
                    registry,
                    &format!("{what} (as claimed by its Docker-Content-Digest header)"),
                    &claimed,
                    &bytes,
                ));
            }
        }
        Ok(Some(RawManifest {
            media_type: manifest::effective_media_type(&bytes, content_type.as_deref()),
            bytes,
            digest,
        }))
    }

    /// Fetches a blob with a cap and checks it against `digest` (and `size` when given).
    pub async fn fetch_blob(
        &self,
        repository: &Repository,
        digest: &Digest,
        size: Option<u64>,
        cap: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        if let Some(layout) = &self.layout {
            return layout.blob(digest, size, cap);
        }
        let registry = repository.registry();
        let what = format!("blob {digest}");
        if size.is_some_and(|s| s > cap) {
            return Err(RegistryError::TooLarge {
                registry: registry.to_owned(),
                what: format!("{what} (declared size)"),
                cap,
            });
        }
        let url = format!("{}/blobs/{digest}", self.repo_url(repository));
        let resp = self
            .send(repository, Access::Pull, &what, || self.http.get(&url))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                repository: repository.to_string(),
                what,
            });
        }
        let resp = self
            .expect_status(resp, &[StatusCode::OK], registry, &what)
            .await?;
        let bytes =
            read_capped(resp, cap, registry, &what, self.opts.limits.request_timeout).await?;
        if !digest.matches(&bytes) {
            return Err(mismatch(registry, &what, digest, &bytes));
        }
        if let Some(s) = size {
            if s != bytes.len() as u64 {
                return Err(RegistryError::Malformed {
                    registry: registry.to_owned(),
                    what,
                    why: format!(
                        "the descriptor says {s} bytes, the blob has {}",
                        bytes.len()
                    ),
                });
            }
        }
        Ok(bytes)
    }

    /// Uploads a blob (monolithic `POST` then `PUT ?digest=`) unless the registry has it.
    pub async fn upload_blob(
        &self,
        repository: &Repository,
        bytes: &[u8],
    ) -> Result<Digest, RegistryError> {
        self.refuse_push_to_layout()?;
        let registry = repository.registry();
        let digest = Digest::sha256_of(bytes);
        let what = format!("upload of blob {digest}");
        let head_url = format!("{}/blobs/{digest}", self.repo_url(repository));
        let head = self
            .send(repository, Access::Push, &what, || {
                self.http.head(&head_url)
            })
            .await?;
        if head.status() == StatusCode::OK {
            return Ok(digest);
        }
        let start_url = format!("{}/blobs/uploads/", self.repo_url(repository));
        let started = self
            .send(repository, Access::Push, &what, || {
                self.http.post(&start_url).header("content-length", "0")
            })
            .await?;
        let started = self
            .expect_status(started, &[StatusCode::ACCEPTED], registry, &what)
            .await?;
        let location =
            header_str(&started, LOCATION.as_str()).ok_or_else(|| RegistryError::Malformed {
                registry: registry.to_owned(),
                what: what.clone(),
                why: "the upload start has no Location header".into(),
            })?;
        let base = url::Url::parse(&self.repo_url(repository))
            .map_err(|e| RegistryError::Client(format!("bad registry url: {e}")))?;
        let mut put_url = base.join(&location).map_err(|e| RegistryError::Malformed {
            registry: registry.to_owned(),
            what: what.clone(),
            why: format!("bad upload Location `{location}`: {e}"),
        })?;
        check_url(&put_url, &self.opts.insecure_registries)?;
        put_url
            .query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let body = bytes::Bytes::copy_from_slice(bytes);
        let done = self
            .send(repository, Access::Push, &what, || {
                self.http
                    .put(put_url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(body.clone())
            })
            .await?;
        self.expect_status(done, &[StatusCode::CREATED], registry, &what)
            .await?;
        Ok(digest)
    }

    /// Puts a manifest under `reference` (tag or digest) and returns its digest.
    pub async fn put_manifest(
        &self,
        repository: &Repository,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, RegistryError> {
        self.refuse_push_to_layout()?;
        let registry = repository.registry();
        let digest = Digest::sha256_of(bytes);
        let what = format!("push of manifest {}:{reference}", repository);
        let url = format!("{}/manifests/{reference}", self.repo_url(repository));
        let body = bytes::Bytes::copy_from_slice(bytes);
        let resp = self
            .send(repository, Access::Push, &what, || {
                self.http
                    .put(&url)
                    .header(CONTENT_TYPE, media_type)
                    .body(body.clone())
            })
            .await?;
        let resp = self
            .expect_status(resp, &[StatusCode::CREATED], registry, &what)
            .await?;
        if let Some(h) = header_str(&resp, "docker-content-digest") {
            if h != digest.to_string() {
                return Err(RegistryError::DigestMismatch {
                    registry: registry.to_owned(),
                    what,
                    expected: digest.to_string(),
                    actual: h,
                });
            }
        }
        Ok(digest)
    }

    async fn resolve_inner(&self, reference: &Reference) -> Result<ResolvedImage, RegistryError> {
        let repository = reference.repository();
        let registry = repository.registry();
        let limits = &self.opts.limits;
        let wanted = reference.manifest_reference();
        let raw = self
            .fetch_manifest(
                repository,
                &wanted,
                limits.manifest_max_bytes,
                reference.digest(),
            )
            .await?
            .ok_or_else(|| RegistryError::NotFound {
                repository: repository.to_string(),
                what: format!("manifest `{wanted}`"),
            })?;
        let what = format!("manifest {reference}");
        let parsed = manifest::parse(&raw.bytes, raw.media_type.as_deref())
            .map_err(|why| malformed(registry, &what, why))?;
        let media_type = raw
            .media_type
            .clone()
            .unwrap_or_else(|| OCI_MANIFEST.into());
        let index = match parsed {
            Manifest::Image(_) => {
                return Ok(ResolvedImage {
                    repository: repository.clone(),
                    size: raw.bytes.len() as u64,
                    digest: raw.digest,
                    media_type,
                    platform: None,
                });
            }
            Manifest::Index(index) => index,
        };
        let want = &self.opts.platform;
        let entry = index
            .manifests
            .iter()
            .find(|d| {
                d.platform.as_ref().is_some_and(|p| {
                    p.os == want.os
                        && p.architecture == want.architecture
                        && (want.variant.is_none() || p.variant == want.variant)
                })
            })
            .ok_or_else(|| RegistryError::NoPlatform {
                reference: reference.to_string(),
                platform: want.to_string(),
                available: index
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref())
                    .map(|p| format!("{}/{}", p.os, p.architecture))
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let platform_digest = entry
            .parsed_digest()
            .map_err(|why| malformed(registry, &what, format!("platform entry: {why}")))?;
        if entry.size > limits.manifest_max_bytes {
            return Err(RegistryError::TooLarge {
                registry: registry.to_owned(),
                what: format!("platform manifest {platform_digest} (declared size)"),
                cap: limits.manifest_max_bytes,
            });
        }
        let platform_raw = self
            .fetch_manifest(
                repository,
                &platform_digest.to_string(),
                limits.manifest_max_bytes,
                Some(&platform_digest),
            )
            .await?
            .ok_or_else(|| RegistryError::NotFound {
                repository: repository.to_string(),
                what: format!("platform manifest {platform_digest} listed in the index"),
            })?;
        let platform_what = format!("platform manifest {platform_digest}");
        match manifest::parse(&platform_raw.bytes, platform_raw.media_type.as_deref()) {
            Ok(Manifest::Image(_)) => {}
            Ok(Manifest::Index(_)) => {
                return Err(malformed(
                    registry,
                    &platform_what,
                    "an index entry points to another index; nested indexes are not supported"
                        .into(),
                ));
            }
            Err(why) => return Err(malformed(registry, &platform_what, why)),
        }
        Ok(ResolvedImage {
            repository: repository.clone(),
            size: raw.bytes.len() as u64,
            digest: raw.digest,
            media_type,
            platform: Some(PlatformManifest {
                platform: want.clone(),
                size: platform_raw.bytes.len() as u64,
                digest: platform_digest,
                media_type: platform_raw
                    .media_type
                    .unwrap_or_else(|| entry.media_type.clone()),
            }),
        })
    }

    async fn fetch_signatures_inner(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<SignatureSet, RegistryError> {
        let limits = &self.opts.limits;
        let mut set = SignatureSet {
            digest: digest.clone(),
            candidates: Vec::new(),
            skipped: Vec::new(),
        };
        // The two sources are independent: ask both at once.
        let (legacy, referrers) = tokio::join!(
            self.legacy_signature_manifest(repository, digest),
            self.referrer_manifests(repository, digest),
        );
        // One source failing does not hide what the other found: its error is kept as a skipped
        // source, and the signatures found are verified as ever. When nothing was found, the
        // error is the answer (a registry failure, not "unsigned").
        let mut manifests = Vec::new();
        let mut skipped = Vec::new();
        let mut failure = None;
        for (source, found) in [("tag", legacy), ("referrers", referrers)] {
            match found {
                Ok((m, s)) => {
                    manifests.extend(m);
                    skipped.extend(s);
                }
                Err(e) => {
                    skipped.push(SkippedSignature {
                        origin: format!("signature source: {source}"),
                        reason: e.to_string(),
                    });
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure
            && manifests.is_empty()
        {
            return Err(e);
        }
        set.skipped.extend(skipped);

        // Walk the layers in order, applying the checks and the count cap, then fetch the
        // payloads concurrently (in order, a few at a time).
        let mut budget = limits.max_signatures;
        let mut slots: Vec<Option<Result<FetchedSignature, SkippedSignature>>> = Vec::new();
        let mut jobs = Vec::new();
        for (origin, m) in &manifests {
            for (i, layer) in m.layers.iter().enumerate() {
                let origin = format!("{origin} layer {i}");
                match self.check_layer(layer, &mut budget) {
                    Ok((d, sig)) => {
                        jobs.push((slots.len(), origin, d, layer.size, sig));
                        slots.push(None);
                    }
                    Err(reason) => slots.push(Some(Err(SkippedSignature { origin, reason }))),
                }
            }
        }
        let fetched: Vec<_> = futures_util::stream::iter(jobs)
            .map(|(slot, origin, d, size, signature_b64)| async move {
                let r = self
                    .fetch_blob(repository, &d, Some(size), limits.payload_max_bytes)
                    .await;
                let r = match r {
                    Ok(payload) => Ok(FetchedSignature {
                        payload,
                        signature_b64,
                        origin,
                    }),
                    Err(e) => Err(SkippedSignature {
                        origin,
                        reason: e.to_string(),
                    }),
                };
                (slot, r)
            })
            .buffered(BLOB_CONCURRENCY)
            .collect()
            .await;
        for (slot, r) in fetched {
            if let Some(s) = slots.get_mut(slot) {
                *s = Some(r);
            }
        }
        for r in slots.into_iter().flatten() {
            match r {
                Ok(c) => set.candidates.push(c),
                Err(s) => set.skipped.push(s),
            }
        }
        for s in &set.skipped {
            tracing::debug!(origin = %s.origin, reason = %s.reason, "signature skipped");
        }
        Ok(set)
    }

    /// The manifest at cosign's legacy tag, if any.
    async fn legacy_signature_manifest(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Found, RegistryError> {
        let tag = digest.signature_tag();
        let origin = format!("tag {tag}");
        let Some(raw) = self
            .fetch_manifest(
                repository,
                &tag,
                self.opts.limits.signature_manifest_max_bytes,
                None,
            )
            .await?
        else {
            return Ok((Vec::new(), Vec::new()));
        };
        Ok(
            match manifest::parse(&raw.bytes, raw.media_type.as_deref()) {
                Ok(Manifest::Image(m)) => (vec![(origin, *m)], Vec::new()),
                Ok(Manifest::Index(_)) => (
                    Vec::new(),
                    vec![SkippedSignature {
                        origin,
                        reason: "the signature tag holds an index, not a signature manifest".into(),
                    }],
                ),
                Err(reason) => (Vec::new(), vec![SkippedSignature { origin, reason }]),
            },
        )
    }

    /// The cosign signature manifests among the OCI 1.1 referrers of `digest`.
    async fn referrer_manifests(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Found, RegistryError> {
        let limits = &self.opts.limits;
        let mut skipped = Vec::new();
        let (referrers, list_origin) = self.referrers(repository, digest, &mut skipped).await?;
        let mut wanted = Vec::new();
        for desc in referrers {
            if desc.artifact_type.as_deref() != Some(COSIGN_SIGNATURE_ARTIFACT) {
                continue;
            }
            let origin = format!("{list_origin} referrer {}", desc.digest);
            if wanted.len() >= limits.max_signatures {
                skipped.push(SkippedSignature {
                    origin,
                    reason: format!(
                        "over the cap of {} signatures per image",
                        limits.max_signatures
                    ),
                });
                continue;
            }
            wanted.push((origin, desc));
        }
        let fetched: Vec<_> = futures_util::stream::iter(wanted)
            .map(|(origin, desc)| async move {
                let r = self.fetch_referrer(repository, digest, &desc).await;
                (origin, r)
            })
            .buffered(BLOB_CONCURRENCY)
            .collect()
            .await;
        let mut manifests = Vec::new();
        for (origin, r) in fetched {
            match r {
                Ok(m) => manifests.push((origin, m)),
                Err(reason) => skipped.push(SkippedSignature { origin, reason }),
            }
        }
        Ok((manifests, skipped))
    }

    /// The referrers of `digest`: from the endpoint, or from the tag schema fallback when the
    /// endpoint is missing. Returns the descriptors and where they came from.
    pub(crate) async fn referrers(
        &self,
        repository: &Repository,
        digest: &Digest,
        skipped: &mut Vec<SkippedSignature>,
    ) -> Result<(Vec<Descriptor>, String), RegistryError> {
        let registry = repository.registry();
        let limits = &self.opts.limits;
        let what = format!("referrers of {digest}");
        // An image layout holds referrers as a registry without the API does.
        let known_missing = self.layout.is_some()
            || self
                .no_referrers_api
                .lock()
                .map(|m| m.contains(registry))
                .unwrap_or(false);
        if !known_missing {
            let url = format!("{}/referrers/{digest}", self.repo_url(repository));
            let resp = self
                .send(repository, Access::Pull, &what, || {
                    self.http.get(&url).header(ACCEPT, OCI_INDEX)
                })
                .await?;
            let status = resp.status();
            if status == StatusCode::OK {
                let origin = "referrers endpoint".to_owned();
                let bytes = read_capped(
                    resp,
                    limits.manifest_max_bytes,
                    registry,
                    &what,
                    limits.request_timeout,
                )
                .await?;
                return match serde_json::from_slice::<manifest::ImageIndex>(&bytes) {
                    Ok(index) => Ok((index.manifests, origin)),
                    Err(e) => {
                        skipped.push(SkippedSignature {
                            origin,
                            reason: format!("the referrers list is not an image index: {e}"),
                        });
                        Ok((Vec::new(), String::new()))
                    }
                };
            }
            if !matches!(
                status,
                StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST | StatusCode::METHOD_NOT_ALLOWED
            ) {
                return Err(self.status_error(resp, registry, &what).await);
            }
            if let Ok(mut m) = self.no_referrers_api.lock() {
                m.insert(registry.to_owned());
            }
        }
        // Tag schema fallback: an index at tag `<alg>-<hex>`.
        let tag = format!("{}-{}", digest.algorithm().name(), digest.hex());
        let origin = format!("referrers tag {tag}");
        let Some(raw) = self
            .fetch_manifest(repository, &tag, limits.manifest_max_bytes, None)
            .await?
        else {
            return Ok((Vec::new(), origin));
        };
        match manifest::parse(&raw.bytes, raw.media_type.as_deref()) {
            Ok(Manifest::Index(index)) => Ok((index.manifests, origin)),
            Ok(Manifest::Image(_)) => {
                skipped.push(SkippedSignature {
                    origin,
                    reason: "the referrers tag holds an image manifest, not an index".into(),
                });
                Ok((Vec::new(), String::new()))
            }
            Err(reason) => {
                skipped.push(SkippedSignature { origin, reason });
                Ok((Vec::new(), String::new()))
            }
        }
    }

    /// Fetches one referrer manifest and checks that it is a cosign signature for `subject`.
    async fn fetch_referrer(
        &self,
        repository: &Repository,
        subject: &Digest,
        desc: &Descriptor,
    ) -> Result<ImageManifest, String> {
        self.fetch_referrer_of_type(
            repository,
            subject,
            desc,
            COSIGN_SIGNATURE_ARTIFACT,
            "a cosign signature",
        )
        .await
    }

    /// Fetches one referrer manifest (capped at the signature manifest size) and checks that
    /// its subject is `subject` and its artifact type `artifact` (`kind` names it for people).
    pub(crate) async fn fetch_referrer_of_type(
        &self,
        repository: &Repository,
        subject: &Digest,
        desc: &Descriptor,
        artifact: &str,
        kind: &str,
    ) -> Result<ImageManifest, String> {
        let limits = &self.opts.limits;
        let d = desc.parsed_digest()?;
        if desc.size > limits.signature_manifest_max_bytes {
            return Err(format!(
                "declared size {} is over the cap of {} bytes",
                desc.size, limits.signature_manifest_max_bytes
            ));
        }
        let raw = self
            .fetch_manifest(
                repository,
                &d.to_string(),
                limits.signature_manifest_max_bytes,
                Some(&d),
            )
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "listed but not found".to_owned())?;
        let m = match manifest::parse(&raw.bytes, raw.media_type.as_deref())? {
            Manifest::Image(m) => m,
            Manifest::Index(_) => return Err("an index, not a signature manifest".into()),
        };
        let subject_ok = m
            .subject
            .as_ref()
            .is_some_and(|s| s.digest == subject.to_string());
        if !subject_ok {
            return Err(format!(
                "its subject is {}, not {subject}",
                m.subject
                    .as_ref()
                    .map(|s| s.digest.as_str())
                    .unwrap_or("missing")
            ));
        }
        let found = m
            .artifact_type
            .as_deref()
            .unwrap_or(m.config.media_type.as_str());
        if found != artifact {
            return Err(format!("artifact type `{found}` is not {kind}"));
        }
        Ok(*m)
    }

    /// Checks a signature layer before its payload is fetched; counts it against the cap.
    fn check_layer(
        &self,
        layer: &Descriptor,
        budget: &mut usize,
    ) -> Result<(Digest, String), String> {
        let limits = &self.opts.limits;
        if layer.media_type != SIMPLESIGNING {
            return Err(format!(
                "media type `{}` is not cosign simple signing",
                layer.media_type
            ));
        }
        let Some(sig) = layer
            .annotations
            .as_ref()
            .and_then(|a| a.get(SIGNATURE_ANNOTATION))
            .filter(|s| !s.is_empty())
        else {
            return Err(format!("no `{SIGNATURE_ANNOTATION}` annotation"));
        };
        if *budget == 0 {
            return Err(format!(
                "over the cap of {} signatures per image",
                limits.max_signatures
            ));
        }
        *budget -= 1;
        if sig.len() > SIGNATURE_ANNOTATION_MAX {
            return Err("the signature annotation is over 16 KiB".into());
        }
        let d = layer.parsed_digest()?;
        if layer.size > limits.payload_max_bytes {
            return Err(format!(
                "declared size {} is over the payload cap of {} bytes",
                layer.size, limits.payload_max_bytes
            ));
        }
        Ok((d, sig.clone()))
    }

    async fn push_signature_inner(
        &self,
        repository: &Repository,
        digest: &Digest,
        payload: &[u8],
        signature_b64: &str,
    ) -> Result<PushedSignature, RegistryError> {
        let registry = repository.registry();
        let limits = &self.opts.limits;
        let tag = digest.signature_tag();
        let mut layers = match self
            .fetch_manifest(repository, &tag, limits.signature_manifest_max_bytes, None)
            .await?
        {
            None => Vec::new(),
            Some(raw) => match manifest::parse(&raw.bytes, raw.media_type.as_deref()) {
                Ok(Manifest::Image(m)) => {
                    let same = m.layers.iter().any(|l| {
                        l.digest == Digest::sha256_of(payload).to_string()
                            && l.annotations
                                .as_ref()
                                .and_then(|a| a.get(SIGNATURE_ANNOTATION))
                                .is_some_and(|s| s == signature_b64)
                    });
                    if same {
                        return Ok(PushedSignature {
                            tag,
                            manifest_digest: raw.digest,
                            layers: m.layers.len(),
                            appended: false,
                        });
                    }
                    m.layers
                }
                Ok(Manifest::Index(_)) => {
                    return Err(malformed(
                        registry,
                        &format!("signature tag {tag}"),
                        "it holds an index; refusing to overwrite it".into(),
                    ));
                }
                Err(why) => {
                    return Err(malformed(
                        registry,
                        &format!("signature tag {tag}"),
                        format!("{why}; refusing to overwrite it"),
                    ));
                }
            },
        };
        let payload_digest = self.upload_blob(repository, payload).await?;
        layers.push(Descriptor {
            media_type: SIMPLESIGNING.into(),
            size: payload.len() as u64,
            digest: payload_digest.to_string(),
            annotations: Some(BTreeMap::from([(
                SIGNATURE_ANNOTATION.to_owned(),
                signature_b64.to_owned(),
            )])),
            platform: None,
            artifact_type: None,
        });
        let config = manifest::signature_config(&layers);
        let config_digest = self.upload_blob(repository, &config).await?;
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
            layers,
            subject: None,
            annotations: None,
        };
        let bytes = serde_json::to_vec(&m).map_err(|e| RegistryError::Client(e.to_string()))?;
        let manifest_digest = self
            .put_manifest(repository, &tag, OCI_MANIFEST, &bytes)
            .await?;
        Ok(PushedSignature {
            tag,
            manifest_digest,
            layers: m.layers.len(),
            appended: true,
        })
    }

    fn repo_url(&self, repository: &Repository) -> String {
        format!(
            "{}/v2/{}",
            base_url(repository.registry(), &self.opts.insecure_registries),
            repository.path()
        )
    }

    pub(crate) async fn deadline<T>(
        &self,
        registry: &str,
        what: &str,
        fut: impl Future<Output = Result<T, RegistryError>>,
    ) -> Result<T, RegistryError> {
        let limit = self.opts.limits.operation_timeout;
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => Err(RegistryError::Timeout {
                registry: registry.to_owned(),
                what: what.to_owned(),
                timeout: limit,
            }),
        }
    }

    /// Sends a request built by `make`, answering one authentication challenge (basic or
    /// bearer) and caching the result per registry and scope.
    async fn send(
        &self,
        repository: &Repository,
        access: Access,
        what: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let registry = repository.registry();
        let timeout = self.opts.limits.request_timeout;
        let scope = format!(
            "repository:{}:{}",
            repository.path(),
            match access {
                Access::Pull => "pull",
                Access::Push => "pull,push",
            }
        );
        let key = format!("{registry} {scope}");
        let cached = self.cached_auth(&key);
        let mut req = make();
        if let Some(h) = &cached {
            req = req.header(AUTHORIZATION, h.clone());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| map_reqwest(e, registry, what, timeout))?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let unauthorized = |hint: String| RegistryError::Unauthorized {
            registry: registry.to_owned(),
            repository: repository.to_string(),
            status: 401,
            hint,
        };
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge);
        let creds = self.opts.credentials.credentials_for(registry);
        let header = match challenge {
            None => {
                return Err(unauthorized(
                    "the registry sent no usable basic or bearer challenge".into(),
                ));
            }
            Some(Challenge::Basic) => {
                let c = creds.ok_or_else(|| {
                    unauthorized(self.opts.credentials.missing_credentials_hint(registry))
                })?;
                basic_header(&c.username, &c.password)?
            }
            Some(Challenge::Bearer { realm, service, .. }) => {
                self.fetch_token(repository, &realm, service.as_deref(), &scope)
                    .await?
            }
        };
        if cached.as_ref() == Some(&header) {
            return Err(unauthorized(
                self.opts.credentials.missing_credentials_hint(registry),
            ));
        }
        self.store_auth(key, header.clone());
        let resp = make()
            .header(AUTHORIZATION, header)
            .send()
            .await
            .map_err(|e| map_reqwest(e, registry, what, timeout))?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                registry: registry.to_owned(),
                repository: repository.to_string(),
                status: resp.status().as_u16(),
                hint: self.opts.credentials.missing_credentials_hint(registry),
            });
        }
        Ok(resp)
    }

    async fn fetch_token(
        &self,
        repository: &Repository,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<HeaderValue, RegistryError> {
        let registry = repository.registry();
        let limits = &self.opts.limits;
        let what = "bearer token";
        let mut url = url::Url::parse(realm).map_err(|e| {
            malformed(
                registry,
                "bearer challenge",
                format!("bad realm `{realm}`: {e}"),
            )
        })?;
        check_url(&url, &self.opts.insecure_registries)?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", scope);
        }
        let mut req = self.http.get(url);
        if let Some(c) = self.opts.credentials.credentials_for(registry) {
            req = req.basic_auth(&c.username, Some(&c.password));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| map_reqwest(e, registry, what, limits.request_timeout))?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                registry: registry.to_owned(),
                repository: repository.to_string(),
                status: resp.status().as_u16(),
                hint: format!(
                    "the token service refused: {}",
                    self.opts.credentials.missing_credentials_hint(registry)
                ),
            });
        }
        let resp = self
            .expect_status(resp, &[StatusCode::OK], registry, what)
            .await?;
        let bytes = read_capped(
            resp,
            limits.small_body_max_bytes,
            registry,
            what,
            limits.request_timeout,
        )
        .await?;
        #[derive(serde::Deserialize)]
        struct TokenBody {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let body: TokenBody = serde_json::from_slice(&bytes)
            .map_err(|e| malformed(registry, what, format!("not a token response: {e}")))?;
        let token = body
            .token
            .or(body.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| malformed(registry, what, "no `token` in the response".into()))?;
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            malformed(
                registry,
                what,
                "the token is not a valid header value".into(),
            )
        })
    }

    fn cached_auth(&self, key: &str) -> Option<HeaderValue> {
        self.auth_cache
            .lock()
            .map(|m| m.get(key).cloned())
            .unwrap_or(None)
    }

    fn store_auth(&self, key: String, value: HeaderValue) {
        if let Ok(mut m) = self.auth_cache.lock() {
            m.insert(key, value);
        }
    }

    async fn expect_status(
        &self,
        resp: reqwest::Response,
        ok: &[StatusCode],
        registry: &str,
        what: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        if ok.contains(&resp.status()) {
            Ok(resp)
        } else {
            Err(self.status_error(resp, registry, what).await)
        }
    }

    async fn status_error(
        &self,
        resp: reqwest::Response,
        registry: &str,
        what: &str,
    ) -> RegistryError {
        let status = resp.status().as_u16();
        let limits = &self.opts.limits;
        let message = match read_capped(
            resp,
            limits.small_body_max_bytes,
            registry,
            what,
            limits.request_timeout,
        )
        .await
        {
            Ok(b) => summarise_error_body(&b),
            Err(e) => format!("(body unreadable: {e})"),
        };
        RegistryError::Status {
            registry: registry.to_owned(),
            what: what.to_owned(),
            status,
            message,
        }
    }
}

#[async_trait::async_trait]
impl ImageSource for Client {
    async fn resolve(&self, reference: &Reference) -> Result<ResolvedImage, RegistryError> {
        Client::resolve(self, reference).await
    }

    async fn fetch_signatures(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<SignatureSet, RegistryError> {
        Client::fetch_signatures(self, repository, digest).await
    }

    async fn fetch_notary_signatures(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<crate::NotarySignatureSet, RegistryError> {
        Client::fetch_notary_signatures(self, repository, digest).await
    }

    async fn fetch_attestations(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Vec<Vec<u8>>, RegistryError> {
        self.fetch_attestation_envelopes(repository, digest).await
    }

    async fn fetch_store_evidence(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Vec<Vec<u8>>, RegistryError> {
        Client::fetch_store_evidence(self, repository, digest).await
    }
}

fn header_str(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
}

fn basic_header(user: &str, password: &str) -> Result<HeaderValue, RegistryError> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    HeaderValue::from_str(&format!("Basic {b64}"))
        .map_err(|_| RegistryError::Client("credentials are not a valid header value".into()))
}

fn mismatch(registry: &str, what: &str, expected: &Digest, bytes: &[u8]) -> RegistryError {
    RegistryError::DigestMismatch {
        registry: registry.to_owned(),
        what: what.to_owned(),
        expected: expected.to_string(),
        actual: Digest::of(expected.algorithm(), bytes).to_string(),
    }
}

fn malformed(registry: &str, what: &str, why: String) -> RegistryError {
    RegistryError::Malformed {
        registry: registry.to_owned(),
        what: what.to_owned(),
        why,
    }
}

/// The registry's error codes and messages (`{"errors":[{"code","message"}]}`), or the first
/// printable 200 characters of the body.
fn summarise_error_body(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body) {
        if !e.errors.is_empty() {
            return e
                .errors
                .iter()
                .map(|i| format!("{} {}", i.code, i.message))
                .collect::<Vec<_>>()
                .join("; ");
        }
    }
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    if text.is_empty() {
        "(no body)".into()
    } else {
        text
    }
}
