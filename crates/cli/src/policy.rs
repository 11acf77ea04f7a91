//! `warden policy`: dry-run a node policy against an image, and lint a policy file.
//!
//! `warden policy check` decides as a node would once it has the evidence: the digest comes from
//! the reference or `--digest`, and every `--signer KEYFILE` is taken as a key whose signature
//! was verified (real verification is `warden image verify`). Exit 0 allowed, 1 denied, 2 bad
//! input (policy file, image reference, digest or key file), the error on stderr.
//! `warden policy lint FILE` validates a policy and prints its rules (exit 0 valid, 2 refused).
//! An `approved_by` condition needs the store's evidence: with `--node-config FILE` it is
//! fetched and verified from the node configuration's `[[stores]]` exactly as the node does
//! (`warden_node::stores`, the node's saved checkpoints; the digest must be known); without it
//! the condition is shown as not evaluated offline, never as a failure, and a rule that would
//! permit if it held makes the check `undecided` (exit 1).
//! Both show the output rules (`[allow.output]`) of allow rules: `check` those of the rule that
//! permits (`output` in `--json`, `null` for a denial), `lint` those of every allow rule.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::Outcome;
use anyhow::Context as _;
use clap::Subcommand;
use warden_policy::{
    Approvals, DenyReason, Failure, FirstRun, OutputRules, PathPattern, Policy, Release, Request,
    Requester, RuleId, StoreFacts,
};
use warden_reference::{Digest, Reference};
use warden_trust::PublicKey;

