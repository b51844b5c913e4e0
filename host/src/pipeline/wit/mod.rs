//! Generated bindings, one module per released WIT version (`wit/v*/`), each with the
//! conversions between its types and the host's own (`crate::prompt`). A new WIT version
//! gets a new module here; older ones keep loading old guests.
//!
//! The types a version did not change convert the same way in every version: they are
//! written once, in [`shared_conversions!`], and each version module invokes it next to
//! the conversions of what it changed. A type that grew fields is written once too, as a
//! macro over what the versions have in common that each version completes with its own
//! fields: the chat context ([`chat_context_conversion!`]) and the options with structured
//! output ([`structured_output_conversions!`], from 0.2.0).

/// Conversions between a version's `types` (in scope where invoked) and `crate::prompt`
/// for the types every version shares: role, text format, chat message, reply, and the
/// prompt around the version's own options.
macro_rules! shared_conversions {
    () => {
        impl From<types::Role> for crate::prompt::Role {
            fn from(role: types::Role) -> Self {
                match role {
                    types::Role::System => Self::System,
                    types::Role::User => Self::User,
                    types::Role::Assistant => Self::Assistant,
                }
            }
        }

        impl From<crate::prompt::Role> for types::Role {
            fn from(role: crate::prompt::Role) -> Self {
                match role {
                    crate::prompt::Role::System => Self::System,
                    crate::prompt::Role::User => Self::User,
                    crate::prompt::Role::Assistant => Self::Assistant,
                }
            }
        }

        impl From<types::TextFormat> for crate::prompt::TextFormat {
            fn from(format: types::TextFormat) -> Self {
                match format {
                    types::TextFormat::Plain => Self::Plain,
                    types::TextFormat::Html => Self::Html,
                }
            }
        }

        impl From<crate::prompt::TextFormat> for types::TextFormat {
            fn from(format: crate::prompt::TextFormat) -> Self {
                match format {
                    crate::prompt::TextFormat::Plain => Self::Plain,
                    crate::prompt::TextFormat::Html => Self::Html,
                }
            }
        }

        impl From<&crate::prompt::ChatMessage> for types::ChatMessage {
            fn from(m: &crate::prompt::ChatMessage) -> Self {
                Self {
                    role: m.role.into(),
                    content: m.content.clone(),
                }
            }
        }

        impl From<types::ChatMessage> for crate::prompt::ChatMessage {
            fn from(m: types::ChatMessage) -> Self {
                Self {
                    role: m.role.into(),
                    content: m.content,
                }
            }
        }

        impl From<&crate::prompt::Prompt> for types::Prompt {
            fn from(p: &crate::prompt::Prompt) -> Self {
                Self {
                    model: p.model.clone(),
                    messages: p.messages.iter().map(Into::into).collect(),
                    options: (&p.options).into(),
                }
            }
        }

        impl From<types::Prompt> for crate::prompt::Prompt {
            fn from(p: types::Prompt) -> Self {
                Self {
                    model: p.model,
                    messages: p.messages.into_iter().map(Into::into).collect(),
                    options: p.options.into(),
                }
            }
        }

        impl From<&crate::prompt::Reply> for types::Reply {
            fn from(r: &crate::prompt::Reply) -> Self {
                Self {
                    text: r.text.clone(),
                    format: r.format.into(),
                }
            }
        }

        impl From<types::Reply> for crate::prompt::Reply {
            fn from(r: types::Reply) -> Self {
                Self {
                    text: r.text,
                    format: r.format.into(),
                }
            }
        }
    };
}

/// `From<&crate::prompt::ChatContext>` for a version's `types::ChatContext` (in scope where
/// invoked): the fields of 0.1.0, which every version has, plus the fields the version
/// added, each given as `field: value` computed from the host context named by `|ctx|`.
/// Without arguments, only the fields of 0.1.0: an older guest never sees what it does not
/// know (the scheduler's run, the time zone).
macro_rules! chat_context_conversion {
    () => {
        chat_context_conversion!(|ctx| {});
    };
    (|$ctx:ident| { $($field:ident: $value:expr),* $(,)? }) => {
        impl From<&crate::prompt::ChatContext> for types::ChatContext {
            fn from($ctx: &crate::prompt::ChatContext) -> Self {
                Self {
                    chat_id: $ctx.chat_id,
                    user_id: $ctx.user_id,
                    user_name: $ctx.user_name.clone(),
                    language: $ctx.language.clone(),
                    is_group: $ctx.is_group,
                    unix_ms: $ctx.unix_ms,
                    $($field: $value,)*
                }
            }
        }
    };
}

/// Conversions of structured output (`response-format`) and of the options that carry it,
/// for the versions since 0.2.0 (the `types` in scope where invoked); 0.1.0 converts its
/// options without it.
macro_rules! structured_output_conversions {
    () => {
        impl From<&crate::prompt::ResponseFormat> for types::ResponseFormat {
            fn from(format: &crate::prompt::ResponseFormat) -> Self {
                match format {
                    crate::prompt::ResponseFormat::Json => Self::Json,
                    crate::prompt::ResponseFormat::Schema(schema) => Self::Schema(schema.clone()),
                }
            }
        }

        impl From<types::ResponseFormat> for crate::prompt::ResponseFormat {
            fn from(format: types::ResponseFormat) -> Self {
                match format {
                    types::ResponseFormat::Json => Self::Json,
                    types::ResponseFormat::Schema(schema) => Self::Schema(schema),
                }
            }
        }

        impl From<&crate::prompt::GenerationOptions> for types::Options {
            fn from(o: &crate::prompt::GenerationOptions) -> Self {
                Self {
                    temperature: o.temperature,
                    top_p: o.top_p,
                    top_k: o.top_k,
                    num_predict: o.num_predict,
                    num_ctx: o.num_ctx,
                    seed: o.seed,
                    stop: o.stop.clone(),
                    format: o.format.as_ref().map(Into::into),
                }
            }
        }

        impl From<types::Options> for crate::prompt::GenerationOptions {
            fn from(o: types::Options) -> Self {
                let types::Options {
                    temperature,
                    top_p,
                    top_k,
                    num_predict,
                    num_ctx,
                    seed,
                    stop,
                    format,
                } = o;
                Self {
                    temperature,
                    top_p,
                    top_k,
                    num_predict,
                    num_ctx,
                    seed,
                    stop,
                    format: format.map(Into::into),
                }
            }
        }
    };
}

pub mod v0_1_0;
pub mod v0_2_0;
pub mod v0_3_0;
