//! What the demo leaves on the Docker engine, and its removal: containers by node label, and
//! images by reference or ID. Removal also runs on drop, so an error or a panic midway still
//! cleans up.

use std::process::{Command, Stdio};

/// The container label the runtime puts on every container of a node.
const LABEL_NODE: &str = "org.warden.node";

/// Everything the demo created on the engine.
#[derive(Debug, Default)]
pub(crate) struct Leftovers {
    /// Node labels (their containers and their probe containers).
    labels: Vec<String>,
    /// Image references or IDs.
    images: Vec<String>,
    cleaned: bool,
}

/// What a cleanup removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    pub containers: usize,
    /// The images removed, as given (references or IDs).
    pub images: Vec<String>,
}

impl Leftovers {
    pub(crate) fn label(&mut self, label: &str) {
        self.labels.push(label.to_owned());
        self.labels.push(format!("{label}-probe"));
    }

    pub(crate) fn image(&mut self, reference: &str) {
        if !self.images.iter().any(|i| i == reference) {
            self.images.push(reference.to_owned());
        }
    }

    /// Removes every container of the demo's nodes (any state) and every image it made.
    pub(crate) fn clean(&mut self) -> Removed {
        self.cleaned = true;
        let mut removed = Removed::default();
        for label in &self.labels {
            for id in containers(label) {
                if quiet(Command::new("docker").args(["rm", "-f", "-v", &id])) {
                    removed.containers += 1;
                }
            }
        }
        for image in &self.images {
            if exists(image) && quiet(Command::new("docker").args(["image", "rm", image])) {
                removed.images.push(image.clone());
            }
        }
        removed
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if !self.cleaned {
            self.clean();
        }
    }
}

/// IDs of every container (any state) carrying this node label.
pub fn containers(label: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label={LABEL_NODE}={label}"))
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether the engine has this image (reference or ID).
pub fn exists(image: &str) -> bool {
    quiet(Command::new("docker").args(["image", "inspect", image]))
}

/// The ID of a local image, if present.
pub(crate) fn image_id(reference: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", reference])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn quiet(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
