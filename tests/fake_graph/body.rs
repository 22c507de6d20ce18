//! Streaming request bodies to disk while hashing them.
//!
//! A body is never held in memory whole: each chunk is hashed and written
//! through a buffered writer as it arrives, so the fake sinks uploads at
//! loopback speed. The caller decides what the bytes mean; this module only
//! reports how the body ended. A body that ends early (the client went away, or
//! a fault cut it) leaves bytes on disk that the caller must not commit.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt as _;
use onedrive_syncd::graph::quickxor::QuickXorHash;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Buffer between the body stream and the file.
pub(crate) const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Chunks queued between the socket and the hashing thread.
const HASH_QUEUE_CHUNKS: usize = 64;

/// The most a refused request's body is read and discarded, so that the client
/// gets the refusal instead of a reset connection.
pub(crate) const DRAIN_CAP_BYTES: u64 = 512 << 20;

/// Limits and faults that apply while a body is received.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Limits {
    /// Stop with [`BodyEnd::TooLarge`] past this many bytes.
    pub(crate) max_bytes: Option<u64>,
    /// Stop with [`BodyEnd::Cut`] once this many bytes have been read.
    pub(crate) cut_after: Option<u64>,
    /// Read no faster than this.
    pub(crate) bandwidth_bytes_per_sec: Option<u64>,
}

/// How a body ended.
#[derive(Debug)]
pub(crate) enum BodyEnd {
    /// All of it arrived: this many bytes.
    Complete(u64),
    /// A fault cut it after this many bytes.
    Cut(u64),
    /// It grew past `max_bytes`.
    TooLarge(u64),
    /// The client went away or the disk failed.
    Broken(String),
}

/// Reads `body` into `sink`, feeding every byte to `hasher`, within `limits`.
///
/// Hashing runs on a blocking thread fed through a channel, in arrival order,
/// so that it overlaps with reading the socket and writing the file; it is the
/// most expensive step per byte. `hasher` is updated only when the whole body
/// arrived, so a failed body leaves it as it was.
pub(crate) async fn receive<W: AsyncWrite + Unpin>(
    body: Body,
    sink: &mut W,
    hasher: &mut QuickXorHash,
    limits: Limits,
) -> BodyEnd {
    let (chunks, mut incoming) = mpsc::channel::<Bytes>(HASH_QUEUE_CHUNKS);
    let mut running = hasher.clone();
    let hashing = tokio::task::spawn_blocking(move || {
        while let Some(chunk) = incoming.blocking_recv() {
            running.update(&chunk);
        }
        running
    });
    let end = write_all_chunks(body, sink, &chunks, limits).await;
    drop(chunks);
    match (end, hashing.await) {
        (BodyEnd::Complete(n), Ok(done)) => {
            *hasher = done;
            BodyEnd::Complete(n)
        }
        (BodyEnd::Complete(_), Err(err)) => BodyEnd::Broken(format!("hashing failed: {err}")),
        (other, _) => other,
    }
}

async fn write_all_chunks<W: AsyncWrite + Unpin>(
    body: Body,
    sink: &mut W,
    hashing: &mpsc::Sender<Bytes>,
    limits: Limits,
) -> BodyEnd {
    let started = Instant::now();
    let mut stream = body.into_data_stream();
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(err) => return BodyEnd::Broken(format!("body read failed: {err}")),
        };
        let len = chunk.len() as u64;
        if let Some(cut) = limits.cut_after.filter(|cut| received + len >= *cut) {
            return BodyEnd::Cut(cut);
        }
        if limits.max_bytes.is_some_and(|max| received + len > max) {
            return BodyEnd::TooLarge(received + len);
        }
        if let Err(err) = sink.write_all(&chunk).await {
            return BodyEnd::Broken(format!("disk write failed: {err}"));
        }
        if hashing.send(chunk).await.is_err() {
            return BodyEnd::Broken("the hashing thread stopped".to_owned());
        }
        received += len;
        throttle(started, received, limits.bandwidth_bytes_per_sec).await;
    }
    if let Err(err) = sink.flush().await {
        return BodyEnd::Broken(format!("disk flush failed: {err}"));
    }
    BodyEnd::Complete(received)
}

/// Reads and discards up to [`DRAIN_CAP_BYTES`] of a body.
pub(crate) async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    let mut seen = 0u64;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len() as u64;
        if seen > DRAIN_CAP_BYTES {
            break;
        }
    }
}

/// Reads a small body whole (identity forms, JSON requests); `None` past `max`
/// bytes or when the client goes away.
pub(crate) async fn small(body: Body, max: usize) -> Option<Vec<u8>> {
    axum::body::to_bytes(body, max)
        .await
        .ok()
        .map(|bytes| bytes.to_vec())
}

/// Sleeps as needed so that `bytes` since `started` stay within the bandwidth
/// cap.
// LIMITATION: the cap applies per request, not to all connections together —
// enough to make fragments slow, not to model a shared link.
pub(crate) async fn throttle(started: Instant, bytes: u64, bytes_per_sec: Option<u64>) {
    let Some(rate) = bytes_per_sec.filter(|rate| *rate > 0) else {
        return;
    };
    let due = started + Duration::from_secs_f64(bytes as f64 / rate as f64);
    tokio::time::sleep_until(due).await;
}
