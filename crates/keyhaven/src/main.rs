//! `keyhaven`: the one binary. `serve` runs the server; `admin`, `audit` and `migrate`
//! act on the same database from the shell, also while a server runs.

mod audit;
mod import;

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use keyhaven_core::id::Id;
use keyhaven_core::principal::PrincipalKind;
use keyhaven_server::app::{build_state, serve, AppState};
use keyhaven_service::api_keys::{CreateApiKey, OwnerRef};
use keyhaven_service::config::Settings;
use keyhaven_service::users::CreateUser;
use keyhaven_service::{Caller, SystemClock};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "keyhaven",
    version,
    about = "Issues, verifies and governs API keys, service accounts and their credentials"
)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (REST API, verification endpoint and console).
    Serve(keyhaven_service::config::ServeSettings),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage organizations, users and bootstrap keys.
    #[command(subcommand)]
    Admin(Admin),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
}

#[derive(Subcommand)]
enum Admin {
    /// Create an organization with its first super-admin; prints the organization's id.
    CreateOrg {
        /// Organization name.
        #[arg(long)]
        name: String,
        /// The super-admin's email.
        #[arg(long)]
        admin_email: String,
        /// The super-admin's password (at least 12 characters). Visible to other local
        /// users in the process list: prefer KEYHAVEN_ADMIN_PASSWORD or --password-stdin.
        #[arg(long)]
        admin_password: Option<String>,
        /// Read the super-admin's password from the first line of standard input.
        #[arg(long, conflicts_with = "admin_password")]
        password_stdin: bool,
    },
    /// Create a portal user; prints the user's id.
    CreateUser {
        /// Organization id (may be left out when there is exactly one).
        #[arg(long)]
        org: Option<String>,
        /// Email.
        #[arg(long)]
        email: String,
        /// Display name [default: the part of the email before @].
        #[arg(long)]
        display_name: Option<String>,
        /// Password (at least 12 characters). Visible to other local users in the
        /// process list: prefer KEYHAVEN_USER_PASSWORD or --password-stdin.
        #[arg(long)]
        password: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long, conflicts_with = "password")]
        password_stdin: bool,
        /// Role name; repeat for several.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Create an API key for automation; prints the key once.
    CreateKey {
        /// Organization id (may be left out when there is exactly one).
        #[arg(long)]
        org: Option<String>,
        /// Key name.
        #[arg(long)]
        name: String,
        /// Owner: a service account id.
        #[arg(long, conflicts_with = "user")]
        service_account: Option<String>,
        /// Owner: a user's email (a personal key) [default: the organization's oldest
        /// active super-admin].
        #[arg(long)]
        user: Option<String>,
        /// Role name; repeat for several.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Scope; repeat for several.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Expire after this many days [default: never].
        #[arg(long)]
        expires_in_days: Option<i64>,
    },
    /// Import keys from another system: JSON Lines of import items (see docs/import.md),
    /// from FILE or standard input (`-`). Exits 1 if any line failed, naming each.
    ImportKeys {
        /// Organization id (may be left out when there is exactly one).
        #[arg(long)]
        org: Option<String>,
        /// The owner of items that name none: a service account id [default: the
        /// organization's oldest active super-admin].
        #[arg(long)]
        service_account: Option<String>,
        /// Check every line and report, writing nothing.
        #[arg(long)]
        dry_run: bool,
        /// The JSON Lines file, or `-` for standard input.
        file: String,
    },
    /// Set a user's password (the way back in after losing the printed one); their
    /// sessions end. The password comes from KEYHAVEN_USER_PASSWORD or standard input.
    ResetPassword {
        /// The user's email.
        #[arg(long)]
        email: String,
        /// Read the new password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Verify every organization's hash chain; reports the first broken link. With
    /// --file, check an exported file instead, offline (no database).
    Verify {
        /// Only this organization.
        #[arg(long)]
        org: Option<String>,
        /// An export of `keyhaven audit export` to check on its own.
        #[arg(long, conflicts_with = "org")]
        file: Option<std::path::PathBuf>,
    },
    /// Write an organization's audit log to standard output, ending with a line holding
    /// the chain head (check it later with `audit verify --file`).
    Export {
        /// Organization id (may be left out when there is exactly one).
        #[arg(long)]
        org: Option<String>,
        /// From the first entry at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Up to the last entry before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: audit::Format,
    },
}

