//! Settings: command-line flags, then `KEYHAVEN_*` environment variables, then an
//! optional TOML file (`--config`), then defaults — in that order of precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use ipnet::IpNet;
use serde::Deserialize;

use keyhaven_core::key_format::Secret;

use crate::secrets::MasterKey;

/// The settings as given (every one optional), shared by `serve` and the CLI commands
/// that open the database.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Settings {
    /// TOML file with any of the settings below (keys in snake_case, e.g. `listen`).
    #[arg(long, env = "KEYHAVEN_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Directory for the embedded database, the mail outbox and generated keys [default: ./keyhaven-data].
    #[arg(long, env = "KEYHAVEN_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// `sqlite://…` or `postgres://…` [default: sqlite://<data dir>/keyhaven.db].
    #[arg(long, env = "KEYHAVEN_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// 32-byte key, base64, that encrypts stored secrets [default: generated into the data dir].
    #[arg(
        long,
        env = "KEYHAVEN_MASTER_KEY",
        global = true,
        hide_env_values = true
    )]
    pub master_key: Option<Secret>,
    /// Redis for the rate-limit counters of several nodes, redis://host:port/db or rediss://… (PostgreSQL only) [default: counters in the database].
    #[arg(
        long,
        env = "KEYHAVEN_REDIS_URL",
        global = true,
        hide_env_values = true
    )]
    pub redis_url: Option<String>,
    /// What only `serve` reads (its own flags: `keyhaven serve --help`).
    #[arg(skip)]
    pub serve: ServeSettings,
}

/// The settings only `serve` reads, given after the subcommand
/// (`keyhaven serve --listen …`) or as `KEYHAVEN_*` variables.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeSettings {
    /// Address to serve on [default: 127.0.0.1:8080].
    #[arg(long, env = "KEYHAVEN_LISTEN")]
    pub listen: Option<String>,
    /// Base URL for links in emails and the OAuth issuer [default: http://<listen>].
    #[arg(long, env = "KEYHAVEN_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// SMTP server: smtp://host[:port] (plain), add ?tls=starttls for STARTTLS, or smtps:// [default: write .eml files to <data dir>/outbox].
    #[arg(long, env = "KEYHAVEN_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// Sender address of notices [default: keyhaven@localhost].
    #[arg(long, env = "KEYHAVEN_MAIL_FROM")]
    pub mail_from: Option<String>,
    /// How often background jobs look for due work, e.g. 60s, 5m [default: 60s].
    #[arg(long, env = "KEYHAVEN_JOB_INTERVAL")]
    pub job_interval: Option<String>,
    /// Comma-separated CIDRs whose X-Forwarded-For / X-Real-IP is believed [default: none].
    #[arg(long, env = "KEYHAVEN_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
    /// Comma-separated CIDRs that webhooks (and any other request Keyhaven sends out) may reach besides public addresses, e.g. 10.0.0.0/8 for receivers on an internal network [default: none — loopback, private, link-local, CGNAT, unique-local and multicast addresses are refused].
    #[arg(long, env = "KEYHAVEN_OUTBOUND_ALLOWED_CIDRS")]
    pub outbound_allowed_cidrs: Option<String>,
    /// Email of the first super-admin, created when the database has no organization [default: admin@localhost].
    #[arg(long, env = "KEYHAVEN_BOOTSTRAP_ADMIN_EMAIL")]
    pub bootstrap_admin_email: Option<String>,
    /// Password of the first super-admin [default: random, printed once].
    #[arg(
        long,
        env = "KEYHAVEN_BOOTSTRAP_ADMIN_PASSWORD",
        hide_env_values = true
    )]
    pub bootstrap_admin_password: Option<Secret>,
    /// How long hourly verification analytics are kept, e.g. 90d, 720h (daily ones are kept 2 years) [default: 90d].
    #[arg(long, env = "KEYHAVEN_ANALYTICS_RETENTION")]
    pub analytics_retention: Option<String>,
}

/// The TOML file's shape: the same settings, all optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    public_url: Option<String>,
    master_key: Option<Secret>,
    smtp_url: Option<String>,
    mail_from: Option<String>,
    job_interval: Option<String>,
    trusted_proxies: Option<Vec<String>>,
    outbound_allowed_cidrs: Option<Vec<String>>,
    bootstrap_admin_email: Option<String>,
    bootstrap_admin_password: Option<Secret>,
    redis_url: Option<String>,
    analytics_retention: Option<String>,
}

