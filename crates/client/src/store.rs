//! The algorithm store's client: store profiles (`warden store login`), submitting, listing,
//! reviewing with a key held locally (the envelope is signed here, never at the store), revoking,
//! and verifying the store's whole log (`warden store log verify`).
//!
//! A store profile is `$XDG_CONFIG_HOME/warden/stores/<store name>.toml` (else
//! `~/.config/warden/stores/`), written by `warden store login` with mode 0600:
//!
//! ```toml
//! url = "http://127.0.0.1:7700"
//! name = "community"
//! username = "alice"
//! note_key = "warden-store/community+1a2b3c4d+..."   # pinned at the first login
//! access_token = "wsa_..."
//! refresh_token = "wsr_..."
//! ```
//!
//! The store's note key is pinned at the first login (trust on first use) and every later
//! login and log verification refuses a store that shows another key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use warden_api::ErrorBody;
use warden_api::store as wire;
use warden_api::store::EntryKind;
use warden_reference::{Digest, Repository};
use warden_tlog::{Checkpoint, NoteVerifier, leaf_hash, open_checkpoint};
use warden_trust::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use warden_trust::review::{Decision, Review, ReviewPredicate, verify_review};
use warden_trust::{PublicKey, SigningKey};

const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest store answer read.
const MAX_ANSWER: usize = 64 << 20;

/// Why a store command failed; `is_refusal` tells a refusal (exit 1) from bad input (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum StoreClientError {
    /// Bad input of the user: a file, an argument.
    #[error("{0}")]
    Input(String),
    /// The store refused (its status and message, shown through `display::safe`).
    #[error("the store refused ({status}): {message}")]
    Refused { status: u16, message: String },
    /// The store could not be reached or answered nonsense.
    #[error("{0}")]
    Unreachable(String),
    /// The log or a checkpoint did not verify.
    #[error("{0}")]
    Verify(String),
}

impl StoreClientError {
    /// Exit status: 2 for bad input, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            StoreClientError::Input(_) => 2,
            _ => 1,
        }
    }
}

type Result<T, E = StoreClientError> = std::result::Result<T, E>;

fn input(s: impl Into<String>) -> StoreClientError {
    StoreClientError::Input(s.into())
}

/// A saved store profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreProfile {
    pub url: String,
    pub name: String,
    pub username: String,
    pub note_key: String,
    pub access_token: String,
    pub refresh_token: String,
}

/// The folder of store profiles.
pub fn profiles_dir() -> Result<PathBuf> {
    let base = match std::env::var_os(crate::profile::XDG_CONFIG_HOME).filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => PathBuf::from(h).join(".config"),
            None => return Err(input("neither XDG_CONFIG_HOME nor HOME is set; set one")),
        },
    };
    Ok(base.join("warden").join("stores"))
}

fn profile_path(name: &str) -> Result<PathBuf> {
    if !crate::profile::valid_name(name) {
        return Err(input(format!(
            "`{}` is not a store name",
            warden_api::display::safe(name)
        )));
    }
    Ok(profiles_dir()?.join(format!("{name}.toml")))
}

impl StoreProfile {
    pub fn load(path: &Path) -> Result<StoreProfile> {
        let (text, _) =
            warden_config::read_file(path, 1 << 20).map_err(|e| input(e.to_string()))?;
        warden_config::from_toml(&text).map_err(|e| input(e.in_file(path).to_string()))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let text =
            toml::to_string(self).map_err(|e| input(format!("cannot write the profile: {e}")))?;
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)
                .map_err(|e| input(format!("cannot create {}: {e}", d.display())))?;
        }
        let tmp = path.with_extension("toml.tmp");
        {
            use std::io::Write as _;
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                o.mode(0o600);
            }
            let mut f = o
                .open(&tmp)
                .map_err(|e| input(format!("cannot write {}: {e}", tmp.display())))?;
            f.write_all(text.as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| input(format!("cannot write {}: {e}", tmp.display())))?;
        }
        std::fs::rename(&tmp, path)
            .map_err(|e| input(format!("cannot write {}: {e}", path.display())))
    }
}

