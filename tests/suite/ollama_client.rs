//! The Ollama client against the fake Ollama server: streaming, errors, timeouts, cancellation.

use std::time::Duration;

use futures_util::StreamExt;
use pi_agent::llm::{
    Api, GenerationStats, LlmBackend, LlmError, OllamaClient, OllamaSettings, ReplyEvent,
    ReplyStream, Timeouts,
};
use pi_agent::prompt::{ChatMessage, GenerationOptions, Prompt, Role};
use pi_agent::telegram::messages;
use pi_agent_tests::fake_ollama::{DEFAULT_MODEL, FakeOllama, Script, unused_url};
use serde_json::json;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn client(url: String) -> OllamaClient {
    client_with(OllamaSettings {
        base_url: url,
        ..OllamaSettings::default()
    })
}

fn client_with(settings: OllamaSettings) -> OllamaClient {
    OllamaClient::new(settings).expect("HTTP client")
}

fn prompt(text: &str) -> Prompt {
    Prompt {
        model: DEFAULT_MODEL.to_owned(),
        messages: vec![ChatMessage::new(Role::User, text)],
        options: GenerationOptions::default(),
    }
}

/// Reads the whole stream: the deltas joined, and how it ended.
async fn drain(mut stream: ReplyStream) -> (Vec<String>, Result<GenerationStats, LlmError>) {
    let mut deltas = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(ReplyEvent::Delta(text)) => deltas.push(text),
            Ok(ReplyEvent::FellBack { .. }) => panic!("Ollama itself never falls back"),
            Ok(ReplyEvent::Done(stats)) => {
                assert!(stream.next().await.is_none(), "nothing after Done");
                return (deltas, Ok(stats));
            }
            Err(error) => {
                assert!(stream.next().await.is_none(), "nothing after an error");
                return (deltas, Err(error));
            }
        }
    }
    panic!("the stream ended without Done or an error");
}

#[tokio::test]
async fn streams_deltas_then_done_with_stats() {
    let ollama = FakeOllama::start().await;
    let text = "Hello there, Pi 👋 — grüß dich";
    ollama.push_script(Script::reply(text).with_token_delay(ms(5)));

    let stream = client(ollama.url())
        .chat(&prompt("hi"))
        .await
        .expect("chat starts");
    let (deltas, end) = drain(stream).await;

    assert_eq!(deltas.concat(), text);
    assert_eq!(deltas.len(), 7, "{deltas:?}");
    let stats = end.expect("Done");
    assert_eq!(stats.eval_count, 7);
    assert_eq!(stats.eval_duration, ms(700));
    assert_eq!(stats.prompt_eval_count, 1);
    assert_eq!(stats.tokens_per_second(), Some(10.0));
    assert_eq!(ollama.cancelled_streams(), 0);
}

#[tokio::test]
async fn sends_messages_set_options_and_keep_alive() {
    let ollama = FakeOllama::start().await;
    let settings = OllamaSettings {
        base_url: format!("{}/", ollama.url()),
        keep_alive: Some("30m".to_owned()),
        ..OllamaSettings::default()
    };
    let mut prompt = prompt("what is a Pi?");
    prompt
        .messages
        .insert(0, ChatMessage::new(Role::System, "Be brief."));
    prompt.options = GenerationOptions {
        temperature: Some(0.7),
        num_ctx: Some(2048),
        seed: Some(42),
        stop: vec!["User:".to_owned()],
        ..GenerationOptions::default()
    };

    let stream = client_with(settings)
        .chat(&prompt)
        .await
        .expect("chat starts");
    let (deltas, end) = drain(stream).await;

    assert_eq!(
        deltas.concat(),
        "echo: what is a Pi?",
        "the fake echoes by default"
    );
    assert!(end.is_ok());
    let expected = json!({
        "model": "gemma2:2b",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "what is a Pi?"},
        ],
        "stream": true,
        "options": {"temperature": 0.7, "num_ctx": 2048, "seed": 42, "stop": ["User:"]},
        "keep_alive": "30m",
    });
    assert_eq!(ollama.chat_requests(), vec![expected]);
}

#[tokio::test]
async fn leaves_unset_options_and_keep_alive_out() {
    let ollama = FakeOllama::start().await;
    let stream = client(ollama.url())
        .chat(&prompt("hi"))
        .await
        .expect("chat starts");
    drain(stream).await.1.expect("Done");

    let request = &ollama.chat_requests()[0];
    assert_eq!(request["options"], json!({}));
    assert!(request.get("keep_alive").is_none(), "{request}");
}

#[tokio::test]
async fn scripts_are_used_in_order_then_the_default() {
    let ollama = FakeOllama::start().await;
    ollama.push_script(Script::reply("first"));
    ollama.push_script(Script::reply("second"));
    let client = client(ollama.url());

    let mut answers = Vec::new();
    for question in ["a", "b", "c"] {
        let stream = client.chat(&prompt(question)).await.expect("chat starts");
        answers.push(drain(stream).await.0.concat());
    }

    assert_eq!(answers, ["first", "second", "echo: c"]);
    assert_eq!(ollama.chat_count(), 3);
}

