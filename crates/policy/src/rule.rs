//! The validated, compiled policy: rules and the index that finds candidate rules for a
//! repository in one pass.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use regex::RegexSet;
use warden_reference::{Digest, Repository};
use warden_trust::KeyId;
use warden_trust::notary::{Identity, TrustStore, VerifiedSignature};

use crate::output::OutputRules;

/// Whether a rule allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleKind {
    Allow,
    Deny,
}

impl RuleKind {
    /// `allow` or `deny`, as the table is named in the file.
    pub fn name(self) -> &'static str {
        match self {
            RuleKind::Allow => "allow",
            RuleKind::Deny => "deny",
        }
    }
}

/// A rule's name: `allow[N]` or `deny[N]`, 1-based in file order, and its line in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId {
    pub kind: RuleKind,
    /// 1-based position among the rules of its kind.
    pub number: usize,
    /// 1-based line of the rule's `[[allow]]`/`[[deny]]` header.
    pub line: usize,
}

impl RuleId {
    /// `allow[2]`, without the line.
    pub fn name(&self) -> String {
        format!("{}[{}]", self.kind.name(), self.number)
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}] (line {})",
            self.kind.name(),
            self.number,
            self.line
        )
    }
}

/// How a rule names repositories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryMatch {
    /// Exactly this normalised repository.
    Exact(Repository),
    /// Every normalised repository that the whole regex matches. `source` is the regex as the
    /// policy wrote it; it is compiled as `\A(?:source)\z`.
    Regex { source: String },
}

impl fmt::Display for RepositoryMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepositoryMatch::Exact(r) => write!(f, "repository {r}"),
            RepositoryMatch::Regex { source } => write!(f, "repository_regex '{source}'"),
        }
    }
}

/// The `signed_by` condition: at least `threshold` distinct signers among the pinned cosign
/// `keys` and the `notary` identities signed (see [`SignedBy::count_with`] for how they count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBy {
    /// Distinct keys by identity, each with the file names that held it (empty when the
    /// condition names only Notary identities).
    pub keys: BTreeMap<KeyId, Vec<String>>,
    /// The key files as listed, without repeats.
    pub files: Vec<String>,
    /// Notary Project signers: `signed_by.notary`.
    pub notary: Option<NotarySigners>,
    pub threshold: usize,
}

/// `signed_by.notary`: Notary Project signatures whose chain reaches a certificate of
/// `trust_store` and whose signing certificate's subject matches one of `identities`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotarySigners {
    /// The trust store file as written (relative to the policy file).
    pub trust_store_file: String,
    pub trust_store: TrustStore,
    /// Distinct identities, in file order; `*` only alone.
    pub identities: Vec<Identity>,
}

impl NotarySigners {
    /// The number of identities that distinct signing keys account for: a maximum matching
    /// between the identities and the distinct leaf keys of the signatures anchored in the
    /// trust store (each identity counts once, each signing key counts once, so one
    /// certificate matching two overlapping identities is one signer). Keys in `exclude`
    /// (cosign keys already counted) are left out.
    pub fn count(&self, verified: &[VerifiedSignature], exclude: &BTreeSet<KeyId>) -> usize {
        let mut leaves: Vec<([u8; 32], Vec<usize>)> = Vec::new();
        for sig in verified {
            if !self.trust_store.anchors(sig) {
                continue;
            }
            if exclude.iter().any(|k| k.as_bytes() == &sig.leaf_key_id) {
                continue;
            }
            let ids: Vec<usize> = (0..self.identities.len())
                .filter(|&i| self.identities[i].matches(&sig.subject))
                .collect();
            if ids.is_empty() {
                continue;
            }
            match leaves.iter_mut().find(|(k, _)| *k == sig.leaf_key_id) {
                Some((_, known)) => {
                    for i in ids {
                        if !known.contains(&i) {
                            known.push(i);
                        }
                    }
                }
                None => leaves.push((sig.leaf_key_id, ids)),
            }
        }
        // Augmenting paths (Kuhn): identities and keys are a handful.
        let mut owner: Vec<Option<usize>> = vec![None; self.identities.len()];
        fn augment(
            leaf: usize,
            leaves: &[([u8; 32], Vec<usize>)],
            owner: &mut [Option<usize>],
            seen: &mut [bool],
        ) -> bool {
            for &id in &leaves[leaf].1 {
                if seen[id] {
                    continue;
                }
                seen[id] = true;
                let free = match owner[id] {
                    None => true,
                    Some(other) => augment(other, leaves, owner, seen),
                };
                if free {
                    owner[id] = Some(leaf);
                    return true;
                }
            }
            false
        }
        let mut matched = 0;
        for leaf in 0..leaves.len() {
            let mut seen = vec![false; self.identities.len()];
            if augment(leaf, &leaves, &mut owner, &mut seen) {
                matched += 1;
            }
        }
        matched
    }
}

