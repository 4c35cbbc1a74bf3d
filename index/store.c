/* index/store.c: the SQLite store, imago's source of truth (docs/architecture.md).
 * One writer connection (used under the index writer mutex) and a pool of
 * reader connections; WAL journal; schema versioned by PRAGMA user_version
 * with an ordered list of migrations; every statement prepared once per
 * connection. SQLite errors are translated here (sqlite3_errmsg).
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

enum {
    S_BEGIN_R,
    S_BEGIN_W,
    S_COMMIT,
    S_ROLLBACK,
    S_META_GET,
    S_META_SET,
    S_IMG_FIND,
    S_IMG_INSERT,
    S_IMG_UPDATE,
    S_DESC_PUT,
    S_IMG_DELETE,
    S_IMG_INFO,
    S_IMG_INFO_EXT,
    S_IMG_THUMB,
    S_IMG_META,
    S_DESC_GET,
    S_LOAD_ALL,
    S_COUNTS,
    S_CHANGES,
    S_PURGE_DESC,
    S_PURGE_IMG,
    S_JOB_INSERT,
    S_ITEM_INSERT,
    S_JOB_STATE_GET,
    S_JOB_STATE_SET,
    S_CLAIM_SELECT,
    S_CLAIM_MARK,
    S_ITEM_FINISH,
    S_JOB_GET,
    S_JOB_COUNTS,
    S_JOB_LIST,
    S_JOB_ERRORS,
    S_RESUME_ITEMS,
    S_RESUME_JOBS,
    S_JOB_TOUCH,
    S_WH_GET,
    S_WH_OFF,
    S_WH_PUT,
    S_COUNT_
};

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
    [S_IMG_INFO] = "SELECT id, external_id, sha256, uri, width, height, metadata, created_at,"
                   " seq, thumbnail IS NOT NULL FROM images WHERE id = ?1 AND deleted = 0",
    [S_IMG_INFO_EXT] = "SELECT id, external_id, sha256, uri, width, height, metadata,"
                       " created_at, seq, thumbnail IS NOT NULL FROM images"
                       " WHERE external_id = ?1 AND deleted = 0",
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

struct ix_conn {
    sqlite3 *db;
    sqlite3_stmt *st[S_COUNT_];
    ix_conn *next_free;
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

static int db_err(sqlite3 *db, imago_error *err, const char *what)
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

static sqlite3_stmt *stmt(ix_conn *c, int which)
{
    sqlite3_stmt *s = c->st[which];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
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
            return db_err(c->db, err, sql_text[i]);
    }
    return 0;
}

static int migrate(sqlite3 *db, imago_error *err)
{
    sqlite3_stmt *s = NULL;
    int version = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
        return db_err(db, err, "user_version");
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

static int step_done(ix_conn *c, sqlite3_stmt *s, const char *what, imago_error *err)
{
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        int e = db_err(c->db, err, what);
        sqlite3_reset(s);
        return e;
    }
    sqlite3_reset(s);
    return 0;
}

int ix_conn_begin(ix_conn *c, int write, imago_error *err)
{
    return step_done(c, stmt(c, write ? S_BEGIN_W : S_BEGIN_R), "begin", err);
}

int ix_conn_commit(ix_conn *c, imago_error *err)
{
    return step_done(c, stmt(c, S_COMMIT), "commit", err);
}

void ix_conn_rollback(ix_conn *c)
{
    if (!sqlite3_get_autocommit(c->db))
        step_done(c, stmt(c, S_ROLLBACK), "rollback", NULL);
}

/* ---- meta ---------------------------------------------------------------- */

static int meta_get(ix_conn *c, const char *key, char **out, imago_error *err)
{
    sqlite3_stmt *s = stmt(c, S_META_GET);
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
    rc = db_err(c->db, err, "meta get");
    sqlite3_reset(s);
    return rc;
}

