//! Black-box tests of the `keyhaven` binary: `serve`, `admin`, `migrate`, `audit verify`
//! and their error reporting, on SQLite and PostgreSQL with the same code.

use crate::support::{client, field, free_port, keyhaven, run, Env, Kind, Out, GOOD_PASSWORD};
use regex::Regex;
use reqwest::StatusCode;
use serde_json::{json, Value};

on_both_backends!(
    serve_first_start_prints_password_and_data_survives_restart,
    serve_with_bootstrap_admin_from_environment,
    serve_on_port_zero_prints_the_real_console_address,
    serve_refuses_bad_bootstrap_settings,
    admin_commands_work_while_server_runs,
    migrate_twice_succeeds,
    audit_verify_detects_an_edited_entry,
    audit_verify_detects_a_deleted_newest_entry,
    audit_verify_detects_a_deleted_middle_entry,
    audit_verify_detects_truncation_with_a_rewritten_head,
    unwritable_data_dir_is_one_clear_line,
    malformed_or_unknown_org_is_one_clear_line,
    too_short_password_is_one_clear_line,
    duplicate_email_is_one_clear_line,
    unknown_role_is_one_clear_line,
    invalid_listen_address_is_one_clear_line,
    listen_address_in_use_is_one_clear_line_and_loses_nothing,
    passwords_from_environment_or_stdin,
    create_key_defaults_to_the_oldest_super_admin,
    serve_warns_when_nodes_may_disagree_on_the_master_key,
    reset_password_lets_a_locked_out_admin_back_in,
);

// ---------------------------------------------------------------------------------------
// Helpers

/// A master key as several nodes on one PostgreSQL database must share it (without
/// one, `serve` on PostgreSQL prints a warning before anything else, which the
/// "exactly one line" checks of failing starts would count).
const SHARED_MASTER_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

fn id_re() -> Regex {
    Regex::new(r"^[0-9a-z]{26}$").unwrap()
}

fn key_re() -> Regex {
    Regex::new(r"^kh_[0-9A-Za-z]{46}$").unwrap()
}

