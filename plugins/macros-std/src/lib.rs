//! `std`: the first-party macros dbt_utils users reach for, written in
//! portable SQL (SQLite and PostgreSQL alike).
//!
//! - `std.surrogate_key(a, b, ...)` (expression): one text key from the
//!   values, `null` written as `_null_`, joined with `-`. Not hashed: SQLite
//!   has no hash function, and the key is as unique as a hash of it.
//! - `std.pivot(column, value, 'v1', 'v2', ...)` (select items): one column
//!   per value, `sum(case when column = 'v1' then value else 0 end) as v1_value`.
//! - `std.generate_series(n)` (table): the integers 1..n, as
//!   `generated_number`.
//! - `std.union_relations(a, b, ...)` (table): the rows of every relation,
//!   with `_source_relation` naming where each came from; columns are
//!   matched by name, NULL where a relation lacks one.
//! - `std.date_spine('day', '2024-01-01', '2024-02-01')` (table): every
//!   date from the start up to (not including) the end, stepping by `day`,
//!   `week`, `month`, `quarter` or `year`, as `date_<part>`. The dates are
//!   enumerated at compile time (so the bounds are literals) and written as
//!   `date('YYYY-MM-DD')`, which SQLite and PostgreSQL both read as a date.
//! - `std.star(relation, 'except', ...)` (select items): every column of
//!   a model or seed but the ones listed; `relation_alias => 'o'` qualifies
//!   them. Reads the columns from the host's catalog.

use orbital_sdk::{Argument, Call, Macros, PluginInfo, Position, Signature};

struct Std;

fn signature(
    name: &str,
    position: Position,
    params: &[&str],
    required: u32,
    description: &str,
) -> Signature {
    Signature {
        name: format!("std.{name}"),
        positions: vec![position],
        params: params.iter().map(|p| p.to_string()).collect(),
        required,
        description: description.into(),
    }
}

fn positional(call: &Call) -> Result<Vec<&Argument>, String> {
    match call.args.iter().find(|a| a.name.is_some()) {
        Some(named) => Err(format!(
            "`{}` takes positional arguments only, not `{}`",
            call.name,
            named.name.as_deref().unwrap_or_default()
        )),
        None => Ok(call.args.iter().collect()),
    }
}

fn at_least(call: &Call, args: &[&Argument], count: usize, what: &str) -> Result<(), String> {
    if args.len() < count {
        return Err(format!(
            "`{}` needs {what}; got {} argument(s)",
            call.name,
            args.len()
        ));
    }
    Ok(())
}

fn surrogate_key(call: &Call) -> Result<String, String> {
    let args = positional(call)?;
    at_least(call, &args, 1, "at least one column")?;
    Ok(args
        .iter()
        .map(|a| format!("coalesce(cast({} as text), '_null_')", a.sql))
        .collect::<Vec<_>>()
        .join(" || '-' || "))
}

/// A column name made from a pivot value: letters, digits and `_`.
fn column_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn pivot(call: &Call) -> Result<String, String> {
    let args = positional(call)?;
    at_least(
        call,
        &args,
        3,
        "a column, a value column and at least one value to pivot",
    )?;
    let (column, value) = (&args[0].sql, &args[1].sql);
    let suffix = column_name(value.rsplit('.').next().unwrap_or(value));
    args[2..]
        .iter()
        .map(|arg| {
            let text = match &arg.literal {
                Some(orbital_sdk::Value::Text(text)) => text.clone(),
                _ => {
                    return Err(format!(
                        "`{}` pivots on literal strings, not {}",
                        call.name, arg.sql
                    ));
                }
            };
            Ok(format!(
                "sum(case when {column} = {} then {value} else 0 end) as {}_{suffix}",
                arg.sql,
                column_name(&text)
            ))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|items| items.join(", "))
}

fn generate_series(call: &Call) -> Result<String, String> {
    let args = positional(call)?;
    let upper = match args.as_slice() {
        [one] => match &one.literal {
            Some(orbital_sdk::Value::Integer(n)) if *n >= 1 => *n,
            _ => {
                return Err(format!(
                    "`{}` takes a positive whole number, not {}",
                    call.name, one.sql
                ));
            }
        },
        _ => {
            return Err(format!(
                "`{}` takes one argument, the upper bound",
                call.name
            ));
        }
    };
    Ok(format!(
        "with recursive series(generated_number) as (select 1 union all \
         select generated_number + 1 from series where generated_number < {upper}) \
         select generated_number from series"
    ))
}

fn union_relations(call: &Call) -> Result<String, String> {
    let args = positional(call)?;
    at_least(call, &args, 2, "at least two relations")?;
    let columns: Vec<Vec<String>> = match args.iter().map(|a| column_names(&a.sql)).collect() {
        Ok(columns) => columns,
        // Columns unknown at compile time (a source): match by position.
        Err(_) => {
            return Ok(args
                .iter()
                .map(|a| {
                    format!(
                        "select '{}' as _source_relation, * from {}",
                        a.sql.replace('\'', "''"),
                        a.sql
                    )
                })
                .collect::<Vec<_>>()
                .join(" union all "));
        }
    };
    // Every column any relation has, in first-seen order.
    let mut all: Vec<&String> = Vec::new();
    for name in columns.iter().flatten() {
        if !all.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            all.push(name);
        }
    }
    Ok(args
        .iter()
        .zip(&columns)
        .map(|(a, own)| {
            let items = all
                .iter()
                .map(
                    |name| match own.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                        true => quote(name),
                        false => format!("null as {}", quote(name)),
                    },
                )
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "select '{}' as _source_relation, {items} from {}",
                a.sql.replace('\'', "''"),
                a.sql
            )
        })
        .collect::<Vec<_>>()
        .join(" union all "))
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    let next = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    days_from_civil(next.0, next.1, 1) - days_from_civil(y, m, 1)
}

