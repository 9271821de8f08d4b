//! Word lists and text builders that make generated sessions read like real coding sessions.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The language of a project decides its files, commands and code snippets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Language {
    Rust,
    TypeScript,
    Python,
    Go,
    Notes,
}

/// A kind of repository a session can work in.
#[derive(Debug)]
pub(crate) struct ProjectKind {
    /// Directory name under `/home/dev/src/` (empty for the global project).
    pub name: &'static str,
    pub language: Language,
    /// Paths relative to the worktree.
    pub files: &'static [&'static str],
    /// Sub-directories a session is sometimes started from.
    pub subdirs: &'static [&'static str],
}

pub(crate) const PROJECT_KINDS: &[ProjectKind] = &[
    ProjectKind {
        name: "ledger-api",
        language: Language::Rust,
        files: &[
            "src/main.rs",
            "src/lib.rs",
            "src/db.rs",
            "src/routes/users.rs",
            "src/routes/invoices.rs",
            "src/error.rs",
            "tests/api.rs",
            "Cargo.toml",
            "README.md",
        ],
        subdirs: &["src", "tests"],
    },
    ProjectKind {
        name: "storefront",
        language: Language::TypeScript,
        files: &[
            "src/App.tsx",
            "src/components/Cart.tsx",
            "src/components/ProductCard.tsx",
            "src/api/client.ts",
            "src/hooks/useAuth.ts",
            "src/store/cart.ts",
            "vite.config.ts",
            "package.json",
            "README.md",
        ],
        subdirs: &["src", "src/components"],
    },
    ProjectKind {
        name: "data-pipeline",
        language: Language::Python,
        files: &[
            "pipeline/ingest.py",
            "pipeline/transform.py",
            "pipeline/schema.py",
            "pipeline/cli.py",
            "tests/test_ingest.py",
            "tests/test_transform.py",
            "pyproject.toml",
            "README.md",
        ],
        subdirs: &["pipeline", "tests"],
    },
    ProjectKind {
        name: "edge-proxy",
        language: Language::Go,
        files: &[
            "cmd/proxy/main.go",
            "internal/router/router.go",
            "internal/router/router_test.go",
            "internal/config/config.go",
            "internal/cache/lru.go",
            "go.mod",
            "README.md",
        ],
        subdirs: &["internal", "cmd/proxy"],
    },
    ProjectKind {
        name: "infra-tools",
        language: Language::Python,
        files: &["tools/deploy.py", "tools/healthcheck.py", "tools/rotate_keys.py", "tests/test_deploy.py", "pyproject.toml", "README.md"],
        subdirs: &["tools"],
    },
    ProjectKind {
        name: "docs-site",
        language: Language::TypeScript,
        files: &["src/pages/index.tsx", "src/components/Sidebar.tsx", "src/lib/search.ts", "astro.config.ts", "package.json", "README.md"],
        subdirs: &["src"],
    },
    ProjectKind {
        name: "ingest-worker",
        language: Language::Rust,
        files: &["src/main.rs", "src/queue.rs", "src/worker.rs", "src/metrics.rs", "Cargo.toml", "README.md"],
        subdirs: &["src"],
    },
];

/// The non-git "global" project: sessions started from the home directory.
pub(crate) const GLOBAL_KIND: ProjectKind = ProjectKind {
    name: "",
    language: Language::Notes,
    files: &["notes/todo.md", "scripts/backup.sh", "scratch/parse_log.py", ".bashrc", "notes/meeting.md"],
    subdirs: &["scratch", "notes", "Desktop"],
};

/// A model and its prices in USD per million tokens.
#[derive(Debug)]
pub(crate) struct Model {
    pub provider: &'static str,
    pub id: &'static str,
    pub price_input: f64,
    pub price_output: f64,
    pub price_cache_read: f64,
    pub price_cache_write: f64,
    /// Anthropic models write prompt caches and sign their reasoning.
    pub anthropic: bool,
    pub weight: u32,
}

