//! Targets from dbt's `profiles.yml`: the project folder's, then
//! `$DBT_PROFILES_DIR`'s, then `~/.dbt`'s, rendered with `env_var()`.
//! `postgres` and `sqlite` outputs become targets; a project with no
//! profiles file runs on the embedded SQLite default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::config::Target;
use crate::error::{Error, Location, Result};

#[derive(Deserialize)]
struct Profile {
    target: Option<String>,
    outputs: BTreeMap<String, serde_json::Map<String, Value>>,
}

/// The profiles file that applies to the project in `dir`, if any.
fn profiles_file(dir: &Path) -> Option<PathBuf> {
    let mut candidates = vec![dir.join("profiles.yml")];
    if let Some(from_env) = std::env::var_os("DBT_PROFILES_DIR") {
        candidates.push(PathBuf::from(from_env).join("profiles.yml"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".dbt/profiles.yml"));
    }
    candidates.into_iter().find(|path| path.is_file())
}

/// The project's targets and the default one.
pub(super) fn targets(
    dir: &Path,
    file: &super::ProjectFile,
) -> Result<(BTreeMap<String, Target>, Option<String>)> {
    let Some(path) = profiles_file(dir) else {
        let url = format!("sqlite://{}/{}.db", file.target_path.display(), file.name);
        let target = Target {
            url,
            schema: None,
            threads: None,
        };
        return Ok((
            BTreeMap::from([("dev".to_string(), target)]),
            Some("dev".into()),
        ));
    };
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(path.clone(), e))?;
    let rendered = super::jinja::render_profiles(&path, &text)?;
    let profiles: BTreeMap<String, Profile> = super::from_yaml(&path, &rendered)?;
    let wanted = file.profile.as_deref().unwrap_or(&file.name);
    let profile = profiles.get(wanted).ok_or_else(|| Error::Config {
        location: Location::new(&path, 1, 1),
        message: format!(
            "has no profile `{wanted}` (the profile dbt_project.yml names); it has: {}",
            profiles.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    })?;
    let mut targets = BTreeMap::new();
    for (name, output) in &profile.outputs {
        // As orbital.toml's: a target's name names lock files and schemas.
        if !crate::config::is_plain_name(name) {
            return Err(Error::Config {
                location: Location::new(&path, 1, 1),
                message: format!(
                    "profile `{wanted}`: output name `{name}`: use letters, digits, `_` and `-` (it names lock files and schemas)"
                ),
            });
        }
        let target = target(output).map_err(|message| Error::Config {
            location: Location::new(&path, 1, 1),
            message: format!("profile `{wanted}`, output `{name}`: {message}"),
        })?;
        targets.insert(name.clone(), target);
    }
    let default = profile.target.clone().or_else(|| {
        (targets.len() == 1)
            .then(|| targets.keys().next().cloned())
            .flatten()
    });
    if let Some(default) = &default
        && !targets.contains_key(default)
    {
        return Err(Error::Config {
            location: Location::new(&path, 1, 1),
            message: format!("profile `{wanted}`: target `{default}` is not one of its outputs"),
        });
    }
    Ok((targets, default))
}

/// One output as an Orbital target.
fn target(output: &serde_json::Map<String, Value>) -> std::result::Result<Target, String> {
    let text = |key: &str| -> Option<String> {
        match output.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let threads = match output.get("threads") {
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(crate::config::check_threads)
                .ok_or("threads must be a count")??,
        ),
        Some(Value::String(s)) => Some(
            s.parse()
                .map_err(|_| format!("threads must be a count, not `{s}`"))
                .and_then(crate::config::check_threads)?,
        ),
        _ => None,
    };
    let kind = text("type").ok_or("no `type`")?;
    match kind.as_str() {
        "postgres" => {
            let host = text("host").unwrap_or_else(|| "localhost".into());
            let port = text("port").unwrap_or_else(|| "5432".into());
            let user = text("user").ok_or("no `user`")?;
            let password = text("password")
                .or_else(|| text("pass"))
                .unwrap_or_default();
            let database = text("dbname")
                .or_else(|| text("database"))
                .ok_or("no `dbname`")?;
            let credentials = match password.is_empty() {
                true => encode(&user),
                false => format!("{}:{}", encode(&user), encode(&password)),
            };
            Ok(Target {
                url: format!(
                    "postgres://{credentials}@{host}:{port}/{}",
                    encode(&database)
                ),
                schema: text("schema"),
                threads,
            })
        }
        // dbt-mysql: `schema` is the database, `server` the host.
        "mysql" | "mariadb" => {
            let host = text("server")
                .or_else(|| text("host"))
                .unwrap_or_else(|| "localhost".into());
            let port = text("port").unwrap_or_else(|| "3306".into());
            let user = text("username")
                .or_else(|| text("user"))
                .ok_or("no `username`")?;
            let password = text("password").unwrap_or_default();
            let database = text("schema")
                .or_else(|| text("database"))
                .ok_or("no `schema` (the database)")?;
            let credentials = match password.is_empty() {
                true => encode(&user),
                false => format!("{}:{}", encode(&user), encode(&password)),
            };
            Ok(Target {
                url: format!("mysql://{credentials}@{host}:{port}/{}", encode(&database)),
                schema: None,
                threads,
            })
        }
        "sqlite" => {
            // dbt-sqlite names its file per schema; the main schema's is
            // the database.
            let file = match output.get("schemas_and_paths") {
                Some(Value::Object(paths)) => paths
                    .get("main")
                    .or_else(|| paths.values().next())
                    .and_then(Value::as_str)
                    .map(str::to_string),
                _ => text("path"),
            }
            .ok_or("a sqlite output needs `schemas_and_paths: {main: FILE}` or `path`")?;
            Ok(Target {
                url: format!("sqlite://{file}"),
                schema: None,
                threads,
            })
        }
        other => Err(format!(
            "type `{other}` is not supported (postgres, mysql and sqlite are)"
        )),
    }
}

/// Percent-encodes what a URL's user, password or path may not hold.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_mysql_and_sqlite_outputs_become_targets() {
        let output = |yaml: &str| target(&serde_yaml_ng::from_str(yaml).unwrap());
        let pg = output(
            "{type: postgres, host: db, port: 5433, user: ana, password: 'p@ss', dbname: w, schema: dbt_ana, threads: 4}",
        )
        .unwrap();
        assert_eq!(pg.url, "postgres://ana:p%40ss@db:5433/w");
        assert_eq!(
            (pg.schema.as_deref(), pg.threads),
            (Some("dbt_ana"), Some(4))
        );
        let maria = output(
            "{type: mysql, server: db, username: ana, password: 'p@ss', schema: w, threads: 2}",
        )
        .unwrap();
        assert_eq!(maria.url, "mysql://ana:p%40ss@db:3306/w");
        assert_eq!((maria.schema, maria.threads), (None, Some(2)));
        let lite = output("{type: sqlite, schemas_and_paths: {main: target/x.db}}").unwrap();
        assert_eq!(lite.url, "sqlite://target/x.db");
        assert!(
            output("{type: snowflake}")
                .unwrap_err()
                .contains("not supported")
        );
        assert!(
            output("{type: postgres, dbname: w}")
                .unwrap_err()
                .contains("no `user`")
        );
    }
}