static int meta_set(ix_conn *c, const char *key, const char *value, imago_error *err)
{
    sqlite3_stmt *s = stmt(c, S_META_SET);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC);
    return step_done(c, s, "meta set", err);
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

/* ---- images -------------------------------------------------------------- */

static void bind_opt_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

int ix_store_put_image(ix_conn *c, const imago_index_item *it, const char *model, int dim,
                       int64_t seq, int64_t *id, int *replaced, imago_error *err)
{
    sqlite3_stmt *s = stmt(c, S_IMG_FIND);
    sqlite3_bind_text(s, 1, it->external_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int64_t existing = -1;
    if (rc == SQLITE_ROW)
        existing = sqlite3_column_int64(s, 0);
    else if (rc != SQLITE_DONE) {
        rc = db_err(c->db, err, "find image");
        sqlite3_reset(s);
        return rc;
    }
    sqlite3_reset(s);

    s = stmt(c, existing >= 0 ? S_IMG_UPDATE : S_IMG_INSERT);
    int o = existing >= 0 ? 1 : 0; /* UPDATE binds id as ?1 */
    if (existing >= 0)
        sqlite3_bind_int64(s, 1, existing);
    else
        sqlite3_bind_text(s, 1, it->external_id, -1, SQLITE_STATIC);
    bind_opt_text(s, 2, it->sha256);
    bind_opt_text(s, 3, it->uri);
    sqlite3_bind_int(s, 4, it->width);
    sqlite3_bind_int(s, 5, it->height);
    bind_opt_text(s, 6, it->metadata_json);
    if (it->thumbnail && it->thumbnail_len)
        sqlite3_bind_blob64(s, 7, it->thumbnail, it->thumbnail_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 7);
    sqlite3_bind_int64(s, 8, (int64_t)time(NULL));
    sqlite3_bind_int64(s, 9, seq);
    (void)o;
    rc = step_done(c, s, existing >= 0 ? "update image" : "insert image", err);
    if (rc)
        return rc;
    int64_t image_id = existing >= 0 ? existing : sqlite3_last_insert_rowid(c->db);

    s = stmt(c, S_DESC_PUT);
    sqlite3_bind_int64(s, 1, image_id);
    sqlite3_bind_text(s, 2, model, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, dim);
    sqlite3_bind_blob64(s, 4, it->vector, (sqlite3_uint64)dim * sizeof(float), SQLITE_STATIC);
    rc = step_done(c, s, "put descriptor", err);
    if (rc)
        return rc;
    *id = image_id;
    *replaced = existing >= 0;
    return 0;
}

int ix_store_delete_image(ix_conn *c, int64_t id, int64_t seq, imago_error *err)
{
    sqlite3_stmt *s = stmt(c, S_IMG_DELETE);
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, seq);
    int rc = step_done(c, s, "delete image", err);
    if (rc)
        return rc;
    if (sqlite3_changes(c->db) == 0)
        return imago_error_set(err, IMAGO_ERR_NOT_FOUND, "image %lld not found", (long long)id);
    return 0;
}

int ix_store_purge_deleted(ix_conn *c, int64_t *n_purged, imago_error *err)
{
    int rc = step_done(c, stmt(c, S_PURGE_DESC), "purge descriptors", err);
    if (rc)
        return rc;
    rc = step_done(c, stmt(c, S_PURGE_IMG), "purge images", err);
    if (rc)
        return rc;
    if (n_purged)
        *n_purged = sqlite3_changes(c->db);
    return 0;
}

static char *col_dup(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? imago_xstrdup((const char *)t) : NULL;
}

