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
    /// An SMTP server (plain, STARTTLS or TLS).
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
    /// The mailer for the settings, else files:
    /// - `smtp://[user:password@]host[:port]` — plain SMTP (port 25), for a local relay;
    /// - `smtp://…?tls=starttls` — STARTTLS required (port 587 unless given);
    /// - `smtps://…` — TLS from the first byte (port 465 unless given).
    ///
    /// Certificates are checked against the Web PKI roots built into the binary.
    pub fn new(smtp_url: Option<&str>, outbox: PathBuf) -> Result<Self, String> {
        let Some(u) = smtp_url else {
            return Ok(Mailer::Files(outbox));
        };
        let url = url::Url::parse(u)
            .map_err(|_| format!("SMTP URL {u:?} is not a URL such as smtp://127.0.0.1:1025"))?;
        let host = url
            .host_str()
            .ok_or("the SMTP URL has no host")?
            .to_string();
        let starttls = url
            .query_pairs()
            .any(|(k, v)| k == "tls" && v.eq_ignore_ascii_case("starttls"));
        let builder = match (url.scheme(), starttls) {
            ("smtp", false) => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .port(url.port().unwrap_or(25)),
            ("smtp", true) => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)
                .map_err(|e| format!("cannot use SMTP server {host}: {e}"))?
                .port(url.port().unwrap_or(587)),
            ("smtps", _) => AsyncSmtpTransport::<Tokio1Executor>::relay(&host)
                .map_err(|e| format!("cannot use SMTP server {host}: {e}"))?
                .port(url.port().unwrap_or(465)),
            _ => return Err(
                "the SMTP URL must start with smtp:// (add ?tls=starttls for STARTTLS) or smtps://"
                    .into(),
            ),
        };
        let mut b = builder.timeout(Some(std::time::Duration::from_secs(SMTP_TIMEOUT_SECONDS)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls() {
        let outbox = PathBuf::from("/nonexistent");
        for ok in [
            "smtp://127.0.0.1:1025",
            "smtp://user:pw@relay.example.com?tls=starttls",
            "smtps://relay.example.com",
            "smtps://user:pw@relay.example.com:2465",
        ] {
            assert!(
                matches!(Mailer::new(Some(ok), outbox.clone()), Ok(Mailer::Smtp(_))),
                "{ok}"
            );
        }
        for bad in ["http://relay.example.com", "smtp://", "not a url"] {
            assert!(Mailer::new(Some(bad), outbox.clone()).is_err(), "{bad}");
        }
        assert!(matches!(Mailer::new(None, outbox), Ok(Mailer::Files(_))));
    }
}
