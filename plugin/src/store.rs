//! The status database: one SQLite file (`pseidon-kafka.status-db`) with one row per
//! message group handed out, and its status `ready` → `run` → `done` (or `lost`).
//!
//! Durability: the file is in WAL mode with `synchronous=NORMAL`. A commit that is lost
//! on power failure (not on a process crash: WAL commits survive those) can only make a
//! group look less finished than it was, never more:
//! - a lost `done` leaves the group `run`: it is replayed at the next start — a duplicate;
//! - a lost `ready`/`run` row is harmless too, because Kafka offsets are only committed
//!   up to the done-watermark, which never passes a group that is not `done` in memory
//!   *and* was first recorded here; without the row the messages simply come again from
//!   Kafka through the group consumer.
//!
//! So no message is lost by the cheaper sync mode; it only bounds duplicates.
//!
//! Growth: done rows older than `pseidon-kafka.done-retention-ms` are pruned at open and
//! every minute of use. (A done group pruned while the committed watermark is still
//! behind it — an older group left unfinished for longer than the retention — is read
//! and handed out again after a restart: a duplicate, never a loss.) `lost` rows stay:
//! they are the record of a loss.
//!
//! One live process per file: `<db>.lock` is locked with `File::try_lock` for as long as
//! the store is open; a second process gets an error naming both files (only a
//! listing, [`list_read_only`], may read a file another instance holds). A file that is
//! not a SQLite database, has another schema, or cannot be written is an error at open
//! naming the file — never a silent reset that would forget unfinished groups.

use std::{
    fs::{File, OpenOptions},
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use pseidon_plugin_api::{Error, GroupFilter, GroupInfo, GroupStatus};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

/// How often done rows are pruned while the store is in use.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A group about to be handed out for the first time (or again, from the group consumer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGroup {
    /// `topic:partition:min:max`.
    pub id: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset.
    pub min_offset: i64,
    /// Last offset.
    pub max_offset: i64,
}

/// The status database of one plugin instance.
pub struct Store {
    path: PathBuf,
    conn: Mutex<Inner>,
    retention_ms: u64,
    _lock: File,
}

struct Inner {
    conn: Connection,
    last_prune: Instant,
}

