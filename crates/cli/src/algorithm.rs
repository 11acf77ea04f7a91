//! `warden algorithm submit|list|show|revoke` and `warden review list|approve|reject`: the
//! store's client side (warden_client::store). Reviews are signed here with the reviewer's key
//! file; the store never sees the private key. Strings from the store are shown through
//! `warden_api::display::safe`.

use std::path::PathBuf;

use clap::Subcommand;
use warden_api::display::safe;
use warden_api::store as wire;
use warden_client::store::{self as client, StoreClient, StoreClientError};
use warden_trust::review::Decision;

use crate::store::{fail, out};

#[derive(Debug, Subcommand)]
pub enum AlgorithmCommand {
    /// Base images for algorithms, built from Debian packages (and PyPI wheels) without
    /// pulling from any registry.
    Base {
        #[command(subcommand)]
        command: crate::base_image::BaseCommand,
    },
    /// Build a reproducible image from one source commit (no Docker): the same commit gives
    /// the same digest anywhere. Prints the digest; with --push the image (and, with --key, its
    /// signed SLSA provenance) goes to the registry.
    ///
    /// Example: warden algorithm build --source https://git.example.org/warden --commit 3f2a9c1 --path algorithms/mean --image registry.example.org/warden/mean:1.0 --push --key builder.key
    Build(crate::build::BuildArgs),
    /// Rebuild a published image from its source commit and compare: exit 0 when the digests
    /// match, 1 when they differ (naming the first layer and file that differ), 2 bad input.
    ///
    /// Example: warden algorithm rebuild --image registry.example.org/warden/mean@sha256:4f1c... --source https://git.example.org/warden --commit 3f2a9c1 --path algorithms/mean
    Rebuild(crate::build::RebuildArgs),
    /// Submit a version: the image (a tag is resolved once by the store), the source commit and
    /// the functions (`NAME:central|partial[:ARG=TYPE[?],...]`, `?` marks an optional argument).
    ///
    /// Example: warden algorithm submit --store https://store.example.org --name mean --image registry.example.org/warden/mean:1.0 --source https://git.example.org/mean --commit 3f2a9c1 --function partial_mean:partial:column=str
    Submit {
        #[arg(long, value_name = "URL|NAME")]
        store: String,
        /// The algorithm's name in the store (created at its first version).
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long, value_name = "REF")]
        image: String,
        #[arg(long, value_name = "URL")]
        source: String,
        #[arg(long, value_name = "SHA")]
        commit: String,
        /// The version's name; the store numbers versions when absent.
        #[arg(long)]
        version: Option<String>,
        #[arg(
            long = "function",
            value_name = "NAME:KIND[:ARG=TYPE,...]",
            required = true
        )]
        functions: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// The store's algorithms and their versions.
    ///
    /// Example: warden algorithm list --store https://store.example.org
    List {
        #[arg(long, value_name = "URL|NAME")]
        store: String,
        #[arg(long)]
        json: bool,
    },
    /// One version.
    ///
    /// Example: warden algorithm show --store https://store.example.org 7
    Show {
        #[arg(long, value_name = "URL|NAME")]
        store: String,
        /// The version id.
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an approved version: signed with --key (a reviewer), or without it by the store's
    /// key (an administrator).
    ///
    /// Example: warden algorithm revoke --store https://store.example.org 7 --reason "leaks rows" --key rev.key
    Revoke {
        #[arg(long, value_name = "URL|NAME")]
        store: String,
        id: i64,
        #[arg(long)]
        reason: String,
        #[arg(long, value_name = "KEYFILE")]
        key: Option<PathBuf>,
        /// The key file's password (else WARDEN_PASSWORD).
        #[arg(long, value_name = "FILE")]
        key_password_file: Option<PathBuf>,
        /// Print the revoked version as one JSON document (the fields of `algorithm show
        /// --json`: `id`, `state`, `digest`, `reason`, `reviews`, ...) instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// Versions assigned to you (or, with --all, every version waiting for review).
    ///
    /// Example: warden review list --store https://store.example.org --all
    List {
        #[arg(long, value_name = "URL|NAME")]
        store: String,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Take a version for review yourself (assign yourself).
    ///
    /// Example: warden review take --store https://store.example.org 7
    Take {
        #[arg(long, value_name = "URL|NAME")]
        store: String,
        id: i64,
        /// Print the version as one JSON document (the fields of `algorithm show --json`;
        /// `assigned` names you) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Approve a version: sign the review with your key file here and upload the envelope. With
    /// --rebuild, first rebuild the version's source commit yourself and refuse to sign unless it
    /// reproduces the version's digest; the approval then records the rebuild.
    ///
    /// Example: warden review approve --store https://store.example.org 7 --key rev.key --comment "read the source" --rebuild --path algorithms/mean
    Approve(Approve),
    /// Reject a version (one rejection rejects it).
    ///
    /// Example: warden review reject --store https://store.example.org 7 --key rev.key --comment "prints raw rows"
    Reject(Decide),
}

#[derive(Debug, clap::Args)]
pub struct Approve {
    #[command(flatten)]
    decide: Decide,
    /// Rebuild the version's source commit (the one the approval names) and approve only if
    /// the rebuild has exactly the version's digest (`warden algorithm rebuild`); the signed
    /// approval records it (`rebuilt`).
    #[arg(long, requires = "path")]
    rebuild: bool,
    /// With --rebuild: the algorithm's directory in the source repository.
    #[arg(long, value_name = "SUBDIR", requires = "rebuild")]
    path: Option<String>,
    /// With --rebuild: a local clone or another URL of the source (only the commit is read).
    /// Default: the source URL the version names.
    #[arg(long, value_name = "DIR|GIT_URL", requires = "rebuild")]
    source: Option<String>,
    /// With --rebuild: keep compiled targets here between builds.
    #[arg(long, value_name = "DIR", requires = "rebuild")]
    cache_dir: Option<PathBuf>,
    #[command(flatten)]
    registry: crate::image::RegistryArgs,
}

#[derive(Debug, clap::Args)]
pub struct Decide {
    #[arg(long, value_name = "URL|NAME")]
    store: String,
    id: i64,
    #[arg(long, value_name = "KEYFILE")]
    key: PathBuf,
    /// The key file's password (else WARDEN_PASSWORD).
    #[arg(long, value_name = "FILE")]
    key_password_file: Option<PathBuf>,
    #[arg(long)]
    comment: Option<String>,
    /// Print the version as one JSON document (the fields of `algorithm show --json`; the new
    /// review is in `reviews`, with its `decision` and `leaf_index`) instead of text.
    #[arg(long)]
    json: bool,
}

fn rt() -> Result<tokio::runtime::Runtime, StoreClientError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| StoreClientError::Unreachable(format!("cannot start the async runtime: {e}")))
}

fn show_version(v: &wire::Version) -> String {
    let mut s = format!(
        "version {} of {} ({}): {}\n  image {}@{}{}\n  source {} at {}\n  submitted by {} of {}\n",
        v.id,
        safe(&v.algorithm),
        safe(&v.version),
        v.state.as_str(),
        safe(&v.repository),
        safe(&v.digest),
        v.tag
            .as_deref()
            .map(|t| format!(" (tag {})", safe(t)))
            .unwrap_or_default(),
        safe(&v.source),
        safe(&v.commit),
        safe(&v.submitter),
        safe(&v.organization),
    );
    for f in &v.functions {
        let args: Vec<String> = f
            .arguments
            .iter()
            .map(|a| {
                format!(
                    "{}={}{}",
                    safe(&a.name),
                    safe(&a.kind),
                    if a.required { "" } else { "?" }
                )
            })
            .collect();
        s.push_str(&format!(
            "  function {} ({:?}) {}\n",
            safe(&f.name),
            f.kind,
            args.join(",")
        ));
    }
    if !v.assigned.is_empty() {
        let a: Vec<String> = v.assigned.iter().map(|n| safe(n).into_owned()).collect();
        s.push_str(&format!("  assigned {}\n", a.join(", ")));
    }
    for r in &v.reviews {
        s.push_str(&format!(
            "  {} by {} of {} (log entry {}){}\n",
            safe(&r.decision),
            safe(&r.reviewer),
            safe(&r.organization),
            r.leaf_index,
            r.comment
                .as_deref()
                .map(|c| format!(": {}", safe(c)))
                .unwrap_or_default()
        ));
    }
    if let Some(r) = &v.reason {
        s.push_str(&format!("  reason: {}\n", safe(r)));
    }
    s.trim_end().to_owned()
}

fn json<T: serde::Serialize>(v: &T) -> String {
    crate::common::json_document(v)
}

/// A version as `--json` prints it, or else as text.
fn version_out(v: &wire::Version, as_json: bool) -> String {
    if as_json { json(v) } else { show_version(v) }
}

fn key_password(file: Option<&std::path::Path>) -> Result<Vec<u8>, StoreClientError> {
    crate::common::password(file, "give the key file's password")
        .map(|p| p.to_vec())
        .map_err(|e| StoreClientError::Input(format!("{e:#}")))
}

pub fn run_algorithm(command: AlgorithmCommand) -> u8 {
    let command = match command {
        AlgorithmCommand::Base { command } => return crate::base_image::run(command),
        AlgorithmCommand::Build(a) => return crate::build::run_build(a),
        AlgorithmCommand::Rebuild(a) => return crate::build::run_rebuild(a),
        other => other,
    };
    let r = rt().and_then(|rt| rt.block_on(algorithm(command)));
    match r {
        Ok(s) => out(&s),
        Err(e) => fail(&e),
    }
}

async fn algorithm(command: AlgorithmCommand) -> Result<String, StoreClientError> {
    match command {
        AlgorithmCommand::Base { .. }
        | AlgorithmCommand::Build(_)
        | AlgorithmCommand::Rebuild(_) => unreachable!("run_algorithm builds images"),
        AlgorithmCommand::Submit {
            store,
            name,
            description,
            image,
            source,
            commit,
            version,
            functions,
            json: as_json,
        } => {
            let functions = functions
                .iter()
                .map(|f| warden_store::service::parse_function(f))
                .collect::<Result<Vec<_>, _>>()
                .map_err(StoreClientError::Input)?;
            let (c, _) = StoreClient::from_store_arg(&store)?;
            let v = client::submit(
                &c,
                &wire::Submission {
                    algorithm: name,
                    description,
                    source,
                    image,
                    commit,
                    version,
                    functions,
                },
            )
            .await?;
            Ok(version_out(&v, as_json))
        }
        AlgorithmCommand::List {
            store,
            json: as_json,
        } => {
            let (c, _) = StoreClient::from_store_arg(&store)?;
            let all: Vec<wire::Algorithm> = c.get("/api/algorithms", "listing algorithms").await?;
            if as_json {
                return Ok(json(&all));
            }
            let mut s = String::new();
            for a in &all {
                s.push_str(&format!(
                    "{} ({}), {}: {}\n",
                    safe(&a.name),
                    safe(&a.organization),
                    safe(&a.source),
                    safe(&a.description)
                ));
                for v in &a.versions {
                    s.push_str(&format!(
                        "  {} version {} {} {}\n",
                        v.id,
                        safe(&v.version),
                        v.state.as_str(),
                        safe(&v.digest)
                    ));
                }
            }
            Ok(s.trim_end().to_owned())
        }
        AlgorithmCommand::Show {
            store,
            id,
            json: as_json,
        } => {
            let (c, _) = StoreClient::from_store_arg(&store)?;
            let v = c.version(id).await?;
            Ok(version_out(&v, as_json))
        }
        AlgorithmCommand::Revoke {
            store,
            id,
            reason,
            key,
            key_password_file,
            json: as_json,
        } => {
            let (c, profile) = StoreClient::from_store_arg(&store)?;
            let envelope = match key {
                Some(k) => {
                    let pw = key_password(key_password_file.as_deref())?;
                    let key = client::read_signing_key(&k, &pw)?;
                    let v = c.version(id).await?;
                    let me: wire::Account = c.get("/api/me", "reading your account").await?;
                    let name = profile.map(|p| p.name).unwrap_or_default();
                    let bytes = client::sign_review(
                        &v,
                        &name,
                        &me,
                        Decision::Revoke,
                        Some(reason.clone()),
                        &key,
                    )?;
                    Some(base64_of(&bytes))
                }
                None => None,
            };
            let v: wire::Version = c
                .post(
                    &format!("/api/versions/{id}/revoke"),
                    &wire::Revoke { reason, envelope },
                    "revoking",
                )
                .await?;
            Ok(version_out(&v, as_json))
        }
    }
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub fn run_review(command: ReviewCommand) -> u8 {
    let r = rt().and_then(|rt| rt.block_on(review(command)));
    match r {
        Ok(s) => out(&s),
        Err(e) => fail(&e),
    }
}

async fn review(command: ReviewCommand) -> Result<String, StoreClientError> {
    match command {
        ReviewCommand::List {
            store,
            all,
            json: as_json,
        } => {
            let (c, profile) = StoreClient::from_store_arg(&store)?;
            let path = if all {
                "/api/versions?state=under_review".to_owned()
            } else {
                let me = profile.map(|p| p.username).ok_or_else(|| {
                    StoreClientError::Input(
                        "log in first with `warden store login` (or pass --all)".into(),
                    )
                })?;
                format!("/api/versions?reviewer={me}")
            };
            let vs: Vec<wire::Version> = c.get(&path, "listing versions").await?;
            if as_json {
                return Ok(json(&vs));
            }
            Ok(vs.iter().map(show_version).collect::<Vec<_>>().join("\n"))
        }
        ReviewCommand::Take {
            store,
            id,
            json: as_json,
        } => {
            let (c, profile) = StoreClient::from_store_arg(&store)?;
            let me = profile.map(|p| p.username).ok_or_else(|| {
                StoreClientError::Input("log in first with `warden store login`".into())
            })?;
            let v: wire::Version = c
                .post(
                    &format!("/api/versions/{id}/assign"),
                    &wire::Assign { reviewer: me },
                    "taking the version",
                )
                .await?;
            Ok(version_out(&v, as_json))
        }
        ReviewCommand::Approve(a) => {
            let rebuild = a
                .rebuild
                .then_some((a.path, a.source, a.cache_dir, a.registry));
            decide(a.decide, Decision::Approve, rebuild).await
        }
        ReviewCommand::Reject(d) => decide(d, Decision::Reject, None).await,
    }
}

type RebuildArgs = (
    Option<String>,
    Option<String>,
    Option<PathBuf>,
    crate::image::RegistryArgs,
);

/// `--rebuild`: the reviewer's own rebuild of the version's commit must give its digest.
async fn rebuild_version(
    v: &wire::Version,
    (path, source, cache_dir, registry): RebuildArgs,
) -> Result<warden_trust::review::Rebuilt, StoreClientError> {
    let path = path.ok_or_else(|| StoreClientError::Input("--rebuild needs --path".into()))?;
    let (repository, digest) = crate::build::pinned(&format!("{}@{}", v.repository, v.digest))
        .map_err(|e| StoreClientError::Verify(format!("the store shows a bad image: {e:#}")))?;
    let client =
        crate::image::client(&registry).map_err(|e| StoreClientError::Input(format!("{e:#}")))?;
    let args = crate::build::SourceArgs {
        source: source.unwrap_or_else(|| v.source.clone()),
        commit: v.commit.clone(),
        path: path.clone(),
        source_uri: None,
        cache_dir,
    };
    let r = crate::build::rebuild(&client, &repository, &digest, &args)
        .await
        .map_err(|e| StoreClientError::Input(format!("the rebuild failed: {e:#}")))?;
    if let Some(d) = &r.diff {
        return Err(StoreClientError::Verify(format!(
            "not approving: your rebuild of commit {} at {} gives {}, not the version's {} ({})",
            r.build.commit,
            safe(&path),
            r.build.image.digest,
            digest,
            crate::build::describe(d)
        )));
    }
    eprintln!(
        "rebuilt {} from commit {} ({}): the digest matches",
        digest,
        r.build.commit,
        safe(&path)
    );
    Ok(warden_trust::review::Rebuilt { path: r.build.path })
}

async fn decide(
    d: Decide,
    decision: Decision,
    rebuild: Option<RebuildArgs>,
) -> Result<String, StoreClientError> {
    let pw = key_password(d.key_password_file.as_deref())?;
    let key = client::read_signing_key(&d.key, &pw)?;
    let (c, profile) = StoreClient::from_store_arg(&d.store)?;
    let name = match profile {
        Some(p) => p.name,
        None => c.info().await?.name,
    };
    let v = c.version(d.id).await?;
    let me: wire::Account = c.get("/api/me", "reading your account").await?;
    let rebuilt = match rebuild {
        Some(args) => Some(rebuild_version(&v, args).await?),
        None => None,
    };
    let bytes = client::sign_review_rebuilt(&v, &name, &me, decision, d.comment, rebuilt, &key)?;
    let v: wire::Version = c
        .post(
            &format!("/api/versions/{}/reviews", d.id),
            &wire::SubmitReview {
                envelope: base64_of(&bytes),
            },
            "uploading the review",
        )
        .await?;
    Ok(version_out(&v, d.json))
}
