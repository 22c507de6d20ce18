//! Graph drive endpoints other than upload sessions: drive, items, children,
//! folders, simple upload, download, delete and update.
//!
//! Invariants: a path-addressed simple PUT creates missing parent folders
//! ("path-based addressing upserts"); an id-addressed one needs its parent; the
//! PUT default conflict behaviour is `replace`, folder creation's is `fail`; a
//! listing page holds at most `page_size` items (or `$top`, capped at
//! `max_page_size`) and links the next page with an absolute `@odata.nextLink`.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use onedrive_syncd::graph::quickxor::{to_base64, QuickXorHash};
use serde_json::{json, Map, Value};
use tokio::io::BufWriter;
use tokio_util::io::ReaderStream;

use super::body::{self, BodyEnd, Limits, WRITE_BUFFER_BYTES};
use super::drive::{Conflict, Lookup, Placement, Staged};
use super::names;
use super::paths::Addr;
use super::replies::{empty, json as json_reply, redirect, Refusal};
use super::{corrupt_file, random_hex, Inner, Kill, Reply, State};

/// The largest JSON body read for folder creation and updates.
const MAX_JSON_BODY: usize = 64 * 1024;

/// `GET /me/drive`.
pub(crate) fn drive_info(inner: &Inner) -> Reply {
    let state = inner.lock();
    let drive = &state.drive;
    let total = drive.quota_total;
    let used = drive.used();
    let remaining = total.saturating_sub(used);
    let quota_state = if used >= total {
        "exceeded"
    } else if remaining * 100 < total {
        "critical"
    } else if remaining * 10 < total {
        "nearing"
    } else {
        "normal"
    };
    let body = json!({
        "id": drive.drive_id,
        "driveType": "personal",
        "owner": {"user": {"displayName": "Fake User", "id": drive.drive_id}},
        "quota": {
            "total": total,
            "used": used,
            "remaining": remaining,
            "deleted": 0,
            "state": quota_state,
        },
    });
    Reply::ok(json_reply(200, &body))
}

/// `GET …` on an item.
pub(crate) fn get_item(inner: &Inner, addr: &Addr, query: &str) -> Reply {
    let mut state = inner.lock();
    let Lookup::Found(id) = state.drive.lookup(addr) else {
        return Reply::refusal_locked(
            &mut state,
            Refusal::not_found("The resource could not be found."),
        );
    };
    let select = query_map(query).remove("$select");
    let value = select_fields(
        state.drive.item_json(&id, &inner.base_url),
        select.as_deref(),
    );
    Reply::ok(json_reply(200, &value))
}

/// `GET …/children`, one page.
pub(crate) fn list_children(inner: &Inner, addr: &Addr, raw_path: &str, query: &str) -> Reply {
    let mut state = inner.lock();
    let result = list_locked(inner, &state, addr, raw_path, query);
    match result {
        Ok(value) => Reply::ok(json_reply(200, &value)),
        Err(refusal) => Reply::refusal_locked(&mut state, refusal),
    }
}

fn list_locked(
    inner: &Inner,
    state: &State,
    addr: &Addr,
    raw_path: &str,
    query: &str,
) -> Result<Value, Refusal> {
    let Lookup::Found(id) = state.drive.lookup(addr) else {
        return Err(Refusal::not_found("The resource could not be found."));
    };
    let params = query_map(query);
    let top = match params.get("$top") {
        None => state.options.page_size,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if n > 0 => n.min(state.options.max_page_size),
            _ => return Err(Refusal::invalid(None, format!("Invalid $top {text:?}"))),
        },
    };
    let skip = match params.get("$skiptoken") {
        None => 0,
        Some(token) => decode_skiptoken(token).ok_or_else(|| {
            Refusal::invalid(None, "Invalid $skiptoken")
                .violating("a $skiptoken the server never issued")
        })?,
    };
    let children = state.drive.children_of(&id);
    let select = params.get("$select").map(String::as_str);
    let page: Vec<Value> = children
        .iter()
        .skip(skip)
        .take(top)
        .map(|child| select_fields(state.drive.item_json(child, &inner.base_url), select))
        .collect();
    let mut body = json!({
        "@odata.context": format!("{}/v1.0/$metadata#Collection(driveItem)", inner.base_url),
        "value": page,
    });
    if skip + top < children.len() {
        let mut next = url::form_urlencoded::Serializer::new(String::new());
        next.append_pair("$top", &top.to_string());
        if let Some(select) = select {
            next.append_pair("$select", select);
        }
        next.append_pair("$skiptoken", &encode_skiptoken(skip + top));
        body["@odata.nextLink"] = format!("{}{raw_path}?{}", inner.base_url, next.finish()).into();
    }
    Ok(body)
}

