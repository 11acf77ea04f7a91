//! SLSA provenance v1 for Warden builds, in an in-toto v1 statement signed as a DSSE envelope
//! (crates/trust's DSSE), and the `reproduced_by` check over such envelopes.
//!
//! The build type is [`BUILD_TYPE`] (documented in docs/provenance.md). External parameters:
//! `source.uri`, `source.commit`, `source.path`; resolved dependencies: the commit (`gitCommit`),
//! the `Cargo.lock` digest, the toolchain; `runDetails.builder.id` names the builder.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use warden_reference::{Digest, Repository};
use warden_trust::dsse::{self, Envelope, Statement};
use warden_trust::{KeyId, PublicKey, SigningKey};

use crate::Build;

/// The SLSA provenance v1 predicate type.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// Warden's build type: what `externalParameters` mean and how the build runs.
pub const BUILD_TYPE: &str = "https://warden.dev/build/v1";

/// The provenance statement of `build` of the image in `repository`.
pub fn statement(build: &Build, repository: &Repository, builder_id: &str) -> Statement {
    let mut deps = vec![json!({
        "uri": format!("git+{}", build.source_uri),
        "digest": {"gitCommit": build.commit},
        "name": "source",
    })];
    if let Some(lock) = &build.lock_digest {
        deps.push(json!({
            "name": "Cargo.lock",
            "digest": {lock.algorithm().name(): lock.hex()},
        }));
    }
    let tc = &build.toolchain;
    for (name, version) in [
        ("rustc", tc.rustc.as_deref()),
        ("cargo", tc.cargo.as_deref()),
        ("cc", Some(tc.cc.as_str())),
        ("libc", Some(tc.libc.as_str())),
    ] {
        if let Some(v) = version {
            deps.push(json!({
                "name": name,
                "uri": format!("warden:toolchain/{name}"),
                "annotations": {"version": v},
            }));
        }
    }
    let predicate = json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "source": {"uri": build.source_uri, "commit": build.commit, "path": build.path},
            },
            "internalParameters": {
                "kind": build.kind,
                "target": crate::compile::TARGET,
                "flags": build.flags,
                "sourceDateEpoch": build.epoch,
            },
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {"id": builder_id, "version": {"warden": env!("CARGO_PKG_VERSION")}},
        },
    });
    Statement::about(
        &repository.to_string(),
        &build.image.digest,
        SLSA_PROVENANCE_V1,
        predicate,
    )
}

/// Signs the provenance of `build` as a DSSE envelope (JSON bytes).
pub fn sign(build: &Build, repository: &Repository, builder_id: &str, key: &SigningKey) -> Vec<u8> {
    statement(build, repository, builder_id)
        .sign(&[key])
        .to_json()
}

/// What one verified provenance says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    pub signers: BTreeSet<KeyId>,
    pub commit: String,
    pub path: String,
    pub source_uri: String,
    pub builder_id: String,
}

/// Verifies one envelope: a pinned key signed it, it is an in-toto v1 statement about exactly
/// `digest`, with SLSA v1 provenance of Warden's build type naming a full commit.
pub fn verify(envelope: &[u8], pinned: &[PublicKey], digest: &Digest) -> Result<Attested, String> {
    let att = dsse::verify_attestation(envelope, pinned, digest).map_err(|e| e.to_string())?;
    if att.predicate_type != SLSA_PROVENANCE_V1 {
        return Err(format!(
            "predicate type `{}` is not SLSA provenance v1",
            att.predicate_type.escape_debug()
        ));
    }
    let p = &att.predicate;
    let build_type = p["buildDefinition"]["buildType"].as_str().unwrap_or("");
    if build_type != BUILD_TYPE {
        return Err(format!(
            "build type `{}` is not {BUILD_TYPE}",
            build_type.escape_debug()
        ));
    }
    let src = &p["buildDefinition"]["externalParameters"]["source"];
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let commit = text(&src["commit"]);
    if !(commit.len() == 40 || commit.len() == 64)
        || !commit
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err("the provenance names no full commit".into());
    }
    Ok(Attested {
        signers: att.signers,
        commit,
        path: text(&src["path"]),
        source_uri: text(&src["uri"]),
        builder_id: text(&p["runDetails"]["builder"]["id"]),
    })
}

/// The outcome of a `reproduced_by` check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reproduction {
    /// The commit (and path) the counted builders agree on.
    pub commit: Option<String>,
    pub path: Option<String>,
    /// The distinct pinned keys that attest that commit and this digest.
    pub builders: BTreeSet<KeyId>,
    /// Why other envelopes did not count.
    pub rejected: Vec<String>,
    pub min: usize,
}

impl Reproduction {
    /// Whether at least `min` distinct builders agree.
    pub fn met(&self) -> bool {
        self.min > 0 && self.builders.len() >= self.min
    }
}

/// The `reproduced_by` check: at least `min` DISTINCT `pinned` keys attest a build of exactly
/// `digest` from one source commit and path. With `commit` (the one the store approval names)
/// only that commit counts; otherwise the commit with the most builders does (ties: none
/// is chosen over another, the smallest commit id is reported).
pub fn check_reproduced(
    envelopes: &[Vec<u8>],
    pinned: &[PublicKey],
    digest: &Digest,
    commit: Option<&str>,
    min: usize,
) -> Reproduction {
    let mut by_source: BTreeMap<(String, String), BTreeSet<KeyId>> = BTreeMap::new();
    let mut rejected = Vec::new();
    for (i, env) in envelopes.iter().enumerate() {
        match verify(env, pinned, digest) {
            Ok(a) => {
                if commit.is_some_and(|c| c != a.commit) {
                    rejected.push(format!(
                        "attestation {i}: built from commit {}, not {}",
                        a.commit,
                        commit.unwrap_or("")
                    ));
                    continue;
                }
                by_source
                    .entry((a.commit, a.path))
                    .or_default()
                    .extend(a.signers);
            }
            Err(e) => rejected.push(format!("attestation {i}: {e}")),
        }
    }
    let best =
        by_source
            .into_iter()
            .fold(
                None::<((String, String), BTreeSet<KeyId>)>,
                |best, cur| match best {
                    Some(b) if b.1.len() >= cur.1.len() => Some(b),
                    _ => Some(cur),
                },
            );
    match best {
        Some(((c, p), keys)) => Reproduction {
            commit: Some(c),
            path: Some(p),
            builders: keys,
            rejected,
            min,
        },
        None => Reproduction {
            commit: None,
            path: None,
            builders: BTreeSet::new(),
            rejected,
            min,
        },
    }
}

/// An envelope as JSON, parsed (for display).
pub fn parse_envelope(bytes: &[u8]) -> Result<Envelope, String> {
    Envelope::parse(bytes).map_err(|e| e.to_string())
}
