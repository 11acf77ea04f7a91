//! Algorithm stores the node trusts (`[[stores]]`), and the evidence of their approvals.
//!
//! The node fetches from the store directly, never through the server: the latest checkpoint
//! with the evidence for a digest (`GET /api/evidence/{digest}`: approval, rejection and
//! revocation envelopes with their leaf indexes and inclusion proofs) and a consistency proof
//! from the last checkpoint this node verified (`GET /api/log/proof/consistency`). Then, with no
//! trust in the store ([`verify_evidence`], pure):
//!
//! 1. the checkpoint's note signature verifies under the pinned verifier key, whose name is the
//!    log's origin `warden-store/<name>`;
//! 2. the checkpoint is consistent with the one saved under `<spool>/stores/<name>/checkpoint`
//!    (a failure is a rewritten or forked history: the store is refused, with an audit record
//!    and a loud log line, until the data owner deletes `<spool>/stores/<name>/refused`; see
//!    docs/node.md);
//! 3. each entry's leaf hash is recomputed and its inclusion proof verified against the root;
//! 4. each envelope verifies with `warden_trust::review` against the reviewer keys this node
//!    pins, names this digest, this repository and this store; approvals count by pinned key,
//!    with the organization the node's configuration gives the key.
//!
//! A store that cannot be reached fails closed, except that evidence fetched and verified
//! within `max_evidence_age_secs` is reused from `<spool>/stores/<name>/evidence/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use warden_api::store::{ConsistencyProof, EntryKind, Evidence};
use warden_policy::StoreFacts;
use warden_reference::{Digest, Repository};
use warden_tlog::{Checkpoint, Hash, NoteVerifier, open_checkpoint};
use warden_trust::review::{Decision, ReviewError, parse_review_envelope, verify_review};
use warden_trust::{KeyId, PublicKey};

/// Largest evidence body accepted from a store, in bytes.
pub const MAX_EVIDENCE_BYTES: usize = 4 << 20;
/// Largest consistency proof body accepted, in bytes.
pub const MAX_PROOF_BYTES: usize = 64 << 10;
/// How long one request to a store may take.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most entries of one digest's evidence that are looked at.
pub const MAX_ENTRIES: usize = 1000;

/// One `[[stores]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The store's name (its `[store] name`): the checkpoint origin is `warden-store/<name>`.
    #[serde(deserialize_with = "store_name")]
    pub name: String,
    /// The store's base URL (`http://` or `https://`).
    #[serde(deserialize_with = "store_url")]
    pub url: String,
    /// The pinned checkpoint verifier key, C2SP form `warden-store/<name>+<hex>+<base64>`
    /// (`GET /api/store` shows it as `note_key`; compare it out of band).
    #[serde(default, deserialize_with = "note_key")]
    pub note_key: Option<String>,
    /// ... or a file holding it (relative to the config file).
    #[serde(default)]
    pub note_key_file: Option<PathBuf>,
    /// The reviewer keys this node pins for this store, each with its organization.
    #[serde(default)]
    pub reviewers: Vec<ReviewerConfig>,
    /// How old verified evidence may be when the store cannot be reached (0: never reused).
    #[serde(default = "d_age", deserialize_with = "evidence_age")]
    pub max_evidence_age_secs: u64,
}

/// A pinned reviewer key and the organization this node says it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewerConfig {
    /// PEM public key file (P-256 or Ed25519), relative to the config file.
    pub key: PathBuf,
    #[serde(deserialize_with = "organization")]
    pub organization: String,
}

fn d_age() -> u64 {
    3600
}

fn evidence_age<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    warden_config::in_range(d, 0, 30 * 86400, "the evidence age in seconds")
}

fn store_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    if !ok {
        return Err(serde::de::Error::custom(
            "a store name is 1 to 64 of `a-z0-9-._`, the store's own `[store] name`",
        ));
    }
    Ok(s)
}

fn store_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    let ok = (s.starts_with("http://") || s.starts_with("https://"))
        && s.len() <= 2048
        && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(serde::de::Error::custom(
            "the store URL must start with http:// or https:// and hold no spaces",
        ));
    }
    Ok(s.trim_end_matches('/').to_owned())
}

fn note_key<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    NoteVerifier::parse(s.trim()).map_err(|e| {
        serde::de::Error::custom(format!(
            "not a C2SP verifier key ({e}); copy `note_key` from the store's GET /api/store"
        ))
    })?;
    Ok(Some(s.trim().to_owned()))
}

