//! Manifest layouts and their errors, on small folders written here (the audio files only need to exist).

use std::fs;
use std::path::Path;

use anyhow::Result;

use super::*;

fn touch(dir: &Path, rel: &str) {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, b"RIFF").unwrap();
}

fn err(path: &Path, split: Option<&str>) -> String {
    match read_speech_data(path, split) {
        Ok(rows) => panic!("{} read {} rows, expected an error", path.display(), rows.len()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn jsonl_with_alternative_keys_resolves_relative_paths() -> Result<()> {
    let dir = tempfile::tempdir()?;
    touch(dir.path(), "wav/a.wav");
    touch(dir.path(), "wav/b.flac");
    touch(dir.path(), "c.mp3");
    let abs = dir.path().join("c.mp3");
    let manifest = dir.path().join("train.jsonl");
    fs::write(
        &manifest,
        format!(
            "{{\"audio\": \"wav/a.wav\", \"text\": \"hallo welt\", \"language\": \"de\"}}\n\n\
             {{\"path\": \"wav/b.flac\", \"sentence\": \"bonjour\", \"locale\": \"fr\"}}\n\
             {{\"file\": {{\"path\": \"{}\"}}, \"transcription\": \"hello\"}}\n",
            abs.display()
        ),
    )?;
    let rows = read_speech_data(&manifest, None)?;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].audio, dir.path().join("wav/a.wav"));
    assert!(rows[0].audio.is_absolute());
    assert_eq!((rows[0].text.as_str(), rows[0].language.as_deref()), ("hallo welt", Some("de")));
    assert_eq!((rows[1].text.as_str(), rows[1].language.as_deref()), ("bonjour", Some("fr")));
    assert_eq!((rows[2].audio.clone(), rows[2].language.clone()), (abs, None));
    // The same folder read by split name.
    assert_eq!(read_speech_data(dir.path(), Some("train"))?, rows);
    Ok(())
}

#[test]
fn csv_tsv_audiofolder_and_common_voice() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    touch(d, "a.wav");
    touch(d, "b.wav");
    fs::write(d.join("m.csv"), "file,text,language\na.wav,\"one, two\",en\nb.wav,three,\n")?;
    let rows = read_speech_data(&d.join("m.csv"), None)?;
    assert_eq!(rows.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(), ["one, two", "three"]);
    assert_eq!(rows[1].language, None);
    fs::write(d.join("m.tsv"), "path\tsentence\na.wav\the said \"hi\"\n")?;
    assert_eq!(read_speech_data(&d.join("m.tsv"), None)?[0].text, "he said \"hi\"");

    let af = d.join("audiofolder");
    touch(&af, "x/1.wav");
    fs::write(af.join("metadata.csv"), "file_name,transcription\nx/1.wav,hello there\n")?;
    let rows = read_speech_data(&af, None)?;
    assert_eq!((rows[0].audio.clone(), rows[0].text.as_str()), (af.join("x/1.wav"), "hello there"));

    let af_split = d.join("af_split");
    touch(&af_split, "test/2.wav");
    fs::write(af_split.join("test/metadata.csv"), "file_name,text\n2.wav,bye\n")?;
    assert_eq!(read_speech_data(&af_split, Some("test"))?[0].audio, af_split.join("test/2.wav"));

    let cv = d.join("cv");
    touch(&cv, "clips/common_voice_de_1.mp3");
    touch(&cv, "clips/common_voice_de_2.mp3");
    let header = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment\n";
    fs::write(
        cv.join("train.tsv"),
        format!("{header}c1\tcommon_voice_de_1.mp3\ts1\tDas ist \"gut\".\t\t2\t0\t\t\t\t\tde\t\n"),
    )?;
    fs::write(
        cv.join("dev.tsv"),
        format!("{header}c2\tcommon_voice_de_2.mp3\ts2\tNoch einer.\t\t2\t0\t\t\t\t\tde\t\n"),
    )?;
    let train = read_speech_data(&cv, None)?;
    assert_eq!(train[0].audio, cv.join("clips/common_voice_de_1.mp3"));
    assert_eq!((train[0].text.as_str(), train[0].language.as_deref()), ("Das ist \"gut\".", Some("de")));
    assert_eq!(read_speech_data(&cv, Some("validation"))?[0].text, "Noch einer.");
    let e = err(&cv, Some("test"));
    assert!(e.contains("no split `test`") && e.contains("train, dev"), "{e}");
    Ok(())
}

