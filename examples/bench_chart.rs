//! Draws the instruction counts the benches wrote (see `bench_results`) as one SVG chart, for
//! BENCHMARKS.md: instructions per request by stack, with each stack's baseline and issue 13's
//! targets marked, and what each stack adds to a real request through hyper-util's client.
//!
//! ```text
//! scripts/bench_all.sh                                  # runs the benches, this chart and the summary
//! cargo run --example bench_chart                       # target/bench-results -> docs/benchmarks.svg
//! cargo run --example bench_chart -- DIR OUT.svg        # other places
//! ```

#[allow(dead_code)] // The summary reads every file; the chart draws the instruction counts.
mod bench_results;

use std::error::Error;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use bench_results::{default_dir, find, Instructions, Results, Table};

/// The chart's width, and the height of one bar's row, in pixels.
const WIDTH: u32 = 1100;
const ROW: u32 = 24;
/// The width of the stack names' column, and the margin around a panel, in pixels.
const LABELS: u32 = 340;
const MARGIN: u32 = 12;
/// Room around the bars in a panel: caption, axis, margins.
const PANEL_FRAME: u32 = 110;
/// The height of a panel that only says why it has no bars.
const EMPTY_PANEL: u32 = 90;
const FOOTER: u32 = 30;

const VAULT: RGBColor = RGBColor(31, 119, 180);
const HEADER: RGBColor = RGBColor(150, 150, 150);
const OTHER: RGBColor = RGBColor(205, 205, 205);
const GOAL: RGBColor = RGBColor(214, 39, 40);

/// One bar: a stack's figure, its label, and the marks drawn across it.
struct Bar {
    name: String,
    value: f64,
    label: String,
    color: RGBColor,
    /// Where the baseline stands on this bar's scale (black mark).
    baseline: Option<f64>,
    /// Where issue 13's target stands (red mark).
    goal: Option<f64>,
}

/// A stack's colour: `VaultAuth` in blue, `SetRequestHeader` in grey, the rest pale.
fn color(stack: &str) -> RGBColor {
    if stack.starts_with("vault_auth") {
        VAULT
    } else if stack.starts_with("set_request_header") {
        HEADER
    } else {
        OTHER
    }
}

/// Per request: every stack, its baseline marked where it is another stack.
fn hot_path_bars(rows: &[Instructions]) -> Vec<Bar> {
    let goal = |stack: &str| match stack {
        "vault_auth_no_replay" => Some(1.10),
        "vault_auth" => Some(1.30),
        "vault_auth_success_response" => Some(1.20),
        _ => None,
    };
    rows.iter()
        .map(|row| {
            let other = row.baseline.filter(|_| row.baseline_stack != row.stack);
            Bar {
                name: row.stack.clone(),
                value: row.instructions,
                label: match (other, row.ratio()) {
                    (Some(_), Some(ratio)) => format!("{:.0}  ({ratio:.2}×)", row.instructions),
                    _ => format!("{:.0}", row.instructions),
                },
                color: color(&row.stack),
                baseline: other,
                goal: other.zip(goal(&row.stack)).map(|(base, goal)| base * goal),
            }
        })
        .collect()
}

/// End to end: what each stack adds to the client alone; for `VaultAuth`, the target is what
/// `SetRequestHeader` adds to the same request plus 1 % of the client alone.
fn end_to_end_bars(rows: &[Instructions]) -> Vec<Bar> {
    rows.iter()
        .filter(|row| row.baseline_stack != row.stack)
        .filter_map(|row| {
            let (extra, client) = (row.extra()?, row.baseline?);
            // `vault_auth_no_replay` is set against the empty GET's SetRequestHeader, without
            // a target of its own.
            let shape = row.stack.strip_prefix("vault_auth");
            // Issue 13's three shapes, as the summary checks them.
            let targeted = matches!(shape, Some("" | "_post" | "_boxed_post"));
            let shape = shape.map(|shape| shape.strip_prefix("_no_replay").unwrap_or(shape));
            let header = shape
                .and_then(|shape| find(rows, &format!("set_request_header_runtime{shape}")))
                .and_then(Instructions::extra);
            Some(Bar {
                name: row.stack.clone(),
                value: extra,
                label: format!(
                    "+{extra:.0}  ({:.1} % of {})",
                    extra / client * 100.0,
                    row.baseline_stack
                ),
                color: color(&row.stack),
                baseline: header,
                goal: header
                    .filter(|_| targeted)
                    .map(|header| header + client * 0.01),
            })
        })
        .collect()
}

/// Where a bar's rightmost part (the bar or a mark) ends.
fn right(bar: &Bar) -> f64 {
    [Some(bar.value), bar.baseline, bar.goal]
        .into_iter()
        .flatten()
        .fold(0.0, f64::max)
}

/// A panel's bars, or why it has none.
fn bars(
    table: &Table<Instructions>,
    command: &str,
    make: fn(&[Instructions]) -> Vec<Bar>,
) -> Result<Vec<Bar>, String> {
    match table {
        Table::Read(rows, _) => {
            let bars = make(rows);
            if bars.is_empty() {
                Err(format!("no figures: run {command}"))
            } else {
                Ok(bars)
            }
        }
        Table::Missing => Err(format!("not measured: run {command}")),
        Table::Unreadable(why) => Err(format!("unreadable ({why}): rerun {command}")),
    }
}

