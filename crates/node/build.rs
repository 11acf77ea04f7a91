//! Builds the isolation probe (algorithms/hostile/probe.c) as a static binary that the node
//! embeds (`warden_node::EMBEDDED_PROBE`), so that a node needs no probe file of its own.
//! It needs a C compiler and a static C library: Debian's `gcc` and `libc6-dev`, which
//! scripts/prereqs.sh installs. `CC` names another compiler.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source =
        PathBuf::from(env_var("CARGO_MANIFEST_DIR")).join("../../algorithms/hostile/probe.c");
    println!("cargo:rerun-if-changed={}", source.display());
    println!("cargo:rerun-if-env-changed=CC");
    let out = PathBuf::from(env_var("OUT_DIR")).join("probe");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let status = Command::new(&cc)
        .args(["-static", "-O2", "-s", "-o"])
        .arg(&out)
        .arg(&source)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!(
            "`{cc} -static` of {} exited with {s}; a static C library is needed (Debian: \
             apt-get install libc6-dev, or run scripts/prereqs.sh)",
            source.display()
        )),
        Err(e) => fail(&format!(
            "cannot run the C compiler `{cc}` ({e}) to build the isolation probe; install one \
             (Debian: apt-get install gcc libc6-dev, or run scripts/prereqs.sh) or set CC"
        )),
    }
}

fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| fail(&format!("cargo did not set {name}")))
}

fn fail(message: &str) -> ! {
    eprintln!("error: building warden-node's isolation probe: {message}");
    std::process::exit(1);
}