/// An HTTP client of one store.
#[derive(Debug, Clone)]
pub struct StoreClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl StoreClient {
    pub fn new(url: &str, token: Option<String>) -> Result<StoreClient> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(input(format!(
                "--store `{}` is not an http:// or https:// URL nor a store profile name",
                warden_api::display::safe(url)
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| StoreClientError::Unreachable(format!("cannot set up HTTP: {e}")))?;
        Ok(StoreClient {
            http,
            base: url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// A client for `store` (a URL or a profile name) with the profile's session.
    pub fn from_store_arg(store: &str) -> Result<(StoreClient, Option<StoreProfile>)> {
        if store.starts_with("http://") || store.starts_with("https://") {
            // Find the profile with this URL.
            let dir = profiles_dir()?;
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten() {
                    if let Ok(p) = StoreProfile::load(&e.path()) {
                        if p.url.trim_end_matches('/') == store.trim_end_matches('/') {
                            let c = StoreClient::new(&p.url, Some(p.access_token.clone()))?;
                            return Ok((c, Some(p)));
                        }
                    }
                }
            }
            return Ok((StoreClient::new(store, None)?, None));
        }
        let path = profile_path(store)?;
        let p = StoreProfile::load(&path).map_err(|e| {
            input(format!(
                "{e}; log in first with `warden store login --store URL`"
            ))
        })?;
        Ok((
            StoreClient::new(&p.url, Some(p.access_token.clone()))?,
            Some(p),
        ))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.map_err(|e| {
            StoreClientError::Unreachable(format!(
                "cannot reach the store at {} while {what}: {e}",
                self.base
            ))
        })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| {
            StoreClientError::Unreachable(format!("the store's answer while {what} broke off: {e}"))
        })?;
        if body.len() > MAX_ANSWER {
            return Err(StoreClientError::Unreachable(format!(
                "the store's answer while {what} is larger than {MAX_ANSWER} bytes"
            )));
        }
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|b| b.error.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
            return Err(StoreClientError::Refused {
                status: status.as_u16(),
                message: warden_api::display::safe(&message).into_owned(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| {
            StoreClientError::Unreachable(format!(
                "the store answered something unexpected while {what}: {e}"
            ))
        })
    }

    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str, what: &str) -> Result<T> {
        self.send(self.http.get(self.url(path)), what).await
    }

    pub async fn post<B: Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        what: &str,
    ) -> Result<T> {
        self.send(self.http.post(self.url(path)).json(body), what)
            .await
    }

    pub async fn put<B: Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        what: &str,
    ) -> Result<T> {
        self.send(self.http.put(self.url(path)).json(body), what)
            .await
    }

    pub async fn text(&self, path: &str, what: &str) -> Result<String> {
        let resp = self.http.get(self.url(path)).send().await.map_err(|e| {
            StoreClientError::Unreachable(format!(
                "cannot reach the store at {} while {what}: {e}",
                self.base
            ))
        })?;
        if !resp.status().is_success() {
            return Err(StoreClientError::Refused {
                status: resp.status().as_u16(),
                message: format!("while {what}"),
            });
        }
        resp.text().await.map_err(|e| {
            StoreClientError::Unreachable(format!("the store's answer while {what} broke off: {e}"))
        })
    }

    pub async fn info(&self) -> Result<wire::StoreInfo> {
        self.get("/api/store", "reading the store's identity").await
    }

    pub async fn version(&self, id: i64) -> Result<wire::Version> {
        self.get(&format!("/api/versions/{id}"), "reading the version")
            .await
    }
}

/// `warden store login`: log in, pin the store's note key at the first login, save the profile.
pub async fn login(url: &str, username: &str, password: &str) -> Result<(PathBuf, StoreProfile)> {
    let c = StoreClient::new(url, None)?;
    let info = c.info().await?;
    let path = profile_path(&info.name)?;
    if let Ok(old) = StoreProfile::load(&path) {
        if old.note_key != info.note_key {
            return Err(StoreClientError::Verify(format!(
                "the store at {} shows the checkpoint key `{}`, but the profile {} pinned `{}`: another store, or its key was changed; if the store's operator confirms the new key, remove the profile and log in again",
                url,
                warden_api::display::safe(&info.note_key),
                path.display(),
                old.note_key
            )));
        }
    }
    let s: wire::Session = c
        .post(
            "/api/auth/login",
            &wire::LoginRequest {
                username: username.to_owned(),
                password: password.to_owned(),
            },
            "logging in",
        )
        .await?;
    let p = StoreProfile {
        url: url.trim_end_matches('/').to_owned(),
        name: info.name,
        username: username.to_owned(),
        note_key: info.note_key,
        access_token: s.access_token,
        refresh_token: s.refresh_token,
    };
    p.save(&path)?;
    Ok((path, p))
}

/// Parse `--function` specs and submit.
pub async fn submit(c: &StoreClient, req: &wire::Submission) -> Result<wire::Version> {
    c.post("/api/versions", req, "submitting the version").await
}

/// Read a signing key file (encrypted; password from `password`).
pub fn read_signing_key(path: &Path, password: &[u8]) -> Result<SigningKey> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| input(format!("{}: cannot read the key file: {e}", path.display())))?;
    SigningKey::from_encrypted_pem(&pem, password).map_err(|e| {
        input(format!(
            "{}: {e}; give the reviewer's encrypted key file (`warden keys generate`) and its password (WARDEN_KEY_PASSWORD or --password-file)",
            path.display()
        ))
    })
}

