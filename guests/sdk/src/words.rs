//! Whether a message is for a tool stage: a word of it starts with one of the stage's
//! trigger words ("raining" has "rain", "train" has not) — `words` in its `[stage.config]`
//! (comma-separated), else the guest's own defaults.

/// A stage's trigger words, lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triggers(Vec<String>);

impl Triggers {
    /// The stage's configured `words`, or `defaults`.
    pub fn from_config(defaults: &[&str]) -> Self {
        Self::new(crate::config("words").as_deref(), defaults)
    }

    /// `configured` (comma-separated), or `defaults` when it is `None`.
    pub fn new(configured: Option<&str>, defaults: &[&str]) -> Self {
        Self(match configured {
            Some(list) => list
                .split(',')
                .map(|w| w.trim().to_lowercase())
                .filter(|w| !w.is_empty())
                .collect(),
            None => defaults.iter().map(|w| w.to_lowercase()).collect(),
        })
    }

    /// Whether a word of `text` starts with one of the triggers.
    pub fn in_text(&self, text: &str) -> bool {
        text.to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .any(|word| self.0.iter().any(|t| word.starts_with(t.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_must_start_with_a_trigger_and_config_replaces_the_defaults() {
        let defaults = Triggers::new(None, &["Rain", "погод"]);
        assert!(defaults.in_text("Is it raining?") && defaults.in_text("Какая погода?"));
        assert!(!defaults.in_text("Take the train"));
        let configured = Triggers::new(Some(" Umbrella, COAT ,"), &["rain"]);
        assert_eq!(configured, Triggers(vec!["umbrella".into(), "coat".into()]));
        assert!(configured.in_text("umbrella?") && !configured.in_text("rain?"));
    }
}
