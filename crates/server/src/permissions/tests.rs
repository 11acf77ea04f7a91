//! The permission table: organizations 1, 2, 3; collaboration 10 = {1, 2}, 20 = {2, 3}.

use warden_api::Role;

use super::*;

fn user(id: i64, role: Role, org: i64, collabs: &[i64]) -> Actor {
    Actor::User {
        id,
        username: format!("user-{id}"),
        role,
        organization_id: Some(org),
        collaborations: collabs.to_vec(),
    }
}

fn root() -> Actor {
    Actor::User {
        id: 1000,
        username: "root".into(),
        role: Role::Root,
        organization_id: None,
        collaborations: vec![],
    }
}

fn admin1() -> Actor {
    user(1, Role::OrgAdmin, 1, &[10])
}
fn researcher1() -> Actor {
    user(2, Role::Researcher, 1, &[10])
}
fn viewer1() -> Actor {
    user(3, Role::Viewer, 1, &[10])
}
fn researcher3() -> Actor {
    user(4, Role::Researcher, 3, &[20])
}
fn node1() -> Actor {
    Actor::Node {
        id: 100,
        organization_id: 1,
        collaboration_id: 10,
    }
}
fn node2_in_20() -> Actor {
    Actor::Node {
        id: 101,
        organization_id: 2,
        collaboration_id: 20,
    }
}
fn run1() -> Actor {
    Actor::Run {
        run_id: 500,
        task_id: 50,
        organization_id: 1,
        collaboration_id: 10,
        digest: Some("sha256:aa".into()),
        repository: REPO.into(),
    }
}

/// The normalised repository of `run1`'s task image.
const REPO: &str = "registry.example.org/team/avg";

#[track_caller]
fn check_case(actor: Actor, op: Op<'_>, allowed: bool) {
    let got = check(&actor, &op);
    assert_eq!(got.is_ok(), allowed, "{actor:?} {op:?} -> {got:?}");
}

#[test]
fn organizations_and_collaborations() {
    let org2 = Op::ReadOrganization {
        organization_id: 2,
        collaborations: &[10, 20],
    };
    let org3 = Op::ReadOrganization {
        organization_id: 3,
        collaborations: &[20],
    };
    check_case(root(), Op::CreateOrganization, true);
    check_case(root(), Op::CreateCollaboration, true);
    check_case(root(), Op::AddMember, true);
    check_case(root(), Op::RemoveMember, true);
    for a in [admin1(), researcher1(), viewer1(), node1(), run1()] {
        check_case(a.clone(), Op::CreateOrganization, false);
        check_case(a.clone(), Op::CreateCollaboration, false);
        check_case(a.clone(), Op::AddMember, false);
        check_case(a.clone(), Op::RemoveMember, false);
        check_case(a.clone(), org2.clone(), true);
        check_case(a.clone(), org3.clone(), false);
        check_case(
            a.clone(),
            Op::ReadCollaboration {
                collaboration_id: 10,
            },
            true,
        );
        check_case(
            a,
            Op::ReadCollaboration {
                collaboration_id: 20,
            },
            false,
        );
    }
    check_case(researcher3(), org3.clone(), true);
    check_case(
        researcher3(),
        Op::ReadCollaboration {
            collaboration_id: 10,
        },
        false,
    );
    check_case(
        node2_in_20(),
        Op::ReadCollaboration {
            collaboration_id: 10,
        },
        false,
    );
    check_case(node2_in_20(), org3, true);
}

