//! The permission table (role x action) and the review rules, one line per case.

use super::*;

const ADMIN: &[StoreRole] = &[StoreRole::Administrator];
const DEV: &[StoreRole] = &[StoreRole::Developer];
const REV: &[StoreRole] = &[StoreRole::Reviewer];
const NONE: &[StoreRole] = &[];

fn actor(id: i64, org: i64, roles: &[StoreRole]) -> Actor {
    Actor {
        id,
        username: format!("u{id}"),
        organization: org,
        roles: roles.iter().copied().collect(),
    }
}

fn version(state: VersionState) -> VersionFacts {
    // Submitted by account 1 of organization 1.
    VersionFacts {
        state,
        submitter: 1,
        organization: 1,
    }
}

fn reviewer(id: i64, org: i64) -> ReviewerFacts {
    ReviewerFacts {
        id,
        organization: org,
        roles: [StoreRole::Reviewer].into_iter().collect(),
        has_key: true,
    }
}

fn rules() -> ReviewConfig {
    ReviewConfig::default()
}

fn ok(a: &Actor, action: Action<'_>) -> bool {
    permit(a, &action, &rules()).is_ok()
}

#[test]
fn the_role_by_action_table() {
    use VersionState::*;
    let sub = version(Submitted);
    let rev_state = version(UnderReview);
    let appr = version(Approved);
    let repl = version(Replaced);
    let r2 = reviewer(2, 2);
    // (roles, action, allowed)
    type Case<'a> = (&'static [StoreRole], Action<'a>, bool);
    let cases: Vec<Case<'_>> = vec![
        (ADMIN, Action::CreateOrganization, true),
        (DEV, Action::CreateOrganization, false),
        (REV, Action::CreateOrganization, false),
        (NONE, Action::CreateOrganization, false),
        (ADMIN, Action::CreateAccount, true),
        (DEV, Action::CreateAccount, false),
        (REV, Action::CreateAccount, false),
        (ADMIN, Action::RegisterOwnKey, true),
        (DEV, Action::RegisterOwnKey, true),
        (REV, Action::RegisterOwnKey, true),
        (ADMIN, Action::Submit { maintainer: None }, true),
        (DEV, Action::Submit { maintainer: None }, true),
        (
            DEV,
            Action::Submit {
                maintainer: Some(2),
            },
            true,
        ),
        (REV, Action::Submit { maintainer: None }, false),
        (NONE, Action::Submit { maintainer: None }, false),
        // Assigning reviewer 2 (organization 2): an administrator may; reviewer 2 itself may;
        // a developer or another reviewer may not.
        (
            ADMIN,
            Action::Assign {
                version: &sub,
                reviewer: &r2,
                already_assigned: false,
            },
            true,
        ),
        (
            DEV,
            Action::Assign {
                version: &sub,
                reviewer: &r2,
                already_assigned: false,
            },
            false,
        ),
        (
            ADMIN,
            Action::Assign {
                version: &appr,
                reviewer: &r2,
                already_assigned: false,
            },
            false,
        ),
        (
            ADMIN,
            Action::Assign {
                version: &sub,
                reviewer: &r2,
                already_assigned: true,
            },
            false,
        ),
        (
            REV,
            Action::Review {
                version: &rev_state,
                assigned: true,
            },
            true,
        ),
        (
            REV,
            Action::Review {
                version: &rev_state,
                assigned: false,
            },
            false,
        ),
        (
            REV,
            Action::Review {
                version: &sub,
                assigned: true,
            },
            false,
        ),
        (
            REV,
            Action::Review {
                version: &appr,
                assigned: true,
            },
            false,
        ),
        (
            ADMIN,
            Action::Review {
                version: &rev_state,
                assigned: true,
            },
            false,
        ),
        (
            DEV,
            Action::Review {
                version: &rev_state,
                assigned: true,
            },
            false,
        ),
        (
            REV,
            Action::Revoke {
                version: &appr,
                signed: true,
            },
            true,
        ),
        (
            REV,
            Action::Revoke {
                version: &repl,
                signed: true,
            },
            true,
        ),
        (
            REV,
            Action::Revoke {
                version: &appr,
                signed: false,
            },
            false,
        ),
        (
            ADMIN,
            Action::Revoke {
                version: &appr,
                signed: false,
            },
            true,
        ),
        (
            ADMIN,
            Action::Revoke {
                version: &rev_state,
                signed: false,
            },
            false,
        ),
        (
            DEV,
            Action::Revoke {
                version: &appr,
                signed: true,
            },
            false,
        ),
        (
            DEV,
            Action::Revoke {
                version: &appr,
                signed: false,
            },
            false,
        ),
        (ADMIN, Action::Reinstate { version: &repl }, true),
        (ADMIN, Action::Reinstate { version: &appr }, false),
        (REV, Action::Reinstate { version: &repl }, false),
        (DEV, Action::Reinstate { version: &repl }, false),
    ];
    for (i, (roles, action, allowed)) in cases.into_iter().enumerate() {
        // Actor 2 in organization 2, except for Submit with a maintainer (org 2 = own).
        let a = actor(2, 2, roles);
        assert_eq!(
            ok(&a, action.clone()),
            allowed,
            "case {i}: {roles:?} {action:?}"
        );
    }
}

