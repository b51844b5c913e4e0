//! Typed settings from the environment and `.env` (the real environment wins). Every
//! problem is collected and reported at once, and no value is ever echoed back, since some
//! are secrets.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::pipeline::StageLimits;

/// Settings for the guest pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    /// `PIPELINE_MANIFEST`
    pub manifest: PathBuf,
    /// `DATA_DIR`: the compile cache lives in `DATA_DIR/cache`.
    pub data_dir: PathBuf,
    /// `GUEST_MEMORY_LIMIT_MIB`, `GUEST_TIMEOUT_MS`, `GUEST_MAX_OUTPUT_KIB`: limits for
    /// stages that set none in the manifest.
    pub default_limits: StageLimits,
    /// `OLLAMA_MODEL`: the model named in prompts.
    pub model: String,
}

impl PipelineConfig {
    pub fn cache_dir(&self) -> PathBuf {
        self.data_dir.join("cache")
    }

    pub fn from_env(env: &mut Env) -> Self {
        let defaults = StageLimits::default();
        let memory_mib = env.parse(
            "GUEST_MEMORY_LIMIT_MIB",
            defaults.memory_mib(),
            "a whole number of MiB, e.g. 64",
            |v| *v > 0,
        );
        let timeout_ms = env.parse(
            "GUEST_TIMEOUT_MS",
            defaults.timeout.as_millis() as u64,
            "milliseconds, e.g. 1000",
            |v| *v > 0,
        );
        let output_kib = env.parse(
            "GUEST_MAX_OUTPUT_KIB",
            (defaults.max_output_bytes / 1024) as u64,
            "a whole number of KiB, e.g. 1024",
            |v| *v > 0,
        );
        Self {
            manifest: env.path("PIPELINE_MANIFEST", "pipeline.toml"),
            data_dir: env.path("DATA_DIR", "data"),
            default_limits: StageLimits {
                memory_bytes: memory_mib.saturating_mul(1 << 20),
                timeout: Duration::from_millis(timeout_ms),
                max_output_bytes: usize::try_from(output_kib.saturating_mul(1024))
                    .unwrap_or(usize::MAX),
            },
            model: env.string("OLLAMA_MODEL", "gemma2:2b"),
        }
    }
}

/// One invalid variable: its name and what was expected (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub variable: &'static str,
    pub expected: String,
}

/// Every invalid variable at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError(pub Vec<Problem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration (set these in .env or the environment; see .env.example):"
        )?;
        for p in &self.0 {
            writeln!(f, "  {}: expected {}", p.variable, p.expected)?;
        }
        Ok(())
    }
}

/// Finds a variable's raw value by name.
type Lookup = dyn Fn(&str) -> Option<String>;

/// Reads variables through a lookup function and records problems instead of failing
/// on the first one.
pub struct Env {
    lookup: Box<Lookup>,
    problems: Vec<Problem>,
}

impl Env {
    /// The process environment, after loading `.env` from the working directory if present
    /// (variables already set are not overridden).
    pub fn from_process() -> Self {
        let _ = dotenvy::dotenv();
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String> + 'static) -> Self {
        Self {
            lookup: Box::new(lookup),
            problems: Vec::new(),
        }
    }

    /// A set, non-blank value, trimmed.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_owned())
    }

    pub fn path(&self, name: &str, default: &str) -> PathBuf {
        PathBuf::from(self.string(name, default))
    }

    /// Parses `name` as `T`, falling back to `default` when unset; a value that does not
    /// parse or fails `valid` is recorded as a problem described by `expected`.
    pub fn parse<T: FromStr>(
        &mut self,
        name: &'static str,
        default: T,
        expected: &str,
        valid: impl Fn(&T) -> bool,
    ) -> T {
        match self.get(name) {
            None => default,
            Some(text) => match text.parse::<T>() {
                Ok(value) if valid(&value) => value,
                _ => {
                    self.problem(name, expected);
                    default
                }
            },
        }
    }

    pub fn problem(&mut self, variable: &'static str, expected: impl Into<String>) {
        self.problems.push(Problem {
            variable,
            expected: expected.into(),
        });
    }

    /// Ends reading: the collected problems, if any.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(self.problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> Env {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(move |k| map.get(k).cloned())
    }

    #[test]
    fn defaults_apply_when_unset() {
        let mut e = env(&[]);
        let config = PipelineConfig::from_env(&mut e);
        e.finish().unwrap();
        assert_eq!(config.manifest, PathBuf::from("pipeline.toml"));
        assert_eq!(config.cache_dir(), PathBuf::from("data/cache"));
        assert_eq!(config.default_limits, StageLimits::default());
        assert_eq!(config.model, "gemma2:2b");
    }

    #[test]
    fn every_bad_variable_is_reported_without_its_value() {
        let mut e = env(&[
            ("GUEST_MEMORY_LIMIT_MIB", "lots"),
            ("GUEST_TIMEOUT_MS", "0"),
            ("GUEST_MAX_OUTPUT_KIB", "secret-ish"),
        ]);
        PipelineConfig::from_env(&mut e);
        let message = e.finish().unwrap_err().to_string();
        for name in [
            "GUEST_MEMORY_LIMIT_MIB",
            "GUEST_TIMEOUT_MS",
            "GUEST_MAX_OUTPUT_KIB",
        ] {
            assert!(message.contains(name), "{message}");
        }
        assert!(
            !message.contains("lots") && !message.contains("secret-ish"),
            "{message}"
        );
    }
}
