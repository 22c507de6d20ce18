//! The drive: an in-memory item tree whose file bytes live on disk.
//!
//! Invariants: every item but the root has exactly one parent folder, which
//! lists it under the lowercase fold of its name (names match
//! case-insensitively, stored items keep their case); item ids are opaque
//! (`{DRIVEID}!{n}`) and looked up case-insensitively; a file's `quickXorHash`
//! and `size` always describe the bytes in its blob, because the hash is
//! computed by the server from what it stores. Blobs are written to a staging
//! file first and renamed into place only on commit, so a refused or
//! interrupted upload stores nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::names::{self, key};
use super::paths::Addr;
use super::replies::{timestamp, Refusal};
use super::StoredFile;

/// What to do when the target name is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conflict {
    /// Refuse with 409 `nameAlreadyExists`.
    Fail,
    /// Overwrite (files keep their id; a folder keeps its contents).
    Replace,
    /// Pick `name 1.ext`, `name 2.ext`, ...
    Rename,
}

impl Conflict {
    /// Parses the `@microsoft.graph.conflictBehavior` value.
    pub(crate) fn parse(text: &str) -> Result<Conflict, Refusal> {
        match text {
            "fail" => Ok(Conflict::Fail),
            "replace" => Ok(Conflict::Replace),
            "rename" => Ok(Conflict::Rename),
            other => Err(
                Refusal::invalid(None, format!("Invalid conflictBehavior {other:?}"))
                    .violating(format!("unknown conflictBehavior {other:?}")),
            ),
        }
    }
}

/// The bytes of a file.
#[derive(Debug, Clone)]
pub(crate) struct FileData {
    size: u64,
    hash: String,
    blob: PathBuf,
    mime: String,
}

/// File or folder.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// A folder with its children keyed by [`names::key`].
    Folder { children: BTreeMap<String, String> },
    /// A file.
    File(FileData),
}

/// One driveItem.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    id: String,
    name: String,
    parent: Option<String>,
    created: OffsetDateTime,
    modified: OffsetDateTime,
    version: u64,
    /// `fileSystemInfo` the client set, shown instead of the server times.
    fs_info: Option<Value>,
    kind: Kind,
}

impl Item {
    /// Whether the item is a folder.
    pub(crate) fn is_folder(&self) -> bool {
        matches!(self.kind, Kind::Folder { .. })
    }
}

/// Where uploaded bytes should land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Placement {
    /// A name inside a folder, with a conflict behaviour.
    Named {
        parent: String,
        name: String,
        conflict: Conflict,
    },
    /// An existing file, replaced in place.
    Existing { id: String },
}

/// Bytes received and staged on disk, ready to commit.
#[derive(Debug, Clone)]
pub(crate) struct Staged {
    /// The staging file; renamed into the blob store on commit.
    pub(crate) path: PathBuf,
    /// Number of bytes.
    pub(crate) size: u64,
    /// quickXorHash of the bytes, base64.
    pub(crate) hash: String,
    /// `fileSystemInfo` sent by the client, if any.
    pub(crate) fs_info: Option<Value>,
}

/// The result of walking an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The item exists.
    Found(String),
    /// The walk stopped at folder `parent`; `rest` are the names that do not
    /// exist.
    Missing { parent: String, rest: Vec<String> },
    /// A file sits where a folder is needed.
    Blocked,
    /// The base item id is unknown.
    BaseMissing,
}

/// The whole drive.
#[derive(Debug)]
pub(crate) struct Drive {
    /// The drive id (lowercase hex, as personal drives show it).
    pub(crate) drive_id: String,
    /// Total quota in bytes.
    pub(crate) quota_total: u64,
    root: String,
    items: HashMap<String, Item>,
    next_id: u64,
    blobs: PathBuf,
}