int ix_store_get_info(ix_conn *c, int64_t id, const char *external_id, imago_image_info **out,
                      imago_error *err)
{
    sqlite3_stmt *s = stmt(c, external_id ? S_IMG_INFO_EXT : S_IMG_INFO);
    if (external_id)
        sqlite3_bind_text(s, 1, external_id, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        if (external_id)
            return imago_error_set(err, IMAGO_ERR_NOT_FOUND, "image '%s' not found", external_id);
        return imago_error_set(err, IMAGO_ERR_NOT_FOUND, "image %lld not found", (long long)id);
    }
    if (rc != SQLITE_ROW) {
        rc = db_err(c->db, err, "get image");
        sqlite3_reset(s);
        return rc;
    }
    imago_image_info *info = imago_xcalloc(1, sizeof *info);
    info->id = sqlite3_column_int64(s, 0);
    info->external_id = col_dup(s, 1);
    info->sha256 = col_dup(s, 2);
    info->uri = col_dup(s, 3);
    info->width = sqlite3_column_int(s, 4);
    info->height = sqlite3_column_int(s, 5);
    info->metadata_json = col_dup(s, 6);
    info->created_at = sqlite3_column_int64(s, 7);
    info->seq = sqlite3_column_int64(s, 8);
    info->has_thumbnail = sqlite3_column_int(s, 9);
    sqlite3_reset(s);
    *out = info;
    return 0;
}

int ix_store_get_thumbnail(ix_conn *c, int64_t id, void **data, size_t *len, imago_error *err)
{
    sqlite3_stmt *s = stmt(c, S_IMG_THUMB);
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) == SQLITE_BLOB) {
        size_t n = (size_t)sqlite3_column_bytes(s, 0);
        void *buf = imago_xmalloc(n);
        memcpy(buf, sqlite3_column_blob(s, 0), n);
        sqlite3_reset(s);
        *data = buf;
        *len = n;
        return 0;
    }
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        sqlite3_reset(s);
        return imago_error_set(err, IMAGO_ERR_NOT_FOUND, "image %lld has no thumbnail",
                               (long long)id);
    }
    rc = db_err(c->db, err, "get thumbnail");
    sqlite3_reset(s);
    return rc;
}

int ix_store_get_metadata(ix_conn *c, int64_t id, char **json, int *found, imago_error *err)
{
    sqlite3_stmt *s = stmt(c, S_IMG_META);
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    *json = NULL;
    *found = 0;
    if (rc == SQLITE_ROW) {
        *found = 1;
        *json = col_dup(s, 0);
    } else if (rc != SQLITE_DONE) {
        rc = db_err(c->db, err, "get metadata");
        sqlite3_reset(s);
        return rc;
    }
    sqlite3_reset(s);
    return 0;
}

int ix_store_get_vector(ix_conn *c, int64_t id, int dim, float *out, imago_error *err)
{
    sqlite3_stmt *s = stmt(c, S_DESC_GET);
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        return imago_error_set(err, IMAGO_ERR_NOT_FOUND, "descriptor of image %lld not found",
                               (long long)id);
    }
    if (rc != SQLITE_ROW) {
        rc = db_err(c->db, err, "get descriptor");
        sqlite3_reset(s);
        return rc;
    }
    int d = sqlite3_column_int(s, 0);
    int bytes = sqlite3_column_bytes(s, 1);
    if (d != dim || bytes != dim * (int)sizeof(float)) {
        sqlite3_reset(s);
        return imago_error_set(err, IMAGO_ERR_FORMAT,
                               "descriptor of image %lld has dim %d (%d bytes), expected %d",
                               (long long)id, d, bytes, dim);
    }
    memcpy(out, sqlite3_column_blob(s, 1), (size_t)bytes);
    sqlite3_reset(s);
    return 0;
}

int ix_store_counts(ix_conn *c, int64_t *live, int64_t *deleted, imago_error *err)
{
    sqlite3_stmt *s = stmt(c, S_COUNTS);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        rc = db_err(c->db, err, "counts");
        sqlite3_reset(s);
        return rc;
    }
    *live = sqlite3_column_int64(s, 0);
    *deleted = sqlite3_column_int64(s, 1);
    sqlite3_reset(s);
    return 0;
}

