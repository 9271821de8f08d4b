#!/usr/bin/env python3
"""Independent reference totals for Claude Code and Codex CLI transcript trees.

Python 3 standard library only. This file deliberately shares nothing with the
Rust decoder: it exists so the end-to-end tests can catch decoder mistakes.

Usage:
    python3 tests/support/agent_totals.py --claude DIR --codex DIR
    python3 tests/support/agent_totals.py --check-expected SHARED_FIXTURES_DIR

Output (stdout, JSON), only for the agents whose flag was given:
    {"claude_code": {"sessions": {id: T}, "models": {model: T}},
     "codex":       {"sessions": {id: T}, "models": {model: T}}}
    T = {"input", "output", "reasoning", "cache_read", "cache_write", "responses"}
Notes about skipped input go to stderr.

De-duplication rules (the project's decisions):

Claude Code (DIR = ~/.claude, or its projects/ folder, or any folder of
transcripts; every *.jsonl below it is read, files in sorted path order):
  * a row is one API response, keyed by message.id of a `type: "assistant"`
    line; several lines repeat the same response (one per content block, and
    forked / resumed / sub-agent files may copy lines): the LAST line seen
    for an id wins (file order, files in sorted path order);
  * lines with isApiErrorMessage == true or message.model == "<synthetic>" are
    skipped (they never overwrite a kept row);
  * input = usage.input_tokens, cache_read = usage.cache_read_input_tokens,
    cache_write = usage.cache_creation_input_tokens,
    output = usage.output_tokens,
    reasoning = usage.output_tokens_details.thinking_tokens (inside output);
  * session = sessionId for main-thread lines; a sub-agent line
    (isSidechain true with agentId, written to
    <session>/subagents/agent-<agentId>.jsonl) belongs to the child session
    "<sessionId>/agent-<agentId>";
  * model = message.model;
  * the parent's tool_result toolUseResult.usage is never counted (it repeats
    the sub-agent's last response).

Codex (DIR = ~/.codex: sessions/ and archived_sessions/ are read; or any
folder: every rollout-*.jsonl below it; files in sorted path order):
  * a row is one `token_usage_record` line keyed by payload.response_id, the
    LAST one seen for an id wins; event_msg token_count lines are not counted;
  * session = thread id = payload.id of the file's session_meta (first line);
  * input = usage.input_tokens - usage.cached_input_tokens (ducktail's input
    excludes cache reads), cache_read = cached_input_tokens,
    cache_write = cache_write_input_tokens (0 if absent),
    output = output_tokens (includes reasoning),
    reasoning = reasoning_output_tokens;
  * model = a model carried by the record itself if any, else the
    turn_context (same file) whose turn_id equals the record's turn_id, else
    the most recent turn_context before the record, else the most recent
    thread_settings_applied before it;
  * compressed rollouts (*.jsonl.zst, *.jsonl.gz) are ignored (reported on
    stderr).
"""

import argparse
import json
import os
import sys

FIELDS = ("input", "output", "reasoning", "cache_read", "cache_write", "responses")


def warn(msg):
    sys.stderr.write("agent_totals: " + msg + "\n")


def num(v):
    """Token counts: null / missing / non-numeric -> 0."""
    if isinstance(v, bool):
        return 0
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v)
    return 0


def walk_files(root, accept):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            if accept(name):
                out.append(os.path.join(dirpath, name))
    out.sort()
    return out


def read_json_lines(path):
    """Yields (line_number, object) for each parseable JSON object line."""
    bad = 0
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        for n, raw in enumerate(fh):
            raw = raw.strip()
            if not raw:
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                bad += 1
                continue
            if isinstance(obj, dict):
                yield n, obj
    if bad:
        warn("%s: %d unparseable line(s) skipped" % (path, bad))


def empty_totals():
    return {k: 0 for k in FIELDS}


def aggregate(rows):
    """rows: dict key -> {session, model, input, output, ...}."""
    sessions, models = {}, {}
    for row in rows.values():
        for bucket, key in ((sessions, row["session"]), (models, row["model"])):
            t = bucket.setdefault(key, empty_totals())
            for f in FIELDS[:-1]:
                t[f] += row[f]
            t["responses"] += 1
    return {
        "sessions": dict(sorted(sessions.items())),
        "models": dict(sorted(models.items())),
    }


