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
            "star, surrogate_key, pivot, generate_series, union_relations"
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
            other => Err(format!("macros-std has no macro `{other}`")),
        }
    }
}

orbital_sdk::export_macros!(Std);