/// `YYYY-MM-DD` as (year, month, day), checked.
fn parse_date(text: &str) -> Option<(i64, i64, i64)> {
    let mut parts = text.trim().splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.get(..2)?.parse().ok()?;
    ((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)).then_some((y, m, d))
}

/// The most dates one spine may hold: the SQL lists each one.
const MAX_SPINE: usize = 100_000;

fn date_spine(call: &Call) -> Result<String, String> {
    let args = positional(call)?;
    let text = |arg: &Argument| match &arg.literal {
        Some(orbital_sdk::Value::Text(t)) => Ok(t.clone()),
        _ => Err(format!(
            "`{}` takes literal strings (the dates are listed when the model compiles), not {}",
            call.name, arg.sql
        )),
    };
    let [part, start, end] = args.as_slice() else {
        return Err(format!(
            "`{}` takes a date part, a start date and an end date",
            call.name
        ));
    };
    let part = text(part)?.to_lowercase();
    let date = |arg: &Argument| {
        let written = text(arg)?;
        parse_date(&written)
            .ok_or_else(|| format!("`{}`: `{written}` is not a date (YYYY-MM-DD)", call.name))
    };
    let (start, end) = (date(start)?, date(end)?);
    let end_days = days_from_civil(end.0, end.1, end.2);
    let months = match part.as_str() {
        "day" | "week" => None,
        "month" => Some(1),
        "quarter" => Some(3),
        "year" => Some(12),
        other => {
            return Err(format!(
                "`{}`: date part `{other}` is not one of day, week, month, quarter, year",
                call.name
            ));
        }
    };
    let mut dates = Vec::new();
    for step in 0.. {
        let (y, m, d) = match months {
            None => {
                let width = if part == "week" { 7 } else { 1 };
                civil_from_days(days_from_civil(start.0, start.1, start.2) + step * width)
            }
            Some(months) => {
                let index = start.0 * 12 + (start.1 - 1) + step * months;
                let (y, m) = (index.div_euclid(12), index.rem_euclid(12) + 1);
                (y, m, start.2.min(days_in_month(y, m)))
            }
        };
        if days_from_civil(y, m, d) >= end_days {
            break;
        }
        if dates.len() == MAX_SPINE {
            return Err(format!(
                "`{}` would list more than {MAX_SPINE} dates",
                call.name
            ));
        }
        dates.push(format!("('{y:04}-{m:02}-{d:02}')"));
    }
    if dates.is_empty() {
        return Err(format!(
            "`{}`: the end date is not after the start date",
            call.name
        ));
    }
    Ok(format!(
        "select date(column1) as date_{part} from (values {}) as spine",
        dates.join(", ")
    ))
}

