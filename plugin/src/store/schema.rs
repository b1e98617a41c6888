//! The status database's schema: version 3 (every row with its cluster id, consumer
//! group and topic id, and its message count), the column list every SELECT uses, and
//! the migrations: of a schema 1 database (rows without identity; see the store's
//! module docs for what they are assigned to and why that is safe), and of schema 2
//! (no `messages` column: added, NULL — unknown — for the rows already there).
//!
//! Schema 3 stays readable and writable by a plugin of schema 2: it only adds a
//! nullable column, which such a plugin neither selects nor sets.
//!
//! Schema 4 (poison messages) widens the status `CHECK` by `failed`, `split` and `dead`
//! and adds the columns `reason`, `retry_at_ms` and `parent`. SQLite cannot alter a
//! `CHECK`, so the migration 3 → 4 ([`migrate_to_v4`]) rebuilds the table in one
//! transaction, copying every column by name — a column another plugin version added
//! (e.g. `txn`) is kept, with its declared type. A plugin of schema 3 can still read a
//! schema 4 database, but it cannot parse the new statuses (its listing fails on such a
//! row, naming the status): a downgrade must wait until no row is failed, split or dead.
//!
//! The status `CHECK` of a database created by this version is written with `=` and `OR`
//! (same meaning as the `IN` list it had): SQLite builds an `IN` list of constants into
//! an ephemeral table each time a statement that writes `status` runs, about a sixth of
//! a `mark_done`'s CPU (the guards of the status updates are written so for the same
//! reason). A database created with the `IN` list keeps it (SQLite cannot alter a
//! `CHECK` without rebuilding the table); it is only slower.

use rusqlite::Connection;

/// The schema version written to `PRAGMA user_version`.
pub(super) const SCHEMA_VERSION: i64 = 4;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS groups (
    cluster_id     TEXT NOT NULL,
    consumer_group TEXT NOT NULL,
    topic_id       TEXT NOT NULL,
    id             TEXT NOT NULL,
    topic          TEXT NOT NULL,
    partition      INTEGER NOT NULL,
    min_offset     INTEGER NOT NULL,
    max_offset     INTEGER NOT NULL,
    status         TEXT NOT NULL CHECK (status = 'ready' OR status = 'run' OR status = 'done'
                                        OR status = 'lost' OR status = 'failed'
                                        OR status = 'split' OR status = 'dead'),
    attempt        INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL,
    messages       INTEGER,
    reason         TEXT,
    retry_at_ms    INTEGER,
    parent         TEXT,
    PRIMARY KEY (cluster_id, consumer_group, topic_id, id)
);
";

pub(super) const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS groups_by_scope ON groups (cluster_id, consumer_group, topic, partition, max_offset);
CREATE INDEX IF NOT EXISTS groups_by_status ON groups (status, updated_ms);
CREATE INDEX IF NOT EXISTS groups_by_id ON groups (id);
";

/// Schema 1 → 2: the old rows get the unknown scope and topic id (module docs).
pub(super) const MIGRATE_1_TO_2: &str = "
ALTER TABLE groups RENAME TO groups_v1;
DROP INDEX IF EXISTS groups_by_partition;
DROP INDEX IF EXISTS groups_by_status;
";

pub(super) const COLUMNS: &str = "id, topic, partition, min_offset, max_offset, status, attempt, updated_ms, cluster_id, consumer_group, topic_id, messages, reason, retry_at_ms, parent";

/// The columns of schema 2 (schema 3 added `messages`, schema 4 `reason`, `retry_at_ms`
/// and `parent`).
const COLUMNS_V2: [&str; 11] = [
    "id",
    "topic",
    "partition",
    "min_offset",
    "max_offset",
    "status",
    "attempt",
    "updated_ms",
    "cluster_id",
    "consumer_group",
    "topic_id",
];