/// Resolved settings.
#[derive(Clone)]
pub struct Config {
    /// Address to serve on.
    pub listen: SocketAddr,
    /// Data directory (created if missing).
    pub data_dir: PathBuf,
    /// Database URL.
    pub database_url: String,
    /// Public base URL, without a trailing slash.
    pub public_url: String,
    /// Whether `public_url` was derived from `listen` (and should follow the real
    /// address once bound, e.g. with port 0).
    pub public_url_from_listen: bool,
    /// Encrypts stored secrets.
    pub master_key: MasterKey,
    /// Whether the master key came from the data directory (read or generated there)
    /// rather than from the settings: fine for one node, wrong for several nodes on one
    /// PostgreSQL database, which must all use the same key.
    pub master_key_from_data_dir: bool,
    /// SMTP server, if any.
    pub smtp_url: Option<String>,
    /// Sender address.
    pub mail_from: String,
    /// Background job period.
    pub job_interval: Duration,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Internal ranges outbound requests (webhooks) may reach besides public addresses.
    pub outbound_allowed_cidrs: Vec<IpNet>,
    /// First super-admin's email.
    pub bootstrap_admin_email: String,
    /// First super-admin's password, if given.
    pub bootstrap_admin_password: Option<Secret>,
    /// Redis for the rate-limit counters (PostgreSQL only), if given.
    pub redis_url: Option<String>,
    /// How long hourly analytics rows are kept.
    pub analytics_retention: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

/// A setting that can't be used, with the reason in one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// Parses `60s`, `5m`, `1h`, `250ms` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, ConfigError> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| {
        err(format!(
            "job interval {s:?} is not a duration such as 60s or 5m"
        ))
    })?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => {
            return Err(err(format!(
                "job interval {s:?} has an unknown unit (use ms, s, m or h)"
            )))
        }
    };
    if d.is_zero() {
        return Err(err("job interval must be greater than zero"));
    }
    Ok(d)
}

/// Parses an analytics retention: `90d`, `720h` or a bare number of days, from one
/// hour to 730 days (the daily rows' retention).
pub fn parse_retention(s: &str) -> Result<Duration, ConfigError> {
    let s = s.trim();
    let bad = || {
        err(format!(
            "analytics retention {s:?} is not a duration such as 90d or 720h"
        ))
    };
    let (num, hours_per) = if let Some(n) = s.strip_suffix('d') {
        (n, 24)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 1)
    } else {
        (s, 24)
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let hours = n.checked_mul(hours_per).ok_or_else(bad)?;
    if hours == 0 || hours > 730 * 24 {
        return Err(err(
            "analytics retention must be between 1h and 730d (daily rows are kept 2 years)",
        ));
    }
    Ok(Duration::from_secs(hours * 3600))
}

