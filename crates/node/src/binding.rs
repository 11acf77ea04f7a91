//! What a sealed input must match before its run goes any further (docs/node.md, "What happens
//! to a run"): the opened input's binding, its proven sender, and the run as the server
//! describes it. Pure: the caller opens the input and gathers the server's claims; each refusal
//! is one reason that names exactly what did not match.
//!
//! The server's word is only ever compared with what the sealed input says; a mismatch refuses
//! the run, agreement adds nothing the input did not already prove.

use warden_api::display::safe;
use warden_api::strict;
use warden_seal::{InputBinding, OpenedInput, Proven, PublicKey, SealError, TrustedKeys};

use crate::config::MAX_FUTURE_SECS;

/// Longest piece of outside text quoted in a reason.
const MAX_QUOTED: usize = 200;

/// `s` quoted for a reason: escaped and bounded.
pub fn quote(s: &str) -> String {
    let cut: String = s.chars().take(MAX_QUOTED).collect();
    let more = if cut.len() < s.len() { "…" } else { "" };
    format!("`{}{more}`", safe(&cut))
}

/// The run as the server describes it: every field is a claim the input is checked against.
#[derive(Debug, Clone, Copy)]
pub struct ServerClaims<'a> {
    /// The task's nonce, as the server echoes it.
    pub task_nonce: Option<&'a str>,
    /// The task's image reference.
    pub task_image: &'a str,
    /// The name of the run's collaboration.
    pub collaboration: &'a str,
    /// The name of the organization the server says created the task.
    pub requesting_organization: &'a str,
    /// The user the server says the task runs for.
    pub creator_username: Option<&'a str>,
    /// For a subtask: the run that created it and its parent task, as the server says.
    pub creator_run_id: Option<i64>,
    pub parent_task_id: Option<i64>,
}

/// What this node knows for itself.
#[derive(Debug, Clone, Copy)]
pub struct Here<'a> {
    /// This node's organization name (from its own `[organizations]` pin of its key).
    pub organization: &'a str,
    pub trusted: &'a TrustedKeys,
    /// Unix seconds.
    pub now: i64,
    pub max_input_age_secs: u64,
}

/// An input that matched its run.
#[derive(Debug)]
pub struct Bound {
    pub binding: InputBinding,
    pub proven: Proven,
    /// On whose behalf it runs: what the policy and the audit see.
    pub requester: warden_seal::Requester,
    /// The strictly parsed input; its canonical bytes are what the algorithm reads.
    pub input: strict::Input,
    /// Where the result is sealed to.
    pub reply_key: PublicKey,
}

/// The reason for an input that does not open, in sealed mode.
pub fn open_refusal(
    e: &SealError,
    sealed: &[u8],
    collaboration: &str,
    server_encrypted: bool,
) -> String {
    if !server_encrypted {
        return format!(
            "the server says collaboration {} does not encrypt, but this node requires sealed \
             inputs for it ([encryption] require, plaintext_collaborations), and the input is \
             not one that opens here ({e}): refusing a plaintext input",
            quote(collaboration)
        );
    }
    if sealed.first() == Some(&warden_seal::VERSION) {
        return "the input is sealed in format version 1 (not authenticated, bound to nothing), \
                which this node refuses: the researcher must seal it again with a current \
                client and a certified researcher key"
            .to_owned();
    }
    format!("the input does not open with this organization's key: {e}")
}

/// Strict parsing of an input (sealed or not).
pub fn parse_input(body: &[u8]) -> Result<strict::Input, String> {
    strict::parse_input(body).map_err(|e| format!("refusing the input: {e}"))
}

/// Why an input was refused, and who it proved to come from when it got that far (for the audit
/// record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
    pub requester: Option<warden_seal::Requester>,
}

/// Proves the sender and checks every part of the binding against the run (all but the digest,
/// which is known only after admission: [`check_digest`]).
pub fn check(
    opened: OpenedInput,
    claims: &ServerClaims<'_>,
    here: &Here<'_>,
) -> Result<Bound, Refusal> {
    let proven = opened.prove(here.trusted, here.now).map_err(|e| Refusal {
        reason: format!("refusing the input: {e}"),
        requester: None,
    })?;
    let requester = proven.requester();
    check_proven(opened, proven, claims, here).map_err(|reason| Refusal {
        reason,
        requester: Some(requester),
    })
}

