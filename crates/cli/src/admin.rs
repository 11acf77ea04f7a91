//! `warden org|collab|user ...` and `warden node create|list|rotate-key` (also spelled `warden
//! admin org|collab|user|node ...`): the server's administration API from the command line, as the profile's logged-in account (`warden login`). The server decides who may do
//! what; a refusal prints the server's reason and exits 1.
//!
//! Output is an aligned table (lists) or `key: value` lines (one item), every string from the
//! server escaped (`warden_api::display::safe`); with `--json`, one JSON document (the API's
//! field names, plus the names this command resolved), with terminal controls escaped as
//! `\uXXXX`. A node's API key is printed once, or written to `--key-file` (0600) and not
//! printed.
//!
//! Exit status: 0 ok, 1 refused by the server (its reason printed), 2 bad input.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_api::display::safe;
use warden_api::{
    Collaboration, CreateCollaboration, CreateNode, CreateOrganization, CreateUser, CreatedNode,
    Node, Organization, Role, User,
};
use warden_client::admin::fingerprint;
use warden_client::{Client, CollaborationRef};
use warden_seal::PublicKey;

use crate::common::Outcome;
use crate::login::{self, ProfileChoice};

#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub profile: ProfileChoice,
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Organizations: a name and the X25519 encryption key its nodes hold.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Collaborations: member organizations that run tasks together.
    Collab {
        #[command(subcommand)]
        command: CollabCommand,
    },
    /// User accounts: roles, disabling, password resets.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Nodes: one per organization and collaboration, each with an API key.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organization (root only).
    ///
    /// Example: warden org create --name hospital-a --public-key hospital-a.key.pub
    Create {
        #[arg(long, value_name = "NAME")]
        name: String,
        /// The organization's X25519 public key file (the .pub of `warden keys generate
        /// --kind x25519`, base64).
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
    },
    /// List the organizations this account sees.
    ///
    /// Example: warden org list --json
    List,
    /// Show one organization, by name or id.
    ///
    /// Example: warden org show hospital-a
    Show {
        #[arg(value_name = "ORG")]
        org: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CollabCommand {
    /// Create a collaboration of member organizations (root only).
    ///
    /// Example: warden collab create --name cardio --org hospital-a --org hospital-b
    Create {
        #[arg(long, value_name = "NAME")]
        name: String,
        /// A member organization, by name or id; repeat for each.
        #[arg(long = "org", value_name = "ORG", required = true)]
        orgs: Vec<String>,
        /// Inputs and results are not sealed (nodes must list the collaboration as plaintext).
        #[arg(long)]
        plaintext: bool,
    },
    /// List the collaborations this account sees.
    ///
    /// Example: warden collab list --org hospital-a
    List {
        /// Only those this organization (name or id) is a member of.
        #[arg(long, value_name = "ORG")]
        org: Option<String>,
    },
    /// Show one collaboration and its members, by name or id.
    ///
    /// Example: warden collab show cardio
    Show {
        #[arg(value_name = "COLLAB")]
        collab: String,
    },
    /// Add an organization to a collaboration (root only): its users see the collaboration and
    /// new tasks may target it; make its node with `warden node create`.
    ///
    /// Example: warden collab add-org cardio hospital-c
    AddOrg {
        /// The collaboration, by name or id.
        #[arg(value_name = "COLLAB")]
        collab: String,
        /// The organization, by name or id.
        #[arg(value_name = "ORG")]
        org: String,
    },
    /// Remove an organization from a collaboration (root only): no new task targets it there,
    /// its users stop seeing the collaboration and its node's key there is revoked; its past
    /// runs stay. Refused while any of its runs there has not ended (wait, or cancel their
    /// tasks with `warden task cancel`). `add-org` adds it again.
    ///
    /// Example: warden collab remove-org cardio hospital-c
    RemoveOrg {
        /// The collaboration, by name or id.
        #[arg(value_name = "COLLAB")]
        collab: String,
        /// The organization, by name or id.
        #[arg(value_name = "ORG")]
        org: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user account (root, or an org admin for its own organization).
    ///
    /// Example: warden user create --username rita --role researcher --org hospital-a
    Create {
        #[arg(long, value_name = "NAME")]
        username: String,
        /// root, org_admin, researcher or viewer.
        #[arg(long, value_name = "ROLE", default_value = "researcher")]
        role: String,
        /// The user's organization, by name or id (every role but root has one).
        #[arg(long, value_name = "ORG")]
        org: Option<String>,
        /// Read the new password from FILE instead of asking for it (twice) on the terminal.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// List the users this account sees.
    ///
    /// Example: warden user list --org hospital-a
    List {
        /// Only the users of this organization (name or id).
        #[arg(long, value_name = "ORG")]
        org: Option<String>,
    },
    /// Show one user, by user name or id.
    ///
    /// Example: warden user show rita
    Show {
        #[arg(value_name = "USER")]
        user: String,
    },
    /// Disable a user: login refused, every token revoked at once.
    ///
    /// Example: warden user disable rita
    Disable {
        #[arg(value_name = "USER")]
        user: String,
    },
    /// Enable a disabled user again.
    ///
    /// Example: warden user enable rita
    Enable {
        #[arg(value_name = "USER")]
        user: String,
    },
    /// Set another user's password; every session of that user ends.
    ///
    /// Example: warden user reset-password rita --password-file rita.pw
    ResetPassword {
        #[arg(value_name = "USER")]
        user: String,
        /// Read the new password from FILE instead of asking for it (twice) on the terminal.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    Create(NodeCreate),
    List(NodeList),
    /// Show one node, by id.
    ///
    /// Example: warden admin node show 3
    Show {
        id: i64,
    },
    RotateKey(NodeRotate),
}

/// Create the node of an organization in a collaboration; its API key is shown once.
///
/// Example: warden node create --org hospital-a --collab cardio --key-file node.key
#[derive(Debug, Args)]
pub struct NodeCreate {
    /// The node's organization, by name or id.
    #[arg(long, value_name = "ORG")]
    pub org: String,
    /// The collaboration, by name or id.
    #[arg(long, value_name = "COLLAB")]
    pub collab: String,
    /// Write the API key to FILE (mode 0600, replaced atomically) instead of printing it.
    #[arg(long, value_name = "FILE", conflicts_with = "config_out")]
    pub key_file: Option<PathBuf>,
    /// Write a ready node configuration into DIR (0700, every file 0600, none overwritten):
    /// node.key (the API key, not printed), node.toml (this server's URL, the key file, the
    /// pinned fingerprints of every organization of the collaboration) and a deny-all
    /// policy.toml. The data owner adds org.key, audit.key and audit.pw (`warden node init`
    /// makes them) and pins certifiers.
    #[arg(long, value_name = "DIR")]
    pub config_out: Option<PathBuf>,
}

/// The files `node create --config-out DIR` writes.
const CONFIG_OUT_FILES: [&str; 3] = ["node.key", "node.toml", "policy.toml"];

/// Checks `--config-out DIR` before anything is sent: a folder (or nothing yet) holding none of
/// the files it writes.
fn check_config_out(dir: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("--config-out {} exists and is not a folder", dir.display()),
        Err(_) => return Ok(()),
    }
    let paths: Vec<PathBuf> = CONFIG_OUT_FILES.iter().map(|f| dir.join(f)).collect();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    crate::keys::refuse_existing(&refs, "--config-out")
}

/// The node configuration `--config-out` writes: the server, the key file, every member's
/// pinned encryption key fingerprint.
fn node_config_text(org: &str, collab: &str, server: &str, pins: &[(String, String)]) -> String {
    let mut pinned = String::new();
    for (name, fp) in pins {
        let _ = writeln!(pinned, "{} = \"{fp}\"", toml_key(name));
    }
    let url = serde_json::to_string(server).unwrap_or_default();
    format!(
        r#"# The node of {org} in collaboration {collab} (docs/node.md has every key), written by
# `warden node create --config-out`. Relative paths are relative to this file.
# Add org.key (the organization's X25519 secret key), audit.key and audit.pw (`warden node init`
# makes them), pin [certifiers], add [[allow]] rules to policy.toml, then
#   warden node start --config node.toml

[server]
url = {url}
api_key_file = "node.key"

[node]
policy = "policy.toml"
secret_key = "org.key"
spool_dir = "spool"

[audit]
dir = "audit"
signing_key = "audit.key"
password_file = "audit.pw"

[organizations]
# Pinned encryption key fingerprints of the collaboration's organizations, as this server
# showed them when the node was created; check them with each data owner.
{pinned}
[certifiers]
# Pinned certification key IDs, by organization name: the keys that sign researchers'
# certificates, as each organization hands them to you.
"#
    )
}

/// A TOML key: bare when it can be, else quoted.
fn toml_key(name: &str) -> String {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        name.to_owned()
    } else {
        serde_json::to_string(name).unwrap_or_default()
    }
}

/// List the nodes this account sees.
///
/// Example: warden node list --collab cardio
#[derive(Debug, Args)]
pub struct NodeList {
    /// Only the nodes of this collaboration (name or id).
    #[arg(long, value_name = "COLLAB")]
    pub collab: Option<String>,
}

/// Give a node a new API key; the old one, and every token issued under it, stop working.
///
/// Example: warden node rotate-key 3 --key-file /etc/warden/node/node.key
#[derive(Debug, Args)]
pub struct NodeRotate {
    /// The node's id (`warden node list` shows it).
    pub id: i64,
    /// Write the API key to FILE (mode 0600, replaced atomically) instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

// The top-level spellings `warden org|collab|user ...` and `warden node create|list|rotate-key`
// wrap the same commands as `warden admin ...` (kept so that scripts keep working): one
// implementation, `run`.

// `warden org|collab|user`: one group of the administration commands, with the profile and
// `--json` options of `warden admin` (a plain comment: a doc comment would become its help).
#[derive(Debug, Args)]
pub struct Group<C: Subcommand> {
    #[command(flatten)]
    pub profile: ProfileChoice,
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: C,
}

// `warden node create|list|rotate-key`: one node command, with the profile and `--json` options
// of `warden admin` (its help is the wrapped command's).
#[derive(Debug, Args)]
pub struct One<A: Args> {
    #[command(flatten)]
    pub profile: ProfileChoice,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub args: A,
}

impl<C: Subcommand> Group<C> {
    /// The same command under `warden admin`.
    pub fn admin(self, wrap: impl FnOnce(C) -> AdminCommand) -> AdminArgs {
        AdminArgs {
            profile: self.profile,
            json: self.json,
            command: wrap(self.command),
        }
    }
}

impl<A: Args> One<A> {
    /// The same command under `warden admin node`.
    pub fn admin(self, wrap: impl FnOnce(A) -> NodeCommand) -> AdminArgs {
        AdminArgs {
            profile: self.profile,
            json: self.json,
            command: AdminCommand::Node {
                command: wrap(self.args),
            },
        }
    }
}

/// Runs a `warden admin` subcommand.
pub fn run(args: AdminArgs) -> anyhow::Result<Outcome> {
    // Inputs that need no server are checked first, so bad input never reaches it.
    let prepared = prepare(&args.command)?;
    let runtime = login::runtime()?;
    runtime.block_on(async {
        let (client, file, before) = login::connect(&args.profile).await?;
        let out = dispatch(&client, &args.command, prepared, args.json).await;
        login::finish(&client, &file, before.as_ref())?;
        let output = out?;
        Ok(Outcome {
            output: json_safe_if(args.json, output),
            exit: 0,
        })
    })
}

/// What a command reads before it speaks to the server.
enum Prepared {
    None,
    PublicKey(PublicKey),
    Password(String),
    User(Role, String),
}

fn prepare(command: &AdminCommand) -> anyhow::Result<Prepared> {
    Ok(match command {
        AdminCommand::Org {
            command: OrgCommand::Create { name, public_key },
        } => {
            nonempty(name, "--name")?;
            let text = crate::common::read_small(public_key)?;
            let text = std::str::from_utf8(&text)
                .with_context(|| format!("{} is not text", public_key.display()))?;
            let key = PublicKey::from_base64(text).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not an X25519 public key file ({e}); give the .pub that `warden keys \
                     generate --kind x25519 --out ORG.key` wrote",
                    public_key.display()
                )
            })?;
            Prepared::PublicKey(key)
        }
        AdminCommand::Collab {
            command: CollabCommand::Create { name, .. },
        } => {
            nonempty(name, "--name")?;
            Prepared::None
        }
        AdminCommand::User {
            command:
                UserCommand::Create {
                    username,
                    role,
                    org,
                    password_file,
                },
        } => {
            nonempty(username, "--username")?;
            let role = warden_client::admin::role(role).map_err(anyhow::Error::msg)?;
            if role != Role::Root && org.is_none() {
                bail!("a {role} belongs to an organization: name it with --org ORG");
            }
            if role == Role::Root && org.is_some() {
                bail!("a root user belongs to no organization: leave out --org");
            }
            let pw = new_password(password_file.as_deref(), username)?;
            Prepared::User(role, pw)
        }
        AdminCommand::User {
            command:
                UserCommand::ResetPassword {
                    user,
                    password_file,
                },
        } => Prepared::Password(new_password(password_file.as_deref(), user)?),
        AdminCommand::Node {
            command:
                NodeCommand::Create(NodeCreate {
                    config_out: Some(dir),
                    ..
                }),
        } => {
            check_config_out(dir)?;
            Prepared::None
        }
        AdminCommand::Node {
            command:
                NodeCommand::Create(NodeCreate { key_file, .. })
                | NodeCommand::RotateKey(NodeRotate { key_file, .. }),
        } => {
            if let Some(f) = key_file {
                check_key_file(f)?;
            }
            Prepared::None
        }
        _ => Prepared::None,
    })
}

