//! Who may do what: a pure function of the actor and the facts of the target, returning a
//! permit or a denial with its reason. No I/O; the service gathers the facts first.
//!
//! Scopes: `root` is global. `org_admin`, `researcher` and `viewer` act for their own
//! organization and see only the collaborations that organization is a member of. A node acts
//! for one organization in one collaboration. A run token acts for one running algorithm: it may
//! only create subtasks in its collaboration with its own admitted image digest, and read the
//! subtasks (and their results) that it created. Everything else is denied.

use warden_api::Role;

/// The authenticated caller, resolved by the service from a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User {
        id: i64,
        /// The user's name (names never change), read with the token.
        username: String,
        role: Role,
        /// `None` only for root.
        organization_id: Option<i64>,
        /// Collaborations the user's organization is a member of.
        collaborations: Vec<i64>,
    },
    Node {
        id: i64,
        organization_id: i64,
        collaboration_id: i64,
    },
    Run {
        run_id: i64,
        task_id: i64,
        organization_id: i64,
        collaboration_id: i64,
        /// The digest the node admitted; subtasks must use exactly this image.
        digest: Option<String>,
        /// The normalised repository of the run's task image; subtasks must use the same.
        repository: String,
    },
}

impl Actor {
    /// Collaborations this actor can see; `None` means all (root).
    pub fn visible_collaborations(&self) -> Option<Vec<i64>> {
        match self {
            Actor::User {
                role: Role::Root, ..
            } => None,
            Actor::User { collaborations, .. } => Some(collaborations.clone()),
            Actor::Node {
                collaboration_id, ..
            }
            | Actor::Run {
                collaboration_id, ..
            } => Some(vec![*collaboration_id]),
        }
    }

    fn is_root(&self) -> bool {
        matches!(
            self,
            Actor::User {
                role: Role::Root,
                ..
            }
        )
    }
}

/// An action together with the facts about its target that the decision depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op<'a> {
    CreateOrganization,
    ReadOrganization {
        organization_id: i64,
        /// Collaborations the target organization is a member of.
        collaborations: &'a [i64],
    },
    CreateCollaboration,
    /// Add an organization to a collaboration.
    AddMember,
    /// Remove an organization from a collaboration.
    RemoveMember,
    ReadCollaboration {
        collaboration_id: i64,
    },
    CreateUser {
        organization_id: Option<i64>,
        role: Role,
    },
    ReadUser {
        user_id: i64,
        organization_id: Option<i64>,
    },
    /// A user changes their own password (giving the current one).
    ChangeOwnPassword,
    /// Set another user's password.
    ResetPassword {
        user_id: i64,
        organization_id: Option<i64>,
    },
    /// Disable or enable a user.
    SetUserDisabled {
        user_id: i64,
        organization_id: Option<i64>,
        disabled: bool,
        /// The target is a root user and no other root user is enabled.
        last_enabled_root: bool,
    },
    CreateNode {
        organization_id: i64,
    },
    ReadNode {
        node_id: i64,
        organization_id: i64,
    },
    /// Replace a node's API key.
    RotateNodeKey {
        node_id: i64,
        organization_id: i64,
    },
    CreateTask {
        collaboration_id: i64,
        /// Digest pinned in the requested image reference, if any.
        digest: Option<&'a str>,
        /// Normalised repository of the requested image.
        repository: &'a str,
        parent_task_id: Option<i64>,
    },
    ReadTask {
        collaboration_id: i64,
        creator_run_id: Option<i64>,
    },
    /// Cancel a task: its requester, an org admin of the organization that created it, root.
    CancelTask {
        collaboration_id: i64,
        /// The organization that created the task.
        task_organization_id: i64,
        /// The user on whose behalf the task runs (for a subtask, the root task's creator).
        requester_user_id: Option<i64>,
    },
    ReadRun {
        collaboration_id: i64,
        organization_id: i64,
        creator_run_id: Option<i64>,
    },
    /// Node-side operations on a run: acknowledge, read input, change state, upload result,
    /// obtain the run token.
    OperateRun {
        collaboration_id: i64,
        organization_id: i64,
    },
    ReadResult {
        collaboration_id: i64,
        /// The organization that created the task (results are sealed for it).
        task_organization_id: i64,
        creator_run_id: Option<i64>,
    },
    ReceiveEvents,
}

/// Proof that a check passed; privileged service paths take it as an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Permit(());

/// A denial and its reason (logged, and returned as the 403 message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub &'static str);

fn allow_if(cond: bool, reason: &'static str) -> Result<Permit, Denied> {
    if cond {
        Ok(Permit(()))
    } else {
        Err(Denied(reason))
    }
}

