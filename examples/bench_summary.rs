//! Prints every target of issue 13 with its measured value, its goal and whether it is met, from
//! the results the benches wrote (see `bench_results`), as a Markdown table for BENCHMARKS.md.
//!
//! ```text
//! scripts/bench_all.sh                         # runs the benches, the chart and this summary
//! cargo run --example bench_summary            # reads target/bench-results
//! cargo run --example bench_summary -- DIR     # or another directory of results
//! ```
//!
//! A target whose results file is missing is listed as not measured, with the command that
//! measures it. Allocations are not measured here: `cargo test --test alloc` asserts them exactly.

mod bench_results;

use std::time::{SystemTime, UNIX_EPOCH};

use bench_results::{find, Instructions, Results, Table};

/// What a target's row says in its measured and verdict columns.
enum Outcome {
    /// Measured: the value shown, and whether it meets the goal.
    Measured(String, bool),
    /// Not measured, and why (with the command to run).
    Not(String),
}

/// One row of the table.
struct Row {
    what: String,
    goal: String,
    outcome: Outcome,
}

/// A file's rows, or why its targets are not measured (with the command that measures them).
fn rows_of<'a, T>(table: &'a Table<T>, command: &str) -> Result<&'a [T], String> {
    match table {
        Table::Read(rows, _) if !rows.is_empty() => Ok(rows),
        Table::Read(..) => Err(format!(
            "not measured: the file has no rows; run `{command}`"
        )),
        Table::Missing => Err(format!("not measured: run `{command}`")),
        Table::Unreadable(why) => Err(format!("unreadable ({why}): rerun `{command}`")),
    }
}

const HOT_PATH: &str = "scripts/hot_path_instructions.sh";
const END_TO_END: &str = "scripts/end_to_end_instructions.sh";
const MANY_CORES: &str = "cargo bench --bench many_cores";
const RECOVERY: &str = "cargo bench --bench recovery";

/// Per request: a stack's instructions over its baseline's.
fn hot_path(results: &Results, rows: &mut Vec<Row>) {
    for (stack, what, goal) in [
        ("vault_auth_no_replay", "`.no_replay()`, empty GET", 1.10),
        ("vault_auth", "replay on, empty GET", 1.30),
        (
            "vault_auth_success_response",
            "replay on, `SUCCESS` answer",
            1.20,
        ),
    ] {
        let outcome = match rows_of(&results.hot_path, HOT_PATH) {
            Err(why) => Outcome::Not(why),
            Ok(table) => match find(table, stack).and_then(|row| Some((row, row.ratio()?))) {
                Some((row, ratio)) => Outcome::Measured(
                    format!(
                        "{ratio:.2} ({:.0} / {:.0} of `{}`)",
                        row.instructions,
                        row.baseline.unwrap_or_default(),
                        row.baseline_stack
                    ),
                    ratio <= goal,
                ),
                None => Outcome::Not(format!(
                    "not measured: `{stack}` or its baseline missing; run `{HOT_PATH}`"
                )),
            },
        };
        rows.push(Row {
            what: format!("per request, `{stack}` ({what}): instructions / SetRequestHeader's (run-time value)"),
            goal: format!("≤ {goal:.2}"),
            outcome,
        });
    }
}

/// End to end: what `VaultAuth` adds over what `SetRequestHeader` adds, as a share of the
/// client alone.
fn end_to_end(results: &Results, rows: &mut Vec<Row>) {
    for (suffix, what) in [
        ("", "empty GET"),
        ("_post", "2 KiB JSON POST, in-memory body"),
        ("_boxed_post", "2 KiB JSON POST, boxed body"),
    ] {
        let vault = format!("vault_auth{suffix}");
        let header = format!("set_request_header_runtime{suffix}");
        let outcome = match rows_of(&results.end_to_end, END_TO_END) {
            Err(why) => Outcome::Not(why),
            Ok(table) => match share(table, &vault, &header) {
                Some((percent, vault, header)) => Outcome::Measured(
                    format!(
                        "{percent:.2} % (+{:.0} against +{:.0}, client alone {:.0})",
                        vault.extra().unwrap_or_default(),
                        header.extra().unwrap_or_default(),
                        vault.baseline.unwrap_or_default()
                    ),
                    percent <= 1.0,
                ),
                None => Outcome::Not(format!(
                    "not measured: `{vault}`, `{header}` or their client missing; run `{END_TO_END}`"
                )),
            },
        };
        rows.push(Row {
            what: format!(
                "end to end, {what}: (VaultAuth's extra − SetRequestHeader's extra) / client alone"
            ),
            goal: "≤ 1.0 %".to_owned(),
            outcome,
        });
    }
}

/// `(vault's extra - header's extra) / client * 100`, with the two rows.
fn share<'a>(
    table: &'a [Instructions],
    vault: &str,
    header: &str,
) -> Option<(f64, &'a Instructions, &'a Instructions)> {
    let (vault, header) = (find(table, vault)?, find(table, header)?);
    let client = vault.baseline?;
    Some((
        (vault.extra()? - header.extra()?) / client * 100.0,
        vault,
        header,
    ))
}

