//! Policy files from outside: loading must never panic, and a loaded policy must decide
//! consistently (a precheck denial implies a decide denial; a permit names a real allow rule).

#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use warden_policy::{Decision, KeyLoadError, Policy, Precheck, Request, Requester, RuleKind};
use warden_reference::{Digest, Reference};
use warden_trust::PublicKey;

const KEY: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAD8mpsGrRQPD8srSnS027ThaZ07oRBWRRNkrClM/ax6s=
-----END PUBLIC KEY-----
";

const IMAGES: &[&str] = &[
    "ubuntu",
    "registry.example.org/team/average:1.0",
    "registry.example.org/trusted/x@sha256:1111111111111111111111111111111111111111111111111111111111111111",
    "evil.org/registry.example.org/team/average",
    "localhost:5000/a/b",
];

fn load_key(file: &str) -> Result<PublicKey, KeyLoadError> {
    if file.starts_with('a') {
        PublicKey::from_pem(KEY).map_err(|e| KeyLoadError(e.to_string()))
    } else {
        Err(KeyLoadError(format!("no key file {file}")))
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = match Policy::from_toml_str(text, "fuzz.toml", load_key) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    for rule in policy.allow_rules().iter().chain(policy.deny_rules()) {
        let _ = rule.to_string();
    }
    let key = PublicKey::from_pem(KEY).map(|k| k.id());
    let signers: BTreeSet<_> = key.into_iter().collect();
    let digest = Digest::parse(
        "sha256:1111111111111111111111111111111111111111111111111111111111111111",
    )
    .ok();
    let requester = Requester::default()
        .organization("hospital-a")
        .function("partial_mean");
    for image in IMAGES {
        let Ok(reference) = Reference::parse(image) else {
            continue;
        };
        let decision = warden_policy::decide(
            &policy,
            &Request {
                reference: &reference,
                digest: digest.as_ref(),
                signers: &signers,
                requester: &requester,
            },
        );
        let _ = decision.to_string();
        match &decision {
            Decision::Permit { rule } => {
                assert_eq!(rule.kind, RuleKind::Allow);
                assert!(policy.rule(*rule).is_some());
            }
            Decision::Deny { reasons } => assert!(!reasons.is_empty()),
        }
        if let Precheck::Deny { .. } = warden_policy::precheck(&policy, &reference, &requester) {
            assert!(!decision.is_permit(), "precheck denied what decide allowed");
        }
    }
});