# --------------------------------------------------------------------------
# Claude Code


def claude_rows(root):
    base = os.path.join(root, "projects")
    if not os.path.isdir(base):
        base = root
    files = walk_files(base, lambda n: n.endswith(".jsonl"))
    compressed = walk_files(base, lambda n: n.endswith((".jsonl.zst", ".jsonl.gz")))
    if compressed:
        warn("claude: %d compressed transcript(s) ignored" % len(compressed))
    rows = {}
    skipped_error = skipped_noid = 0
    for path in files:
        fname = os.path.basename(path)
        file_agent = None
        if fname.startswith("agent-") and fname.endswith(".jsonl"):
            file_agent = fname[len("agent-"):-len(".jsonl")]
        for _, d in read_json_lines(path):
            if d.get("type") != "assistant":
                continue
            msg = d.get("message")
            if not isinstance(msg, dict):
                continue
            model = msg.get("model")
            if d.get("isApiErrorMessage") is True or model == "<synthetic>":
                skipped_error += 1
                continue
            mid = msg.get("id")
            usage = msg.get("usage")
            if not mid or not isinstance(usage, dict):
                skipped_noid += 1
                continue
            sid = d.get("sessionId")
            if not sid:
                # last resort: the file name is <sessionId>.jsonl for main files
                sid = fname[:-len(".jsonl")] if file_agent is None else "?"
            agent = d.get("agentId") if d.get("isSidechain") is True else None
            if agent is None and file_agent is not None:
                agent = d.get("agentId") or file_agent
            if agent is not None and file_agent is not None and agent != file_agent:
                warn("claude: %s: agentId %s differs from file name" % (path, agent))
            session = sid if agent is None else "%s/agent-%s" % (sid, agent)
            details = usage.get("output_tokens_details")
            thinking = num(details.get("thinking_tokens")) if isinstance(details, dict) else 0
            rows.pop(mid, None)  # keep insertion order = order of last sighting
            rows[mid] = {
                "session": session,
                "model": model if isinstance(model, str) and model else "unknown",
                "input": num(usage.get("input_tokens")),
                "cache_read": num(usage.get("cache_read_input_tokens")),
                "cache_write": num(usage.get("cache_creation_input_tokens")),
                "output": num(usage.get("output_tokens")),
                "reasoning": thinking,
            }
    if skipped_error:
        warn("claude: %d API-error / <synthetic> assistant line(s) skipped" % skipped_error)
    if skipped_noid:
        warn("claude: %d assistant line(s) without message.id or usage skipped" % skipped_noid)
    return rows


# --------------------------------------------------------------------------
# Codex


def codex_files(root):
    accept = lambda n: n.endswith(".jsonl")
    zaccept = lambda n: n.endswith((".jsonl.zst", ".jsonl.gz"))
    bases = [os.path.join(root, d) for d in ("sessions", "archived_sessions")]
    bases = [b for b in bases if os.path.isdir(b)] or [root]
    files, compressed = [], []
    for b in bases:
        files += walk_files(b, accept)
        compressed += walk_files(b, zaccept)
    if compressed:
        warn("codex: %d compressed rollout(s) ignored: %s" % (
            len(compressed), ", ".join(os.path.basename(c) for c in compressed[:5])))
    return sorted(files)