/// Many cores: `VaultAuth`'s throughput over `SetRequestHeader`'s, in every configuration.
fn many_cores(results: &Results, rows: &mut Vec<Row>) {
    let what = |config: &str| {
        format!("many cores, {config}: VaultAuth / SetRequestHeader (run-time value) throughput")
    };
    let goal = || "≥ 0.99".to_owned();
    let table = match rows_of(&results.many_cores, MANY_CORES) {
        Ok(table) => table,
        Err(why) => {
            rows.push(Row {
                what: what("1, 2 and 4 threads, each pattern"),
                goal: goal(),
                outcome: Outcome::Not(why),
            });
            return;
        }
    };
    let mut patterns: Vec<&str> = Vec::new();
    for row in table {
        if !patterns.contains(&row.pattern.as_str()) {
            patterns.push(&row.pattern);
        }
    }
    for pattern in patterns {
        for threads in [1, 2, 4] {
            let found = table
                .iter()
                .find(|row| row.threads == threads && row.pattern == pattern);
            rows.push(Row {
                what: what(&format!("{threads} thread(s), `{pattern}`")),
                goal: goal(),
                outcome: match found {
                    Some(row) => Outcome::Measured(
                        format!(
                            "{:.3} ({:.0} / {:.0} req/s)",
                            row.ratio, row.vault_rps, row.set_rps
                        ),
                        row.ratio >= 0.99,
                    ),
                    None => Outcome::Not(format!("not measured: run `{MANY_CORES}`")),
                },
            });
        }
    }
}

/// The revocation wave: its time over the same wave with a valid token, for each body kind.
fn recovery(results: &Results, rows: &mut Vec<Row>) {
    let what =
        |body: &str| format!("revocation wave of 1,000, {body} bodies: revoked / valid time");
    let goal = || "≤ 2.0".to_owned();
    match rows_of(&results.recovery, RECOVERY) {
        Ok(table) => {
            for row in table {
                rows.push(Row {
                    what: what(&format!("`{}`", row.body)),
                    goal: goal(),
                    outcome: Outcome::Measured(
                        format!(
                            "{:.2} ({:.1} / {:.1} ms)",
                            row.ratio, row.revoked_ms, row.valid_ms
                        ),
                        row.ratio <= 2.0,
                    ),
                });
            }
        }
        Err(why) => rows.push(Row {
            what: what("in-memory and boxed"),
            goal: goal(),
            outcome: Outcome::Not(why),
        }),
    }
}

/// When a table's file was written, or why it was not read.
fn written<T>(name: &str, table: &Table<T>) -> String {
    match table {
        Table::Read(rows, time) => format!(
            "{name}: {} rows, written {}",
            rows.len(),
            time.map_or_else(|| "at an unknown time".to_owned(), utc)
        ),
        Table::Missing => format!("{name}: missing"),
        Table::Unreadable(why) => format!("{name}: unreadable ({why})"),
    }
}

/// When a table's file was written, if it was read.
fn written_at<T>(table: &Table<T>) -> Option<SystemTime> {
    match table {
        Table::Read(_, time) => *time,
        _ => None,
    }
}

/// `YYYY-MM-DD HH:MM UTC` without a date crate (days-to-civil, proleptic Gregorian).
fn utc(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3_600,
        rest % 3_600 / 60
    )
}

fn main() {
    let results = Results::from_args();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "Issue 13's targets, from {} ({cores} cores)",
        results.dir.display()
    );
    for line in [
        written("hot_path.tsv", &results.hot_path),
        written("end_to_end.tsv", &results.end_to_end),
        written("many_cores.tsv", &results.many_cores),
        written("recovery.tsv", &results.recovery),
    ] {
        println!("- {line}");
    }

    let times: Vec<SystemTime> = [
        written_at(&results.hot_path),
        written_at(&results.end_to_end),
        written_at(&results.many_cores),
        written_at(&results.recovery),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let (Some(first), Some(last)) = (times.iter().min(), times.iter().max()) {
        if last
            .duration_since(*first)
            .is_ok_and(|gap| gap.as_secs() > 3_600)
        {
            println!("\nThe files were written more than an hour apart: not one run. `scripts/bench_all.sh --timed` writes them all.");
        }
    }

    let mut rows = Vec::new();
    hot_path(&results, &mut rows);
    end_to_end(&results, &mut rows);
    many_cores(&results, &mut rows);
    recovery(&results, &mut rows);

    println!("\n| target | goal | measured | |");
    println!("|---|---|---|---|");
    let (mut met, mut missed, mut not) = (0, 0, 0);
    for row in &rows {
        let (value, verdict) = match &row.outcome {
            Outcome::Measured(value, true) => {
                met += 1;
                (value.as_str(), "met")
            }
            Outcome::Measured(value, false) => {
                missed += 1;
                (value.as_str(), "MISSED")
            }
            Outcome::Not(why) => {
                not += 1;
                (why.as_str(), "—")
            }
        };
        println!("| {} | {} | {value} | {verdict} |", row.what, row.goal);
    }
    println!(
        "| zero allocations added per request on the success path, in-memory bodies; a stated number for recorded bodies | exact | asserted by `cargo test --test alloc` | (test) |"
    );
    println!("\n{met} met, {missed} missed, {not} not measured.");
}
