//! ThingsBoard's paging parameters on list endpoints.

use serde::Deserialize;
use thinglake_queries::{PageLink, SortKey, SortOrder};

use crate::error::ApiError;

/// `pageSize`, `page`, `textSearch`, `sortProperty`, `sortOrder` as query parameters.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PageParams {
    pub page_size: Option<usize>,
    pub page: Option<usize>,
    pub text_search: Option<String>,
    pub sort_property: Option<String>,
    pub sort_order: Option<String>,
}

impl PageParams {
    /// The page link; `pageSize` is required, as in ThingsBoard.
    pub fn link(&self) -> Result<PageLink, ApiError> {
        let page_size = self
            .page_size
            .ok_or_else(|| ApiError::bad_request("Required request parameter 'pageSize' is not present"))?;
        let sort_order = match self.sort_order.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("") => None,
            Some("ASC") => Some(SortOrder::Asc),
            Some("DESC") => Some(SortOrder::Desc),
            Some(other) => return Err(ApiError::bad_request(format!("Invalid sortOrder '{other}': use ASC or DESC"))),
        };
        Ok(PageLink {
            page_size,
            page: self.page.unwrap_or(0),
            text_search: self.text_search.clone(),
            sort_property: self.sort_property.clone(),
            sort_order,
        })
    }
}

/// Sort keys common to ThingsBoard's entity lists.
pub fn common_sort_key(property: &str, created_time: i64, name: &str, label: Option<&str>, kind: Option<&str>) -> Option<SortKey> {
    match property {
        "createdTime" => Some(SortKey::Number(created_time)),
        "name" | "title" | "email" => Some(SortKey::Text(name.to_lowercase())),
        "label" => Some(SortKey::Text(label.unwrap_or_default().to_lowercase())),
        "type" | "deviceProfileName" | "assetProfileName" | "authority" => Some(SortKey::Text(kind.unwrap_or_default().to_lowercase())),
        _ => None,
    }
}