impl SignedBy {
    /// How many distinct keys of this condition are among `signers`.
    pub fn count(&self, signers: &BTreeSet<KeyId>) -> usize {
        if self.keys.len() <= signers.len() {
            self.keys.keys().filter(|k| signers.contains(k)).count()
        } else {
            signers.iter().filter(|k| self.keys.contains_key(k)).count()
        }
    }

    /// Distinct signers of this condition: each pinned cosign key among `signers` once, plus
    /// the Notary identities matched by signing keys not already counted as cosign keys
    /// ([`NotarySigners::count`]).
    pub fn count_with(&self, signers: &BTreeSet<KeyId>, notary: &[VerifiedSignature]) -> usize {
        let cosign: BTreeSet<KeyId> = self
            .keys
            .keys()
            .filter(|k| signers.contains(k))
            .copied()
            .collect();
        let from_notary = self.notary.as_ref().map_or(0, |n| n.count(notary, &cosign));
        cosign.len() + from_notary
    }

    /// The number of distinct signers the condition lists (keys plus identities).
    pub fn distinct(&self) -> usize {
        self.keys.len() + self.notary.as_ref().map_or(0, |n| n.identities.len())
    }
}

/// The `approved_by` condition: at least `min_approvals` distinct reviewer keys among
/// `reviewers`, from at least `min_organizations` distinct organizations (by the node's own
/// mapping of reviewer key to organization), approved the digest in the log of `store`, and no
/// revocation of it is in that log. The node verifies the evidence and passes the facts in
/// ([`crate::Approvals`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovedBy {
    /// The store's name as the node configuration's `[[stores]]` names it.
    pub store: String,
    /// Distinct reviewer keys by identity, each with the files that held it.
    pub reviewers: BTreeMap<KeyId, Vec<String>>,
    /// The `reviewers` entries (files or globs) as written.
    pub patterns: Vec<String>,
    pub min_approvals: usize,
    pub min_organizations: usize,
}

/// How the node runs an admitted algorithm: which container contract it speaks. A rule without
/// `contract` is [`Contract::Warden`] (docs/algorithm-contract.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Contract {
    /// Warden's own contract: `/mnt/input/input`, `/mnt/output/output`, the proxy's Unix socket.
    #[default]
    Warden,
    /// A container built for a vantage6 4.x node (`vantage6-algorithm-tools` 4.x,
    /// `wrap_algorithm`): its environment, serialisation and the subset of the vantage6 server
    /// API algorithm clients use, served by the node's proxy through a loopback shim
    /// (docs/vantage6.md).
    Vantage6,
}

impl Contract {
    /// Every contract, as spelt in a policy.
    pub const ALL: [Contract; 2] = [Contract::Warden, Contract::Vantage6];

    /// `warden` or `vantage6`, as the policy spells it.
    pub fn name(self) -> &'static str {
        match self {
            Contract::Warden => "warden",
            Contract::Vantage6 => "vantage6",
        }
    }

    /// The contract spelt `name`, if there is one.
    pub fn parse(name: &str) -> Option<Contract> {
        Contract::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One validated rule. `None` means the condition is not stated (it does not restrict).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: RuleId,
    pub repository: RepositoryMatch,
    pub digests: Option<BTreeSet<Digest>>,
    pub signed_by: Option<SignedBy>,
    /// `approved_by` (allow rules only).
    pub approved_by: Option<ApprovedBy>,
    /// `reproduced_by` (allow rules only).
    pub reproduced_by: Option<crate::reproduced::ReproducedBy>,
    pub organizations: Option<BTreeSet<String>>,
    pub users: Option<BTreeSet<String>>,
    pub collaborations: Option<BTreeSet<String>>,
    pub functions: Option<BTreeSet<String>>,
    /// `[allow.output]`; unrestricted for a rule without it and for deny rules.
    pub output: OutputRules,
    /// `contract` (allow rules only): how the admitted container is run.
    pub contract: Contract,
}

