//! Admission: steps 3 to 8 of the trust chain (docs/node.md), as types.
//!
//! 3. and 4. [`Gate::precheck`] parses and normalises the reference and runs the policy
//!    pre-check on names and requester alone, before any network I/O; it returns a
//!    [`Prechecked`].
//! 5. [`Gate::admit`] resolves the tag to a manifest digest once (warden-registry, from raw bytes
//!    with caps), 6. gathers cosign signatures for that digest and verifies them against the keys
//!    the node's own policy pins (a verifier error counts as a missing signature), and 7. decides
//!    with the pure `warden_policy::decide`. Only a permit produces an [`Admitted`]; its fields
//!    are private, so nothing else can make one.
//! 8. [`pin`] pulls `repository@digest` of an [`Admitted`] and checks `RepoDigests` and the image
//!    ID (warden-runtime's [`PinnedImage`]); the runtime runs only a `PinnedImage`.
//!
//! The server's word never enters: the image reference is the only input from outside (already
//! checked against the sealed input's binding, crate::binding), the digest is what this node
//! resolved, the keys are the node's.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use warden_policy::{
    Approvals, Decision, FileLoadError, KeyLoadError, MAX_SCHEMA_BYTES, Policy, Precheck, Request,
    Requester, RuleId,
};
use warden_reference::{Digest, Reference};
use warden_registry::ImageSource;
use warden_runtime::{Engine, PinError, PinnedImage, pull_pinned};
use warden_trust::notary::{TargetDescriptor, TrustStore, VerifiedSignature};
use warden_trust::{KeyId, PublicKey, SignatureCandidate, cosign};

/// Largest policy file and key file read.
const MAX_POLICY_BYTES: u64 = 16 << 20;
const MAX_KEY_BYTES: u64 = 64 << 10;

/// Why the gate could not be built (the node refuses to start).
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("cannot read policy {path}: {source}; check the path")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the policy is refused: {0}")]
    Policy(#[from] warden_policy::PolicyError),
}

/// The step of the chain at which a run was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The reference does not parse.
    Reference,
    /// Denied on names and requester alone; nothing was fetched.
    Precheck,
    /// The registry could not resolve the reference (or lied about it).
    Resolve,
    /// Signatures could not be fetched.
    Signatures,
    /// The policy denied after the evidence was gathered.
    Decision,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Reference => "reference",
            Stage::Precheck => "precheck",
            Stage::Resolve => "resolve",
            Stage::Signatures => "signatures",
            Stage::Decision => "decision",
        }
    }
}

/// What was learnt from the registry on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// The digest this node resolved.
    pub digest: Option<Digest>,
    /// For an image index: the chosen platform manifest's digest.
    pub platform_digest: Option<Digest>,
    /// Signature candidates found.
    pub candidates: usize,
    /// Keys whose signature verified.
    pub signers: BTreeSet<KeyId>,
    /// Candidates that did not count, and why.
    pub not_counted: Vec<String>,
    /// What each store named by an `approved_by` rule showed, as this node verified it.
    pub stores: Vec<crate::stores::Checked>,
    /// Every Notary Project signature found (only when a rule naming the repository counts
    /// them), each verified by this node against its own trust stores or refused, and why.
    pub notary: Vec<NotaryEvidence>,
    /// Build provenance of the digest that verified against a pinned key (`reproduced_by`).
    pub builds: Vec<BuiltBy>,
}

/// One Notary Project envelope found for a digest and what this node made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotaryEvidence {
    /// The digest whose referrers held it.
    pub digest: Digest,
    /// Where it was found (`referrers tag sha256-... referrer sha256:...`).
    pub origin: String,
    /// Verified (envelope, payload naming this digest, chain), or why not.
    pub outcome: Result<VerifiedSignature, String>,
}

impl Evidence {
    /// The Notary signatures that verified.
    pub fn notary_verified(&self) -> Vec<VerifiedSignature> {
        self.notary
            .iter()
            .filter_map(|n| n.outcome.as_ref().ok().cloned())
            .collect()
    }

