//! The plan: the selected part of the project diffed against what an
//! environment has recorded, deciding per node whether to build, to point
//! the environment at a relation some environment already built, or to
//! leave it as it is.
//!
//! Pure: the caller passes the recorded state in.
//!
//! Stateful models (incremental models and snapshots) carry history that no
//! fingerprint can rebuild, so for them a fingerprint is where the table
//! lives, not a promise of its contents:
//!
//! - a first build (nothing to continue) or `--full-refresh` builds the
//!   whole table: [`Action::Build`];
//! - otherwise every run continues a table ([`Action::Continue`]): the one
//!   of the new fingerprint if some environment built it (in place), else
//!   the environment's current one, which the materialization copies to the
//!   new fingerprint's relation before adding the increment. The old table
//!   stays as it was for any environment still pointing at it; history is
//!   never dropped except by an explicit `--full-refresh` or `gc`.
//!
//! A continued table has new rows under an unchanged fingerprint, so a
//! selected table built from it (directly or through views) is rebuilt in
//! place ([`Action::Refresh`]) instead of reused.

use serde::{Deserialize, Serialize};

use crate::config::Target;
use crate::dag::{Dag, NodeId, RelationName};
use crate::error::{Error, Result};
use crate::fingerprint::{Fingerprints, combine_one};
use crate::hash::Hash;
use crate::selector::StateDiff;

/// The environment a run uses when none is named.
pub const DEFAULT_ENVIRONMENT: &str = "prod";

/// Checks an environment name: it becomes part of relation names. On a
/// target without schemas an environment's relations are `<env>__<name>`;
/// an environment name without `__` that does not end in `_` makes that
/// split unique, so two environments never name the same relation.
pub fn check_environment_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains("__")
        && !name.ends_with('_')
        && name != BUILD_PREFIX.trim_end_matches('_');
    if ok {
        Ok(())
    } else {
        Err(Error::Environment {
            name: name.to_string(),
        })
    }
}

/// What every physical relation's name starts with.
const BUILD_PREFIX: &str = "orbital__";

/// Refuses, before anything is written, a project whose relation names
/// could land on another relation Orbital keeps: a node named like a build
/// (`orbital__...`), and on a target without schemas (SQLite), where
/// environment `dev` names its relations `dev__<name>`, a node whose name
/// has that form for the environment being run (`environment`) or, in the
/// default environment, for one of the warehouse's `environments`.
pub fn check_relation_names(
    dag: &Dag,
    target: &Target,
    environment: &str,
    environments: &[String],
) -> Result<()> {
    let mut errors = Vec::new();
    for node in dag.nodes.iter().filter(|n| !n.is_test()) {
        let at = || crate::error::Location::new(&node.path, 1, 1);
        // What it is published as: its name, or its `alias`.
        let published = &node.relation.identifier;
        if published.starts_with(BUILD_PREFIX) {
            errors.push(Error::Config {
                location: at(),
                message: format!(
                    "`{published}`: names starting with `{BUILD_PREFIX}` are Orbital's own (its builds); rename the file",
                ),
            });
            continue;
        }
        if target.schema.is_some() {
            continue;
        }
        let owner = match environment == DEFAULT_ENVIRONMENT {
            false => Some(environment),
            true => environments
                .iter()
                .map(String::as_str)
                .find(|env| *env != DEFAULT_ENVIRONMENT && prefixed(published, env)),
        };
        if let Some(env) = owner.filter(|env| prefixed(published, env)) {
            errors.push(Error::Config {
                location: at(),
                message: format!(
                    "`{}` has the name environment `{env}` gives its view of `{}` (this target has no schemas, so environment relations are named `{env}__<name>`): rename the file, or use another environment name",
                    published,
                    &published[env.len() + 2..]
                ),
            });
        }
    }
    Error::collect(errors)
}

