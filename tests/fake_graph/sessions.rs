//! Resumable upload sessions: create, fragments, status, cancel, commit.
//!
//! Invariants, per the createUploadSession page and the fact sheet §4:
//! - a session accepts bytes strictly in order: a fragment must start at the
//!   next expected byte, carry `Content-Length` equal to its `Content-Range`
//!   length, declare the same total on every request, stay under 60 MiB, and be
//!   a multiple of 320 KiB unless it is the last;
//! - the upload URL is a capability: a request carrying `Authorization` is
//!   refused with 401;
//! - a fragment's bytes are committed only when all of them arrived; a cut body
//!   stores nothing, so `next` only moves forward by whole fragments;
//! - the running quickXorHash covers exactly the committed bytes, each once;
//! - a session expires `session_expiry` after its last accepted fragment, and
//!   at the latest `session_max_age` after creation; a completed, cancelled or
//!   expired session answers 404.
//!
//! Part files live under `parts/`; the last fragment renames the part into the
//! blob store.

use std::collections::{HashMap, HashSet};
use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use onedrive_syncd::graph::quickxor::{to_base64, QuickXorHash};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::io::{AsyncSeekExt as _, BufWriter};
use tokio::time::Instant;

use super::body::{self, BodyEnd, Limits, WRITE_BUFFER_BYTES};
use super::drive::{Conflict, Lookup, Placement, Staged};
use super::names::key;
use super::paths::Addr;
use super::replies::{json as json_reply, timestamp, Refusal};
use super::{
    corrupt_file, random_hex, Inner, Kill, Reply, State, FRAGMENT_MULTIPLE, MAX_FRAGMENT_BYTES,
};

/// Largest file a personal OneDrive accepts (250 GiB, the figure clients use).
pub(crate) const MAX_FILE_BYTES: u64 = 250 * 1024 * 1024 * 1024;

/// How long, in steps, a fragment waits for an earlier one on the same session
/// to finish before it counts as concurrent (2 s in all).
const BUSY_WAIT_ROUNDS: u32 = 40;
const BUSY_WAIT_STEP: Duration = Duration::from_millis(50);

/// The largest `createUploadSession` body read.
const MAX_CREATE_BODY: usize = 64 * 1024;

/// One live session.
#[derive(Debug)]
pub(crate) struct Session {
    tempauth: String,
    placement: Placement,
    /// Key that makes a second session for the same target collide.
    target_key: String,
    /// Total size, from `item.fileSize` or else the first fragment.
    total: Option<u64>,
    /// Next byte expected.
    next: u64,
    hasher: QuickXorHash,
    part: PathBuf,
    created: Instant,
    expires: Instant,
    /// A fragment is being received right now.
    busy: bool,
    fs_info: Option<Value>,
}

/// All sessions and their counters.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    live: HashMap<String, Session>,
    /// Completed or cancelled sessions, which answer 404 from then on.
    gone: HashSet<String>,
    /// Sessions ever created.
    pub(crate) created: usize,
    /// Bytes the client sent again for ranges the server already had.
    pub(crate) bytes_resent: u64,
    /// Fragments refused with 416 because they overlapped received bytes.
    pub(crate) overlaps: usize,
}

impl Sessions {
    /// Number of sessions that are neither finished, cancelled nor expired.
    pub(crate) fn live_count(&self, now: Instant, max_age: Duration) -> usize {
        self.live
            .values()
            .filter(|s| now < s.expires && now < s.created + max_age)
            .count()
    }

    /// Ends a session: its part file is deleted and its URL answers 404 from
    /// now on.
    pub(crate) fn end(&mut self, id: &str) {
        if let Some(session) = self.live.remove(id) {
            let _ = std::fs::remove_file(&session.part);
        }
        self.gone.insert(id.to_owned());
    }

    /// Makes every live session expired.
    pub(crate) fn expire_all(&mut self) {
        let now = Instant::now();
        for session in self.live.values_mut() {
            session.expires = now;
        }
    }
}