    /// What the Notary signatures found were, for a denial: "found 1 signature: refused (the
    /// signature is for sha256:..., not sha256:...)".
    pub fn notary_summary(&self) -> String {
        if self.notary.is_empty() {
            return "no Notary signature from an identity the rule trusts: found no Notary signature".into();
        }
        let items: Vec<String> = self
            .notary
            .iter()
            .map(|n| match &n.outcome {
                Ok(v) => format!(
                    "verified, signed by {} (not trusted by the rule's trust store and identities)",
                    v.subject_text
                ),
                Err(why) => format!("refused ({why})"),
            })
            .collect();
        let count = self.notary.len();
        let plural = if count == 1 { "" } else { "s" };
        format!(
            "no Notary signature from an identity the rule trusts: found {count} signature{plural}: {}",
            items.join("; ")
        )
    }
}

/// One verified build attestation: who (a pinned key) built the digest from what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltBy {
    pub key: KeyId,
    pub commit: String,
    pub path: String,
    pub builder_id: String,
}

impl Evidence {
    /// The approvals that counted, as `store: key (organization) at index N` lines.
    pub fn approvals(&self) -> Vec<String> {
        self.stores
            .iter()
            .flat_map(|c| {
                c.entries.iter().filter(|e| e.counted).map(move |e| {
                    format!(
                        "{}: {} ({}) at index {}",
                        c.store,
                        e.key_id.as_deref().unwrap_or("?"),
                        e.organization.as_deref().unwrap_or("?"),
                        e.index
                    )
                })
            })
            .collect()
    }
}

/// A refused run: the stage, the reason (the policy's explanation for a denial) and what was
/// learnt before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub stage: Stage,
    pub reason: String,
    pub rule: Option<RuleId>,
    /// The policy's denial, for the pre-check and decision stages.
    pub decision: Option<Decision>,
    pub evidence: Box<Evidence>,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl Rejection {
    fn new(stage: Stage, reason: impl Into<String>, evidence: Evidence) -> Rejection {
        Rejection {
            stage,
            reason: reason.into(),
            rule: None,
            decision: None,
            evidence: Box::new(evidence),
        }
    }
}

/// A reference that passed the pre-check; nothing has been fetched for it yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prechecked {
    reference: Reference,
    requester: Requester,
}

impl Prechecked {
    pub fn reference(&self) -> &Reference {
        &self.reference
    }
}

/// A permit: the digest this node resolved, the rule that allowed it and the verified signers.
/// Only [`Gate::admit`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    reference: Reference,
    digest: Digest,
    rule: RuleId,
    evidence: Evidence,
}

impl Admitted {
    pub fn reference(&self) -> &Reference {
        &self.reference
    }
    /// The digest to run: resolved once by this node.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
    pub fn rule(&self) -> RuleId {
        self.rule
    }
    /// The permit, as the policy crate spells it.
    pub fn decision(&self) -> Decision {
        Decision::Permit { rule: self.rule }
    }
    pub fn evidence(&self) -> &Evidence {
        &self.evidence
    }
    /// `registry/path@digest`: the only form of the image used after admission.
    pub fn pinned_reference(&self) -> String {
        self.reference.pinned(&self.digest)
    }
}

/// The node's policy with the public keys its rules pin.
pub struct Gate {
    policy: Policy,
    /// `sha256:<hex>` of the policy file's bytes as loaded.
    sha256: String,
    keys: Vec<PublicKey>,
    key_files: BTreeMap<KeyId, Vec<String>>,
    stores: Option<Arc<crate::stores::Stores>>,
    /// The union of the trust stores of the policy's `signed_by.notary` conditions: every
    /// envelope is verified once against it, then each rule asks its own store.
    notary_store: Option<TrustStore>,
    /// An air-gapped node's gate: store evidence is what the imported archive carried.
    offline: bool,
}

/// Where the evidence of `approved_by` rules comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreSource {
    /// Fetched from each store (with the cache of `max_evidence_age_secs`).
    Stores,
    /// Carried by an imported archive and verified here; on import (`importing`) its
    /// checkpoint must extend the one this node saved, which it then replaces.
    Carried { importing: bool },
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("policy", &self.policy.origin())
            .field("keys", &self.keys.len())
            .finish()
    }
}

fn read_capped(path: &Path, cap: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let mut out = Vec::new();
    f.take(cap + 1).read_to_end(&mut out)?;
    if out.len() as u64 > cap {
        return Err(std::io::Error::other(format!("larger than {cap} bytes")));
    }
    Ok(out)
}

