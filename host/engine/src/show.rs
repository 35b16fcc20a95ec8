//! `orbital show`: the first rows of a model's relation in an environment,
//! or of a query over the project's relations there.

use std::path::PathBuf;

use orbital_core::dag::RelationName;
use orbital_plugin_host::types::Statement;
use orbital_runner::Rows;
use serde::{Deserialize, Serialize};

use crate::request::Selector;
use crate::session::{Connected, Records, Session};
use crate::{Engine, EngineError};

/// The most rows `show` returns.
pub const SHOW_LIMIT_MAX: usize = 100_000;

/// What to show.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShowRequest {
    pub project: PathBuf,
    /// The target, and a dbt project's vars.
    pub selector: Selector,
    /// The environment (default: prod).
    pub env: Option<String>,
    /// A model or seed whose relation to read.
    pub model: Option<String>,
    /// Or a query over the project's models, seeds and sources, written
    /// as a model is.
    pub inline: Option<String>,
    /// How many rows.
    pub limit: usize,
}

impl Engine {
    /// The first `request.limit` rows of a model or of an inline query.
    pub async fn show(&self, request: ShowRequest) -> Result<Rows, EngineError> {
        if !(1..=SHOW_LIMIT_MAX).contains(&request.limit) {
            return Err(EngineError::Usage(format!(
                "--limit {}: show 1 to {SHOW_LIMIT_MAX} rows",
                request.limit
            )));
        }
        let session = Session::opened(
            self,
            &request.project,
            &request.selector,
            request.env.as_deref(),
            None,
            Records::Early,
        )
        .await?;
        let connected = session.connect_sharing().await?;
        let query = match (&request.model, &request.inline) {
            (Some(model), None) => {
                let id = crate::compile::model_or_seed(&session.compiled.dag, model)?;
                format!(
                    "SELECT * FROM {}",
                    built(&session, &connected, id)?.quoted()
                )
            }
            (None, Some(inline)) => {
                let compiled =
                    orbital_core::compile::inline_query(&session.project, &session.target, inline)?;
                let mut missing = None;
                let sql = compiled.render(|id| match built(&session, &connected, id) {
                    Ok(relation) => relation.quoted(),
                    Err(e) => {
                        missing.get_or_insert(e);
                        String::new()
                    }
                });
                if let Some(e) = missing {
                    return Err(e);
                }
                format!("SELECT * FROM (\n{sql}\n) AS orbital_show")
            }
            _ => {
                return Err(EngineError::Usage(
                    "name a model, or give a query with --inline 'select ...'".into(),
                ));
            }
        };
        let statement = Statement {
            sql: format!("{query} LIMIT {}", request.limit),
            params: Vec::new(),
        };
        let rows = connected
            .database
            .query(statement)
            .await
            .map_err(|e| EngineError::Database(format!("the query failed: {}", e.message)));
        crate::discard((session, connected));
        Ok(Rows::from(rows?))
    }
}

/// What node `id` is in the session's environment: its relation, if the
/// environment has built it.
fn built(session: &Session, connected: &Connected, id: usize) -> Result<RelationName, EngineError> {
    let node = &session.compiled.dag.nodes[id];
    if node.is_ephemeral() {
        return Err(EngineError::Usage(format!(
            "`{}` is ephemeral: it has no relation to read (show a model that reads it)",
            node.name
        )));
    }
    if !connected.recorded.contains_key(&node.name) {
        return Err(EngineError::Usage(format!(
            "`{}` is not built in environment `{}`: build it first (orbital build --select {} --env {})",
            node.name, session.environment, node.name, session.environment
        )));
    }
    Ok(session.env_relation(id))
}
