//! List prices per token for Anthropic and OpenAI models, to cost responses whose logs count
//! tokens but not dollars.
//!
//! Claude Code and Codex CLI record each API response's token counts but no cost, and OpenCode
//! records a cost of 0 for providers that bill by subscription. [`PriceTable`] turns a model name
//! and its [`TokenCounts`] into USD at the provider's list price.
//!
//! The table ships inside the binary: `pricing/prices.json` is a trimmed snapshot of LiteLLM's
//! price list (`pricing/SOURCE.md` says which version and how to refresh it). A user file of the
//! same shape can correct or extend it ([`PriceTable::with_overrides`]), since prices change
//! between releases.
//!
//! Prices use LiteLLM's field names, in USD per token:
//!
//! | field                                        | applies to                                |
//! |----------------------------------------------|-------------------------------------------|
//! | `input_cost_per_token`                       | uncached input                            |
//! | `output_cost_per_token`                      | output, reasoning included                |
//! | `cache_read_input_token_cost`                | cache reads                               |
//! | `cache_creation_input_token_cost`            | cache writes kept 5 minutes               |
//! | `cache_creation_input_token_cost_above_1hr`  | cache writes kept 1 hour                  |
//! | any of the above + `_above_<N>k_tokens`      | the same, when the prompt exceeds N × 1000 |
//!
//! Only `input_cost_per_token` and `output_cost_per_token` are required. A missing cache read or
//! cache write rate falls back to the input rate, because a provider that does not price a cache
//! bills those tokens as plain input; a missing 1-hour write rate falls back to the 5-minute one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The bundled snapshot; `pricing/SOURCE.md` describes it.
const EMBEDDED_PRICES: &str = include_str!("../pricing/prices.json");

/// The rate fields a model may carry, in the order of [`Rates`]' fields.
const RATE_FIELDS: [&str; 5] = [
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
    "cache_creation_input_token_cost_above_1hr",
];

/// What a price file must look like, quoted in every [`PricingError::Invalid`].
const EXPECTED_SHAPE: &str = "a price file is a JSON object like \
    {\"models\": {\"claude-sonnet-4-5\": {\"input_cost_per_token\": 3e-06, \
    \"output_cost_per_token\": 1.5e-05}}} with prices in USD per token, using the fields of \
    ducktail's bundled pricing/prices.json";

/// Tokens of one API response, split the way providers price them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    /// Input tokens that were neither read from nor written to the prompt cache.
    pub input: u64,
    /// Output tokens, reasoning tokens included: providers bill reasoning as output.
    pub output: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache with the default 5-minute lifetime.
    pub cache_write_5m: u64,
    /// Input tokens written to the prompt cache with the 1-hour lifetime.
    pub cache_write_1h: u64,
}

impl TokenCounts {
    /// Every input token of the request; this is what long-context thresholds compare against.
    pub fn prompt(&self) -> u64 {
        self.input + self.cache_read + self.cache_write_5m + self.cache_write_1h
    }
}

/// USD per token for each kind of token, with the fallbacks of the module doc already applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// Uncached input.
    pub input: f64,
    /// Output, reasoning included.
    pub output: f64,
    /// Cache reads.
    pub cache_read: f64,
    /// Cache writes with the 5-minute lifetime.
    pub cache_write_5m: f64,
    /// Cache writes with the 1-hour lifetime.
    pub cache_write_1h: f64,
}

/// Higher rates that apply to a whole response once its prompt is long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LongContext {
    /// The rates apply when [`TokenCounts::prompt`] is strictly greater than this.
    pub above_prompt_tokens: u64,
    /// The rates; a field without its own long-context price keeps the standard one.
    pub rates: Rates,
}

/// The price of one model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPrice {
    /// The rates for an ordinary response.
    pub standard: Rates,
    /// The rates for a response with a long prompt, when the model has them.
    pub long_context: Option<LongContext>,
}

impl ModelPrice {
    /// The USD cost of one response.
    ///
    /// A prompt over the long-context threshold moves every token of the response, output
    /// included, to the long-context rates: that is how Anthropic bills prompts over 200k tokens
    /// and OpenAI bills prompts over 272k tokens, and how LiteLLM models it.
    pub fn cost(&self, usage: &TokenCounts) -> f64 {
        let rates = match &self.long_context {
            Some(long) if usage.prompt() > long.above_prompt_tokens => &long.rates,
            _ => &self.standard,
        };
        usage.input as f64 * rates.input
            + usage.output as f64 * rates.output
            + usage.cache_read as f64 * rates.cache_read
            + usage.cache_write_5m as f64 * rates.cache_write_5m
            + usage.cache_write_1h as f64 * rates.cache_write_1h
    }
}

