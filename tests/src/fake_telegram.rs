//! A fake Telegram Bot API on loopback for end-to-end tests: scripted updates in, every bot call recorded, failures on demand.
//!
//! It speaks the Bot API the way teloxide-core 0.13 uses it: `POST {url}/bot{TOKEN}/{Method}`
//! with a JSON body, answered with `{"ok":true,"result":…}` or
//! `{"ok":false,"error_code":…,"description":…,"parameters":{…}}`. teloxide spells methods in
//! PascalCase (`GetUpdates`, `SendMessage`); Telegram matches method names case-insensitively
//! and so does the fake, which records them in the documented camelCase (`getUpdates`).
//!
//! What it checks the way Telegram does: the token, chats the bot never heard from, HTML
//! `parse_mode` (tdlib's parser and error texts), empty and over-long texts, edits that change
//! nothing, bot command names. Markdown parse modes are stored but not parsed.
//!
//! ```ignore
//! let tg = FakeTelegram::start("123:TEST").await;
//! let bot = teloxide::Bot::new("123:TEST").set_api_url(tg.url());
//! tg.push_message(42, 42, "hello");                 // a private chat with user 42
//! assert!(tg.wait_for(|tg| !tg.sent_messages(42).is_empty(), Duration::from_secs(5)).await);
//! assert_eq!(tg.sent_messages(42)[0].visible_text, "echo: hello");
//! ```

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Extension, Json, Router};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinSet};
use url::Url;

/// The bot's `@username` as `getMe` reports it.
pub const BOT_USERNAME: &str = "pi_agent_test_bot";
/// The longest `getUpdates` wait, whatever `timeout` the bot asks for: keeps tests fast.
pub const LONG_POLL_CAP: Duration = Duration::from_secs(2);
/// Telegram's limit on a message text, in UTF-16 code units after entity parsing.
const MAX_TEXT_UTF16: usize = 4096;
const FIRST_UPDATE_ID: i64 = 10_000;
const NOT_MODIFIED: &str = "message is not modified: specified new message content and reply \
                            markup are exactly the same as a current content and reply markup \
                            of the message";
/// Canonical spellings of the methods the fake implements, for recording and lookup.
const METHODS: [&str; 12] = [
    "getMe",
    "getUpdates",
    "getWebhookInfo",
    "deleteWebhook",
    "sendMessage",
    "editMessageText",
    "deleteMessage",
    "sendChatAction",
    "setMyCommands",
    "getMyCommands",
    "deleteMyCommands",
    "answerCallbackQuery",
];

/// How the fake fails the next call of a method instead of answering it.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// 429 with `parameters.retry_after`, which teloxide reports as `RequestError::RetryAfter`.
    TooManyRequests { retry_after_secs: u32 },
    /// 400 with the description `"Bad Request: {0}"`, e.g. `BadRequest("chat not found")`.
    BadRequest(String),
    /// 502 Bad Gateway. Note that teloxide-core sleeps 10 s after any 5xx before it errors.
    ServerError,
    /// Closes the connection without an answer, as a network drop would.
    Drop,
}

/// One request the bot made, in arrival order.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method's documented spelling (`sendMessage`); unknown methods as the bot sent them.
    pub method: String,
    /// The JSON body (`{}` when empty, `null` when it was not JSON).
    pub params: Value,
    pub at: Instant,
}

/// A message of the bot as the user sees it now, after every edit.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    pub message_id: i32,
    /// The text as the bot last sent it: HTML source when `parse_mode` is HTML.
    pub text: String,
    pub parse_mode: Option<String>,
    /// What the user reads: tags stripped, entities decoded, surrounding whitespace trimmed.
    pub visible_text: String,
    pub edits: u32,
    pub reply_markup: Option<Value>,
}

/// A running fake; the server stops when this is dropped.
pub struct FakeTelegram {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: AbortHandle,
}

impl FakeTelegram {
    /// Listens on `127.0.0.1:0` and answers requests made with `token` (others get 401).
    pub async fn start(token: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the fake Telegram");
        let addr = listener.local_addr().expect("the fake Telegram's address");
        let shared = Arc::new(Shared::new(token));
        let router = Router::new()
            .route("/{bot}/{method}", any(handle))
            .fallback(|| async { TgError::new(404, "Not Found").into_response() })
            .with_state(shared.clone());
        let server = tokio::spawn(serve(listener, router)).abort_handle();
        Self {
            shared,
            addr,
            server,
        }
    }

