//! Reading rows: the one SELECT of listings (by status, topic, consumer group, update
//! time), the read-only listing another instance may run while the owner holds the
//! lock (of a database of any schema it may have: 1 to 4), and the row →
//! [`GroupInfo`] conversion.

use std::{path::Path, time::Duration};

use pseidon_plugin_api::{Error, GroupFilter, GroupInfo, GroupStatus};
use rusqlite::{Connection, OpenFlags, params};

use super::{
    db_err,
    schema::{COLUMNS, is_v1, select_list, table_columns},
};

pub(super) fn query_list(
    conn: &Connection,
    filter: &GroupFilter,
) -> rusqlite::Result<Vec<GroupInfo>> {
    query_list_of(conn, COLUMNS, filter)
}

/// The listing, selecting `columns` (those of [`COLUMNS`], or what stands for them).
fn query_list_of(
    conn: &Connection,
    columns: &str,
    filter: &GroupFilter,
) -> rusqlite::Result<Vec<GroupInfo>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {columns} FROM groups
         WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR topic = ?2)
           AND (?3 IS NULL OR consumer_group = ?3) AND (?4 IS NULL OR updated_ms >= ?4)
         ORDER BY consumer_group, cluster_id, topic, partition, min_offset"
    ))?;
    let rows = stmt.query_map(
        params![
            filter.status.map(|s| s.as_str()),
            filter.topic.as_deref(),
            filter.consumer_group.as_deref(),
            filter.updated_since_ms
        ],
        row_to_info,
    )?;
    rows.collect()
}

/// Lists groups of the database at `path` through a read-only connection, without the
/// instance lock (for listings while another instance runs). A database of schema 1
/// (not migrated yet: its owner runs an older plugin) lists with unknown scope; one of
/// schema 1 or 2, without message counts. A database without any table yet (being
/// created) lists no groups; one with other tables but no `groups` is an error.
pub fn list_read_only(path: &Path, filter: &GroupFilter) -> Result<Vec<GroupInfo>, Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| db_err(path, "cannot open read-only", e))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| db_err(path, "cannot configure", e))?;
    let columns =
        table_columns(&conn).map_err(|e| db_err(path, "not a usable status database", e))?;
    if columns.is_empty() {
        // No `groups` table: a database that its first instance is creating right now
        // (the file exists before the schema does) has no tables at all and no groups
        // yet; another program's database is not ours.
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| db_err(path, "not a usable status database", e))?;
        if tables == 0 {
            return Ok(Vec::new());
        }
        return Err(db_err(
            path,
            "not a status database",
            "it has tables but no `groups` table",
        ));
    }
    if is_v1(&columns) {
        if filter
            .consumer_group
            .as_deref()
            .is_some_and(|g| !g.is_empty())
        {
            return Ok(Vec::new());
        }
        let mut stmt = conn
            .prepare(
                "SELECT id, topic, partition, min_offset, max_offset, status, attempt, updated_ms,
                        '', '', '', NULL, NULL, NULL, NULL FROM groups
                 WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR topic = ?2)
                   AND (?3 IS NULL OR updated_ms >= ?3)
                 ORDER BY topic, partition, min_offset",
            )
            .map_err(|e| db_err(path, "not a usable status database", e))?;
        let rows: rusqlite::Result<Vec<GroupInfo>> = stmt
            .query_map(
                params![
                    filter.status.map(|s| s.as_str()),
                    filter.topic.as_deref(),
                    filter.updated_since_ms
                ],
                row_to_info,
            )
            .and_then(|rows| rows.collect());
        return rows.map_err(|e| db_err(path, "query failed", e));
    }
    let columns = select_list(&columns);
    query_list_of(&conn, &columns, filter)
        .map_err(|e| db_err(path, "not a usable status database", e))
}

pub(super) fn row_to_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<GroupInfo> {
    let status: String = r.get(5)?;
    Ok(GroupInfo {
        id: r.get(0)?,
        topic: r.get(1)?,
        partition: r.get(2)?,
        min_offset: r.get(3)?,
        max_offset: r.get(4)?,
        status: GroupStatus::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                5,
                rusqlite::types::Type::Text,
                format!("unknown status `{status}`").into(),
            )
        })?,
        attempt: r.get(6)?,
        updated_ms: r.get(7)?,
        cluster_id: r.get(8)?,
        consumer_group: r.get(9)?,
        topic_id: r.get(10)?,
        messages: r
            .get::<_, Option<i64>>(11)?
            .and_then(|n| u64::try_from(n).ok()),
        reason: r.get(12)?,
        retry_at_ms: r.get(13)?,
        parent: r.get(14)?,
    })
}
