//! The decision: a pure function of the policy, the normalised reference, the digest (if known),
//! the verified signer keys and the requester.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use warden_reference::{Digest, Reference};
use warden_trust::KeyId;
use warden_trust::notary::VerifiedSignature;

use crate::rule::{ApprovedBy, Policy, Rule, RuleId};

/// What a node verified in one algorithm store's log about the digest being decided, for
/// `approved_by`. The node fetches and verifies the evidence (checkpoint signature, consistency
/// with the checkpoint it saved, inclusion proofs, each review against the reviewer keys it
/// pins); the decision only counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreFacts {
    /// Verified approvals of this digest and repository, included in the log: reviewer key ->
    /// the organization the NODE's configuration maps that key to.
    pub approvals: BTreeMap<KeyId, String>,
    /// Why the digest (or its algorithm version) counts as revoked: a verified revocation in the
    /// log. `Some` fails every `approved_by` naming this store.
    pub revoked: Option<String>,
    /// Why the store's evidence could not be used (unreachable with no fresh cache, a log
    /// inconsistent with the saved checkpoint, a fork). `Some` fails every `approved_by`
    /// naming this store.
    pub unavailable: Option<String>,
}

/// Verified store facts by store name (the name the node configuration gives the store).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Approvals {
    pub stores: BTreeMap<String, StoreFacts>,
    /// The digest's build attestations as the node verified them, for `reproduced_by`.
    pub builds: crate::reproduced::BuildFacts,
}

impl Approvals {
    /// No store facts at all: every `approved_by` fails as not evaluated.
    pub fn none() -> Approvals {
        Approvals::default()
    }
}

impl ApprovedBy {
    /// The distinct reviewer keys of this condition among the approvals, and the distinct
    /// organizations they belong to.
    pub fn count(&self, facts: &StoreFacts) -> (BTreeSet<KeyId>, BTreeSet<String>) {
        let mut keys = BTreeSet::new();
        let mut orgs = BTreeSet::new();
        for (key, org) in &facts.approvals {
            if self.reviewers.contains_key(key) {
                keys.insert(*key);
                orgs.insert(org.clone());
            }
        }
        (keys, orgs)
    }
}

/// Who asks, as the server reports it. Every field is optional; a rule that restricts a field
/// the request does not give cannot be evaluated (an allow rule then fails, a deny rule holds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requester {
    pub organization: Option<String>,
    pub user: Option<String>,
    pub collaboration: Option<String>,
    /// The algorithm entry point to be called.
    pub function: Option<String>,
}

impl Requester {
    pub fn organization(mut self, v: impl Into<String>) -> Self {
        self.organization = Some(v.into());
        self
    }
    pub fn user(mut self, v: impl Into<String>) -> Self {
        self.user = Some(v.into());
        self
    }
    pub fn collaboration(mut self, v: impl Into<String>) -> Self {
        self.collaboration = Some(v.into());
        self
    }
    pub fn function(mut self, v: impl Into<String>) -> Self {
        self.function = Some(v.into());
        self
    }

    fn get(&self, field: RequesterField) -> Option<&str> {
        match field {
            RequesterField::Organization => self.organization.as_deref(),
            RequesterField::User => self.user.as_deref(),
            RequesterField::Collaboration => self.collaboration.as_deref(),
            RequesterField::Function => self.function.as_deref(),
        }
    }
}

/// What the decision is about.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The normalised image reference (a digest in it is a known digest).
    pub reference: &'a Reference,
    /// The manifest digest the node resolved, if it has one.
    pub digest: Option<&'a Digest>,
    /// Keys whose signatures over the digest were verified.
    pub signers: &'a BTreeSet<KeyId>,
    pub requester: &'a Requester,
}

/// A requester field that a rule may restrict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequesterField {
    Organization,
    User,
    Collaboration,
    Function,
}