    /// The API root to give teloxide: `Bot::new(token).set_api_url(fake.url())`.
    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}/", self.addr)).expect("a loopback URL")
    }

    /// Queues a text message from `user_id` in `chat_id` and returns its message id. A
    /// positive `chat_id` is a private chat, a negative one a group (a supergroup below
    /// -10^12). Text starting with `/` gets a `bot_command` entity, as Telegram adds.
    pub fn push_message(&self, chat_id: i64, user_id: i64, text: &str) -> i32 {
        self.push_user_message(chat_id, user_id, text, None)
    }

    /// Like [`Self::push_message`], as a reply to message `reply_to` of that chat (a bot
    /// message or a pushed one). Panics if the chat has no such message.
    pub fn push_reply(&self, chat_id: i64, user_id: i64, reply_to: i32, text: &str) -> i32 {
        self.push_user_message(chat_id, user_id, text, Some(reply_to))
    }

    /// Queues a press on an inline button of message `message_id`; returns the query id the
    /// bot must answer. Panics if the chat has no such message.
    pub fn push_callback_query(
        &self,
        chat_id: i64,
        user_id: i64,
        message_id: i32,
        data: &str,
    ) -> String {
        self.shared.change(|st| {
            let message = st.message_json(chat_id, message_id).unwrap_or_else(|| {
                panic!("push_callback_query: no message {message_id} in chat {chat_id}")
            });
            let id = format!("query-{}", st.next_update_id);
            st.callback_queries.insert(id.clone());
            let query = json!({
                "id": id, "from": user_json(user_id), "message": message,
                "chat_instance": chat_id.to_string(), "data": data,
            });
            st.push_update(json!({ "callback_query": query }));
            id
        })
    }

    /// Queues any update; an `update_id` is assigned when missing. Returns the update id.
    pub fn push_update(&self, update: Value) -> i64 {
        self.shared.change(|st| st.push_update(update))
    }

    /// Fails the next call of `method` (any case) with `failure`; calls queue up in order.
    pub fn fail_next(&self, method: &str, failure: Failure) {
        let method = canonical(method);
        self.shared
            .change(|st| st.failures.entry(method).or_default().push_back(failure));
    }

    /// Takes the network down for `getUpdates`: calls hang, and are dropped unanswered when
    /// polling resumes, as a long poll over a dead link would be. Other methods still work.
    pub fn pause_polling(&self) {
        self.shared.change(|st| st.polling_paused = true);
    }

    /// Brings `getUpdates` back; calls held by [`Self::pause_polling`] are dropped now.
    pub fn resume_polling(&self) {
        self.shared.change(|st| st.polling_paused = false);
    }

    /// Every call so far, in arrival order.
    pub fn all_calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// The calls of `method`, matched case-insensitively.
    pub fn calls(&self, method: &str) -> Vec<Call> {
        let state = self.shared.lock();
        state
            .calls
            .iter()
            .filter(|call| call.method.eq_ignore_ascii_case(method))
            .cloned()
            .collect()
    }

    /// The bot's messages in `chat_id` that still exist, by message id, as shown now.
    pub fn sent_messages(&self, chat_id: i64) -> Vec<SentMessage> {
        let state = self.shared.lock();
        let Some(chat) = state.chats.get(&chat_id) else {
            return Vec::new();
        };
        chat.messages
            .iter()
            .filter_map(|(&id, message)| message.sent.as_ref().map(|s| s.seen(id)))
            .collect()
    }

    /// The highest `offset` the bot passed to `getUpdates`: every update below it is confirmed.
    pub fn acknowledged_offset(&self) -> i64 {
        self.shared.lock().acknowledged_offset
    }

    /// Updates queued and not yet confirmed by the bot.
    pub fn pending_updates(&self) -> usize {
        self.shared.lock().updates.len()
    }

    /// The `(command, description)` pairs set for the default scope and no language.
    pub fn bot_commands(&self) -> Vec<(String, String)> {
        let state = self.shared.lock();
        state
            .commands
            .get(&commands_key(&json!({})))
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `predicate` holds, re-checking whenever a call arrives or the state changes;
    /// false if it still does not hold after `timeout`.
    pub async fn wait_for(
        &self,
        mut predicate: impl FnMut(&Self) -> bool,
        timeout: Duration,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        self.shared
            .wait_until(Some(deadline), || predicate(self).then_some(()))
            .await
            .is_some()
    }

    fn push_user_message(
        &self,
        chat_id: i64,
        user_id: i64,
        text: &str,
        reply_to: Option<i32>,
    ) -> i32 {
        self.shared.change(|st| {
            let quoted = reply_to.map(|id| {
                st.message_json(chat_id, id)
                    .unwrap_or_else(|| panic!("push_reply: no message {id} in chat {chat_id}"))
            });
            let chat = st
                .chats
                .entry(chat_id)
                .or_insert_with(|| Chat::new(chat_json(chat_id, user_id)));
            let message_id = chat.next_message_id;
            let mut message = json!({
                "message_id": message_id, "from": user_json(user_id), "chat": chat.json,
                "date": unix_now(), "text": text,
            });
            if text.starts_with('/') {
                let length = text
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .encode_utf16()
                    .count();
                message["entities"] =
                    json!([{ "type": "bot_command", "offset": 0, "length": length }]);
            }
            if let Some(quoted) = quoted {
                message["reply_to_message"] = quoted;
            }
            st.push_update(json!({ "message": message }));
            message_id
        })
    }
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every open connection.
        self.server.abort();
    }
}

/// State shared by the handle and the server, with a signal for every change.
struct Shared {
    token: String,
    state: Mutex<State>,
    changed: Notify,
}

