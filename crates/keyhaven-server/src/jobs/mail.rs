//! Sending mail: SMTP through lettre to `KEYHAVEN_SMTP_URL`, or `.eml` files in
//! `<data dir>/outbox/` when no SMTP server is configured.

use std::path::PathBuf;

use lettre::message::{header::ContentType, Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

/// How long one SMTP command may take before the send is abandoned (and retried).
pub const SMTP_TIMEOUT_SECONDS: u64 = 15;

/// Where mail goes.
#[derive(Clone)]
pub enum Mailer {
    /// An SMTP server (plain SMTP, for a local relay).
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// `.eml` files in a directory.
    Files(PathBuf),
}

/// A mail to send.
pub struct Mail {
    /// Sender.
    pub from: String,
    /// Recipient.
    pub to: String,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

impl Mailer {
    /// The mailer for the settings: `smtp://[user:password@]host[:port]`, else files.
    pub fn new(smtp_url: Option<&str>, outbox: PathBuf) -> Result<Self, String> {
        let Some(u) = smtp_url else {
            return Ok(Mailer::Files(outbox));
        };
        let url = url::Url::parse(u)
            .map_err(|_| format!("SMTP URL {u:?} is not a URL such as smtp://127.0.0.1:1025"))?;
        if url.scheme() != "smtp" {
            return Err("only smtp:// URLs are supported (plain SMTP to a local relay)".into());
        }
        let host = url
            .host_str()
            .ok_or("the SMTP URL has no host")?
            .to_string();
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(url.port().unwrap_or(25))
            .timeout(Some(std::time::Duration::from_secs(SMTP_TIMEOUT_SECONDS)));
        if !url.username().is_empty() {
            b = b.credentials(Credentials::new(
                url.username().to_string(),
                url.password().unwrap_or_default().to_string(),
            ));
        }
        Ok(Mailer::Smtp(b.build()))
    }

    /// Sends one mail; `Ok` means the server (or the file system) accepted it.
    pub async fn send(&self, m: &Mail) -> Result<(), String> {
        let from: Mailbox = m
            .from
            .parse()
            .map_err(|e| format!("bad sender address: {e}"))?;
        let to: Mailbox =
            m.to.parse()
                .map_err(|e| format!("bad recipient address: {e}"))?;
        let msg = Message::builder()
            .from(from)
            .to(to)
            .subject(m.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(m.body.clone())
            .map_err(|e| e.to_string())?;
        match self {
            Mailer::Smtp(t) => t.send(msg).await.map(|_| ()).map_err(|e| e.to_string()),
            Mailer::Files(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| e.to_string())?;
                AsyncFileTransport::<Tokio1Executor>::new(dir)
                    .send(msg)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
    }
}
