//! Black-box test support: run the real `keyhaven` binary against a fresh database on
//! SQLite (a temporary data directory) or PostgreSQL (a fresh database from
//! `TestDb::postgres`, passed in `KEYHAVEN_DATABASE_URL`).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyhaven_store::testing::TestDb;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_keyhaven");

/// How long a server may take to come up or to stop. Generous: this is a ceiling for
/// a hung process, not a performance assertion.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// A password the product accepts (≥ 12 characters).
pub const GOOD_PASSWORD: &str = "correct horse battery staple";

/// Which database backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// Generates one `#[tokio::test]` per backend for each `async fn name(env: Env)` given:
/// `sqlite::name` and `postgres::name`, running the same code.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(env) = $crate::support::Env::new(
                        $crate::support::Kind::Sqlite,
                        stringify!($name),
                    )
                    .await
                    {
                        super::$name(env).await;
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(env) = $crate::support::Env::new(
                        $crate::support::Kind::Postgres,
                        stringify!($name),
                    )
                    .await
                    {
                        super::$name(env).await;
                    }
                }
            )*
        }
    };
}

/// A `keyhaven` command with a clean environment: no inherited `KEYHAVEN_*` or
/// `RUST_LOG`, working directory `cwd` (so nothing lands in the source tree).
pub fn keyhaven(cwd: &Path) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if let Some(k) = k.to_str() {
            if k.starts_with("KEYHAVEN_") || k == "RUST_LOG" {
                c.env_remove(k);
            }
        }
    }
    c.current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// A finished command.
#[derive(Debug)]
pub struct Out {
    pub status: ExitStatus,
    /// Not read by any test so far; kept beside `stderr` for the next one that needs it.
    #[allow(dead_code)]
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    fn describe(&self) -> String {
        format!(
            "exit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    /// Asserts success (and no panic); returns stdout, trimmed.
    pub fn ok(&self) -> &str {
        assert!(self.status.success(), "command failed\n{}", self.describe());
        assert!(!self.stderr.contains("panicked"), "{}", self.describe());
        self.stdout.trim()
    }

    /// Asserts a clean failure: non-zero exit, no panic, nothing on stdout and exactly
    /// one non-empty line on stderr, which starts with `error:` and contains every
    /// one of `expect` (case-insensitive). Returns that line.
    pub fn fails_cleanly(&self, expect: &[&str]) -> String {
        assert!(
            !self.status.success(),
            "expected a failure\n{}",
            self.describe()
        );
        assert!(
            self.status.code().is_some(),
            "killed by a signal\n{}",
            self.describe()
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.describe());
        assert!(
            self.stdout.trim().is_empty(),
            "nothing should be printed on stdout on failure\n{}",
            self.describe()
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one line on stderr\n{}",
            self.describe()
        );
        let line = lines[0];
        assert!(
            line.starts_with("error: "),
            "the line should start with `error: `\n{}",
            self.describe()
        );
        let lower = line.to_lowercase();
        for e in expect {
            assert!(
                lower.contains(&e.to_lowercase()),
                "stderr should mention {e:?}\n{}",
                self.describe()
            );
        }
        line.to_string()
    }
}

/// Runs a command to completion.
pub async fn run(mut cmd: Command) -> Out {
    let out = tokio::time::timeout(PATIENCE, cmd.output())
        .await
        .expect("the command did not finish")
        .expect("cannot run the keyhaven binary");
    Out {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// One test's database and data directory.
pub struct Env {
    pub kind: Kind,
    /// Working directory of every process (holds the data directory).
    pub root: tempfile::TempDir,
    /// `--data-dir`: does not exist until the binary creates it.
    pub data_dir: PathBuf,
    /// The database URL (for tampering); passed in `KEYHAVEN_DATABASE_URL` on PostgreSQL,
    /// the default one on SQLite (nothing passed).
    pub db_url: String,
    /// The PostgreSQL database, dropped with the environment.
    _pg: Option<TestDb>,
}

impl Env {
    /// A fresh environment, or `None` when PostgreSQL is unreachable (outside CI;
    /// `TestDb::postgres` prints a loud SKIPPED message).
    pub async fn new(kind: Kind, test: &str) -> Option<Env> {
        let root = tempfile::tempdir().expect("temp dir");
        let data_dir = root.path().join("data");
        match kind {
            Kind::Sqlite => Some(Env {
                kind,
                db_url: format!("sqlite://{}", data_dir.join("keyhaven.db").display()),
                root,
                data_dir,
                _pg: None,
            }),
            Kind::Postgres => {
                let db = TestDb::postgres(&format!("keyhaven::cli::{test}")).await?;
                // TestDb migrates its database; make it truly empty so the binary's own
                // migrations and first start are what is tested.
                exec_sql(
                    &db.url,
                    &["DROP SCHEMA public CASCADE", "CREATE SCHEMA public"],
                )
                .await;
                Some(Env {
                    kind,
                    db_url: db.url.clone(),
                    root,
                    data_dir,
                    _pg: Some(db),
                })
            }
        }
    }

    /// `keyhaven --data-dir <data dir>` (+ `KEYHAVEN_DATABASE_URL` on PostgreSQL).
    pub fn cmd(&self) -> Command {
        let mut c = keyhaven(self.root.path());
        c.arg("--data-dir").arg(&self.data_dir);
        if self.kind == Kind::Postgres {
            c.env("KEYHAVEN_DATABASE_URL", &self.db_url);
        }
        c
    }

    /// Runs `keyhaven <args>` on this environment.
    pub async fn run(&self, args: &[&str]) -> Out {
        let mut c = self.cmd();
        c.args(args);
        run(c).await
    }

    /// Runs `keyhaven <args>` with `input` on standard input.
    pub async fn run_with_stdin(&self, args: &[&str], input: &str) -> Out {
        use tokio::io::AsyncWriteExt;
        let mut c = self.cmd();
        c.args(args).stdin(std::process::Stdio::piped());
        let mut child = c.spawn().expect("spawn keyhaven");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(input.as_bytes())
            .await
            .expect("write stdin");
        drop(stdin);
        let out = child.wait_with_output().await.expect("wait");
        Out {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts `keyhaven serve` on a free port with extra environment variables and
    /// waits until it answers `/healthz` and has printed its listening line.
    pub async fn serve(&self, envs: &[(&str, &str)]) -> Server {
        let port = free_port();
        self.serve_on(&format!("127.0.0.1:{port}"), envs).await
    }

    /// Starts `keyhaven serve --listen <listen>`; the port is taken from the listening
    /// line the server prints (so `127.0.0.1:0` works too).
    pub async fn serve_on(&self, listen: &str, envs: &[(&str, &str)]) -> Server {
        let mut c = self.cmd();
        c.arg("serve").arg("--listen").arg(listen);
        for (k, v) in envs {
            c.env(k, v);
        }
        Server::start(c).await
    }

    /// How many rows `table` has, read directly from the database this environment
    /// points the binary at (proves the binary used that database).
    pub async fn count(&self, table: &str) -> i64 {
        self.sql_text(&format!("SELECT CAST(COUNT(*) AS TEXT) FROM {table}"))
            .await
            .parse()
            .unwrap()
    }

    /// Runs SQL statements directly on this environment's database.
    pub async fn sql(&self, statements: &[&str]) -> Vec<u64> {
        exec_sql(&self.db_url, statements).await
    }

    /// One text value from the database.
    pub async fn sql_text(&self, query: &str) -> String {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&self.db_url)
            .await
            .expect("connect for a query");
        let v: String = sqlx::query_scalar(query)
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        pool.close().await;
        v
    }
}

/// Executes statements on `url`; returns the rows affected by each.
pub async fn exec_sql(url: &str, statements: &[&str]) -> Vec<u64> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    let mut affected = Vec::new();
    for s in statements {
        let r = sqlx::query(s)
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
        affected.push(r.rows_affected());
    }
    pool.close().await;
    affected
}

fn collect<R: AsyncRead + Unpin + Send + 'static>(
    r: R,
    into: Arc<Mutex<String>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            let mut s = into.lock().unwrap();
            s.push_str(&l);
            s.push('\n');
        }
    })
}