/// What a fragment request asked for, once its headers passed every check.
struct FragmentPlan {
    start: u64,
    end: u64,
    total: u64,
    part: PathBuf,
    hasher: QuickXorHash,
    limits: Limits,
}

/// `POST …:/createUploadSession` (or `…/items/{id}/createUploadSession`).
pub(crate) async fn create(inner: &Inner, addr: &Addr, headers: &HeaderMap, body: Body) -> Reply {
    let Some(raw) = body::small(body, MAX_CREATE_BODY).await else {
        return Reply::refusal(
            inner,
            Refusal::invalid(None, "The request body is too large"),
        );
    };
    let mut state = inner.lock();
    let result = create_locked(inner, &mut state, addr, headers, &raw);
    drop(state);
    match result {
        Ok(reply) => reply,
        Err(refusal) => Reply::refusal(inner, refusal),
    }
}

fn create_locked(
    inner: &Inner,
    state: &mut State,
    addr: &Addr,
    headers: &HeaderMap,
    raw: &[u8],
) -> Result<Reply, Refusal> {
    let item = parse_create_body(headers, raw)?;
    let (placement, target_key) = session_target(state, addr, &item)?;
    if let Some(size) = item.get("fileSize").and_then(Value::as_u64) {
        check_declared_size(state, &placement, size)?;
    }
    let now = Instant::now();
    let max_age = state.options.session_max_age;
    let clash = state
        .sessions
        .live
        .values()
        .any(|s| s.target_key == target_key && now < s.expires && now < s.created + max_age);
    if clash {
        return Err(Refusal::name_exists(
            "An upload session already exists for this file",
        ));
    }

    let id = random_hex(24);
    let part = inner.data_dir.join("parts").join(format!("{id}.part"));
    std::fs::File::create(&part).map_err(|err| {
        Refusal::new(
            500,
            "generalException",
            None,
            format!("creating the part file failed: {err}"),
        )
    })?;
    let expires = now + state.options.session_expiry;
    let session = Session {
        tempauth: random_hex(32),
        placement,
        target_key,
        total: item.get("fileSize").and_then(Value::as_u64),
        next: 0,
        hasher: QuickXorHash::new(),
        part,
        created: now,
        expires,
        busy: false,
        fs_info: item.get("fileSystemInfo").cloned(),
    };
    let upload_url = format!("{}/up/{id}?tempauth={}", inner.base_url, session.tempauth);
    state.sessions.live.insert(id.clone(), session);
    state.sessions.created += 1;
    let body = json!({
        "@odata.context":
            format!("{}/v1.0/$metadata#microsoft.graph.uploadSession", inner.base_url),
        "uploadUrl": upload_url,
        "expirationDateTime": wall_clock(expires),
        "nextExpectedRanges": ["0-"],
    });
    Ok(Reply {
        session: Some(id),
        ..Reply::ok(json_reply(200, &body))
    })
}

/// The `item` object of a createUploadSession body (empty when there is no
/// body).
fn parse_create_body(headers: &HeaderMap, raw: &[u8]) -> Result<Value, Refusal> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(Refusal::invalid(None, "The body must be JSON")
            .violating("createUploadSession body sent without Content-Type: application/json"));
    }
    let value: Value = serde_json::from_slice(raw).map_err(|err| {
        Refusal::invalid(None, format!("The body is not valid JSON: {err}"))
            .violating("createUploadSession body is not valid JSON")
    })?;
    if value.get("deferCommit").and_then(Value::as_bool) == Some(true) {
        // LIMITATION: deferCommit is refused — the daemon commits on the last
        // fragment and never sends it.
        return Err(Refusal::new(
            400,
            "notSupported",
            None,
            "deferCommit is not supported here",
        ));
    }
    Ok(value.get("item").cloned().unwrap_or_else(|| json!({})))
}

