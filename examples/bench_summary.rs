//! Prints the summary of the last bench run: per-request costs, throughputs and the issue's
//! targets as ratios, as Markdown tables ready for the README.
//!
//! ```text
//! cargo bench --bench hot_path --bench under_load --bench recovery
//! cargo run --example bench_summary            # reads target/criterion
//! cargo run --example bench_summary -- DIR     # or another criterion output directory
//! ```
//!
//! It reads every `new/benchmark.json` and `new/estimates.json` criterion wrote, and uses the
//! median (`median.point_estimate`, in ns per iteration). In the throughput groups an iteration
//! is one request of the aggregate over all threads, so Mreq/s is `1000 / median_ns`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Medians in ns by `group/function[/value]`, and the newest estimate's time.
struct Run {
    medians: BTreeMap<String, f64>,
    newest: Option<SystemTime>,
}

impl Run {
    fn load(root: &Path) -> Run {
        let mut run = Run {
            medians: BTreeMap::new(),
            newest: None,
        };
        run.walk(root);
        run
    }

    fn walk(&mut self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|name| name == "new") {
                self.read(&path);
            } else {
                self.walk(&path);
            }
        }
    }

    fn read(&mut self, dir: &Path) {
        let json = |name: &str| -> Option<Value> {
            serde_json::from_str(&std::fs::read_to_string(dir.join(name)).ok()?).ok()
        };
        let (Some(benchmark), Some(estimates)) = (json("benchmark.json"), json("estimates.json"))
        else {
            return;
        };
        let Some(median) = estimates["median"]["point_estimate"].as_f64() else {
            return;
        };
        let mut id = format!(
            "{}/{}",
            benchmark["group_id"].as_str().unwrap_or("?"),
            benchmark["function_id"].as_str().unwrap_or("?")
        );
        if let Some(value) = benchmark["value_str"].as_str() {
            id = format!("{id}/{value}");
        }
        self.medians.insert(id, median);
        if let Ok(modified) =
            std::fs::metadata(dir.join("estimates.json")).and_then(|m| m.modified())
        {
            self.newest = self.newest.max(Some(modified));
        }
    }

    fn ns(&self, id: &str) -> Option<f64> {
        self.medians.get(id).copied()
    }

    fn mreqs(&self, id: &str) -> Option<f64> {
        self.ns(id).map(|ns| 1_000.0 / ns)
    }
}

fn show(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "—".to_owned(), |v| format!("{v:.decimals$}"))
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

/// A ratio with a stack's name in `VaultAuth`'s place.
type Ratio<'a> = Box<dyn Fn(&str) -> Option<f64> + 'a>;

/// One of the issue's targets: a ratio in which a stack (`VaultAuth`) stands against baselines.
struct Target<'a> {
    what: String,
    goal: &'static str,
    /// The ratio with the named stack in `VaultAuth`'s place.
    ratio: Ratio<'a>,
    met: fn(f64) -> bool,
}

/// A target whose ratio is `ratio` with a stack's name in `VaultAuth`'s place.
fn target<'a>(
    what: impl Into<String>,
    goal: &'static str,
    met: fn(f64) -> bool,
    ratio: impl Fn(&str) -> Option<f64> + 'a,
) -> Target<'a> {
    Target {
        what: what.into(),
        goal,
        ratio: Box::new(ratio),
        met,
    }
}

impl Target<'_> {
    /// The measured value: `VaultAuth` in its place.
    fn value(&self) -> Option<f64> {
        (self.ratio)("vault_auth")
    }

    /// The same ratio with `SetRequestHeader` and a static value in `VaultAuth`'s place: what a
    /// stack that does nothing but insert a header scores in this harness.
    fn ceiling(&self) -> Option<f64> {
        (self.ratio)("set_request_header")
    }
}