int ix_store_load_all(ix_conn *c, int dim, int64_t **ids_out, float **vecs_out, size_t *n_out,
                      int64_t *seq_out, imago_error *err)
{
    int own_txn = sqlite3_get_autocommit(c->db);
    int rc = 0;
    if (own_txn && (rc = ix_conn_begin(c, 0, err)))
        return rc;
    int64_t live = 0, del = 0, seq = 0;
    rc = ix_store_counts(c, &live, &del, err);
    if (rc == 0)
        rc = ix_store_seq(c, &seq, err);
    int64_t *ids = NULL;
    float *vecs = NULL;
    size_t n = 0;
    if (rc == 0) {
        ids = imago_xmalloc((size_t)(live ? live : 1) * sizeof *ids);
        rc = imago_alloc_array((size_t)(live ? live : 1), (size_t)dim * sizeof(float), 0,
                               (void **)&vecs, err);
    }
    if (rc == 0) {
        sqlite3_stmt *s = stmt(c, S_LOAD_ALL);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            if (n >= (size_t)live) {
                rc = imago_error_set(err, IMAGO_ERR_INTERNAL, "store changed during load");
                break;
            }
            int d = sqlite3_column_int(s, 1);
            if (d != dim || sqlite3_column_bytes(s, 2) != dim * (int)sizeof(float)) {
                rc = imago_error_set(err, IMAGO_ERR_FORMAT,
                                     "descriptor of image %lld has dim %d, expected %d",
                                     (long long)sqlite3_column_int64(s, 0), d, dim);
                break;
            }
            ids[n] = sqlite3_column_int64(s, 0);
            memcpy(vecs + n * (size_t)dim, sqlite3_column_blob(s, 2), (size_t)dim * sizeof(float));
            n++;
        }
        if (rc == SQLITE_DONE)
            rc = 0;
        else if (rc > 0)
            rc = db_err(c->db, err, "load descriptors");
        sqlite3_reset(s);
    }
    if (own_txn) {
        if (rc)
            ix_conn_rollback(c);
        else
            rc = ix_conn_commit(c, err);
    }
    if (rc) {
        free(ids);
        imago_free_aligned(vecs);
        return rc;
    }
    *ids_out = ids;
    *vecs_out = vecs;
    *n_out = n;
    *seq_out = seq;
    return 0;
}

int ix_store_changes(ix_conn *c, int64_t after_seq, ix_change_fn fn, void *user, imago_error *err)
{
    /* Collect first: the callback may use the same connection. */
    sqlite3_stmt *s = stmt(c, S_CHANGES);
    sqlite3_bind_int64(s, 1, after_seq);
    size_t n = 0, cap = 64;
    int64_t(*rows)[3] = imago_xmalloc(cap * sizeof *rows);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            cap *= 2;
            rows = imago_xrealloc(rows, cap * sizeof *rows);
        }
        rows[n][0] = sqlite3_column_int64(s, 0);
        rows[n][1] = sqlite3_column_int64(s, 1);
        rows[n][2] = sqlite3_column_int64(s, 2);
        n++;
    }
    if (rc != SQLITE_DONE) {
        rc = db_err(c->db, err, "changes");
        sqlite3_reset(s);
        free(rows);
        return rc;
    }
    sqlite3_reset(s);
    rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = fn(user, rows[i][0], (int)rows[i][1], rows[i][2], err);
    free(rows);
    return rc;
}

/* ---- jobs ---------------------------------------------------------------- */

const char *imago_job_state_name(imago_job_state s)
{
    switch (s) {
    case IMAGO_JOB_PENDING: return "pending";
    case IMAGO_JOB_RUNNING: return "running";
    case IMAGO_JOB_DONE: return "done";
    case IMAGO_JOB_FAILED: return "failed";
    case IMAGO_JOB_CANCELLED: return "cancelled";
    }
    return "unknown";
}