impl Rule {
    /// Whether every condition besides the repository is about the requester (organization,
    /// user, collaboration, function), so the rule can be judged before any evidence exists.
    pub fn names_and_requester_only(&self) -> bool {
        self.digests.is_none()
            && self.signed_by.is_none()
            && self.approved_by.is_none()
            && self.reproduced_by.is_none()
    }
}

fn list(f: &mut fmt::Formatter<'_>, key: &str, set: &Option<BTreeSet<String>>) -> fmt::Result {
    if let Some(set) = set {
        let items: Vec<&str> = set.iter().map(String::as_str).collect();
        write!(f, "; {key}: {}", items.join(", "))?;
    }
    Ok(())
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.id, self.repository)?;
        if let Some(d) = &self.digests {
            let items: Vec<String> = d.iter().map(Digest::to_string).collect();
            write!(f, "; digests: {}", items.join(", "))?;
        }
        if let Some(s) = &self.signed_by {
            if s.notary.is_none() {
                write!(
                    f,
                    "; signed_by: {} of {} distinct keys ({})",
                    s.threshold,
                    s.keys.len(),
                    s.files.join(", ")
                )?;
            } else {
                write!(
                    f,
                    "; signed_by: {} of {} distinct",
                    s.threshold,
                    s.distinct()
                )?;
                if !s.keys.is_empty() {
                    write!(f, " keys ({})", s.files.join(", "))?;
                }
                if let Some(n) = &s.notary {
                    let ids: Vec<String> = n.identities.iter().map(|i| i.to_string()).collect();
                    let and = if s.keys.is_empty() { "" } else { " and" };
                    write!(
                        f,
                        "{and} Notary identities ({}; trust store {})",
                        ids.join("; "),
                        n.trust_store_file
                    )?;
                }
            }
        }
        if let Some(a) = &self.approved_by {
            write!(
                f,
                "; approved_by: store {}, {} approvals from {} organizations among {} distinct reviewer keys ({})",
                a.store,
                a.min_approvals,
                a.min_organizations,
                a.reviewers.len(),
                a.patterns.join(", ")
            )?;
        }
        if let Some(r) = &self.reproduced_by {
            write!(f, "; {r}")?;
        }
        list(f, "organizations", &self.organizations)?;
        list(f, "users", &self.users)?;
        list(f, "collaborations", &self.collaborations)?;
        list(f, "functions", &self.functions)?;
        if self.contract != Contract::Warden {
            write!(f, "; contract: {}", self.contract)?;
        }
        if !self.output.is_unrestricted() {
            write!(f, "; output: {}", self.output)?;
        }
        Ok(())
    }
}

/// Finds the rules of one kind that name a repository: exact rules through a hash map, regex
/// rules through one anchored [`RegexSet`] pass.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    exact: HashMap<String, Vec<usize>>,
    regex: RegexSet,
    /// Position in the regex set -> rule index.
    regex_rules: Vec<usize>,
}

impl Index {
    pub(crate) fn new(
        exact: HashMap<String, Vec<usize>>,
        regex: RegexSet,
        regex_rules: Vec<usize>,
    ) -> Self {
        Index {
            exact,
            regex,
            regex_rules,
        }
    }

    /// Indices of the rules that name `repository`, ascending (file order).
    pub(crate) fn candidates(&self, repository: &str) -> Vec<usize> {
        let mut out: Vec<usize> = self.exact.get(repository).cloned().unwrap_or_default();
        if !self.regex_rules.is_empty() {
            out.extend(
                self.regex
                    .matches(repository)
                    .into_iter()
                    .filter_map(|i| self.regex_rules.get(i).copied()),
            );
        }
        out.sort_unstable();
        out
    }
}

