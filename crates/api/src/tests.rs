use proptest::prelude::*;

use super::*;

fn check_state(from: RunState, to: RunState, allowed: bool) {
    assert_eq!(from.can_become(to), allowed, "{from} -> {to}");
}

#[test]
fn run_state_machine() {
    use RunState::*;
    check_state(Pending, Admitted, true);
    check_state(Pending, Rejected, true);
    check_state(Pending, Failed, true);
    check_state(Pending, Running, false);
    check_state(Pending, Completed, false);
    check_state(Admitted, Running, true);
    check_state(Admitted, Rejected, true);
    check_state(Admitted, Completed, false);
    check_state(Running, Completed, true);
    check_state(Running, Failed, true);
    check_state(Running, Rejected, false);
    // The airlock's waits: approval before the container, release after it.
    check_state(Admitted, AwaitingApproval, true);
    check_state(Running, AwaitingApproval, true);
    check_state(Pending, AwaitingApproval, false);
    check_state(AwaitingApproval, Running, true);
    check_state(AwaitingApproval, Failed, true);
    check_state(AwaitingApproval, Completed, false);
    check_state(AwaitingApproval, Rejected, false);
    check_state(AwaitingApproval, AwaitingRelease, false);
    check_state(Running, AwaitingRelease, true);
    check_state(Admitted, AwaitingRelease, false);
    check_state(Pending, AwaitingRelease, false);
    check_state(AwaitingRelease, Completed, true);
    check_state(AwaitingRelease, Failed, true);
    check_state(AwaitingRelease, Running, false);
    check_state(AwaitingRelease, Rejected, false);
    check_state(AwaitingRelease, AwaitingApproval, false);
    assert!(!AwaitingApproval.is_final() && !AwaitingRelease.is_final());
    assert_eq!(AwaitingRelease.as_str(), "awaiting_release");
    assert_eq!(AwaitingApproval.as_str(), "awaiting_approval");
    // Cancellation is never a node's report, and a cancelled run never moves again.
    for s in RunState::ALL {
        check_state(s, Cancelled, false);
    }
    assert_eq!(Cancelled.as_str(), "cancelled");
    for s in [Completed, Failed, Rejected, Cancelled] {
        assert!(s.is_final());
        for t in RunState::ALL {
            check_state(s, t, false);
        }
    }
}

#[test]
fn names_round_trip() {
    for r in Role::ALL {
        assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
    }
    for s in RunState::ALL {
        assert_eq!(s.as_str().parse::<RunState>(), Ok(s));
        assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
    }
    assert!("admin".parse::<Role>().is_err());
}

#[test]
fn unknown_fields_are_refused() {
    let err = serde_json::from_str::<LoginRequest>(r#"{"username":"a","password":"b","x":1}"#)
        .unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    assert!(
        serde_json::from_str::<CreateTask>(
            r#"{"collaboration_id":1,"image":"a","inputs":[],"priority":3}"#
        )
        .is_err()
    );
    assert!(
        serde_json::from_str::<CreateTask>(
            r#"{"collaboration_id":1,"image":"a","inputs":[{"organization_id":1,"input":"","extra":0}]}"#
        )
        .is_err()
    );
}

#[test]
fn secrets_are_not_in_debug_output() {
    let l = LoginRequest {
        username: "u".into(),
        password: "hunter2hunter2".into(),
    };
    assert!(!format!("{l:?}").contains("hunter2"));
    let t = TokenResponse {
        access_token: "wat_secret".into(),
        expires_in: 1,
        refresh_token: Some("wrt_secret".into()),
    };
    assert!(!format!("{t:?}").contains("secret"));
}

#[test]
fn error_codes_map_to_statuses() {
    assert_eq!(ErrorCode::Unauthenticated.status(), 401);
    assert_eq!(ErrorCode::Forbidden.status(), 403);
    let body = ErrorBody::new(ErrorCode::NotFound, "no such task");
    let json = serde_json::to_string(&body).unwrap();
    assert_eq!(
        json,
        r#"{"error":{"code":"not_found","message":"no such task"}}"#
    );
}

fn arb_task() -> impl Strategy<Value = CreateTask> {
    (
        any::<i64>(),
        ".{0,20}",
        ".{0,40}",
        prop::collection::vec((any::<i64>(), "[A-Za-z0-9+/=]{0,16}"), 0..4),
        proptest::option::of(any::<i64>()),
        proptest::option::of("[a-f0-9]{32}"),
    )
        .prop_map(|(c, name, image, inputs, parent, nonce)| CreateTask {
            collaboration_id: c,
            name,
            image,
            inputs: inputs
                .into_iter()
                .map(|(organization_id, input)| TaskInput {
                    organization_id,
                    input,
                })
                .collect(),
            parent_task_id: parent,
            nonce,
        })
}

proptest! {
    #[test]
    fn create_task_round_trips(t in arb_task()) {
        let json = serde_json::to_string(&t).unwrap();
        let back: CreateTask = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, t);
    }

    #[test]
    fn create_task_with_an_extra_field_is_refused(t in arb_task(), key in "[a-z_]{1,12}") {
        prop_assume!(!["collaboration_id", "name", "image", "inputs", "parent_task_id"].contains(&key.as_str()));
        let mut v = serde_json::to_value(&t).unwrap();
        v.as_object_mut().unwrap().insert(key, serde_json::json!(1));
        prop_assert!(serde_json::from_value::<CreateTask>(v).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = serde_json::from_slice::<CreateTask>(&bytes);
        let _ = serde_json::from_slice::<UpdateRun>(&bytes);
        let _ = serde_json::from_slice::<CreateUser>(&bytes);
        let _ = serde_json::from_slice::<LoginRequest>(&bytes);
    }

    #[test]
    fn update_run_round_trips(state in prop::sample::select(RunState::ALL.to_vec()), reason in proptest::option::of(".{0,30}"), digest in proptest::option::of("[a-f0-9]{0,64}")) {
        let u = UpdateRun { state, reason, digest };
        let back: UpdateRun = serde_json::from_str(&serde_json::to_string(&u).unwrap()).unwrap();
        prop_assert_eq!(back, u);
    }
}
