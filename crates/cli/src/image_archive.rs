//! `warden image export` and `warden image import`: images for air-gapped nodes.
//!
//! `export` copies an image by the digest it resolves to, with all its evidence, into an OCI
//! image layout archive (`warden_registry::layout`), and adds each named store's evidence for
//! that digest as a referrer. `import` sends the archive to an offline node's local socket; the
//! node verifies it (crates/node/src/images.rs). The exporter is not trusted: the node checks
//! every byte against what it pins.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use warden_api::store::{ConsistencyProof, Evidence, ExportedEvidence};
use warden_client::store::StoreClient;
use warden_policy::Requester;
use warden_reference::Reference;
use warden_registry::layout::{self, LayoutWriter, STORE_EVIDENCE_ARTIFACT};

use crate::common::{self, Outcome};
use crate::image::RegistryArgs;

/// The annotation naming the store on a store evidence referrer.
const STORE_ANNOTATION: &str = "dev.warden.store";

fn pairs(list: &[String], flag: &str, what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in list {
        let Some((name, value)) = item.split_once('=') else {
            bail!("{flag} `{item}` is not NAME={what}");
        };
        if name.is_empty() || value.is_empty() {
            bail!("{flag} `{item}` is not NAME={what}");
        }
        if out.insert(name.to_owned(), value.to_owned()).is_some() {
            bail!("{flag} names store `{name}` twice");
        }
    }
    Ok(out)
}

pub async fn export(
    image: &str,
    output: &Path,
    stores: &[String],
    since: &[String],
    registry: &RegistryArgs,
    json: bool,
) -> anyhow::Result<Outcome> {
    let reference = Reference::parse(image)?;
    let stores = pairs(stores, "--store", "URL")?;
    let since: BTreeMap<String, u64> = pairs(since, "--store-since", "SIZE")?
        .into_iter()
        .map(|(name, size)| {
            let size = size
                .parse::<u64>()
                .with_context(|| format!("--store-since {name}={size}: not a log size"))?;
            if !stores.contains_key(&name) {
                bail!("--store-since names store `{name}`, which no --store gives");
            }
            Ok((name, size))
        })
        .collect::<anyhow::Result<_>>()?;
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let work = tempfile::Builder::new()
        .prefix(".warden-export-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot make a working folder in {}", parent.display()))?;
    let layout_dir = work.path().join("layout");
    let mut writer = LayoutWriter::create(&layout_dir)?;
    let client = crate::image::client(registry)?;
    let exported = layout::export(&client, &reference, &mut writer).await?;
    let repository = reference.repository();
    let mut carried = Vec::new();
    for (name, url) in &stores {
        let c = StoreClient::new(url, None)?;
        let evidence: Evidence = c
            .get(
                &format!("/api/evidence/{}", exported.digest),
                "the store's evidence",
            )
            .await
            .with_context(|| format!("store `{name}` ({url})"))?;
        if evidence.store != *name {
            bail!(
                "the store at {url} calls itself `{}`, not `{name}`; give the name the node's [[stores]] uses",
                evidence.store
            );
        }
        let mut consistency = Vec::new();
        if let Some(&from) = since.get(name)
            && from > 0
            && from != evidence.size
        {
            let (a, b) = (from.min(evidence.size), from.max(evidence.size));
            let proof: ConsistencyProof = c
                .get(
                    &format!("/api/log/proof/consistency?from={a}&to={b}"),
                    "a consistency proof",
                )
                .await
                .with_context(|| format!("store `{name}` ({url})"))?;
            consistency.push(proof);
        }
        let approvals = evidence.entries.len();
        let size = evidence.size;
        let bytes = serde_json::to_vec(&ExportedEvidence {
            evidence,
            consistency,
        })?;
        let mut annotations = BTreeMap::new();
        annotations.insert(STORE_ANNOTATION.to_owned(), name.clone());
        writer.add_referrer(
            repository,
            &exported.descriptor,
            STORE_EVIDENCE_ARTIFACT,
            &bytes,
            annotations,
        )?;
        carried.push(serde_json::json!({"store": name, "entries": approvals, "log_size": size}));
    }
    let layout_dir = writer.finish()?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    layout::pack(&layout_dir, std::io::BufWriter::new(tmp.as_file_mut()))?;
    tmp.as_file_mut().flush()?;
    tmp.as_file().sync_all()?;
    tmp.persist(output)
        .with_context(|| format!("cannot write {}", output.display()))?;
    let bytes = std::fs::metadata(output).map(|m| m.len()).unwrap_or(0);
    let pinned = reference.pinned(&exported.digest);
    let skipped: Vec<String> = exported
        .skipped
        .iter()
        .map(|s| format!("{}: {}", s.origin, s.reason))
        .collect();
    if json {
        let out = serde_json::json!({
            "image": reference.to_string(),
            "digest": exported.digest.to_string(),
            "output": output.display().to_string(),
            "bytes": bytes,
            "blobs": exported.blobs,
            "evidence": exported.evidence,
            "stores": carried,
            "skipped": skipped,
        });
        return Ok(Outcome {
            output: common::json_document(&out),
            exit: 0,
        });
    }
    let mut text = format!(
        "exported {pinned} to {} ({bytes} bytes): {} blobs, {} signature, attestation and referrer manifests",
        output.display(),
        exported.blobs,
        exported.evidence
    );
    for c in &carried {
        text.push_str(&format!(
            "\nstore {}: {} entries at log size {}",
            c["store"].as_str().unwrap_or(""),
            c["entries"],
            c["log_size"]
        ));
    }
    for s in &skipped {
        text.push_str(&format!("\nnot copied: {s}"));
    }
    Ok(Outcome {
        output: text,
        exit: 0,
    })
}

pub fn import(
    socket: &crate::node::SocketArgs,
    archive: &Path,
    requester: &Requester,
    json: bool,
) -> anyhow::Result<Outcome> {
    let client = socket.client()?;
    let len = std::fs::metadata(archive)
        .with_context(|| format!("cannot read {}", archive.display()))?
        .len();
    if len > warden_api::local::MAX_IMPORT_BYTES {
        bail!(
            "{} is larger than the {} bytes a node imports",
            archive.display(),
            warden_api::local::MAX_IMPORT_BYTES
        );
    }
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("organization", &requester.organization),
        ("user", &requester.user),
        ("collaboration", &requester.collaboration),
        ("function", &requester.function),
    ] {
        if let Some(v) = v {
            query.append_pair(k, v);
        }
    }
    let imported = match client.import(archive, &query.finish()) {
        Ok(i) => i,
        Err(why) => {
            return Ok(Outcome {
                output: format!("not imported: {why}"),
                exit: 1,
            });
        }
    };
    if json {
        return Ok(Outcome {
            output: common::json_document(&imported),
            exit: 0,
        });
    }
    let mut lines = vec![format!(
        "imported {} as {} (engine image {}), permitted by {}",
        imported.image, imported.digest, imported.image_id, imported.rule
    )];
    lines.extend(imported.signers.iter().map(|s| format!("signed by {s}")));
    lines.extend(imported.approvals.iter().map(|a| format!("approved: {a}")));
    lines.extend(imported.builds.iter().map(|b| format!("built: {b}")));
    lines.extend(
        imported
            .not_counted
            .iter()
            .map(|n| format!("not counted: {n}")),
    );
    let lines: Vec<String> = lines
        .iter()
        .map(|l| warden_api::display::safe(l).into_owned())
        .collect();
    Ok(Outcome {
        output: lines.join("\n"),
        exit: 0,
    })
}
