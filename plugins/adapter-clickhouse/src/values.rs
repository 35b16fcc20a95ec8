//! Values both ways: parameters written into the SQL as ClickHouse
//! literals, and a query's `TabSeparatedWithNamesAndTypes` answer read as
//! typed values.

use orbital_sdk::{Column, RowSet, Statement, Value};

/// `statement`'s SQL with each `?` outside quotes and comments replaced by
/// its parameter as a literal.
pub fn inline_params(statement: &Statement) -> Result<String, String> {
    if statement.params.is_empty() {
        return Ok(statement.sql.clone());
    }
    let sql = &statement.sql;
    let mut out = String::with_capacity(sql.len() + statement.params.len() * 8);
    let mut params = statement.params.iter();
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match c {
            '?' => {
                let value = params.next().ok_or_else(|| {
                    format!(
                        "the statement has more `?` than its {} parameters",
                        statement.params.len()
                    )
                })?;
                literal(value, &mut out);
            }
            '\'' | '"' | '`' => {
                out.push(c);
                // A quoted string or name, with backslash escapes.
                while let Some((_, inner)) = chars.next() {
                    out.push(inner);
                    if inner == '\\' {
                        if let Some((_, escaped)) = chars.next() {
                            out.push(escaped);
                        }
                    } else if inner == c {
                        break;
                    }
                }
            }
            '-' if chars.peek().is_some_and(|(_, n)| *n == '-') => {
                out.push(c);
                for (_, inner) in chars.by_ref() {
                    out.push(inner);
                    if inner == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek().is_some_and(|(_, n)| *n == '*') => {
                out.push(c);
                let mut previous = ' ';
                for (_, inner) in chars.by_ref() {
                    out.push(inner);
                    if previous == '*' && inner == '/' {
                        break;
                    }
                    previous = inner;
                }
            }
            _ => out.push(c),
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

/// `value` as a ClickHouse literal.
fn literal(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("NULL"),
        Value::Boolean(b) => out.push(if *b { '1' } else { '0' }),
        Value::Integer(n) => out.push_str(&n.to_string()),
        Value::Real(f) if f.is_nan() => out.push_str("nan"),
        Value::Real(f) if f.is_infinite() => out.push_str(if *f > 0.0 { "inf" } else { "-inf" }),
        Value::Real(f) => out.push_str(&format!("{f:?}")),
        // Digits as they are: in a VALUES list ClickHouse reads them with
        // the column's own type, so a Decimal keeps every digit.
        Value::Numeric(n) if is_number(n) => out.push_str(n),
        Value::Numeric(n) => quoted(n.as_bytes(), out),
        Value::Timestamptz(t) => {
            out.push_str("parseDateTimeBestEffort(");
            quoted(t.as_bytes(), out);
            out.push(')');
        }
        Value::Text(s) | Value::Date(s) | Value::Timestamp(s) | Value::Json(s) | Value::Uuid(s) => {
            quoted(s.as_bytes(), out)
        }
        Value::Bytes(b) => quoted(b, out),
    }
}

fn is_number(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
}

/// A string literal: quotes and backslashes escaped, and every byte that
/// is not printable ASCII or UTF-8 text as `\xHH`.
fn quoted(bytes: &[u8], out: &mut String) {
    out.push('\'');
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            for c in text.chars() {
                match c {
                    '\'' => out.push_str("\\'"),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    '\r' => out.push_str("\\r"),
                    '\0' => out.push_str("\\0"),
                    c => out.push(c),
                }
            }
        }
        Err(_) => {
            for b in bytes {
                out.push_str(&format!("\\x{b:02X}"));
            }
        }
    }
    out.push('\'');
}

/// Rows of a `TabSeparatedWithNamesAndTypes` answer: names, then types,
/// then one line per row; `\N` is NULL.
pub fn parse_tab_separated(body: &[u8]) -> Result<RowSet, String> {
    let mut lines = body.split(|b| *b == b'\n');
    let names = lines.next().unwrap_or_default();
    if names.is_empty() {
        return Ok(RowSet {
            columns: Vec::new(),
            rows: Vec::new(),
        });
    }
    let types = lines
        .next()
        .ok_or_else(|| "ClickHouse's answer has names but no types".to_string())?;
    let columns: Vec<Column> = fields(names)
        .zip(fields(types))
        .map(|(name, data_type)| Column {
            name: text(&unescape(name)),
            data_type: text(&unescape(data_type)),
        })
        .collect();
    let mut rows = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let row: Vec<Value> = fields(line)
            .zip(&columns)
            .map(|(field, column)| value(field, &column.data_type))
            .collect::<Result<_, _>>()?;
        if row.len() != columns.len() {
            return Err(format!(
                "a row of ClickHouse's answer has {} fields, not {}",
                row.len(),
                columns.len()
            ));
        }
        rows.push(row);
    }
    Ok(RowSet { columns, rows })
}

