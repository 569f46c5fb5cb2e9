//! Expiry notices against a real SMTP server, on SQLite and PostgreSQL.
//!
//! Each test starts Python's `aiosmtpd` as a child process on a free port (the
//! interpreter is `KEYHAVEN_TEST_PYTHON`, default `python3`); the server parses every
//! message it accepts and writes it as a JSON file that the test reads. Without aiosmtpd
//! the SMTP tests print a loud SKIPPED line and pass — except under `CI=true`, where they
//! fail. The jobs are driven one round at a time (`Jobs::run_once`) and time is moved
//! with the injected clock; keys are created over HTTP by a signed-in portal user, who is
//! the author the notices go to.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::{TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};
use chrono::Duration;
use keyhaven_core::id::Id;
use keyhaven_core::time::{rfc3339, Clock, Timestamp};
use keyhaven_service::jobs::{self, mail::Mailer, Jobs};
use keyhaven_service::Service;
use keyhaven_store::{Notice, NoticeStatus, NoticeThreshold};
use serde::Deserialize;
use serde_json::{json, Value};

const PUBLIC_URL: &str = "https://keyhaven.example.com";
const MAIL_FROM: &str = "keyhaven@example.com";

/// A minimal SMTP server: aiosmtpd with a handler that decodes each message (headers and
/// transfer encoding, as a mail client would) and writes it atomically as
/// `<nanoseconds>.json` into the directory given as the second argument.
const SMTP_SERVER: &str = r#"
import asyncio, email, email.policy, json, os, sys, time
from aiosmtpd.smtp import SMTP

port, out = int(sys.argv[1]), sys.argv[2]

class Handler:
    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "from": str(msg["From"]),
            "to": str(msg["To"]),
            "subject": str(msg["Subject"]),
            "body": msg.get_content(),
        }
        name = "%020d" % time.time_ns()
        tmp = os.path.join(out, "." + name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(out, name + ".json"))
        return "250 Message accepted"

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Handler(), hostname="smtp.test"), "127.0.0.1", port)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"#;

/// One message as the SMTP server received it.
#[derive(Debug, Clone, Deserialize)]
struct Mail {
    rcpt_tos: Vec<String>,
    from: String,
    to: String,
    subject: String,
    body: String,
}

/// The aiosmtpd child process and the directory it delivers into. Killed on drop.
struct SmtpServer {
    python: String,
    port: u16,
    mailbox: tempfile::TempDir,
    logs: tempfile::TempDir,
    child: Option<Child>,
    seen: usize,
}

