/* index/store.c: the SQLite store, imago's source of truth (docs/architecture.md):
 * schema and migrations, the statement texts, connections (one writer used
 * under the index writer mutex, a pool of readers), transactions, meta.
 * WAL journal; schema versioned by PRAGMA user_version with an ordered list
 * of migrations; every statement prepared once per connection. SQLite errors
 * are translated here (ix_db_err: sqlite3_errmsg). The rows themselves:
 * store_images.c, store_jobs.c, store_whiten.c.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "index_int.h"
#include "store_int.h"

#define MOD "index"

/* ---- schema and migrations -------------------------------------------- */

static const char *const migrations[] = {
    /* v1 */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE images("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  external_id TEXT NOT NULL UNIQUE CHECK(length(external_id) > 0),"
    "  sha256 TEXT, uri TEXT,"
    "  width INTEGER NOT NULL DEFAULT 0, height INTEGER NOT NULL DEFAULT 0,"
    "  metadata TEXT CHECK(metadata IS NULL OR json_valid(metadata)),"
    "  thumbnail BLOB,"
    "  created_at INTEGER NOT NULL,"
    "  deleted INTEGER NOT NULL DEFAULT 0,"
    "  seq INTEGER NOT NULL);"
    "CREATE INDEX images_seq ON images(seq);"
    "CREATE TABLE descriptors("
    "  image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,"
    "  model TEXT NOT NULL, dim INTEGER NOT NULL, vec BLOB NOT NULL);"
    "CREATE TABLE jobs("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,"
    "  state INTEGER NOT NULL DEFAULT 0, params TEXT, error TEXT,"
    "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE TABLE job_items("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
    "  source TEXT NOT NULL, external_id TEXT,"
    "  state INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,"
    "  error_code INTEGER NOT NULL DEFAULT 0, error TEXT, image_id INTEGER);"
    "CREATE INDEX job_items_state ON job_items(job_id, state, id);"
    "INSERT INTO meta(key, value) VALUES('seq', '0');",
    /* v2: the whitening learned from the collection, one row per version;
     * at most one is active (the one the index applies) */
    "CREATE TABLE whitening("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  active INTEGER NOT NULL DEFAULT 1,"
    "  dim_in INTEGER NOT NULL, dim INTEGER NOT NULL, rank INTEGER NOT NULL,"
    "  power REAL NOT NULL, eps REAL NOT NULL,"
    "  n_trained INTEGER NOT NULL, n_rows INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL, fingerprint TEXT NOT NULL,"
    "  mean BLOB NOT NULL, matrix BLOB NOT NULL, eigenvalues BLOB NOT NULL);"
    "CREATE UNIQUE INDEX whitening_active ON whitening(active) WHERE active = 1;",
};
#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

/* ---- prepared statements ----------------------------------------------- */

/* The columns ix_store_get_info reads, by id or by external id. */
#define IMG_INFO_SELECT                                                                            \
    "SELECT id, external_id, sha256, uri, width, height, metadata, created_at, seq,"               \
    " thumbnail IS NOT NULL FROM images"

static const char *const sql_text[S_COUNT_] = {
    [S_BEGIN_R] = "BEGIN",
    [S_BEGIN_W] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [S_META_SET] = "INSERT INTO meta(key, value) VALUES(?1, ?2) "
                   "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    [S_IMG_FIND] = "SELECT id FROM images WHERE external_id = ?1",
    [S_IMG_INSERT] = "INSERT INTO images(external_id, sha256, uri, width, height, metadata,"
                     " thumbnail, created_at, deleted, seq)"
                     " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9)",
    [S_IMG_UPDATE] = "UPDATE images SET sha256 = ?2, uri = ?3, width = ?4, height = ?5,"
                     " metadata = ?6, thumbnail = ?7, created_at = ?8, deleted = 0, seq = ?9"
                     " WHERE id = ?1",
    [S_DESC_PUT] = "INSERT INTO descriptors(image_id, model, dim, vec) VALUES(?1, ?2, ?3, ?4)"
                   " ON CONFLICT(image_id) DO UPDATE SET model = excluded.model,"
                   " dim = excluded.dim, vec = excluded.vec",
    [S_IMG_DELETE] = "UPDATE images SET deleted = 1, seq = ?2, thumbnail = NULL"
                     " WHERE id = ?1 AND deleted = 0",
    [S_IMG_INFO] = IMG_INFO_SELECT " WHERE id = ?1 AND deleted = 0",
    [S_IMG_INFO_EXT] = IMG_INFO_SELECT " WHERE external_id = ?1 AND deleted = 0",
    [S_IMG_THUMB] = "SELECT thumbnail FROM images WHERE id = ?1 AND deleted = 0",
    [S_IMG_META] = "SELECT metadata FROM images WHERE id = ?1 AND deleted = 0",
    [S_DESC_GET] = "SELECT d.dim, d.vec FROM descriptors d JOIN images i ON i.id = d.image_id"
                   " WHERE d.image_id = ?1 AND i.deleted = 0",
    [S_LOAD_ALL] = "SELECT d.image_id, d.dim, d.vec FROM descriptors d"
                   " JOIN images i ON i.id = d.image_id WHERE i.deleted = 0 ORDER BY d.image_id",
    [S_COUNTS] = "SELECT COALESCE(SUM(deleted = 0), 0), COALESCE(SUM(deleted = 1), 0)"
                 " FROM images",
    [S_CHANGES] = "SELECT id, deleted, seq FROM images WHERE seq > ?1 ORDER BY seq",
    [S_PURGE_DESC] = "DELETE FROM descriptors WHERE image_id IN"
                     " (SELECT id FROM images WHERE deleted = 1)",
    [S_PURGE_IMG] = "DELETE FROM images WHERE deleted = 1",
    [S_JOB_INSERT] = "INSERT INTO jobs(kind, state, params, created_at, updated_at)"
                     " VALUES(?1, 0, ?2, ?3, ?3)",
    [S_ITEM_INSERT] = "INSERT INTO job_items(job_id, source, external_id) VALUES(?1, ?2, ?3)",
    [S_JOB_STATE_GET] = "SELECT state FROM jobs WHERE id = ?1",
    [S_JOB_STATE_SET] = "UPDATE jobs SET state = ?2, error = COALESCE(?3, error),"
                        " updated_at = ?4 WHERE id = ?1",
    [S_CLAIM_SELECT] = "SELECT id, source, external_id, attempts FROM job_items"
                       " WHERE job_id = ?1 AND state = 0 ORDER BY id LIMIT ?2",
    [S_CLAIM_MARK] = "UPDATE job_items SET state = 1, attempts = attempts + 1 WHERE id = ?1",
    [S_ITEM_FINISH] = "UPDATE job_items SET state = ?2, image_id = ?3, error_code = ?4,"
                      " error = ?5 WHERE id = ?1 AND state = 1",
    [S_JOB_GET] = "SELECT id, kind, state, params, error, created_at, updated_at FROM jobs"
                  " WHERE id = ?1",
    [S_JOB_COUNTS] = "SELECT COUNT(*), COALESCE(SUM(state = 2), 0), COALESCE(SUM(state = 3), 0),"
                     " COALESCE(SUM(state = 0), 0), COALESCE(SUM(state = 1), 0)"
                     " FROM job_items WHERE job_id = ?1",
    [S_JOB_LIST] = "SELECT id FROM jobs ORDER BY id DESC LIMIT ?1",
    [S_JOB_ERRORS] = "SELECT id, source, external_id, attempts, error_code, error"
                     " FROM job_items WHERE job_id = ?1 AND state = 3 ORDER BY id LIMIT ?2",
    [S_RESUME_ITEMS] = "UPDATE job_items SET state = 0 WHERE state = 1",
    [S_RESUME_JOBS] = "SELECT id FROM jobs WHERE state IN (0, 1) ORDER BY id",
    [S_JOB_TOUCH] = "UPDATE jobs SET updated_at = ?2 WHERE id = ?1",
    [S_WH_GET] = "SELECT id, dim_in, dim, rank, power, eps, n_trained, n_rows, created_at,"
                 " fingerprint, mean, matrix, eigenvalues FROM whitening WHERE active = 1",
    [S_WH_OFF] = "UPDATE whitening SET active = 0 WHERE active = 1",
    [S_WH_PUT] = "INSERT INTO whitening(active, dim_in, dim, rank, power, eps, n_trained,"
                 " n_rows, created_at, fingerprint, mean, matrix, eigenvalues)"
                 " VALUES(1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
};

struct ix_store {
    char *path;
    int sync_full;
    ix_conn *writer;
    pthread_mutex_t pool_mu;
    ix_conn *free_list;
    ix_conn **all;
    size_t n_all;
};

int ix_db_err(sqlite3 *db, imago_error *err, const char *what)
{
    int rc = sqlite3_errcode(db);
    int code = IMAGO_ERR_BACKEND;
    if (rc == SQLITE_CONSTRAINT)
        code = IMAGO_ERR_CONFLICT;
    else if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        code = IMAGO_ERR_BUSY;
    else if (rc == SQLITE_NOMEM)
        code = IMAGO_ERR_NOMEM;
    else if (rc == SQLITE_IOERR || rc == SQLITE_CANTOPEN || rc == SQLITE_FULL ||
             rc == SQLITE_READONLY)
        code = IMAGO_ERR_IO;
    else if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB)
        code = IMAGO_ERR_FORMAT;
    return imago_error_set(err, code, "sqlite: %s: %s", what, sqlite3_errmsg(db));
}

