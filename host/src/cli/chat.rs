//! `pi-agent chat`: the bot in a terminal — same pipeline, same Ollama, same history store,
//! replies streamed to stdout. Lines starting with `/reset` forget the history; `/quit` or
//! end of input leaves.

use std::io::Write as _;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::background::Background;
use crate::chat::{Accepted, AdminNotice, JobKind, NewJob, Notice, Origin, Replies, ReplySink};
use crate::clock;
use crate::config::Config;
use crate::ids::{ChatId, UserId};
use crate::prompt::{Reply, ScheduledRun, TextFormat};
use crate::telegram::text::html_to_plain;
use crate::telegram::{admin, messages};
use crate::zone::Zone;

/// The terminal's conversation in the history store.
const TERMINAL_CHAT_ID: ChatId = ChatId(0);

pub async fn run(config: Config) -> anyhow::Result<()> {
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let background = Background::new(shutdown.clone());
    let replies = Arc::new(TerminalReplies { done: done_tx });
    let service = app::service(&config, replies, &background).await?.chat;
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
    background.stop(config.chat.shutdown_grace).await;
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
        user_id: UserId(0),
        text: text.to_owned(),
        origin: Origin {
            sent_unix_ms: now_ms,
            ..Origin::default()
        },
        received_unix_ms: now_ms,
    }
}

struct TerminalReplies {
    /// Tells the input loop that a reply is over.
    done: UnboundedSender<()>,
}

impl Replies for TerminalReplies {
    fn open(&self, _chat_id: ChatId, _message_id: Option<i32>) -> Box<dyn ReplySink> {
        Box::new(TerminalReply {
            printed: String::new(),
            done: self.done.clone(),
        })
    }

    fn tell_admins<'a>(&'a self, notice: &'a AdminNotice) -> BoxFuture<'a, ()> {
        // The person at the terminal is the admin.
        eprintln!("{}", admin::notice(notice));
        Box::pin(async {})
    }

    fn announcement(&self, text: &str, run: &ScheduledRun, zone: &Zone) -> String {
        messages::announcement(text, run, zone)
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
    fn working(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    fn partial<'a>(&'a mut self, reply: &'a Reply) -> BoxFuture<'a, ()> {
        self.print(reply);
        Box::pin(async {})
    }

    fn finish<'a>(&'a mut self, reply: &'a Reply) -> BoxFuture<'a, anyhow::Result<()>> {
        self.print(reply);
        println!();
        Box::pin(async { Ok(()) })
    }

    fn notice<'a>(&'a mut self, notice: &'a Notice) -> BoxFuture<'a, anyhow::Result<()>> {
        println!("{}", messages::notice(notice));
        Box::pin(async { Ok(()) })
    }
}
