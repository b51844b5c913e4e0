//! Bindings for `pi-agent:pipeline@0.1.0` and conversions to and from `crate::prompt`.

use crate::prompt;

wasmtime::component::bindgen!({
    path: "../wit/v0.1.0",
    world: "stage-guest",
    // Guest calls are async so that a call can be dropped at its deadline wherever the
    // guest is, even blocked in a WASI call; the host functions themselves never wait.
    exports: { default: async },
});

pub use self::pi_agent::pipeline::host;
pub use self::pi_agent::pipeline::types;
pub use exports::pi_agent::pipeline::formatter::GuestIndices as FormatterIndices;
pub use exports::pi_agent::pipeline::shaper::GuestIndices as ShaperIndices;

impl From<types::Role> for prompt::Role {
    fn from(role: types::Role) -> Self {
        match role {
            types::Role::System => Self::System,
            types::Role::User => Self::User,
            types::Role::Assistant => Self::Assistant,
        }
    }
}

impl From<prompt::Role> for types::Role {
    fn from(role: prompt::Role) -> Self {
        match role {
            prompt::Role::System => Self::System,
            prompt::Role::User => Self::User,
            prompt::Role::Assistant => Self::Assistant,
        }
    }
}

impl From<types::TextFormat> for prompt::TextFormat {
    fn from(format: types::TextFormat) -> Self {
        match format {
            types::TextFormat::Plain => Self::Plain,
            types::TextFormat::Html => Self::Html,
        }
    }
}

impl From<prompt::TextFormat> for types::TextFormat {
    fn from(format: prompt::TextFormat) -> Self {
        match format {
            prompt::TextFormat::Plain => Self::Plain,
            prompt::TextFormat::Html => Self::Html,
        }
    }
}

impl From<&prompt::ChatContext> for types::ChatContext {
    fn from(ctx: &prompt::ChatContext) -> Self {
        Self {
            chat_id: ctx.chat_id,
            user_id: ctx.user_id,
            user_name: ctx.user_name.clone(),
            language: ctx.language.clone(),
            is_group: ctx.is_group,
            unix_ms: ctx.unix_ms,
        }
    }
}

impl From<&prompt::ChatMessage> for types::ChatMessage {
    fn from(m: &prompt::ChatMessage) -> Self {
        Self {
            role: m.role.into(),
            content: m.content.clone(),
        }
    }
}

impl From<types::ChatMessage> for prompt::ChatMessage {
    fn from(m: types::ChatMessage) -> Self {
        Self {
            role: m.role.into(),
            content: m.content,
        }
    }
}

impl From<&prompt::GenerationOptions> for types::Options {
    fn from(o: &prompt::GenerationOptions) -> Self {
        Self {
            temperature: o.temperature,
            top_p: o.top_p,
            top_k: o.top_k,
            num_predict: o.num_predict,
            num_ctx: o.num_ctx,
            seed: o.seed,
            stop: o.stop.clone(),
        }
    }
}

impl From<types::Options> for prompt::GenerationOptions {
    fn from(o: types::Options) -> Self {
        let types::Options {
            temperature,
            top_p,
            top_k,
            num_predict,
            num_ctx,
            seed,
            stop,
        } = o;
        Self {
            temperature,
            top_p,
            top_k,
            num_predict,
            num_ctx,
            seed,
            stop,
        }
    }
}

impl From<&prompt::Prompt> for types::Prompt {
    fn from(p: &prompt::Prompt) -> Self {
        Self {
            model: p.model.clone(),
            messages: p.messages.iter().map(Into::into).collect(),
            options: (&p.options).into(),
        }
    }
}

impl From<types::Prompt> for prompt::Prompt {
    fn from(p: types::Prompt) -> Self {
        Self {
            model: p.model,
            messages: p.messages.into_iter().map(Into::into).collect(),
            options: p.options.into(),
        }
    }
}

impl From<&prompt::Reply> for types::Reply {
    fn from(r: &prompt::Reply) -> Self {
        Self {
            text: r.text.clone(),
            format: r.format.into(),
        }
    }
}

impl From<types::Reply> for prompt::Reply {
    fn from(r: types::Reply) -> Self {
        Self {
            text: r.text,
            format: r.format.into(),
        }
    }
}