fn organization<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() || s.len() > 128 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(serde::de::Error::custom(
            "an organization name is 1 to 128 characters without spaces",
        ));
    }
    Ok(s)
}

/// Checks the `[[stores]]` tables together: distinct names, exactly one of `note_key` and
/// `note_key_file`, a `note_key` named after the store's origin. Returns the key at fault and
/// the message.
pub fn validate(stores: &[StoreConfig]) -> Result<(), (String, String)> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, s) in stores.iter().enumerate() {
        let key = format!("stores[{}]", i + 1);
        if !seen.insert(s.name.clone()) {
            return Err((
                format!("{key}.name"),
                format!("store `{}` is configured twice; keep one table", s.name),
            ));
        }
        match (&s.note_key, &s.note_key_file) {
            (Some(_), Some(_)) => {
                return Err((
                    format!("{key}.note_key"),
                    "give either note_key or note_key_file, not both".into(),
                ));
            }
            (None, None) => {
                return Err((
                    format!("{key}.note_key"),
                    "pin the store's checkpoint key: note_key (from GET /api/store, checked out of band) or note_key_file".into(),
                ));
            }
            (Some(k), None) => {
                check_origin(&s.name, k).map_err(|m| (format!("{key}.note_key"), m))?;
            }
            (None, Some(_)) => {}
        }
    }
    Ok(())
}

fn check_origin(name: &str, key: &str) -> Result<NoteVerifier, String> {
    let v =
        NoteVerifier::parse(key.trim()).map_err(|e| format!("not a C2SP verifier key ({e})"))?;
    let origin = warden_api::store::origin(name);
    if v.name() != origin {
        return Err(format!(
            "the verifier key is named `{}`, but store `{name}` signs as `{origin}`; pin that store's key",
            v.name().escape_debug()
        ));
    }
    Ok(v)
}

/// A store with the keys this node pins for it.
#[derive(Debug, Clone)]
pub struct PinnedStore {
    pub name: String,
    pub url: String,
    pub verifier: NoteVerifier,
    /// The store's own key (for store-signed revocations).
    pub store_key: PublicKey,
    pub reviewers: Vec<PublicKey>,
    /// Reviewer key -> organization (the node's mapping) and the key file.
    pub organizations: BTreeMap<KeyId, (String, PathBuf)>,
    pub max_evidence_age: Duration,
}

impl PinnedStore {
    /// Reads the key files a `[[stores]]` table names (paths already resolved).
    pub fn load(config: &StoreConfig) -> Result<PinnedStore, String> {
        let key_text = match (&config.note_key, &config.note_key_file) {
            (Some(k), _) => k.clone(),
            (None, Some(f)) => std::fs::read_to_string(f).map_err(|e| {
                format!(
                    "store `{}`: cannot read note_key_file {}: {e}",
                    config.name,
                    f.display()
                )
            })?,
            (None, None) => return Err(format!("store `{}`: no note key pinned", config.name)),
        };
        let verifier = check_origin(&config.name, &key_text)
            .map_err(|m| format!("store `{}`: {m}", config.name))?;
        let store_key = PublicKey::Ed25519(*verifier.public_key());
        let mut reviewers = Vec::new();
        let mut organizations: BTreeMap<KeyId, (String, PathBuf)> = BTreeMap::new();
        for r in &config.reviewers {
            let pem = std::fs::read_to_string(&r.key).map_err(|e| {
                format!(
                    "store `{}`: cannot read reviewer key {}: {e}",
                    config.name,
                    r.key.display()
                )
            })?;
            let key = PublicKey::from_pem(&pem).map_err(|e| {
                format!(
                    "store `{}`: reviewer key {}: {e}",
                    config.name,
                    r.key.display()
                )
            })?;
            if let Some((org, file)) = organizations.get(&key.id())
                && org != &r.organization
            {
                return Err(format!(
                    "store `{}`: reviewer key {} is {} already pinned for organization `{org}`; a key belongs to one organization",
                    config.name,
                    r.key.display(),
                    file.display()
                ));
            }
            organizations.insert(key.id(), (r.organization.clone(), r.key.clone()));
            reviewers.push(key);
        }
        Ok(PinnedStore {
            name: config.name.clone(),
            url: config.url.clone(),
            verifier,
            store_key,
            reviewers,
            organizations,
            max_evidence_age: Duration::from_secs(config.max_evidence_age_secs),
        })
    }
}