#[test]
fn bad_manifests_are_clear_errors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    touch(d, "a.wav");

    fs::write(
        d.join("missing.jsonl"),
        "{\"audio\": \"a.wav\", \"text\": \"ok\"}\n{\"audio\": \"gone.wav\", \"text\": \"x\"}\n",
    )?;
    let e = err(&d.join("missing.jsonl"), None);
    assert!(
        e.contains("missing.jsonl") && e.contains("line 2") && e.contains("gone.wav") && e.contains("not found"),
        "{e}"
    );

    fs::write(d.join("missing.csv"), "audio,text\na.wav,ok\nalso_gone.wav,x\n")?;
    let e = err(&d.join("missing.csv"), None);
    assert!(e.contains("missing.csv") && e.contains("line 3") && e.contains("also_gone.wav"), "{e}");

    fs::write(d.join("empty.jsonl"), "\n\n")?;
    let e = err(&d.join("empty.jsonl"), None);
    assert!(e.contains("empty.jsonl") && e.contains("empty manifest"), "{e}");
    fs::write(d.join("empty.csv"), "audio,text\n")?;
    assert!(err(&d.join("empty.csv"), None).contains("empty manifest"));

    fs::write(d.join("notext.jsonl"), "{\"audio\": \"a.wav\", \"label\": 3}\n")?;
    let e = err(&d.join("notext.jsonl"), None);
    assert!(e.contains("line 1") && e.contains("no text field") && e.contains("sentence"), "{e}");

    fs::write(d.join("badjson.jsonl"), "{\"audio\": \"a.wav\", \"text\": \"ok\"}\n{\"audio\": \n")?;
    let e = err(&d.join("badjson.jsonl"), None);
    assert!(e.contains("badjson.jsonl") && e.contains("line 2"), "{e}");

    fs::write(d.join("nocol.csv"), "wav,words\na.wav,hi\n")?;
    let e = err(&d.join("nocol.csv"), None);
    assert!(e.contains("line 1") && e.contains("no audio column") && e.contains("wav, words"), "{e}");

    let e = err(&d.join("nowhere"), None);
    assert!(e.contains("nowhere") && e.contains("not found"), "{e}");
    let e = err(d, Some("train"));
    assert!(e.contains("not a speech data folder"), "{e}");
    Ok(())
}

/// The synthetic espeak-ng set end to end: the script writes it, the manifests read back by split, every file
/// decodes and resamples to the duration the script recorded.
#[test]
fn synthetic_speech_set_reads_back() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/synth_speech.py");
    let out = std::process::Command::new(suite_core::python::python_exe()?)
        .arg(&script)
        .args(["--out", dir.path().to_str().unwrap(), "--per-lang", "3", "--heldout-per-lang", "2"])
        .args(["--langs", "en,de,fr,es", "--seed", "7"])
        .output()?;
    assert!(out.status.success(), "synth_speech.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let train = read_speech_data(dir.path(), Some("train"))?;
    let heldout = read_speech_data(&dir.path().join("heldout.jsonl"), None)?;
    assert_eq!((train.len(), heldout.len()), (12, 8));
    for lang in ["en", "de", "fr", "es"] {
        assert_eq!(train.iter().filter(|e| e.language.as_deref() == Some(lang)).count(), 3);
    }
    assert!(train.iter().all(|t| heldout.iter().all(|h| h.text != t.text)), "train and held-out overlap");
    let manifest = fs::read_to_string(dir.path().join("train.jsonl"))?;
    for (example, line) in train.iter().zip(manifest.lines()) {
        let row: serde_json::Value = serde_json::from_str(line)?;
        let duration = row["duration_s"].as_f64().unwrap();
        let samples = crate::audio::load_audio(&example.audio)?;
        assert!((samples.len() as f64 / 16000.0 - duration).abs() < 2e-3, "{}", example.audio.display());
        assert!(samples.iter().map(|s| s.abs()).fold(0f32, f32::max) > 0.05, "silent {}", example.audio.display());
    }
    Ok(())
}