impl Shared {
    fn new(token: &str) -> Self {
        let bot_id = token
            .split(':')
            .next()
            .and_then(|id| id.parse::<i64>().ok())
            .unwrap_or(1);
        let bot = json!({ "id": bot_id, "is_bot": true, "first_name": "pi-agent", "username": BOT_USERNAME });
        let state = State {
            bot,
            next_update_id: FIRST_UPDATE_ID,
            ..State::default()
        };
        Self {
            token: token.to_owned(),
            state: Mutex::new(state),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked mid-assertion must not turn every later call into a poison panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn change<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = f(&mut self.lock());
        self.changed.notify_waiters();
        out
    }

    /// Re-runs `ready` on every change until it yields a value, or `deadline` passes.
    async fn wait_until<T>(
        &self,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Enabled before the check: a change between check and await still wakes us.
            changed.as_mut().enable();
            if let Some(value) = ready() {
                return Some(value);
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline.into(), changed)
                        .await
                        .is_err()
                    {
                        return ready();
                    }
                }
                None => changed.await,
            }
        }
    }

    async fn answer(&self, method: &str, params: &Value) -> Answer {
        match method {
            "getUpdates" => self.get_updates(params).await,
            _ => self.change(|st| st.answer(method, params)),
        }
    }

    /// Long poll: confirm `offset`, then answer as soon as updates are queued, or `[]` once
    /// `timeout` (capped at [`LONG_POLL_CAP`]) runs out.
    async fn get_updates(&self, params: &Value) -> Answer {
        let limit = params["limit"]
            .as_u64()
            .map_or(100, |limit| limit.clamp(1, 100)) as usize;
        let wait = Duration::from_secs(params["timeout"].as_u64().unwrap_or(0)).min(LONG_POLL_CAP);
        self.change(|st| st.confirm(params["offset"].as_i64()));
        let polled = self
            .wait_until(Some(Instant::now() + wait), || self.lock().poll(limit))
            .await;
        match polled {
            Some(Polled::Updates(updates)) => Ok(updates),
            Some(Polled::Paused) => {
                self.wait_until(None, || (!self.lock().polling_paused).then_some(()))
                    .await;
                Err(Refusal::Drop)
            }
            None => Ok(json!([])),
        }
    }
}

enum Polled {
    Updates(Value),
    Paused,
}

#[derive(Default)]
struct State {
    bot: Value,
    calls: Vec<Call>,
    updates: VecDeque<Value>,
    next_update_id: i64,
    acknowledged_offset: i64,
    chats: HashMap<i64, Chat>,
    failures: HashMap<String, VecDeque<Failure>>,
    /// Keyed by scope and language, see [`commands_key`].
    commands: HashMap<String, Vec<(String, String)>>,
    callback_queries: HashSet<String>,
    polling_paused: bool,
}

struct Chat {
    json: Value,
    next_message_id: i32,
    messages: BTreeMap<i32, StoredMessage>,
}

impl Chat {
    fn new(json: Value) -> Self {
        Self {
            json,
            next_message_id: 1,
            messages: BTreeMap::new(),
        }
    }
}

struct StoredMessage {
    /// The Message object as Telegram would return it now.
    json: Value,
    /// What the bot sent, for the bot's own messages.
    sent: Option<BotText>,
}

/// A bot message's text as sent and as parsed.
struct BotText {
    raw: String,
    parse_mode: Option<String>,
    content: Content,
    edits: u32,
}

/// What Telegram compares to decide that an edit changes nothing.
#[derive(PartialEq)]
struct Content {
    text: String,
    entities: Value,
    reply_markup: Option<Value>,
}

impl BotText {
    /// Parses `text`/`parse_mode`/`entities`/`reply_markup` and applies Telegram's checks.
    fn from_params(params: &Value) -> Result<Self, Refusal> {
        let raw = params["text"].as_str().unwrap_or_default().to_owned();
        let parse_mode = params["parse_mode"].as_str().map(str::to_owned);
        let is_html = parse_mode
            .as_deref()
            .is_some_and(|mode| mode.eq_ignore_ascii_case("html"));
        let (text, entities) = if is_html {
            let parsed =
                parse_html(&raw).map_err(|e| bad_request(format!("can't parse entities: {e}")))?;
            let parsed = parsed.trimmed();
            let entities = parsed.entities_json();
            (parsed.text, entities)
        } else {
            (
                raw.trim().to_owned(),
                params.get("entities").cloned().unwrap_or_else(|| json!([])),
            )
        };
        if text.is_empty() {
            return Err(bad_request("message text is empty"));
        }
        if text.encode_utf16().count() > MAX_TEXT_UTF16 {
            return Err(bad_request("message is too long"));
        }
        let reply_markup = params.get("reply_markup").cloned();
        Ok(Self {
            raw,
            parse_mode,
            content: Content {
                text,
                entities,
                reply_markup,
            },
            edits: 0,
        })
    }

    fn seen(&self, message_id: i32) -> SentMessage {
        SentMessage {
            message_id,
            text: self.raw.clone(),
            parse_mode: self.parse_mode.clone(),
            visible_text: self.content.text.clone(),
            edits: self.edits,
            reply_markup: self.content.reply_markup.clone(),
        }
    }

    /// Writes the text into a Message object the way Telegram returns it.
    fn apply_to(&self, message: &mut Value) {
        let object = message.as_object_mut().expect("a message object");
        object.insert("text".into(), self.content.text.clone().into());
        let entities = &self.content.entities;
        set_or_remove(
            object,
            "entities",
            entities
                .as_array()
                .is_some_and(|e| !e.is_empty())
                .then(|| entities.clone()),
        );
        // Only inline keyboards belong to the message; teloxide cannot even parse others there.
        let markup = self
            .content
            .reply_markup
            .clone()
            .filter(|markup| markup.get("inline_keyboard").is_some());
        set_or_remove(object, "reply_markup", markup);
    }
}

fn set_or_remove(object: &mut serde_json::Map<String, Value>, key: &str, value: Option<Value>) {
    match value {
        Some(value) => object.insert(key.to_owned(), value),
        None => object.remove(key),
    };
}

type Answer = Result<Value, Refusal>;

