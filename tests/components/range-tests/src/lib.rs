//! Test component: custom generic data tests, written as a third party
//! would with the SDK. `is_positive` fails rows where the column is <= 0;
//! `is_between` takes `min` and `max`; `spins` never returns (for the
//! deadline); `broken()`, an expression macro, returns SQL that does not
//! parse.

use orbital_sdk::{Argument, Call, Macros, PluginInfo, Position, Signature};

struct RangeTests;

fn signature(name: &str, params: &[&str], required: u32) -> Signature {
    let positions = match name {
        "broken" => vec![Position::Expression],
        "spins" => vec![Position::Test, Position::Expression],
        _ => vec![Position::Test],
    };
    Signature {
        name: name.into(),
        positions,
        params: params.iter().map(|p| p.to_string()).collect(),
        required,
        description: format!("generic test {name}"),
    }
}

fn arg<'a>(call: &'a Call, name: &str) -> Result<&'a Argument, String> {
    call.args
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
        .ok_or_else(|| format!("`{}` needs `{name}`", call.name))
}

impl Macros for RangeTests {
    fn info() -> PluginInfo {
        orbital_sdk::plugin_info!("test-range-tests", "Range checks as generic data tests")
    }

    fn signatures() -> Vec<Signature> {
        vec![
            signature("is_positive", &["column"], 1),
            signature("is_between", &["column", "min", "max"], 3),
            signature("spins", &["column"], 1),
            signature("broken", &[], 0),
        ]
    }

    fn expand(call: Call) -> Result<String, String> {
        if call.name == "broken" {
            return Ok("1 +".into());
        }
        if call.name == "spins" && call.position == Position::Expression {
            loop {
                std::hint::black_box(call.args.len());
            }
        }
        let column = &arg(&call, "column")?.sql;
        let model = &call.model;
        match call.name.as_str() {
            "is_positive" => Ok(format!("select * from {model} where {column} <= 0")),
            "is_between" => Ok(format!(
                "select * from {model} where {column} < {} or {column} > {}",
                arg(&call, "min")?.sql,
                arg(&call, "max")?.sql
            )),
            "spins" => loop {
                std::hint::black_box(column.len());
            },
            other => Err(format!("no test named {other}")),
        }
    }
}

orbital_sdk::export_macros!(RangeTests);
