//! The guest contract, one module per released WIT version (`wit/v*/`). Each module is the
//! whole of its version: its bindings, the conversions between its types and the host's
//! (`crate::prompt`), its host interfaces, and how its exports are called — offered to the
//! rest of the pipeline as a [`Version`] and as [`FormatExport`]/[`ShapeExport`] objects.
//! Nothing outside this folder names a version: a new WIT version is one more module here
//! and one more line in [`VERSIONS`]; older ones keep loading old guests.
//!
//! What every version shares is written once, as macros each version module invokes where
//! its own generated types are in scope (they are distinct types, the code is the same):
//! [`shared_conversions!`], [`chat_context_conversion!`] (the context grew fields),
//! [`structured_output_conversions!`] (from 0.2.0), [`host_interface!`], [`kv_interface!`]
//! (from 0.2.0) and [`stage_exports!`].

use futures_util::future::BoxFuture;
use wasmtime::component::{InstancePre, Linker};

use super::GuestEngine;
use super::error::StageError;
use super::sandbox::StageState;
use super::stage::{Outcome, Stage};
use crate::prompt::{ChatContext, Prompt, Reply};

/// Every released version, newest first: a component exporting roles of several versions
/// runs as the newest.
pub const VERSIONS: &[Version] = &[v0_3_0::VERSION, v0_2_0::VERSION, v0_1_0::VERSION];

/// One WIT version, as the pipeline uses it.
pub struct Version {
    /// `"0.3.0"`.
    pub name: &'static str,
    /// Adds the version's host interfaces (`host`, `kv`) to the linker.
    pub link: fn(&mut Linker<StageState>) -> wasmtime::Result<()>,
    /// What a component exports of this version.
    pub exports: fn(&InstancePre<StageState>) -> Exports,
}

/// A component's exports of one version.
pub struct Exports {
    pub formatter: Option<Box<dyn FormatExport>>,
    pub shaper: Option<Box<dyn ShapeExport>>,
}

/// A guest's `formatter` export, called with the host's types.
pub trait FormatExport: Send + Sync {
    fn format<'a>(
        &'a self,
        stage: &'a Stage,
        engine: &'a GuestEngine,
        ctx: &'a ChatContext,
        prompt: &'a Prompt,
    ) -> BoxFuture<'a, Result<Outcome, StageError>>;
}

/// A guest's `shaper` export, called with the host's types.
pub trait ShapeExport: Send + Sync {
    fn shape<'a>(
        &'a self,
        stage: &'a Stage,
        engine: &'a GuestEngine,
        ctx: &'a ChatContext,
        prompt: &'a Prompt,
        reply: &'a Reply,
        done: bool,
    ) -> BoxFuture<'a, Result<Reply, StageError>>;
}

/// A version's [`VERSION`](Version) and its [`FormatExport`] and [`ShapeExport`]: the
/// generated `formatter` and `shaper` exports called on a fresh instance of the stage.
/// Invoked in each version module, with its version name; the module provides
/// `prompt_from_guest` (what a formatter's prompt becomes in host types, given the prompt it
/// was called with).
macro_rules! stage_exports {
    ($name:literal) => {
        pub const VERSION: super::Version = super::Version {
            name: $name,
            link: |linker| {
                StageGuest::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |state| {
                    state
                })
            },
            exports: |pre| super::Exports {
                formatter: FormatterIndices::new(pre)
                    .ok()
                    .map(|indices| Box::new(Formatter(indices)) as Box<dyn super::FormatExport>),
                shaper: ShaperIndices::new(pre)
                    .ok()
                    .map(|indices| Box::new(Shaper(indices)) as Box<dyn super::ShapeExport>),
            },
        };

        struct Formatter(FormatterIndices);

        impl super::FormatExport for Formatter {
            fn format<'a>(
                &'a self,
                stage: &'a crate::pipeline::stage::Stage,
                engine: &'a crate::pipeline::GuestEngine,
                ctx: &'a crate::prompt::ChatContext,
                prompt: &'a crate::prompt::Prompt,
            ) -> futures_util::future::BoxFuture<
                'a,
                Result<crate::pipeline::Outcome, crate::pipeline::StageError>,
            > {
                Box::pin(async move {
                    let indices = self.0.clone();
                    let (guest_ctx, guest_prompt) =
                        (types::ChatContext::from(ctx), types::Prompt::from(prompt));
                    let outcome = stage
                        .call(engine, move |store, instance| {
                            Box::pin(async move {
                                indices
                                    .load(&mut *store, &instance)?
                                    .call_format(&mut *store, &guest_ctx, &guest_prompt)
                                    .await
                            })
                        })
                        .await?;
                    Ok(match outcome {
                        types::Outcome::Prompt(p) => {
                            crate::pipeline::Outcome::Prompt(prompt_from_guest(prompt, p))
                        }
                        types::Outcome::Reply(r) => crate::pipeline::Outcome::Reply(r.into()),
                        types::Outcome::Reject(reason) => crate::pipeline::Outcome::Reject(reason),
                    })
                })
            }
        }

        struct Shaper(ShaperIndices);

        impl super::ShapeExport for Shaper {
            fn shape<'a>(
                &'a self,
                stage: &'a crate::pipeline::stage::Stage,
                engine: &'a crate::pipeline::GuestEngine,
                ctx: &'a crate::prompt::ChatContext,
                prompt: &'a crate::prompt::Prompt,
                reply: &'a crate::prompt::Reply,
                done: bool,
            ) -> futures_util::future::BoxFuture<
                'a,
                Result<crate::prompt::Reply, crate::pipeline::StageError>,
            > {
                Box::pin(async move {
                    let indices = self.0.clone();
                    let (guest_ctx, guest_prompt, guest_reply) = (
                        types::ChatContext::from(ctx),
                        types::Prompt::from(prompt),
                        types::Reply::from(reply),
                    );
                    let shaped = stage
                        .call(engine, move |store, instance| {
                            Box::pin(async move {
                                indices
                                    .load(&mut *store, &instance)?
                                    .call_shape(
                                        &mut *store,
                                        &guest_ctx,
                                        &guest_prompt,
                                        &guest_reply,
                                        done,
                                    )
                                    .await
                            })
                        })
                        .await?;
                    Ok(shaped.into())
                })
            }
        }
    };
}