/// One entry of the evidence as the node judged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryView {
    pub index: u64,
    pub kind: String,
    /// The reviewer the envelope claims (its `reviewer` field), shown, never trusted.
    pub reviewer: Option<String>,
    /// The pinned key that signed it, if one did.
    pub key_id: Option<String>,
    /// The organization the node maps that key to.
    pub organization: Option<String>,
    pub included: bool,
    /// Whether it counts as an approval of this digest.
    pub counted: bool,
    /// Why it counts or not.
    pub why: String,
}

/// Verified evidence of one store about one digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub checkpoint: Checkpoint,
    /// The signed note as served.
    pub note: String,
    pub entries: Vec<EntryView>,
    pub facts: StoreFacts,
}

/// Why a store's evidence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The log is not consistent with a checkpoint this node verified: rewritten or forked.
    #[error(
        "store `{store}` is refused: its log is not consistent with the checkpoint this node verified before ({why}); history was rewritten or forked"
    )]
    Inconsistent { store: String, why: String },
    /// The evidence could not be had or is malformed.
    #[error("store `{store}`: {why}")]
    Unavailable { store: String, why: String },
}

impl Refusal {
    pub fn is_inconsistent(&self) -> bool {
        matches!(self, Refusal::Inconsistent { .. })
    }
}

fn hex_hash(s: &str) -> Option<Hash> {
    let bytes = hex::decode(s).ok()?;
    bytes.try_into().ok()
}

fn hashes(list: &[String]) -> Option<Vec<Hash>> {
    list.iter().map(|h| hex_hash(h)).collect()
}

/// Verifies a store's evidence for `repository@digest` against what this node pins and the
/// checkpoint it saved (`saved`), with `consistency` the proof from `saved` to the evidence's
/// checkpoint. Pure.
pub fn verify_evidence(
    store: &PinnedStore,
    saved: Option<&Checkpoint>,
    evidence: &Evidence,
    consistency: &[Hash],
    repository: &Repository,
    digest: &Digest,
) -> Result<Verified, Refusal> {
    let unavailable = |why: String| Refusal::Unavailable {
        store: store.name.clone(),
        why,
    };
    let checkpoint = open_checkpoint(evidence.checkpoint.as_bytes(), &store.verifier)
        .map_err(|e| unavailable(format!("its checkpoint is refused: {e}")))?;
    if checkpoint.size != evidence.size {
        return Err(unavailable(format!(
            "the evidence is at size {} but its checkpoint has size {}",
            evidence.size, checkpoint.size
        )));
    }
    if let Some(saved) = saved {
        check_consistent(store, saved, &checkpoint, consistency)?;
    }
    if evidence.entries.len() > MAX_ENTRIES {
        return Err(unavailable(format!(
            "the evidence has {} entries, more than {MAX_ENTRIES}",
            evidence.entries.len()
        )));
    }
    let mut entries = Vec::new();
    let mut facts = StoreFacts::default();
    let mut revocations = Vec::new();
    let mut pinned = store.reviewers.clone();
    pinned.push(store.store_key.clone());
    for e in &evidence.entries {
        let mut view = EntryView {
            index: e.index,
            kind: e.kind.as_str().to_owned(),
            reviewer: None,
            key_id: None,
            organization: None,
            included: false,
            counted: false,
            why: String::new(),
        };
        let judged = judge_entry(
            store,
            &checkpoint,
            e,
            &pinned,
            repository,
            digest,
            &mut view,
        );
        match judged {
            Judged::Approval(key, org) => {
                view.counted = true;
                facts.approvals.insert(key, org);
            }
            Judged::Revocation(text) => revocations.push(text),
            Judged::Nothing => {}
        }
        entries.push(view);
    }
    if !revocations.is_empty() {
        facts.revoked = Some(revocations.join("; "));
    }
    Ok(Verified {
        checkpoint,
        note: evidence.checkpoint.clone(),
        entries,
        facts,
    })
}

