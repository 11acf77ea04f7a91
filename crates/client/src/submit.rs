//! Creating a task: the input strictly parsed, the image's digest resolved, and the input
//! sealed for each target with the researcher's key, bound to what it is for.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use warden_api::strict::Input;
use warden_api::{Collaboration, CreateTask, TaskDetail, TaskInput};
use warden_registry::{ClientOptions, DockerConfig};
use warden_seal::{InputBinding, Requester, Sender};

use crate::{Client, ClientError, RegistrySection, Researcher, Target, TaskRecord, check};

/// Unix seconds now.
pub(crate) fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Unix seconds as RFC 3339, for messages.
pub(crate) fn show_time(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{t} (Unix time)"))
}

/// The input, strictly parsed (duplicate keys, a byte-order mark, trailing bytes, invalid
/// UTF-8 and unknown top-level keys refused): its function and the canonical bytes that are
/// sealed.
pub fn parse_input(bytes: &[u8]) -> Result<Input, ClientError> {
    warden_api::strict::parse_input(bytes).map_err(ClientError::Input)
}

/// The digest `image` (a normalised reference) names: its own when it has one, else the digest
/// of the manifest its tag names at the registry now (resolved once, from the raw bytes).
pub async fn resolve_digest(
    image: &str,
    registry: &RegistrySection,
) -> Result<String, ClientError> {
    let fail = |message: String| ClientError::Resolve {
        image: image.to_owned(),
        message,
    };
    let reference = warden_reference::Reference::parse(image).map_err(|e| ClientError::Image {
        image: image.to_owned(),
        message: e.to_string(),
    })?;
    if let Some(d) = reference.digest() {
        return Ok(d.to_string());
    }
    let credentials = match &registry.docker_config {
        Some(path) => DockerConfig::load(path),
        None => DockerConfig::load_default(),
    }
    .map_err(|e| fail(e.to_string()))?;
    let client = warden_registry::Client::new(ClientOptions {
        credentials,
        insecure_registries: registry.insecure.clone(),
        ..ClientOptions::default()
    })
    .map_err(|e| fail(e.to_string()))?;
    let resolved = client
        .resolve(&reference)
        .await
        .map_err(|e| fail(e.to_string()))?;
    Ok(resolved.digest.to_string())
}

/// What to create: `input` run by `image` (normalised; `digest` resolved for it) at each
/// target of the collaboration.
#[derive(Debug, Clone, Copy)]
pub struct Submission<'a> {
    pub collaboration: &'a Collaboration,
    pub targets: &'a [Target],
    pub name: &'a str,
    pub image: &'a str,
    pub digest: &'a str,
    pub input: &'a Input,
}

/// The binding of the input sealed for `target`.
fn binding(
    researcher: &Researcher,
    s: &Submission<'_>,
    target: &Target,
    nonce: &str,
    issued_at: i64,
) -> InputBinding {
    InputBinding {
        nonce: nonce.to_owned(),
        issued_at,
        collaboration: s.collaboration.name.clone(),
        image: s.image.to_owned(),
        digest: s.digest.to_owned(),
        function: s.input.function.clone(),
        target: target.name.clone(),
        requester: Requester {
            organization: researcher.organization().to_owned(),
            user: researcher.user().to_owned(),
        },
        reply_key: researcher.public_key().to_base64(),
        via: None,
    }
}

/// The inputs of a task: the canonical input sealed for each target with the researcher's
/// key, each bound to that target and to `nonce`.
pub(crate) fn seal_inputs(
    researcher: &Researcher,
    s: &Submission<'_>,
    nonce: &str,
    issued_at: i64,
) -> Result<Vec<TaskInput>, ClientError> {
    let sender = Sender::Researcher(Box::new(researcher.certificate().clone()));
    s.targets
        .iter()
        .map(|t| {
            let b = binding(researcher, s, t, nonce, issued_at);
            let sealed = warden_seal::seal_input(
                researcher.secret(),
                &sender,
                &t.key,
                &b,
                &s.input.canonical,
            )
            .map_err(|e| ClientError::Seal {
                name: t.name.clone(),
                message: e.to_string(),
            })?;
            Ok(TaskInput {
                organization_id: t.id,
                input: STANDARD.encode(sealed),
            })
        })
        .collect()
}

impl Client {
    /// Creates a task: a fresh nonce, the input sealed for each target (see the crate docs),
    /// `CreateTask` with the nonce; the created task must have one run per target and echo
    /// the nonce and the image. Returns it with the record of what was sent, which every later
    /// look at the task is checked against.
    pub async fn create_task(
        &self,
        researcher: &Researcher,
        s: &Submission<'_>,
    ) -> Result<(TaskDetail, TaskRecord), ClientError> {
        let image = crate::image_reference(s.image)?;
        if image != s.image {
            return Err(ClientError::Image {
                image: s.image.to_owned(),
                message: format!("give it in its normalised form `{image}`"),
            });
        }
        if s.targets.is_empty() {
            return Err(ClientError::NoTargets);
        }
        let nonce = warden_seal::new_nonce();
        let inputs = seal_inputs(researcher, s, &nonce, now_unix())?;
        let body = CreateTask {
            collaboration_id: s.collaboration.id,
            name: s.name.to_owned(),
            image: image.clone(),
            inputs,
            parent_task_id: None,
            nonce: Some(nonce.clone()),
        };
        let task: TaskDetail = self.post("/api/tasks", &body, "creating the task").await?;
        let record = TaskRecord {
            server: self.base().to_owned(),
            task_id: task.task.id,
            nonce,
            image,
            digest: s.digest.to_owned(),
        };
        check::check_created(&task, s.collaboration, s.targets, &record)?;
        Ok((task, record))
    }
}

