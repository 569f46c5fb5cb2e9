//! Keys made by the real systems, imported and verified (IMPORT.md, "Tested against the
//! real thing"): djangorestframework-api-key (Python, PyPI) and better-auth's api-key
//! plugin (npm) make keys in databases of their own, the recipes of `docs/import.md`
//! export them to JSON Lines, `keyhaven admin import-keys` imports them, and `keyhaven
//! serve` verifies the plain keys those packages printed, through `POST /v1/keys/verify`
//! and `GET /v1/auth`. A home-grown table of SHA-256 hashes goes the same way. The
//! old systems' databases are of the same kind as Keyhaven's in each test: SQLite
//! files exported with `sqlite3`, or PostgreSQL databases of their own exported with
//! `psql`, so every recipe the doc gives for either is run.
//!
//! The scripts and recipes are in `tests/cli/fixtures/import/`; its `install.sh`
//! installs the packages (pip, and `npm ci` into `<target dir>/import-fixtures`). When
//! Python's packages, Node's or a command-line tool is missing, a test prints a loud
//! SKIPPED line and passes — except under `CI=true`, where it fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::support::{client, exec_sql, run, Env, Kind, Out, Server, BIN, GOOD_PASSWORD};
use keyhaven_store::testing::TestDb;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::process::Command;

on_both_backends!(
    drf_keys_verify_after_import,
    better_auth_keys_verify_after_import,
    own_table_keys_verify_after_import,
);

// ---------------------------------------------------------------------------------------
// Where things are, and what is missing

/// The fixture scripts and recipes.
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/fixtures/import")
}

fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

/// The cargo target directory the binary under test was built in (`<target>/debug/keyhaven`).
fn target_dir() -> PathBuf {
    Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .expect("the binary sits in <target>/<profile>/")
        .to_path_buf()
}

/// Where `install.sh` puts the npm packages.
fn node_packages() -> PathBuf {
    target_dir().join("import-fixtures")
}

const INSTALL: &str = "run crates/keyhaven/tests/cli/fixtures/import/install.sh";