const NOT_MEMBER: &str = "your organization is not a member of this collaboration";
const OTHER_ORG: &str = "this belongs to another organization";
const NOT_ROLE: &str = "your role does not allow this action";
const NODE_ONLY: &str = "only the node of the run's organization may do this";
const RUN_SCOPE: &str = "an algorithm token only allows subtasks of its own run";
const SELF_DISABLE: &str = "you cannot disable your own account; ask another administrator";
const LAST_ROOT: &str =
    "this is the last enabled root user; enable or create another root user first";
const OWN_PASSWORD: &str = "change your own password with POST /api/users/me/password, which \
                            asks for the current one";

/// Rules about accounts that hold for every administrator, root included: nobody disables
/// themselves, and nobody resets their own password without giving the current one. Checked
/// before the role: they tell the actor nothing it does not know.
fn account_rules(actor_id: i64, op: &Op<'_>) -> Result<(), Denied> {
    match op {
        Op::SetUserDisabled {
            user_id,
            disabled: true,
            ..
        } if *user_id == actor_id => Err(Denied(SELF_DISABLE)),
        Op::ResetPassword { user_id, .. } if *user_id == actor_id => Err(Denied(OWN_PASSWORD)),
        _ => Ok(()),
    }
}

/// Nobody disables the last enabled root. Checked only after the role allowed the change, so
/// that an account which may not disable that user learns nothing about the root accounts.
fn last_root_rule(op: &Op<'_>) -> Result<(), Denied> {
    match op {
        Op::SetUserDisabled {
            disabled: true,
            last_enabled_root: true,
            ..
        } => Err(Denied(LAST_ROOT)),
        _ => Ok(()),
    }
}

/// The decision: the account rules, the actor's role, then the last-root rule.
pub fn check(actor: &Actor, op: &Op<'_>) -> Result<Permit, Denied> {
    if let Actor::User { id, .. } = actor {
        account_rules(*id, op)?;
    }
    let permit = by_role(actor, op)?;
    last_root_rule(op)?;
    Ok(permit)
}