/// The `host` interface (`log`, `config`), the same in every version: the stage's own.
macro_rules! host_interface {
    () => {
        impl host::Host for crate::pipeline::sandbox::StageState {
            fn log(&mut self, level: host::Level, message: String) {
                let level = match level {
                    host::Level::Trace => tracing::Level::TRACE,
                    host::Level::Debug => tracing::Level::DEBUG,
                    host::Level::Info => tracing::Level::INFO,
                    host::Level::Warn => tracing::Level::WARN,
                    host::Level::Error => tracing::Level::ERROR,
                };
                self.host_log(level, &message);
            }

            fn config(&mut self, key: String) -> Option<String> {
                self.host_config(&key)
            }
        }

        impl types::Host for crate::pipeline::sandbox::StageState {}
    };
}

/// The `kv` interface (0.2.0 on), the same in each version: the stage's store.
macro_rules! kv_interface {
    () => {
        impl kv::Host for crate::pipeline::sandbox::StageState {
            async fn get(&mut self, key: String) -> Result<Option<String>, kv::KvError> {
                self.guest_kv().get(key).await.map_err(Into::into)
            }

            async fn set(&mut self, key: String, value: String) -> Result<(), kv::KvError> {
                self.guest_kv().set(key, value).await.map_err(Into::into)
            }

            async fn delete(&mut self, key: String) -> Result<(), kv::KvError> {
                self.guest_kv().delete(key).await.map_err(Into::into)
            }

            async fn keys(&mut self, prefix: String) -> Result<Vec<String>, kv::KvError> {
                self.guest_kv().keys(prefix).await.map_err(Into::into)
            }
        }

        impl From<crate::pipeline::kv::KvError> for kv::KvError {
            fn from(error: crate::pipeline::kv::KvError) -> Self {
                use crate::pipeline::kv::KvError;
                match error {
                    KvError::NotGranted => Self::NotGranted,
                    KvError::QuotaExceeded(quota) => Self::QuotaExceeded(quota),
                    KvError::Unavailable(why) => Self::Unavailable(why),
                }
            }
        }
    };
}

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
                    chat_id: $ctx.chat_id.0,
                    user_id: $ctx.user_id.0,
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
/// for the versions since 0.2.0 (the `types` in scope where invoked), and the prompt a
/// formatter returns, taken as it is; 0.1.0 converts its options without it.
macro_rules! structured_output_conversions {
    () => {
        /// A formatter's prompt in host types: all of it is the guest's.
        fn prompt_from_guest(
            _called_with: &crate::prompt::Prompt,
            prompt: types::Prompt,
        ) -> crate::prompt::Prompt {
            prompt.into()
        }

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

// After the macros: `macro_rules!` are in scope from where they are defined on.
pub mod v0_1_0;
pub mod v0_2_0;
pub mod v0_3_0;
