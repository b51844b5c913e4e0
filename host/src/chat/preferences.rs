//! Each chat's own choices: its model (`/model`) and its time zone (`/timezone`, set by
//! the scheduler with its tasks), with the configured defaults for chats that chose none.

use std::sync::Arc;

use crate::ids::ChatId;
use crate::llm::{LlmBackend, LlmError, ModelInfo, same_model};
use crate::store::{ChatSettings, StoreError};
use crate::zone::Zone;

/// A chat's model and the ones it could switch to, for `/model`.
#[derive(Debug, Clone)]
pub struct ModelChoice {
    pub current: String,
    /// Installed on the LLM server, or why they could not be listed.
    pub installed: Result<Vec<ModelInfo>, LlmError>,
}

impl ModelChoice {
    /// Whether `model` is the chat's (`gemma2` is `gemma2:latest`).
    pub fn is_current(&self, model: &ModelInfo) -> bool {
        same_model(&model.name, &self.current)
    }
}

/// What asking for another model did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSwitch {
    /// The chat uses `model` from now on.
    Switched { model: String },
    /// The chat went back to the default, `model`.
    BackToDefault { model: String },
    /// Not installed on the server; nothing changed.
    NotInstalled { model: String },
    /// The server could not be asked; nothing changed.
    CannotCheck(LlmError),
}

/// Per-chat model and time zone.
pub struct Preferences {
    settings: ChatSettings,
    llm: Arc<dyn LlmBackend>,
    default_model: String,
    default_zone: Zone,
}

impl Preferences {
    pub fn new(
        settings: ChatSettings,
        llm: Arc<dyn LlmBackend>,
        default_model: String,
        default_zone: Zone,
    ) -> Self {
        Self {
            settings,
            llm,
            default_model,
            default_zone,
        }
    }

    /// The chat's model: its own choice or the default.
    pub async fn model(&self, chat_id: ChatId) -> Result<String, StoreError> {
        let chosen = self.settings.model(chat_id).await?;
        Ok(chosen.unwrap_or_else(|| self.default_model.clone()))
    }

    pub fn default_model(&self) -> &str {
        &self.default_model
    }

    /// The chat's model and the models installed on the server.
    pub async fn models(&self, chat_id: ChatId) -> Result<ModelChoice, StoreError> {
        Ok(ModelChoice {
            current: self.model(chat_id).await?,
            installed: self.llm.list_models().await,
        })
    }

    /// Switches the chat to `model` if the server has it; `None` goes back to the default.
    pub async fn set_model(
        &self,
        chat_id: ChatId,
        model: Option<&str>,
    ) -> Result<ModelSwitch, StoreError> {
        let Some(model) = model else {
            self.settings.set_model(chat_id, None).await?;
            return Ok(ModelSwitch::BackToDefault {
                model: self.default_model.clone(),
            });
        };
        let model = model.to_owned();
        match self.llm.list_models().await {
            Err(e) => Ok(ModelSwitch::CannotCheck(e)),
            Ok(installed) if !installed.iter().any(|m| same_model(&m.name, &model)) => {
                Ok(ModelSwitch::NotInstalled { model })
            }
            Ok(_) => {
                self.settings
                    .set_model(chat_id, Some(model.clone()))
                    .await?;
                Ok(ModelSwitch::Switched { model })
            }
        }
    }

    /// The chat's time zone: its own choice or the default (`TIMEZONE`). A database that
    /// cannot be read, or holds a zone this build does not know, gives the default — and
    /// says so in the log.
    pub async fn time_zone(&self, chat_id: ChatId) -> Zone {
        match self.settings.time_zone(chat_id).await {
            Ok(None) => self.default_zone.clone(),
            Ok(Some(name)) => Zone::parse(&name).unwrap_or_else(|e| {
                tracing::warn!(%chat_id, "the chat's stored time zone is unusable, using the default: {e}");
                self.default_zone.clone()
            }),
            Err(e) => {
                tracing::warn!(%chat_id, "cannot read the chat's time zone, using the default: {e}");
                self.default_zone.clone()
            }
        }
    }

    /// `TIMEZONE`, in which the dashboard counts "today".
    pub fn default_zone(&self) -> &Zone {
        &self.default_zone
    }
}