impl RequesterField {
    const ALL: [RequesterField; 4] = [
        RequesterField::Organization,
        RequesterField::User,
        RequesterField::Collaboration,
        RequesterField::Function,
    ];

    /// `organization`, `user`, ...
    pub fn name(self) -> &'static str {
        match self {
            RequesterField::Organization => "organization",
            RequesterField::User => "user",
            RequesterField::Collaboration => "collaboration",
            RequesterField::Function => "function",
        }
    }

    fn of(self, rule: &Rule) -> Option<&BTreeSet<String>> {
        match self {
            RequesterField::Organization => rule.organizations.as_ref(),
            RequesterField::User => rule.users.as_ref(),
            RequesterField::Collaboration => rule.collaborations.as_ref(),
            RequesterField::Function => rule.functions.as_ref(),
        }
    }
}

/// A rule condition (besides the repository), as named by its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Condition {
    Digests,
    SignedBy,
    ApprovedBy,
    ReproducedBy,
    Requester(RequesterField),
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Digests => f.write_str("`digests` (the manifest digest is not known)"),
            Condition::SignedBy => f.write_str("`signed_by` (signatures are not verified yet)"),
            Condition::ApprovedBy => {
                f.write_str("`approved_by` (store approvals are not verified yet)")
            }
            Condition::ReproducedBy => {
                f.write_str("`reproduced_by` (build attestations are not verified yet)")
            }
            Condition::Requester(field) => {
                write!(
                    f,
                    "`{}s` (the request names no {})",
                    field.name(),
                    field.name()
                )
            }
        }
    }
}

/// Why one condition of an allow rule did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The rule lists digests and the digest is not known.
    DigestUnknown,
    /// The digest is not among the rule's digests.
    DigestNotListed(Digest),
    /// Too few of the rule's signers (cosign keys, Notary identities, or both: `counts`) have
    /// verified signatures.
    TooFewSigners {
        verified: usize,
        threshold: usize,
        counts: SignerKinds,
    },
    /// The store's approvals were not checked or could not be used.
    ApprovalsUnavailable { store: String, why: String },
    /// A verified revocation of the digest or its version is in the store's log.
    Revoked { store: String, why: String },
    /// Too few distinct pinned reviewers, or organizations, approved.
    TooFewApprovals {
        store: String,
        approvals: usize,
        min_approvals: usize,
        organizations: usize,
        min_organizations: usize,
    },
    /// Too few distinct pinned builders attest this digest from one commit.
    TooFewBuilders(crate::reproduced::TooFewBuilders),
    /// The rule restricts this requester field and the request does not give it.
    Missing(RequesterField),
    /// The requester's value is not in the rule's list.
    NotListed(RequesterField, String),
}

impl Failure {
    /// The condition that failed.
    pub fn condition(&self) -> Condition {
        match self {
            Failure::DigestUnknown | Failure::DigestNotListed(_) => Condition::Digests,
            Failure::TooFewSigners { .. } => Condition::SignedBy,
            Failure::ApprovalsUnavailable { .. }
            | Failure::Revoked { .. }
            | Failure::TooFewApprovals { .. } => Condition::ApprovedBy,
            Failure::TooFewBuilders(_) => Condition::ReproducedBy,
            Failure::Missing(f) | Failure::NotListed(f, _) => Condition::Requester(*f),
        }
    }
}

