//! Node selection, with dbt's syntax.
//!
//! - `--select a b` is a union; `a,b` within one item is an intersection.
//! - An atom is `[@][N+]method:value[+N]`: `+x` adds ancestors, `x+`
//!   descendants, `2+x` only two levels up, `@x` descendants and all of their
//!   ancestors.
//! - Methods: a bare value matches names (`*` and `?` wildcards); `tag:`;
//!   `path:` (a file or a folder, relative to the project); `resource_type:`
//!   (`model` or `seed`); `config.KEY:VALUE` (models whose config has it:
//!   `config.materialized:table`, `config.tags:nightly`, a key of its own,
//!   `config.meta.owner:ana` inside a table; a list matches when one of
//!   its items does); `state:modified` (new, or its own SQL, config or
//!   plugins changed against an environment's recorded state; `state:new`
//!   only new ones). `state:modified+` adds what the change reaches.
//! - `--exclude` takes the same syntax and removes what it matches.
//!
//! A selector that matches nothing is an error: a typo should not quietly
//! build nothing. `state:` selectors are the exception: nothing modified is
//! a normal answer.

use std::path::Path;

use crate::dag::{Dag, NodeId};
use crate::error::{Error, Result};

/// The nodes a command acts on, in topological order.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub nodes: Vec<NodeId>,
}

impl Selection {
    /// Everything, or what `select` picks, minus what `exclude` picks.
    pub fn resolve(dag: &Dag, select: &[String], exclude: &[String]) -> Result<Self> {
        Self::resolve_with_state(dag, select, exclude, None)
    }

    /// Like [`Selection::resolve`], with the state `state:` selectors compare
    /// against: per node, whether it is new or modified. `None` makes any
    /// `state:` selector an error.
    pub fn resolve_with_state(
        dag: &Dag,
        select: &[String],
        exclude: &[String],
        state: Option<&StateDiff>,
    ) -> Result<Self> {
        check_not_blank(select)?;
        check_not_blank(exclude)?;
        let chosen = if items(select).next().is_none() {
            vec![true; dag.nodes.len()]
        } else {
            union(dag, select, state)?
        };
        let removed = if items(exclude).next().is_none() {
            vec![false; dag.nodes.len()]
        } else {
            union(dag, exclude, state)?
        };
        let nodes = dag
            .order
            .iter()
            .copied()
            .filter(|&id| chosen[id] && !removed[id])
            .collect();
        Ok(Self { nodes })
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.nodes.contains(&id)
    }

    /// Whether any item uses a `state:` method.
    pub fn uses_state(select: &[String], exclude: &[String]) -> bool {
        items(select)
            .chain(items(exclude))
            .any(|item| item.contains("state:"))
    }
}

/// Per node (by id), how it differs from an environment's recorded state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateDiff {
    /// Not recorded in the environment.
    pub new: Vec<bool>,
    /// New, or its own SQL, config or plugins differ (not only upstream).
    pub modified: Vec<bool>,
}

fn items(args: &[String]) -> impl Iterator<Item = &str> {
    args.iter().flat_map(|a| a.split_whitespace())
}

/// A selector given but blank (`--select ''`, `--select ','`, an unset
/// shell variable) is an error, not "everything": a script with an empty
/// variable must not rebuild the project.
fn check_not_blank(args: &[String]) -> Result<()> {
    for arg in args {
        let blank = arg.trim().is_empty()
            || arg
                .split_whitespace()
                .any(|item| item.split(',').any(str::is_empty));
        if blank {
            return Err(Error::Selector {
                selector: arg.clone(),
                message: "is empty or has an empty part (`a,,b`); to take every node, leave the option out".into(),
            });
        }
    }
    Ok(())
}