fn nonempty(value: &str, flag: &str) -> anyhow::Result<()> {
    if value.trim().is_empty() {
        bail!("{flag} is empty; give a name");
    }
    Ok(())
}

/// A new password, from a file or asked twice on the terminal.
fn new_password(file: Option<&Path>, user: &str) -> anyhow::Result<String> {
    let pw = login::read_password(file, &format!("new password for {user}: "))?;
    if file.is_none() {
        let again = login::read_password(None, "the same password again: ")?;
        if again != pw {
            bail!("the two passwords differ; nothing was changed");
        }
    }
    Ok(pw)
}

/// A key file's folder must exist, and the file must not be a folder.
fn check_key_file(path: &Path) -> anyhow::Result<()> {
    if path.is_dir() {
        bail!("--key-file {} is a folder; name a file", path.display());
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(p) = parent {
        if !p.is_dir() {
            bail!(
                "--key-file {}: the folder {} does not exist; create it first",
                path.display(),
                p.display()
            );
        }
    }
    Ok(())
}

async fn dispatch(
    c: &Client,
    command: &AdminCommand,
    prepared: Prepared,
    json: bool,
) -> anyhow::Result<String> {
    match command {
        AdminCommand::Org { command } => org(c, command, prepared, json).await,
        AdminCommand::Collab { command } => collab(c, command, json).await,
        AdminCommand::User { command } => user(c, command, prepared, json).await,
        AdminCommand::Node { command } => node(c, command, json).await,
    }
}

// ----------------------------------------------------------------------------- resolving names

/// An organization by id (all digits) or exact name.
async fn find_org(c: &Client, which: &str) -> anyhow::Result<Organization> {
    if let Ok(id) = which.parse::<i64>() {
        return Ok(c.organization(id).await?);
    }
    match c.organization_named(which).await? {
        Some(o) => Ok(o),
        None => bail!(
            "no organization `{which}` is visible to this account; {} (`warden org list`)",
            visible(&org_names(c).await, "organization")
        ),
    }
}

/// `it sees: a, b` (escaped), or `it sees none`: what an unknown name could have been.
fn visible(names: &BTreeMap<i64, String>, what: &str) -> String {
    if names.is_empty() {
        return format!("it sees no {what}");
    }
    let mut list: Vec<String> = names.values().map(|n| safe(n).into_owned()).collect();
    list.sort();
    format!("it sees: {}", list.join(", "))
}

/// A collaboration by id (all digits) or exact name; an unknown one names those the account
/// sees.
pub(crate) async fn find_collab(c: &Client, which: &str) -> anyhow::Result<Collaboration> {
    let r = match which.parse::<i64>() {
        Ok(id) => CollaborationRef::Id(id),
        Err(_) => CollaborationRef::Name(which.to_owned()),
    };
    match c.collaboration(&r).await {
        Ok(x) => Ok(x),
        Err(warden_client::ClientError::NoCollaboration(_)) => bail!(
            "no collaboration `{}` is visible to this account; {} (`warden collab list`)",
            safe(which),
            visible(&collab_names(c).await, "collaboration")
        ),
        Err(e) => Err(e.into()),
    }
}

async fn find_user(c: &Client, which: &str) -> anyhow::Result<User> {
    if let Ok(id) = which.parse::<i64>() {
        return Ok(c.user(id).await?);
    }
    match c
        .users(None)
        .await?
        .into_iter()
        .find(|u| u.username == which)
    {
        Some(u) => Ok(u),
        None => bail!(
            "no user `{which}` is visible to this account; `warden user list` shows those \
             it sees"
        ),
    }
}

/// Names of the organizations this account sees, by id (for tables).
async fn org_names(c: &Client) -> BTreeMap<i64, String> {
    c.organization_names().await.unwrap_or_default()
}

async fn collab_names(c: &Client) -> BTreeMap<i64, String> {
    c.collaboration_names().await.unwrap_or_default()
}

fn name_of(names: &BTreeMap<i64, String>, id: i64) -> Option<String> {
    names.get(&id).cloned()
}

/// `name (id)`, escaped, or the id alone.
fn shown(names: &BTreeMap<i64, String>, id: i64) -> String {
    match names.get(&id) {
        Some(n) => format!("{} ({id})", safe(n)),
        None => id.to_string(),
    }
}

// ----------------------------------------------------------------------------- organizations

fn org_json(o: &Organization) -> Value {
    let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
    v["fingerprint"] = json!(fingerprint(o));
    v
}

fn when(t: &OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn org_text(o: &Organization) -> String {
    fields(&[
        ("id", o.id.to_string()),
        ("name", safe(&o.name).into_owned()),
        ("fingerprint", fingerprint(o)),
        ("public key", safe(&o.public_key).into_owned()),
        ("created", when(&o.created_at)),
    ])
}

async fn org(
    c: &Client,
    command: &OrgCommand,
    prepared: Prepared,
    json: bool,
) -> anyhow::Result<String> {
    match command {
        OrgCommand::Create { name, .. } => {
            let Prepared::PublicKey(key) = prepared else {
                bail!("the public key was not read");
            };
            let o = c
                .create_organization(&CreateOrganization {
                    name: name.clone(),
                    public_key: key.to_base64(),
                })
                .await?;
            Ok(if json {
                org_json(&o).to_string()
            } else {
                format!("created organization\n{}", org_text(&o))
            })
        }
        OrgCommand::List => {
            let orgs = c.organizations().await?;
            Ok(if json {
                Value::Array(orgs.iter().map(org_json).collect()).to_string()
            } else {
                table(
                    &["ID", "NAME", "FINGERPRINT", "CREATED"],
                    orgs.iter()
                        .map(|o| {
                            vec![
                                o.id.to_string(),
                                safe(&o.name).into_owned(),
                                fingerprint(o),
                                when(&o.created_at),
                            ]
                        })
                        .collect(),
                )
            })
        }
        OrgCommand::Show { org } => {
            let o = find_org(c, org).await?;
            Ok(if json {
                org_json(&o).to_string()
            } else {
                org_text(&o)
            })
        }
    }
}

// ----------------------------------------------------------------------------- collaborations

fn collab_json(x: &Collaboration, names: &BTreeMap<i64, String>) -> Value {
    let mut v = serde_json::to_value(x).unwrap_or(Value::Null);
    v["organization_names"] = json!(
        x.organizations
            .iter()
            .map(|id| name_of(names, *id))
            .collect::<Vec<_>>()
    );
    v
}

fn members(x: &Collaboration, names: &BTreeMap<i64, String>) -> String {
    x.organizations
        .iter()
        .map(|id| shown(names, *id))
        .collect::<Vec<_>>()
        .join(", ")
}

fn collab_text(x: &Collaboration, names: &BTreeMap<i64, String>) -> String {
    fields(&[
        ("id", x.id.to_string()),
        ("name", safe(&x.name).into_owned()),
        ("encrypted", x.encrypted.to_string()),
        ("members", members(x, names)),
        ("created", when(&x.created_at)),
    ])
}

async fn collab(c: &Client, command: &CollabCommand, json: bool) -> anyhow::Result<String> {
    match command {
        CollabCommand::Create {
            name,
            orgs,
            plaintext,
        } => {
            let mut ids = Vec::new();
            for o in orgs {
                let id = find_org(c, o).await?.id;
                if ids.contains(&id) {
                    bail!("organization `{o}` is named twice; name each member once");
                }
                ids.push(id);
            }
            let x = c
                .create_collaboration(&CreateCollaboration {
                    name: name.clone(),
                    organizations: ids,
                    encrypted: !plaintext,
                })
                .await?;
            let names = org_names(c).await;
            Ok(if json {
                collab_json(&x, &names).to_string()
            } else {
                format!("created collaboration\n{}", collab_text(&x, &names))
            })
        }
        CollabCommand::List { org } => {
            let org_id = match org {
                Some(o) => Some(find_org(c, o).await?.id),
                None => None,
            };
            let list = c.collaborations(org_id).await?;
            let names = org_names(c).await;
            Ok(if json {
                Value::Array(list.iter().map(|x| collab_json(x, &names)).collect()).to_string()
            } else {
                table(
                    &["ID", "NAME", "ENCRYPTED", "MEMBERS"],
                    list.iter()
                        .map(|x| {
                            vec![
                                x.id.to_string(),
                                safe(&x.name).into_owned(),
                                x.encrypted.to_string(),
                                members(x, &names),
                            ]
                        })
                        .collect(),
                )
            })
        }
        CollabCommand::AddOrg { collab, org } => {
            let x = find_collab(c, collab).await?;
            let o = find_org(c, org).await?;
            let x = c.add_collaboration_member(x.id, o.id).await?;
            let names = org_names(c).await;
            Ok(if json {
                collab_json(&x, &names).to_string()
            } else {
                format!(
                    "added {} to collaboration {}\n{}",
                    safe(&o.name),
                    safe(&x.name),
                    collab_text(&x, &names)
                )
            })
        }
        CollabCommand::RemoveOrg { collab, org } => {
            let x = find_collab(c, collab).await?;
            let o = find_org(c, org).await?;
            let x = c.remove_collaboration_member(x.id, o.id).await?;
            let names = org_names(c).await;
            Ok(if json {
                collab_json(&x, &names).to_string()
            } else {
                format!(
                    "removed {} from collaboration {}\n{}",
                    safe(&o.name),
                    safe(&x.name),
                    collab_text(&x, &names)
                )
            })
        }
        CollabCommand::Show { collab } => {
            let x = find_collab(c, collab).await?;
            let names = org_names(c).await;
            Ok(if json {
                collab_json(&x, &names).to_string()
            } else {
                collab_text(&x, &names)
            })
        }
    }
}

// ----------------------------------------------------------------------------- users

fn user_json(u: &User, names: &BTreeMap<i64, String>) -> Value {
    let mut v = serde_json::to_value(u).unwrap_or(Value::Null);
    v["organization"] = json!(u.organization_id.and_then(|id| name_of(names, id)));
    v
}

fn user_org(u: &User, names: &BTreeMap<i64, String>) -> String {
    u.organization_id
        .map(|id| shown(names, id))
        .unwrap_or_else(|| "-".to_owned())
}

fn user_text(u: &User, names: &BTreeMap<i64, String>) -> String {
    fields(&[
        ("id", u.id.to_string()),
        ("username", safe(&u.username).into_owned()),
        ("role", u.role.to_string()),
        ("organization", user_org(u, names)),
        ("disabled", u.disabled.to_string()),
        ("created", when(&u.created_at)),
    ])
}

async fn user(
    c: &Client,
    command: &UserCommand,
    prepared: Prepared,
    json: bool,
) -> anyhow::Result<String> {
    let (heading, u) = match command {
        UserCommand::Create { username, org, .. } => {
            let Prepared::User(role, password) = prepared else {
                bail!("the password was not read");
            };
            let organization_id = match org {
                Some(o) => Some(find_org(c, o).await?.id),
                None => None,
            };
            let u = c
                .create_user(&CreateUser {
                    username: username.clone(),
                    password,
                    role,
                    organization_id,
                })
                .await?;
            ("created user", u)
        }
        UserCommand::List { org } => {
            let org_id = match org {
                Some(o) => Some(find_org(c, o).await?.id),
                None => None,
            };
            let users = c.users(org_id).await?;
            let names = org_names(c).await;
            return Ok(if json {
                Value::Array(users.iter().map(|u| user_json(u, &names)).collect()).to_string()
            } else {
                table(
                    &["ID", "USERNAME", "ROLE", "ORGANIZATION", "DISABLED"],
                    users
                        .iter()
                        .map(|u| {
                            vec![
                                u.id.to_string(),
                                safe(&u.username).into_owned(),
                                u.role.to_string(),
                                user_org(u, &names),
                                u.disabled.to_string(),
                            ]
                        })
                        .collect(),
                )
            });
        }
        UserCommand::Show { user } => ("", find_user(c, user).await?),
        UserCommand::Disable { user } => {
            let id = find_user(c, user).await?.id;
            ("disabled user", c.set_user_disabled(id, true).await?)
        }
        UserCommand::Enable { user } => {
            let id = find_user(c, user).await?.id;
            ("enabled user", c.set_user_disabled(id, false).await?)
        }
        UserCommand::ResetPassword { user, .. } => {
            let Prepared::Password(password) = prepared else {
                bail!("the password was not read");
            };
            let u = find_user(c, user).await?;
            c.reset_password(u.id, &password).await?;
            (
                "password reset (every session of the user ended) for user",
                u,
            )
        }
    };
    let names = org_names(c).await;
    Ok(if json {
        user_json(&u, &names).to_string()
    } else if heading.is_empty() {
        user_text(&u, &names)
    } else {
        format!("{heading}\n{}", user_text(&u, &names))
    })
}

// ----------------------------------------------------------------------------- nodes

fn node_json(n: &Node, orgs: &BTreeMap<i64, String>, collabs: &BTreeMap<i64, String>) -> Value {
    let mut v = serde_json::to_value(n).unwrap_or(Value::Null);
    v["organization"] = json!(name_of(orgs, n.organization_id));
    v["collaboration"] = json!(name_of(collabs, n.collaboration_id));
    v
}

fn last_seen(n: &Node) -> String {
    n.last_seen_at
        .as_ref()
        .map(when)
        .unwrap_or_else(|| "never".to_owned())
}

fn node_text(n: &Node, orgs: &BTreeMap<i64, String>, collabs: &BTreeMap<i64, String>) -> String {
    fields(&[
        ("id", n.id.to_string()),
        ("organization", shown(orgs, n.organization_id)),
        ("collaboration", shown(collabs, n.collaboration_id)),
        ("last seen", last_seen(n)),
        ("created", when(&n.created_at)),
    ])
}

/// A new node key: written to `key_file`, or printed once.
fn with_key(
    created: &CreatedNode,
    heading: &str,
    key_file: Option<&Path>,
    orgs: &BTreeMap<i64, String>,
    collabs: &BTreeMap<i64, String>,
    json: bool,
) -> anyhow::Result<String> {
    let n = &created.node;
    if let Some(f) = key_file {
        warden_client::admin::write_private(f, format!("{}\n", created.api_key).as_bytes())
            .with_context(|| {
                format!(
                    "node {} has a new API key, but it cannot be written to {}; rotate the key \
                     again with `warden node rotate-key {}`",
                    n.id,
                    f.display(),
                    n.id
                )
            })?;
    }
    Ok(if json {
        let mut v = node_json(n, orgs, collabs);
        match key_file {
            Some(f) => v["key_file"] = json!(f.display().to_string()),
            None => v["api_key"] = json!(created.api_key),
        }
        v.to_string()
    } else {
        let key_line = match key_file {
            Some(f) => format!("the API key is in {} (mode 0600)", f.display()),
            None => format!(
                "api key: {}\nthe API key is shown only this once: put it in the node's \
                 api_key_file now",
                safe(&created.api_key)
            ),
        };
        format!("{heading}\n{}\n{key_line}", node_text(n, orgs, collabs))
    })
}

/// Writes `--config-out DIR`; what the command prints.
fn write_config_out(
    dir: &Path,
    server: &str,
    o: &Organization,
    x: &Collaboration,
    pins: &[(String, String)],
    created: &CreatedNode,
    json: bool,
) -> anyhow::Result<String> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    check_config_out(dir)?;
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} 0700", dir.display()))?;
    let server = server.trim_end_matches('/');
    let texts = [
        format!("{}\n", created.api_key),
        node_config_text(&o.name, &x.name, server, pins),
        crate::node::init::policy_text(&o.name),
    ];
    for (file, text) in CONFIG_OUT_FILES.iter().zip(&texts) {
        crate::keys::write_new(&dir.join(file), text.as_bytes(), 0o600)?;
    }
    let config = dir.join("node.toml");
    let n = &created.node;
    Ok(if json {
        let orgs = BTreeMap::from([(o.id, o.name.clone())]);
        let collabs = BTreeMap::from([(x.id, x.name.clone())]);
        let mut v = node_json(n, &orgs, &collabs);
        v["config"] = json!(config.display().to_string());
        v["key_file"] = json!(dir.join("node.key").display().to_string());
        v["pins"] = json!(pins.iter().cloned().collect::<BTreeMap<_, _>>());
        v.to_string()
    } else {
        format!(
            "created node {} of {} in {}\nwrote {} (0700): node.key (the API key, mode 0600), \
             node.toml ({} pinned), policy.toml (denies everything)\nnext: add org.key, \
             audit.key and audit.pw (`warden node init` makes them), pin [certifiers], then \
             `warden node start --config {}`",
            n.id,
            safe(&o.name),
            safe(&x.name),
            dir.display(),
            pins.len(),
            config.display()
        )
    })
}

