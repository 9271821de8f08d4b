//! Every attribute and span name the OTLP export writes, in one place.
//!
//! The OpenTelemetry GenAI conventions are still marked "development": the names here follow
//! the semantic-conventions registry at [`SEMCONV_VERSION`] (agent spans, inference spans,
//! execute-tool spans). When the conventions move, this module is the one to change, and
//! `docs/export.md` lists the mapping.

/// The semantic-conventions version the names follow.
pub const SEMCONV_VERSION: &str = "1.39.0";
/// The schema URL sent with every scope.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.39.0";

/// `gen_ai.operation.name` and its values.
pub const OPERATION_NAME: &str = "gen_ai.operation.name";
/// An agent's turn: the user's message and every model step and tool call it led to.
pub const INVOKE_AGENT: &str = "invoke_agent";
/// One model response.
pub const CHAT: &str = "chat";
/// One tool call.
pub const EXECUTE_TOOL: &str = "execute_tool";

/// The provider, mapped to the registry's well-known values where there is one.
pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
/// The model asked for.
pub const REQUEST_MODEL: &str = "gen_ai.request.model";
/// The model that answered (the same column: agents log one).
pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
/// Why the model stopped, as a one-element array.
pub const RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
/// The session.
pub const CONVERSATION_ID: &str = "gen_ai.conversation.id";
/// The agent (OpenCode's `build`, `plan`, a sub-agent type; `main` for others).
pub const AGENT_NAME: &str = "gen_ai.agent.name";
/// Input tokens, cache reads and writes included (the conventions count them in; ducktail's
/// `tokens_input` column does not: see `docs/export.md`).
pub const USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
/// Output tokens.
pub const USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
/// Input tokens read from the provider's cache.
pub const USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
/// Input tokens written to the provider's cache.
pub const USAGE_CACHE_CREATION_INPUT_TOKENS: &str = "gen_ai.usage.cache_creation.input_tokens";
/// Reasoning tokens.
pub const USAGE_REASONING_OUTPUT_TOKENS: &str = "gen_ai.usage.reasoning.output_tokens";
/// The tool.
pub const TOOL_NAME: &str = "gen_ai.tool.name";
/// The model's id for the call.
pub const TOOL_CALL_ID: &str = "gen_ai.tool.call.id";
/// `function` for every agent tool.
pub const TOOL_TYPE: &str = "gen_ai.tool.type";
/// The call's arguments (only with `capture_content`).
pub const TOOL_CALL_ARGUMENTS: &str = "gen_ai.tool.call.arguments";
/// The call's result (only with `capture_content`).
pub const TOOL_CALL_RESULT: &str = "gen_ai.tool.call.result";
/// The user's message (only with `capture_content`), as the conventions' JSON message list.
pub const INPUT_MESSAGES: &str = "gen_ai.input.messages";
/// The error's class, on spans that failed.
pub const ERROR_TYPE: &str = "error.type";

/// `service.name` of the resource.
pub const SERVICE_NAME: &str = "service.name";
/// `host.name` of the resource: the machine the sessions ran on.
pub const HOST_NAME: &str = "host.name";

/// Ours: the cost in USD of a model response, as the agent logged it or ducktail computed it.
pub const COST_USD: &str = "ducktail.cost.usd";
/// Ours: `logged` or `computed` (see `docs/schema.md`, `cost_source`).
pub const COST_SOURCE: &str = "ducktail.cost.source";
/// Ours: which coding agent wrote the session (`opencode`, `claude_code`, `codex`).
pub const APP: &str = "ducktail.app";
/// Ours: the session a delegation created, on the tool call that created it.
pub const CHILD_SESSION_ID: &str = "ducktail.child_session.id";
/// Ours: the session's title (only with `capture_content`: titles quote prompts).
pub const SESSION_TITLE: &str = "ducktail.session.title";

/// OpenInference's span kind, which Arize Phoenix and other LLM-observability tools sort spans
/// by; other backends keep it as a plain attribute.
pub const OPENINFERENCE_SPAN_KIND: &str = "openinference.span.kind";

/// The registry's provider value for an agent's provider id (`anthropic`, `openai`, …); an id
/// the registry does not list is sent as the agent logged it.
pub fn provider_name(provider_id: &str) -> &str {
    match provider_id {
        "anthropic" => "anthropic",
        "openai" => "openai",
        "google" | "google-vertex" | "vertex" => "gcp.vertex_ai",
        "gemini" => "gcp.gemini",
        "amazon-bedrock" | "bedrock" => "aws.bedrock",
        "azure" | "azure-openai" => "azure.ai.openai",
        "mistral" => "mistral_ai",
        "groq" => "groq",
        "deepseek" => "deepseek",
        "xai" => "x_ai",
        "perplexity" => "perplexity",
        "cohere" => "cohere",
        other => other,
    }
}