/// Python: `python3` or `KEYHAVEN_TEST_PYTHON`.
fn python() -> String {
    std::env::var("KEYHAVEN_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Whether `program args…` runs and exits 0.
fn runs(program: &str, args: &[&str], cwd: Option<&Path>) -> bool {
    let mut c = std::process::Command::new(program);
    c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    if let Some(dir) = cwd {
        c.current_dir(dir);
    }
    c.status().is_ok_and(|s| s.success())
}

/// `Some(())` when every `(what, available)` holds; else a loud skip (a failure under
/// `CI=true`) naming the first missing one.
fn needs(test: &str, checks: &[(&str, bool)]) -> Option<()> {
    for (what, ok) in checks {
        if !ok {
            keyhaven_store::testing::skip(
                "import (real packages)",
                test,
                &format!("{what} is not available"),
                INSTALL,
            );
            return None;
        }
    }
    Some(())
}

fn have_sqlite3() -> bool {
    runs("sqlite3", &["-version"], None)
}

fn have_psql() -> bool {
    runs("psql", &["--version"], None)
}

fn have_drf(kind: Kind) -> bool {
    let modules = match kind {
        Kind::Sqlite => "import django, rest_framework_api_key",
        Kind::Postgres => "import django, rest_framework_api_key, psycopg",
    };
    runs(&python(), &["-c", modules], None)
}

/// The command-line tool the recipes for `kind` run with.
fn sql_tool(kind: Kind) -> (&'static str, bool) {
    match kind {
        Kind::Sqlite => ("sqlite3", have_sqlite3()),
        Kind::Postgres => ("psql", have_psql()),
    }
}

fn have_better_auth() -> bool {
    let dir = node_packages();
    dir.join("node_modules/better-auth/package.json").is_file()
        && runs(
            "node",
            &["-e", "require('better-sqlite3')"],
            Some(dir.as_path()),
        )
}

// ---------------------------------------------------------------------------------------
// Running the scripts and recipes

/// Runs a command to completion and returns its stdout, failing the test unless it
/// exits 0.
async fn output(cmd: Command, what: &str) -> String {
    let out = run(cmd).await;
    assert!(
        out.status.success(),
        "{what} failed: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    out.stdout
}

fn command(program: &str, cwd: &Path) -> Command {
    let mut c = Command::new(program);
    c.current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// The JSON document a key-making script printed.
fn document(stdout: &str, what: &str) -> Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{what} printed {stdout:?}: {e}"))
}

/// Runs a `sqlite3` recipe on `db`, as the doc says: `sqlite3 db < recipe`.
async fn sqlite3_recipe(db: &Path, recipe: &str, cwd: &Path) -> String {
    assert_in_doc(recipe);
    let mut c = command("sqlite3", cwd);
    c.arg("-bail").arg(db).stdin(Stdio::from(
        std::fs::File::open(fixture(recipe)).expect("open the recipe"),
    ));
    output(c, recipe).await
}

/// Runs a `psql` recipe on the database at `url`, as the doc says:
/// `psql URL --no-psqlrc -At -f recipe`.
async fn psql_recipe(url: &str, recipe: &str, cwd: &Path) -> String {
    assert_in_doc(recipe);
    let mut c = command("psql", cwd);
    c.arg(url)
        .args(["--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-At", "-f"])
        .arg(fixture(recipe));
    output(c, recipe).await
}

/// An empty PostgreSQL database for the old system, dropped with the value.
async fn old_postgres(test: &str) -> TestDb {
    let db = TestDb::postgres(&format!("keyhaven::cli::{test}::old_system"))
        .await
        .expect("PostgreSQL answers (Keyhaven's database is on it)");
    // TestDb migrates Keyhaven's schema into it; the old system starts from nothing.
    exec_sql(
        &db.url,
        &["DROP SCHEMA public CASCADE", "CREATE SCHEMA public"],
    )
    .await;
    db
}

/// The JSON Lines a recipe printed, each line parsed.
fn lines(jsonl: &str, what: &str) -> Vec<Value> {
    jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{what} printed {l:?}: {e}")))
        .collect()
}

/// The recipes the tests run are the ones `docs/import.md` gives: each recipe file is
/// in the doc word for word.
fn assert_in_doc(recipe: &str) {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/import.md");
    let doc = std::fs::read_to_string(&doc_path)
        .unwrap_or_else(|e| panic!("read {}: {e}", doc_path.display()));
    let text = std::fs::read_to_string(fixture(recipe)).expect("read the recipe");
    assert!(
        doc.contains(text.trim()),
        "docs/import.md must give the recipe {recipe} exactly as the test runs it"
    );
    assert!(
        doc.contains(&format!("fixtures/import/{recipe}")),
        "docs/import.md must name the recipe file {recipe}"
    );
}

// ---------------------------------------------------------------------------------------
// Keyhaven's side

/// Creates an organization with the CLI; returns its id.
async fn create_org(env: &Env) -> String {
    env.run(&[
        "admin",
        "create-org",
        "--name",
        "Imports",
        "--admin-email",
        "admin@imports.test",
        "--admin-password",
        GOOD_PASSWORD,
    ])
    .await
    .ok()
    .to_string()
}

/// `keyhaven admin import-keys --org <org> <file>`, or the file on standard input with
/// `-` when `stdin` is set.
async fn import(env: &Env, org: &str, file: &Path, stdin: bool) -> Out {
    let mut c = env.cmd();
    c.args(["admin", "import-keys", "--org", org]);
    if stdin {
        c.arg("-").stdin(Stdio::from(
            std::fs::File::open(file).expect("open the export"),
        ));
    } else {
        c.arg(file);
    }
    run(c).await
}

/// Imports `items` (written as JSON Lines) and checks that every one was imported.
async fn import_all(env: &Env, org: &str, items: &[Value], stdin: bool) {
    let file = env.root.path().join("keys.jsonl");
    let body: String = items.iter().map(|i| format!("{i}\n")).collect();
    std::fs::write(&file, body).expect("write the export");
    let before = env.count("api_keys").await;
    let out = import(env, org, &file, stdin).await;
    out.ok();
    assert_eq!(
        env.count("api_keys").await - before,
        items.len() as i64,
        "every exported key is imported\n{out:?}"
    );
}

/// `POST /v1/keys/verify` for `key`, pinned to `org`.
async fn verify(server: &Server, org: &str, key: &str) -> Value {
    let res = client()
        .post(format!("{}/v1/keys/verify", server.base))
        .json(&json!({ "key": key, "organization_id": org }))
        .send()
        .await
        .expect("POST /v1/keys/verify");
    assert_eq!(res.status(), StatusCode::OK, "verify answers 200");
    res.json().await.expect("verify answers JSON")
}

/// `GET /v1/auth` with `Authorization: Bearer <key>`: the status, `X-Keyhaven-Code` and
/// `X-Keyhaven-External-Id` (when set).
async fn forward_auth(
    server: &Server,
    org: &str,
    key: &str,
) -> (StatusCode, String, Option<String>) {
    let res = client()
        .get(format!("{}/v1/auth?organization_id={org}", server.base))
        .bearer_auth(key)
        .send()
        .await
        .expect("GET /v1/auth");
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let code = header("x-keyhaven-code").unwrap_or_default();
    let external_id = header("x-keyhaven-external-id");
    (res.status(), code, external_id)
}

/// Checks one key through both endpoints: the verify code, the matching `/v1/auth`
/// status, and for a valid key the name it was imported under. Returns the verify answer.
async fn check_key(server: &Server, org: &str, key: &str, expect: &str, name: &str) -> Value {
    let answer = verify(server, org, key).await;
    assert_eq!(answer["code"], expect, "{name}: {answer}");
    assert_eq!(answer["valid"], expect == "VALID", "{name}: {answer}");
    let (status, code, external_id) = forward_auth(server, org, key).await;
    assert_eq!(code, expect, "{name}: X-Keyhaven-Code");
    let want = if expect == "VALID" {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    };
    assert_eq!(status, want, "{name}: /v1/auth status");
    if expect == "VALID" {
        assert_eq!(answer["name"], name, "{answer}");
        assert_eq!(answer["organization_id"], org, "{answer}");
        assert_eq!(
            external_id.as_deref(),
            answer["external_id"].as_str(),
            "{name}: X-Keyhaven-External-Id is the key's external_id"
        );
    }
    answer
}

/// `key` with its last character changed: same prefix, wrong secret.
fn wrong(key: &str) -> String {
    let mut k = key.to_string();
    let last = k.pop().expect("a key");
    k.push(if last == 'a' { 'b' } else { 'a' });
    k
}

/// Checks that a wrong key is refused by `POST /v1/keys/verify`.
async fn refused_by_verify(server: &Server, org: &str, key: &str) {
    let answer = verify(server, org, key).await;
    assert_eq!(answer["valid"], false, "a wrong key: {answer}");
    assert!(
        matches!(answer["code"].as_str(), Some("NOT_FOUND" | "MALFORMED")),
        "a wrong key: {answer}"
    );
    assert!(
        answer["key_id"].is_null(),
        "a wrong key matches no key: {answer}"
    );
}

/// Checks that a wrong key is refused by both endpoints.
async fn check_refused(server: &Server, org: &str, key: &str) {
    refused_by_verify(server, org, key).await;
    let (status, _, _) = forward_auth(server, org, key).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a wrong key on /v1/auth");
}

/// One text value, or `None` when the query finds no row.
async fn sql_opt(env: &Env, query: &str) -> Option<String> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&env.db_url)
        .await
        .expect("connect for a query");
    let v: Option<String> = sqlx::query_scalar(query)
        .fetch_optional(&pool)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    pool.close().await;
    v
}

/// The id of the key imported under `name`.
async fn key_id(env: &Env, name: &str) -> String {
    env.sql_text(&format!(
        "SELECT id FROM api_keys WHERE name = '{}'",
        name.replace('\'', "''")
    ))
    .await
}

/// The algorithm of the hash an imported key still waits with, if any.
async fn pending_hash(env: &Env, id: &str) -> Option<(String, String)> {
    let algorithm = sql_opt(
        env,
        &format!("SELECT algorithm FROM api_key_hashes WHERE key_id = '{id}'"),
    )
    .await?;
    let value = env
        .sql_text(&format!(
            "SELECT value FROM api_key_hashes WHERE key_id = '{id}'"
        ))
        .await;
    Some((algorithm, value))
}

// ---------------------------------------------------------------------------------------
// djangorestframework-api-key

/// Writes a minimal Django project's settings into `dir`: its database is SQLite
/// beside them, or the PostgreSQL database at `postgres`.
fn django_settings(dir: &Path, postgres: Option<&str>) {
    let database = match postgres {
        None => format!(
            "DATABASES = {{'default': {{'ENGINE': 'django.db.backends.sqlite3', 'NAME': {:?}}}}}\n",
            dir.join("db.sqlite3").display().to_string()
        ),
        Some(url) => format!(
            "import urllib.parse\n\
             _url = urllib.parse.urlparse({url:?})\n\
             DATABASES = {{'default': {{'ENGINE': 'django.db.backends.postgresql', \
             'NAME': _url.path.lstrip('/'), 'USER': _url.username or '', \
             'PASSWORD': _url.password or '', 'HOST': _url.hostname or '', \
             'PORT': _url.port or ''}}}}\n"
        ),
    };
    let settings = format!(
        "SECRET_KEY = 'import-test-only'\n\
         INSTALLED_APPS = ['django.contrib.contenttypes', 'django.contrib.auth', \
         'rest_framework_api_key']\n\
         {database}\
         USE_TZ = True\n\
         DEFAULT_AUTO_FIELD = 'django.db.models.BigAutoField'\n"
    );
    std::fs::write(dir.join("drf_test_settings.py"), settings).expect("write settings");
}

fn django(dir: &Path, script: &str) -> Command {
    let mut c = command(&python(), dir);
    c.arg(fixture(script))
        .env("DJANGO_SETTINGS_MODULE", "drf_test_settings")
        .env("PYTHONPATH", dir)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    c
}

async fn drf_keys_verify_after_import(env: Env) {
    let test = "drf_keys_verify_after_import";
    let checks = [
        (
            "python3 with Django, djangorestframework-api-key (and psycopg for PostgreSQL)",
            have_drf(env.kind),
        ),
        sql_tool(env.kind),
    ];
    if needs(test, &checks).is_none() {
        return;
    }
    let old = tempfile::tempdir().expect("temp dir");
    let old_pg = match env.kind {
        Kind::Sqlite => None,
        Kind::Postgres => Some(old_postgres(test).await),
    };
    django_settings(old.path(), old_pg.as_ref().map(|db| db.url.as_str()));
    let made = document(
        &output(django(old.path(), "drf_make_keys.py"), "drf_make_keys.py").await,
        "drf_make_keys.py",
    );
    let keys = made["keys"].as_array().expect("keys").clone();
    assert_eq!(keys.len(), 5, "{made}");
    assert!(
        keys.iter().any(|k| k["hasher"] == "pbkdf2_sha256")
            && keys.iter().any(|k| k["hasher"] == "sha512"),
        "the package made keys with both hashers: {made}"
    );

    // Export with the doc's SQL recipe for this database and its Python one: they agree.
    let from_sql = match &old_pg {
        None => {
            let db = old.path().join("db.sqlite3");
            let out = sqlite3_recipe(&db, "drf_export.sql", old.path()).await;
            lines(&out, "drf_export.sql")
        }
        Some(pg) => {
            let out = psql_recipe(&pg.url, "drf_export.pg.sql", old.path()).await;
            lines(&out, "drf_export.pg.sql")
        }
    };
    assert_in_doc("drf_export.py");
    let from_python = lines(
        &output(django(old.path(), "drf_export.py"), "drf_export.py").await,
        "drf_export.py",
    );
    assert_eq!(from_sql, from_python, "the SQL and Python recipes agree");
    assert_eq!(from_sql.len(), keys.len());

    let org = create_org(&env).await;
    import_all(&env, &org, &from_sql, false).await;

    // The keys that are not plain SHA-256 wait with their hash: all of DRF's.
    let name_of = |k: &Value| {
        format!(
            "{} ({})",
            k["name"].as_str().unwrap_or(""),
            k["prefix"].as_str().unwrap_or("")
        )
    };
    let pbkdf2 = keys
        .iter()
        .find(|k| k["hasher"] == "pbkdf2_sha256")
        .expect("a PBKDF2 key");
    let pbkdf2_key = pbkdf2["key"].as_str().expect("key").to_string();
    let pbkdf2_name = name_of(pbkdf2);
    let pbkdf2_id = key_id(&env, &pbkdf2_name).await;
    let (algorithm, value) = pending_hash(&env, &pbkdf2_id)
        .await
        .expect("the PBKDF2 hash is kept until the key is used");
    assert_eq!(algorithm, "pbkdf2_sha256");
    assert!(value.starts_with("pbkdf2_sha256$"), "{value}");

    let server = env.serve(&[]).await;
    // A wrong secret behind the PBKDF2 key's prefix is refused and changes nothing
    // (checked once: each such check costs a full PBKDF2, seconds in a debug build).
    refused_by_verify(&server, &org, &wrong(&pbkdf2_key)).await;
    assert!(
        pending_hash(&env, &pbkdf2_id).await.is_some(),
        "a wrong key does not replace the slow hash"
    );
    check_refused(&server, &org, "Zz9Zz9Zz.definitelyNotAnyKeyTheSystemMade").await;

    let mut expires = BTreeMap::new();
    for (k, item) in keys.iter().zip(&from_sql) {
        let key = k["key"].as_str().expect("key");
        let expect = k["expect"].as_str().expect("expect");
        let name = name_of(k);
        assert_eq!(item["name"], name.as_str(), "the export keeps the order");
        let answer = check_key(&server, &org, key, expect, &name).await;
        if expect == "VALID" {
            expires.insert(name.clone(), answer["expires_at"].clone());
            assert_eq!(answer["expires_at"], item["expires_at"], "{answer}");
        }
        check_refused(&server, &org, &wrong(key)).await;
    }
    assert!(
        expires.values().any(Value::is_string),
        "one valid key carries its expiry over: {expires:?}"
    );

    // The first successful verification replaced the slow hash by the SHA-256 digest.
    assert_eq!(
        pending_hash(&env, &pbkdf2_id).await,
        None,
        "the PBKDF2 hash is gone from the database after the first verification"
    );
    let digest = env
        .sql_text(&format!(
            "SELECT digest FROM api_keys WHERE id = '{pbkdf2_id}'"
        ))
        .await;
    assert_eq!(digest, keyhaven_core::key_format::digest_hex(&pbkdf2_key));
    server.stop().await;

    // A fresh process (no cache) verifies the key by its new digest.
    let server = env.serve(&[]).await;
    check_key(&server, &org, &pbkdf2_key, "VALID", &pbkdf2_name).await;
    check_refused(&server, &org, &wrong(&pbkdf2_key)).await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// better-auth

async fn better_auth_keys_verify_after_import(env: Env) {
    let test = "better_auth_keys_verify_after_import";
    let checks = [
        (
            "node with the packages install.sh puts in <target>/import-fixtures",
            have_better_auth(),
        ),
        sql_tool(env.kind),
    ];
    if needs(test, &checks).is_none() {
        return;
    }
    // The script runs next to the installed packages (ES modules resolve from the
    // script's own directory), on a SQLite file in a directory of its own or a
    // PostgreSQL database of its own.
    let old = tempfile::tempdir().expect("temp dir");
    let script = old.path().join("better_auth_make_keys.mjs");
    std::fs::copy(fixture("better_auth_make_keys.mjs"), &script).expect("copy the script");
    std::os::unix::fs::symlink(
        node_packages().join("node_modules"),
        old.path().join("node_modules"),
    )
    .expect("link node_modules");
    let old_pg = match env.kind {
        Kind::Sqlite => None,
        Kind::Postgres => Some(old_postgres(test).await),
    };
    let db = old.path().join("auth.db");
    let mut c = command("node", old.path());
    c.arg(&script);
    match &old_pg {
        None => c.arg(&db),
        Some(pg) => c.arg(&pg.url),
    };
    let made = document(
        &output(c, "better_auth_make_keys.mjs").await,
        "better_auth_make_keys.mjs",
    );
    let keys = made["keys"].as_array().expect("keys").clone();
    assert_eq!(keys.len(), 4, "{made}");
    let user_id = made["userId"].as_str().expect("userId").to_string();

    let items = match &old_pg {
        None => {
            let out = sqlite3_recipe(&db, "better_auth_export.sql", old.path()).await;
            lines(&out, "better_auth_export.sql")
        }
        Some(pg) => {
            let out = psql_recipe(&pg.url, "better_auth_export.pg.sql", old.path()).await;
            lines(&out, "better_auth_export.pg.sql")
        }
    };
    assert_eq!(items.len(), keys.len(), "{items:?}");

    let org = create_org(&env).await;
    // This one goes in through standard input.
    import_all(&env, &org, &items, true).await;
    // SHA-256 digests are stored as the keys' digests: nothing waits.
    assert_eq!(env.count("api_key_hashes").await, 0);

    let server = env.serve(&[]).await;
    for k in &keys {
        let key = k["key"].as_str().expect("key");
        let expect = k["expect"].as_str().expect("expect");
        let id = k["id"].as_str().expect("id");
        let item = items
            .iter()
            .find(|i| {
                i["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with(&format!("({})", &id[..8])))
            })
            .unwrap_or_else(|| panic!("no exported item for {id}: {items:?}"));
        let name = item["name"].as_str().expect("name");
        let answer = check_key(&server, &org, key, expect, name).await;
        if expect == "VALID" {
            assert_eq!(answer["external_id"], user_id.as_str(), "{answer}");
            assert_eq!(answer["expires_at"], item["expires_at"], "{answer}");
            let want_metadata = if item["metadata"].is_object() {
                item["metadata"].clone()
            } else {
                json!({})
            };
            let got = if answer["metadata"].is_null() {
                json!({})
            } else {
                answer["metadata"].clone()
            };
            assert_eq!(got, want_metadata, "{answer}");
        }
        check_refused(&server, &org, &wrong(key)).await;
    }
    let storefront = keys
        .iter()
        .find(|k| k["name"] == "storefront")
        .expect("storefront");
    let answer = verify(&server, &org, storefront["key"].as_str().expect("key")).await;
    assert_eq!(
        answer["metadata"],
        json!({"plan": "pro", "region": "eu"}),
        "{answer}"
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Your own table of hashes

async fn own_table_keys_verify_after_import(env: Env) {
    let test = "own_table_keys_verify_after_import";
    let python_ok = runs(&python(), &["-c", "import hashlib, secrets"], None);
    if needs(test, &[("python3", python_ok), sql_tool(env.kind)]).is_none() {
        return;
    }
    let old = tempfile::tempdir().expect("temp dir");
    let schema = old.path().join("own_table.sql");
    let mut c = command(&python(), old.path());
    c.arg(fixture("own_table_make_keys.py")).arg(&schema);
    let made = document(
        &output(c, "own_table_make_keys.py").await,
        "own_table_make_keys.py",
    );
    let keys = made["keys"].as_array().expect("keys").clone();

    // The old system's database: SQLite beside the script, or a PostgreSQL database
    // of its own; exported with the doc's recipe for it.
    let mut _old_pg = None;
    let jsonl = match env.kind {
        Kind::Sqlite => {
            let db = old.path().join("app.db");
            let mut c = command("sqlite3", old.path());
            c.arg("-bail")
                .arg(&db)
                .stdin(Stdio::from(std::fs::File::open(&schema).expect("open")));
            output(c, "sqlite3 (create the table)").await;
            sqlite3_recipe(&db, "own_table_export.sql", old.path()).await
        }
        Kind::Postgres => {
            let pg = old_postgres(test).await;
            let mut c = command("psql", old.path());
            c.arg(&pg.url)
                .args(["--no-psqlrc", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
                .arg(&schema);
            output(c, "psql (create the table)").await;
            let out = psql_recipe(&pg.url, "own_table_export.pg.sql", old.path()).await;
            _old_pg = Some(pg);
            out
        }
    };
    let items = lines(&jsonl, "own table recipe");
    assert_eq!(items.len(), keys.len(), "{items:?}");

    let org = create_org(&env).await;
    import_all(&env, &org, &items, false).await;
    let server = env.serve(&[]).await;
    for (k, item) in keys.iter().zip(&items) {
        let key = k["key"].as_str().expect("key");
        let expect = k["expect"].as_str().expect("expect");
        let name = k["name"].as_str().expect("name");
        assert_eq!(item["name"], name);
        let answer = check_key(&server, &org, key, expect, name).await;
        if expect == "VALID" {
            assert_eq!(answer["external_id"], k["customer"], "{answer}");
        }
        check_refused(&server, &org, &wrong(key)).await;
    }
    server.stop().await;
}