int ix_job_create(ix_conn *c, const char *kind, const char *params, int64_t *id, imago_error *err)
{
    if (!kind || !*kind || strlen(kind) >= 32)
        return imago_error_set(err, IMAGO_ERR_INVALID, "job kind must be 1..31 characters");
    sqlite3_stmt *s = stmt(c, S_JOB_INSERT);
    sqlite3_bind_text(s, 1, kind, -1, SQLITE_STATIC);
    bind_opt_text(s, 2, params);
    sqlite3_bind_int64(s, 3, (int64_t)time(NULL));
    int rc = step_done(c, s, "create job", err);
    if (rc == 0)
        *id = sqlite3_last_insert_rowid(c->db);
    return rc;
}

static int job_state(ix_conn *c, int64_t job_id, int *state, imago_error *err)
{
    sqlite3_stmt *s = stmt(c, S_JOB_STATE_GET);
    sqlite3_bind_int64(s, 1, job_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *state = sqlite3_column_int(s, 0);
        sqlite3_reset(s);
        return 0;
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return imago_error_set(err, IMAGO_ERR_NOT_FOUND, "job %lld not found", (long long)job_id);
    return db_err(c->db, err, "job state");
}

int ix_job_add_items(ix_conn *c, int64_t job_id, const char *const *sources,
                     const char *const *external_ids, size_t n, imago_error *err)
{
    int state;
    int rc = job_state(c, job_id, &state, err);
    if (rc)
        return rc;
    if (state != IMAGO_JOB_PENDING && state != IMAGO_JOB_RUNNING)
        return imago_error_set(err, IMAGO_ERR_CONFLICT, "job %lld is %s: cannot add items",
                               (long long)job_id, imago_job_state_name(state));
    for (size_t i = 0; i < n; i++) {
        if (!sources[i] || !*sources[i])
            return imago_error_set(err, IMAGO_ERR_INVALID, "job item %zu has no source", i);
        sqlite3_stmt *s = stmt(c, S_ITEM_INSERT);
        sqlite3_bind_int64(s, 1, job_id);
        sqlite3_bind_text(s, 2, sources[i], -1, SQLITE_STATIC);
        bind_opt_text(s, 3, external_ids ? external_ids[i] : NULL);
        if ((rc = step_done(c, s, "add job item", err)))
            return rc;
    }
    sqlite3_stmt *s = stmt(c, S_JOB_TOUCH);
    sqlite3_bind_int64(s, 1, job_id);
    sqlite3_bind_int64(s, 2, (int64_t)time(NULL));
    return step_done(c, s, "touch job", err);
}

static int transition_ok(int from, int to)
{
    switch (from) {
    /* pending -> failed: the listing of the source failed (never left queued) */
    case IMAGO_JOB_PENDING:
        return to == IMAGO_JOB_RUNNING || to == IMAGO_JOB_CANCELLED || to == IMAGO_JOB_FAILED;
    case IMAGO_JOB_RUNNING:
        return to == IMAGO_JOB_DONE || to == IMAGO_JOB_FAILED || to == IMAGO_JOB_CANCELLED ||
               to == IMAGO_JOB_PENDING;
    default: return 0;
    }
}

int ix_job_set_state(ix_conn *c, int64_t job_id, imago_job_state to, const char *error,
                     imago_error *err)
{
    int from;
    int rc = job_state(c, job_id, &from, err);
    if (rc)
        return rc;
    if (!transition_ok(from, (int)to))
        return imago_error_set(err, IMAGO_ERR_CONFLICT, "job %lld: cannot go from %s to %s",
                               (long long)job_id, imago_job_state_name(from),
                               imago_job_state_name(to));
    sqlite3_stmt *s = stmt(c, S_JOB_STATE_SET);
    sqlite3_bind_int64(s, 1, job_id);
    sqlite3_bind_int(s, 2, (int)to);
    bind_opt_text(s, 3, error);
    sqlite3_bind_int64(s, 4, (int64_t)time(NULL));
    return step_done(c, s, "set job state", err);
}

void imago_job_items_free(imago_job_item *items, size_t n)
{
    if (!items)
        return;
    for (size_t i = 0; i < n; i++) {
        free(items[i].source);
        free(items[i].external_id);
        free(items[i].error);
    }
    free(items);
}

int ix_job_claim(ix_conn *c, int64_t job_id, size_t max, imago_job_item **items_out, size_t *n_out,
                 imago_error *err)
{
    int state;
    int rc = job_state(c, job_id, &state, err);
    if (rc)
        return rc;
    if (state != IMAGO_JOB_RUNNING)
        return imago_error_set(err, IMAGO_ERR_CONFLICT, "job %lld is %s, not running",
                               (long long)job_id, imago_job_state_name(state));
    if (max > 100000)
        max = 100000;
    imago_job_item *items = imago_xcalloc(max ? max : 1, sizeof *items);
    size_t n = 0;
    sqlite3_stmt *s = stmt(c, S_CLAIM_SELECT);
    sqlite3_bind_int64(s, 1, job_id);
    sqlite3_bind_int64(s, 2, (int64_t)max);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < max) {
        imago_job_item *it = &items[n++];
        it->id = sqlite3_column_int64(s, 0);
        it->job_id = job_id;
        it->source = col_dup(s, 1);
        it->external_id = col_dup(s, 2);
        it->attempts = sqlite3_column_int(s, 3) + 1;
        it->state = IMAGO_ITEM_RUNNING;
        it->image_id = -1;
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        rc = db_err(c->db, err, "claim items");
        sqlite3_reset(s);
        imago_job_items_free(items, n);
        return rc;
    }
    sqlite3_reset(s);
    for (size_t i = 0; i < n; i++) {
        s = stmt(c, S_CLAIM_MARK);
        sqlite3_bind_int64(s, 1, items[i].id);
        if ((rc = step_done(c, s, "mark item", err))) {
            imago_job_items_free(items, n);
            return rc;
        }
    }
    *items_out = items;
    *n_out = n;
    return 0;
}