#[cfg(test)]
mod tests {
    use warden_seal::{Certificate, SecretKey, TrustedKeys};
    use warden_trust::{KeyAlgorithm, SigningKey};

    use super::*;

    #[test]
    fn each_target_gets_the_canonical_input_bound_to_it_and_provable() {
        let ca = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let sk = SecretKey::generate();
        let now = now_unix();
        let cert =
            Certificate::issue(&ca, "hospital-a", "rita", &sk.public_key(), now, 3600).unwrap();
        let researcher = Researcher::new(sk, cert).unwrap();
        let collab: Collaboration = serde_json::from_value(serde_json::json!({
            "id": 3, "name": "cardio", "encrypted": true, "organizations": [1, 2],
            "created_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        let (ka, kb) = (SecretKey::generate(), SecretKey::generate());
        let targets = [
            Target {
                id: 1,
                name: "hospital-a".into(),
                key: ka.public_key(),
            },
            Target {
                id: 2,
                name: "hospital-b".into(),
                key: kb.public_key(),
            },
        ];
        let input =
            parse_input(br#"{"args": {"b": 1, "a": 2}, "function": "partial_mean"}"#).unwrap();
        let digest = format!("sha256:{}", "c".repeat(64));
        let s = Submission {
            collaboration: &collab,
            targets: &targets,
            name: "t",
            image: "registry.example.org/warden/mean:1.0",
            digest: &digest,
            input: &input,
        };
        let nonce = warden_seal::new_nonce();
        let inputs = seal_inputs(&researcher, &s, &nonce, now).unwrap();
        let trusted = TrustedKeys {
            certifiers: [("hospital-a".to_owned(), ca.public_key().id())].into(),
            ..TrustedKeys::default()
        };
        for (ti, (t, sk)) in inputs.iter().zip(targets.iter().zip([&ka, &kb])) {
            assert_eq!(ti.organization_id, t.id);
            let sealed = STANDARD.decode(&ti.input).unwrap();
            let opened = warden_seal::open_input(sk, &sealed).unwrap();
            let b = &opened.binding;
            assert_eq!(
                (
                    b.nonce.as_str(),
                    b.issued_at,
                    b.collaboration.as_str(),
                    b.image.as_str(),
                    b.digest.as_str(),
                    b.function.as_str(),
                    b.target.as_str(),
                ),
                (
                    nonce.as_str(),
                    now,
                    "cardio",
                    "registry.example.org/warden/mean:1.0",
                    digest.as_str(),
                    "partial_mean",
                    t.name.as_str(),
                )
            );
            assert_eq!(
                (b.requester.organization.as_str(), b.requester.user.as_str()),
                ("hospital-a", "rita")
            );
            assert_eq!(b.reply_key, researcher.public_key().to_base64());
            assert_eq!(b.via, None);
            assert_eq!(
                &opened.body[..],
                br#"{"args":{"a":2,"b":1},"function":"partial_mean"}"#
            );
            assert_eq!(
                opened.prove(&trusted, now).unwrap(),
                warden_seal::Proven::Researcher {
                    organization: "hospital-a".into(),
                    user: "rita".into()
                }
            );
        }
        // One target's input does not open at the other.
        let sealed = STANDARD.decode(&inputs[0].input).unwrap();
        assert!(warden_seal::open_input(&kb, &sealed).is_err());
    }

    #[test]
    fn an_input_that_is_not_strict_is_refused_before_anything_is_sent() {
        for bad in [
            &br#"{"function":"f","function":"g"}"#[..],
            br#"{"function":"f"} x"#,
            b"\xef\xbb\xbf{\"function\":\"f\"}",
            br#"{"function":"f","extra":1}"#,
            br#"{}"#,
        ] {
            let e = parse_input(bad).unwrap_err().to_string();
            assert!(e.contains("nothing was sent"), "{e}");
        }
        assert_eq!(parse_input(br#"{"function":"f"}"#).unwrap().function, "f");
    }

    #[tokio::test]
    async fn a_digest_in_the_reference_is_used_as_it_is() {
        let d = format!("sha256:{}", "d".repeat(64));
        let image = format!("registry.example.org/warden/mean@{d}");
        let got = resolve_digest(&image, &RegistrySection::default())
            .await
            .unwrap();
        assert_eq!(got, d);
        // A tag is resolved at the registry: one that is not there says how to do without.
        let e = resolve_digest("127.0.0.1:9/warden/mean:1.0", &RegistrySection::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("REPO@sha256"), "{e}");
    }

    #[test]
    fn times_are_shown_as_dates() {
        assert_eq!(show_time(0), "1970-01-01T00:00:00Z");
    }
}
