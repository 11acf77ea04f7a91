//! The store's decisions as pure functions: who may do what ([`permit`]), the version state
//! machine, and the review rules ([`tally`]). No I/O; the service gathers the facts and passes
//! them in, and every refusal says why.

use std::collections::BTreeSet;

use warden_api::store::{StoreRole, VersionState};

use crate::config::ReviewConfig;

#[cfg(test)]
mod tests;

/// Who is asking: an account's name, organization and roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: i64,
    pub username: String,
    pub organization: i64,
    pub roles: BTreeSet<StoreRole>,
}

impl Actor {
    pub fn has(&self, role: StoreRole) -> bool {
        self.roles.contains(&role)
    }
}

/// A version as the decisions see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionFacts {
    pub state: VersionState,
    /// The account that submitted it.
    pub submitter: i64,
    /// The algorithm's maintaining organization.
    pub organization: i64,
}

/// A reviewer as the decisions see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewerFacts {
    pub id: i64,
    pub organization: i64,
    pub roles: BTreeSet<StoreRole>,
    pub has_key: bool,
}

/// What is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<'a> {
    CreateOrganization,
    CreateAccount,
    RegisterOwnKey,
    /// Submit a version of an algorithm maintained by this organization (`None`: a new
    /// algorithm, maintained by the submitter's organization).
    Submit {
        maintainer: Option<i64>,
    },
    /// Assign `reviewer` to the version.
    Assign {
        version: &'a VersionFacts,
        reviewer: &'a ReviewerFacts,
        already_assigned: bool,
    },
    /// Approve or reject (a signed envelope); `assigned` whether the actor is assigned.
    Review {
        version: &'a VersionFacts,
        assigned: bool,
    },
    /// Revoke; `signed` whether the actor brings its own signed envelope.
    Revoke {
        version: &'a VersionFacts,
        signed: bool,
    },
    Reinstate {
        version: &'a VersionFacts,
    },
}

/// A typed refusal; `Display` is the reason given to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("this needs the {0} role")]
    Role(&'static str),
    #[error("{0}")]
    Rule(String),
    /// The version's state does not allow it (HTTP 409).
    #[error("{0}")]
    State(String),
}

fn role(actor: &Actor, r: StoreRole) -> Result<(), Denied> {
    if actor.has(r) {
        Ok(())
    } else {
        Err(Denied::Role(r.as_str()))
    }
}

fn state_in(v: &VersionFacts, ok: &[VersionState], what: &str) -> Result<(), Denied> {
    if ok.contains(&v.state) {
        Ok(())
    } else {
        Err(Denied::State(format!(
            "the version is {}; {what}",
            v.state.as_str()
        )))
    }
}

/// May `actor` do `action`? Deny is the fallback: every arm names what it allows.
pub fn permit(actor: &Actor, action: &Action<'_>, rules: &ReviewConfig) -> Result<(), Denied> {
    match action {
        Action::CreateOrganization | Action::CreateAccount => role(actor, StoreRole::Administrator),
        Action::RegisterOwnKey => Ok(()),
        Action::Submit { maintainer } => {
            if !actor.has(StoreRole::Developer) && !actor.has(StoreRole::Administrator) {
                return Err(Denied::Role("developer"));
            }
            match maintainer {
                Some(org) if *org != actor.organization => Err(Denied::Rule(
                    "the algorithm is maintained by another organization; only its members submit versions of it"
                        .into(),
                )),
                _ => Ok(()),
            }
        }
        Action::Assign {
            version,
            reviewer,
            already_assigned,
        } => {
            let self_assign = reviewer.id == actor.id;
            if !actor.has(StoreRole::Administrator) {
                if !self_assign {
                    return Err(Denied::Rule(
                        "only an administrator assigns another reviewer; a reviewer may take a version for itself"
                            .into(),
                    ));
                }
                role(actor, StoreRole::Reviewer)?;
            }
            state_in(
                version,
                &[VersionState::Submitted, VersionState::UnderReview],
                "only a version waiting for review takes reviewers",
            )?;
            if !reviewer.roles.contains(&StoreRole::Reviewer) {
                return Err(Denied::Rule(
                    "the account assigned is not a reviewer".into(),
                ));
            }
            if reviewer.id == version.submitter {
                return Err(Denied::Rule(
                    "nobody reviews a version they submitted".into(),
                ));
            }
            if rules.reviewers_from_other_organization
                && reviewer.organization == version.organization
            {
                return Err(Denied::Rule(
                    "reviewers must come from an organization other than the algorithm's maintainer"
                        .into(),
                ));
            }
            if !reviewer.has_key {
                return Err(Denied::Rule(
                    "the reviewer has no registered public key; register one with PUT /api/me/key first"
                        .into(),
                ));
            }
            if *already_assigned {
                return Err(Denied::State(
                    "the reviewer is already assigned to this version".into(),
                ));
            }
            Ok(())
        }
        Action::Review { version, assigned } => {
            role(actor, StoreRole::Reviewer)?;
            if actor.id == version.submitter {
                return Err(Denied::Rule(
                    "nobody reviews a version they submitted".into(),
                ));
            }
            state_in(
                version,
                &[VersionState::UnderReview],
                "only a version under review takes reviews (an approved version is immutable)",
            )?;
            if !assigned {
                return Err(Denied::Rule(
                    "you are not assigned to this version; take it first (assign yourself)".into(),
                ));
            }
            Ok(())
        }
        Action::Revoke { version, signed } => {
            if *signed {
                role(actor, StoreRole::Reviewer)?;
            } else {
                role(actor, StoreRole::Administrator)?;
            }
            state_in(
                version,
                &[VersionState::Approved, VersionState::Replaced],
                "only an approved or replaced version is revoked",
            )
        }
        Action::Reinstate { version } => {
            role(actor, StoreRole::Administrator)?;
            state_in(
                version,
                &[VersionState::Replaced],
                "only a replaced version is reinstated",
            )
        }
    }
}

/// One valid approval or rejection counted by [`tally`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    pub reviewer: i64,
    pub organization: i64,
    pub approve: bool,
}

/// Where a version stands after its reviews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tally {
    /// One rejection rejects.
    Rejected,
    Approved,
    /// Still short: how many approvals and organizations it has.
    Pending {
        approvals: usize,
        organizations: usize,
    },
}

/// The review rules over the valid votes (distinct reviewers; the latest vote of a reviewer
/// counts once).
pub fn tally(votes: &[Vote], rules: &ReviewConfig) -> Tally {
    if votes.iter().any(|v| !v.approve) {
        return Tally::Rejected;
    }
    let reviewers: BTreeSet<i64> = votes.iter().map(|v| v.reviewer).collect();
    let orgs: BTreeSet<i64> = votes.iter().map(|v| v.organization).collect();
    if reviewers.len() >= rules.min_approvals as usize
        && orgs.len() >= rules.min_organizations as usize
    {
        Tally::Approved
    } else {
        Tally::Pending {
            approvals: reviewers.len(),
            organizations: orgs.len(),
        }
    }
}