fn height(bars: &Result<Vec<Bar>, String>) -> u32 {
    match bars {
        Ok(bars) => PANEL_FRAME + ROW * bars.len() as u32,
        Err(_) => EMPTY_PANEL,
    }
}

/// Draws one panel: horizontal bars, first row at the top.
fn panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    axis: &str,
    bars: &Result<Vec<Bar>, String>,
) -> Result<(), Box<dyn Error>> {
    let bars = match bars {
        Ok(bars) => bars,
        Err(why) => {
            area.draw(&Text::new(title.to_owned(), (20, 20), ("sans-serif", 18)))?;
            area.draw(&Text::new(why.clone(), (20, 50), ("sans-serif", 14)))?;
            return Ok(());
        }
    };
    let n = bars.len();
    let widest = bars.iter().map(right).fold(0.0, f64::max);
    // Room on the right of each bar for its label (the naive width of 13 px sans-serif).
    let plot = f64::from(WIDTH - LABELS - 2 * MARGIN);
    let x_max = bars
        .iter()
        .map(|bar| {
            let room = (bar.label.chars().count() as f64 * 7.0 + 16.0) / plot;
            right(bar) / (1.0 - room.min(0.6))
        })
        .fold(widest * 1.05, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(MARGIN)
        .x_label_area_size(36)
        .y_label_area_size(LABELS)
        // n segments: the integer range is inclusive.
        .build_cartesian_2d(0.0..x_max, (0..n - 1).into_segmented())?;
    // Row 0 at the top: row i is drawn in segment n - 1 - i.
    let slot = |i: usize| n - 1 - i;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .y_labels(n + 1)
        .y_label_formatter(&|value| match value {
            SegmentValue::CenterOf(k) if *k < n => bars[n - 1 - k].name.clone(),
            _ => String::new(),
        })
        .y_label_style(("monospace", 13))
        .x_desc(axis)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;

    chart.draw_series(bars.iter().enumerate().map(|(i, bar)| {
        let mut rect = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(slot(i))),
                (bar.value, SegmentValue::Exact(slot(i) + 1)),
            ],
            bar.color.filled(),
        );
        rect.set_margin(4, 4, 0, 0);
        rect
    }))?;
    // A mark is a thin bar of its own, as tall as the bar it crosses.
    let mark = |x: f64, i: usize, color: RGBColor| {
        let half = x_max * 0.002;
        let mut rect = Rectangle::new(
            [
                (x - half, SegmentValue::Exact(slot(i))),
                (x + half, SegmentValue::Exact(slot(i) + 1)),
            ],
            color.filled(),
        );
        rect.set_margin(2, 2, 0, 0);
        rect
    };
    chart.draw_series(
        bars.iter()
            .enumerate()
            .filter_map(|(i, bar)| Some(mark(bar.baseline?, i, BLACK))),
    )?;
    chart.draw_series(
        bars.iter()
            .enumerate()
            .filter_map(|(i, bar)| Some(mark(bar.goal?, i, GOAL))),
    )?;
    let label =
        TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    chart.draw_series(bars.iter().enumerate().map(|(i, bar)| {
        Text::new(
            bar.label.clone(),
            (right(bar) + x_max * 0.01, SegmentValue::CenterOf(slot(i))),
            label.clone(),
        )
    }))?;
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args_os().skip(1);
    let dir = args.next().map_or_else(default_dir, PathBuf::from);
    let out = args.next().map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/benchmarks.svg"),
        PathBuf::from,
    );
    let results = Results::load(dir);
    let per_request = bars(
        &results.hot_path,
        "scripts/hot_path_instructions.sh",
        hot_path_bars,
    );
    let end_to_end = bars(
        &results.end_to_end,
        "scripts/end_to_end_instructions.sh",
        end_to_end_bars,
    );
    let (top, bottom) = (height(&per_request), height(&end_to_end));
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    {
        let root = SVGBackend::new(&out, (WIDTH, top + bottom + FOOTER)).into_drawing_area();
        root.fill(&WHITE)?;
        let (first, rest) = root.split_vertically(top);
        let (second, footer) = rest.split_vertically(bottom);
        panel(
            &first,
            "Instructions per request, one call through each stack (callgrind)",
            "instructions per request; black mark: the baseline (SetRequestHeader, same request and answer); red: issue 13's target",
            &per_request,
        )?;
        panel(
            &second,
            "End to end: instructions each stack adds to hyper-util's client over loopback",
            "instructions added per request; black mark: what SetRequestHeader adds; red: the target (that + 1 % of the client)",
            &end_to_end,
        )?;
        footer.draw(&Text::new(
            "scripts/bench_all.sh: scripts/hot_path_instructions.sh, scripts/end_to_end_instructions.sh, cargo run --example bench_chart",
            (20, 8),
            ("sans-serif", 12).into_font().color(&HEADER),
        ))?;
        root.present()?;
    }
    println!("Written: {}", out.display());
    Ok(())
}
