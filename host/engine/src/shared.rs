//! State other engines share with this one (the daemon's peers): builds
//! they made in a warehouse this engine also writes to, reused instead of
//! rebuilt once the warehouse confirms they are still there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use orbital_cas::BuildRecord;
use orbital_core::Hash;

use crate::EngineError;
use crate::session::{Connected, Session};

/// A boxed future, as trait objects return them.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Where builds made elsewhere are asked for, like an action cache.
pub trait BuildSource: Send + Sync {
    /// Of `fingerprints`, the builds recorded in `warehouse` by others.
    /// Whatever cannot be asked is simply not returned.
    fn builds<'a>(
        &'a self,
        warehouse: &'a str,
        fingerprints: Vec<Hash>,
    ) -> BoxFuture<'a, Vec<BuildRecord>>;
}

/// What [`crate::Engine::share_with`] set.
pub(crate) struct Sharing {
    pub(crate) node: String,
    pub(crate) builds: Arc<dyn BuildSource>,
}

/// How many times the upstream of what came is asked for in turn.
const WALK_ROUNDS: usize = 8;

impl Session {
    /// [`Session::connect`], then the builds the engine's peers (see
    /// [`crate::Engine::share_with`]) have that the store lacks.
    pub(crate) async fn connect_sharing(&self) -> Result<Connected, EngineError> {
        let mut connected = self.connect().await?;
        if let Some(sharing) = self.engine.sharing() {
            let taken = self
                .adopt_builds(sharing.builds.as_ref(), &mut connected)
                .await?;
            if taken > 0 {
                tracing::info!("reusing {taken} builds peers made");
            }
        }
        Ok(connected)
    }

    /// Asks `source` for the builds of this project's nodes the store does
    /// not have, then for their upstream fingerprints in turn (as git walks
    /// wants and haves). A build is taken only if it is one that was asked
    /// for and its relation is in the warehouse's catalog (the builder's
    /// gc may have dropped it); it is recorded in the store and planned as
    /// any other. Returns how many were taken.
    pub(crate) async fn adopt_builds(
        &self,
        source: &dyn BuildSource,
        connected: &mut Connected,
    ) -> Result<usize, EngineError> {
        let Some(warehouse) = connected.warehouse.clone() else {
            return Ok(0);
        };
        let dag = &self.compiled.dag;
        let mut wanted: Vec<Hash> = dag
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.is_test() && !n.is_ephemeral())
            .map(|(id, _)| connected.fingerprints.full[id])
            .filter(|fp| !connected.builds.contains_key(fp))
            .collect();
        let mut asked: BTreeSet<Hash> = wanted.iter().copied().collect();
        let mut came: BTreeMap<Hash, BuildRecord> = BTreeMap::new();
        for _ in 0..WALK_ROUNDS {
            if wanted.is_empty() {
                break;
            }
            let answer = source.builds(&warehouse, std::mem::take(&mut wanted)).await;
            for record in answer {
                if !asked.contains(&record.fingerprint) {
                    tracing::warn!("a peer sent build {} unasked: ignored", record.fingerprint);
                    continue;
                }
                for upstream in &record.upstream {
                    if !connected.builds.contains_key(upstream) && asked.insert(*upstream) {
                        wanted.push(*upstream);
                    }
                }
                came.insert(record.fingerprint, record);
            }
        }
        if came.is_empty() {
            return Ok(0);
        }
        if connected.catalog.is_none() {
            let schemas = self.catalog_schemas();
            connected.catalog = Some(connected.database.catalog(&schemas).await.map_err(|e| {
                EngineError::Database(format!(
                    "target `{}`: cannot read the warehouse's catalog: {}",
                    self.target_name, e.message
                ))
            })?);
        }
        let catalog = connected.catalog.as_ref();
        let taken: Vec<BuildRecord> = came
            .into_values()
            .filter(|record| catalog.is_some_and(|c| c.exists(&record.relation)))
            .collect();
        crate::in_place(|| {
            self.store.write(|w| {
                for record in &taken {
                    w.record_build(&warehouse, record)?;
                }
                Ok(())
            })
        })?;
        let count = taken.len();
        connected
            .builds
            .extend(taken.into_iter().map(|r| (r.fingerprint, r)));
        Ok(count)
    }
}
