//! Whisper transcription and translation: recordings arrive decoded and resampled (the handlers do that on the
//! blocking pool), and the batch's recordings with the same options are transcribed together (their 30-s windows stacked in each round of the
//! long-form decoder).

use std::path::Path;

use suite_speech::audio::LogMel;
use suite_speech::decode::{render, transcribe_timed, ResponseFormat, TranscribeOptions};
use suite_speech::task::LoadedWhisper;

use crate::error::AppError;
use crate::state::ModelInfo;
use crate::worker::{Engine, Queue};

/// One recording to transcribe or translate.
pub struct SpeechRequest {
    /// 16 kHz mono samples, from [`suite_speech::audio::decode_audio_bytes`] (never empty).
    pub samples: Vec<f32>,
    pub options: TranscribeOptions,
    pub format: ResponseFormat,
}

/// The rendered answer and its content type.
pub struct SpeechReply {
    pub body: String,
    pub content_type: &'static str,
}

/// The queue of a speech model.
pub type SpeechQueue = Queue<SpeechRequest, SpeechReply>;

/// A loaded Whisper on its inference thread.
pub struct SpeechEngine {
    loaded: LoadedWhisper,
    mel: LogMel,
}

impl SpeechEngine {
    /// Loads a base Whisper by registry name, hub id or folder, or the model folder of a speech run.
    /// With `int8`, its linear layers run in int8.
    pub fn load(spec: &str, device: tch::Device, int8: bool) -> anyhow::Result<(Self, ModelInfo)> {
        let (loaded, _) = suite_speech::task::load_for_inference_as(spec, device, int8)?;
        let mel = LogMel::new(suite_speech::audio::MelConfig::whisper(loaded.model.config.num_mel_bins));
        let info = ModelInfo {
            task: "transcribe".into(),
            labels: Vec::new(),
            precision: super::precision_name(int8),
            preprocessor: None,
        };
        Ok((Self { loaded, mel }, info))
    }

    /// The model folder of a speech run: `best/`, else `final/`.
    pub fn run_model_dir(run: &Path, which: &str) -> anyhow::Result<std::path::PathBuf> {
        let dir = run.join(which);
        if suite_speech::task::is_model_dir(&dir) {
            return Ok(dir);
        }
        anyhow::bail!("{}: no saved model (has the run finished an evaluation?)", dir.display())
    }
}

impl Engine for SpeechEngine {
    type Request = SpeechRequest;
    type Response = SpeechReply;

    fn run(&mut self, batch: Vec<SpeechRequest>) -> Vec<Result<SpeechReply, AppError>> {
        let mut results: Vec<Option<Result<SpeechReply, AppError>>> = batch.iter().map(|_| None).collect();
        // Requests with equal options are transcribed together.
        let mut groups: Vec<(TranscribeOptions, Vec<usize>)> = Vec::new();
        for (i, r) in batch.iter().enumerate() {
            match groups.iter_mut().find(|(o, _)| *o == r.options) {
                Some((_, members)) => members.push(i),
                None => groups.push((r.options.clone(), vec![i])),
            }
        }
        for (options, members) in groups {
            let clips: Vec<&[f32]> = members.iter().map(|&i| batch[i].samples.as_slice()).collect();
            let model = &self.loaded;
            let out = tch::no_grad(|| transcribe_timed(&model.model, &model.tokenizer, &self.mel, &clips, &options));
            match out {
                Ok(transcripts) => {
                    for (&i, t) in members.iter().zip(transcripts) {
                        let format = batch[i].format;
                        results[i] = Some(Ok(SpeechReply {
                            body: render(&t, format, options.task),
                            content_type: format.content_type(),
                        }));
                    }
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    for &i in &members {
                        results[i] = Some(Err(AppError::Internal(msg.clone())));
                    }
                }
            }
        }
        results.into_iter().map(|r| r.unwrap_or_else(|| Err(AppError::Internal("unanswered".into())))).collect()
    }
}