fn prefixed(name: &str, environment: &str) -> bool {
    name.strip_prefix(environment)
        .is_some_and(|rest| rest.starts_with("__"))
}

/// Where the build with `fingerprint` of node `name` lives:
/// `orbital__<name>__<12 hex digits>` in the target's schema. Every
/// environment shares it.
pub fn physical_relation(target: &Target, name: &str, fingerprint: &Hash) -> RelationName {
    RelationName {
        schema: target.schema.clone(),
        identifier: format!("{BUILD_PREFIX}{name}__{}", fingerprint.short()),
    }
}

/// The relation users query in `environment` for the node `published` as
/// that relation (its [`crate::Node::relation`]): a view onto the physical
/// relation. In the default environment it is `published` itself; in
/// another, where the database has schemas, the same name in the schema
/// `<schema>__<environment>`, and where it has none (SQLite), the name
/// `<environment>__<name>`.
pub fn environment_relation(environment: &str, published: &RelationName) -> RelationName {
    if environment == DEFAULT_ENVIRONMENT {
        return published.clone();
    }
    match &published.schema {
        Some(schema) => RelationName {
            schema: Some(format!("{schema}__{environment}")),
            identifier: published.identifier.clone(),
        },
        None => RelationName {
            schema: None,
            identifier: format!("{environment}__{}", published.identifier),
        },
    }
}

/// The schema `environment`'s relations live in ([`environment_relation`]).
pub fn environment_schema(target: &Target, environment: &str) -> Option<String> {
    match (&target.schema, environment == DEFAULT_ENVIRONMENT) {
        (Some(schema), false) => Some(format!("{schema}__{environment}")),
        (schema, _) => schema.clone(),
    }
}

/// What an environment records, by node name. Hashed, not ordered: a plan
/// looks up every node (10k string-keyed tree lookups: about 2 ms).
pub type RecordedByName = rustc_hash::FxHashMap<String, Recorded>;

/// What an environment records for one node.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub fingerprint: Hash,
    pub local: Hash,
}

/// How a node differs from the environment's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The environment already points at this fingerprint.
    Reuse,
    /// Some environment built this fingerprint: point this one at it.
    Repoint,
    /// Run the model's SQL (or load the seed).
    Build,
    /// A stateful model: add this run's increment to the table of
    /// [`Step::previous`] (copied forward when that is another fingerprint).
    Continue,
    /// Rebuild the existing relation of this fingerprint in place: it reads
    /// a stateful model this run continues.
    Refresh,
}

impl Action {
    /// Whether the node's SQL runs.
    pub fn runs(self) -> bool {
        matches!(self, Action::Build | Action::Continue | Action::Refresh)
    }
}

/// Where the warehouse disagreed with the state store, and what the run
/// does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Repair {
    /// The store records this build (or the table a stateful model would
    /// continue), but the warehouse has no such relation: built again
    /// (from scratch, for a stateful model: its history is gone).
    Missing,
    /// The environment's relation is missing or reads another build:
    /// pointed back at this one.
    Repoint,
}