/// Where the session's file will land, and the key that detects a second
/// session for it.
fn session_target(
    state: &State,
    addr: &Addr,
    item: &Value,
) -> Result<(Placement, String), Refusal> {
    let conflict = match item
        .get("@microsoft.graph.conflictBehavior")
        .and_then(Value::as_str)
    {
        Some(text) => Conflict::parse(text)?,
        None => Conflict::Fail,
    };
    let drive = &state.drive;
    match addr {
        Addr::Root => Err(Refusal::invalid(None, "The root cannot be uploaded to")
            .violating("createUploadSession on the root")),
        Addr::Id(_) => match drive.lookup(addr) {
            Lookup::Found(id) if drive.get(&id).is_some_and(|i| !i.is_folder()) => Ok((
                Placement::Existing { id: id.clone() },
                format!("id:{}", id.to_uppercase()),
            )),
            Lookup::Found(_) => Err(Refusal::invalid(None, "A folder has no content")
                .violating("createUploadSession addressed to a folder")),
            _ => Err(Refusal::not_found("The item does not exist")),
        },
        Addr::Path { base, segments } => {
            let Some((name, parents)) = segments.split_last() else {
                return Err(Refusal::invalid(None, "The path names no file"));
            };
            let parent_addr = Addr::Path {
                base: base.clone(),
                segments: parents.to_vec(),
            };
            // Choice: the parent must exist (the 2016 docs said so; clients
            // create folders first), so a missing parent is 404 rather than an
            // implicit mkdir.
            let parent = match drive.lookup(&parent_addr) {
                Lookup::Found(id) if drive.get(&id).is_some_and(|i| i.is_folder()) => id,
                _ => return Err(Refusal::not_found("The parent folder does not exist")),
            };
            drive.check_new_name(&parent, name)?;
            if let Some(given) = item.get("name").and_then(Value::as_str) {
                if given != name {
                    return Err(Refusal::invalid(
                        None,
                        "item.name differs from the name in the URL",
                    )
                    .violating(format!(
                        "createUploadSession item.name {given:?} != URL name {name:?}"
                    )));
                }
            }
            if conflict == Conflict::Fail && drive.child(&parent, name).is_some() {
                return Err(Refusal::name_exists(
                    "The specified item name already exists.",
                ));
            }
            let target_key = format!("{}/{}", parent.to_uppercase(), key(name));
            Ok((
                Placement::Named {
                    parent,
                    name: name.clone(),
                    conflict,
                },
                target_key,
            ))
        }
    }
}

fn check_declared_size(state: &State, placement: &Placement, size: u64) -> Result<(), Refusal> {
    if size > MAX_FILE_BYTES {
        return Err(Refusal::invalid(
            Some("maxFileSizeExceeded"),
            "The file is larger than 250 GB",
        ));
    }
    let replaced = match placement {
        Placement::Existing { id } => state.drive.file_size(id).unwrap_or(0),
        Placement::Named { .. } => 0,
    };
    let remaining = state.drive.quota_total.saturating_sub(state.drive.used()) + replaced;
    if size > remaining {
        return Err(Refusal::new(
            507,
            "quotaLimitReached",
            None,
            "Insufficient Storage",
        ));
    }
    Ok(())
}

/// `PUT {uploadUrl}` with one fragment.
pub(crate) async fn fragment(
    inner: &Inner,
    id: &str,
    query: &str,
    headers: &HeaderMap,
    body: Body,
) -> Reply {
    wait_until_idle(inner, id).await;
    let planned = {
        let mut state = inner.lock();
        plan_fragment(&mut state, id, query, headers)
    };
    let plan = match planned {
        Ok(plan) => plan,
        Err(refusal) => {
            body::drain(body).await;
            return Reply::refusal(inner, refusal).in_session(id);
        }
    };
    let mut busy = BusyGuard {
        inner,
        id,
        armed: true,
    };
    let (end, hasher) = receive_fragment(&plan, body).await;
    busy.armed = false;
    let (reply, hold) = {
        let mut state = inner.lock();
        let reply = finish_fragment(inner, &mut state, id, &plan, end, hasher);
        let committed = plan.end + 1 == plan.total && reply.response.status().is_success();
        let hold = committed
            .then(|| state.faults.hold_final_response.take())
            .flatten();
        (reply, hold)
    };
    if let Some(hold) = hold {
        tokio::time::sleep(hold).await;
    }
    reply.in_session(id)
}

