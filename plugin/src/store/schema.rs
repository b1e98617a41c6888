//! The status database's schema: version 3 (every row with its cluster id, consumer
//! group and topic id, and its message count), the column list every SELECT uses, and
//! the migrations: of a schema 1 database (rows without identity; see the store's
//! module docs for what they are assigned to and why that is safe), and of schema 2
//! (no `messages` column: added, NULL — unknown — for the rows already there).
//!
//! Schema 3 stays readable and writable by a plugin of schema 2: it only adds a
//! nullable column, which such a plugin neither selects nor sets.

use rusqlite::Connection;

/// The schema version written to `PRAGMA user_version`.
pub(super) const SCHEMA_VERSION: i64 = 3;

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
    status         TEXT NOT NULL CHECK (status IN ('ready', 'run', 'done', 'lost')),
    attempt        INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL,
    messages       INTEGER,
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

pub(super) const COLUMNS: &str = "id, topic, partition, min_offset, max_offset, status, attempt, updated_ms, cluster_id, consumer_group, topic_id, messages";

/// [`COLUMNS`] for a schema 2 table (no `messages` column: NULL, unknown).
pub(super) const COLUMNS_V2: &str = "id, topic, partition, min_offset, max_offset, status, attempt, updated_ms, cluster_id, consumer_group, topic_id, NULL";

/// Schema 2 → 3: the message count, unknown for the rows already there.
pub(super) const MIGRATE_2_TO_3: &str = "ALTER TABLE groups ADD COLUMN messages INTEGER;";

/// True if `columns` are schema 2's: every column of schema 3 but `messages` (another
/// program's table of the same name is left alone, and refused at open).
pub(super) fn lacks_messages(columns: &[String]) -> bool {
    let has = |name: &str| columns.iter().any(|c| c == name);
    !has("messages") && COLUMNS.split(", ").filter(|c| *c != "messages").all(has)
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