fn db_err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::StatusDb {
        path: path.display().to_string(),
        reason: format!("{what}: {e}"),
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS groups (
    id         TEXT PRIMARY KEY NOT NULL,
    topic      TEXT NOT NULL,
    partition  INTEGER NOT NULL,
    min_offset INTEGER NOT NULL,
    max_offset INTEGER NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('ready', 'run', 'done', 'lost')),
    attempt    INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
";

const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS groups_by_partition ON groups (topic, partition, max_offset);
CREATE INDEX IF NOT EXISTS groups_by_status ON groups (status, updated_ms);
";

impl Store {
    /// Opens (creating if needed) the status database at `path` and takes its lock file.
    pub fn open(path: &Path, retention_ms: u64) -> Result<Store, Error> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| db_err(path, "cannot create its directory", e))?;
        }
        let lock_path = lock_path(path);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| {
                db_err(
                    path,
                    &format!("cannot open its lock file {}", lock_path.display()),
                    e,
                )
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::StatusDb {
                    path: path.display().to_string(),
                    reason: format!(
                        "{LOCKED} (its lock file {} is locked); \
                         give each instance its own pseidon-kafka.status-db",
                        lock_path.display()
                    ),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(db_err(
                    path,
                    &format!("cannot lock {}", lock_path.display()),
                    e,
                ));
            }
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| db_err(path, "cannot open", e))?;
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(Error::StatusDb {
                path: path.display().to_string(),
                reason:
                    "not writable (opened read-only); the datasource must record group statuses"
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
        conn.execute_batch(SCHEMA)
            .map_err(|e| db_err(path, "cannot create the schema (not writable?)", e))?;
        // Another program's table of the same name: refuse rather than misread it.
        conn.prepare(
            "SELECT id, topic, partition, min_offset, max_offset, status, attempt, updated_ms FROM groups LIMIT 0",
        )
        .map_err(|e| db_err(path, "has a `groups` table of another schema", e))?;
        conn.execute_batch(INDEXES)
            .map_err(|e| db_err(path, "cannot create the indexes", e))?;
        // A write proves the file and its directory (WAL, shm) are writable now.
        conn.execute_batch("BEGIN IMMEDIATE; PRAGMA user_version = 1; COMMIT;")
            .map_err(|e| db_err(path, "not writable", e))?;
        let store = Store {
            path: path.to_path_buf(),
            conn: Mutex::new(Inner {
                conn,
                last_prune: Instant::now(),
            }),
            retention_ms,
            _lock: lock,
        };
        let pruned = store.prune()?;
        if pruned > 0 {
            log::info!(
                "status database {}: pruned {pruned} done groups older than {} ms",
                path.display(),
                retention_ms
            );
        }
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> Error {
        db_err(&self.path, what, e)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, Error> {
        let mut inner = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let r = f(&mut inner.conn).map_err(|e| self.err("query failed", e))?;
        if inner.last_prune.elapsed() >= PRUNE_EVERY {
            inner.last_prune = Instant::now();
            let cutoff =
                now_ms().saturating_sub(i64::try_from(self.retention_ms).unwrap_or(i64::MAX));
            if let Err(e) = inner.conn.execute(
                "DELETE FROM groups WHERE status = 'done' AND updated_ms < ?1",
                params![cutoff],
            ) {
                log::warn!(
                    "status database {}: pruning failed: {e}",
                    self.path.display()
                );
            }
        }
        Ok(r)
    }

    /// Deletes done rows older than the retention; returns how many.
    pub fn prune(&self) -> Result<usize, Error> {
        let cutoff = now_ms().saturating_sub(i64::try_from(self.retention_ms).unwrap_or(i64::MAX));
        let mut inner = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        inner.last_prune = Instant::now();
        inner
            .conn
            .execute(
                "DELETE FROM groups WHERE status = 'done' AND updated_ms < ?1",
                params![cutoff],
            )
            .map_err(|e| self.err("pruning failed", e))
    }

    /// Records `groups` as `ready` in one transaction and returns the attempt each will be
    /// handed out with: 1 for a new group, one more than before for a group id seen before.
    pub fn insert_ready(&self, groups: &[NewGroup]) -> Result<Vec<u32>, Error> {
        self.insert(groups.iter().map(|g| (g, GroupStatus::Ready)))
    }

    /// Records new groups in one transaction, each with its status: `run` for a group
    /// handed out right now, `ready` for one only queued. Returns the attempt of each, as
    /// [`insert_ready`](Self::insert_ready) does (`run` groups go in with that attempt,
    /// as [`set_run`](Self::set_run) would record it).
    pub fn insert<'a>(
        &self,
        groups: impl IntoIterator<Item = (&'a NewGroup, GroupStatus)>,
    ) -> Result<Vec<u32>, Error> {
        let now = now_ms();
        self.with(|conn| {
            let tx = conn.transaction()?;
            let mut attempts = Vec::new();
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO groups (id, topic, partition, min_offset, max_offset, status, attempt, updated_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?7, 1, ?6)
                     ON CONFLICT (id) DO UPDATE SET status = ?7, attempt = attempt + 1, updated_ms = ?6
                     RETURNING attempt",
                )?;
                for (g, status) in groups {
                    let a: u32 = stmt.query_row(
                        params![
                            g.id,
                            g.topic,
                            g.partition,
                            g.min_offset,
                            g.max_offset,
                            now,
                            status.as_str()
                        ],
                        |r| r.get(0),
                    )?;
                    attempts.push(a);
                }
            }
            tx.commit()?;
            Ok(attempts)
        })
    }

    /// Marks groups `run` (handed out), with their attempt count.
    pub fn set_run(&self, groups: &[(&str, u32)]) -> Result<(), Error> {
        let now = now_ms();
        self.with(|conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE groups SET status = 'run', attempt = ?2, updated_ms = ?3
                     WHERE id = ?1 AND status IN ('ready', 'run')",
                )?;
                for (id, attempt) in groups {
                    stmt.execute(params![id, attempt, now])?;
                }
            }
            tx.commit()
        })
    }

    /// Marks a group done. Returns its previous status, `None` if the id is unknown.
    /// A `lost` group stays `lost` (the loss stays on record).
    pub fn mark_done(&self, id: &str) -> Result<Option<GroupStatus>, Error> {
        let now = now_ms();
        self.with(|conn| {
            let tx = conn.transaction()?;
            let prev: Option<String> = tx
                .prepare_cached("SELECT status FROM groups WHERE id = ?1")?
                .query_row(params![id], |r| r.get(0))
                .optional()?;
            let prev = prev.and_then(|s| GroupStatus::parse(&s));
            if matches!(prev, Some(GroupStatus::Ready | GroupStatus::Run)) {
                tx.prepare_cached(
                    "UPDATE groups SET status = 'done', updated_ms = ?2 WHERE id = ?1",
                )?
                .execute(params![id, now])?;
            }
            tx.commit()?;
            Ok(prev)
        })
    }

    /// Marks a group `lost` (its offsets are gone from Kafka).
    pub fn set_lost(&self, id: &str, attempt: u32) -> Result<(), Error> {
        let now = now_ms();
        self.with(|conn| {
            conn.execute(
                "UPDATE groups SET status = 'lost', attempt = ?2, updated_ms = ?3 WHERE id = ?1",
                params![id, attempt, now],
            )
            .map(|_| ())
        })
    }

    /// The unfinished (`ready`/`run`) groups of `topics`, by topic, partition and offset.
    pub fn unfinished(&self, topics: &[String]) -> Result<Vec<GroupInfo>, Error> {
        let mut all = Vec::new();
        for topic in topics {
            all.extend(self.list(&GroupFilter {
                status: Some(GroupStatus::Ready),
                topic: Some(topic.clone()),
                consumer_group: None,
            })?);
            all.extend(self.list(&GroupFilter {
                status: Some(GroupStatus::Run),
                topic: Some(topic.clone()),
                consumer_group: None,
            })?);
        }
        all.sort_by(|a, b| {
            (&a.topic, a.partition, a.min_offset).cmp(&(&b.topic, b.partition, b.min_offset))
        });
        all.dedup_by(|a, b| a.id == b.id);
        Ok(all)
    }

    /// Groups of one partition that end at or after `from_offset`, by offset.
    pub fn ranges_from(
        &self,
        topic: &str,
        partition: i32,
        from_offset: i64,
    ) -> Result<Vec<GroupInfo>, Error> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, topic, partition, min_offset, max_offset, status, attempt, updated_ms
                 FROM groups WHERE topic = ?1 AND partition = ?2 AND max_offset >= ?3
                 ORDER BY min_offset",
            )?;
            let rows = stmt.query_map(params![topic, partition, from_offset], row_to_info)?;
            rows.collect()
        })
    }

    /// The rows matching `filter`, by topic, partition and offset.
    pub fn list(&self, filter: &GroupFilter) -> Result<Vec<GroupInfo>, Error> {
        let status = filter.status.map(|s| s.as_str());
        let topic = filter.topic.as_deref();
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, topic, partition, min_offset, max_offset, status, attempt, updated_ms
                 FROM groups WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR topic = ?2)
                 ORDER BY topic, partition, min_offset",
            )?;
            let rows = stmt.query_map(params![status, topic], row_to_info)?;
            rows.collect()
        })
    }
}