#[test]
fn users() {
    let new = |org: Option<i64>, role| Op::CreateUser {
        organization_id: org,
        role,
    };
    check_case(root(), new(None, Role::Root), true);
    check_case(root(), new(Some(3), Role::OrgAdmin), true);
    check_case(admin1(), new(Some(1), Role::Researcher), true);
    check_case(admin1(), new(Some(1), Role::OrgAdmin), true);
    check_case(admin1(), new(Some(1), Role::Root), false);
    check_case(admin1(), new(None, Role::Root), false);
    check_case(admin1(), new(Some(2), Role::Viewer), false);
    for a in [researcher1(), viewer1(), node1(), run1()] {
        check_case(a, new(Some(1), Role::Viewer), false);
    }
    let read = |id, org| Op::ReadUser {
        user_id: id,
        organization_id: Some(org),
    };
    check_case(admin1(), read(2, 1), true);
    check_case(admin1(), read(4, 3), false);
    check_case(researcher1(), read(2, 1), true);
    check_case(researcher1(), read(3, 1), false);
    check_case(viewer1(), read(3, 1), true);
    check_case(node1(), read(2, 1), false);
    check_case(run1(), read(2, 1), false);
    check_case(root(), read(4, 3), true);
}

#[test]
fn nodes() {
    check_case(root(), Op::CreateNode { organization_id: 2 }, true);
    check_case(admin1(), Op::CreateNode { organization_id: 1 }, true);
    check_case(admin1(), Op::CreateNode { organization_id: 2 }, false);
    check_case(researcher1(), Op::CreateNode { organization_id: 1 }, false);
    check_case(node1(), Op::CreateNode { organization_id: 1 }, false);
    let read = |node_id, org| Op::ReadNode {
        node_id,
        organization_id: org,
    };
    check_case(viewer1(), read(100, 1), true);
    check_case(viewer1(), read(101, 2), false);
    check_case(node1(), read(100, 1), true);
    check_case(node1(), read(102, 1), false);
    check_case(run1(), read(100, 1), false);
}

#[test]
fn tasks() {
    let create = |c, d: Option<&'static str>, p| Op::CreateTask {
        collaboration_id: c,
        digest: d,
        repository: REPO,
        parent_task_id: p,
    };
    let create_in = |repository, d: Option<&'static str>| Op::CreateTask {
        collaboration_id: 10,
        digest: d,
        repository,
        parent_task_id: Some(50),
    };
    check_case(root(), create(10, None, None), false);
    check_case(admin1(), create(10, None, None), true);
    check_case(researcher1(), create(10, None, None), true);
    check_case(researcher1(), create(20, None, None), false);
    check_case(viewer1(), create(10, None, None), false);
    check_case(node1(), create(10, None, None), false);
    check_case(run1(), create(10, Some("sha256:aa"), Some(50)), true);
    check_case(run1(), create(10, Some("sha256:aa"), None), true);
    check_case(run1(), create(10, Some("sha256:bb"), Some(50)), false);
    check_case(run1(), create(10, None, Some(50)), false);
    check_case(run1(), create(20, Some("sha256:aa"), Some(50)), false);
    check_case(run1(), create(10, Some("sha256:aa"), Some(51)), false);
    let no_digest = Actor::Run {
        run_id: 500,
        task_id: 50,
        organization_id: 1,
        collaboration_id: 10,
        digest: None,
        repository: REPO.into(),
    };
    check_case(no_digest, create(10, Some("sha256:aa"), Some(50)), false);
    // The same digest in another repository (a copy anyone could push) is not the run's image.
    check_case(run1(), create_in(REPO, Some("sha256:aa")), true);
    for other in [
        "registry.example.org/team/other",
        "registry.example.org/team/avg/sub",
        "registry.example.org/team/av",
        "evil.example.org/team/avg",
        "docker.io/library/avg",
    ] {
        check_case(run1(), create_in(other, Some("sha256:aa")), false);
    }
    // Users are not bound to a repository.
    check_case(
        researcher1(),
        create_in("docker.io/library/avg", None),
        true,
    );

    let read = |c, r| Op::ReadTask {
        collaboration_id: c,
        creator_run_id: r,
    };
    check_case(root(), read(20, None), true);
    check_case(viewer1(), read(10, None), true);
    check_case(viewer1(), read(20, None), false);
    check_case(node1(), read(10, None), true);
    check_case(node1(), read(20, None), false);
    check_case(run1(), read(10, None), false);
    check_case(run1(), read(10, Some(500)), true);
    check_case(run1(), read(10, Some(501)), false);
}