impl Settings {
    /// Merges the file (if any) under the flags and environment, applies defaults and
    /// prepares the data directory. Does not generate the master key.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let file: FileSettings = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| err(format!("cannot read config file {}: {e}", path.display())))?;
                toml::from_str(&text).map_err(|e| {
                    err(format!(
                        "config file {} is not valid: {}",
                        path.display(),
                        e.message()
                    ))
                })?
            }
            None => FileSettings::default(),
        };
        let listen_s = self
            .serve
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_s.parse().map_err(|_| {
            err(format!(
                "listen address {listen_s:?} is not an address such as 127.0.0.1:8080"
            ))
        })?;
        let data_dir = self
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./keyhaven-data"));
        let database_url = self
            .database_url
            .clone()
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("keyhaven.db").display()));
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(err("database URL must start with sqlite:// or postgres://"));
        }
        let given_public_url = self.serve.public_url.clone().or(file.public_url);
        let public_url_from_listen = given_public_url.is_none();
        let public_url = given_public_url
            .unwrap_or_else(|| format!("http://{listen}"))
            .trim_end_matches('/')
            .to_string();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(err("public URL must start with http:// or https://"));
        }
        let trusted = match &self.serve.trusted_proxies {
            Some(s) => s
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
            None => file.trusted_proxies.unwrap_or_default(),
        };
        let trusted_proxies = trusted
            .iter()
            .map(|p| {
                p.parse::<IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        err(format!(
                            "trusted proxy {p:?} is not a CIDR such as 10.0.0.0/8"
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let outbound: Vec<String> = match &self.serve.outbound_allowed_cidrs {
            Some(s) => s.split(',').map(str::to_string).collect(),
            None => file.outbound_allowed_cidrs.unwrap_or_default(),
        };
        let outbound_allowed_cidrs =
            crate::outbound::parse_cidrs(&outbound, "outbound allowed CIDR").map_err(err)?;
        let job_interval = parse_duration(
            &self
                .serve
                .job_interval
                .clone()
                .or(file.job_interval)
                .unwrap_or_else(|| "60s".into()),
        )?;
        let master_key_text = self.master_key.clone().or(file.master_key);
        let master_key_from_data_dir = master_key_text.is_none();
        let master_key = match master_key_text {
            Some(t) => MasterKey::from_base64(t.expose())?,
            None => MasterKey::load_or_create(&data_dir)?,
        };
        let smtp_url = self.serve.smtp_url.clone().or(file.smtp_url);
        if let Some(u) = &smtp_url {
            crate::jobs::mail::Mailer::new(Some(u), data_dir.join("outbox"))
                .map_err(|m| ConfigError(redact_userinfo(&m, u)))?;
        }
        let redis_url = self.redis_url.clone().or(file.redis_url);
        if let Some(u) = &redis_url {
            if database_url.starts_with("sqlite:") {
                return Err(err("KEYHAVEN_REDIS_URL needs PostgreSQL: with SQLite (one node) the counters live in memory"));
            }
            if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                return Err(ConfigError(redact_userinfo(
                    &format!("KEYHAVEN_REDIS_URL {u:?} must start with redis:// or rediss://"),
                    u,
                )));
            }
        }
        let analytics_retention = match self
            .serve
            .analytics_retention
            .clone()
            .or(file.analytics_retention)
        {
            Some(t) => parse_retention(&t)?,
            None => crate::analytics::DEFAULT_RETENTION,
        };
        Ok(Config {
            analytics_retention,
            listen,
            data_dir,
            database_url,
            public_url,
            public_url_from_listen,
            master_key,
            master_key_from_data_dir,
            smtp_url,
            mail_from: self
                .serve
                .mail_from
                .clone()
                .or(file.mail_from)
                .unwrap_or_else(|| "keyhaven@localhost".into()),
            job_interval,
            trusted_proxies,
            outbound_allowed_cidrs,
            bootstrap_admin_email: self
                .serve
                .bootstrap_admin_email
                .clone()
                .or(file.bootstrap_admin_email)
                .unwrap_or_else(|| "admin@localhost".into()),
            bootstrap_admin_password: self
                .serve
                .bootstrap_admin_password
                .clone()
                .or(file.bootstrap_admin_password),
            redis_url,
        })
    }
}

/// `message` with the user-info part (`user:password@`) of `url` masked wherever it
/// appears, so that a refused SMTP URL never shows its password in an error.
pub fn redact_userinfo(message: &str, url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return message.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return message.to_string();
    };
    let userinfo = &rest[..at];
    if userinfo.is_empty() {
        return message.to_string();
    }
    let masked = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    let mut out = message.replace(userinfo, &masked);
    // The message may quote the URL escaped (`{:?}`); mask the password there too.
    if let Some((_, password)) = userinfo.split_once(':') {
        if !password.is_empty() {
            out = out.replace(password, "***");
            let escaped = format!("{password:?}");
            out = out.replace(&escaped[1..escaped.len() - 1], "***");
        }
    }
    out
}

/// Creates the data directory (and checks it is writable).
pub fn prepare_data_dir(dir: &Path) -> Result<(), ConfigError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        err(format!(
            "cannot create data directory {}: {e}",
            dir.display()
        ))
    })?;
    let probe = dir.join(".keyhaven-write-test");
    std::fs::write(&probe, b"ok").map_err(|e| {
        err(format!(
            "data directory {} is not writable: {e}",
            dir.display()
        ))
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Decodes standard or URL-safe base64.
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s))
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(s))
        .ok()
}