/// The reason of the error for a database another live instance holds.
const LOCKED: &str = "in use by another live pseidon-kafka instance";

/// True if `e` is the error of a database locked by another live instance.
pub fn is_locked_error(e: &Error) -> bool {
    matches!(e, Error::StatusDb { reason, .. } if reason.starts_with(LOCKED))
}

/// Lists groups of the database at `path` through a read-only connection, without the
/// instance lock (for listings while another instance runs).
pub fn list_read_only(path: &Path, filter: &GroupFilter) -> Result<Vec<GroupInfo>, Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| db_err(path, "cannot open read-only", e))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| db_err(path, "cannot configure", e))?;
    let mut stmt = conn
        .prepare(
            "SELECT id, topic, partition, min_offset, max_offset, status, attempt, updated_ms
             FROM groups WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR topic = ?2)
             ORDER BY topic, partition, min_offset",
        )
        .map_err(|e| db_err(path, "not a usable status database", e))?;
    let rows: rusqlite::Result<Vec<GroupInfo>> = stmt
        .query_map(
            params![filter.status.map(|s| s.as_str()), filter.topic.as_deref()],
            row_to_info,
        )
        .and_then(|rows| rows.collect());
    rows.map_err(|e| db_err(path, "query failed", e))
}

/// The lock file of the database at `db`: `<db>.lock`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