fn column_names(relation: &str) -> Result<Vec<String>, String> {
    Ok(orbital_sdk::catalog::columns(relation)?
        .into_iter()
        .map(|c| c.name)
        .collect())
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn star(call: &Call) -> Result<String, String> {
    let mut alias = None;
    let mut positional = Vec::new();
    for arg in &call.args {
        match arg.name.as_deref() {
            None => positional.push(arg),
            Some("relation_alias") => match &arg.literal {
                Some(orbital_sdk::Value::Text(text)) => alias = Some(text.clone()),
                _ => return Err(format!("`{}`: relation_alias must be a string", call.name)),
            },
            Some(other) => {
                return Err(format!(
                    "`{}` has no argument `{other}` (it takes a relation, the columns to leave out, and relation_alias)",
                    call.name
                ));
            }
        }
    }
    at_least(call, &positional, 1, "a relation")?;
    let mut except = Vec::new();
    for arg in &positional[1..] {
        match &arg.literal {
            Some(orbital_sdk::Value::Text(text)) => except.push(text.to_lowercase()),
            _ => {
                return Err(format!(
                    "`{}` leaves out columns named by strings, not {}",
                    call.name, arg.sql
                ));
            }
        }
    }
    let columns = column_names(&positional[0].sql)?;
    if let Some(unknown) = except
        .iter()
        .find(|e| !columns.iter().any(|c| c.to_lowercase() == **e))
    {
        return Err(format!(
            "`{}` has no column `{unknown}` to leave out (it has {})",
            positional[0].sql,
            columns.join(", ")
        ));
    }
    let kept: Vec<String> = columns
        .iter()
        .filter(|c| !except.contains(&c.to_lowercase()))
        .map(|c| match &alias {
            Some(alias) => format!("{}.{}", quote(alias), quote(c)),
            None => quote(c),
        })
        .collect();
    if kept.is_empty() {
        return Err(format!(
            "`{}` would leave no column of `{}`",
            call.name, positional[0].sql
        ));
    }
    Ok(kept.join(", "))
}

impl Macros for Std {
    fn info() -> PluginInfo {
        orbital_sdk::plugin_info!(
            "macros-std",
            "star, surrogate_key, pivot, date_spine, generate_series, union_relations"
        )
    }

    fn signatures() -> Vec<Signature> {
        vec![
            signature(
                "surrogate_key",
                Position::Expression,
                &["columns..."],
                1,
                "A text key from several columns",
            ),
            signature(
                "pivot",
                Position::SelectItems,
                &["column", "value", "values..."],
                3,
                "One summed column per value",
            ),
            signature(
                "generate_series",
                Position::Table,
                &["upper_bound"],
                1,
                "The integers from 1 to upper_bound",
            ),
            signature(
                "date_spine",
                Position::Table,
                &["datepart", "start_date", "end_date"],
                3,
                "Every date from start_date up to end_date",
            ),
            signature(
                "star",
                Position::SelectItems,
                &["relation", "except...", "relation_alias"],
                1,
                "Every column of a relation but the ones listed",
            ),
            signature(
                "union_relations",
                Position::Table,
                &["relations..."],
                2,
                "The rows of several relations",
            ),
        ]
    }

    fn expand(call: Call) -> Result<String, String> {
        match call.name.as_str() {
            "std.surrogate_key" => surrogate_key(&call),
            "std.pivot" => pivot(&call),
            "std.generate_series" => generate_series(&call),
            "std.union_relations" => union_relations(&call),
            "std.star" => star(&call),
            "std.date_spine" => date_spine(&call),
            other => Err(format!("macros-std has no macro `{other}`")),
        }
    }
}

orbital_sdk::export_macros!(Std);

#[cfg(test)]
mod tests {
    use super::*;

    fn spine(part: &str, start: &str, end: &str) -> Result<String, String> {
        let text = |t: &str| Argument {
            name: None,
            sql: format!("'{t}'"),
            literal: Some(orbital_sdk::Value::Text(t.into())),
        };
        date_spine(&Call {
            name: "std.date_spine".into(),
            position: Position::Table,
            args: vec![text(part), text(start), text(end)],
            model: "m".into(),
        })
    }

    #[test]
    fn date_spines_step_by_calendar_parts() {
        let days = spine("day", "2024-02-27", "2024-03-02").unwrap();
        assert!(
            days.contains("('2024-02-27'), ('2024-02-28'), ('2024-02-29'), ('2024-03-01')) "),
            "{days}"
        );
        let months = spine("month", "2024-01-31", "2024-05-01").unwrap();
        assert!(
            months.contains("('2024-01-31'), ('2024-02-29'), ('2024-03-31'), ('2024-04-30'))"),
            "{months}"
        );
        assert!(
            spine("week", "2024-01-01", "2024-01-16")
                .unwrap()
                .contains("('2024-01-15')")
        );
        assert!(
            spine("day", "2024-02-30", "2024-03-01")
                .unwrap_err()
                .contains("not a date")
        );
        assert!(
            spine("hour", "2024-01-01", "2024-01-02")
                .unwrap_err()
                .contains("date part")
        );
        assert!(
            spine("day", "2024-01-02", "2024-01-01")
                .unwrap_err()
                .contains("not after")
        );
    }
}
