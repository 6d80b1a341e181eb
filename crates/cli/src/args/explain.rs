//! `suite explain vision|text|speech`: what a run's model looked at.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// `suite explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// What to explain.
    #[command(subcommand)]
    pub what: ExplainCommand,
}

/// The domains `suite explain` covers.
#[derive(Debug, Subcommand)]
pub enum ExplainCommand {
    /// Heatmaps of what an image classifier looked at (Grad-CAM, Grad-CAM++, integrated gradients).
    Vision(ExplainVisionArgs),
    /// Token attributions of a text model (integrated gradients on the input embeddings).
    Text(ExplainTextArgs),
    /// Word timing and confidence of a transcription from Whisper's cross-attention alignment.
    Speech(ExplainSpeechArgs),
}

// ---------------------------------------------------------------------------------------------------------------
// vision

/// Attribution method for images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VisionMethod {
    /// Gradient-weighted class activation map of a convolutional layer (Selvaraju et al.).
    Gradcam,
    /// Grad-CAM++ (Chattopadhyay et al.): second-order weights of the layer's activations.
    #[value(name = "gradcam++")]
    GradcamPlusPlus,
    /// Integrated gradients on the input pixels (Sundararajan et al.), black baseline.
    IntegratedGradients,
}

/// What `suite explain vision` and `suite explain text` share: the run, the class, the integration steps, where to
/// write and on what device.
#[derive(Debug, Args)]
pub struct ExplainRunArgs {
    /// Run folder of the model to explain.
    #[arg(long)]
    pub run: PathBuf,
    /// `best` (default) or `final`.
    #[arg(long, default_value = "best")]
    pub which: String,
    /// Class to explain (a label name or index; default: the predicted class; classification only for text).
    #[arg(long)]
    pub target: Option<String>,
    /// Integration steps of integrated gradients.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Output folder (default: explain/<run name>-<domain>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// `suite explain vision`.
#[derive(Debug, Args)]
pub struct ExplainVisionArgs {
    #[command(flatten)]
    pub common: ExplainRunArgs,
    /// Images to explain.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Attribution method.
    #[arg(long, value_enum, default_value = "gradcam")]
    pub method: VisionMethod,
    /// Layer whose activations Grad-CAM weighs (default: the last convolutional stage).
    #[arg(long)]
    pub layer: Option<String>,
}

// ---------------------------------------------------------------------------------------------------------------
// text

/// `suite explain text` (classification, NER or QA runs; writes attributions.jsonl and attributions.html).
#[derive(Debug, Args)]
pub struct ExplainTextArgs {
    #[command(flatten)]
    pub common: ExplainRunArgs,
    /// Inputs as `suite predict text` reads them: a text/JSONL file, or `-` for stdin (default).
    pub input: Option<PathBuf>,
}

// ---------------------------------------------------------------------------------------------------------------
// speech

/// `suite explain speech`.
#[derive(Debug, Args)]
pub struct ExplainSpeechArgs {
    /// Audio files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Whisper model: `whisper-base` (default, offline), a hub id or a local folder.
    #[arg(long, conflicts_with = "run")]
    pub model: Option<String>,
    /// A speech run folder whose fine-tuned model to use.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// `best` (default) or `final` model of --run.
    #[arg(long, default_value = "best")]
    pub which: String,
    /// Language code; detected from the audio when not given.
    #[arg(long)]
    pub language: Option<String>,
    /// Output folder for words.json and the alignment picture (default: explain/<file stem>-speech).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: String,
}
