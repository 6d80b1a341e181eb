//! Image classification as a trainable task: the job configuration (`[vision]`), tuning strategies, the loss and
//! metrics the trainer calls, the feature cache for head-only tuning, and the timm-layout export.

mod classifier;
mod config;
mod export;
mod features;
mod job;
mod peft;
mod tune;

pub use classifier::{ClassifierTask, Inputs};
pub use config::{Augment, Init, Tune, VisionConfig};
pub use export::{load_timm_layout, save_adapter_layout, save_timm_layout};
pub use features::FeatureDataset;
pub use job::{load_pretrained, load_splits, prepare, transform_config, JobData, VisionJob};
pub use peft::{apply_vision_peft, load_vision_adapter, vision_targets, VisionPeft, ADAPTER_FILE};
pub use tune::apply_tune;