static int exec_sql(sqlite3 *db, const char *sql, imago_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int code = IMAGO_ERR_BACKEND;
        imago_error_set(err, code, "sqlite: %s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return code;
    }
    return 0;
}

static void conn_free(ix_conn *c)
{
    if (!c)
        return;
    for (int i = 0; i < S_COUNT_; i++)
        sqlite3_finalize(c->st[i]);
    sqlite3_close(c->db);
    free(c);
}

static int conn_open(ix_store *st, int writer, ix_conn **out, imago_error *err)
{
    ix_conn *c = imago_xcalloc(1, sizeof *c);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(st->path, &c->db, flags, NULL) != SQLITE_OK) {
        int rc = imago_error_set(err, IMAGO_ERR_IO, "sqlite: cannot open %s: %s", st->path,
                                 c->db ? sqlite3_errmsg(c->db) : "out of memory");
        conn_free(c);
        return rc;
    }
    sqlite3_busy_timeout(c->db, 10000);
    char pragmas[256];
    snprintf(pragmas, sizeof pragmas,
             "PRAGMA foreign_keys = ON; PRAGMA synchronous = %s; PRAGMA temp_store = MEMORY;",
             st->sync_full ? "FULL" : "NORMAL");
    int rc = exec_sql(c->db, pragmas, err);
    if (rc == 0 && writer)
        rc = exec_sql(c->db, "PRAGMA journal_mode = WAL;", err);
    if (rc) {
        conn_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

static int conn_prepare(ix_conn *c, imago_error *err)
{
    for (int i = 0; i < S_COUNT_; i++) {
        if (sqlite3_prepare_v3(c->db, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT, &c->st[i],
                               NULL) != SQLITE_OK)
            return ix_db_err(c->db, err, sql_text[i]);
    }
    return 0;
}

static int migrate(sqlite3 *db, imago_error *err)
{
    sqlite3_stmt *s = NULL;
    int version = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
        return ix_db_err(db, err, "user_version");
    if (sqlite3_step(s) == SQLITE_ROW)
        version = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    if (version > N_MIGRATIONS)
        return imago_error_set(err, IMAGO_ERR_UNSUPPORTED,
                               "store schema version %d is newer than this imago (%d)", version,
                               N_MIGRATIONS);
    for (int v = version; v < N_MIGRATIONS; v++) {
        int rc = exec_sql(db, "BEGIN IMMEDIATE", err);
        if (rc)
            return rc;
        rc = exec_sql(db, migrations[v], err);
        char set[64];
        snprintf(set, sizeof set, "PRAGMA user_version = %d", v + 1);
        if (rc == 0)
            rc = exec_sql(db, set, err);
        if (rc == 0)
            rc = exec_sql(db, "COMMIT", err);
        if (rc) {
            exec_sql(db, "ROLLBACK", NULL);
            imago_error_prefix(err, "store migration to schema v%d", v + 1);
            return rc;
        }
        IMAGO_INFO(MOD, "store migrated to schema v%d", v + 1);
    }
    return 0;
}

int ix_store_open(const char *data_dir, const char *durability, ix_store **out, imago_error *err)
{
    if (!data_dir || !*data_dir)
        return imago_error_set(err, IMAGO_ERR_INVALID, "index: data_dir is empty");
    int full = 0;
    if (durability && *durability) {
        if (strcmp(durability, "full") == 0)
            full = 1;
        else if (strcmp(durability, "normal") != 0)
            return imago_error_set(err, IMAGO_ERR_INVALID,
                                   "index: durability must be normal or full, not '%s'",
                                   durability);
    }
    if (mkdir(data_dir, 0750) != 0 && errno != EEXIST)
        return imago_error_set(err, IMAGO_ERR_IO, "index: cannot create %s: %s", data_dir,
                               strerror(errno));
    ix_store *st = imago_xcalloc(1, sizeof *st);
    size_t len = strlen(data_dir) + 16;
    st->path = imago_xmalloc(len);
    snprintf(st->path, len, "%s/imago.db", data_dir);
    st->sync_full = full;
    pthread_mutex_init(&st->pool_mu, NULL);
    int rc = conn_open(st, 1, &st->writer, err);
    if (rc == 0)
        rc = migrate(st->writer->db, err);
    if (rc == 0)
        rc = conn_prepare(st->writer, err);
    if (rc) {
        ix_store_free(st);
        return rc;
    }
    *out = st;
    return 0;
}

void ix_store_free(ix_store *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n_all; i++)
        conn_free(st->all[i]);
    free(st->all);
    conn_free(st->writer);
    pthread_mutex_destroy(&st->pool_mu);
    free(st->path);
    free(st);
}

