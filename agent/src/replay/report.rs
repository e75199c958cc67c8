//! What a replay prints and writes: the side-by-side table, the `--json` document and the
//! `--plot` SVG of the trade-off (p75 app cold-start % against wasted memory normalised to the
//! fixed 10-minute keep-alive).

use std::fmt::Write as _;

use serde::Serialize;

use super::metrics::Summary;

/// One policy's measures, averaged over seeds, with their spread.
#[derive(Debug, Clone)]
pub struct PolicyResult {
    pub name: String,
    pub mean: Summary,
    /// Wasted memory as % of `fixed-keepalive(10m)` on the same trace and window.
    pub vs_fixed10_pct: f64,
    /// (min, max) over seeds of the p75 app and the overall cold-start %.
    pub p75_spread: (f64, f64),
    pub overall_spread: (f64, f64),
}

/// The `--json` document.
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    pub trace: &'a str,
    pub seeds: &'a [u64],
    pub policies: Vec<JsonPolicy<'a>>,
}

/// One policy in the `--json` document (means over seeds).
#[derive(Debug, Serialize)]
pub struct JsonPolicy<'a> {
    pub name: &'a str,
    pub p75_app_cold_start_pct: f64,
    pub p50_app_cold_start_pct: f64,
    pub mean_app_cold_start_pct: f64,
    pub overall_cold_start_pct: f64,
    pub wasted_memory_mb_s: f64,
    pub wasted_memory_vs_fixed10_pct: f64,
}

/// The JSON report of `results`.
pub fn json<'a>(trace: &'a str, seeds: &'a [u64], results: &'a [PolicyResult]) -> JsonReport<'a> {
    JsonReport {
        trace,
        seeds,
        policies: results
            .iter()
            .map(|r| JsonPolicy {
                name: &r.name,
                p75_app_cold_start_pct: r.mean.p75_app_cold_start_pct,
                p50_app_cold_start_pct: r.mean.p50_app_cold_start_pct,
                mean_app_cold_start_pct: r.mean.mean_app_cold_start_pct,
                overall_cold_start_pct: r.mean.overall_cold_start_pct,
                wasted_memory_mb_s: r.mean.wasted_memory_mb_s,
                wasted_memory_vs_fixed10_pct: r.vs_fixed10_pct,
            })
            .collect(),
    }
}

/// The side-by-side table (Markdown, so it pastes into the docs as is).
pub fn table(results: &[PolicyResult], floor: &Summary, seeds: usize) -> String {
    let mut out = String::new();
    let width = results
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(6)
        .max(24);
    let _ = writeln!(
        out,
        "| {:width$} | p75 app cold % | p50 app cold % | mean app cold % | overall cold % | wasted MB·s | % of fixed-10 |",
        "policy"
    );
    let _ = writeln!(
        out,
        "|{}|---:|---:|---:|---:|---:|---:|",
        "-".repeat(width + 2)
    );
    for r in results {
        let m = &r.mean;
        let _ = writeln!(
            out,
            "| {:width$} | {:>14} | {:>14.2} | {:>15.2} | {:>14} | {:>11.4e} | {:>13.1} |",
            r.name,
            with_spread(m.p75_app_cold_start_pct, r.p75_spread, seeds),
            m.p50_app_cold_start_pct,
            m.mean_app_cold_start_pct,
            with_spread(m.overall_cold_start_pct, r.overall_spread, seeds),
            m.wasted_memory_mb_s,
            r.vs_fixed10_pct,
        );
    }
    let _ = writeln!(
        out,
        "| {:width$} | {:>14.2} | {:>14.2} | {:>15.2} | {:>14.3} | {:>11} | {:>13} |",
        "floor (first call cold)",
        floor.p75_app_cold_start_pct,
        floor.p50_app_cold_start_pct,
        floor.mean_app_cold_start_pct,
        floor.overall_cold_start_pct,
        "-",
        "-",
    );
    out
}

fn with_spread(mean: f64, (lo, hi): (f64, f64), seeds: usize) -> String {
    if seeds > 1 && hi > lo {
        format!("{mean:.3}±{:.3}", (hi - lo) / 2.0)
    } else {
        format!("{mean:.3}")
    }
}

/// An SVG scatter of p75 app cold-start % against wasted memory (% of fixed-10); the points of
/// our policy's knob sweep are joined into a curve, the floor is a dashed line.
pub fn svg(results: &[PolicyResult], floor_p75: f64, title: &str) -> String {
    let (w, h, margin) = (760.0, 480.0, 70.0);
    let max_x = results
        .iter()
        .map(|r| r.vs_fixed10_pct)
        .fold(100.0f64, f64::max)
        * 1.08;
    let max_y = results
        .iter()
        .map(|r| r.mean.p75_app_cold_start_pct)
        .fold(floor_p75, f64::max)
        * 1.1
        + 1.0;
    let x = |v: f64| margin + v / max_x * (w - 2.0 * margin);
    let y = |v: f64| h - margin - v / max_y * (h - 2.0 * margin);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14">{}</text>"#,
        w / 2.0,
        escape(title)
    );
    let (x0, y0) = (x(0.0), y(0.0));
    let _ = writeln!(
        s,
        r#"<line x1="{x0}" y1="{y0}" x2="{}" y2="{y0}" stroke="black"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{}" stroke="black"/>"#,
        w - margin,
        margin
    );
    for i in 0..=5 {
        let vx = max_x * f64::from(i) / 5.0;
        let vy = max_y * f64::from(i) / 5.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{vx:.0}</text><text x="{:.1}" y="{:.1}" text-anchor="end">{vy:.1}</text>"#,
            x(vx),
            y0 + 16.0,
            x0 - 6.0,
            y(vy) + 4.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">wasted memory, % of fixed-keepalive(10m)</text>"#,
        w / 2.0,
        h - 25.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">p75 app cold-start %</text>"#,
        h / 2.0,
        h / 2.0
    );
    let _ = writeln!(
        s,
        r##"<line x1="{x0}" y1="{fy:.1}" x2="{}" y2="{fy:.1}" stroke="#888" stroke-dasharray="5,4"/><text x="{}" y="{:.1}" text-anchor="end" fill="#555">floor {floor_p75:.1}%</text>"##,
        w - margin,
        w - margin,
        y(floor_p75) - 4.0,
        fy = y(floor_p75)
    );
    let mut curve: Vec<&PolicyResult> = results
        .iter()
        .filter(|r| r.name.starts_with("forecast(cost_threshold="))
        .collect();
    curve.sort_by(|a, b| a.vs_fixed10_pct.total_cmp(&b.vs_fixed10_pct));
    if curve.len() > 1 {
        let points: Vec<String> = curve
            .iter()
            .map(|r| {
                format!(
                    "{:.1},{:.1}",
                    x(r.vs_fixed10_pct),
                    y(r.mean.p75_app_cold_start_pct)
                )
            })
            .collect();
        let _ = writeln!(
            s,
            r##"<polyline points="{}" fill="none" stroke="#1f77b4" stroke-width="2"/>"##,
            points.join(" ")
        );
    }
    for r in results {
        let ours = r.name.starts_with("forecast");
        let color = if ours { "#1f77b4" } else { "#d62728" };
        let (px, py) = (x(r.vs_fixed10_pct), y(r.mean.p75_app_cold_start_pct));
        let _ = writeln!(
            s,
            r#"<circle cx="{px:.1}" cy="{py:.1}" r="4" fill="{color}"/><text x="{:.1}" y="{:.1}" fill="{color}">{}</text>"#,
            px + 6.0,
            py - 6.0,
            escape(&r.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