fn init_logging() {
    let filter = EnvFilter::try_from_env("KEYHAVEN_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let json = std::env::var("KEYHAVEN_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only for a terminal, not for a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', " ")
}

/// Environment variable holding `create-org`'s super-admin password.
const ADMIN_PASSWORD_ENV: &str = "KEYHAVEN_ADMIN_PASSWORD";
/// Environment variable holding `create-user`'s password.
const USER_PASSWORD_ENV: &str = "KEYHAVEN_USER_PASSWORD";

/// A password from, in this order: standard input (when asked), the flag, the
/// environment variable. Arguments show in the process list; the other two don't.
fn password(
    flag: Option<String>,
    from_stdin: bool,
    env: &str,
    flag_name: &str,
) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| anyhow::anyhow!("cannot read the password from standard input: {e}"))?;
        let p = line.trim_end_matches(['\n', '\r']).to_string();
        if p.is_empty() {
            anyhow::bail!("--password-stdin: standard input held no password");
        }
        return Ok(p);
    }
    if let Some(p) = flag {
        return Ok(p);
    }
    match std::env::var(env) {
        Ok(p) if !p.is_empty() => Ok(p),
        _ => anyhow::bail!(
            "a password is required: set {env}, pass --password-stdin, or {flag_name}"
        ),
    }
}

async fn state(settings: &Settings) -> anyhow::Result<AppState> {
    let config = settings.resolve()?;
    build_state(config, Arc::new(SystemClock)).await
}

