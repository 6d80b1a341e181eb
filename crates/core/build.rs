//! Compiles the C++ shims (csrc/: bf16 autocast, fused AdamW, activation checkpointing) against the libtorch
//! headers that torch-sys uses.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/amp.cpp");
    println!("cargo:rerun-if-changed=csrc/checkpoint.cpp");
    println!("cargo:rerun-if-changed=csrc/fused_adamw.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let libtorch =
        PathBuf::from(std::env::var("LIBTORCH").expect("LIBTORCH is set by .cargo/config.toml: run scripts/setup.sh"));
    cc::Build::new()
        .cpp(true)
        .file("csrc/amp.cpp")
        .file("csrc/checkpoint.cpp")
        .file("csrc/fused_adamw.cpp")
        .include(libtorch.join("include"))
        .include(libtorch.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .warnings(false)
        .compile("suite_amp");
}
