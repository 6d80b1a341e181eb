//! The per-file sections: "files" (what cannot be decoded, and why), "sizes" (width, height, aspect ratio) and
//! "colour" (greyscale and colour images mixed).

use serde_json::json;
use suite_core::quality::report::{histogram, Chart, ChartSeries, Section, Severity, Table};

use super::scan::{FileFacts, ImageFacts, Mode};
use super::splits::Data;

/// Aspect ratios (width / height) beyond this, or below its inverse, lose much of the picture to the centre crop.
pub const EXTREME_ASPECT: f64 = 2.0;
/// Images whose shorter side is below this many pixels are upscaled a lot to any usual model input.
pub const TINY_SIDE: u32 = 32;

/// The "files" section.
pub fn files(data: &Data, facts: &[FileFacts]) -> Section {
    let mut s = Section::new("files", "Files");
    let bad: Vec<usize> = (0..facts.len()).filter(|&i| facts[i].image.is_err()).collect();
    s.stat("files", facts.len());
    s.stat("decodable", facts.len() - bad.len());
    s.stat("unreadable", bad.len());
    s.stat("unreadable_files", bad.iter().map(|&i| data.name(i)).collect::<Vec<_>>());
    if bad.is_empty() {
        s.note(Severity::Ok, format!("all {} files decode", facts.len()));
        return s;
    }
    let reason = |i: usize| facts[i].image.as_ref().err().cloned().unwrap_or_default();
    s.advise(
        Severity::Problem,
        format!(
            "{} of {} files cannot be decoded (e.g. {}: {})",
            bad.len(),
            facts.len(),
            data.name(bad[0]),
            reason(bad[0])
        ),
        "fix or remove them, or pass --skip-bad to `suite finetune` to leave them out (it refuses to start otherwise)",
    );
    s.tables.push(Table {
        title: "Unreadable files".into(),
        columns: ["split", "path", "reason"].map(String::from).to_vec(),
        rows: bad.iter().map(|&i| vec![data.splits[data.examples[i].split].clone(), data.name(i), reason(i)]).collect(),
    });
    s
}

/// The decodable images' facts, each with its split.
fn decoded<'a>(data: &'a Data, facts: &'a [FileFacts]) -> impl Iterator<Item = (usize, &'a ImageFacts)> + 'a {
    facts.iter().enumerate().filter_map(|(i, f)| f.image.as_ref().ok().map(|im| (data.examples[i].split, im)))
}

