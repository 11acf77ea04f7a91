use proptest::prelude::*;

use super::*;

const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// Parses `input` and checks its normalised display form, repository, tag and digest.
#[track_caller]
fn check(input: &str, display: &str, repository: &str, tag: Option<&str>) {
    let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
    assert_eq!(r.to_string(), display, "display of {input:?}");
    assert_eq!(
        r.repository().to_string(),
        repository,
        "repository of {input:?}"
    );
    assert_eq!(r.tag(), tag, "tag of {input:?}");
    // Normalisation is idempotent.
    let again = Reference::parse(&r.to_string()).unwrap();
    assert_eq!(again.to_string(), display);
    assert_eq!(again.repository(), r.repository());
}

#[track_caller]
fn check_err(input: &str, needle: &str) {
    match Reference::parse(input) {
        Ok(r) => panic!("{input:?} parsed as {r}"),
        Err(e) => assert!(
            e.to_string().contains(needle),
            "error for {input:?} was `{e}`, expected it to mention {needle:?}"
        ),
    }
}

#[test]
fn docker_hub_normalisation() {
    check(
        "ubuntu",
        "docker.io/library/ubuntu:latest",
        "docker.io/library/ubuntu",
        Some("latest"),
    );
    check(
        "library/ubuntu:22.04",
        "docker.io/library/ubuntu:22.04",
        "docker.io/library/ubuntu",
        Some("22.04"),
    );
    check(
        "docker.io/ubuntu",
        "docker.io/library/ubuntu:latest",
        "docker.io/library/ubuntu",
        Some("latest"),
    );
    check(
        "index.docker.io/library/ubuntu",
        "docker.io/library/ubuntu:latest",
        "docker.io/library/ubuntu",
        Some("latest"),
    );
    check(
        "index.docker.io/ubuntu",
        "docker.io/library/ubuntu:latest",
        "docker.io/library/ubuntu",
        Some("latest"),
    );
    check(
        "DOCKER.IO/ubuntu",
        "docker.io/library/ubuntu:latest",
        "docker.io/library/ubuntu",
        Some("latest"),
    );
    check(
        "someone/tool",
        "docker.io/someone/tool:latest",
        "docker.io/someone/tool",
        Some("latest"),
    );
    // A port makes it another registry, not Docker Hub.
    check(
        "index.docker.io:443/ubuntu",
        "index.docker.io:443/ubuntu:latest",
        "index.docker.io:443/ubuntu",
        Some("latest"),
    );
}

#[test]
fn registries_with_hosts_and_ports() {
    check(
        "registry.example.org:5000/team/avg:v1",
        "registry.example.org:5000/team/avg:v1",
        "registry.example.org:5000/team/avg",
        Some("v1"),
    );
    check(
        "localhost/avg",
        "localhost/avg:latest",
        "localhost/avg",
        Some("latest"),
    );
    check(
        "localhost:5000/a/b/c",
        "localhost:5000/a/b/c:latest",
        "localhost:5000/a/b/c",
        Some("latest"),
    );
    check(
        "127.0.0.1:5000/avg",
        "127.0.0.1:5000/avg:latest",
        "127.0.0.1:5000/avg",
        Some("latest"),
    );
    check(
        "[::1]:5000/avg",
        "[::1]:5000/avg:latest",
        "[::1]:5000/avg",
        Some("latest"),
    );
    check(
        "Registry.Example.ORG/team/avg",
        "registry.example.org/team/avg:latest",
        "registry.example.org/team/avg",
        Some("latest"),
    );
    // A tag that looks like a port when there is no slash.
    check(
        "localhost:5000",
        "docker.io/library/localhost:5000",
        "docker.io/library/localhost",
        Some("5000"),
    );
}

#[test]
fn digests_rule_over_tags() {
    let r = Reference::parse(&format!("reg.io/a/b:v1@sha256:{HEX}")).unwrap();
    assert_eq!(r.tag(), Some("v1"));
    assert_eq!(r.digest().unwrap().hex(), HEX);
    assert_eq!(r.manifest_reference(), format!("sha256:{HEX}"));
    assert_eq!(
        r.pinned(r.digest().unwrap()),
        format!("reg.io/a/b@sha256:{HEX}")
    );

    let r = Reference::parse(&format!("reg.io/a/b@sha256:{HEX}")).unwrap();
    assert_eq!(r.tag(), None);
    assert_eq!(r.to_string(), format!("reg.io/a/b@sha256:{HEX}"));

    let r = Reference::parse("reg.io/a/b").unwrap();
    assert_eq!(r.manifest_reference(), "latest");
    let pinned = r.with_digest(Digest::sha256_of(b"x"));
    assert_eq!(pinned.digest(), Some(&Digest::sha256_of(b"x")));
}

