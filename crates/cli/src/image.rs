//! `warden image sign` and `warden image verify`: image provenance with cosign-compatible
//! signatures, checked the way a node checks them.
//!
//! `verify` walks the node's trust chain in order, failing closed at every step:
//! 1. parse and normalise the reference;
//! 2. policy pre-check on names and requester, before any network I/O;
//! 3. resolve the tag to a manifest digest once (the digest is the sha256 of the raw bytes);
//! 4. fetch signatures for that digest (and, for an image index, for the chosen platform's
//!    manifest digest, as cosign accepts either);
//! 5. verify them against the keys pinned in the policy's `signed_by` rules;
//! 6. decide with the policy, given the digest and the verified signer key ids.
//!
//! Exit status: 0 allowed (or signed), 1 denied, 2 bad input or registry failure.

use crate::common;
use crate::common::Outcome;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use warden_node::admission::{Gate, Stage};
use warden_policy::{Decision, Requester};
use warden_reference::Reference;
use warden_registry::{Client, ClientOptions, DockerConfig, Platform};
use warden_trust::{KeyId, SigningKey, cosign};

pub const EXIT_ALLOWED: u8 = 0;
pub const EXIT_DENIED: u8 = 1;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Sign the image's manifest digest and push a cosign-compatible signature (legacy
    /// `sha256-<hex>.sig` tag), appended to the signatures already there.
    ///
    /// Example: warden image sign --key signer.key registry.example.org/warden/mean:1.0
    Sign {
        /// Encrypted private key file (cosign's `ENCRYPTED COSIGN PRIVATE KEY` or Warden's).
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// File holding the key's password; without it, WARDEN_PASSWORD is read.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        #[command(flatten)]
        registry: RegistryArgs,
        /// Image reference, e.g. `registry.example.org/team/avg:1.0`.
        image: String,
        #[command(flatten)]
        json: common::AlwaysJson,
    },
    /// Resolve the image, verify its signatures against the policy's pinned keys, and decide.
    ///
    /// Example: warden image verify --policy policy.toml --organization hospital-a registry.example.org/warden/mean:1.0
    Verify {
        /// The node policy file.
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        #[command(flatten)]
        requester: common::RequesterArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// The node configuration whose `[[stores]]` (pinned store and reviewer keys, saved
        /// checkpoints) check the approvals `approved_by` rules ask for.
        #[arg(long, value_name = "FILE")]
        node_config: Option<PathBuf>,
        #[command(flatten)]
        registry: RegistryArgs,
        /// Image reference, e.g. `registry.example.org/team/avg:1.0`.
        image: String,
    },
    /// Write an image and all its evidence to an archive for an air-gapped node: an OCI image
    /// layout (tar) with the image by digest, its cosign signatures and attestations, its
    /// Notary signatures and other referrers, and each named store's evidence (approvals with
    /// their inclusion proofs and checkpoint).
    ///
    /// Example: warden image export --store hospitals=https://store.example.org --output mean.tar registry.example.org/warden/mean:1.0
    Export {
        /// The archive to write (replaced atomically).
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
        /// An algorithm store whose evidence to carry, `NAME=URL` (the name the node's
        /// `[[stores]]` gives it). Repeat for several.
        #[arg(long = "store", value_name = "NAME=URL")]
        stores: Vec<String>,
        /// The log size at which the node last verified a store, `NAME=SIZE` (its last import
        /// says it): the archive carries a consistency proof from it. Repeat for several.
        #[arg(long = "store-since", value_name = "NAME=SIZE")]
        since: Vec<String>,
        #[command(flatten)]
        registry: RegistryArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Image reference, e.g. `registry.example.org/team/avg:1.0`.
        image: String,
    },
    /// Import an archive made by `warden image export` into an offline node (`[registry]
    /// offline = true`), over its local socket. The node verifies everything against its own
    /// policy as a run would be verified (for the requester given here, none by default),
    /// loads the image into its engine by digest and keeps it; each run decides again.
    ///
    /// Example: warden image import --config node.toml mean.tar
    Import {
        #[command(flatten)]
        socket: crate::node::SocketArgs,
        #[command(flatten)]
        requester: common::RequesterArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// The archive.
        archive: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// A registry (`host` or `host:port`) that may be reached over plain http; loopback
    /// registries always may. Repeat for several.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure_registries: Vec<String>,
    /// Platform to pick from an image index, `os/arch[/variant]`.
    #[arg(long, default_value = "linux/amd64")]
    platform: String,
}