impl Gate {
    /// Loads and validates the policy, reading the key files its rules name (relative to the
    /// policy's folder).
    pub fn load(path: &Path) -> Result<Gate, GateError> {
        let bytes = read_capped(path, MAX_POLICY_BYTES).map_err(|source| GateError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let sha256 = {
            use sha2::Digest as _;
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)))
        };
        let text = String::from_utf8(bytes).map_err(|_| GateError::Read {
            path: path.display().to_string(),
            source: std::io::Error::other("not UTF-8 text"),
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let mut keys: BTreeMap<KeyId, PublicKey> = BTreeMap::new();
        let mut key_files: BTreeMap<KeyId, Vec<String>> = BTreeMap::new();
        // Output schemas are read relative to the policy's folder, capped, like key files.
        let load_schema = |file: &str| {
            let schema_path = base.join(file);
            let bytes = read_capped(&schema_path, MAX_SCHEMA_BYTES).map_err(|e| {
                FileLoadError(format!(
                    "cannot read schema file {}: {e}; the path is relative to the policy file",
                    schema_path.display()
                ))
            })?;
            String::from_utf8(bytes).map_err(|_| {
                FileLoadError(format!(
                    "schema file {} is not UTF-8 text",
                    schema_path.display()
                ))
            })
        };
        let origin = path.display().to_string();
        let policy = Policy::from_toml_str_with_loaders(
            &text,
            &origin,
            |pattern| warden_policy::expand_glob(base, pattern),
            |file| {
                let key_path = base.join(file);
                let pem = read_capped(&key_path, MAX_KEY_BYTES).map_err(|e| {
                    KeyLoadError(format!(
                        "cannot read key file {}: {e}; the path is relative to the policy file",
                        key_path.display()
                    ))
                })?;
                let pem = std::str::from_utf8(&pem).map_err(|_| {
                    KeyLoadError(format!("key file {} is not text", key_path.display()))
                })?;
                let key = PublicKey::from_pem(pem)
                    .map_err(|e| KeyLoadError(format!("key file {}: {e}", key_path.display())))?;
                let names = key_files.entry(key.id()).or_default();
                if !names.iter().any(|n| n == file) {
                    names.push(file.to_owned());
                }
                keys.insert(key.id(), key.clone());
                Ok(key)
            },
            load_schema,
        )?;
        let stores = policy.notary_trust_stores();
        let notary_store = (!stores.is_empty()).then(|| TrustStore::union(stores));
        Ok(Gate {
            policy,
            sha256,
            keys: keys.into_values().collect(),
            key_files,
            stores: None,
            notary_store,
            offline: false,
        })
    }

    /// An air-gapped node's gate (`[registry] offline`): store evidence is read from the
    /// image source (what an imported archive carried), never fetched.
    pub fn offline(mut self, offline: bool) -> Gate {
        self.offline = offline;
        self
    }

    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// The algorithm stores whose approvals `approved_by` rules ask for. Refused when a rule
    /// names a store the node configuration does not pin.
    pub fn with_stores(mut self, stores: crate::stores::Stores) -> Result<Gate, String> {
        for name in self.policy.stores() {
            if stores.get(&name).is_none() {
                return Err(format!(
                    "the policy's approved_by names store `{name}`, which the node configuration does not pin; add a [[stores]] table for it"
                ));
            }
        }
        self.stores = Some(Arc::new(stores));
        Ok(self)
    }

    /// `sha256:<hex>` of the policy file's bytes as loaded.
    pub fn policy_sha256(&self) -> &str {
        &self.sha256
    }

    /// The algorithm stores this gate checks approvals with, if any.
    pub fn stores(&self) -> Option<&Arc<crate::stores::Stores>> {
        self.stores.as_ref()
    }

    /// The store approvals that counted for the rule that admitted `admitted`: those of the
    /// store its `approved_by` names, signed by one of that rule's reviewer keys, each with the
    /// node's organization for the key and its log index. Empty for a rule without
    /// `approved_by`. What the run's audit records name.
    pub fn admitting_approvals(&self, admitted: &Admitted) -> Vec<warden_audit::Approval> {
        let Some(approved_by) = self
            .policy
            .rule(admitted.rule)
            .and_then(|r| r.approved_by.as_ref())
        else {
            return Vec::new();
        };
        admitted
            .evidence
            .stores
            .iter()
            .filter(|c| c.store == approved_by.store)
            .flat_map(|c| c.entries.iter().map(move |e| (c, e)))
            .filter(|(_, e)| e.counted)
            .filter_map(|(c, e)| {
                let key: KeyId = e.key_id.as_deref()?.parse().ok()?;
                approved_by
                    .reviewers
                    .contains_key(&key)
                    .then(|| warden_audit::Approval {
                        store: c.store.clone(),
                        key_id: key.to_string(),
                        organization: e.organization.clone().unwrap_or_default(),
                        index: e.index,
                    })
            })
            .collect()
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Key id -> the policy key files that hold it.
    pub fn key_file_map(&self) -> &BTreeMap<KeyId, Vec<String>> {
        &self.key_files
    }

    /// The policy key files that hold `key`.
    pub fn key_files(&self, key: &KeyId) -> &[String] {
        self.key_files.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Steps 2 and 3: normalise the reference and pre-check names and requester. No I/O.
    pub fn precheck(&self, image: &str, requester: &Requester) -> Result<Prechecked, Rejection> {
        let reference = Reference::parse(image).map_err(|e| {
            Rejection::new(
                Stage::Reference,
                format!("the image reference `{image}` is not valid: {e}"),
                Evidence::default(),
            )
        })?;
        if let Precheck::Deny { reasons } =
            warden_policy::precheck(&self.policy, &reference, requester)
        {
            let decision = Decision::Deny { reasons };
            let mut r = Rejection::new(
                Stage::Precheck,
                decision_text(&decision),
                Evidence::default(),
            );
            r.rule = decision.rule();
            r.decision = Some(decision);
            return Err(r);
        }
        Ok(Prechecked {
            reference,
            requester: requester.clone(),
        })
    }

    /// Steps 4 to 6: resolve once, gather and verify signatures, decide.
    pub async fn admit<S: ImageSource + ?Sized>(
        &self,
        source: &S,
        checked: Prechecked,
    ) -> Result<Admitted, Rejection> {
        let stores = if self.offline {
            StoreSource::Carried { importing: false }
        } else {
            StoreSource::Stores
        };
        self.admit_from(source, checked, stores).await
    }

    /// [`Gate::admit`] for an image archive being imported (an air-gapped node): the store
    /// evidence it carries must extend the checkpoints this node saved.
    pub async fn admit_import<S: ImageSource + ?Sized>(
        &self,
        source: &S,
        checked: Prechecked,
    ) -> Result<Admitted, Rejection> {
        self.admit_from(source, checked, StoreSource::Carried { importing: true })
            .await
    }

    async fn admit_from<S: ImageSource + ?Sized>(
        &self,
        source: &S,
        checked: Prechecked,
        store_source: StoreSource,
    ) -> Result<Admitted, Rejection> {
        let Prechecked {
            reference,
            requester,
        } = checked;
        let mut evidence = Evidence::default();
        let resolved = source.resolve(&reference).await.map_err(|e| {
            let hint = if self.offline {
                "; this node is offline ([registry] offline) and admits only images imported with `warden image import`"
            } else {
                ""
            };
            Rejection::new(
                Stage::Resolve,
                format!("cannot resolve {reference}: {e}{hint}"),
                Evidence::default(),
            )
        })?;
        evidence.digest = Some(resolved.digest.clone());
        evidence.platform_digest = resolved.platform.as_ref().map(|p| p.digest.clone());
        let repository = reference.repository();
        for digest in resolved.signed_digests() {
            // A registry that cannot show the signatures stops the walk (fail closed); a
            // signature that does not verify only does not count.
            let set = match source.fetch_signatures(repository, &digest).await {
                Ok(set) => set,
                Err(e) => {
                    return Err(Rejection::new(
                        Stage::Signatures,
                        format!("cannot fetch the signatures of {repository}@{digest}: {e}"),
                        evidence,
                    ));
                }
            };
            let candidates: Vec<SignatureCandidate> = set
                .candidates
                .iter()
                .map(|c| SignatureCandidate {
                    payload: c.payload.clone(),
                    signature_b64: c.signature_b64.clone(),
                    origin: c.origin.clone(),
                })
                .collect();
            let v = cosign::verify(&candidates, &self.keys, repository, &digest);
            evidence.signers.extend(v.verified.iter().copied());
            evidence
                .not_counted
                .extend(v.rejected.iter().map(|r| format!("{digest}: {r}")));
            evidence.not_counted.extend(
                set.skipped
                    .iter()
                    .map(|s| format!("{digest}: {}: {}", s.origin, s.reason)),
            );
            evidence.candidates += set.candidates.len();
        }
        // Notary Project signatures, when a rule (allow or deny) naming the repository counts them: fetched
        // for each digest a signature may name, verified here against the node's own trust
        // stores (never the server's word). A registry that cannot list them stops the walk.
        let uses_notary = self.policy.uses_notary(repository);
        if uses_notary {
            self.notary_evidence(source, &resolved, &mut evidence)
                .await?;
        }
        // Store approvals, fetched and verified by this node for the stores the rules name.
        let mut approvals = Approvals::none();
        let names = self.policy.stores_for(repository);
        if !names.is_empty() {
            if let Some(stores) = &self.stores {
                evidence.stores = match store_source {
                    StoreSource::Stores => stores.check(&names, repository, &resolved.digest).await,
                    StoreSource::Carried { importing } => {
                        let carried = source
                            .fetch_store_evidence(repository, &resolved.digest)
                            .await
                            .map_err(|e| e.to_string());
                        stores.check_carried(
                            &names,
                            carried,
                            repository,
                            &resolved.digest,
                            importing,
                        )
                    }
                };
            }
            for c in &evidence.stores {
                approvals.stores.insert(c.store.clone(), c.facts.clone());
            }
        }
        if self.policy.wants_reproduction(repository) {
            approvals.builds = self
                .check_builds(source, repository, &resolved.digest, &mut evidence)
                .await;
        }
        let notary = evidence.notary_verified();
        let decision = warden_policy::decide_with_notary(
            &self.policy,
            &Request {
                reference: &reference,
                digest: Some(&resolved.digest),
                signers: &evidence.signers,
                requester: &requester,
            },
            &approvals,
            &notary,
        );
        match decision {
            Decision::Permit { rule } => Ok(Admitted {
                reference,
                digest: resolved.digest,
                rule,
                evidence,
            }),
            deny => {
                let mut text = decision_text(&deny);
                if uses_notary {
                    text = format!("{text}; {}", evidence.notary_summary());
                }
                let mut r = Rejection::new(Stage::Decision, text, evidence);
                r.rule = deny.rule();
                r.decision = Some(deny);
                Err(r)
            }
        }
    }

    /// Fetches and verifies the Notary signatures of the resolved manifest (and, for an index,
    /// of the platform manifest), each against the descriptor of the digest it was found for.
    async fn notary_evidence<S: ImageSource + ?Sized>(
        &self,
        source: &S,
        resolved: &warden_registry::ResolvedImage,
        evidence: &mut Evidence,
    ) -> Result<(), Rejection> {
        let repository = &resolved.repository;
        let mut targets = vec![TargetDescriptor {
            media_type: resolved.media_type.clone(),
            digest: resolved.digest.to_string(),
            size: resolved.size,
        }];
        if let Some(p) = &resolved.platform {
            targets.push(TargetDescriptor {
                media_type: p.media_type.clone(),
                digest: p.digest.to_string(),
                size: p.size,
            });
        }
        let now = time::OffsetDateTime::now_utc();
        let (resolved_digest, platform_digest) = (
            resolved.digest.clone(),
            resolved.platform.as_ref().map(|p| p.digest.clone()),
        );
        for (target, digest) in targets
            .iter()
            .zip(std::iter::once(resolved_digest).chain(platform_digest))
        {
            let set = match source.fetch_notary_signatures(repository, &digest).await {
                Ok(set) => set,
                Err(e) => {
                    return Err(Rejection::new(
                        Stage::Signatures,
                        format!("cannot fetch the Notary signatures of {repository}@{digest}: {e}"),
                        std::mem::take(evidence),
                    ));
                }
            };
            for e in &set.envelopes {
                let outcome = match &self.notary_store {
                    _ if e.media_type != warden_registry::notary::NOTARY_JWS => Err(format!(
                        "envelope type {} is not verified by this node (JWS only)",
                        e.media_type
                    )),
                    Some(store) => store
                        .verify_envelope(&e.envelope, target, now)
                        .map_err(|err| err.0),
                    None => Err("the policy pins no Notary trust store".into()),
                };
                evidence.notary.push(NotaryEvidence {
                    digest: digest.clone(),
                    origin: e.origin.clone(),
                    outcome,
                });
            }
            evidence.not_counted.extend(
                set.skipped
                    .iter()
                    .map(|s| format!("{digest}: Notary {}: {}", s.origin, s.reason)),
            );
        }
        Ok(())
    }

    /// `reproduced_by` evidence: the digest's attestations from the registry, each verified here
    /// against the keys this node's policy pins (never a server's word). A registry that cannot
    /// show them leaves the facts unavailable (the rule fails closed).
    async fn check_builds<S: ImageSource + ?Sized>(
        &self,
        source: &S,
        repository: &warden_reference::Repository,
        digest: &Digest,
        evidence: &mut Evidence,
    ) -> warden_policy::BuildFacts {
        let mut facts = warden_policy::BuildFacts {
            checked: true,
            ..Default::default()
        };
        let envelopes = match source.fetch_attestations(repository, digest).await {
            Ok(e) => e,
            Err(e) => {
                facts.unavailable = Some(format!("cannot fetch the attestations: {e}"));
                return facts;
            }
        };
        for (i, env) in envelopes.iter().enumerate() {
            match warden_build::provenance::verify(env, &self.keys, digest) {
                Ok(a) => {
                    for key in &a.signers {
                        evidence.builds.push(BuiltBy {
                            key: *key,
                            commit: a.commit.clone(),
                            path: a.path.clone(),
                            builder_id: a.builder_id.clone(),
                        });
                    }
                    facts.attested.push(warden_policy::BuildAttestation {
                        signers: a.signers,
                        commit: a.commit,
                        path: a.path,
                    });
                }
                Err(e) => {
                    facts.rejected += 1;
                    evidence
                        .not_counted
                        .push(format!("{digest}: build attestation {}: {e}", i + 1));
                }
            }
        }
        facts
    }

    /// The whole walk: [`Gate::precheck`] then [`Gate::admit`].
    pub async fn check<S: ImageSource + ?Sized>(
        &self,
        source: &S,
        image: &str,
        requester: &Requester,
    ) -> Result<Admitted, Rejection> {
        let checked = self.precheck(image, requester)?;
        self.admit(source, checked).await
    }
}

/// A denial as one line: the policy's reasons joined.
fn decision_text(decision: &Decision) -> String {
    let reasons: Vec<String> = decision.reasons().iter().map(ToString::to_string).collect();
    if reasons.is_empty() {
        decision.to_string()
    } else {
        format!("denied by policy: {}", reasons.join("; "))
    }
}

/// Step 7 on an air-gapped node: the admitted image from the node's imported images, by the
/// config digest of its verified (platform) manifest; loaded into the engine again if it was
/// removed there.
pub async fn pin_imported<E: Engine + ?Sized>(
    engine: &E,
    admitted: &Admitted,
    images: &crate::images::Images,
) -> Result<PinnedImage, PinError> {
    let source = images.source();
    let layout = source.layout_source().ok_or_else(|| PinError::Load {
        reference: admitted.pinned_reference(),
        why: "the node's image source is not its imported images".into(),
    })?;
    pin_from_layout(engine, admitted, layout, &images.scratch()).await
}

/// The admitted image from `layout` (the node's kept images, or an import's staged ones): the
/// engine's image whose ID is the config digest of the verified (platform) manifest, loaded
/// through a docker-archive at `scratch` when the engine does not hold it.
pub async fn pin_from_layout<E: Engine + ?Sized>(
    engine: &E,
    admitted: &Admitted,
    layout: &warden_registry::layout::OciLayout,
    scratch: &Path,
) -> Result<PinnedImage, PinError> {
    let layout_error = |why: String| PinError::Load {
        reference: admitted.pinned_reference(),
        why,
    };
    let manifest_digest = admitted
        .evidence
        .platform_digest
        .clone()
        .unwrap_or_else(|| admitted.digest.clone());
    let manifest = layout
        .image_manifest(&manifest_digest)
        .map_err(|e| layout_error(e.to_string()))?;
    let config = Digest::parse(&manifest.config.digest)
        .map_err(|e| layout_error(format!("the config digest: {e}")))?;
    let layout = layout.clone();
    warden_runtime::load_pinned(
        engine,
        admitted.reference.repository(),
        &admitted.digest,
        &config,
        scratch,
        move |path| {
            layout
                .docker_archive(&manifest, path)
                .map_err(|e| e.to_string())
        },
    )
    .await
}

/// Step 7: pull exactly the admitted digest and pin the engine's image ID.
pub async fn pin<E: Engine + ?Sized>(
    engine: &E,
    admitted: &Admitted,
) -> Result<PinnedImage, PinError> {
    pull_pinned(engine, admitted.reference.repository(), &admitted.digest).await
}
