//! The fan-out chart: time to the last delivery against subscribers, both
//! axes logarithmic, one line per method, written as a self-contained SVG
//! with plotters (SVG backend only, so it builds without system fonts; see
//! Cargo.toml).

use plotters::prelude::*;

/// One line on the chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Stroke colour, `#rrggbb`.
    pub color: &'static str,
    /// `(subscribers, milliseconds)`, by subscribers.
    pub points: Vec<(f64, f64)>,
}

const SIZE: (u32, u32) = (760, 460);

/// `#rrggbb` as a plotters colour; grey for anything else.
fn rgb(hex: &str) -> RGBColor {
    let channel = |i: usize| {
        hex.get(i..i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0x80)
    };
    match hex.strip_prefix('#') {
        Some(h) if h.len() == 6 => RGBColor(channel(1), channel(3), channel(5)),
        _ => RGBColor(0x80, 0x80, 0x80),
    }
}

/// 1 → "1", 10000 → "10,000", 0.5 → "0.5": decades read better with
/// separators, and a log axis only labels powers of ten here.
fn label(value: f64) -> String {
    if value < 1.0 {
        return format!("{value}");
    }
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The decade below `lo` and the one above `hi`, so that every point sits
/// inside the frame on a log scale.
fn decades(lo: f64, hi: f64) -> (f64, f64) {
    let lo = 10f64.powf(lo.log10().floor());
    let hi = 10f64.powf(hi.log10().ceil()).max(lo * 10.0);
    (lo, hi)
}

/// The SVG document.
pub fn render(title: &str, series: &[Series]) -> Result<String, Box<dyn std::error::Error>> {
    let positive = || {
        series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|&(x, y)| x > 0.0 && y > 0.0)
    };
    let fold = |f: fn(f64, f64) -> f64, init: f64, pick: fn((f64, f64)) -> f64| {
        positive().map(pick).fold(init, f)
    };
    let (x_lo, x_hi) = (
        fold(f64::min, f64::MAX, |p| p.0),
        fold(f64::max, 0.0, |p| p.0),
    );
    let (y_lo, y_hi) = (
        fold(f64::min, f64::MAX, |p| p.1),
        fold(f64::max, 0.0, |p| p.1),
    );
    let ((x_lo, x_hi), (y_lo, y_hi)) = if x_lo > x_hi {
        ((1.0, 10.0), (1.0, 10.0))
    } else {
        (decades(x_lo, x_hi), decades(y_lo, y_hi))
    };

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((x_lo..x_hi).log_scale(), (y_lo..y_hi).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("subscribers (log scale)")
            .y_desc("time from publish to last delivery, ms (log scale)")
            .x_label_formatter(&|x| label(*x))
            .y_label_formatter(&|y| label(*y))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        for s in series {
            let color = rgb(s.color);
            let points: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|&(x, y)| x > 0.0 && y > 0.0)
                .collect();
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(s.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(
                points
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 4, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_and_label() {
        let svg = render(
            "t <1>",
            &[Series {
                label: "a & b".into(),
                color: "#123456",
                points: vec![(1.0, 0.5), (10_000.0, 900.0)],
            }],
        )
        .expect("an SVG");
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("a &amp; b"), "the label, escaped");
        assert!(svg.contains("t &lt;1&gt;"), "the title, escaped");
        assert!(svg.contains("10,000"), "decade labels with separators");
        assert!(svg.contains("#123456"), "the series colour");
    }

    #[test]
    fn colours_and_labels() {
        assert_eq!(rgb("#1f6feb"), RGBColor(0x1f, 0x6f, 0xeb));
        assert_eq!(rgb("nope"), RGBColor(0x80, 0x80, 0x80));
        assert_eq!(label(10_000.0), "10,000");
        assert_eq!(label(100.0), "100");
        assert_eq!(label(0.1), "0.1");
        assert_eq!(decades(2.4, 1704.0), (1.0, 10_000.0));
    }
}
