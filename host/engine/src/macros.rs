//! Plugins at compile time: SQL macros (`select std.pivot(...)`), generic
//! data tests (a macro claiming the `test` position writes the
//! failing-rows query for `tests.<column> = ['name']`), and which of the
//! project's own materializations keep history (their `describe`).
//!
//! Compiling is synchronous and plugins are async WASM: each call is driven
//! to completion on the compiling thread (a blocking thread, never an async
//! worker) by a small executor of its own, never by the caller's runtime;
//! one instance per plugin serves every call of a compile. Plugins load on
//! the first call a compile meets, so a project restored from its snapshot
//! loads nothing.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::{Arc, OnceLock};

use orbital_core::data_test::TestMacros;
use orbital_core::macros::{MacroCall, MacroPosition, SqlMacros};
use orbital_core::{Hash, ProjectConfig};
use orbital_plugin_host::types::{Argument, Call, Column, Position, Value};
use orbital_plugin_host::{Limits, MacroPlugin, MacroSession, Plugin, PluginHost};
use orbital_runner::Component;

use crate::Engine;
use crate::error::EngineError;

/// The columns a call's catalog import answers with, by relation.
type Catalog = BTreeMap<String, Result<Vec<Column>, String>>;

/// The macro plugins among a project's components.
pub struct PluginMacros {
    components: Vec<Component>,
    /// Created only when the project has macro plugins, with the runtime
    /// whose blocking threads compile components: compiling runs on rayon's
    /// threads, which are outside any runtime.
    host: Option<(Arc<PluginHost>, tokio::runtime::Handle)>,
    loaded: OnceLock<Result<Loaded, String>>,
    /// The hashes of the components: what expansions depend on.
    identity: String,
}

struct Loaded {
    host: Arc<PluginHost>,
    runtime: tokio::runtime::Handle,
    plugins: Vec<(Hash, MacroPlugin)>,
    /// Lowercase macro name -> (index into `plugins`, its positions); the
    /// first plugin to claim a name keeps it.
    macros: BTreeMap<String, (usize, Vec<Position>)>,
    /// Every claimed name with the arguments it requires, built once: the
    /// compile asks for it per model and per call.
    claimed: Vec<(String, u32)>,
    sessions: tokio::sync::Mutex<BTreeMap<usize, MacroSession>>,
    /// The project's own materializations: strategy -> whether it keeps
    /// history (`None`: a 0.1.0 component, which cannot say).
    strategies: BTreeMap<String, Option<bool>>,
}

impl PluginMacros {
    /// The project's own components and the bundled macro plugins (loading
    /// every bundled component only to find no macros would slow compiles).
    pub fn new(
        engine: &Engine,
        components: &[Component],
        config: &ProjectConfig,
    ) -> Result<Self, EngineError> {
        let components: Vec<Component> = components
            .iter()
            .filter(|c| !c.bundled || c.label.starts_with("bundled:macros-"))
            .cloned()
            .collect();
        let identity = components
            .iter()
            .map(|c| c.hash.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let host = match components.is_empty() {
            true => None,
            false => {
                let host = engine.plugin_host(Limits {
                    concurrency: 1,
                    ..crate::session::limits(engine, config, 1)
                })?;
                let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
                    EngineError::Internal(format!("macro plugins need a tokio runtime: {e}"))
                })?;
                Some((host, runtime))
            }
        };
        Ok(Self {
            components,
            host,
            loaded: OnceLock::new(),
            identity,
        })
    }

    fn loaded(&self) -> Option<&Result<Loaded, String>> {
        let (host, runtime) = self.host.as_ref()?;
        Some(
            self.loaded
                .get_or_init(|| load(&self.components, host.clone(), runtime.clone())),
        )
    }

    fn ready(&self) -> Option<&Loaded> {
        self.loaded()?.as_ref().ok()
    }
}