/// What a `signed_by` condition counts, for its denial's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignerKinds {
    /// Pinned cosign keys.
    Keys,
    /// Notary Project identities under a trust store.
    Notary,
    /// Both, counted together.
    Both,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::DigestUnknown => {
                f.write_str("the manifest digest is not known and the rule lists digests")
            }
            Failure::DigestNotListed(d) => write!(f, "digest {d} is not among the rule's digests"),
            Failure::TooFewSigners {
                verified,
                threshold,
                counts,
            } => {
                let whom = match counts {
                    SignerKinds::Keys => "of the rule's keys",
                    SignerKinds::Notary => "Notary signer(s) the rule trusts",
                    SignerKinds::Both => "of the rule's keys and Notary signers",
                };
                write!(
                    f,
                    "{verified} {whom} signed with a verified signature; it needs {threshold}"
                )
            }
            Failure::ApprovalsUnavailable { store, why } => write!(
                f,
                "approvals of store `{store}` could not be checked ({why}); approved_by fails closed"
            ),
            Failure::Revoked { store, why } => {
                write!(f, "store `{store}` revoked it ({why})")
            }
            Failure::TooFewApprovals {
                store,
                approvals,
                min_approvals,
                organizations,
                min_organizations,
            } => write!(
                f,
                "store `{store}`: {approvals} distinct pinned reviewer(s) from {organizations} organization(s) approved this digest; the rule needs {min_approvals} from {min_organizations}"
            ),
            Failure::TooFewBuilders(t) => write!(f, "{t}"),
            Failure::Missing(field) => write!(
                f,
                "the request names no {} and the rule lists {}s",
                field.name(),
                field.name()
            ),
            Failure::NotListed(field, value) => {
                write!(
                    f,
                    "{} `{}` is not listed",
                    field.name(),
                    value.escape_debug()
                )
            }
        }
    }
}

/// One reason for a denial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// The policy has no rules.
    NoRules,
    /// The reference pins one digest and the request gives another.
    DigestConflict { in_reference: Digest, given: Digest },
    /// A deny rule matched. `assumed` lists its conditions that could not be evaluated and were
    /// taken as holding (fail closed).
    DeniedBy {
        rule: RuleId,
        assumed: Vec<Condition>,
    },
    /// No allow rule names the repository.
    NoRuleForRepository { repository: String },
    /// An allow rule names the repository but these conditions failed.
    RuleFailed { rule: RuleId, failed: Vec<Failure> },
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::NoRules => f.write_str("the policy has no rules, so it denies everything"),
            DenyReason::DigestConflict {
                in_reference,
                given,
            } => write!(
                f,
                "the reference pins {in_reference} but the digest given is {given}; conflicting digests are refused"
            ),
            DenyReason::DeniedBy { rule, assumed } => {
                write!(f, "denied by {rule}")?;
                if !assumed.is_empty() {
                    let list: Vec<String> = assumed.iter().map(Condition::to_string).collect();
                    write!(
                        f,
                        "; could not evaluate {}, taken as holding (fail closed)",
                        list.join(", ")
                    )?;
                }
                Ok(())
            }
            DenyReason::NoRuleForRepository { repository } => {
                write!(f, "no allow rule names repository {repository}")
            }
            DenyReason::RuleFailed { rule, failed } => {
                let list: Vec<String> = failed.iter().map(Failure::to_string).collect();
                write!(f, "{rule} names this repository but {}", list.join("; "))
            }
        }
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by this rule: the first allow rule in file order whose conditions all hold.
    Permit { rule: RuleId },
    /// Denied, with every reason found (never empty).
    Deny { reasons: Vec<DenyReason> },
}

impl Decision {
    pub fn is_permit(&self) -> bool {
        matches!(self, Decision::Permit { .. })
    }

    /// The rule that decided: the permitting allow rule, or the first matching deny rule.
    pub fn rule(&self) -> Option<RuleId> {
        match self {
            Decision::Permit { rule } => Some(*rule),
            Decision::Deny { reasons } => reasons.iter().find_map(|r| match r {
                DenyReason::DeniedBy { rule, .. } => Some(*rule),
                _ => None,
            }),
        }
    }

    /// The reasons of a denial; empty for a permit.
    pub fn reasons(&self) -> &[DenyReason] {
        match self {
            Decision::Permit { .. } => &[],
            Decision::Deny { reasons } => reasons,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Permit { rule } => write!(f, "allowed by {rule}"),
            Decision::Deny { reasons } => {
                f.write_str("denied")?;
                for r in reasons {
                    write!(f, "\n  - {r}")?;
                }
                Ok(())
            }
        }
    }
}