/// Gives a fragment still being received on a connection the client gave up
/// on (a client-side timeout) time to notice, before a resend is judged as a
/// second fragment in flight.
async fn wait_until_idle(inner: &Inner, id: &str) {
    for _ in 0..BUSY_WAIT_ROUNDS {
        let busy = inner.lock().sessions.live.get(id).is_some_and(|s| s.busy);
        if !busy {
            return;
        }
        tokio::time::sleep(BUSY_WAIT_STEP).await;
    }
}

/// Clears a session's `busy` flag if the fragment handler is dropped midway,
/// which hyper does when the client goes away while the handler waits;
/// otherwise the session would refuse every later fragment as concurrent.
struct BusyGuard<'a> {
    inner: &'a Inner,
    id: &'a str,
    armed: bool,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            if let Some(session) = self.inner.lock().sessions.live.get_mut(self.id) {
                session.busy = false;
            }
        }
    }
}

fn plan_fragment(
    state: &mut State,
    id: &str,
    query: &str,
    headers: &HeaderMap,
) -> Result<FragmentPlan, Refusal> {
    live_session(state, id, query)?;
    if headers.contains_key(header::AUTHORIZATION) {
        return Err(Refusal::new(
            401,
            "unauthenticated",
            None,
            "Authorization is not allowed on upload URLs",
        )
        .violating("Authorization header sent to an upload URL"));
    }
    let (start, end, total) = fragment_headers(headers)?;
    let length = end - start + 1;
    let session = state
        .sessions
        .live
        .get(id)
        .ok_or_else(|| Refusal::not_found("Upload session not found"))?;
    if let Some(expected) = session.total.filter(|t| *t != total) {
        return Err(Refusal::invalid(
            Some("fragmentLengthMismatch"),
            format!(
                "The session is for {expected} total bytes, but the current fragment \
                 declares {total}"
            ),
        )
        .violating(format!(
            "fragment declares total {total}, session total is {expected}"
        )));
    }
    if length >= MAX_FRAGMENT_BYTES {
        return Err(Refusal::new(
            413,
            "invalidRequest",
            Some("maxFragmentLengthExceeded"),
            "Fragments must be under 60 MiB",
        )
        .violating(format!(
            "fragment of {length} bytes (limit is under 60 MiB)"
        )));
    }
    if end + 1 < total && length % FRAGMENT_MULTIPLE != 0 {
        return Err(
            Refusal::invalid(None, "Fragment lengths must be a multiple of 320 KiB").violating(
                format!("non-final fragment of {length} bytes is not a multiple of 320 KiB"),
            ),
        );
    }
    if session.busy {
        return Err(Refusal::new(
            409,
            "invalidRequest",
            None,
            "Another fragment of this session is in flight",
        )
        .violating("two fragments of one session sent at once"));
    }
    check_position(state, id, start, end)?;

    let cut_after = state.faults.cut_after_bytes.take();
    let bandwidth = state.faults.bandwidth_bytes_per_sec;
    let Some(session) = state.sessions.live.get_mut(id) else {
        return Err(Refusal::not_found("Upload session not found"));
    };
    session.busy = true;
    session.total = Some(total);
    Ok(FragmentPlan {
        start,
        end,
        total,
        part: session.part.clone(),
        hasher: session.hasher.clone(),
        limits: Limits {
            max_bytes: Some(length),
            cut_after,
            bandwidth_bytes_per_sec: bandwidth,
        },
    })
}