/// A price file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    /// The file could not be read.
    #[error("cannot read price overrides {}: {source}; check that the file exists and is readable", path.display())]
    Unreadable {
        /// The override file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid price file.
    #[error("price overrides {} are not valid: {problem}; {}", path.display(), EXPECTED_SHAPE)]
    Invalid {
        /// The override file.
        path: PathBuf,
        /// What is wrong, naming the model and field when there is one.
        problem: String,
    },
}

/// Prices by model name: the bundled snapshot, possibly overlaid by a user file.
#[derive(Debug, Clone)]
pub struct PriceTable {
    /// Keyed by the names in the price file, unnormalised; [`PriceTable::lookup`] normalises.
    models: HashMap<String, ModelPrice>,
}

impl PriceTable {
    /// The bundled snapshot alone.
    pub fn embedded() -> PriceTable {
        let models = embedded_fields();
        PriceTable::build(models).expect("the bundled prices.json is checked by the unit tests")
    }

    /// The bundled snapshot overlaid by the price file at `path`, which has the bundled file's
    /// shape (only its `models` object is read).
    ///
    /// A model already in the snapshot keeps the fields the file does not name, so a file can
    /// correct one price; a new model must give at least its input and output prices.
    pub fn with_overrides(path: &Path) -> Result<PriceTable, PricingError> {
        let invalid = |problem: String| PricingError::Invalid { path: path.to_path_buf(), problem };
        let text = std::fs::read_to_string(path).map_err(|source| PricingError::Unreadable { path: path.to_path_buf(), source })?;
        let mut models = embedded_fields();
        for (name, fields) in model_fields(&text).map_err(invalid)? {
            models.entry(name).or_default().extend(fields);
        }
        PriceTable::build(models).map_err(invalid)
    }

    /// The price of `model`, trying these names in order and returning the first one priced:
    ///
    /// 1. `model` exactly as given;
    /// 2. without a provider prefix: the text after the last `/` (`anthropic/`, `openai/`,
    ///    `bedrock/converse/`, `github-copilot/` …) and after a Bedrock `region.vendor.` prefix
    ///    (`us.anthropic.`, `global.openai.`), with dots in a Claude version turned into dashes
    ///    (`claude-sonnet-4.5`, as GitHub Copilot and OpenRouter spell it);
    /// 3. that, without a Bedrock version (`-v1:0`) and then a date suffix (`-20250929`,
    ///    `@20250929`, `-2025-04-14`), because snapshots are usually priced like their alias;
    /// 4. that, followed by `-latest` (`gpt-5.1-chat` → `gpt-5.1-chat-latest`).
    ///
    /// Exact names come first so that a dated snapshot priced differently from its alias keeps
    /// its own price.
    pub fn lookup(&self, model: &str) -> Option<&ModelPrice> {
        if let Some(price) = self.models.get(model) {
            return Some(price);
        }
        let unprefixed = without_provider(model);
        let undated = without_date(&unprefixed);
        self.models.get(unprefixed.as_str()).or_else(|| self.models.get(undated)).or_else(|| self.models.get(&format!("{undated}-latest")))
    }

    /// A hash of every price in the table: when it differs from the one that priced the stored
    /// rows, they are priced again.
    pub fn fingerprint(&self) -> u64 {
        let mut names: Vec<&String> = self.models.keys().collect();
        names.sort();
        let listing: String = names.into_iter().map(|name| format!("{name}={:?};", self.models[name])).collect();
        crate::transcript::fnv1a(listing.as_bytes())
    }

    /// The list prices of `model_id` as the store applies them to stored tokens, when known.
    pub fn list_price(&self, model_id: &str) -> Option<ducktail_model::ListPrice> {
        let price = self.lookup(model_id)?;
        let rates = |rates: &Rates| ducktail_model::ListRates {
            input: rates.input,
            output: rates.output,
            cache_read: rates.cache_read,
            cache_write: rates.cache_write_5m,
        };
        Some(ducktail_model::ListPrice {
            model_id: model_id.to_owned(),
            standard: rates(&price.standard),
            long_above: price.long_context.map(|long| i64::try_from(long.above_prompt_tokens).unwrap_or(i64::MAX)),
            long: price.long_context.map_or_else(|| rates(&price.standard), |long| rates(&long.rates)),
        })
    }