/// Build and sign, locally, the review of `v` by the profile's account.
pub fn sign_review(
    v: &wire::Version,
    store: &str,
    me: &wire::Account,
    decision: Decision,
    comment: Option<String>,
    key: &SigningKey,
) -> Result<Vec<u8>> {
    sign_review_rebuilt(v, store, me, decision, comment, None, key)
}

/// [`sign_review`] recording the reviewer's own rebuild (`warden review approve --rebuild`):
/// the version's source commit at `rebuilt.path` gave exactly the version's digest.
pub fn sign_review_rebuilt(
    v: &wire::Version,
    store: &str,
    me: &wire::Account,
    decision: Decision,
    comment: Option<String>,
    rebuilt: Option<warden_trust::review::Rebuilt>,
    key: &SigningKey,
) -> Result<Vec<u8>> {
    let repository: Repository = v
        .repository
        .parse()
        .map_err(|e| StoreClientError::Verify(format!("the store shows a bad repository: {e}")))?;
    let digest: Digest = v
        .digest
        .parse()
        .map_err(|e| StoreClientError::Verify(format!("the store shows a bad digest: {e}")))?;
    let functions = if decision == Decision::Approve {
        v.functions.iter().map(|f| f.name.clone()).collect()
    } else {
        Vec::new()
    };
    let now = OffsetDateTime::now_utc();
    let review = Review {
        repository,
        digest,
        predicate: ReviewPredicate {
            store: store.to_owned(),
            algorithm: v.algorithm.clone(),
            version: v.version.clone(),
            decision,
            reviewer: me.username.clone(),
            organization: me.organization.clone(),
            source_repository: v.source.clone(),
            source_commit: v.commit.clone(),
            functions,
            time: now.replace_nanosecond(0).unwrap_or(now),
            comment,
            rebuilt,
        },
    };
    let env = review
        .sign(key)
        .map_err(|e| input(format!("cannot sign the review: {e}")))?;
    Ok(env.to_json())
}

/// What `warden store log verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogReport {
    pub size: u64,
    pub root: String,
    pub by_kind: BTreeMap<String, u64>,
    /// Size of the saved checkpoint the new one was checked against.
    pub consistent_with: Option<u64>,
}

/// Which key signed a leaf, and what it is.
fn classify_and_verify(
    index: u64,
    leaf: &[u8],
    kind: EntryKind,
    store_key: &PublicKey,
    reviewers: &BTreeMap<String, PublicKey>,
) -> Result<()> {
    let bad = |why: String| {
        StoreClientError::Verify(format!("log entry {index} ({}): {why}", kind.as_str()))
    };
    let env = Envelope::parse(leaf).map_err(|e| bad(format!("not a DSSE envelope: {e}")))?;
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(bad("payload type is not in-toto".into()));
    }
    match kind {
        EntryKind::Submission | EntryKind::Reinstatement => {
            let v = env
                .verify(std::slice::from_ref(store_key))
                .map_err(|e| bad(format!("not signed by the store's key: {e}")))?;
            let st: serde_json::Value = serde_json::from_slice(&v.payload)
                .map_err(|e| bad(format!("payload is not JSON: {e}")))?;
            let want = if kind == EntryKind::Submission {
                wire::SUBMISSION_PREDICATE_V1
            } else {
                wire::REINSTATEMENT_PREDICATE_V1
            };
            if st["predicateType"] != want {
                return Err(bad(format!("predicate type is not {want}")));
            }
        }
        EntryKind::Approval | EntryKind::Rejection | EntryKind::Revocation => {
            let (_, claimed) = warden_trust::review::parse_review_envelope(leaf)
                .map_err(|e| bad(e.to_string()))?;
            let mut keys: Vec<PublicKey> = reviewers
                .get(&claimed.predicate.reviewer)
                .cloned()
                .into_iter()
                .collect();
            if kind == EntryKind::Revocation {
                keys.push(store_key.clone());
            }
            if keys.is_empty() {
                return Err(bad(format!(
                    "reviewer `{}` has no registered key at the store",
                    warden_api::display::safe(&claimed.predicate.reviewer)
                )));
            }
            let v = verify_review(leaf, &keys).map_err(|e| bad(e.to_string()))?;
            let want = match kind {
                EntryKind::Approval => Decision::Approve,
                EntryKind::Rejection => Decision::Reject,
                _ => Decision::Revoke,
            };
            if v.review.predicate.decision != want {
                return Err(bad(format!(
                    "the envelope's decision is {}, the log calls it {}",
                    v.review.predicate.decision,
                    kind.as_str()
                )));
            }
        }
    }
    Ok(())
}

