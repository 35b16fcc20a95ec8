//! Generic data tests from macro plugins: a macro that claims the `test`
//! position writes the failing-rows query for `tests.<column> = ['name']`.
//!
//! Compiling is synchronous and plugins are async WASM, so this owns a small
//! runtime and blocks on each call; one instance per plugin serves every
//! call of a compile.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::OnceLock;

use orbital_core::ProjectConfig;
use orbital_core::data_test::TestMacros;
use orbital_plugins::types::{Argument, Call, Position, Value};
use orbital_plugins::{Limits, MacroPlugin, MacroSession, Plugin, PluginHost};
use orbital_runner::Component;

/// The macro plugins a project lists, by the tests they provide. Loaded on
/// the first custom test a compile meets, so a project restored from its
/// snapshot (or without custom tests) loads nothing.
pub struct PluginTests {
    own: Vec<Component>,
    limits: Limits,
    loaded: OnceLock<Result<Loaded, String>>,
    /// The hashes of the project's own components: what the compiled tests
    /// depend on.
    identity: String,
}

struct Loaded {
    runtime: tokio::runtime::Runtime,
    host: PluginHost,
    plugins: Vec<MacroPlugin>,
    /// Test name -> index into `plugins`.
    tests: BTreeMap<String, usize>,
    sessions: tokio::sync::Mutex<BTreeMap<usize, MacroSession>>,
}

impl PluginTests {
    /// The project's own components (bundled ones hold no macros).
    pub fn new(components: &[Component], config: &ProjectConfig) -> Self {
        let own: Vec<Component> = components.iter().filter(|c| !c.bundled).cloned().collect();
        let identity = own
            .iter()
            .map(|c| c.hash.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let limits = Limits {
            timeout: std::time::Duration::from_millis(config.plugins.timeout_ms),
            memory_bytes: usize::try_from(config.plugins.memory_limit_mb << 20)
                .unwrap_or(usize::MAX),
            concurrency: 1,
            cache_dir: crate::cache_dir(),
        };
        Self {
            own,
            limits,
            loaded: OnceLock::new(),
            identity,
        }
    }

    /// What snapshots of compiles with these plugins are keyed by.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn loaded(&self) -> Option<&Result<Loaded, String>> {
        if self.own.is_empty() {
            return None;
        }
        Some(
            self.loaded
                .get_or_init(|| load(&self.own, self.limits.clone())),
        )
    }
}

fn load(own: &[Component], limits: Limits) -> Result<Loaded, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let (host, plugins) = runtime
        .block_on(async {
            let host = PluginHost::new(limits)?;
            let mut plugins = Vec::new();
            for component in own {
                if let Plugin::Macros(m) =
                    host.load(&component.label, component.bytes.clone()).await?
                {
                    plugins.push(m);
                }
            }
            Ok::<_, orbital_plugins::PluginError>((host, plugins))
        })
        .map_err(|e| e.to_string())?;
    let mut tests = BTreeMap::new();
    for (index, plugin) in plugins.iter().enumerate() {
        for signature in &plugin.signatures {
            if signature.positions.contains(&Position::Test) {
                tests.entry(signature.name.clone()).or_insert(index);
            }
        }
    }
    Ok(Loaded {
        runtime,
        host,
        plugins,
        tests,
        sessions: tokio::sync::Mutex::new(BTreeMap::new()),
    })
}

impl TestMacros for PluginTests {
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
        let &index = loaded.tests.get(test)?;
        let plugin = &loaded.plugins[index].info.name;
        let within = |message: String| format!("macro `{test}` of plugin `{plugin}`: {message}");
        let call = match arguments(column, args) {
            Ok(args) => Call {
                name: test.to_string(),
                position: Position::Test,
                args,
                model: model.to_string(),
            },
            Err(message) => return Some(Err(within(message))),
        };
        let expanded = loaded.runtime.block_on(async {
            let mut sessions = loaded.sessions.lock().await;
            let session = match sessions.entry(index) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    entry.insert(loaded.host.macro_session(&loaded.plugins[index]).await?)
                }
            };
            session.expand(&call).await
        });
        Some(match expanded {
            Ok(result) => result.map_err(within),
            // A trap or a timeout: the instance is gone with it.
            Err(error) => {
                loaded.sessions.blocking_lock().remove(&index);
                Err(error.to_string())
            }
        })
    }

    fn names(&self) -> Vec<String> {
        match self.loaded() {
            Some(Ok(loaded)) => loaded.tests.keys().cloned().collect(),
            _ => Vec::new(),
        }
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
