//! Small charts drawn on the server as inline SVG: no chart library, no script, nothing to
//! fetch — the page works offline on a tailnet.

use std::fmt::Write as _;

const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 120.0;
/// Room for the axis labels.
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 16.0;

/// How values are drawn.
#[derive(Debug, Clone, Copy)]
pub enum Style {
    /// Counts per bucket.
    Bars,
    /// A measurement per bucket; gaps where there was none.
    Line,
}

/// An SVG of `values` (oldest first, one per time bucket) over the last 24 hours, scaled to
/// their maximum, labelled with `unit`.
pub fn last_day(title: &str, values: &[Option<f64>], unit: &str, style: Style) -> String {
    let max = values.iter().flatten().copied().fold(0.0_f64, f64::max);
    let top = if max > 0.0 { nice_ceiling(max) } else { 1.0 };
    let plot_width = WIDTH - LEFT;
    let plot_height = HEIGHT - BOTTOM;
    let step = plot_width / values.len().max(1) as f64;
    let y = |v: f64| plot_height - v / top * plot_height;

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}"><title>{title}</title>"#
    );
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{LEFT}" y1="{plot_height}" x2="{WIDTH}" y2="{plot_height}"/>"#
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="10" text-anchor="end">{} {unit}</text><text x="{}" y="{plot_height}" text-anchor="end">0</text>"#,
        LEFT - 4.0,
        number(top),
        LEFT - 4.0
    );
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="{HEIGHT}">24 h ago</text><text x="{WIDTH}" y="{HEIGHT}" text-anchor="end">now</text>"#
    );
    match style {
        Style::Bars => {
            for (i, value) in values.iter().enumerate() {
                let Some(v) = value.filter(|v| *v > 0.0) else {
                    continue;
                };
                let _ = write!(
                    svg,
                    r#"<rect class="bar" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}"><title>{}</title></rect>"#,
                    LEFT + i as f64 * step,
                    y(v),
                    (step - 1.0).max(1.0),
                    plot_height - y(v),
                    number(v)
                );
            }
        }
        Style::Line => {
            // One polyline per run of buckets with a value; a lone point is a dot.
            let mut run: Vec<(f64, f64)> = Vec::new();
            let flush = |run: &mut Vec<(f64, f64)>, svg: &mut String| {
                match run.as_slice() {
                    [] => {}
                    [(x, y)] => {
                        let _ = write!(
                            svg,
                            r#"<circle class="dot" cx="{x:.1}" cy="{y:.1}" r="2"/>"#
                        );
                    }
                    points => {
                        let list: Vec<String> = points
                            .iter()
                            .map(|(x, y)| format!("{x:.1},{y:.1}"))
                            .collect();
                        let _ = write!(
                            svg,
                            r#"<polyline class="line" points="{}"/>"#,
                            list.join(" ")
                        );
                    }
                }
                run.clear();
            };
            for (i, value) in values.iter().enumerate() {
                match value {
                    Some(v) => run.push((LEFT + (i as f64 + 0.5) * step, y(*v))),
                    None => flush(&mut run, &mut svg),
                }
            }
            flush(&mut run, &mut svg);
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The smallest of 1, 2 or 5 × 10ⁿ at or above `value`: a round top for the axis.
fn nice_ceiling(value: f64) -> f64 {
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|candidate| *candidate >= value)
        .unwrap_or(10.0 * magnitude)
}

/// A label: whole numbers without decimals, small ones with up to two.
pub fn number(value: f64) -> String {
    if value.fract() == 0.0 || value >= 100.0 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.2}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_round_and_gaps_break_lines() {
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(1.3), 2.0);
        assert_eq!(nice_ceiling(0.04), 0.05);
        assert_eq!(number(2.50), "2.5");
        let svg = last_day(
            "t/s",
            &[Some(1.0), Some(2.0), None, Some(3.0)],
            "t/s",
            Style::Line,
        );
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(svg.contains(">5 t/s<"), "{svg}");
        let bars = last_day("messages", &[Some(0.0), Some(4.0)], "", Style::Bars);
        assert_eq!(bars.matches("<rect").count(), 1);
    }
}
