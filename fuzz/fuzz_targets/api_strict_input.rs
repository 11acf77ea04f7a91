//! Strict input parsing (`warden_api::strict::parse_input`): what is accepted has no duplicate
//! keys for serde_json to pick between (a lenient parse sees the same function), and its
//! canonical form parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_api::strict::parse_input;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = parse_input(data) else {
        return;
    };
    let lenient: serde_json::Value = serde_json::from_slice(data).expect("strict implies valid");
    assert_eq!(
        lenient.get("function").and_then(|f| f.as_str()),
        Some(input.function.as_str()),
        "a lenient parser reads another function"
    );
    let again = parse_input(&input.canonical).expect("the canonical form parses");
    assert_eq!(again, input, "the canonical form is not a fixed point");
});
