//! Reading one numeric column of a CSV data file, and counting its rows.
//!
//! The file has a header row. Cells are trimmed; an empty, non-numeric, non-UTF-8 or non-finite
//! (`NaN`, `inf`) cell is skipped and counted as such. A row with a different number of fields
//! than the header is an error (the file is not the table it claims to be). Empty lines are
//! ignored, a UTF-8 byte-order mark is allowed, and fields may be quoted (RFC 4180).

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::stats::Sum;

/// A directory data source holds its table in this file.
pub const DIRECTORY_TABLE: &str = "data.csv";

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("cannot open {path}: {source}; check the data source in the node's configuration")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "data source {path} is a directory without {DIRECTORY_TABLE}; put the table in \
         {DIRECTORY_TABLE} or name a CSV file"
    )]
    NoTableInDirectory { path: PathBuf },
    #[error("{path} has no header row; the first line must name the columns")]
    NoHeader { path: PathBuf },
    #[error("{path} has no column {column:?}; its columns are: {columns}")]
    NoColumn {
        path: PathBuf,
        column: String,
        columns: String,
    },
    #[error("{path} has the column {column:?} more than once; rename one of them")]
    DuplicateColumn { path: PathBuf, column: String },
    #[error("{path} is not valid CSV: {source}")]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("the sum of column {column:?} in {path} overflows a 64-bit float")]
    Overflow { path: PathBuf, column: String },
}

/// Sum and count of the numeric cells of a column, and how many cells were skipped.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnStats {
    pub sum: f64,
    pub count: u64,
    pub skipped: u64,
}

/// The CSV file of data source `path`: the path itself, or `data.csv` inside a directory.
pub fn table_file(path: &Path) -> Result<PathBuf, TableError> {
    if path.is_dir() {
        let file = path.join(DIRECTORY_TABLE);
        if !file.is_file() {
            return Err(TableError::NoTableInDirectory {
                path: path.to_path_buf(),
            });
        }
        return Ok(file);
    }
    Ok(path.to_path_buf())
}

fn open(path: &Path) -> Result<std::fs::File, TableError> {
    std::fs::File::open(path).map_err(|source| TableError::Open {
        path: path.to_path_buf(),
        source,
    })
}

fn reader<R: Read>(input: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(input)
}

/// Stats of `column` in the CSV file at `path`.
pub fn column_stats_file(path: &Path, column: &str) -> Result<ColumnStats, TableError> {
    column_stats(open(path)?, path, column)
}

/// Rows of the CSV file at `path`, header excluded.
pub fn count_rows_file(path: &Path) -> Result<u64, TableError> {
    count_rows(open(path)?, path)
}

/// Stats of `column` in CSV read from `input`; `path` names it in errors.
pub fn column_stats<R: Read>(
    input: R,
    path: &Path,
    column: &str,
) -> Result<ColumnStats, TableError> {
    let csv_err = |source| TableError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut rdr = reader(input);
    let headers = rdr.byte_headers().map_err(csv_err)?.clone();
    let index = column_index(&headers, path, column)?;
    let mut sum = Sum::default();
    let (mut count, mut skipped) = (0u64, 0u64);
    let mut record = csv::ByteRecord::new();
    while rdr.read_byte_record(&mut record).map_err(csv_err)? {
        match record.get(index).and_then(parse_number) {
            Some(v) => {
                sum.add(v);
                count += 1;
            }
            None => skipped += 1,
        }
    }
    let sum = sum.value();
    if !sum.is_finite() {
        return Err(TableError::Overflow {
            path: path.to_path_buf(),
            column: column.to_owned(),
        });
    }
    Ok(ColumnStats {
        sum,
        count,
        skipped,
    })
}

/// Data rows in CSV read from `input`, header excluded; `path` names it in errors.
pub fn count_rows<R: Read>(input: R, path: &Path) -> Result<u64, TableError> {
    let csv_err = |source| TableError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut rdr = reader(input);
    let headers = rdr.byte_headers().map_err(csv_err)?;
    if is_empty_header(headers) {
        return Err(TableError::NoHeader {
            path: path.to_path_buf(),
        });
    }
    let mut rows = 0u64;
    let mut record = csv::ByteRecord::new();
    while rdr.read_byte_record(&mut record).map_err(csv_err)? {
        rows += 1;
    }
    Ok(rows)
}

fn is_empty_header(headers: &csv::ByteRecord) -> bool {
    headers.is_empty() || (headers.len() == 1 && headers[0].is_empty())
}

fn column_index(headers: &csv::ByteRecord, path: &Path, column: &str) -> Result<usize, TableError> {
    if is_empty_header(headers) {
        return Err(TableError::NoHeader {
            path: path.to_path_buf(),
        });
    }
    let mut matches = headers
        .iter()
        .enumerate()
        .filter(|(_, h)| *h == column.as_bytes());
    let Some((index, _)) = matches.next() else {
        let columns: Vec<String> = headers
            .iter()
            .map(|h| format!("{:?}", String::from_utf8_lossy(h)))
            .collect();
        return Err(TableError::NoColumn {
            path: path.to_path_buf(),
            column: column.to_owned(),
            columns: columns.join(", "),
        });
    };
    if matches.next().is_some() {
        return Err(TableError::DuplicateColumn {
            path: path.to_path_buf(),
            column: column.to_owned(),
        });
    }
    Ok(index)
}

/// A finite number, or `None` for a cell to skip.
pub fn parse_number(cell: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(cell).ok()?.trim();
    if text.is_empty() {
        return None;
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}