/// The organization id printed by a first start: `Created organization "Default" (<id>)`.
fn created_org_id(stdout: &str) -> String {
    let re = Regex::new(r#"Created organization "Default" \(([0-9a-z]{26})\)"#).unwrap();
    re.captures(stdout)
        .unwrap_or_else(|| panic!("no `Created organization` line in:\n{stdout}"))[1]
        .to_string()
}

/// Signs in; returns the status, and on 200 the client (with the cookie) and `/v1/me`.
async fn sign_in(base: &str, email: &str, password: &str) -> (StatusCode, Option<Value>) {
    let http = client();
    let res = http
        .post(format!("{base}/v1/session"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("POST /v1/session");
    let status = res.status();
    if status != StatusCode::OK {
        return (status, None);
    }
    let cookie = res
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .expect("sign-in sets a cookie")
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.contains("HttpOnly"), "session cookie: {cookie}");
    let body: Value = res.json().await.unwrap();
    assert!(body["csrf_token"].is_string(), "sign-in body: {body}");
    let me = http
        .get(format!("{base}/v1/me"))
        .send()
        .await
        .expect("GET /v1/me");
    assert_eq!(me.status(), StatusCode::OK, "GET /v1/me with the cookie");
    (status, Some(me.json().await.unwrap()))
}

/// Signs in and returns `/v1/me`, failing the test unless it works.
async fn sign_in_ok(base: &str, email: &str, password: &str) -> Value {
    let (status, me) = sign_in(base, email, password).await;
    assert_eq!(status, StatusCode::OK, "sign in as {email}");
    let me = me.unwrap();
    assert_eq!(me["principal"]["type"], "user", "{me}");
    me
}

/// `GET /v1/me` with `Authorization: Bearer <key>`.
async fn me_with_key(base: &str, key: &str) -> (StatusCode, Value) {
    let res = reqwest::Client::new()
        .get(format!("{base}/v1/me"))
        .bearer_auth(key)
        .send()
        .await
        .expect("GET /v1/me");
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn create_org(env: &Env, name: &str, email: &str) -> String {
    let out = env
        .run(&[
            "admin",
            "create-org",
            "--name",
            name,
            "--admin-email",
            email,
            "--admin-password",
            GOOD_PASSWORD,
        ])
        .await;
    let id = out.ok().to_string();
    assert!(id_re().is_match(&id), "create-org printed {id:?}");
    id
}

async fn create_user(env: &Env, org: &str, email: &str, role: &str) -> Out {
    env.run(&[
        "admin",
        "create-user",
        "--org",
        org,
        "--email",
        email,
        "--password",
        GOOD_PASSWORD,
        "--role",
        role,
    ])
    .await
}

fn combined(out: &Out) -> String {
    format!("{}\n{}", out.stdout, out.stderr)
}

/// Asserts `audit verify` failed without panicking and returns what it printed.
fn verify_failed(out: &Out) -> String {
    assert!(
        !out.status.success() && out.status.code().is_some(),
        "audit verify should exit non-zero on a broken chain\n{out:?}"
    );
    assert!(!out.stderr.contains("panicked"), "{out:?}");
    combined(out)
}

// ---------------------------------------------------------------------------------------
// 1. serve: first start, sign-in, restart

async fn serve_first_start_prints_password_and_data_survives_restart(env: Env) {
    let server = env.serve(&[]).await;
    let out = server.stdout();
    let console = field(&out, "Console:").unwrap_or_else(|| panic!("no console line:\n{out}"));
    assert_eq!(console, format!("{}/", server.base), "stdout:\n{out}");
    let email = field(&out, "Email:").unwrap_or_else(|| panic!("no email line:\n{out}"));
    assert_eq!(email, "admin@localhost");
    let password = field(&out, "Password:").unwrap_or_else(|| panic!("no password line:\n{out}"));
    assert!(password.chars().count() >= 12, "password {password:?}");
    let org = created_org_id(&out);

    let me = sign_in_ok(&server.base, &email, &password).await;
    assert_eq!(me["organization_id"], org.as_str(), "{me}");
    let user_id = me["principal"]["id"].clone();
    let (wrong, _) = sign_in(&server.base, &email, "not the password at all").await;
    assert_eq!(wrong, StatusCode::UNAUTHORIZED);
    // The binary wrote to the database this test points it at.
    assert_eq!(env.count("organizations").await, 1);
    assert_eq!(env.count("users").await, 1);

    // An idle keep-alive connection (as a browser keeps) must not hold up the shutdown.
    let idle = client();
    let r = idle
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let stopped = server.stop().await;
    assert_eq!(stopped.status.code(), Some(0), "SIGTERM exit: {stopped:?}");
    assert!(!stopped.stderr.contains("panicked"), "{stopped:?}");
    drop(idle);

    // Second start on the same database: nothing new is created or printed.
    let server = env.serve(&[]).await;
    let out2 = server.stdout();
    assert!(!out2.contains("Password:"), "second start printed:\n{out2}");
    assert!(!out2.contains(&password), "second start printed:\n{out2}");
    assert!(
        !out2.contains("Created organization"),
        "second start printed:\n{out2}"
    );
    let me2 = sign_in_ok(&server.base, &email, &password).await;
    assert_eq!(me2["organization_id"], org.as_str(), "{me2}");
    assert_eq!(me2["principal"]["id"], user_id, "{me2}");

    let stopped = server.stop().await;
    assert_eq!(stopped.status.code(), Some(0), "SIGTERM exit: {stopped:?}");
    assert_eq!(env.count("organizations").await, 1);
    assert_eq!(
        env.data_dir.join("keyhaven.db").is_file(),
        env.kind == Kind::Sqlite,
        "an SQLite file exists exactly when SQLite is the backend"
    );
}

async fn serve_on_port_zero_prints_the_real_console_address(env: Env) {
    // `--listen 127.0.0.1:0` lets the system choose the port; the console address
    // printed must be the one the server really listens on.
    let server = env.serve_on("127.0.0.1:0", &[]).await;
    let out = server.stdout();
    let console = field(&out, "Console:").unwrap_or_else(|| panic!("no console line:\n{out}"));
    assert_eq!(
        console,
        format!("{}/", server.base),
        "the printed console address is not where the server listens:\n{out}"
    );
    let password = field(&out, "Password:").unwrap_or_else(|| panic!("no password line:\n{out}"));
    sign_in_ok(&server.base, "admin@localhost", &password).await;
    let stopped = server.stop().await;
    assert_eq!(stopped.status.code(), Some(0), "SIGTERM exit: {stopped:?}");
}

async fn serve_refuses_bad_bootstrap_settings(env: Env) {
    let mut c = env.cmd();
    c.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .env("KEYHAVEN_MASTER_KEY", SHARED_MASTER_KEY)
        .env("KEYHAVEN_BOOTSTRAP_ADMIN_PASSWORD", "short");
    run(c).await.fails_cleanly(&["password", "12"]);
    let mut c = env.cmd();
    c.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .env("KEYHAVEN_MASTER_KEY", SHARED_MASTER_KEY)
        .env("KEYHAVEN_BOOTSTRAP_ADMIN_EMAIL", "not-an-email");
    run(c).await.fails_cleanly(&["email"]);
    // Nothing half-made: a good first start still bootstraps.
    let server = env
        .serve(&[("KEYHAVEN_BOOTSTRAP_ADMIN_PASSWORD", GOOD_PASSWORD)])
        .await;
    assert!(server.stdout().contains("Created organization"));
    sign_in_ok(&server.base, "admin@localhost", GOOD_PASSWORD).await;
    assert_eq!(env.count("organizations").await, 1);
    let stopped = server.stop().await;
    assert_eq!(stopped.status.code(), Some(0), "SIGTERM exit: {stopped:?}");
}

async fn serve_with_bootstrap_admin_from_environment(env: Env) {
    let email = "boss@example.com";
    let password = "a bootstrap password 123";
    let vars = [
        ("KEYHAVEN_BOOTSTRAP_ADMIN_EMAIL", email),
        ("KEYHAVEN_BOOTSTRAP_ADMIN_PASSWORD", password),
    ];
    let server = env.serve(&vars).await;
    let out = server.stdout();
    assert_eq!(
        field(&out, "Console:").as_deref(),
        Some(format!("{}/", server.base).as_str()),
        "stdout:\n{out}"
    );
    assert_eq!(field(&out, "Email:").as_deref(), Some(email), "{out}");
    assert!(
        !out.contains(password),
        "the configured password must not be echoed:\n{out}"
    );
    assert!(
        !out.contains("shown once"),
        "no password should be generated:\n{out}"
    );
    let org = created_org_id(&out);
    let me = sign_in_ok(&server.base, email, password).await;
    assert_eq!(me["organization_id"], org.as_str());
    let (status, _) = sign_in(&server.base, "admin@localhost", password).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "no admin@localhost exists"
    );
    let stopped = server.stop().await;
    assert_eq!(stopped.status.code(), Some(0), "SIGTERM exit: {stopped:?}");

    // Restart with the same settings.
    let server = env.serve(&vars).await;
    let out2 = server.stdout();
    assert!(!out2.contains("Created organization"), "{out2}");
    assert!(!out2.contains("Password:"), "{out2}");
    let me2 = sign_in_ok(&server.base, email, password).await;
    assert_eq!(me2["principal"]["id"], me["principal"]["id"]);
    let stopped = server.stop().await;
    assert_eq!(stopped.status.code(), Some(0), "SIGTERM exit: {stopped:?}");

    // Other bootstrap values on an initialized database change nothing.
    let other = [
        ("KEYHAVEN_BOOTSTRAP_ADMIN_EMAIL", "other@example.com"),
        ("KEYHAVEN_BOOTSTRAP_ADMIN_PASSWORD", "another password 456"),
    ];
    let server = env.serve(&other).await;
    let out3 = server.stdout();
    assert!(!out3.contains("Created organization"), "{out3}");
    let (status, _) = sign_in(&server.base, "other@example.com", "another password 456").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = sign_in(&server.base, email, "another password 456").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    sign_in_ok(&server.base, email, password).await;
    let stopped = server.stop().await;
    assert_eq!(stopped.status.code(), Some(0), "SIGTERM exit: {stopped:?}");
}

// ---------------------------------------------------------------------------------------
// 2. admin commands, alongside a running server

async fn admin_commands_work_while_server_runs(env: Env) {
    let server = env.serve(&[]).await;
    let default_org = created_org_id(&server.stdout());

    // Exactly one organization: --org may be left out.
    let boot = env
        .run(&["admin", "create-key", "--name", "boot", "--role", "admin"])
        .await;
    let boot = boot.ok().to_string();
    assert!(key_re().is_match(&boot), "create-key printed {boot:?}");
    let (status, me) = me_with_key(&server.base, &boot).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["principal"]["type"], "api_key", "{me}");
    assert_eq!(me["organization_id"], default_org.as_str(), "{me}");

    let org = create_org(&env, "Acme", "owner@acme.test").await;
    assert_ne!(org, default_org);

    let user = create_user(&env, &org, "dev@acme.test", "admin").await;
    let user = user.ok().to_string();
    assert!(id_re().is_match(&user), "create-user printed {user:?}");

    let key = env
        .run(&[
            "admin",
            "create-key",
            "--org",
            &org,
            "--name",
            "ci",
            "--role",
            "admin",
        ])
        .await;
    let key = key.ok().to_string();
    assert!(key_re().is_match(&key), "create-key printed {key:?}");

    let (status, me) = me_with_key(&server.base, &key).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["principal"]["type"], "api_key", "{me}");
    assert_eq!(me["organization_id"], org.as_str(), "{me}");
    assert!(
        me["permissions"].as_array().is_some_and(|p| !p.is_empty()),
        "an admin key has permissions: {me}"
    );

    // A key that differs in one character does not authenticate.
    let mut forged = key.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'a' { 'b' } else { 'a' });
    let (status, _) = me_with_key(&server.base, &forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A personal key for the new user.
    let personal = env
        .run(&[
            "admin",
            "create-key",
            "--org",
            &org,
            "--name",
            "personal",
            "--user",
            "dev@acme.test",
            "--role",
            "admin",
        ])
        .await;
    let personal = personal.ok().to_string();
    assert!(key_re().is_match(&personal), "{personal:?}");
    let (status, me) = me_with_key(&server.base, &personal).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["organization_id"], org.as_str(), "{me}");

    // The users made by the CLI sign in on the running server.
    let me = sign_in_ok(&server.base, "dev@acme.test", GOOD_PASSWORD).await;
    assert_eq!(me["principal"]["id"], user.as_str(), "{me}");
    assert_eq!(me["organization_id"], org.as_str(), "{me}");
    let me = sign_in_ok(&server.base, "owner@acme.test", GOOD_PASSWORD).await;
    assert_eq!(me["organization_id"], org.as_str(), "{me}");

    // Two organizations now: leaving out --org is refused.
    env.run(&["admin", "create-key", "--name", "x", "--role", "admin"])
        .await
        .fails_cleanly(&["--org"]);

    // Everything the CLI did is in an intact audit chain.
    let v = env.run(&["audit", "verify"]).await;
    let text = v.ok().to_string();
    assert!(text.contains(&org) && text.contains(&default_org), "{text}");

    let stopped = server.stop().await;
    assert_eq!(stopped.status.code(), Some(0), "SIGTERM exit: {stopped:?}");
}