/// The `(host, port)` pairs this server answers on: the listen address and the public URL.
pub fn self_origins(config: &Config) -> Vec<(String, u16)> {
    let mut out = vec![(config.listen.ip().to_string(), config.listen.port())];
    if let Ok(u) = url::Url::parse(&config.public_url) {
        if let (Some(h), Some(p)) = (u.host_str(), u.port_or_known_default()) {
            out.push((h.trim_matches(|c| c == '[' || c == ']').to_string(), p));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analytics_retentions() {
        assert_eq!(
            parse_retention("90d").unwrap(),
            Duration::from_secs(90 * 86_400)
        );
        assert_eq!(
            parse_retention("36h").unwrap(),
            Duration::from_secs(36 * 3600)
        );
        assert_eq!(
            parse_retention("7").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        for bad in ["0d", "731d", "", "d", "5m", "-1d", "99999999999999999999d"] {
            assert!(parse_retention(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn precedence_flags_over_file_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k.toml");
        std::fs::write(
            &file,
            format!(
                "listen = \"127.0.0.1:9999\"\nmail_from = \"file@x\"\ndata_dir = \"{}\"\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let s = Settings {
            config: Some(file.clone()),
            serve: ServeSettings {
                mail_from: Some("flag@x".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let c = s.resolve().unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.mail_from, "flag@x");
        assert_eq!(c.public_url, "http://127.0.0.1:9999");
        assert!(c.database_url.ends_with("keyhaven.db"));

        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        let s = Settings {
            config: Some(file),
            ..Default::default()
        };
        assert!(s.resolve().unwrap_err().0.contains("not valid"));
    }

    #[test]
    fn bad_values_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let base = Settings {
            data_dir: Some(dir.path().into()),
            ..Default::default()
        };
        let s = Settings {
            serve: ServeSettings {
                listen: Some("nope".into()),
                ..Default::default()
            },
            ..base.clone()
        };
        assert!(s.resolve().is_err());
        let s = Settings {
            database_url: Some("mysql://x".into()),
            ..base.clone()
        };
        assert!(s.resolve().is_err());
        let s = Settings {
            master_key: Some("short".into()),
            ..base.clone()
        };
        assert!(s.resolve().is_err());
        let s = Settings {
            serve: ServeSettings {
                trusted_proxies: Some("10.0.0.0/8, bad".into()),
                ..Default::default()
            },
            ..base.clone()
        };
        assert!(s.resolve().is_err());
        let s = Settings {
            serve: ServeSettings {
                outbound_allowed_cidrs: Some("10.0.0.0/8, 300.1.1.1".into()),
                ..Default::default()
            },
            ..base.clone()
        };
        assert!(s.resolve().unwrap_err().0.contains("300.1.1.1"));
        // A refused SMTP URL is named without its password.
        for url in [
            "imap://mailer:hunter2secret@mail.example.com",
            "smtp://mailer:hunter2secret@[::1",
            "smtp://mailer:hunter2\"secret@mail example.com",
        ] {
            let s = Settings {
                serve: ServeSettings {
                    smtp_url: Some(url.into()),
                    ..Default::default()
                },
                ..base.clone()
            };
            let e = s.resolve().unwrap_err().0;
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn outbound_allowed_cidrs_from_flag_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k.toml");
        std::fs::write(
            &file,
            format!(
                "outbound_allowed_cidrs = [\"10.0.0.0/8\", \"fd00::/8\"]\ndata_dir = \"{}\"\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let s = Settings {
            config: Some(file.clone()),
            ..Default::default()
        };
        let c = s.resolve().unwrap();
        let shown: Vec<String> = c
            .outbound_allowed_cidrs
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(shown, ["10.0.0.0/8", "fd00::/8"]);
        let s = Settings {
            config: Some(file),
            serve: ServeSettings {
                outbound_allowed_cidrs: Some("127.0.0.0/8, ::1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let shown: Vec<String> = s
            .resolve()
            .unwrap()
            .outbound_allowed_cidrs
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(shown, ["127.0.0.0/8", "::1/128"]);
        let s = Settings {
            data_dir: Some(dir.path().into()),
            ..Default::default()
        };
        assert!(s.resolve().unwrap().outbound_allowed_cidrs.is_empty());
    }

    #[test]
    fn userinfo_is_redacted() {
        let url = "smtp://bob:s3cret@relay:25/x";
        assert_eq!(
            redact_userinfo(&format!("SMTP URL {url:?} is bad"), url),
            "SMTP URL \"smtp://bob:***@relay:25/x\" is bad"
        );
        assert_eq!(redact_userinfo("no url here", url), "no url here");
        assert_eq!(
            redact_userinfo("smtp://relay:25 is bad", "smtp://relay:25"),
            "smtp://relay:25 is bad"
        );
    }

    #[test]
    fn redis_needs_postgres_and_a_redis_url() {
        let dir = tempfile::tempdir().unwrap();
        let base = Settings {
            data_dir: Some(dir.path().into()),
            ..Default::default()
        };
        let s = Settings {
            redis_url: Some("redis://127.0.0.1:6379/0".into()),
            ..base.clone()
        };
        assert!(s
            .resolve()
            .unwrap_err()
            .0
            .contains("KEYHAVEN_REDIS_URL needs PostgreSQL"));
        let pg = Settings {
            database_url: Some("postgres://postgres@127.0.0.1/kh".into()),
            ..base
        };
        let s = Settings {
            redis_url: Some("redis://127.0.0.1:6379/2".into()),
            ..pg.clone()
        };
        assert_eq!(
            s.resolve().unwrap().redis_url.as_deref(),
            Some("redis://127.0.0.1:6379/2")
        );
        let s = Settings {
            redis_url: Some("http://:hunter2@127.0.0.1:6379".into()),
            ..pg
        };
        let e = s.resolve().unwrap_err().0;
        assert!(e.contains("redis://") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn master_key_source_is_known() {
        let dir = tempfile::tempdir().unwrap();
        let base = Settings {
            data_dir: Some(dir.path().into()),
            ..Default::default()
        };
        assert!(base.resolve().unwrap().master_key_from_data_dir);
        let s = Settings {
            master_key: Some({
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .encode([7u8; 32])
                    .into()
            }),
            ..base
        };
        assert!(!s.resolve().unwrap().master_key_from_data_dir);
    }
}