fn check_proven(
    opened: OpenedInput,
    proven: Proven,
    claims: &ServerClaims<'_>,
    here: &Here<'_>,
) -> Result<Bound, String> {
    let b = &opened.binding;
    if !warden_seal::valid_nonce(&b.nonce) {
        return Err(format!(
            "the input's nonce {} is not 32 to 128 of 0-9 a-z A-Z _ -: refusing it",
            quote(&b.nonce)
        ));
    }
    match claims.task_nonce {
        Some(n) if n == b.nonce => {}
        Some(n) => {
            return Err(format!(
                "the input is bound to task nonce {}, but the server's task carries {}: \
                 refusing a replayed or moved input",
                quote(&b.nonce),
                quote(n)
            ));
        }
        None => {
            return Err(format!(
                "the input is bound to task nonce {}, but the server's task carries none: \
                 refusing a replayed or moved input",
                quote(&b.nonce)
            ));
        }
    }
    let max_age = i64::try_from(here.max_input_age_secs).unwrap_or(i64::MAX);
    let age = here.now.saturating_sub(b.issued_at);
    if age > max_age {
        return Err(format!(
            "the input was sealed at {} (Unix time), {age} s ago, longer ago than this node's \
             [encryption] max_input_age_secs of {max_age}: refusing a stale or replayed input; \
             submit the task again",
            b.issued_at
        ));
    }
    let future = i64::try_from(MAX_FUTURE_SECS).unwrap_or(0);
    if -age > future {
        return Err(format!(
            "the input says it was sealed at {} (Unix time), {} s in the future: refusing it; \
             check the clock of whoever sealed it",
            b.issued_at, -age
        ));
    }
    if b.collaboration != claims.collaboration {
        return Err(format!(
            "the input is bound to collaboration {}, but this run is in collaboration {}: \
             refusing an input moved between collaborations",
            quote(&b.collaboration),
            quote(claims.collaboration)
        ));
    }
    if !same_image(&b.image, claims.task_image) {
        return Err(format!(
            "the input is bound to image {}, but the server's task names {}: refusing a \
             swapped image",
            quote(&b.image),
            quote(claims.task_image)
        ));
    }
    if b.target != here.organization {
        return Err(format!(
            "the input is bound to organization {}, but this node is {}'s: refusing an input \
             meant for another organization",
            quote(&b.target),
            quote(here.organization)
        ));
    }
    let requester = proven.requester();
    let (proving_org, what) = match &proven {
        Proven::Researcher { organization, .. } => (organization.as_str(), "its researcher"),
        Proven::Node { organization, .. } => (organization.as_str(), "the node that sealed it"),
    };
    if proving_org != claims.requesting_organization {
        return Err(format!(
            "the input is sealed by {what}, of organization {}, but the server says the task \
             was created by organization {}: refusing a requester mismatch",
            quote(proving_org),
            quote(claims.requesting_organization)
        ));
    }
    if claims.creator_username != Some(requester.user.as_str()) {
        return Err(format!(
            "the input is sealed on behalf of user {} of {}, but the server says the task runs \
             for {}: refusing a requester mismatch",
            quote(&requester.user),
            quote(&requester.organization),
            claims
                .creator_username
                .map(|u| format!("user {}", quote(u)))
                .unwrap_or_else(|| "no named user".to_owned())
        ));
    }
    if let (Proven::Node { .. }, Some(via)) = (&proven, &b.via) {
        if claims.creator_run_id != Some(via.run_id) || claims.parent_task_id != Some(via.task_id) {
            return Err(format!(
                "the input is a subtask's of run {} (task {}) at {}, but the server says the \
                 task was created by run {} under task {}: refusing a moved subtask input",
                via.run_id,
                via.task_id,
                quote(&via.organization),
                claims
                    .creator_run_id
                    .map_or_else(|| "none".to_owned(), |r| r.to_string()),
                claims
                    .parent_task_id
                    .map_or_else(|| "none".to_owned(), |t| t.to_string()),
            ));
        }
    }
    let input = parse_input(&opened.body)?;
    if input.function != b.function {
        return Err(format!(
            "the input calls function {}, but its binding names {}: refusing it",
            quote(&input.function),
            quote(&b.function)
        ));
    }
    let reply_key = opened.sender.key().to_owned();
    Ok(Bound {
        binding: opened.binding,
        proven,
        requester,
        input,
        reply_key,
    })
}

