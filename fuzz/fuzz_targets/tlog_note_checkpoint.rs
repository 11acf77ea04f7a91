//! Signed notes and checkpoints (`warden_tlog`): parsing never panics; a note that parses prints
//! back to the same bytes; a checkpoint text that parses prints back to itself; nothing opens
//! under the pinned key unless it signed it: the input, parsed as a note, re-signed by the pinned
//! key, opens only with exactly its text, and with any byte of the text changed it does not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_tlog::{Checkpoint, Note, NoteSigner, NoteVerifier, note, open_checkpoint};

static SIGNER: std::sync::OnceLock<NoteSigner> = std::sync::OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let signer = SIGNER.get_or_init(|| {
        NoteSigner::new("warden-store/fuzz", ed25519_dalek::SigningKey::from_bytes(&[7; 32]))
            .expect("signer")
    });
    let verifier = signer.verifier();
    assert!(note::open(data, &verifier).is_err(), "a forged note verified");
    assert!(open_checkpoint(data, &verifier).is_err(), "a forged checkpoint verified");
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = NoteVerifier::parse(s);
        if let Ok(cp) = Checkpoint::parse_text(s) {
            assert_eq!(cp.to_text(), s, "checkpoint text is not canonical");
        }
    }
    if let Ok(n) = Note::parse(data) {
        assert_eq!(n.to_bytes(), data, "a parsed note does not print back");
        let mut signed = Note::new(&n.text).expect("a parsed note's text is a valid text");
        signed.sign(signer);
        let bytes = signed.to_bytes();
        let opened = note::open(&bytes, &verifier).expect("a note the pinned key signed opens");
        assert_eq!(opened.text, n.text);
        if !n.text.is_empty() {
            let mut altered = bytes.clone();
            let i = data.len() % n.text.len();
            altered[i] ^= 0x01;
            if let Ok(o) = note::open(&altered, &verifier) {
                panic!("an altered note verified: {:?}", o.text);
            }
        }
    }
});
