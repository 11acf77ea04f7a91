//! Property tests of the edge parse step: arbitrary bodies never panic, and what parses is
//! valid by construction.

use proptest::prelude::*;
use warden_api::{CreateTask, RunState, TaskInput, UpdateRun};
use warden_server::http::parse_body;
use warden_server::service::{RunUpdate, TaskRequest};

fn arb_create_task() -> impl Strategy<Value = CreateTask> {
    (
        -3i64..5,
        ".{0,20}",
        prop_oneof![
            Just("registry.example.org/team/avg:1.0".to_owned()),
            Just(
                "a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                    .to_owned()
            ),
            "[a-zA-Z0-9:/@._ -]{0,40}",
        ],
        prop::collection::vec((-2i64..6, "[A-Za-z0-9+/=*]{0,12}"), 0..6),
        proptest::option::of(-2i64..4),
        proptest::option::of(prop_oneof![
            "[0-9a-zA-Z_-]{32,128}",
            "[0-9a-zA-Z_\\-\n\t\u{1b} .]{0,140}",
        ]),
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
    fn a_parsed_task_satisfies_every_rule(req in arb_create_task()) {
        let original = req.clone();
        if let Ok(t) = TaskRequest::parse(req, 4) {
            prop_assert!(t.collaboration_id > 0);
            prop_assert!(!t.inputs.is_empty() && t.inputs.len() <= 4);
            let mut orgs: Vec<i64> = t.inputs.iter().map(|(o, _)| *o).collect();
            prop_assert!(orgs.iter().all(|o| *o > 0));
            orgs.sort_unstable();
            orgs.dedup();
            prop_assert_eq!(orgs.len(), t.inputs.len());
            prop_assert!(t.parent_task_id.is_none_or(|p| p > 0));
            prop_assert!(warden_reference::Reference::parse(&original.image).is_ok());
            prop_assert!(!t.name.chars().any(char::is_control));
            prop_assert_eq!(&t.nonce, &original.nonce);
            prop_assert!(t.nonce.as_deref().is_none_or(warden_seal::valid_nonce));
        }
    }

    #[test]
    fn arbitrary_bodies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(req) = parse_body::<CreateTask>(&bytes) {
            let _ = TaskRequest::parse(req, 1000);
        }
        if let Ok(req) = parse_body::<UpdateRun>(&bytes) {
            let _ = RunUpdate::parse(req);
        }
    }

    #[test]
    fn json_shaped_bodies_never_panic(
        c in any::<i64>(),
        image in ".{0,60}",
        org in any::<i64>(),
        input in ".{0,20}",
        extra in proptest::option::of("[a-z]{1,8}"),
    ) {
        let mut v = serde_json::json!({"collaboration_id": c, "image": image, "inputs": [{"organization_id": org, "input": input}]});
        if let Some(k) = &extra {
            v[k] = serde_json::json!(1);
        }
        let parsed = parse_body::<CreateTask>(v.to_string().as_bytes());
        if extra.as_deref().is_some_and(|k| !["name", "parent_task_id"].contains(&k)) {
            prop_assert!(parsed.is_err(), "unknown field accepted");
        }
        if let Ok(req) = parsed {
            let _ = TaskRequest::parse(req, 1000);
        }
    }

    #[test]
    fn run_updates_parse_only_with_their_required_details(
        state in prop::sample::select(RunState::ALL.to_vec()),
        reason in proptest::option::of(".{0,10}"),
        digest in proptest::option::of(prop_oneof![
            Just("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_owned()),
            "[a-z0-9:]{0,20}",
        ]),
    ) {
        let parsed = RunUpdate::parse(UpdateRun { state, reason: reason.clone(), digest: digest.clone() });
        if let Ok(u) = parsed {
            prop_assert_eq!(u.state(), state);
            prop_assert!(state != RunState::Pending);
            match state {
                RunState::Admitted => prop_assert!(digest.is_some() && reason.is_none()),
                RunState::Failed | RunState::Rejected => prop_assert!(reason.is_some_and(|r| !r.trim().is_empty()) && digest.is_none()),
                _ => prop_assert!(reason.is_none() && digest.is_none()),
            }
        }
    }
}

/// A struct written as an array of its field values is not an object: refused.
#[test]
fn bodies_must_be_objects() {
    let err = parse_body::<warden_api::LoginRequest>(br#" ["admin", "a long enough password"]"#)
        .unwrap_err();
    assert!(err.0.error.message.contains("JSON object"), "{:?}", err.0);
    assert!(parse_body::<warden_api::UpdateUser>(b"[true]").is_err());
    assert!(parse_body::<warden_api::UpdateUser>(br#"{"disabled": true}"#).is_ok());
}
