//! Values both ways: parameters written into the SQL as typed MySQL
//! literals (the text protocol has no parameters), and the text protocol's
//! cells read as values by their column's type, as the host's own MySQL
//! driver reads them.

use orbital_sdk::{Column, Statement, Value};

use crate::protocol::ColumnDef;

/// `statement`'s SQL with each `?` outside quotes and comments replaced by
/// its parameter as a literal. `backslash_escapes`: the session's
/// `sql_mode` lacks `NO_BACKSLASH_ESCAPES`, so a backslash in a string
/// literal escapes.
pub fn inline_params(statement: &Statement, backslash_escapes: bool) -> Result<String, String> {
    if statement.params.is_empty() {
        return Ok(statement.sql.clone());
    }
    let sql = &statement.sql;
    let mut out = String::with_capacity(sql.len() + statement.params.len() * 8);
    let mut params = statement.params.iter();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        match c {
            '?' => {
                out.pop();
                let value = params.next().ok_or_else(|| {
                    format!(
                        "the statement has more `?` than its {} parameters",
                        statement.params.len()
                    )
                })?;
                literal(value, backslash_escapes, &mut out)?;
            }
            // A string or a quoted name: to its closing quote (doubled
            // quotes stay inside).
            '\'' | '"' | '`' => {
                while let Some(inner) = chars.next() {
                    out.push(inner);
                    if inner == '\\' && c == '\'' && backslash_escapes {
                        out.extend(chars.next());
                    } else if inner == c {
                        if chars.peek() == Some(&c) {
                            out.extend(chars.next());
                        } else {
                            break;
                        }
                    }
                }
            }
            '#' => comment_to_line_end(&mut chars, &mut out),
            '-' if chars.peek() == Some(&'-') => comment_to_line_end(&mut chars, &mut out),
            '/' if chars.peek() == Some(&'*') => {
                let mut previous = ' ';
                for inner in chars.by_ref() {
                    out.push(inner);
                    if previous == '*' && inner == '/' {
                        break;
                    }
                    previous = inner;
                }
            }
            _ => {}
        }
    }
    if params.next().is_some() {
        return Err(format!(
            "the statement has fewer `?` than its {} parameters",
            statement.params.len()
        ));
    }
    Ok(out)
}

fn comment_to_line_end(chars: &mut impl Iterator<Item = char>, out: &mut String) {
    for inner in chars {
        out.push(inner);
        if inner == '\n' {
            break;
        }
    }
}

/// `value` as a MySQL literal of its type.
fn literal(value: &Value, backslash_escapes: bool, out: &mut String) -> Result<(), String> {
    let quoted = |text: &str, out: &mut String| quote(text, backslash_escapes, out);
    match value {
        Value::Null => out.push_str("NULL"),
        Value::Boolean(b) => out.push_str(if *b { "TRUE" } else { "FALSE" }),
        Value::Integer(n) => out.push_str(&n.to_string()),
        Value::Real(f) if f.is_finite() => out.push_str(&format!("{f:?}")),
        Value::Real(f) => return Err(format!("MySQL has no floating-point value {f}")),
        Value::Numeric(n) if is_number(n) => out.push_str(n),
        Value::Numeric(n) => return Err(format!("cannot bind {n:?} as numeric")),
        Value::Text(s) | Value::Json(s) | Value::Uuid(s) => quoted(s, out),
        Value::Date(s) => {
            out.push_str("DATE");
            quoted(s, out);
        }
        Value::Timestamp(s) => {
            out.push_str("TIMESTAMP");
            quoted(s, out);
        }
        // The same instant in UTC, the session's time zone.
        Value::Timestamptz(s) => {
            let (local, offset) = split_offset(s)
                .ok_or_else(|| format!("cannot bind {s:?} as timestamp with time zone"))?;
            out.push_str("CONVERT_TZ(TIMESTAMP");
            quoted(local, out);
            out.push_str(", ");
            quoted(&offset, out);
            out.push_str(", '+00:00')");
        }
        Value::Bytes(bytes) => {
            out.push_str("X'");
            for b in bytes {
                out.push_str(&format!("{b:02X}"));
            }
            out.push('\'');
        }
    }
    Ok(())
}

