//! `pi-agent chat`: the bot in a terminal — same pipeline, same Ollama, same history store,
//! replies streamed to stdout. Lines starting with `/reset` forget the history; `/quit` or
//! end of input leaves.

use std::io::Write as _;

use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::chat::{Accepted, JobKind, NewJob, Replies, ReplySink};
use crate::clock;
use crate::config::Config;
use crate::prompt::{ChatContext, Reply, TextFormat};
use crate::telegram::text::html_to_plain;

/// The terminal's conversation in the history store.
const TERMINAL_CHAT_ID: i64 = 0;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let (service, _reloader, _store) =
        app::service(&config, TerminalReplies { done: done_tx }).await?;
    let shutdown = CancellationToken::new();
    let workers = tokio::spawn({
        let (service, shutdown) = (service.clone(), shutdown.clone());
        async move { service.run_workers(shutdown).await }
    });
    println!(
        "Chatting with {} through the pipeline. /reset forgets the history, /quit leaves.",
        config.llm.primary.model
    );
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        print!("> ");
        std::io::stdout().flush()?;
        let Some(line) = lines.next_line().await? else {
            break;
        };
        match line.trim() {
            "" => continue,
            "/quit" => break,
            "/reset" => {
                service.reset(TERMINAL_CHAT_ID).await?;
                println!("(history forgotten)");
                continue;
            }
            text => match service.accept(job(text)).await? {
                Accepted::Queued { .. } => {
                    done_rx.recv().await;
                }
                Accepted::Duplicate | Accepted::QueueFull => println!("(not accepted, try again)"),
            },
        }
    }
    shutdown.cancel();
    workers.await?;
    Ok(())
}

fn job(text: &str) -> NewJob {
    let now_ms = clock::unix_ms();
    NewJob {
        chat_id: TERMINAL_CHAT_ID,
        // Unique enough: answered ids are forgotten after two days, and this wraps in 24.
        kind: JobKind::Message {
            message_id: (now_ms % i32::MAX as u64) as i32,
        },
        user_id: 0,
        text: text.to_owned(),
        context: ChatContext {
            chat_id: TERMINAL_CHAT_ID,
            unix_ms: now_ms,
            ..ChatContext::default()
        },
        received_unix_ms: now_ms,
    }
}

struct TerminalReplies {
    /// Tells the input loop that a reply is over.
    done: UnboundedSender<()>,
}

impl Replies for TerminalReplies {
    type Sink = TerminalReply;

    fn open(&self, _chat_id: i64, _message_id: Option<i32>) -> TerminalReply {
        TerminalReply {
            printed: String::new(),
            done: self.done.clone(),
        }
    }

    async fn tell_admins(&self, text: &str) {
        // The person at the terminal is the admin.
        eprintln!("{text}");
    }
}

/// Prints a streaming reply: what is new since the last update, as plain text.
struct TerminalReply {
    printed: String,
    done: UnboundedSender<()>,
}

/// The service drops the sink when it is done with the job, whatever the outcome.
impl Drop for TerminalReply {
    fn drop(&mut self) {
        let _ = self.done.send(());
    }
}

impl TerminalReply {
    fn print(&mut self, reply: &Reply) {
        let text = match reply.format {
            TextFormat::Html => html_to_plain(&reply.text),
            TextFormat::Plain => reply.text.clone(),
        };
        // Shaping may rewrite earlier text (a closing `**` turns into bold); only append.
        if let Some(new) = text.strip_prefix(self.printed.as_str()) {
            print!("{new}");
            let _ = std::io::stdout().flush();
            self.printed = text;
        }
    }
}

impl ReplySink for TerminalReply {
    async fn working(&mut self) {}

    async fn partial(&mut self, reply: &Reply) {
        self.print(reply);
    }

    async fn finish(&mut self, reply: &Reply) -> anyhow::Result<()> {
        self.print(reply);
        println!();
        Ok(())
    }

    async fn notice(&mut self, text: &str) -> anyhow::Result<()> {
        println!("{text}");
        Ok(())
    }
}