fn fields(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|b| *b == b'\t')
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A field's bytes without TabSeparated's backslash escapes.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut bytes = field.iter();
    while let Some(&b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'r') => out.push(b'\r'),
            Some(b'b') => out.push(8),
            Some(b'f') => out.push(12),
            Some(b'0') => out.push(0),
            Some(&other) => out.push(other),
            None => out.push(b'\\'),
        }
    }
    out
}

/// One field as a typed value, by its column's ClickHouse type.
fn value(field: &[u8], data_type: &str) -> Result<Value, String> {
    if field == b"\\N" {
        return Ok(Value::Null);
    }
    let bytes = unescape(field);
    let kind = data_type
        .strip_prefix("Nullable(")
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or(data_type);
    let bad = |what: &str| format!("ClickHouse returned `{}` for a {what}", text(&bytes));
    Ok(match kind {
        "Int8" | "Int16" | "Int32" | "Int64" | "UInt8" | "UInt16" | "UInt32" => {
            Value::Integer(text(&bytes).parse().map_err(|_| bad(kind))?)
        }
        "UInt64" => match text(&bytes).parse::<i64>() {
            Ok(n) => Value::Integer(n),
            Err(_) => Value::Numeric(text(&bytes)),
        },
        "Float32" | "Float64" => Value::Real(match text(&bytes).as_str() {
            "nan" | "-nan" => f64::NAN,
            "inf" | "+inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            other => other.parse().map_err(|_| bad(kind))?,
        }),
        "Date" => Value::Date(text(&bytes)),
        "DateTime" => Value::Timestamp(text(&bytes)),
        "UUID" => Value::Uuid(text(&bytes)),
        "Nothing" => Value::Null,
        kind if kind.starts_with("Decimal") => Value::Numeric(text(&bytes)),
        _ => match String::from_utf8(bytes) {
            Ok(text) => Value::Text(text),
            Err(e) => Value::Bytes(e.into_bytes()),
        },
    })
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
    fn parameters_are_written_in_as_literals_outside_quotes_and_comments() {
        let sql = inline_params(&statement(
            "SELECT ?, '?', \"a?\" -- ?\n, ? /* ? */, ?, ?, ?",
            vec![
                Value::Text("it's \\ a\nb".into()),
                Value::Integer(-3),
                Value::Numeric("12.50".into()),
                Value::Null,
                Value::Bytes(vec![0, 255]),
            ],
        ))
        .unwrap();
        assert_eq!(
            sql,
            "SELECT 'it\\'s \\\\ a\\nb', '?', \"a?\" -- ?\n, -3 /* ? */, 12.50, NULL, '\\x00\\xFF'"
        );
        assert!(inline_params(&statement("SELECT ?, ?", vec![Value::Null])).is_err());
        assert!(inline_params(&statement("SELECT ?", vec![Value::Null, Value::Null])).is_err());
    }

    #[test]
    fn an_answer_is_read_as_typed_values() {
        let body = b"a\tb\tc\td\te\tf\n\
            Nullable(Int64)\tDecimal(38, 9)\tString\tDateTime\tFloat64\tUInt64\n\
            1\t12.500000000\tx\\ty\t2018-01-01 10:00:00\tnan\t18446744073709551615\n\
            \\N\t0.000000000\t\t2018-01-02 00:00:00\t2.5\t7\n";
        let rows = parse_tab_separated(body).unwrap();
        assert_eq!(rows.columns[1].data_type, "Decimal(38, 9)");
        assert_eq!(
            format!("{:?}", rows.rows[0][0]),
            format!("{:?}", Value::Integer(1))
        );
        assert_eq!(
            format!("{:?}", rows.rows[0][1]),
            format!("{:?}", Value::Numeric("12.500000000".into()))
        );
        assert_eq!(
            format!("{:?}", rows.rows[0][2]),
            format!("{:?}", Value::Text("x\ty".into()))
        );
        assert_eq!(
            format!("{:?}", rows.rows[0][3]),
            format!("{:?}", Value::Timestamp("2018-01-01 10:00:00".into()))
        );
        assert!(matches!(rows.rows[0][4], Value::Real(f) if f.is_nan()));
        assert_eq!(
            format!("{:?}", rows.rows[0][5]),
            format!("{:?}", Value::Numeric("18446744073709551615".into()))
        );
        assert_eq!(
            format!("{:?}", rows.rows[1][0]),
            format!("{:?}", Value::Null)
        );
        assert_eq!(
            format!("{:?}", rows.rows[1][2]),
            format!("{:?}", Value::Text(String::new()))
        );
        assert_eq!(
            format!("{:?}", rows.rows[1][5]),
            format!("{:?}", Value::Integer(7))
        );
        assert!(parse_tab_separated(b"").unwrap().rows.is_empty());
    }
}