fn is_number(text: &str) -> bool {
    text.chars().any(|c| c.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
}

/// A string literal. Without backslash escapes only the quote is doubled.
fn quote(text: &str, backslash_escapes: bool, out: &mut String) {
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' if backslash_escapes => out.push_str("\\\\"),
            '\0' if backslash_escapes => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

/// `2018-01-01 10:00:00+02:00` as (`2018-01-01 10:00:00`, `+02:00`); `Z`,
/// `+02` and `+0200` are offsets too.
fn split_offset(text: &str) -> Option<(&str, String)> {
    if let Some(local) = text.strip_suffix('Z') {
        return Some((local, "+00:00".into()));
    }
    // The offset's sign comes after the date's own hyphens.
    let at = text.get(10..)?.rfind(['+', '-'])? + 10;
    let (local, offset) = text.split_at(at);
    let digits: String = offset[1..].chars().filter(|c| *c != ':').collect();
    let (hours, minutes) = match digits.len() {
        2 => (&digits[..2], "00"),
        4 => (&digits[..2], &digits[2..]),
        _ => return None,
    };
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((local, format!("{}{hours}:{minutes}", &offset[..1])))
}

/// MySQL's column types (`enum_field_types`).
mod kind {
    pub const DECIMAL: u8 = 0x00;
    pub const TINY: u8 = 0x01;
    pub const SHORT: u8 = 0x02;
    pub const LONG: u8 = 0x03;
    pub const FLOAT: u8 = 0x04;
    pub const DOUBLE: u8 = 0x05;
    pub const NULL: u8 = 0x06;
    pub const TIMESTAMP: u8 = 0x07;
    pub const LONGLONG: u8 = 0x08;
    pub const INT24: u8 = 0x09;
    pub const DATE: u8 = 0x0a;
    pub const TIME: u8 = 0x0b;
    pub const DATETIME: u8 = 0x0c;
    pub const YEAR: u8 = 0x0d;
    pub const NEWDATE: u8 = 0x0e;
    pub const VARCHAR: u8 = 0x0f;
    pub const BIT: u8 = 0x10;
    pub const JSON: u8 = 0xf5;
    pub const NEWDECIMAL: u8 = 0xf6;
    pub const ENUM: u8 = 0xf7;
    pub const SET: u8 = 0xf8;
    pub const TINY_BLOB: u8 = 0xf9;
    pub const MEDIUM_BLOB: u8 = 0xfa;
    pub const LONG_BLOB: u8 = 0xfb;
    pub const BLOB: u8 = 0xfc;
    pub const VAR_STRING: u8 = 0xfd;
    pub const STRING: u8 = 0xfe;
    pub const GEOMETRY: u8 = 0xff;
}

const UNSIGNED_FLAG: u16 = 32;
/// The `binary` character set: the column holds bytes, not text.
const BINARY_CHARSET: u16 = 63;

fn is_boolean(column: &ColumnDef) -> bool {
    column.kind == kind::TINY && column.length == 1
}

fn is_bytes(column: &ColumnDef) -> bool {
    column.charset == BINARY_CHARSET
}

/// The column as the query's row set names it, in the host driver's
/// (lowercase) type names.
pub fn column(def: &ColumnDef) -> Column {
    let unsigned = def.flags & UNSIGNED_FLAG != 0;
    let name = match def.kind {
        _ if is_boolean(def) => "boolean",
        kind::TINY if unsigned => "tinyint unsigned",
        kind::TINY => "tinyint",
        kind::SHORT if unsigned => "smallint unsigned",
        kind::SHORT => "smallint",
        kind::INT24 if unsigned => "mediumint unsigned",
        kind::INT24 => "mediumint",
        kind::LONG if unsigned => "int unsigned",
        kind::LONG => "int",
        kind::LONGLONG if unsigned => "bigint unsigned",
        kind::LONGLONG => "bigint",
        kind::FLOAT => "float",
        kind::DOUBLE => "double",
        kind::DECIMAL | kind::NEWDECIMAL => "decimal",
        kind::NULL => "null",
        kind::TIMESTAMP => "timestamp",
        kind::DATE | kind::NEWDATE => "date",
        kind::TIME => "time",
        kind::DATETIME => "datetime",
        kind::YEAR => "year",
        kind::BIT => "bit",
        kind::JSON => "json",
        kind::ENUM => "enum",
        kind::SET => "set",
        kind::GEOMETRY => "geometry",
        kind::TINY_BLOB | kind::MEDIUM_BLOB | kind::LONG_BLOB | kind::BLOB if is_bytes(def) => {
            "blob"
        }
        kind::TINY_BLOB | kind::MEDIUM_BLOB | kind::LONG_BLOB | kind::BLOB => "text",
        kind::VARCHAR | kind::VAR_STRING if is_bytes(def) => "varbinary",
        kind::STRING if is_bytes(def) => "binary",
        kind::STRING => "char",
        _ => "varchar",
    };
    Column {
        name: def.name.clone(),
        data_type: name.into(),
    }
}

/// A cell of `column` as the text protocol sent it (`None` is NULL).
pub fn cell(column: &ColumnDef, raw: Option<Vec<u8>>) -> Value {
    let Some(raw) = raw else {
        return Value::Null;
    };
    if is_boolean(column) {
        return Value::Boolean(raw != b"0");
    }
    let text = match String::from_utf8(raw) {
        Ok(text) => text,
        Err(bytes) => return Value::Bytes(bytes.into_bytes()),
    };
    let unreadable = |text: String| Value::Text(format!("<unreadable {text:?}>"));
    match column.kind {
        kind::TINY | kind::SHORT | kind::INT24 | kind::LONG | kind::LONGLONG | kind::YEAR => {
            match text.parse::<i64>() {
                Ok(n) => Value::Integer(n),
                // Beyond i64 (a large unsigned value): exact as a numeric.
                Err(_) if text.parse::<u64>().is_ok() => Value::Numeric(text),
                Err(_) => unreadable(text),
            }
        }
        // What the host's driver reads: an f32, widened.
        kind::FLOAT => text
            .parse::<f32>()
            .map_or_else(|_| unreadable(text), |f| Value::Real(f.into())),
        kind::DOUBLE => text
            .parse::<f64>()
            .map_or_else(|_| unreadable(text), Value::Real),
        kind::DECIMAL | kind::NEWDECIMAL => Value::Numeric(text),
        kind::DATE | kind::NEWDATE => Value::Date(text),
        kind::DATETIME | kind::TIMESTAMP => Value::Timestamp(trim_fraction(&text)),
        kind::JSON => Value::Json(text),
        kind::BIT | kind::GEOMETRY => Value::Bytes(text.into_bytes()),
        // Text with a binary collation is still text; real bytes that
        // happen to be UTF-8 are read as text, as the host's driver does.
        _ => Value::Text(text),
    }
}

/// A timestamp's fraction as the host's driver writes it: none when zero,
/// else 3, 6 or 9 digits, as few as keep every digit.
fn trim_fraction(text: &str) -> String {
    let Some((whole, fraction)) = text.split_once('.') else {
        return text.to_string();
    };
    let mut digits: String = fraction.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let kept = if digits == "000000000" {
        0
    } else if digits.ends_with("000000") {
        3
    } else if digits.ends_with("000") {
        6
    } else {
        9
    };
    if kept == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{}", &digits[..kept])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(sql: &str, params: Vec<Value>) -> Statement {
        Statement {
            sql: sql.into(),
            params,
        }
    }

    #[test]
    fn parameters_become_typed_literals_outside_quotes_and_comments() {
        let s = statement(
            "SELECT '?', \"a?\", ? /* ? */, ? -- ?\n, ?, ?, ?",
            vec![
                Value::Text("it's \\ ok".into()),
                Value::Date("2024-01-02".into()),
                Value::Timestamptz("2024-01-02 10:00:00+02:00".into()),
                Value::Bytes(vec![0, 255]),
                Value::Null,
            ],
        );
        assert_eq!(
            inline_params(&s, true).unwrap(),
            "SELECT '?', \"a?\", 'it''s \\\\ ok' /* ? */, DATE'2024-01-02' -- ?\n, \
             CONVERT_TZ(TIMESTAMP'2024-01-02 10:00:00', '+02:00', '+00:00'), X'00FF', NULL"
        );
        let plain = statement("SELECT ?", vec![Value::Text("a\\'b".into())]);
        assert_eq!(inline_params(&plain, false).unwrap(), "SELECT 'a\\''b'");
    }

    #[test]
    fn a_backslash_escaped_quote_does_not_end_a_string() {
        let s = statement("SELECT 'a\\'?', ?", vec![Value::Integer(7)]);
        assert_eq!(inline_params(&s, true).unwrap(), "SELECT 'a\\'?', 7");
    }

    #[test]
    fn parameter_counts_must_match() {
        let more = statement("SELECT ?, ?", vec![Value::Integer(1)]);
        assert!(inline_params(&more, true).unwrap_err().contains("more `?`"));
        let fewer = statement("SELECT ?", vec![Value::Integer(1), Value::Integer(2)]);
        assert!(
            inline_params(&fewer, true)
                .unwrap_err()
                .contains("fewer `?`")
        );
        let bad = statement("SELECT ?", vec![Value::Numeric("1; DROP".into())]);
        assert!(inline_params(&bad, true).is_err());
    }

    #[test]
    fn offsets_in_every_spelling() {
        assert_eq!(
            split_offset("2024-01-02 10:00:00Z"),
            Some(("2024-01-02 10:00:00", "+00:00".into()))
        );
        assert_eq!(
            split_offset("2024-01-02 10:00:00-0530"),
            Some(("2024-01-02 10:00:00", "-05:30".into()))
        );
        assert_eq!(
            split_offset("2024-01-02 10:00:00.5+02"),
            Some(("2024-01-02 10:00:00.5", "+02:00".into()))
        );
        assert_eq!(split_offset("2024-01-02"), None);
    }

    #[test]
    fn fractions_as_the_host_driver_writes_them() {
        assert_eq!(
            trim_fraction("2024-01-02 10:00:00.000000"),
            "2024-01-02 10:00:00"
        );
        assert_eq!(
            trim_fraction("2024-01-02 10:00:00.500000"),
            "2024-01-02 10:00:00.500"
        );
        assert_eq!(
            trim_fraction("2024-01-02 10:00:00.123456"),
            "2024-01-02 10:00:00.123456"
        );
        assert_eq!(trim_fraction("2024-01-02 10:00:00"), "2024-01-02 10:00:00");
    }
}