pub(crate) const MODELS: &[Model] = &[
    Model {
        provider: "anthropic",
        id: "claude-sonnet-4-5-20250929",
        price_input: 3.0,
        price_output: 15.0,
        price_cache_read: 0.3,
        price_cache_write: 3.75,
        anthropic: true,
        weight: 40,
    },
    Model {
        provider: "anthropic",
        id: "claude-opus-4-5-20251101",
        price_input: 5.0,
        price_output: 25.0,
        price_cache_read: 0.5,
        price_cache_write: 6.25,
        anthropic: true,
        weight: 15,
    },
    Model {
        provider: "openai",
        id: "gpt-5.1-codex",
        price_input: 1.25,
        price_output: 10.0,
        price_cache_read: 0.125,
        price_cache_write: 0.0,
        anthropic: false,
        weight: 15,
    },
    Model {
        provider: "google",
        id: "gemini-3-pro-preview",
        price_input: 2.0,
        price_output: 12.0,
        price_cache_read: 0.2,
        price_cache_write: 0.0,
        anthropic: false,
        weight: 8,
    },
    Model {
        provider: "opencode",
        id: "big-pickle",
        price_input: 0.0,
        price_output: 0.0,
        price_cache_read: 0.0,
        price_cache_write: 0.0,
        anthropic: false,
        weight: 12,
    },
    Model {
        provider: "opencode",
        id: "glm-4.7-free",
        price_input: 0.0,
        price_output: 0.0,
        price_cache_read: 0.0,
        price_cache_write: 0.0,
        anthropic: false,
        weight: 10,
    },
];

/// The cheap model `explore` subagents of Anthropic sessions switch to.
pub(crate) const HAIKU: Model = Model {
    provider: "anthropic",
    id: "claude-haiku-4-5-20251001",
    price_input: 1.0,
    price_output: 5.0,
    price_cache_read: 0.1,
    price_cache_write: 1.25,
    anthropic: true,
    weight: 0,
};

/// opencode versions that wrote JSON storage, with weights (newer releases are more common).
pub(crate) const VERSIONS: &[(&str, u32)] = &[
    ("1.1.40", 3),
    ("1.1.42", 3),
    ("1.1.45", 4),
    ("1.1.47", 4),
    ("1.1.49", 5),
    ("1.1.51", 6),
    ("1.1.53", 6),
    ("1.1.56", 7),
    ("1.1.59", 8),
    ("1.1.62", 9),
    ("1.1.65", 12),
];

const SLUG_ADJECTIVES: &[&str] = &[
    "quick", "gentle", "shiny", "clever", "sunny", "brave", "calm", "eager", "fuzzy", "happy", "jolly", "lucky", "misty", "nimble", "proud", "quiet", "rapid",
    "silent", "tidy", "witty", "bold", "cosmic", "swift", "mellow",
];
const SLUG_NOUNS: &[&str] = &[
    "planet", "forest", "cactus", "lagoon", "island", "river", "meadow", "falcon", "harbor", "comet", "canyon", "willow", "garden", "otter", "summit",
    "glacier", "beacon", "pebble", "orchid", "tiger", "nebula", "panda",
];

/// `adjective-noun`, like opencode's `Slug.create()`.
pub(crate) fn slug(rng: &mut ChaCha8Rng) -> String {
    format!("{}-{}", pick(rng, SLUG_ADJECTIVES), pick(rng, SLUG_NOUNS))
}

/// A uniformly chosen element (the lists are never empty).
pub(crate) fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    *items.choose(rng).expect("non-empty list")
}

/// `count` lowercase hex digits (snapshot hashes, project ids).
pub(crate) fn hex(rng: &mut ChaCha8Rng, count: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    (0..count).map(|_| HEX[rng.gen_range(0..16)] as char).collect()
}

