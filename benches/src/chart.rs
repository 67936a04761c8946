//! The comparison as an SVG bar chart, written by hand: a few dozen
//! rectangles do not justify a plotting library's build time on a
//! two-core machine.
//!
//! One group per (scenario, concurrency), one horizontal bar per system,
//! on a logarithmic req/s axis (the scenarios span 100 to 50,000 req/s).

use crate::compare::rows::{Row, System};
use std::fmt::Write as _;

const WIDTH: f64 = 900.0;
const LABEL_WIDTH: f64 = 230.0;
const BAR_HEIGHT: f64 = 14.0;
const GROUP_GAP: f64 = 12.0;
const TOP: f64 = 50.0;
const RIGHT_MARGIN: f64 = 90.0;

fn colour(system: System) -> &'static str {
    match system {
        System::Idmint => "#1f77b4",
        System::OpenBao | System::OpenBaoBatch => "#ff7f0e",
        System::OpenBaoService => "#d62728",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SVG document for `rows` (skipped rows get a note instead of a bar).
pub fn svg(rows: &[Row], title: &str) -> String {
    let measured: Vec<f64> = rows
        .iter()
        .filter(|r| r.skipped.is_none() && r.req_per_s > 0.0)
        .map(|r| r.req_per_s)
        .collect();
    let max = measured.iter().copied().fold(10.0_f64, f64::max);
    let decades_top = max.log10().ceil().max(1.0);
    let plot = WIDTH - LABEL_WIDTH - RIGHT_MARGIN;
    // The axis starts at 10 req/s.
    let x = |rate: f64| {
        let v = (rate.max(10.0).log10() - 1.0) / (decades_top - 1.0).max(1.0);
        LABEL_WIDTH + v.clamp(0.0, 1.0) * plot
    };

    // Groups in the order of the rows.
    let mut groups: Vec<(String, Vec<&Row>)> = Vec::new();
    for r in rows {
        let key = format!("{} c={}", r.scenario.as_str(), r.concurrency);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    let bars: usize = groups.iter().map(|(_, m)| m.len()).sum();
    // Each group: a header line, then one line per bar.
    let height =
        TOP + (bars + groups.len()) as f64 * BAR_HEIGHT + groups.len() as f64 * GROUP_GAP + 60.0;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="20" font-size="14" font-weight="bold">{}</text>"#,
        LABEL_WIDTH,
        escape(title)
    );
    let axis_bottom = height - 40.0;
    let mut decade = 1.0;
    while decade <= decades_top {
        let rate = 10f64.powf(decade);
        let gx = x(rate);
        let _ = writeln!(
            out,
            r##"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{axis_bottom:.1}" stroke="#ddd"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            axis_bottom + 14.0,
            format_rate(rate)
        );
        decade += 1.0;
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">operations per second (log scale)</text>"#,
        LABEL_WIDTH + plot / 2.0,
        axis_bottom + 30.0
    );

    let mut y = TOP;
    for (name, members) in &groups {
        let _ = writeln!(
            out,
            r#"<text x="10" y="{:.1}" font-weight="bold">{}</text>"#,
            y + BAR_HEIGHT - 3.0,
            escape(name)
        );
        y += BAR_HEIGHT;
        for r in members {
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LABEL_WIDTH - 6.0,
                y + BAR_HEIGHT - 3.0,
                escape(r.system.as_str())
            );
            match &r.skipped {
                Some(why) => {
                    let _ = writeln!(
                        out,
                        r##"<text x="{:.1}" y="{:.1}" fill="#888">{}</text>"##,
                        LABEL_WIDTH + 4.0,
                        y + BAR_HEIGHT - 3.0,
                        escape(why)
                    );
                }
                None => {
                    let end = x(r.req_per_s);
                    let _ = writeln!(
                        out,
                        r#"<rect x="{LABEL_WIDTH}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                        y + 1.0,
                        (end - LABEL_WIDTH).max(1.0),
                        BAR_HEIGHT - 2.0,
                        colour(r.system),
                        end + 4.0,
                        y + BAR_HEIGHT - 3.0,
                        escape(&format!(
                            "{}{}",
                            format_rate(r.req_per_s),
                            r.ratio.map(|q| format!("  ({q:.1}x)")).unwrap_or_default()
                        ))
                    );
                }
            }
            y += BAR_HEIGHT;
        }
        y += GROUP_GAP;
    }
    out.push_str("</svg>\n");
    out
}

fn format_rate(rate: f64) -> String {
    if rate >= 10_000.0 {
        format!("{:.0}k", rate / 1000.0)
    } else if rate >= 1000.0 {
        format!("{:.1}k", rate / 1000.0)
    } else {
        format!("{rate:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Compared;

    #[test]
    fn bars_scale_logarithmically_and_skips_are_written_out() {
        let mut fast = Row::skipped(Compared::JwtLogin, System::Idmint, 16, "");
        fast.skipped = None;
        fast.req_per_s = 10_000.0;
        let mut slow = fast.clone();
        slow.system = System::OpenBaoBatch;
        slow.req_per_s = 100.0;
        slow.ratio = Some(100.0);
        let skipped = Row::skipped(
            Compared::SshSign,
            System::Idmint,
            16,
            "skipped: <not built>",
        );
        let text = svg(&[fast, slow, skipped], "idmint & OpenBao");
        assert!(text.starts_with("<svg"));
        assert!(text.trim_end().ends_with("</svg>"));
        assert!(text.contains("idmint &amp; OpenBao"));
        assert!(text.contains("skipped: &lt;not built&gt;"));
        assert!(text.contains("10k") && text.contains("(100.0x)"));
        // 10k is 3 decades above 10, 100 one: the bar is three times longer.
        let widths: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with("<rect x="))
            .filter_map(|l| l.split("width=\"").nth(1)?.split('"').next()?.parse().ok())
            .collect();
        assert_eq!(widths.len(), 2);
        assert!((widths[0] / widths[1] - 3.0).abs() < 0.01, "{widths:?}");
    }
}