#[tokio::test]
async fn missing_model_is_model_not_found_with_pull_hint() {
    let ollama = FakeOllama::start().await;
    ollama.set_installed_models(&["llama3.2:latest"]);

    let error = client(ollama.url())
        .chat(&prompt("hi"))
        .await
        .err()
        .expect("404");

    assert_eq!(
        error,
        LlmError::ModelNotFound {
            server: Api::Ollama,
            model: "gemma2:2b".to_owned()
        }
    );
    // What the user reads says what to do.
    let told = messages::llm_error(&error);
    assert!(told.contains("run `ollama pull gemma2:2b`"), "{told}");
}

#[tokio::test]
async fn scripted_404_is_model_not_found() {
    let ollama = FakeOllama::start().await;
    ollama.push_script(Script::status(
        404,
        r#"{"error":"model \"gemma2:2b\" not found, try pulling it first"}"#,
    ));

    let error = client(ollama.url())
        .chat(&prompt("hi"))
        .await
        .err()
        .expect("404");

    assert_eq!(
        error,
        LlmError::ModelNotFound {
            server: Api::Ollama,
            model: "gemma2:2b".to_owned()
        }
    );
}

#[tokio::test]
async fn full_queue_503_is_busy() {
    let ollama = FakeOllama::start().await;
    let body = r#"{"error":"server busy, please try again.  maximum pending requests exceeded"}"#;
    ollama.push_script(Script::status(503, body));

    let error = client(ollama.url())
        .chat(&prompt("hi"))
        .await
        .err()
        .expect("503");

    assert_eq!(
        error,
        LlmError::Busy {
            server: Api::Ollama,
            retry_after: None
        }
    );
}

#[tokio::test]
async fn server_error_500_is_http_with_ollamas_message() {
    let ollama = FakeOllama::start().await;
    ollama.push_script(Script::status(
        500,
        r#"{"error":"llama runner process has terminated: signal: killed"}"#,
    ));

    let error = client(ollama.url())
        .chat(&prompt("hi"))
        .await
        .err()
        .expect("500");

    let message = "llama runner process has terminated: signal: killed".to_owned();
    assert_eq!(
        error,
        LlmError::Http {
            server: Api::Ollama,
            status: 500,
            message
        }
    );
}

#[tokio::test]
async fn connection_refused_is_unreachable() {
    let url = unused_url();
    let client = client(url.clone());

    let error = client
        .chat(&prompt("hi"))
        .await
        .err()
        .expect("nothing listens");

    assert_eq!(
        error,
        LlmError::Unreachable {
            server: Api::Ollama,
            url: url.clone()
        }
    );
    let told = messages::llm_error(&error);
    assert!(told.contains("systemctl status ollama"), "{told}");
    assert_eq!(
        client.list_models().await,
        Err(LlmError::Unreachable {
            server: Api::Ollama,
            url: url.clone()
        })
    );
    assert_eq!(
        client.check_model(DEFAULT_MODEL).await,
        Err(LlmError::Unreachable {
            server: Api::Ollama,
            url
        })
    );
}

#[tokio::test]
async fn error_line_mid_stream_ends_with_generation_error() {
    let ollama = FakeOllama::start().await;
    ollama.push_script(Script::error_mid_stream(
        3,
        "an error was encountered while running the model",
    ));

    let stream = client(ollama.url())
        .chat(&prompt("hi"))
        .await
        .expect("chat starts");
    let (deltas, end) = drain(stream).await;

    assert_eq!(deltas.concat(), "word0 word1 word2");
    let message = "an error was encountered while running the model".to_owned();
    assert_eq!(end, Err(LlmError::Generation(message)));
}

#[tokio::test]
async fn stall_after_first_tokens_is_stalled() {
    let ollama = FakeOllama::start().await;
    ollama.push_script(Script::stall(2));
    let settings = OllamaSettings {
        base_url: ollama.url(),
        timeouts: Timeouts {
            idle: ms(100),
            ..Timeouts::default()
        },
        ..OllamaSettings::default()
    };

    let stream = client_with(settings)
        .chat(&prompt("hi"))
        .await
        .expect("chat starts");
    let (deltas, end) = drain(stream).await;

    assert_eq!(deltas.concat(), "word0 word1");
    assert_eq!(end, Err(LlmError::Stalled(ms(100))));
}

