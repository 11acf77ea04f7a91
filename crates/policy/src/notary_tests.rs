//! `signed_by.notary`: loading (errors name file, line and key) and counting cosign keys and
//! Notary identities together.

use std::collections::BTreeSet;

use time::OffsetDateTime;
use warden_reference::{Digest, Reference};
use warden_trust::notary::{Alg, VerifiedSignature};
use warden_trust::{KeyId, PublicKey};

use super::*;

const GOOD: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// A self-signed P-256 CA certificate (parsed, never verified by these tests).
const ROOT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBNzCB3qADAgECAgEBMAoGCCqGSM49BAMCMBsxGTAXBgNVBAMMEFBvbGljeSBU
ZXN0IFJvb3QwHhcNMjYwMTAxMDAwMDAwWhcNMzUxMjMwMDAwMDAwWjAbMRkwFwYD
VQQDDBBQb2xpY3kgVGVzdCBSb290MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
Ju/OvQ7p40pmkYfhizqRIrL3M5RbZJzJ+fkh6fna2BKQI4venMe7Mw0VDGdwTdJa
5wVSBXRLbzG/QHB0WHLQ5qMTMBEwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQD
AgNIADBFAiBgQNcONTB+O+nm9O97OML8c3TetKTnSvWwOTMCayRXFwIhANvR6OZB
lUvOQyyErSqWUqMv+glf9/fAhKafjsZJzYgv
-----END CERTIFICATE-----
";

fn ed_key(seed: u8) -> PublicKey {
    PublicKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key())
}

fn keys(file: &str) -> Result<PublicKey, KeyLoadError> {
    match file {
        "keys/alice.pub" => Ok(ed_key(1)),
        "keys/bob.pub" => Ok(ed_key(2)),
        other => Err(KeyLoadError(format!("cannot read key file {other}"))),
    }
}

fn files(file: &str) -> Result<String, FileLoadError> {
    match file {
        "notary/ca.pem" => Ok(ROOT_PEM.into()),
        "notary/garbage.pem" => Ok("not a certificate".into()),
        other => Err(FileLoadError(format!("cannot read schema file {other}"))),
    }
}

fn load(text: &str) -> Result<Policy, PolicyError> {
    Policy::from_toml_str_with_files(text, "policy.toml", keys, files)
}

fn rule(signed_by: &str) -> String {
    format!(
        "version = 1\n\n[[allow]]\nrepository = \"registry.example/team/app\"\nsigned_by = {signed_by}\n"
    )
}

const REVIEWERS: &str = "x509.subject: CN=Reviewers,O=Hospital A";

#[test]
fn notary_identities_load_with_keys_optional() {
    let p = load(&rule(&format!(
        "{{ notary = {{ trust_store = \"notary/ca.pem\", identities = [\"{REVIEWERS}\"] }}, threshold = 1 }}"
    )))
    .unwrap();
    let s = p.allow[0].signed_by.as_ref().unwrap();
    assert!(s.keys.is_empty());
    let n = s.notary.as_ref().unwrap();
    assert_eq!(n.trust_store_file, "notary/ca.pem");
    assert_eq!(n.identities.len(), 1);
    assert_eq!(n.trust_store.certificates.len(), 1);
    assert!(
        p.allow[0].to_string().contains("Notary identities"),
        "{}",
        p.allow[0]
    );

    // Both kinds, threshold over their sum.
    let p = load(&rule(&format!(
        "{{ keys = [\"keys/alice.pub\"], notary = {{ trust_store = \"notary/ca.pem\", identities = [\"{REVIEWERS}\", \"x509.subject: CN=Auditors,O=Hospital B\"] }}, threshold = 3 }}"
    )))
    .unwrap();
    assert_eq!(p.allow[0].signed_by.as_ref().unwrap().distinct(), 3);
}

#[test]
fn notary_load_errors_name_file_line_and_key() {
    for (signed_by, key, why) in [
        (
            "{ threshold = 1 }".to_owned(),
            "allow[1].signed_by",
            "names neither",
        ),
        (
            format!("{{ notary = {{ trust_store = \"notary/missing.pem\", identities = [\"{REVIEWERS}\"] }}, threshold = 1 }}"),
            "allow[1].signed_by.notary.trust_store",
            "cannot read trust store file notary/missing.pem",
        ),
        (
            format!("{{ notary = {{ trust_store = \"notary/garbage.pem\", identities = [\"{REVIEWERS}\"] }}, threshold = 1 }}"),
            "allow[1].signed_by.notary.trust_store",
            "no PEM CERTIFICATE block",
        ),
        (
            "{ notary = { trust_store = \"notary/ca.pem\", identities = [] }, threshold = 1 }".to_owned(),
            "allow[1].signed_by.notary.identities",
            "the list is empty",
        ),
        (
            "{ notary = { trust_store = \"notary/ca.pem\", identities = [\"CN=Reviewers\"] }, threshold = 1 }".to_owned(),
            "allow[1].signed_by.notary.identities[1]",
            "neither `*` nor `x509.subject: ...`",
        ),
        (
            format!("{{ notary = {{ trust_store = \"notary/ca.pem\", identities = [\"{REVIEWERS}\", \"*\"] }}, threshold = 1 }}"),
            "allow[1].signed_by.notary.identities[2]",
            "cannot be listed with others",
        ),
        (
            format!("{{ notary = {{ trust_store = \"notary/ca.pem\", identities = [\"{REVIEWERS}\", \"x509.subject: O=Hospital A, CN=Reviewers\"] }}, threshold = 1 }}"),
            "allow[1].signed_by.notary.identities[2]",
            "listed twice",
        ),
        (
            format!("{{ keys = [\"keys/alice.pub\"], notary = {{ trust_store = \"notary/ca.pem\", identities = [\"{REVIEWERS}\"] }}, threshold = 3 }}"),
            "allow[1].signed_by.threshold",
            "above the 2 distinct signers listed (1 keys, 1 Notary identities)",
        ),
        (
            format!("{{ notary = {{ trust_store = \"notary/ca.pem\", identities = [\"{REVIEWERS}\"], policy = \"strict\" }}, threshold = 1 }}"),
            "allow[1].signed_by.notary.policy",
            "unknown field `policy`",
        ),
        (
            format!("{{ notary = {{ identities = [\"{REVIEWERS}\"] }}, threshold = 1 }}"),
            "allow[1].signed_by.notary.trust_store",
            "missing field `trust_store`",
        ),
    ] {
        let text = rule(&signed_by);
        let e = load(&text).map(|_| ()).unwrap_err().to_string();
        assert!(e.starts_with("policy.toml:5:"), "{signed_by}: {e}");
        assert!(e.contains(&format!("`{key}`")), "{signed_by}: {e}");
        assert!(e.contains(why), "{signed_by}: {e}");
    }
}

