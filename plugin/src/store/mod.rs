//! The status database: one SQLite file (`pseidon-kafka.status-db`) with one row per
//! message group handed out, and its status.
//!
//! The state machine (schema 4; docs/DESIGN-group-states.md, docs/RELIABILITY.md):
//!
//! ```text
//!                                    mark_done
//!   ready ──► run ───────────────────────────────────────────► done
//!     ▲        │ mark_failed(reason)
//!     │        ▼
//!     │      failed ──(retry_at_ms passed)──► handed out again (attempt + 1)
//!     │        │ attempt ≥ max-attempts, more than one message
//!     │        ├──► split: two new `ready` halves (`parent` = this id), this row `split`
//!     │        │ attempt ≥ max-attempts, one message
//!     │        └──► copied to the dead-letter topic ──(delivery confirmed)──► dead
//!     │                 │ the copy fails: stays `failed` (error logged), retried
//!     └── replay by hand: done / dead → ready
//!   a replay finds the range gone from Kafka ──► lost
//! ```
//!
//! The done-watermark passes `done`, `dead` and `lost` groups; a `split` group only
//! through its halves (the known-ranges query leaves split rows out, and the live
//! trackers replace the parent's entry by the halves). Every transition is one SQLite
//! transaction (a split inserts both halves and marks the parent in one), so a SIGKILL
//! leaves the old state or the new one; a restart hands out what is unfinished
//! (`ready`, `run`, `failed`), halves included.
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
//! then at most every minute, by the readers between groups ([`Store::prune_if_due`]),
//! never inside a query. (A done group pruned while the committed watermark is still
//! behind it — an older group left unfinished for longer than the retention — is read
//! and handed out again after a restart: a duplicate, never a loss.) `lost` rows stay:
//! they are the record of a loss.
//!
//! Identity: every row carries what it tracks — the Kafka cluster (its cluster id), the
//! consumer group (`group.id`), and the incarnation of the topic (Kafka's topic id) —
//! besides `topic:partition:min:max`. Every query of a reader (unfinished groups,
//! known ranges, status changes) sees only the rows of its own [`Scope`] and of the
//! topic's current incarnation, so two consumer groups on one database, or a topic
//! deleted and recreated under the same name, never hide offsets from each other.
//!
//! Migration: a database of schema 1 (rows without identity) is migrated at open, in
//! one transaction. Its rows get the *unknown* scope (empty cluster and group) and
//! an unknown topic id. An unfinished old row is adopted by the first reader of its
//! topic that opens ([`Store::adopt_unscoped`]) and replayed by it as before: a replay
//! is at worst a duplicate, never a loss. An old done row hides nothing any more (no
//! reader's scope matches it) and ages out by the retention: the consumer group that
//! wrote it has committed offsets up to its done-watermark, so ignoring the old done
//! rows can only make groups done beyond an unfinished one come again — a duplicate.
//!
//! Schema 3 adds the `messages` column (the group's message count, set when it is
//! recorded and again whenever it is handed out); a schema 2 database gains it at open,
//! NULL — unknown — for its rows. A plugin of schema 2 still reads and writes schema 3.
//!
//! Replay by hand ([`Store::replay`], `pseidon groups replay`): a done row goes back to
//! `ready`, and is then an unfinished group like any other: the next reader of its scope
//! replays it. No offset moves; the readers' watermarks start where the consumer group
//! resumes, so a row set back behind it cannot pull a commit backwards.
//!
//! One live process per file: the database file itself is locked (`flock`, through
//! `File::try_lock`, on the real file a symlink leads to; SQLite's own locks are POSIX
//! locks and do not interfere) for as long as the store is open; a second process
//! gets an error naming the file (only a listing, [`list_read_only`], may read a file
//! another instance holds). A file that is not a SQLite database, has another schema,
//! or cannot be written (its `-wal` and `-shm` files included: SQLite maps `-shm`, and
//! an unwritable one ended the process with SIGBUS) is an error at open naming the
//! file — never a silent reset that would forget unfinished groups.
//!
//! Rooms: this file holds [`Store`] and its status changes; `open` opens, locks and
//! checks the file; `schema` the DDL, the one column list and the migration; `rows`
//! the listings (also read-only, for a file another instance holds).

