//! Compiling an algorithm as a static binary whose bytes depend only on the source and the
//! toolchain: Rust crates with `cargo build --release --locked` and C programs with `cc -static`.
//! Every path that could reach the output (the export, the target directory, cargo's home) is
//! remapped to a fixed prefix, and `SOURCE_DATE_EPOCH` is the commit time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::BuildError;

/// The target every build compiles for.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";
/// Where the export appears in the output.
pub const SOURCE_PREFIX: &str = "/warden/src";
const TARGET_PREFIX: &str = "/warden/target";
const CARGO_HOME_PREFIX: &str = "/warden/cargo";

/// What kind of algorithm a directory holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "language", rename_all = "lowercase")]
pub enum Kind {
    /// A Cargo package (e.g. on the Warden SDK): `package`'s binary `bin`.
    Rust { package: String, bin: String },
    /// C sources (`*.c` in the directory, sorted), linked into `bin`.
    C { sources: Vec<String>, bin: String },
}

/// The tools that produced the output, as recorded in the provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toolchain {
    /// `rustc -vV` (Rust builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rustc: Option<String>,
    /// `cargo -V` (Rust builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cargo: Option<String>,
    /// First line of `cc --version` (the C compiler, and Rust's linker).
    pub cc: String,
    /// `getconf GNU_LIBC_VERSION`: the C library linked statically.
    pub libc: String,
}

/// A compiled binary.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// File name in the image (`/<name>` is the entry point).
    pub name: String,
    pub binary: Vec<u8>,
    pub toolchain: Toolchain,
    pub flags: Vec<String>,
}

#[derive(Deserialize)]
struct Manifest {
    package: Option<Package>,
    #[serde(default)]
    bin: Vec<Bin>,
}
#[derive(Deserialize)]
struct Package {
    name: String,
}
#[derive(Deserialize)]
struct Bin {
    name: String,
}

fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Tells a Cargo package (a `Cargo.toml` with `[package]`) from a C program (`*.c` files).
pub fn detect(dir: &Path) -> Result<Kind, BuildError> {
    if !dir.is_dir() {
        return Err(BuildError::Input(format!(
            "the commit has no directory {}",
            dir.display()
        )));
    }
    let cargo_toml = dir.join("Cargo.toml");
    if cargo_toml.is_file() {
        let text = std::fs::read_to_string(&cargo_toml)
            .map_err(|e| BuildError::io(cargo_toml.display(), e))?;
        let m: Manifest = toml::from_str(&text)
            .map_err(|e| BuildError::Input(format!("{}: {e}", cargo_toml.display())))?;
        let package = m.package.ok_or_else(|| {
            BuildError::Input(format!("{} has no [package]", cargo_toml.display()))
        })?;
        let bin = m
            .bin
            .first()
            .map_or_else(|| package.name.clone(), |b| b.name.clone());
        if !safe_name(&package.name) || !safe_name(&bin) {
            return Err(BuildError::Input("unusual package or binary name".into()));
        }
        return Ok(Kind::Rust {
            package: package.name,
            bin,
        });
    }
    let mut sources: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| BuildError::io(dir.display(), e))?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".c") && safe_name(n.trim_end_matches(".c")))
        .collect();
    sources.sort();
    if sources.is_empty() {
        return Err(BuildError::Input(format!(
            "{} holds neither a Cargo.toml nor C sources",
            dir.display()
        )));
    }
    let bin = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| safe_name(n))
        .unwrap_or("algorithm")
        .to_owned();
    Ok(Kind::C { sources, bin })
}

