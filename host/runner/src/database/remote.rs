//! A warehouse reached through a peer: the peer holds the connection and
//! the credentials, and this process sends it each statement, lock and
//! claim ([`orbital_core::remote::session`]). The peer tags, retries and
//! cancels them as it does its own; what it holds for this process (locks,
//! claims) lives as long as the connection they came on.

use std::sync::Arc;

use orbital_core::remote::session::{
    SqlError, SqlRows, SqlStatement, SqlValue, WarehouseAnswer, WarehouseOp,
};
use orbital_plugin_host::BoxFuture;
use orbital_plugin_host::types::{Column, DbError, RowSet, Statement, Value};

/// How calls reach the peer that holds a target's connection (the daemon
/// implements it over QUIC).
pub trait Link: Send + Sync {
    /// The peer's name, for messages.
    fn peer(&self) -> &str;
    /// Sends `op` for run `run` (0: none); `Err` says why the peer could
    /// not be asked or did not answer.
    fn call(&self, run: u64, op: WarehouseOp) -> BoxFuture<'_, Result<WarehouseAnswer, String>>;
}

/// A target reached through a peer.
pub(super) struct Remote {
    pub(super) link: Arc<dyn Link>,
    /// PostgreSQL (else SQLite), as the peer said when it was opened.
    pub(super) postgres: bool,
}

impl Remote {
    /// Sends `op`; a failure of the link or of the database is a
    /// [`DbError`] naming the peer.
    pub(super) async fn call(&self, run: u64, op: WarehouseOp) -> Result<WarehouseAnswer, DbError> {
        match self.link.call(run, op).await {
            Ok(WarehouseAnswer::Failed(error)) => Err(db_error(error)),
            Ok(answer) => Ok(answer),
            Err(why) => Err(DbError {
                message: format!(
                    "peer {}, which holds the target's connection: {why}",
                    self.link.peer()
                ),
                code: None,
                transient: false,
            }),
        }
    }

    /// An answer that is not the one `op` expects.
    pub(super) fn unexpected(&self, answer: &WarehouseAnswer) -> DbError {
        DbError {
            message: format!(
                "peer {} answered a warehouse call with {answer:?}",
                self.link.peer()
            ),
            code: None,
            transient: false,
        }
    }

    pub(super) async fn execute(&self, run: u64, statement: &Statement) -> Result<u64, DbError> {
        match self
            .call(run, WarehouseOp::Execute(to_wire(statement)))
            .await?
        {
            WarehouseAnswer::Affected(rows) => Ok(rows),
            other => Err(self.unexpected(&other)),
        }
    }

    pub(super) async fn query(&self, run: u64, statement: &Statement) -> Result<RowSet, DbError> {
        match self
            .call(run, WarehouseOp::Query(to_wire(statement)))
            .await?
        {
            WarehouseAnswer::Rows(rows) => Ok(rows_from_wire(rows)),
            other => Err(self.unexpected(&other)),
        }
    }

    pub(super) async fn transaction(
        &self,
        run: u64,
        statements: &[Statement],
    ) -> Result<Vec<u64>, DbError> {
        let op = WarehouseOp::Transaction(statements.iter().map(to_wire).collect());
        match self.call(run, op).await? {
            WarehouseAnswer::AffectedEach(rows) => Ok(rows),
            other => Err(self.unexpected(&other)),
        }
    }
}

pub fn to_wire(statement: &Statement) -> SqlStatement {
    SqlStatement {
        sql: statement.sql.clone(),
        params: statement.params.iter().map(value_to_wire).collect(),
    }
}

pub fn from_wire(statement: SqlStatement) -> Statement {
    Statement {
        sql: statement.sql,
        params: statement.params.into_iter().map(value_from_wire).collect(),
    }
}

pub fn rows_to_wire(rows: RowSet) -> SqlRows {
    SqlRows {
        columns: rows
            .columns
            .into_iter()
            .map(|c| (c.name, c.data_type))
            .collect(),
        rows: rows
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(|v| value_to_wire(&v)).collect())
            .collect(),
    }
}

fn rows_from_wire(rows: SqlRows) -> RowSet {
    RowSet {
        columns: rows
            .columns
            .into_iter()
            .map(|(name, data_type)| Column { name, data_type })
            .collect(),
        rows: rows
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(value_from_wire).collect())
            .collect(),
    }
}

pub fn error_to_wire(error: DbError) -> SqlError {
    SqlError {
        message: error.message,
        code: error.code,
        transient: error.transient,
    }
}

fn db_error(error: SqlError) -> DbError {
    DbError {
        message: error.message,
        code: error.code,
        transient: error.transient,
    }
}

fn value_to_wire(value: &Value) -> SqlValue {
    match value.clone() {
        Value::Null => SqlValue::Null,
        Value::Boolean(b) => SqlValue::Boolean(b),
        Value::Integer(i) => SqlValue::Integer(i),
        Value::Real(r) => SqlValue::Real(r),
        Value::Numeric(s) => SqlValue::Numeric(s),
        Value::Text(s) => SqlValue::Text(s),
        Value::Bytes(b) => SqlValue::Bytes(b),
        Value::Date(s) => SqlValue::Date(s),
        Value::Timestamp(s) => SqlValue::Timestamp(s),
        Value::Timestamptz(s) => SqlValue::Timestamptz(s),
        Value::Json(s) => SqlValue::Json(s),
        Value::Uuid(s) => SqlValue::Uuid(s),
    }
}