/// Runs a `warden image` subcommand.
pub fn run(command: ImageCommand) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match command {
        ImageCommand::Sign {
            key,
            password_file,
            registry,
            image,
            ..
        } => runtime.block_on(sign(&key, password_file.as_deref(), &registry, &image)),
        ImageCommand::Verify {
            policy,
            requester,
            json,
            node_config,
            registry,
            image,
        } => runtime.block_on(verify(
            &policy,
            node_config.as_deref(),
            requester.requester(),
            json,
            &registry,
            &image,
        )),
        ImageCommand::Export {
            output,
            stores,
            since,
            registry,
            json,
            image,
        } => runtime.block_on(crate::image_archive::export(
            &image, &output, &stores, &since, &registry, json,
        )),
        ImageCommand::Import {
            socket,
            requester,
            json,
            archive,
        } => crate::image_archive::import(&socket, &archive, &requester.requester(), json),
    }
}

pub(crate) fn client(args: &RegistryArgs) -> anyhow::Result<Client> {
    let credentials = DockerConfig::load_default()?;
    let mut parts = args.platform.split('/');
    let platform = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(os), Some(arch), variant, None) if !os.is_empty() && !arch.is_empty() => Platform {
            os: os.to_owned(),
            architecture: arch.to_owned(),
            variant: variant.map(str::to_owned),
        },
        _ => bail!(
            "--platform `{}` is not `os/arch[/variant]`, e.g. linux/amd64",
            args.platform
        ),
    };
    Ok(Client::new(ClientOptions {
        credentials,
        insecure_registries: args.insecure_registries.clone(),
        platform,
        ..ClientOptions::default()
    })?)
}

async fn sign(
    key_path: &Path,
    password_file: Option<&Path>,
    registry: &RegistryArgs,
    image: &str,
) -> anyhow::Result<Outcome> {
    let reference = Reference::parse(image)?;
    let pem = common::read_small(key_path)?;
    let pem = std::str::from_utf8(&pem)
        .with_context(|| format!("{} is not a PEM text file", key_path.display()))?;
    let password = common::password(password_file, "give the key's password")?;
    let key = SigningKey::from_encrypted_pem(pem, &password)
        .with_context(|| format!("cannot open private key {}", key_path.display()))?;
    let client = client(registry)?;
    let resolved = client.resolve(&reference).await?;
    let repository = reference.repository();
    let signed = cosign::sign(&key, repository, &resolved.digest, None);
    let pushed = client
        .push_signature(
            repository,
            &resolved.digest,
            &signed.payload,
            &signed.signature_b64,
        )
        .await?;
    let out = serde_json::json!({
        "image": reference.to_string(),
        "repository": repository.to_string(),
        "digest": resolved.digest.to_string(),
        "key_id": key.public_key().id().to_string(),
        "signature_tag": pushed.tag,
        "signature_manifest": pushed.manifest_digest.to_string(),
        "signatures": pushed.layers,
        "appended": pushed.appended,
    });
    Ok(Outcome {
        output: format!("{out:#}"),
        exit: EXIT_ALLOWED,
    })
}

