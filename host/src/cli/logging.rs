//! Log output: pretty for a terminal or JSON for collectors, to stderr, with the bot token
//! (and the dashboard's) blanked out of every line whatever library wrote it. The same
//! redacted lines go to the dashboard's log ring when it is on.

use std::io::{self, IsTerminal, Write};
use std::sync::Arc;

use tracing::{Level, Metadata};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;
use crate::telemetry;

/// Secrets that never reach a log line, each with what replaces it.
pub type Secrets = Vec<(String, &'static str)>;

/// `RUST_LOG` filters (default: info for pi-agent and guests, warn for libraries).
pub fn init(format: LogFormat, secrets: Secrets) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,pi_agent=info"));
    let writer = Redacting {
        secrets: Arc::new(secrets.into_iter().filter(|(s, _)| !s.is_empty()).collect()),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.with_ansi(io::stderr().is_terminal()).init(),
    }
}

/// Writes each formatted line to stderr with the secrets replaced.
#[derive(Clone)]
struct Redacting {
    secrets: Arc<Secrets>,
}

impl<'a> MakeWriter<'a> for Redacting {
    type Writer = RedactingLine;

    fn make_writer(&'a self) -> Self::Writer {
        self.line(Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        self.line(*meta.level())
    }
}

impl Redacting {
    fn line(&self, level: Level) -> RedactingLine {
        RedactingLine {
            secrets: self.secrets.clone(),
            level,
            buffer: Vec::new(),
        }
    }
}

/// Buffers one event (the formatter writes it in pieces) and writes it redacted on drop.
struct RedactingLine {
    secrets: Arc<Secrets>,
    level: Level,
    buffer: Vec<u8>,
}

impl Write for RedactingLine {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactingLine {
    fn drop(&mut self) {
        let mut text = String::from_utf8_lossy(&self.buffer).into_owned();
        for (secret, replacement) in self.secrets.iter() {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), replacement);
            }
        }
        let _ = io::stderr().lock().write_all(text.as_bytes());
        telemetry::logs::push(self.level, &text);
    }
}