/// Checks that `new` extends `saved` (or, when the store went back to an older size, that
/// `saved` extends it, which is refused as a rollback).
pub fn check_consistent(
    store: &PinnedStore,
    saved: &Checkpoint,
    new: &Checkpoint,
    proof: &[Hash],
) -> Result<(), Refusal> {
    let inconsistent = |why: String| Refusal::Inconsistent {
        store: store.name.clone(),
        why,
    };
    if new.size >= saved.size {
        warden_tlog::verify_checkpoint_consistency(saved, new, proof)
            .map_err(|e| inconsistent(e.to_string()))
    } else {
        warden_tlog::verify_checkpoint_consistency(new, saved, proof)
            .map_err(|e| inconsistent(e.to_string()))?;
        Err(Refusal::Unavailable {
            store: store.name.clone(),
            why: format!(
                "it served a checkpoint of size {} older than the one of size {} this node verified; its evidence could miss a revocation",
                new.size, saved.size
            ),
        })
    }
}

enum Judged {
    Approval(KeyId, String),
    Revocation(String),
    Nothing,
}

fn judge_entry(
    store: &PinnedStore,
    checkpoint: &Checkpoint,
    e: &warden_api::store::EvidenceEntry,
    pinned: &[PublicKey],
    repository: &Repository,
    digest: &Digest,
    view: &mut EntryView,
) -> Judged {
    let Ok(leaf) = STANDARD.decode(&e.leaf) else {
        view.why = "the leaf is not base64; not counted".into();
        return Judged::Nothing;
    };
    let Some(proof) = hashes(&e.hashes) else {
        view.why = "the inclusion proof is not hex hashes; not counted".into();
        return Judged::Nothing;
    };
    let leaf_hash = warden_tlog::leaf_hash(&leaf);
    if let Err(err) = warden_tlog::verify_inclusion(
        &leaf_hash,
        e.index,
        checkpoint.size,
        &proof,
        &checkpoint.root,
    ) {
        view.why = format!(
            "not included in the log at size {} ({err}); not counted",
            checkpoint.size
        );
        return Judged::Nothing;
    }
    view.included = true;
    if let Ok((_, claimed)) = parse_review_envelope(&leaf) {
        view.reviewer = Some(claimed.predicate.reviewer.clone());
    }
    let is_revocation = e.kind == EntryKind::Revocation;
    let verified = match verify_review(&leaf, pinned) {
        Ok(v) => v,
        Err(err) => {
            if is_revocation {
                // Fail closed: an included revocation that cannot be verified still revokes.
                view.why = format!(
                    "an included revocation that does not verify ({}); counted as a revocation (fail closed)",
                    short(&err)
                );
                return Judged::Revocation(format!("unverified revocation at index {}", e.index));
            }
            view.why = format!("{}; not counted", short(&err));
            return Judged::Nothing;
        }
    };
    view.key_id = Some(verified.key_id.to_string());
    let review = &verified.review;
    let p = &review.predicate;
    if &review.digest != digest {
        view.why = format!(
            "it names digest {}, not this one; not counted",
            review.digest
        );
        return Judged::Nothing;
    }
    if p.store != store.name {
        view.why = format!(
            "it names store `{}`, not `{}`; not counted",
            p.store.escape_debug(),
            store.name
        );
        return Judged::Nothing;
    }
    if p.decision == Decision::Revoke {
        let by = if verified.key_id == store.store_key.id() {
            "the store".to_owned()
        } else {
            format!("reviewer `{}`", p.reviewer.escape_debug())
        };
        view.why = format!("revocation of {} {} by {by}", p.algorithm, p.version);
        return Judged::Revocation(format!(
            "revocation of {} {} by {by} at index {}",
            p.algorithm, p.version, e.index
        ));
    }
    if &review.repository != repository {
        view.why = format!(
            "it names repository {}, not {repository}; not counted",
            review.repository
        );
        return Judged::Nothing;
    }
    if p.decision != Decision::Approve || e.kind != EntryKind::Approval {
        view.why = format!("a {} decision, not an approval", p.decision);
        return Judged::Nothing;
    }
    let Some((org, _)) = store.organizations.get(&verified.key_id) else {
        // The store's own key cannot approve.
        view.why = "signed by the store's key, which does not approve; not counted".into();
        return Judged::Nothing;
    };
    view.organization = Some(org.clone());
    view.why = format!("approval by a pinned reviewer of organization `{org}`; counted");
    Judged::Approval(verified.key_id, org.clone())
}

