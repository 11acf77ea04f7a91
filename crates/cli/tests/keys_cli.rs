//! `warden keys`, run as the real binary: signing keys (cosign's format), X25519 keys (an
//! organization's encryption key, a researcher's key), researcher certificates, and what a key
//! file is. Bad inputs exit 2 with a message that says what to do.

// Helpers outside `#[test]` functions are test code too.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use std::collections::{BTreeMap, BTreeSet};

use warden_seal::{Certificate, SecretKey};
use warden_trust::keyfile::{COSIGN_LABEL, WARDEN_LABEL};
use warden_trust::{KeyAlgorithm, PublicKey, SigningKey};

fn warden(dir: &Path, args: &[&str], password: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.current_dir(dir)
        .args(args)
        .env_remove("WARDEN_PASSWORD");
    if let Some(p) = password {
        cmd.env("WARDEN_PASSWORD", p);
    }
    cmd.output().unwrap()
}

#[track_caller]
fn ok(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "warden failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[track_caller]
fn refused(out: &Output, want: &str) {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(want),
        "stderr `{stderr}` does not contain `{want}`"
    );
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn generate_writes_a_cosign_key_pair_and_show_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = ok(&warden(
        d,
        &["keys", "generate", "--out", "signer"],
        Some("pw 1"),
    ));
    let private = read(&d.join("signer.key"));
    assert!(
        private.starts_with(&format!("-----BEGIN {COSIGN_LABEL}-----\n")),
        "{private}"
    );
    let mode = std::fs::metadata(d.join("signer.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let key = SigningKey::from_encrypted_pem(&private, b"pw 1").unwrap();
    let public = PublicKey::from_pem(&read(&d.join("signer.pub"))).unwrap();
    assert_eq!(key.public_key(), public);
    assert_eq!(out["algorithm"], "ecdsa-p256");
    assert_eq!(out["key_id"], public.id().to_string());
    let shown = ok(&warden(d, &["keys", "show", "signer.pub"], None));
    assert_eq!(
        shown,
        serde_json::json!({
            "kind": "signing-public-key", "algorithm": "ecdsa-p256",
            "key_id": public.id().to_string(), "file": "signer.pub"
        })
    );
    // The private key gives the same key ID, with its password.
    let shown = ok(&warden(
        d,
        &["keys", "fingerprint", "signer.key"],
        Some("pw 1"),
    ));
    assert_eq!(shown["kind"], "signing-private-key");
    assert_eq!(shown["key_id"], public.id().to_string());
}

#[test]
fn generate_ed25519_with_a_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("pw"), "from file\n").unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    let out = ok(&warden(
        d,
        &[
            "keys",
            "generate",
            "--out",
            "sub/ed",
            "--kind",
            "ed25519",
            "--password-file",
            "pw",
        ],
        Some("ignored: the file rules"),
    ));
    assert_eq!(out["algorithm"], "ed25519");
    let private = read(&d.join("sub/ed.key"));
    assert!(private.starts_with(&format!("-----BEGIN {WARDEN_LABEL}-----\n")));
    // The trailing newline is not part of the password.
    let key = SigningKey::from_encrypted_pem(&private, b"from file").unwrap();
    assert_eq!(
        key.public_key(),
        PublicKey::from_pem(&read(&d.join("sub/ed.pub"))).unwrap()
    );
    let shown = ok(&warden(d, &["keys", "show", "sub/ed.pub"], None));
    assert_eq!(shown["algorithm"], "ed25519");
}

#[test]
fn generate_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&warden(d, &["keys", "generate", "--out", "k"], Some("pw")));
    let before = read(&d.join("k.key"));
    refused(
        &warden(d, &["keys", "generate", "--out", "k"], Some("pw")),
        "refusing to overwrite",
    );
    assert_eq!(read(&d.join("k.key")), before);
    // Only the .pub exists: still refused, and no .key is left behind.
    std::fs::write(d.join("p.pub"), "x").unwrap();
    refused(
        &warden(d, &["keys", "generate", "--out", "p"], Some("pw")),
        "refusing to overwrite",
    );
    assert!(!d.join("p.key").exists());
}