fn row_to_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<GroupInfo> {
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
        cluster_id: String::new(),
        consumer_group: String::new(),
        topic_id: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "pseidon-kafka-store-{}-{}-{name}",
            std::process::id(),
            now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("status.db")
    }

    fn g(topic: &str, p: i32, min: i64, max: i64) -> NewGroup {
        NewGroup {
            id: format!("{topic}:{p}:{min}:{max}"),
            topic: topic.into(),
            partition: p,
            min_offset: min,
            max_offset: max,
        }
    }

    #[test]
    fn lifecycle_ready_run_done() {
        let path = tmp("life");
        let s = Store::open(&path, 1000).unwrap();
        assert_eq!(
            s.insert_ready(&[g("t", 0, 0, 9), g("t", 0, 10, 19)])
                .unwrap(),
            vec![1, 1]
        );
        s.set_run(&[("t:0:0:9", 1)]).unwrap();
        assert_eq!(s.mark_done("t:0:0:9").unwrap(), Some(GroupStatus::Run));
        assert_eq!(s.mark_done("t:0:0:9").unwrap(), Some(GroupStatus::Done));
        assert_eq!(s.mark_done("t:0:5:9").unwrap(), None);
        let unfinished = s.unfinished(&["t".into()]).unwrap();
        assert_eq!(unfinished.len(), 1);
        assert_eq!(unfinished[0].id, "t:0:10:19");
        assert_eq!(unfinished[0].status, GroupStatus::Ready);
        // Seen again: attempt grows.
        assert_eq!(s.insert_ready(&[g("t", 0, 10, 19)]).unwrap(), vec![2]);
        let r = s.ranges_from("t", 0, 10).unwrap();
        assert_eq!(r.len(), 1);
        s.set_lost("t:0:10:19", 3).unwrap();
        assert_eq!(s.mark_done("t:0:10:19").unwrap(), Some(GroupStatus::Lost));
        let lost = s
            .list(&GroupFilter {
                status: Some(GroupStatus::Lost),
                topic: None,
                consumer_group: None,
            })
            .unwrap();
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].attempt, 3);
    }

    #[test]
    fn insert_records_run_and_ready_in_one_call() {
        let s = Store::open(&tmp("insert"), 1000).unwrap();
        let (a, b) = (g("t", 0, 0, 9), g("t", 0, 10, 19));
        assert_eq!(
            s.insert([(&a, GroupStatus::Run), (&b, GroupStatus::Ready)])
                .unwrap(),
            vec![1, 1]
        );
        let status = |id: &str| {
            s.list(&GroupFilter {
                status: None,
                consumer_group: None,
                topic: None,
            })
            .unwrap()
            .into_iter()
            .find(|i| i.id == id)
            .map(|i| (i.status, i.attempt))
        };
        assert_eq!(status("t:0:0:9"), Some((GroupStatus::Run, 1)));
        assert_eq!(status("t:0:10:19"), Some((GroupStatus::Ready, 1)));
        // Seen again (read again by the group consumer): attempt grows.
        assert_eq!(s.insert([(&b, GroupStatus::Run)]).unwrap(), vec![2]);
        assert_eq!(status("t:0:10:19"), Some((GroupStatus::Run, 2)));
        assert_eq!(s.mark_done("t:0:0:9").unwrap(), Some(GroupStatus::Run));
    }

    #[test]
    fn survives_reopen_and_second_instance_is_refused() {
        let path = tmp("lock");
        let s = Store::open(&path, 1000).unwrap();
        s.insert_ready(&[g("t", 1, 5, 6)]).unwrap();
        let err = Store::open(&path, 1000)
            .err()
            .expect("second open must fail");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains(".lock"), "{text}");
        assert!(is_locked_error(&err));
        // A listing still works, read-only, while the owner runs.
        let rows = list_read_only(&path, &GroupFilter::default()).unwrap();
        assert_eq!(rows.len(), 1);
        drop(s);
        let s = Store::open(&path, 1000).unwrap();
        assert_eq!(s.unfinished(&["t".into()]).unwrap().len(), 1);
    }

    #[test]
    fn done_rows_are_pruned_after_retention() {
        let path = tmp("prune");
        let s = Store::open(&path, 0).unwrap();
        s.insert_ready(&[g("t", 0, 0, 1), g("t", 0, 2, 3)]).unwrap();
        s.mark_done("t:0:0:1").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.prune().unwrap(), 1);
        assert_eq!(s.list(&GroupFilter::default()).unwrap().len(), 1);
    }

    #[test]
    fn garbage_file_is_a_clear_error_and_is_not_reset() {
        let path = tmp("corrupt");
        let garbage = vec![0xA5u8; 8192];
        std::fs::write(&path, &garbage).unwrap();
        let err = Store::open(&path, 1000).err().expect("garbage must fail");
        assert!(matches!(err, Error::StatusDb { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("not a database"), "{text}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            garbage,
            "the file must not be reset"
        );
    }

    #[test]
    fn path_below_a_regular_file_is_a_clear_error() {
        let path = tmp("notdir");
        std::fs::write(&path, b"x").unwrap();
        let below = path.join("status.db");
        let err = Store::open(&below, 1000).err().expect("must fail");
        assert!(
            err.to_string().contains(&below.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn foreign_schema_is_refused() {
        let path = tmp("foreign");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch("CREATE TABLE groups (name TEXT)").unwrap();
        }
        let err = Store::open(&path, 1000).err().expect("must fail");
        assert!(err.to_string().contains("another schema"), "{err}");
    }
}