// ---------------------------------------------------------------------------------------
// 3. migrate

async fn migrate_twice_succeeds(env: Env) {
    let first = env.run(&["migrate"]).await;
    assert!(first.ok().contains("up to date"), "{first:?}");
    let second = env.run(&["migrate"]).await;
    assert!(second.ok().contains("up to date"), "{second:?}");
    // The schema works, and migrating a database with data is still a no-op.
    create_org(&env, "Acme", "owner@acme.test").await;
    env.run(&["migrate"]).await.ok();
    let v = env.run(&["audit", "verify"]).await;
    assert!(v.ok().contains("ok"), "{v:?}");
}

// ---------------------------------------------------------------------------------------
// 4. audit verify

async fn audit_verify_detects_an_edited_entry(env: Env) {
    let org = create_org(&env, "Acme", "owner@acme.test").await;
    create_user(&env, &org, "dev@acme.test", "admin").await.ok();
    let v = env.run(&["audit", "verify"]).await;
    let text = v.ok();
    assert!(text.contains(&org) && text.contains("ok"), "{text}");

    let first = env
        .sql_text("SELECT id FROM audit_events WHERE seq = 1")
        .await;
    let n = env
        .sql(&["UPDATE audit_events SET action = 'x' WHERE seq = 1"])
        .await;
    assert_eq!(n, vec![1]);

    for args in [
        &["audit", "verify"][..],
        &["audit", "verify", "--org", org.as_str()][..],
    ] {
        let out = env.run(args).await;
        let text = verify_failed(&out);
        assert!(text.contains(&org), "should name the organization:\n{text}");
        assert!(
            text.contains(&first),
            "should name the edited entry {first}:\n{text}"
        );
        assert!(text.contains("entry 1"), "{text}");
    }
}