#[test]
fn generate_refuses_missing_or_empty_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    refused(
        &warden(d, &["keys", "generate", "--out", "k"], None),
        "set WARDEN_PASSWORD",
    );
    refused(
        &warden(d, &["keys", "generate", "--out", "k"], Some("")),
        "empty password",
    );
    std::fs::write(d.join("empty"), "\n").unwrap();
    refused(
        &warden(
            d,
            &["keys", "generate", "--out", "k", "--password-file", "empty"],
            Some("pw"),
        ),
        "empty password",
    );
    refused(
        &warden(
            d,
            &[
                "keys",
                "generate",
                "--out",
                "k",
                "--password-file",
                "missing",
            ],
            Some("pw"),
        ),
        "cannot read missing",
    );
    assert!(!d.join("k.key").exists() && !d.join("k.pub").exists());
}

#[test]
fn bad_algorithm_and_bad_public_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    refused(
        &warden(
            d,
            &["keys", "generate", "--out", "k", "--algorithm", "rsa"],
            Some("pw"),
        ),
        "unknown key algorithm `rsa`",
    );
    std::fs::write(d.join("junk.pub"), "junk").unwrap();
    refused(
        &warden(d, &["keys", "show", "junk.pub"], None),
        "a key file Warden knows is",
    );
    refused(
        &warden(d, &["keys", "show", "nothing.pub"], None),
        "cannot read nothing.pub",
    );
    std::fs::write(
        d.join("broken.pub"),
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    refused(
        &warden(d, &["keys", "fingerprint", "broken.pub"], None),
        "cannot read public key broken.pub",
    );
    std::fs::write(
        d.join("cert.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    refused(
        &warden(d, &["keys", "fingerprint", "cert.pem"], None),
        "a `CERTIFICATE` block is not a key Warden knows",
    );
    // The old --algorithm spelling still works; p256 is ecdsa-p256.
    let out = ok(&warden(
        d,
        &["keys", "generate", "--out", "old", "--algorithm", "ed25519"],
        Some("pw"),
    ));
    assert_eq!(out["algorithm"], "ed25519");
    let out = ok(&warden(
        d,
        &["keys", "generate", "--out", "p", "--kind", "p256"],
        Some("pw"),
    ));
    assert_eq!(out["algorithm"], "ecdsa-p256");
    // `--out NAME.key` names the private key itself.
    let out = ok(&warden(
        d,
        &["keys", "generate", "--kind", "ed25519", "--out", "ca.key"],
        Some("pw"),
    ));
    assert_eq!(
        (out["private_key"].as_str(), out["public_key"].as_str()),
        (Some("ca.key"), Some("ca.pub"))
    );
    assert!(
        d.join("ca.key").exists() && d.join("ca.pub").exists() && !d.join("ca.key.key").exists()
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn generate_x25519_writes_the_private_key_0600_and_its_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = ok(&warden(
        d,
        &["keys", "generate", "--kind", "x25519", "--out", "rita.key"],
        None,
    ));
    let pem = read(&d.join("rita.key"));
    assert!(
        pem.starts_with("-----BEGIN WARDEN X25519 PRIVATE KEY-----\n"),
        "{pem}"
    );
    assert_eq!(mode(&d.join("rita.key")), 0o600);
    let secret = SecretKey::from_pem(&pem).unwrap();
    let public = read(&d.join("rita.key.pub"));
    assert_eq!(public, format!("{}\n", secret.public_key().to_base64()));
    let fp = secret.public_key().fingerprint().to_string();
    assert_eq!(out["fingerprint"], fp.as_str());
    assert_eq!(out["private_key"], "rita.key");
    assert_eq!(out["public_key"], "rita.key.pub");
    // Both files give the same fingerprint, and say what they are.
    for (file, kind) in [
        ("rita.key", "x25519-private-key"),
        ("rita.key.pub", "x25519-public-key"),
    ] {
        for cmd in ["fingerprint", "show"] {
            let v = ok(&warden(d, &["keys", cmd, file], None));
            assert_eq!(
                (v["kind"].as_str(), v["fingerprint"].as_str()),
                (Some(kind), Some(fp.as_str())),
                "{v}"
            );
        }
    }
    // Never overwritten; no password is asked for, and one given is refused.
    refused(
        &warden(
            d,
            &["keys", "generate", "--kind", "x25519", "--out", "rita.key"],
            None,
        ),
        "refusing to overwrite rita.key",
    );
    std::fs::write(d.join("only.key.pub"), "x").unwrap();
    refused(
        &warden(
            d,
            &["keys", "generate", "--kind", "x25519", "--out", "only.key"],
            None,
        ),
        "refusing to overwrite only.key.pub",
    );
    assert!(!d.join("only.key").exists());
    std::fs::write(d.join("pw"), "pw\n").unwrap();
    refused(
        &warden(
            d,
            &[
                "keys",
                "generate",
                "--kind",
                "x25519",
                "--out",
                "e.key",
                "--password-file",
                "pw",
            ],
            None,
        ),
        "drop --password-file",
    );
    refused(
        &warden(
            d,
            &["keys", "generate", "--kind", "rsa", "--out", "r"],
            None,
        ),
        "or x25519 for an encryption key",
    );
}

#[test]
fn an_openssl_x25519_key_is_refused_with_how_to_make_the_right_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let st = Command::new("openssl")
        .args(["genpkey", "-algorithm", "x25519", "-out", "ossl.key"])
        .current_dir(d)
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new("openssl")
        .args(["pkey", "-in", "ossl.key", "-pubout", "-out", "ossl.pub"])
        .current_dir(d)
        .status()
        .unwrap();
    assert!(st.success());
    for file in ["ossl.key", "ossl.pub"] {
        let out = warden(d, &["keys", "fingerprint", file], None);
        refused(&out, "OpenSSL's format");
        refused(&out, "warden keys generate --kind x25519 --out FILE");
    }
    std::fs::write(d.join("pw"), "pw\n").unwrap();
    ok(&warden(
        d,
        &[
            "keys",
            "generate",
            "--kind",
            "ed25519",
            "--out",
            "ca",
            "--password-file",
            "pw",
        ],
        None,
    ));
    let out = warden(
        d,
        &[
            "keys",
            "certify",
            "--certifier",
            "ca.key",
            "--password-file",
            "pw",
            "--org",
            "a",
            "--user",
            "rita",
            "--key",
            "ossl.pub",
            "--out",
            "c",
        ],
        None,
    );
    refused(&out, "OpenSSL's format");
    assert!(!d.join("c").exists());
}

/// A certification key `ca` (Ed25519, password `pw`) and a researcher key `rita.key` in `d`.
fn certification_setup(d: &Path) -> SigningKey {
    std::fs::write(d.join("pw"), "ca password\n").unwrap();
    ok(&warden(
        d,
        &[
            "keys",
            "generate",
            "--kind",
            "ed25519",
            "--out",
            "ca",
            "--password-file",
            "pw",
        ],
        None,
    ));
    ok(&warden(
        d,
        &["keys", "generate", "--kind", "x25519", "--out", "rita.key"],
        None,
    ));
    SigningKey::from_encrypted_pem(&read(&d.join("ca.key")), b"ca password").unwrap()
}

#[test]
fn certify_signs_a_certificate_that_verifies_against_the_certifier_pin() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = certification_setup(d);
    let before = time::OffsetDateTime::now_utc().unix_timestamp();
    let out = ok(&warden(
        d,
        &[
            "keys",
            "certify",
            "--certifier",
            "ca.key",
            "--password-file",
            "pw",
            "--org",
            "hospital-a",
            "--user",
            "rita",
            "--key",
            "rita.key.pub",
            "--out",
            "rita.cert",
        ],
        None,
    ));
    let id = ca.public_key().id().to_string();
    assert_eq!(out["organization"], "hospital-a");
    assert_eq!(out["user"], "rita");
    assert_eq!(out["certifier_key_id"], id.as_str());
    assert_eq!(out["certifier_algorithm"], "ed25519");
    assert!(
        out["pin"]
            .as_str()
            .unwrap()
            .contains(&format!("\"hospital-a\" = \"{id}\"")),
        "{out}"
    );
    let cert = Certificate::parse(read(&d.join("rita.cert")).as_bytes()).unwrap();
    let rita = SecretKey::from_pem(&read(&d.join("rita.key"))).unwrap();
    assert_eq!(cert.key(), &rita.public_key());
    assert_eq!(out["serial"], cert.statement().serial.as_str());
    assert_eq!(
        out["researcher_key"],
        rita.public_key().fingerprint().to_string()
    );
    // 90 days by default.
    let s = cert.statement();
    assert!(
        s.not_before >= before && s.not_before <= before + 60,
        "{s:?}"
    );
    assert_eq!(s.not_after - s.not_before, 90 * 86_400);
    // It verifies against the pinned certification key, and only that one.
    let pins = BTreeMap::from([("hospital-a".to_owned(), ca.public_key().id())]);
    cert.verify(&pins, &BTreeSet::new(), s.not_before).unwrap();
    let other = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let wrong = BTreeMap::from([("hospital-a".to_owned(), other.public_key().id())]);
    assert!(cert.verify(&wrong, &BTreeSet::new(), s.not_before).is_err());
    // `fingerprint` reads certificates too.
    let v = ok(&warden(d, &["keys", "fingerprint", "rita.cert"], None));
    assert_eq!(v["kind"], "researcher-certificate");
    assert_eq!(v["certifier_key_id"], id.as_str());
    assert_eq!(v["user"], "rita");
    // At most 400 days; the password from WARDEN_PASSWORD.
    let out = ok(&warden(
        d,
        &[
            "keys",
            "certify",
            "--certifier",
            "ca.key",
            "--org",
            "hospital-a",
            "--user",
            "rita",
            "--key",
            "rita.key.pub",
            "--days",
            "400",
            "--out",
            "long.cert",
        ],
        Some("ca password"),
    ));
    let long = Certificate::parse(read(&d.join("long.cert")).as_bytes()).unwrap();
    assert_eq!(
        long.statement().not_after - long.statement().not_before,
        400 * 86_400
    );
    assert_eq!(out["serial"], long.statement().serial.as_str());
    assert_ne!(long.statement().serial, s.serial);
}