/// `count` base62 characters (provider call ids, signatures).
pub(crate) fn base62(rng: &mut ChaCha8Rng, count: usize) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..count).map(|_| ALPHABET[rng.gen_range(0..62)] as char).collect()
}

/// A session's opening request: (session title, prompt). `{file}` is replaced by a project file.
pub(crate) const TASKS: &[(&str, &str)] = &[
    ("Fix failing tests after refactor", "The tests around {file} started failing after yesterday's refactor. Can you find out why and fix them?"),
    ("Add pagination to list endpoint", "Add cursor-based pagination to the list endpoint, the handler is in {file}. Keep the old query params working."),
    ("Investigate slow startup", "Startup got really slow, like 8 seconds. Can you profile what happens in {file} and speed it up?"),
    ("Refactor error handling", "refactor the error handling in {file} so we stop swallowing errors, use a proper error type"),
    ("Write README setup section", "Update the README with setup instructions, look at {file} for what's needed"),
    ("Add retry with backoff", "add retries with exponential backoff to the client in {file}, max 5 attempts"),
    ("Explain caching module", "Can you explain how {file} works? I'm new to this codebase."),
    ("Fix lint warnings", "fix all the lint warnings, start with {file}"),
    ("Add unit tests for parser", "Write unit tests for the parsing code in {file}, cover the edge cases (empty input, unicode, huge numbers)"),
    ("Upgrade dependencies", "Upgrade our dependencies to the latest versions and fix whatever breaks. Manifest is {file}."),
    ("Debug flaky integration test", "The integration test in {file} fails maybe 1 in 10 runs on CI. Figure out the race."),
    ("Rename config options", "Rename the config option `timeout` to `request_timeout` everywhere, starting from {file}"),
    ("Add structured logging", "Switch {file} to structured logging with request ids"),
    ("Remove dead code", "there's a lot of dead code in {file}, please clean it up without changing behaviour"),
    ("Implement rate limiter", "Implement a token-bucket rate limiter and wire it into {file}"),
    ("Review recent changes", "review my last changes in {file} and tell me if anything looks wrong"),
];

/// Follow-up prompts for later turns of a session.
pub(crate) const FOLLOW_UPS: &[&str] = &[
    "ok that works, but can you also handle the case where the input is empty?",
    "run the tests again please",
    "looks good. now update {file} accordingly",
    "hmm, that broke the build. can you check?",
    "Can you add a test for that?",
    "thanks! commit this with a sensible message",
    "why did you change {file}? revert that part",
    "great, also document the new behaviour in the README",
    "now do the same for the other handlers",
    "is there a simpler way to do this?",
    "the CI says clippy fails, please fix",
    "perfect. one more thing: rename the function to something clearer",
];

/// (description, prompt) pairs for `task` tool calls.
pub(crate) const DELEGATIONS: &[(&str, &str)] = &[
    (
        "Find all call sites",
        "Search the codebase for every call site of the function defined in {file} and report file paths with line numbers. Do not modify anything.",
    ),
    ("Explore test setup", "Figure out how the test suite is set up (fixtures, helpers, env vars) starting from {file}. Return a short summary."),
    ("Audit error handling", "Read {file} and the modules it imports; list every place where an error is ignored or unwrapped."),
    ("Check dependency usage", "Determine which dependencies declared in the manifest are actually used, starting at {file}."),
    ("Summarize module structure", "Give me a concise map of the modules under the directory of {file}: what each owns and how they depend on each other."),
    ("Draft migration plan", "Investigate {file} and draft a step-by-step plan to migrate it to the new API. Include risks."),
    ("Locate config loading", "Find where configuration is loaded and validated; {file} is a good starting point."),
];

