//! Shared helpers of the runtime's end-to-end tests: the real Docker engine, a real registry on
//! loopback, hostile C programs built static into FROM-scratch images, and drop guards that
//! clean up containers, networks and images even when a test fails.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use warden_reference::{Digest, Repository};
use warden_runtime::{DockerEngine, Engine, LABEL_NODE, PinnedImage, RunSpec, pull_pinned};
use warden_testkit::{FileSource, ImageFile, Registry};

/// The C source of a program in algorithms/hostile.
pub fn source(name: &str) -> String {
    let path = warden_testkit::workspace_root()
        .join("algorithms/hostile")
        .join(format!("{name}.c"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compiles `algorithms/hostile/<name>.c` static into `dir`.
pub fn compile(name: &str, dir: &Path) -> PathBuf {
    // glibc 2.34+ has pthreads in libc proper, so `gcc -static` needs no `-pthread`.
    warden_testkit::build_static_c(&source(name), name, dir).unwrap()
}

/// Everything a test creates in the engine, removed on drop (also when the test panics).
#[derive(Default)]
pub struct Cleanup {
    pub images: Vec<String>,
    pub containers: Vec<String>,
    pub networks: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", "-v", c]).output();
        }
        for n in &self.networks {
            let _ = Command::new("docker").args(["network", "rm", n]).output();
        }
        let refs: Vec<&str> = self.images.iter().map(String::as_str).collect();
        warden_testkit::remove_images(&refs);
    }
}

/// A test's world: engine, registry, node id, scratch directories and cleanup.
pub struct World {
    pub engine: DockerEngine,
    pub registry: Registry,
    pub node: String,
    pub tmp: tempfile::TempDir,
    pub cleanup: Cleanup,
}

impl World {
    pub async fn new() -> World {
        warden_testkit::require_docker().unwrap();
        let engine = DockerEngine::connect().await.unwrap();
        assert_eq!(
            engine.api_version(),
            "1.41",
            "negotiated down to the engine's API"
        );
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        World {
            engine,
            registry: Registry::start().unwrap(),
            node: format!("test-{}", uuid::Uuid::new_v4().simple()),
            tmp,
            cleanup: Cleanup::default(),
        }
    }

    /// Builds `algorithms/hostile/<program>.c` into a FROM-scratch image at `/<program>` (with
    /// extra files and Dockerfile lines), pushes it as `hostile/<image>:latest` and returns the
    /// repository and the pushed digest.
    pub fn push_program(
        &mut self,
        program: &str,
        image: &str,
        extra_files: &[(&str, &[u8])],
        extra_lines: &[&str],
    ) -> (Repository, Digest) {
        let bin = compile(program, self.tmp.path());
        let mut files = vec![ImageFile {
            source: FileSource::Path(bin),
            dest: format!("/{program}"),
            mode: 0o755,
        }];
        for (dest, content) in extra_files {
            files.push(ImageFile {
                source: FileSource::Bytes(content.to_vec()),
                dest: (*dest).to_owned(),
                // world-writable: only the read-only root filesystem may stop a write
                mode: 0o666,
            });
        }
        let entrypoint = format!("ENTRYPOINT [\"/{program}\"]");
        let mut lines = vec![entrypoint.as_str()];
        lines.extend_from_slice(extra_lines);
        let reference = format!("{}/hostile/{image}:latest", self.registry.host());
        self.cleanup.images.push(reference.clone());
        let id = warden_testkit::build_scratch_image(&reference, &files, &lines).unwrap();
        self.cleanup.images.push(id);
        let digest = warden_testkit::push(&reference).unwrap();
        let repository =
            Repository::parse(&format!("{}/hostile/{image}", self.registry.host())).unwrap();
        (repository, Digest::parse(&digest).unwrap())
    }

    /// Pushes a program and pulls it back pinned by digest.
    pub async fn pinned_program(
        &mut self,
        program: &str,
        extra_files: &[(&str, &[u8])],
        extra_lines: &[&str],
    ) -> PinnedImage {
        let (repository, digest) = self.push_program(program, program, extra_files, extra_lines);
        let pinned = pull_pinned(&self.engine, &repository, &digest)
            .await
            .unwrap();
        self.cleanup.images.push(pinned.image_id().to_string());
        pinned
    }

    /// A run spec with fresh input and output directories under the test's temp dir.
    pub fn spec(&self, run_id: &str) -> RunSpec {
        let input = self.dir(&format!("{run_id}-input"));
        let output = self.dir(&format!("{run_id}-output"));
        let mut spec = RunSpec::new(run_id, &self.node, input, output);
        spec.timeout = std::time::Duration::from_secs(60);
        spec
    }

    /// A fresh directory readable by everyone.
    pub fn dir(&self, name: &str) -> PathBuf {
        let d = self.tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    /// Asserts that no container of this test's node is left in the engine.
    pub async fn assert_no_containers_left(&self) {
        let left = self
            .engine
            .list_containers(LABEL_NODE, &self.node)
            .await
            .unwrap();
        assert!(left.is_empty(), "containers left behind: {left:?}");
    }
}

/// Runs a command and returns its trimmed stdout, panicking with stderr on failure.
pub fn sh(args: &[&str]) -> String {
    warden_testkit::run(Command::new(args[0]).args(&args[1..]))
        .unwrap()
        .trim()
        .to_owned()
}
