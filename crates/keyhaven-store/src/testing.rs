//! Test support: a fresh database per test, on either backend.
//!
//! PostgreSQL tests connect to `KEYHAVEN_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), create a database of their own and
//! drop it afterwards. When PostgreSQL is not reachable they print a loud SKIPPED line
//! and do nothing — except under `CI=true`, where a missing PostgreSQL fails the test.

use std::sync::Arc;

use rand::Rng;

use crate::{connect, Backend, Store};

/// The server PostgreSQL tests use.
pub fn postgres_admin_url() -> String {
    std::env::var("KEYHAVEN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database that lives as long as this value.
pub struct TestDb {
    /// URL of the database.
    pub url: String,
    /// Which backend.
    pub backend: Backend,
    /// The migrated store.
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
    /// The server's admin URL, to drop the database from.
    pg_admin: String,
}

impl TestDb {
    /// A fresh SQLite file in a temporary directory.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/keyhaven.db", dir.path().display());
        let store = connect(&url, true).await.expect("sqlite store");
        TestDb {
            url,
            backend: Backend::Sqlite,
            store,
            _dir: Some(dir),
            pg_name: None,
            pg_admin: String::new(),
        }
    }

    /// A fresh PostgreSQL database, or `None` (after a loud message) when PostgreSQL
    /// is not reachable outside CI.
    pub async fn postgres(test: &str) -> Option<TestDb> {
        Self::postgres_at(&postgres_admin_url(), test).await
    }

    /// A fresh database on the PostgreSQL server at `admin` (a URL ending in
    /// `/<database>`), e.g. a cluster a test runs of its own; like [`TestDb::postgres`].
    pub async fn postgres_at(admin: &str, test: &str) -> Option<TestDb> {
        let admin = admin.to_string();
        let admin_store = match crate::SqlStore::connect(&admin).await {
            Ok(s) => s,
            Err(e) => {
                skip(
                    "PostgreSQL",
                    test,
                    &format!("cannot reach {admin}: {e}"),
                    "start PostgreSQL or set KEYHAVEN_TEST_POSTGRES_URL",
                );
                return None;
            }
        };
        let name = format!("kh_test_{:016x}", rand::thread_rng().gen::<u64>());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(admin_store.pool())
            .await
            .expect("create test database");
        admin_store.pool().close().await;
        let url = match admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("KEYHAVEN_TEST_POSTGRES_URL must end with /<database>"),
        };
        let store = connect(&url, true).await.expect("postgres store");
        Some(TestDb {
            url,
            backend: Backend::Postgres,
            store,
            _dir: None,
            pg_name: Some(name),
            pg_admin: admin,
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            let store = self.store.clone();
            let admin = self.pg_admin.clone();
            // Dropping needs async work; do it on a thread with its own runtime so it
            // works whether or not the test's runtime is still alive.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    // No `store.close()` here: it waits for every connection to come
                    // back to the pool, and a connection still being returned by a task
                    // of the test's runtime never does while that runtime is blocked in
                    // `join` below (a deadlock). FORCE ends those connections instead.
                    drop(store);
                    if let Ok(admin) = crate::SqlStore::connect(&admin).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(admin.pool())
                                .await;
                        admin.pool().close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// Skips a test whose dependency (`what`: PostgreSQL, Chromium, a Python package…) is
/// missing, loudly: under `CI=true` it panics instead, so CI can never pass by
/// skipping. Outside CI the line is written straight to the process's stderr, past the
/// test harness's output capture, so it shows in plain `cargo test` output; when the
/// test binary exits it also prints how many tests it skipped, and why.
pub fn skip(what: &str, test: &str, why: &str, fix: &str) {
    use std::io::Write;
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but the {what} test {test} cannot run: {why} ({fix})");
    }
    let line = format!("\n*** SKIPPED {what} test {test}: {why} — {fix} ***\n");
    // Not eprintln!: the harness captures that for passing tests.
    let _ = std::io::stderr().write_all(line.as_bytes());
    let mut skips = SKIPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if skips.is_empty() {
        // SAFETY: `atexit` registers a plain function that takes no arguments and
        // touches only process-wide statics; the C runtime runs it when the test binary
        // calls `exit`.
        unsafe {
            atexit(print_skip_summary);
        }
    }
    *skips.entry(format!("{what}: {fix}")).or_insert(0) += 1;
}

static SKIPS: std::sync::Mutex<std::collections::BTreeMap<String, usize>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

extern "C" {
    fn atexit(f: extern "C" fn()) -> std::os::raw::c_int;
}

extern "C" fn print_skip_summary() {
    use std::io::Write;
    let skips = SKIPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let total: usize = skips.values().sum();
    let mut out =
        format!("\n*** {total} test(s) of this binary SKIPPED (they passed without running):\n");
    for (why, n) in skips.iter() {
        out.push_str(&format!("***   {n} × {why}\n"));
    }
    out.push_str("*** Under CI=true they would fail instead. ***\n");
    let _ = std::io::stderr().write_all(out.as_bytes());
}
