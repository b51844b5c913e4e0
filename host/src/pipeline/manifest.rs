//! `pipeline.toml`: which guests run, in what order, with which limits and settings.
//!
//! ```toml
//! fixtures = "fixtures"          # optional: default directory for `pipeline test`
//!
//! [[stage]]
//! name  = "persona"
//! guest = "guests/dist/persona.wasm"   # relative to this file's directory
//! memory_limit_mib = 64                # optional, overrides the default limits
//! timeout_ms = 1000
//! max_output_kib = 1024
//! [stage.config]                       # read by the guest through `host.config(key)`
//! system_prompt = "You are a concise assistant."
//! api_key = "${OPENWEATHER_KEY}"       # filled from the environment / .env at load
//! [stage.grants]                       # what the stage may reach; nothing by default
//! http = ["https://api.open-meteo.com"]
//! kv_kib = 64
//! ```
//!
//! A `${NAME}` in a config string is a secret: it comes from the environment (or `.env`),
//! never from this file, so the file can be shared; a missing one fails the load, naming
//! it. Secret values are never printed (`Debug` shows `${NAME}`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::error::LoadError;
use super::grants::{Grants, RawGrants};
use super::limits::{MAX_GUEST_MEMORY, StageLimits};

/// A parsed manifest with paths resolved against its directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub path: PathBuf,
    pub fixtures: Option<PathBuf>,
    pub stages: Vec<StageSpec>,
}

/// One `[[stage]]` entry.
#[derive(Clone, PartialEq)]
pub struct StageSpec {
    pub name: String,
    pub guest: PathBuf,
    pub limits: StageLimits,
    /// `[stage.config]`, every value as text (strings as written, others as TOML), with
    /// secrets filled in.
    pub config: BTreeMap<String, String>,
    /// Config values as written, for the keys whose value holds a secret.
    secrets: BTreeMap<String, String>,
    pub grants: Grants,
}

/// Everything but secret values: those show as written (`${NAME}`).
impl fmt::Debug for StageSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config: BTreeMap<&String, &String> = self
            .config
            .iter()
            .map(|(k, v)| (k, self.secrets.get(k).unwrap_or(v)))
            .collect();
        f.debug_struct("StageSpec")
            .field("name", &self.name)
            .field("guest", &self.guest)
            .field("limits", &self.limits)
            .field("config", &config)
            .field("grants", &self.grants)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    fixtures: Option<PathBuf>,
    #[serde(default)]
    stage: Vec<RawStage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: String,
    guest: PathBuf,
    memory_limit_mib: Option<u64>,
    timeout_ms: Option<u64>,
    max_output_kib: Option<u64>,
    #[serde(default)]
    config: toml::Table,
    #[serde(default)]
    grants: RawGrants,
}