fn short(e: &ReviewError) -> String {
    match e {
        ReviewError::KeyNotPinned(k) => format!("signed by key {k}, which this node does not pin"),
        other => other.to_string(),
    }
}

/// What the node keeps of one verified fetch, to reuse while the store is down.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cached {
    #[serde(with = "time::serde::rfc3339")]
    fetched: OffsetDateTime,
    evidence: Evidence,
}

/// The stores this node trusts, with their saved checkpoints and caches under `dir`.
#[derive(Debug)]
pub struct Stores {
    stores: BTreeMap<String, PinnedStore>,
    dir: PathBuf,
    http: reqwest::Client,
}

/// The outcome of one store's check: the facts for the decision and what to show and audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub store: String,
    pub facts: StoreFacts,
    pub entries: Vec<EntryView>,
    /// The checkpoint the evidence was verified under (the note text).
    pub checkpoint: Option<String>,
    /// Set when the evidence came from the cache (the store could not be reached).
    pub cached: Option<String>,
    /// Set when the store was refused for an inconsistent log (audit it, log it loudly).
    pub inconsistent: Option<String>,
}

impl Checked {
    /// Nothing known yet of store `name`.
    fn of(name: &str) -> Checked {
        Checked {
            store: name.to_owned(),
            facts: StoreFacts::default(),
            entries: Vec::new(),
            checkpoint: None,
            cached: None,
            inconsistent: None,
        }
    }
}