/// Final answers of subagents (inside `<task_result>`).
pub(crate) const TASK_RESULTS: &[&str] = &[
    "Found 7 call sites across 4 files. All of them pass the request context; two of them ignore the returned error.",
    "The tests use a shared fixture directory created in a setup helper; the database is an in-memory instance per test. No env vars are required.",
    "Three places swallow errors: the retry loop, the cache refresh and the shutdown hook. Details are listed above.",
    "All declared dependencies are used except one test-only helper that can move to dev-dependencies.",
    "The module tree is shallow: an entry point, a router, a config loader and a cache. Only the router depends on the cache.",
    "Plan: 1) add the new client behind a flag, 2) migrate callers one by one, 3) remove the old client. Main risk: timeouts differ.",
];

/// Short lines an assistant writes before calling tools.
pub(crate) const OPENERS: &[&str] = &[
    "Let me look at {file} first.",
    "I'll start by reading the relevant code.",
    "Let me check how this is currently implemented.",
    "I'll run the tests to see the current state.",
    "Now let me update {file}.",
    "Let me search for other usages before changing anything.",
    "I'll create a todo list to track this.",
    "Good, that narrows it down. Let me check {file} as well.",
];

/// Final answers of an assistant turn.
pub(crate) const ANSWERS: &[&str] = &[
    "Done. I updated {file} and the tests pass now.\n\nSummary of changes:\n- fixed the off-by-one in the loop bound\n- added a regression test\n- cleaned up two unused imports",
    "The problem was a missing `await` in {file}: the function returned before the write finished. I fixed it and added a test that fails without the fix.",
    "I've made the change. Running the full test suite shows all tests passing (0 failures).",
    "Here's how it works:\n\n1. The entry point parses the config.\n2. Requests go through the router in {file}.\n3. Responses are cached by key with a TTL.\n\nLet me know if you want me to go deeper into any part.",
    "All lint warnings are fixed. Most were unused variables; one was a real bug where the error was ignored.",
    "I couldn't reproduce the failure locally after 50 runs, but the timeout in {file} is too tight for CI. I raised it and made the wait condition explicit.",
    "Updated. The old behaviour is kept behind the `legacy` flag so nothing breaks for existing users.",
    "Committed as `fix: handle empty input in parser`.",
];

/// Reasoning snippets (extended thinking).
pub(crate) const THOUGHTS: &[&str] = &[
    "The user wants me to fix the failing tests. I should first run them to see the actual error, then read the code under test.",
    "**Investigating the failure**\n\nThe stack trace points at the parser. The input contains a trailing newline which the tokenizer doesn't expect.",
    "I need to find where this function is called before renaming it. A grep should be enough.",
    "This is a larger task; delegating the search to a subagent keeps my context small.",
    "The edit applied cleanly. Now I should run the test suite to verify nothing else broke.",
    "**Planning the change**\n\nI'll add the new option with a default that matches the old behaviour, then update the call sites.",
    "The build failed because of a type mismatch: the function now returns a Result. I need to propagate it.",
];

/// Todo items a session plans with.
pub(crate) const TODO_ITEMS: &[&str] = &[
    "Reproduce the failure locally",
    "Read the module and its tests",
    "Implement the fix",
    "Add a regression test",
    "Run the full test suite",
    "Update documentation",
    "Clean up unused code",
    "Check CI configuration",
    "Review error handling paths",
];

/// Provider-flavoured API errors: (message, status code, retryable).
pub(crate) const API_ERRORS: &[(&str, i64, bool)] = &[
    ("Overloaded", 529, true),
    ("Rate limit exceeded: 40000 input tokens per minute", 429, true),
    ("Internal server error", 500, true),
    ("prompt is too long: 212343 tokens > 200000 maximum", 400, false),
];

