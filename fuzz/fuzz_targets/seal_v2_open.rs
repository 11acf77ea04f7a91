//! Version 2 sealed messages (`warden_seal::open_input`, `open_result`, `parse_header`):
//! arbitrary bytes never open; a message sealed from the input opens to its body and binding
//! only at its recipient, only as coming from its sender, and not with one byte changed or cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_seal::{
    Kind, ResultBinding, SecretKey, open_input, open_result, parse_header, seal_result,
};

struct Keys {
    node: SecretKey,
    researcher: SecretKey,
    other: SecretKey,
}

static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let k = KEYS.get_or_init(|| Keys {
        node: SecretKey::from_bytes([0x42; 32]),
        researcher: SecretKey::from_bytes([0x43; 32]),
        other: SecretKey::from_bytes([0x44; 32]),
    });
    let _ = parse_header(data);
    assert!(open_input(&k.node, data).is_err(), "arbitrary bytes opened");
    for kind in [Kind::Result, Kind::Logs] {
        assert!(
            open_result(&k.researcher, &k.node.public_key(), kind, data).is_err(),
            "arbitrary bytes opened"
        );
    }

    // Structured: [flip position (2 bytes), flip mask, body..]
    let [p0, p1, mask, body @ ..] = data else {
        return;
    };
    let binding = ResultBinding {
        nonce: "n".repeat(32),
        run_id: i64::from(*p0),
        organization: "hospital-b".into(),
        digest: format!("sha256:{}", "a".repeat(64)),
    };
    let sealed = seal_result(
        &k.node,
        Kind::Result,
        &k.researcher.public_key(),
        &binding,
        body,
    )
    .expect("sealing a small result");
    let (got, opened) = open_result(&k.researcher, &k.node.public_key(), Kind::Result, &sealed)
        .expect("opens at its recipient from its sender");
    assert_eq!(got, binding);
    assert_eq!(&opened[..], body);
    assert!(
        open_result(&k.other, &k.node.public_key(), Kind::Result, &sealed).is_err(),
        "opened with another key"
    );
    assert!(
        open_result(&k.researcher, &k.other.public_key(), Kind::Result, &sealed).is_err(),
        "opened as coming from another sender"
    );
    assert!(
        open_result(&k.researcher, &k.node.public_key(), Kind::Logs, &sealed).is_err(),
        "a result opened as logs"
    );
    if *mask != 0 {
        let mut altered = sealed.clone();
        let at = usize::from(u16::from_le_bytes([*p0, *p1])) % altered.len();
        altered[at] ^= mask;
        assert!(
            open_result(&k.researcher, &k.node.public_key(), Kind::Result, &altered).is_err(),
            "an altered message opened"
        );
    }
    assert!(
        open_result(
            &k.researcher,
            &k.node.public_key(),
            Kind::Result,
            &sealed[..sealed.len() - 1]
        )
        .is_err(),
        "a cut message opened"
    );
});