fn union(dag: &Dag, args: &[String], state: Option<&StateDiff>) -> Result<Vec<bool>> {
    let mut out = vec![false; dag.nodes.len()];
    for item in items(args) {
        let mut intersection = vec![true; dag.nodes.len()];
        for atom in item.split(',') {
            let matched = atom_matches(dag, atom, state)?;
            for (slot, hit) in intersection.iter_mut().zip(matched) {
                *slot &= hit;
            }
        }
        for (slot, hit) in out.iter_mut().zip(intersection) {
            *slot |= hit;
        }
    }
    Ok(out)
}

/// One parsed atom: graph operators around a method and value.
#[derive(Debug, PartialEq)]
struct Atom<'a> {
    at: bool,
    /// `Some(None)`: unlimited; `Some(Some(n))`: n levels.
    ancestors: Option<Option<usize>>,
    descendants: Option<Option<usize>>,
    method: &'a str,
    value: &'a str,
}

fn parse_atom(atom: &str) -> Result<Atom<'_>> {
    let invalid = |message: &str| Error::Selector {
        selector: atom.to_string(),
        message: message.to_string(),
    };
    let (at, rest) = match atom.strip_prefix('@') {
        Some(rest) => (true, rest),
        None => (false, atom),
    };
    // An empty depth is unlimited; digits that overflow are an error, not
    // "unlimited".
    let depth = |digits: &str| -> Result<Option<usize>> {
        match digits {
            "" => Ok(None),
            digits => digits.parse().map(Some).map_err(|_| {
                invalid(&format!(
                    "depth `{digits}` is too large (at most {})",
                    usize::MAX
                ))
            }),
        }
    };
    let (ancestors, rest) = match rest.find('+') {
        Some(plus)
            if rest[..plus].chars().all(|c| c.is_ascii_digit()) && plus < rest.len() - 1
                || plus == 0 =>
        {
            (Some(depth(&rest[..plus])?), &rest[plus + 1..])
        }
        _ => (None, rest),
    };
    let (rest, descendants) = match rest.rfind('+') {
        Some(plus) if rest[plus + 1..].chars().all(|c| c.is_ascii_digit()) => {
            (&rest[..plus], Some(depth(&rest[plus + 1..])?))
        }
        _ => (rest, None),
    };
    if at && (ancestors.is_some() || descendants.is_some()) {
        return Err(invalid("`@` cannot be combined with `+`"));
    }
    let (method, value) = rest.split_once(':').unwrap_or(("name", rest));
    if value.is_empty() {
        return Err(invalid("nothing to select"));
    }
    Ok(Atom {
        at,
        ancestors,
        descendants,
        method,
        value,
    })
}

