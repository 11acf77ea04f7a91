//! Start-up overhead of a hardened run, for a trivial algorithm whose image is already present.
//!
//! Prints, over N runs:
//! - requested -> started: from calling `run_pinned` until the engine's `start` call returns;
//! - of which engine create + start calls, and the post-create inspect (the image-ID check);
//! - our own overhead: requested -> started minus all engine calls (validation, spec, output
//!   directory preparation);
//! - a whole hardened run (create .. remove, output read);
//! - raw `docker run --rm` of the same image, for comparison.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-io cargo bench -p warden-runtime --bench overhead`

// A bench binary: unwrap on setup failures and print results.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use warden_reference::{Digest, Repository};
use warden_runtime::{
    ContainerInfo, ContainerSpec, DockerEngine, Engine, EngineError, ImageInfo, Outcome, RunSpec,
    pull_pinned, run_pinned,
};
use warden_testkit::{FileSource, ImageFile, Registry};

const RUNS: usize = 20;

/// The real engine, timing the calls the runtime makes before the container starts.
struct Timed {
    inner: DockerEngine,
    t: Mutex<Times>,
}

#[derive(Default, Clone, Copy)]
struct Times {
    create: Duration,
    inspect_after_create: Duration,
    start: Duration,
    started_at: Option<Instant>,
}

#[async_trait]
impl Engine for Timed {
    async fn pull(&self, r: &str) -> Result<(), EngineError> {
        self.inner.pull(r).await
    }
    async fn inspect_image(&self, r: &str) -> Result<ImageInfo, EngineError> {
        self.inner.inspect_image(r).await
    }
    async fn import_image(&self, t: Vec<u8>, r: &str, c: &[String]) -> Result<String, EngineError> {
        self.inner.import_image(t, r, c).await
    }
    async fn load_image(&self, archive: &std::path::Path) -> Result<(), EngineError> {
        self.inner.load_image(archive).await
    }
    async fn create_container(&self, s: &ContainerSpec) -> Result<String, EngineError> {
        let t0 = Instant::now();
        let r = self.inner.create_container(s).await;
        self.t.lock().unwrap().create = t0.elapsed();
        r
    }
    async fn inspect_container(&self, id: &str) -> Result<ContainerInfo, EngineError> {
        let t0 = Instant::now();
        let r = self.inner.inspect_container(id).await;
        let mut t = self.t.lock().unwrap();
        if t.started_at.is_none() {
            t.inspect_after_create = t0.elapsed();
        }
        r
    }
    async fn start_container(&self, id: &str) -> Result<(), EngineError> {
        let t0 = Instant::now();
        let r = self.inner.start_container(id).await;
        let mut t = self.t.lock().unwrap();
        t.start = t0.elapsed();
        t.started_at = Some(Instant::now());
        r
    }
    async fn wait_container(&self, id: &str) -> Result<(), EngineError> {
        self.inner.wait_container(id).await
    }
    async fn kill_container(&self, id: &str) -> Result<(), EngineError> {
        self.inner.kill_container(id).await
    }
    async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        self.inner.remove_container(id).await
    }
    async fn logs_tail(&self, id: &str, max: usize) -> Result<Vec<u8>, EngineError> {
        self.inner.logs_tail(id, max).await
    }
    async fn list_containers(&self, k: &str, v: &str) -> Result<Vec<String>, EngineError> {
        self.inner.list_containers(k, v).await
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(name: &str, mut xs: Vec<f64>) {
    xs.sort_by(f64::total_cmp);
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    println!(
        "{name:<44} median {:>7.2} ms  mean {:>7.2} ms  min {:>7.2}  max {:>7.2}",
        xs[xs.len() / 2],
        mean,
        xs[0],
        xs[xs.len() - 1]
    );
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run either way.
    let registry = Registry::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let src = warden_testkit::workspace_root().join("algorithms/hostile/identify.c");
    let bin = warden_testkit::build_static_c(
        &std::fs::read_to_string(src).unwrap(),
        "identify",
        tmp.path(),
    )
    .unwrap();
    let reference = format!("{}/bench/identify:latest", registry.host());
    warden_testkit::build_scratch_image(
        &reference,
        &[
            ImageFile {
                source: FileSource::Path(bin),
                dest: "/identify".into(),
                mode: 0o755,
            },
            ImageFile {
                source: FileSource::Bytes(b"bench".to_vec()),
                dest: "/id.txt".into(),
                mode: 0o644,
            },
        ],
        &["ENTRYPOINT [\"/identify\"]"],
    )
    .unwrap();
    let digest = Digest::parse(&warden_testkit::push(&reference).unwrap()).unwrap();
    let repository = Repository::parse(&format!("{}/bench/identify", registry.host())).unwrap();
    let engine = Timed {
        inner: DockerEngine::connect().await.unwrap(),
        t: Mutex::default(),
    };
    let pinned = pull_pinned(&engine, &repository, &digest).await.unwrap();

    let (mut to_start, mut engine_calls, mut inspect, mut ours, mut whole) =
        (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..RUNS + 2 {
        let run_dir = tmp.path().join(format!("run{i}"));
        for d in ["in", "out"] {
            std::fs::create_dir_all(run_dir.join(d)).unwrap();
        }
        let spec = RunSpec::new(
            format!("bench-{i}"),
            "bench",
            run_dir.join("in"),
            run_dir.join("out"),
        );
        *engine.t.lock().unwrap() = Times::default();
        let requested = Instant::now();
        let report = run_pinned(&engine, &pinned, &spec).await;
        let total = requested.elapsed();
        assert_eq!(
            report.outcome,
            Outcome::Completed {
                output: b"bench".to_vec()
            }
        );
        let t = *engine.t.lock().unwrap();
        if i < 2 {
            continue; // warm-up
        }
        let started = t.started_at.unwrap() - requested;
        to_start.push(ms(started));
        engine_calls.push(ms(t.create + t.start));
        inspect.push(ms(t.inspect_after_create));
        ours.push(ms(started - t.create - t.start - t.inspect_after_create));
        whole.push(ms(total));
    }
    let mut raw = vec![];
    for i in 0..RUNS + 2 {
        let t0 = Instant::now();
        let out = Command::new("docker")
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                "-e",
                "WARDEN_OUTPUT=/out",
                pinned.image_id().as_str(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if i >= 2 {
            raw.push(ms(t0.elapsed()));
        }
    }
    println!(
        "warden-runtime start-up overhead, {RUNS} runs (image present, engine {})",
        engine.inner.api_version()
    );
    summary("run requested -> container started", to_start);
    summary("  engine create + start calls", engine_calls);
    summary("  engine inspect (image-ID check)", inspect);
    summary("  our own overhead (no engine calls)", ours);
    summary("whole hardened run (create..remove, output)", whole);
    summary("raw `docker run --rm --network none`", raw);
    warden_testkit::remove_images(&[&reference, pinned.image_id().as_str()]);
}