int ix_job_item_finish(ix_conn *c, int64_t item_id, int ok_, int64_t image_id, int code,
                       const char *msg, imago_error *err)
{
    sqlite3_stmt *s = stmt(c, S_ITEM_FINISH);
    sqlite3_bind_int64(s, 1, item_id);
    sqlite3_bind_int(s, 2, ok_ ? IMAGO_ITEM_DONE : IMAGO_ITEM_FAILED);
    if (ok_)
        sqlite3_bind_int64(s, 3, image_id);
    else
        sqlite3_bind_null(s, 3);
    sqlite3_bind_int(s, 4, ok_ ? 0 : code);
    bind_opt_text(s, 5, ok_ ? NULL : msg);
    int rc = step_done(c, s, "finish item", err);
    if (rc)
        return rc;
    if (sqlite3_changes(c->db) == 0)
        return imago_error_set(err, IMAGO_ERR_CONFLICT, "job item %lld is not running",
                               (long long)item_id);
    return 0;
}

int ix_job_get(ix_conn *c, int64_t job_id, imago_job_info *out, imago_error *err)
{
    sqlite3_stmt *s = stmt(c, S_JOB_GET);
    sqlite3_bind_int64(s, 1, job_id);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        if (rc == SQLITE_DONE)
            return imago_error_set(err, IMAGO_ERR_NOT_FOUND, "job %lld not found",
                                   (long long)job_id);
        return db_err(c->db, err, "get job");
    }
    imago_job_info info;
    memset(&info, 0, sizeof info);
    info.id = sqlite3_column_int64(s, 0);
    snprintf(info.kind, sizeof info.kind, "%s", (const char *)sqlite3_column_text(s, 1));
    info.state = (imago_job_state)sqlite3_column_int(s, 2);
    info.params_json = col_dup(s, 3);
    info.error = col_dup(s, 4);
    info.created_at = sqlite3_column_int64(s, 5);
    info.updated_at = sqlite3_column_int64(s, 6);
    sqlite3_reset(s);
    s = stmt(c, S_JOB_COUNTS);
    sqlite3_bind_int64(s, 1, job_id);
    if (sqlite3_step(s) != SQLITE_ROW) {
        rc = db_err(c->db, err, "job counts");
        sqlite3_reset(s);
        imago_job_info_clear(&info);
        return rc;
    }
    info.total = sqlite3_column_int64(s, 0);
    info.done = sqlite3_column_int64(s, 1);
    info.failed = sqlite3_column_int64(s, 2);
    info.pending = sqlite3_column_int64(s, 3);
    info.running = sqlite3_column_int64(s, 4);
    sqlite3_reset(s);
    *out = info;
    return 0;
}

