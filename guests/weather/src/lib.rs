//! A tool guest (WIT 0.3.0, formatter): when a message asks about the weather, it fetches
//! the forecast for the configured place from Open-Meteo (no key needed) and adds a short
//! factual summary to the message, so the model answers from data, not from memory.
//!
//! It fails soft: no network, a refused request, an error from the API — the message goes
//! on without weather and the log says why.
//!
//! ```toml
//! [[stage]]
//! name = "weather"
//! guest = "guests/dist/weather.wasm"
//! timeout_ms = 3000
//! [stage.config]
//! place = "Berlin"
//! latitude = 52.52
//! longitude = 13.41
//! # words = "weather, rain, umbrella"     # replaces the default trigger words
//! # api_url = "https://api.open-meteo.com"
//! [stage.grants]
//! http = ["https://api.open-meteo.com"]
//! ```

use pi_agent_guest::words::Triggers;
use pi_agent_guest::{ChatContext, Formatter, Outcome, Prompt, log};
use serde::Deserialize;

/// Words (starts of words) that make a message about the weather, in the languages of the
/// people likely to run this bot; `words` in the config replaces them.
pub const DEFAULT_WORDS: &[&str] = &[
    "weather",
    "briefing",
    "forecast",
    "temperature",
    "rain",
    "snow",
    "sunny",
    "umbrella",
    "wind",
    "wetter",
    "regen",
    "schnee",
    "temperatur",
    "météo",
    "meteo",
    "pluie",
    "neige",
    "tiempo",
    "lluvia",
    "nieve",
    "pioggia",
    "neve",
    "tempo",
    "chuva",
    "weer",
    "погод",
    "дожд",
];

const DEFAULT_API: &str = "https://api.open-meteo.com";

struct Weather;

impl Formatter for Weather {
    fn format(_ctx: ChatContext, mut prompt: Prompt) -> Outcome {
        let Some(last) = prompt.messages.last_mut() else {
            return Outcome::Prompt(prompt);
        };
        if !Triggers::from_config(DEFAULT_WORDS).in_text(&last.content) {
            return Outcome::Prompt(prompt);
        }
        match fetch_summary() {
            Ok(summary) => {
                last.content.push_str("\n\n");
                last.content.push_str(&summary);
            }
            Err(why) => log::warn(&format!("weather: answering without it: {why}")),
        }
        Outcome::Prompt(prompt)
    }
}

pi_agent_guest::export_formatter!(Weather);

fn fetch_summary() -> Result<String, String> {
    let latitude: f64 = required_number("latitude")?;
    let longitude: f64 = required_number("longitude")?;
    let place =
        pi_agent_guest::config("place").unwrap_or_else(|| format!("{latitude}, {longitude}"));
    let api = pi_agent_guest::config("api_url").unwrap_or_else(|| DEFAULT_API.to_owned());
    let url = forecast_url(api.trim_end_matches('/'), latitude, longitude);
    let response = pi_agent_guest::http::get(&url).map_err(|e| e.to_string())?;
    if response.status != 200 {
        let reason = response
            .json::<ApiError>()
            .map(|e| e.reason)
            .unwrap_or_else(|_| response.text().chars().take(200).collect());
        return Err(format!(
            "Open-Meteo answered HTTP {}: {reason}",
            response.status
        ));
    }
    let forecast: Forecast = response
        .json()
        .map_err(|e| format!("unexpected answer from Open-Meteo: {e}"))?;
    Ok(summary(&place, &forecast))
}

fn required_number(key: &str) -> Result<f64, String> {
    pi_agent_guest::config(key)
        .ok_or_else(|| format!("set {key} in the stage's [stage.config]"))?
        .trim()
        .parse()
        .map_err(|_| format!("{key} in [stage.config] is not a number"))
}

/// The forecast request: now, and today and tomorrow, in the place's own time zone.
pub fn forecast_url(api: &str, latitude: f64, longitude: f64) -> String {
    format!(
        "{api}/v1/forecast?latitude={latitude}&longitude={longitude}\
         &current=temperature_2m,weather_code,wind_speed_10m\
         &daily=weather_code,temperature_2m_max,temperature_2m_min,precipitation_probability_max\
         &timezone=auto&forecast_days=2"
    )
}

/// Open-Meteo's `/v1/forecast` answer: the fields this guest reads.
#[derive(Debug, Deserialize)]
pub struct Forecast {
    pub current: Current,
    pub current_units: CurrentUnits,
    pub daily: Daily,
}

#[derive(Debug, Deserialize)]
pub struct Current {
    pub time: String,
    pub temperature_2m: f64,
    pub weather_code: u8,
    pub wind_speed_10m: f64,
}

#[derive(Debug, Deserialize)]
pub struct CurrentUnits {
    pub temperature_2m: String,
    pub wind_speed_10m: String,
}