fn main() {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
                || Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
                PathBuf::from,
            );
            target.join("criterion")
        });
    let run = Run::load(&root);
    if run.medians.is_empty() {
        eprintln!(
            "no criterion results under {}; run `cargo bench --bench hot_path --bench under_load --bench recovery` first",
            root.display()
        );
        std::process::exit(1);
    }

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "Bench run of {}, {cores} cores, `cargo bench --bench hot_path --bench under_load --bench recovery`",
        run.newest.map_or_else(|| "unknown date".to_owned(), utc)
    );
    println!("(medians; summary by `cargo run --example bench_summary`)\n");

    // Per request, one thread.
    let floor = run.ns("per_request/set_request_header");
    println!("Per request, one thread (ns; ratio to SetRequestHeader on the same request and response)\n");
    println!("| stack | ns | ratio |");
    println!("|---|---:|---:|");
    for (name, baseline) in [
        ("bare", "set_request_header"),
        ("set_request_header", "set_request_header"),
        ("set_request_header_runtime", "set_request_header"),
        ("add_authorization", "set_request_header"),
        ("rwlock_format", "set_request_header"),
        ("vault_auth", "set_request_header"),
        ("vault_auth_no_replay", "set_request_header"),
        (
            "set_request_header_full_body",
            "set_request_header_full_body",
        ),
        ("vault_auth_full_body", "set_request_header_full_body"),
        (
            "vault_auth_no_replay_full_body",
            "set_request_header_full_body",
        ),
        (
            "set_request_header_success_response",
            "set_request_header_success_response",
        ),
        (
            "vault_auth_success_response",
            "set_request_header_success_response",
        ),
    ] {
        let ns = run.ns(&format!("per_request/{name}"));
        let base = run.ns(&format!("per_request/{baseline}"));
        let ratio = ns.zip(base).map(|(ns, base)| ns / base);
        println!("| {name} | {} | {} |", show(ns, 1), show(ratio, 2));
    }

    // Throughput.
    for (group, title) in [
        (
            "under_load_shared_clone",
            "Throughput, one clone per thread (Mreq/s, all threads together)",
        ),
        (
            "under_load_clone_per_request",
            "Throughput, `svc.clone().oneshot(req)` per request (Mreq/s)",
        ),
        (
            "rotation_storm",
            "Throughput while the token changes every millisecond, and without (`_calm`, measured just before) (Mreq/s)",
        ),
    ] {
        println!("\n{title}\n");
        println!("| stack | 1 thread | 2 threads | 4 threads | 2 threads / 1 |");
        println!("|---|---:|---:|---:|---:|");
        for name in [
            "set_request_header",
            "set_request_header_runtime",
            "add_authorization",
            "rwlock_format_calm",
            "rwlock_format",
            "vault_auth_calm",
            "vault_auth",
        ] {
            let at = |threads: u32| run.mreqs(&format!("{group}/{name}/{threads}"));
            if at(1).is_none() && at(2).is_none() {
                continue;
            }
            let scaling = at(2).zip(at(1)).map(|(two, one)| two / one);
            println!(
                "| {name} | {} | {} | {} | {} |",
                show(at(1), 2),
                show(at(2), 2),
                show(at(4), 2),
                show(scaling, 2)
            );
        }
    }

    // Recovery.
    println!("\nRecovery of 1,000 concurrent requests (ms until all succeeded)\n");
    println!("| round | ms |");
    println!("|---|---:|");
    for (name, what) in [
        ("valid_1000", "token valid (floor)"),
        (
            "revoked_1000",
            "token revoked: reject, one fetch, 1,000 replays",
        ),
    ] {
        let ms = run.ns(&format!("recovery/{name}")).map(|ns| ns / 1e6);
        println!("| {what} | {} |", show(ms, 2));
    }

    // Targets.
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    let shared =
        |name: &str, threads: u32| run.mreqs(&format!("under_load_shared_clone/{name}/{threads}"));
    let cloned = |name: &str, threads: u32| {
        run.mreqs(&format!("under_load_clone_per_request/{name}/{threads}"))
    };
    let storm = |name: &str, threads: u32| run.mreqs(&format!("rotation_storm/{name}/{threads}"));
    let per = |name: &str| run.ns(&format!("per_request/{name}"));
    let mut targets = vec![
        target(
            "one thread: VaultAuth / SetRequestHeader (static value), empty body (time)",
            "≤ 1.10",
            |v| v <= 1.10,
            |stack: &str| ratio(per(stack), floor),
        ),
        target(
            "one thread: VaultAuth / SetRequestHeader (value made at run time), empty body (time)",
            "≤ 1.10",
            |v| v <= 1.10,
            |stack| ratio(per(stack), per("set_request_header_runtime")),
        ),
        target(
            "two threads: VaultAuth throughput / its one-thread throughput (shared clone)",
            "≥ 1.8",
            |v| v >= 1.8,
            |stack| ratio(shared(stack, 2), shared(stack, 1)),
        ),
        target(
            "two threads: VaultAuth throughput / its one-thread throughput (clone per request)",
            "≥ 1.8",
            |v| v >= 1.8,
            |stack| ratio(cloned(stack, 2), cloned(stack, 1)),
        ),
        target(
            "two threads: VaultAuth / AddAuthorization throughput (shared clone)",
            "≥ 3",
            |v| v >= 3.0,
            |stack| ratio(shared(stack, 2), shared("add_authorization", 2)),
        ),
        target(
            "two threads: VaultAuth / AddAuthorization throughput (clone per request)",
            "≥ 3",
            |v| v >= 3.0,
            |stack| ratio(cloned(stack, 2), cloned("add_authorization", 2)),
        ),
        target(
            "one thread: RwLock+format! / VaultAuth (time per request)",
            "≥ 2",
            |v| v >= 2.0,
            |stack| ratio(per("rwlock_format"), per(stack)),
        ),
        target(
            "two threads: VaultAuth / RwLock+format! throughput (shared clone)",
            "≥ 5",
            |v| v >= 5.0,
            |stack| ratio(shared(stack, 2), shared("rwlock_format", 2)),
        ),
    ];
    for threads in [1, 2, 4] {
        targets.push(target(
            format!(
                "rotation storm, {threads} thread(s): VaultAuth throughput kept (storm / calm)"
            ),
            "≥ 0.95",
            |v| v >= 0.95,
            // Only VaultAuth has a calm twin: no ceiling.
            move |stack: &str| {
                ratio(
                    storm(stack, threads),
                    storm(&format!("{stack}_calm"), threads),
                )
            },
        ));
    }
    // A static header shares nothing between threads, so it scales with the cores unless
    // something else is using them: then no throughput figure of the run is meaningful.
    let quiet = ratio(
        shared("set_request_header", 2),
        shared("set_request_header", 1),
    );
    println!(
        "\nMachine check: SetRequestHeader two threads / one thread = {} ({})",
        show(quiet, 2),
        match quiet {
            Some(q) if q >= 1.8 => "the cores were free; throughput figures are meaningful",
            Some(_) => "below 1.8: something else used the cores; rerun on a quiet machine",
            None => "not run",
        }
    );
    println!("\nTargets (last column: the same ratio with SetRequestHeader and a static value in VaultAuth's place, the best any header-inserting stack can score in this harness)\n");
    println!("| target | goal | measured | | static header scores |");
    println!("|---|---|---:|---|---:|");
    for target in &targets {
        let value = target.value();
        let verdict = match value {
            Some(v) if (target.met)(v) => "met",
            Some(_) => "MISSED",
            None => "not run",
        };
        println!(
            "| {} | {} | {} | {verdict} | {} |",
            target.what,
            target.goal,
            show(value, 2),
            show(target.ceiling(), 2)
        );
    }
    println!(
        "| zero allocations added per request, default configuration and no replay | exact | 0 | asserted by `cargo test --test alloc` | 0 |"
    );
}