/// min, median, mean, max.
fn summary(mut v: Vec<f64>) -> serde_json::Value {
    if v.is_empty() {
        return serde_json::Value::Null;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    json!({"min": v[0], "median": median, "mean": v.iter().sum::<f64>() / n as f64, "max": v[n - 1]})
}

/// Power-of-two bin edges covering `lo..=hi` (pixels): 16–32, 32–64, … A single size still gets one bin.
pub(super) fn pow2_edges(lo: f64, hi: f64) -> Vec<f64> {
    let mut e = (lo.max(1.0).log2().floor() as i32).min(30);
    let mut edges = vec![2f64.powi(e)];
    while edges.last().is_some_and(|&x| x <= hi) && e < 31 {
        e += 1;
        edges.push(2f64.powi(e));
    }
    edges
}

/// A histogram chart with one series per split.
fn split_histogram(data: &Data, values: &[(usize, f64)], edges: &[f64], title: &str, x_label: &str) -> Chart {
    let mut series = vec![];
    let mut labels = vec![];
    for (si, sp) in data.splits.iter().enumerate() {
        let v: Vec<f64> = values.iter().filter(|(s, _)| *s == si).map(|(_, x)| *x).collect();
        let (l, counts) = histogram(&v, edges);
        labels = l;
        series.push(ChartSeries { name: sp.clone(), values: counts });
    }
    Chart { title: title.into(), x_label: x_label.into(), y_label: "images".into(), labels, series }
}

/// The "sizes" section.
pub fn sizes(data: &Data, facts: &[FileFacts]) -> Section {
    let mut s = Section::new("sizes", "Image sizes");
    let ims: Vec<(usize, &ImageFacts)> = decoded(data, facts).collect();
    if ims.is_empty() {
        s.note(Severity::Info, "no decodable image");
        return s;
    }
    let w: Vec<(usize, f64)> = ims.iter().map(|(sp, f)| (*sp, f64::from(f.width))).collect();
    let h: Vec<(usize, f64)> = ims.iter().map(|(sp, f)| (*sp, f64::from(f.height))).collect();
    let ar: Vec<(usize, f64)> = ims.iter().map(|(sp, f)| (*sp, f64::from(f.width) / f64::from(f.height))).collect();
    s.stat("width", summary(w.iter().map(|x| x.1).collect()));
    s.stat("height", summary(h.iter().map(|x| x.1).collect()));
    s.stat("aspect_ratio", summary(ar.iter().map(|x| x.1).collect()));
    let mut sizes: std::collections::BTreeMap<(u32, u32), usize> = Default::default();
    for (_, f) in &ims {
        *sizes.entry((f.width, f.height)).or_default() += 1;
    }
    let ((cw, ch), cn) =
        sizes.iter().max_by_key(|(k, n)| (**n, std::cmp::Reverse(**k))).map(|(k, n)| (*k, *n)).expect("non-empty");
    s.stat("distinct_sizes", sizes.len());
    s.stat("most_common_size", json!({"width": cw, "height": ch, "images": cn}));

    let side = |v: &[(usize, f64)]| v.iter().map(|x| x.1).fold((f64::MAX, 0f64), |(a, b), x| (a.min(x), b.max(x)));
    let ((w0, w1), (h0, h1)) = (side(&w), side(&h));
    let edges = pow2_edges(w0.min(h0), w1.max(h1));
    s.charts.push(split_histogram(data, &w, &edges, "Image widths", "width (pixels)"));
    s.charts.push(split_histogram(data, &h, &edges, "Image heights", "height (pixels)"));
    let ar_edges = [0.25, 0.5, 0.75, 0.9, 1.1, 1.34, 2.0, 4.0];
    s.charts.push(split_histogram(
        data,
        &ar,
        &ar_edges,
        "Aspect ratios (width / height; ends include beyond)",
        "aspect ratio",
    ));

    if sizes.len() == 1 {
        s.note(Severity::Info, format!("all {} images are {cw}x{ch} pixels", ims.len()));
    } else {
        s.note(
            Severity::Info,
            format!(
                "{} distinct sizes: widths {w0}-{w1} px, heights {h0}-{h1} px (most common {cw}x{ch}, {cn} images); \
                 every image is resized and centre-cropped to the model input",
                sizes.len()
            ),
        );
    }
    let extreme = ar.iter().filter(|(_, r)| *r > EXTREME_ASPECT || *r < 1.0 / EXTREME_ASPECT).count();
    s.stat("extreme_aspect_images", extreme);
    if extreme > 0 {
        s.advise(
            Severity::Warning,
            format!("{extreme} image(s) are more than {EXTREME_ASPECT}:1 wide or tall: the centre crop cuts off much of them"),
            "check that the subject stays in the centre crop; otherwise pad them to a square before training",
        );
    }
    let tiny = ims.iter().filter(|(_, f)| f.width.min(f.height) < TINY_SIDE).count();
    s.stat("tiny_images", tiny);
    if tiny > 0 {
        s.advise(
            Severity::Info,
            format!("{tiny} image(s) are under {TINY_SIDE} px on their shorter side: upscaled to the model input"),
            "a smaller input_size trains faster on small images, usually at the same accuracy",
        );
    }
    s
}

/// The "colour" section.
pub fn colour(data: &Data, facts: &[FileFacts]) -> Section {
    let mut s = Section::new("colour", "Greyscale and colour");
    let modes = [Mode::Grey, Mode::RgbGrey, Mode::Colour];
    let mut by_split = vec![[0usize; 3]; data.splits.len()];
    let mut by_class = vec![[0usize; 3]; data.classes.len()];
    let mut alpha = 0;
    for (i, f) in facts.iter().enumerate() {
        let Ok(im) = &f.image else { continue };
        let m = modes.iter().position(|&m| m == im.mode).expect("a mode");
        by_split[data.examples[i].split][m] += 1;
        by_class[data.examples[i].label][m] += 1;
        alpha += usize::from(im.alpha);
    }
    let total: [usize; 3] = std::array::from_fn(|m| by_split.iter().map(|c| c[m]).sum());
    let (grey, rgb_grey, colour) = (total[0], total[1], total[2]);
    let n = grey + rgb_grey + colour;
    s.stat("grey_stored", grey);
    s.stat("rgb_equal_channels", rgb_grey);
    s.stat("colour", colour);
    s.stat("with_alpha", alpha);
    s.stat("grey_fraction", if n == 0 { 0.0 } else { (grey + rgb_grey) as f64 / n as f64 });
    s.stat("mixed", grey + rgb_grey > 0 && colour > 0);
    s.charts.push(Chart {
        title: "Colour modes per split".into(),
        x_label: "mode".into(),
        y_label: "images".into(),
        labels: ["grey (stored)", "RGB, R = G = B", "colour"].map(String::from).to_vec(),
        series: data
            .splits
            .iter()
            .zip(&by_split)
            .map(|(sp, c)| ChartSeries { name: sp.clone(), values: c.iter().map(|&v| v as f64).collect() })
            .collect(),
    });
    let greyish = grey + rgb_grey;
    if greyish > 0 && colour > 0 {
        s.advise(
            Severity::Warning,
            format!(
                "mixed modes: {greyish} greyscale image(s) ({grey} stored as grey, {rgb_grey} stored as RGB with equal \
                 channels) among {colour} colour images"
            ),
            "training reads every image as RGB (grey replicated), but if the grey ones come from another source or \
             sit in a few classes the model can learn the mode instead of the content: check the per-class table, \
             then convert all images to one mode or add random greyscale augmentation",
        );
        s.tables.push(Table {
            title: "Colour modes per class".into(),
            columns: ["class", "grey (stored)", "RGB, R = G = B", "colour"].map(String::from).to_vec(),
            rows: data
                .classes
                .iter()
                .zip(&by_class)
                .map(|(c, m)| vec![c.clone(), m[0].to_string(), m[1].to_string(), m[2].to_string()])
                .collect(),
        });
    } else if greyish > 0 {
        s.note(
            Severity::Info,
            format!("all {n} images are greyscale ({grey} stored as grey, {rgb_grey} as RGB with equal channels)"),
        );
    } else if n > 0 {
        s.note(Severity::Ok, format!("all {n} images are colour"));
    }
    if alpha > 0 {
        s.advise(
            Severity::Info,
            format!("{alpha} image(s) have an alpha channel, which training drops (transparent pixels show their stored colour)"),
            "flatten them onto a background if the transparent areas matter",
        );
    }
    s
}
