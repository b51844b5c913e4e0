//! A fake Open-Meteo on `127.0.0.1:<free port>`, speaking its wire format: `/v1/forecast`
//! answers the forecast for a valid `latitude` and `longitude` with the `current` and
//! `daily` variables asked for, and HTTP 400 `{"error":true,"reason":"…"}` as the real API
//! does for a missing or out-of-range coordinate. Beside it, what a sandboxed guest must
//! survive: `/redirect?to=URL` (302 there), `/big` (a 10 MB body) and `/hang` (headers
//! that never come).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// The forecast every valid request gets: 4.2 °C and overcast now, light rain tomorrow.
pub const NOW_CELSIUS: f64 = 4.2;

pub struct FakeWeather {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeWeather {
    pub async fn start() -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/v1/forecast", get(forecast))
            .route("/redirect", get(redirect))
            .route("/big", get(big))
            .route("/hang", get(hang))
            .with_state(requests.clone());
        let (addr, server) = crate::serve_on_loopback(app, "fake Open-Meteo").await;
        Self {
            addr,
            requests,
            server,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Each request's path and query, oldest first.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeWeather {
    fn drop(&mut self) {
        self.server.abort();
    }
}

type Requests = Arc<Mutex<Vec<String>>>;

fn record(requests: &Requests, path: &str, query: &HashMap<String, String>) {
    let mut query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    query.sort();
    requests
        .lock()
        .unwrap()
        .push(format!("{path}?{}", query.join("&")));
}

fn api_error(reason: &str) -> Response {
    let body = json!({"error": true, "reason": reason});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

async fn forecast(
    State(requests): State<Requests>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    record(&requests, "/v1/forecast", &query);
    let coordinate = |name: &str, limit: f64| -> Result<f64, String> {
        let value = query
            .get(name)
            .ok_or_else(|| format!("Parameter '{name}' is missing"))?;
        let value: f64 = value.parse().map_err(|_| {
            format!("Cannot initialize Float from invalid String value {value} for key {name}")
        })?;
        if value.abs() > limit {
            let label = if name == "latitude" {
                "Latitude"
            } else {
                "Longitude"
            };
            return Err(format!(
                "{label} must be in range of -{limit} to {limit}°. Given: {value}."
            ));
        }
        Ok(value)
    };
    let (latitude, longitude) = match (coordinate("latitude", 90.0), coordinate("longitude", 180.0))
    {
        (Ok(lat), Ok(lon)) => (lat, lon),
        (Err(reason), _) | (_, Err(reason)) => return api_error(&reason),
    };
    let mut body = json!({
        "latitude": latitude,
        "longitude": longitude,
        "generationtime_ms": 0.05,
        "utc_offset_seconds": 3600,
        "timezone": "Europe/Berlin",
        "timezone_abbreviation": "GMT+1",
        "elevation": 38.0,
    });
    if query.contains_key("current") {
        body["current_units"] = json!({"time": "iso8601", "interval": "seconds", "temperature_2m": "°C", "weather_code": "wmo code", "wind_speed_10m": "km/h"});
        body["current"] = json!({"time": "2026-12-02T13:00", "interval": 900, "temperature_2m": NOW_CELSIUS, "weather_code": 3, "wind_speed_10m": 12.3});
    }
    if query.contains_key("daily") {
        body["daily_units"] = json!({"time": "iso8601", "weather_code": "wmo code", "temperature_2m_max": "°C", "temperature_2m_min": "°C", "precipitation_probability_max": "%"});
        body["daily"] = json!({"time": ["2026-12-02", "2026-12-03"], "weather_code": [3, 61], "temperature_2m_max": [6.1, 5.0], "temperature_2m_min": [1.2, 2.3], "precipitation_probability_max": [20, 80]});
    }
    axum::Json::<Value>(body).into_response()
}

async fn redirect(
    State(requests): State<Requests>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    record(&requests, "/redirect", &query);
    let to = query.get("to").cloned().unwrap_or_default();
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

async fn big(State(requests): State<Requests>) -> Response {
    record(&requests, "/big", &HashMap::new());
    vec![b'x'; 10 * 1024 * 1024].into_response()
}

async fn hang(State(requests): State<Requests>) -> Response {
    record(&requests, "/hang", &HashMap::new());
    std::future::pending::<()>().await;
    unreachable!()
}
