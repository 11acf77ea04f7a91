//! Reading TOML configuration with errors that point at the line, column and key, shared by the
//! server's and the node's configuration files and the researcher's profiles. The only I/O is
//! [`read_file`]; parsing takes the text and the name to give in errors.

#![forbid(unsafe_code)]

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Where in the text something is wrong, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Dotted key path (`limits.pids`), empty when the error is about the file as a whole.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: key `{}`: {}",
            self.line, self.column, self.key, self.message
        )
    }
}

/// Why a configuration file was refused: unreadable, or wrong at a place in it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration {path}: {source}; check the path")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
}

impl Located {
    /// The error for the file at `path`.
    pub fn in_file(self, path: &Path) -> ConfigError {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line: self.line,
            column: self.column,
            key: self.key,
            message: self.message,
        }
    }
}

/// Reads the configuration file at `path`, refusing one larger than `max_bytes`, and returns its
/// text with the folder its relative paths are resolved against (its parent, `.` for a bare
/// file name).
pub fn read_file(path: &Path, max_bytes: u64) -> Result<(String, PathBuf), ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.len() > max_bytes {
        return Err(read_err(std::io::Error::other(format!(
            "larger than {max_bytes} bytes"
        ))));
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok((text, base))
}

/// Deserializes a number and requires `lo <= v <= hi`; for `deserialize_with` functions, so
/// that the error (located like every other) says `{what} must be between {lo} and {hi}`.
pub fn in_range<'de, D, T>(d: D, lo: T, hi: T, what: &str) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + PartialOrd + fmt::Display + Copy,
{
    let v = T::deserialize(d)?;
    if v < lo || v > hi {
        return Err(serde::de::Error::custom(format!(
            "{what} must be between {lo} and {hi}, got {v}"
        )));
    }
    Ok(v)
}

/// Deserializes `text`; a syntax error or a value that does not fit `T` (unknown key, wrong
/// type, missing key) comes back located.
pub fn from_toml<T: DeserializeOwned>(text: &str) -> Result<T, Located> {
    let de = toml::Deserializer::parse(text)
        .map_err(|e| locate(text, String::new(), e.message().to_owned(), e.span()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let key = if key == "." { String::new() } else { key };
        locate(text, key, inner.message().to_owned(), inner.span())
    })
}

/// A located error for `key` at byte offset `span.start` of `text` (the start of the file
/// when there is no span).
pub fn locate(text: &str, key: String, message: String, span: Option<Range<usize>>) -> Located {
    let (line, column) = line_column(text, span.map(|s| s.start).unwrap_or(0));
    Located {
        line,
        column,
        key,
        message,
    }
}

/// 1-based line and character column of byte `offset` in `text` (clamped to the text, and to
/// a character boundary).
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_file_caps_the_size_and_names_the_folder() {
        let dir = std::env::temp_dir().join(format!("warden-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("node.toml");
        std::fs::write(&file, "a = 1\n").unwrap();
        let (text, base) = read_file(&file, 6).unwrap();
        assert_eq!((text.as_str(), base.as_path()), ("a = 1\n", dir.as_path()));
        let e = read_file(&file, 5).unwrap_err().to_string();
        assert!(e.contains("larger than 5 bytes"), "{e}");
        let e = read_file(&dir.join("missing.toml"), 10)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("missing.toml") && e.contains("check the path"),
            "{e}"
        );
        // A bare file name resolves against the current folder.
        let e = read_file(Path::new("no-such-file.toml"), 10).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Conf {
        http: Http,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Http {
        listen: String,
        #[serde(default)]
        workers: u32,
    }

    #[track_caller]
    fn check(text: &str, line: usize, key: &str, needle: &str) {
        let e = from_toml::<Conf>(text).unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (line, key), "{e}");
        assert!(e.message.contains(needle), "{e}");
    }

    #[test]
    fn errors_name_line_and_key() {
        check(
            "[http]\nlisten = \"x\"\nbogus = 1\n",
            3,
            "http.bogus",
            "unknown field `bogus`",
        );
        check(
            "[http]\nlisten = \"x\"\nworkers = \"many\"\n",
            3,
            "http.workers",
            "invalid type",
        );
        check("[http]\nworkers = 1\n", 1, "http", "missing field `listen`");
        check("[http\n", 1, "", "");
        assert!(from_toml::<Conf>("[http]\nlisten = \"x\"\n").is_ok());
    }

    #[test]
    fn columns_count_characters_and_offsets_are_clamped() {
        assert_eq!(line_column("ab\ncdé", 5), (2, 3));
        assert_eq!(line_column("ab\ncdé", 7), (2, 4));
        // Inside `é`: back to its start.
        assert_eq!(line_column("ab\ncdé", 6), (2, 3));
        assert_eq!(line_column("é", 1), (1, 1));
        assert_eq!(line_column("ab", 99), (1, 3));
        assert_eq!(line_column("", 0), (1, 1));
    }
}
