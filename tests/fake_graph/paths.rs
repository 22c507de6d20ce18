//! Turns a raw request path into the endpoint it names.
//!
//! Graph's path syntax is `…/root:/a/b.txt:` optionally followed by `/content`,
//! `/children` or `/createUploadSession`; the same works relative to an item
//! id. The raw path (as sent, still percent-encoded) is split on `:` and `/`
//! first, and the item path is then percent-decoded exactly once, so `%25`
//! arrives as a literal `%` and an encoded `%2F` acts as a separator, as the
//! real service accepts. A `#` never reaches the server: it starts the URL
//! fragment, so a name the client forgot to encode simply does not match.

use percent_encoding::percent_decode_str;

use super::Route;

/// Which item a Graph request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Addr {
    /// `/root`.
    Root,
    /// `/items/{id}`.
    Id(String),
    /// `/root:/a/b:` or `/items/{id}:/a/b:`: decoded segments below a base
    /// item.
    Path {
        base: Box<Addr>,
        segments: Vec<String>,
    },
}

/// What follows the item address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tail {
    /// The item itself.
    Item,
    /// `/content`.
    Content,
    /// `/children`.
    Children,
    /// `/createUploadSession`.
    CreateUploadSession,
}

/// Which identity-platform endpoint a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdentityEndpoint {
    /// `/{tenant}/oauth2/v2.0/devicecode`.
    DeviceCode,
    /// `/{tenant}/oauth2/v2.0/token`.
    Token,
    /// `/{tenant}/oauth2/v2.0/authorize`.
    Authorize,
}

/// A classified request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `/v1.0/me/drive`.
    Drive,
    /// An item endpoint under `/v1.0/me/drive`.
    Item { addr: Addr, tail: Tail },
    /// An identity endpoint.
    Identity(IdentityEndpoint),
    /// An upload session URL `/up/{session}`.
    Upload { session: String },
    /// A pre-authenticated download URL `/dl/{item}`.
    Download { item: String },
    /// The fake's own control API under `/_fake/`.
    Control(String),
    /// A path the path syntax does not allow (`reason` explains).
    Malformed { reason: String },
    /// Nothing lives here.
    Unknown,
}

/// Classifies a raw (still percent-encoded) request path.
pub(crate) fn classify(raw_path: &str) -> Target {
    if let Some(rest) = raw_path.strip_prefix("/_fake/") {
        return Target::Control(rest.to_owned());
    }
    if let Some(rest) = raw_path.strip_prefix("/up/") {
        return Target::Upload {
            session: rest.to_owned(),
        };
    }
    if let Some(rest) = raw_path.strip_prefix("/dl/") {
        return Target::Download {
            item: decode_text(rest).unwrap_or_default(),
        };
    }
    if let Some(rest) = raw_path.strip_prefix("/v1.0") {
        return classify_graph(rest);
    }
    classify_identity(raw_path)
}

/// The route a request counts as, from its target and method.
pub(crate) fn route_of(target: &Target, method: &str) -> Route {
    match (target, method) {
        (Target::Drive, "GET") => Route::Drive,
        (
            Target::Item {
                tail: Tail::Item, ..
            },
            "GET",
        ) => Route::Item,
        (
            Target::Item {
                tail: Tail::Item, ..
            },
            "PATCH",
        ) => Route::UpdateItem,
        (
            Target::Item {
                tail: Tail::Item, ..
            },
            "DELETE",
        ) => Route::DeleteItem,
        (
            Target::Item {
                tail: Tail::Children,
                ..
            },
            "GET",
        ) => Route::Children,
        (
            Target::Item {
                tail: Tail::Children,
                ..
            },
            "POST",
        ) => Route::CreateFolder,
        (
            Target::Item {
                tail: Tail::Content,
                ..
            },
            "PUT",
        ) => Route::SimpleUpload,
        (
            Target::Item {
                tail: Tail::Content,
                ..
            },
            "GET",
        ) => Route::Download,
        (
            Target::Item {
                tail: Tail::CreateUploadSession,
                ..
            },
            "POST",
        ) => Route::CreateSession,
        (Target::Identity(IdentityEndpoint::DeviceCode), _) => Route::DeviceCode,
        (Target::Identity(IdentityEndpoint::Token), _) => Route::Token,
        (Target::Identity(IdentityEndpoint::Authorize), _) => Route::Authorize,
        (Target::Upload { .. }, "PUT") => Route::Fragment,
        (Target::Upload { .. }, "GET") => Route::SessionStatus,
        (Target::Upload { .. }, "DELETE") => Route::SessionCancel,
        (Target::Download { .. }, "GET") => Route::Download,
        (Target::Control(_), _) => Route::Control,
        _ => Route::Unknown,
    }
}

