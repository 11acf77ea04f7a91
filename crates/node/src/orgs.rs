//! Organizations' encryption keys, pinned by fingerprint in the node's configuration: the keys
//! the proxy seals subtask inputs to and opens subtask results with.
//!
//! The server hands out public keys, but the node only uses a key whose fingerprint its own
//! configuration pins for that organization's name. A key that differs from the pin is refused
//! (never trusted on first use), and so is an organization that is not pinned at all.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use warden_seal::PublicKey;

use crate::config::Fingerprint;
use crate::server::{ServerClient, ServerError};

/// Why an organization's key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "organization `{name}` (id {id}) has no pinned key fingerprint in this node's \
         configuration; add it under [organizations] after checking it with the organization"
    )]
    NotPinned { id: i64, name: String },
    #[error(
        "the server gives organization `{name}` (id {id}) a key with fingerprint {got}, but this \
         node pins {pinned}; the key is refused: confirm the change with the organization and \
         update the pin"
    )]
    Changed {
        id: i64,
        name: String,
        pinned: String,
        got: String,
    },
    #[error("the server gives organization {id} a malformed public key: {message}")]
    Malformed { id: i64, message: String },
    #[error(transparent)]
    Server(#[from] ServerError),
}

impl KeyError {
    pub fn is_transient(&self) -> bool {
        matches!(self, KeyError::Server(e) if e.is_transient())
    }
}

/// An organization whose key matched its pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    pub id: i64,
    pub name: String,
    pub key: PublicKey,
}

/// The pinned fingerprints and the organizations checked against them.
#[derive(Debug)]
pub struct OrgKeys {
    pinned: BTreeMap<String, Fingerprint>,
    checked: Mutex<HashMap<i64, Org>>,
}

impl OrgKeys {
    pub fn new(pinned: BTreeMap<String, Fingerprint>) -> OrgKeys {
        OrgKeys {
            pinned,
            checked: Mutex::new(HashMap::new()),
        }
    }

    /// Checks one organization as the server describes it against the pins.
    pub fn check(&self, org: &warden_api::Organization) -> Result<Org, KeyError> {
        let key = PublicKey::from_base64(&org.public_key).map_err(|e| KeyError::Malformed {
            id: org.id,
            message: e.to_string(),
        })?;
        let Some(pinned) = self.pinned.get(&org.name) else {
            return Err(KeyError::NotPinned {
                id: org.id,
                name: org.name.clone(),
            });
        };
        let got = key.fingerprint().to_string();
        if got != pinned.0 {
            return Err(KeyError::Changed {
                id: org.id,
                name: org.name.clone(),
                pinned: pinned.0.clone(),
                got,
            });
        }
        Ok(Org {
            id: org.id,
            name: org.name.clone(),
            key,
        })
    }

    /// The organization with a key that matches its pin, from the server (checked once, then
    /// remembered for this process).
    pub async fn get(&self, server: &ServerClient, id: i64) -> Result<Org, KeyError> {
        if let Some(o) = self.lock().get(&id).cloned() {
            return Ok(o);
        }
        let org = server.organization(id).await?;
        if org.id != id {
            return Err(KeyError::Malformed {
                id,
                message: format!(
                    "asked for organization {id}, the server answered {}",
                    org.id
                ),
            });
        }
        let checked = self.check(&org)?;
        self.lock().insert(id, checked.clone());
        Ok(checked)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Org>> {
        self.checked.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(id: i64, name: &str, key: &PublicKey) -> warden_api::Organization {
        warden_api::Organization {
            id,
            name: name.into(),
            public_key: key.to_base64(),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn only_a_pinned_matching_key_is_used() {
        let a = warden_seal::SecretKey::generate().public_key();
        let b = warden_seal::SecretKey::generate().public_key();
        let keys = OrgKeys::new(BTreeMap::from([(
            "a".to_owned(),
            Fingerprint(a.fingerprint().to_string()),
        )]));
        assert_eq!(keys.check(&org(1, "a", &a)).unwrap().key, a);
        assert!(matches!(
            keys.check(&org(1, "a", &b)),
            Err(KeyError::Changed { .. })
        ));
        assert!(matches!(
            keys.check(&org(2, "b", &b)),
            Err(KeyError::NotPinned { .. })
        ));
        let mut bad = org(1, "a", &a);
        bad.public_key = "not base64".into();
        assert!(matches!(keys.check(&bad), Err(KeyError::Malformed { .. })));
    }
}