async fn audit_verify_detects_a_deleted_newest_entry(env: Env) {
    let org = create_org(&env, "Acme", "owner@acme.test").await;
    create_user(&env, &org, "dev@acme.test", "admin").await.ok();
    env.run(&["audit", "verify"]).await.ok();

    let newest = env
        .sql_text("SELECT CAST(MAX(seq) AS TEXT) FROM audit_events")
        .await;
    let n = env
        .sql(&["DELETE FROM audit_events WHERE seq = (SELECT MAX(seq) FROM audit_events)"])
        .await;
    assert_eq!(n, vec![1]);

    let out = env.run(&["audit", "verify"]).await;
    let text = verify_failed(&out);
    assert!(text.contains(&org), "should name the organization:\n{text}");
    assert!(
        text.contains(&format!("entry {newest}")),
        "should name the missing entry {newest}:\n{text}"
    );
}

async fn audit_verify_detects_a_deleted_middle_entry(env: Env) {
    let org = create_org(&env, "Acme", "owner@acme.test").await;
    create_user(&env, &org, "dev@acme.test", "admin").await.ok();
    let n = env.sql(&["DELETE FROM audit_events WHERE seq = 2"]).await;
    assert_eq!(n, vec![1]);
    let out = env.run(&["audit", "verify"]).await;
    let text = verify_failed(&out);
    assert!(text.contains(&org), "{text}");
    assert!(text.contains("entry 2"), "should name entry 2:\n{text}");
}

