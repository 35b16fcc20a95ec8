//! Per-task plugin overhead: instantiate the `view` materialization and the
//! SQLite adapter from their `InstancePre`s and call `materialize`, against a
//! database that answers instantly, so only the plugin path is measured.
//!
//! `cargo bench -p orbital-plugin-host --bench task_overhead`

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use orbital_plugin_host::types::{DbError, LogLevel, ModelTask, Relation, RowSet, Statement};
use orbital_plugin_host::{BoxFuture, Database, Limits, Plugin, PluginHost};

/// Answers every call at once: no relation exists, every statement succeeds.
struct Instant;

impl Database for Instant {
    fn execute(&self, _: Statement) -> BoxFuture<'_, Result<u64, DbError>> {
        Box::pin(async { Ok(0) })
    }
    fn query(&self, _: Statement) -> BoxFuture<'_, Result<RowSet, DbError>> {
        Box::pin(async {
            Ok(RowSet {
                columns: Vec::new(),
                rows: Vec::new(),
            })
        })
    }
    fn transaction(&self, statements: Vec<Statement>) -> BoxFuture<'_, Result<Vec<u64>, DbError>> {
        Box::pin(async move { Ok(vec![0; statements.len()]) })
    }
    fn log(&self, _: LogLevel, _: &str) {}
}

fn bundled(name: &str) -> Vec<u8> {
    orbital_bundle::FIRST_PARTY
        .iter()
        .find(|(n, _)| *n == name)
        .expect("bundled plugin")
        .1
        .to_vec()
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let host = PluginHost::new(Limits::default()).expect("host");
    let (adapter, view) = runtime.block_on(async {
        let Ok(Plugin::Adapter(adapter)) = host.load("adapter", bundled("adapter-sqlite")).await
        else {
            panic!("adapter")
        };
        let Ok(Plugin::Materialization(view)) =
            host.load("view", bundled("materialization-view")).await
        else {
            panic!("view")
        };
        (adapter, view)
    });
    let database: Arc<dyn Database> = Arc::new(Instant);
    let task = ModelTask {
        model: "orders".into(),
        relation: Relation {
            database: None,
            schema: None,
            identifier: "orders".into(),
        },
        previous: None,
        sql: "SELECT 1 AS id".into(),
        config: "{}".into(),
        full_refresh: false,
        run_started_at: "2026-01-01T00:00:00Z".into(),
    };
    let interrupt = orbital_plugin_host::Interrupt::default();
    c.bench_function("plugin/materialize_view_task", |b| {
        b.to_async(&runtime).iter(|| async {
            host.materialize(&adapter, &view, database.clone(), &task, &interrupt)
                .await
                .expect("materialize")
        })
    });
    c.bench_function("plugin/adapter_session_and_call", |b| {
        b.to_async(&runtime).iter(|| async {
            let mut session = host.adapter_session(&adapter).await.expect("session");
            session
                .call(async |d, s| d.call_quote_identifier(s, "x").await)
                .await
                .expect("call")
        })
    });
}

criterion_group!(overhead, benches);
criterion_main!(overhead);
