//! `compile` and `ls`: the project compiled and selected, without touching
//! the warehouse; and the seed checks every loading command makes first.

use std::path::{Path, PathBuf};

use orbital_core::{CompiledProject, Dag, NodeId, Project, Selection};

use crate::components::components;
use crate::error::EngineError;
use crate::macros::PluginMacros;
use crate::request::{CompileRequest, Compiled, Listing};
use crate::{Engine, blocking};

impl Engine {
    /// Loads, compiles and selects the project of `request`.
    pub async fn compile(&self, request: CompileRequest) -> Result<Compiled, EngineError> {
        let engine = self.clone();
        blocking(move || engine.compile_now(&request)).await?
    }

    fn compile_now(&self, request: &CompileRequest) -> Result<Compiled, EngineError> {
        let root = &request.project;
        let project = Project::load(root)?;
        let (_, target) = project.config.target(request.selector.target.as_deref())?;
        let components = components(root, &project.config, || self.project_store(root))?;
        let macros = PluginMacros::new(self, &components, &project.config)?;
        let compiled =
            orbital_core::compile_with(&project, target, &orbital_core::NoCache, &macros)?;
        let mut selection = Selection::resolve(
            &compiled.dag,
            &request.selector.select,
            &request.selector.exclude,
        )?;
        if request.listing == Listing::Models {
            // `compile` shows ephemeral models too.
            selection
                .nodes
                .retain(|&id| compiled.dag.nodes[id].as_model().is_some());
        } else {
            check_seeds(&project, &compiled, &selection)?;
        }
        Ok(Compiled {
            project,
            compiled,
            selection,
        })
    }
}

impl Compiled {
    /// Where `compile` writes the compiled SQL.
    pub fn out_dir(&self) -> PathBuf {
        self.project
            .root
            .join(&self.project.config.target_path)
            .join("compiled")
    }

    /// Writes each selected model's SQL to `out_dir/<model path>`, replacing
    /// the folder only once everything is written; returns how many.
    pub fn write(&self) -> Result<usize, EngineError> {
        write_compiled(&self.compiled.dag, &self.selection.nodes, &self.out_dir())
    }
}

/// Reads every selected seed before anything runs, so a malformed CSV stops
/// the command with nothing written.
pub(crate) fn check_seeds(
    project: &Project,
    compiled: &CompiledProject,
    selection: &Selection,
) -> Result<(), EngineError> {
    let errors: Vec<orbital_core::Error> = selection
        .nodes
        .iter()
        .map(|&id| &compiled.dag.nodes[id])
        .filter_map(|node| match &node.kind {
            orbital_core::NodeKind::Seed(config) => orbital_core::seed::read(
                &node.name,
                &project.absolute(&node.path),
                &node.path,
                config,
            )
            .err(),
            orbital_core::NodeKind::Model(_) | orbital_core::NodeKind::Test(_) => None,
        })
        .collect();
    Ok(orbital_core::Error::collect(errors)?)
}

/// A model's SQL as users read it: references by their relation names.
pub fn user_sql(dag: &Dag, id: NodeId) -> Option<String> {
    orbital_core::compile::render_model(dag, id, |dep| dag.nodes[dep].relation.quoted())
}

fn write_compiled(dag: &Dag, selection: &[NodeId], out_dir: &Path) -> Result<usize, EngineError> {
    let staging = out_dir.with_extension("partial");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(EngineError::write(&staging))?;
    }
    let mut written = 0;
    for &id in selection {
        let node = &dag.nodes[id];
        let Some(sql) = user_sql(dag, id) else {
            continue;
        };
        let file: PathBuf = staging.join(&node.path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(EngineError::write(parent))?;
        }
        std::fs::write(&file, format!("{sql}\n")).map_err(EngineError::write(&file))?;
        written += 1;
    }
    std::fs::create_dir_all(&staging).map_err(EngineError::write(&staging))?;
    if out_dir.exists() {
        std::fs::remove_dir_all(out_dir).map_err(EngineError::write(out_dir))?;
    }
    std::fs::rename(&staging, out_dir).map_err(EngineError::write(out_dir))?;
    Ok(written)
}