/// A loaded, validated policy. Build it with [`Policy::load`] or [`Policy::from_toml_str`].
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) origin: String,
    pub(crate) allow: Vec<Rule>,
    pub(crate) deny: Vec<Rule>,
    pub(crate) allow_index: Index,
    pub(crate) deny_index: Index,
}

impl Policy {
    /// Where the policy came from (its file name), as errors and summaries name it.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The `[[allow]]` rules in file order.
    pub fn allow_rules(&self) -> &[Rule] {
        &self.allow
    }

    /// The `[[deny]]` rules in file order.
    pub fn deny_rules(&self) -> &[Rule] {
        &self.deny
    }

    /// Whether the policy has no rules at all (and so denies everything).
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// The rule with this id, if the policy has it.
    pub fn rule(&self, id: RuleId) -> Option<&Rule> {
        let rules = match id.kind {
            RuleKind::Allow => &self.allow,
            RuleKind::Deny => &self.deny,
        };
        rules.get(id.number.checked_sub(1)?)
    }

    /// The output rules of the allow rule `id` (the rule a [`crate::Decision::Permit`] names);
    /// `None` for a deny rule or a rule this policy does not have.
    pub fn output_rules(&self, id: RuleId) -> Option<&OutputRules> {
        match id.kind {
            RuleKind::Allow => self.rule(id).map(|r| &r.output),
            RuleKind::Deny => None,
        }
    }

    /// The contract of the allow rule `id` (the rule a [`crate::Decision::Permit`] names);
    /// `None` for a deny rule or a rule this policy does not have.
    pub fn contract(&self, id: RuleId) -> Option<Contract> {
        match id.kind {
            RuleKind::Allow => self.rule(id).map(|r| r.contract),
            RuleKind::Deny => None,
        }
    }

    /// The stores whose approvals the allow rules naming `repository` ask for: the evidence a
    /// node must fetch before [`crate::decide_with`].
    pub fn stores_for(&self, repository: &Repository) -> BTreeSet<String> {
        self.rules_naming(RuleKind::Allow, repository)
            .into_iter()
            .filter_map(|r| r.approved_by.as_ref().map(|a| a.store.clone()))
            .collect()
    }

    /// Whether an allow rule naming `repository` asks for `reproduced_by`: the node must then
    /// fetch and verify the digest's build attestations before [`crate::decide_with`].
    pub fn wants_reproduction(&self, repository: &Repository) -> bool {
        self.rules_naming(RuleKind::Allow, repository)
            .iter()
            .any(|r| r.reproduced_by.is_some())
    }

    /// Every store any allow rule names in `approved_by`.
    pub fn stores(&self) -> BTreeSet<String> {
        self.allow
            .iter()
            .filter_map(|r| r.approved_by.as_ref().map(|a| a.store.clone()))
            .collect()
    }

    /// Whether a rule (allow or deny) naming `repository` counts Notary Project signatures:
    /// the evidence a node must fetch before [`crate::decide_with_notary`] (a deny rule on
    /// signers must see them too, or it could never fire).
    pub fn uses_notary(&self, repository: &Repository) -> bool {
        self.rules_naming(RuleKind::Allow, repository)
            .into_iter()
            .chain(self.rules_naming(RuleKind::Deny, repository))
            .any(|r| r.signed_by.as_ref().is_some_and(|s| s.notary.is_some()))
    }

    /// The trust stores of every rule's `signed_by.notary`, in file order (allow, then deny).
    pub fn notary_trust_stores(&self) -> Vec<&TrustStore> {
        self.allow
            .iter()
            .chain(self.deny.iter())
            .filter_map(|r| r.signed_by.as_ref()?.notary.as_ref())
            .map(|n| &n.trust_store)
            .collect()
    }

    /// The rules of `kind` that name `repository` (exactly or by regex), in file order.
    pub fn rules_naming(&self, kind: RuleKind, repository: &Repository) -> Vec<&Rule> {
        let (rules, index) = match kind {
            RuleKind::Allow => (&self.allow, &self.allow_index),
            RuleKind::Deny => (&self.deny, &self.deny_index),
        };
        index
            .candidates(&repository.to_string())
            .into_iter()
            .filter_map(|i| rules.get(i))
            .collect()
    }
}