/// What is known when a rule is judged. `None` for signers means "not gathered yet" (precheck).
struct Facts<'a> {
    digest: Option<&'a Digest>,
    signers: Option<&'a BTreeSet<KeyId>>,
    /// Notary Project signatures verified over the digest (empty when none were gathered).
    notary: &'a [VerifiedSignature],
    /// `None` in the precheck (not gathered yet).
    approvals: Option<&'a Approvals>,
    requester: &'a Requester,
}

/// One condition's outcome.
enum Outcome {
    Holds,
    Fails(Failure),
    /// Could not be evaluated; the failure an allow rule reports for it.
    Unknown(Condition, Failure),
}

fn evaluate(rule: &Rule, facts: &Facts<'_>, out: &mut Vec<Outcome>) {
    if let Some(digests) = &rule.digests {
        out.push(match facts.digest {
            None => Outcome::Unknown(Condition::Digests, Failure::DigestUnknown),
            Some(d) if digests.contains(d) => Outcome::Holds,
            Some(d) => Outcome::Fails(Failure::DigestNotListed(d.clone())),
        });
    }
    if let Some(signed_by) = &rule.signed_by {
        let counts = match (signed_by.keys.is_empty(), signed_by.notary.is_some()) {
            (false, true) => SignerKinds::Both,
            (true, true) => SignerKinds::Notary,
            _ => SignerKinds::Keys,
        };
        out.push(match facts.signers {
            None => Outcome::Unknown(
                Condition::SignedBy,
                Failure::TooFewSigners {
                    verified: 0,
                    threshold: signed_by.threshold,
                    counts,
                },
            ),
            Some(signers) => {
                let verified = signed_by.count_with(signers, facts.notary);
                if verified >= signed_by.threshold {
                    Outcome::Holds
                } else {
                    Outcome::Fails(Failure::TooFewSigners {
                        verified,
                        threshold: signed_by.threshold,
                        counts,
                    })
                }
            }
        });
    }
    if let Some(approved_by) = &rule.approved_by {
        out.push(match facts.approvals {
            None => Outcome::Unknown(
                Condition::ApprovedBy,
                Failure::ApprovalsUnavailable {
                    store: approved_by.store.clone(),
                    why: "not checked yet".into(),
                },
            ),
            Some(approvals) => approval_outcome(approved_by, approvals),
        });
    }
    if let Some(reproduced_by) = &rule.reproduced_by {
        out.push(reproduction_outcome(reproduced_by, facts.approvals));
    }
    for field in RequesterField::ALL {
        if let Some(allowed) = field.of(rule) {
            out.push(match facts.requester.get(field) {
                None => Outcome::Unknown(Condition::Requester(field), Failure::Missing(field)),
                Some(v) if allowed.contains(v) => Outcome::Holds,
                Some(v) => Outcome::Fails(Failure::NotListed(field, v.to_owned())),
            });
        }
    }
}

/// `reproduced_by` over the build attestations the node verified (`None` in the precheck).
fn reproduction_outcome(
    reproduced_by: &crate::reproduced::ReproducedBy,
    approvals: Option<&Approvals>,
) -> Outcome {
    let unchecked = crate::reproduced::BuildFacts::default();
    let facts = approvals.map_or(&unchecked, |a| &a.builds);
    match reproduced_by.judge(facts) {
        Ok(_) => Outcome::Holds,
        Err(t) if approvals.is_none() => {
            Outcome::Unknown(Condition::ReproducedBy, Failure::TooFewBuilders(t))
        }
        Err(t) => Outcome::Fails(Failure::TooFewBuilders(t)),
    }
}