async fn org_id(state: &AppState, given: Option<String>) -> anyhow::Result<Id> {
    Ok(state.service.resolve_organization(given.as_deref()).await?)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(serve_settings) => {
            let mut settings = cli.settings.clone();
            settings.serve = serve_settings;
            let config = settings.resolve()?;
            if config.master_key_from_data_dir && !config.database_url.starts_with("sqlite:") {
                tracing::warn!(
                    "no master key is configured: this node uses {}/master.key. Every node \
                     sharing this PostgreSQL database must use the same key — set \
                     KEYHAVEN_MASTER_KEY (the same value) on all of them, or secrets \
                     encrypted by one node cannot be read by the others",
                    config.data_dir.display()
                );
            }
            serve(config).await?;
        }
        Command::Migrate => {
            let s = state(&cli.settings).await?;
            s.service.migrate().await?;
            println!("database is up to date");
        }
        Command::Admin(Admin::CreateOrg {
            name,
            admin_email,
            admin_password,
            password_stdin,
        }) => {
            let admin_password = password(
                admin_password,
                password_stdin,
                ADMIN_PASSWORD_ENV,
                "--admin-password",
            )?;
            let s = state(&cli.settings).await?;
            let (org, _) = s
                .service
                .create_organization(&name, &admin_email, &admin_password)
                .await?;
            println!("{}", org.id);
        }
        Command::Admin(Admin::CreateUser {
            org,
            email,
            display_name,
            password: password_flag,
            password_stdin,
            roles,
        }) => {
            let password = password(
                password_flag,
                password_stdin,
                USER_PASSWORD_ENV,
                "--password",
            )?;
            let s = state(&cli.settings).await?;
            let org = org_id(&s, org).await?;
            let display_name = display_name
                .unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_string());
            let caller = Caller::system(org, "keyhaven admin");
            let u = s
                .service
                .create_user(
                    &caller,
                    CreateUser {
                        email,
                        display_name,
                        password: password.into(),
                        roles,
                    },
                )
                .await?;
            println!("{}", u.id);
        }
        Command::Admin(Admin::CreateKey {
            org,
            name,
            service_account,
            user,
            roles,
            scopes,
            expires_in_days,
        }) => {
            let s = state(&cli.settings).await?;
            let org = org_id(&s, org).await?;
            let owner = match service_account {
                Some(sa) => OwnerRef {
                    kind: PrincipalKind::ServiceAccount,
                    id: sa,
                },
                None => s.service.default_key_owner(&org, user.as_deref()).await?,
            };
            let caller = Caller::system(org, "keyhaven admin");
            let (_, _, secret) = s
                .service
                .create_api_key(
                    &caller,
                    CreateApiKey {
                        name,
                        roles: Some(roles),
                        scopes: Some(scopes),
                        owner: Some(owner),
                        expires_in_days,
                        ..Default::default()
                    },
                )
                .await?;
            println!("{}", secret.expose());
        }
        Command::Admin(Admin::ImportKeys {
            org,
            service_account,
            dry_run,
            file,
        }) => {
            let (input, total): (Box<dyn std::io::BufRead>, Option<u64>) = if file == "-" {
                (Box::new(std::io::BufReader::new(std::io::stdin())), None)
            } else {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| anyhow::anyhow!("cannot read {file}: {e}"))?;
                let n = text.lines().filter(|l| !l.trim().is_empty()).count() as u64;
                (Box::new(std::io::Cursor::new(text.into_bytes())), Some(n))
            };
            let s = state(&cli.settings).await?;
            let org = org_id(&s, org).await?;
            let owner = match service_account {
                Some(sa) => OwnerRef {
                    kind: PrincipalKind::ServiceAccount,
                    id: sa,
                },
                None => s.service.default_key_owner(&org, None).await?,
            };
            let caller = Caller::system(org, "keyhaven admin");
            let summary = import::run(&s, &caller, input, owner, dry_run, total).await?;
            for (line, why) in &summary.failed {
                eprintln!("line {line}: {why}");
            }
            let verb = if dry_run { "would import" } else { "imported" };
            let plural = |n: usize, one: &str, many: &str| {
                format!("{n} {}", if n == 1 { one } else { many })
            };
            println!(
                "{verb} {}; {} failed",
                plural(summary.imported, "key", "keys"),
                plural(summary.failed.len(), "line", "lines")
            );
            if !summary.failed.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Admin(Admin::ResetPassword {
            email,
            password_stdin,
        }) => {
            let new = password(None, password_stdin, USER_PASSWORD_ENV, "--password-stdin")?;
            let s = state(&cli.settings).await?;
            let u = s.service.reset_password_by_email(&email, &new).await?;
            println!("password of {} reset; their sessions have ended", u.email);
        }
        Command::Audit(AuditCmd::Verify {
            file: Some(file), ..
        }) => return audit::verify_file(&file),
        Command::Audit(AuditCmd::Export {
            org,
            since,
            until,
            format,
        }) => {
            let s = state(&cli.settings).await?;
            let org = org_id(&s, org).await?;
            let (since, until) = (since.as_deref(), until.as_deref());
            return audit::export(&s.service, &org, since, until, format).await;
        }
        Command::Audit(AuditCmd::Verify { org, file: None }) => {
            let s = state(&cli.settings).await?;
            let org = match org {
                Some(o) => Some(org_id(&s, Some(o)).await?),
                None => None,
            };
            let mut broken = false;
            for r in s.service.verify_audit_chains(org.as_ref()).await? {
                match r.broken {
                    None if r.authenticated => {
                        println!("organization {}: ok ({} entries)", r.org_id, r.entries)
                    }
                    None => println!(
                        "organization {}: ok ({} entries; the head is not authenticated yet: \
                         no audited action since the upgrade that added head MACs)",
                        r.org_id, r.entries
                    ),
                    Some(b) => {
                        broken = true;
                        println!(
                            "organization {}: BROKEN ({}) at entry {} ({}): {}",
                            r.org_id,
                            b.kind.as_str(),
                            b.seq,
                            b.id,
                            b.reason
                        );
                    }
                }
            }
            if broken {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
