//! The `sharded_table` materialization: a table partitioned across shard
//! servers with MariaDB's Spider engine, built and queried through the
//! front node (the target's server).
//!
//! ```sql
//! -- config: materialized = 'sharded_table', shard_key = 'order_id'
//! -- config: shards = ['shard1', 'shard2']
//! select * from stg_orders
//! ```
//!
//! Each shard is a server the front node knows by name (`CREATE SERVER
//! shard1 FOREIGN DATA WRAPPER mysql OPTIONS (HOST .., PORT .., USER ..,
//! PASSWORD ..)`), and the front node has the Spider engine (`INSTALL
//! SONAME 'ha_spider'`). A build:
//!
//! 1. finds the query's columns (an empty table built from it, dropped);
//! 2. creates the build's table, with those columns, in the database of
//!    the same name on each shard (through `spider_direct_sql`, so the
//!    front node's connection is the only one Orbital needs);
//! 3. creates the build's table on the front node as a Spider table
//!    partitioned by `KEY(shard_key)`, one partition per shard, in the
//!    order listed;
//! 4. inserts the query's rows through it: each row lands on its shard.
//!
//! Environments, views and reads go through the front node as for any
//! table. Dropping the front table (`orbital gc`) leaves the shards'
//! tables: drop them on the shards.

use orbital_sdk::{
    Column, Materialization, ModelTask, Outcome, PluginInfo, Relation, Statement, Value, build,
    config_columns, config_value, database, dialect, sql,
};

struct Sharded;