fn load(
    components: &[Component],
    host: Arc<PluginHost>,
    runtime: tokio::runtime::Handle,
) -> Result<Loaded, String> {
    let context = runtime.enter();
    let mut strategies = BTreeMap::new();
    let plugins = futures::executor::block_on(async {
        let mut plugins = Vec::new();
        for component in components {
            match host.load(&component.label, component.bytes.clone()).await? {
                Plugin::Macros(m) => plugins.push((component.hash, m)),
                Plugin::Materialization(m) => {
                    strategies.entry(m.strategy).or_insert(m.keeps_history);
                }
                Plugin::Adapter(_) => {}
            }
        }
        Ok::<_, orbital_plugin_host::PluginError>(plugins)
    })
    .map_err(|e| e.to_string())?;
    drop(context);
    let mut macros = BTreeMap::new();
    for (index, (_, plugin)) in plugins.iter().enumerate() {
        for signature in &plugin.signatures {
            macros
                .entry(signature.name.to_lowercase())
                .or_insert((index, signature.positions.clone()));
        }
    }
    let claimed = plugins
        .iter()
        .flat_map(|(_, p)| p.signatures.iter())
        .map(|s| (s.name.to_lowercase(), s.required))
        .collect();
    Ok(Loaded {
        host,
        runtime,
        plugins,
        macros,
        claimed,
        sessions: tokio::sync::Mutex::new(BTreeMap::new()),
        strategies,
    })
}

impl Loaded {
    /// Runs one expansion on the plugin's instance; errors name the macro
    /// and the plugin.
    fn call(&self, index: usize, call: &Call, catalog: Catalog) -> Result<String, String> {
        let plugin = &self.plugins[index].1.info.name;
        let within =
            |message: String| format!("macro `{}` of plugin `{plugin}`: {message}", call.name);
        let _context = self.runtime.enter();
        let expanded = futures::executor::block_on(async {
            let mut sessions = self.sessions.lock().await;
            let session = match sessions.entry(index) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    entry.insert(self.host.macro_session(&self.plugins[index].1).await?)
                }
            };
            let result = session.expand(call, catalog).await;
            if result.is_err() {
                // A trap or a timeout: the instance is gone with it.
                sessions.remove(&index);
            }
            result
        });
        match expanded {
            Ok(result) => result.map_err(within),
            Err(error) => Err(error.to_string()),
        }
    }
}

impl orbital_core::incremental::Strategies for PluginMacros {
    /// A project's own materialization says so itself (0.2.0); a bundled
    /// or 0.1.0 one keeps history when it has a built-in stateful name.
    fn keeps_history(&self, materialized: &str) -> bool {
        match self.ready().and_then(|l| l.strategies.get(materialized)) {
            Some(Some(declared)) => *declared,
            _ => orbital_core::incremental::is_stateful(materialized),
        }
    }
}

impl TestMacros for PluginMacros {
    fn expand(
        &self,
        test: &str,
        model: &str,
        column: &str,
        args: &str,
    ) -> Option<Result<String, String>> {
        let loaded = match self.loaded()? {
            Ok(loaded) => loaded,
            Err(error) => return Some(Err(error.clone())),
        };
        let (index, positions) = loaded.macros.get(&test.to_lowercase())?;
        if !positions.contains(&Position::Test) {
            return None;
        }
        let args = match arguments(column, args) {
            Ok(args) => args,
            Err(message) => {
                let plugin = &loaded.plugins[*index].1.info.name;
                return Some(Err(format!(
                    "macro `{test}` of plugin `{plugin}`: {message}"
                )));
            }
        };
        let call = Call {
            name: test.to_string(),
            position: Position::Test,
            args,
            model: model.to_string(),
        };
        Some(loaded.call(*index, &call, Catalog::new()))
    }