fn atom_matches(dag: &Dag, text: &str, state: Option<&StateDiff>) -> Result<Vec<bool>> {
    let atom = parse_atom(text)?;
    let base: Vec<NodeId> = match atom.method {
        "name" => (0..dag.nodes.len())
            .filter(|&i| glob(atom.value, &dag.nodes[i].name))
            .collect(),
        "tag" => (0..dag.nodes.len())
            .filter(|&i| dag.nodes[i].tags.iter().any(|t| glob(atom.value, t)))
            .collect(),
        "path" => (0..dag.nodes.len())
            .filter(|&i| path_matches(atom.value, &dag.nodes[i].path))
            .collect(),
        "resource_type" => match atom.value {
            "model" | "seed" => (0..dag.nodes.len())
                .filter(|&i| dag.nodes[i].kind_name() == atom.value)
                .collect(),
            other => {
                return Err(Error::Selector {
                    selector: text.to_string(),
                    message: format!("unknown resource type `{other}` (model or seed)"),
                });
            }
        },
        "state" => {
            let Some(state) = state else {
                return Err(Error::Selector {
                    selector: text.to_string(),
                    message: "state: needs recorded state, which this command does not read".into(),
                });
            };
            let flags = match atom.value {
                "modified" => &state.modified,
                "new" => &state.new,
                other => {
                    return Err(Error::Selector {
                        selector: text.to_string(),
                        message: format!("unknown state `{other}` (modified or new)"),
                    });
                }
            };
            (0..dag.nodes.len()).filter(|&i| flags[i]).collect()
        }
        config if config.starts_with("config.") => {
            let key = &config["config.".len()..];
            if key.is_empty() || key.split('.').any(str::is_empty) {
                return Err(Error::Selector {
                    selector: text.to_string(),
                    message: "`config.` needs a key, as in `config.materialized:table`".into(),
                });
            }
            (0..dag.nodes.len())
                .filter(|&i| {
                    (dag.nodes[i].as_model())
                        .is_some_and(|m| config_matches(&m.config, key, atom.value))
                })
                .collect()
        }
        other => {
            return Err(Error::Selector {
                selector: text.to_string(),
                message: format!(
                    "unknown method `{other}` (known: name, tag:, path:, resource_type:, config.KEY:, state:)"
                ),
            });
        }
    };
    if base.is_empty() && atom.method != "state" {
        let hint = if atom.method == "name" {
            name_hint(dag, atom.value)
        } else {
            String::new()
        };
        return Err(Error::Selector {
            selector: text.to_string(),
            message: format!("matches no model or seed{hint}"),
        });
    }
    let mut out = vec![false; dag.nodes.len()];
    for &id in &base {
        out[id] = true;
        if let Some(depth) = atom.ancestors {
            dag.ancestors(id, depth)
                .into_iter()
                .for_each(|a| out[a] = true);
        }
        if let Some(depth) = atom.descendants {
            dag.descendants(id, depth)
                .into_iter()
                .for_each(|d| out[d] = true);
        }
        if atom.at {
            for d in dag.descendants(id, None) {
                out[d] = true;
                dag.ancestors(d, None)
                    .into_iter()
                    .for_each(|a| out[a] = true);
            }
        }
    }
    Ok(out)
}

/// Whether a model's config holds `pattern` at `key` (dotted into tables;
/// `-` and `_` alike, as orbital.toml and dbt spell keys either way).
fn config_matches(config: &crate::project::ModelConfig, key: &str, pattern: &str) -> bool {
    use serde_json::Value;
    let mut parts = key.split('.');
    let first = parts.next().unwrap_or_default().replace('-', "_");
    let top = match first.as_str() {
        "materialized" => Value::String(config.materialized.clone()),
        "tags" => Value::from(config.tags.clone()),
        "enabled" => Value::Bool(config.enabled),
        _ => match lookup(&config.extra, &first) {
            Some(value) => value.clone(),
            None => return false,
        },
    };
    let mut found = &top;
    for part in parts {
        match found.as_object().and_then(|table| lookup(table, part)) {
            Some(inner) => found = inner,
            None => return false,
        }
    }
    value_matches(found, pattern)
}

fn lookup<'a>(
    table: &'a serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Option<&'a serde_json::Value> {
    let same = |written: &str| written.replace('-', "_") == key.replace('-', "_");
    table.iter().find(|(k, _)| same(k)).map(|(_, v)| v)
}

fn value_matches(value: &serde_json::Value, pattern: &str) -> bool {
    use serde_json::Value;
    match value {
        Value::String(text) => glob(pattern, text),
        Value::Bool(_) | Value::Number(_) => value.to_string().eq_ignore_ascii_case(pattern),
        Value::Array(items) => items.iter().any(|item| value_matches(item, pattern)),
        Value::Null | Value::Object(_) => false,
    }
}

fn name_hint(dag: &Dag, value: &str) -> String {
    crate::error::did_you_mean(value, dag.nodes.iter().map(|n| n.name.as_str()), 2, false)
}

fn path_matches(selector: &str, path: &Path) -> bool {
    let selector = Path::new(selector.trim_end_matches('/'));
    path == selector || path.starts_with(selector)
}

