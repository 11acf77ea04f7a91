//! OCI distribution client for Warden's trust chain: resolve a tag to a manifest digest once,
//! gather cosign signatures for that digest, and push cosign signatures.
//!
//! # What it guarantees
//! - **One resolution, from raw bytes.** [`Client::resolve`] reads the manifest bytes with a
//!   running cap, computes their sha256 and checks it against the `Docker-Content-Digest`
//!   header and against a digest pinned in the reference. Any disagreement is an error, never a
//!   pass. The digest returned is the one every later step uses; the tag is never asked again.
//! - **Image indexes.** When the reference names an OCI image index or a Docker manifest list,
//!   the platform manifest (linux/amd64 by default) is fetched by digest and verified too. Both
//!   digests are returned ([`ResolvedImage::signed_digests`]): cosign signs whatever digest the
//!   signer resolved, which is the index's digest for a multi-platform tag and the platform
//!   manifest's digest when the signer pinned that. Verification accepts a signature over
//!   either, each checked against its own digest (the payload names the digest it covers).
//! - **Caps everywhere.** Manifests (4 MiB), signature manifests, signature payload blobs
//!   (64 KiB), the number of signatures considered (64), token and error bodies, and time
//!   (connect, per request including the body, and the whole operation): see [`Limits`].
//!   Bodies are read as streams with a running count; `Content-Length` is only used to refuse
//!   early, never trusted to stop reading. Every blob is checked against its descriptor digest.
//! - **Transport.** HTTPS (rustls) by default; plain HTTP only for loopback registries
//!   (`127.0.0.0/8`, `::1`, `localhost`) and for registries the caller names as insecure in
//!   [`ClientOptions::insecure_registries`]. Redirects may not downgrade to plain HTTP.
//! - **Auth.** Anonymous, HTTP basic, and bearer tokens (the `WWW-Authenticate: Bearer`
//!   challenge flow, with basic credentials sent to the token realm when known). Credentials
//!   come from the Docker config file (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`,
//!   `auths.<registry>.auth` = base64 `user:password`, or `username`/`password`), including
//!   those kept by credential helpers (`credsStore`, `credHelpers`: `docker-credential-<name>`,
//!   asked once at load). Identity tokens are **not supported**: when a registry asks for
//!   credentials that only a token holds, the error says so.
//!
//! # Signatures
//! [`Client::fetch_signatures`] looks in two places:
//! 1. cosign's legacy layout: the tag `sha256-<hex>.sig` in the same repository, an OCI
//!    manifest whose layers have media type `application/vnd.dev.cosign.simplesigning.v1+json`
//!    and carry the base64 signature in the annotation `dev.cosignproject.cosign/signature`;
//! 2. OCI 1.1 referrers: `GET /v2/<name>/referrers/<digest>`, or when that endpoint answers
//!    404, the referrers tag schema fallback (an image index at tag `sha256-<hex>`). Referrers
//!    whose artifact type is cosign's signature type are fetched, their `subject` must be the
//!    digest asked for, and their layers are read as in the legacy layout.
//!
//! A missing signature tag means no candidates, not an error. A malformed layer (wrong media
//! type, no annotation, oversize, blob that does not hash to its descriptor) is skipped with a
//! reason. Judging the candidates is `warden-trust`'s job; this crate does not verify keys.
//!
//! The legacy tag and the referrers are asked at once and payloads are fetched a few at a time,
//! in order. A registry whose referrers endpoint answered 404 is remembered and not asked again
//! (the distribution spec forbids that answer from a registry that has the endpoint).
//!
//! # Notary Project signatures
//! [`Client::fetch_notary_signatures`] finds the signature manifests of artifact type
//! `application/vnd.cncf.notary.signature` among the same referrers (endpoint, or tag schema
//! fallback), checks each one's subject, and returns its one envelope blob (at most 256 KiB,
//! checked against its descriptor); see [`notary`]. [`Client::push_notary_signature`] pushes
//! one and adds it to the referrers tag index.
//!
//! [`ImageSource`] is the narrow async trait the node's trust chain uses, so that the chain can
//! be tested without a registry; [`Client`] implements it.
//!
//! [`Client::push_signature`] appends a layer to the signatures already at the `.sig` tag, as
//! cosign does: it reads the existing manifest, uploads the payload and a new config blob
//! (monolithic `POST` + `PUT ?digest=`), and puts the new manifest.
//!
//! # Why not `oci-client`
//! `oci-client` (formerly `oci-distribution`) reads bodies without caps: `pull_blob` copies the
//! whole stream into the writer with no limit and no digest check, and error bodies are read
//! whole with `Response::text()`. A hostile registry could make a node read forever. This crate
//! uses reqwest directly so that every read has a cap and every byte a digest.

#![forbid(unsafe_code)]

mod auth;
mod client;
mod error;
pub mod layout;
pub mod manifest;
pub mod notary;
mod transport;

pub use auth::{DockerConfig, RegistryCredentials};
pub use client::{
    Client, ClientOptions, DSSE_LAYER, FetchedSignature, ImageSource, Limits, MAX_ATTESTATION,
    MAX_ATTESTATIONS, Platform, PlatformManifest, PushedSignature, RawManifest, ResolvedImage,
    SignatureSet, SkippedSignature, attestation_tag,
};
pub use error::RegistryError;
pub use notary::{FetchedNotarySignature, NotarySignatureSet};

/// Parser entry points for the fuzz targets in `fuzz/`: not part of the crate's API, may change
/// without notice.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::auth::Challenge;

    /// Parses the first Basic or Bearer challenge of a `WWW-Authenticate` header value, as the
    /// client does on a 401.
    pub fn parse_challenge(header: &str) -> Option<Challenge> {
        crate::auth::parse_challenge(header)
    }
}
