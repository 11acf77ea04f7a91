//! Image references from outside: parsing must never panic, and a parsed reference must print
//! to a form that parses back to the same reference.

#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_reference::{Reference, Repository};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(reference) = Reference::parse(text) else {
        return;
    };
    let printed = reference.to_string();
    let again = Reference::parse(&printed).expect("a printed reference parses");
    assert_eq!(again, reference, "{text:?} printed as {printed:?}");
    let repository = reference.repository().to_string();
    let repo_again = Repository::parse(&repository).expect("a printed repository parses");
    assert_eq!(&repo_again, reference.repository(), "{repository:?}");
    assert!(repository.is_ascii() && !repository.contains(char::is_whitespace));
});