#[test]
fn runs_and_results() {
    let read = |c, o, r| Op::ReadRun {
        collaboration_id: c,
        organization_id: o,
        creator_run_id: r,
    };
    let operate = |c, o| Op::OperateRun {
        collaboration_id: c,
        organization_id: o,
    };
    check_case(researcher1(), read(10, 2, None), true);
    check_case(researcher3(), read(10, 2, None), false);
    check_case(node1(), read(10, 1, None), true);
    check_case(node1(), read(10, 2, None), false);
    check_case(node2_in_20(), read(10, 2, None), false);
    check_case(run1(), read(10, 2, Some(500)), true);
    check_case(run1(), read(10, 2, None), false);

    check_case(node1(), operate(10, 1), true);
    check_case(node1(), operate(10, 2), false);
    check_case(node2_in_20(), operate(10, 2), false);
    for a in [root(), admin1(), researcher1(), viewer1(), run1()] {
        check_case(a.clone(), operate(10, 1), false);
        check_case(a, Op::ReceiveEvents, false);
    }
    check_case(node1(), Op::ReceiveEvents, true);

    let result = |c, o, r| Op::ReadResult {
        collaboration_id: c,
        task_organization_id: o,
        creator_run_id: r,
    };
    check_case(root(), result(10, 1, None), true);
    check_case(researcher1(), result(10, 1, None), true);
    check_case(admin1(), result(10, 1, None), true);
    check_case(researcher1(), result(10, 2, None), false);
    check_case(viewer1(), result(10, 1, None), false);
    check_case(researcher3(), result(10, 3, None), false);
    check_case(node1(), result(10, 1, None), false);
    check_case(run1(), result(10, 1, Some(500)), true);
    check_case(run1(), result(10, 1, None), false);
}

#[test]
fn account_changes() {
    // Users: admin1 = 1 (org 1), researcher1 = 2 (org 1), viewer1 = 3 (org 1),
    // researcher3 = 4 (org 3), root = 1000, another root = 1001.
    let reset = |id, org| Op::ResetPassword {
        user_id: id,
        organization_id: org,
    };
    let disable = |id, org, disabled, last| Op::SetUserDisabled {
        user_id: id,
        organization_id: org,
        disabled,
        last_enabled_root: last,
    };
    // Everyone with a user account changes their own password; nodes and runs cannot.
    for a in [root(), admin1(), researcher1(), viewer1(), researcher3()] {
        check_case(a, Op::ChangeOwnPassword, true);
    }
    check_case(node1(), Op::ChangeOwnPassword, false);
    check_case(run1(), Op::ChangeOwnPassword, false);

    // Root: anyone but itself; never the last enabled root.
    check_case(root(), reset(2, Some(1)), true);
    check_case(root(), reset(1001, None), true);
    check_case(root(), reset(1000, None), false);
    check_case(root(), disable(4, Some(3), true, false), true);
    check_case(root(), disable(4, Some(3), false, false), true);
    check_case(root(), disable(1001, None, true, false), true);
    check_case(root(), disable(1001, None, true, true), false);
    check_case(root(), disable(1000, None, true, false), false);
    check_case(root(), disable(1001, None, false, false), true);

    // An organization admin: users of its own organization only, never root, never itself.
    check_case(admin1(), reset(2, Some(1)), true);
    check_case(admin1(), reset(3, Some(1)), true);
    check_case(admin1(), reset(4, Some(3)), false);
    check_case(admin1(), reset(1000, None), false);
    check_case(admin1(), reset(1, Some(1)), false);
    check_case(admin1(), disable(2, Some(1), true, false), true);
    check_case(admin1(), disable(2, Some(1), false, false), true);
    check_case(admin1(), disable(4, Some(3), true, false), false);
    check_case(admin1(), disable(4, Some(3), false, false), false);
    check_case(admin1(), disable(1000, None, true, false), false);
    check_case(admin1(), disable(1000, None, false, false), false);
    check_case(admin1(), disable(1, Some(1), true, false), false);
    let admin3 = user(5, Role::OrgAdmin, 3, &[20]);
    check_case(admin3.clone(), reset(2, Some(1)), false);
    check_case(admin3.clone(), disable(2, Some(1), true, false), false);
    check_case(admin3, disable(4, Some(3), true, false), true);

    // Nobody else.
    for a in [researcher1(), viewer1(), researcher3(), node1(), run1()] {
        check_case(a.clone(), reset(3, Some(1)), false);
        check_case(a.clone(), disable(3, Some(1), true, false), false);
        check_case(a, disable(3, Some(1), false, false), false);
    }
}