impl Drive {
    /// An empty drive whose blobs go to `blobs`.
    pub(crate) fn new(drive_id: String, quota_total: u64, blobs: PathBuf) -> Drive {
        let root = format!("{}!101", drive_id.to_uppercase());
        let now = OffsetDateTime::now_utc();
        let item = Item {
            id: root.clone(),
            name: "root".to_owned(),
            parent: None,
            created: now,
            modified: now,
            version: 1,
            fs_info: None,
            kind: Kind::Folder {
                children: BTreeMap::new(),
            },
        };
        let items = HashMap::from([(root.to_uppercase(), item)]);
        Drive {
            drive_id,
            quota_total,
            root,
            items,
            next_id: 102,
            blobs,
        }
    }

    /// The root folder's id.
    pub(crate) fn root_id(&self) -> &str {
        &self.root
    }

    /// An item by id, case-insensitively.
    pub(crate) fn get(&self, id: &str) -> Option<&Item> {
        self.items.get(&id.to_uppercase())
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut Item> {
        self.items.get_mut(&id.to_uppercase())
    }

    /// The child of folder `parent` called `name` (any case).
    pub(crate) fn child(&self, parent: &str, name: &str) -> Option<&Item> {
        match &self.get(parent)?.kind {
            Kind::Folder { children } => self.get(children.get(&key(name))?),
            Kind::File(_) => None,
        }
    }

    /// Walks an address down the tree.
    pub(crate) fn lookup(&self, addr: &Addr) -> Lookup {
        match addr {
            Addr::Root => Lookup::Found(self.root.clone()),
            Addr::Id(id) => match self.get(id) {
                Some(item) => Lookup::Found(item.id.clone()),
                None => Lookup::BaseMissing,
            },
            Addr::Path { base, segments } => {
                let start = match self.lookup(base) {
                    Lookup::Found(id) => id,
                    _ => return Lookup::BaseMissing,
                };
                self.walk(start, segments)
            }
        }
    }

    fn walk(&self, start: String, segments: &[String]) -> Lookup {
        let mut current = start;
        for (index, name) in segments.iter().enumerate() {
            let Some(item) = self.get(&current) else {
                return Lookup::BaseMissing;
            };
            if !item.is_folder() {
                return Lookup::Blocked;
            }
            match self.child(&current, name) {
                Some(child) => current = child.id.clone(),
                None => {
                    return Lookup::Missing {
                        parent: current,
                        rest: segments[index..].to_vec(),
                    };
                }
            }
        }
        Lookup::Found(current)
    }

    /// The path of an item from the root, `/a/b.txt` (the root is `/`).
    pub(crate) fn path_of(&self, id: &str) -> String {
        let mut parts = Vec::new();
        let mut current = self.get(id);
        while let Some(item) = current {
            if item.parent.is_none() {
                break;
            }
            parts.push(item.name.clone());
            current = item.parent.as_deref().and_then(|p| self.get(p));
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    /// Checks a new name and the length of the path it would have under
    /// `parent`.
    pub(crate) fn check_new_name(&self, parent: &str, name: &str) -> Result<(), Refusal> {
        let refuse = |p: names::NameProblem| {
            Refusal::invalid(Some(p.inner_code), p.message.clone())
                .violating(format!("invalid name {name:?}: {}", p.message))
        };
        names::check_name(name).map_err(refuse)?;
        let parent_path = self.path_of(parent);
        let full = format!("{}/{name}", parent_path.trim_end_matches('/'));
        names::check_path_length(&full[1..]).map_err(refuse)
    }

    /// Creates folders `rest` below `parent`, returning the deepest one's id.
    pub(crate) fn create_folders(
        &mut self,
        parent: &str,
        rest: &[String],
    ) -> Result<String, Refusal> {
        let mut current = parent.to_owned();
        for name in rest {
            current = match self.child(&current, name) {
                Some(item) if item.is_folder() => item.id.clone(),
                Some(_) => {
                    return Err(Refusal::name_exists(format!(
                        "A file named {name:?} is in the way"
                    )))
                }
                None => {
                    self.check_new_name(&current, name)?;
                    self.insert(
                        &current,
                        name,
                        Kind::Folder {
                            children: BTreeMap::new(),
                        },
                        None,
                    )
                }
            };
        }
        Ok(current)
    }

    /// Creates a folder per `POST …/children`; `Ok((id, created))`.
    pub(crate) fn create_folder(
        &mut self,
        parent: &str,
        name: &str,
        conflict: Conflict,
    ) -> Result<(String, bool), Refusal> {
        self.check_new_name(parent, name)?;
        let existing = self
            .child(parent, name)
            .map(|item| (item.id.clone(), item.is_folder()));
        let name = match (existing, conflict) {
            (None, _) => name.to_owned(),
            (Some(_), Conflict::Fail) => {
                return Err(Refusal::name_exists(
                    "The specified item name already exists.",
                ));
            }
            (Some((id, true)), Conflict::Replace) => return Ok((id, false)),
            (Some((id, false)), Conflict::Replace) => {
                self.remove(&id);
                name.to_owned()
            }
            (Some(_), Conflict::Rename) => self.free_name(parent, name, false),
        };
        let id = self.insert(
            parent,
            &name,
            Kind::Folder {
                children: BTreeMap::new(),
            },
            None,
        );
        Ok((id, true))
    }

    /// Commits staged bytes; `Ok((id, created))`. On error the staged file is
    /// left for the caller, who may retry the commit (a session survives a 409)
    /// or delete it.
    pub(crate) fn commit(
        &mut self,
        placement: &Placement,
        staged: &Staged,
    ) -> Result<(String, bool), Refusal> {
        let (target, name) = match placement {
            Placement::Existing { id } => match self.get(id) {
                Some(item) if !item.is_folder() => (Some(item.id.clone()), item.name.clone()),
                Some(_) => return Err(Refusal::invalid(None, "The target item is a folder")),
                None => return Err(Refusal::not_found("The target item no longer exists")),
            },
            Placement::Named {
                parent,
                name,
                conflict,
            } => self.place(parent, name, *conflict)?,
        };
        let old_size = target
            .as_deref()
            .and_then(|id| self.file_size(id))
            .unwrap_or(0);
        if self.used() - old_size + staged.size > self.quota_total {
            return Err(Refusal::new(
                507,
                "quotaLimitReached",
                None,
                "Insufficient Storage",
            ));
        }
        let mime = mime_of(&name).to_owned();
        match target {
            Some(id) => {
                self.replace_content(&id, staged, mime)?;
                Ok((id, false))
            }
            None => {
                let Placement::Named { parent, .. } = placement else {
                    return Err(Refusal::not_found("The target item no longer exists"));
                };
                let id = self.next_item_id();
                let data = self.store_blob(&id, 1, staged, mime)?;
                self.insert_with_id(&id, parent, &name, Kind::File(data), staged.fs_info.clone());
                Ok((id, true))
            }
        }
    }

    /// Resolves a named placement to (existing file to replace, final name).
    fn place(
        &self,
        parent: &str,
        name: &str,
        conflict: Conflict,
    ) -> Result<(Option<String>, String), Refusal> {
        match self.get(parent) {
            Some(item) if item.is_folder() => {}
            _ => return Err(Refusal::not_found("The parent folder does not exist")),
        }
        let Some(existing) = self.child(parent, name) else {
            return Ok((None, name.to_owned()));
        };
        match conflict {
            Conflict::Fail => Err(Refusal::name_exists(
                "The specified item name already exists.",
            )),
            Conflict::Replace if existing.is_folder() => Err(Refusal::name_exists(
                "A folder with that name already exists.",
            )),
            Conflict::Replace => Ok((Some(existing.id.clone()), existing.name.clone())),
            Conflict::Rename => Ok((None, self.free_name(parent, name, true))),
        }
    }

    fn replace_content(&mut self, id: &str, staged: &Staged, mime: String) -> Result<(), Refusal> {
        let version = self.get(id).map_or(1, |item| item.version + 1);
        let data = self.store_blob(id, version, staged, mime)?;
        let Some(item) = self.get_mut(id) else {
            return Err(Refusal::not_found("The target item no longer exists"));
        };
        if let Kind::File(old) = &item.kind {
            let _ = std::fs::remove_file(&old.blob);
        }
        item.kind = Kind::File(data);
        item.version = version;
        item.modified = OffsetDateTime::now_utc();
        if staged.fs_info.is_some() {
            item.fs_info = staged.fs_info.clone();
        }
        Ok(())
    }

    fn store_blob(
        &self,
        id: &str,
        version: u64,
        staged: &Staged,
        mime: String,
    ) -> Result<FileData, Refusal> {
        let blob = self
            .blobs
            .join(format!("{}.{version}", id.replace('!', "_")));
        std::fs::rename(&staged.path, &blob).map_err(|err| {
            Refusal::new(
                500,
                "generalException",
                None,
                format!("storing the file failed: {err}"),
            )
        })?;
        Ok(FileData {
            size: staged.size,
            hash: staged.hash.clone(),
            blob,
            mime,
        })
    }

    /// A name not taken in `parent`: `name 1.ext`, `name 2.ext`, ...
    fn free_name(&self, parent: &str, name: &str, is_file: bool) -> String {
        (1..)
            .map(|n| names::renamed(name, n, is_file))
            .find(|candidate| self.child(parent, candidate).is_none())
            .unwrap_or_else(|| name.to_owned())
    }

    fn next_item_id(&mut self) -> String {
        let id = format!("{}!{}", self.drive_id.to_uppercase(), self.next_id);
        self.next_id += 1;
        id
    }

    fn insert(&mut self, parent: &str, name: &str, kind: Kind, fs_info: Option<Value>) -> String {
        let id = self.next_item_id();
        self.insert_with_id(&id, parent, name, kind, fs_info);
        id
    }

    fn insert_with_id(
        &mut self,
        id: &str,
        parent: &str,
        name: &str,
        kind: Kind,
        fs_info: Option<Value>,
    ) {
        let now = OffsetDateTime::now_utc();
        let item = Item {
            id: id.to_owned(),
            name: name.to_owned(),
            parent: Some(parent.to_owned()),
            created: now,
            modified: now,
            version: 1,
            fs_info,
            kind,
        };
        self.items.insert(id.to_uppercase(), item);
        if let Some(Item {
            kind: Kind::Folder { children },
            modified,
            ..
        }) = self.get_mut(parent)
        {
            children.insert(key(name), id.to_owned());
            *modified = now;
        }
    }

    /// Removes an item and everything below it, deleting blobs.
    pub(crate) fn remove(&mut self, id: &str) {
        let Some(item) = self.items.remove(&id.to_uppercase()) else {
            return;
        };
        if let Some(parent) = item
            .parent
            .as_deref()
            .and_then(|p| self.items.get_mut(&p.to_uppercase()))
        {
            if let Kind::Folder { children } = &mut parent.kind {
                children.remove(&key(&item.name));
            }
        }
        match item.kind {
            Kind::File(data) => {
                let _ = std::fs::remove_file(&data.blob);
            }
            Kind::Folder { children } => {
                for child in children.values() {
                    self.remove(child);
                }
            }
        }
    }

    /// Renames an item inside its folder.
    pub(crate) fn rename(&mut self, id: &str, new_name: &str) -> Result<(), Refusal> {
        let (parent, old_name) = match self.get(id) {
            Some(Item {
                parent: Some(parent),
                name,
                ..
            }) => (parent.clone(), name.clone()),
            _ => return Err(Refusal::invalid(None, "The root cannot be renamed")),
        };
        if key(&old_name) != key(new_name) && self.child(&parent, new_name).is_some() {
            return Err(Refusal::name_exists(
                "The specified item name already exists.",
            ));
        }
        self.check_new_name(&parent, new_name)?;
        if let Some(Item {
            kind: Kind::Folder { children },
            ..
        }) = self.get_mut(&parent)
        {
            children.remove(&key(&old_name));
            children.insert(key(new_name), id.to_owned());
        }
        if let Some(item) = self.get_mut(id) {
            item.name = new_name.to_owned();
            item.version += 1;
        }
        Ok(())
    }

    /// Stores the `fileSystemInfo` a client PATCHes.
    pub(crate) fn set_fs_info(&mut self, id: &str, fs_info: Value) {
        if let Some(item) = self.get_mut(id) {
            item.fs_info = Some(fs_info);
            item.version += 1;
        }
    }

    /// Bytes used by all files.
    pub(crate) fn used(&self) -> u64 {
        self.items
            .values()
            .filter_map(|item| self.file_size(&item.id))
            .sum()
    }

    /// A file's size; `None` for folders and unknown ids.
    pub(crate) fn file_size(&self, id: &str) -> Option<u64> {
        match &self.get(id)?.kind {
            Kind::File(data) => Some(data.size),
            Kind::Folder { .. } => None,
        }
    }

    /// Size as Graph reports it: a folder's size is the total of what it
    /// contains.
    fn size_of(&self, id: &str) -> u64 {
        match self.get(id).map(|item| &item.kind) {
            Some(Kind::File(data)) => data.size,
            Some(Kind::Folder { children }) => children.values().map(|c| self.size_of(c)).sum(),
            None => 0,
        }
    }

    /// The blob holding a file's bytes.
    pub(crate) fn blob_of(&self, id: &str) -> Option<&Path> {
        match &self.get(id)?.kind {
            Kind::File(data) => Some(&data.blob),
            Kind::Folder { .. } => None,
        }
    }

    /// Ids of a folder's children, ordered by name.
    pub(crate) fn children_of(&self, id: &str) -> Vec<String> {
        match self.get(id).map(|item| &item.kind) {
            Some(Kind::Folder { children }) => children.values().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Every file, ordered by path.
    pub(crate) fn files(&self) -> Vec<StoredFile> {
        let mut files: Vec<StoredFile> = self
            .items
            .values()
            .filter_map(|item| match &item.kind {
                Kind::File(data) => Some(StoredFile {
                    path: self.path_of(&item.id),
                    id: item.id.clone(),
                    size: data.size,
                    quick_xor_hash: data.hash.clone(),
                }),
                Kind::Folder { .. } => None,
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files
    }

    /// Every folder but the root, ordered by path.
    pub(crate) fn folders(&self) -> Vec<String> {
        let mut folders: Vec<String> = self
            .items
            .values()
            .filter(|item| item.is_folder() && item.parent.is_some())
            .map(|item| self.path_of(&item.id))
            .collect();
        folders.sort();
        folders
    }

    /// The driveItem JSON for `id`.
    pub(crate) fn item_json(&self, id: &str, base_url: &str) -> Value {
        let Some(item) = self.get(id) else {
            return Value::Null;
        };
        let created = timestamp(item.created);
        let modified = timestamp(item.modified);
        let fs_info = item.fs_info.clone().unwrap_or_else(
            || json!({"createdDateTime": created, "lastModifiedDateTime": modified}),
        );
        let mut value = json!({
            "id": item.id,
            "name": item.name,
            "size": self.size_of(&item.id),
            "eTag": format!("\"{{{}}},{}\"", item.id, item.version),
            "cTag": format!("\"c:{{{}}},{}\"", item.id, item.version),
            "createdDateTime": created,
            "lastModifiedDateTime": modified,
            "fileSystemInfo": fs_info,
            "parentReference": self.parent_reference(item),
        });
        match &item.kind {
            Kind::File(data) => {
                value["file"] =
                    json!({"mimeType": data.mime, "hashes": {"quickXorHash": data.hash}});
                value["@microsoft.graph.downloadUrl"] = format!("{base_url}/dl/{}", item.id).into();
            }
            Kind::Folder { children } => {
                value["folder"] = json!({"childCount": children.len()});
                if item.parent.is_none() {
                    value["root"] = json!({});
                }
            }
        }
        value
    }

    fn parent_reference(&self, item: &Item) -> Value {
        let Some(parent) = item.parent.as_deref() else {
            return json!({"driveId": self.drive_id, "driveType": "personal"});
        };
        let parent_path = self.path_of(parent);
        let path = if parent_path == "/" {
            "/drive/root:".to_owned()
        } else {
            format!("/drive/root:{parent_path}")
        };
        json!({"driveId": self.drive_id, "driveType": "personal", "id": parent, "path": path})
    }
}

/// A MIME type from the extension; Graph guesses the same way.
fn mime_of(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        _ => "application/octet-stream",
    }
}