impl Stores {
    /// Loads every `[[stores]]` table's keys; state lives under `dir` (`<spool>/stores`).
    pub fn load(configs: &[StoreConfig], dir: &Path) -> Result<Stores, String> {
        let mut stores = BTreeMap::new();
        for c in configs {
            stores.insert(c.name.clone(), PinnedStore::load(c)?);
        }
        let http = reqwest::Client::builder()
            .timeout(STORE_TIMEOUT)
            .connect_timeout(STORE_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the store client: {e}"))?;
        Ok(Stores {
            stores,
            dir: dir.to_owned(),
            http,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&PinnedStore> {
        self.stores.get(name)
    }

    /// The names of the stores, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.stores.keys().map(String::as_str)
    }

    /// Whether `name` is refused (its marker is on disk until the data owner deletes it).
    pub fn is_refused(&self, name: &str) -> bool {
        self.refused_marker(name).exists()
    }

    fn store_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The checkpoint this node last verified of `name`, if any.
    pub fn saved_checkpoint(&self, name: &str) -> Result<Option<(Checkpoint, String)>, String> {
        let Some(store) = self.stores.get(name) else {
            return Ok(None);
        };
        let path = self.store_dir(name).join("checkpoint");
        match std::fs::read_to_string(&path) {
            Ok(note) => open_checkpoint(note.as_bytes(), &store.verifier)
                .map(|c| Some((c, note)))
                .map_err(|e| {
                    format!(
                        "the saved checkpoint {} is refused: {e}; delete it to trust the store afresh",
                        path.display()
                    )
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    fn refused_marker(&self, name: &str) -> PathBuf {
        self.store_dir(name).join("refused")
    }

    /// Records that `name` is refused (until the data owner deletes the marker).
    fn refuse(&self, name: &str, why: &str) {
        tracing::error!(
            store = name,
            "ALGORITHM STORE REFUSED: {why}; no run that needs its approvals is admitted until the data owner checks the store and deletes {}",
            self.refused_marker(name).display()
        );
        let _ = write_atomic(&self.refused_marker(name), why.as_bytes());
    }

    /// Checks a checkpoint of store `name` that another node verified (relayed by the server,
    /// which can withhold but not forge it: the note must verify under the key this node pins)
    /// against the one this node saved. Equal sizes with other roots, or a consistency proof
    /// (fetched from the store itself) that fails, is a fork: the store is refused as for an
    /// inconsistent log. Returns `Ok(false)` when there is nothing to compare yet.
    pub async fn check_peer_checkpoint(&self, name: &str, note: &str) -> Result<bool, Refusal> {
        let unavailable = |why: String| Refusal::Unavailable {
            store: name.to_owned(),
            why,
        };
        let store = self
            .stores
            .get(name)
            .ok_or_else(|| unavailable("not in the node configuration's [[stores]]".into()))?;
        let peer = open_checkpoint(note.as_bytes(), &store.verifier)
            .map_err(|e| unavailable(format!("a peer's checkpoint is refused: {e}")))?;
        let Some((saved, _)) = self.saved_checkpoint(name).map_err(unavailable)? else {
            return Ok(false);
        };
        let (old, new) = if peer.size >= saved.size {
            (&saved, &peer)
        } else {
            (&peer, &saved)
        };
        let proof = if old.size == 0 || old.size == new.size {
            Vec::new()
        } else {
            let url = format!(
                "{}/api/log/proof/consistency?from={}&to={}",
                store.url, old.size, new.size
            );
            let body = self
                .get_capped(&url, MAX_PROOF_BYTES)
                .await
                .map_err(unavailable)?;
            let p: ConsistencyProof = serde_json::from_slice(&body).map_err(|e| {
                unavailable(format!("its consistency proof is not valid JSON ({e})"))
            })?;
            hashes(&p.hashes)
                .ok_or_else(|| unavailable("its consistency proof is not hex hashes".into()))?
        };
        if let Err(e) = warden_tlog::verify_checkpoint_consistency(old, new, &proof) {
            let r = Refusal::Inconsistent {
                store: name.to_owned(),
                why: format!("a checkpoint another node verified forks from this node's: {e}"),
            };
            self.refuse(name, &r.to_string());
            return Err(r);
        }
        Ok(true)
    }

    /// Fetches and verifies the evidence of every store in `names` for `repository@digest`.
    pub async fn check(
        &self,
        names: &std::collections::BTreeSet<String>,
        repository: &Repository,
        digest: &Digest,
    ) -> Vec<Checked> {
        let mut out = Vec::new();
        for name in names {
            out.push(self.check_one(name, repository, digest).await);
        }
        out
    }

    async fn check_one(&self, name: &str, repository: &Repository, digest: &Digest) -> Checked {
        let mut checked = Checked::of(name);
        let Some(store) = self.stores.get(name) else {
            checked.facts.unavailable = Some(format!(
                "store `{name}` is not in the node configuration's [[stores]]"
            ));
            return checked;
        };
        if let Ok(why) = std::fs::read_to_string(self.refused_marker(name)) {
            checked.facts.unavailable = Some(format!(
                "store `{name}` was refused before ({}); the data owner must check it and delete {}",
                why.trim(),
                self.refused_marker(name).display()
            ));
            checked.inconsistent = Some(why);
            return checked;
        }
        let saved = match self.saved_checkpoint(name) {
            Ok(s) => s,
            Err(e) => {
                checked.facts.unavailable = Some(e);
                return checked;
            }
        };
        let fetched = self
            .fetch(store, saved.as_ref().map(|s| &s.0), digest)
            .await;
        let result = match fetched {
            Ok((evidence, proof)) => {
                match verify_evidence(
                    store,
                    saved.as_ref().map(|s| &s.0),
                    &evidence,
                    &proof,
                    repository,
                    digest,
                ) {
                    Ok(v) => {
                        // Save the newer checkpoint and the evidence, durably, before use.
                        let dir = self.store_dir(name);
                        let newer = saved.as_ref().is_none_or(|s| v.checkpoint.size > s.0.size);
                        let mut saved_ok = true;
                        if newer
                            && let Err(e) = write_atomic(&dir.join("checkpoint"), v.note.as_bytes())
                        {
                            checked.facts.unavailable =
                                Some(format!("cannot save the store's checkpoint: {e}"));
                            saved_ok = false;
                        }
                        let cached = Cached {
                            fetched: OffsetDateTime::now_utc(),
                            evidence,
                        };
                        if let Ok(bytes) = serde_json::to_vec(&cached) {
                            let _ = write_atomic(&cache_path(&dir, digest), &bytes);
                        }
                        if !saved_ok {
                            return checked;
                        }
                        Ok(v)
                    }
                    Err(r) => Err(r),
                }
            }
            Err(why) => self.cached_evidence(
                store,
                saved.as_ref().map(|s| &s.0),
                repository,
                digest,
                why,
                &mut checked,
            ),
        };
        self.settle(name, &mut checked, result);
        checked
    }

    /// Records the outcome of verifying `name`'s evidence in `checked`; an inconsistent log
    /// refuses the store.
    fn settle(&self, name: &str, checked: &mut Checked, result: Result<Verified, Refusal>) {
        match result {
            Ok(v) => {
                checked.facts = v.facts;
                checked.entries = v.entries;
                checked.checkpoint = Some(v.note);
            }
            Err(r) => {
                if r.is_inconsistent() {
                    self.refuse(name, &r.to_string());
                    checked.inconsistent = Some(r.to_string());
                }
                checked.facts.unavailable = Some(r.to_string());
            }
        }
    }

    /// Verifies the store evidence an imported archive carried (`carried`: its unverified
    /// layers, or why there are none) for every store in `names`, as [`Stores::check`] does
    /// what a store answers. On import (`importing`), the evidence's checkpoint must extend the
    /// one this node saved (with a consistency proof the archive carries) and replaces it; a
    /// run verifies the evidence again under its own checkpoint, whose consistency was checked
    /// on import. A newer archive of the image brings newer evidence (and revocations).
    pub fn check_carried(
        &self,
        names: &std::collections::BTreeSet<String>,
        carried: Result<Vec<Vec<u8>>, String>,
        repository: &Repository,
        digest: &Digest,
        importing: bool,
    ) -> Vec<Checked> {
        let mut parsed = Vec::new();
        let mut unreadable = Vec::new();
        match &carried {
            Ok(layers) => {
                for (i, l) in layers.iter().enumerate() {
                    match serde_json::from_slice::<warden_api::store::ExportedEvidence>(l) {
                        Ok(e) => parsed.push(e),
                        Err(e) => {
                            unreadable.push(format!("store evidence {}: not valid ({e})", i + 1))
                        }
                    }
                }
            }
            Err(why) => unreadable.push(why.clone()),
        }
        names
            .iter()
            .map(|name| {
                let mut checked = Checked::of(name);
                let found = parsed.iter().find(|e| e.evidence.store == *name);
                let result =
                    self.verify_carried(name, found, &unreadable, repository, digest, importing);
                if let Ok(v) = &result {
                    checked.cached = Some(format!(
                        "the evidence the imported archive carried, at log size {}",
                        v.checkpoint.size
                    ));
                }
                self.settle(name, &mut checked, result);
                checked
            })
            .collect()
    }

    fn verify_carried(
        &self,
        name: &str,
        found: Option<&warden_api::store::ExportedEvidence>,
        unreadable: &[String],
        repository: &Repository,
        digest: &Digest,
        importing: bool,
    ) -> Result<Verified, Refusal> {
        let unavailable = |why: String| Refusal::Unavailable {
            store: name.to_owned(),
            why,
        };
        let store = self
            .stores
            .get(name)
            .ok_or_else(|| unavailable("not in the node configuration's [[stores]]".into()))?;
        if let Ok(why) = std::fs::read_to_string(self.refused_marker(name)) {
            return Err(unavailable(format!(
                "it was refused before ({}); the data owner must check it and delete {}",
                why.trim(),
                self.refused_marker(name).display()
            )));
        }
        let Some(exported) = found else {
            let mut why = format!(
                "the imported archive carries no evidence of store `{name}`; export the image again with `--store {name}=URL`"
            );
            if !unreadable.is_empty() {
                why = format!("{why} ({})", unreadable.join("; "));
            }
            return Err(unavailable(why));
        };
        let evidence = &exported.evidence;
        let saved = self.saved_checkpoint(name).map_err(unavailable)?;
        if !importing {
            let cp = open_checkpoint(evidence.checkpoint.as_bytes(), &store.verifier)
                .map_err(|e| unavailable(format!("its checkpoint is refused: {e}")))?;
            let saved_same = saved.as_ref().map(|s| &s.0).filter(|s| s.size == cp.size);
            return verify_evidence(store, saved_same, evidence, &[], repository, digest);
        }
        let proof = match &saved {
            Some((s, _)) if s.size > 0 && s.size != evidence.size => {
                let (from, to) = (s.size.min(evidence.size), s.size.max(evidence.size));
                let p = exported
                    .consistency
                    .iter()
                    .find(|p| p.from == from && p.to == to)
                    .ok_or_else(|| {
                        unavailable(if evidence.size > s.size {
                            format!(
                                "this node last verified its log at size {}, and the archive's evidence is at size {} without a consistency proof from {}; export the image again with `--store-since {name}={}`",
                                s.size, evidence.size, s.size, s.size
                            )
                        } else {
                            format!(
                                "the archive's evidence is at log size {}, older than the size {} this node verified; its evidence could miss a revocation: export the image again",
                                evidence.size, s.size
                            )
                        })
                    })?;
                hashes(&p.hashes)
                    .ok_or_else(|| unavailable("its consistency proof is not hex hashes".into()))?
            }
            _ => Vec::new(),
        };
        let v = verify_evidence(
            store,
            saved.as_ref().map(|s| &s.0),
            evidence,
            &proof,
            repository,
            digest,
        )?;
        let newer = saved.as_ref().is_none_or(|s| v.checkpoint.size > s.0.size);
        if newer {
            write_atomic(&self.store_dir(name).join("checkpoint"), v.note.as_bytes())
                .map_err(|e| unavailable(format!("cannot save the store's checkpoint: {e}")))?;
        }
        Ok(v)
    }

    fn cached_evidence(
        &self,
        store: &PinnedStore,
        saved: Option<&Checkpoint>,
        repository: &Repository,
        digest: &Digest,
        why: String,
        checked: &mut Checked,
    ) -> Result<Verified, Refusal> {
        let unavailable = |w: String| Refusal::Unavailable {
            store: store.name.clone(),
            why: w,
        };
        let path = cache_path(&self.store_dir(&store.name), digest);
        let bytes = std::fs::read(&path).map_err(|_| {
            unavailable(format!(
                "it cannot be reached ({why}) and no evidence is cached; fail closed"
            ))
        })?;
        let cached: Cached = serde_json::from_slice(&bytes).map_err(|e| {
            unavailable(format!(
                "it cannot be reached ({why}) and the cached evidence is unreadable ({e})"
            ))
        })?;
        let age = OffsetDateTime::now_utc() - cached.fetched;
        let max = store.max_evidence_age.as_secs();
        if max == 0 || age.is_negative() || age.whole_seconds() as u64 >= max {
            return Err(unavailable(format!(
                "it cannot be reached ({why}) and the cached evidence is {}s old, not within max_evidence_age_secs = {}; fail closed",
                age.whole_seconds(),
                store.max_evidence_age.as_secs()
            )));
        }
        // Verified again in full; its checkpoint is at most the saved one (saved with it).
        let cp = open_checkpoint(cached.evidence.checkpoint.as_bytes(), &store.verifier)
            .map_err(|e| unavailable(format!("cached checkpoint refused: {e}")))?;
        let saved_same = saved.filter(|s| s.size == cp.size);
        let v = verify_evidence(store, saved_same, &cached.evidence, &[], repository, digest)?;
        checked.cached = Some(format!(
            "the store cannot be reached ({why}); using evidence verified {}s ago",
            age.whole_seconds()
        ));
        Ok(v)
    }

    async fn fetch(
        &self,
        store: &PinnedStore,
        saved: Option<&Checkpoint>,
        digest: &Digest,
    ) -> Result<(Evidence, Vec<Hash>), String> {
        let url = format!("{}/api/evidence/{digest}", store.url);
        let body = self.get_capped(&url, MAX_EVIDENCE_BYTES).await?;
        let evidence: Evidence = serde_json::from_slice(&body)
            .map_err(|e| format!("its evidence is not valid JSON ({e})"))?;
        let mut proof = Vec::new();
        if let Some(saved) = saved
            && saved.size > 0
            && saved.size != evidence.size
        {
            let (from, to) = if evidence.size > saved.size {
                (saved.size, evidence.size)
            } else {
                (evidence.size, saved.size)
            };
            if from > 0 {
                let url = format!(
                    "{}/api/log/proof/consistency?from={from}&to={to}",
                    store.url
                );
                let body = self.get_capped(&url, MAX_PROOF_BYTES).await?;
                let p: ConsistencyProof = serde_json::from_slice(&body)
                    .map_err(|e| format!("its consistency proof is not valid JSON ({e})"))?;
                proof = hashes(&p.hashes).ok_or("its consistency proof is not hex hashes")?;
            }
        }
        Ok((evidence, proof))
    }

    async fn get_capped(&self, url: &str, cap: usize) -> Result<Vec<u8>, String> {
        let mut resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("cannot reach {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{url} answered {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("reading {url}: {e}"))?
        {
            if body.len() + chunk.len() > cap {
                return Err(format!("{url} sent more than {cap} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

fn cache_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("evidence")
        .join(format!("{}.json", digest.to_string().replace(':', "-")))
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename, fsync of
/// the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
