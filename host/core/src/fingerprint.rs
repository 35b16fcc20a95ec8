//! Fingerprints: what makes two builds of a node the same build.
//!
//! Every node has two hashes (blake3, length-prefixed fields, see
//! [`Hasher`]):
//!
//! - **local**: the node on its own, starting with its name: a build
//!   belongs to one node, so two models (or seeds) with the same content
//!   never share a relation, its staging names or, for a model that keeps
//!   history, its rows.
//!   - a model: its canonical SQL (formatted from the AST, so whitespace and
//!     comments do not count; references appear by the name written), its
//!     config except what cannot change the result (`tags`, `enabled`,
//!     where it is published: `schema`, `alias`, and what it is said to
//!     be: `description`, `columns`), the
//!     relation each declared source it reads resolves to, and the hashes of
//!     the materialization plugin that builds it and of the target's adapter
//!     plugin (an ephemeral model has no materialization plugin: zeros),
//!     and of every macro plugin that expanded a call in it; for a model
//!     using `if_incremental()`, the canonical SQL of its incremental build
//!     too;
//!   - a seed: the CSV file's bytes, its column-type overrides, and the
//!     adapter plugin's hash.
//! - **fingerprint**: the local hash and, for each upstream node by name,
//!   the upstream's fingerprint: a Merkle DAG, so a change reaches every
//!   descendant. A model that reads an ephemeral model also lists that
//!   model's upstreams among its own (`Dag::new`), and the ephemeral
//!   model's fingerprint covers its SQL, so inlined SQL counts.
//!
//! A fingerprint names one node's build: its physical relation is named by
//! it and shared by every environment that points at it.
//! The local hash tells a direct change ("modified") from one that only
//! arrived from upstream.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use rayon::prelude::*;

use crate::dag::{Dag, EPHEMERAL, NodeId, NodeKind};
use crate::hash::{Hash, Hasher};
use crate::project::Project;

/// The plugins that build a project on one target, by content hash.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PluginHashes {
    pub adapter: Hash,
    /// Materialization strategy name -> the component that provides it.
    pub strategies: BTreeMap<String, Hash>,
}

/// Per node id: its local hash and its fingerprint.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fingerprints {
    pub local: Vec<Hash>,
    pub full: Vec<Hash>,
}

/// The local hash of every node, or the name of a strategy no plugin
/// provides (with the first model that asks for it).
pub fn local_hashes(
    project: &Project,
    dag: &Dag,
    plugins: &PluginHashes,
) -> Result<Vec<Hash>, (String, String)> {
    (0..dag.nodes.len())
        .into_par_iter()
        .map(|id| local_hash(project, dag, id, plugins))
        .collect()
}

/// Node `id`'s local hash: what it is made from besides its upstreams.
fn local_hash(
    project: &Project,
    dag: &Dag,
    id: NodeId,
    plugins: &PluginHashes,
) -> Result<Hash, (String, String)> {
    let node = &dag.nodes[id];
    match &node.kind {
        NodeKind::Seed(config) => {
            let mut hasher = Hasher::new("orbital fingerprint v1 seed");
            hasher.field(&node.name).field(project.seeds[id].content.0);
            for (column, logical) in &config.column_types {
                hasher.field(column).field(format!("{logical:?}"));
            }
            hasher.field(plugins.adapter.0);
            Ok(hasher.finish())
        }
        // Tests build nothing and are never recorded; the hash only
        // names what one ran.
        NodeKind::Test(test) => Ok(Hasher::new("orbital fingerprint v1 test")
            .field(test.query.sql.as_bytes())
            .field(format!("{:?}", test.severity))
            .finish()),
        NodeKind::Model(model) => {
            let strategy = &model.config.materialized;
            // Ephemeral models are inlined by the host: no plugin builds them.
            let plugin = match plugins.strategies.get(strategy) {
                Some(plugin) => plugin.0,
                None if strategy == EPHEMERAL => [0; 32],
                None => return Err((strategy.clone(), node.name.clone())),
            };
            let mut hasher = Hasher::new("orbital fingerprint v1 model");
            hasher
                .field(&node.name)
                .field(model.sql.as_bytes())
                .field(strategy);
            if let Some(incremental) = &model.incremental_sql {
                hasher.field("incremental build").field(incremental);
            }
            // serde_json keeps object keys sorted (no preserve_order), so
            // equal configs serialize to equal bytes.
            // Where the model is published and what it is said to be
            // do not change what its build holds.
            let not_built = crate::project::NOT_BUILT;
            for (key, value) in &model.config.extra {
                if !not_built.contains(&key.as_str()) {
                    hasher.field(key).field(value.to_string());
                }
            }
            for (key, referent) in &model.references {
                if let crate::Referent::Source(relation) = referent {
                    hasher.field(key).field(relation.quoted());
                }
            }
            hasher.field(plugin).field(plugins.adapter.0);
            for macros in &model.macros {
                hasher.field(macros.0);
            }
            Ok(hasher.finish())
        }
    }
}