/// Deleting the newest entries and rewriting `audit_heads` to the new end keeps the
/// hash chain consistent; the head's MAC (keyed from the master key) catches it.
async fn audit_verify_detects_truncation_with_a_rewritten_head(env: Env) {
    let org = create_org(&env, "Acme", "owner@acme.test").await;
    create_user(&env, &org, "dev@acme.test", "admin").await.ok();
    let v = env.run(&["audit", "verify"]).await;
    let text = v.ok().to_string();
    assert!(
        text.contains("ok") && !text.contains("not authenticated"),
        "{text}"
    );
    let newest: i64 = env
        .sql_text(&format!(
            "SELECT CAST(MAX(seq) AS TEXT) FROM audit_events WHERE org_id = '{org}'"
        ))
        .await
        .parse()
        .unwrap();
    let n = env
        .sql(&[
            &format!("DELETE FROM audit_events WHERE org_id = '{org}' AND seq = {newest}"),
            &format!(
                "UPDATE audit_heads SET seq = {prev}, hash = (SELECT hash FROM audit_events \
                 WHERE org_id = '{org}' AND seq = {prev}) WHERE org_id = '{org}'",
                prev = newest - 1
            ),
        ])
        .await;
    assert_eq!(n, vec![1, 1]);
    let out = env.run(&["audit", "verify"]).await;
    let text = verify_failed(&out);
    assert!(text.contains(&org), "should name the organization:\n{text}");
    assert!(
        text.contains("head not authenticated") && text.contains("deleted"),
        "should say the head's MAC failed:\n{text}"
    );
}

// ---------------------------------------------------------------------------------------
// 5. bad input: one line on stderr, non-zero exit, no panic

/// `keyhaven --data-dir <dir>` with this environment's database URL (on PostgreSQL).
fn cmd_with_data_dir(env: &Env, dir: &std::path::Path) -> tokio::process::Command {
    let mut c = keyhaven(env.root.path());
    c.arg("--data-dir").arg(dir);
    if env.kind == Kind::Postgres {
        c.env("KEYHAVEN_DATABASE_URL", &env.db_url);
    }
    c
}

async fn unwritable_data_dir_is_one_clear_line(env: Env) {
    let file = env.root.path().join("not-a-dir");
    std::fs::write(&file, b"just a file").unwrap();
    let bad = file.join("data");
    let bad_s = bad.display().to_string();

    let mut c = cmd_with_data_dir(&env, &bad);
    c.arg("migrate");
    run(c).await.fails_cleanly(&[&bad_s]);

    let mut c = cmd_with_data_dir(&env, &bad);
    c.args([
        "admin",
        "create-org",
        "--name",
        "Acme",
        "--admin-email",
        "owner@acme.test",
        "--admin-password",
        GOOD_PASSWORD,
    ]);
    run(c).await.fails_cleanly(&[&bad_s]);

    let mut c = cmd_with_data_dir(&env, &bad);
    c.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()));
    run(c).await.fails_cleanly(&[&bad_s]);

    assert_eq!(std::fs::read(&file).unwrap(), b"just a file");
}

async fn malformed_or_unknown_org_is_one_clear_line(env: Env) {
    create_org(&env, "Acme", "owner@acme.test").await;
    for bad in [
        "nope",
        "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "0123456789abcdefghjkmnpqrsz",
    ] {
        env.run(&[
            "admin",
            "create-user",
            "--org",
            bad,
            "--email",
            "x@acme.test",
            "--password",
            GOOD_PASSWORD,
        ])
        .await
        .fails_cleanly(&["--org"]);
        env.run(&["admin", "create-key", "--org", bad, "--name", "ci"])
            .await
            .fails_cleanly(&["--org"]);
        env.run(&["audit", "verify", "--org", bad])
            .await
            .fails_cleanly(&["--org"]);
    }
    // Well-formed, but no such organization.
    let missing = "00000000000000000000000000";
    env.run(&[
        "admin",
        "create-user",
        "--org",
        missing,
        "--email",
        "x@acme.test",
        "--password",
        GOOD_PASSWORD,
    ])
    .await
    .fails_cleanly(&[missing]);
    env.run(&["audit", "verify", "--org", missing])
        .await
        .fails_cleanly(&[missing]);
}