fn approval_outcome(approved_by: &ApprovedBy, approvals: &Approvals) -> Outcome {
    let store = approved_by.store.clone();
    let Some(facts) = approvals.stores.get(&approved_by.store) else {
        return Outcome::Fails(Failure::ApprovalsUnavailable {
            store,
            why: "the node has no evidence from this store; name it in the node configuration's [[stores]]".into(),
        });
    };
    if let Some(why) = &facts.unavailable {
        return Outcome::Fails(Failure::ApprovalsUnavailable {
            store,
            why: why.clone(),
        });
    }
    if let Some(why) = &facts.revoked {
        return Outcome::Fails(Failure::Revoked {
            store,
            why: why.clone(),
        });
    }
    let (keys, orgs) = approved_by.count(facts);
    if keys.len() >= approved_by.min_approvals && orgs.len() >= approved_by.min_organizations {
        Outcome::Holds
    } else {
        Outcome::Fails(Failure::TooFewApprovals {
            store,
            approvals: keys.len(),
            min_approvals: approved_by.min_approvals,
            organizations: orgs.len(),
            min_organizations: approved_by.min_organizations,
        })
    }
}

/// A deny rule matches when none of its conditions fails; conditions that cannot be evaluated
/// count as holding (fail closed) and are returned.
fn deny_rule_matches(rule: &Rule, facts: &Facts<'_>) -> Option<Vec<Condition>> {
    let mut outcomes = Vec::new();
    evaluate(rule, facts, &mut outcomes);
    let mut assumed = Vec::new();
    for o in outcomes {
        match o {
            Outcome::Holds => {}
            Outcome::Fails(_) => return None,
            Outcome::Unknown(c, _) => assumed.push(c),
        }
    }
    Some(assumed)
}

/// An allow rule holds when every condition holds; the failures otherwise.
fn allow_rule_failures(rule: &Rule, facts: &Facts<'_>) -> Vec<Failure> {
    let mut outcomes = Vec::new();
    evaluate(rule, facts, &mut outcomes);
    outcomes
        .into_iter()
        .filter_map(|o| match o {
            Outcome::Holds => None,
            Outcome::Fails(f) | Outcome::Unknown(_, f) => Some(f),
        })
        .collect()
}

/// Decides whether `request` may run under `policy`. Pure: same inputs, same decision.
///
/// Deny rules are judged first and every matching one is reported; then allow rules in file
/// order, and the first whose conditions all hold permits. No store evidence is given: a rule
/// with `approved_by` fails (use [`decide_with`]).
pub fn decide(policy: &Policy, request: &Request<'_>) -> Decision {
    decide_with(policy, request, &Approvals::none())
}

/// [`decide`] with the store facts the node verified, for `approved_by` conditions. Pure.
pub fn decide_with(policy: &Policy, request: &Request<'_>, approvals: &Approvals) -> Decision {
    decide_with_notary(policy, request, approvals, &[])
}

/// [`decide_with`] with the Notary Project signatures the node verified over the resolved
/// digest (envelope, payload and chain: `warden_trust::notary`); each rule's `signed_by.notary`
/// then asks its own trust store and identities ([`crate::SignedBy::count_with`]). Pure.
pub fn decide_with_notary(
    policy: &Policy,
    request: &Request<'_>,
    approvals: &Approvals,
    notary: &[VerifiedSignature],
) -> Decision {
    if policy.is_empty() {
        return Decision::Deny {
            reasons: vec![DenyReason::NoRules],
        };
    }
    let digest = match (request.reference.digest(), request.digest) {
        (Some(a), Some(b)) if a != b => {
            return Decision::Deny {
                reasons: vec![DenyReason::DigestConflict {
                    in_reference: a.clone(),
                    given: b.clone(),
                }],
            };
        }
        (a, b) => a.or(b),
    };
    let facts = Facts {
        digest,
        signers: Some(request.signers),
        notary,
        approvals: Some(approvals),
        requester: request.requester,
    };
    judge(
        policy,
        &request.reference.repository().to_string(),
        &facts,
        false,
    )
}

