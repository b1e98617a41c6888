//! Opening the status database file ([`connect`]): the lock on the file itself, the
//! writability checks of the file and its `-wal`/`-shm` files, the connection's
//! settings (WAL, busy timeout), and the creation or migration of the schema. Every
//! failure is an error naming the file; nothing here resets a database.

use std::{
    fs::{File, OpenOptions},
    path::{Path, PathBuf},
    time::Duration,
};

use pseidon_plugin_api::Error;
use rusqlite::{Connection, OpenFlags};

use super::schema::{
    COLUMNS, INDEXES, MIGRATE_2_TO_3, SCHEMA, SCHEMA_VERSION, is_v1, lacks_messages, migrate_to_v4,
    migrate_v1, needs_v4, table_columns,
};

pub(super) fn db_err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::StatusDb {
        path: path.display().to_string(),
        reason: format!("{what}: {e}"),
    }
}

/// Opens `path` for writing to prove it is writable; a missing file is fine.
fn check_writable(db: &Path, file: &Path) -> Result<(), Error> {
    match OpenOptions::new().read(true).write(true).open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(db_err(
            db,
            &format!(
                "its SQLite file {} cannot be written (SQLite needs it writable)",
                file.display()
            ),
            e,
        )),
    }
}

pub(super) fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Opens (creating if needed) the database at `path` for one live process: locked,
/// checked writable, in WAL mode, with the current schema. Returns the connection and
/// the locked file (the lock lasts as long as the file is open).
pub(super) fn connect(path: &Path) -> Result<(Connection, File), Error> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| db_err(path, "cannot create its directory", e))?;
    }
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                db_err(
                    path,
                    "not writable (the datasource must record group statuses)",
                    e,
                )
            }
            _ => db_err(path, "cannot open", e),
        })?;
    let meta = lock
        .metadata()
        .map_err(|e| db_err(path, "cannot stat", e))?;
    if !meta.is_file() {
        return Err(db_err(path, "cannot use", "not a regular file"));
    }
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(Error::StatusDbLocked {
                path: path.display().to_string(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(db_err(path, "cannot lock", e));
        }
    }
    // The real file, so that its -wal and -shm files are the ones SQLite uses.
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    for suffix in ["-wal", "-shm"] {
        check_writable(path, &suffixed(&real, suffix))?;
    }
    let conn = Connection::open_with_flags(
        &real,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| db_err(path, "cannot open", e))?;
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
        return Err(Error::StatusDb {
            path: path.display().to_string(),
            reason: "not writable (opened read-only); the datasource must record group statuses"
                .into(),
        });
    }
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| db_err(path, "cannot configure", e))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(|e| db_err(path, "not a usable SQLite database", e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(db_err(
            path,
            "cannot switch to WAL mode",
            format!("journal mode stays `{mode}`"),
        ));
    }
    conn.execute_batch("PRAGMA synchronous=NORMAL;")
        .map_err(|e| db_err(path, "cannot configure", e))?;
    let columns = table_columns(&conn).map_err(|e| db_err(path, "cannot read the schema", e))?;
    let migrated = if is_v1(&columns) {
        let n = migrate_v1(&conn)
            .map_err(|e| db_err(path, "cannot migrate the status database of schema 1", e))?;
        Some(n)
    } else {
        None
    };
    conn.execute_batch(SCHEMA)
        .map_err(|e| db_err(path, "cannot create the schema (not writable?)", e))?;
    let columns = table_columns(&conn).map_err(|e| db_err(path, "cannot read the schema", e))?;
    if lacks_messages(&columns) {
        conn.execute_batch(MIGRATE_2_TO_3)
            .map_err(|e| db_err(path, "cannot add the `messages` column (schema 2 → 3)", e))?;
    }
    let columns = table_columns(&conn).map_err(|e| db_err(path, "cannot read the schema", e))?;
    if needs_v4(&conn, &columns).map_err(|e| db_err(path, "cannot read the schema", e))? {
        let n = migrate_to_v4(&conn).map_err(|e| {
            db_err(
                path,
                "cannot migrate to schema 4 (statuses failed, split, dead)",
                e,
            )
        })?;
        log::info!(
            "status database {}: migrated {n} row(s) to schema 4 (poison messages)",
            path.display()
        );
    }
    // The exactly-once marker (issue 17): a nullable column, no schema version of its own.
    super::txn::ensure_column(&conn).map_err(|e| db_err(path, "cannot add the `txn` column", e))?;
    // Another program's table of the same name: refuse rather than misread it.
    conn.prepare(&format!("SELECT {COLUMNS} FROM groups LIMIT 0"))
        .map_err(|e| db_err(path, "has a `groups` table of another schema", e))?;
    conn.execute_batch(INDEXES)
        .map_err(|e| db_err(path, "cannot create the indexes", e))?;
    // A write proves the file and its directory (WAL, shm) are writable now.
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))
    .map_err(|e| db_err(path, "not writable", e))?;
    if let Some(n) = migrated {
        log::warn!(
            "status database {}: migrated {n} row(s) of schema 1 (rows without cluster, \
             consumer group and topic id): unfinished ones are replayed by the first reader \
             of their topic, done ones no longer hide anything",
            path.display()
        );
    }
    Ok((conn, lock))
}
