//! The exactly-once marker of the status database: column `txn TEXT` of `groups`,
//! the transactional id of the Kafka transaction a `run` row's copies were committed
//! in (set just before the transaction's offsets are sent, cleared when the row becomes
//! `done`). It is how a restart tells "committed in Kafka, the status row not yet
//! updated" (the crash window between `commit_transaction` and the status update) from
//! an at-least-once `run` row ([`Store::resolve_txn_rows`] and the reader's restart
//! rule: docs/DESIGN-group-states.md, "Exactly-once").
//!
//! The column is added idempotently at open ([`ensure_column`]) and the schema version
//! is not changed: a plugin that does not know the column neither selects nor sets it
//! (a NULL is an at-least-once row).

use rusqlite::{Connection, params};

use super::{Scope, Store, now_ms};
use pseidon_plugin_api::Error;

/// Adds the `txn` column unless the table has it (called at open, after the schema).
pub(super) fn ensure_column(conn: &Connection) -> rusqlite::Result<()> {
    let has = super::schema::table_columns(conn)?
        .iter()
        .any(|c| c == "txn");
    if !has {
        conn.execute_batch("ALTER TABLE groups ADD COLUMN txn TEXT;")?;
    }
    Ok(())
}

/// One row a transaction is about to commit: its scope, topic id and group id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRow {
    /// Cluster and consumer group.
    pub scope: Scope,
    /// The topic's incarnation.
    pub topic_id: String,
    /// `topic:partition:min:max`.
    pub id: String,
}

impl Store {
    /// Sets the marker `txn` on the unfinished rows `rows` (one SQLite transaction),
    /// before the Kafka transaction commits their offsets.
    pub fn set_txn(&self, rows: &[TxnRow], txn: &str) -> Result<(), Error> {
        let now = now_ms();
        self.with(|conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE groups SET txn = ?5, updated_ms = ?6
                     WHERE cluster_id = ?1 AND consumer_group = ?2 AND topic_id = ?3 AND id = ?4
                       AND status IN ('ready', 'run')",
                )?;
                for r in rows {
                    stmt.execute(params![
                        r.scope.cluster_id,
                        r.scope.consumer_group,
                        r.topic_id,
                        r.id,
                        txn,
                        now
                    ])?;
                }
            }
            tx.commit()
        })
    }

    /// The transaction marker of a row, `None` if it has none (or is unknown).
    pub fn txn_of(&self, scope: &Scope, topic_id: &str, id: &str) -> Result<Option<String>, Error> {
        use rusqlite::OptionalExtension;
        self.with(|conn| {
            conn.prepare_cached(
                "SELECT txn FROM groups
                 WHERE cluster_id = ?1 AND consumer_group = ?2 AND topic_id = ?3 AND id = ?4",
            )?
            .query_row(
                params![scope.cluster_id, scope.consumer_group, topic_id, id],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(Option::flatten)
        })
    }

    /// The restart rule for the rows of a transaction: `done` (marker cleared) for the
    /// ones `committed` says the transaction committed, the marker cleared (replayed)
    /// for the others. One SQLite transaction; returns how many became done.
    pub fn resolve_txn_rows(&self, rows: &[(TxnRow, bool)]) -> Result<usize, Error> {
        let now = now_ms();
        self.with(|conn| {
            let tx = conn.transaction()?;
            let mut done = 0;
            {
                let mut set_done = tx.prepare_cached(
                    "UPDATE groups SET status = 'done', txn = NULL, updated_ms = ?5
                     WHERE cluster_id = ?1 AND consumer_group = ?2 AND topic_id = ?3 AND id = ?4
                       AND status IN ('ready', 'run')",
                )?;
                let mut clear = tx.prepare_cached(
                    "UPDATE groups SET txn = NULL
                     WHERE cluster_id = ?1 AND consumer_group = ?2 AND topic_id = ?3 AND id = ?4",
                )?;
                for (r, committed) in rows {
                    let p = params![r.scope.cluster_id, r.scope.consumer_group, r.topic_id, r.id];
                    if *committed {
                        done += set_done.execute(params![
                            r.scope.cluster_id,
                            r.scope.consumer_group,
                            r.topic_id,
                            r.id,
                            now
                        ])?;
                    } else {
                        clear.execute(p)?;
                    }
                }
            }
            tx.commit()?;
            Ok(done)
        })
    }
}
