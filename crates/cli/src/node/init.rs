//! `warden node init --org NAME --dir DIR [--server URL]`: a data owner's node directory. The
//! keys are made by `warden keys generate`'s own code (crates/cli/src/keys.rs); the files
//! written are checked by the node's configuration loader and the policy loader before the
//! command succeeds. Every file is 0600, the directory 0700; no file is overwritten, and a
//! failure removes what this run wrote.

use std::fmt::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use warden_trust::KeyAlgorithm;

use crate::keys;

/// The server URL written when none is given.
const PLACEHOLDER_URL: &str = "https://warden.example.invalid";

/// The files `init` writes, relative to the directory.
const FILES: [&str; 10] = [
    "org.key",
    "org.key.pub",
    "certify.key",
    "certify.pub",
    "certify.pw",
    "audit.key",
    "audit.pub",
    "audit.pw",
    "policy.toml",
    "node.toml",
];

fn valid_org(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Removes what a failed `init` wrote.
struct Written(Vec<PathBuf>, bool);

impl Drop for Written {
    fn drop(&mut self) {
        if !self.1 {
            for p in &self.0 {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

fn private(path: &Path) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", path.display()))
}

/// A random password for a key file: 256 bits from the operating system, hex.
fn password() -> String {
    format!(
        "{}{}",
        warden_seal::envelope::new_nonce(),
        warden_seal::envelope::new_nonce()
    )
}

pub(crate) fn policy_text(org: &str) -> String {
    format!(
        "# The policy of {org}'s node (docs/policy.md): which algorithm images may run here.\n\
         # With no rule it denies everything. Add [[allow]] rules naming repositories and the\n\
         # keys that must have signed them, then check the file:\n\
         #   warden policy lint policy.toml\n\
         version = 1\n"
    )
}

fn config_text(org: &str, server: &str, fingerprint: &str, certifier: &str) -> String {
    format!(
        r#"# The node of {org} (docs/node.md has every key). Relative paths are relative to this file.

[server]
url = "{server}"
# The node's API key, printed once by the operator's `warden node create ... --key-file`:
# put it in this file (0600).
api_key_file = "node.key"

[node]
policy = "policy.toml"
secret_key = "org.key"
spool_dir = "spool"
# At start the node runs its built-in isolation probe hardened and refuses to start unless it
# finds every isolation in force. `probe = "PATH"` runs another static probe binary instead.

[audit]
dir = "audit"
signing_key = "audit.key"
password_file = "audit.pw"

[organizations]
# Pinned encryption key fingerprints, by organization name; add the other organizations of the
# collaboration as their data owners hand them to you.
{org} = "{fingerprint}"

[certifiers]
# Pinned certification key IDs, by organization name: the keys that sign researchers'
# certificates (`warden keys certify --certifier certify.key ...`).
{org} = "{certifier}"

# [data]
# records = "/srv/data/records.csv"   # mounted read-only at /mnt/data/records
"#
    )
}

/// Writes the directory; the JSON document `--json` prints.
pub(super) fn init(org: &str, dir: &Path, server: Option<&str>) -> anyhow::Result<Value> {
    if !valid_org(org) {
        bail!(
            "`{}` is not an organization name this command writes: 1 to 64 of A-Z a-z 0-9 . _ -",
            org.escape_debug()
        );
    }
    let url = server.unwrap_or(PLACEHOLDER_URL);
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.contains('"') {
        bail!(
            "--server `{}` is not an http:// or https:// URL",
            url.escape_debug()
        );
    }
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("{} exists and is not a directory", dir.display()),
        Err(_) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?,
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} 0700", dir.display()))?;
    let path = |name: &str| dir.join(name);
    let all: Vec<PathBuf> = FILES.iter().map(|f| path(f)).collect();
    let refs: Vec<&Path> = all.iter().map(PathBuf::as_path).collect();
    keys::refuse_existing(&refs, "--dir")?;

    let mut written = Written(Vec::new(), false);
    for pw in ["certify.pw", "audit.pw"] {
        keys::write_new(&path(pw), format!("{}\n", password()).as_bytes(), 0o600)?;
        written.0.push(path(pw));
    }
    let enc = keys::generate_x25519(&path("org.key"))?;
    written.0.extend([path("org.key"), path("org.key.pub")]);
    let cert = keys::generate(
        &path("certify"),
        KeyAlgorithm::Ed25519,
        Some(&path("certify.pw")),
    )?;
    written.0.extend([path("certify.key"), path("certify.pub")]);
    let audit = keys::generate(
        &path("audit"),
        KeyAlgorithm::EcdsaP256,
        Some(&path("audit.pw")),
    )?;
    written.0.extend([path("audit.key"), path("audit.pub")]);
    for p in ["org.key.pub", "certify.pub", "audit.pub"] {
        private(&path(p))?;
    }
    let fingerprint = enc["fingerprint"].as_str().unwrap_or_default().to_owned();
    let certifier = cert["key_id"].as_str().unwrap_or_default().to_owned();
    let audit_id = audit["key_id"].as_str().unwrap_or_default().to_owned();
    keys::write_new(&path("policy.toml"), policy_text(org).as_bytes(), 0o600)?;
    written.0.push(path("policy.toml"));
    keys::write_new(
        &path("node.toml"),
        config_text(org, url, &fingerprint, &certifier).as_bytes(),
        0o600,
    )?;
    written.0.push(path("node.toml"));

    // What was written loads as the node will load it.
    warden_policy::Policy::load(&path("policy.toml"))
        .map_err(|e| anyhow::anyhow!("the policy written does not load: {e}"))?;
    warden_node::config::Config::load(&path("node.toml"))
        .map_err(|e| anyhow::anyhow!("the configuration written does not load: {e}"))?;
    written.1 = true;

    let show = |name: &str| path(name).display().to_string();
    let mut next = Vec::new();
    next.push(format!(
        "get the node's API key from the operator (`warden node create --org {org} --collab \
         COLLAB --key-file node.key`) and put it in {} (0600)",
        show("node.key")
    ));
    if server.is_none() {
        next.push(format!(
            "set [server] url in {} (now the placeholder {PLACEHOLDER_URL})",
            show("node.toml")
        ));
    }
    next.push(format!(
        "pin the other organizations' fingerprints and certifiers in {}",
        show("node.toml")
    ));
    next.push(format!(
        "add [[allow]] rules to {} and check them with `warden policy lint`",
        show("policy.toml")
    ));
    next.push(format!("warden node start --config {}", show("node.toml")));
    Ok(json!({
        "organization": org,
        "dir": dir.display().to_string(),
        "server": url,
        "encryption_key": {
            "file": show("org.key"),
            "public_key": show("org.key.pub"),
            "fingerprint": fingerprint,
        },
        "certification_key": {
            "file": show("certify.key"),
            "public_key": show("certify.pub"),
            "password_file": show("certify.pw"),
            "algorithm": cert["algorithm"],
            "key_id": certifier,
        },
        "audit_key": {
            "file": show("audit.key"),
            "public_key": show("audit.pub"),
            "password_file": show("audit.pw"),
            "algorithm": audit["algorithm"],
            "key_id": audit_id,
        },
        "policy": show("policy.toml"),
        "config": show("node.toml"),
        "pins": {
            "organizations": format!("{org} = \"{fingerprint}\""),
            "certifiers": format!("{org} = \"{certifier}\""),
        },
        "next": next,
    }))
}

/// The text `init` prints without `--json`.
pub(super) fn text(v: &Value) -> String {
    let s = |p: &[&str]| {
        let mut x = v;
        for k in p {
            x = &x[*k];
        }
        x.as_str().unwrap_or_default().to_owned()
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node directory {} for organization {} (0700, every file 0600)",
        s(&["dir"]),
        s(&["organization"])
    );
    let _ = writeln!(
        out,
        "  encryption key     {}  fingerprint {}",
        s(&["encryption_key", "file"]),
        s(&["encryption_key", "fingerprint"])
    );
    let _ = writeln!(
        out,
        "  certification key  {}  key ID {}  (password in {})",
        s(&["certification_key", "file"]),
        s(&["certification_key", "key_id"]),
        s(&["certification_key", "password_file"])
    );
    let _ = writeln!(
        out,
        "  audit signing key  {}  key ID {}  (verify the log with --key {})",
        s(&["audit_key", "file"]),
        s(&["audit_key", "key_id"]),
        s(&["audit_key", "public_key"])
    );
    let _ = writeln!(
        out,
        "  policy             {}  (denies everything until you add rules)",
        s(&["policy"])
    );
    let _ = writeln!(out, "  configuration      {}", s(&["config"]));
    let _ = writeln!(
        out,
        "hand these to the operator and the researchers, to pin:"
    );
    let _ = writeln!(out, "  [organizations] {}", s(&["pins", "organizations"]));
    let _ = writeln!(out, "  [certifiers]    {}", s(&["pins", "certifiers"]));
    let _ = writeln!(out, "next:");
    for n in v["next"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  - {}", n.as_str().unwrap_or_default());
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organization_names_are_checked() {
        assert!(valid_org("hospital-b"));
        assert!(valid_org("org_1.x"));
        assert!(!valid_org(""));
        assert!(!valid_org("a b"));
        assert!(!valid_org("x\"y"));
        assert!(!valid_org(&"a".repeat(65)));
    }
}