impl Manifest {
    /// Reads and validates the manifest at `path`; stages without explicit limits get
    /// `defaults`.
    pub fn load(path: &Path, defaults: &StageLimits) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::ReadManifest {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text, defaults)
    }

    /// The guest files the manifest at `path` names, read without anything else (secrets
    /// need not be set): what `pipeline compile` compiles.
    pub fn guest_paths(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::ReadManifest {
            path: path.to_owned(),
            source,
        })?;
        let raw: RawManifest = toml::from_str(&text).map_err(|e| LoadError::InvalidManifest {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Ok(raw.stage.into_iter().map(|s| base.join(s.guest)).collect())
    }

    /// Parses manifest text as if it were read from `path`.
    pub fn parse(path: &Path, text: &str, defaults: &StageLimits) -> Result<Self, LoadError> {
        Self::parse_with_env(path, text, defaults, |name| std::env::var(name).ok())
    }

    /// [`Self::parse`], with secrets looked up by `env`.
    fn parse_with_env(
        path: &Path,
        text: &str,
        defaults: &StageLimits,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, LoadError> {
        let invalid = |message: String| LoadError::InvalidManifest {
            path: path.to_owned(),
            message,
        };
        let raw: RawManifest = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));

        let mut seen = std::collections::HashSet::new();
        let mut stages = Vec::with_capacity(raw.stage.len());
        for stage in raw.stage {
            if stage.name.trim().is_empty() {
                return Err(invalid("a stage has an empty name".into()));
            }
            if !seen.insert(stage.name.clone()) {
                return Err(invalid(format!(
                    "stage name '{}' is used twice",
                    stage.name
                )));
            }
            let in_stage = |m: String| invalid(format!("stage '{}': {m}", stage.name));
            let limits = stage_limits(&stage, defaults).map_err(in_stage)?;
            let grants = Grants::parse(stage.grants).map_err(in_stage)?;
            let mut config = BTreeMap::new();
            let mut secrets = BTreeMap::new();
            for (key, value) in stage.config {
                let written = config_text(value);
                let filled =
                    fill_secrets(&written, &env).map_err(|variable| LoadError::MissingSecret {
                        stage: stage.name.clone(),
                        variable,
                    })?;
                if filled != written {
                    secrets.insert(key.clone(), written);
                }
                config.insert(key, filled);
            }
            stages.push(StageSpec {
                guest: base.join(&stage.guest),
                config,
                secrets,
                name: stage.name,
                limits,
                grants,
            });
        }
        Ok(Self {
            path: path.to_owned(),
            fixtures: raw.fixtures.map(|f| base.join(f)),
            stages,
        })
    }

    /// Every file a reload depends on: the manifest and each guest.
    pub fn watched_files(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.path.as_path()).chain(self.stages.iter().map(|s| s.guest.as_path()))
    }
}

fn stage_limits(stage: &RawStage, defaults: &StageLimits) -> Result<StageLimits, String> {
    let positive = |value: Option<u64>, key: &str| match value {
        Some(0) => Err(format!("{key} must be greater than 0")),
        other => Ok(other),
    };
    let mut limits = defaults.clone();
    if let Some(mib) = positive(stage.memory_limit_mib, "memory_limit_mib")? {
        let max_mib = (MAX_GUEST_MEMORY >> 20) as u64;
        if mib > max_mib {
            return Err(format!("memory_limit_mib must be at most {max_mib}"));
        }
        limits.memory_bytes = mib << 20;
    }
    if let Some(ms) = positive(stage.timeout_ms, "timeout_ms")? {
        limits.timeout = Duration::from_millis(ms);
    }
    if let Some(kib) = positive(stage.max_output_kib, "max_output_kib")? {
        limits.max_output_bytes = usize::try_from(kib.saturating_mul(1024)).unwrap_or(usize::MAX);
    }
    Ok(limits)
}

