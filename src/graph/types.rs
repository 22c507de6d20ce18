//! Graph's JSON resources, as far as this daemon reads them.
//!
//! Field names follow Graph (camelCase on the wire). Every field the service
//! may omit is an `Option` or defaults, because personal and business drives
//! fill different subsets. Items serialise back in the same shape, which is
//! what `ls --json` prints.

use serde::{Deserialize, Serialize};

use super::quickxor::{from_base64, Digest};

/// A drive: `GET /me/drive`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Drive {
    /// The drive id; opaque, compare case-insensitively.
    pub id: String,
    /// `personal`, `business` or `documentLibrary`.
    #[serde(default)]
    pub drive_type: Option<String>,
    /// Who owns the drive.
    #[serde(default)]
    pub owner: Option<IdentitySet>,
    /// Space used and left.
    #[serde(default)]
    pub quota: Option<Quota>,
}

/// Graph's `identitySet`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySet {
    /// The user, when the owner is one.
    #[serde(default)]
    pub user: Option<Identity>,
}

/// Graph's `identity`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// The name to show.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The user's id.
    #[serde(default)]
    pub id: Option<String>,
    /// The sign-in address; business drives report it, personal ones usually do
    /// not.
    #[serde(default)]
    pub email: Option<String>,
}

/// Storage figures of a drive, in bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// Total space.
    #[serde(default)]
    pub total: Option<u64>,
    /// Space used, recycle bin included.
    #[serde(default)]
    pub used: Option<u64>,
    /// Space left.
    #[serde(default)]
    pub remaining: Option<u64>,
    /// Space taken by the recycle bin.
    #[serde(default)]
    pub deleted: Option<u64>,
    /// `normal`, `nearing`, `critical` or `exceeded`.
    #[serde(default)]
    pub state: Option<String>,
}

/// A file or folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriveItem {
    /// The item id; opaque.
    pub id: String,
    /// The item's name (absent for the root on some drives).
    #[serde(default)]
    pub name: Option<String>,
    /// Size in bytes; for a folder, the total of its contents.
    #[serde(default)]
    pub size: Option<u64>,
    /// Changes whenever the item or its metadata change.
    #[serde(default)]
    pub e_tag: Option<String>,
    /// Changes whenever the content changes.
    #[serde(default)]
    pub c_tag: Option<String>,
    /// When the item last changed, as Graph wrote it (RFC 3339).
    #[serde(default)]
    pub last_modified_date_time: Option<String>,
    /// The folder that holds the item.
    #[serde(default)]
    pub parent_reference: Option<ItemReference>,
    /// Present when the item is a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileFacet>,
    /// Present when the item is a folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<FolderFacet>,
}

impl DriveItem {
    /// Whether the item is a folder.
    pub fn is_folder(&self) -> bool {
        self.folder.is_some()
    }

    /// The base64 quickXorHash as Graph reported it.
    pub fn quick_xor_hash_text(&self) -> Option<&str> {
        self.file
            .as_ref()?
            .hashes
            .as_ref()?
            .quick_xor_hash
            .as_deref()
    }

    /// The decoded quickXorHash; `None` when absent or not a 20-byte base64
    /// value.
    pub fn quick_xor_hash(&self) -> Option<Digest> {
        from_base64(self.quick_xor_hash_text()?)
    }
}

/// Graph's `itemReference`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemReference {
    /// The drive id.
    #[serde(default)]
    pub drive_id: Option<String>,
    /// The parent's id.
    #[serde(default)]
    pub id: Option<String>,
    /// The parent's path, such as `/drive/root:/reports`.
    #[serde(default)]
    pub path: Option<String>,
}

/// The `file` facet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileFacet {
    /// The MIME type Graph guessed.
    #[serde(default)]
    pub mime_type: Option<String>,
    /// Content hashes.
    #[serde(default)]
    pub hashes: Option<Hashes>,
}

/// Content hashes; only quickXorHash is guaranteed on personal drives.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hashes {
    /// The base64 quickXorHash.
    #[serde(default)]
    pub quick_xor_hash: Option<String>,
}

/// The `folder` facet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderFacet {
    /// Number of direct children.
    #[serde(default)]
    pub child_count: Option<u64>,
}

/// One page of `GET .../children`.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct ChildrenPage {
    #[serde(default)]
    pub value: Vec<DriveItem>,
    #[serde(rename = "@odata.nextLink", default)]
    pub next_link: Option<String>,
}

/// The answer to `createUploadSession`.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UploadSessionResponse {
    pub upload_url: String,
    #[serde(default)]
    pub expiration_date_time: Option<String>,
}

/// The answer to a fragment (202) or a session status request.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SessionProgress {
    #[serde(default)]
    pub expiration_date_time: Option<String>,
    #[serde(default)]
    pub next_expected_ranges: Vec<String>,
}

impl SessionProgress {
    /// The first byte of the first missing range; `None` when nothing is
    /// missing.
    ///
    /// The docs warn the list may be incomplete, and in practice it holds one
    /// range; only the first is used, never to size fragments.
    pub fn next_expected(&self) -> Result<Option<u64>, String> {
        let Some(first) = self.next_expected_ranges.first() else {
            return Ok(None);
        };
        let start = first.split('-').next().unwrap_or_default();
        start
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("unreadable range `{first}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_parse_from_graph_json() {
        let json = r#"{"id":"A!1","name":"r.csv","size":12,"eTag":"e","cTag":"c",
            "parentReference":{"driveId":"d","id":"P!1","path":"/drive/root:/x"},
            "file":{"mimeType":"text/csv","hashes":{"quickXorHash":"SgAAAAAAAAAAAAAAAQAAAAAAAAA="}},
            "@microsoft.graph.downloadUrl":"https://secret"}"#;
        let item: DriveItem = serde_json::from_str(json).unwrap();
        assert_eq!(item.size, Some(12));
        assert!(!item.is_folder());
        assert_eq!(item.quick_xor_hash().map(|d| d[0]), Some(0x4a));
        let back = serde_json::to_string(&item).unwrap();
        assert!(
            !back.contains("downloadUrl"),
            "download URLs are credentials: {back}"
        );
    }

    #[test]
    fn next_expected_reads_the_first_range() {
        let progress = |ranges: &[&str]| SessionProgress {
            expiration_date_time: None,
            next_expected_ranges: ranges.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(progress(&["26-"]).next_expected(), Ok(Some(26)));
        assert_eq!(progress(&["0-99", "200-"]).next_expected(), Ok(Some(0)));
        assert_eq!(progress(&[]).next_expected(), Ok(None));
        assert!(progress(&["x-"]).next_expected().is_err());
    }
}