/// What the warehouse holds, as far as a plan needs it: read from its
/// catalog, so that the state store's records are verified, not trusted.
pub trait WarehouseState {
    /// Whether the recorded build with `fingerprint` exists.
    fn has_build(&self, fingerprint: &Hash) -> bool;
    /// Whether node `id`'s relation in the planned environment reads the
    /// build with `fingerprint`.
    fn points_at(&self, id: NodeId, fingerprint: &Hash) -> bool;
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub id: NodeId,
    pub change: Change,
    pub action: Action,
    /// Set where the warehouse disagreed with the store.
    pub repair: Option<Repair>,
    /// The fingerprint this run gives the node: as written, except that an
    /// unselected upstream counts with the version the environment has.
    pub fingerprint: Hash,
    /// For [`Action::Continue`]: the fingerprint whose table it continues.
    pub previous: Option<Hash>,
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
pub fn state_diff(dag: &Dag, prints: &Fingerprints, recorded: &RecordedByName) -> StateDiff {
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

/// How to plan.
#[derive(Clone, Copy, Default)]
pub struct PlanOptions<'a> {
    /// The warehouse's catalog; `None` trusts the store (a warehouse that
    /// was never written has nothing to check).
    pub warehouse: Option<&'a dyn WarehouseState>,
    /// Rebuild every selected node from scratch.
    pub full_refresh: bool,
    /// The default environment's records, when planning another: a
    /// stateful model the planned environment has never built continues the
    /// default environment's table rather than starting empty, so history
    /// is not lost when the environment is promoted.
    pub base: Option<&'a RecordedByName>,
}

/// A node's fingerprint when every upstream will be what the project's
/// fingerprints assumed: then it is the project's, without hashing again
/// (10k unchanged models: 10 ms of the plan).
fn as_fingerprinted(
    dag: &Dag,
    prints: &Fingerprints,
    effective: &[Option<Hash>],
    id: NodeId,
) -> Option<Hash> {
    dag.nodes[id]
        .depends_on
        .iter()
        .all(|&dep| effective[dep] == Some(prints.full[dep]))
        .then_some(prints.full[id])
}

/// Plans `selection` for the environment `environment`, whose records are
/// `recorded`; `recorded_build` tells whether the store records a build of
/// a fingerprint, which counts as built only where
/// [`PlanOptions::warehouse`] confirms it.
pub fn plan(
    dag: &Dag,
    prints: &Fingerprints,
    selection: &[NodeId],
    environment: &str,
    recorded: &RecordedByName,
    recorded_build: impl Fn(&Hash) -> bool,
    options: PlanOptions<'_>,
) -> Result<Plan> {
    let full_refresh = options.full_refresh;
    // Whether the store records a build of `fp`, and whether it is there:
    // asked once per fingerprint (a store's builds are a tree of 10k+).
    let build_of = |fp: &Hash| {
        let recorded = recorded_build(fp);
        let built = recorded && options.warehouse.is_none_or(|w| w.has_build(fp));
        (recorded, built)
    };
    let built = |fp: &Hash| build_of(fp).1;
    let missing = |fp: &Hash| matches!(build_of(fp), (true, false));
    let points_at = |id: NodeId, fp: &Hash| options.warehouse.is_none_or(|w| w.points_at(id, fp));
    let mut selected = vec![false; dag.nodes.len()];
    selection.iter().for_each(|&id| selected[id] = true);
    // What each node will be once the run is done, if anything.
    let mut effective: Vec<Option<Hash>> = vec![None; dag.nodes.len()];
    // Whether a node's rows change this run though its fingerprint may not:
    // a continued stateful model, and what reads it live (views, inlining).
    let mut moving = vec![false; dag.nodes.len()];
    let mut steps = Vec::with_capacity(selection.len());
    let mut kept_records = 0;
    for &id in &dag.order {
        let node = &dag.nodes[id];
        let record = recorded.get(&node.name);
        if node.is_test() {
            // Run by the scheduler, never built or recorded.
            continue;
        }
        let upstream_moving = node.depends_on.iter().any(|&d| moving[d]);
        kept_records += usize::from(record.is_some() && !node.is_ephemeral());
        if node.is_ephemeral() {
            moving[id] = upstream_moving;
            // Never built: it is what its upstreams will be, inlined.
            if let Some(unchanged) = as_fingerprinted(dag, prints, &effective, id) {
                effective[id] = Some(unchanged);
                continue;
            }
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
                record.map(|r| r.fingerprint).filter(|fp| !missing(fp))
            };
            continue;
        }
        let mut unbuilt = None;
        let fingerprint = as_fingerprinted(dag, prints, &effective, id).unwrap_or_else(|| {
            combine_one(dag, id, prints.local[id], |dep| {
                effective[dep].unwrap_or_else(|| {
                    // An ephemeral upstream is unbuilt only when one of its own
                    // upstreams is, and those are this node's too: name that one.
                    if !dag.nodes[dep].is_ephemeral() {
                        unbuilt.get_or_insert(dep);
                    }
                    Hash::default()
                })
            })
        });
        if let Some(dep) = unbuilt {
            let upstream = &dag.nodes[dep];
            let dropped = recorded
                .get(&upstream.name)
                .is_some_and(|r| missing(&r.fingerprint));
            return Err(match dropped {
                true => Error::MissingUpstream {
                    model: node.name.clone(),
                    upstream: upstream.name.clone(),
                },
                false => Error::Unbuilt {
                    model: node.name.clone(),
                    upstream: upstream.name.clone(),
                    environment: environment.to_string(),
                },
            });
        }
        effective[id] = Some(fingerprint);
        let change = match record {
            None => Change::Added,
            Some(r) if r.local != prints.local[id] => Change::Modified,
            Some(r) if r.fingerprint != fingerprint => Change::Indirect,
            Some(_) => Change::Unchanged,
        };
        let mut previous = None;
        let mut repair = None;
        let mut action = if full_refresh {
            Action::Build
        } else if node.is_stateful() {
            let base = options.base.and_then(|base| base.get(&node.name));
            previous = continues(record.or(base), &fingerprint, built);
            let lost =
                missing(&fingerprint) || record.or(base).is_some_and(|r| missing(&r.fingerprint));
            match previous {
                Some(_) => Action::Continue,
                None => {
                    repair = lost.then_some(Repair::Missing);
                    Action::Build
                }
            }
        } else {
            let (recorded_build, built) = build_of(&fingerprint);
            if built && record.is_some_and(|r| r.fingerprint == fingerprint) {
                match points_at(id, &fingerprint) {
                    true => Action::Reuse,
                    false => {
                        repair = Some(Repair::Repoint);
                        Action::Repoint
                    }
                }
            } else if built {
                Action::Repoint
            } else {
                repair = recorded_build.then_some(Repair::Missing);
                Action::Build
            }
        };
        let reads_live = node
            .as_model()
            .is_some_and(|m| m.config.materialized == "view");
        if upstream_moving && !reads_live && matches!(action, Action::Reuse | Action::Repoint) {
            action = Action::Refresh;
        }
        moving[id] = action == Action::Continue
            || action == Action::Refresh
            || (upstream_moving && reads_live);
        steps.push(Step {
            id,
            change,
            action,
            repair,
            fingerprint,
            previous,
        });
    }
    // Names are unique: when every record names a node that keeps a
    // relation, none is removed.
    let removed = match kept_records == recorded.len() {
        true => Vec::new(),
        false => removed(dag, recorded),
    };
    Ok(Plan {
        steps,
        removed,
        reads: effective,
    })
}

