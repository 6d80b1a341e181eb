//! The offline text tasks: real data from registry packages (fortunes categories, Reuters acq/crude) turned into
//! classification CSVs, and small generated NER and QA sets — labelled synthetic — mixed with the real CoNLL-2003
//! and SQuAD format samples, for machines without access to the hub's datasets.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

/// The fortunes categories of the `fortunes4` task: four topics with distinct vocabularies.
pub const FORTUNES_CATEGORIES: [&str; 4] = ["computers", "food", "love", "politics"];

/// Files written by a data preparation step.
#[derive(Debug)]
pub struct Prepared {
    /// Training file.
    pub train: PathBuf,
    /// Held-out test file (never seen in training or model selection).
    pub test: PathBuf,
    /// Examples per file.
    pub sizes: (usize, usize),
}

/// `fortunes4`: quotations from the Debian `fortunes` package (`usr/share/games/fortunes/<category>`), at most
/// `per_class` per category, split per category into `train.csv` and `test.csv` (`text,label`).
pub fn fortunes(asset_root: &Path, out: &Path, per_class: usize, test_fraction: f64, seed: u64) -> Result<Prepared> {
    let dir = asset_root.join("usr/share/games/fortunes");
    let mut rows = Vec::new();
    for cat in FORTUNES_CATEGORIES {
        let path = dir.join(cat);
        let bytes = std::fs::read(&path)
            .with_context(|| format!("{}: not found; run `scripts/fetch_assets.sh fortunes`", path.display()))?;
        let text = String::from_utf8_lossy(&bytes);
        let mut quotes: Vec<String> = text
            .split("\n%\n")
            .map(|q| q.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|q| q.len() >= 20)
            .collect();
        quotes.dedup();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ cat.len() as u64);
        quotes.shuffle(&mut rng);
        quotes.truncate(per_class);
        rows.extend(quotes.into_iter().map(|q| (q, cat.to_string())));
    }
    write_split_csv(out, rows, test_fraction, seed)
}

/// `reuters2`: the Reuters-21578 `acq` and `crude` articles of the Debian `r-cran-tm` package (title + body).
pub fn reuters(asset_root: &Path, out: &Path, test_fraction: f64, seed: u64) -> Result<Prepared> {
    let dir = asset_root.join("usr/lib/R/site-library/tm/texts");
    let mut rows = Vec::new();
    for topic in ["acq", "crude"] {
        let sub = dir.join(topic);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&sub)
            .with_context(|| format!("{}: not found; run `scripts/fetch_assets.sh r-cran-tm`", sub.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "xml"))
            .collect();
        files.sort();
        for f in files {
            let xml = std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
            let title = xml_element(&xml, "TITLE").unwrap_or_default();
            let body = xml_element(&xml, "BODY").unwrap_or_default();
            let text = format!("{title}. {body}").split_whitespace().collect::<Vec<_>>().join(" ");
            rows.push((text, topic.to_string()));
        }
    }
    write_split_csv(out, rows, test_fraction, seed)
}