#[derive(Debug, Deserialize)]
pub struct Daily {
    pub time: Vec<String>,
    pub weather_code: Vec<Option<u8>>,
    pub temperature_2m_max: Vec<Option<f64>>,
    pub temperature_2m_min: Vec<Option<f64>>,
    pub precipitation_probability_max: Vec<Option<u8>>,
}

/// Open-Meteo's error body: `{"error": true, "reason": "…"}`.
#[derive(Debug, Deserialize)]
struct ApiError {
    reason: String,
}

/// The facts, one short paragraph the model can quote.
pub fn summary(place: &str, f: &Forecast) -> String {
    let unit = &f.current_units.temperature_2m;
    let mut text = format!(
        "(Weather data for {place} from Open-Meteo, local time {}: now {:.0} {unit}, {}, wind {:.0} {}.",
        f.current.time,
        f.current.temperature_2m,
        describe(f.current.weather_code),
        f.current.wind_speed_10m,
        f.current_units.wind_speed_10m,
    );
    let d = &f.daily;
    for (i, day) in d.time.iter().enumerate() {
        let (Some(Some(low)), Some(Some(high))) =
            (d.temperature_2m_min.get(i), d.temperature_2m_max.get(i))
        else {
            continue;
        };
        text.push_str(&format!(" {day}: {low:.0} to {high:.0} {unit}"));
        if let Some(Some(code)) = d.weather_code.get(i) {
            text.push_str(&format!(", {}", describe(*code)));
        }
        if let Some(Some(chance)) = d.precipitation_probability_max.get(i) {
            text.push_str(&format!(", {chance} % chance of precipitation"));
        }
        text.push('.');
    }
    text.push_str(" Answer from these figures.)");
    text
}

/// WMO weather interpretation codes, as Open-Meteo documents them.
pub fn describe(code: u8) -> &'static str {
    match code {
        0 => "clear sky",
        1 => "mainly clear",
        2 => "partly cloudy",
        3 => "overcast",
        45 | 48 => "fog",
        51 | 53 | 55 => "drizzle",
        56 | 57 => "freezing drizzle",
        61 => "slight rain",
        63 => "rain",
        65 => "heavy rain",
        66 | 67 => "freezing rain",
        71 => "slight snowfall",
        73 => "snowfall",
        75 => "heavy snowfall",
        77 => "snow grains",
        80..=82 => "rain showers",
        85 | 86 => "snow showers",
        95 => "thunderstorm",
        96 | 99 => "thunderstorm with hail",
        _ => "unknown weather",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer as Open-Meteo gives it for the request `forecast_url` builds.
    const ANSWER: &str = r#"{"latitude":52.52,"longitude":13.419998,"generationtime_ms":0.06,"utc_offset_seconds":3600,"timezone":"Europe/Berlin","timezone_abbreviation":"GMT+1","elevation":38.0,"current_units":{"time":"iso8601","interval":"seconds","temperature_2m":"°C","weather_code":"wmo code","wind_speed_10m":"km/h"},"current":{"time":"2026-12-02T13:00","interval":900,"temperature_2m":4.2,"weather_code":3,"wind_speed_10m":12.3},"daily_units":{"time":"iso8601","weather_code":"wmo code","temperature_2m_max":"°C","temperature_2m_min":"°C","precipitation_probability_max":"%"},"daily":{"time":["2026-12-02","2026-12-03"],"weather_code":[3,61],"temperature_2m_max":[6.1,5.0],"temperature_2m_min":[1.2,2.3],"precipitation_probability_max":[20,80]}}"#;

    #[test]
    fn the_summary_states_the_figures() {
        let forecast: Forecast = serde_json::from_str(ANSWER).unwrap();
        assert_eq!(
            summary("Berlin", &forecast),
            "(Weather data for Berlin from Open-Meteo, local time 2026-12-02T13:00: now 4 °C, \
             overcast, wind 12 km/h. 2026-12-02: 1 to 6 °C, overcast, 20 % chance of \
             precipitation. 2026-12-03: 2 to 5 °C, slight rain, 80 % chance of precipitation. \
             Answer from these figures.)"
        );
    }

    #[test]
    fn weather_words_in_several_languages_trigger_it() {
        let words = Triggers::new(None, DEFAULT_WORDS);
        for text in [
            "What's the weather like?",
            "Wird es morgen Regen geben?",
            "Quel temps, météo ?",
            "¿Va a llover? lluvia",
            "Какая погода?",
            "Is it raining",
            "Good morning briefing",
        ] {
            assert!(words.in_text(text), "{text}");
        }
        for text in ["Take the train", "Hello!", "Write a poem"] {
            assert!(!words.in_text(text), "{text}");
        }
    }

    #[test]
    fn the_request_asks_for_now_today_and_tomorrow() {
        let url = forecast_url("http://127.0.0.1:1", 52.52, 13.41);
        assert!(
            url.starts_with(
                "http://127.0.0.1:1/v1/forecast?latitude=52.52&longitude=13.41&current="
            )
        );
        assert!(url.contains("forecast_days=2") && url.contains("timezone=auto"));
    }
}