/// Exit status of a check that denies.
pub const EXIT_DENIED: u8 = 1;
/// Largest key file read for `--signer`.
const MAX_KEY_FILE: u64 = 64 * 1024;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Decide whether a policy admits an image for a requester (a dry run: signers are assumed).
    ///
    /// Example: warden policy check --policy policy.toml --organization hospital-a --user rita --collaboration cardio registry.example.org/warden/mean:1.0
    Check {
        /// The node policy file.
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        #[command(flatten)]
        requester: crate::common::RequesterArgs,
        /// The manifest digest, as a node would resolve it (`sha256:<64 hex>` or `sha512:<128 hex>`).
        #[arg(long)]
        digest: Option<String>,
        /// Assume a verified signature by the public key in this PEM file (repeatable).
        #[arg(long = "signer", value_name = "KEYFILE")]
        signers: Vec<PathBuf>,
        /// The node configuration whose `[[stores]]` (pinned store and reviewer keys, saved
        /// checkpoints) fetch and verify the approvals `approved_by` rules ask for, as the
        /// node does; needs the digest. Without it `approved_by` is not evaluated.
        #[arg(long, value_name = "FILE")]
        node_config: Option<PathBuf>,
        /// Print one JSON object: `decision` ("allow"/"deny"), `rule` and `reasons`.
        #[arg(long)]
        json: bool,
        /// The image reference, e.g. `registry.example.org/team/average:1.0`.
        image: String,
    },
    /// Validate a policy file and print a summary of its rules.
    ///
    /// Example: warden policy lint policy.toml
    Lint {
        /// The policy file.
        file: PathBuf,
        /// Print one JSON document: `policy`, `version`, `denies_everything`, and `allow` and
        /// `deny`, the rules in file order (`rule`, `line`, `repository` or
        /// `repository_regex`, `digests`, `signed_by`, `approved_by`, `organizations`,
        /// `users`, `collaborations`, `functions`, and for allow rules `reproduced_by`,
        /// `output` and `contract` (`warden` or `vantage6`); null when the rule does not state
        /// it).
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `warden policy` command. An error is bad input (exit 2).
pub fn run(command: PolicyCommand) -> anyhow::Result<Outcome> {
    match command {
        PolicyCommand::Check {
            policy,
            requester,
            digest,
            signers,
            node_config,
            json,
            image,
        } => check(
            &policy,
            requester.requester(),
            digest.as_deref(),
            &signers,
            node_config.as_deref(),
            json,
            &image,
        ),
        PolicyCommand::Lint { file, json } => lint(&file, json),
    }
}

/// What `approved_by` is shown as without the store's evidence.
pub const NOT_EVALUATED: &str = "not evaluated offline (needs the store's evidence)";

fn check(
    policy_path: &Path,
    requester: Requester,
    digest: Option<&str>,
    signer_files: &[PathBuf],
    node_config: Option<&Path>,
    json: bool,
    image: &str,
) -> anyhow::Result<Outcome> {
    let policy = Policy::load(policy_path)?;
    let reference = Reference::parse(image)?;
    let digest = digest
        .map(|d| {
            Digest::parse(d).context(
                "--digest takes `sha256:<64 lower-case hex>` or `sha512:<128 lower-case hex>`",
            )
        })
        .transpose()?;
    let mut signers = BTreeSet::new();
    for file in signer_files {
        signers.insert(read_key(file)?.id());
    }
    let names = policy.stores_for(reference.repository());
    let mut approvals = Approvals::none();
    let mut stores_checked = Vec::new();
    let offline = node_config.is_none();
    match node_config {
        Some(path) => {
            let config = warden_node::config::Config::load(path)?;
            let stores = warden_node::stores::Stores::load(
                &config.stores,
                &config.node.spool_dir.join("stores"),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            for name in &names {
                anyhow::ensure!(
                    stores.get(name).is_some(),
                    "the policy's approved_by names store `{name}`, which {} does not pin; add a [[stores]] table for it",
                    path.display()
                );
            }
            if !names.is_empty() {
                let Some(d) = reference.digest().or(digest.as_ref()) else {
                    anyhow::bail!(
                        "approved_by is checked against the approvals of one manifest digest: give --digest (or a reference by digest); `warden image verify --node-config` resolves it from the registry"
                    );
                };
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot start the async runtime")?;
                stores_checked = runtime.block_on(stores.check(&names, reference.repository(), d));
                for c in &stores_checked {
                    approvals.stores.insert(c.store.clone(), c.facts.clone());
                }
            }
        }
        None => {
            for name in &names {
                approvals.stores.insert(
                    name.clone(),
                    StoreFacts {
                        unavailable: Some(NOT_EVALUATED.to_owned()),
                        ..StoreFacts::default()
                    },
                );
            }
        }
    }
    let decision = warden_policy::decide_with(
        &policy,
        &Request {
            reference: &reference,
            digest: digest.as_ref(),
            signers: &signers,
            requester: &requester,
        },
        &approvals,
    );
    // Offline, an allow rule that fails on `approved_by` alone is not a denial: it would permit
    // if the store's evidence holds.
    let undecided: Vec<RuleId> = if offline {
        decision
            .reasons()
            .iter()
            .filter_map(|r| match r {
                DenyReason::RuleFailed { rule, failed }
                    if !failed.is_empty() && failed.iter().all(not_evaluated) =>
                {
                    Some(*rule)
                }
                _ => None,
            })
            .collect()
    } else {
        Vec::new()
    };
    let denied_by_rule = decision
        .reasons()
        .iter()
        .any(|r| matches!(r, DenyReason::DeniedBy { .. }));
    let verdict = if decision.is_permit() {
        "allow"
    } else if !undecided.is_empty() && !denied_by_rule {
        "undecided"
    } else {
        "deny"
    };
    let exit = if decision.is_permit() { 0 } else { EXIT_DENIED };
    let reasons: Vec<String> = decision.reasons().iter().map(reason_text).collect();
    // The output rules of the allow rule that permits; none for a denial.
    let output_rules = match &decision {
        warden_policy::Decision::Permit { rule } => policy.output_rules(*rule),
        warden_policy::Decision::Deny { .. } => None,
    };
    // How the permitted algorithm would be run; none for a denial.
    let contract = match &decision {
        warden_policy::Decision::Permit { rule } => policy.contract(*rule),
        warden_policy::Decision::Deny { .. } => None,
    };
    let output = if json {
        let rule = decision.rule();
        serde_json::json!({
            "decision": verdict,
            "rule": rule.map(|r| r.name()),
            "line": rule.map(|r| r.line),
            "reasons": reasons,
            "reference": reference.to_string(),
            "repository": reference.repository().to_string(),
            "policy": policy.origin(),
            "output": output_rules.map(output_json),
            "contract": contract.map(|c| c.name()),
            "approved_by": if names.is_empty() {
                serde_json::Value::Null
            } else if offline {
                serde_json::json!(NOT_EVALUATED)
            } else {
                serde_json::json!("evaluated")
            },
            "undecided_rules": undecided.iter().map(|r| r.name()).collect::<Vec<_>>(),
            "stores": stores_checked.iter().map(|c| serde_json::json!({
                "store": c.store,
                "checkpoint": c.checkpoint,
                "revoked": c.facts.revoked,
                "unavailable": c.facts.unavailable,
                "cached": c.cached,
                "entries": c.entries,
            })).collect::<Vec<_>>(),
        })
        .to_string()
    } else {
        let head = match (&decision, verdict) {
            (warden_policy::Decision::Permit { .. }, _) => decision.to_string(),
            (_, "undecided") => {
                let list: Vec<String> = undecided.iter().map(ToString::to_string).collect();
                format!(
                    "undecided: {} would permit if approved_by holds; approved_by: {NOT_EVALUATED}; give --node-config to check it against the store as the node does",
                    list.join(", ")
                )
            }
            _ => {
                let mut t = String::from("denied");
                for r in &reasons {
                    t.push_str(&format!("\n  - {r}"));
                }
                t
            }
        };
        let mut text = format!(
            "{reference} (repository {}) under {}: {head}",
            reference.repository(),
            policy.origin()
        );
        for c in &stores_checked {
            text.push_str(&store_text(c));
        }
        // Warden's own contract is the default and goes without saying (as in `lint`).
        if let Some(contract) = contract.filter(|c| *c != warden_policy::Contract::Warden) {
            text.push_str(&format!("\n  contract: {contract}"));
        }
        if let Some(rules) = output_rules {
            text.push_str(&format!(
                "
  output: {rules}"
            ));
        }
        text
    };
    Ok(Outcome { output, exit })
}

/// An `approved_by` that was not evaluated (no evidence offline).
fn not_evaluated(f: &Failure) -> bool {
    matches!(f, Failure::ApprovalsUnavailable { why, .. } if why == NOT_EVALUATED)
}

/// A denial reason, with an `approved_by` that was not evaluated said as such.
fn reason_text(r: &DenyReason) -> String {
    match r {
        DenyReason::RuleFailed { rule, failed } if failed.iter().any(not_evaluated) => {
            let list: Vec<String> = failed
                .iter()
                .map(|f| match f {
                    Failure::ApprovalsUnavailable { store, .. } if not_evaluated(f) => {
                        format!("approved_by: {NOT_EVALUATED} of store `{store}`")
                    }
                    other => other.to_string(),
                })
                .collect();
            format!("{rule} names this repository but {}", list.join("; "))
        }
        other => other.to_string(),
    }
}

/// What one store showed, as `warden image verify` prints it.
fn store_text(c: &warden_node::stores::Checked) -> String {
    use warden_api::display::safe;
    let size = c
        .checkpoint
        .as_deref()
        .and_then(|n| n.lines().nth(1))
        .unwrap_or("?");
    let mut out = format!("\n  store {} (checkpoint size {size})", c.store);
    if let Some(why) = &c.cached {
        out.push_str(&format!("\n    cached: {}", safe(why)));
    }
    if let Some(why) = &c.facts.unavailable {
        out.push_str(&format!("\n    refused: {}", safe(why)));
    }
    if let Some(why) = &c.facts.revoked {
        out.push_str(&format!("\n    revoked: {}", safe(why)));
    }
    for e in &c.entries {
        out.push_str(&format!(
            "\n    {} {}: reviewer {}, key {}, organization {}, {}: {}",
            e.kind,
            e.index,
            e.reviewer
                .as_deref()
                .map(safe)
                .unwrap_or_else(|| "?".into()),
            e.key_id.as_deref().unwrap_or("not pinned"),
            e.organization.as_deref().unwrap_or("-"),
            if e.counted { "counted" } else { "not counted" },
            safe(&e.why),
        ));
    }
    out
}

/// The output rules of an allow rule as `check --json` prints them; an absent key is `null`.
fn output_json(rules: &OutputRules) -> serde_json::Value {
    serde_json::json!({
        "max_bytes": rules.max_bytes.as_ref().map(|m| m.value),
        "schemas": rules.schemas.iter().map(|s| s.file()).collect::<Vec<_>>(),
        "min_count": rules.min_count.as_ref().map(|m| serde_json::json!({
            "paths": m.paths.iter().map(PathPattern::as_str).collect::<Vec<_>>(),
            "k": m.k,
        })),
        "release": match rules.release {
            Release::Automatic => "automatic",
            Release::Manual { .. } => "manual",
        },
        "checkers": match rules.release {
            Release::Automatic => None,
            Release::Manual { checkers } => Some(checkers),
        },
        "max_subtasks": rules.max_subtasks,
        "runs_per_day": rules.runs_per_day,
        "first_run": match rules.first_run {
            FirstRun::Run => None,
            FirstRun::Approve => Some("approve"),
        },
        "logs": rules.logs.as_ref().map(|l| l.value.as_str()),
    })
}

fn read_key(path: &Path) -> anyhow::Result<PublicKey> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read signer key file {}", path.display()))?;
    let mut pem = String::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_string(&mut pem)
        .with_context(|| format!("cannot read signer key file {}", path.display()))?;
    anyhow::ensure!(
        pem.len() as u64 <= MAX_KEY_FILE,
        "signer key file {} is larger than {MAX_KEY_FILE} bytes; pass a PEM public key",
        path.display()
    );
    PublicKey::from_pem(&pem).with_context(|| {
        format!(
            "signer key file {} is not a usable public key",
            path.display()
        )
    })
}

/// One rule as `lint --json` prints it; a condition the rule does not state is `null`.
fn rule_json(rule: &warden_policy::Rule) -> serde_json::Value {
    use serde_json::json;
    use warden_policy::RepositoryMatch;
    fn strings<T: ToString>(items: impl IntoIterator<Item = T>) -> Vec<String> {
        items.into_iter().map(|i| i.to_string()).collect()
    }
    let (repository, repository_regex) = match &rule.repository {
        RepositoryMatch::Exact(r) => (Some(r.to_string()), None),
        RepositoryMatch::Regex { source } => (None, Some(source.as_str())),
    };
    let signed_by = rule.signed_by.as_ref().map(|s| {
        let mut v = json!({
            "threshold": s.threshold,
            "key_ids": strings(s.keys.keys()),
            "files": s.files,
        });
        // Only present for a rule that counts Notary Project signatures.
        if let Some(n) = &s.notary {
            v["notary"] = json!({
                "trust_store": n.trust_store_file,
                "trust_store_subjects": n.trust_store.subjects,
                "identities": strings(n.identities.iter()),
            });
        }
        v
    });
    let approved_by = rule.approved_by.as_ref().map(|a| {
        json!({
            "store": a.store,
            "min_approvals": a.min_approvals,
            "min_organizations": a.min_organizations,
            "reviewer_key_ids": strings(a.reviewers.keys()),
            "reviewers": a.patterns,
        })
    });
    let mut v = json!({
        "rule": rule.id.name(),
        "line": rule.id.line,
        "repository": repository,
        "repository_regex": repository_regex,
        "digests": rule.digests.as_ref().map(strings),
        "signed_by": signed_by,
        "approved_by": approved_by,
        "organizations": rule.organizations,
        "users": rule.users,
        "collaborations": rule.collaborations,
        "functions": rule.functions,
    });
    if rule.id.kind == warden_policy::RuleKind::Allow {
        v["reproduced_by"] = json!(rule.reproduced_by.as_ref().map(|r| json!({
            "min": r.min,
            "builder_key_ids": strings(r.keys.keys()),
            "keys": r.patterns,
        })));
        v["output"] = output_json(&rule.output);
        v["contract"] = json!(rule.contract.name());
    }
    v
}

fn lint(path: &Path, json: bool) -> anyhow::Result<Outcome> {
    let policy = Policy::load(path)?;
    let (allow, deny) = (policy.allow_rules(), policy.deny_rules());
    if json {
        let v = serde_json::json!({
            "policy": policy.origin(),
            "version": warden_policy::SUPPORTED_VERSION,
            "denies_everything": allow.is_empty(),
            "allow": allow.iter().map(rule_json).collect::<Vec<_>>(),
            "deny": deny.iter().map(rule_json).collect::<Vec<_>>(),
        });
        return Ok(Outcome {
            output: crate::common::json_document(&v),
            exit: 0,
        });
    }
    let mut out = format!(
        "{}: valid, version {}, {} allow rule{}, {} deny rule{}",
        policy.origin(),
        warden_policy::SUPPORTED_VERSION,
        allow.len(),
        if allow.len() == 1 { "" } else { "s" },
        deny.len(),
        if deny.len() == 1 { "" } else { "s" },
    );
    if policy.is_empty() {
        out.push_str("\nno rules: this policy denies everything");
    } else if allow.is_empty() {
        out.push_str("\nno allow rules: this policy denies everything");
    }
    for rule in deny.iter().chain(allow) {
        out.push_str(&format!("\n  {rule}"));
    }
    Ok(Outcome {
        output: out,
        exit: 0,
    })
}
