//! Log output: pretty for a terminal or JSON for collectors, to stderr, with the bot token
//! blanked out of every line whatever library wrote it.

use std::io::{self, IsTerminal, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// `RUST_LOG` filters (default: info for pi-agent and guests, warn for libraries).
pub fn init(format: LogFormat, token: Option<String>) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,pi_agent=info"));
    let writer = Redacting {
        token: token.filter(|t| !t.is_empty()),
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

/// Writes each formatted line to stderr with the token replaced.
#[derive(Clone)]
struct Redacting {
    token: Option<String>,
}

impl<'a> MakeWriter<'a> for Redacting {
    type Writer = RedactingLine;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingLine {
            token: self.token.clone(),
            buffer: Vec::new(),
        }
    }
}

/// Buffers one event (the formatter writes it in pieces) and writes it redacted on drop.
struct RedactingLine {
    token: Option<String>,
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
        let text = String::from_utf8_lossy(&self.buffer);
        let text = match &self.token {
            Some(token) => text.replace(token.as_str(), "[bot token]"),
            None => text.into_owned(),
        };
        let _ = io::stderr().lock().write_all(text.as_bytes());
    }
}