async fn too_short_password_is_one_clear_line(env: Env) {
    env.run(&[
        "admin",
        "create-org",
        "--name",
        "Acme",
        "--admin-email",
        "owner@acme.test",
        "--admin-password",
        "short",
    ])
    .await
    .fails_cleanly(&["password", "12"]);
    // Nothing was created: the organization can still be made.
    let org = create_org(&env, "Acme", "owner@acme.test").await;
    env.run(&[
        "admin",
        "create-user",
        "--org",
        &org,
        "--email",
        "dev@acme.test",
        "--password",
        "elevenchars",
        "--role",
        "admin",
    ])
    .await
    .fails_cleanly(&["password", "12"]);
    create_user(&env, &org, "dev@acme.test", "admin").await.ok();
}

async fn duplicate_email_is_one_clear_line(env: Env) {
    let org = create_org(&env, "Acme", "owner@acme.test").await;
    create_user(&env, &org, "dev@acme.test", "admin").await.ok();
    create_user(&env, &org, "dev@acme.test", "admin")
        .await
        .fails_cleanly(&["email"]);
    create_user(&env, &org, "DEV@Acme.test", "read-only")
        .await
        .fails_cleanly(&["email"]);
    create_user(&env, &org, "owner@acme.test", "admin")
        .await
        .fails_cleanly(&["email"]);
    // Emails are unique across organizations too (sign-in is by email alone).
    env.run(&[
        "admin",
        "create-org",
        "--name",
        "Other",
        "--admin-email",
        "dev@acme.test",
        "--admin-password",
        GOOD_PASSWORD,
    ])
    .await
    .fails_cleanly(&["email"]);
    // The failed create-org left no half-made organization behind.
    let v = env.run(&["audit", "verify"]).await;
    let text = v.ok();
    assert_eq!(text.lines().count(), 1, "one organization only:\n{text}");
}

async fn unknown_role_is_one_clear_line(env: Env) {
    let org = create_org(&env, "Acme", "owner@acme.test").await;
    create_user(&env, &org, "dev@acme.test", "superman")
        .await
        .fails_cleanly(&["superman"]);
    env.run(&[
        "admin",
        "create-key",
        "--org",
        &org,
        "--name",
        "ci",
        "--role",
        "superman",
    ])
    .await
    .fails_cleanly(&["superman"]);
    // Nothing was created by the failure.
    create_user(&env, &org, "dev@acme.test", "admin").await.ok();
}

async fn invalid_listen_address_is_one_clear_line(env: Env) {
    for bad in [
        "nope",
        "127.0.0.1",
        "127.0.0.1:99999",
        "http://127.0.0.1:8080",
    ] {
        let mut c = env.cmd();
        c.args(["serve", "--listen", bad]);
        run(c).await.fails_cleanly(&["listen", bad]);
        let mut c = env.cmd();
        c.arg("serve").env("KEYHAVEN_LISTEN", bad);
        run(c).await.fails_cleanly(&["listen", bad]);
    }
}

async fn listen_address_in_use_is_one_clear_line_and_loses_nothing(env: Env) {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut c = env.cmd();
    c.args(["serve", "--listen", &addr])
        .env("KEYHAVEN_MASTER_KEY", SHARED_MASTER_KEY);
    run(c).await.fails_cleanly(&[&addr]);
    drop(taken);
    // The failed start must not have used up the one-time bootstrap: a real first
    // start still creates the admin and prints its password.
    let server = env.serve(&[]).await;
    let out = server.stdout();
    let password = field(&out, "Password:").unwrap_or_else(|| panic!("no password:\n{out}"));
    sign_in_ok(&server.base, "admin@localhost", &password).await;
    let stopped = server.stop().await;
    assert_eq!(stopped.status.code(), Some(0), "SIGTERM exit: {stopped:?}");
}

// ---------------------------------------------------------------------------------------
// Settings errors that need no database