    fn names(&self) -> Vec<String> {
        self.ready()
            .map(|l| {
                l.macros
                    .iter()
                    .filter(|(_, (_, positions))| positions.contains(&Position::Test))
                    .map(|(name, _)| name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl SqlMacros for PluginMacros {
    fn positions(&self, name: &str) -> Option<Vec<MacroPosition>> {
        let (_, positions) = self.ready()?.macros.get(name)?;
        Some(
            positions
                .iter()
                .filter_map(|p| match p {
                    Position::Expression => Some(MacroPosition::Expression),
                    Position::SelectItems => Some(MacroPosition::SelectItems),
                    Position::Table => Some(MacroPosition::Table),
                    Position::Test => None,
                })
                .collect(),
        )
    }

    fn expand(&self, call: &MacroCall) -> Result<String, String> {
        let loaded = match self.loaded() {
            Some(Ok(loaded)) => loaded,
            Some(Err(error)) => return Err(error.clone()),
            None => return Err("no macro plugins are loaded".into()),
        };
        let Some((index, _)) = loaded.macros.get(&call.name) else {
            return Err(format!("no plugin provides macro `{}`", call.name));
        };
        let args = call
            .args
            .iter()
            .map(|a| Argument {
                name: a.name.clone(),
                sql: a.sql.clone(),
                literal: a
                    .literal
                    .as_ref()
                    .and_then(|v| literal(v).ok())
                    .map(|(_, v)| v),
            })
            .collect();
        let position = match call.position {
            MacroPosition::Expression => Position::Expression,
            MacroPosition::SelectItems => Position::SelectItems,
            MacroPosition::Table => Position::Table,
        };
        // Column types are not known at compile time: names only.
        let catalog = call
            .columns
            .iter()
            .map(|(relation, columns)| {
                let columns = columns.clone().map(|names| {
                    names
                        .into_iter()
                        .map(|name| Column {
                            name,
                            data_type: String::new(),
                        })
                        .collect()
                });
                (relation.clone(), columns)
            })
            .collect();
        loaded.call(
            *index,
            &Call {
                name: call.name.clone(),
                position,
                args,
                model: call.model.clone(),
            },
            catalog,
        )
    }

    fn claimed(&self) -> &[(String, u32)] {
        self.ready().map_or(&[], |loaded| &loaded.claimed)
    }

    fn plugin_name(&self, name: &str) -> Option<String> {
        let loaded = self.ready()?;
        let (index, _) = loaded.macros.get(name)?;
        Some(format!(
            " of plugin `{}`",
            loaded.plugins[*index].1.info.name
        ))
    }

    fn plugin(&self, name: &str) -> Option<Hash> {
        let loaded = self.ready()?;
        let (index, _) = loaded.macros.get(name)?;
        Some(loaded.plugins[*index].0)
    }

    fn identity(&self) -> String {
        self.identity.clone()
    }

    fn prepare(&self) {
        let _ = self.loaded();
    }
}

/// The call's arguments: the column first (named `column`), then what the
/// config gave: a table of named values, a list, or one value.
fn arguments(column: &str, args: &str) -> Result<Vec<Argument>, String> {
    let mut out = vec![Argument {
        name: Some("column".into()),
        sql: column.to_string(),
        literal: None,
    }];
    let value: serde_json::Value = serde_json::from_str(args).map_err(|e| e.to_string())?;
    let named = |name: Option<String>, value: &serde_json::Value| {
        literal(value).map(|(sql, literal)| Argument {
            name,
            sql,
            literal: Some(literal),
        })
    };
    match &value {
        serde_json::Value::Null => {}
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                out.push(named(Some(key.clone()), value)?);
            }
        }
        serde_json::Value::Array(items) => {
            for value in items {
                out.push(named(None, value)?);
            }
        }
        single => out.push(named(None, single)?),
    }
    Ok(out)
}

/// A config value as SQL text and as a typed literal.
fn literal(value: &serde_json::Value) -> Result<(String, Value), String> {
    Ok(match value {
        serde_json::Value::Bool(b) => (b.to_string(), Value::Boolean(*b)),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => (i.to_string(), Value::Integer(i)),
            None => (n.to_string(), Value::Real(n.as_f64().unwrap_or(0.0))),
        },
        serde_json::Value::String(s) => (
            format!("'{}'", s.replace('\'', "''")),
            Value::Text(s.clone()),
        ),
        other => {
            return Err(format!(
                "an argument is a string, number or boolean, not {other}"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_values_become_named_or_positional_arguments() {
        let args = arguments("amount", r#"{"min":0,"label":"it's"}"#).unwrap();
        assert_eq!(args[0].name.as_deref(), Some("column"));
        let label = args
            .iter()
            .find(|a| a.name.as_deref() == Some("label"))
            .unwrap();
        assert_eq!(label.sql, "'it''s'");
        assert_eq!(label.literal, Some(Value::Text("it's".into())));
        let positional = arguments("x", "[1, 2.5]").unwrap();
        assert_eq!(positional[1].literal, Some(Value::Integer(1)));
        assert_eq!(positional[2].sql, "2.5");
        assert_eq!(arguments("x", "null").unwrap().len(), 1);
        assert!(arguments("x", r#"{"a":[1]}"#).is_err());
    }
}
