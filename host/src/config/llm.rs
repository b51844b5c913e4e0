//! Settings for the model servers and generation: the primary (`LLM_*`, or the older
//! `OLLAMA_URL` / `OLLAMA_MODEL`), an optional fallback (`LLM_FALLBACK_*`), the waits and
//! the generation options.

use std::time::Duration;

use super::Env;
use crate::llm::{Api, BackendSettings, FallbackSettings, LlmConfig, Timeouts};
use crate::prompt::GenerationOptions;
use crate::secret::Secret;

/// Ollama's own address on the machine it runs on.
const OLLAMA_URL: &str = "http://127.0.0.1:11434";
/// What the Pi runs.
const PI_MODEL: &str = "gemma2:2b";

/// `LLM_MODEL`, else `OLLAMA_MODEL`: the model prompts name unless a chat chose another.
pub fn default_model(env: &Env) -> String {
    env.get("LLM_MODEL")
        .or_else(|| env.get("OLLAMA_MODEL"))
        .unwrap_or_else(|| PI_MODEL.to_owned())
}

/// `LLM_*` and the older `OLLAMA_*`: the model servers and generation settings.
pub fn from_env(env: &mut Env) -> LlmConfig {
    let api = env.parse(
        "LLM_API",
        Api::Ollama,
        "ollama or openai (llama-server, vLLM, any /v1 server)",
        |_| true,
    );
    let primary = BackendSettings {
        api,
        url: primary_url(env, api),
        api_key: env.get("LLM_API_KEY").map(Secret::new),
        model: default_model(env),
    };
    let fallback = fallback(env);
    LlmConfig {
        primary,
        fallback,
        timeouts: timeouts(env),
        keep_alive: Some(env.string("OLLAMA_KEEP_ALIVE", "30m")),
        options: options(env),
    }
}

/// Which variable names the primary's address when both the new and the old one are set
/// (`doctor` says so).
pub fn overridden(env: &Env) -> Vec<&'static str> {
    [("LLM_URL", "OLLAMA_URL"), ("LLM_MODEL", "OLLAMA_MODEL")]
        .into_iter()
        .filter(|(new, old)| env.get(new).is_some() && env.get(old).is_some())
        .map(|(_, old)| old)
        .collect()
}

/// `LLM_URL`; for Ollama, `OLLAMA_URL` or Ollama's default when it is unset.
fn primary_url(env: &mut Env, api: Api) -> String {
    if let Some(url) = url(env, "LLM_URL") {
        return url;
    }
    match api {
        Api::Ollama => url(env, "OLLAMA_URL").unwrap_or_else(|| OLLAMA_URL.to_owned()),
        Api::OpenAi => {
            env.problem(
                "LLM_URL",
                "the server's address with /v1, e.g. http://gpu-box:8000/v1 (LLM_API=openai)",
            );
            String::new()
        }
    }
}

fn fallback(env: &mut Env) -> Option<FallbackSettings> {
    let url = url(env, "LLM_FALLBACK_URL")?;
    let api = env.parse("LLM_FALLBACK_API", Api::Ollama, "ollama or openai", |_| {
        true
    });
    let model = match (env.get("LLM_FALLBACK_MODEL"), api) {
        (Some(model), _) => model,
        (None, Api::Ollama) => PI_MODEL.to_owned(),
        (None, Api::OpenAi) => {
            env.problem(
                "LLM_FALLBACK_MODEL",
                "the fallback server's model, as its /models lists it",
            );
            String::new()
        }
    };
    Some(FallbackSettings {
        backend: BackendSettings {
            api,
            url,
            api_key: env.get("LLM_FALLBACK_API_KEY").map(Secret::new),
            model,
        },
        concurrency: env.parse(
            "LLM_FALLBACK_CONCURRENCY",
            1,
            "a whole number > 0 (1 for a Pi)",
            |v: &usize| *v > 0,
        ),
        probe_every: Duration::from_secs(env.parse(
            "LLM_PROBE_SECS",
            30,
            "whole seconds > 0, e.g. 30",
            |v: &u64| *v > 0,
        )),
    })
}

/// An http(s) URL without its trailing slash.
fn url(env: &mut Env, name: &'static str) -> Option<String> {
    let url = env.optional(
        name,
        "an http(s) URL, e.g. http://127.0.0.1:11434 or http://gpu-box:8000/v1",
        |u: &reqwest::Url| matches!(u.scheme(), "http" | "https"),
    )?;
    Some(url.as_str().trim_end_matches('/').to_owned())
}