fn verified(store: &TrustStore, subject: &[(&str, &str)], key: [u8; 32]) -> VerifiedSignature {
    let anchor = *store.certificates.iter().next().unwrap();
    VerifiedSignature {
        leaf_sha256: [key[0] ^ 0xff; 32],
        leaf_key_id: key,
        subject: subject
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        subject_text: String::new(),
        chain_sha256: vec![[key[0] ^ 0xff; 32], anchor],
        alg: Alg::Es256,
        signing_time: OffsetDateTime::now_utc(),
    }
}

use warden_trust::notary::TrustStore;

#[test]
fn cosign_keys_and_notary_identities_count_together_once_each() {
    let p = load(&rule(&format!(
        "{{ keys = [\"keys/alice.pub\", \"keys/bob.pub\"], notary = {{ trust_store = \"notary/ca.pem\", identities = [\"{REVIEWERS}\", \"x509.subject: CN=Reviewers\"] }}, threshold = 2 }}"
    )))
    .unwrap();
    let store = p.allow[0]
        .signed_by
        .as_ref()
        .unwrap()
        .notary
        .as_ref()
        .unwrap()
        .trust_store
        .clone();
    let reference = Reference::parse("registry.example/team/app:v1").unwrap();
    let digest = Digest::parse(GOOD).unwrap();
    let requester = Requester::default();
    let decide_for = |signers: &BTreeSet<KeyId>, notary: &[VerifiedSignature]| {
        decide_with_notary(
            &p,
            &Request {
                reference: &reference,
                digest: Some(&digest),
                signers,
                requester: &requester,
            },
            &Approvals::none(),
            notary,
        )
    };
    let alice: BTreeSet<KeyId> = [ed_key(1).id()].into();
    let reviewers = verified(&store, &[("CN", "Reviewers"), ("O", "Hospital A")], [7; 32]);
    // One cosign key and one Notary signer: two.
    assert!(matches!(
        decide_for(&alice, std::slice::from_ref(&reviewers)),
        Decision::Permit { .. }
    ));
    // One certificate matching both (overlapping) identities is one signer, not two.
    let d = decide_for(&BTreeSet::new(), std::slice::from_ref(&reviewers));
    assert!(
        d.to_string()
            .contains("1 of the rule's keys and Notary signers signed"),
        "{d}"
    );
    assert!(d.to_string().contains("it needs 2"), "{d}");
    // The same signing key in two certificates is one signer.
    let again = verified(&store, &[("CN", "Reviewers")], [7; 32]);
    let d = decide_for(&BTreeSet::new(), &[reviewers.clone(), again]);
    assert!(!matches!(d, Decision::Permit { .. }), "{d}");
    // Two signing keys, one per identity: two.
    let other = verified(&store, &[("CN", "Reviewers")], [8; 32]);
    assert!(matches!(
        decide_for(&BTreeSet::new(), &[reviewers.clone(), other]),
        Decision::Permit { .. }
    ));
    // A Notary signature by the very key that already counted as a cosign key adds nothing.
    let mut alice_cert = reviewers.clone();
    alice_cert.leaf_key_id = *ed_key(1).id().as_bytes();
    let d = decide_for(&alice, &[alice_cert]);
    assert!(!matches!(d, Decision::Permit { .. }), "{d}");
    // Not anchored in the rule's trust store: does not count.
    let mut stray = reviewers.clone();
    stray.chain_sha256 = vec![[1; 32], [2; 32]];
    let d = decide_for(&alice, &[stray]);
    assert!(!matches!(d, Decision::Permit { .. }), "{d}");
    // An identity not trusted: does not count.
    let auditors = verified(&store, &[("CN", "Auditors"), ("O", "Hospital A")], [9; 32]);
    let d = decide_for(&alice, &[auditors]);
    assert!(!matches!(d, Decision::Permit { .. }), "{d}");
    // decide (no Notary facts) counts cosign keys only.
    let both: BTreeSet<KeyId> = [ed_key(1).id(), ed_key(2).id()].into();
    assert!(matches!(decide_for(&both, &[]), Decision::Permit { .. }));
}
