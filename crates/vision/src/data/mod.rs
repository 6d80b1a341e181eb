//! Image classification data: where labelled images come from ([`sources`]: class folders, manifests, the
//! [`ClassList`]), how files become RGB8 pixels ([`decode`]), how pixels become model inputs ([`transforms`],
//! [`augment`]), the [`ImageDataset`] the core `DataLoader` batches, and the offline MNIST-5k demo data ([`mnist`]).
//!
//! Behaviour follows torchvision's `ImageFolder` + PIL pipeline (class order, file extensions, PIL's colour
//! conversions and resampler), so a model fine-tuned here sees the inputs it would see in PyTorch.

pub mod augment;
pub mod dataset;
pub mod decode;
pub mod mnist;
pub mod sources;
pub mod transforms;

#[cfg(test)]
mod tests;

pub use augment::ColorJitter;
pub use dataset::{ImageBatch, ImageDataset};
pub use decode::{
    check_decodable, check_decodable_sets, decode_bytes, decode_bytes_limited, decode_image, validate, BadFile,
    IMG_EXTENSIONS,
};
pub use mnist::{prepare_mnist5k, Mnist5k};
pub use sources::{load_image_folder, load_manifest, scan_class_folders, stratified_split, ClassList, DataSplits};
pub use transforms::{Interpolation, Transform, TransformConfig};

/// One labelled image: its path and class index.
pub type Sample = (std::path::PathBuf, usize);
