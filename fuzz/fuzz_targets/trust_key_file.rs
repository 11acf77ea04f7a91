//! Encrypted private key files and public key PEM: parsing never panics and a hostile key
//! file cannot demand an expensive scrypt.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_trust::PublicKey;
use warden_trust::keyfile::{EncryptedKeyFile, MAX_SCRYPT_COST};

fuzz_target!(|data: &[u8]| {
    let _ = PublicKey::from_spki_der(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = PublicKey::from_pem(text);
    if let Ok(file) = EncryptedKeyFile::from_pem(text) {
        assert!(file.params().cost() <= MAX_SCRYPT_COST);
        if file.params().cost() <= 1 << 10 {
            let _ = file.decrypt(b"fuzz");
        }
    }
});
