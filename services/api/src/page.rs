//! ThingsBoard's paging parameters on list endpoints.

use serde::Deserialize;
use serde_json::Value;
use thinglake_queries::{PageLink, SortKey, SortOrder, paginate};
use uuid::Uuid;

use crate::error::ApiError;

/// `pageSize`, `page`, `textSearch`, `sortProperty`, `sortOrder` as query parameters. Numbers
/// are kept as text and parsed in [`PageParams::link`]: these params are flattened into
/// endpoint-specific ones, and serde's flatten hands query values over as strings.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PageParams {
    pub page_size: Option<String>,
    pub page: Option<String>,
    pub text_search: Option<String>,
    pub sort_property: Option<String>,
    pub sort_order: Option<String>,
}

impl PageParams {
    /// The page link; `pageSize` is required, as in ThingsBoard.
    pub fn link(&self) -> Result<PageLink, ApiError> {
        let page_size = self
            .page_size
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("Required request parameter 'pageSize' is not present"))?;
        let page_size = parse_number("pageSize", page_size)?;
        let page = match self.page.as_deref() {
            Some(p) => parse_number("page", p)?,
            None => 0,
        };
        let sort_order = match self.sort_order.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("") => None,
            Some("ASC") => Some(SortOrder::Asc),
            Some("DESC") => Some(SortOrder::Desc),
            Some(other) => return Err(ApiError::bad_request(format!("Invalid sortOrder '{other}': use ASC or DESC"))),
        };
        Ok(PageLink {
            page_size,
            page,
            text_search: self.text_search.clone(),
            sort_property: self.sort_property.clone(),
            sort_order,
        })
    }
}

fn parse_number(name: &str, value: &str) -> Result<usize, ApiError> {
    value
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_request(format!("Invalid value '{value}' of request parameter '{name}': expected a whole number")))
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

/// What a list of devices or assets filters, searches and sorts by: each has a name, a label, a
/// profile and perhaps a customer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Profiled<'a> {
    pub(crate) created_time: i64,
    pub(crate) profile_id: Uuid,
    pub(crate) name: &'a str,
    pub(crate) label: Option<&'a str>,
    pub(crate) profile_name: &'a str,
    pub(crate) customer_title: Option<&'a str>,
}

/// One page of devices or assets as `render` shows them: those of profile `profile_id` if given,
/// searched in name, label and profile name, sorted by the common keys or by the customer's title.
pub(crate) fn profiled_page<V>(
    mut views: Vec<V>,
    params: &PageParams,
    profile_id: Option<Uuid>,
    profiled: fn(&V) -> Profiled<'_>,
    render: fn(&V) -> Value,
) -> Result<axum::Json<Value>, ApiError> {
    if let Some(id) = profile_id {
        views.retain(|v| profiled(v).profile_id == id);
    }
    let page = paginate(
        views,
        &params.link()?,
        |v| {
            let f = profiled(v);
            vec![f.name, f.label.unwrap_or(""), f.profile_name]
        },
        |v, prop| {
            let f = profiled(v);
            match prop {
                "customerTitle" => Some(SortKey::Text(f.customer_title.unwrap_or_default().to_lowercase())),
                _ => common_sort_key(prop, f.created_time, f.name, f.label, Some(f.profile_name)),
            }
        },
    )?;
    Ok(axum::Json(serde_json::to_value(page.map(|v| render(&v))).unwrap_or_default()))
}