#[tokio::test]
async fn unsupported_database_url_is_one_clear_line() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    for args in [
        &["migrate"][..],
        &["audit", "verify"][..],
        &[
            "admin",
            "create-org",
            "--name",
            "Acme",
            "--admin-email",
            "owner@acme.test",
            "--admin-password",
            GOOD_PASSWORD,
        ][..],
    ] {
        let mut c = keyhaven(root.path());
        c.arg("--data-dir")
            .arg(&data)
            .env("KEYHAVEN_DATABASE_URL", "mysql://x")
            .args(args);
        run(c).await.fails_cleanly(&["database URL"]);
    }
    let mut c = keyhaven(root.path());
    c.arg("--data-dir")
        .arg(&data)
        .args(["--database-url", "mysql://x", "serve", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()));
    run(c).await.fails_cleanly(&["database URL"]);
}

#[tokio::test]
async fn unreachable_postgres_is_one_clear_line() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let url = "postgres://postgres@127.0.0.1:1/x";
    let mut c = keyhaven(root.path());
    c.arg("--data-dir")
        .arg(&data)
        .env("KEYHAVEN_DATABASE_URL", url)
        .arg("migrate");
    run(c).await.fails_cleanly(&["database"]);
    let mut c = keyhaven(root.path());
    c.arg("--data-dir")
        .arg(&data)
        .args(["--database-url", url, "serve", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .env("KEYHAVEN_MASTER_KEY", SHARED_MASTER_KEY);
    run(c).await.fails_cleanly(&["database"]);
}

// ---------------------------------------------------------------------------------------
// Passwords off the command line, the default key owner, the master-key warning

async fn passwords_from_environment_or_stdin(env: Env) {
    let server = env.serve(&[]).await;
    let mut c = env.cmd();
    c.args([
        "admin",
        "create-org",
        "--name",
        "From env",
        "--admin-email",
        "env@example.com",
    ])
    .env("KEYHAVEN_ADMIN_PASSWORD", GOOD_PASSWORD);
    let org = run(c).await.ok().to_string();
    assert!(id_re().is_match(&org), "{org:?}");
    sign_in_ok(&server.base, "env@example.com", GOOD_PASSWORD).await;

    let piped = "a password that was piped in";
    let out = env
        .run_with_stdin(
            &[
                "admin",
                "create-org",
                "--name",
                "From stdin",
                "--admin-email",
                "stdin@example.com",
                "--password-stdin",
            ],
            &format!("{piped}\n"),
        )
        .await;
    assert!(id_re().is_match(out.ok()), "{}", out.stdout);
    sign_in_ok(&server.base, "stdin@example.com", piped).await;

    let mut c = env.cmd();
    c.args([
        "admin",
        "create-user",
        "--org",
        &org,
        "--email",
        "user-env@example.com",
        "--role",
        "read-only",
    ])
    .env("KEYHAVEN_USER_PASSWORD", GOOD_PASSWORD);
    run(c).await.ok();
    sign_in_ok(&server.base, "user-env@example.com", GOOD_PASSWORD).await;
    let out = env
        .run_with_stdin(
            &[
                "admin",
                "create-user",
                "--org",
                &org,
                "--email",
                "user-stdin@example.com",
                "--role",
                "read-only",
                "--password-stdin",
            ],
            &format!("{piped}\r\n"),
        )
        .await;
    out.ok();
    sign_in_ok(&server.base, "user-stdin@example.com", piped).await;

    // No password anywhere, or an empty one on stdin: one clear line, nothing made.
    env.run(&[
        "admin",
        "create-org",
        "--name",
        "None",
        "--admin-email",
        "none@example.com",
    ])
    .await
    .fails_cleanly(&["password", "KEYHAVEN_ADMIN_PASSWORD", "--password-stdin"]);
    env.run(&[
        "admin",
        "create-user",
        "--org",
        &org,
        "--email",
        "none@example.com",
    ])
    .await
    .fails_cleanly(&["password", "KEYHAVEN_USER_PASSWORD"]);
    env.run_with_stdin(
        &[
            "admin",
            "create-user",
            "--org",
            &org,
            "--email",
            "none@example.com",
            "--password-stdin",
        ],
        "",
    )
    .await
    .fails_cleanly(&["password"]);
    assert_eq!(
        sign_in(&server.base, "none@example.com", GOOD_PASSWORD)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    server.stop().await;
}

async fn create_key_defaults_to_the_oldest_super_admin(env: Env) {
    let server = env.serve(&[]).await;
    let org = create_org(&env, "Owners", "first@owners.test").await;
    for email in ["second@owners.test", "third@owners.test"] {
        create_user(&env, &org, email, "super-admin").await.ok();
    }
    let key = env
        .run(&[
            "admin",
            "create-key",
            "--org",
            &org,
            "--name",
            "default-owner",
            "--role",
            "super-admin",
        ])
        .await
        .ok()
        .to_string();
    let first = sign_in_ok(&server.base, "first@owners.test", GOOD_PASSWORD).await;
    let res = client()
        .get(format!(
            "{}/v1/organizations/{org}/api-keys?q=default-owner",
            server.base
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"][0]["owner"]["type"], "user", "{body}");
    assert_eq!(
        body["data"][0]["owner"]["id"], first["principal"]["id"],
        "{body}"
    );
    server.stop().await;
}

async fn serve_warns_when_nodes_may_disagree_on_the_master_key(env: Env) {
    let stopped = env.serve(&[]).await.stop().await;
    // Only a database shared by several nodes needs one key configured everywhere.
    assert_eq!(
        stopped.stderr.contains("KEYHAVEN_MASTER_KEY"),
        env.kind == Kind::Postgres,
        "{}",
        stopped.stderr
    );
    if env.kind == Kind::Postgres {
        // The same key, now configured: no warning.
        let key = std::fs::read_to_string(env.data_dir.join("master.key")).unwrap();
        let stopped = env
            .serve(&[("KEYHAVEN_MASTER_KEY", key.trim())])
            .await
            .stop()
            .await;
        assert!(
            !stopped.stderr.contains("KEYHAVEN_MASTER_KEY"),
            "{}",
            stopped.stderr
        );
    }
}

async fn reset_password_lets_a_locked_out_admin_back_in(env: Env) {
    let server = env.serve(&[]).await;
    let (status, _) = sign_in(&server.base, "admin@localhost", "a new password of mine").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // From standard input.
    let mut c = env.cmd();
    c.args([
        "admin",
        "reset-password",
        "--email",
        "admin@localhost",
        "--password-stdin",
    ]);
    c.stdin(std::process::Stdio::piped());
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"a new password of mine\n").await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("admin@localhost"));
    sign_in_ok(&server.base, "admin@localhost", "a new password of mine").await;
    // From the environment; the change is audited as keyhaven admin's.
    let out = run({
        let mut c = env.cmd();
        c.args(["admin", "reset-password", "--email", "admin@localhost"])
            .env("KEYHAVEN_USER_PASSWORD", "yet another password 2");
        c
    })
    .await;
    out.ok();
    sign_in_ok(&server.base, "admin@localhost", "yet another password 2").await;
    let audited = env
        .sql_text("SELECT CAST(COUNT(*) AS TEXT) FROM audit_events WHERE action = 'user.reset_password' AND actor_name = 'keyhaven admin'")
        .await;
    assert_eq!(audited.trim(), "2", "audited resets");
    // An unknown email and a short password are one clear line each.
    let out = run({
        let mut c = env.cmd();
        c.args(["admin", "reset-password", "--email", "nobody@localhost"])
            .env("KEYHAVEN_USER_PASSWORD", "long enough password");
        c
    })
    .await;
    out.fails_cleanly(&["no user nobody@localhost"]);
    let out = run({
        let mut c = env.cmd();
        c.args(["admin", "reset-password", "--email", "admin@localhost"])
            .env("KEYHAVEN_USER_PASSWORD", "short");
        c
    })
    .await;
    out.fails_cleanly(&["12 characters"]);
}

/// Issue 14: each command's help lists its own flags — the server's settings under
/// `serve`, not under `admin`.
#[tokio::test]
async fn help_lists_each_commands_own_flags() {
    let root = tempfile::tempdir().unwrap();
    let mut c = keyhaven(root.path());
    c.args(["admin", "--help"]);
    let admin = run(c).await;
    let text = admin.ok().to_string();
    assert!(
        text.contains("--database-url") && text.contains("import-keys"),
        "{text}"
    );
    for serve_only in [
        "--listen",
        "--smtp-url",
        "--bootstrap-admin-password",
        "--analytics-retention",
    ] {
        assert!(
            !text.contains(serve_only),
            "{serve_only} in admin --help:\n{text}"
        );
    }
    let mut c = keyhaven(root.path());
    c.args(["serve", "--help"]);
    let serve = run(c).await;
    let text = serve.ok().to_string();
    for flag in ["--listen", "--smtp-url", "--trusted-proxies", "--data-dir"] {
        assert!(
            text.contains(flag),
            "{flag} missing from serve --help:\n{text}"
        );
    }
}