void imago_job_info_clear(imago_job_info *info)
{
    if (!info)
        return;
    free(info->params_json);
    free(info->error);
    info->params_json = info->error = NULL;
}

int ix_job_list(ix_conn *c, int64_t *ids, size_t max, size_t *n_out, imago_error *err)
{
    sqlite3_stmt *s = stmt(c, S_JOB_LIST);
    sqlite3_bind_int64(s, 1, (int64_t)(max > INT64_MAX ? INT64_MAX : max));
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < max)
        ids[n++] = sqlite3_column_int64(s, 0);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        rc = db_err(c->db, err, "list jobs");
        sqlite3_reset(s);
        return rc;
    }
    sqlite3_reset(s);
    *n_out = n;
    return 0;
}

int ix_job_errors(ix_conn *c, int64_t job_id, size_t max, imago_job_item **items_out, size_t *n_out,
                  imago_error *err)
{
    if (max > 100000)
        max = 100000;
    imago_job_item *items = imago_xcalloc(max ? max : 1, sizeof *items);
    size_t n = 0;
    sqlite3_stmt *s = stmt(c, S_JOB_ERRORS);
    sqlite3_bind_int64(s, 1, job_id);
    sqlite3_bind_int64(s, 2, (int64_t)max);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < max) {
        imago_job_item *it = &items[n++];
        it->id = sqlite3_column_int64(s, 0);
        it->job_id = job_id;
        it->source = col_dup(s, 1);
        it->external_id = col_dup(s, 2);
        it->attempts = sqlite3_column_int(s, 3);
        it->state = IMAGO_ITEM_FAILED;
        it->error_code = sqlite3_column_int(s, 4);
        it->error = col_dup(s, 5);
        it->image_id = -1;
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        rc = db_err(c->db, err, "job errors");
        sqlite3_reset(s);
        imago_job_items_free(items, n);
        return rc;
    }
    sqlite3_reset(s);
    *items_out = items;
    *n_out = n;
    return 0;
}

int ix_job_resume(ix_conn *c, int64_t **ids_out, size_t *n_out, imago_error *err)
{
    int rc = step_done(c, stmt(c, S_RESUME_ITEMS), "resume items", err);
    if (rc)
        return rc;
    sqlite3_stmt *s = stmt(c, S_RESUME_JOBS);
    size_t n = 0, cap = 8;
    int64_t *ids = imago_xmalloc(cap * sizeof *ids);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap)
            ids = imago_xrealloc(ids, (cap *= 2) * sizeof *ids);
        ids[n++] = sqlite3_column_int64(s, 0);
    }
    if (rc != SQLITE_DONE) {
        rc = db_err(c->db, err, "resume jobs");
        sqlite3_reset(s);
        free(ids);
        return rc;
    }
    sqlite3_reset(s);
    *ids_out = ids;
    *n_out = n;
    return 0;
}

/* ---- whitening ------------------------------------------------------------ */

