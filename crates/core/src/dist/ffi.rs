//! The C side of c10d (csrc/dist.cpp): raw handles and calls, each returning 0 or 1 with a message.

use std::ffi::{c_char, c_int, c_longlong, c_uchar, c_void, CStr, CString};

use anyhow::{anyhow, Result};
use tch::Tensor;

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn suite_dist_init(
        addr: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        host_store: c_int,
        timeout_ms: c_longlong,
        backend: c_int,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: c_int,
    ) -> c_int;
    fn suite_dist_free(g: *mut c_void);
    fn suite_dist_allreduce_sum(g: *mut c_void, ts: *mut *mut c_void, n: c_int, err: *mut c_char, len: c_int) -> c_int;
    fn suite_dist_broadcast(
        g: *mut c_void,
        ts: *mut *mut c_void,
        n: c_int,
        root: c_int,
        err: *mut c_char,
        len: c_int,
    ) -> c_int;
    fn suite_dist_barrier(g: *mut c_void, err: *mut c_char, len: c_int) -> c_int;
    fn suite_dist_store_clone(g: *mut c_void, out: *mut *mut c_void, err: *mut c_char, len: c_int) -> c_int;
    fn suite_dist_store_set(
        g: *mut c_void,
        key: *const c_char,
        value: *const c_uchar,
        n: c_longlong,
        err: *mut c_char,
        len: c_int,
    ) -> c_int;
    fn suite_dist_store_get(
        g: *mut c_void,
        key: *const c_char,
        timeout_ms: c_longlong,
        value: *mut *mut c_uchar,
        n: *mut c_longlong,
        err: *mut c_char,
        len: c_int,
    ) -> c_int;
    fn suite_dist_bytes_free(p: *mut c_uchar);
    fn suite_dist_set_grad(param: *mut c_void, grad: *mut c_void, err: *mut c_char, len: c_int) -> c_int;
}

/// Sets the gradient of `param` to `grad` (defining it when it was undefined).
pub(crate) fn set_grad(param: &Tensor, grad: &Tensor) -> Result<()> {
    call(|e, l| unsafe { suite_dist_set_grad(param.as_ptr() as *mut c_void, grad.as_ptr() as *mut c_void, e, l) })
}

const ERR_LEN: usize = 2048;

fn call(f: impl FnOnce(*mut c_char, c_int) -> c_int) -> Result<()> {
    let mut err = vec![0 as c_char; ERR_LEN];
    if f(err.as_mut_ptr(), ERR_LEN as c_int) == 0 {
        return Ok(());
    }
    // SAFETY: the shim writes a NUL-terminated message of at most ERR_LEN bytes.
    let msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().trim().to_string();
    Err(anyhow!(msg))
}

/// A c10d handle: a joined process group, or a second connection to its store.
///
/// The pointee is c10d's `Backend` and `TCPStore`, which take their own locks; a handle is used from one thread
/// at a time by its owner.
pub(crate) struct Handle(*mut c_void);

// SAFETY: c10d's backends and stores are thread-safe objects behind intrusive pointers; the handle moves between
// threads but is never aliased mutably.
unsafe impl Send for Handle {}
// SAFETY: as above: every call goes through c10d's own synchronisation.
unsafe impl Sync for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: created by suite_dist_init or suite_dist_store_clone and freed once.
        unsafe { suite_dist_free(self.0) }
    }
}

fn tensor_ptrs(ts: &mut [Tensor]) -> Vec<*mut c_void> {
    ts.iter_mut().map(|t| t.as_mut_ptr().cast()).collect()
}

impl Handle {
    /// Joins the group through the TCPStore at `addr:port`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn init(
        addr: &str,
        port: u16,
        rank: usize,
        world: usize,
        host_store: bool,
        timeout_ms: u64,
        nccl: bool,
    ) -> Result<Self> {
        let addr = CString::new(addr).map_err(|_| anyhow!("MASTER_ADDR holds a NUL byte"))?;
        let mut out = std::ptr::null_mut();
        call(|e, l| unsafe {
            suite_dist_init(
                addr.as_ptr(),
                port as c_int,
                rank as c_int,
                world as c_int,
                host_store as c_int,
                timeout_ms as c_longlong,
                nccl as c_int,
                &mut out,
                e,
                l,
            )
        })?;
        Ok(Self(out))
    }

    pub(crate) fn all_reduce_sum(&self, ts: &mut [Tensor]) -> Result<()> {
        let mut ptrs = tensor_ptrs(ts);
        call(|e, l| unsafe { suite_dist_allreduce_sum(self.0, ptrs.as_mut_ptr(), ptrs.len() as c_int, e, l) })
    }

    pub(crate) fn broadcast(&self, ts: &mut [Tensor], root: usize) -> Result<()> {
        let mut ptrs = tensor_ptrs(ts);
        call(|e, l| unsafe {
            suite_dist_broadcast(self.0, ptrs.as_mut_ptr(), ptrs.len() as c_int, root as c_int, e, l)
        })
    }

    pub(crate) fn barrier(&self) -> Result<()> {
        call(|e, l| unsafe { suite_dist_barrier(self.0, e, l) })
    }

    pub(crate) fn store_clone(&self) -> Result<Self> {
        let mut out = std::ptr::null_mut();
        call(|e, l| unsafe { suite_dist_store_clone(self.0, &mut out, e, l) })?;
        Ok(Self(out))
    }

    pub(crate) fn store_set(&self, key: &str, value: &[u8]) -> Result<()> {
        let key = CString::new(key)?;
        call(|e, l| unsafe {
            suite_dist_store_set(self.0, key.as_ptr(), value.as_ptr(), value.len() as c_longlong, e, l)
        })
    }

    pub(crate) fn store_get(&self, key: &str, timeout_ms: u64) -> Result<Vec<u8>> {
        let key = CString::new(key)?;
        let mut ptr = std::ptr::null_mut();
        let mut n: c_longlong = 0;
        call(|e, l| unsafe {
            suite_dist_store_get(self.0, key.as_ptr(), timeout_ms as c_longlong, &mut ptr, &mut n, e, l)
        })?;
        // SAFETY: the shim malloc'ed `n` (+1) bytes at `ptr`; copied, then freed by the shim's allocator.
        let bytes = unsafe { std::slice::from_raw_parts(ptr, n as usize) }.to_vec();
        unsafe { suite_dist_bytes_free(ptr) };
        Ok(bytes)
    }
}