/// Lines of a source file in `language`, `count` long.
pub(crate) fn source_lines(rng: &mut ChaCha8Rng, language: Language, count: usize) -> Vec<String> {
    const NAMES: &[&str] =
        &["user", "invoice", "cache", "request", "config", "queue", "order", "session", "token", "record", "batch", "client", "handler", "limit", "retry"];
    let mut lines = Vec::with_capacity(count);
    while lines.len() < count {
        let name = pick(rng, NAMES);
        let other = pick(rng, NAMES);
        let number = rng.gen_range(1..500);
        let block: Vec<String> = match language {
            Language::Rust => vec![
                format!("/// Loads the {name} for the given {other}."),
                format!("pub fn load_{name}(id: u64, {other}: &{}) -> Result<{}, Error> {{", camel(other), camel(name)),
                format!("    let row = db.query_one(\"SELECT * FROM {name}s WHERE id = $1\", &[&id])?;"),
                format!("    if row.len() > {number} {{ return Err(Error::TooLarge); }}"),
                format!("    Ok({}::from_row(&row))", camel(name)),
                "}".to_owned(),
                String::new(),
            ],
            Language::TypeScript => vec![
                format!("export async function fetch{}(id: string): Promise<{}> {{", camel(name), camel(other)),
                format!("  const res = await client.get(`/api/{name}s/${{id}}`, {{ timeout: {number}0 }});"),
                format!("  if (!res.ok) throw new Error(`{name} ${{id}} failed: ${{res.status}}`);"),
                "  return res.json();".to_owned(),
                "}".to_owned(),
                String::new(),
            ],
            Language::Python => vec![
                format!("def load_{name}({other}_id: int, *, limit: int = {number}) -> dict:"),
                format!("    \"\"\"Return the {name} rows for one {other}.\"\"\""),
                format!("    rows = db.fetch(\"select * from {name} where {other}_id = %s\", ({other}_id,))"),
                "    return {row[\"id\"]: row for row in rows[:limit]}".to_owned(),
                String::new(),
            ],
            Language::Go => vec![
                format!("// Load{} returns the {name} for the given {other}.", camel(name)),
                format!("func Load{}(ctx context.Context, id int64) (*{}, error) {{", camel(name), camel(other)),
                format!("\trow := db.QueryRowContext(ctx, \"SELECT * FROM {name}s WHERE id = $1\", id)"),
                "\tif err := row.Err(); err != nil {".to_owned(),
                format!("\t\treturn nil, fmt.Errorf(\"load {name} %d: %w\", id, err)"),
                "\t}".to_owned(),
                format!("\treturn scan{}(row, {number})", camel(other)),
                "}".to_owned(),
                String::new(),
            ],
            Language::Notes => {
                vec![format!("- [ ] follow up on the {name} {other} issue (#{number})"), format!("- [x] ask about {other} limits"), String::new()]
            }
        };
        lines.extend(block);
    }
    lines.truncate(count);
    lines
}

