//! Seeds: CSV files read with a typed schema.
//!
//! Each column's type is inferred from its non-empty cells, trying in order
//! boolean, integer, real, date, timestamp, and falling back to text; empty
//! cells are NULL. `[seeds.<name>.column-types]` overrides any column.
//!
//! Inference never picks a type that would change a value: an integer
//! beyond 64 bits, a number with more significant digits than a double
//! keeps (15), or one written with leading zeros (`01234`) makes its column
//! text, which every warehouse keeps as written (SQLite's NUMERIC would
//! round it); declare `numeric` to have numbers. Dates and timestamps must
//! exist on the calendar. Malformed CSV, an unterminated quote among it, is
//! an error at its line and column.

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
    let bytes = crate::project::read_bytes(path).map_err(|e| Error::io(path, e))?;
    let text = crate::project::decode_text(bytes).map_err(|not| Error::Csv {
        location: Location::new(display_path, not.line, not.column),
        seed: name.to_string(),
        message: not.to_string(),
    })?;
    parse(name, &text, display_path, config)
}

/// Parses seed CSV text (header row first).
pub fn parse(name: &str, text: &str, path: &Path, config: &SeedConfig) -> Result<SeedTable> {
    let csv_error = |line: u64, message: String| Error::Csv {
        location: Location::new(path, line.max(1) as usize, 1),
        seed: name.to_string(),
        message,
    };
    if let Some(offset) = unterminated_quote(text) {
        let (line, column) = crate::error::line_col(text, offset);
        return Err(Error::Csv {
            location: Location::new(path, line, column),
            seed: name.to_string(),
            message: "this quoted field is never closed: add the closing `\"` (a quote inside a quoted field is written `\"\"`)".into(),
        });
    }
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
        let (line, byte) = record
            .position()
            .map_or((0, 0), |p| (p.line(), p.byte() as usize));
        raw.push((
            (line, byte),
            record.iter().map(str::to_string).collect::<Vec<_>>(),
        ));
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
        .map(|((line, byte), row)| {
            row.into_iter()
                .zip(&columns)
                .enumerate()
                .map(|(field, (value, (column, ty)))| {
                    cell(&value, *ty).ok_or_else(|| Error::Csv {
                        location: Location::new(
                            path,
                            line.max(1) as usize,
                            field_column(text, byte, field),
                        ),
                        seed: name.to_string(),
                        message: format!("`{value}` in column `{column}` is not a valid {ty:?}"),
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
    } else if all(|v| v.parse::<i64>().is_ok() && !leading_zero(v)) {
        LogicalType::Integer
    } else if all(|v| v.parse::<f64>().is_ok_and(f64::is_finite) && double_keeps(v)) {
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
        LogicalType::Numeric if !is_decimal(value) => return None,
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

/// Where an unterminated quoted field opens, as a byte offset. Fields are
/// read as the csv crate reads them: a field that starts with `"` is quoted
/// up to a `"` not followed by another; a quote elsewhere is a character.
fn unterminated_quote(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut field_start = true;
    while i < bytes.len() {
        match bytes[i] {
            b'"' if field_start => {
                let opened = i;
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Some(opened),
                        Some(b'"') if bytes.get(i + 1) == Some(&b'"') => i += 2,
                        Some(b'"') => break,
                        Some(_) => i += 1,
                    }
                }
                field_start = false;
            }
            b',' | b'\n' | b'\r' => field_start = true,
            _ => field_start = false,
        }
        i += 1;
    }
    None
}

/// The 1-based character column where field `field` of the record starting
/// at byte `record` begins.
fn field_column(text: &str, record: usize, field: usize) -> usize {
    let Some(rest) = text.get(record..) else {
        return 1;
    };
    let mut quoted = false;
    let mut seen = 0;
    let mut start = 0;
    for (i, c) in rest.char_indices() {
        if seen == field {
            start = i;
            break;
        }
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => seen += 1,
            '\n' if !quoted => break,
            _ => {}
        }
        start = i + c.len_utf8();
    }
    let line_start = text[..record].rfind('\n').map_or(0, |nl| nl + 1);
    text[line_start..record + start].chars().count() + 1
}

/// `0123`, `-01`: a number whose leading zeros a number type would drop.
fn leading_zero(value: &str) -> bool {
    let digits = value.trim_start_matches(['-', '+']);
    digits.len() > 1 && digits.starts_with('0') && !digits.starts_with("0.")
}

/// Whether a double holds the decimal `value` exactly as written: at most
/// 15 significant digits (what a double keeps through text), no leading
/// zeros, and written as digits (not `inf` or `1e5`, which read back as
/// other text).
fn double_keeps(value: &str) -> bool {
    if !is_decimal(value) || leading_zero(value) {
        return false;
    }
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0');
    let significant = match value.contains('.') {
        true => significant.trim_end_matches('0'),
        false => significant,
    };
    significant.len() <= 15
}

/// `-12`, `3.25`, `.5`, `+7.`: digits with an optional sign and point.
fn is_decimal(value: &str) -> bool {
    let unsigned = value.strip_prefix(['-', '+']).unwrap_or(value);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    !(whole.is_empty() && fraction.is_empty())
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

/// `YYYY-MM-DD`, a day that exists (2024-02-29 does, 2023-02-29 does not).
fn is_date(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return false;
    }
    let number = |range: std::ops::Range<usize>| {
        value
            .get(range)
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u32>().ok())
    };
    let (Some(year), Some(month), Some(day)) = (number(0..4), number(5..7), number(8..10)) else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
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
    let parts: Vec<u32> = time
        .split(':')
        .filter(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|p| p.parse().ok())
        .collect();
    is_date(date) && matches!(parts[..], [0..=23, 0..=59, 0..=59]) && time.split(':').count() == 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_csv(text: &str) -> Result<SeedTable> {
        parse("s", text, Path::new("seeds/s.csv"), &SeedConfig::default())
    }

    #[test]
    fn a_seed_that_is_not_utf8_is_refused_by_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.csv");
        std::fs::write(&path, b"\xef\xbb\xbfid,name\n1,caf\xe9\n").unwrap();
        let display = Path::new("seeds/s.csv");
        let error = read("s", &path, display, &SeedConfig::default()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "seeds/s.csv:2:6: malformed CSV in seed `s`: not UTF-8 text (byte 0xe9): save the file as UTF-8"
        );
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
    fn inference_keeps_every_value_as_written() {
        let table = parse_csv(
            "big,wide,zip,money,small\n\
             18446744073709551617,12345678901234567.89,01234,19.99,-0.5\n\
             18446744073709551618,1.5,00501,0.10,7\n",
        )
        .unwrap();
        let types: Vec<LogicalType> = table.columns.iter().map(|c| c.1).collect();
        use LogicalType::*;
        assert_eq!(types, vec![Text, Text, Text, Real, Real]);
        assert_eq!(table.rows[0][0], Cell::Text("18446744073709551617".into()));
        assert_ne!(table.rows[0][0], table.rows[1][0]);
        assert_eq!(table.rows[0][2], Cell::Text("01234".into()));
        // 15 significant digits fit a double; 16 do not.
        assert_eq!(
            parse_csv("x\n123456789012.345\n").unwrap().columns[0].1,
            Real
        );
        assert_eq!(
            parse_csv("x\n1234567890123.456\n").unwrap().columns[0].1,
            Text
        );
        assert_eq!(parse_csv("x\n1e5\n").unwrap().columns[0].1, Text);
    }

    #[test]
    fn an_unterminated_quote_is_an_error_where_it_opens() {
        let err = parse_csv("id,note\n1,fine\n2,\"never closed\n3,lost\n4,lost\n").unwrap_err();
        assert_eq!(
            err.location().map(|l| (l.line, l.column)),
            Some((3, 3)),
            "{err}"
        );
        assert!(err.to_string().contains("never closed"), "{err}");
        // Closed quotes, escaped quotes and quotes inside unquoted fields are fine.
        let ok = parse_csv("id,note\n1,\"a, \"\"b\"\"\nc\"\n2,5\" pipe\n").unwrap();
        assert_eq!(ok.rows.len(), 2);
        assert_eq!(ok.rows[0][1], Cell::Text("a, \"b\"\nc".into()));
    }

    #[test]
    fn an_invalid_value_names_its_line_and_column() {
        let mut config = SeedConfig::default();
        config.column_types.insert("day".into(), LogicalType::Date);
        let err = parse(
            "s",
            "id,day\n1,2024-02-29\n2,2023-02-29\n",
            Path::new("s.csv"),
            &config,
        )
        .map(|_| ())
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "s.csv:3:3: malformed CSV in seed `s`: `2023-02-29` in column `day` is not a valid Date"
        );
        config.column_types.remove("day");
        config.column_types.insert("n".into(), LogicalType::Numeric);
        let err = parse(
            "s",
            "id,n\n\"1\",12.5\n\"2\",twelve\n",
            Path::new("s.csv"),
            &config,
        )
        .map(|_| ())
        .unwrap_err();
        assert_eq!(
            err.location().map(|l| (l.line, l.column)),
            Some((3, 5)),
            "{err}"
        );
    }

    #[test]
    fn dates_must_exist() {
        assert!(is_date("2024-02-29"));
        assert!(is_date("2000-02-29"));
        assert!(!is_date("2023-02-29"));
        assert!(!is_date("1900-02-29"));
        assert!(!is_date("2023-04-31"));
        assert!(!is_date("2023-00-10"));
        assert!(!is_date("+023-01-10"));
        assert!(!is_timestamp("2023-01-01 24:00:00"));
        assert!(!is_timestamp("2023-01-01 23:60:00"));
        assert!(!is_timestamp("2023-01-01 23:00:00:00"));
        assert!(is_timestamp("2023-01-01T23:59:59.123"));
    }

    #[test]
    fn dates_must_be_plausible() {
        assert!(is_date("2018-12-31"));
        assert!(!is_date("2018-13-01"));
        assert!(is_timestamp("2018-12-31 23:59:59"));
        assert!(!is_timestamp("2018-12-31"));
    }
}
