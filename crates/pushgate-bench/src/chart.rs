//! The fan-out chart: time to the last delivery against subscribers, both
//! axes logarithmic, one line per method, written as a self-contained SVG.

/// One line on the chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Stroke colour.
    pub color: &'static str,
    /// `(subscribers, milliseconds)`, by subscribers.
    pub points: Vec<(f64, f64)>,
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 460.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn decade_label(exp: i32, unit: &str) -> String {
    let value = 10f64.powi(exp);
    let number = if exp >= 0 {
        format!("{value:.0}")
    } else {
        let digits = usize::try_from(-exp).unwrap_or(0);
        format!("{value:.digits$}")
    };
    let number = if exp >= 3 && unit.is_empty() {
        // 1,000 and 10,000 read better with separators.
        let mut out = String::new();
        for (i, c) in number.chars().enumerate() {
            if i > 0 && (number.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else {
        number
    };
    format!("{number}{unit}")
}

/// The SVG document.
pub fn render(title: &str, series: &[Series]) -> String {
    let points = series.iter().flat_map(|s| s.points.iter());
    let (mut x_min, mut x_max, mut y_min, mut y_max) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        if x > 0.0 && y > 0.0 {
            x_min = x_min.min(x);
            x_max = x_max.max(x);
            y_min = y_min.min(y);
            y_max = y_max.max(y);
        }
    }
    if x_min > x_max {
        (x_min, x_max, y_min, y_max) = (1.0, 10.0, 1.0, 10.0);
    }
    let (x_lo, x_hi) = (x_min.log10().floor() as i32, x_max.log10().ceil() as i32);
    let (y_lo, y_hi) = (y_min.log10().floor() as i32, y_max.log10().ceil() as i32);
    let x_hi = x_hi.max(x_lo + 1);
    let y_hi = y_hi.max(y_lo + 1);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let px = |x: f64| LEFT + (x.log10() - f64::from(x_lo)) / f64::from(x_hi - x_lo) * plot_w;
    let py =
        |y: f64| TOP + plot_h - (y.log10() - f64::from(y_lo)) / f64::from(y_hi - y_lo) * plot_h;

    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{cx}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{title}</text>
"#,
        cx = WIDTH / 2.0,
        title = escape(title),
    );
    // Grid and ticks.
    for exp in x_lo..=x_hi {
        let x = px(10f64.powi(exp));
        svg.push_str(&format!(
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{y2}" stroke="#ddd"/>
<text x="{x:.1}" y="{ty}" text-anchor="middle">{label}</text>
"##,
            y2 = TOP + plot_h,
            ty = TOP + plot_h + 18.0,
            label = decade_label(exp, ""),
        ));
    }
    for exp in y_lo..=y_hi {
        let y = py(10f64.powi(exp));
        svg.push_str(&format!(
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{x2}" y2="{y:.1}" stroke="#ddd"/>
<text x="{tx}" y="{ty:.1}" text-anchor="end">{label}</text>
"##,
            x2 = LEFT + plot_w,
            tx = LEFT - 6.0,
            ty = y + 4.0,
            label = decade_label(exp, " ms"),
        ));
    }
    svg.push_str(&format!(
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>
<text x="{cx}" y="{by}" text-anchor="middle">subscribers (log scale)</text>
<text x="18" y="{cy}" text-anchor="middle" transform="rotate(-90 18 {cy})">time from publish to last delivery (log scale)</text>
"##,
        cx = LEFT + plot_w / 2.0,
        by = HEIGHT - 14.0,
        cy = TOP + plot_h / 2.0,
    ));
    // Lines, markers, legend.
    for (i, s) in series.iter().enumerate() {
        let coords: Vec<String> = s
            .points
            .iter()
            .filter(|(x, y)| *x > 0.0 && *y > 0.0)
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        svg.push_str(&format!(
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2.5"/>
"#,
            coords.join(" "),
            s.color
        ));
        for &(x, y) in s.points.iter().filter(|(x, y)| *x > 0.0 && *y > 0.0) {
            svg.push_str(&format!(
                r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{}"><title>{}: {} subscribers, {:.2} ms</title></circle>
"#,
                px(x),
                py(y),
                s.color,
                escape(&s.label),
                x,
                y
            ));
        }
        let ly = TOP + 16.0 + 18.0 * i as f64;
        let lx = LEFT + 14.0;
        svg.push_str(&format!(
            r#"<line x1="{lx}" y1="{ly}" x2="{lx2}" y2="{ly}" stroke="{color}" stroke-width="2.5"/>
<text x="{tx}" y="{ty}">{label}</text>
"#,
            lx2 = lx + 24.0,
            color = s.color,
            tx = lx + 30.0,
            ty = ly + 4.0,
            label = escape(&s.label),
        ));
    }
    svg.push_str("</svg>\n");
    svg
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
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("a &amp; b"));
        assert!(svg.contains("t &lt;1&gt;"));
        assert!(svg.contains("10,000"));
        assert!(svg.contains("0.1 ms"));
    }
}