#[test]
fn rejects_bad_references() {
    check_err("", "empty");
    check_err("Ubuntu", "upper case");
    check_err("reg.io/Team/avg", "upper case");
    check_err("reg.io/team//avg", "empty component");
    check_err("reg.io/team/avg/", "empty component");
    check_err("/avg", "empty component");
    check_err("reg.io/", "empty");
    check_err("reg.io/team/-avg", "start and end");
    check_err("reg.io/team/avg-", "start and end");
    check_err("reg.io/team/a..b", "separator `..`");
    check_err("reg.io/team/a._b", "separator `._`");
    check_err("reg.io/team/a___b", "separator `___`");
    check_err("reg.io/team/../x", "start and end");
    check_err("reg.io/team/a b", "whitespace");
    check_err("reg.io/team/avg:", "tag after `:` is empty");
    check_err("reg.io/team/avg:-v1", "must start with");
    check_err("reg.io/team/avg:v1/x", "`:` is not allowed"); // `v1/x` is no tag
    check_err(
        &format!("reg.io/team/avg:{}", "a".repeat(129)),
        "limit is 128",
    );
    check_err(&format!("reg.io/{}", "a".repeat(250)), "limit is 255");
    // found by the reference_parse fuzz target: 238 letters are under the limit as written, but
    // `docker.io/library/` makes the normal form 256 characters, which would not parse again
    check_err(&"a".repeat(238), "once normalised; the limit is 255");
    check_err(&format!("{}:1", "a".repeat(238)), "once normalised");
    check_err(&format!("docker.io/{}", "a".repeat(240)), "once normalised");
    // the longest names that still fit, as written and once normalised
    let a237 = "a".repeat(237);
    let hub = format!("docker.io/library/{a237}");
    check(&a237, &format!("{hub}:latest"), &hub, Some("latest"));
    let reg = format!("reg.io/{}", "a".repeat(248));
    check(&reg, &format!("{reg}:latest"), &reg, Some("latest"));
    check_err("reg.io/team/avg@sha256:abc", "64 hex");
    check_err(
        &format!("reg.io/team/avg@sha256:{}", HEX.to_uppercase()),
        "lower case",
    );
    check_err(&format!("reg.io/team/avg@md5:{HEX}"), "unsupported");
    check_err(
        &format!("reg.io/a@sha256:{HEX}@sha256:{HEX}"),
        "more than one `@`",
    );
    check_err("reg.io:99999/avg", "outside 1-65535");
    check_err("reg.io:0/avg", "outside 1-65535");
    check_err("reg.io:x/avg", "not a number");
    check_err("-reg.io/avg", "inner hyphens");
    check_err("reg..io/avg", "host component");
    check_err("[::1/avg", "unclosed");
    check_err("[zz]:5000/avg", "not an IPv6");
    check_err("a:b:c", "`:` is not allowed");
}

#[test]
fn upper_case_first_component_is_not_a_registry() {
    // Found by fuzzing: Docker would take `IN0a0` as a host; lower-casing it made the normal form
    // `in0a0/x/y` read back as a Docker Hub path. Warden refuses the upper case instead.
    check_err("iN0a0/sha55022l/x", "upper case");
    check_err("REGISTRY/team/average", "upper case");
    check_err("Localhost/x", "upper case");
}

#[test]
fn rejects_unicode_look_alikes() {
    // Cyrillic 'е' (U+0435) in place of 'e', fullwidth solidus, zero-width space.
    check_err("registry.\u{0435}xample.org/team/avg", "U+0435");
    check_err("registry.example.org\u{ff0f}team/avg", "U+FF0F");
    check_err("registry.example.org/team/a\u{200b}vg", "U+200B");
}

#[test]
fn the_wrong_tag_error_is_about_case() {
    // `reg.io/team/avg:v1/x`: the last `:` is before a `/`, so there is no tag and the path
    // component `avg:v1` is what fails; make sure the message says something useful.
    let e = Reference::parse("reg.io/team/avg:V1/x")
        .unwrap_err()
        .to_string();
    assert!(e.contains("upper case"), "{e}");
}

#[test]
fn repository_parse_refuses_tags_and_digests() {
    assert_eq!(
        Repository::parse("ubuntu").unwrap().to_string(),
        "docker.io/library/ubuntu"
    );
    assert!(Repository::parse("ubuntu:latest").is_err());
    assert!(Repository::parse(&format!("ubuntu@sha256:{HEX}")).is_err());
}

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]{1,8}",
        "[a-z0-9]{1,4}(\\.|_|__|-{1,3})[a-z0-9]{1,4}",
    ]
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("localhost".to_owned()),
        "[a-z][a-z0-9]{0,6}\\.[a-z]{2,4}",
        "[a-z]{1,5}\\.[a-z][a-z0-9-]{0,4}[a-z0-9]\\.org",
    ]
}

prop_compose! {
    fn reference_string()(
        host in proptest::option::of(host()),
        port in proptest::option::of(1u16..),
        path in proptest::collection::vec(component(), 1..4),
        tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        digest in proptest::option::of("[0-9a-f]{64}"),
    ) -> String {
        let mut s = String::new();
        if let Some(h) = host {
            s.push_str(&h);
            if let Some(p) = port { s.push_str(&format!(":{p}")); }
            s.push('/');
        }
        s.push_str(&path.join("/"));
        if let Some(t) = tag { s.push(':'); s.push_str(&t); }
        if let Some(d) = digest { s.push_str("@sha256:"); s.push_str(&d); }
        s
    }
}

proptest! {
    #[test]
    fn valid_references_round_trip(s in reference_string()) {
        let r = Reference::parse(&s).unwrap();
        let again = Reference::parse(&r.to_string()).unwrap();
        prop_assert_eq!(&again, &r);
        prop_assert_eq!(again.to_string(), r.to_string());
    }

    #[test]
    fn parse_never_panics_and_normal_form_is_a_fixed_point(s in "\\PC{0,80}|[a-z]{200,300}|[a-z]{2,8}\\.io/[a-z]{200,260}(:[a-z0-9]{1,20})?") {
        if let Ok(r) = Reference::parse(&s) {
            let again = Reference::parse(&r.to_string()).unwrap();
            prop_assert_eq!(again.to_string(), r.to_string());
            prop_assert_eq!(again.repository(), r.repository());
        }
    }

    #[test]
    fn normalised_repository_is_lower_case_ascii(s in reference_string()) {
        let r = Reference::parse(&s).unwrap();
        let repo = r.repository().to_string();
        prop_assert!(repo.is_ascii());
        prop_assert_eq!(repo.to_ascii_lowercase(), repo.clone());
        prop_assert!(repo.contains('/'));
    }
}