/// `*` matches any run of characters, `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi].eq_ignore_ascii_case(&t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SeedConfig;
    use crate::dag::{Node, NodeKind, RelationName};

    /// raw -> stg_a -> mart, raw -> stg_b -> mart, other
    fn dag() -> Dag {
        let model = crate::compile::CompiledModel {
            macros: Vec::new(),
            incremental_sql: None,
            stateful: false,
            sql: "".into(),
            config: crate::project::ModelConfig {
                tests: Vec::new(),
                materialized: "view".into(),
                tags: Vec::new(),
                enabled: true,
                extra: Default::default(),
            },
            sources: Vec::new(),
            references: Vec::new(),
        };
        let node = |name: &str, path: &str, tags: &[&str], deps: &[usize]| Node {
            name: name.into(),
            kind: if path.starts_with("seeds") {
                NodeKind::Seed(SeedConfig::default())
            } else {
                NodeKind::Model(std::sync::Arc::new(model.clone()))
            },
            path: path.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            relation: RelationName::default(),
            depends_on: deps.to_vec(),
        };
        Dag::new(
            vec![
                node("raw", "seeds/raw.csv", &[], &[]),
                node("stg_a", "models/staging/stg_a.sql", &["staging"], &[0]),
                node("stg_b", "models/staging/stg_b.sql", &["staging", "b"], &[0]),
                node("mart", "models/marts/mart.sql", &["daily"], &[1, 2]),
                node("other", "models/other.sql", &["daily"], &[]),
            ],
            |_, _| None,
        )
        .unwrap()
    }

    fn select(select: &[&str], exclude: &[&str]) -> Result<Vec<String>> {
        let dag = dag();
        let s: Vec<String> = select.iter().map(|s| s.to_string()).collect();
        let e: Vec<String> = exclude.iter().map(|s| s.to_string()).collect();
        let mut names: Vec<String> = Selection::resolve(&dag, &s, &e)?
            .nodes
            .iter()
            .map(|i| dag.nodes[*i].name.clone())
            .collect();
        names.sort();
        Ok(names)
    }

    #[test]
    fn config_selects_by_materialization_own_keys_and_lists() {
        let mut dag = dag();
        let mut configure = |id: usize, edit: &dyn Fn(&mut crate::project::ModelConfig)| {
            let NodeKind::Model(model) = &mut std::sync::Arc::make_mut(&mut dag.nodes[id]).kind
            else {
                panic!("node {id} is not a model");
            };
            edit(&mut std::sync::Arc::make_mut(model).config);
        };
        configure(3, &|c| {
            c.materialized = "table".into();
            c.tags = vec!["nightly".into()];
            let meta = serde_json::json!({ "owner": "ana", "pii": true });
            c.extra.insert("meta".into(), meta);
            c.extra
                .insert("unique_key".into(), serde_json::json!(["id", "day"]));
        });
        configure(4, &|c| {
            c.extra.insert("unique-key".into(), serde_json::json!("id"));
        });
        let pick = |selector: &str| -> Result<Vec<String>> {
            let nodes = Selection::resolve(&dag, &[selector.to_string()], &[])?.nodes;
            Ok(nodes.iter().map(|&i| dag.nodes[i].name.clone()).collect())
        };
        assert_eq!(pick("config.materialized:table").unwrap(), ["mart"]);
        assert_eq!(pick("config.materialized:view").unwrap().len(), 3);
        assert_eq!(pick("config.tags:night*").unwrap(), ["mart"]);
        assert_eq!(pick("config.meta.owner:ana").unwrap(), ["mart"]);
        assert_eq!(pick("config.meta.pii:true").unwrap(), ["mart"]);
        // A list matches by any item; `-` and `_` spell one key.
        assert_eq!(pick("config.unique_key:id").unwrap(), ["other", "mart"]);
        assert_eq!(pick("config.unique-key:day").unwrap(), ["mart"]);
        assert_eq!(pick("config.materialized:table+").unwrap(), ["mart"]);
        assert!(pick("config.enabled:true").unwrap().len() == 4);
        let error = pick("config.meta.owner:bob").unwrap_err().to_string();
        assert!(error.contains("matches no model or seed"), "{error}");
        let error = pick("config.:x").unwrap_err().to_string();
        assert!(error.contains("`config.` needs a key"), "{error}");
        let error = pick("conf.materialized:x").unwrap_err().to_string();
        assert!(error.contains("config.KEY:"), "{error}");
    }

    #[test]
    fn names_and_graph_operators() {
        assert_eq!(select(&[], &[]).unwrap().len(), 5);
        assert_eq!(select(&["stg_a"], &[]).unwrap(), ["stg_a"]);
        assert_eq!(select(&["+stg_a"], &[]).unwrap(), ["raw", "stg_a"]);
        assert_eq!(select(&["stg_a+"], &[]).unwrap(), ["mart", "stg_a"]);
        assert_eq!(
            select(&["1+mart"], &[]).unwrap(),
            ["mart", "stg_a", "stg_b"]
        );
        assert_eq!(select(&["raw+1"], &[]).unwrap(), ["raw", "stg_a", "stg_b"]);
        assert_eq!(
            select(&["@stg_a"], &[]).unwrap(),
            ["mart", "raw", "stg_a", "stg_b"]
        );
        assert_eq!(select(&["stg_*"], &[]).unwrap(), ["stg_a", "stg_b"]);
    }

    #[test]
    fn methods_unions_intersections_and_excludes() {
        assert_eq!(select(&["tag:daily"], &[]).unwrap(), ["mart", "other"]);
        assert_eq!(
            select(&["path:models/staging"], &[]).unwrap(),
            ["stg_a", "stg_b"]
        );
        assert_eq!(
            select(&["path:models/marts/mart.sql"], &[]).unwrap(),
            ["mart"]
        );
        assert_eq!(select(&["tag:staging,tag:b"], &[]).unwrap(), ["stg_b"]);
        assert_eq!(select(&["stg_a other"], &[]).unwrap(), ["other", "stg_a"]);
        assert_eq!(
            select(&["stg_a", "other"], &[]).unwrap(),
            ["other", "stg_a"]
        );
        assert_eq!(
            select(&["+mart"], &["resource_type:seed"]).unwrap(),
            ["mart", "stg_a", "stg_b"]
        );
        assert_eq!(
            select(&["raw+"], &["tag:staging"]).unwrap(),
            ["mart", "raw"]
        );
    }

    #[test]
    fn bad_selectors_are_errors() {
        assert_eq!(
            select(&["stg_c"], &[]).unwrap_err().to_string(),
            "invalid selector `stg_c`: matches no model or seed; did you mean `stg_a`?"
        );
        assert!(
            select(&["colour:red"], &[])
                .unwrap_err()
                .to_string()
                .contains("unknown method `colour`")
        );
        assert!(select(&["@+mart"], &[]).is_err());
        assert!(select(&["tag:"], &[]).is_err());
        assert!(select(&[], &["nope"]).is_err());
    }

    #[test]
    fn blank_selectors_and_huge_depths_are_errors_not_everything() {
        for blank in ["", " ", ",", "stg_a,", ",stg_a", "stg_a,,mart", "stg_a ,"] {
            let err = select(&[blank], &[]).unwrap_err().to_string();
            assert!(
                err.contains("is empty or has an empty part"),
                "{blank:?}: {err}"
            );
            assert!(select(&[], &[blank]).is_err(), "{blank:?} as exclude");
        }
        for huge in [
            "99999999999999999999999+mart",
            "raw+99999999999999999999999",
        ] {
            let err = select(&[huge], &[]).unwrap_err().to_string();
            assert!(err.contains("is too large"), "{huge}: {err}");
        }
        assert_eq!(
            select(&["18446744073709551615+mart"], &[]).unwrap().len(),
            4
        );
    }

    #[test]
    fn glob_matching() {
        assert!(glob("stg_*", "stg_orders"));
        assert!(glob("*_orders", "stg_orders"));
        assert!(glob("s?g*", "stg"));
        assert!(!glob("stg_*", "orders"));
    }
}
