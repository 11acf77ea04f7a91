//! What `warden demo` needs on the machine, checked before anything starts, each missing piece
//! named with what to install or run.

use std::fmt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Debian's OCI registry (the CNCF distribution server).
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// One missing prerequisite and how to get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub what: String,
    pub fix: String,
}

/// Everything that is missing (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Prerequisites(pub Vec<Missing>);

impl fmt::Display for Prerequisites {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "missing prerequisites:")?;
        for m in &self.0 {
            write!(f, "\n  - {}: {}", m.what, m.fix)?;
        }
        write!(
            f,
            "\n  (on Debian, as root, `scripts/demo` installs what is missing and builds everything)"
        )
    }
}

/// Checks the Docker engine, the registry binary, the algorithm binary (present and static)
/// and a probe binary when one is given (otherwise the nodes run the probe built into them).
pub fn check(algorithm_binary: &Path, probe: Option<&Path>) -> Result<(), Prerequisites> {
    let mut missing = Vec::new();
    match Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdin(Stdio::null())
        .output()
    {
        Err(_) => missing.push(Missing {
            what: "the docker CLI".into(),
            fix: "install it (`apt-get install -y docker.io`) and start the engine (dockerd)"
                .into(),
        }),
        Ok(out) if !out.status.success() => missing.push(Missing {
            what: "the Docker engine".into(),
            fix: format!(
                "it does not answer ({}); start dockerd (`systemctl start docker` or `dockerd &`) and check that this user may use /var/run/docker.sock",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }),
        Ok(_) => {}
    }
    if !Path::new(REGISTRY_BIN).exists() {
        missing.push(Missing {
            what: REGISTRY_BIN.into(),
            fix: "install Debian's OCI registry: `apt-get install -y docker-registry`".into(),
        });
    }
    if let Err(why) = static_binary(algorithm_binary) {
        missing.push(Missing {
            what: format!("the algorithm binary {}", algorithm_binary.display()),
            fix: format!(
                "{why}; build it with `RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p warden-algorithm-mean` and pass --algorithm-binary target/x86_64-unknown-linux-gnu/release/mean"
            ),
        });
    }
    // Without --probe each node runs the probe built into it.
    if let Some(p) = probe {
        if let Err(why) = static_binary(p) {
            missing.push(Missing {
                what: format!("the probe binary {}", p.display()),
                fix: format!(
                    "{why}; compile algorithms/hostile/probe.c with `gcc -static -O2`, or leave out --probe to use the node's built-in probe"
                ),
            });
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Prerequisites(missing))
    }
}

/// Whether `path` is a statically linked x86-64 ELF executable (no `PT_INTERP`): a binary in a
/// `FROM scratch` image has no dynamic loader to run under.
pub fn static_binary(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it ({e})"))?;
    elf_is_static(&bytes)
}

fn elf_is_static(b: &[u8]) -> Result<(), String> {
    let u16_at = |o: usize| b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8).map(|s| {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            u64::from_le_bytes(a)
        })
    };
    // 64-bit little-endian ELF for x86-64.
    if b.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) || u16_at(18) != Some(62) {
        return Err("it is not an x86-64 ELF executable".into());
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return Err("its ELF header is truncated".into());
    };
    const PT_INTERP: u32 = 3;
    for i in 0..usize::from(phnum) {
        let at = usize::try_from(phoff)
            .ok()
            .and_then(|o| o.checked_add(i * usize::from(phentsize)));
        match at.and_then(u32_at) {
            Some(PT_INTERP) => {
                return Err(
                    "it is dynamically linked and cannot run in a FROM-scratch image".into(),
                );
            }
            Some(_) => {}
            None => return Err("its ELF program headers are truncated".into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_binary_is_refused_and_a_text_file_too() {
        // /bin/sh on Debian is dynamically linked.
        let err = static_binary(Path::new("/bin/sh")).unwrap_err();
        assert!(err.contains("dynamically linked"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        assert!(static_binary(&f).unwrap_err().contains("not an x86-64 ELF"));
        assert!(
            static_binary(&dir.path().join("absent"))
                .unwrap_err()
                .contains("cannot read")
        );
    }

    #[test]
    fn missing_pieces_are_all_named() {
        let err = check(
            Path::new("/nonexistent/mean"),
            Some(Path::new("/nonexistent/probe")),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("the algorithm binary /nonexistent/mean"),
            "{text}"
        );
        assert!(text.contains("cargo build --release"), "{text}");
        assert!(
            text.contains("the probe binary /nonexistent/probe"),
            "{text}"
        );
    }
}