/// Why a call gets no `ok: true` answer.
enum Refusal {
    Error(TgError),
    Drop,
}

impl From<Failure> for Refusal {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::TooManyRequests { retry_after_secs } => Refusal::Error(TgError {
                retry_after: Some(retry_after_secs),
                ..TgError::new(
                    429,
                    &format!("Too Many Requests: retry after {retry_after_secs}"),
                )
            }),
            Failure::BadRequest(description) => bad_request(description),
            Failure::ServerError => Refusal::Error(TgError::new(502, "Bad Gateway")),
            Failure::Drop => Refusal::Drop,
        }
    }
}

fn bad_request(description: impl std::fmt::Display) -> Refusal {
    Refusal::Error(TgError::new(400, &format!("Bad Request: {description}")))
}

/// A Bot API error answer.
struct TgError {
    code: u16,
    description: String,
    retry_after: Option<u32>,
}

impl TgError {
    fn new(code: u16, description: &str) -> Self {
        Self {
            code,
            description: description.to_owned(),
            retry_after: None,
        }
    }
}

impl IntoResponse for TgError {
    fn into_response(self) -> Response {
        let mut body =
            json!({ "ok": false, "error_code": self.code, "description": self.description });
        if let Some(seconds) = self.retry_after {
            body["parameters"] = json!({ "retry_after": seconds });
        }
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(body)).into_response()
    }
}

impl State {
    /// Records the call and takes the failure scripted for it, if any.
    fn record(&mut self, method: &str, params: Value) -> Option<Failure> {
        self.calls.push(Call {
            method: method.to_owned(),
            params,
            at: Instant::now(),
        });
        self.failures.get_mut(method).and_then(VecDeque::pop_front)
    }

    fn answer(&mut self, method: &str, p: &Value) -> Answer {
        match method {
            "getMe" => Ok(self.me()),
            "getWebhookInfo" => Ok(
                json!({ "url": "", "has_custom_certificate": false, "pending_update_count": self.updates.len() }),
            ),
            "deleteWebhook" => {
                if p["drop_pending_updates"].as_bool() == Some(true) {
                    self.updates.clear();
                }
                Ok(json!(true))
            }
            "sendMessage" => self.send_message(p),
            "editMessageText" => self.edit_message_text(p),
            "deleteMessage" => self.delete_message(p),
            "sendChatAction" => self.chat_mut(p).map(|_| json!(true)),
            "setMyCommands" => self.set_my_commands(p),
            "getMyCommands" => Ok(self.my_commands(p)),
            "deleteMyCommands" => {
                self.commands.remove(&commands_key(p));
                Ok(json!(true))
            }
            "answerCallbackQuery" => self.answer_callback_query(p),
            _ => Err(Refusal::Error(TgError::new(
                404,
                &format!("Not Found: method {method} is not implemented by the fake Telegram"),
            ))),
        }
    }

    fn me(&self) -> Value {
        let mut me = self.bot.clone();
        for flag in [
            "can_read_all_group_messages",
            "supports_inline_queries",
            "can_connect_to_business",
            "has_main_web_app",
        ] {
            me[flag] = false.into();
        }
        me["can_join_groups"] = true.into();
        me
    }

    fn push_update(&mut self, mut update: Value) -> i64 {
        let id = update["update_id"].as_i64().unwrap_or(self.next_update_id);
        update["update_id"] = id.into();
        self.next_update_id = self.next_update_id.max(id + 1);
        if let Some(message) = update.get("message") {
            self.remember(message.clone());
        }
        self.updates.push_back(update);
        id
    }

    /// Keeps a user's message so the bot can answer in its chat and tests can reply to it.
    fn remember(&mut self, message: Value) {
        let (Some(chat_id), Some(id)) = (
            message["chat"]["id"].as_i64(),
            message["message_id"].as_i64(),
        ) else {
            return;
        };
        let id = i32::try_from(id).expect("message ids fit in i32");
        let chat = self
            .chats
            .entry(chat_id)
            .or_insert_with(|| Chat::new(message["chat"].clone()));
        chat.next_message_id = chat.next_message_id.max(id + 1);
        chat.messages.insert(
            id,
            StoredMessage {
                json: message,
                sent: None,
            },
        );
    }

    /// Drops the updates an `offset` confirms: those below it, or all but the last `-offset`.
    fn confirm(&mut self, offset: Option<i64>) {
        match offset {
            Some(offset) if offset > 0 => {
                self.updates
                    .retain(|update| update["update_id"].as_i64().unwrap_or(0) >= offset);
                self.acknowledged_offset = self.acknowledged_offset.max(offset);
            }
            Some(offset) if offset < 0 => {
                let keep = usize::try_from(offset.unsigned_abs()).unwrap_or(usize::MAX);
                while self.updates.len() > keep {
                    self.updates.pop_front();
                }
            }
            _ => {}
        }
    }

    fn poll(&self, limit: usize) -> Option<Polled> {
        if self.polling_paused {
            return Some(Polled::Paused);
        }
        (!self.updates.is_empty())
            .then(|| Polled::Updates(self.updates.iter().take(limit).cloned().collect()))
    }

    /// The chat named by `chat_id`, if the bot may write there: it must have heard from it.
    fn chat_mut(&mut self, p: &Value) -> Result<&mut Chat, Refusal> {
        let chat_id = match &p["chat_id"] {
            Value::Number(id) => id.as_i64(),
            Value::String(id) => id.parse().ok(),
            _ => return Err(bad_request("chat_id is empty")),
        };
        chat_id
            .and_then(|id| self.chats.get_mut(&id))
            .ok_or_else(|| bad_request("chat not found"))
    }

