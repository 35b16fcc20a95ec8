//! Seeds: CSV files read with a typed schema.
//!
//! Each column's type is inferred from its non-empty cells, trying in order
//! boolean, integer, real, date, timestamp, and falling back to text; empty
//! cells are NULL. `[seeds.<name>.column-types]` overrides any column.

use std::path::Path;

use serde::Deserialize;

use crate::config::SeedConfig;
use crate::error::{Error, Location, Result};

/// Portable column types (mirrors the WIT `logical-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogicalType {
    Integer,
    Real,
    Numeric,
    Boolean,
    Text,
    Date,
    Timestamp,
    Timestamptz,
    Json,
    Uuid,
}

/// One typed cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Boolean(bool),
    Integer(i64),
    Real(f64),
    /// Text, and every type carried as text (dates, numerics, json, ...).
    Text(String),
}

/// A parsed seed: typed columns and rows.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedTable {
    pub columns: Vec<(String, LogicalType)>,
    pub rows: Vec<Vec<Cell>>,
}

/// Reads and types a seed file.
pub fn read(
    name: &str,
    path: &Path,
    display_path: &Path,
    config: &SeedConfig,
) -> Result<SeedTable> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(name, &text, display_path, config)
}

/// Parses seed CSV text (header row first).
pub fn parse(name: &str, text: &str, path: &Path, config: &SeedConfig) -> Result<SeedTable> {
    let csv_error = |line: u64, message: String| Error::Csv {
        location: Location::new(path, line.max(1) as usize, 1),
        seed: name.to_string(),
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| csv_error(1, e.to_string()))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if headers.is_empty() || headers.iter().any(String::is_empty) {
        return Err(csv_error(1, "the header row must name every column".into()));
    }
    if let Some(dup) = headers
        .iter()
        .enumerate()
        .find(|(i, h)| headers[..*i].contains(h))
    {
        return Err(csv_error(
            1,
            format!("column `{}` appears twice in the header", dup.1),
        ));
    }
    for column in config.column_types.keys() {
        if !headers.contains(column) {
            return Err(csv_error(
                1,
                format!("column-types names `{column}`, which is not a column"),
            ));
        }
    }
    let mut raw = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            let message = match e.kind() {
                csv::ErrorKind::UnequalLengths {
                    expected_len, len, ..
                } => {
                    format!("this row has {len} fields; the header has {expected_len}")
                }
                _ => e.to_string(),
            };
            csv_error(line, message)
        })?;
        let line = record.position().map_or(0, |p| p.line());
        raw.push((line, record.iter().map(str::to_string).collect::<Vec<_>>()));
    }
    let columns: Vec<(String, LogicalType)> = headers
        .iter()
        .enumerate()
        .map(|(i, header)| {
            let declared = config.column_types.get(header).copied();
            (
                header.clone(),
                declared.unwrap_or_else(|| infer(raw.iter().map(|(_, row)| row[i].as_str()))),
            )
        })
        .collect();
    let rows = raw
        .into_iter()
        .map(|(line, row)| {
            row.into_iter()
                .zip(&columns)
                .map(|(value, (column, ty))| {
                    cell(&value, *ty).ok_or_else(|| {
                        csv_error(
                            line,
                            format!("`{value}` in column `{column}` is not a valid {ty:?}"),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SeedTable { columns, rows })
}

fn infer<'a>(values: impl Iterator<Item = &'a str> + Clone) -> LogicalType {
    let present = values.filter(|v| !v.is_empty());
    let all = |check: fn(&str) -> bool| present.clone().all(check);
    if present.clone().next().is_none() {
        LogicalType::Text
    } else if all(|v| parse_bool(v).is_some()) {
        LogicalType::Boolean
    } else if all(|v| v.parse::<i64>().is_ok()) {
        LogicalType::Integer
    } else if all(|v| v.parse::<f64>().is_ok_and(f64::is_finite)) {
        LogicalType::Real
    } else if all(is_date) {
        LogicalType::Date
    } else if all(is_timestamp) {
        LogicalType::Timestamp
    } else {
        LogicalType::Text
    }
}

fn cell(value: &str, ty: LogicalType) -> Option<Cell> {
    if value.is_empty() {
        return Some(Cell::Null);
    }
    Some(match ty {
        LogicalType::Boolean => Cell::Boolean(parse_bool(value)?),
        LogicalType::Integer => Cell::Integer(value.parse().ok()?),
        LogicalType::Real => Cell::Real(value.parse().ok()?),
        LogicalType::Date if !is_date(value) => return None,
        LogicalType::Timestamp if !is_timestamp(value) => return None,
        _ => Cell::Text(value.to_string()),
    })
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// `YYYY-MM-DD` with a plausible month and day.
fn is_date(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return false;
    }
    let number =
        |range: std::ops::Range<usize>| value.get(range).and_then(|s| s.parse::<u32>().ok());
    matches!(
        (number(0..4), number(5..7), number(8..10)),
        (Some(_), Some(1..=12), Some(1..=31))
    )
}

/// `YYYY-MM-DD HH:MM:SS` or with `T`, optional fraction.
fn is_timestamp(value: &str) -> bool {
    let Some((date, time)) = value.split_once([' ', 'T']) else {
        return false;
    };
    let time = time.split_once('.').map_or(time, |(whole, fraction)| {
        if fraction.chars().all(|c| c.is_ascii_digit()) {
            whole
        } else {
            ""
        }
    });
    let parts: Vec<&str> = time.split(':').collect();
    is_date(date)
        && parts.len() == 3
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_csv(text: &str) -> Result<SeedTable> {
        parse("s", text, Path::new("seeds/s.csv"), &SeedConfig::default())
    }

    #[test]
    fn infers_each_type() {
        let table = parse_csv(
            "id,price,flag,day,at,name,empty\n1,1.5,true,2018-01-01,2018-01-01 10:00:00,ann,\n2,2,FALSE,2018-02-28,2018-01-01T10:00:00.25,,\n",
        )
        .unwrap();
        let types: Vec<LogicalType> = table.columns.iter().map(|c| c.1).collect();
        use LogicalType::*;
        assert_eq!(
            types,
            vec![Integer, Real, Boolean, Date, Timestamp, Text, Text]
        );
        assert_eq!(table.rows[1][0], Cell::Integer(2));
        assert_eq!(table.rows[1][2], Cell::Boolean(false));
        assert_eq!(table.rows[1][5], Cell::Null);
    }

    #[test]
    fn overrides_win() {
        let mut config = SeedConfig::default();
        config.column_types.insert("zip".into(), LogicalType::Text);
        let table = parse("s", "zip\n01234\n", Path::new("s.csv"), &config).unwrap();
        assert_eq!(table.rows[0][0], Cell::Text("01234".into()));
    }

    #[test]
    fn ragged_rows_name_the_line() {
        let err = parse_csv("a,b\n1,2\n3\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "seeds/s.csv:3:1: malformed CSV in seed `s`: this row has 1 fields; the header has 2"
        );
    }

    #[test]
    fn an_override_that_does_not_fit_is_an_error() {
        let mut config = SeedConfig::default();
        config.column_types.insert("a".into(), LogicalType::Integer);
        let err = parse("s", "a\n1\nx\n", Path::new("s.csv"), &config).unwrap_err();
        assert!(
            err.to_string().contains(
                "s.csv:3:1: malformed CSV in seed `s`: `x` in column `a` is not a valid Integer"
            ),
            "{err}"
        );
    }

    #[test]
    fn empty_header_cell_is_an_error() {
        assert!(parse_csv("a,,c\n1,2,3\n").is_err());
    }

    #[test]
    fn dates_must_be_plausible() {
        assert!(is_date("2018-12-31"));
        assert!(!is_date("2018-13-01"));
        assert!(is_timestamp("2018-12-31 23:59:59"));
        assert!(!is_timestamp("2018-12-31"));
    }
}