fn python() -> String {
    std::env::var("KEYHAVEN_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl SmtpServer {
    /// A running server, or `None` (after a loud message) when aiosmtpd is not
    /// installed outside CI.
    fn start(test: &str) -> Option<SmtpServer> {
        let python = python();
        let importable = Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !importable {
            keyhaven_store::testing::skip(
                "expiry-notice (SMTP)",
                test,
                &format!("aiosmtpd is not installed for {python}"),
                "python3 -m pip install aiosmtpd, or set KEYHAVEN_TEST_PYTHON",
            );
            return None;
        }
        let mut s = SmtpServer {
            python,
            port: free_port(),
            mailbox: tempfile::tempdir().unwrap(),
            logs: tempfile::tempdir().unwrap(),
            child: None,
            seen: 0,
        };
        s.run();
        Some(s)
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Starts the process on `self.port` and waits until the port accepts connections.
    fn run(&mut self) {
        assert!(self.child.is_none(), "the SMTP server is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(&self.python)
            .arg("-c")
            .arg(SMTP_SERVER)
            .arg(self.port.to_string())
            .arg(self.mailbox.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.python));
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        for _ in 0..200 {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "the SMTP server exited ({status}) before accepting connections:\n{}",
                    self.log()
                );
            }
            if TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "the SMTP server did not accept connections on port {}:\n{}",
            self.port,
            self.log()
        );
    }

    /// Kills the process (the port then refuses connections).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log_path(&self) -> PathBuf {
        self.logs.path().join("smtp.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Every message received so far, in order of arrival.
    fn all_mails(&self) -> Vec<Mail> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.mailbox.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }

    /// The messages received since the last call. lettre's `send` returns only after
    /// the server answered 250 to the message, which the handler does after writing the
    /// file, so everything a finished `run_once` sent is already here.
    fn new_mails(&mut self) -> Vec<Mail> {
        let all = self.all_mails();
        let fresh = all[self.seen..].to_vec();
        self.seen = all.len();
        fresh
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The jobs of one node, sending mail over `smtp` (or into `outbox` when `None`).
fn jobs_for(service: &Service, smtp: Option<&str>, outbox: &Path) -> Jobs {
    Jobs {
        service: service.clone(),
        mailer: Mailer::new(smtp, outbox.to_path_buf()).unwrap(),
        http: jobs::webhooks::client(),
        public_url: PUBLIC_URL.into(),
        mail_from: MAIL_FROM.into(),
    }
}

/// Another node (or the same node after a restart): its own connection pool and
/// service over the same database, the same clock and master key.
async fn other_node(app: &TestApp) -> Service {
    let store = keyhaven_store::connect(&app.db.url, false).await.unwrap();
    Service::new(
        store,
        app.clock.clone(),
        app.state.config.master_key.clone(),
    )
}

async fn round(jobs: &Jobs) {
    jobs.run_once().await.expect("a job round succeeds");
}

/// The organization admin (a portal user) talking to the HTTP API through a console
/// session. Sessions expire after 12 idle hours and the tests move the clock by days, so
/// each request signs in afresh.
struct Portal<'a> {
    app: &'a TestApp,
    org: String,
}

impl<'a> Portal<'a> {
    fn new(app: &'a TestApp) -> Portal<'a> {
        Portal {
            app,
            org: format!("/v1/organizations/{}", app.org_id),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let (client, csrf) = self.app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        let mut r = client
            .request(method, self.app.url(&format!("{}{}", self.org, path)))
            .header("x-csrf-token", csrf);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.unwrap();
        let s = res.status().as_u16();
        (s, res.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (s, v) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert!((200..300).contains(&s), "POST {path}: {s} {v}");
        v
    }

    async fn get(&self, path: &str) -> Value {
        let (s, v) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }

    /// Creates a key expiring at `expires_at`; returns its id and its expiry as the API
    /// renders it.
    async fn create_key(&self, name: &str, expires_at: Timestamp) -> (String, String) {
        let v = self
            .post(
                "/api-keys",
                json!({"name": name, "expires_at": rfc3339(&expires_at)}),
            )
            .await;
        assert_eq!(v["created_by"]["type"], "user", "{v}");
        (
            v["id"].as_str().unwrap().to_string(),
            v["expires_at"].as_str().unwrap().to_string(),
        )
    }

    async fn regenerate(&self, id: &str, expires_at: Timestamp) -> String {
        let v = self
            .post(
                &format!("/api-keys/{id}/regenerate"),
                json!({"expires_at": rfc3339(&expires_at)}),
            )
            .await;
        v["expires_at"].as_str().unwrap().to_string()
    }

    async fn revoke(&self, id: &str) {
        self.post(&format!("/api-keys/{id}/revoke"), json!({}))
            .await;
    }
}

async fn notices_of(service: &Service, key_id: &str) -> Vec<Notice> {
    let mut tx = service.store().read().await.unwrap();
    tx.notices_of(&Id::from_trusted(key_id.to_string()))
        .await
        .unwrap()
}

fn link(key_id: &str) -> String {
    format!("{PUBLIC_URL}/api-keys/{key_id}")
}

/// Asserts that `mails` is exactly one notice about `key` (`name`, expiring at
/// `expires`) whose subject contains `what`, addressed to the author.
#[track_caller]
fn assert_one_notice(mails: &[Mail], key: &str, name: &str, expires: &str, what: &str) {
    assert_eq!(
        mails.len(),
        1,
        "expected exactly one {what:?} notice for {name}, got {mails:#?}"
    );
    let m = &mails[0];
    assert_eq!(m.rcpt_tos, vec![ADMIN_EMAIL.to_string()], "{m:#?}");
    assert!(m.to.contains(ADMIN_EMAIL), "{m:#?}");
    assert!(m.from.contains(MAIL_FROM), "{m:#?}");
    assert!(m.subject.contains(name), "subject names the key: {m:#?}");
    assert!(m.subject.contains(what), "subject says {what:?}: {m:#?}");
    assert!(m.body.contains(name), "body names the key: {m:#?}");
    assert!(
        m.body.contains(expires),
        "body names the expiry {expires}: {m:#?}"
    );
    assert!(m.body.contains(&link(key)), "body links to the key: {m:#?}");
}

#[track_caller]
fn assert_no_mail(mails: &[Mail], when: &str) {
    assert!(mails.is_empty(), "no mail expected {when}, got {mails:#?}");
}

fn statuses(notices: &[Notice]) -> Vec<(String, String)> {
    let mut v: Vec<_> = notices
        .iter()
        .map(|n| {
            (
                n.threshold.as_str().to_string(),
                n.status.as_str().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = p
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    v.sort();
    v
}

async fn thirty_seven_and_one_day_then_expired_each_exactly_once(app: TestApp) {
    let Some(mut smtp) = SmtpServer::start("thresholds") else {
        return;
    };
    let outbox = tempfile::tempdir().unwrap();
    let jobs = jobs_for(&app.state.service, Some(&smtp.url()), outbox.path());
    let portal = Portal::new(&app);
    let (id, exp) = portal
        .create_key("billing-export", app.clock.now() + Duration::days(40))
        .await;
    assert!(exp.starts_with("2027-01-01T12:00:00"), "{exp}");

    round(&jobs).await;
    assert_no_mail(&smtp.new_mails(), "40 days before expiry");
    app.clock.advance(Duration::days(9));
    round(&jobs).await;
    assert_no_mail(&smtp.new_mails(), "31 days before expiry");
    app.clock.advance(Duration::days(1) - Duration::seconds(1));
    round(&jobs).await;
    assert_no_mail(&smtp.new_mails(), "one second before the 30-day mark");

    app.clock.advance(Duration::seconds(1));
    round(&jobs).await;
    assert_one_notice(&smtp.new_mails(), &id, "billing-export", &exp, "30 days");
    round(&jobs).await;
    round(&jobs).await;
    assert_no_mail(
        &smtp.new_mails(),
        "on repeated rounds after the 30-day notice",
    );
    app.clock.advance(Duration::days(10));
    round(&jobs).await;
    assert_no_mail(&smtp.new_mails(), "20 days before expiry");

    app.clock.advance(Duration::days(13));
    round(&jobs).await;
    assert_one_notice(&smtp.new_mails(), &id, "billing-export", &exp, "7 days");
    round(&jobs).await;
    assert_no_mail(
        &smtp.new_mails(),
        "on a repeated round after the 7-day notice",
    );

    app.clock.advance(Duration::days(6));
    round(&jobs).await;
    let mails = smtp.new_mails();
    assert_one_notice(&mails, &id, "billing-export", &exp, "1 day");
    assert!(!mails[0].subject.contains("days"), "{mails:#?}");
    round(&jobs).await;
    app.clock.advance(Duration::hours(23));
    round(&jobs).await;
    assert_no_mail(&smtp.new_mails(), "between the 1-day notice and expiry");

    app.clock.advance(Duration::hours(1));
    round(&jobs).await;
    assert_one_notice(&smtp.new_mails(), &id, "billing-export", &exp, "expired");
    for _ in 0..3 {
        round(&jobs).await;
        app.clock.advance(Duration::days(1));
    }
    round(&jobs).await;
    assert_no_mail(&smtp.new_mails(), "after the expired notice");
    assert_eq!(smtp.all_mails().len(), 4);

    let notices = notices_of(&app.state.service, &id).await;
    assert_eq!(
        statuses(&notices),
        pairs(&[
            ("30d", "sent"),
            ("7d", "sent"),
            ("1d", "sent"),
            ("expired", "sent")
        ])
    );
    assert!(notices
        .iter()
        .all(|n| n.attempts == 1 && n.sent_at.is_some()));
}
both_backends!(thirty_seven_and_one_day_then_expired_each_exactly_once);

async fn a_key_created_inside_the_last_day_gets_only_the_nearest_notice(app: TestApp) {
    let Some(mut smtp) = SmtpServer::start("created inside a window") else {
        return;
    };
    let outbox = tempfile::tempdir().unwrap();
    let jobs = jobs_for(&app.state.service, Some(&smtp.url()), outbox.path());
    let portal = Portal::new(&app);
    let (id, exp) = portal
        .create_key("late-key", app.clock.now() + Duration::hours(20))
        .await;

    round(&jobs).await;
    round(&jobs).await;
    assert_one_notice(&smtp.new_mails(), &id, "late-key", &exp, "1 day");
    assert_eq!(
        statuses(&notices_of(&app.state.service, &id).await),
        pairs(&[("30d", "skipped"), ("7d", "skipped"), ("1d", "sent")])
    );

    app.clock.advance(Duration::hours(20));
    round(&jobs).await;
    round(&jobs).await;
    assert_one_notice(&smtp.new_mails(), &id, "late-key", &exp, "expired");
    assert_eq!(smtp.all_mails().len(), 2, "{:#?}", smtp.all_mails());
}
both_backends!(a_key_created_inside_the_last_day_gets_only_the_nearest_notice);

async fn a_late_first_notice_states_the_real_time_left(app: TestApp) {
    let Some(mut smtp) = SmtpServer::start("late first notice") else {
        return;
    };
    let outbox = tempfile::tempdir().unwrap();
    let jobs = jobs_for(&app.state.service, Some(&smtp.url()), outbox.path());
    let portal = Portal::new(&app);
    // Created between the 30- and 7-day marks: the nearest due notice is the 30-day one,
    // sent once now; the 7-day one follows at its time.
    let (id, exp) = portal
        .create_key("ten-days", app.clock.now() + Duration::days(10))
        .await;
    round(&jobs).await;
    round(&jobs).await;
    let mails = smtp.new_mails();
    assert_one_notice(&mails, &id, "ten-days", &exp, "ten-days");
    assert!(
        !mails[0].subject.contains("30 days") && !mails[0].body.contains("in 30 days"),
        "a key that expires in 10 days must not be announced as expiring in 30 days: {mails:#?}"
    );
    app.clock.advance(Duration::days(3));
    round(&jobs).await;
    assert_one_notice(&smtp.new_mails(), &id, "ten-days", &exp, "7 days");
}
both_backends!(a_late_first_notice_states_the_real_time_left);

async fn regenerating_with_a_new_expiry_starts_a_new_series(app: TestApp) {
    let Some(mut smtp) = SmtpServer::start("regenerate") else {
        return;
    };
    let outbox = tempfile::tempdir().unwrap();
    let jobs = jobs_for(&app.state.service, Some(&smtp.url()), outbox.path());
    let portal = Portal::new(&app);
    let old_date = app.clock.now() + Duration::days(40);
    let (id, exp) = portal.create_key("rotating", old_date).await;
    app.clock.advance(Duration::days(10));
    round(&jobs).await;
    assert_one_notice(&smtp.new_mails(), &id, "rotating", &exp, "30 days");

    // Regenerating with the same date is the same series: no second 30-day notice.
    let same = portal.regenerate(&id, old_date).await;
    assert_eq!(same, exp);
    round(&jobs).await;
    assert_no_mail(&smtp.new_mails(), "after regenerating with the same expiry");

    let new_exp = portal
        .regenerate(&id, app.clock.now() + Duration::days(60))
        .await;
    assert_ne!(new_exp, exp);
    round(&jobs).await;
    assert_no_mail(&smtp.new_mails(), "60 days before the new expiry");
    app.clock.advance(Duration::days(23));
    round(&jobs).await;
    assert_no_mail(
        &smtp.new_mails(),
        "at the old date's 7-day mark (the old series is over)",
    );

    // The old expiry date passes at the same moment the new date is 30 days away.
    app.clock.advance(Duration::days(7));
    round(&jobs).await;
    let mails = smtp.new_mails();
    assert_one_notice(&mails, &id, "rotating", &new_exp, "30 days");
    assert!(!mails[0].body.contains(&exp), "{mails:#?}");
    round(&jobs).await;
    assert_no_mail(&smtp.new_mails(), "on a repeated round");

    app.clock.advance(Duration::days(23));
    round(&jobs).await;
    assert_one_notice(&smtp.new_mails(), &id, "rotating", &new_exp, "7 days");
    assert_eq!(smtp.all_mails().len(), 3);
}
both_backends!(regenerating_with_a_new_expiry_starts_a_new_series);

async fn a_revoked_key_gets_no_further_notices(app: TestApp) {
    let Some(mut smtp) = SmtpServer::start("revoked") else {
        return;
    };
    let outbox = tempfile::tempdir().unwrap();
    let jobs = jobs_for(&app.state.service, Some(&smtp.url()), outbox.path());
    let portal = Portal::new(&app);
    let (id, exp) = portal
        .create_key("to-revoke", app.clock.now() + Duration::days(40))
        .await;
    app.clock.advance(Duration::days(10));
    round(&jobs).await;
    assert_one_notice(&smtp.new_mails(), &id, "to-revoke", &exp, "30 days");

    portal.revoke(&id).await;
    for days in [23, 6, 1, 1] {
        app.clock.advance(Duration::days(days));
        round(&jobs).await;
        assert_no_mail(&smtp.new_mails(), "for a revoked key");
    }
    assert_eq!(
        statuses(&notices_of(&app.state.service, &id).await),
        pairs(&[("30d", "sent")])
    );
}
both_backends!(a_revoked_key_gets_no_further_notices);

async fn a_pending_notice_is_not_sent_once_the_key_is_revoked_regenerated_or_deleted(app: TestApp) {
    let Some(mut smtp) = SmtpServer::start("changed while pending") else {
        return;
    };
    let outbox = tempfile::tempdir().unwrap();
    let jobs = jobs_for(&app.state.service, Some(&smtp.url()), outbox.path());
    let portal = Portal::new(&app);
    let expires = app.clock.now() + Duration::days(40);
    let (revoked, _) = portal.create_key("revoked-while-pending", expires).await;
    let (regenerated, _) = portal
        .create_key("regenerated-while-pending", expires)
        .await;
    let (deleted, _) = portal.create_key("deleted-while-pending", expires).await;
    // The mail server is down when the 30-day notices fall due: they wait for a retry.
    smtp.stop();
    app.clock.advance(Duration::days(10));
    round(&jobs).await;
    for id in [&revoked, &regenerated, &deleted] {
        let n = notices_of(&app.state.service, id).await;
        assert_eq!(statuses(&n), pairs(&[("30d", "pending")]));
    }

    portal.revoke(&revoked).await;
    let new_exp = portal
        .regenerate(&regenerated, app.clock.now() + Duration::days(60))
        .await;
    let (s, v) = portal
        .call(
            reqwest::Method::DELETE,
            &format!("/api-keys/{deleted}"),
            None,
        )
        .await;
    assert_eq!(s, 204, "{v}");
    smtp.run();
    app.clock.advance(Duration::hours(1));
    round(&jobs).await;
    round(&jobs).await;
    let mails = smtp.new_mails();
    let about = |id: &str| -> Vec<Mail> {
        mails
            .iter()
            .filter(|m| m.body.contains(&link(id)))
            .cloned()
            .collect()
    };
    let (r, g, d) = (about(&revoked), about(&regenerated), about(&deleted));
    assert!(
        r.is_empty() && g.is_empty() && d.is_empty(),
        "a notice that waited for a retry must not go out once its key was revoked \
         (got {r:#?}), regenerated with a new expiry {new_exp} (got {g:#?}, which names the \
         old date) or deleted (got {d:#?})"
    );
}
both_backends!(a_pending_notice_is_not_sent_once_the_key_is_revoked_regenerated_or_deleted);

async fn keys_without_a_portal_author_get_no_mail(app: TestApp) {
    let Some(mut smtp) = SmtpServer::start("no author") else {
        return;
    };
    let outbox = tempfile::tempdir().unwrap();
    let jobs = jobs_for(&app.state.service, Some(&smtp.url()), outbox.path());
    // A key created by another key.
    let admin_key = app.admin_key(&["super-admin"]).await;
    let res = app
        .http
        .post(app.url(&format!("/v1/organizations/{}/api-keys", app.org_id)))
        .bearer_auth(&admin_key)
        .json(&json!({"name": "by-a-key", "expires_at": rfc3339(&(app.clock.now() + Duration::hours(20)))}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let by_key: Value = res.json().await.unwrap();
    assert_eq!(by_key["created_by"]["type"], "api_key", "{by_key}");
    // A key created by the CLI (the system caller).
    let admin_id = {
        let mut tx = app.db.store.read().await.unwrap();
        tx.user_by_email(ADMIN_EMAIL)
            .await
            .unwrap()
            .unwrap()
            .id
            .to_string()
    };
    let (by_cli, _, _) = app
        .state
        .service
        .create_api_key(
            &keyhaven_service::Caller::system(Id::from_trusted(app.org_id.clone()), "cli"),
            keyhaven_service::api_keys::CreateApiKey {
                name: "by-the-cli".into(),
                expires_at: Some(app.clock.now() + Duration::hours(20)),
                // Owned by the portal user, but authored by the CLI: still no recipient.
                owner: Some(keyhaven_service::api_keys::OwnerRef {
                    kind: keyhaven_core::principal::PrincipalKind::User,
                    id: admin_id,
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    round(&jobs).await;
    app.clock.advance(Duration::days(1));
    round(&jobs).await;
    assert_no_mail(&smtp.new_mails(), "for keys without a human author");
    for id in [by_key["id"].as_str().unwrap(), by_cli.id.as_str()] {
        assert_eq!(
            statuses(&notices_of(&app.state.service, id).await),
            pairs(&[
                ("30d", "skipped"),
                ("7d", "skipped"),
                ("1d", "no_recipient"),
                ("expired", "no_recipient")
            ])
        );
    }
}
both_backends!(keys_without_a_portal_author_get_no_mail);

async fn a_failed_send_is_retried_and_sent_exactly_once(app: TestApp) {
    let Some(mut smtp) = SmtpServer::start("retry") else {
        return;
    };
    let outbox = tempfile::tempdir().unwrap();
    let jobs = jobs_for(&app.state.service, Some(&smtp.url()), outbox.path());
    let portal = Portal::new(&app);
    let (id, exp) = portal
        .create_key("flaky-relay", app.clock.now() + Duration::days(40))
        .await;
    app.clock.advance(Duration::days(10));
    round(&jobs).await;
    assert_one_notice(&smtp.new_mails(), &id, "flaky-relay", &exp, "30 days");

    smtp.stop();
    app.clock.advance(Duration::days(23));
    round(&jobs).await;
    let seven = |ns: Vec<Notice>| {
        ns.into_iter()
            .find(|n| n.threshold.as_str() == "7d")
            .unwrap()
    };
    let n1 = seven(notices_of(&app.state.service, &id).await);
    assert_eq!(n1.status.as_str(), "pending", "{n1:?}");
    assert_eq!(n1.attempts, 1, "{n1:?}");
    assert!(n1.last_error.is_some(), "{n1:?}");
    assert!(n1.sent_at.is_none(), "{n1:?}");
    assert!(n1.next_attempt_at > app.clock.now(), "{n1:?}");

    // Not retried before its time; at its time it fails again (the server is still down)
    // and waits at least as long again.
    round(&jobs).await;
    assert_eq!(seven(notices_of(&app.state.service, &id).await).attempts, 1);
    let first_delay = n1.next_attempt_at - app.clock.now();
    app.clock.advance(first_delay);
    round(&jobs).await;
    let n2 = seven(notices_of(&app.state.service, &id).await);
    assert_eq!((n2.status.as_str(), n2.attempts), ("pending", 2), "{n2:?}");
    assert!(n2.last_error.is_some(), "{n2:?}");
    let second_delay = n2.next_attempt_at - app.clock.now();
    assert!(
        second_delay >= first_delay,
        "{first_delay} then {second_delay}"
    );

    // The server is back, but the retry time has not come.
    smtp.run();
    round(&jobs).await;
    assert_no_mail(&smtp.new_mails(), "before the retry time");
    assert_eq!(seven(notices_of(&app.state.service, &id).await).attempts, 2);

    app.clock.advance(second_delay);
    round(&jobs).await;
    assert_one_notice(&smtp.new_mails(), &id, "flaky-relay", &exp, "7 days");
    let n3 = seven(notices_of(&app.state.service, &id).await);
    assert_eq!((n3.status.as_str(), n3.attempts), ("sent", 3), "{n3:?}");
    assert!(n3.last_error.is_none(), "{n3:?}");
    app.clock.advance(Duration::hours(1));
    round(&jobs).await;
    round(&jobs).await;
    assert_no_mail(&smtp.new_mails(), "after the retried notice was accepted");
}
both_backends!(a_failed_send_is_retried_and_sent_exactly_once);

async fn notices_survive_a_restart(app: TestApp) {
    let Some(mut smtp) = SmtpServer::start("restart") else {
        return;
    };
    let outbox = tempfile::tempdir().unwrap();
    let portal = Portal::new(&app);
    let (id, exp) = portal
        .create_key("long-lived", app.clock.now() + Duration::days(40))
        .await;
    app.clock.advance(Duration::days(10));
    {
        let before = jobs_for(&app.state.service, Some(&smtp.url()), outbox.path());
        round(&before).await;
        assert_one_notice(&smtp.new_mails(), &id, "long-lived", &exp, "30 days");
    }

    // A fresh process over the same database knows the 30-day notice went out.
    let after = jobs_for(&other_node(&app).await, Some(&smtp.url()), outbox.path());
    round(&after).await;
    round(&after).await;
    assert_no_mail(&smtp.new_mails(), "after a restart");

    // A notice pending (the mail server down) when the node stops is sent by the next
    // process once its retry time has come.
    smtp.stop();
    app.clock.advance(Duration::days(23));
    round(&after).await;
    let pending = notices_of(&app.state.service, &id).await;
    assert!(
        pending.iter().any(|n| n.threshold.as_str() == "7d"
            && n.status.as_str() == "pending"
            && n.last_error.is_some()),
        "{pending:?}"
    );
    drop(after);
    smtp.run();
    let again = jobs_for(&other_node(&app).await, Some(&smtp.url()), outbox.path());
    app.clock.advance(Duration::hours(1));
    round(&again).await;
    round(&again).await;
    assert_one_notice(&smtp.new_mails(), &id, "long-lived", &exp, "7 days");

    // A node that claimed a notice and died before sending it: the claim runs out and
    // another node sends it.
    app.clock.advance(Duration::days(6));
    jobs::notices::schedule(&app.state.service).await.unwrap();
    let now = app.clock.now();
    let claimed = {
        let mut tx = app.db.store.begin().await.unwrap();
        let c = tx
            .claim_notices(now, now + Duration::minutes(2), 50, "dead-node")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        c
    };
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    round(&again).await;
    assert_no_mail(&smtp.new_mails(), "while another node holds the claim");
    app.clock.advance(Duration::minutes(3));
    round(&again).await;
    round(&again).await;
    assert_one_notice(&smtp.new_mails(), &id, "long-lived", &exp, "1 day");
    assert_eq!(smtp.all_mails().len(), 3);
}
both_backends!(notices_survive_a_restart);

async fn two_nodes_send_each_notice_once(app: TestApp) {
    let Some(mut smtp) = SmtpServer::start("two nodes") else {
        return;
    };
    let outbox = tempfile::tempdir().unwrap();
    let portal = Portal::new(&app);
    for i in 0..6 {
        portal
            .create_key(&format!("shared-{i}"), app.clock.now() + Duration::days(40))
            .await;
    }
    // Twelve hours behind the others: its notices fall between theirs.
    let (late, _) = portal
        .create_key(
            "shared-late",
            app.clock.now() + Duration::days(40) + Duration::hours(12),
        )
        .await;
    let a = jobs_for(&app.state.service, Some(&smtp.url()), outbox.path());
    let b_service = other_node(&app).await;
    let b = jobs_for(&b_service, Some(&smtp.url()), outbox.path());

    let mut total = 0;
    // (advance, how many keys get a notice, what their subjects say)
    let steps: [(Duration, usize, &[&str]); 7] = [
        (Duration::days(10), 6, &["30 days"]),
        (Duration::hours(12), 1, &["30 days"]),
        (Duration::days(22) + Duration::hours(12), 6, &["7 days"]),
        (Duration::hours(12), 1, &["7 days"]),
        (Duration::days(5) + Duration::hours(12), 6, &["1 day"]),
        (Duration::days(1), 7, &["expired", "1 day"]),
        (Duration::hours(12), 1, &["expired"]),
    ];
    for (advance, expected, what) in steps {
        app.clock.advance(advance);
        for _ in 0..2 {
            let (ra, rb) = tokio::join!(a.run_once(), b.run_once());
            ra.expect("node A's round");
            rb.expect("node B's round");
        }
        let mails = smtp.new_mails();
        assert_eq!(mails.len(), expected, "{what:?}: {mails:#?}");
        let mut ids: Vec<&str> = mails
            .iter()
            .map(|m| {
                assert!(
                    what.iter().any(|w| m.subject.contains(w)),
                    "{what:?}: {m:#?}"
                );
                m.body
                    .lines()
                    .find_map(|l| l.trim().strip_prefix(&format!("{PUBLIC_URL}/api-keys/")))
                    .unwrap()
            })
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(
            ids.len(),
            expected,
            "one mail per key at {what:?}: {mails:#?}"
        );
        total += expected;
    }
    assert_eq!(smtp.all_mails().len(), total);
    let n = notices_of(&app.state.service, &late).await;
    assert_eq!(
        statuses(&n),
        pairs(&[
            ("30d", "sent"),
            ("7d", "sent"),
            ("1d", "sent"),
            ("expired", "sent")
        ]),
        "{n:?}"
    );
}
both_backends!(two_nodes_send_each_notice_once);

async fn without_smtp_notices_are_eml_files_in_the_outbox(app: TestApp) {
    let outbox = tempfile::tempdir().unwrap();
    let dir = outbox.path().join("outbox");
    let jobs = jobs_for(&app.state.service, None, &dir);
    assert!(matches!(jobs.mailer, Mailer::Files(_)));
    let portal = Portal::new(&app);
    let (id, _) = portal
        .create_key("file-mailed", app.clock.now() + Duration::days(30))
        .await;
    round(&jobs).await;
    round(&jobs).await;
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{} was not created: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    let emls: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    assert_eq!(emls.len(), 1, "{files:?}");
    let raw = std::fs::read_to_string(emls[0]).unwrap();
    let unfolded = raw.replace("=\r\n", "").replace("=\n", "");
    assert!(raw.contains(&format!("To: {ADMIN_EMAIL}")), "{raw}");
    assert!(raw.contains(&format!("From: {MAIL_FROM}")), "{raw}");
    assert!(raw.contains("Subject: "), "{raw}");
    assert!(raw.contains("file-mailed"), "{raw}");
    assert!(unfolded.contains(&link(&id)), "{raw}");
    assert_eq!(
        statuses(&notices_of(&app.state.service, &id).await),
        pairs(&[("30d", "sent")])
    );
}
both_backends!(without_smtp_notices_are_eml_files_in_the_outbox);

async fn expiry_events_go_to_subscribed_webhooks(app: TestApp) {
    let outbox = tempfile::tempdir().unwrap();
    let jobs = jobs_for(&app.state.service, None, outbox.path());
    let portal = Portal::new(&app);
    let hook = |events: Value, enabled: bool| json!({"url": "http://127.0.0.1:9/hook", "events": events, "enabled": enabled});
    let subscribed = portal
        .post(
            "/webhooks",
            hook(json!(["api_key.expiring", "api_key.expired"]), true),
        )
        .await;
    let other = portal
        .post("/webhooks", hook(json!(["api_key.revoked"]), true))
        .await;
    let disabled = portal
        .post("/webhooks", hook(json!(["api_key.expiring"]), false))
        .await;
    let deliveries = |w: &Value| {
        let path = format!(
            "/webhooks/{}/deliveries?limit=100",
            w["id"].as_str().unwrap()
        );
        let portal = &portal;
        async move {
            let v = portal.get(&path).await;
            let mut types: Vec<String> = v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["event_type"].as_str().unwrap().to_string())
                .collect();
            types.sort();
            types
        }
    };

    let (_, _) = portal
        .create_key("hooked", app.clock.now() + Duration::days(40))
        .await;
    // A key without a human author still produces the events.
    let admin_key = app.admin_key(&["super-admin"]).await;
    let res = app
        .http
        .post(app.url(&format!("/v1/organizations/{}/api-keys", app.org_id)))
        .bearer_auth(&admin_key)
        .json(&json!({"name": "hooked-by-key", "expires_at": rfc3339(&(app.clock.now() + Duration::days(40)))}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    round(&jobs).await;
    assert!(deliveries(&subscribed).await.is_empty());
    app.clock.advance(Duration::days(10));
    round(&jobs).await;
    round(&jobs).await;
    assert_eq!(
        deliveries(&subscribed).await,
        vec!["api_key.expiring"; 2],
        "one api_key.expiring per key at 30 days"
    );
    for days in [23, 6, 1] {
        app.clock.advance(Duration::days(days));
        round(&jobs).await;
        round(&jobs).await;
    }
    let mut expect = vec!["api_key.expired".to_string(); 2];
    expect.extend(vec!["api_key.expiring".to_string(); 6]);
    assert_eq!(deliveries(&subscribed).await, expect);
    assert!(deliveries(&other).await.is_empty());
    assert!(deliveries(&disabled).await.is_empty());
}
both_backends!(
    expiry_events_go_to_subscribed_webhooks,
    crate::support::local_receivers
);

/// Claims the due notices the way a node does, under `token`.
async fn claim_as(app: &TestApp, token: &str) -> Vec<Notice> {
    let now = app.clock.now();
    let mut tx = app.db.store.begin().await.unwrap();
    let c = tx
        .claim_notices(now, now + Duration::minutes(2), 50, token)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    c
}

async fn a_lapsed_claim_sends_nothing_and_records_nothing(app: TestApp) {
    let Some(mut smtp) = SmtpServer::start("lapsed claim") else {
        return;
    };
    let outbox = tempfile::tempdir().unwrap();
    let portal = Portal::new(&app);
    let mut ids = Vec::new();
    for i in 0..3 {
        let (id, _) = portal
            .create_key(&format!("raced-{i}"), app.clock.now() + Duration::days(40))
            .await;
        ids.push(id);
    }
    let a_service = app.state.service.clone();
    let b_service = other_node(&app).await;
    let a = jobs_for(&a_service, Some(&smtp.url()), outbox.path());
    let b = jobs_for(&b_service, Some(&smtp.url()), outbox.path());
    let resume = |jobs: &Jobs, token: &'static str, claimed: Vec<Notice>| {
        let jobs = jobs.clone();
        async move {
            jobs::notices::send_claimed(
                &jobs.service,
                &jobs.mailer,
                PUBLIC_URL,
                MAIL_FROM,
                token,
                claimed,
            )
            .await
            .unwrap()
        }
    };

    // Node A claims the 30-day notices, then stalls past its lease; node B takes them
    // over and sends them. When A resumes, it sends nothing.
    app.clock.advance(Duration::days(10));
    jobs::notices::schedule(&a_service).await.unwrap();
    let a_claim = claim_as(&app, "node-a").await;
    assert_eq!(a_claim.len(), 3, "{a_claim:?}");
    app.clock.advance(Duration::minutes(3));
    round(&b).await;
    assert_eq!(smtp.new_mails().len(), 3);
    assert_eq!(resume(&a, "node-a", a_claim.clone()).await, 0);
    assert_no_mail(&smtp.new_mails(), "from the node whose claim lapsed");
    // Nor can its stale claim overwrite what B recorded.
    let mut stale = a_claim[0].clone();
    stale.status = NoticeStatus::Pending;
    let mut tx = a_service.store().begin().await.unwrap();
    assert!(!tx.finish_notice(&stale, "node-a").await.unwrap());
    tx.commit().await.unwrap();
    for id in &ids {
        let n = notices_of(&a_service, id).await;
        assert_eq!(statuses(&n), pairs(&[("30d", "sent")]), "{n:?}");
        assert!(n.iter().all(|n| n.attempts == 1), "{n:?}");
    }

    // Both nodes hold a claim on the 7-day notices at once (A's lapsed, B's current):
    // whichever resumes first, each notice is sent exactly once, by B.
    app.clock.advance(Duration::days(23));
    jobs::notices::schedule(&b_service).await.unwrap();
    let a_claim = claim_as(&app, "node-a").await;
    assert_eq!(a_claim.len(), 3);
    app.clock.advance(Duration::minutes(3));
    let b_claim = claim_as(&app, "node-b").await;
    assert_eq!(b_claim.len(), 3);
    let (sent_a, sent_b) =
        tokio::join!(resume(&a, "node-a", a_claim), resume(&b, "node-b", b_claim));
    assert_eq!((sent_a, sent_b), (0, 3));
    let mails = smtp.new_mails();
    assert_eq!(mails.len(), 3, "{mails:#?}");
    assert!(
        mails.iter().all(|m| m.subject.contains("7 days")),
        "{mails:#?}"
    );

    // And two full rounds racing over more notices than one claim holds.
    for i in 0..9 {
        portal
            .create_key(&format!("burst-{i}"), app.clock.now() + Duration::days(20))
            .await;
    }
    let (ra, rb) = tokio::join!(a.run_once(), b.run_once());
    ra.unwrap();
    rb.unwrap();
    let mails = smtp.new_mails();
    let mut names: Vec<&str> = mails.iter().map(|m| m.subject.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(mails.len(), 9, "{mails:#?}");
    assert_eq!(names.len(), 9, "one mail per key: {mails:#?}");
}
both_backends!(a_lapsed_claim_sends_nothing_and_records_nothing);

async fn a_round_with_nothing_new_reads_no_keys(app: TestApp) {
    let portal = Portal::new(&app);
    portal
        .create_key("quiet", app.clock.now() + Duration::days(40))
        .await;
    let outbox = tempfile::tempdir().unwrap();
    let jobs = jobs_for(&app.state.service, None, outbox.path());
    let due = |app: &TestApp| {
        let service = app.state.service.clone();
        let now = app.clock.now();
        async move {
            let cutoffs: Vec<(NoticeThreshold, Timestamp)> = jobs::notices::THRESHOLDS
                .iter()
                .rev()
                .map(|(n, d)| (*n, now + Duration::days(*d)))
                .collect();
            let mut tx = service.store().read().await.unwrap();
            tx.keys_expiring(now - Duration::days(7), now + Duration::days(30), &cutoffs)
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(due(&app).await, 0, "40 days before expiry");
    app.clock.advance(Duration::days(10));
    assert_eq!(due(&app).await, 1, "the 30-day threshold was crossed");
    round(&jobs).await;
    assert_eq!(due(&app).await, 0, "its notice exists");
    assert_eq!(
        jobs::notices::schedule(&app.state.service).await.unwrap(),
        0
    );
    app.clock.advance(Duration::days(5));
    assert_eq!(due(&app).await, 0, "between thresholds");
    app.clock.advance(Duration::days(18));
    assert_eq!(due(&app).await, 1, "the 7-day threshold was crossed");
    round(&jobs).await;
    assert_eq!(due(&app).await, 0);
}
both_backends!(a_round_with_nothing_new_reads_no_keys);

async fn a_stalled_mail_server_does_not_hold_up_webhooks(app: TestApp) {
    // A "mail server" that accepts connections and never says a word.
    let stalled = TcpListener::bind("127.0.0.1:0").unwrap();
    let smtp = format!("smtp://{}", stalled.local_addr().unwrap());
    let hits = std::sync::Arc::new(tokio::sync::Notify::new());
    let h = hits.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let h = h.clone();
            async move {
                h.notify_one();
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    let portal = Portal::new(&app);
    portal
        .post(
            "/webhooks",
            json!({"url": hook, "events": ["api_key.created"]}),
        )
        .await;
    let (id, _) = portal
        .create_key("mailed", app.clock.now() + Duration::days(40))
        .await;
    app.clock.advance(Duration::days(10));
    jobs::notices::schedule(&app.state.service).await.unwrap();
    // A notice is due and the key's creation queued a delivery: start the node's jobs.
    let outbox = tempfile::tempdir().unwrap();
    let jobs = jobs_for(&app.state.service, Some(&smtp), outbox.path());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(jobs.run(std::time::Duration::from_secs(3600), stopped));
    // The queued delivery, and one queued while the mail job is stuck, both arrive
    // while the notice's send still hangs.
    tokio::time::timeout(std::time::Duration::from_secs(120), hits.notified())
        .await
        .expect("the webhook is delivered while the mail server stalls");
    portal.post("/api-keys", json!({"name": "later"})).await;
    tokio::time::timeout(std::time::Duration::from_secs(120), hits.notified())
        .await
        .expect("a webhook queued later is delivered while the mail server stalls");
    let n = notices_of(&app.state.service, &id).await;
    assert_eq!(
        n.iter()
            .map(|n| (n.status.as_str(), n.attempts))
            .collect::<Vec<_>>(),
        vec![("pending", 0)],
        "the notice's send is still stuck: {n:?}"
    );
    stop.send(true).unwrap();
    drop(stalled);
    let _ = running.await;
}
both_backends!(
    a_stalled_mail_server_does_not_hold_up_webhooks,
    crate::support::local_receivers
);
