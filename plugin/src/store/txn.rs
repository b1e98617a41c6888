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
                       AND (status = 'ready' OR status = 'run')",
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
                       AND (status = 'ready' OR status = 'run')",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewGroup, schema::SCHEMA_VERSION};
    use pseidon_plugin_api::{GroupFilter, GroupInfo, GroupStatus};
    use std::path::PathBuf;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "pseidon-kafka-store-txn-{}-{}-{name}",
            std::process::id(),
            now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("status.db")
    }

    fn scope(group: &str) -> Scope {
        Scope {
            cluster_id: "C1".into(),
            consumer_group: group.into(),
        }
    }

    fn g(topic: &str, p: i32, min: i64, max: i64) -> NewGroup {
        NewGroup {
            id: format!("{topic}:{p}:{min}:{max}"),
            topic: topic.into(),
            topic_id: "T1".into(),
            partition: p,
            min_offset: min,
            max_offset: max,
            messages: u64::try_from(max - min + 1).unwrap(),
        }
    }

    fn ready(s: &Store, sc: &Scope, groups: &[NewGroup]) -> Vec<u32> {
        s.insert(sc, groups.iter().map(|g| (g, GroupStatus::Ready)))
            .unwrap()
    }

    fn all(s: &Store) -> Vec<GroupInfo> {
        s.list(&GroupFilter::default()).unwrap()
    }

    #[test]
    fn marker_column_is_added_idempotently_and_the_restart_rule_resolves_rows() {
        let path = tmp("txn");
        let a = scope("gA");
        {
            let s = Store::open(&path, 1000).unwrap();
            ready(
                &s,
                &a,
                &[g("t", 0, 0, 9), g("t", 0, 10, 19), g("t", 0, 20, 29)],
            );
            for id in ["t:0:0:9", "t:0:10:19", "t:0:20:29"] {
                s.set_run(&a, "T1", id, 1, 10).unwrap();
            }
            let row = |id: &str| TxnRow {
                scope: a.clone(),
                topic_id: "T1".into(),
                id: id.into(),
            };
            s.set_txn(&[row("t:0:0:9"), row("t:0:10:19")], "pseidon-x")
                .unwrap();
            assert_eq!(
                s.txn_of(&a, "T1", "t:0:0:9").unwrap().as_deref(),
                Some("pseidon-x")
            );
            assert_eq!(s.txn_of(&a, "T1", "t:0:20:29").unwrap(), None);
        }
        // Opened again: the column is there, not added twice; the version is schema 3's.
        let s = Store::open(&path, 1000).unwrap();
        let version: i64 = s
            .with(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let row = |id: &str| TxnRow {
            scope: a.clone(),
            topic_id: "T1".into(),
            id: id.into(),
        };
        // 0..9 committed by its transaction, 10..19 not.
        assert_eq!(
            s.resolve_txn_rows(&[(row("t:0:0:9"), true), (row("t:0:10:19"), false)])
                .unwrap(),
            1
        );
        let st: std::collections::HashMap<String, GroupStatus> =
            all(&s).into_iter().map(|r| (r.id, r.status)).collect();
        assert_eq!(st["t:0:0:9"], GroupStatus::Done);
        assert_eq!(st["t:0:10:19"], GroupStatus::Run);
        assert_eq!(s.txn_of(&a, "T1", "t:0:0:9").unwrap(), None);
        assert_eq!(
            s.txn_of(&a, "T1", "t:0:10:19").unwrap(),
            None,
            "replayed: marker cleared"
        );
        // mark_done clears the marker too.
        s.set_txn(&[row("t:0:20:29")], "pseidon-x").unwrap();
        s.mark_done(&a, "T1", "t:0:20:29").unwrap();
        assert_eq!(s.txn_of(&a, "T1", "t:0:20:29").unwrap(), None);
    }
}