/// Steps 1 to 6 of the node's trust chain, walked by the node's own code
/// (`warden_node::admission`): the CLI and the node cannot disagree.
async fn verify(
    policy_path: &Path,
    node_config: Option<&Path>,
    requester: Requester,
    json: bool,
    registry: &RegistryArgs,
    image: &str,
) -> anyhow::Result<Outcome> {
    // 1. Parse and normalise (a malformed reference is bad input, exit 2).
    let reference = Reference::parse(image)?;
    let mut gate = Gate::load(policy_path)?;
    if let Some(path) = node_config {
        let config = warden_node::config::Config::load(path)?;
        let stores = warden_node::stores::Stores::load(
            &config.stores,
            &config.node.spool_dir.join("stores"),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        gate = gate
            .with_stores(stores)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let mut report = Report {
        image: reference.to_string(),
        repository: reference.repository().to_string(),
        ..Report::default()
    };

    // 2. Pre-check on names and requester, before any network I/O.
    let checked = match gate.precheck(image, &requester) {
        Ok(checked) => checked,
        Err(r) if r.stage == Stage::Precheck => {
            report.stage = "precheck";
            report.decision = r.decision;
            return Ok(report.finish(json, gate.key_file_map()));
        }
        Err(r) => bail!("{}", r.reason),
    };
    let client = client(registry)?;

    // 3 to 6. Resolve once, fetch and verify signatures, decide. A registry failure is an
    // error (exit 2), not a decision.
    let (evidence, decision) = match gate.admit(&client, checked).await {
        Ok(admitted) => (admitted.evidence().clone(), admitted.decision()),
        Err(r) if r.stage == Stage::Decision => match r.decision {
            Some(d) => (*r.evidence, d),
            None => bail!("{}", r.reason),
        },
        Err(r) => bail!("{}", r.reason),
    };
    report.digest = evidence.digest.as_ref().map(ToString::to_string);
    report.platform_digest = evidence.platform_digest.as_ref().map(ToString::to_string);
    report.candidates = evidence.candidates;
    report.signers = evidence.signers.iter().copied().collect();
    report.rejected = evidence.not_counted;
    report.stores = evidence.stores;
    report.notary = evidence.notary;
    report.builds = evidence.builds;
    report.stage = "decision";
    report.decision = Some(decision);
    Ok(report.finish(json, gate.key_file_map()))
}

#[derive(Default)]
struct Report {
    image: String,
    repository: String,
    digest: Option<String>,
    platform_digest: Option<String>,
    candidates: usize,
    signers: Vec<KeyId>,
    rejected: Vec<String>,
    stores: Vec<warden_node::stores::Checked>,
    /// Notary Project signatures found, verified by the node's code or refused.
    notary: Vec<warden_node::admission::NotaryEvidence>,
    /// Verified build provenance (`reproduced_by`).
    builds: Vec<warden_node::admission::BuiltBy>,
    stage: &'static str,
    decision: Option<Decision>,
}

impl Report {
    fn finish(self, json: bool, key_files: &BTreeMap<KeyId, Vec<String>>) -> Outcome {
        let allowed = self.decision.as_ref().is_some_and(Decision::is_permit);
        let exit = if allowed { EXIT_ALLOWED } else { EXIT_DENIED };
        let rule = self.decision.as_ref().and_then(Decision::rule);
        let reasons: Vec<String> = self
            .decision
            .as_ref()
            .map(|d| d.reasons().iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        let signer_files = |k: &KeyId| key_files.get(k).cloned().unwrap_or_default();
        if json {
            let out = serde_json::json!({
                "image": self.image,
                "repository": self.repository,
                "digest": self.digest,
                "platform_digest": self.platform_digest,
                "signers": self.signers.iter().map(|k| serde_json::json!({
                    "key_id": k.to_string(),
                    "files": signer_files(k),
                })).collect::<Vec<_>>(),
                "builders": self.builds.iter().map(|b| serde_json::json!({
                    "key_id": b.key.to_string(),
                    "files": signer_files(&b.key),
                    "commit": b.commit,
                    "path": b.path,
                    "builder_id": b.builder_id,
                })).collect::<Vec<_>>(),
                "candidates": self.candidates,
                "rejected": self.rejected,
                "notary": self.notary.iter().map(|n| match &n.outcome {
                    Ok(v) => serde_json::json!({
                        "digest": n.digest.to_string(),
                        "origin": n.origin,
                        "verified": true,
                        "subject": v.subject_text,
                        "leaf_sha256": v.leaf_hex(),
                        "alg": v.alg.name(),
                    }),
                    Err(why) => serde_json::json!({
                        "digest": n.digest.to_string(),
                        "origin": n.origin,
                        "verified": false,
                        "reason": why,
                    }),
                }).collect::<Vec<_>>(),
                "stores": self.stores.iter().map(|c| serde_json::json!({
                    "store": c.store,
                    "checkpoint": c.checkpoint,
                    "revoked": c.facts.revoked,
                    "unavailable": c.facts.unavailable,
                    "cached": c.cached,
                    "entries": c.entries,
                })).collect::<Vec<_>>(),
                "stage": self.stage,
                "decision": if allowed { "allow" } else { "deny" },
                "rule": rule.map(|r| r.name()),
                "rule_line": rule.map(|r| r.line),
                "reasons": reasons,
            });
            return Outcome {
                output: format!("{out:#}"),
                exit,
            };
        }
        let mut out = format!("image:      {}\n", self.image);
        match &self.digest {
            Some(d) => out.push_str(&format!("digest:     {d}\n")),
            None => out.push_str("digest:     (not resolved: denied before any registry access)\n"),
        }
        if let Some(p) = &self.platform_digest {
            out.push_str(&format!("platform:   {p}\n"));
        }
        if self.signers.is_empty() {
            out.push_str("signers:    none verified\n");
        }
        for k in &self.signers {
            out.push_str(&format!(
                "signer:     {k} ({})\n",
                signer_files(k).join(", ")
            ));
        }
        for b in &self.builds {
            out.push_str(&format!(
                "builder:    {} ({}) built commit {} path {} ({})\n",
                b.key,
                signer_files(&b.key).join(", "),
                warden_api::display::safe(&b.commit),
                warden_api::display::safe(&b.path),
                warden_api::display::safe(&b.builder_id),
            ));
        }
        for r in &self.rejected {
            out.push_str(&format!("not counted: {r}\n"));
        }
        for n in &self.notary {
            match &n.outcome {
                Ok(v) => out.push_str(&format!(
                    "notary:     verified {} signed by {} (leaf sha256:{}) at {}\n",
                    v.alg.name(),
                    warden_api::display::safe(&v.subject_text),
                    v.leaf_hex(),
                    warden_api::display::safe(&n.origin)
                )),
                Err(why) => out.push_str(&format!(
                    "notary:     refused at {}: {}\n",
                    warden_api::display::safe(&n.origin),
                    warden_api::display::safe(why)
                )),
            }
        }
        for c in &self.stores {
            let size = c
                .checkpoint
                .as_deref()
                .and_then(|n| n.lines().nth(1))
                .unwrap_or("?");
            out.push_str(&format!(
                "store:      {} (checkpoint size {size})\n",
                c.store
            ));
            if let Some(why) = &c.cached {
                out.push_str(&format!("  cached:   {why}\n"));
            }
            if let Some(why) = &c.facts.unavailable {
                out.push_str(&format!("  refused:  {why}\n"));
            }
            if let Some(why) = &c.facts.revoked {
                out.push_str(&format!("  revoked:  {why}\n"));
            }
            for e in &c.entries {
                out.push_str(&format!(
                    "  {} {}: reviewer {}, key {}, organization {}, {}, {}: {}\n",
                    e.kind,
                    e.index,
                    e.reviewer
                        .as_deref()
                        .map(warden_api::display::safe)
                        .unwrap_or_else(|| "?".into()),
                    e.key_id.as_deref().unwrap_or("not pinned"),
                    e.organization.as_deref().unwrap_or("-"),
                    if e.included {
                        "included"
                    } else {
                        "not included"
                    },
                    if e.counted { "counted" } else { "not counted" },
                    warden_api::display::safe(&e.why),
                ));
            }
        }
        match &self.decision {
            Some(d) => out.push_str(&format!("decision:   {d}")),
            None => out.push_str("decision:   denied"),
        }
        Outcome { output: out, exit }
    }
}