fn classify_graph(rest: &str) -> Target {
    let after_drive = if let Some(r) = rest.strip_prefix("/me/drive") {
        r
    } else if let Some(r) = rest.strip_prefix("/drives/") {
        // The drive id is accepted whatever its case: Graph itself varies it.
        match r.find('/') {
            Some(slash) => &r[slash..],
            None => "",
        }
    } else {
        return Target::Unknown;
    };
    if after_drive.is_empty() || after_drive == "/" {
        return Target::Drive;
    }
    if let Some(r) = after_drive.strip_prefix("/root") {
        return classify_item(Addr::Root, r);
    }
    if let Some(r) = after_drive.strip_prefix("/items/") {
        let end = r.find([':', '/']).unwrap_or(r.len());
        let Some(id) = decode_text(&r[..end]) else {
            return malformed("the item id is not valid percent-encoded UTF-8");
        };
        if id.is_empty() {
            return malformed("the item id is empty");
        }
        return classify_item(Addr::Id(id), &r[end..]);
    }
    Target::Unknown
}

fn classify_item(base: Addr, rest: &str) -> Target {
    let Some(path_part) = rest.strip_prefix(':') else {
        return match tail_of(rest) {
            Some(tail) => Target::Item { addr: base, tail },
            None => Target::Unknown,
        };
    };
    // The item path runs to the next raw ':'; a name can never contain one.
    let (raw_path, after) = match path_part.find(':') {
        Some(colon) => (&path_part[..colon], &path_part[colon + 1..]),
        None => (path_part, ""),
    };
    let Some(tail) = tail_of(after) else {
        return Target::Unknown;
    };
    match decode_segments(raw_path) {
        Ok(segments) if segments.is_empty() => Target::Item { addr: base, tail },
        Ok(segments) => Target::Item {
            addr: Addr::Path {
                base: Box::new(base),
                segments,
            },
            tail,
        },
        Err(reason) => Target::Malformed { reason },
    }
}

fn tail_of(rest: &str) -> Option<Tail> {
    match rest {
        "" | "/" => Some(Tail::Item),
        "/content" => Some(Tail::Content),
        "/children" => Some(Tail::Children),
        "/createUploadSession" => Some(Tail::CreateUploadSession),
        _ => None,
    }
}

/// Decodes `/a/b%20c` into `["a", "b c"]`, decoding exactly once.
fn decode_segments(raw: &str) -> Result<Vec<String>, String> {
    let Some(relative) = raw.strip_prefix('/') else {
        return Err("an item path must start with '/' after the ':'".to_owned());
    };
    let decoded = decode_text(relative)
        .ok_or_else(|| "the item path is not valid percent-encoded UTF-8".to_owned())?;
    let decoded = decoded.strip_suffix('/').unwrap_or(&decoded);
    if decoded.is_empty() {
        return Ok(Vec::new());
    }
    let segments: Vec<String> = decoded.split('/').map(str::to_owned).collect();
    if segments.iter().any(String::is_empty) {
        return Err("the item path has an empty segment".to_owned());
    }
    Ok(segments)
}

fn classify_identity(raw_path: &str) -> Target {
    let mut parts = raw_path.trim_start_matches('/').splitn(2, '/');
    let tenant = parts.next().unwrap_or_default();
    let endpoint = match parts.next() {
        Some("oauth2/v2.0/devicecode") => IdentityEndpoint::DeviceCode,
        Some("oauth2/v2.0/token") => IdentityEndpoint::Token,
        Some("oauth2/v2.0/authorize") => IdentityEndpoint::Authorize,
        _ => return Target::Unknown,
    };
    if tenant.is_empty() {
        return Target::Unknown;
    }
    Target::Identity(endpoint)
}

fn decode_text(raw: &str) -> Option<String> {
    percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|text| text.into_owned())
}

fn malformed(reason: &str) -> Target {
    Target::Malformed {
        reason: reason.to_owned(),
    }
}