/// A fragment must start exactly at the next expected byte.
fn check_position(state: &mut State, id: &str, start: u64, end: u64) -> Result<(), Refusal> {
    let next = state.sessions.live.get(id).map_or(0, |s| s.next);
    if start < next {
        // Legitimate after a lost response; the client learns the offset from
        // the status.
        state.sessions.bytes_resent += end.min(next - 1) - start + 1;
        state.sessions.overlaps += 1;
        return Err(Refusal::new(
            416,
            "invalidRange",
            Some("fragmentOverlap"),
            "The fragment overlaps bytes already received",
        ));
    }
    if start > next {
        return Err(Refusal::new(
            416,
            "invalidRange",
            Some("fragmentOutOfOrder"),
            "The fragment does not start at the next expected byte",
        )
        .violating(format!(
            "fragment starts at {start} but the server expects {next} (gap)"
        )));
    }
    Ok(())
}

/// Parses `Content-Length` and `Content-Range: bytes a-b/total`.
fn fragment_headers(headers: &HeaderMap) -> Result<(u64, u64, u64), Refusal> {
    // Without Content-Length or Transfer-Encoding an HTTP/1.1 request body is
    // empty; a streamed (chunked) fragment has no declared length, which the
    // service refuses.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok());
    let length = match declared {
        Some(text) => text.trim().parse::<u64>().ok(),
        None if headers.contains_key(header::TRANSFER_ENCODING) => None,
        None => Some(0),
    };
    let length = length.ok_or_else(|| {
        Refusal::new(411, "invalidRequest", None, "Content-Length is required")
            .violating("fragment without Content-Length (a streamed body)")
    })?;
    let range = headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok());
    let Some((start, end, total)) = range.and_then(parse_content_range) else {
        return Err(
            Refusal::invalid(None, "Content-Range must be 'bytes first-last/total'").violating(
                format!("fragment with missing or malformed Content-Range {range:?}"),
            ),
        );
    };
    if total == 0 {
        return Err(
            Refusal::invalid(None, "A session cannot upload an empty file")
                .violating("zero-byte file sent through an upload session (use a simple PUT)"),
        );
    }
    if end < start || end >= total {
        return Err(
            Refusal::invalid(None, "The Content-Range is not satisfiable").violating(format!(
                "fragment range {start}-{end}/{total} is inverted or past the end"
            )),
        );
    }
    if length != end - start + 1 {
        return Err(
            Refusal::invalid(None, "Content-Length does not match Content-Range").violating(
                format!(
                    "Content-Length {length} but Content-Range covers {} bytes",
                    end - start + 1
                ),
            ),
        );
    }
    Ok((start, end, total))
}

/// `bytes a-b/total` → `(a, b, total)`; anything else is `None`.
pub(crate) fn parse_content_range(text: &str) -> Option<(u64, u64, u64)> {
    let rest = text.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    Some((start.parse().ok()?, end.parse().ok()?, total.parse().ok()?))
}

/// Writes the fragment at its offset in the part file, hashing as it goes.
async fn receive_fragment(plan: &FragmentPlan, body: Body) -> (BodyEnd, QuickXorHash) {
    let mut hasher = plan.hasher.clone();
    let file = match tokio::fs::OpenOptions::new()
        .write(true)
        .open(&plan.part)
        .await
    {
        Ok(file) => file,
        Err(err) => {
            return (
                BodyEnd::Broken(format!("opening the part file failed: {err}")),
                hasher,
            )
        }
    };
    // Bytes of an earlier, uncommitted attempt may sit past `start`: drop them
    // first.
    if let Err(err) = file.set_len(plan.start).await {
        return (
            BodyEnd::Broken(format!("truncating the part file failed: {err}")),
            hasher,
        );
    }
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
    if let Err(err) = writer.seek(SeekFrom::Start(plan.start)).await {
        return (
            BodyEnd::Broken(format!("seeking the part file failed: {err}")),
            hasher,
        );
    }
    let end = body::receive(body, &mut writer, &mut hasher, plan.limits).await;
    (end, hasher)
}

