//! What front ends ask for: plain structs, serde-ready for the API.

use std::path::PathBuf;

use orbital_core::{CompiledProject, Project, Selection};
use serde::{Deserialize, Serialize};

/// Which nodes a request acts on, and on which target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Selector {
    /// Names, `+name`, `name+`, `tag:x`, `path:dir`, `state:modified`...;
    /// empty: everything.
    pub select: Vec<String>,
    pub exclude: Vec<String>,
    /// The target in orbital.toml (default: default-target, or the only one).
    pub target: Option<String>,
    /// A dbt project's vars over its own (`--vars`): YAML or JSON text.
    #[serde(default)]
    pub vars: Option<String>,
}

impl Selector {
    /// Whether the request covers the whole project.
    pub fn is_everything(&self) -> bool {
        self.select.is_empty() && self.exclude.is_empty()
    }
}

/// The commands that run nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunCommand {
    /// Load seeds.
    Seed,
    /// Build models.
    Run,
    /// Seeds, models and their data tests; what is built from a model whose
    /// test fails is skipped.
    Build,
    /// Data tests.
    Test,
}

impl RunCommand {
    pub fn name(self) -> &'static str {
        match self {
            RunCommand::Seed => "seed",
            RunCommand::Run => "run",
            RunCommand::Build => "build",
            RunCommand::Test => "test",
        }
    }

    /// Whether the command acts on `node`. Ephemeral models are inlined
    /// into their readers, never run.
    pub(crate) fn includes(self, node: &orbital_core::Node) -> bool {
        match self {
            RunCommand::Seed => node.is_seed(),
            RunCommand::Run => node.as_model().is_some() && !node.is_ephemeral(),
            RunCommand::Build => !node.is_ephemeral(),
            RunCommand::Test => node.is_test(),
        }
    }

    pub(crate) fn loads_seeds(self) -> bool {
        matches!(self, RunCommand::Seed | RunCommand::Build)
    }

    pub(crate) fn runs_tests(self) -> bool {
        matches!(self, RunCommand::Build | RunCommand::Test)
    }
}

/// `seed`, `run`, `build` or `test`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRequest {
    pub project: PathBuf,
    pub command: RunCommand,
    #[serde(default)]
    pub selector: Selector,
    /// Nodes at once (default: the target's `threads`, else 4).
    #[serde(default)]
    pub threads: Option<usize>,
    /// Rebuild selected nodes even where a build with the same fingerprint exists.
    #[serde(default)]
    pub full_refresh: bool,
    /// The environment (default: prod).
    #[serde(default)]
    pub env: Option<String>,
    /// Peers (by their name in the daemon's peers.toml) the run may hand
    /// its stateless builds to; empty: all are built here.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Keep each data test's failing rows in a table of its own.
    #[serde(default)]
    pub store_failures: bool,
}

/// `plan`: what a run would do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanRequest {
    pub project: PathBuf,
    #[serde(default)]
    pub selector: Selector,
    #[serde(default)]
    pub env: Option<String>,
}

/// `promote`: point `to` at `from`'s builds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromoteRequest {
    pub project: PathBuf,
    #[serde(default)]
    pub selector: Selector,
    pub from: String,
    pub to: String,
}

/// The environments of a project's target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvironmentsRequest {
    pub project: PathBuf,
    #[serde(default)]
    pub target: Option<String>,
}

/// `gc`: drop what nothing reaches.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GcRequest {
    pub project: PathBuf,
    #[serde(default)]
    pub selector: Selector,
    #[serde(default)]
    pub dry_run: bool,
}

/// Which nodes a compile lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Listing {
    /// Models, ephemeral ones included (`compile`).
    Models,
    /// Every node (`ls`).
    All,
    /// Every node, with [`Details`] (the daemon's `/v1/project`).
    Detailed,
}

/// `compile` and `ls`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompileRequest {
    pub project: PathBuf,
    #[serde(default)]
    pub selector: Selector,
    pub listing: Listing,
}

/// A compiled project and the nodes a request selected.
pub struct Compiled {
    pub project: std::sync::Arc<Project>,
    pub compiled: CompiledProject,
    pub selection: Selection,
    /// With [`Listing::Detailed`].
    pub details: Option<std::sync::Arc<Details>>,
    /// Names the compiled files this compile writes, when the project is
    /// known by its files' stamps (see `Compiled::write`).
    pub output: Option<orbital_core::Hash>,
}

/// Column names by node name (lowercase).
pub type Columns = std::collections::HashMap<String, Vec<String>>;

/// What is known of each node without running anything.
pub struct Details {
    /// Names these details: equal versions, equal details.
    pub version: orbital_core::Hash,
    /// Per node id; `None` until the project's plugins have been loaded
    /// once (a fingerprint covers them).
    pub fingerprints: Option<Vec<orbital_core::Hash>>,
    /// Column names by node name (lowercase), where the SQL alone says.
    pub columns: Columns,
}