#[tokio::test]
async fn slow_model_load_is_first_token_timeout() {
    let ollama = FakeOllama::start().await;
    ollama.push_script(Script::reply("late").with_load_delay(ms(5000)));
    let settings = OllamaSettings {
        base_url: ollama.url(),
        timeouts: Timeouts {
            first_token: ms(80),
            ..Timeouts::default()
        },
        ..OllamaSettings::default()
    };

    let error = client_with(settings)
        .chat(&prompt("hi"))
        .await
        .err()
        .expect("timeout");

    assert_eq!(error, LlmError::FirstTokenTimeout(ms(80)));
}

#[tokio::test]
async fn slow_first_token_after_headers_is_first_token_timeout() {
    let ollama = FakeOllama::start().await;
    // Headers come at once; the margin keeps a busy machine from timing out before them.
    ollama.push_script(Script::reply("late").with_token_delay(ms(5000)));
    let settings = OllamaSettings {
        base_url: ollama.url(),
        timeouts: Timeouts {
            first_token: ms(250),
            ..Timeouts::default()
        },
        ..OllamaSettings::default()
    };

    let stream = client_with(settings)
        .chat(&prompt("hi"))
        .await
        .expect("headers arrive");
    let (deltas, end) = drain(stream).await;

    assert!(deltas.is_empty());
    assert_eq!(end, Err(LlmError::FirstTokenTimeout(ms(250))));
}

#[tokio::test]
async fn long_answer_is_cut_at_total_timeout() {
    let ollama = FakeOllama::start().await;
    // Ten tokens take 500 ms: the first arrives well within the limit, the last well after.
    ollama.push_script(
        Script::reply("one two three four five six seven eight nine ten").with_token_delay(ms(50)),
    );
    let settings = OllamaSettings {
        base_url: ollama.url(),
        timeouts: Timeouts {
            total: ms(250),
            ..Timeouts::default()
        },
        ..OllamaSettings::default()
    };

    let stream = client_with(settings)
        .chat(&prompt("hi"))
        .await
        .expect("chat starts");
    let (deltas, end) = drain(stream).await;

    assert!(!deltas.is_empty() && deltas.len() < 10, "{deltas:?}");
    assert_eq!(end, Err(LlmError::TotalTimeout(ms(250))));
}

#[tokio::test]
async fn dropping_the_stream_mid_answer_cancels_generation() {
    let ollama = FakeOllama::start().await;
    let long_answer = vec!["token"; 200].join(" ");
    ollama.push_script(Script::reply(long_answer).with_token_delay(ms(10)));

    let mut stream = client(ollama.url())
        .chat(&prompt("hi"))
        .await
        .expect("chat starts");
    assert!(matches!(
        stream.next().await,
        Some(Ok(ReplyEvent::Delta(_)))
    ));
    assert_eq!(ollama.cancelled_streams(), 0);
    drop(stream);

    assert!(
        ollama.wait_for_cancelled(1, ms(5000)).await,
        "the fake saw the client go"
    );
}

#[tokio::test]
async fn dropping_a_silent_stream_closes_the_connection() {
    let ollama = FakeOllama::start().await;
    ollama.push_script(Script::stall(1));

    let mut stream = client(ollama.url())
        .chat(&prompt("hi"))
        .await
        .expect("chat starts");
    assert_eq!(
        stream.next().await,
        Some(Ok(ReplyEvent::Delta("word0".to_owned())))
    );
    assert_eq!(ollama.cancelled_streams(), 0);
    drop(stream);

    assert!(
        ollama.wait_for_cancelled(1, ms(5000)).await,
        "the fake saw the client go"
    );
}

#[tokio::test]
async fn lists_installed_and_running_models() {
    let ollama = FakeOllama::start().await;
    ollama.set_installed_models(&["gemma2:2b", "llama3.2:latest"]);
    ollama.set_loaded_models(&["gemma2:2b"]);
    let client = client(ollama.url());

    let installed = client.list_models().await.expect("tags");
    let names: Vec<&str> = installed.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["gemma2:2b", "llama3.2:latest"]);
    assert_eq!(installed[0].parameter_size.as_deref(), Some("2.6B"));
    assert_eq!(installed[0].quantization_level.as_deref(), Some("Q4_0"));
    assert!(installed[0].size_bytes > 0);

    let running = client.running_models().await.expect("ps");
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].name, "gemma2:2b");
    assert!(running[0].expires_at.is_some());
}

#[tokio::test]
async fn check_model_accepts_installed_models_only() {
    let ollama = FakeOllama::start().await;
    ollama.set_installed_models(&["gemma2:2b", "llama3.2:latest"]);
    let client = client(ollama.url());

    assert_eq!(client.check_model("gemma2:2b").await, Ok(()));
    assert_eq!(
        client.check_model("llama3.2").await,
        Ok(()),
        "an untagged name means :latest"
    );
    let missing = client.check_model("phi3:mini").await;
    assert_eq!(
        missing,
        Err(LlmError::ModelNotFound {
            server: Api::Ollama,
            model: "phi3:mini".to_owned()
        })
    );
}