/// `POST …/children` creating a folder.
pub(crate) async fn create_folder(
    inner: &Inner,
    addr: &Addr,
    query: &str,
    headers: &HeaderMap,
    body: Body,
) -> Reply {
    let Some(raw) = body::small(body, MAX_JSON_BODY).await else {
        return Reply::refusal(
            inner,
            Refusal::invalid(None, "The request body is too large"),
        );
    };
    let mut state = inner.lock();
    match create_folder_locked(inner, &mut state, addr, query, headers, &raw) {
        Ok(reply) => reply,
        Err(refusal) => Reply::refusal_locked(&mut state, refusal),
    }
}

fn create_folder_locked(
    inner: &Inner,
    state: &mut State,
    addr: &Addr,
    query: &str,
    headers: &HeaderMap,
    raw: &[u8],
) -> Result<Reply, Refusal> {
    let request = json_body(headers, raw, "folder creation")?;
    let Some(name) = request.get("name").and_then(Value::as_str) else {
        return Err(Refusal::invalid(None, "The name property is required")
            .violating("folder creation without a name"));
    };
    if request.get("file").is_some() {
        // LIMITATION: POST children creates folders only — the daemon uploads
        // files with PUT or sessions.
        return Err(Refusal::new(
            400,
            "notSupported",
            None,
            "This server creates folders only through POST children",
        ));
    }
    if !request.get("folder").is_some_and(Value::is_object) {
        return Err(Refusal::invalid(None, "The folder facet is required")
            .violating("folder creation without \"folder\": {}"));
    }
    let behaviour = request
        .get("@microsoft.graph.conflictBehavior")
        .or_else(|| request.get("@name.conflictBehavior"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| query_map(query).remove("@microsoft.graph.conflictBehavior"));
    let conflict = match behaviour {
        Some(text) => Conflict::parse(&text)?,
        None => Conflict::Fail,
    };
    let parent = match state.drive.lookup(addr) {
        Lookup::Found(id) if state.drive.get(&id).is_some_and(|i| i.is_folder()) => id,
        _ => return Err(Refusal::not_found("The parent folder does not exist")),
    };
    let (id, created) = state.drive.create_folder(&parent, name, conflict)?;
    let value = state.drive.item_json(&id, &inner.base_url);
    Ok(Reply::ok(json_reply(
        if created { 201 } else { 200 },
        &value,
    )))
}

/// Where a simple PUT lands.
enum SimpleTarget {
    /// Replace an existing file by id.
    Existing(String),
    /// `name` under `parent`, after creating the `missing` folders between
    /// them.
    Under {
        parent: String,
        missing: Vec<String>,
        name: String,
        conflict: Conflict,
    },
}

/// `PUT …/content`: the whole file in one request.
pub(crate) async fn simple_upload(
    inner: &Inner,
    addr: &Addr,
    query: &str,
    headers: &HeaderMap,
    body: Body,
) -> Reply {
    let planned = {
        let mut state = inner.lock();
        plan_simple(&mut state, addr, query, headers)
    };
    let (target, limits) = match planned {
        Ok(plan) => plan,
        Err(refusal) => {
            body::drain(body).await;
            return Reply::refusal(inner, refusal);
        }
    };
    let staging = inner.data_dir.join("staging").join(random_hex(16));
    let mut hasher = QuickXorHash::new();
    let end = match tokio::fs::File::create(&staging).await {
        Ok(file) => {
            let mut writer = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
            body::receive(body, &mut writer, &mut hasher, limits).await
        }
        Err(err) => BodyEnd::Broken(format!("creating the staging file failed: {err}")),
    };
    let size = match end {
        BodyEnd::Complete(size) => size,
        other => {
            let _ = tokio::fs::remove_file(&staging).await;
            return body_failure(inner, other);
        }
    };
    let mut state = inner.lock();
    let digest = hasher.finalize();
    match commit_simple(inner, &mut state, target, staging.clone(), size, digest) {
        Ok(reply) => reply,
        Err(refusal) => {
            let _ = std::fs::remove_file(&staging);
            Reply::refusal_locked(&mut state, refusal)
        }
    }
}

fn plan_simple(
    state: &mut State,
    addr: &Addr,
    query: &str,
    headers: &HeaderMap,
) -> Result<(SimpleTarget, Limits), Refusal> {
    let max = state.options.simple_upload_max_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared.filter(|length| *length > max) {
        return Err(too_large(length, max));
    }
    let conflict = match query_map(query).remove("@microsoft.graph.conflictBehavior") {
        Some(text) => Conflict::parse(&text)?,
        None => Conflict::Replace,
    };
    let target = simple_target(state, addr, conflict)?;
    let limits = Limits {
        max_bytes: Some(max),
        cut_after: state.faults.cut_after_bytes.take(),
        bandwidth_bytes_per_sec: state.faults.bandwidth_bytes_per_sec,
    };
    Ok((target, limits))
}

fn simple_target(state: &State, addr: &Addr, conflict: Conflict) -> Result<SimpleTarget, Refusal> {
    let drive = &state.drive;
    let (base, segments) = match addr {
        Addr::Root => {
            return Err(Refusal::invalid(None, "The root has no content")
                .violating("simple upload to the root"));
        }
        Addr::Id(_) => {
            return match drive.lookup(addr) {
                Lookup::Found(id) if drive.get(&id).is_some_and(|i| !i.is_folder()) => {
                    Ok(SimpleTarget::Existing(id))
                }
                Lookup::Found(_) => Err(Refusal::invalid(None, "A folder has no content")
                    .violating("simple upload to a folder")),
                _ => Err(Refusal::not_found("The item does not exist")),
            };
        }
        Addr::Path { base, segments } => (base, segments),
    };
    let Some((name, parents)) = segments.split_last() else {
        return Err(Refusal::invalid(None, "The path names no file"));
    };
    let parent_addr = Addr::Path {
        base: base.clone(),
        segments: parents.to_vec(),
    };
    let (parent, missing) = match drive.lookup(&parent_addr) {
        Lookup::Found(id) if drive.get(&id).is_some_and(|i| i.is_folder()) => (id, Vec::new()),
        Lookup::Found(_) | Lookup::Blocked => {
            return Err(Refusal::name_exists(
                "A file is in the way of a parent folder",
            ));
        }
        Lookup::Missing { parent, rest } => (parent, rest),
        Lookup::BaseMissing => return Err(Refusal::not_found("The base item does not exist")),
    };
    check_new_path(state, &parent, &missing, name)?;
    if conflict == Conflict::Fail && missing.is_empty() && drive.child(&parent, name).is_some() {
        return Err(Refusal::name_exists(
            "The specified item name already exists.",
        ));
    }
    Ok(SimpleTarget::Under {
        parent,
        missing,
        name: name.clone(),
        conflict,
    })
}

/// Checks the names of folders still to create, the file name and the resulting
/// path length.
fn check_new_path(
    state: &State,
    parent: &str,
    missing: &[String],
    name: &str,
) -> Result<(), Refusal> {
    for segment in missing.iter().map(String::as_str).chain([name]) {
        if let Err(problem) = names::check_name(segment) {
            return Err(
                Refusal::invalid(Some(problem.inner_code), problem.message.clone())
                    .violating(format!("invalid name {segment:?}: {}", problem.message)),
            );
        }
    }
    let mut full = state.drive.path_of(parent);
    for segment in missing.iter().map(String::as_str).chain([name]) {
        if !full.ends_with('/') {
            full.push('/');
        }
        full.push_str(segment);
    }
    names::check_path_length(&full[1..]).map_err(|problem| {
        Refusal::invalid(Some(problem.inner_code), problem.message.clone())
            .violating(format!("path too long: {}", problem.message))
    })
}

fn commit_simple(
    inner: &Inner,
    state: &mut State,
    target: SimpleTarget,
    staging: std::path::PathBuf,
    size: u64,
    mut digest: onedrive_syncd::graph::quickxor::Digest,
) -> Result<Reply, Refusal> {
    let placement = match target {
        SimpleTarget::Existing(id) => Placement::Existing { id },
        SimpleTarget::Under {
            parent,
            missing,
            name,
            conflict,
        } => {
            let parent = state.drive.create_folders(&parent, &missing)?;
            Placement::Named {
                parent,
                name,
                conflict,
            }
        }
    };
    if size > 0 && std::mem::take(&mut state.faults.corrupt_next_file) {
        match corrupt_file(&staging, size, digest) {
            Ok(corrupted) => digest = corrupted,
            Err(err) => state.violation(format!("fake could not corrupt a stored file: {err}")),
        }
    }
    let staged = Staged {
        path: staging,
        size,
        hash: to_base64(&digest),
        fs_info: None,
    };
    let (id, created) = state.drive.commit(&placement, &staged)?;
    let value = state.drive.item_json(&id, &inner.base_url);
    let lose = state.faults.lose_simple_upload_responses > 0;
    if lose {
        state.faults.lose_simple_upload_responses -= 1;
    }
    Ok(Reply {
        kill: if lose { Kill::LoseResponse } else { Kill::No },
        ..Reply::ok(json_reply(if created { 201 } else { 200 }, &value))
    })
}

fn body_failure(inner: &Inner, end: BodyEnd) -> Reply {
    match end {
        BodyEnd::Cut(_) => Reply {
            kill: Kill::Cut,
            ..Reply::ok(empty(400))
        },
        BodyEnd::TooLarge(n) => {
            let max = inner.lock().options.simple_upload_max_bytes;
            Reply::refusal(inner, too_large(n, max))
        }
        BodyEnd::Broken(reason) => Reply::refusal(inner, Refusal::invalid(None, reason)),
        BodyEnd::Complete(_) => Reply::ok(empty(500)),
    }
}

fn too_large(length: u64, max: u64) -> Refusal {
    Refusal::new(
        413,
        "invalidRequest",
        Some("requestEntityTooLarge"),
        format!("A simple upload is limited to {max} bytes"),
    )
    .violating(format!(
        "simple upload of {length} bytes; above {max} an upload session is required"
    ))
}

/// `GET …/content`: redirects to a pre-authenticated download URL, as Graph
/// does.
pub(crate) fn download_redirect(inner: &Inner, addr: &Addr) -> Reply {
    let mut state = inner.lock();
    match state.drive.lookup(addr) {
        Lookup::Found(id) if state.drive.blob_of(&id).is_some() => {
            Reply::ok(redirect(&format!("{}/dl/{id}", inner.base_url)))
        }
        _ => Reply::refusal_locked(
            &mut state,
            Refusal::not_found("The file could not be found."),
        ),
    }
}

/// `GET /dl/{id}`: the file's bytes, streamed from disk.
pub(crate) async fn download(inner: &Inner, id: &str) -> Reply {
    let blob = inner.lock().drive.blob_of(id).map(|p| p.to_path_buf());
    let Some(blob) = blob else {
        return Reply::ok(empty(404));
    };
    match tokio::fs::File::open(&blob).await {
        Ok(file) => Reply::ok(axum::http::Response::new(Body::from_stream(
            ReaderStream::new(file),
        ))),
        Err(_) => Reply::ok(empty(404)),
    }
}

/// `DELETE …` on an item.
pub(crate) fn delete_item(inner: &Inner, addr: &Addr) -> Reply {
    let mut state = inner.lock();
    match state.drive.lookup(addr) {
        Lookup::Found(id) if id == state.drive.root_id() => Reply::refusal_locked(
            &mut state,
            Refusal::new(403, "accessDenied", None, "The root cannot be deleted"),
        ),
        Lookup::Found(id) => {
            state.drive.remove(&id);
            Reply::ok(empty(204))
        }
        _ => Reply::refusal_locked(
            &mut state,
            Refusal::not_found("The resource could not be found."),
        ),
    }
}

/// `PATCH …` on an item: `name` and `fileSystemInfo` only.
pub(crate) async fn update_item(
    inner: &Inner,
    addr: &Addr,
    headers: &HeaderMap,
    body: Body,
) -> Reply {
    let Some(raw) = body::small(body, MAX_JSON_BODY).await else {
        return Reply::refusal(
            inner,
            Refusal::invalid(None, "The request body is too large"),
        );
    };
    let mut state = inner.lock();
    let result = (|| {
        let request = json_body(headers, &raw, "item update")?;
        let Lookup::Found(id) = state.drive.lookup(addr) else {
            return Err(Refusal::not_found("The resource could not be found."));
        };
        if request.get("parentReference").is_some() {
            // LIMITATION: moves are not implemented — the daemon never moves.
            return Err(Refusal::new(
                400,
                "notSupported",
                None,
                "Moving items is not supported here",
            ));
        }
        if let Some(name) = request.get("name").and_then(Value::as_str) {
            state.drive.rename(&id, name)?;
        }
        if let Some(info) = request.get("fileSystemInfo") {
            state.drive.set_fs_info(&id, info.clone());
        }
        Ok(state.drive.item_json(&id, &inner.base_url))
    })();
    match result {
        Ok(value) => Reply::ok(json_reply(200, &value)),
        Err(refusal) => Reply::refusal_locked(&mut state, refusal),
    }
}

/// Parses a JSON request body, refusing other content types as Graph does.
fn json_body(headers: &HeaderMap, raw: &[u8], what: &str) -> Result<Value, Refusal> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(
            Refusal::invalid(None, "The body must be JSON").violating(format!(
                "{what} sent without Content-Type: application/json"
            )),
        );
    }
    serde_json::from_slice(raw).map_err(|err| {
        Refusal::invalid(None, format!("The body is not valid JSON: {err}"))
            .violating(format!("{what} body is not valid JSON"))
    })
}

/// Keeps only the `$select`ed top-level properties.
fn select_fields(value: Value, select: Option<&str>) -> Value {
    let (Some(select), Value::Object(map)) = (select, &value) else {
        return value;
    };
    let wanted: Vec<&str> = select.split(',').map(str::trim).collect();
    let kept: Map<String, Value> = map
        .iter()
        .filter(|(k, _)| wanted.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Value::Object(kept)
}

/// Query parameters, decoded.
pub(crate) fn query_map(query: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn encode_skiptoken(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

fn decode_skiptoken(token: &str) -> Option<usize> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    text.strip_prefix("offset:")?.parse().ok()
}