#[test]
fn account_denials_say_why() {
    let self_disable = Op::SetUserDisabled {
        user_id: 1000,
        organization_id: None,
        disabled: true,
        last_enabled_root: true,
    };
    assert_eq!(check(&root(), &self_disable), Err(Denied(SELF_DISABLE)));
    let last_root = Op::SetUserDisabled {
        user_id: 1001,
        organization_id: None,
        disabled: true,
        last_enabled_root: true,
    };
    assert_eq!(check(&root(), &last_root), Err(Denied(LAST_ROOT)));
    // Whoever may not disable a root user hears that, not whether it is the last one.
    for who in [admin1(), researcher1(), viewer1()] {
        let denied = check(&who, &last_root).unwrap_err();
        assert_ne!(denied, Denied(LAST_ROOT));
    }
    assert_eq!(
        check(&researcher1(), &last_root),
        Err(Denied(NOT_ROLE)),
        "a researcher is refused for its role"
    );
    let own = Op::ResetPassword {
        user_id: 1,
        organization_id: Some(1),
    };
    assert_eq!(check(&admin1(), &own), Err(Denied(OWN_PASSWORD)));
}

#[test]
fn node_key_rotation() {
    let rotate = |node_id, org| Op::RotateNodeKey {
        node_id,
        organization_id: org,
    };
    check_case(root(), rotate(101, 2), true);
    check_case(admin1(), rotate(100, 1), true);
    check_case(admin1(), rotate(101, 2), false);
    for a in [researcher1(), viewer1(), researcher3(), run1()] {
        check_case(a, rotate(100, 1), false);
    }
    // A node cannot rotate its own key (a leaked key must not be able to lock the owner out).
    check_case(node1(), rotate(100, 1), false);
    check_case(node2_in_20(), rotate(101, 2), false);
}

#[test]
fn task_cancellation() {
    // A task of organization 1 in collaboration 10, requested by researcher1 (user 2).
    let cancel = |requester| Op::CancelTask {
        collaboration_id: 10,
        task_organization_id: 1,
        requester_user_id: requester,
    };
    check_case(researcher1(), cancel(Some(2)), true);
    check_case(admin1(), cancel(Some(2)), true);
    check_case(root(), cancel(Some(2)), true);
    // Another researcher of the same organization did not ask for it.
    check_case(user(5, Role::Researcher, 1, &[10]), cancel(Some(2)), false);
    check_case(viewer1(), cancel(Some(3)), false);
    // A member of the collaboration from another organization, an outsider, nodes and runs.
    check_case(user(6, Role::OrgAdmin, 2, &[10]), cancel(Some(2)), false);
    check_case(researcher3(), cancel(Some(4)), false);
    check_case(node1(), cancel(Some(2)), false);
    check_case(run1(), cancel(Some(2)), false);
    let why = check(&user(5, Role::Researcher, 1, &[10]), &cancel(Some(2))).unwrap_err();
    assert!(why.0.contains("requester"), "{why}");
}