int ix_store_whiten_get(ix_conn *c, imago_whiten **out, imago_error *err)
{
    sqlite3_stmt *s = stmt(c, S_WH_GET);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        *out = NULL;
        return 0;
    }
    if (rc != SQLITE_ROW) {
        rc = db_err(c->db, err, "get whitening");
        sqlite3_reset(s);
        return rc;
    }
    imago_whiten_info info;
    memset(&info, 0, sizeof info);
    info.version = sqlite3_column_int64(s, 0);
    info.dim_in = sqlite3_column_int(s, 1);
    info.dim = sqlite3_column_int(s, 2);
    info.rank = sqlite3_column_int(s, 3);
    info.power = sqlite3_column_double(s, 4);
    info.eps = sqlite3_column_double(s, 5);
    info.n_trained = sqlite3_column_int64(s, 6);
    info.n_rows = sqlite3_column_int64(s, 7);
    info.created_at = sqlite3_column_int64(s, 8);
    const char *fp = (const char *)sqlite3_column_text(s, 9);
    snprintf(info.fingerprint, sizeof info.fingerprint, "%s", fp ? fp : "");
    size_t D = info.dim_in > 0 ? (size_t)info.dim_in : 0, d = info.dim > 0 ? (size_t)info.dim : 0;
    if ((size_t)sqlite3_column_bytes(s, 10) != D * sizeof(double) ||
        (size_t)sqlite3_column_bytes(s, 11) != d * D * sizeof(double) ||
        (size_t)sqlite3_column_bytes(s, 12) != d * sizeof(double) || D == 0 || d == 0) {
        sqlite3_reset(s);
        return imago_error_set(err, IMAGO_ERR_FORMAT, "whitening row %lld is malformed (%d x %d)",
                               (long long)info.version, info.dim, info.dim_in);
    }
    /* the blobs are not necessarily aligned for doubles: copy them */
    double *m = imago_xmalloc(D * sizeof *m), *P = imago_xmalloc(d * D * sizeof *P),
           *l = imago_xmalloc(d * sizeof *l);
    memcpy(m, sqlite3_column_blob(s, 10), D * sizeof *m);
    memcpy(P, sqlite3_column_blob(s, 11), d * D * sizeof *P);
    memcpy(l, sqlite3_column_blob(s, 12), d * sizeof *l);
    sqlite3_reset(s);
    rc = ix_whiten_from_parts(&info, m, P, l, out, err);
    free(m);
    free(P);
    free(l);
    return rc;
}

int ix_store_whiten_clear(ix_conn *c, imago_error *err)
{
    return step_done(c, stmt(c, S_WH_OFF), "deactivate whitening", err);
}

int ix_store_whiten_put(ix_conn *c, const imago_whiten *w, int64_t *version, imago_error *err)
{
    int rc = ix_store_whiten_clear(c, err);
    if (rc)
        return rc;
    imago_whiten_info info;
    imago_whiten_get_info(w, &info);
    size_t D = (size_t)info.dim_in, d = (size_t)info.dim;
    sqlite3_stmt *s = stmt(c, S_WH_PUT);
    sqlite3_bind_int(s, 1, info.dim_in);
    sqlite3_bind_int(s, 2, info.dim);
    sqlite3_bind_int(s, 3, info.rank);
    sqlite3_bind_double(s, 4, info.power);
    sqlite3_bind_double(s, 5, info.eps);
    sqlite3_bind_int64(s, 6, info.n_trained);
    sqlite3_bind_int64(s, 7, info.n_rows);
    sqlite3_bind_int64(s, 8, info.created_at);
    sqlite3_bind_text(s, 9, info.fingerprint, -1, SQLITE_STATIC);
    sqlite3_bind_blob64(s, 10, imago_whiten_mean(w), D * sizeof(double), SQLITE_STATIC);
    sqlite3_bind_blob64(s, 11, imago_whiten_projection(w), d * D * sizeof(double), SQLITE_STATIC);
    sqlite3_bind_blob64(s, 12, imago_whiten_eigenvalues(w), d * sizeof(double), SQLITE_STATIC);
    rc = step_done(c, s, "store whitening", err);
    sqlite3_clear_bindings(s);
    if (rc == 0)
        *version = sqlite3_last_insert_rowid(c->db);
    return rc;
}
