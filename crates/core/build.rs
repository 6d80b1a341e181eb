//! Compiles the C++ shims (csrc/: bf16 autocast, fused AdamW, activation checkpointing, c10d process groups,
//! int8 dynamic quantization, the Kineto operator profiler)
//! against the libtorch headers that torch-sys uses.
//!
//! The torch wheel ships c10d's headers but not those of Gloo, which `ProcessGroupGloo.hpp` includes; Debian's
//! `libgloo-dev` (an asset of datasets/assets.tsv that scripts/setup.sh unpacks into the cache) provides them. Only
//! declarations are needed: the Gloo code itself is the copy inside libtorch_cpu.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/amp.cpp");
    println!("cargo:rerun-if-changed=csrc/checkpoint.cpp");
    println!("cargo:rerun-if-changed=csrc/fused_adamw.cpp");
    println!("cargo:rerun-if-changed=csrc/dist.cpp");
    println!("cargo:rerun-if-changed=csrc/quant.cpp");
    println!("cargo:rerun-if-changed=csrc/profiler.cpp");
    println!("cargo:rerun-if-changed=csrc/guarded.h");
    println!("cargo:rerun-if-env-changed=SUITE_CACHE");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let libtorch =
        PathBuf::from(std::env::var("LIBTORCH").expect("LIBTORCH is set by .cargo/config.toml: run scripts/setup.sh"));
    let cache = std::env::var("SUITE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/suite"));
    let gloo = cache.join("assets/gloo-headers/usr/include");
    if !gloo.join("gloo/context.h").exists() {
        panic!("the Gloo headers are missing from {}: run scripts/setup.sh (it fetches libgloo-dev)", gloo.display());
    }
    cc::Build::new()
        .cpp(true)
        .file("csrc/amp.cpp")
        .file("csrc/checkpoint.cpp")
        .file("csrc/fused_adamw.cpp")
        .file("csrc/dist.cpp")
        .file("csrc/quant.cpp")
        .file("csrc/profiler.cpp")
        .include(libtorch.join("include"))
        .include(libtorch.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .include(gloo)
        .define("USE_C10D_GLOO", None)
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .warnings(false)
        .compile("suite_amp");
}