/// After admission: the digest this node resolved must be the one the input was sealed for.
pub fn check_digest(bound: &InputBinding, resolved: &str) -> Result<(), String> {
    if bound.digest == resolved {
        return Ok(());
    }
    Err(format!(
        "the input is bound to image digest {}, but this node resolved {} to {resolved}: \
         refusing to run an image the requester did not choose",
        quote(&bound.digest),
        quote(&bound.image)
    ))
}

/// Whether two references name the same image once normalised (exact text when either does
/// not parse).
fn same_image(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (
        warden_reference::Reference::parse(a),
        warden_reference::Reference::parse(b),
    ) {
        (Ok(a), Ok(b)) => a.to_string() == b.to_string(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use warden_seal::{Certificate, Requester, SecretKey, Sender, Via, new_nonce, open_input};
    use warden_trust::{KeyAlgorithm, SigningKey};

    use super::*;

    const NOW: i64 = 1_700_000_000;
    const IMAGE: &str = "registry.example.org/warden/mean:1.0";

    struct Fixture {
        rita: SecretKey,
        cert: Certificate,
        node_a: SecretKey,
        node_b: SecretKey,
        trusted: TrustedKeys,
    }

    fn fixture() -> Fixture {
        let ca = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let rita = SecretKey::generate();
        let cert = Certificate::issue(
            &ca,
            "hospital-a",
            "rita",
            &rita.public_key(),
            NOW - 10,
            86_400,
        )
        .unwrap();
        let node_a = SecretKey::generate();
        let node_b = SecretKey::generate();
        let trusted = TrustedKeys {
            encryption: BTreeMap::from([
                ("hospital-a".to_owned(), node_a.public_key().fingerprint()),
                ("hospital-b".to_owned(), node_b.public_key().fingerprint()),
            ]),
            certifiers: BTreeMap::from([("hospital-a".to_owned(), ca.public_key().id())]),
            revoked: BTreeSet::new(),
        };
        Fixture {
            rita,
            cert,
            node_a,
            node_b,
            trusted,
        }
    }

    fn binding(f: &Fixture, nonce: &str) -> InputBinding {
        InputBinding {
            nonce: nonce.to_owned(),
            issued_at: NOW,
            collaboration: "study".into(),
            image: IMAGE.into(),
            digest: format!("sha256:{}", "a".repeat(64)),
            function: "mean".into(),
            target: "hospital-b".into(),
            requester: Requester {
                organization: "hospital-a".into(),
                user: "rita".into(),
            },
            reply_key: f.rita.public_key().to_base64(),
            via: None,
        }
    }

    fn claims(nonce: &str) -> ServerClaims<'_> {
        ServerClaims {
            task_nonce: Some(nonce),
            task_image: IMAGE,
            collaboration: "study",
            requesting_organization: "hospital-a",
            creator_username: Some("rita"),
            creator_run_id: None,
            parent_task_id: None,
        }
    }

    fn here(f: &Fixture) -> Here<'_> {
        Here {
            organization: "hospital-b",
            trusted: &f.trusted,
            now: NOW,
            max_input_age_secs: 3600,
        }
    }

    /// Seals `body` with binding `b` as Rita for hospital-b and checks it against `c`.
    fn check_as_rita(
        f: &Fixture,
        b: &InputBinding,
        body: &[u8],
        c: &ServerClaims<'_>,
    ) -> Result<Bound, String> {
        let sender = Sender::Researcher(Box::new(f.cert.clone()));
        let sealed = seal(f, &sender, b, body);
        check(open_input(&f.node_b, &sealed).unwrap(), c, &here(f)).map_err(|r| {
            // Past the proof, the refusal names who the input proved.
            assert_eq!(r.requester.as_ref().map(|q| q.user.as_str()), Some("rita"));
            r.reason
        })
    }

    fn seal(f: &Fixture, sender: &Sender, b: &InputBinding, body: &[u8]) -> Vec<u8> {
        let secret = match sender {
            Sender::Researcher(_) => &f.rita,
            Sender::Organization(_) => &f.node_a,
        };
        warden_seal::seal_input(secret, sender, &f.node_b.public_key(), b, body).unwrap()
    }

    const BODY: &[u8] = br#"{ "function": "mean", "args": {"b": 1, "a": 2} }"#;

    #[test]
    fn a_matching_input_is_bound_and_canonical() {
        let f = fixture();
        let nonce = new_nonce();
        let bound = check_as_rita(&f, &binding(&f, &nonce), BODY, &claims(&nonce)).unwrap();
        assert_eq!(
            bound.requester,
            Requester {
                organization: "hospital-a".into(),
                user: "rita".into()
            }
        );
        assert_eq!(
            bound.input.canonical,
            br#"{"args":{"a":2,"b":1},"function":"mean"}"#
        );
        assert_eq!(bound.reply_key, f.rita.public_key());
        // The server's normalised spelling of the same image is the same image.
        let mut b = binding(&f, &nonce);
        b.image = "docker.io/library/busybox:latest".into();
        let mut c = claims(&nonce);
        c.task_image = "busybox";
        assert!(check_as_rita(&f, &b, BODY, &c).is_ok());
        assert!(check_digest(&bound.binding, &format!("sha256:{}", "a".repeat(64))).is_ok());
    }

    /// The server's claims, owned, so that a case can edit them.
    #[derive(Clone)]
    struct Owned {
        nonce: Option<String>,
        image: String,
        collaboration: String,
        organization: String,
        user: Option<String>,
    }

    impl Owned {
        fn claims(&self) -> ServerClaims<'_> {
            ServerClaims {
                task_nonce: self.nonce.as_deref(),
                task_image: &self.image,
                collaboration: &self.collaboration,
                requesting_organization: &self.organization,
                creator_username: self.user.as_deref(),
                creator_run_id: None,
                parent_task_id: None,
            }
        }
    }

    /// Each mismatch, one at a time: (what is changed, what the reason must say).
    #[test]
    fn every_mismatch_is_refused_with_what_did_not_match() {
        let f = fixture();
        let nonce = new_nonce();
        let other = new_nonce();
        let honest = Owned {
            nonce: Some(nonce.clone()),
            image: IMAGE.into(),
            collaboration: "study".into(),
            organization: "hospital-a".into(),
            user: Some("rita".into()),
        };
        type Edit = Box<dyn Fn(&mut InputBinding, &mut Owned)>;
        let o = other.clone();
        let cases: Vec<(Edit, String)> = vec![
            (
                Box::new(move |_, c| c.nonce = Some(o.clone())),
                format!(
                    "bound to task nonce `{nonce}`, but the server's task carries `{other}`: \
                     refusing a replayed or moved input"
                ),
            ),
            (
                Box::new(|_, c| c.nonce = None),
                "but the server's task carries none".into(),
            ),
            (
                Box::new(|b, _| b.issued_at = NOW - 3601),
                "3601 s ago, longer ago than this node's [encryption] max_input_age_secs of 3600"
                    .into(),
            ),
            (
                Box::new(|b, _| b.issued_at = NOW + 301),
                "301 s in the future".into(),
            ),
            (
                Box::new(|_, c| c.collaboration = "other".into()),
                "bound to collaboration `study`, but this run is in collaboration `other`".into(),
            ),
            (
                Box::new(|_, c| c.image = "registry.example.org/warden/evil:1.0".into()),
                format!(
                    "bound to image `{IMAGE}`, but the server's task names \
                     `registry.example.org/warden/evil:1.0`: refusing a swapped image"
                ),
            ),
            (
                Box::new(|b, _| b.target = "hospital-c".into()),
                "bound to organization `hospital-c`, but this node is `hospital-b`'s".into(),
            ),
            (
                Box::new(|_, c| c.organization = "hospital-b".into()),
                "sealed by its researcher, of organization `hospital-a`, but the server says the \
                 task was created by organization `hospital-b`: refusing a requester mismatch"
                    .into(),
            ),
            (
                Box::new(|_, c| c.user = Some("bob".into())),
                "on behalf of user `rita` of `hospital-a`, but the server says the task runs for \
                 user `bob`"
                    .into(),
            ),
            (
                Box::new(|_, c| c.user = None),
                "runs for no named user".into(),
            ),
            (
                Box::new(|b, _| b.function = "other".into()),
                "calls function `mean`, but its binding names `other`".into(),
            ),
        ];
        for (i, (edit, says)) in cases.iter().enumerate() {
            let mut b = binding(&f, &nonce);
            let mut c = honest.clone();
            edit(&mut b, &mut c);
            let e = check_as_rita(&f, &b, BODY, &c.claims()).unwrap_err();
            assert!(e.contains(says.as_str()), "case {i}: {e}");
        }
    }

    #[test]
    fn a_duplicate_key_input_is_refused_with_the_reason() {
        let f = fixture();
        let nonce = new_nonce();
        let mut b = binding(&f, &nonce);
        b.function = "noop".into();
        let e = check_as_rita(
            &f,
            &b,
            br#"{"function":"leak","function":"noop"}"#,
            &claims(&nonce),
        )
        .unwrap_err();
        assert!(
            e.starts_with("refusing the input: the input is not strict JSON")
                && e.contains("appears twice"),
            "{e}"
        );
    }

    #[test]
    fn an_unproven_sender_is_refused_with_the_reason() {
        let f = fixture();
        let nonce = new_nonce();
        let rogue_ca = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let mallory = SecretKey::generate();
        let rogue = Certificate::issue(
            &rogue_ca,
            "hospital-a",
            "rita",
            &mallory.public_key(),
            NOW - 10,
            86_400,
        )
        .unwrap();
        let mut b = binding(&f, &nonce);
        b.reply_key = mallory.public_key().to_base64();
        let sealed = warden_seal::seal_input(
            &mallory,
            &Sender::Researcher(Box::new(rogue)),
            &f.node_b.public_key(),
            &b,
            BODY,
        )
        .unwrap();
        let e = check(
            open_input(&f.node_b, &sealed).unwrap(),
            &claims(&nonce),
            &here(&f),
        )
        .unwrap_err();
        assert_eq!(e.requester, None);
        let e = e.reason;
        assert!(e.contains("signed by certification key"), "{e}");
        assert!(
            e.contains("pinned certification key of organization `hospital-a`"),
            "{e}"
        );
    }

    #[test]
    fn a_subtask_input_proves_its_node_and_the_run_that_made_it() {
        let f = fixture();
        let nonce = new_nonce();
        let mut b = binding(&f, &nonce);
        b.reply_key = f.node_a.public_key().to_base64();
        b.via = Some(Via {
            organization: "hospital-a".into(),
            run_id: 5,
            task_id: 4,
        });
        let sender = Sender::Organization(f.node_a.public_key());
        let mut c = claims(&nonce);
        c.creator_run_id = Some(5);
        c.parent_task_id = Some(4);
        let sealed = seal(&f, &sender, &b, BODY);
        let bound = check(open_input(&f.node_b, &sealed).unwrap(), &c, &here(&f)).unwrap();
        assert_eq!(bound.requester.user, "rita");
        assert_eq!(bound.reply_key, f.node_a.public_key());
        c.creator_run_id = Some(6);
        let e = check(open_input(&f.node_b, &sealed).unwrap(), &c, &here(&f)).unwrap_err();
        assert!(e.reason.contains("created by run 6 under task 4"), "{e:?}");
    }

    #[test]
    fn the_digest_must_be_the_one_resolved() {
        let f = fixture();
        let b = binding(&f, &new_nonce());
        let resolved = format!("sha256:{}", "b".repeat(64));
        let e = check_digest(&b, &resolved).unwrap_err();
        assert!(
            e.contains(&format!(
                "bound to image digest `sha256:{}`",
                "a".repeat(64)
            )) && e.contains(&format!("resolved `{IMAGE}` to {resolved}")),
            "{e}"
        );
    }

    #[test]
    fn open_refusals_say_why() {
        let e = SealError::NotVersion2(1);
        let v1 = [1u8, 0, 0];
        assert!(open_refusal(&e, &v1, "study", true).contains("format version 1"));
        let plain = br#"{"function":"f"}"#;
        let e = SealError::NotVersion2(b'{');
        let r = open_refusal(&e, plain, "study", false);
        assert!(
            r.contains("requires sealed inputs") && r.contains("`study`"),
            "{r}"
        );
        let r = open_refusal(&SealError::OpenFailed, &[2, 1], "study", true);
        assert!(
            r.starts_with("the input does not open with this organization's key"),
            "{r}"
        );
    }

    #[test]
    fn quoted_text_is_escaped_and_bounded() {
        assert_eq!(quote("a\nb"), "`a\\nb`");
        assert_eq!(quote(&"x".repeat(500)).chars().count(), MAX_QUOTED + 3);
    }
}