/// One node's fingerprint from its local hash and its upstreams', which go
/// in name order (a [`Dag`] keeps `depends_on` in it), so that node ids
/// never count.
pub fn combine_one(
    dag: &Dag,
    id: NodeId,
    local: Hash,
    mut upstream: impl FnMut(NodeId) -> Hash,
) -> Hash {
    // Deriving the key from the purpose is a fifth of hashing a node.
    static NODE: LazyLock<Hasher> = LazyLock::new(|| Hasher::new("orbital fingerprint v1 node"));
    let mut hasher = NODE.clone();
    hasher.field(local.0);
    for &dep in &dag.nodes[id].depends_on {
        hasher.field(&dag.nodes[dep].name).field(upstream(dep).0);
    }
    hasher.finish()
}

/// Local hashes and fingerprints of the whole project as written.
pub fn fingerprint(
    project: &Project,
    dag: &Dag,
    plugins: &PluginHashes,
) -> Result<Fingerprints, (String, String)> {
    crate::threads::install(|| {
        let local = local_hashes(project, dag, plugins)?;
        let full = combine_all(dag, &local);
        Ok(Fingerprints { local, full })
    })
}

/// The fingerprints of `dag`, a compile of `project` made from an earlier
/// one whose fingerprints are `earlier` by compiling again only the models
/// `changed` (node ids): those and the tests are hashed again, and what is
/// downstream of a node whose fingerprint changed. Node ids mean the same in
/// both compiles (see [`crate::Previous`]); when the counts differ,
/// everything is hashed.
pub fn fingerprint_since(
    project: &Project,
    dag: &Dag,
    plugins: &PluginHashes,
    earlier: &Fingerprints,
    changed: &[NodeId],
) -> Result<Fingerprints, (String, String)> {
    let count = dag.nodes.len();
    if earlier.local.len() != count || earlier.full.len() != count {
        return fingerprint(project, dag, plugins);
    }
    let tests = (project.seeds.len() + project.models.len()).min(count);
    let mut local = earlier.local.clone();
    let mut again = vec![false; count];
    for id in changed.iter().copied().chain(tests..count) {
        local[id] = local_hash(project, dag, id, plugins)?;
        again[id] = true;
    }
    let mut full = earlier.full.clone();
    combine_levels(dag, &local, &mut full, again);
    Ok(Fingerprints { local, full })
}

/// Every node's fingerprint.
fn combine_all(dag: &Dag, local: &[Hash]) -> Vec<Hash> {
    let mut full = vec![Hash::default(); dag.nodes.len()];
    combine_levels(dag, local, &mut full, vec![true; dag.nodes.len()]);
    full
}

/// Hashes the nodes marked `again` into `full`, one level of the graph at
/// a time: a node's level is one more than its deepest upstream's, so the
/// nodes of a level read only earlier levels and hash on all cores.
/// A node's fingerprint is its local hash, its upstreams' names and
/// fingerprints: one whose inputs are all as they were is as it was, and
/// so is everything downstream of it that nothing else changed, so only
/// the children of a node whose fingerprint changed are hashed again.
/// (An upstream added or dropped is a change of the SQL that names it.)
fn combine_levels(dag: &Dag, local: &[Hash], full: &mut [Hash], mut again: Vec<bool>) {
    for ids in levels(dag) {
        let ids: Vec<NodeId> = ids.into_iter().filter(|&id| again[id]).collect();
        let hash = |&id: &NodeId| (id, combine_one(dag, id, local[id], |dep| full[dep]));
        // Hashing a few nodes on other threads costs more than it saves.
        let hashed: Vec<(NodeId, Hash)> = match ids.len() {
            0..64 => ids.iter().map(hash).collect(),
            _ => crate::threads::install(|| ids.par_iter().map(hash).collect()),
        };
        for (id, fingerprint) in hashed {
            if fingerprint != full[id] {
                full[id] = fingerprint;
                for &child in &dag.children[id] {
                    again[child] = true;
                }
            }
        }
    }
}