ix_conn *ix_store_writer(ix_store *st)
{
    return st->writer;
}

int ix_store_acquire(ix_store *st, ix_conn **out, imago_error *err)
{
    pthread_mutex_lock(&st->pool_mu);
    ix_conn *c = st->free_list;
    if (c)
        st->free_list = c->next_free;
    pthread_mutex_unlock(&st->pool_mu);
    if (c) {
        *out = c;
        return 0;
    }
    int rc = conn_open(st, 0, &c, err);
    if (rc == 0)
        rc = conn_prepare(c, err);
    if (rc) {
        conn_free(c);
        return rc;
    }
    pthread_mutex_lock(&st->pool_mu);
    st->all = imago_xrealloc(st->all, (st->n_all + 1) * sizeof *st->all);
    st->all[st->n_all++] = c;
    pthread_mutex_unlock(&st->pool_mu);
    *out = c;
    return 0;
}

void ix_store_release(ix_store *st, ix_conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&st->pool_mu);
    c->next_free = st->free_list;
    st->free_list = c;
    pthread_mutex_unlock(&st->pool_mu);
}

int ix_step_done(ix_conn *c, sqlite3_stmt *s, const char *what, imago_error *err)
{
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        int e = ix_db_err(c->db, err, what);
        sqlite3_reset(s);
        return e;
    }
    sqlite3_reset(s);
    return 0;
}