/// The recorded relations the project no longer has. An ephemeral model
/// has no relation: one recorded (it was built before it became ephemeral)
/// leaves the environment.
fn removed(dag: &Dag, recorded: &RecordedByName) -> Vec<String> {
    let present: std::collections::HashSet<&str> = dag
        .nodes
        .iter()
        .filter(|n| !n.is_ephemeral() && !n.is_test())
        .map(|n| n.name.as_str())
        .collect();
    let mut removed: Vec<String> = (recorded.keys())
        .filter(|name| !present.contains(name.as_str()))
        .cloned()
        .collect();
    removed.sort_unstable();
    removed
}

/// The table a stateful model continues: its new fingerprint's, if some
/// environment built it, else the one this environment (or, for a new
/// environment, the default one) has.
fn continues(
    record: Option<&Recorded>,
    fingerprint: &Hash,
    built: impl Fn(&Hash) -> bool,
) -> Option<Hash> {
    if built(fingerprint) {
        return Some(*fingerprint);
    }
    record
        .map(|r| r.fingerprint)
        .filter(|previous| built(previous))
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
        let dag = crate::compile(&project, &target, Default::default())
            .unwrap()
            .dag
            .as_ref()
            .clone();
        let plugins = PluginHashes {
            adapter: Hash::of(b"a"),
            strategies: [
                ("view".to_string(), Hash::of(b"v")),
                ("table".to_string(), Hash::of(b"t")),
                ("incremental".to_string(), Hash::of(b"i")),
            ]
            .into(),
        };
        let prints = fingerprint(&project, &dag, &plugins).unwrap();
        Fixture {
            _dir: dir,
            dag,
            prints,
        }
    }

    fn record(f: &Fixture) -> RecordedByName {
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
            PlanOptions::default(),
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
            &RecordedByName::default(),
            |h| built.contains(h),
            PlanOptions::default(),
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
            &RecordedByName::default(),
            |_| false,
            PlanOptions::default(),
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
            PlanOptions::default(),
        )
        .unwrap();
        assert_eq!(plan.removed, vec!["gone".to_string()]);
        assert!(plan.steps.iter().all(|s| s.action == Action::Reuse));
    }

    #[test]
    fn a_model_that_became_ephemeral_leaves_the_environment() {
        let before = fixture(&[("a", "select 1 as x"), ("b", "select * from a")]);
        let recorded = record(&before);
        let after = fixture(&[
            ("a", "-- config: materialized = 'ephemeral'\nselect 1 as x"),
            ("b", "select * from a"),
        ]);
        let plan = plan_all(&after, &recorded, false);
        assert_eq!(plan.removed, vec!["a".to_string()]);
        // Nothing else moved: with every record kept, none is removed.
        let unchanged = plan_all(&before, &recorded, false);
        assert!(unchanged.removed.is_empty());
    }

    #[test]
    fn a_model_selected_without_its_changed_upstream_reads_the_upstream_as_built() {
        let before = fixture(&[("a", "select 1 as x"), ("b", "select * from a")]);
        let recorded = record(&before);
        let built: HashSet<Hash> = before.prints.full.iter().copied().collect();
        let after = fixture(&[("a", "select 2 as x"), ("b", "select * from a")]);
        let b = after.dag.find("b").unwrap();
        let plan = plan(
            &after.dag,
            &after.prints,
            &[b],
            "prod",
            &recorded,
            |h| built.contains(h),
            PlanOptions::default(),
        )
        .unwrap();
        // `a` stays as built, so `b` is what it was: not the project's new
        // fingerprint, which assumes the edited `a`.
        assert_eq!(plan.steps.len(), 1);
        assert_eq!(plan.steps[0].fingerprint, before.prints.full[b]);
        assert_ne!(plan.steps[0].fingerprint, after.prints.full[b]);
        assert_eq!(
            (plan.steps[0].change, plan.steps[0].action),
            (Change::Unchanged, Action::Reuse)
        );
    }

    fn plan_all(f: &Fixture, recorded: &RecordedByName, full_refresh: bool) -> Plan {
        let built: HashSet<Hash> = recorded.values().map(|r| r.fingerprint).collect();
        plan(
            &f.dag,
            &f.prints,
            &f.dag.order,
            "prod",
            recorded,
            |h| built.contains(h),
            PlanOptions {
                full_refresh,
                ..PlanOptions::default()
            },
        )
        .unwrap()
    }

    /// A warehouse that lacks some builds and whose views read others.
    struct Warehouse {
        missing: HashSet<Hash>,
        stray: HashSet<NodeId>,
    }

    impl WarehouseState for Warehouse {
        fn has_build(&self, fingerprint: &Hash) -> bool {
            !self.missing.contains(fingerprint)
        }
        fn points_at(&self, id: NodeId, _: &Hash) -> bool {
            !self.stray.contains(&id)
        }
    }

    #[test]
    fn the_warehouse_overrules_the_store() {
        let f = fixture(&[
            ("a", "select 1 as x"),
            ("b", "select * from a"),
            ("c", "select * from b"),
            ("events", EVENTS),
        ]);
        let recorded = record(&f);
        let built: HashSet<Hash> = recorded.values().map(|r| r.fingerprint).collect();
        let [a, b, events] = ["a", "b", "events"].map(|n| f.dag.find(n).unwrap());
        let warehouse = Warehouse {
            missing: [f.prints.full[a], f.prints.full[events]].into(),
            stray: [b].into(),
        };
        let plan_with = |selection: &[NodeId]| {
            plan(
                &f.dag,
                &f.prints,
                selection,
                "prod",
                &recorded,
                |h| built.contains(h),
                PlanOptions {
                    warehouse: Some(&warehouse),
                    ..PlanOptions::default()
                },
            )
        };
        let plan = plan_with(&f.dag.order).unwrap();
        let of = |name| {
            let s = step(&f, &plan, name);
            (s.action, s.repair)
        };
        assert_eq!(of("a"), (Action::Build, Some(Repair::Missing)));
        assert_eq!(of("b"), (Action::Repoint, Some(Repair::Repoint)));
        assert_eq!(of("c"), (Action::Reuse, None));
        // A stateful model whose table is gone starts again, and says so.
        assert_eq!(of("events"), (Action::Build, Some(Repair::Missing)));
        // Selected alone, a reader of the missing build is told why.
        let err = plan_with(&[b]).unwrap_err();
        assert!(
            err.to_string().contains(
                "reads `a`, whose build the state store records but the warehouse no longer has"
            ),
            "{err}"
        );
    }

    fn step<'a>(f: &Fixture, plan: &'a Plan, name: &str) -> &'a Step {
        let id = f.dag.find(name).unwrap();
        plan.steps.iter().find(|s| s.id == id).unwrap()
    }

    const EVENTS: &str = "-- config: materialized = 'incremental'\n\
        select 1 as id where if_incremental(1 > (select max(id) from this))";

    #[test]
    fn an_incremental_model_continues_its_table_and_what_reads_it_refreshes() {
        let f = fixture(&[
            ("events", EVENTS),
            (
                "daily",
                "-- config: materialized = 'table'\nselect * from events",
            ),
            ("live", "select * from events"),
            ("other", "-- config: materialized = 'table'\nselect 2 as y"),
        ]);
        let first = plan_all(&f, &RecordedByName::default(), false);
        assert_eq!(step(&f, &first, "events").action, Action::Build);
        let recorded = record(&f);
        let again = plan_all(&f, &recorded, false);
        let events = step(&f, &again, "events");
        assert_eq!(events.action, Action::Continue);
        assert_eq!(events.previous, Some(recorded["events"].fingerprint));
        assert_eq!(step(&f, &again, "daily").action, Action::Refresh);
        assert_eq!(step(&f, &again, "live").action, Action::Reuse);
        assert_eq!(step(&f, &again, "other").action, Action::Reuse);
        let refreshed = plan_all(&f, &recorded, true);
        assert_eq!(step(&f, &refreshed, "events").action, Action::Build);
        assert_eq!(step(&f, &refreshed, "events").previous, None);
    }

    #[test]
    fn a_changed_incremental_model_continues_its_old_table_forward() {
        let before = fixture(&[("events", EVENTS)]);
        let recorded = record(&before);
        let after = fixture(&[(
            "events",
            "-- config: materialized = 'incremental'\nselect 2 as id where if_incremental(1 > (select max(id) from this))",
        )]);
        let plan = plan_all(&after, &recorded, false);
        let events = step(&after, &plan, "events");
        assert_eq!(events.change, Change::Modified);
        assert_eq!(events.action, Action::Continue);
        assert_eq!(events.previous, Some(recorded["events"].fingerprint));
        assert_ne!(events.fingerprint, recorded["events"].fingerprint);
    }
}
