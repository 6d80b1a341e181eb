//! TensorBoard event files: `RUN/tensorboard/events.out.tfevents.<time>.<host>.<pid>.suite`, read by TensorBoard
//! and its `EventAccumulator` as any file `tf.summary` writes.
//!
//! A file is a sequence of TFRecords (length, masked CRC32C of the length, data, masked CRC32C of the data), each
//! holding one `Event` protobuf: first `file_version: "brain.Event:2"`, then scalar summaries. Only the fields
//! suite writes are declared here, with the tags of tensorflow/core/util/event.proto and summary.proto.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use prost::Message;

use super::{now_s, scalars};
use crate::runs::{MetricRecord, RunDir};
use crate::train::{FitObserver, TrainConfig};

/// `tensorflow.Event`: only the members suite writes.
#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    /// `oneof what`: the first event of a file.
    #[prost(string, optional, tag = "3")]
    file_version: Option<String>,
    /// `oneof what`: values logged at `step`.
    #[prost(message, optional, tag = "5")]
    summary: Option<Summary>,
    /// `oneof what`: a (re)start, which makes readers drop what an earlier file logged at `step` and later.
    #[prost(message, optional, tag = "7")]
    session_log: Option<SessionLog>,
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`, scalars only.
#[derive(Clone, PartialEq, prost::Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    /// `oneof value`: optional so that 0.0 is still written (a oneof member is present even at its default).
    #[prost(float, optional, tag = "2")]
    simple_value: Option<f32>,
}

/// `tensorflow.SessionLog`.
#[derive(Clone, PartialEq, prost::Message)]
struct SessionLog {
    /// 1 = START.
    #[prost(int32, tag = "1")]
    status: i32,
}

/// TFRecord's checksum: CRC32C, rotated and offset so that a checksum of data holding checksums stays strong.
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Writes one TensorBoard event file. Every event goes out in a single write as soon as it is added, so a killed
/// run keeps everything it logged (at most the last record is torn, which readers skip).
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    file: File,
}

impl EventWriter {
    /// Creates a new event file in `dir` (made if missing) and writes its version event. The name carries the
    /// current second; when a file of that name exists (a second writer within the same second), the time is
    /// moved on so the names still sort in writing order, as TensorBoard reads them.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let host = hostname();
        let pid = std::process::id();
        let mut secs = now_s() as u64;
        loop {
            let path = dir.join(format!("events.out.tfevents.{secs}.{host}.{pid}.suite"));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    let mut w = Self { path, file };
                    w.write(&Event {
                        wall_time: now_s(),
                        file_version: Some("brain.Event:2".into()),
                        ..Event::default()
                    })?;
                    return Ok(w);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => secs += 1,
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Logs `values` (tag, value) at `step`, as float32 (TensorBoard's `simple_value`).
    pub fn add_scalars(&mut self, step: u64, values: &[(String, f64)]) -> Result<()> {
        let value =
            values.iter().map(|(tag, v)| SummaryValue { tag: tag.clone(), simple_value: Some(*v as f32) }).collect();
        self.write(&Event {
            wall_time: now_s(),
            step: step as i64,
            summary: Some(Summary { value }),
            ..Event::default()
        })
    }

    /// Marks a restart at `step`: readers drop what earlier files logged at `step` and later (a resumed run
    /// logs those steps again).
    pub fn session_start(&mut self, step: u64) -> Result<()> {
        self.write(&Event {
            wall_time: now_s(),
            step: step as i64,
            session_log: Some(SessionLog { status: 1 }),
            ..Event::default()
        })
    }

    fn write(&mut self, event: &Event) -> Result<()> {
        let data = event.encode_to_vec();
        let len = (data.len() as u64).to_le_bytes();
        let mut record = Vec::with_capacity(data.len() + 16);
        record.extend_from_slice(&len);
        record.extend_from_slice(&masked_crc(&len).to_le_bytes());
        record.extend_from_slice(&data);
        record.extend_from_slice(&masked_crc(&data).to_le_bytes());
        self.file.write_all(&record).with_context(|| format!("writing {}", self.path.display()))
    }
}

/// The machine's name, as TensorFlow puts it into event file names.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length, and gethostname writes at most that much.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).replace(['/', '\\'], "_");
    if ok && !name.is_empty() {
        name
    } else {
        "localhost".into()
    }
}

/// Logs every record of a run to `RUN/tensorboard/` (a new event file per start; a resumed run's file begins with
/// a restart marker, so readers drop the steps the interrupted run logged after its checkpoint).
#[derive(Debug, Default)]
pub struct TensorBoardObserver {
    writer: Option<EventWriter>,
    failed: bool,
}

impl TensorBoardObserver {
    /// An observer that opens its event file when the run starts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reports the first failure and stops writing: the event file is a convenience, not worth a run.
    fn fail(&mut self, e: anyhow::Error) {
        if !self.failed {
            eprintln!("warning: tensorboard: {e:#}; no more TensorBoard logging in this run");
        }
        self.failed = true;
        self.writer = None;
    }
}

impl FitObserver for TensorBoardObserver {
    fn name(&self) -> &str {
        "tensorboard"
    }

    fn on_start(&mut self, run: &RunDir, _config: &TrainConfig) -> Result<()> {
        let dir = run.root().join("tensorboard");
        let resumed = dir.exists();
        // The metrics log already lost the records past the checkpoint: what follows its last step is new.
        let last = if resumed {
            run.read_metrics().ok().and_then(|r| r.iter().map(MetricRecord::step).max()).unwrap_or(0)
        } else {
            0
        };
        let opened = EventWriter::create(&dir).and_then(|mut w| {
            if resumed {
                w.session_start(last + 1)?;
            }
            Ok(w)
        });
        match opened {
            Ok(w) => self.writer = Some(w),
            Err(e) => self.fail(e),
        }
        Ok(())
    }

    fn on_record(&mut self, record: &MetricRecord) -> Result<()> {
        if let Some(w) = self.writer.as_mut() {
            if let Err(e) = w.add_scalars(record.step(), &scalars(record)) {
                self.fail(e);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "tensorboard_tests.rs"]
mod tests;