/// [`COLUMNS`] for a table of schema 2 or 3: the columns it lacks read as NULL (unknown).
pub(super) fn select_list(columns: &[String]) -> String {
    COLUMNS
        .split(", ")
        .map(|c| {
            if columns.iter().any(|x| x == c) {
                c
            } else {
                "NULL"
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Schema 2 → 3: the message count, unknown for the rows already there.
pub(super) const MIGRATE_2_TO_3: &str = "ALTER TABLE groups ADD COLUMN messages INTEGER;";

/// True if `columns` are schema 2's: every column of schema 2 and no `messages` (another
/// program's table of the same name is left alone, and refused at open).
pub(super) fn lacks_messages(columns: &[String]) -> bool {
    let has = |name: &str| columns.iter().any(|c| c == name);
    !has("messages") && COLUMNS_V2.iter().all(|c| has(c))
}

/// True if table `groups` is of schema 3 or older (after [`lacks_messages`] was fixed):
/// every column of schema 3, and either a column of schema 4 missing or a status
/// `CHECK` without `failed`.
pub(super) fn needs_v4(conn: &Connection, columns: &[String]) -> rusqlite::Result<bool> {
    let has = |name: &str| columns.iter().any(|c| c == name);
    if !(COLUMNS_V2.iter().all(|c| has(c)) && has("messages")) {
        return Ok(false);
    }
    if !(has("reason") && has("retry_at_ms") && has("parent")) {
        return Ok(true);
    }
    let sql: String = conn.query_row(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'groups'",
        [],
        |r| r.get(0),
    )?;
    Ok(!sql.contains("'failed'"))
}

/// Schema 3 → 4 in one transaction: the table is rebuilt with the wider `CHECK` and the
/// new columns; every column of the old table is copied by name, and a column schema 4
/// does not define (another version's, e.g. `txn`) is added first with its declared
/// type. Returns the number of rows carried over.
pub(super) fn migrate_to_v4(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute_batch("BEGIN IMMEDIATE;")?;
    let r = (|| {
        let old: Vec<(String, String)> = {
            let mut stmt = conn.prepare("SELECT name, type FROM pragma_table_info('groups')")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        conn.execute_batch(
            "ALTER TABLE groups RENAME TO groups_v3;
             DROP INDEX IF EXISTS groups_by_scope;
             DROP INDEX IF EXISTS groups_by_status;
             DROP INDEX IF EXISTS groups_by_id;",
        )?;
        conn.execute_batch(SCHEMA)?;
        let new = table_columns(conn)?;
        for (name, ty) in &old {
            if !new.iter().any(|c| c == name) {
                conn.execute_batch(&format!(
                    "ALTER TABLE groups ADD COLUMN \"{}\" {ty};",
                    name.replace('"', "\"\"")
                ))?;
            }
        }
        let list = old
            .iter()
            .map(|(n, _)| format!("\"{}\"", n.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(", ");
        let n = conn.execute(
            &format!("INSERT INTO groups ({list}) SELECT {list} FROM groups_v3"),
            [],
        )?;
        conn.execute_batch(&format!(
            "DROP TABLE groups_v3; PRAGMA user_version = {SCHEMA_VERSION};"
        ))?;
        Ok(n)
    })();
    match r {
        Ok(n) => {
            conn.execute_batch("COMMIT;")?;
            Ok(n)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK;");
            Err(e)
        }
    }
}

/// The columns of table `groups`, empty if there is none.
pub(super) fn table_columns(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('groups')")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.collect()
}

pub(super) const V1_COLUMNS: [&str; 8] = [
    "id",
    "topic",
    "partition",
    "min_offset",
    "max_offset",
    "status",
    "attempt",
    "updated_ms",
];

/// True if `columns` are schema 1's.
pub(super) fn is_v1(columns: &[String]) -> bool {
    columns.len() == V1_COLUMNS.len() && V1_COLUMNS.iter().all(|c| columns.iter().any(|x| x == c))
}

/// Schema 1 → 2 in one transaction; returns the number of rows carried over.
pub(super) fn migrate_v1(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute_batch("BEGIN IMMEDIATE;")?;
    let r = (|| {
        conn.execute_batch(MIGRATE_1_TO_2)?;
        conn.execute_batch(SCHEMA)?;
        let n = conn.execute(
            "INSERT INTO groups (cluster_id, consumer_group, topic_id, id, topic, partition,
                                 min_offset, max_offset, status, attempt, updated_ms)
             SELECT '', '', '', id, topic, partition, min_offset, max_offset, status, attempt,
                    updated_ms FROM groups_v1",
            [],
        )?;
        conn.execute_batch(&format!(
            "DROP TABLE groups_v1; PRAGMA user_version = {SCHEMA_VERSION};"
        ))?;
        Ok(n)
    })();
    match r {
        Ok(n) => {
            conn.execute_batch("COMMIT;")?;
            Ok(n)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK;");
            Err(e)
        }
    }
}