/// `text` with every `${NAME}` replaced by `env(NAME)`; the first unset name is the error.
/// A `$` not followed by `{NAME}` stays as it is.
fn fill_secrets(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut filled = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let name_end = after.find('}').filter(|&end| {
            end > 0
                && after[..end]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
        filled.push_str(&rest[..start]);
        match name_end {
            Some(end) => {
                let name = &after[..end];
                filled.push_str(&env(name).ok_or_else(|| name.to_owned())?);
                rest = &after[end + 1..];
            }
            None => {
                filled.push_str("${");
                rest = after;
            }
        }
    }
    filled.push_str(rest);
    Ok(filled)
}

/// Strings pass through as written; other TOML values become their TOML text, so a guest
/// can parse `42`, `true` or `["a", "b"]` itself.
fn config_text(value: toml::Value) -> String {
    match value {
        toml::Value::String(s) => s,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, LoadError> {
        Manifest::parse(
            Path::new("conf/pipeline.toml"),
            text,
            &StageLimits::default(),
        )
    }

    #[test]
    fn stages_keep_order_and_resolve_paths_and_limits() {
        let m = parse(
            r#"
            fixtures = "fx"
            [[stage]]
            name = "a"
            guest = "g/a.wasm"
            timeout_ms = 250
            [stage.config]
            text = "hello"
            count = 3
            flag = true
            [[stage]]
            name = "b"
            guest = "/abs/b.wasm"
            memory_limit_mib = 8
            "#,
        )
        .unwrap();
        assert_eq!(m.fixtures, Some(PathBuf::from("conf/fx")));
        assert_eq!(m.stages[0].name, "a");
        assert_eq!(m.stages[0].guest, PathBuf::from("conf/g/a.wasm"));
        assert_eq!(m.stages[0].limits.timeout, Duration::from_millis(250));
        assert_eq!(m.stages[0].config["text"], "hello");
        assert_eq!(m.stages[0].config["count"], "3");
        assert_eq!(m.stages[0].config["flag"], "true");
        assert_eq!(m.stages[1].guest, PathBuf::from("/abs/b.wasm"));
        assert_eq!(m.stages[1].limits.memory_bytes, 8 << 20);
        assert_eq!(m.stages[1].limits.timeout, StageLimits::default().timeout);
    }

    #[test]
    fn problems_are_reported_with_the_file_and_stage() {
        let cases = [
            ("[[stage]]\nname = \"a\"", "missing field `guest`"),
            (
                "[[stage]]\nname = \"a\"\nguest = \"x\"\nmemory_limit_mb = 3",
                "unknown field `memory_limit_mb`",
            ),
            (
                "[[stage]]\nname = \"a\"\nguest = \"x\"\n[[stage]]\nname = \"a\"\nguest = \"y\"",
                "'a' is used twice",
            ),
            (
                "[[stage]]\nname = \"a\"\nguest = \"x\"\ntimeout_ms = 0",
                "stage 'a': timeout_ms must be greater than 0",
            ),
            (
                "[[stage]]\nname = \"a\"\nguest = \"x\"\nmemory_limit_mib = 1024",
                "stage 'a': memory_limit_mib must be at most 256",
            ),
            ("[[stage]\n", "conf/pipeline.toml"),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.contains("conf/pipeline.toml") && err.contains(expected),
                "{err}"
            );
        }
    }

    #[test]
    fn secrets_come_from_the_environment_and_never_show() {
        let text = r#"
            [[stage]]
            name = "weather"
            guest = "w.wasm"
            [stage.config]
            url = "https://api.example.org/?key=${API_KEY}&units=${UNITS}"
            price = "$5 ${ not a name }"
            [stage.grants]
            http = ["https://api.example.org"]
            kv_kib = 4
            "#;
        let env = |name: &str| match name {
            "API_KEY" => Some("s3cr3t".to_owned()),
            "UNITS" => Some("metric".to_owned()),
            _ => None,
        };
        let m = Manifest::parse_with_env(Path::new("p.toml"), text, &StageLimits::default(), env)
            .unwrap();
        let stage = &m.stages[0];
        assert_eq!(
            stage.config["url"],
            "https://api.example.org/?key=s3cr3t&units=metric"
        );
        assert_eq!(stage.config["price"], "$5 ${ not a name }");
        assert_eq!(stage.grants.kv_quota_bytes, Some(4096));
        let shown = format!("{stage:?}");
        assert!(
            !shown.contains("s3cr3t") && shown.contains("${API_KEY}"),
            "{shown}"
        );

        let err =
            Manifest::parse_with_env(Path::new("p.toml"), text, &StageLimits::default(), |_| None)
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("stage 'weather'") && err.contains("${API_KEY}") && err.contains(".env"),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_grant_names_the_stage() {
        let err = parse(
            "[[stage]]\nname = \"a\"\nguest = \"x\"\n[stage.grants]\nhttp = [\"example.org\"]",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("stage 'a': grants.http: \"example.org\" is not a URL"),
            "{err}"
        );
    }
}