def codex_rows(root):
    rows = {}
    legacy_files = 0
    for path in codex_files(root):
        thread = None
        first = True
        turn_models = {}  # turn_id -> model from turn_context
        last_tc_model = None
        last_settings_model = None
        records = []
        saw_token_count = False
        for _, d in read_json_lines(path):
            t = d.get("type")
            p = d.get("payload")
            if not isinstance(p, dict):
                p = {}
            if first:
                first = False
                if t == "session_meta":
                    thread = p.get("id")
            if t == "session_meta" and thread is None:
                thread = p.get("id")
            if t == "turn_context":
                m = p.get("model")
                if isinstance(m, str) and m:
                    last_tc_model = m
                    if p.get("turn_id"):
                        turn_models[p["turn_id"]] = m
            elif t == "event_msg" and p.get("type") == "thread_settings_applied":
                ts = p.get("thread_settings")
                if isinstance(ts, dict) and isinstance(ts.get("model"), str):
                    last_settings_model = ts["model"]
            elif t == "event_msg" and p.get("type") == "token_count":
                saw_token_count = True
            elif t == "token_usage_record":
                records.append((p, last_tc_model, last_settings_model))
        if thread is None:
            warn("codex: %s: no session_meta, file skipped" % path)
            continue
        if saw_token_count and not records:
            legacy_files += 1
        for p, tc_model, settings_model in records:
            rid = p.get("response_id")
            usage = p.get("usage")
            if not rid or not isinstance(usage, dict):
                warn("codex: %s: token_usage_record without response_id/usage" % path)
                continue
            model = p.get("model") or usage.get("model")
            if not model:
                model = turn_models.get(p.get("turn_id")) or tc_model or settings_model
            cached = num(usage.get("cached_input_tokens"))
            inp = num(usage.get("input_tokens")) - cached
            if inp < 0:
                warn("codex: %s: %s has cached > input" % (path, rid))
            rows.pop(rid, None)
            rows[rid] = {
                "session": thread,
                "model": model or "unknown",
                "input": inp,
                "cache_read": cached,
                "cache_write": num(usage.get("cache_write_input_tokens")),
                "output": num(usage.get("output_tokens")),
                "reasoning": num(usage.get("reasoning_output_tokens")),
            }
    if legacy_files:
        warn("codex: %d rollout(s) have token_count events but no token_usage_record "
             "(older CLI); nothing counted for them" % legacy_files)
    return rows


# --------------------------------------------------------------------------
# Self-check against the mock server's own log (expected-totals.json)