    /// A message as `reply_to_message` shows it: without its own reply, as Telegram nests one level.
    fn message_json(&self, chat_id: i64, message_id: i32) -> Option<Value> {
        let mut json = self
            .chats
            .get(&chat_id)?
            .messages
            .get(&message_id)?
            .json
            .clone();
        json.as_object_mut()?.remove("reply_to_message");
        Some(json)
    }

    fn send_message(&mut self, p: &Value) -> Answer {
        let text = BotText::from_params(p)?;
        let reply_to = p["reply_parameters"]["message_id"]
            .as_i64()
            .or_else(|| p["reply_to_message_id"].as_i64());
        let may_lose_reply =
            p["reply_parameters"]["allow_sending_without_reply"].as_bool() == Some(true);
        let chat = self.chat_mut(p)?;
        let chat_id = chat.json["id"].as_i64().unwrap_or_default();
        let quoted = match reply_to.map(|id| i32::try_from(id).unwrap_or(i32::MAX)) {
            Some(id) => match self.message_json(chat_id, id) {
                Some(quoted) => Some(quoted),
                None if may_lose_reply => None,
                None => return Err(bad_request("message to be replied not found")),
            },
            None => None,
        };
        let bot = self.bot.clone();
        let chat = self.chats.get_mut(&chat_id).expect("checked above");
        let message_id = chat.next_message_id;
        chat.next_message_id += 1;
        let mut message =
            json!({ "message_id": message_id, "from": bot, "chat": chat.json, "date": unix_now() });
        if let Some(quoted) = quoted {
            message["reply_to_message"] = quoted;
        }
        text.apply_to(&mut message);
        chat.messages.insert(
            message_id,
            StoredMessage {
                json: message.clone(),
                sent: Some(text),
            },
        );
        Ok(message)
    }

    fn edit_message_text(&mut self, p: &Value) -> Answer {
        if p.get("inline_message_id").is_some() {
            return Err(bad_request(
                "inline messages are not supported by the fake Telegram",
            ));
        }
        let mut text = BotText::from_params(p)?;
        let message_id = p["message_id"]
            .as_i64()
            .ok_or_else(|| bad_request("message identifier is not specified"))?;
        let chat = self.chat_mut(p)?;
        let stored = i32::try_from(message_id)
            .ok()
            .and_then(|id| chat.messages.get_mut(&id))
            .ok_or_else(|| bad_request("message to edit not found"))?;
        let Some(sent) = &stored.sent else {
            return Err(bad_request("message can't be edited"));
        };
        if sent.content == text.content {
            return Err(bad_request(NOT_MODIFIED));
        }
        text.edits = sent.edits + 1;
        text.apply_to(&mut stored.json);
        stored.json["edit_date"] = unix_now().into();
        stored.sent = Some(text);
        Ok(stored.json.clone())
    }

    fn delete_message(&mut self, p: &Value) -> Answer {
        let message_id = p["message_id"]
            .as_i64()
            .and_then(|id| i32::try_from(id).ok());
        let chat = self.chat_mut(p)?;
        match message_id.and_then(|id| chat.messages.remove(&id)) {
            Some(_) => Ok(json!(true)),
            None => Err(bad_request("message to delete not found")),
        }
    }

    fn set_my_commands(&mut self, p: &Value) -> Answer {
        let mut commands = Vec::new();
        for command in p["commands"].as_array().into_iter().flatten() {
            // teloxide's `BotCommands` sends `/reset`; Telegram drops the slash.
            let name = command["command"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches('/');
            let description = command["description"].as_str().unwrap_or_default();
            // Telegram's rule: 1-32 lowercase letters, digits and underscores.
            let valid = (1..=32).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return Err(bad_request("BOT_COMMAND_INVALID"));
            }
            if description.trim().is_empty() {
                return Err(bad_request("command description must be non-empty"));
            }
            commands.push((name.to_owned(), description.to_owned()));
        }
        self.commands.insert(commands_key(p), commands);
        Ok(json!(true))
    }

    fn my_commands(&self, p: &Value) -> Value {
        let commands = self
            .commands
            .get(&commands_key(p))
            .map(Vec::as_slice)
            .unwrap_or_default();
        commands
            .iter()
            .map(|(command, description)| json!({ "command": command, "description": description }))
            .collect()
    }

    fn answer_callback_query(&mut self, p: &Value) -> Answer {
        let id = p["callback_query_id"].as_str().unwrap_or_default();
        // A query can be answered once; teloxide matches this exact text.
        if self.callback_queries.remove(id) {
            Ok(json!(true))
        } else {
            Err(bad_request(
                "query is too old and response timeout expired or query id is invalid",
            ))
        }
    }
}

/// Commands are stored per scope and language; a missing scope is the default one.
fn commands_key(p: &Value) -> String {
    let scope = p
        .get("scope")
        .cloned()
        .unwrap_or_else(|| json!({ "type": "default" }));
    format!(
        "{scope}/{}",
        p["language_code"].as_str().unwrap_or_default()
    )
}

fn user_json(user_id: i64) -> Value {
    json!({
        "id": user_id, "is_bot": false, "first_name": format!("User{user_id}"),
        "username": format!("user{user_id}"), "language_code": "en",
    })
}

