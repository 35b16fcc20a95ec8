//! The plan: the selected part of the project diffed against what an
//! environment has recorded, deciding per node whether to build, to point
//! the environment at a relation some environment already built, or to
//! leave it as it is.
//!
//! Pure: the caller passes the recorded state in.
//!
//! Where incremental models and snapshots will fit: their relation carries
//! history that no fingerprint can rebuild, so for them a changed
//! fingerprint must not mean "a fresh physical relation". The decision per
//! node is made in one place, [`plan`], and is where such a model will
//! either continue its environment's current build forward (the runner
//! passes it as the task's `previous` relation) or refuse without
//! `--full-refresh`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Target;
use crate::dag::{Dag, NodeId, RelationName};
use crate::error::{Error, Result};
use crate::fingerprint::{Fingerprints, combine_one};
use crate::hash::Hash;
use crate::selector::StateDiff;

/// The environment a run uses when none is named.
pub const DEFAULT_ENVIRONMENT: &str = "prod";

/// Checks an environment name: it becomes part of relation names.
pub fn check_environment_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::Environment {
            name: name.to_string(),
        })
    }
}

/// Where the build with `fingerprint` of node `name` lives:
/// `orbital__<name>__<12 hex digits>` in the target's schema. Every
/// environment shares it.
pub fn physical_relation(target: &Target, name: &str, fingerprint: &Hash) -> RelationName {
    RelationName {
        schema: target.schema.clone(),
        identifier: format!("orbital__{name}__{}", fingerprint.short()),
    }
}

/// The relation users query for `name` in `environment`: a view onto the
/// physical relation. In the default environment it has the plain name; in
/// another, where the database has schemas, the plain name in the schema
/// `<schema>__<environment>`, and where it has none (SQLite), the name
/// `<environment>__<name>`.
pub fn environment_relation(target: &Target, environment: &str, name: &str) -> RelationName {
    if environment == DEFAULT_ENVIRONMENT {
        return RelationName {
            schema: target.schema.clone(),
            identifier: name.to_string(),
        };
    }
    match &target.schema {
        Some(schema) => RelationName {
            schema: Some(format!("{schema}__{environment}")),
            identifier: name.to_string(),
        },
        None => RelationName {
            schema: None,
            identifier: format!("{environment}__{name}"),
        },
    }
}

/// What an environment records for one node.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub fingerprint: Hash,
    pub local: Hash,
}

/// How a node differs from the environment's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// The environment has no record of it.
    Added,
    /// Its own SQL, config or plugins changed.
    Modified,
    /// Only something upstream changed.
    Indirect,
    Unchanged,
}

/// What a run does with one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The environment already points at this fingerprint.
    Reuse,
    /// Some environment built this fingerprint: point this one at it.
    Repoint,
    /// Run the model's SQL (or load the seed).
    Build,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub id: NodeId,
    pub change: Change,
    pub action: Action,
    /// The fingerprint this run gives the node: as written, except that an
    /// unselected upstream counts with the version the environment has.
    pub fingerprint: Hash,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Selected nodes in topological order.
    pub steps: Vec<Step>,
    /// Nodes the environment records that the project no longer has.
    pub removed: Vec<String>,
    /// Per node id, the fingerprint whose relation readers of the node read
    /// during this run (`None`: not built anywhere, and nothing reads it).
    pub reads: Vec<Option<Hash>>,
}

/// Which nodes are new or modified against `recorded` (for `state:`).
pub fn state_diff(
    dag: &Dag,
    prints: &Fingerprints,
    recorded: &BTreeMap<String, Recorded>,
) -> StateDiff {
    let mut diff = StateDiff {
        new: vec![false; dag.nodes.len()],
        modified: vec![false; dag.nodes.len()],
    };
    for (id, node) in dag.nodes.iter().enumerate() {
        match recorded.get(&node.name) {
            // Tests are never recorded: they follow what they read (below).
            None if node.is_test() => {}
            None => {
                diff.new[id] = true;
                diff.modified[id] = true;
            }
            Some(record) => diff.modified[id] = record.local != prints.local[id],
        }
    }
    // A test is modified when something it reads is (in topological order,
    // so every upstream is settled first).
    for &id in &dag.order {
        if dag.nodes[id].is_test() {
            diff.modified[id] = dag.nodes[id].depends_on.iter().any(|&d| diff.modified[d]);
        }
    }
    diff
}