/// What the actor's role allows. Deny is the fallback of every arm.
fn by_role(actor: &Actor, op: &Op<'_>) -> Result<Permit, Denied> {
    if actor.is_root() {
        return match op {
            Op::OperateRun { .. } | Op::ReceiveEvents => Err(Denied(NODE_ONLY)),
            Op::CreateTask { .. } => Err(Denied(
                "root has no organization to receive results; use an organization account",
            )),
            _ => Ok(Permit(())),
        };
    }
    match actor {
        Actor::User {
            id,
            role,
            organization_id,
            collaborations,
            ..
        } => {
            let own = *organization_id;
            let member = |c: &i64| collaborations.contains(c);
            let can_write = matches!(role, Role::OrgAdmin | Role::Researcher);
            match op {
                Op::CreateOrganization
                | Op::CreateCollaboration
                | Op::AddMember
                | Op::RemoveMember => Err(Denied("only root may do this")),
                Op::ReadOrganization {
                    organization_id,
                    collaborations: theirs,
                } => allow_if(
                    own == Some(*organization_id) || theirs.iter().any(member),
                    "this organization shares no collaboration with yours",
                ),
                Op::ReadCollaboration { collaboration_id } => {
                    allow_if(member(collaboration_id), NOT_MEMBER)
                }
                Op::CreateUser {
                    organization_id,
                    role: new_role,
                } => {
                    if *role != Role::OrgAdmin {
                        Err(Denied(NOT_ROLE))
                    } else if *new_role == Role::Root {
                        Err(Denied("only root may create root users"))
                    } else {
                        allow_if(*organization_id == own, OTHER_ORG)
                    }
                }
                Op::ReadUser {
                    user_id,
                    organization_id,
                } => allow_if(
                    user_id == id || (*role == Role::OrgAdmin && *organization_id == own),
                    OTHER_ORG,
                ),
                Op::ChangeOwnPassword => Ok(Permit(())),
                Op::ResetPassword {
                    organization_id, ..
                }
                | Op::SetUserDisabled {
                    organization_id, ..
                } => {
                    if *role != Role::OrgAdmin {
                        Err(Denied(NOT_ROLE))
                    } else {
                        // Root users have no organization, so this also keeps them out of reach.
                        allow_if(
                            organization_id.is_some() && *organization_id == own,
                            OTHER_ORG,
                        )
                    }
                }
                Op::CreateNode { organization_id }
                | Op::RotateNodeKey {
                    organization_id, ..
                } => {
                    if *role != Role::OrgAdmin {
                        Err(Denied(NOT_ROLE))
                    } else {
                        allow_if(Some(*organization_id) == own, OTHER_ORG)
                    }
                }
                Op::ReadNode {
                    organization_id, ..
                } => allow_if(Some(*organization_id) == own, OTHER_ORG),
                Op::CreateTask {
                    collaboration_id, ..
                } => {
                    if !can_write {
                        Err(Denied(NOT_ROLE))
                    } else {
                        allow_if(member(collaboration_id), NOT_MEMBER)
                    }
                }
                Op::ReadTask {
                    collaboration_id, ..
                }
                | Op::ReadRun {
                    collaboration_id, ..
                } => allow_if(member(collaboration_id), NOT_MEMBER),
                Op::ReadResult {
                    collaboration_id,
                    task_organization_id,
                    ..
                } => {
                    if !can_write {
                        Err(Denied(NOT_ROLE))
                    } else if !member(collaboration_id) {
                        Err(Denied(NOT_MEMBER))
                    } else {
                        allow_if(
                            own == Some(*task_organization_id),
                            "results are only for the organization that created the task",
                        )
                    }
                }
                Op::CancelTask {
                    collaboration_id,
                    task_organization_id,
                    requester_user_id,
                } => {
                    if !can_write {
                        Err(Denied(NOT_ROLE))
                    } else if !member(collaboration_id) {
                        Err(Denied(NOT_MEMBER))
                    } else if own != Some(*task_organization_id) {
                        Err(Denied(
                            "only the organization that created the task may cancel it",
                        ))
                    } else {
                        allow_if(
                            *role == Role::OrgAdmin || *requester_user_id == Some(*id),
                            "only the task's requester or an administrator of its organization may cancel it",
                        )
                    }
                }
                Op::OperateRun { .. } | Op::ReceiveEvents => Err(Denied(NODE_ONLY)),
            }
        }
        Actor::Node {
            id,
            organization_id: own,
            collaboration_id: collab,
        } => match op {
            Op::ReadOrganization { collaborations, .. } => allow_if(
                collaborations.contains(collab),
                "this organization is not in your collaboration",
            ),
            Op::ReadCollaboration { collaboration_id } => {
                allow_if(collaboration_id == collab, NOT_MEMBER)
            }
            Op::ReadNode { node_id, .. } => allow_if(node_id == id, "a node may only read itself"),
            Op::ReadTask {
                collaboration_id, ..
            } => allow_if(collaboration_id == collab, NOT_MEMBER),
            Op::ReadRun {
                collaboration_id,
                organization_id,
                ..
            }
            | Op::OperateRun {
                collaboration_id,
                organization_id,
            } => allow_if(
                collaboration_id == collab && organization_id == own,
                "this run is not for your node",
            ),
            Op::ReceiveEvents => Ok(Permit(())),
            _ => Err(Denied("a node may not do this")),
        },
        Actor::Run {
            run_id,
            task_id,
            collaboration_id: collab,
            digest,
            repository: own_repository,
            ..
        } => match op {
            Op::CreateTask {
                collaboration_id,
                digest: wanted,
                repository,
                parent_task_id,
            } => {
                if collaboration_id != collab {
                    Err(Denied("subtasks must stay in the run's collaboration"))
                } else if parent_task_id.is_some_and(|p| p != *task_id) {
                    Err(Denied("a subtask's parent must be the run's own task"))
                } else if repository != own_repository {
                    Err(Denied(
                        "subtasks must use the run's own image: the repository differs from the parent task's",
                    ))
                } else {
                    match (digest.as_deref(), *wanted) {
                        (Some(have), Some(want)) if have == want => Ok(Permit(())),
                        (None, _) => Err(Denied("the run has no admitted digest yet")),
                        _ => Err(Denied(
                            "subtasks must use the run's own image pinned by its admitted digest",
                        )),
                    }
                }
            }
            Op::ReadCollaboration { collaboration_id } => {
                allow_if(collaboration_id == collab, NOT_MEMBER)
            }
            Op::ReadOrganization { collaborations, .. } => allow_if(
                collaborations.contains(collab),
                "this organization is not in your collaboration",
            ),
            Op::ReadTask { creator_run_id, .. }
            | Op::ReadRun { creator_run_id, .. }
            | Op::ReadResult { creator_run_id, .. } => {
                allow_if(*creator_run_id == Some(*run_id), RUN_SCOPE)
            }
            _ => Err(Denied(RUN_SCOPE)),
        },
    }
}

#[cfg(test)]
mod tests;