fn camel(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// A shell command, its description, its output and its exit code.
pub(crate) struct BashRun {
    pub command: String,
    pub description: &'static str,
    pub output: String,
    pub exit: Option<i64>,
}

/// A plausible bash call for a project in `language`.
pub(crate) fn bash_run(rng: &mut ChaCha8Rng, language: Language, files: &[&str]) -> BashRun {
    let (test, build, lint) = match language {
        Language::Rust => ("cargo test", "cargo build", "cargo clippy --all-targets"),
        Language::TypeScript => ("npm test", "npm run build", "npx eslint src"),
        Language::Python => ("pytest -q", "python -m build", "ruff check ."),
        Language::Go => ("go test ./...", "go build ./...", "go vet ./..."),
        Language::Notes => ("ls -la", "du -sh *", "grep -rn TODO notes"),
    };
    let passed = rng.gen_range(3..180);
    let seconds = rng.gen_range(1..60);
    match rng.gen_range(0..7) {
        0 | 1 => {
            let failed = if rng.gen_bool(0.35) { rng.gen_range(1..4) } else { 0 };
            let mut output = match language {
                Language::Rust => format!(
                    "   Compiling ledger v0.3.1\n    Finished `test` profile [unoptimized + debuginfo] target(s) in {seconds}.{}s\n     Running unittests src/lib.rs\n\nrunning {} tests\n",
                    rng.gen_range(10..99),
                    passed + failed
                ),
                Language::Python => format!("{}\n", ".".repeat(passed.min(70))),
                _ => format!("> test\n> vitest run\n\n ✓ {} tests\n", passed),
            };
            if failed > 0 {
                output.push_str(&format!(
                    "\nFAILED: {} - assertion failed: left == right\n  left: `{}`\n right: `{}`\n",
                    pick(rng, files),
                    rng.gen_range(0..100),
                    rng.gen_range(100..200)
                ));
            }
            output.push_str(&format!("\n{passed} passed, {failed} failed in {seconds}.{}s\n", rng.gen_range(10..99)));
            BashRun { command: test.to_owned(), description: "Run the test suite", output, exit: Some(i64::from(failed > 0)) }
        }
        2 => BashRun {
            command: build.to_owned(),
            description: "Build the project",
            output: format!("Finished build in {seconds}.{}s\n", rng.gen_range(10..99)),
            exit: Some(0),
        },
        3 => {
            let file = pick(rng, files);
            let warnings = rng.gen_range(0..6);
            let mut output = String::new();
            for index in 0..warnings {
                output.push_str(&format!(
                    "warning: unused variable `{}`\n --> {file}:{}:{}\n\n",
                    pick(rng, &["tmp", "result", "count", "ctx", "index"]),
                    10 + index * 7,
                    rng.gen_range(5..40)
                ));
            }
            output.push_str(&format!("{warnings} warnings emitted\n"));
            BashRun { command: lint.to_owned(), description: "Run the linter", output, exit: Some(0) }
        }
        4 => {
            let mut output = String::from("On branch main\nChanges not staged for commit:\n");
            for _ in 0..rng.gen_range(1..4) {
                output.push_str(&format!("\tmodified:   {}\n", pick(rng, files)));
            }
            output.push_str("\nno changes added to commit (use \"git add\" and/or \"git commit -a\")\n");
            BashRun { command: "git status".to_owned(), description: "Show working tree status", output, exit: Some(0) }
        }
        5 => {
            let file = pick(rng, files);
            BashRun {
                command: "git diff --stat".to_owned(),
                description: "Show changed files summary",
                output: format!(
                    " {file} | {} +++++---\n 1 file changed, {} insertions(+), {} deletions(-)\n",
                    rng.gen_range(2..40),
                    rng.gen_range(1..30),
                    rng.gen_range(0..10)
                ),
                exit: Some(0),
            }
        }
        _ => {
            let mut output = String::new();
            for file in files.iter().take(rng.gen_range(2..files.len().max(3))) {
                output.push_str(&format!("-rw-r--r-- 1 dev dev {:>6} Jan 12 10:{:02} {file}\n", rng.gen_range(200..40000), rng.gen_range(0..60)));
            }
            BashRun { command: "ls -la".to_owned(), description: "List files", output, exit: Some(0) }
        }
    }
}

/// A long build log of at least `bytes` bytes (for the large-output tool parts).
pub(crate) fn large_log(rng: &mut ChaCha8Rng, bytes: usize) -> String {
    const CRATES: &[&str] = &["serde", "tokio", "hyper", "regex", "syn", "quote", "libc", "rand", "bytes", "mio", "futures"];
    let mut output = String::with_capacity(bytes + 128);
    let mut line = 0u64;
    while output.len() < bytes {
        line += 1;
        let name = pick(rng, CRATES);
        output.push_str(&format!(
            "[{line:>6}] Compiling {name} v1.{}.{} (registry+https://github.com/rust-lang/crates.io-index) -C opt-level=3 --cfg feature=\"std\" --out-dir target/release/deps\n",
            rng.gen_range(0..40),
            rng.gen_range(0..20)
        ));
    }
    output
}