/// The graph's nodes by level: a node's level is one more than its
/// deepest upstream's, so the nodes of a level read only earlier levels.
fn levels(dag: &Dag) -> Vec<Vec<NodeId>> {
    let mut level = vec![0usize; dag.nodes.len()];
    let mut levels: Vec<Vec<NodeId>> = Vec::new();
    for &id in &dag.order {
        let depth = (dag.nodes[id].depends_on.iter())
            .map(|&dep| level[dep] + 1)
            .max()
            .unwrap_or(0);
        level[id] = depth;
        if levels.len() <= depth {
            levels.resize_with(depth + 1, Vec::new);
        }
        levels[depth].push(id);
    }
    levels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprints(models: &[(&str, &str)], plugin: u8) -> BTreeMap<String, (Hash, Hash)> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("orbital.toml"),
            "name = \"p\"\n[targets.dev]\nurl = \"sqlite://p.db\"\n",
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("models")).unwrap();
        std::fs::create_dir_all(dir.path().join("seeds")).unwrap();
        std::fs::write(dir.path().join("seeds/raw.csv"), "id\n1\n").unwrap();
        for (name, sql) in models {
            std::fs::write(dir.path().join(format!("models/{name}.sql")), sql).unwrap();
        }
        let (project, dag) = load_and_compile(dir.path());
        let prints = fingerprint(&project, &dag, &plugins(plugin)).unwrap();
        dag.nodes
            .iter()
            .enumerate()
            .map(|(id, n)| (n.name.clone(), (prints.local[id], prints.full[id])))
            .collect()
    }

    fn load_and_compile(dir: &std::path::Path) -> (Project, Dag) {
        let project = Project::load(dir).unwrap();
        let target = project.config.target(None).unwrap().1.clone();
        let dag = crate::compile(&project, &target, Default::default())
            .unwrap()
            .dag
            .as_ref()
            .clone();
        (project, dag)
    }

    /// The plugins, with the `view` strategy's hash made of `view`.
    fn plugins(view: u8) -> PluginHashes {
        PluginHashes {
            adapter: Hash::of(b"adapter"),
            strategies: [
                ("view".to_string(), Hash::of(&[view])),
                ("table".to_string(), Hash::of(b"table")),
            ]
            .into(),
        }
    }

    #[test]
    fn level_by_level_fingerprints_equal_the_topological_fold() {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in crate::synthetic::project(500, 3) {
            let full = dir.path().join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        }
        let (project, dag) = load_and_compile(dir.path());
        let prints = fingerprint(&project, &dag, &plugins(1)).unwrap();
        let mut folded = vec![Hash::default(); dag.nodes.len()];
        for &id in &dag.order {
            folded[id] = combine_one(&dag, id, prints.local[id], |dep| folded[dep]);
        }
        assert_eq!(prints.full, folded);
    }

    #[test]
    fn whitespace_and_comments_change_nothing() {
        let a = fingerprints(&[("a", "select id from raw"), ("b", "select * from a")], 1);
        let b = fingerprints(
            &[
                ("a", "-- note\nSELECT  id\n FROM raw /* x */"),
                ("b", "select * from a"),
            ],
            1,
        );
        assert_eq!(a, b);
    }

    #[test]
    fn a_change_reaches_descendants_but_not_their_local_hash() {
        let a = fingerprints(&[("a", "select id from raw"), ("b", "select * from a")], 1);
        let b = fingerprints(
            &[
                ("a", "select id + 1 as id from raw"),
                ("b", "select * from a"),
            ],
            1,
        );
        assert_ne!(a["a"].0, b["a"].0);
        assert_ne!(a["b"].1, b["b"].1);
        assert_eq!(a["b"].0, b["b"].0);
        assert_eq!(a["raw"], b["raw"]);
    }

    #[test]
    fn config_and_plugins_count_but_tags_do_not() {
        let base = fingerprints(&[("a", "select id from raw")], 1);
        let tagged = fingerprints(&[("a", "-- config: tags = ['x']\nselect id from raw")], 1);
        assert_eq!(base, tagged);
        let table = fingerprints(
            &[("a", "-- config: materialized = 'table'\nselect id from raw")],
            1,
        );
        assert_ne!(base["a"], table["a"]);
        let upgraded = fingerprints(&[("a", "select id from raw")], 2);
        assert_ne!(base["a"], upgraded["a"]);
    }
}
