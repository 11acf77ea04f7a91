//! Signed notes and checkpoints against the published examples (tests/data/signed-note-examples.json,
//! see tests/data/SOURCE.md), and attacks on the parser and the verifier.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use warden_tlog::note::{self, MAX_NOTE_LEN, MAX_NOTE_SIGNATURES};
use warden_tlog::{
    Checkpoint, CheckpointError, EMPTY_ROOT, MemoryTree, Note, NoteError, NoteSigner, NoteVerifier,
    ProofError, open_checkpoint, verify_checkpoint_consistency,
};

#[derive(Deserialize)]
struct Example {
    vkey: String,
    #[serde(default)]
    skey: Option<String>,
    text: String,
    note: String,
}

#[derive(Deserialize)]
struct Examples {
    c2sp_signed_note: Example,
    go_sumdb_note: Example,
}

fn examples() -> Examples {
    let path = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("tests/data/signed-note-examples.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Go's private key string: `PRIVATE+KEY+name+hex8+base64(0x01 || 32-byte seed)`.
fn go_signer(skey: &str) -> NoteSigner {
    // The base64 key material may itself contain `+`.
    let parts: Vec<&str> = skey.splitn(5, '+').collect();
    assert_eq!(&parts[..2], ["PRIVATE", "KEY"]);
    let raw = STANDARD.decode(parts[4]).unwrap();
    assert_eq!(raw[0], 1);
    let seed: [u8; 32] = raw[1..].try_into().unwrap();
    let signer = NoteSigner::new(parts[2], ed25519_dalek::SigningKey::from_bytes(&seed)).unwrap();
    assert_eq!(format!("{:08x}", signer.key_id()), parts[3]);
    signer
}

fn signer(name: &str, seed: u8) -> NoteSigner {
    NoteSigner::new(name, ed25519_dalek::SigningKey::from_bytes(&[seed; 32])).unwrap()
}

#[test]
fn the_specification_example_verifies() {
    let ex = examples().c2sp_signed_note;
    let v = NoteVerifier::parse(&ex.vkey).unwrap();
    assert_eq!(v.name(), "example.com/foo");
    assert_eq!(v.key_id(), 0x530d903a);
    assert_eq!(v.to_string(), ex.vkey);
    let note = note::open(ex.note.as_bytes(), &v).unwrap();
    assert_eq!(note.text, ex.text);
    assert_eq!(note.to_bytes(), ex.note.as_bytes());
}

#[test]
fn the_go_example_is_reproduced_byte_for_byte() {
    let ex = examples().go_sumdb_note;
    let s = go_signer(ex.skey.as_deref().unwrap());
    assert_eq!(s.verifier().to_string(), ex.vkey);
    let mut n = Note::new(&ex.text).unwrap();
    n.sign(&s);
    assert_eq!(String::from_utf8(n.to_bytes()).unwrap(), ex.note);
    // Signing again replaces the signature by the same key rather than adding one.
    n.sign(&s);
    assert_eq!(n.signatures.len(), 1);
    let v = NoteVerifier::parse(&ex.vkey).unwrap();
    assert_eq!(note::open(ex.note.as_bytes(), &v).unwrap().text, ex.text);
}

#[test]
fn every_mangled_verifier_key_is_refused() {
    // As Go's own test: every proper substring, and every byte changed by one.
    let vkey = examples().go_sumdb_note.vkey;
    let b = vkey.as_bytes();
    for i in 0..=b.len() {
        for j in i + 1..=b.len() {
            if i == 0 && j == b.len() {
                continue;
            }
            let Ok(s) = std::str::from_utf8(&b[i..j]) else {
                continue;
            };
            assert!(NoteVerifier::parse(s).is_err(), "{s:?} parsed");
        }
    }
    let mut m = b.to_vec();
    for i in 0..m.len() {
        m[i] = m[i].wrapping_add(1);
        if let Ok(s) = std::str::from_utf8(&m) {
            assert!(NoteVerifier::parse(s).is_err(), "{s:?} parsed");
        }
        m[i] = m[i].wrapping_sub(1);
    }
    // The right key ID for another name: the name and ID must match.
    let bad = vkey.replacen("PeterNeumann", "PeterNeumanN", 1);
    assert!(matches!(
        NoteVerifier::parse(&bad),
        Err(NoteError::VerifierKeyIdMismatch { .. })
    ));
}

#[test]
fn verifier_keys_round_trip_including_base64_with_plus() {
    let mut plus = 0;
    for seed in 0..=255u8 {
        let v = signer("log.example/k", seed).verifier();
        let text = v.to_string();
        plus += usize::from(text.rsplit('+').next() != text.splitn(3, '+').nth(2));
        assert_eq!(NoteVerifier::parse(&text).unwrap(), v, "{text}");
    }
    assert!(plus > 10, "only {plus} keys had a `+` in their base64");
}

#[test]
fn tampering_and_foreign_signatures() {
    let ex = examples().go_sumdb_note;
    let v = NoteVerifier::parse(&ex.vkey).unwrap();
    // One changed letter of the text.
    let altered = ex.note.replacen("cryptography", "cryptographY", 1);
    assert_eq!(
        note::open(altered.as_bytes(), &v).unwrap_err(),
        NoteError::InvalidSignature {
            name: "PeterNeumann".into(),
            key_id: 0xc74f20a3
        }
    );
    // Signatures by other keys are ignored, before and after the pinned one.
    let mut n = Note::parse(ex.note.as_bytes()).unwrap();
    let other = signer("witness.example/w1", 7);
    let same_name = signer("PeterNeumann", 8);
    n.signatures.insert(0, other.sign(n.text.as_bytes()));
    n.sign(&same_name);
    assert_eq!(n.signatures.len(), 3);
    let reparsed = note::open(&n.to_bytes(), &v).unwrap();
    assert_eq!(reparsed.signatures.len(), 3);
    // Without the pinned signature, other signers do not make it verify.
    n.signatures.retain(|s| s.key_id != v.key_id());
    assert_eq!(
        note::open(&n.to_bytes(), &v).unwrap_err(),
        NoteError::NotSignedByPinnedKey {
            name: "PeterNeumann".into(),
            key_id: 0xc74f20a3
        }
    );
    // A signature that claims the pinned name and ID but is someone else's refuses the note,
    // even next to the good one.
    let mut forged = Note::parse(ex.note.as_bytes()).unwrap();
    let mut fake = other.sign(forged.text.as_bytes());
    fake.name = "PeterNeumann".into();
    fake.key_id = v.key_id();
    forged.signatures.push(fake);
    assert!(matches!(
        note::open(&forged.to_bytes(), &v),
        Err(NoteError::InvalidSignature { .. })
    ));
    // A truncated signature of the pinned key.
    let mut short = Note::parse(ex.note.as_bytes()).unwrap();
    short.signatures[0].signature.truncate(63);
    assert!(matches!(
        note::open(&short.to_bytes(), &v),
        Err(NoteError::InvalidSignature { .. })
    ));
}

#[test]
fn malformed_notes_are_refused_with_a_reason() {
    let ex = examples().go_sumdb_note;
    let good = ex.note.clone();
    let sig_line = good.lines().last().unwrap().to_owned();
    type Check = fn(&NoteError) -> bool;
    let cases: Vec<(String, Check)> = vec![
        (good.trim_end().to_owned(), |e| {
            *e == NoteError::NoFinalNewline
        }),
        (good.replacen("\n\n", "\n", 1), |e| {
            *e == NoteError::NoSignatures
        }),
        (ex.text.clone(), |e| *e == NoteError::NoSignatures),
        (format!("{}\n", ex.text), |e| *e == NoteError::NoSignatures),
        (good.replacen("problem,", "problem,\r", 1), |e| {
            *e == NoteError::ControlCharacter(b'\r')
        }),
        (good.replacen("problem,", "problem,\t", 1), |e| {
            *e == NoteError::ControlCharacter(b'\t')
        }),
        (good.replacen('\u{2014}', "-", 1), |e| {
            matches!(e, NoteError::BadSignatureLine { line: 1, .. })
        }),
        (good.replacen("PeterNeumann ", "Peter Neumann ", 1), |e| {
            matches!(e, NoteError::BadSignatureLine { .. })
        }),
        (good.replacen("PeterNeumann ", "Peter+Neumann ", 1), |e| {
            matches!(e, NoteError::BadSignatureLine { .. })
        }),
        (good.replacen("=\n", "\n", 1), |e| {
            matches!(e, NoteError::BadSignatureLine { .. })
        }),
        (
            good.replacen("\u{2014} PeterNeumann ", "\u{2014} PeterNeumann", 1),
            |e| matches!(e, NoteError::BadSignatureLine { .. }),
        ),
        (format!("{good}\u{2014} x AAAA\n"), |e| {
            matches!(e, NoteError::BadSignatureLine { line: 2, .. })
        }),
        (format!("{good}\n"), |e| *e == NoteError::NoSignatures),
        (
            format!(
                "{}\n{}",
                ex.text,
                format!("{sig_line}\n").repeat(MAX_NOTE_SIGNATURES + 1)
            ),
            |e| *e == NoteError::TooManySignatures,
        ),
        (format!("{}\n{sig_line}\n", "a".repeat(MAX_NOTE_LEN)), |e| {
            matches!(e, NoteError::TooLarge { .. })
        }),
    ];
    for (input, want) in cases {
        let got = Note::parse(input.as_bytes()).unwrap_err();
        assert!(want(&got), "{input:?}: {got:?}");
        assert!(!got.to_string().is_empty());
    }
    assert_eq!(
        Note::parse(b"\xff\n\n\xe2\x80\x94 a AAAAAAA=\n").unwrap_err(),
        NoteError::NotUtf8
    );
    // Exactly the limit of signatures is accepted.
    let at_limit = format!(
        "{}\n{}",
        ex.text,
        format!("{sig_line}\n").repeat(MAX_NOTE_SIGNATURES)
    );
    let v = NoteVerifier::parse(&ex.vkey).unwrap();
    assert_eq!(
        note::open(at_limit.as_bytes(), &v)
            .unwrap()
            .signatures
            .len(),
        MAX_NOTE_SIGNATURES
    );
    // Text may contain blank lines: the last blank line separates it from the signatures.
    let s = signer("log.example/a", 3);
    let mut n = Note::new("a\n\nb\n").unwrap();
    n.sign(&s);
    assert_eq!(
        note::open(&n.to_bytes(), &s.verifier()).unwrap().text,
        "a\n\nb\n"
    );
    assert!(Note::new("no newline").is_err());
    assert!(NoteSigner::new("has space", ed25519_dalek::SigningKey::from_bytes(&[1; 32])).is_err());
    assert!(NoteSigner::new("", ed25519_dalek::SigningKey::from_bytes(&[1; 32])).is_err());
}

/// The example of the tlog-checkpoint specification (its signature is by a key the
/// specification does not publish, so only the text is checked).
const SPEC_CHECKPOINT: &str =
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

#[test]
fn checkpoint_text_parses_strictly() {
    let cp = Checkpoint::parse_text(SPEC_CHECKPOINT).unwrap();
    assert_eq!(cp.origin, "example.com/behind-the-sofa");
    assert_eq!(cp.size, 20852163);
    assert_eq!(
        STANDARD.encode(cp.root),
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    );
    assert!(cp.extensions.is_empty());
    assert_eq!(cp.to_text(), SPEC_CHECKPOINT);
    let with_ext = format!("{SPEC_CHECKPOINT}ext one\next two\n");
    let cp2 = Checkpoint::parse_text(&with_ext).unwrap();
    assert_eq!(cp2.extensions, ["ext one", "ext two"]);
    assert_eq!(cp2.to_text(), with_ext);
    let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
    let bad = [
        String::new(),
        "\n".into(),
        format!("o\n1\n{root}"),
        format!("\n1\n{root}\n"),
        format!("o\n01\n{root}\n"),
        format!("o\n+1\n{root}\n"),
        format!("o\n-1\n{root}\n"),
        format!("o\n 1\n{root}\n"),
        format!("o\n18446744073709551616\n{root}\n"),
        format!("o\n\n{root}\n"),
        "o\n1\n".into(),
        "o\n1\nAAAA\n".into(),
        format!("o\n1\n{}\n", &root[..root.len() - 1]),
        format!("o\n1\n{root}\n\n"),
        format!("o\n1\n{root}\next\n\n"),
        format!("o\n1\n{root}\n{}", "e\n".repeat(17)),
    ];
    for b in bad {
        assert!(
            matches!(
                Checkpoint::parse_text(&b),
                Err(CheckpointError::Malformed(_))
            ),
            "{b:?} parsed"
        );
    }
    assert_eq!(
        Checkpoint::parse_text(&format!("o\n0\n{root}\n"))
            .unwrap()
            .size,
        0
    );
    assert_eq!(
        Checkpoint::parse_text(&format!("o\n18446744073709551615\n{root}\n"))
            .unwrap()
            .size,
        u64::MAX
    );
}

#[test]
fn signed_checkpoints_open_only_under_the_pinned_key_and_origin() {
    let s = signer("warden-store/community", 5);
    let v = s.verifier();
    let mut tree = MemoryTree::new();
    for i in 0..10u8 {
        tree.append(&[i]);
    }
    let cp = Checkpoint::new("warden-store/community", tree.size(), tree.root());
    let signed = cp.sign(&s).unwrap();
    assert_eq!(open_checkpoint(&signed, &v).unwrap(), cp);
    // Another key under the same name, or another name, does not verify it.
    let impostor = signer("warden-store/community", 6);
    assert!(matches!(
        open_checkpoint(&signed, &impostor.verifier()),
        Err(CheckpointError::Note(
            NoteError::NotSignedByPinnedKey { .. }
        ))
    ));
    // The pinned key signing another log's checkpoint: the origin must be the key name.
    let other = Checkpoint::new("warden-store/other", 1, EMPTY_ROOT);
    assert!(matches!(
        other.sign(&s),
        Err(CheckpointError::SignerNameMismatch { .. })
    ));
    let mut n = Note::new(&other.to_text()).unwrap();
    n.sign(&s);
    assert!(matches!(
        open_checkpoint(&n.to_bytes(), &v),
        Err(CheckpointError::WrongOrigin { .. })
    ));
    // A validly signed note that is not a checkpoint.
    let mut junk = Note::new("warden-store/community\nnot a size\n").unwrap();
    junk.sign(&s);
    assert!(matches!(
        open_checkpoint(&junk.to_bytes(), &v),
        Err(CheckpointError::Malformed(_))
    ));
    // A changed size or root breaks the signature.
    let text = String::from_utf8(signed.clone()).unwrap();
    let bigger = text.replacen("\n10\n", "\n11\n", 1);
    assert!(matches!(
        open_checkpoint(bigger.as_bytes(), &v),
        Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
    ));
}

#[test]
fn checkpoint_consistency() {
    let mut tree = MemoryTree::new();
    let o = "warden-store/community";
    let empty = Checkpoint::new(o, 0, EMPTY_ROOT);
    let mut cps = vec![empty.clone()];
    for i in 0..20u8 {
        tree.append(&[i]);
        cps.push(Checkpoint::new(o, tree.size(), tree.root()));
    }
    for a in 0..cps.len() {
        for b in a..cps.len() {
            let proof = if a == 0 {
                vec![]
            } else {
                tree.consistency_proof(a as u64, b as u64).unwrap()
            };
            verify_checkpoint_consistency(&cps[a], &cps[b], &proof).unwrap();
            if b > a {
                // Going backwards is refused.
                let back = verify_checkpoint_consistency(&cps[b], &cps[a], &proof).unwrap_err();
                assert!(
                    matches!(back, CheckpointError::Inconsistent { .. }),
                    "{back:?}"
                );
            }
        }
    }
    // A forked log: same size, another root; or a longer log that rewrote entry 3.
    let mut fork = MemoryTree::new();
    for i in 0..20u8 {
        fork.append(&[if i == 3 { 99 } else { i }]);
    }
    let forked = Checkpoint::new(o, 20, fork.root());
    assert!(matches!(
        verify_checkpoint_consistency(&cps[20], &forked, &[]),
        Err(CheckpointError::Inconsistent {
            why: ProofError::RootMismatch,
            ..
        })
    ));
    let proof = fork.consistency_proof(10, 20).unwrap();
    assert!(verify_checkpoint_consistency(&cps[10], &forked, &proof).is_err());
    // From the empty tree: a proof must be empty and the old root the empty root.
    assert!(verify_checkpoint_consistency(&empty, &cps[5], &[EMPTY_ROOT]).is_err());
    let mut wrong_empty = empty.clone();
    wrong_empty.root = [1; 32];
    assert!(verify_checkpoint_consistency(&wrong_empty, &cps[5], &[]).is_err());
    // Another log's checkpoint is not compared.
    let other = Checkpoint::new("warden-store/other", 20, tree.root());
    assert!(matches!(
        verify_checkpoint_consistency(&cps[20], &other, &[]),
        Err(CheckpointError::OtherLog { .. })
    ));
}
