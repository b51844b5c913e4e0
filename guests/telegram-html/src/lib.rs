//! `telegram-html` shaper: renders the LLM's Markdown as Telegram HTML, on streamed
//! partials and on the final reply alike (the output is well-formed either way).

mod render;

pub use render::markdown_to_telegram_html;

use pi_agent_guest::{ChatContext, Prompt, Reply, Shaper, TextFormat};

struct TelegramHtml;

impl Shaper for TelegramHtml {
    fn shape(_ctx: ChatContext, _prompt: Prompt, response: Reply, _done: bool) -> Reply {
        match response.format {
            // An earlier shaper already produced HTML: leave it alone.
            TextFormat::Html => response,
            TextFormat::Plain => Reply::html(markdown_to_telegram_html(&response.text)),
        }
    }
}

pi_agent_guest::export_shaper!(TelegramHtml);