#[test]
fn certify_refuses_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certification_setup(d);
    // `extra` are flag-value pairs: each replaces the flag's value, or is added.
    let certify = |extra: &[&str], out: &str| {
        let mut args = vec![
            "keys",
            "certify",
            "--certifier",
            "ca.key",
            "--password-file",
            "pw",
            "--org",
            "hospital-a",
            "--user",
            "rita",
            "--key",
            "rita.key.pub",
            "--out",
            out,
        ];
        for pair in extra.chunks(2) {
            match args.iter().position(|a| *a == pair[0]) {
                Some(i) => args[i + 1] = pair[1],
                None => args.extend_from_slice(pair),
            }
        }
        warden(d, &args, None)
    };
    refused(&certify(&["--days", "401"], "c1"), "401 is not in 1..=400");
    refused(&certify(&["--days", "0"], "c1"), "0 is not in 1..=400");
    std::fs::write(d.join("taken"), "x").unwrap();
    refused(&certify(&[], "taken"), "refusing to overwrite taken");
    assert_eq!(read(&d.join("taken")), "x");
    std::fs::write(d.join("wrong.pw"), "not it\n").unwrap();
    refused(
        &certify(&["--password-file", "wrong.pw"], "c2"),
        "cannot read the signing key ca.key",
    );
    refused(
        &certify(&["--key", "rita.key"], "c3"),
        "give its public key",
    );
    refused(
        &certify(&["--key", "absent.pub"], "c4"),
        "absent.pub: cannot read it",
    );
    refused(
        &certify(&["--certifier", "rita.key"], "c5"),
        "is not an encrypted signing key",
    );
    refused(
        &certify(&["--user", "ri\nta"], "c6"),
        "without control characters",
    );
    refused(
        &certify(&["--org", ""], "c7"),
        "organization name must be 1 to",
    );
    // No password at all.
    let out = warden(
        d,
        &[
            "keys",
            "certify",
            "--certifier",
            "ca.key",
            "--org",
            "a",
            "--user",
            "u",
            "--key",
            "rita.key.pub",
            "--out",
            "c8",
        ],
        None,
    );
    refused(
        &out,
        "give its password with --password-file FILE or WARDEN_PASSWORD",
    );
    for c in ["c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8"] {
        assert!(!d.join(c).exists(), "{c} was written");
    }
}

/// `warden ... | true`: a reader that went away before the output is not a panic (exit 101);
/// the command keeps its own exit status and says nothing about it.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.key");
    for args in [
        vec!["reference", "ubuntu"],
        vec![
            "keys",
            "generate",
            "--kind",
            "x25519",
            "--out",
            key.to_str().unwrap(),
        ],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(&args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    assert!(key.exists(), "the command did its work");
    // A bad reference still exits 2, with its error on stderr.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["reference", "UPPER/Case:1"])
        .stdout(writer)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