use std::{
    fs::File,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use pseidon_plugin_api::{Error, GroupFilter, GroupInfo, GroupStatus};
use rusqlite::{Connection, OptionalExtension, params};

mod open;
mod rows;
mod schema;
mod txn;

use open::db_err;
pub use rows::list_read_only;
use rows::{query_list, row_to_info};
use schema::COLUMNS;
pub use txn::TxnRow;

/// How often done rows are pruned while the store is in use.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What a reader's rows belong to: one consumer group on one Kafka cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Scope {
    /// The Kafka cluster id (from metadata); empty for rows of unknown origin.
    pub cluster_id: String,
    /// The consumer group (`group.id`); empty for rows of unknown origin.
    pub consumer_group: String,
}

impl Scope {
    /// The scope of a row.
    pub fn of(info: &GroupInfo) -> Scope {
        Scope {
            cluster_id: info.cluster_id.clone(),
            consumer_group: info.consumer_group.clone(),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.consumer_group.is_empty() && self.cluster_id.is_empty() {
            return f.write_str("unknown consumer group (rows from before scoping)");
        }
        write!(
            f,
            "consumer group `{}` of cluster {}",
            self.consumer_group, self.cluster_id
        )
    }
}

/// A group about to be handed out for the first time (or again, from the group consumer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGroup {
    /// `topic:partition:min:max`.
    pub id: String,
    /// Topic.
    pub topic: String,
    /// The topic's incarnation (Kafka topic id), empty if unknown.
    pub topic_id: String,
    /// Partition.
    pub partition: i32,
    /// First offset.
    pub min_offset: i64,
    /// Last offset.
    pub max_offset: i64,
    /// Messages in the group.
    pub messages: u64,
}

/// What [`Store::retire_incarnations`] found of a topic's earlier incarnations.
#[derive(Debug, Default)]
pub struct Retired {
    /// Unfinished groups of an earlier incarnation, now recorded `lost`.
    pub lost: Vec<GroupInfo>,
    /// Done or lost groups of an earlier incarnation (they hide nothing any more).
    pub finished: usize,
    /// The earlier topic ids seen.
    pub old_ids: Vec<String>,
}

/// What [`Store::mark_done`] did to a known row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkDone {
    /// It was `ready`, `run` or `failed`; it is `done` now.
    Marked,
    /// It was left as it is, with this status (`done` already, `lost`, `dead`, `split`).
    Unchanged(GroupStatus),
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