int ix_conn_begin(ix_conn *c, int write, imago_error *err)
{
    return ix_step_done(c, ix_stmt(c, write ? S_BEGIN_W : S_BEGIN_R), "begin", err);
}

int ix_conn_commit(ix_conn *c, imago_error *err)
{
    return ix_step_done(c, ix_stmt(c, S_COMMIT), "commit", err);
}

void ix_conn_rollback(ix_conn *c)
{
    if (!sqlite3_get_autocommit(c->db))
        ix_step_done(c, ix_stmt(c, S_ROLLBACK), "rollback", NULL);
}

void ix_bind_opt_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

char *ix_col_dup(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? imago_xstrdup((const char *)t) : NULL;
}

/* ---- meta ---------------------------------------------------------------- */

static int meta_get(ix_conn *c, const char *key, char **out, imago_error *err)
{
    sqlite3_stmt *s = ix_stmt(c, S_META_GET);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *out = imago_xstrdup((const char *)sqlite3_column_text(s, 0));
        sqlite3_reset(s);
        return 0;
    }
    if (rc == SQLITE_DONE) {
        *out = NULL;
        sqlite3_reset(s);
        return 0;
    }
    rc = ix_db_err(c->db, err, "meta get");
    sqlite3_reset(s);
    return rc;
}

static int meta_set(ix_conn *c, const char *key, const char *value, imago_error *err)
{
    sqlite3_stmt *s = ix_stmt(c, S_META_SET);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC);
    return ix_step_done(c, s, "meta set", err);
}

int ix_store_meta_get(ix_store *st, const char *key, char **out, imago_error *err)
{
    return meta_get(st->writer, key, out, err);
}

int ix_store_meta_set(ix_store *st, const char *key, const char *value, imago_error *err)
{
    return meta_set(st->writer, key, value, err);
}

int ix_store_seq(ix_conn *c, int64_t *seq, imago_error *err)
{
    char *v = NULL;
    int rc = meta_get(c, "seq", &v, err);
    if (rc)
        return rc;
    *seq = v ? strtoll(v, NULL, 10) : 0;
    free(v);
    return 0;
}

int ix_store_set_seq(ix_conn *c, int64_t seq, imago_error *err)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)seq);
    return meta_set(c, "seq", buf, err);
}
