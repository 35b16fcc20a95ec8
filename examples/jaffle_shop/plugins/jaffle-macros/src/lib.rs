//! jaffle_shop's own macros, as a project would write them: a macro plugin
//! built with the Orbital SDK and listed in the project's orbital.toml.
//!
//! - `cents_to_dollars(column)` (expression): an amount stored in cents, in
//!   dollars with two decimals; `cents_to_dollars(column, 3)` for three.
//!
//! Build it with
//! `orbital plugin build plugins/jaffle-macros --out plugins/jaffle_macros.wasm`
//! from the project folder.

use orbital_sdk::{Call, Macros, PluginInfo, Position, Signature, Value};

struct JaffleMacros;

fn cents_to_dollars(call: &Call) -> Result<String, String> {
    match call.args.as_slice() {
        [column] => Ok(format!("round(1.0 * {} / 100, 2)", column.sql)),
        [column, scale] => match &scale.literal {
            Some(Value::Integer(n)) if (0..=10).contains(n) => {
                Ok(format!("round(1.0 * {} / 100, {n})", column.sql))
            }
            _ => Err(format!(
                "the scale must be a whole number from 0 to 10, not {}",
                scale.sql
            )),
        },
        _ => Err("takes a column and, optionally, a scale".into()),
    }
}

impl Macros for JaffleMacros {
    fn info() -> PluginInfo {
        orbital_sdk::plugin_info!("jaffle-macros", "cents_to_dollars")
    }

    fn signatures() -> Vec<Signature> {
        vec![Signature {
            name: "cents_to_dollars".into(),
            positions: vec![Position::Expression],
            params: vec!["column".into(), "scale".into()],
            required: 1,
            description: "An amount in cents, in dollars".into(),
        }]
    }

    fn expand(call: Call) -> Result<String, String> {
        match call.name.as_str() {
            "cents_to_dollars" => cents_to_dollars(&call),
            other => Err(format!("jaffle-macros has no macro `{other}`")),
        }
    }
}

orbital_sdk::export_macros!(JaffleMacros);