/// `warden store log verify`: fetch the checkpoint and every entry, recompute the tree, check
/// every entry's signature, and the consistency with `saved` (a checkpoint note saved earlier);
/// returns the report and the new checkpoint note to save.
pub async fn verify_log(
    c: &StoreClient,
    pinned_note_key: Option<&str>,
    saved: Option<&str>,
) -> Result<(LogReport, String)> {
    let info = c.info().await?;
    if let Some(p) = pinned_note_key {
        if p != info.note_key {
            return Err(StoreClientError::Verify(format!(
                "the store shows checkpoint key `{}`, not the pinned `{p}`",
                warden_api::display::safe(&info.note_key)
            )));
        }
    }
    let verifier = NoteVerifier::parse(pinned_note_key.unwrap_or(&info.note_key)).map_err(|e| {
        StoreClientError::Verify(format!("the store's note key does not parse: {e}"))
    })?;
    let store_key = PublicKey::from_pem(&info.public_key).map_err(|e| {
        StoreClientError::Verify(format!("the store's public key does not parse: {e}"))
    })?;
    match &store_key {
        PublicKey::Ed25519(k) if k == verifier.public_key() => {}
        _ => {
            return Err(StoreClientError::Verify(
                "the store's public key is not its note key".into(),
            ));
        }
    }
    let note = c
        .text("/api/log/checkpoint", "reading the checkpoint")
        .await?;
    let cp = open_checkpoint(note.as_bytes(), &verifier)
        .map_err(|e| StoreClientError::Verify(format!("the checkpoint does not verify: {e}")))?;
    let accounts: Vec<wire::Account> = c
        .get("/api/accounts", "reading the reviewers' keys")
        .await?;
    let mut reviewers = BTreeMap::new();
    for a in accounts {
        if let Some(pem) = a.public_key {
            if let Ok(k) = PublicKey::from_pem(&pem) {
                reviewers.insert(a.username, k);
            }
        }
    }
    let mut tree = warden_tlog::MemoryTree::new();
    let mut by_kind = BTreeMap::new();
    let mut seen = BTreeSet::new();
    while tree.size() < cp.size {
        let start = tree.size();
        let end = cp.size.min(start + wire::MAX_LOG_ENTRIES_PAGE);
        let page: wire::LogEntries = c
            .get(
                &format!("/api/log/entries?start={start}&end={end}"),
                "reading log entries",
            )
            .await?;
        if page.entries.is_empty() {
            return Err(StoreClientError::Verify(format!(
                "the store serves no entry {start} although its checkpoint has {} entries",
                cp.size
            )));
        }
        for e in page.entries {
            if e.index != tree.size() || !seen.insert(e.index) {
                return Err(StoreClientError::Verify(format!(
                    "the store served entry {} where {} was expected",
                    e.index,
                    tree.size()
                )));
            }
            let leaf = STANDARD.decode(&e.leaf).map_err(|err| {
                StoreClientError::Verify(format!(
                    "log entry {}: leaf is not base64: {err}",
                    e.index
                ))
            })?;
            classify_and_verify(e.index, &leaf, e.kind, &store_key, &reviewers)?;
            tree.append_leaf_hash(leaf_hash(&leaf));
            *by_kind.entry(e.kind.as_str().to_owned()).or_insert(0) += 1;
        }
    }
    if tree.root() != cp.root {
        return Err(StoreClientError::Verify(format!(
            "the {} entries the store serves do not hash to the root of its own checkpoint: the entries were changed",
            cp.size
        )));
    }
    let mut consistent_with = None;
    if let Some(saved) = saved {
        let old = open_checkpoint(saved.as_bytes(), &verifier).map_err(|e| {
            StoreClientError::Verify(format!("the saved checkpoint does not verify: {e}"))
        })?;
        if old.size > cp.size {
            return Err(StoreClientError::Verify(format!(
                "the store's log has {} entries, fewer than the {} of the saved checkpoint: history was rewritten",
                cp.size, old.size
            )));
        }
        // The proof comes from the tree recomputed here, not from the store.
        let proof = tree
            .consistency_proof(old.size, cp.size)
            .map_err(|e| StoreClientError::Verify(e.to_string()))?;
        check_consistent(&old, &cp, &proof)?;
        consistent_with = Some(old.size);
    }
    Ok((
        LogReport {
            size: cp.size,
            root: hex::encode(cp.root),
            by_kind,
            consistent_with,
        },
        note,
    ))
}

fn check_consistent(old: &Checkpoint, new: &Checkpoint, proof: &[warden_tlog::Hash]) -> Result<()> {
    warden_tlog::verify_checkpoint_consistency(old, new, proof).map_err(|e| {
        StoreClientError::Verify(format!(
            "the store's log is not consistent with the saved checkpoint (history rewritten or forked): {e}"
        ))
    })
}