fn xml_element(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(
        xml[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&apos;", "'")
            .replace("&quot;", "\"")
            .replace("&amp;", "&"),
    )
}

fn write_split_csv(out: &Path, rows: Vec<(String, String)>, test_fraction: f64, seed: u64) -> Result<Prepared> {
    let labels: Vec<String> =
        rows.iter().map(|r| r.1.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let strata: Vec<usize> = rows.iter().map(|r| labels.binary_search(&r.1).unwrap_or(0)).collect();
    let (train, test) = suite_core::data::stratified_split(&rows, &strata, test_fraction, seed);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let write = |name: &str, rows: &[(String, String)]| -> Result<PathBuf> {
        let path = out.join(name);
        let mut w = csv::Writer::from_path(&path).with_context(|| format!("writing {}", path.display()))?;
        w.write_record(["text", "label"])?;
        for (t, l) in rows {
            w.write_record([t, l])?;
        }
        w.flush()?;
        Ok(path)
    };
    Ok(Prepared {
        train: write("train.csv", &train)?,
        test: write("test.csv", &test)?,
        sizes: (train.len(), test.len()),
    })
}

const FIRST: &[&str] = &[
    "Anna", "Boris", "Chen", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kofi", "Lena", "Mateo",
    "Nadia", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Ursula", "Viktor", "Wen", "Yusuf", "Zoe",
];
const LAST: &[&str] = &[
    "Novak",
    "Okafor",
    "Lindqvist",
    "Tanaka",
    "Moreau",
    "Schmidt",
    "Kowalski",
    "Haddad",
    "Silva",
    "Ivanova",
    "Brennan",
    "Castillo",
    "Nakamura",
    "Petrov",
    "Rossi",
    "Van Dijk",
    "Al-Sayed",
    "Johansson",
    "Mbeki",
    "O'Neill",
];
const PLACES: &[&str] = &[
    "Lisbon",
    "Nairobi",
    "Oslo",
    "Quito",
    "Hanoi",
    "Tbilisi",
    "Montreal",
    "Porto Alegre",
    "Cape Town",
    "Kyoto",
    "New Delhi",
    "Reykjavik",
    "San Diego",
    "Dublin",
    "Krakow",
    "Marrakesh",
    "Buenos Aires",
    "Perth",
    "Helsinki",
    "Seoul",
];
const ORGS: &[&str] = &[
    "Northwind Bank",
    "Acme Robotics",
    "Blue Harbor Shipping",
    "the Red Cross",
    "Helix Pharma",
    "Orion Airlines",
    "Greenfield University",
    "Summit Energy",
    "the World Bank",
    "Nova Telecom",
    "Apex Motors",
    "Silverline Media",
    "the United Nations",
    "Redwood Labs",
    "Polar Foods",
];
const MISC: &[&str] = &["Olympic", "Nobel", "Euro", "Grammy", "Ramadan", "Christmas", "Tour de France", "World Cup"];

/// One entity mention: its words and type.
fn entity(rng: &mut ChaCha8Rng, kind: &str) -> Vec<String> {
    let s = match kind {
        "PER" => {
            if rng.random_bool(0.6) {
                format!("{} {}", FIRST.choose(rng).unwrap(), LAST.choose(rng).unwrap())
            } else {
                LAST.choose(rng).unwrap().to_string()
            }
        }
        "LOC" => PLACES.choose(rng).unwrap().to_string(),
        "ORG" => ORGS.choose(rng).unwrap().trim_start_matches("the ").to_string(),
        _ => MISC.choose(rng).unwrap().to_string(),
    };
    s.split(' ').map(String::from).collect()
}

/// Sentence templates: words, `{PER}`/`{LOC}`/`{ORG}`/`{MISC}` slots.
const NER_TEMPLATES: &[&str] = &[
    "{PER} joined {ORG} in {LOC} last year .",
    "Officials in {LOC} said {ORG} will open a new office .",
    "{PER} , a spokesman for {ORG} , declined to comment .",
    "The {MISC} committee met in {LOC} on Tuesday .",
    "{ORG} shares rose 3 percent after {PER} resigned .",
    "{PER} flew from {LOC} to {LOC} to meet {PER} .",
    "Fans in {LOC} celebrated the {MISC} victory .",
    "According to {PER} , {ORG} lost money in {LOC} .",
    "{PER} won the {MISC} prize for her work at {ORG} .",
    "Police in {LOC} arrested two men on Sunday .",
    "The deal between {ORG} and {ORG} was announced in {LOC} .",
    "{PER} told reporters that the talks had failed .",
];

/// `ner-synth`: CoNLL files (`token _ _ tag`, IOB2) of sentences generated from templates and name lists
/// (synthetic), plus the two real CoNLL-2003 sample sentences of the allennlp fixtures (converted to IOB2) in the
/// training file. Test sentences use templates and names drawn independently of training.
pub fn ner_synth(fixtures: Option<&Path>, out: &Path, n_train: usize, n_test: usize, seed: u64) -> Result<Prepared> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let gen = |n: usize, rng: &mut ChaCha8Rng| -> Vec<Vec<(String, String)>> {
        (0..n)
            .map(|_| {
                let t = NER_TEMPLATES.choose(rng).unwrap();
                let mut words = Vec::new();
                for w in t.split(' ') {
                    let kind = w.strip_prefix('{').and_then(|w| w.strip_suffix('}'));
                    match kind {
                        Some(k) => {
                            for (i, e) in entity(rng, k).into_iter().enumerate() {
                                words.push((e, format!("{}-{k}", if i == 0 { "B" } else { "I" })));
                            }
                        }
                        None => words.push((w.to_string(), "O".to_string())),
                    }
                }
                words
            })
            .collect()
    };
    let mut train = gen(n_train, &mut rng);
    let test = gen(n_test, &mut rng);
    if let Some(f) = fixtures {
        let real = crate::data::read_ner(&f.join("conll2003.txt"))?;
        for s in real {
            let tags = crate::data::iob1_to_iob2(&s.tags);
            train.push(s.tokens.into_iter().zip(tags).collect());
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let write = |name: &str, sents: &[Vec<(String, String)>]| -> Result<PathBuf> {
        let mut s = String::from("-DOCSTART- -X- -X- O\n\n");
        for sent in sents {
            for (w, t) in sent {
                s.push_str(&format!("{w} _ _ {t}\n"));
            }
            s.push('\n');
        }
        let path = out.join(name);
        std::fs::write(&path, s).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    Ok(Prepared {
        train: write("train.conll", &train)?,
        test: write("test.conll", &test)?,
        sizes: (train.len(), test.len()),
    })
}

/// `qa-synth`: SQuAD v1.1 JSON of generated biographies (synthetic: several facts per context, one question per
/// fact), plus the five real SQuAD questions of the allennlp fixtures in the training file.
pub fn qa_synth(fixtures: Option<&Path>, out: &Path, n_train: usize, n_test: usize, seed: u64) -> Result<Prepared> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let jobs = ["engineer", "painter", "nurse", "pilot", "chemist", "teacher", "architect", "farmer", "lawyer"];
    let make = |n: usize, prefix: &str, rng: &mut ChaCha8Rng| -> Vec<serde_json::Value> {
        (0..n)
            .map(|i| {
                let name = format!("{} {}", FIRST.choose(rng).unwrap(), LAST.choose(rng).unwrap());
                let born = *PLACES.choose(rng).unwrap();
                let lives = *PLACES.choose(rng).unwrap();
                let org = ORGS.choose(rng).unwrap().to_string();
                let job = *jobs.choose(rng).unwrap();
                let year = rng.random_range(1931..2001).to_string();
                let mut facts = vec![
                    (
                        format!("{name} was born in {born} in {year}."),
                        vec![("Where was {N} born?", born.to_string()), ("In which year was {N} born?", year.clone())],
                    ),
                    (
                        format!("Later {name} moved to {lives}, where she still lives."),
                        vec![("Where does {N} live now?", lives.to_string())],
                    ),
                    (
                        format!("For many years {name} worked as a {job} for {org}."),
                        vec![
                            ("What was the job of {N}?", job.to_string()),
                            ("Which organisation did {N} work for?", org.clone()),
                        ],
                    ),
                ];
                facts.shuffle(rng);
                let mut context = String::new();
                let mut qas = Vec::new();
                for (sentence, questions) in facts {
                    let base = context.len();
                    context.push_str(&sentence);
                    context.push(' ');
                    for (q, a) in questions {
                        let start = base + sentence.find(&a).expect("answer is in its sentence");
                        let chars = context[..start].chars().count();
                        qas.push(json!({
                            "id": format!("{prefix}-{i}-{}", qas.len()),
                            "question": q.replace("{N}", &name),
                            "answers": [{"text": a, "answer_start": chars}],
                        }));
                    }
                }
                json!({"title": name, "paragraphs": [{"context": context.trim_end(), "qas": qas}]})
            })
            .collect()
    };
    let mut train = make(n_train, "train", &mut rng);
    let test = make(n_test, "test", &mut rng);
    if let Some(f) = fixtures {
        let real: serde_json::Value = serde_json::from_slice(&std::fs::read(f.join("squad.json"))?)
            .with_context(|| format!("{}: not JSON", f.join("squad.json").display()))?;
        if let Some(d) = real.get("data").and_then(|d| d.as_array()) {
            train.extend(d.iter().cloned());
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let write = |name: &str, data: &[serde_json::Value]| -> Result<PathBuf> {
        let path = out.join(name);
        let v = json!({"version": "1.1", "synthetic": "generated by `suite data qa-synth` (plus the allennlp SQuAD sample in train)", "data": data});
        std::fs::write(&path, serde_json::to_vec_pretty(&v)?).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let count = |d: &[serde_json::Value]| -> usize {
        d.iter()
            .flat_map(|a| a["paragraphs"].as_array().cloned().unwrap_or_default())
            .map(|p| p["qas"].as_array().map(|q| q.len()).unwrap_or(0))
            .sum()
    };
    let sizes = (count(&train), count(&test));
    Ok(Prepared { train: write("train.json", &train)?, test: write("test.json", &test)?, sizes })
}

/// Named offline text data sets, for `suite data`.
pub fn prepare_named(name: &str, assets: &Path, out: &Path, seed: u64) -> Result<Prepared> {
    let fixtures = assets.join("allennlp-fixtures/allennlp/tests/fixtures/data");
    let fixtures = fixtures.is_dir().then_some(fixtures);
    match name {
        "fortunes4" => fortunes(&assets.join("fortunes"), out, 200, 0.2, seed),
        "reuters2" => reuters(&assets.join("r-cran-tm"), out, 0.3, seed),
        "ner-synth" => ner_synth(fixtures.as_deref(), out, 600, 200, seed),
        "qa-synth" => qa_synth(fixtures.as_deref(), out, 300, 100, seed),
        _ => bail!("unknown text data set {name:?}: expected fortunes4, reuters2, ner-synth or qa-synth"),
    }
}