fn chat_json(chat_id: i64, user_id: i64) -> Value {
    if chat_id > 0 {
        let user = user_json(user_id);
        json!({ "id": chat_id, "type": "private", "first_name": user["first_name"], "username": user["username"] })
    } else {
        // Supergroup ids are -100… with 13 digits; basic groups are short negative numbers.
        let kind = if chat_id < -1_000_000_000_000 {
            "supergroup"
        } else {
            "group"
        };
        json!({ "id": chat_id, "type": kind, "title": format!("Group {chat_id}") })
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn canonical(method: &str) -> String {
    let known = METHODS
        .iter()
        .find(|known| known.eq_ignore_ascii_case(method));
    known.map_or_else(|| method.to_owned(), |known| (*known).to_owned())
}

/// Lets a handler close its own connection mid-request ([`Failure::Drop`]).
#[derive(Clone)]
struct Connection(Arc<Notify>);

async fn serve(listener: TcpListener, router: Router) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(serve_connection(stream, router.clone()));
    }
}

/// One connection served by hyper directly (not `axum::serve`), so that a handler can drop it.
async fn serve_connection(stream: TcpStream, router: Router) {
    let close = Arc::new(Notify::new());
    let service = TowerToHyperService::new(router.layer(Extension(Connection(close.clone()))));
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    // Dropping the connection future closes the socket with the request unanswered.
    tokio::select! {
        _ = connection => {}
        () = close.notified() => {}
    }
}