    /// Parses every model's fields; the error names the first model that is not valid.
    fn build(fields_by_model: HashMap<String, Map<String, Value>>) -> Result<PriceTable, String> {
        let mut models = HashMap::with_capacity(fields_by_model.len());
        for (name, fields) in fields_by_model {
            let price = model_price(&name, &fields)?;
            models.insert(name, price);
        }
        Ok(PriceTable { models })
    }
}

/// The bundled models' raw fields.
fn embedded_fields() -> HashMap<String, Map<String, Value>> {
    model_fields(EMBEDDED_PRICES).expect("the bundled prices.json is checked by the unit tests")
}

/// The `models` object of a price file, each model's fields still raw JSON.
fn model_fields(text: &str) -> Result<HashMap<String, Map<String, Value>>, String> {
    let mut document: Value = serde_json::from_str(text).map_err(|error| format!("it is not JSON ({error})"))?;
    let Some(Value::Object(models)) = document.get_mut("models").map(Value::take) else {
        return Err("it has no \"models\" object at the top level".to_owned());
    };
    let mut fields_by_model = HashMap::with_capacity(models.len());
    for (name, fields) in models {
        let Value::Object(fields) = fields else {
            return Err(format!("model \"{name}\" is not an object of prices"));
        };
        fields_by_model.insert(name, fields);
    }
    Ok(fields_by_model)
}

/// One model's price from its raw fields.
fn model_price(name: &str, fields: &Map<String, Value>) -> Result<ModelPrice, String> {
    let mut standard = [None; RATE_FIELDS.len()];
    let mut long = [None; RATE_FIELDS.len()];
    let mut threshold: Option<u64> = None;
    for (key, value) in fields {
        let (field, above_prompt_tokens) = split_threshold(key);
        let Some(slot) = RATE_FIELDS.iter().position(|known| *known == field) else {
            return Err(format!(
                "model \"{name}\" has an unknown field \"{key}\"; the known fields are {}, each \
                 optionally followed by a long-context suffix such as _above_200k_tokens",
                RATE_FIELDS.join(", ")
            ));
        };
        let Some(rate) = value.as_f64().filter(|rate| rate.is_finite() && *rate >= 0.0) else {
            return Err(format!(
                "model \"{name}\" field \"{key}\" is {value}, not a number of USD per token \
                 (zero or more)"
            ));
        };
        match above_prompt_tokens {
            None => standard[slot] = Some(rate),
            Some(tokens) => {
                if threshold.is_some_and(|known| known != tokens) {
                    return Err(format!(
                        "model \"{name}\" has long-context prices for more than one threshold; \
                         keep a single _above_<N>k_tokens suffix"
                    ));
                }
                threshold = Some(tokens);
                long[slot] = Some(rate);
            }
        }
    }
    let standard_rates = rates(standard).ok_or_else(|| format!("model \"{name}\" needs both \"input_cost_per_token\" and \"output_cost_per_token\""))?;
    let long_context = threshold.map(|above_prompt_tokens| {
        let merged = std::array::from_fn(|slot| long[slot].or(standard[slot]));
        let rates = rates(merged).expect("standard input and output rates were checked above");
        LongContext { above_prompt_tokens, rates }
    });
    Ok(ModelPrice { standard: standard_rates, long_context })
}

/// Rates from the fields in [`RATE_FIELDS`] order, applying the fallbacks of the module doc;
/// `None` when the input or output rate is missing.
fn rates(fields: [Option<f64>; RATE_FIELDS.len()]) -> Option<Rates> {
    let [input, output, cache_read, cache_write_5m, cache_write_1h] = fields;
    let input = input?;
    let cache_write_5m = cache_write_5m.unwrap_or(input);
    Some(Rates { input, output: output?, cache_read: cache_read.unwrap_or(input), cache_write_5m, cache_write_1h: cache_write_1h.unwrap_or(cache_write_5m) })
}

/// Splits `input_cost_per_token_above_272k_tokens` into `input_cost_per_token` and 272 000.
fn split_threshold(key: &str) -> (&str, Option<u64>) {
    let threshold = key.rsplit_once("_above_").and_then(|(field, suffix)| {
        let thousands = suffix.strip_suffix("k_tokens")?.parse::<u64>().ok()?;
        Some((field, thousands.checked_mul(1000)?))
    });
    match threshold {
        Some((field, tokens)) => (field, Some(tokens)),
        None => (key, None),
    }
}

/// Step 2 of [`PriceTable::lookup`].
fn without_provider(model: &str) -> String {
    let name = model.rsplit_once('/').map_or(model, |(_, name)| name);
    let name = ["anthropic.", "openai."]
        .iter()
        .find_map(|vendor| {
            let (region, rest) = name.split_once(vendor)?;
            (region.is_empty() || region.ends_with('.')).then_some(rest)
        })
        .unwrap_or(name);
    if name.starts_with("claude-") {
        name.replace('.', "-")
    } else {
        name.to_owned()
    }
}