fn value_from_wire(value: SqlValue) -> Value {
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Boolean(b) => Value::Boolean(b),
        SqlValue::Integer(i) => Value::Integer(i),
        SqlValue::Real(r) => Value::Real(r),
        SqlValue::Numeric(s) => Value::Numeric(s),
        SqlValue::Text(s) => Value::Text(s),
        SqlValue::Bytes(b) => Value::Bytes(b),
        SqlValue::Date(s) => Value::Date(s),
        SqlValue::Timestamp(s) => Value::Timestamp(s),
        SqlValue::Timestamptz(s) => Value::Timestamptz(s),
        SqlValue::Json(s) => Value::Json(s),
        SqlValue::Uuid(s) => Value::Uuid(s),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::database::{Claimed, Lent, Warehouse};

    /// A link straight to a [`Lent`] in this process: the calls and their
    /// answers as a peer makes them, without QUIC.
    pub(crate) struct Direct(pub(crate) Lent);

    impl Link for Direct {
        fn peer(&self) -> &str {
            "direct"
        }

        fn call(
            &self,
            run: u64,
            op: WarehouseOp,
        ) -> BoxFuture<'_, Result<WarehouseAnswer, String>> {
            Box::pin(async move { Ok(self.0.call(run, op).await) })
        }
    }

    fn sql(text: &str) -> Statement {
        Statement {
            sql: text.into(),
            params: vec![],
        }
    }

    #[tokio::test]
    async fn a_warehouse_reached_through_a_peer_runs_everything_there() {
        let dir = tempfile::tempdir().unwrap();
        let lent = Warehouse::open("sqlite://t.db", dir.path(), 1)
            .await
            .unwrap();
        let link = Arc::new(Direct(Lent::new(lent.clone())));
        for scheme in ["postgres", "mysql"] {
            let wrong = Warehouse::remote(link.clone(), scheme).await.err().unwrap();
            assert!(
                wrong.to_string().contains(&format!(
                    "a sqlite:// database, this project's a {scheme}:// one"
                )),
                "{wrong}"
            );
        }
        let remote = Warehouse::remote(link, "sqlite").await.unwrap();
        assert!(remote.is_sqlite());
        assert_eq!(remote.via(), Some("direct"));
        let id = remote.warehouse_id(true).await.unwrap();
        assert_eq!(lent.warehouse_id(false).await.unwrap(), id);
        let run = remote.for_run(7, orbital_plugin_host::Interrupt::default());
        run.transaction(vec![
            sql("CREATE TABLE t (n INTEGER)"),
            sql("INSERT INTO t VALUES (1), (2)"),
        ])
        .await
        .unwrap();
        let failed = run
            .execute(sql("INSERT INTO nope VALUES (1)"))
            .await
            .unwrap_err();
        assert!(
            failed.message.contains("no such table: nope"),
            "{}",
            failed.message
        );
        let rows = lent.query(sql("SELECT count(*) FROM t")).await.unwrap();
        assert_eq!(rows.rows[0][0], Value::Integer(2));
        // A claim taken there is held there until the build is noted.
        let relation = orbital_core::dag::RelationName {
            schema: None,
            identifier: "claimed".into(),
        };
        let Claimed::Build(claim) = run.claim(&relation, true).await.unwrap() else {
            panic!("nobody built it yet");
        };
        let local = lent.for_run(8, orbital_plugin_host::Interrupt::default());
        let waiting = tokio::spawn(async move {
            matches!(
                local.claim(&relation, true).await.unwrap(),
                Claimed::Built { .. }
            )
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "the peer's claim is held");
        claim.built().await;
        assert!(
            waiting.await.unwrap(),
            "reused once the peer's build is noted"
        );
        // A cancel stops the run's statements there too.
        run.interrupt().await.unwrap();
        assert!(run.execute(sql("SELECT 1")).await.is_err());
    }

    #[test]
    fn values_and_rows_cross_the_wire_unchanged() {
        let values = vec![
            Value::Null,
            Value::Boolean(true),
            Value::Integer(-7),
            Value::Real(1.5),
            Value::Numeric("1.10".into()),
            Value::Text("x".into()),
            Value::Bytes(vec![0, 255]),
            Value::Date("2026-01-01".into()),
            Value::Timestamp("2026-01-01 00:00:00".into()),
            Value::Timestamptz("2026-01-01 00:00:00+00".into()),
            Value::Json("{}".into()),
            Value::Uuid("00000000-0000-0000-0000-000000000000".into()),
        ];
        let statement = Statement {
            sql: "select ?".into(),
            params: values.clone(),
        };
        assert_eq!(from_wire(to_wire(&statement)), statement);
        let rows = RowSet {
            columns: vec![Column {
                name: "a".into(),
                data_type: "TEXT".into(),
            }],
            rows: vec![values],
        };
        assert_eq!(rows_from_wire(rows_to_wire(rows.clone())), rows);
    }
}
