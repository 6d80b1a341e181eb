//! Image data-quality checks behind `suite inspect`: perceptual hashes (imagehash's `phash`, bit for bit) to find
//! near-duplicate images, and content hashes to find byte-identical files.

pub mod phash;