async fn handle(
    AxumState(shared): AxumState<Arc<Shared>>,
    Extension(connection): Extension<Connection>,
    Path((bot, method)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if bot.strip_prefix("bot") != Some(shared.token.as_str()) {
        return TgError::new(401, "Unauthorized").into_response();
    }
    let method = canonical(&method);
    let params = if body.is_empty() {
        Ok(json!({}))
    } else {
        serde_json::from_slice::<Value>(&body)
    };
    let failure =
        shared.change(|st| st.record(&method, params.as_ref().map_or(Value::Null, Clone::clone)));
    let answer = match (failure, params) {
        (Some(failure), _) => Err(failure.into()),
        (None, Ok(params)) => shared.answer(&method, &params).await,
        (None, Err(_)) => Err(bad_request(
            "the fake Telegram only understands JSON bodies",
        )),
    };
    match answer {
        Ok(result) => Json(json!({ "ok": true, "result": result })).into_response(),
        Err(Refusal::Error(error)) => error.into_response(),
        Err(Refusal::Drop) => {
            connection.0.notify_one();
            std::future::pending().await
        }
    }
}

/// Checks `html` the way Telegram parses `parse_mode: HTML` and returns the text the user
/// sees (before Telegram trims surrounding whitespace), or tdlib's error, which Telegram
/// reports as `"Bad Request: can't parse entities: {error}"`.
///
/// Allowed: b strong i em u ins s strike del code pre a(href) blockquote(expandable)
/// span(class="tg-spoiler") tg-spoiler tg-emoji(emoji-id). Only `&lt; &gt; &amp; &quot;` and
/// numeric references decode; any other `&` stays literal text, as in Telegram.
pub fn validate_html(html: &str) -> Result<String, String> {
    parse_html(html).map(|parsed| parsed.text)
}

/// Text with formatting spans in byte offsets, as parsed from HTML.
struct Parsed {
    text: String,
    spans: Vec<Span>,
}

struct Span {
    kind: Kind,
    start: usize,
    end: usize,
}

#[derive(PartialEq)]
enum Kind {
    Bold,
    Italic,
    Underline,
    Strikethrough,
    Spoiler,
    /// Keeps the `language-` class only to merge into an enclosing `pre`.
    Code(String),
    Pre(String),
    TextLink(String),
    Blockquote,
    ExpandableBlockquote,
    CustomEmoji(String),
}

impl Parsed {
    /// Trims surrounding whitespace as Telegram does, keeping spans on the same characters.
    fn trimmed(self) -> Self {
        let lead = self.text.len() - self.text.trim_start().len();
        let text = self.text.trim().to_owned();
        let clamp = |offset: usize| offset.saturating_sub(lead).min(text.len());
        let spans = self
            .spans
            .into_iter()
            .map(|span| Span {
                start: clamp(span.start),
                end: clamp(span.end),
                ..span
            })
            .filter(|span| span.start < span.end)
            .collect();
        Self { text, spans }
    }

    /// The Bot API's `entities`: UTF-16 offsets, sorted by offset then longest first.
    fn entities_json(&self) -> Value {
        let utf16 = |byte: usize| self.text[..byte].encode_utf16().count();
        let mut entities: Vec<(usize, usize, Value)> = self
            .spans
            .iter()
            .map(|span| {
                let (offset, length) = (utf16(span.start), utf16(span.end) - utf16(span.start));
                let mut entity = span.kind.json();
                entity["offset"] = offset.into();
                entity["length"] = length.into();
                (offset, length, entity)
            })
            .collect();
        entities.sort_by_key(|&(offset, length, _)| (offset, std::cmp::Reverse(length)));
        entities.into_iter().map(|(_, _, entity)| entity).collect()
    }
}

impl Kind {
    fn json(&self) -> Value {
        let simple = |kind: &str| json!({ "type": kind });
        match self {
            Kind::Bold => simple("bold"),
            Kind::Italic => simple("italic"),
            Kind::Underline => simple("underline"),
            Kind::Strikethrough => simple("strikethrough"),
            Kind::Spoiler => simple("spoiler"),
            Kind::Code(_) => simple("code"),
            Kind::Pre(language) if language.is_empty() => simple("pre"),
            Kind::Pre(language) => json!({ "type": "pre", "language": language }),
            Kind::TextLink(url) => json!({ "type": "text_link", "url": url }),
            Kind::Blockquote => simple("blockquote"),
            Kind::ExpandableBlockquote => simple("expandable_blockquote"),
            Kind::CustomEmoji(id) => json!({ "type": "custom_emoji", "custom_emoji_id": id }),
        }
    }
}

const ALLOWED_TAGS: [&str; 16] = [
    "a",
    "b",
    "strong",
    "i",
    "em",
    "s",
    "strike",
    "del",
    "u",
    "ins",
    "tg-spoiler",
    "tg-emoji",
    "span",
    "pre",
    "code",
    "blockquote",
];

/// A start tag waiting for its end tag.
struct Open {
    name: String,
    argument: String,
    start: usize,
}

/// A port of tdlib's `parse_html` (td/telegram/MessageEntity.cpp): same grammar, same error
/// texts, byte offsets into `html`. Past the end reads as NUL, like tdlib's C string.
fn parse_html(html: &str) -> Result<Parsed, String> {
    let src = html.as_bytes();
    let mut out = Vec::with_capacity(src.len());
    let mut open: Vec<Open> = Vec::new();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < src.len() {
        match src[i] {
            b'&' => match decode_entity(src, i) {
                Some((ch, next)) => {
                    out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                    i = next;
                }
                None => {
                    out.push(b'&');
                    i += 1;
                }
            },
            b'<' if at(src, i + 1) == b'/' => {
                let top = open
                    .pop()
                    .ok_or_else(|| format!("Unexpected end tag at byte offset {i}"))?;
                i = close_tag(src, i, &top)?;
                if out.len() > top.start {
                    close_span(top, &out, &mut spans)?;
                }
            }
            b'<' => {
                let (name, argument, next) = open_tag(src, i)?;
                open.push(Open {
                    name,
                    argument,
                    start: out.len(),
                });
                i = next;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    if let Some(unclosed) = open.last() {
        return Err(format!(
            "Can't find end tag corresponding to start tag \"{}\"",
            unclosed.name
        ));
    }
    // Only whole UTF-8 sequences and encoded characters were copied.
    let text = String::from_utf8(out).expect("parsed HTML stays UTF-8");
    Ok(Parsed { text, spans })
}

fn at(src: &[u8], i: usize) -> u8 {
    src.get(i).copied().unwrap_or(0)
}

/// tdlib's `is_space`, NUL included, so scans stop at the end of the text.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n' | 0 | 0x0b)
}

fn skip_spaces(src: &[u8], mut i: usize) -> usize {
    while i < src.len() && is_space(src[i]) {
        i += 1;
    }
    i
}

/// Decodes `&lt;` `&gt;` `&amp;` `&quot;` `&#N;` `&#xH;` (the `;` is optional) at `i`:
/// the character and where the text goes on. `None` leaves the `&` as literal text.
fn decode_entity(src: &[u8], i: usize) -> Option<(char, usize)> {
    let mut end = i + 1;
    let code = if at(src, end) == b'#' {
        end += 1;
        let radix = if at(src, end) == b'x' {
            end += 1;
            16
        } else {
            10
        };
        let mut code: u32 = 0;
        while let Some(digit) = char::from(at(src, end)).to_digit(radix) {
            code = code * radix + digit;
            end += 1;
            if code >= 0x10ffff {
                return None;
            }
        }
        if code == 0 || end - i >= 10 {
            return None;
        }
        char::from_u32(code)?
    } else {
        while at(src, end).is_ascii_alphabetic() {
            end += 1;
        }
        match &src[i + 1..end] {
            b"lt" => '<',
            b"gt" => '>',
            b"amp" => '&',
            b"quot" => '"',
            _ => return None,
        }
    };
    Some((code, if at(src, end) == b';' { end + 1 } else { end }))
}

/// Parses the start tag at `begin` (`<`): its lowercased name, the argument its attributes
/// give, and the offset after its `>`.
fn open_tag(src: &[u8], begin: usize) -> Result<(String, String, usize), String> {
    let mut i = begin + 1;
    while !is_space(at(src, i)) && at(src, i) != b'>' {
        i += 1;
    }
    if at(src, i) == 0 {
        return Err(format!("Unclosed start tag at byte offset {begin}"));
    }
    let name = String::from_utf8_lossy(&src[begin + 1..i]).to_lowercase();
    if !ALLOWED_TAGS.contains(&name.as_str()) {
        return Err(format!(
            "Unsupported start tag \"{name}\" at byte offset {begin}"
        ));
    }
    let mut argument = String::new();
    while at(src, i) != b'>' {
        i = skip_spaces(src, i);
        if at(src, i) == b'>' {
            break;
        }
        let name_start = i;
        while !is_space(at(src, i)) && at(src, i) != b'=' && at(src, i) != b'>' {
            i += 1;
        }
        let attribute = String::from_utf8_lossy(&src[name_start..i]).into_owned();
        if attribute.is_empty() {
            return Err(format!(
                "Empty attribute name in the tag \"{name}\" at byte offset {begin}"
            ));
        }
        i = skip_spaces(src, i);
        if at(src, i) != b'=' {
            // `<blockquote expandable>` is the one attribute written without a value.
            if name == "blockquote" && attribute == "expandable" {
                argument = "1".into();
                continue;
            }
            return Err(format!(
                "Expected equal sign in declaration of an attribute of the tag \"{name}\" at byte offset {begin}"
            ));
        }
        i = skip_spaces(src, i + 1);
        if at(src, i) == 0 {
            return Err(format!(
                "Unclosed start tag \"{name}\" at byte offset {begin}"
            ));
        }
        let value;
        (value, i) = attribute_value(src, i)?;
        if at(src, i) == 0 {
            return Err(format!("Unclosed start tag at byte offset {begin}"));
        }
        match (name.as_str(), attribute.as_str()) {
            ("a", "href") | ("tg-emoji", "emoji-id") => argument = value,
            ("code", "class") if value.starts_with("language-") => {
                argument = value["language-".len()..].into()
            }
            ("span", "class") if value.starts_with("tg-") => argument = value["tg-".len()..].into(),
            _ => {} // Telegram ignores unknown attributes.
        }
    }
    if name == "span" && argument != "spoiler" {
        return Err(format!(
            "Tag \"span\" must have class \"tg-spoiler\" at byte offset {begin}"
        ));
    }
    Ok((name, argument, i + 1))
}

/// An attribute value at `i`: quoted (entities decoded) or a bare name token (lowercased).
fn attribute_value(src: &[u8], mut i: usize) -> Result<(String, usize), String> {
    let quote = at(src, i);
    if quote != b'\'' && quote != b'"' {
        let start = i;
        while at(src, i).is_ascii_alphanumeric() || at(src, i) == b'.' || at(src, i) == b'-' {
            i += 1;
        }
        if !is_space(at(src, i)) && at(src, i) != b'>' {
            return Err(format!(
                "Unexpected end of name token at byte offset {start}"
            ));
        }
        return Ok((String::from_utf8_lossy(&src[start..i]).to_lowercase(), i));
    }
    i += 1;
    let mut value = Vec::new();
    while at(src, i) != quote && at(src, i) != 0 {
        if let Some((ch, next)) = (at(src, i) == b'&')
            .then(|| decode_entity(src, i))
            .flatten()
        {
            value.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
            i = next;
        } else {
            value.push(at(src, i));
            i += 1;
        }
    }
    if at(src, i) == quote {
        i += 1;
    }
    Ok((String::from_utf8_lossy(&value).into_owned(), i))
}

/// Checks the end tag at `begin` (`</`) against the innermost open tag; returns the offset after its `>`.
fn close_tag(src: &[u8], begin: usize, top: &Open) -> Result<usize, String> {
    let mut i = begin + 2;
    while !is_space(at(src, i)) && at(src, i) != b'>' {
        i += 1;
    }
    let end_name = &src[begin + 2..i];
    i = skip_spaces(src, i);
    if at(src, i) != b'>' {
        return Err(format!("Unclosed end tag at byte offset {begin}"));
    }
    // `</>` closes whatever is open; a named end tag must match exactly (not case-folded).
    if !end_name.is_empty() && end_name != top.name.as_bytes() {
        return Err(format!(
            "Unmatched end tag at byte offset {begin}, expected \"</{}>\", found \"</{}>\"",
            top.name,
            String::from_utf8_lossy(end_name)
        ));
    }
    Ok(i + 1)
}

/// Turns a closed, non-empty tag into a span (`pre` and `code` around the same text merge).
fn close_span(tag: Open, out: &[u8], spans: &mut Vec<Span>) -> Result<(), String> {
    let (start, end) = (tag.start, out.len());
    let same_range = |span: &Span| span.start == start && span.end == end;
    let kind = match tag.name.as_str() {
        "b" | "strong" => Kind::Bold,
        "i" | "em" => Kind::Italic,
        "u" | "ins" => Kind::Underline,
        "s" | "strike" | "del" => Kind::Strikethrough,
        "tg-spoiler" | "span" => Kind::Spoiler,
        "blockquote" if tag.argument.is_empty() => Kind::Blockquote,
        "blockquote" => Kind::ExpandableBlockquote,
        "pre" => {
            if let Some(last) = spans.last_mut()
                && same_range(last)
                && let Kind::Code(language) = &last.kind
                && !language.is_empty()
            {
                last.kind = Kind::Pre(language.clone());
                return Ok(());
            }
            Kind::Pre(String::new())
        }
        "code" => match spans.last_mut() {
            Some(last) if same_range(last) && last.kind == Kind::Pre(String::new()) => {
                last.kind = Kind::Pre(tag.argument);
                return Ok(());
            }
            _ => Kind::Code(tag.argument),
        },
        "a" => {
            let href = if tag.argument.is_empty() {
                String::from_utf8_lossy(&out[start..]).into_owned()
            } else {
                tag.argument
            };
            // Telegram adds a missing scheme and silently drops links it cannot parse.
            let Some(url) = Url::parse(&href)
                .or_else(|_| Url::parse(&format!("http://{href}")))
                .ok()
            else {
                return Ok(());
            };
            Kind::TextLink(url.into())
        }
        "tg-emoji" => match tag.argument.parse::<i64>() {
            Ok(id) if id != 0 => Kind::CustomEmoji(tag.argument),
            _ => return Err("Invalid custom emoji identifier specified".into()),
        },
        other => unreachable!("start tag {other} passed the allow-list"),
    };
    spans.push(Span { kind, start, end });
    Ok(())
}