#[test]
fn a_reviewer_assigns_only_itself() {
    let sub = version(VersionState::Submitted);
    let me = actor(2, 2, REV);
    assert!(ok(
        &me,
        Action::Assign {
            version: &sub,
            reviewer: &reviewer(2, 2),
            already_assigned: false
        }
    ));
    let e = permit(
        &me,
        &Action::Assign {
            version: &sub,
            reviewer: &reviewer(3, 3),
            already_assigned: false,
        },
        &rules(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("only an administrator"), "{e}");
}

#[test]
fn self_review_and_same_organization_are_refused() {
    let sub = version(VersionState::UnderReview);
    let admin = actor(9, 9, ADMIN);
    // The submitter (account 1) as reviewer.
    let e = permit(
        &admin,
        &Action::Assign {
            version: &sub,
            reviewer: &reviewer(1, 1),
            already_assigned: false,
        },
        &rules(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("submitted"), "{e}");
    let submitter = actor(1, 1, &[StoreRole::Developer, StoreRole::Reviewer]);
    let e = permit(
        &submitter,
        &Action::Review {
            version: &sub,
            assigned: true,
        },
        &rules(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("submitted"), "{e}");
    // Another reviewer of the maintainer's organization.
    let e = permit(
        &admin,
        &Action::Assign {
            version: &sub,
            reviewer: &reviewer(5, 1),
            already_assigned: false,
        },
        &rules(),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("other than the algorithm's maintainer"),
        "{e}"
    );
    let mut lax = rules();
    lax.reviewers_from_other_organization = false;
    assert!(
        permit(
            &admin,
            &Action::Assign {
                version: &sub,
                reviewer: &reviewer(5, 1),
                already_assigned: false
            },
            &lax
        )
        .is_ok()
    );
    // A reviewer without a key cannot be assigned.
    let mut nokey = reviewer(5, 5);
    nokey.has_key = false;
    let e = permit(
        &admin,
        &Action::Assign {
            version: &sub,
            reviewer: &nokey,
            already_assigned: false,
        },
        &rules(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("public key"), "{e}");
}

#[test]
fn a_developer_submits_only_for_its_own_organization() {
    let dev = actor(1, 1, DEV);
    assert!(ok(
        &dev,
        Action::Submit {
            maintainer: Some(1)
        }
    ));
    let e = permit(
        &dev,
        &Action::Submit {
            maintainer: Some(2),
        },
        &rules(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("another organization"), "{e}");
}

fn vote(reviewer: i64, organization: i64, approve: bool) -> Vote {
    Vote {
        reviewer,
        organization,
        approve,
    }
}

#[test]
fn the_review_rules() {
    let r = rules(); // 2 approvals from 2 organizations
    assert_eq!(
        tally(&[], &r),
        Tally::Pending {
            approvals: 0,
            organizations: 0
        }
    );
    assert_eq!(
        tally(&[vote(2, 2, true)], &r),
        Tally::Pending {
            approvals: 1,
            organizations: 1
        }
    );
    // Two from one organization: short of organizations.
    assert_eq!(
        tally(&[vote(2, 2, true), vote(3, 2, true)], &r),
        Tally::Pending {
            approvals: 2,
            organizations: 1
        }
    );
    // The same reviewer twice counts once.
    assert_eq!(
        tally(&[vote(2, 2, true), vote(2, 2, true)], &r),
        Tally::Pending {
            approvals: 1,
            organizations: 1
        }
    );
    assert_eq!(
        tally(&[vote(2, 2, true), vote(3, 3, true)], &r),
        Tally::Approved
    );
    // One rejection rejects, whatever the approvals.
    assert_eq!(
        tally(&[vote(2, 2, true), vote(3, 3, true), vote(4, 4, false)], &r),
        Tally::Rejected
    );
    let one = ReviewConfig {
        min_approvals: 1,
        min_organizations: 1,
        ..rules()
    };
    assert_eq!(tally(&[vote(2, 2, true)], &one), Tally::Approved);
}
