//! `WWW-Authenticate` challenges from a registry: parsing never panics, and a parsed Bearer
//! challenge printed back in canonical quoted form parses to the same challenge.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_registry::fuzzing::{Challenge, parse_challenge};

fn quote(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let Some(challenge) = parse_challenge(header) else {
        return;
    };
    let scheme = header.split_whitespace().next().unwrap_or_default();
    let printed = match &challenge {
        Challenge::Basic => {
            assert!(
                scheme.eq_ignore_ascii_case("basic"),
                "basic from {header:?}"
            );
            "Basic realm=\"x\"".to_owned()
        }
        Challenge::Bearer {
            realm,
            service,
            scope,
        } => {
            assert!(
                scheme.eq_ignore_ascii_case("bearer"),
                "bearer from {header:?}"
            );
            let mut s = format!("Bearer realm={}", quote(realm));
            if let Some(service) = service {
                s.push_str(&format!(",service={}", quote(service)));
            }
            if let Some(scope) = scope {
                s.push_str(&format!(",scope={}", quote(scope)));
            }
            s
        }
    };
    assert_eq!(
        parse_challenge(&printed).as_ref(),
        Some(&challenge),
        "{header:?} printed as {printed:?}"
    );
});