/// Step 3 of [`PriceTable::lookup`].
fn without_date(name: &str) -> &str {
    let name = match name.rsplit_once("-v") {
        Some((stem, version)) if is_bedrock_version(version) => stem,
        _ => name,
    };
    let is_digits = |text: &str| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
    if let Some((stem, date)) = name.rsplit_once(['-', '@']) {
        if date.len() == 8 && is_digits(date) {
            return stem;
        }
    }
    // `-2025-04-14`: three dash-separated parts of 4, 2 and 2 digits.
    let mut parts = name.rsplitn(4, '-');
    let (day, month, year, stem) = (parts.next(), parts.next(), parts.next(), parts.next());
    match (stem, year, month, day) {
        (Some(stem), Some(year), Some(month), Some(day))
            if year.len() == 4 && month.len() == 2 && day.len() == 2 && [year, month, day].into_iter().all(is_digits) =>
        {
            stem
        }
        _ => name,
    }
}

/// Whether `text` is the `1:0` of a Bedrock `-v1:0` suffix.
fn is_bedrock_version(text: &str) -> bool {
    text.split_once(':').is_some_and(|(major, minor)| [major, minor].iter().all(|part| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Float sums differ from hand arithmetic in the last bits only.
    fn assert_usd(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 1e-12, "cost {actual} != {expected}");
    }

    fn table() -> PriceTable {
        PriceTable::embedded()
    }

    #[test]
    fn pricing_every_bundled_model_parses() {
        let document: Value = serde_json::from_str(EMBEDDED_PRICES).unwrap();
        assert_eq!(table().models.len(), document["models"].as_object().unwrap().len());
        assert!(table().models.len() > 100);
    }

    #[test]
    fn pricing_claude_sonnet_4_5_cost_by_hand() {
        // prices.json: input 3e-06, output 1.5e-05, cache read 3e-07,
        // cache write 3.75e-06 (5 minutes) and 6e-06 (1 hour).
        let usage = TokenCounts { input: 1_000, output: 500, cache_read: 20_000, cache_write_5m: 3_000, cache_write_1h: 2_000 };
        let expected = 1_000.0 * 3e-6 + 500.0 * 1.5e-5 + 20_000.0 * 3e-7 + 3_000.0 * 3.75e-6 + 2_000.0 * 6e-6;
        assert_usd(expected, 0.03975);
        let price = table().lookup("claude-sonnet-4-5").copied().unwrap();
        assert_usd(price.cost(&usage), expected);
    }

    #[test]
    fn pricing_gpt_5_cost_by_hand() {
        // prices.json: input 1.25e-06, output 1e-05, cache read 1.25e-07; no cache write price,
        // so a write is billed as input.
        let usage = TokenCounts { input: 10_000, output: 2_000, cache_read: 50_000, cache_write_5m: 0, cache_write_1h: 100 };
        let price = table().lookup("gpt-5").copied().unwrap();
        assert_usd(price.cost(&usage), 0.0125 + 0.02 + 0.00625 + 0.000125);
    }

    #[test]
    fn pricing_lookup_strips_prefixes_and_dates() {
        let table = table();
        let found = |model: &str| table.lookup(model).map(|price| price as *const ModelPrice);
        let sonnet = found("claude-sonnet-4-5");
        assert!(sonnet.is_some());
        for model in [
            "anthropic/claude-sonnet-4-5",
            "claude-sonnet-4-5@20250929",
            "vertex_ai/claude-sonnet-4-5@20990101",
            "claude-sonnet-4-5-20990101",
            "github-copilot/claude-sonnet-4.5",
        ] {
            assert_eq!(found(model), sonnet, "{model}");
        }
        assert_eq!(found("openai/gpt-5-2099-01-01"), found("gpt-5"));
        assert_eq!(found("global.anthropic.claude-haiku-4-5-20991231-v1:0"), found("claude-haiku-4-5"));
        assert_eq!(found("gpt-5.1-chat"), found("gpt-5.1-chat-latest"));
        // An exact dated or Bedrock name keeps its own entry rather than its alias's.
        let bedrock = found("claude-sonnet-4-5-20250929-v1:0");
        assert!(bedrock.is_some() && bedrock != sonnet);
        assert_eq!(found("bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0"), bedrock);
        // A dotted version is part of an OpenAI name.
        assert_ne!(found("gpt-5.1"), found("gpt-5-1"));
    }

    #[test]
    fn pricing_unknown_model_has_no_price() {
        let table = table();
        for model in ["llama-3.3-70b", "", "anthropic/", "claude-sonnet-4-5-turbo", "gpt-5-20250929x"] {
            assert!(table.lookup(model).is_none(), "{model}");
        }
    }

    #[test]
    fn pricing_long_prompt_moves_the_whole_response_to_long_context_rates() {
        // prices.json, claude-sonnet-4-5-20250929-v1:0 above 200k prompt tokens: input 6e-06,
        // output 2.25e-05, cache read 6e-07.
        let price = table().lookup("claude-sonnet-4-5-20250929-v1:0").copied().unwrap();
        let long = TokenCounts { input: 150_000, output: 1_000, cache_read: 60_001, ..Default::default() };
        assert_usd(price.cost(&long), 150_000.0 * 6e-6 + 1_000.0 * 2.25e-5 + 60_001.0 * 6e-7);
        // Exactly 200k is not above the threshold.
        let at_limit = TokenCounts { cache_read: 50_000, ..long };
        assert_usd(price.cost(&at_limit), 150_000.0 * 3e-6 + 1_000.0 * 1.5e-5 + 50_000.0 * 3e-7);
        // gpt-5.5's threshold is 272k and it has no long-context cache write price of its own.
        let gpt = table().lookup("gpt-5.5").copied().unwrap();
        assert_eq!(gpt.long_context.map(|long| long.above_prompt_tokens), Some(272_000));
        let long = TokenCounts { input: 300_000, output: 10, ..Default::default() };
        assert_usd(gpt.cost(&long), 300_000.0 * 1e-5 + 10.0 * 4.5e-5);
    }

    #[test]
    fn pricing_override_file_replaces_a_price_and_adds_a_model() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prices.json");
        std::fs::write(
            &path,
            r#"{"models": {
                "claude-sonnet-4-5": {"input_cost_per_token": 4e-06},
                "house-model": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06,
                                "cache_creation_input_token_cost": 1.25e-06}
            }}"#,
        )
        .unwrap();
        let table = PriceTable::with_overrides(&path).unwrap();
        let sonnet = table.lookup("anthropic/claude-sonnet-4-5").unwrap();
        assert_eq!(sonnet.standard.input, 4e-6);
        assert_eq!(sonnet.standard.output, 1.5e-5, "fields the file does not name are kept");
        let house = table.lookup("openai/house-model").unwrap();
        let usage = TokenCounts { input: 1_000, output: 1_000, cache_write_1h: 1_000, ..Default::default() };
        // No 1-hour write price: the 5-minute one applies; no cache read price: input applies.
        assert_usd(house.cost(&usage), 1e-3 + 2e-3 + 1.25e-3);
        assert_eq!(house.standard.cache_read, 1e-6);
        assert_eq!(table.lookup("gpt-5"), PriceTable::embedded().lookup("gpt-5"));
    }

    #[test]
    fn pricing_bad_override_file_is_an_error_naming_the_path_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("my-prices.json");
        let error_for = |text: &str| {
            std::fs::write(&path, text).unwrap();
            PriceTable::with_overrides(&path).unwrap_err().to_string()
        };
        let cases = [
            ("{\"models\": {\"gpt-5\": ", "it is not JSON"),
            ("[1, 2]", "no \"models\" object"),
            ("{\"models\": {\"gpt-5\": 3}}", "model \"gpt-5\" is not an object"),
            ("{\"models\": {\"gpt-5\": {\"input_cost\": 1}}}", "unknown field \"input_cost\""),
            ("{\"models\": {\"gpt-5\": {\"input_cost_per_token\": \"3\"}}}", "is \"3\", not a number"),
            ("{\"models\": {\"gpt-5\": {\"input_cost_per_token\": -1}}}", "is -1, not a number"),
            ("{\"models\": {\"new\": {\"input_cost_per_token\": 1e-06}}}", "model \"new\" needs both"),
            (
                // gpt-5.5 is bundled with prices above 272k tokens.
                "{\"models\": {\"gpt-5.5\": {\"input_cost_per_token_above_200k_tokens\": 1e-06}}}",
                "more than one threshold",
            ),
        ];
        for (text, problem) in cases {
            let message = error_for(text);
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains(problem), "{message}");
            assert!(message.contains("a price file is a JSON object like"), "{message}");
        }
        let missing = dir.path().join("absent.json");
        let message = PriceTable::with_overrides(&missing).unwrap_err().to_string();
        assert!(message.contains(&missing.display().to_string()), "{message}");
    }
}