fn timeouts(env: &mut Env) -> Timeouts {
    let defaults = Timeouts::default();
    let mut secs = |name: &'static str, default: Duration| {
        Duration::from_secs(
            env.parse(name, default.as_secs(), "whole seconds > 0", |v: &u64| {
                *v > 0
            }),
        )
    };
    Timeouts {
        connect: secs("OLLAMA_CONNECT_TIMEOUT_SECS", defaults.connect),
        first_token: secs("OLLAMA_FIRST_TOKEN_TIMEOUT_SECS", defaults.first_token),
        idle: secs("OLLAMA_IDLE_TIMEOUT_SECS", defaults.idle),
        total: secs("OLLAMA_TOTAL_TIMEOUT_SECS", defaults.total),
    }
}

fn options(env: &mut Env) -> GenerationOptions {
    GenerationOptions {
        temperature: env.optional(
            "OLLAMA_TEMPERATURE",
            "a number from 0 to 2, e.g. 0.7",
            |v: &f32| (0.0..=2.0).contains(v),
        ),
        top_p: env.optional(
            "OLLAMA_TOP_P",
            "a number from 0 to 1, e.g. 0.9",
            |v: &f32| (0.0..=1.0).contains(v),
        ),
        top_k: env.optional("OLLAMA_TOP_K", "a whole number > 0, e.g. 40", |v: &u32| {
            *v > 0
        }),
        num_ctx: context_size(env),
        num_predict: env.optional(
            "OLLAMA_NUM_PREDICT",
            "a whole number of tokens, or -1 for no limit",
            |v: &i32| *v >= -1,
        ),
        ..GenerationOptions::default()
    }
}

/// `OLLAMA_NUM_CTX`: tokens of context per request (what a Pi affords: 2048), or `auto` for
/// the model's own length (`None`).
fn context_size(env: &mut Env) -> Option<u32> {
    if env
        .get("OLLAMA_NUM_CTX")
        .is_some_and(|v| v.eq_ignore_ascii_case("auto"))
    {
        return None;
    }
    Some(env.parse(
        "OLLAMA_NUM_CTX",
        2048,
        "a whole number of tokens ≥ 256, e.g. 2048, or auto (the model's own length)",
        |v: &u32| *v >= 256,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::env;

    #[test]
    fn ollama_on_the_pi_is_the_default_and_the_old_names_still_work() {
        let mut e = env(&[]);
        let config = from_env(&mut e);
        e.finish().unwrap();
        assert_eq!(config.primary.api, Api::Ollama);
        assert_eq!(config.primary.url, OLLAMA_URL);
        assert_eq!(config.primary.model, PI_MODEL);
        assert_eq!(config.fallback, None);

        let mut e = env(&[
            ("OLLAMA_URL", "http://pi.local:11434/"),
            ("OLLAMA_MODEL", "llama3.2:1b"),
        ]);
        let config = from_env(&mut e);
        assert_eq!(config.primary.url, "http://pi.local:11434");
        assert_eq!(config.primary.model, "llama3.2:1b");
        assert!(overridden(&e).is_empty());
    }

    #[test]
    fn the_new_names_win_over_the_old_ones() {
        let mut e = env(&[
            ("LLM_URL", "http://other:11434"),
            ("OLLAMA_URL", "http://pi.local:11434"),
            ("LLM_MODEL", "qwen2.5:3b"),
            ("OLLAMA_MODEL", "gemma2:2b"),
        ]);
        let config = from_env(&mut e);
        assert_eq!(config.primary.url, "http://other:11434");
        assert_eq!(config.primary.model, "qwen2.5:3b");
        assert_eq!(overridden(&e), ["OLLAMA_URL", "OLLAMA_MODEL"]);
    }

    #[test]
    fn an_openai_server_with_the_pi_as_fallback() {
        let mut e = env(&[
            ("LLM_API", "openai"),
            ("LLM_URL", "http://gpu-box:8000/v1"),
            ("LLM_API_KEY", "sk-local-0123456789"),
            ("LLM_MODEL", "qwen2.5-7b-instruct"),
            ("LLM_FALLBACK_URL", "http://127.0.0.1:11434"),
        ]);
        let config = from_env(&mut e);
        e.finish().unwrap();
        assert_eq!(config.primary.api, Api::OpenAi);
        assert_eq!(
            config.primary.api_key,
            Some(Secret::new("sk-local-0123456789"))
        );
        let fallback = config.fallback.unwrap();
        assert_eq!(fallback.backend.api, Api::Ollama);
        assert_eq!(fallback.backend.model, PI_MODEL);
        assert_eq!(fallback.concurrency, 1);
        assert_eq!(fallback.probe_every, Duration::from_secs(30));
    }

    #[test]
    fn an_openai_server_needs_its_url_and_a_known_api() {
        let mut e = env(&[("LLM_API", "openai")]);
        from_env(&mut e);
        let message = e.finish().unwrap_err().to_string();
        assert!(message.contains("LLM_URL"), "{message}");
        let mut e = env(&[("LLM_API", "anthropic")]);
        from_env(&mut e);
        let message = e.finish().unwrap_err().to_string();
        assert!(message.contains("LLM_API"), "{message}");
    }
}