fn finish_fragment(
    inner: &Inner,
    state: &mut State,
    id: &str,
    plan: &FragmentPlan,
    end: BodyEnd,
    hasher: QuickXorHash,
) -> Reply {
    let expiry = state.options.session_expiry;
    let Some(session) = state.sessions.live.get_mut(id) else {
        return Reply::refusal_locked(
            state,
            Refusal::not_found("The upload session was cancelled"),
        );
    };
    session.busy = false;
    let expected = plan.end - plan.start + 1;
    match end {
        BodyEnd::Complete(n) if n == expected => {}
        // LIMITATION: a cut fragment commits nothing, while the service has
        // been seen to keep part of one (onedrive-api-docs#75) — the daemon's
        // resume from the reported offset covers both.
        BodyEnd::Cut(_) => {
            return Reply {
                kill: Kill::Cut,
                ..Reply::refusal_locked(state, Refusal::invalid(None, "cut"))
            };
        }
        BodyEnd::Complete(n) | BodyEnd::TooLarge(n) => {
            let refusal = Refusal::invalid(None, "The body length differs from Content-Length")
                .violating(format!(
                    "fragment body of {n} bytes, Content-Length {expected}"
                ));
            return Reply::refusal_locked(state, refusal);
        }
        BodyEnd::Broken(reason) => {
            return Reply::refusal_locked(state, Refusal::new(400, "invalidRequest", None, reason));
        }
    }

    session.next = plan.end + 1;
    session.hasher = hasher;
    session.expires = Instant::now() + expiry;
    let lose = state.faults.lose_fragment_responses > 0;
    if lose {
        state.faults.lose_fragment_responses -= 1;
    }
    if plan.end + 1 < plan.total {
        let expires = state
            .sessions
            .live
            .get(id)
            .map_or_else(Instant::now, |s| s.expires);
        let body = json!({
            "expirationDateTime": wall_clock(expires),
            "nextExpectedRanges": [format!("{}-", plan.end + 1)],
        });
        let kill = if lose { Kill::LoseResponse } else { Kill::No };
        return Reply {
            kill,
            ..Reply::ok(json_reply(202, &body))
        };
    }
    let lose = lose || std::mem::take(&mut state.faults.lose_final_response);
    let reply = commit_session(inner, state, id);
    Reply {
        kill: if lose { Kill::LoseResponse } else { reply.kill },
        ..reply
    }
}

/// The last byte arrived: turn the part file into the item.
fn commit_session(inner: &Inner, state: &mut State, id: &str) -> Reply {
    let Some(session) = state.sessions.live.get(id) else {
        return Reply::refusal_locked(state, Refusal::not_found("Upload session not found"));
    };
    let size = session.next;
    let mut digest = session.hasher.finalize();
    let part = session.part.clone();
    let placement = session.placement.clone();
    let fs_info = session.fs_info.clone();
    if size > 0 && std::mem::take(&mut state.faults.corrupt_next_file) {
        match corrupt_file(&part, size, digest) {
            Ok(corrupted) => digest = corrupted,
            Err(err) => state.violation(format!("fake could not corrupt a stored file: {err}")),
        }
    }
    let staged = Staged {
        path: part,
        size,
        hash: to_base64(&digest),
        fs_info,
    };
    match state.drive.commit(&placement, &staged) {
        Ok((item, created)) => {
            state.sessions.live.remove(id);
            state.sessions.gone.insert(id.to_owned());
            let body = state.drive.item_json(&item, &inner.base_url);
            Reply::ok(json_reply(if created { 201 } else { 200 }, &body))
        }
        // The session outlives a name conflict, as the service keeps it until
        // expiry.
        Err(refusal) if refusal.status == 409 => Reply::refusal_locked(state, refusal),
        Err(refusal) => {
            state.sessions.end(id);
            Reply::refusal_locked(state, refusal)
        }
    }
}