/// The outcome of [`precheck`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precheck {
    /// Denied on names and requester alone; [`decide`] would deny too, whatever the digest and
    /// signers turn out to be.
    Deny { reasons: Vec<DenyReason> },
    /// Some allow rule may still permit once the digest and signers are known: gather evidence,
    /// then call [`decide`]. `candidates` are those rules in file order.
    MayAllow { candidates: Vec<RuleId> },
}

/// The early check a node runs on names and requester alone, before any network I/O.
///
/// It ignores digests (including one pinned in the reference) and signers, and denies when:
/// - the policy has no rules;
/// - a deny rule names the repository and states no `digests` and no `signed_by`, and its
///   requester conditions all hold (a requester field the request does not give counts as
///   holding, fail closed, exactly as in [`decide`]);
/// - no allow rule names the repository, or every allow rule that does has a requester condition
///   that fails (including a field the request does not give).
///
/// Otherwise it returns [`Precheck::MayAllow`] with the allow rules that may still permit. A
/// precheck denial implies that [`decide`] denies for every digest and set of signers.
pub fn precheck(policy: &Policy, reference: &Reference, requester: &Requester) -> Precheck {
    if policy.is_empty() {
        return Precheck::Deny {
            reasons: vec![DenyReason::NoRules],
        };
    }
    let facts = Facts {
        digest: None,
        signers: None,
        notary: &[],
        approvals: None,
        requester,
    };
    match judge(policy, &reference.repository().to_string(), &facts, true) {
        Decision::Deny { reasons } => Precheck::Deny { reasons },
        Decision::Permit { .. } => {
            let candidates = policy
                .allow_index
                .candidates(&reference.repository().to_string())
                .into_iter()
                .filter_map(|i| policy.allow.get(i))
                .filter(|rule| {
                    allow_rule_failures(rule, &facts).iter().all(|f| {
                        matches!(
                            f.condition(),
                            Condition::Digests
                                | Condition::SignedBy
                                | Condition::ApprovedBy
                                | Condition::ReproducedBy
                        )
                    })
                })
                .map(|rule| rule.id)
                .collect();
            Precheck::MayAllow { candidates }
        }
    }
}

/// Shared by [`decide`] and [`precheck`]. In `early` mode only deny rules without evidence
/// conditions apply, and evidence conditions of allow rules are taken as possibly holding; the
/// `Permit` then means "may allow".
fn judge(policy: &Policy, repository: &str, facts: &Facts<'_>, early: bool) -> Decision {
    let mut reasons = Vec::new();
    for i in policy.deny_index.candidates(repository) {
        let Some(rule) = policy.deny.get(i) else {
            continue;
        };
        if early && !rule.names_and_requester_only() {
            continue;
        }
        if let Some(assumed) = deny_rule_matches(rule, facts) {
            reasons.push(DenyReason::DeniedBy {
                rule: rule.id,
                assumed,
            });
        }
    }
    if !reasons.is_empty() {
        return Decision::Deny { reasons };
    }
    let candidates = policy.allow_index.candidates(repository);
    if candidates.is_empty() {
        return Decision::Deny {
            reasons: vec![DenyReason::NoRuleForRepository {
                repository: repository.to_owned(),
            }],
        };
    }
    for i in candidates {
        let Some(rule) = policy.allow.get(i) else {
            continue;
        };
        let mut failed = allow_rule_failures(rule, facts);
        if early {
            failed.retain(|f| {
                !matches!(
                    f.condition(),
                    Condition::Digests
                        | Condition::SignedBy
                        | Condition::ApprovedBy
                        | Condition::ReproducedBy
                )
            });
        }
        if failed.is_empty() {
            return Decision::Permit { rule: rule.id };
        }
        reasons.push(DenyReason::RuleFailed {
            rule: rule.id,
            failed,
        });
    }
    Decision::Deny { reasons }
}