/// A running `keyhaven serve`; killed (SIGKILL) when dropped unless stopped first.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub base: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

/// What a stopped server left behind.
#[derive(Debug)]
pub struct Stopped {
    pub status: ExitStatus,
    /// Not read by any test so far; kept beside `stderr` for the next one that needs it.
    #[allow(dead_code)]
    pub stdout: String,
    pub stderr: String,
}

impl Server {
    async fn start(mut cmd: Command) -> Server {
        let mut child = cmd.spawn().expect("spawn keyhaven serve");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        let mut server = Server {
            child: Some(child),
            port: 0,
            base: String::new(),
            stdout,
            stderr,
            readers,
        };
        server.wait_ready().await;
        server
    }

    /// The server's process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// What the server printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// What the server printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn describe(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout(),
            self.stderr()
        )
    }

    async fn wait_ready(&mut self) {
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                // Let the readers drain what is left.
                for r in self.readers.drain(..) {
                    let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
                }
                panic!(
                    "keyhaven serve exited before it was ready: {status}\n{}",
                    self.describe()
                );
            }
            if self.port == 0 {
                if let Some(addr) = field(&self.stdout(), "Keyhaven listening on http://") {
                    let addr: std::net::SocketAddr = addr
                        .parse()
                        .unwrap_or_else(|_| panic!("listening line: {}", self.stdout()));
                    self.port = addr.port();
                    self.base = format!("http://{addr}");
                }
            }
            if self.port != 0 {
                let healthy = match http.get(format!("{}/healthz", self.base)).send().await {
                    Ok(r) => r.status() == reqwest::StatusCode::OK,
                    Err(_) => false,
                };
                if healthy {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "keyhaven serve did not come up\n{}",
                self.describe()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn stop(mut self) -> Stopped {
        let mut child = self.child.take().expect("running");
        let pid = child.id().expect("pid");
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(killed.success(), "kill -TERM {pid} failed");
        let status = match tokio::time::timeout(PATIENCE, child.wait()).await {
            Ok(s) => s.expect("wait for keyhaven serve"),
            Err(_) => {
                let _ = child.start_kill();
                panic!(
                    "keyhaven serve did not exit after SIGTERM\n{}",
                    self.describe()
                );
            }
        };
        for r in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), r).await;
        }
        Stopped {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        for r in &self.readers {
            r.abort();
        }
    }
}

/// An HTTP client that keeps cookies.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

/// The value after `label` on the line of `text` that has it, e.g. `Email:`.
pub fn field(text: &str, label: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (_, rest) = l.split_once(label)?;
        rest.split_whitespace().next().map(str::to_string)
    })
}