/// The shard servers a model lists in `shards`.
fn shards(task: &ModelTask) -> Result<Vec<String>, String> {
    let listed = match config_value(task, "shards")? {
        Some(serde_json::Value::Array(items)) => items,
        Some(serde_json::Value::String(one)) => vec![serde_json::Value::String(one)],
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(other) => {
            return Err(format!(
                "config `shards` must list server names, got {other}"
            ));
        }
    };
    let names = listed
        .into_iter()
        .map(|item| match item {
            serde_json::Value::String(name) if plain_name(&name) => Ok(name),
            other => Err(format!(
                "config `shards` must list server names (letters, digits, `_`), got {other}"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if names.is_empty() {
        return Err(
            "sharded_table needs `shards = ['<server>', ...]`: the servers the front node knows (CREATE SERVER)"
                .into(),
        );
    }
    Ok(names)
}

/// Whether `name` needs no quoting inside a Spider connection string.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A name as a shard's session reads it (no `ANSI_QUOTES` there).
fn backquoted(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Runs `statement` on shard server `shard`, through the front node.
fn on_shard(shard: &str, statement: &str) -> Result<(), String> {
    database::query(&Statement {
        sql: "SELECT spider_direct_sql(?, '', ?)".into(),
        // A database that every server has: the build's may not exist yet.
        params: vec![
            Value::Text(statement.into()),
            Value::Text(format!("srv \"{shard}\", database \"mysql\"")),
        ],
    })
    .map(drop)
    .map_err(|error| format!("on shard `{shard}`: {error}"))
}

/// The database the build's relation lives in.
fn database_of(relation: &Relation) -> Result<String, String> {
    if let Some(schema) = &relation.schema {
        return Ok(schema.clone());
    }
    let rows = database::query(&sql("SELECT DATABASE()"))?;
    match rows.rows.first().and_then(|row| row.first()) {
        Some(Value::Text(name)) => Ok(name.clone()),
        _ => Err("the target's connection has no database: name one in its URL".into()),
    }
}

/// The columns `query` returns, as the database types them.
fn shape(target: &Relation, query: &str) -> Result<Vec<Column>, String> {
    let empty = build::scratch_table(
        target,
        "__orbital_shape",
        &format!("SELECT * FROM ({query}) AS q LIMIT 0"),
    )?;
    let columns = database::columns(&empty);
    database::drop_if_exists(&empty)?;
    columns
}

/// Whether the target is a MariaDB server with the Spider engine.
fn has_spider() -> Result<bool, String> {
    // Elsewhere the engines table does not exist: say what is needed
    // instead of what the database says of that table.
    if dialect::describe().parser_dialect != "mysql" {
        return Ok(false);
    }
    let rows = database::query(&sql("SELECT 1 FROM information_schema.ENGINES \
         WHERE ENGINE = 'SPIDER' AND SUPPORT IN ('YES', 'DEFAULT')"))?;
    Ok(!rows.rows.is_empty())
}

impl Materialization for Sharded {
    fn info() -> PluginInfo {
        orbital_sdk::plugin_info!(
            "materialization-sharded",
            "Builds a model as a table partitioned across shard servers (MariaDB Spider)"
        )
    }

    fn strategy() -> String {
        "sharded_table".into()
    }

    fn materialize(task: ModelTask) -> Result<Outcome, String> {
        let shards = shards(&task)?;
        let key = config_columns(&task, "shard_key")?;
        if key.is_empty() {
            return Err("sharded_table needs `shard_key = '<column>'`: the column (or columns) that place a row on its shard".into());
        }
        if !has_spider()? {
            return Err("sharded_table needs a MariaDB target whose server has the Spider engine (INSTALL SONAME 'ha_spider')".into());
        }
        let target = &task.relation;
        let database = database_of(target)?;
        if !plain_name(&database) || !plain_name(&target.identifier) {
            return Err(format!(
                "sharded_table cannot name `{database}`.`{}` in a Spider connection string: use letters, digits and `_`",
                target.identifier
            ));
        }
        let columns = shape(target, &task.sql)?;
        for column in &key {
            if !columns.iter().any(|c| c.name.eq_ignore_ascii_case(column)) {
                return Err(format!(
                    "shard_key `{column}` is not a column of the model (it has: {})",
                    columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        let remote = format!(
            "{}.{}",
            backquoted(&database),
            backquoted(&target.identifier)
        );
        let definitions = columns
            .iter()
            .map(|c| format!("{} {}", backquoted(&c.name), c.data_type))
            .collect::<Vec<_>>()
            .join(", ");
        for shard in &shards {
            on_shard(
                shard,
                &format!("CREATE DATABASE IF NOT EXISTS {}", backquoted(&database)),
            )?;
            // A build that died half way may have left one.
            on_shard(shard, &format!("DROP TABLE IF EXISTS {remote}"))?;
            on_shard(shard, &format!("CREATE TABLE {remote} ({definitions})"))?;
        }
        let partitions = shards
            .iter()
            .enumerate()
            .map(|(i, shard)| format!("PARTITION p{i} COMMENT = 'srv \"{shard}\"'"))
            .collect::<Vec<_>>()
            .join(", ");
        let key_list = key
            .iter()
            .map(|k| dialect::quote_identifier(k))
            .collect::<Vec<_>>()
            .join(", ");
        let front_columns = columns
            .iter()
            .map(|c| format!("{} {}", dialect::quote_identifier(&c.name), c.data_type))
            .collect::<Vec<_>>()
            .join(", ");
        database::drop_if_exists(target)?;
        database::execute(&sql(format!(
            "CREATE TABLE {} ({front_columns}) ENGINE = SPIDER \
             COMMENT = 'wrapper \"mysql\", database \"{database}\", table \"{}\"' \
             PARTITION BY KEY ({key_list}) ({partitions})",
            dialect::render_relation(target),
            target.identifier
        )))?;
        let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let rows = database::run(&dialect::insert_select(target, &names, &task.sql))?;
        Ok(Outcome {
            rows_affected: Some(rows),
            message: format!(
                "created sharded table ({rows} rows on {} shards)",
                shards.len()
            ),
        })
    }
}

orbital_sdk::export_materialization_v0_1!(Sharded);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_go_into_connection_strings() {
        assert!(plain_name("shard_1"));
        for bad in ["", "a\"b", "a'b", "a b", "a,b"] {
            assert!(!plain_name(bad), "{bad:?}");
        }
        assert_eq!(backquoted("a`b"), "`a``b`");
    }
}