def check_expected(shared):
    problems = []
    info = []

    def cmp(label, got, want):
        if got != want:
            problems.append("%s: got %s, expected %s" % (label, got, want))

    # Claude Code
    exp = json.load(open(os.path.join(shared, "claude-code", "expected-totals.json")))
    rows = claude_rows(os.path.join(shared, "claude-code", "dot-claude"))
    agg = aggregate(rows)

    def claude_map(e):
        return {
            "input": e["input_tokens"], "cache_write": e["cache_creation_input_tokens"],
            "cache_read": e["cache_read_input_tokens"], "output": e["output_tokens"],
            "reasoning": e["thinking_tokens"], "responses": e["responses"],
        }

    total = empty_totals()
    for t in agg["models"].values():
        for f in FIELDS:
            total[f] += t[f]
    cmp("claude total", total, claude_map(exp["totals"]["responses_whose_id_appears_in_the_files"]))
    # by_model in expected-totals.json covers ALL responses, including the
    # compaction call whose id is in no file: take those out before comparing.
    want_models = {m: claude_map(v) for m, v in exp["totals"]["by_model"].items()}
    for r in exp["responses"]:
        if r.get("found_in"):
            continue
        w = want_models[r["model"]]
        u = r["usage"]
        w["input"] -= u["input_tokens"]
        w["cache_write"] -= u["cache_creation_input_tokens"]
        w["cache_read"] -= u["cache_read_input_tokens"]
        w["output"] -= u["output_tokens"]
        w["reasoning"] -= u["thinking_tokens"]
        w["responses"] -= 1
        info.append("claude: by_model[%s] minus %s (%s, not in files)" % (r["model"], r["id"], r["kind"]))
    want_models = {m: w for m, w in want_models.items() if w["responses"]}
    cmp("claude by_model (ids in files)", agg["models"], dict(sorted(want_models.items())))
    seen = set()
    for r in exp["responses"]:
        if not r.get("found_in"):
            info.append("claude: %s (%s) not in files, not counted" % (r["id"], r["kind"]))
            continue
        seen.add(r["id"])
        row = rows.get(r["id"])
        if row is None:
            problems.append("claude: response %s missing" % r["id"])
            continue
        u = r["usage"]
        cmp("claude %s usage" % r["id"],
            (row["input"], row["cache_write"], row["cache_read"], row["output"], row["reasoning"]),
            (u["input_tokens"], u["cache_creation_input_tokens"], u["cache_read_input_tokens"],
             u["output_tokens"], u["thinking_tokens"]))
        cmp("claude %s model" % r["id"], row["model"], r["model"])
        if r["kind"] == "subagent":
            if not row["session"].startswith(r["session_header"] + "/agent-"):
                problems.append("claude %s: session %s is not a child of %s"
                                % (r["id"], row["session"], r["session_header"]))
        elif row["session"] != r["session_header"]:
            problems.append("claude %s: session %s, expected %s"
                            % (r["id"], row["session"], r["session_header"]))
    for rid in rows:
        if rid not in seen:
            problems.append("claude: row %s is not a mock response" % rid)
    # the last cost-state of each session includes sub-agent + compaction calls
    info.append("claude sessions: %s" % json.dumps(agg["sessions"], sort_keys=True))

    # Codex
    exp = json.load(open(os.path.join(shared, "codex", "expected-totals.json")))
    rows = codex_rows(os.path.join(shared, "codex", "dot-codex"))
    agg = aggregate(rows)

    def codex_map(e):
        return {
            "input": e["input_tokens"] - e["cached_tokens"], "cache_read": e["cached_tokens"],
            "cache_write": 0, "output": e["output_tokens"], "reasoning": e["reasoning_tokens"],
            "responses": e["responses"],
        }

    total = empty_totals()
    for t in agg["models"].values():
        for f in FIELDS:
            total[f] += t[f]
    cmp("codex total", total, codex_map(exp["totals"]["responses_whose_id_appears_in_the_files"]))
    if any(not r.get("found_in") for r in exp["responses"]):
        problems.append("codex: expected-totals lists responses absent from the files; "
                        "by_model comparison below includes them")
    want_models = {m: codex_map(v) for m, v in exp["totals"]["by_model"].items()}
    cmp("codex by_model", agg["models"], dict(sorted(want_models.items())))
    want_threads = {m: codex_map(v) for m, v in exp["totals"]["by_thread"].items()}
    cmp("codex by_thread", agg["sessions"], dict(sorted(want_threads.items())))
    seen = set()
    for r in exp["responses"]:
        if not r.get("found_in"):
            info.append("codex: %s not in files, not counted" % r["id"])
            continue
        seen.add(r["id"])
        row = rows.get(r["id"])
        if row is None:
            problems.append("codex: response %s missing" % r["id"])
            continue
        u = r["usage"]
        cmp("codex %s usage" % r["id"],
            (row["input"] + row["cache_read"], row["cache_read"], row["output"], row["reasoning"]),
            (u["input_tokens"], u["cached_tokens"], u["output_tokens"], u["reasoning_tokens"]))
        cmp("codex %s model" % r["id"], row["model"], r["model"])
        cmp("codex %s session" % r["id"], row["session"], r.get("thread_header"))
    for rid in rows:
        if rid not in seen:
            problems.append("codex: row %s is not a mock response" % rid)
    info.append("codex sessions: %s" % json.dumps(agg["sessions"], sort_keys=True))

    for line in info:
        print("info: " + line)
    for line in problems:
        print("MISMATCH: " + line)
    print("check-expected: %s" % ("OK" if not problems else "%d mismatch(es)" % len(problems)))
    return 0 if not problems else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--claude", metavar="DIR", help="~/.claude (or its projects/ folder)")
    ap.add_argument("--codex", metavar="DIR", help="~/.codex (sessions/, archived_sessions/)")
    ap.add_argument("--check-expected", metavar="SHARED_FIXTURES_DIR",
                    help="compare with <dir>/{claude-code,codex}/expected-totals.json")
    args = ap.parse_args(argv)
    if args.check_expected:
        return check_expected(args.check_expected)
    if not args.claude and not args.codex:
        ap.error("give --claude DIR and/or --codex DIR")
    out = {}
    for flag, key, fn in ((args.claude, "claude_code", claude_rows),
                          (args.codex, "codex", codex_rows)):
        if flag:
            if not os.path.isdir(flag):
                ap.error("not a directory: %s" % flag)
            out[key] = aggregate(fn(flag))
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