fn capture(program: &str, args: &[&str]) -> Result<String, BuildError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BuildError::Tool {
            what: program.into(),
            why: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(BuildError::Tool {
            what: format!("{program} {}", args.join(" ")),
            why: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_owned()
}

fn cargo_program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

/// The toolchain of a build of `kind`.
pub fn toolchain(kind: &Kind) -> Result<Toolchain, BuildError> {
    let (rustc, cargo) = match kind {
        Kind::Rust { .. } => (
            Some(capture("rustc", &["-vV"])?),
            Some(capture(&cargo_program(), &["-V"])?),
        ),
        Kind::C { .. } => (None, None),
    };
    Ok(Toolchain {
        rustc,
        cargo,
        cc: first_line(&capture("cc", &["--version"])?),
        libc: capture("getconf", &["GNU_LIBC_VERSION"]).unwrap_or_default(),
    })
}

fn run(cmd: &mut Command, what: &str) -> Result<(), BuildError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BuildError::Tool {
            what: what.into(),
            why: e.to_string(),
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(30).collect();
        return Err(BuildError::Tool {
            what: what.into(),
            why: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(())
}

/// Compiles `kind` found in `dir` (inside the export `root`) with targets in `target`.
pub fn compile(
    kind: &Kind,
    root: &Path,
    dir: &Path,
    target: &Path,
    epoch: i64,
) -> Result<Compiled, BuildError> {
    let toolchain = toolchain(kind)?;
    let root_s = root.display().to_string();
    let target_s = target.display().to_string();
    match kind {
        Kind::Rust { package, bin } => {
            // The flags that shape the output; the remappings' left sides vary per build and
            // are not recorded, their right sides are.
            let flags = vec![
                "-C".to_owned(),
                "target-feature=+crt-static".to_owned(),
                format!("--remap-path-prefix={root_s}={SOURCE_PREFIX}"),
                format!("--remap-path-prefix={target_s}={TARGET_PREFIX}"),
                format!(
                    "--remap-path-prefix={}={CARGO_HOME_PREFIX}",
                    cargo_home().display()
                ),
            ];
            let mut cmd = Command::new(cargo_program());
            cmd.current_dir(root)
                .args(["build", "--release", "--locked", "--quiet"])
                .arg("--manifest-path")
                .arg(dir.join("Cargo.toml"))
                .args(["-p", package, "--bin", bin, "--target", TARGET])
                .arg("--target-dir")
                .arg(target)
                .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\u{1f}"))
                .env("SOURCE_DATE_EPOCH", epoch.to_string())
                .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
                .env("CARGO_PROFILE_RELEASE_STRIP", "symbols")
                .env("CARGO_INCREMENTAL", "0")
                .env("TZ", "UTC")
                .env("LC_ALL", "C")
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_BUILD_RUSTFLAGS")
                .env_remove("RUSTC_WRAPPER")
                .env_remove("RUSTC_WORKSPACE_WRAPPER")
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("CARGO_BUILD_TARGET_DIR");
            run(&mut cmd, "cargo build")?;
            let out = target.join(TARGET).join("release").join(bin);
            let binary = std::fs::read(&out).map_err(|e| BuildError::io(out.display(), e))?;
            Ok(Compiled {
                name: bin.clone(),
                binary,
                toolchain,
                flags: recorded(
                    &flags,
                    &["cargo build --release --locked", "--target", TARGET],
                ),
            })
        }
        Kind::C { sources, bin } => {
            let out_dir = target.join("c");
            std::fs::create_dir_all(&out_dir).map_err(|e| BuildError::io(out_dir.display(), e))?;
            let out = out_dir.join(bin);
            let flags = vec![
                "-static".to_owned(),
                "-O2".to_owned(),
                "-frandom-seed=warden".to_owned(),
                format!("-ffile-prefix-map={root_s}={SOURCE_PREFIX}"),
            ];
            let mut cmd = Command::new("cc");
            cmd.current_dir(dir)
                .args(&flags)
                .arg("-o")
                .arg(&out)
                .args(sources)
                .env("SOURCE_DATE_EPOCH", epoch.to_string())
                .env("TZ", "UTC")
                .env("LC_ALL", "C");
            run(&mut cmd, "cc")?;
            let binary = std::fs::read(&out).map_err(|e| BuildError::io(out.display(), e))?;
            Ok(Compiled {
                name: bin.clone(),
                binary,
                toolchain,
                flags: recorded(&flags, &["cc"]),
            })
        }
    }
}

/// The flags as recorded: prefix maps keep only their fixed right-hand side.
fn recorded(flags: &[String], head: &[&str]) -> Vec<String> {
    head.iter()
        .map(|s| (*s).to_owned())
        .chain(flags.iter().map(|f| match f.split_once('=') {
            Some((k, v)) if k.ends_with("-prefix") || k.ends_with("-prefix-map") => {
                let fixed = v.rsplit_once('=').map_or(v, |(_, r)| r);
                format!("{k}=…={fixed}")
            }
            _ => f.clone(),
        }))
        .collect()
}
