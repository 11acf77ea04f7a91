//! `reproduced_by` on allow rules (issue 15): at least `min` DISTINCT pinned builder keys attest,
//! in signed SLSA provenance, a build of exactly this digest from one source commit (and path).
//!
//! The node fetches the attestations from the registry and verifies each DSSE envelope against
//! the keys its policy pins ([`BuildFacts`]); this module only counts, per rule. Kept apart from
//! `signed_by` and `approved_by` so the conditions evolve independently.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use warden_trust::KeyId;

/// The `reproduced_by` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReproducedBy {
    /// Distinct builder keys by identity, each with the files that held it.
    pub keys: BTreeMap<KeyId, Vec<String>>,
    /// The `keys` entries (files or globs) as written.
    pub patterns: Vec<String>,
    /// How many distinct builder keys must agree.
    pub min: usize,
}

/// One build provenance of the digest being decided, as the NODE verified it: a DSSE envelope
/// signed by `signers` (keys the node pins), an in-toto statement about exactly this digest,
/// SLSA v1 provenance of Warden's build type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildAttestation {
    pub signers: BTreeSet<KeyId>,
    pub commit: String,
    pub path: String,
}

/// The build attestations of the digest being decided, for `reproduced_by`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildFacts {
    /// Whether the node fetched and verified them; `false` fails every `reproduced_by`.
    pub checked: bool,
    /// The envelopes that verified.
    pub attested: Vec<BuildAttestation>,
    /// How many envelopes did not verify (forged, another digest, a key not pinned, ...).
    pub rejected: usize,
    /// Why the attestations could not be fetched; `Some` fails every `reproduced_by`.
    pub unavailable: Option<String>,
}

/// Why a `reproduced_by` did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooFewBuilders {
    pub min: usize,
    /// The commit the counted builders agree on.
    pub commit: Option<String>,
    /// The files of the counted builder keys (one per key).
    pub builders: Vec<String>,
    /// Verified attestations by this rule's keys naming another commit or path.
    pub other_commits: usize,
    /// Verified attestations by keys this rule does not pin.
    pub not_pinned: usize,
    /// Envelopes that did not verify at the node.
    pub rejected: usize,
    /// The attestations were not checked or could not be fetched.
    pub unavailable: Option<String>,
}

impl fmt::Display for TooFewBuilders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(why) = &self.unavailable {
            return write!(
                f,
                "build attestations could not be checked ({why}); reproduced_by fails closed"
            );
        }
        write!(
            f,
            "reproduced_by needs {} distinct builders; {} attest{} this digest",
            self.min,
            self.builders.len(),
            if self.builders.len() == 1 { "s" } else { "" }
        )?;
        if !self.builders.is_empty() {
            write!(f, " ({})", self.builders.join(", "))?;
        }
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        if self.other_commits > 0 {
            write!(
                f,
                ", {} attestation{} name{} another commit",
                self.other_commits,
                plural(self.other_commits),
                if self.other_commits == 1 { "s" } else { "" }
            )?;
        }
        if self.not_pinned > 0 {
            write!(
                f,
                ", {} attestation{} by keys the rule does not pin",
                self.not_pinned,
                plural(self.not_pinned)
            )?;
        }
        if self.rejected > 0 {
            write!(
                f,
                ", {} attestation{} did not verify",
                self.rejected,
                plural(self.rejected)
            )?;
        }
        Ok(())
    }
}

/// What a `reproduced_by` counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub commit: Option<String>,
    pub path: Option<String>,
    pub builders: BTreeSet<KeyId>,
    pub other_commits: usize,
    pub not_pinned: usize,
}

impl ReproducedBy {
    /// Groups the verified attestations by (commit, path) over this rule's keys and picks the
    /// group with the most distinct keys (ties: the smallest commit).
    pub fn count(&self, facts: &BuildFacts) -> Counted {
        let mut groups: BTreeMap<(&str, &str), BTreeSet<KeyId>> = BTreeMap::new();
        let mut not_pinned = 0;
        for a in &facts.attested {
            let ours: BTreeSet<KeyId> = a
                .signers
                .iter()
                .filter(|k| self.keys.contains_key(k))
                .copied()
                .collect();
            if ours.is_empty() {
                not_pinned += 1;
                continue;
            }
            groups
                .entry((a.commit.as_str(), a.path.as_str()))
                .or_default()
                .extend(ours);
        }
        let best = groups
            .iter()
            .fold(
                None::<(&(&str, &str), &BTreeSet<KeyId>)>,
                |best, cur| match best {
                    Some(b) if b.1.len() >= cur.1.len() => Some(b),
                    _ => Some(cur),
                },
            )
            .map(|(k, v)| (*k, v.clone()));
        let other_commits = match &best {
            Some((source, _)) => facts
                .attested
                .iter()
                .filter(|a| {
                    (a.commit.as_str(), a.path.as_str()) != *source
                        && a.signers.iter().any(|k| self.keys.contains_key(k))
                })
                .count(),
            None => 0,
        };
        match best {
            Some(((c, p), keys)) => Counted {
                commit: Some(c.to_owned()),
                path: Some(p.to_owned()),
                builders: keys,
                other_commits,
                not_pinned,
            },
            None => Counted {
                commit: None,
                path: None,
                builders: BTreeSet::new(),
                other_commits,
                not_pinned,
            },
        }
    }

    /// Whether the condition holds over `facts`; why not otherwise.
    pub fn judge(&self, facts: &BuildFacts) -> Result<Counted, TooFewBuilders> {
        let unavailable = if !facts.checked {
            Some(
                "not checked: `warden image verify` and the node fetch and verify them from the registry"
                    .to_owned(),
            )
        } else {
            facts.unavailable.clone()
        };
        if let Some(why) = unavailable {
            return Err(TooFewBuilders {
                min: self.min,
                commit: None,
                builders: Vec::new(),
                other_commits: 0,
                not_pinned: 0,
                rejected: 0,
                unavailable: Some(why),
            });
        }
        let c = self.count(facts);
        if c.builders.len() >= self.min && self.min > 0 {
            return Ok(c);
        }
        Err(TooFewBuilders {
            min: self.min,
            commit: c.commit.clone(),
            builders: c
                .builders
                .iter()
                .map(|k| {
                    self.keys
                        .get(k)
                        .and_then(|f| f.first().cloned())
                        .unwrap_or_else(|| k.to_string())
                })
                .collect(),
            other_commits: c.other_commits,
            not_pinned: c.not_pinned,
            rejected: facts.rejected,
            unavailable: None,
        })
    }
}

impl fmt::Display for ReproducedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reproduced_by: {} of {} distinct builder keys ({}) from one commit",
            self.min,
            self.keys.len(),
            self.patterns.join(", ")
        )
    }
}