/// Plans `selection` for the environment `environment`, whose records are
/// `recorded`; `built` tells whether a fingerprint's relation exists.
pub fn plan(
    dag: &Dag,
    prints: &Fingerprints,
    selection: &[NodeId],
    environment: &str,
    recorded: &BTreeMap<String, Recorded>,
    built: impl Fn(&Hash) -> bool,
    full_refresh: bool,
) -> Result<Plan> {
    let mut selected = vec![false; dag.nodes.len()];
    selection.iter().for_each(|&id| selected[id] = true);
    // What each node will be once the run is done, if anything.
    let mut effective: Vec<Option<Hash>> = vec![None; dag.nodes.len()];
    let mut steps = Vec::with_capacity(selection.len());
    for &id in &dag.order {
        let node = &dag.nodes[id];
        let record = recorded.get(&node.name);
        if node.is_test() {
            // Run by the scheduler, never built or recorded.
            continue;
        }
        if node.is_ephemeral() {
            // Never built: it is what its upstreams will be, inlined.
            let mut complete = true;
            let fingerprint = combine_one(dag, id, prints.local[id], |dep| {
                effective[dep].unwrap_or_else(|| {
                    complete = false;
                    Hash::default()
                })
            });
            effective[id] = complete.then_some(fingerprint);
            continue;
        }
        if !selected[id] {
            effective[id] = if built(&prints.full[id]) {
                Some(prints.full[id])
            } else {
                record.map(|r| r.fingerprint)
            };
            continue;
        }
        let mut missing = None;
        let fingerprint = combine_one(dag, id, prints.local[id], |dep| {
            effective[dep].unwrap_or_else(|| {
                // An ephemeral upstream is unbuilt only when one of its own
                // upstreams is, and those are this node's too: name that one.
                if !dag.nodes[dep].is_ephemeral() {
                    missing.get_or_insert(dep);
                }
                Hash::default()
            })
        });
        if let Some(dep) = missing {
            return Err(Error::Unbuilt {
                model: node.name.clone(),
                upstream: dag.nodes[dep].name.clone(),
                environment: environment.to_string(),
            });
        }
        effective[id] = Some(fingerprint);
        let change = match record {
            None => Change::Added,
            Some(r) if r.local != prints.local[id] => Change::Modified,
            Some(r) if r.fingerprint != fingerprint => Change::Indirect,
            Some(_) => Change::Unchanged,
        };
        let action = if full_refresh {
            Action::Build
        } else if record.is_some_and(|r| r.fingerprint == fingerprint) && built(&fingerprint) {
            Action::Reuse
        } else if built(&fingerprint) {
            Action::Repoint
        } else {
            Action::Build
        };
        steps.push(Step {
            id,
            change,
            action,
            fingerprint,
        });
    }
    // An ephemeral model has no relation: one recorded (it was built before
    // it became ephemeral) leaves the environment.
    let present: std::collections::HashSet<&str> = dag
        .nodes
        .iter()
        .filter(|n| !n.is_ephemeral() && !n.is_test())
        .map(|n| n.name.as_str())
        .collect();
    let removed = recorded
        .keys()
        .filter(|name| !present.contains(name.as_str()))
        .cloned()
        .collect();
    Ok(Plan {
        steps,
        removed,
        reads: effective,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::fingerprint::{PluginHashes, fingerprint};
    use crate::project::Project;

    struct Fixture {
        _dir: tempfile::TempDir,
        dag: Dag,
        prints: Fingerprints,
    }

    fn fixture(models: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("orbital.toml"),
            "name = \"p\"\n[targets.dev]\nurl = \"sqlite://p.db\"\n",
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("models")).unwrap();
        for (name, sql) in models {
            std::fs::write(dir.path().join(format!("models/{name}.sql")), sql).unwrap();
        }
        let project = Project::load(dir.path()).unwrap();
        let target = project.config.target(None).unwrap().1.clone();
        let dag = crate::compile(&project, &target).unwrap().dag;
        let plugins = PluginHashes {
            adapter: Hash::of(b"a"),
            strategies: [("view".to_string(), Hash::of(b"v"))].into(),
        };
        let prints = fingerprint(&project, &dag, &plugins).unwrap();
        Fixture {
            _dir: dir,
            dag,
            prints,
        }
    }

    fn record(f: &Fixture) -> BTreeMap<String, Recorded> {
        f.dag
            .nodes
            .iter()
            .enumerate()
            .map(|(id, n)| {
                (
                    n.name.clone(),
                    Recorded {
                        fingerprint: f.prints.full[id],
                        local: f.prints.local[id],
                    },
                )
            })
            .collect()
    }

    fn actions(f: &Fixture, plan: &Plan) -> Vec<(String, Change, Action)> {
        plan.steps
            .iter()
            .map(|s| (f.dag.nodes[s.id].name.clone(), s.change, s.action))
            .collect()
    }

    #[test]
    fn an_edit_rebuilds_the_model_and_its_descendants_only() {
        let before = fixture(&[
            ("a", "select 1 as x"),
            ("b", "select * from a"),
            ("c", "select 2 as y"),
        ]);
        let recorded = record(&before);
        let built: HashSet<Hash> = before.prints.full.iter().copied().collect();
        let after = fixture(&[
            ("a", "select 3 as x"),
            ("b", "select * from a"),
            ("c", "select 2 as y"),
        ]);
        let all: Vec<NodeId> = after.dag.order.clone();
        let plan = plan(
            &after.dag,
            &after.prints,
            &all,
            "prod",
            &recorded,
            |h| built.contains(h),
            false,
        )
        .unwrap();
        let mut got = actions(&after, &plan);
        got.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            got,
            vec![
                ("a".into(), Change::Modified, Action::Build),
                ("b".into(), Change::Indirect, Action::Build),
                ("c".into(), Change::Unchanged, Action::Reuse),
            ]
        );
        let diff = state_diff(&after.dag, &after.prints, &recorded);
        assert_eq!(diff.modified, vec![true, false, false]);
    }

    #[test]
    fn another_environment_s_build_is_repointed_not_rebuilt() {
        let f = fixture(&[("a", "select 1 as x")]);
        let built: HashSet<Hash> = f.prints.full.iter().copied().collect();
        let plan = plan(
            &f.dag,
            &f.prints,
            &f.dag.order,
            "dev",
            &BTreeMap::new(),
            |h| built.contains(h),
            false,
        )
        .unwrap();
        assert_eq!(
            actions(&f, &plan),
            vec![("a".into(), Change::Added, Action::Repoint)]
        );
    }

    #[test]
    fn an_unselected_unbuilt_upstream_is_an_error_and_removed_models_are_listed() {
        let f = fixture(&[("a", "select 1 as x"), ("b", "select * from a")]);
        let b = f.dag.find("b").unwrap();
        let err = plan(
            &f.dag,
            &f.prints,
            &[b],
            "dev",
            &BTreeMap::new(),
            |_| false,
            false,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("reads `a`, which environment `dev` has never built"),
            "{err}"
        );
        let mut recorded = record(&f);
        recorded.insert("gone".into(), recorded["a"].clone());
        let all = f.dag.order.clone();
        let built: HashSet<Hash> = f.prints.full.iter().copied().collect();
        let plan = plan(
            &f.dag,
            &f.prints,
            &all,
            "dev",
            &recorded,
            |h| built.contains(h),
            false,
        )
        .unwrap();
        assert_eq!(plan.removed, vec!["gone".to_string()]);
        assert!(plan.steps.iter().all(|s| s.action == Action::Reuse));
    }
}
