//! Reading the researcher's key files: the X25519 secret key (`WARDEN X25519 PRIVATE KEY`
//! PEM), an X25519 public key (`.pub`, base64 of 32 bytes), and a researcher certificate (JSON).
//! Keys made by another tool are refused with a message saying how to make the right one.

use std::path::Path;

use warden_seal::{Certificate, PublicKey, SecretKey};
use zeroize::Zeroizing;

/// Largest key or certificate file read.
pub const MAX_KEY_FILE: u64 = 64 * 1024;

/// How to make a Warden X25519 key, for error messages.
pub const MAKE_X25519: &str = "make one with `warden keys generate --kind x25519 --out FILE` \
     (FILE is the private key, FILE.pub its public key)";

/// The DER prefix of an RFC 8410 X25519 private key (as `openssl genpkey -algorithm x25519`
/// writes it under `PRIVATE KEY`), and the algorithm identifier of an X25519 SubjectPublicKeyInfo.
const X25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
];
const X25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00,
];

/// Why a key file was not read; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct KeyFileError {
    pub path: String,
    pub message: String,
}

fn err(path: &Path, message: impl Into<String>) -> KeyFileError {
    KeyFileError {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Reads a small file, refusing one larger than [`MAX_KEY_FILE`].
pub fn read_small(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    let meta = std::fs::metadata(path).map_err(|e| err(path, format!("cannot read it: {e}")))?;
    if meta.len() > MAX_KEY_FILE {
        return Err(err(
            path,
            format!(
                "{} bytes, more than the {MAX_KEY_FILE} a key file may be; is it the right file?",
                meta.len()
            ),
        ));
    }
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| err(path, format!("cannot read it: {e}")))
}

/// What a PEM text is, by its first block's label and content; `None` when it is not PEM.
fn pem_block(text: &str) -> Option<(String, Zeroizing<Vec<u8>>)> {
    let (label, der) = pkcs8::der::pem::decode_vec(text.trim().as_bytes()).ok()?;
    Some((label.to_owned(), Zeroizing::new(der)))
}

/// The message for a key in another tool's format, when `text` is one.
pub fn foreign_key_hint(text: &str) -> Option<String> {
    let (label, der) = pem_block(text)?;
    match label.as_str() {
        "PRIVATE KEY" if der.starts_with(&X25519_PKCS8_PREFIX) => Some(format!(
            "this is an X25519 key in OpenSSL's format (`BEGIN PRIVATE KEY`, e.g. from `openssl \
             genpkey -algorithm x25519`); Warden reads its own format: {MAKE_X25519}"
        )),
        "PUBLIC KEY" if der.starts_with(&X25519_SPKI_PREFIX) => Some(format!(
            "this is an X25519 public key in OpenSSL's format (`BEGIN PUBLIC KEY`); a Warden \
             X25519 public key is the base64 line of the .pub file `warden keys generate --kind \
             x25519` writes: {MAKE_X25519}"
        )),
        "PRIVATE KEY" | "EC PRIVATE KEY" | "OPENSSH PRIVATE KEY" | "RSA PRIVATE KEY" => Some(
            format!("a `{label}` block is not a Warden X25519 key: {MAKE_X25519}"),
        ),
        _ => None,
    }
}

/// Reads an X25519 secret key file (`WARDEN X25519 PRIVATE KEY`).
pub fn read_secret_key(path: &Path) -> Result<SecretKey, KeyFileError> {
    let bytes = read_small(path)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| err(path, format!("not a PEM text file; {MAKE_X25519}")))?;
    if let Some(hint) = foreign_key_hint(text) {
        return Err(err(path, hint));
    }
    SecretKey::from_pem(text).map_err(|e| err(path, format!("{e}; {MAKE_X25519}")))
}

/// Reads an X25519 public key file: base64 of the 32 raw bytes on one line.
pub fn read_public_key(path: &Path) -> Result<PublicKey, KeyFileError> {
    let bytes = read_small(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        err(
            path,
            "not a text file; expected the base64 line of a .pub file",
        )
    })?;
    if let Some(hint) = foreign_key_hint(text) {
        return Err(err(path, hint));
    }
    if text.contains("PRIVATE KEY") {
        return Err(err(
            path,
            "this is a private key; give its public key (the FILE.pub next to it)",
        ));
    }
    PublicKey::from_base64(text).map_err(|e| err(path, format!("{e}; {MAKE_X25519}")))
}

/// Reads a researcher certificate file (`warden keys certify` writes them).
pub fn read_certificate(path: &Path) -> Result<Certificate, KeyFileError> {
    let bytes = read_small(path)?;
    Certificate::parse(&bytes).map_err(|e| {
        err(
            path,
            format!("{e}; ask your organization for a certificate made with `warden keys certify`"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, content: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn warden_keys_read_and_foreign_ones_are_refused_with_how_to_make_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let sk = SecretKey::generate();
        let p = write(d, "k", sk.to_pem().as_bytes());
        assert_eq!(read_secret_key(&p).unwrap().public_key(), sk.public_key());
        let p = write(d, "k.pub", format!("{}\n", sk.public_key()).as_bytes());
        assert_eq!(read_public_key(&p).unwrap(), sk.public_key());

        // The same key as OpenSSL writes it.
        let openssl = sk
            .to_pem()
            .replace("WARDEN X25519 PRIVATE KEY", "PRIVATE KEY");
        let p = write(d, "openssl.key", openssl.as_bytes());
        let e = read_secret_key(&p).unwrap_err().to_string();
        assert!(
            e.contains("OpenSSL") && e.contains("warden keys generate --kind x25519"),
            "{e}"
        );
        // and its public key.
        let mut spki = X25519_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(sk.public_key().as_bytes());
        let pem =
            pkcs8::der::pem::encode_string("PUBLIC KEY", pkcs8::der::pem::LineEnding::LF, &spki)
                .unwrap();
        let p = write(d, "openssl.pub", pem.as_bytes());
        let e = read_public_key(&p).unwrap_err().to_string();
        assert!(e.contains("OpenSSL") && e.contains("base64 line"), "{e}");
        // A private key where a public one is wanted, junk, a missing file, a huge file.
        let p = write(d, "private-as-pub", sk.to_pem().as_bytes());
        let e = read_public_key(&p).unwrap_err().to_string();
        assert!(e.contains("FILE.pub"), "{e}");
        let p = write(d, "junk", b"junk");
        let e = read_secret_key(&p).unwrap_err().to_string();
        assert!(e.contains("junk") && e.contains("--kind x25519"), "{e}");
        let e = read_secret_key(&d.join("absent")).unwrap_err().to_string();
        assert!(e.contains("absent: cannot read it"), "{e}");
        let p = write(d, "big", &vec![b'a'; MAX_KEY_FILE as usize + 1]);
        assert!(
            read_public_key(&p)
                .unwrap_err()
                .to_string()
                .contains("bytes")
        );
        let e = read_certificate(&write(d, "c", b"{}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("warden keys certify"), "{e}");
    }
}