impl Store {
    /// Opens (creating if needed) the status database at `path`, locks it, and migrates
    /// an older schema.
    pub fn open(path: &Path, retention_ms: u64) -> Result<Store, Error> {
        let (conn, lock) = open::connect(path)?;
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

    fn err(&self, what: &str, e: impl std::fmt::Display) -> Error {
        db_err(&self.path, what, e)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, Error> {
        let mut inner = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut inner.conn).map_err(|e| self.err("query failed", e))
    }

    /// Prunes done rows if the last pruning is `PRUNE_EVERY` (a minute) ago (called by the
    /// readers between groups, never inside a query); a failure is logged, not returned.
    pub fn prune_if_due(&self) {
        let mut inner = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if inner.last_prune.elapsed() < PRUNE_EVERY {
            return;
        }
        inner.last_prune = Instant::now();
        match prune_done(&inner.conn, self.retention_ms) {
            Ok(0) => {}
            Ok(n) => log::debug!(
                "status database {}: pruned {n} done groups older than {} ms",
                self.path.display(),
                self.retention_ms
            ),
            Err(e) => log::warn!(
                "status database {}: pruning failed: {e}",
                self.path.display()
            ),
        }
    }

    /// Deletes done rows older than the retention; returns how many.
    pub fn prune(&self) -> Result<usize, Error> {
        let mut inner = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        inner.last_prune = Instant::now();
        prune_done(&inner.conn, self.retention_ms).map_err(|e| self.err("pruning failed", e))
    }

    /// Records new groups of `scope` in one transaction, each with its status: `run` for
    /// a group handed out right now, `ready` for one only queued. Returns the attempt of
    /// each: 1 for a new group, one more than before for a group seen before.
    pub fn insert<'a>(
        &self,
        scope: &Scope,
        groups: impl IntoIterator<Item = (&'a NewGroup, GroupStatus)>,
    ) -> Result<Vec<u32>, Error> {
        let now = now_ms();
        self.with(|conn| {
            let tx = conn.transaction()?;
            let mut attempts = Vec::new();
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO groups (cluster_id, consumer_group, topic_id, id, topic, partition,
                                         min_offset, max_offset, status, attempt, updated_ms,
                                         messages)
                     VALUES (?8, ?9, ?10, ?1, ?2, ?3, ?4, ?5, ?7, 1, ?6, ?11)
                     ON CONFLICT (cluster_id, consumer_group, topic_id, id)
                     DO UPDATE SET status = ?7, attempt = attempt + 1, updated_ms = ?6,
                                   messages = ?11
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
                            status.as_str(),
                            scope.cluster_id,
                            scope.consumer_group,
                            g.topic_id,
                            i64::try_from(g.messages).unwrap_or(i64::MAX),
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

    /// Marks a group `run` (handed out), with its attempt count; only a `ready`, `run`
    /// or `failed` row changes (a done or lost one stays).
    pub fn set_run(
        &self,
        scope: &Scope,
        topic_id: &str,
        id: &str,
        attempt: u32,
        messages: u64,
    ) -> Result<(), Error> {
        self.set_run_many([(scope, topic_id, id, attempt, messages)])
    }

    /// [`set_run`](Self::set_run) of several groups in one transaction: each of
    /// `runs` is (scope, topic id, group id, attempt, messages).
    pub fn set_run_many<'a>(
        &self,
        runs: impl IntoIterator<Item = (&'a Scope, &'a str, &'a str, u32, u64)>,
    ) -> Result<(), Error> {
        let now = now_ms();
        self.with(|conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE groups SET status = 'run', attempt = ?2, updated_ms = ?3,
                            messages = ?7
                     WHERE cluster_id = ?4 AND consumer_group = ?5 AND topic_id = ?6 AND id = ?1
                       AND (status = 'ready' OR status = 'run' OR status = 'failed')",
                )?;
                for (scope, topic_id, id, attempt, messages) in runs {
                    stmt.execute(params![
                        id,
                        attempt,
                        now,
                        scope.cluster_id,
                        scope.consumer_group,
                        topic_id,
                        i64::try_from(messages).unwrap_or(i64::MAX)
                    ])?;
                }
            }
            tx.commit()
        })
    }

    /// Marks a group done: [`MarkDone::Marked`] if it was `ready`, `run` or `failed`,
    /// else it is left as it is ([`MarkDone::Unchanged`] with its status: a `lost` group
    /// stays `lost`, the loss stays on record); `None` if the row is unknown.
    ///
    /// The common case is one guarded `UPDATE` in its own transaction (no `SELECT`, no
    /// `BEGIN`/`COMMIT` statements: a user's `mark_done` per small group is this
    /// database's hottest write); only when it changes nothing is the row read, with the
    /// update retried in one transaction (the row may have changed in between).
    pub fn mark_done(
        &self,
        scope: &Scope,
        topic_id: &str,
        id: &str,
    ) -> Result<Option<MarkDone>, Error> {
        let now = now_ms();
        self.with(|conn| {
            // Guarded: changes the row only from an unfinished status (ready, run, failed).
            let mark = |conn: &Connection| -> rusqlite::Result<usize> {
                conn.prepare_cached(
                    "UPDATE groups SET status = 'done', txn = NULL, updated_ms = ?5
                     WHERE cluster_id = ?1 AND consumer_group = ?2 AND topic_id = ?3 AND id = ?4
                       AND (status = 'ready' OR status = 'run' OR status = 'failed')",
                )?
                .execute(params![
                    scope.cluster_id,
                    scope.consumer_group,
                    topic_id,
                    id,
                    now
                ])
            };
            if mark(conn)? > 0 {
                return Ok(Some(MarkDone::Marked));
            }
            let tx = conn.transaction()?;
            let key = params![scope.cluster_id, scope.consumer_group, topic_id, id];
            let prev: Option<String> = tx
                .prepare_cached(
                    "SELECT status FROM groups
                     WHERE cluster_id = ?1 AND consumer_group = ?2 AND topic_id = ?3 AND id = ?4",
                )?
                .query_row(key, |r| r.get(0))
                .optional()?;
            let Some(prev) = prev else {
                return Ok(None);
            };
            let outcome = match GroupStatus::parse(&prev) {
                Some(GroupStatus::Ready | GroupStatus::Run | GroupStatus::Failed) => {
                    mark(&tx)?;
                    Some(MarkDone::Marked)
                }
                Some(status) => Some(MarkDone::Unchanged(status)),
                // A status this version does not know: left as it is, reported unknown.
                None => None,
            };
            tx.commit()?;
            Ok(outcome)
        })
    }

    /// Sets a done (or dead) group of `scope` and incarnation `topic_id` back to `ready`, for the
    /// next reader of its topic to replay it (its attempt, the times it was handed out,
    /// stays: the replay hands it out as one more). A `ready`, `run` or `lost` group is
    /// left as it is. Returns the previous status and the row as it is now; `None` if
    /// the row is unknown.
    pub fn replay(
        &self,
        scope: &Scope,
        topic_id: &str,
        id: &str,
    ) -> Result<Option<(GroupStatus, GroupInfo)>, Error> {
        let now = now_ms();
        self.with(|conn| {
            let tx = conn.transaction()?;
            let key = params![scope.cluster_id, scope.consumer_group, topic_id, id];
            let select = format!(
                "SELECT {COLUMNS} FROM groups
                 WHERE cluster_id = ?1 AND consumer_group = ?2 AND topic_id = ?3 AND id = ?4"
            );
            let Some(before) = tx
                .prepare_cached(&select)?
                .query_row(key, row_to_info)
                .optional()?
            else {
                return Ok(None);
            };
            if matches!(before.status, GroupStatus::Done | GroupStatus::Dead) {
                tx.prepare_cached(
                    "UPDATE groups SET status = 'ready', updated_ms = ?5, retry_at_ms = NULL
                     WHERE cluster_id = ?1 AND consumer_group = ?2 AND topic_id = ?3 AND id = ?4
                       AND (status = 'done' OR status = 'dead')",
                )?
                .execute(params![
                    scope.cluster_id,
                    scope.consumer_group,
                    topic_id,
                    id,
                    now
                ])?;
            }
            let after = tx.prepare_cached(&select)?.query_row(key, row_to_info)?;
            tx.commit()?;
            Ok(Some((before.status, after)))
        })
    }

    /// Marks a handed-out (`run`, or `ready`/`failed`) group `failed` with `reason` and
    /// the instant it is handed out again. Returns the row now; `None` if the row is
    /// unknown or finished (done, lost, split, dead: left as it is).
    pub fn mark_failed(
        &self,
        scope: &Scope,
        topic_id: &str,
        id: &str,
        reason: &str,
        retry_at_ms: i64,
    ) -> Result<Option<GroupInfo>, Error> {
        let now = now_ms();
        self.with(|conn| {
            let tx = conn.transaction()?;
            let n = tx
                .prepare_cached(
                    "UPDATE groups SET status = 'failed', reason = ?5, retry_at_ms = ?6,
                            updated_ms = ?7
                     WHERE cluster_id = ?1 AND consumer_group = ?2 AND topic_id = ?3 AND id = ?4
                       AND (status = 'ready' OR status = 'run' OR status = 'failed')",
                )?
                .execute(params![
                    scope.cluster_id,
                    scope.consumer_group,
                    topic_id,
                    id,
                    reason,
                    retry_at_ms,
                    now
                ])?;
            let row = if n == 0 {
                None
            } else {
                Some(
                    tx.prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM groups
                         WHERE cluster_id = ?1 AND consumer_group = ?2 AND topic_id = ?3 AND id = ?4"
                    ))?
                    .query_row(
                        params![scope.cluster_id, scope.consumer_group, topic_id, id],
                        row_to_info,
                    )?,
                )
            };
            tx.commit()?;
            Ok(row)
        })
    }

    /// Splits group `parent` (of `scope` and incarnation `topic_id`) into `halves`, in one
    /// transaction: the halves are recorded `ready` with attempt 0 (their first hand-out
    /// is attempt 1) and `parent` set; the parent becomes `split`. Only a parent still
    /// unfinished is split; returns false (nothing changed) otherwise.
    pub fn split(
        &self,
        scope: &Scope,
        topic_id: &str,
        parent: &str,
        halves: [&NewGroup; 2],
    ) -> Result<bool, Error> {
        let now = now_ms();
        self.with(|conn| {
            let tx = conn.transaction()?;
            let n = tx
                .prepare_cached(
                    "UPDATE groups SET status = 'split', updated_ms = ?5, retry_at_ms = NULL
                     WHERE cluster_id = ?1 AND consumer_group = ?2 AND topic_id = ?3 AND id = ?4
                       AND (status = 'ready' OR status = 'run' OR status = 'failed')",
                )?
                .execute(params![
                    scope.cluster_id,
                    scope.consumer_group,
                    topic_id,
                    parent,
                    now
                ])?;
            if n == 0 {
                return Ok(false);
            }
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO groups (cluster_id, consumer_group, topic_id, id, topic, partition,
                                         min_offset, max_offset, status, attempt, updated_ms,
                                         messages, parent)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'ready', 0, ?9, ?10, ?11)
                     ON CONFLICT (cluster_id, consumer_group, topic_id, id)
                     DO UPDATE SET status = 'ready', updated_ms = ?9, messages = ?10, parent = ?11",
                )?;
                for g in halves {
                    stmt.execute(params![
                        scope.cluster_id,
                        scope.consumer_group,
                        topic_id,
                        g.id,
                        g.topic,
                        g.partition,
                        g.min_offset,
                        g.max_offset,
                        now,
                        i64::try_from(g.messages).unwrap_or(i64::MAX),
                        parent
                    ])?;
                }
            }
            tx.commit()?;
            Ok(true)
        })
    }

    /// Marks an unfinished group `dead` (its one message was copied to the dead-letter
    /// topic, delivery confirmed — or there is no dead-letter topic); returns false if the
    /// row is unknown or finished.
    pub fn set_dead(&self, scope: &Scope, topic_id: &str, id: &str) -> Result<bool, Error> {
        let now = now_ms();
        self.with(|conn| {
            conn.prepare_cached(
                "UPDATE groups SET status = 'dead', updated_ms = ?5, retry_at_ms = NULL
                 WHERE cluster_id = ?1 AND consumer_group = ?2 AND topic_id = ?3 AND id = ?4
                   AND (status = 'ready' OR status = 'run' OR status = 'failed')",
            )?
            .execute(params![
                scope.cluster_id,
                scope.consumer_group,
                topic_id,
                id,
                now
            ])
            .map(|n| n > 0)
        })
    }

    /// Marks a group `lost` (its offsets are gone from Kafka), whatever its status.
    pub fn set_lost(
        &self,
        scope: &Scope,
        topic_id: &str,
        id: &str,
        attempt: u32,
    ) -> Result<(), Error> {
        self.set_status(scope, topic_id, id, GroupStatus::Lost, attempt, None)
    }

    /// Sets the status and attempt of one row, whatever its status was (`lost`).
    fn set_status(
        &self,
        scope: &Scope,
        topic_id: &str,
        id: &str,
        status: GroupStatus,
        attempt: u32,
        messages: Option<u64>,
    ) -> Result<(), Error> {
        let now = now_ms();
        self.with(|conn| {
            conn.prepare_cached(
                "UPDATE groups SET status = ?7, attempt = ?2, updated_ms = ?3,
                        messages = COALESCE(?8, messages)
                 WHERE cluster_id = ?4 AND consumer_group = ?5 AND topic_id = ?6 AND id = ?1",
            )?
            .execute(params![
                id,
                attempt,
                now,
                scope.cluster_id,
                scope.consumer_group,
                topic_id,
                status.as_str(),
                messages.map(|m| i64::try_from(m).unwrap_or(i64::MAX))
            ])
            .map(|_| ())
        })
    }

    /// Moves the unfinished rows of unknown scope (from before scoping) of `topics` into
    /// `scope`, with an unknown topic id; returns how many. The first reader of a topic
    /// replays them (module docs: why that is safe).
    pub fn adopt_unscoped(&self, scope: &Scope, topics: &[String]) -> Result<usize, Error> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            let mut n = 0;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE OR IGNORE groups SET cluster_id = ?1, consumer_group = ?2
                     WHERE cluster_id = '' AND consumer_group = '' AND topic = ?3
                       AND (status = 'ready' OR status = 'run' OR status = 'failed')",
                )?;
                for t in topics {
                    n += stmt.execute(params![scope.cluster_id, scope.consumer_group, t])?;
                }
            }
            tx.commit()?;
            Ok(n)
        })
    }

    /// The topic's current incarnation is `topic_id`: the unfinished rows of `scope` of
    /// an earlier incarnation (another known topic id) are recorded `lost` — their
    /// messages were deleted with the topic — and returned, with the count of the done
    /// ones, which no longer hide anything (queries see only the current incarnation).
    pub fn retire_incarnations(
        &self,
        scope: &Scope,
        topic: &str,
        topic_id: &str,
    ) -> Result<Retired, Error> {
        if topic_id.is_empty() {
            return Ok(Retired::default());
        }
        let now = now_ms();
        self.with(|conn| {
            let tx = conn.transaction()?;
            let old: Vec<GroupInfo> = {
                let mut stmt = tx.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM groups
                     WHERE cluster_id = ?1 AND consumer_group = ?2 AND topic = ?3
                       AND topic_id <> '' AND topic_id <> ?4
                     ORDER BY partition, min_offset"
                ))?;
                let rows = stmt.query_map(
                    params![scope.cluster_id, scope.consumer_group, topic, topic_id],
                    row_to_info,
                )?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut retired = Retired::default();
            for g in old {
                if !retired.old_ids.contains(&g.topic_id) {
                    retired.old_ids.push(g.topic_id.clone());
                }
                if g.status.is_unfinished() {
                    tx.prepare_cached(
                        "UPDATE groups SET status = 'lost', updated_ms = ?5
                         WHERE cluster_id = ?1 AND consumer_group = ?2 AND topic_id = ?3 AND id = ?4",
                    )?
                    .execute(params![
                        scope.cluster_id,
                        scope.consumer_group,
                        g.topic_id,
                        g.id,
                        now
                    ])?;
                    retired.lost.push(g);
                } else {
                    retired.finished += 1;
                }
            }
            tx.commit()?;
            Ok(retired)
        })
    }

    /// The unfinished (`ready`/`run`/`failed`) groups of `scope` and the current incarnation of
    /// each of `topics` (`topic_ids`: topic → topic id, empty or missing if unknown), by
    /// topic, partition and offset. Rows of an unknown topic id are included.
    pub fn unfinished(
        &self,
        scope: &Scope,
        topics: &[String],
        topic_id: impl Fn(&str) -> String,
    ) -> Result<Vec<GroupInfo>, Error> {
        let mut all = Vec::new();
        for topic in topics {
            let tid = topic_id(topic);
            let rows = self.with(|conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM groups
                     WHERE cluster_id = ?1 AND consumer_group = ?2 AND topic = ?3
                       AND (status = 'ready' OR status = 'run' OR status = 'failed')
                       AND (?4 = '' OR topic_id = '' OR topic_id = ?4)"
                ))?;
                let rows = stmt.query_map(
                    params![scope.cluster_id, scope.consumer_group, topic, tid],
                    row_to_info,
                )?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })?;
            all.extend(rows);
        }
        all.sort_by(|a, b| {
            (&a.topic, a.partition, a.min_offset).cmp(&(&b.topic, b.partition, b.min_offset))
        });
        all.dedup_by(|a, b| a.id == b.id && a.topic_id == b.topic_id);
        Ok(all)
    }

    /// Groups of `scope` and of the topic's incarnation `topic_id` (or of an unknown
    /// one) in one partition that end at or after `from_offset`, by offset; a `split`
    /// group is left out (its halves stand for it).
    pub fn ranges_from(
        &self,
        scope: &Scope,
        topic: &str,
        topic_id: &str,
        partition: i32,
        from_offset: i64,
    ) -> Result<Vec<GroupInfo>, Error> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM groups
                 WHERE cluster_id = ?1 AND consumer_group = ?2 AND topic = ?3 AND partition = ?4
                   AND max_offset >= ?5 AND (?6 = '' OR topic_id = '' OR topic_id = ?6)
                   AND status <> 'split'
                 ORDER BY min_offset"
            ))?;
            let rows = stmt.query_map(
                params![
                    scope.cluster_id,
                    scope.consumer_group,
                    topic,
                    partition,
                    from_offset,
                    topic_id
                ],
                row_to_info,
            )?;
            rows.collect()
        })
    }

    /// Every row of group id `id` (any scope), optionally of one consumer group.
    pub fn find(&self, id: &str, consumer_group: Option<&str>) -> Result<Vec<GroupInfo>, Error> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM groups
                 WHERE id = ?1 AND (?2 IS NULL OR consumer_group = ?2)
                 ORDER BY updated_ms DESC"
            ))?;
            let rows = stmt.query_map(params![id, consumer_group], row_to_info)?;
            rows.collect()
        })
    }

    /// How many rows there are of each status.
    pub fn count_by_status(&self) -> Result<Vec<(String, u64)>, Error> {
        self.with(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT status, COUNT(*) FROM groups GROUP BY status")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
            rows.collect()
        })
    }

    /// The rows matching `filter`, by topic, partition and offset.
    pub fn list(&self, filter: &GroupFilter) -> Result<Vec<GroupInfo>, Error> {
        self.with(|conn| query_list(conn, filter))
    }
}

fn prune_done(conn: &Connection, retention_ms: u64) -> rusqlite::Result<usize> {
    let cutoff = now_ms().saturating_sub(i64::try_from(retention_ms).unwrap_or(i64::MAX));
    conn.execute(
        "DELETE FROM groups WHERE status = 'done' AND updated_ms < ?1",
        params![cutoff],
    )
}

#[cfg(test)]
mod tests;