/// `GET {uploadUrl}`: where the session stands.
pub(crate) fn status(inner: &Inner, id: &str, query: &str, headers: &HeaderMap) -> Reply {
    let mut state = inner.lock();
    if let Err(refusal) = live_session(&mut state, id, query) {
        return Reply::refusal_locked(&mut state, refusal).in_session(id);
    }
    if headers.contains_key(header::AUTHORIZATION) {
        let refusal = Refusal::new(
            401,
            "unauthenticated",
            None,
            "Authorization is not allowed on upload URLs",
        )
        .violating("Authorization header sent to an upload URL (status request)");
        return Reply::refusal_locked(&mut state, refusal).in_session(id);
    }
    let Some(session) = state.sessions.live.get(id) else {
        return Reply::refusal_locked(&mut state, Refusal::not_found("Upload session not found"));
    };
    let ranges: Vec<String> = match session.total {
        Some(total) if session.next >= total => Vec::new(),
        _ => vec![format!("{}-", session.next)],
    };
    let body =
        json!({"expirationDateTime": wall_clock(session.expires), "nextExpectedRanges": ranges});
    Reply::ok(json_reply(200, &body)).in_session(id)
}

/// `DELETE {uploadUrl}`: cancels the session.
pub(crate) fn cancel(inner: &Inner, id: &str, query: &str, headers: &HeaderMap) -> Reply {
    let mut state = inner.lock();
    if let Err(refusal) = live_session(&mut state, id, query) {
        return Reply::refusal_locked(&mut state, refusal).in_session(id);
    }
    if headers.contains_key(header::AUTHORIZATION) {
        let refusal = Refusal::new(
            401,
            "unauthenticated",
            None,
            "Authorization is not allowed on upload URLs",
        )
        .violating("Authorization header sent to an upload URL (cancel)");
        return Reply::refusal_locked(&mut state, refusal).in_session(id);
    }
    state.sessions.end(id);
    Reply::ok(super::replies::empty(204)).in_session(id)
}

/// Checks that `id` names a live session and that the URL's `tempauth` is the
/// right one; ends expired sessions on the way.
fn live_session(state: &mut State, id: &str, query: &str) -> Result<(), Refusal> {
    let gone = || {
        Refusal::new(
            404,
            "itemNotFound",
            Some("uploadSessionNotFound"),
            "The upload session was not found",
        )
    };
    let Some(session) = state.sessions.live.get(id) else {
        return Err(gone());
    };
    let tempauth = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "tempauth")
        .map(|(_, v)| v.into_owned());
    if tempauth.as_deref() != Some(session.tempauth.as_str()) {
        return Err(Refusal::new(
            401,
            "unauthenticated",
            Some("invalidToken"),
            "The upload URL's token is missing or wrong",
        )
        .violating("upload URL used without its tempauth query (the URL must be used as given)"));
    }
    let now = Instant::now();
    if now >= session.created + state.options.session_max_age {
        state.sessions.end(id);
        return Err(max_age_refusal(state.options.session_max_age_status));
    }
    if now >= session.expires {
        state.sessions.end(id);
        return Err(gone());
    }
    Ok(())
}

/// What a session past its hard age cap answers (the fact sheet reports 401 or
/// 403 from the service; 404 is what the docs promise).
fn max_age_refusal(status: u16) -> Refusal {
    match status {
        401 => Refusal::new(
            401,
            "unauthenticated",
            Some("expiredToken"),
            "The upload session token has expired",
        ),
        403 => Refusal::new(403, "accessDenied", None, "Access denied"),
        _ => Refusal::new(
            404,
            "itemNotFound",
            Some("uploadSessionNotFound"),
            "The upload session has expired",
        ),
    }
}

/// Converts a monotonic deadline into the wall-clock timestamp the client sees.
fn wall_clock(deadline: Instant) -> String {
    let left = deadline.saturating_duration_since(Instant::now());
    timestamp(OffsetDateTime::now_utc() + left)
}