async fn node(c: &Client, command: &NodeCommand, json: bool) -> anyhow::Result<String> {
    match command {
        NodeCommand::Create(NodeCreate {
            org,
            collab,
            key_file,
            config_out,
        }) => {
            let o = find_org(c, org).await?;
            let x = find_collab(c, collab).await?;
            // The members' keys are read before the node exists, so a failure here creates
            // nothing.
            let mut pins = Vec::new();
            if config_out.is_some() {
                for id in &x.organizations {
                    let m = c.organization(*id).await?;
                    pins.push((m.name.clone(), fingerprint(&m)));
                }
            }
            let created = c
                .create_node(&CreateNode {
                    organization_id: o.id,
                    collaboration_id: x.id,
                })
                .await?;
            if let Some(dir) = config_out {
                return write_config_out(dir, c.base(), &o, &x, &pins, &created, json);
            }
            let orgs = BTreeMap::from([(o.id, o.name)]);
            let collabs = BTreeMap::from([(x.id, x.name)]);
            with_key(
                &created,
                "created node",
                key_file.as_deref(),
                &orgs,
                &collabs,
                json,
            )
        }
        NodeCommand::RotateKey(NodeRotate { id, key_file }) => {
            let created = c.rotate_node_key(*id).await?;
            let (orgs, collabs) = (org_names(c).await, collab_names(c).await);
            with_key(
                &created,
                "rotated the key of node (the old key no longer works)",
                key_file.as_deref(),
                &orgs,
                &collabs,
                json,
            )
        }
        NodeCommand::List(NodeList { collab }) => {
            let collab_id = match collab {
                Some(x) => Some(find_collab(c, x).await?.id),
                None => None,
            };
            let nodes = c.nodes(collab_id).await?;
            let (orgs, collabs) = (org_names(c).await, collab_names(c).await);
            Ok(if json {
                Value::Array(
                    nodes
                        .iter()
                        .map(|n| node_json(n, &orgs, &collabs))
                        .collect(),
                )
                .to_string()
            } else {
                table(
                    &["ID", "ORGANIZATION", "COLLABORATION", "LAST SEEN"],
                    nodes
                        .iter()
                        .map(|n| {
                            vec![
                                n.id.to_string(),
                                shown(&orgs, n.organization_id),
                                shown(&collabs, n.collaboration_id),
                                last_seen(n),
                            ]
                        })
                        .collect(),
                )
            })
        }
        NodeCommand::Show { id } => {
            let n = c.node(*id).await?;
            let (orgs, collabs) = (org_names(c).await, collab_names(c).await);
            Ok(if json {
                node_json(&n, &orgs, &collabs).to_string()
            } else {
                node_text(&n, &orgs, &collabs)
            })
        }
    }
}

