//! The benchmark suite's one table: every bench prints its rows in these columns, so
//! `benches/suite.sh` can run them all and print one markdown table. Shared through `#[path]`.

// Each bench uses the part it needs.
#![allow(dead_code)]

/// Prints the table's header, after a line saying what machine and conditions the rows are for.
pub fn print_header(conditions: &str) {
    println!("{conditions}\n");
    println!("| workload | tree files | measure | ducktail | baseline | baseline value | ducktail ÷ baseline | goal |");
    println!("|---|---:|---|---:|---|---:|---:|---|");
}

/// One row: ducktail's value for a measure, with a baseline (and their ratio) when there is one.
pub fn row(workload: &str, tree_files: usize, measure: &str, ducktail: f64, baseline: &str, baseline_value: Option<f64>, goal: &str) {
    let tree = if tree_files == 0 { String::new() } else { tree_files.to_string() };
    let (value, ratio) = match baseline_value {
        Some(value) => (format_value(value), format!("{:.2}×", ducktail / value)),
        None => (String::new(), String::new()),
    };
    println!("| {workload} | {tree} | {measure} | {} | {baseline} | {value} | {ratio} | {goal} |", format_value(ducktail));
}

/// A row whose value is already text (e.g. "p50 / p95 / p99"), with no baseline.
pub fn row_text(workload: &str, tree_files: usize, measure: &str, ducktail: &str, goal: &str) {
    let tree = if tree_files == 0 { String::new() } else { tree_files.to_string() };
    println!("| {workload} | {tree} | {measure} | {ducktail} |  |  |  | {goal} |");
}

/// Large values without decimals, small ones with a few.
pub fn format_value(value: f64) -> String {
    if !value.is_finite() {
        "n/a".to_owned()
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}
