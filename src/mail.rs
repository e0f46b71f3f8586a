//! Outgoing mail, through one of three transports (`MAIL_TRANSPORT`): `.eml` files in a
//! directory (the embedded default: open them with any mail reader), an SMTP server
//! (lettre, TLS with rustls), or the log.

use anyhow::Context;
use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
};
use secrecy::ExposeSecret;

use crate::config::{MailConfig, MailTransport};

/// Sends mail from `MAIL_FROM`.
pub struct Mailer {
    from: Mailbox,
    transport: Transport,
}

enum Transport {
    File(AsyncFileTransport<Tokio1Executor>),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Log,
}

impl Mailer {
    /// Builds the configured transport; the file transport's directory is created here.
    pub fn new(config: &MailConfig) -> anyhow::Result<Self> {
        let from = config
            .from
            .parse()
            .with_context(|| format!("MAIL_FROM={:?} is not a mailbox", config.from))?;
        let transport = match &config.transport {
            MailTransport::File { dir } => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create MAIL_DIR {}", dir.display()))?;
                Transport::File(AsyncFileTransport::new(dir))
            }
            MailTransport::Smtp { url } => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .context("SMTP_URL is not a usable SMTP address")?
                    .build(),
            ),
            MailTransport::Log => Transport::Log,
        };
        Ok(Self { from, transport })
    }

    /// Sends a plain-text message to `to`.
    pub async fn send(&self, to: Mailbox, subject: &str, body: String) -> anyhow::Result<()> {
        if let Transport::Log = self.transport {
            tracing::info!(to = %to, subject, body, "mail (MAIL_TRANSPORT=log)");
            return Ok(());
        }
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(None)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .context("cannot build the message")?;
        match &self.transport {
            Transport::File(files) => {
                files.send(message).await.context("cannot write the mail")?;
            }
            Transport::Smtp(smtp) => {
                smtp.send(message)
                    .await
                    .context("the SMTP server refused the mail")?;
            }
            Transport::Log => {}
        }
        Ok(())
    }
}
