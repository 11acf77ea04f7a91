//! `warden policy`: dry-run a node policy against an image, and lint a policy file.
//!
//! `warden policy check` decides as a node would once it has the evidence: the digest comes from
//! the reference or `--digest`, and every `--signer KEYFILE` is taken as a key whose signature
//! was verified (real verification is `warden image verify`). Exit 0 allowed, 1 denied, 2 bad
//! input (policy file, image reference, digest or key file), the error on stderr.
//! `warden policy lint FILE` validates a policy and prints its rules (exit 0 valid, 2 refused).
//! Both show the output rules (`[allow.output]`) of allow rules: `check` those of the rule that
//! permits (`output` in `--json`, `null` for a denial), `lint` those of every allow rule.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::Outcome;
use anyhow::Context as _;
use clap::Subcommand;
use warden_policy::{FirstRun, OutputRules, PathPattern, Policy, Release, Request, Requester};
use warden_reference::{Digest, Reference};
use warden_trust::PublicKey;

/// Exit status of a check that denies.
pub const EXIT_DENIED: u8 = 1;
/// Largest key file read for `--signer`.
const MAX_KEY_FILE: u64 = 64 * 1024;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Decide whether a policy admits an image for a requester (a dry run: signers are assumed).
    Check {
        /// The node policy file.
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// The requesting organization.
        #[arg(long)]
        organization: Option<String>,
        /// The requesting user.
        #[arg(long)]
        user: Option<String>,
        /// The collaboration the run belongs to.
        #[arg(long)]
        collaboration: Option<String>,
        /// The algorithm function (entry point) to be called.
        #[arg(long)]
        function: Option<String>,
        /// The manifest digest, as a node would resolve it (`sha256:<64 hex>` or `sha512:<128 hex>`).
        #[arg(long)]
        digest: Option<String>,
        /// Assume a verified signature by the public key in this PEM file (repeatable).
        #[arg(long = "signer", value_name = "KEYFILE")]
        signers: Vec<PathBuf>,
        /// Print one JSON object: `decision` ("allow"/"deny"), `rule` and `reasons`.
        #[arg(long)]
        json: bool,
        /// The image reference, e.g. `registry.example.org/team/average:1.0`.
        image: String,
    },
    /// Validate a policy file and print a summary of its rules.
    Lint {
        /// The policy file.
        file: PathBuf,
    },
}

/// Runs a `warden policy` command. An error is bad input (exit 2).
pub fn run(command: PolicyCommand) -> anyhow::Result<Outcome> {
    match command {
        PolicyCommand::Check {
            policy,
            organization,
            user,
            collaboration,
            function,
            digest,
            signers,
            json,
            image,
        } => {
            let requester = Requester {
                organization,
                user,
                collaboration,
                function,
            };
            check(
                &policy,
                requester,
                digest.as_deref(),
                &signers,
                json,
                &image,
            )
        }
        PolicyCommand::Lint { file } => lint(&file),
    }
}

fn check(
    policy_path: &Path,
    requester: Requester,
    digest: Option<&str>,
    signer_files: &[PathBuf],
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
    let decision = warden_policy::decide(
        &policy,
        &Request {
            reference: &reference,
            digest: digest.as_ref(),
            signers: &signers,
            requester: &requester,
        },
    );
    let exit = if decision.is_permit() { 0 } else { EXIT_DENIED };
    // The output rules of the allow rule that permits; none for a denial.
    let output_rules = match &decision {
        warden_policy::Decision::Permit { rule } => policy.output_rules(*rule),
        warden_policy::Decision::Deny { .. } => None,
    };
    let output = if json {
        let rule = decision.rule();
        serde_json::json!({
            "decision": if decision.is_permit() { "allow" } else { "deny" },
            "rule": rule.map(|r| r.name()),
            "line": rule.map(|r| r.line),
            "reasons": decision.reasons().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "reference": reference.to_string(),
            "repository": reference.repository().to_string(),
            "policy": policy.origin(),
            "output": output_rules.map(output_json),
        })
        .to_string()
    } else {
        let mut text = format!(
            "{reference} (repository {}) under {}: {decision}",
            reference.repository(),
            policy.origin()
        );
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

fn lint(path: &Path) -> anyhow::Result<Outcome> {
    let policy = Policy::load(path)?;
    let (allow, deny) = (policy.allow_rules(), policy.deny_rules());
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
