//! The 1,000-rule policy shared by the criterion bench and the CPU-time example.

use warden_policy::KeyLoadError;
use warden_trust::PublicKey;

pub const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// 600 exact allow rules, 300 regex allow rules, 50 exact and 50 regex deny rules; a third of
/// the rules carry requester conditions and some carry digests.
pub fn policy_text() -> String {
    let mut s = String::from("version = 1\n");
    for i in 0..600 {
        s.push_str(&format!(
            "[[allow]]\nrepository = \"registry{}.example.org/team{i}/average\"\n",
            i % 7
        ));
        if i % 3 == 0 {
            s.push_str("organizations = [\"hospital-a\", \"hospital-b\"]\nfunctions = [\"partial_mean\"]\n");
        }
        if i % 5 == 0 {
            s.push_str(&format!("digests = [\"{DIGEST}\"]\n"));
        }
    }
    for i in 0..300 {
        s.push_str(&format!(
            "[[allow]]\nrepository_regex = 'registry\\.example\\.org/project{i}/[a-z0-9-]+(/[a-z0-9-]+)?'\n"
        ));
        if i % 3 == 0 {
            s.push_str("collaborations = [\"cardio\"]\n");
        }
    }
    for i in 0..50 {
        s.push_str(&format!(
            "[[deny]]\nrepository = \"registry.example.org/project{i}/revoked\"\n"
        ));
        s.push_str(&format!(
            "[[deny]]\nrepository_regex = '.+/experimental{i}/.+'\n"
        ));
    }
    s
}

pub fn no_keys(_: &str) -> Result<PublicKey, KeyLoadError> {
    Err(KeyLoadError("no keys in this bench".into()))
}