// ----------------------------------------------------------------------------- output

/// Rows under headers, each column as wide as its widest cell in terminal columns (a wide CJK
/// character takes two, a combining mark none; cells are already escaped).
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    use unicode_width::UnicodeWidthStr as _;
    let mut widths: Vec<usize> = headers.iter().map(|h| h.width()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.width());
            }
        }
    }
    let mut out = String::new();
    let head: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&head).chain(rows.iter()) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.width());
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(none)\n");
    }
    out.trim_end().to_owned()
}

/// `key: value` lines, the keys aligned (values are already escaped).
fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k}:{} {v}", " ".repeat(width - k.len())))
        .collect::<Vec<_>>()
        .join("\n")
}

/// JSON text fit for a terminal: the characters JSON leaves as they are but a terminal could
/// act on (DEL, C1 controls, bidirectional controls; JSON escapes the C0 controls itself) as
/// `\uXXXX` escapes, which read back the same.
pub fn json_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(
            c,
            '\u{7f}'..='\u{9f}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        ) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// [`json_safe`] when the output is JSON.
pub fn json_safe_if(json: bool, text: String) -> String {
    if json { json_safe(&text) } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns_and_say_when_empty() {
        let t = table(
            &["ID", "NAME", "X"],
            vec![
                vec!["1".into(), "a".into(), "yes".into()],
                vec!["12".into(), "hospital-b".into(), "no".into()],
            ],
        );
        assert_eq!(
            t,
            "ID  NAME        X\n1   a           yes\n12  hospital-b  no"
        );
        assert_eq!(table(&["ID"], vec![]), "ID\n(none)");
    }

    #[test]
    fn tables_align_wide_and_combining_characters_by_their_terminal_columns() {
        // 病院 takes four columns, "e\u{301}" (e and a combining acute) one.
        let t = table(
            &["NAME", "X"],
            vec![
                vec!["病院".into(), "1".into()],
                vec!["e\u{301}".into(), "2".into()],
                vec!["abcdef".into(), "3".into()],
            ],
        );
        assert_eq!(t, "NAME    X\n病院    1\ne\u{301}       2\nabcdef  3");
    }

    #[test]
    fn json_output_escapes_terminal_controls_and_reads_back() {
        let v = json!({"name": "a\u{1b}[2J\u{9b}1m\u{202e}b\u{7f}"});
        let text = json_safe(&v.to_string());
        assert!(
            !text.contains(['\u{1b}', '\u{9b}', '\u{202e}', '\u{7f}']),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
    }

    #[test]
    fn fields_align_their_keys() {
        assert_eq!(
            fields(&[("id", "1".into()), ("name", "x".into())]),
            "id:   1\nname: x"
        );
    }
}
