//! The operator files in `deploy/` checked with Prometheus's own `promtool` against a live
//! daemon: the scrape config and rules are valid, the rules' unit tests pass, the daemon's
//! `/metrics` passes `promtool check metrics`, every metric the rules and the Grafana dashboard
//! name is one the daemon serves, and no alert fires on a healthy daemon's real series.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::*;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// Runs `promtool`, failing with the fix when it is not installed (never passing silently).
fn promtool(arguments: &[&str], stdin: Option<&str>, working_dir: &Path) -> String {
    let mut child = Command::new("promtool")
        .args(arguments)
        .current_dir(working_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run promtool ({error}): install Debian's `prometheus` package (`apt-get install prometheus`); .ci/run does"));
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let output = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "promtool {arguments:?} failed:\n{text}");
    text
}

/// The metric families named in `text` (histogram series reduced to their family).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut start = 0;
    while let Some(found) = text[start..].find("ducktail_") {
        let begin = start + found;
        let end = begin + text[begin..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(text.len() - begin);
        let preceded_by_word = begin > 0 && (bytes[begin - 1].is_ascii_alphanumeric() || bytes[begin - 1] == b'_');
        if !preceded_by_word {
            let name = &text[begin..end];
            let family = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| name.strip_suffix(suffix)).unwrap_or(name);
            names.insert(family.to_owned());
        }
        start = end;
    }
    names
}

#[test]
fn deploy_files_pass_promtool_and_match_the_metrics_a_live_daemon_serves() {
    let deploy = deploy_dir();
    promtool(&["check", "config", "prometheus/prometheus.yml"], None, &deploy);
    promtool(&["test", "rules", "prometheus/ducktail.rules.test.yml"], None, &deploy);

    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    copy_tree(&shared_opencode_fixtures().join("generated-opencode-1.1.65"), &opencode);
    let daemon = Daemon::start(&opencode, &dir.path().join("db.duckdb"), &test_config(dir.path(), ""));
    let exposition = ureq::get(&format!("{}/metrics", daemon.base_url)).call().unwrap().into_string().unwrap();
    promtool(&["check", "metrics"], Some(&exposition), &deploy);

    let served: BTreeSet<String> =
        exposition.lines().filter_map(|line| line.strip_prefix("# TYPE ")).map(|line| line.split(' ').next().unwrap().to_owned()).collect();
    let rules = std::fs::read_to_string(deploy.join("prometheus/ducktail.rules.yml")).unwrap();
    let dashboard = std::fs::read_to_string(deploy.join("grafana/ducktail-dashboard.json")).unwrap();
    let dashboard_json: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(dashboard_json["panels"].as_array().is_some_and(|panels| panels.len() >= 10), "the dashboard has its panels");
    for (file, text) in [("ducktail.rules.yml", &rules), ("ducktail-dashboard.json", &dashboard)] {
        let named = metric_names(text);
        assert!(named.len() >= 5, "{file} names too few metrics: {named:?}");
        let unknown: Vec<_> = named.difference(&served).collect();
        assert!(unknown.is_empty(), "{file} names metrics the daemon does not serve: {unknown:?}\nserved: {served:?}");
    }

    // The daemon's real series, held for 30 minutes, raise no alert.
    let used = metric_names(&rules);
    let mut series = vec!["      - series: 'up{job=\"ducktail\", instance=\"live\"}'\n        values: \"1x30\"".to_owned()];
    for line in exposition.lines().filter(|line| !line.starts_with('#')) {
        let (selector, value) = line.rsplit_once(' ').unwrap();
        let name = selector.split('{').next().unwrap();
        if used.contains(name) {
            let selector = match selector.split_once('{') {
                Some((name, labels)) => format!("{name}{{instance=\"live\",{labels}"),
                None => format!("{name}{{instance=\"live\"}}"),
            };
            series.push(format!("      - series: '{selector}'\n        values: \"{value}x30\""));
        }
    }
    let alerts: Vec<&str> = rules.lines().filter_map(|line| line.trim().strip_prefix("- alert: ")).collect();
    assert!(alerts.len() >= 6, "{alerts:?}");
    let expectations: String = alerts.iter().map(|alert| format!("      - eval_time: 30m\n        alertname: {alert}\n        exp_alerts: []\n")).collect();
    let test = format!(
        "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{}\n    alert_rule_test:\n{expectations}",
        deploy.join("prometheus/ducktail.rules.yml").display(),
        series.join("\n")
    );
    let test_file = dir.path().join("live.test.yml");
    std::fs::write(&test_file, test).unwrap();
    promtool(&["test", "rules", path_str(&test_file)], None, &deploy);
    assert!(series.len() > 5, "the live series used by the rules: {series:?}");
}
