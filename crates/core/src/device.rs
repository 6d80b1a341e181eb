//! Device selection (`auto|cpu|cuda[:N]`), thread count and seeding.

use anyhow::{bail, Result};
use tch::Device;

/// Parses `auto`, `cpu`, `cuda` or `cuda:N`; `auto` picks the first GPU when one is visible.
pub fn parse_device(spec: &str) -> Result<Device> {
    let s = spec.trim().to_ascii_lowercase();
    Ok(match s.as_str() {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" | "gpu" => cuda(0, spec)?,
        _ => match s.strip_prefix("cuda:") {
            Some(n) => match n.parse::<usize>() {
                Ok(i) => cuda(i, spec)?,
                Err(_) => bail!("--device {spec:?}: expected auto, cpu, cuda or cuda:N with N a GPU index"),
            },
            None => bail!("--device {spec:?}: expected auto, cpu, cuda or cuda:N"),
        },
    })
}

fn cuda(i: usize, spec: &str) -> Result<Device> {
    let n = tch::Cuda::device_count() as usize;
    if i >= n {
        bail!("--device {spec:?}: {n} CUDA device(s) visible, so cuda:{i} does not exist");
    }
    Ok(Device::Cuda(i))
}

/// Sets libtorch's intra-op thread count (`--threads`); 0 keeps libtorch's default.
pub fn set_threads(n: usize) {
    if n > 0 {
        tch::set_num_threads(n as i32);
    }
}

/// Seeds libtorch's CPU and CUDA generators.
pub fn seed_torch(seed: u64) {
    tch::manual_seed(seed as i64);
    if tch::Cuda::is_available() {
        tch::Cuda::manual_seed_all(seed);
    }
}

/// A stable 64-bit mix of several integers (SplitMix64 finaliser), used to derive independent seeds from
/// (run seed, epoch, index, step) so that every random draw is a pure function of its position in the run.
pub fn mix_seed(parts: &[u64]) -> u64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    for &p in parts {
        h ^= p.wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_add(h << 6).wrapping_add(h >> 2);
        h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 31;
    }
    h
}

extern "C" {
    fn suite_autocast_set_cuda_bf16(bf16: i32);
    fn suite_grad_enabled() -> i32;
}

/// Whether libtorch records operations for autograd on this thread (false inside `tch::no_grad`).
pub fn grad_enabled() -> bool {
    // SAFETY: reads a thread-local flag of libtorch; no pointers cross.
    unsafe { suite_grad_enabled() != 0 }
}

/// Runs `f` under CUDA bf16 autocast when `enabled` (master weights stay fp32); otherwise runs it as is.
pub fn maybe_autocast<T>(enabled: bool, f: impl FnOnce() -> T) -> T {
    if !enabled {
        return f();
    }
    // SAFETY: sets a thread-local dtype in libtorch's autocast state; no pointers cross.
    unsafe { suite_autocast_set_cuda_bf16(1) };
    tch::autocast(true, f)
}

/// Hands the heap's free pages back to the system (glibc's `malloc_trim`), after a phase that freed much more than
/// what follows will allocate. glibc raises its mmap threshold as large blocks are freed, so later tensors come
/// from the heap, and memory freed in its middle stays resident; inference calls this after loading a model and
/// between the windows of a long recording so that peak memory follows what is live. A no-op off glibc.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: no arguments beyond the pad; glibc locks its arenas while trimming.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// libtorch's generator is process-wide, and the test harness runs tests on parallel threads: tests whose results
/// depend on random draws (dropout masks, seeded initialisation) hold this lock.
#[cfg(test)]
pub(crate) static TORCH_RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`TORCH_RNG_LOCK`], ignoring poisoning by a failed test.
#[cfg(test)]
pub(crate) fn torch_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    TORCH_RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices_and_rejects_garbage() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert_eq!(parse_device("CPU").unwrap(), Device::Cpu);
        let err = parse_device("tpu").unwrap_err().to_string();
        assert!(err.contains("tpu") && err.contains("expected"), "{err}");
        assert!(parse_device("cuda:x").is_err());
        if !tch::Cuda::is_available() {
            assert!(parse_device("cuda:0").unwrap_err().to_string().contains("0 CUDA device"));
            assert_eq!(parse_device("auto").unwrap(), Device::Cpu);
        }
    }

    #[test]
    fn mixed_seeds_differ_by_position() {
        assert_ne!(mix_seed(&[1, 0, 5]), mix_seed(&[1, 0, 6]));
        assert_ne!(mix_seed(&[1, 2]), mix_seed(&[2, 1]));
        assert_eq!(mix_seed(&[7, 3]), mix_seed(&[7, 3]));
    }
}

