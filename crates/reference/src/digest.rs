//! Content digests: `sha256:<64 lower hex>` and `sha512:<128 lower hex>`.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

use crate::ReferenceError;

/// The hash algorithms Warden accepts in a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as written in a digest.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Number of hex characters in a digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A content digest such as `sha256:9f86...`. Always lower-case hex of the exact length.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Parses `algorithm:hex`, rejecting anything but sha256/sha512 with lower-case hex of the
    /// exact length.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let bad = |why: String| ReferenceError::Digest {
            input: input.to_owned(),
            why,
        };
        let (algo, hex) = input
            .split_once(':')
            .ok_or_else(|| bad("expected `sha256:<64 hex>` or `sha512:<128 hex>`".into()))?;
        let algorithm = match algo {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => {
                return Err(bad(format!(
                    "unsupported digest algorithm `{}`; use sha256 or sha512",
                    other.escape_debug()
                )));
            }
        };
        if hex.len() != algorithm.hex_len() {
            return Err(bad(format!(
                "a {} digest has {} hex characters, this one has {}",
                algorithm.name(),
                algorithm.hex_len(),
                hex.chars().count()
            )));
        }
        if let Some(c) = hex.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
            let why = if c.is_ascii_hexdigit() {
                "digest hex must be lower case".to_owned()
            } else {
                format!("`{}` is not a hex character", c.escape_debug())
            };
            return Err(bad(why));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }

    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Self {
        Digest {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(sha2::Sha256::digest(bytes)),
        }
    }

    /// The digest of `bytes` under `algorithm`.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Self {
        let hex = match algorithm {
            Algorithm::Sha256 => hex::encode(sha2::Sha256::digest(bytes)),
            Algorithm::Sha512 => hex::encode(sha2::Sha512::digest(bytes)),
        };
        Digest { algorithm, hex }
    }

    /// Whether `bytes` hash to this digest.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        Digest::of(self.algorithm, bytes) == *self
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lower-case hex part.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The cosign signature tag for this digest: `sha256-<hex>.sig`.
    pub fn signature_tag(&self) -> String {
        format!("{}-{}.sig", self.algorithm.name(), self.hex)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX64: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[track_caller]
    fn check_err(input: &str, needle: &str) {
        match Digest::parse(input) {
            Ok(d) => panic!("{input:?} parsed as {d}"),
            Err(e) => assert!(
                e.to_string().contains(needle),
                "error for {input:?} was {e:?}, expected to mention {needle:?}"
            ),
        }
    }

    #[test]
    fn parses_sha256_and_sha512() {
        let d = Digest::parse(&format!("sha256:{HEX64}")).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), format!("sha256:{HEX64}"));
        let long = format!("sha512:{}", "a".repeat(128));
        assert_eq!(Digest::parse(&long).unwrap().to_string(), long);
    }

    #[test]
    fn rejects_malformed() {
        check_err("sha256", "expected");
        check_err(&format!("md5:{HEX64}"), "unsupported digest algorithm");
        check_err(&format!("SHA256:{HEX64}"), "unsupported digest algorithm");
        check_err("sha256:abc", "has 64 hex characters, this one has 3");
        check_err(&format!("sha256:{}", HEX64.to_uppercase()), "lower case");
        check_err(&format!("sha256:{}g", &HEX64[1..]), "`g` is not a hex");
        check_err(&format!("sha512:{HEX64}"), "128 hex");
        check_err(&format!("sha256:{HEX64}0"), "this one has 65");
    }

    #[test]
    fn hashes_bytes() {
        // sha256("test")
        let d = Digest::sha256_of(b"test");
        assert_eq!(d.to_string(), format!("sha256:{HEX64}"));
        assert!(d.matches(b"test"));
        assert!(!d.matches(b"test "));
        assert_eq!(d.signature_tag(), format!("sha256-{HEX64}.sig"));
        assert!(Digest::of(Algorithm::Sha512, b"x").matches(b"x"));
    }

    #[test]
    fn serde_round_trip_validates() {
        let d = Digest::sha256_of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:00\"").is_err());
    }
}
